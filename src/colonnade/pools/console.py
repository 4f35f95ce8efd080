"""The web console ("Colonnade Manager"): pages served on the admin binding.

How this works
--------------
The console is static HTML, CSS and JavaScript kept in the package
(``console_static/``; nothing is fetched from elsewhere, there is no build
step). Its script reads and steers the server through the admin API on the
same binding (``/api/...``), so the console can do nothing the API does not.

Signing in: the sign-in page takes a token (the same tokens as the API, checked
by the same constant-time comparison). The answer sets a session cookie:
``EXPIRES.NONCE.NAME.MAC``, the MAC an HMAC-SHA256 under a key drawn when the
binding starts (a master restart signs everyone out). The cookie is HttpOnly,
SameSite=Strict and, over HTTPS, Secure; it expires after
:data:`SESSION_SECONDS`. A request the cookie signs in may read; a write (any
method but GET and HEAD) must also carry the session's CSRF token in the
``X-Colonnade-CSRF`` header: an HMAC of the nonce, which the console's script
reads from ``GET /console/session`` (another origin cannot read that answer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.resources
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import NamedTuple

from colonnade.http.events import RequestHead

log = logging.getLogger("colonnade.admin")

#: How long a console session lasts, in seconds.
SESSION_SECONDS = 8 * 3600
#: The cookie that carries a console session.
COOKIE = "colonnade_console"
#: The header a console write carries its session's CSRF token in.
CSRF_HEADER = b"x-colonnade-csrf"
#: The longest token the sign-in form takes.
MAX_TOKEN = 4096

#: Where the console's files are, and their content types.
ASSETS = {
    "/console/": ("index.html", "text/html; charset=utf-8"),
    "/console/sign-in": ("sign-in.html", "text/html; charset=utf-8"),
    "/console/console.css": ("console.css", "text/css; charset=utf-8"),
    "/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console/sign-in.js": ("sign-in.js", "text/javascript; charset=utf-8"),
}
#: What needs no session: the sign-in page and what it uses.
PUBLIC = frozenset({"/console/sign-in", "/console/console.css", "/console/sign-in.js"})

#: Every console answer: no script or style from elsewhere, no framing, no sniffing.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: with no-referrer a browser names the sign-in
    # form's origin "null", and the sign-in could not tell it from a foreign one.
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)

Headers = list[tuple[bytes, bytes]]


class Session(NamedTuple):
    """A signed-in console user."""

    name: str
    expires: int
    csrf: str


class Answer(NamedTuple):
    """An HTTP answer the console gives."""

    status: int
    headers: Headers
    body: bytes


def header(head: RequestHead, name: bytes) -> str | None:
    """The value of the header ``name`` (lower case), else None."""
    for key, value in head.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _asset(name: str) -> bytes:
    return (importlib.resources.files("colonnade.pools") / "console_static" / name).read_bytes()


class Console:
    """Sessions and pages of the console on one admin binding."""

    def __init__(self, secure: bool, clock: Callable[[], float] = time.time) -> None:
        """``secure``: the binding is HTTPS (the cookie is then Secure)."""
        self.key = os.urandom(32)
        self.secure = secure
        self.clock = clock

    def _mac(self, *parts: str) -> str:
        digest = hmac.new(self.key, "\n".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, name: str) -> tuple[str, Session]:
        """A new session for ``name``: the cookie value and the session."""
        expires = int(self.clock()) + SESSION_SECONDS
        nonce = base64.urlsafe_b64encode(os.urandom(18)).decode()
        label = base64.urlsafe_b64encode(name.encode()).rstrip(b"=").decode()
        body = f"{expires}.{nonce}.{label}"
        return f"{body}.{self._mac('session', body)}", Session(
            name, expires, self._mac("csrf", nonce)
        )

    def session(self, head: RequestHead) -> Session | None:
        """The session the request's cookie carries, if it is genuine and current."""
        value = _cookie(head, COOKIE)
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) != 4:
            return None
        expires, nonce, label, mac = parts
        body = f"{expires}.{nonce}.{label}"
        if not hmac.compare_digest(mac.encode(), self._mac("session", body).encode()):
            return None
        try:
            until = int(expires)
            name = base64.urlsafe_b64decode(label + "=" * (-len(label) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if until <= self.clock():
            return None
        return Session(name, until, self._mac("csrf", nonce))

    def csrf_ok(self, head: RequestHead, session: Session) -> bool:
        """Whether a write carries its session's CSRF token (reads need none)."""
        if head.method in (b"GET", b"HEAD"):
            return True
        given = header(head, CSRF_HEADER)
        return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())

    def _cookie(self, value: str, max_age: int) -> tuple[bytes, bytes]:
        flags = f"; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        if self.secure:
            flags += "; Secure"
        return (b"set-cookie", f"{COOKIE}={value}{flags}".encode("latin-1"))

    def answer(
        self,
        head: RequestHead,
        body: bytes,
        check_token: Callable[[bytes], str | None],
        peer: str = "",
    ) -> Answer:
        """The answer to a request for a console page (any path outside ``/api``).
        ``check_token``: the name a token signs in as, else None; ``peer``: the
        client's address, for the log."""
        path = head.path.decode("latin-1")
        method = head.method
        if path in ("/", "/console"):
            return _redirect("/console/")
        if path == "/console/sign-in" and method == b"POST":
            # A form posted from another site would sign the browser in as
            # someone else (login CSRF): a browser names the form's origin.
            origin = header(head, b"origin")
            if origin is not None and urllib.parse.urlsplit(origin).netloc != head.host.decode(
                "latin-1"
            ):
                log.warning("console: %s refused: a sign-in posted from %s", peer, origin)
                return _text(403, "forbidden")
            return self._sign_in(body, check_token, peer)
        if path == "/console/sign-out" and method == b"POST":
            session = self.session(head)
            if session is None or not self.csrf_ok(head, session):
                return _text(403, "forbidden")
            return Answer(204, [self._cookie("", 0), *SECURITY_HEADERS], b"")
        if method not in (b"GET", b"HEAD"):
            return _text(405, "method not allowed")
        found = ASSETS.get(path)
        if path == "/console/session":
            session = self.session(head)
            if session is None:
                return _json(401, b'{"ok": false, "error": "not signed in"}')
            data = {"ok": True, "name": session.name, "expires": session.expires}
            return _json(200, json.dumps({**data, "csrf": session.csrf}).encode())
        if found is None:
            return _text(404, "not found")
        if path not in PUBLIC and self.session(head) is None:
            return _redirect("/console/sign-in")
        name, kind = found
        return Answer(200, [(b"content-type", kind.encode()), *SECURITY_HEADERS], _asset(name))

    def _sign_in(
        self, body: bytes, check_token: Callable[[bytes], str | None], peer: str
    ) -> Answer:
        try:
            fields = urllib.parse.parse_qs(body.decode("ascii"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        token = (fields.get("token") or [""])[0].strip()
        name = check_token(token.encode()) if token and len(token) <= MAX_TOKEN else None
        if name is None:
            # As the API's refusals: the address, never the token.
            log.warning("console: %s refused: a sign-in with a wrong token", peer)
            return _redirect("/console/sign-in?failed=1")
        log.info("console: %s signed in as token %s", peer, name)
        value, _ = self.issue(f"token {name}")
        answer = _redirect("/console/")
        return Answer(answer.status, [self._cookie(value, SESSION_SECONDS), *answer.headers], b"")


def _cookie(head: RequestHead, name: str) -> str | None:
    for key, value in head.headers:
        if key.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key_, _, found = part.strip().partition("=")
            if key_ == name:
                return found
    return None


def _redirect(to: str) -> Answer:
    return Answer(303, [(b"location", to.encode()), *SECURITY_HEADERS], b"")


def _text(status: int, message: str) -> Answer:
    return Answer(
        status,
        [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS],
        message.encode(),
    )


def _json(status: int, data: bytes) -> Answer:
    return Answer(status, [(b"content-type", b"application/json"), *SECURITY_HEADERS], data)


def is_console(path: bytes) -> bool:
    """Whether a path is the console's rather than the API's (``/api/...`` and
    Prometheus's ``/metrics``)."""
    return not (path == b"/api" or path.startswith(b"/api/") or path == b"/metrics")
