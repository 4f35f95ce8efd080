"""Forms authentication for applications: sign users in and out from WSGI or ASGI.

The counterpart of ASP.NET's ``FormsAuthentication.SetAuthCookie``,
``SignOut`` and ``GetRedirectUrl``, for an application that serves its own login
page while the server's forms authentication (module ``auth.forms``) protects
every kind of content. Each function takes the request as the application sees
it: the WSGI ``environ`` or the ASGI ``scope``. The cookie is added to the
response by the server, with the settings of ``[forms_authentication]`` and its
keys; the application never sees a key.

A Flask login view::

    from colonnade import auth

    @app.post("/login")
    def login():
        if check(request.form["user"], request.form["password"]):
            auth.set_auth_cookie(request.environ, request.form["user"], roles=["staff"])
            return redirect(auth.redirect_url(request.environ))
        return render_template("login.html", failed=True), 200

An ASGI application passes ``scope`` instead. Call these before the response
starts (before ``start_response`` is called, or before ``http.response.start`` is
sent): the cookie travels in the response head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from colonnade.core.auth import FORMS, FormsIssuer
from colonnade.core.context import Context

__all__ = ["redirect_url", "set_auth_cookie", "sign_out", "user_name"]


def set_auth_cookie(
    request: Mapping[str, Any], name: str, *, roles: Sequence[str] = (), persistent: bool = False
) -> None:
    """Sign ``name`` in: the response carries a new forms ticket cookie.

    ``roles`` travel in the ticket and become the user's roles on the following
    requests (for URL authorization and the application). ``persistent`` makes
    the cookie outlive the browser session (it carries ``Max-Age``). ``ValueError``
    for an empty or over-long name or role, or a ticket too large for a cookie;
    ``RuntimeError`` when forms authentication is not enabled for this URL, the
    response has started, or ``require_ssl`` is set and the request came over
    plain HTTP.
    """
    ctx, issuer = _forms(request)
    issuer.sign_in(ctx, name, list(roles), persistent)


def sign_out(request: Mapping[str, Any]) -> None:
    """Sign the user out: the response clears the ticket cookie."""
    ctx, issuer = _forms(request)
    issuer.sign_out(ctx)


def redirect_url(request: Mapping[str, Any]) -> str:
    """Where to send the user after signing in: the request's ``ReturnUrl`` (query
    string) when it is a path on this site, else ``forms_authentication.default_url``.
    Never another site: a ``ReturnUrl`` such as ``//evil.example`` or
    ``https://evil.example/`` is ignored."""
    ctx, issuer = _forms(request)
    return issuer.redirect_url(ctx)


def user_name(request: Mapping[str, Any]) -> str:
    """The name of the user the server authenticated for this request, ``""`` for
    an anonymous one (whatever the scheme: forms, Basic, ...)."""
    user = _context(request).user
    return user.name if user is not None else ""


def _context(request: Mapping[str, Any]) -> Context:
    found = request.get("colonnade.context")  # WSGI environ
    if found is None:  # ASGI scope
        found = request.get("extensions", {}).get("colonnade", {}).get("context")
    if not isinstance(found, Context):
        raise TypeError(
            "not a request served by Colonnade: pass the WSGI environ or the ASGI scope"
        )
    return found


def _forms(request: Mapping[str, Any]) -> tuple[Context, FormsIssuer]:
    ctx = _context(request)
    issuer: FormsIssuer | None = ctx.items.get(FORMS)
    if issuer is None:
        raise RuntimeError(
            "forms authentication is not enabled for this URL: list auth.forms in "
            "[server] modules and set [forms_authentication]"
        )
    return ctx, issuer
