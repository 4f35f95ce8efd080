"""``[forms_authentication]``: ASP.NET's ``<forms>`` element, for every kind of content.

The settings that describe the ticket (cookie, keys, lifetime, the user store)
are per application, as ASP.NET's ``<authentication>`` is (MachineToApplication):
the module reads them once when it provisions the application. The ones that
say what happens to a URL (``enabled``, ``redirect_to_login``, the login, logout
and default URLs) may differ per folder or location.

No key material is ever in this section: ``key_file`` names a file and
``key_env`` an environment variable, neither of which is a secret, so
``colonnade config show`` may print the section as it is.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from msgspec import Meta

from colonnade.config.schema import EnvNameOrEmpty
from colonnade.config.sections import Section, Where

#: A cookie name: an RFC 6265 token.
_COOKIE_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
#: A cookie Path or Domain attribute value: printable ASCII without ``;``.
_ATTRIBUTE = re.compile(r"[\x21-\x3a\x3c-\x7e]*")

PER_APPLICATION = Where.SERVER | Where.APPLICATION


def is_local_url(url: str) -> bool:
    """True for a URL that stays on this site: a path starting with exactly one
    ``/``, with no backslash, no control character or space (browsers drop tabs
    and newlines, which would turn ``/\\t/evil`` into ``//evil``) and no scheme.

    The rule every redirect target from a request (``ReturnUrl``) passes: what
    fails it is never used, so the login page cannot be an open redirect.
    """
    if not url.startswith("/") or url.startswith("//"):
        return False
    for char in url:
        code = ord(char)
        if code <= 0x20 or code >= 0x7F or char == "\\":
            return False
    return True


def _check_url(field: str, url: str) -> None:
    if not is_local_url(url):
        raise ValueError(
            f"{field}: {url!r} must be a path on this site: starting with one '/', "
            "printable ASCII, no backslash"
        )


class FormsSection(Section, frozen=True):
    """Forms authentication (ASP.NET ``system.web/authentication mode="Forms"``): a
    login page, an encrypted ticket in a cookie, and a redirect to the login page
    for every 401 answer, whatever produced it (a static file, a Python app, the
    directory listing, URL authorization).

    At AUTHENTICATE_REQUEST a valid ticket makes the user (authentication type
    `Forms`, the roles the ticket carries); a missing, tampered, expired or
    unreadable one leaves the request anonymous (logged with the reason). With
    `sliding_expiration`, a ticket past half its lifetime is issued again. At
    SEND_RESPONSE a 401 becomes a 302 to `login_url?ReturnUrl=<path and query>`.

    The login page is the server's own (an accessible HTML form) when `users_file`
    is set; otherwise the application serves `login_url` and signs users in with
    `colonnade.auth.set_auth_cookie` (WSGI and ASGI). See docs/security.md.
    """

    key = "forms_authentication"
    allowed_keys = {
        "cookie_name": PER_APPLICATION,
        "cookie_path": PER_APPLICATION,
        "cookie_domain": PER_APPLICATION,
        "require_ssl": PER_APPLICATION,
        "same_site": PER_APPLICATION,
        "timeout": PER_APPLICATION,
        "sliding_expiration": PER_APPLICATION,
        "key_file": PER_APPLICATION,
        "key_env": PER_APPLICATION,
        "users_file": PER_APPLICATION,
        "revoke_on_sign_out": PER_APPLICATION,
    }

    enabled: bool = True
    """Forms authentication in this URL subtree: read the ticket and turn 401
    answers into the login redirect. The module runs only where it is listed in
    `[server] modules`; set false in a subtree to leave it alone there."""
    redirect_to_login: bool = True
    """Turn a 401 answer into a redirect to `login_url` (ASP.NET's
    `SuppressFormsAuthenticationRedirect`, reversed). Set false for an API
    subtree whose clients want the 401 itself; the ticket still authenticates
    there."""
    login_url: str = "/login"
    """Where anonymous users are sent to sign in (ASP.NET `loginUrl`): a path on
    this site. It stays reachable to anonymous users: the server's login page is
    answered before authorization, and an application's login page is marked as
    one for URL authorization (IIS `bypassLoginPages`), unless the `web.toml` of
    a folder below the application's root set this (then its rules must allow it)."""
    default_url: str = "/"
    """Where a user goes after signing in when the request carried no usable
    `ReturnUrl` (ASP.NET `defaultUrl`)."""
    logout_url: str = ""
    """The server's sign-out address, e.g. `/logout`: a GET shows a page with a
    sign-out button, a POST (from this site only) clears the cookie and
    redirects to `login_url`. Empty (the default): none, the URL stays the
    application's (which signs users out with `colonnade.auth.sign_out`)."""
    cookie_name: Annotated[str, Meta(pattern=_COOKIE_NAME, description="a cookie name")] = (
        ".COLONNADEAUTH"
    )
    """The ticket cookie's name (ASP.NET `name`, there `.ASPXAUTH`)."""
    cookie_path: str = "/"
    """The cookie's `Path` (ASP.NET `path`)."""
    cookie_domain: str = ""
    """The cookie's `Domain` (ASP.NET `domain`); empty: none, the cookie goes back
    to this host only."""
    require_ssl: bool = False
    """Mark the cookie `Secure` (ASP.NET `requireSSL`); then a ticket arriving
    over plain HTTP is ignored and the server's login page refuses to sign in
    over plain HTTP (403.4)."""
    same_site: Literal["Lax", "Strict", "None"] = "Lax"
    """The cookie's `SameSite` (ASP.NET `cookieSameSite`). `None` requires
    `require_ssl` (browsers refuse `SameSite=None` without `Secure`)."""
    timeout: Annotated[int, Meta(ge=1, le=525600)] = 30
    """The ticket's lifetime in minutes (ASP.NET `timeout`)."""
    sliding_expiration: bool = True
    """Issue the ticket again, with its full lifetime, once less than half of it
    remains (ASP.NET `slidingExpiration`): active users stay signed in, idle ones
    are signed out after `timeout` minutes."""
    revoke_on_sign_out: bool = True
    """A sign-out (the server's `logout_url`, an application's
    `colonnade.auth.sign_out`) also revokes the ticket it ends, and every ticket
    renewed from the same sign-in, in every worker of this server, until they
    would have expired: a copy of the cookie kept elsewhere no longer signs in.
    ASP.NET's tickets stay valid until they expire (false does that). A farm's
    nodes each keep their own list (docs/security.md)."""
    key_file: str = ""
    """A key ring file: one key per line, the base64 of 32 random bytes
    (`openssl rand -base64 32`); `#` comments and blank lines are ignored. The
    first key encrypts new tickets, every key opens them: put a new key on top and
    drop the old one after `timeout` minutes, and nobody is signed out. Re-read
    when it changes. A relative path is taken from the folder of the file that
    sets it; it must lie outside the served folders. Either this or `key_env`."""
    key_env: EnvNameOrEmpty = ""
    """The name of an environment variable holding the key ring: base64 keys
    separated by spaces or commas, the first one encrypting. Read at start."""
    users_file: str = ""
    """The user store of the server's own login page: an htpasswd file in any
    format the `htpasswd` tool writes (bcrypt with `-B` is the one to use), read
    as `auth.basic` reads its `user_file`. Set, the server answers `login_url`
    itself; empty, the application does. Re-read when
    it changes. A relative path is taken from the folder of the file that sets it;
    it must lie outside the served folders."""

    def __post_init__(self) -> None:
        for name in ("login_url", "default_url"):
            _check_url(name, getattr(self, name))
        if self.logout_url:
            _check_url("logout_url", self.logout_url)
            if self.logout_url == self.login_url:
                raise ValueError("logout_url: must differ from login_url")
        if not self.cookie_path.startswith("/") or _ATTRIBUTE.fullmatch(self.cookie_path) is None:
            raise ValueError(
                f"cookie_path: {self.cookie_path!r} must start with '/' and be printable "
                "ASCII without ';'"
            )
        if _ATTRIBUTE.fullmatch(self.cookie_domain) is None:
            raise ValueError(f"cookie_domain: {self.cookie_domain!r} must be printable ASCII")
        if self.same_site == "None" and not self.require_ssl:
            raise ValueError("same_site: 'None' needs require_ssl = true (browsers refuse it)")
        if self.key_file and self.key_env:
            raise ValueError("key_file and key_env: set one of them, not both")
