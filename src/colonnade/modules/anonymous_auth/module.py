"""Anonymous authentication (IIS AnonymousAuthenticationModule).

At AUTHENTICATE_REQUEST, priority LAST, after every scheme: a request without a
user becomes the anonymous user (``ANONYMOUS``) where anonymous authentication is
enabled for its URL, and is answered 401.2 where it is not; the schemes add their
challenges to that 401 at SEND_RESPONSE (``colonnade.core.auth``).

A remap after authentication (a default document: ``/docs/`` served as
``/docs/index.html``) is judged again before the handler runs, as IIS
authenticates the child request again: anonymous access switched off for the
document is not bypassed through its folder's URL.
"""

from __future__ import annotations

from colonnade.core.auth import refuse_access
from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.principal import ANONYMOUS
from colonnade.core.stages import Stage
from colonnade.modules.anonymous_auth.config import AnonymousAuthenticationSection

_DETAIL = (
    "anonymous_authentication.enabled = false for this URL, and no authentication "
    "scheme authenticated the request"
)


class AnonymousAuthentication(Module):
    """``auth.anonymous``: the anonymous user where enabled, else 401.2."""

    id = "auth.anonymous"
    section = AnonymousAuthenticationSection

    @hook(Stage.AUTHENTICATE_REQUEST, priority=Priority.LAST)
    def authenticate_request(self, ctx: Context) -> Outcome:
        """No user yet: anonymous, or 401.2."""
        if ctx.user is not None:
            return CONTINUE
        if ctx.sections.get(AnonymousAuthenticationSection).enabled:
            ctx.user = ANONYMOUS
            return CONTINUE
        refuse_access(ctx, _DETAIL)
        return FINISH

    @hook(Stage.PRE_EXECUTE_REQUEST_HANDLER, priority=Priority.FIRST)
    def pre_execute_request_handler(self, ctx: Context) -> Outcome:
        """Judge an anonymous request again where a remap changed its URL."""
        request = ctx.request
        if request.path == request.original_path or ctx.user is not ANONYMOUS:
            return CONTINUE
        if ctx.sections.get(AnonymousAuthenticationSection).enabled:
            return CONTINUE
        refuse_access(ctx, _DETAIL)
        return FINISH
