"""Forms authentication (ASP.NET FormsAuthenticationModule), for every kind of content.

How this works:

- *AUTHENTICATE_REQUEST* (a plain function): where ``[forms_authentication]`` is
  enabled, the ticket cookie is opened (``ticket.py``); a valid ticket makes
  ``ctx.user`` (type ``Forms``, the ticket's roles). A missing cookie costs a scan
  of the request's headers; a bad one leaves the request anonymous, with a log
  line giving the reason (a tampered one counts as a failed logon,
  ``core.auth.note_failure``). Past half its lifetime, with sliding expiration,
  the ticket is sealed again and its cookie goes out with the response.
  Requests for the login and logout pages are marked ``LOGIN_PAGE`` (URL
  authorization lets anonymous users reach them) and, where the server serves
  them, given this module as their handler: the module is also a
  :class:`Handler`, so the pages pass through the rest of the pipeline (request
  filtering, logging, headers) like any other content.
- *SEND_RESPONSE* (HIGH: after the modules that set statuses or add challenges,
  before custom error pages, in SEND_RESPONSE's reverse order): a 401 becomes a
  302 to ``login_url?ReturnUrl=<path and query>``, as ASP.NET does at EndRequest;
  a pending ticket cookie (sign-in, renewal, sign-out) is added.
- *The login page* (``execute``): GET shows the form; POST checks that the post
  comes from this site (``Sec-Fetch-Site``, else ``Origin``, else ``Referer``;
  the cookie is also ``SameSite``), reads a bounded urlencoded body, verifies
  the password on the module's own threads (bcrypt is slow on purpose; at most
  :data:`MAX_CHECKS` at once, 503 beyond) and redirects to the
  ``ReturnUrl`` when it stays on this site, else to ``default_url``. A wrong
  password shows the form again with a message; the log line names the user,
  never the password.
- *Applications* reach the module through ``ctx.items[FORMS]``
  (:class:`~colonnade.core.auth.FormsIssuer`, called by ``colonnade.auth``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from urllib.parse import parse_qs, quote

from colonnade.config.sections import WEB_TOML
from colonnade.core.app import Application
from colonnade.core.auth import FORMS, LOGIN_PAGE, loggable, note_failure
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import (
    COOKIE_DELETED,
    cookie_attributes,
    cookie_values,
    method_not_allowed,
)
from colonnade.core.module import Priority, hook
from colonnade.core.principal import Principal
from colonnade.core.request import Request
from colonnade.core.response import keep_private
from colonnade.core.session import renew_session_id
from colonnade.core.stages import Stage
from colonnade.core.urlpath import covers
from colonnade.errors import ConfigError
from colonnade.modules.forms_auth.config import FormsSection, is_local_url
from colonnade.modules.forms_auth.files import RECHECK, WatchedFile
from colonnade.modules.forms_auth.pages import (
    PAGE_HEADERS,
    login_page,
    logout_page,
    message_page,
)
from colonnade.modules.forms_auth.ticket import (
    MAX_NAME,
    BadTicketError,
    KeyRing,
    StaleTicketError,
    Ticket,
    key_source,
    new_ticket,
)
from colonnade.providers.revocations import RevocationList
from colonnade.providers.users import Logon, UserStoreError
from colonnade.providers.users.htpasswd import HtpasswdFile

log = logging.getLogger("colonnade.auth")

AUTH_TYPE = "Forms"
#: ``ctx.items`` key: the ``Set-Cookie`` value to send with the response.
_SET_COOKIE = "auth.forms.set_cookie"
#: The largest login form body read.
MAX_FORM_BYTES = 8 * 1024
#: The longest request target carried in ``ReturnUrl``; a longer one is dropped
#: (the user lands on ``default_url`` after signing in).
MAX_RETURN_URL = 2048
#: At most this many cookies of the ticket's name are tried (several paths).
_MAX_CANDIDATES = 4
#: Threads checking passwords for the login page (bcrypt releases the GIL).
CHECK_THREADS = min(4, os.cpu_count() or 1)
#: Sign-ins checked or waiting at once, per application; more are answered 503.
MAX_CHECKS = 32
#: At most this many opened tickets are remembered (then it starts over).
_OPENED_MAX = 4096
#: A longer Cookie header is not remembered whole (memory: 4096 times this at most).
_HEADER_KEY_MAX = 2048
_VERBS = ("GET", "HEAD", "POST")
_FORM_TYPE = b"application/x-www-form-urlencoded"


class Opened(NamedTuple):
    """A ticket the ring opened, ready for the next request that brings it."""

    expires: int
    renew_at: float
    """When sliding expiration issues it again (half its lifetime; never without)."""
    user: Principal
    ticket: Ticket


class CookieSpec:
    """The ticket cookie of one application: name, attributes, lifetime."""

    __slots__ = ("attributes", "lifetime", "name", "name_bytes", "name_eq", "secure", "sliding")

    def __init__(self, settings: FormsSection) -> None:
        self.name = settings.cookie_name
        self.name_bytes = settings.cookie_name.encode("ascii")
        self.name_eq = self.name_bytes + b"="
        self.lifetime = settings.timeout * 60
        self.sliding = settings.sliding_expiration
        self.secure = settings.require_ssl
        self.attributes = cookie_attributes(
            settings.cookie_path, settings.cookie_domain, settings.require_ssl, settings.same_site
        )

    def issue(self, value: str, ticket: Ticket) -> bytes:
        """The ``Set-Cookie`` value carrying sealed ``ticket``."""
        head = self.name_bytes + b"=" + value.encode("ascii") + self.attributes
        if ticket.persistent:
            head += b"; Max-Age=%d" % max(0, ticket.expires - int(time.time()))
        return head

    def clear(self) -> bytes:
        """The ``Set-Cookie`` value that deletes the cookie."""
        return self.name_bytes + b"=" + self.attributes + COOKIE_DELETED


_revocations: RevocationList | None = None


def _server_revocations() -> RevocationList:
    # One list per process for every application (the zone is the server's).
    global _revocations
    if _revocations is None:
        _revocations = RevocationList.for_server()
    return _revocations


def _signed_out(ctx: Context) -> None:
    """A ticket whose sign-in was signed out: the request stays anonymous."""
    log.info(
        "forms authentication: ticket for %s ignored: its sign-in was signed out",
        loggable(ctx.request.path),
    )


def _file_setting(app: Application, key: str, value: str) -> str:
    """``forms_authentication.<key>`` (a file) as an absolute path: a relative one
    is taken from the folder of the configuration file that set it, as Apache and
    nginx read theirs (the working directory where no file did, as in tests)."""
    if not value or os.path.isabs(value):
        return os.path.normpath(value) if value else ""
    source = app.settings.origins.get(f"{FormsSection.key}.{key}", "")
    source = source.split(": locations[", 1)[0]  # a [[locations]] entry of that file
    base = os.path.dirname(source) if os.path.isabs(source) else os.getcwd()
    return os.path.normpath(os.path.join(base, value))


class FormsAuthentication(Handler):
    """``auth.forms``: the ticket cookie, the login redirect and the login page."""

    id = "auth.forms"
    section = FormsSection

    def __init__(self) -> None:
        self.cookie: CookieSpec | None = None
        self._everywhere: FormsSection | None = None
        self._ring: Callable[[], KeyRing] | None = None
        self._users: HtpasswdFile | None = None
        # Cookie values this ring opened (and whole Cookie headers that carried
        # them), with their ticket and user: a request with a ticket seen before
        # costs a dictionary lookup, not a decryption. Only what the ring
        # authenticated is here; expiry is checked each time.
        self._opened: dict[bytes, Opened] = {}
        self._opened_by: KeyRing | None = None
        # Until when (wall clock) the common path trusts what the ring opened
        # without asking for the ring: RECHECK seconds after the last time, as
        # the key file is itself looked at no more often.
        self._trust_until = -math.inf
        # Read on every request: the cookie's name and Secure flag, as attributes.
        self._cookie_name = b""
        self._secure = False
        # Password checks of the login page: their own few threads, and a bound
        # on how many may wait (a flood of sign-ins gets 503s, not a queue).
        self._pool: ThreadPoolExecutor | None = None
        self._checks = 0
        # The server's revoked sign-ins (revoke_on_sign_out), else None.
        self._revocations: RevocationList | None = None

    def provision(self, app: Application) -> None:
        """Read the key ring and the user store; refuse files inside served folders."""
        settings = app.section(FormsSection)
        self.cookie = CookieSpec(settings)
        self._cookie_name = self.cookie.name_bytes
        self._secure = self.cookie.secure
        # Where no level below the application's root sets the section (the
        # usual case), every URL has the root's settings: the per-request hook
        # then need not look them up.
        below = (lvl for lvl in app.levels if lvl.path != app.path and covers(app.path, lvl.path))
        self._everywhere = None if any(FormsSection.key in lvl.raw for lvl in below) else settings
        key_file = _file_setting(app, "key_file", settings.key_file)
        users_file = _file_setting(app, "users_file", settings.users_file)
        for key, path in (("key_file", key_file), ("users_file", users_file)):
            if path and app.contains(os.path.realpath(path)):
                raise ConfigError(
                    f"{path} lies inside the served folders of application {app.path}: "
                    "anyone could download it; move it out",
                    key=f"forms_authentication.{key}",
                )
        self._revocations = _server_revocations() if settings.revoke_on_sign_out else None
        keys = key_source(path=key_file, env=settings.key_env)
        self._ring = keys.current if isinstance(keys, WatchedFile) else (lambda: keys)
        if users_file:
            try:  # read when first needed; refuse the start if it cannot be
                os.close(os.open(users_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {users_file}: {exc.strerror}",
                    key="forms_authentication.users_file",
                ) from None
            self._users = HtpasswdFile(users_file)

    # -- AUTHENTICATE_REQUEST ----------------------------------------------------------

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate_request(self, ctx: Context) -> None:
        """Mark the login pages; make the user from a valid ticket."""
        settings = self._everywhere
        if settings is None:
            settings = ctx.section(FormsSection)
        if not settings.enabled:
            return
        items = ctx.items
        items[FORMS] = self
        request = ctx.request
        path = request.path
        if path == settings.login_url:
            if self._users is not None:
                items[LOGIN_PAGE] = True
                ctx.handler = self
            elif not _set_below_application(ctx, "login_url"):
                # The application's page: whatever the URL maps to passes URL
                # authorization. As ASP.NET's loginUrl, that is the application's
                # to say: a web.toml of a folder below it naming one of its files
                # would open that file to everyone, past a url_authorization it
                # may not change. There, its own rules must let users reach it.
                items[LOGIN_PAGE] = True
        elif path == settings.logout_url:
            items[LOGIN_PAGE] = True
            ctx.handler = self
        if ctx.user is None:
            opened = self._opened
            for key, value in request.headers:
                if key != b"cookie":
                    continue
                # The common case inline: a browser sends the same Cookie header
                # again and again, so the whole header is a key of what was
                # opened (no parsing, no decryption; looked up before the header
                # is searched for the name, which costs more), trusted while the
                # key ring is: the slow path looks at it once a second (and at
                # once after the clock was set back).
                found = opened.get(value)
                if found is not None or self._cookie_name in value:
                    now = time.time()
                    if (
                        found is None
                        or not now < self._trust_until <= now + RECHECK
                        or found.expires <= now
                    ):
                        self._open_ticket(ctx, value, now)
                    elif self._secure and request.scheme != "https":
                        self._open_ticket(ctx, value, now)  # refused there, and said once
                    elif self._revocations is not None and self._revocations.revoked(
                        found.ticket.sign_in, now
                    ):
                        _signed_out(ctx)
                    else:
                        ctx.user = found.user
                        if now >= found.renew_at:
                            self._renew(ctx, found.ticket, now)
                    return

    def _current_ring(self) -> KeyRing:
        assert self._ring is not None  # provisioned
        return self._ring()

    def _open_ticket(self, ctx: Context, header: bytes, now: float) -> None:
        request = ctx.request
        cookie = self.cookie
        assert cookie is not None  # provisioned
        if cookie.secure and request.scheme != "https":
            if ctx.app.first_report("forms ticket over plain HTTP"):  # not once per request
                log.warning(
                    "forms authentication: tickets that come over plain HTTP are ignored "
                    "(require_ssl is set): serve %s over HTTPS, or tell the server the "
                    "scheme a TLS proxy saw",
                    ctx.app.path,
                )
            return
        ring = self._current_ring()
        self._trust_until = now + RECHECK
        opened = self._opened
        if ring is not self._opened_by:
            # Keys changed: what the old ring opened must be opened again.
            opened.clear()
            self._opened_by = ring
        found = opened.get(header)
        if found is None or found.expires <= now:
            found = self._open_each(ctx, ring, cookie, now)
            if found is None:
                opened.pop(header, None)
                return
            if len(header) <= _HEADER_KEY_MAX:
                opened[header] = found
        if self._revocations is not None and self._revocations.revoked(found.ticket.sign_in, now):
            _signed_out(ctx)
            return
        ctx.user = found.user
        if now >= found.renew_at:
            self._renew(ctx, found.ticket, now)

    def _renew(self, ctx: Context, ticket: Ticket, now: float) -> None:
        # Sliding expiration: the same ticket issued now, with its whole lifetime.
        cookie = self.cookie
        assert cookie is not None  # provisioned
        renewed = ticket.renewed(int(now))
        sealed = self._current_ring().seal(renewed, cookie.name)
        ctx.items[_SET_COOKIE] = cookie.issue(sealed, renewed)

    def _open_each(
        self, ctx: Context, ring: KeyRing, cookie: CookieSpec, now: float
    ) -> Opened | None:
        """The first cookie of the ticket's name that opens (and remember it);
        None, logged with the reason, when none does."""
        opened = self._opened
        request = ctx.request
        reason = ""
        stale = False
        for value in cookie_values(request.headers, cookie.name_eq, _MAX_CANDIDATES):
            found = opened.get(value)
            if found is None:
                try:
                    ticket = ring.open(value, cookie.name, now)
                except BadTicketError as exc:
                    reason, stale = str(exc), isinstance(exc, StaleTicketError)
                    continue
                found = Opened(
                    ticket.expires,
                    (ticket.issued + ticket.expires) / 2 if cookie.sliding else math.inf,
                    Principal(ticket.name, AUTH_TYPE, frozenset(ticket.roles)),
                    ticket,
                )
                if len(opened) >= _OPENED_MAX:
                    opened.clear()
                opened[value] = found
            elif found.expires <= now:
                opened.pop(value, None)
                reason, stale = f"expired {int(now - found.expires)} s ago", True
                continue
            return found
        if stale:
            log.info(
                "forms authentication: ticket for %s ignored: %s", loggable(request.path), reason
            )
        elif reason:
            note_failure(ctx, AUTH_TYPE, f"ticket refused: {reason}")
        return None

    # -- SEND_RESPONSE -----------------------------------------------------------------

    @hook(Stage.SEND_RESPONSE, priority=Priority.HIGH)
    def send_response(self, ctx: Context) -> None:
        """A 401 becomes the login redirect; a pending ticket cookie goes out."""
        response = ctx.response
        if response.status == 401:
            self._to_login(ctx)
        items = ctx.items
        if _SET_COOKIE in items:
            response.headers.append((b"set-cookie", items.pop(_SET_COOKIE)))
            keep_private(response)

    def _to_login(self, ctx: Context) -> None:
        settings = ctx.section(FormsSection)
        if not (settings.enabled and settings.redirect_to_login):
            return
        request = ctx.request
        login = settings.login_url
        if login in (request.path, request.original_path):
            return  # the login page itself refused: a redirect would loop
        location = login
        target = request.raw_path + (b"?" + request.query if request.query else b"")
        if len(target) <= MAX_RETURN_URL and target.startswith(b"/"):
            location += "?ReturnUrl=" + quote(target, safe="/")
        response = ctx.response
        kept = [pair for pair in response.headers if pair[0] == b"set-cookie"]
        if response.streaming:
            # The application's body follows the head: only the head can change.
            response.remove_header(b"location")
        else:
            response.clear()
            response.headers = kept
            response.headers.append((b"content-type", b"text/html; charset=utf-8"))
            response.body = message_page("Sign in", "Sign in to see this page.")
        response.status = 302
        response.substatus = 0
        response.reason = None
        response.headers.append((b"location", location.encode("ascii")))
        response.headers.append((b"cache-control", b"no-store"))

    # -- the application's API (core.auth.FormsIssuer) ---------------------------------

    def sign_in(self, ctx: Context, name: str, roles: Sequence[str], persistent: bool) -> None:
        """Issue a ticket for ``name``; its cookie goes out with the response."""
        cookie = self.cookie
        assert cookie is not None and self._ring is not None  # provisioned
        if ctx.response.headers_sent:
            raise RuntimeError("the response has started: sign in before it starts")
        if cookie.secure and ctx.request.scheme != "https":
            raise RuntimeError("forms_authentication.require_ssl: sign in over HTTPS only")
        ticket = new_ticket(name, roles, cookie.lifetime, persistent)
        ctx.items[_SET_COOKIE] = cookie.issue(self._ring().seal(ticket, cookie.name), ticket)
        # A session id from before the sign-in (perhaps planted) ends here.
        renew_session_id(ctx)

    def sign_out(self, ctx: Context) -> None:
        """Clear the ticket cookie with the response."""
        assert self.cookie is not None  # provisioned
        if ctx.response.headers_sent:
            raise RuntimeError("the response has started: sign out before it starts")
        ctx.items[_SET_COOKIE] = self.cookie.clear()
        if self._revocations is not None:
            self._revoke(ctx, self._revocations)

    def _revoke(self, ctx: Context, revocations: RevocationList) -> None:
        # Every ticket the request brought (up to _MAX_CANDIDATES cookies of the
        # name): their sign-ins end, whichever copy is presented next.
        cookie = self.cookie
        assert cookie is not None  # provisioned
        now = time.time()
        ring = self._current_ring()
        for value in cookie_values(ctx.request.headers, cookie.name_eq, _MAX_CANDIDATES):
            found = self._opened.get(value)
            try:
                ticket = found.ticket if found is not None else ring.open(value, cookie.name, now)
            except BadTicketError:
                continue
            if ticket.sign_in:
                # Renewals after this are refused, so no ticket of this sign-in
                # outlives one full lifetime from now.
                revocations.revoke(ticket.sign_in, now + (ticket.expires - ticket.issued))

    def redirect_url(self, ctx: Context) -> str:
        """The request's ``ReturnUrl`` when it stays on this site, else ``default_url``."""
        return _return_url(ctx.request) or ctx.section(FormsSection).default_url

    # -- the login and logout pages ----------------------------------------------------

    def execute(self, ctx: Context) -> Awaitable[None] | None:
        """Serve the login page (GET, or the POST of its form) or the logout page."""
        settings = ctx.section(FormsSection)
        request = ctx.request
        login = request.path == settings.login_url
        if request.method in ("GET", "HEAD"):
            user = ctx.user.name if ctx.user is not None else ""
            if login:
                body = login_page(
                    _form_action(request, settings.login_url),
                    signed_in=user,
                    logout_url=settings.logout_url,
                )
            else:
                body = logout_page(settings.logout_url, user)
            _answer(ctx, 200, body)
            return None
        if request.method != "POST":
            raise method_not_allowed(_VERBS)
        refused = _refuse_post(ctx, settings)
        if refused:
            return None
        if login:
            return self._sign_in_post(ctx, settings)
        self.sign_out(ctx)
        log.info("forms authentication: %s signed out", _who(ctx))
        _redirect(ctx, settings.login_url)
        return None

    async def _sign_in_post(self, ctx: Context, settings: FormsSection) -> None:
        form = await _read_form(ctx)
        if form is None:
            return
        request = ctx.request
        name = form.get("username", "")
        password = form.get("password", "")
        action = _form_action(request, settings.login_url)
        if not name or not password:
            _answer(
                ctx,
                200,
                login_page(action, error="Enter your user name and password.", user_name=name),
            )
            return
        logon = await self._check(ctx, name, password) if len(name) <= MAX_NAME else None
        if ctx.response.status >= 500:
            return  # too many at once (503), or the user store failed (500)
        if logon is None or not logon.ok:
            reason = logon.reason if logon is not None else "no such user"
            note_failure(ctx, AUTH_TYPE, f"user {name[:MAX_NAME]!r}: {reason}")
            _answer(
                ctx,
                200,
                login_page(action, error="The user name or password is incorrect.", user_name=name),
            )
            return
        self.sign_in(ctx, logon.name, sorted(logon.roles), False)
        ctx.user = Principal(logon.name, AUTH_TYPE, logon.roles)
        client = request.client
        log.info(
            "forms authentication: %s signed in from %s", logon.name, client[0] if client else "-"
        )
        _redirect(ctx, self.redirect_url(ctx))

    async def _check(self, ctx: Context, name: str, password: str) -> Logon | None:
        """The user store's answer, checked on the module's threads (bcrypt is slow
        on purpose). Answers 503 itself when :data:`MAX_CHECKS` are already
        waiting, 500 when the store cannot answer (both: None)."""
        users = self._users
        assert users is not None  # only then is this the login page's handler
        if self._checks >= MAX_CHECKS:
            if ctx.app.first_report("forms login checks full"):
                log.warning(
                    "forms authentication: %d sign-ins are being checked; more are "
                    "answered 503 until they are done",
                    MAX_CHECKS,
                )
            ctx.error_response(503, 0, "Service unavailable: too many sign-ins at once")
            ctx.response.headers.append((b"retry-after", b"1"))
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="forms-login")
        users.changed(time.monotonic())  # a stat at most once a second; read on the thread
        client = ctx.request.client
        self._checks += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, users.check, name, password, client[0] if client else None
            )
        except UserStoreError as exc:
            ctx.error_response(
                500, 0, "Internal server error", detail=f"forms_authentication.users_file: {exc}"
            )
            return None
        finally:
            self._checks -= 1

    def cleanup(self) -> None:
        """Let the check threads end once their current check is done."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _set_below_application(ctx: Context, key: str) -> bool:
    """True when ``forms_authentication.<key>`` for this URL comes from the
    ``web.toml`` of a folder below the application's root."""
    source = ctx.sections.origins.get(f"{FormsSection.key}.{key}", "")
    if os.path.basename(source).lower() != WEB_TOML:
        return False  # the server file (or one of its locations), or the default
    app = ctx.app
    return any(lvl.source == source and lvl.path != app.path for lvl in app.levels)


def _return_url(request: Request) -> str:
    """The request's ``ReturnUrl`` if it is a path on this site, else ``""``."""
    query = request.query
    if not query or b"ReturnUrl=" not in query:
        return ""
    found = parse_qs(query.decode("latin-1"), max_num_fields=20).get("ReturnUrl")
    if not found:
        return ""
    candidate = found[0]
    return candidate if is_local_url(candidate) and len(candidate) <= MAX_RETURN_URL else ""


def _form_action(request: Request, login_url: str) -> str:
    # The ReturnUrl travels in the form's action, so a failed attempt keeps it.
    target = _return_url(request)
    return login_url + "?ReturnUrl=" + quote(target, safe="/") if target else login_url


def _answer(ctx: Context, status: int, body: bytes) -> None:
    response = ctx.response
    response.clear()
    response.status = status
    response.headers.extend(PAGE_HEADERS)
    response.body = body


def _redirect(ctx: Context, location: str) -> None:
    # 303: the browser follows a POST's answer with a GET.
    _answer(ctx, 303, message_page("Redirecting", "Continue to " + location))
    ctx.response.headers.append((b"location", location.encode("ascii")))


def _who(ctx: Context) -> str:
    user = ctx.user
    return repr(user.name) if user is not None and user.name else "an anonymous user"


def _refuse_post(ctx: Context, settings: FormsSection) -> bool:
    """Answer (and True) a post to a login page that must not be served."""
    request = ctx.request
    if settings.require_ssl and request.scheme != "https":
        ctx.error_response(403, 4, "Forbidden: sign in over HTTPS")
        return True
    reason = _cross_site(request)
    if reason:
        note_failure(ctx, AUTH_TYPE, f"cross-site post refused ({reason})")
        _answer(ctx, 403, message_page("Refused", "This form must be sent from this site."))
        return True
    return False


def _cross_site(request: Request) -> str:
    """Why a post does not come from a page of this site, or ``""`` if it does.

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (current ones),
    else ``Origin`` (every browser on a POST), else ``Referer``. A client that
    sends none of them is no browser, and no browser can be made to send its
    cookies with it (cross-site request forgery needs a browser).
    """
    site = request.header(b"sec-fetch-site")
    if site is not None:
        return (
            "" if site in (b"same-origin", b"none") else f"Sec-Fetch-Site: {site.decode('latin-1')}"
        )
    ours = f"{request.scheme}://{request.host}".lower().encode("latin-1")
    origin = request.header(b"origin")
    if origin is not None:
        return "" if origin.lower() == ours else "another Origin"
    referer = request.header(b"referer")
    if referer is not None:
        lowered = referer.lower()
        if lowered == ours or lowered.startswith(ours + b"/"):
            return ""
        return "another Referer"
    return ""


async def _read_form(ctx: Context) -> dict[str, str] | None:
    """The posted form's fields (the first value of each), or None when answered:
    not urlencoded (415), too large (413), not UTF-8 (400)."""
    request = ctx.request
    kind = (request.header(b"content-type") or b"").partition(b";")[0].strip().lower()
    if kind != _FORM_TYPE:
        _answer(ctx, 415, message_page("Not a form", "Send the sign-in form as a browser does."))
        return None
    length = request.header(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        ctx.error_response(413, 0, "Request entity too large")
        return None
    data = b""
    while chunk := await request.body.read(MAX_FORM_BYTES + 1 - len(data)):
        data += chunk
        if len(data) > MAX_FORM_BYTES:
            ctx.error_response(413, 0, "Request entity too large")
            return None
    try:
        fields = parse_qs(
            data.decode("ascii"), max_num_fields=20, encoding="utf-8", errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        _answer(ctx, 400, message_page("Bad request", "The form could not be read."))
        return None
    return {key: values[0] for key, values in fields.items()}
