"""What the authentication and authorization modules share.

Those modules never import each other; they meet here and in :class:`Context`:

- An authentication scheme (Basic, forms, bearer, Negotiate) runs at
  AUTHENTICATE_REQUEST. It looks only at credentials of its own scheme
  (:func:`authorization`), and either sets ``ctx.user`` to a
  :class:`~colonnade.core.principal.Principal`, or refuses credentials that are
  present but wrong with :func:`refuse_credentials` (401.1), or does nothing.
- Anonymous authentication runs last in that stage: no user yet means the
  anonymous user where it is enabled, else 401.2 (:func:`refuse_access`).
- Role providers add roles at POST_AUTHENTICATE_REQUEST
  (``ctx.user = ctx.user._replace(roles=...)``).
- Authorization modules judge ``ctx.user`` at AUTHORIZE_REQUEST: 401.2 for an
  anonymous user they refuse (:func:`refuse_access`), 403 for an
  authenticated one. ``ctx.user`` None (no authentication module is enabled)
  counts as anonymous. A scheme that serves its own login page marks requests
  for it with ``ctx.items[LOGIN_PAGE] = True``, so that authorization lets them
  through (IIS ``bypassLoginPages``).
- Every enabled challenge-based scheme adds its ``WWW-Authenticate`` header to any
  401 response at SEND_RESPONSE, whoever produced the 401, as IIS's modules do: so
  a 401 carries one challenge per scheme enabled for its URL. A scheme hooks
  SEND_RESPONSE with :data:`CHALLENGE_PRIORITY` and adds its header with
  :func:`add_challenge`, so that the challenges go out in the order of the
  modules in the configuration (a browser uses the first one it supports).
- Forms authentication marks its login and logout pages with ``LOGIN_PAGE``
  (for its logout page too: signing out needs no user). It publishes itself to
  applications as ``ctx.items[FORMS]`` (a :class:`FormsIssuer`), which
  ``colonnade.auth`` (the applications' API) calls.
- A scheme that refuses credentials without a 401 (a login form answering its
  own page again) calls :func:`note_failure`, so the log line and
  ``ctx.items[AUTH_FAILURE]`` look the same whoever refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from colonnade.core.context import Context
from colonnade.core.module import Priority
from colonnade.core.request import Request

log = logging.getLogger("colonnade.auth")

#: The longest ``Authorization`` value read. Longer ones are refused by the scheme
#: they name (a Kerberos ticket with a large PAC is the biggest honest one: ~12 KiB).
MAX_AUTHORIZATION = 16 * 1024

#: ``ctx.items`` key: why the credentials were refused (a short reason, never the
#: credentials). Set with the 401.1; read by the access log and by modules that
#: count failures per client (dynamic IP restrictions).
AUTH_FAILURE = "auth.failure"

#: The SEND_RESPONSE priority of the hooks that add challenges: one priority for
#: all, so that their order is the configuration's. SEND_RESPONSE runs in reverse
#: priority order, so LOW comes before ``http.custom_headers`` (MEDIUM: its
#: ``remove`` still applies to a challenge) and ``http.custom_errors`` (FIRST,
#: which keeps ``WWW-Authenticate`` when it replaces a page).
CHALLENGE_PRIORITY = Priority.LOW

_CHALLENGE = b"www-authenticate"

#: ``ctx.items`` key: True for a request to a scheme's own login page (forms
#: authentication), which URL authorization lets through where its
#: ``bypass_login_pages`` is on: a login page denied to anonymous users could never
#: be reached.
LOGIN_PAGE = "auth.login_page"

#: The page's message of a 401.2 (IIS's words).
ACCESS_DENIED_BY_CONFIGURATION = "Unauthorized: access is denied due to server configuration"

#: ``ctx.items`` key: the :class:`FormsIssuer` of forms authentication where it is
#: enabled for the request's URL (what ``colonnade.auth`` calls).
FORMS = "auth.forms"


class FormsIssuer(Protocol):
    """Forms authentication as an application reaches it (through ``colonnade.auth``)."""

    def sign_in(self, ctx: Context, name: str, roles: Sequence[str], persistent: bool) -> None:
        """Issue a ticket for ``name``: its cookie goes out with ``ctx``'s response."""

    def sign_out(self, ctx: Context) -> None:
        """Clear the ticket cookie with ``ctx``'s response."""

    def redirect_url(self, ctx: Context) -> str:
        """Where to go after signing in: the request's ``ReturnUrl`` when it stays
        on this site, else the configured default URL."""


class Authorization(NamedTuple):
    """The request's ``Authorization`` header, split once."""

    scheme: str
    """The scheme, lower case (``basic``, ``bearer``, ``negotiate``)."""
    credentials: bytes
    """What follows the scheme, without surrounding whitespace; ``b""`` when the
    header was longer than :data:`MAX_AUTHORIZATION` (the scheme refuses it)."""


def authorization(request: Request) -> Authorization | None:
    """The ``Authorization`` header split into scheme and credentials, or None.

    None when there is no such header or it has no scheme. The scheme is
    case-insensitive (RFC 9110 11.1). Several ``Authorization`` headers are not
    valid HTTP; the first one counts.
    """
    value = request.header(b"authorization")
    return parse_authorization(value) if value else None


def parse_authorization(value: bytes) -> Authorization | None:
    """An ``Authorization`` header's value split as :func:`authorization` does
    (for a scheme that read the header itself), or None."""
    value = value.strip()
    scheme, _, credentials = value.partition(b" ")
    if not scheme or not scheme.isascii():
        return None
    if len(value) > MAX_AUTHORIZATION:
        credentials = b""
    return Authorization(scheme.decode("ascii").lower(), credentials.strip())


#: What a log line must not carry raw: C0 and C1 controls, line and paragraph
#: separators. A decoded request path may hold any of them (``%0A``).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def loggable(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\x1b``): a client's
    path (or name) in a log line cannot start a line of its own, forging one."""
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def refuse_credentials(ctx: Context, scheme: str, reason: str) -> None:
    """Answer 401.1 (logon failed) for credentials of ``scheme`` that are wrong.

    ``reason`` is logged and kept in ``ctx.items[AUTH_FAILURE]``; it must never
    contain the credentials. The client sees only that the logon failed; the
    challenges are added at SEND_RESPONSE by every enabled scheme.
    """
    note_failure(ctx, scheme, reason)
    ctx.error_response(401, 1, "Unauthorized: logon failed")


def note_failure(ctx: Context, scheme: str, reason: str) -> None:
    """Log a failed logon of ``scheme`` and keep ``reason`` in
    ``ctx.items[AUTH_FAILURE]``, without answering: for a scheme that answers
    itself (a login form shown again). ``reason`` never holds the credentials."""
    client = ctx.request.client
    log.warning(
        "%s logon failed for %s from %s: %s",
        scheme,
        loggable(ctx.request.path),
        client[0] if client is not None else "-",
        loggable(reason),
    )
    ctx.items[AUTH_FAILURE] = reason


def refuse_access(ctx: Context, detail: str = "") -> None:
    """Answer 401.2 (logon failed due to server configuration): an anonymous
    request where anonymous access is not allowed, or a request the
    authorization rules refuse.

    ``detail`` says which setting refused it, for the administrator (logged once,
    shown to local clients). The challenges of the enabled schemes are added at
    SEND_RESPONSE.
    """
    ctx.error_response(401, 2, ACCESS_DENIED_BY_CONFIGURATION, detail)


def add_challenge(ctx: Context, challenge: bytes) -> None:
    """Add ``WWW-Authenticate: challenge`` to the response (a scheme's SEND_RESPONSE
    hook, on a 401).

    SEND_RESPONSE hooks run in reverse configuration order, so the header goes in
    before the challenges already there: the response then lists them in the
    order of the modules in the configuration, as IIS lists its providers.
    """
    # A new list, not an insertion: a handler may share the list it set between
    # responses (a 401 is rare enough for the copy not to matter).
    response = ctx.response
    headers = response.headers
    for i, (name, _) in enumerate(headers):
        if name == _CHALLENGE:
            response.headers = [*headers[:i], (_CHALLENGE, challenge), *headers[i:]]
            return
    response.headers = [*headers, (_CHALLENGE, challenge)]
