"""URL authorization (IIS UrlAuthorizationModule) at AUTHORIZE_REQUEST.

Per request: one attribute read where everyone is allowed (the default policy
compiles to None); otherwise the deny rules, then the allow rules, each a few set
lookups (:class:`~colonnade.modules.url_authorization.config.Policy`).

A remap after authorization (the default document's, at
POST_MAP_REQUEST_HANDLER) changes the URL the handler serves; the rules for that
final URL are checked again before the handler runs (PRE_EXECUTE_REQUEST_HANDLER,
priority FIRST), as IIS authorizes the child request. A request that was not
remapped pays one string comparison for it.
"""

from __future__ import annotations

from colonnade.core.auth import LOGIN_PAGE, refuse_access
from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.modules.url_authorization.config import Policy, UrlAuthorizationSection


class UrlAuthorization(Module):
    """``authz.url``: allow and deny rules by user, role and verb."""

    id = "authz.url"
    section = UrlAuthorizationSection

    @hook(Stage.AUTHORIZE_REQUEST)
    def authorize_request(self, ctx: Context) -> Outcome:
        """Refuse the request unless the rules for its URL allow it."""
        section = ctx.sections.get(UrlAuthorizationSection)
        policy = section.policy
        if policy is None:
            return CONTINUE
        # The common case inline: a verdict kept for this user and method.
        try:
            why = policy.verdicts.get((ctx.user, ctx.request.method), _UNKNOWN)
        except TypeError:  # a principal a module made with unhashable roles
            why = _UNKNOWN
        if why is None:
            return CONTINUE
        return _judge(ctx, section, policy)

    @hook(Stage.PRE_EXECUTE_REQUEST_HANDLER, priority=Priority.FIRST)
    def pre_execute_request_handler(self, ctx: Context) -> Outcome:
        """Judge a remapped request again, for the URL its handler serves."""
        request = ctx.request
        if request.path == request.original_path:
            return CONTINUE
        section = ctx.sections.get(UrlAuthorizationSection)
        policy = section.policy
        if policy is None:
            return CONTINUE
        return _judge(ctx, section, policy)


#: Not a verdict: ``Policy.verdicts`` has none for the key.
_UNKNOWN = ""


def _judge(ctx: Context, section: UrlAuthorizationSection, policy: Policy) -> Outcome:
    user = ctx.user
    why = policy.refusal(user, ctx.request.method)
    if why is None:
        return CONTINUE
    if section.bypass_login_pages and ctx.items.get(LOGIN_PAGE) is True:
        return CONTINUE
    if user is None or not user.name or section.authenticated_status == 401:
        refuse_access(ctx, why)
    else:
        ctx.error_response(403, 0, "Forbidden: access is denied", why)
    return FINISH
