"""``[basic_authentication]``: IIS ``basicAuthentication`` with Linux user stores.

The challenge header is built once per section (:attr:`BasicAuthenticationSection.
challenge`); where the user file lies depends on which configuration file set it,
which only the effective settings of a path know, so the module resolves it
(``module.py``) and keeps the result per section object.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated

from msgspec import Meta

from colonnade.config.sections import Section

#: What a realm may hold: printable ASCII (it goes into a header as a quoted string).
_REALM = re.compile(r"[\x20-\x7e]*")

PamService = Annotated[
    str,
    Meta(
        pattern=r"^([A-Za-z0-9_][A-Za-z0-9._-]*)?$",
        description="a PAM service name such as 'login' (a file in /etc/pam.d), or '' for none",
    ),
]


def quoted(text: str) -> bytes:
    """``text`` as an RFC 9110 quoted-string (ASCII; other bytes are dropped)."""
    clean = "".join(c for c in text if " " <= c <= "~")
    return b'"' + clean.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"'


def challenge_for(realm: str) -> bytes:
    """The ``WWW-Authenticate`` value for ``realm`` (RFC 7617, UTF-8 announced)."""
    return b"Basic realm=" + quoted(realm) + b', charset="UTF-8"'


class BasicAuthenticationSection(Section, frozen=True, dict=True):
    """Basic authentication (IIS `basicAuthentication`, RFC 7617), checked against an
    htpasswd file, system accounts through PAM, or both.

    At AUTHENTICATE_REQUEST a request carrying `Authorization: Basic ...` is
    checked: right credentials make the user (`REMOTE_USER`, `AUTH_TYPE = Basic`,
    the access log's `cs-username`), wrong or malformed ones are answered 401.1
    with the reason logged (never the password). A request without Basic
    credentials is left to the other schemes and to anonymous authentication.
    Every 401 response where Basic is enabled carries
    `WWW-Authenticate: Basic realm="...", charset="UTF-8"`, whoever made the 401.

    With both stores set, the file is asked first; a user it does not list is
    asked of PAM, a user it lists with another password is refused.
    Credentials that were verified are remembered for `cache_seconds` (under a
    keyed hash of the header, never the password), so a slow hash (bcrypt) is not
    paid on every request. Basic sends the password in clear text with every
    request: use it over HTTPS only.
    """

    key = "basic_authentication"

    enabled: bool = False
    """Check Basic credentials here (IIS's default: off)."""
    realm: str = ""
    """The realm the browser shows in its logon box (printable ASCII). Empty: the
    host name the client asked for, as IIS does."""
    user_file: str = ""
    """An htpasswd file (`htpasswd -c FILE USER`), relative to the folder of the
    configuration file that sets this key (`colonnade.toml` or a `web.toml`; the
    application's folder where no file set it). Every format `htpasswd` writes is
    accepted: bcrypt (`-B`, recommended), apr1-MD5 (`-m`), SHA-256/512 crypt
    (`-2`, `-5`; through the system's crypt(3)), DES crypt (`-d`), SHA-1 (`-s`)
    and plain text (`-p`; insecure: anyone who reads the file has the passwords).
    The file is checked for changes at most once a second and re-read when it
    changed; verified credentials of the old file are forgotten then."""
    pam: PamService = ""
    """A PAM service (`login`, or a file of your own in `/etc/pam.d`) to check
    system accounts with; empty: off. The user's Unix groups become its roles.
    `pam_unix` reads `/etc/shadow`: the worker must run as root or in the `shadow`
    group."""
    cache_seconds: Annotated[int, Meta(ge=0, le=3600)] = 60
    """How long verified credentials are remembered (0: verify every request). A
    changed user file takes effect within a second; a changed system password or a
    locked account only after this time."""
    pam_timeout: Annotated[float, Meta(gt=0, le=120)] = 10.0
    """The most seconds one PAM check may take; a slower one is answered 503."""

    def __post_init__(self) -> None:
        if _REALM.fullmatch(self.realm) is None:
            raise ValueError("realm: only printable ASCII characters may be used")
        if self.enabled and not (self.user_file or self.pam):
            raise ValueError("enabled = true needs a user store: set user_file, pam, or both")
        if "\x00" in self.user_file:
            raise ValueError("user_file: a path cannot contain NUL")

    @cached_property
    def challenge(self) -> bytes | None:
        """The ``WWW-Authenticate`` value, or None when the realm is the request's host."""
        return challenge_for(self.realm) if self.realm else None
