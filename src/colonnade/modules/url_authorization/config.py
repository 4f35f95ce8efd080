"""``[url_authorization]``: allow and deny rules by user, role and verb.

The rules of every level (server, locations, ``web.toml`` files) are one merged
list; each effective section compiles it once into a :class:`Policy`
(:attr:`UrlAuthorizationSection.policy`), so the per-request work is a few set
lookups, and none at all where everyone is allowed (the default).
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section
from colonnade.core.principal import Principal, PrincipalName

#: An HTTP token (RFC 9110 ``tchar``): a method.
Verb = Annotated[
    str,
    Meta(
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="an HTTP method such as 'GET' (an HTTP token)",
    ),
]

#: ``users`` entry: every request, anonymous ones included.
EVERYONE = "*"
#: ``users`` entry: anonymous requests only.
ANONYMOUS_USERS = "?"


class Rule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One ``url_authorization.rules`` entry (IIS ``<add accessType=...>``)."""

    access: Literal["allow", "deny"]
    """`allow` or `deny`."""
    users: list[PrincipalName] = []
    """User names; `*` is everyone (anonymous included), `?` anonymous requests."""
    roles: list[PrincipalName] = []
    """Roles: the rule applies to a user who has any of them."""
    verbs: list[Verb] = []
    """Methods the rule applies to (empty or `*`: all). Case-insensitive; `GET`
    covers `HEAD` too."""

    def __post_init__(self) -> None:
        if not self.users and not self.roles:
            raise ValueError(
                f"an {self.access} rule applies to nobody without users or roles "
                "(users = ['*'] is everyone, ['?'] anonymous requests)"
            )

    def describe(self) -> str:
        """The rule as an administrator wrote it, for error details."""
        parts = [f"access = {self.access!r}"]
        for name in ("users", "roles", "verbs"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name} = {value!r}")
        return "{ " + ", ".join(parts) + " }"


class _Matcher:
    """A rule compiled: who and which methods it applies to."""

    __slots__ = ("anonymous", "detail", "everyone", "roles", "users", "verbs")

    def __init__(self, rule: Rule) -> None:
        self.everyone = EVERYONE in rule.users
        self.anonymous = ANONYMOUS_USERS in rule.users
        self.users = frozenset(u for u in rule.users if u not in (EVERYONE, ANONYMOUS_USERS))
        self.roles = frozenset(rule.roles)
        verbs = {v.upper() for v in rule.verbs}
        if "GET" in verbs:
            verbs.add("HEAD")  # a HEAD is a GET without the body: the same resource
        # None: every method ("*" as in handler mappings, or none listed).
        self.verbs = None if not verbs or "*" in verbs else frozenset(verbs)
        self.detail = rule.describe()

    def applies(self, user: Principal | None, method: str) -> bool:
        """True if the rule covers ``user`` (None: anonymous) asking with ``method``."""
        if self.verbs is not None and method not in self.verbs:
            return False
        if self.everyone:
            return True
        if user is None or not user.name:
            return self.anonymous
        return user.name in self.users or not self.roles.isdisjoint(user.roles)


#: Verdicts a policy keeps (user and method pairs) before it starts over.
_VERDICTS_MAX = 4096


class Policy:
    """The merged rules in IIS's native order: any matching deny rule refuses;
    else any matching allow rule grants; else the request is refused.

    IIS checks the deny rules of every level first (parents before children, in
    the order written), then the allow rules in the same order; as any match
    decides, the order changes only which rule is named in the detail.
    """

    __slots__ = ("allow", "deny", "verdicts")

    def __init__(self, rules: list[Rule]) -> None:
        self.deny = tuple(_Matcher(r) for r in rules if r.access == "deny")
        self.allow = tuple(_Matcher(r) for r in rules if r.access == "allow")
        # The verdict depends on the user (name, roles) and the method alone: kept,
        # so a returning user costs one dict lookup, not a walk over the rules.
        self.verdicts: dict[tuple[Principal | None, str], str | None] = {}

    def refusal(self, user: Principal | None, method: str) -> str | None:
        """None if ``user`` may ``method`` here, else why not (for the detail)."""
        key = (user, method)
        verdicts = self.verdicts
        try:
            return verdicts[key]
        except KeyError:
            pass
        except TypeError:  # a principal a module made with unhashable roles
            return self._judge(user, method)
        why = self._judge(user, method)
        if len(verdicts) >= _VERDICTS_MAX:
            verdicts.clear()  # bounded: methods are the client's choice
        verdicts[key] = why
        return why

    def _judge(self, user: Principal | None, method: str) -> str | None:
        method = method.upper()
        for rule in self.deny:
            if rule.applies(user, method):
                return f"refused by the url_authorization rule {rule.detail}"
        for rule in self.allow:
            if rule.applies(user, method):
                return None
        # Neither the method nor the user name: a client choosing them would make
        # every detail new, and each is logged once.
        who = "anonymous requests" if user is None or not user.name else "this user"
        return f"no url_authorization rule allows {who} here (with this method)"


def _everyone_allowed(rules: list[Rule]) -> bool:
    return all(r.access == "allow" for r in rules) and any(
        EVERYONE in r.users and (not r.verbs or "*" in r.verbs) for r in rules
    )


class UrlAuthorizationSection(Section, frozen=True, dict=True):
    """URL authorization (IIS `system.webServer/security/authorization`), at
    AUTHORIZE_REQUEST: allow and deny rules by user, role and method, for every
    kind of content (static files, listings, WSGI and ASGI applications).

    The rules of every level apply together, evaluated as IIS's native module
    does: a request any **deny** rule matches is refused, whatever allows it;
    otherwise one that an **allow** rule matches is served; otherwise it is
    refused. So a deeper level (a location, a `web.toml`) cannot allow what a
    level above denies, unless it removes or replaces the inherited rules. A
    refused anonymous request is answered 401.2 (with the challenges of the
    enabled schemes: the client is asked to sign in), a refused authenticated
    one 403 (`authenticated_status`).

    In a location or a `web.toml`, `rules = { add = [...] }` adds rules to the
    inherited ones (IIS's `<add>`); `remove = [{ ... }]` drops an inherited rule
    written the same way; a plain list replaces them all (IIS's `<clear/>`, then
    `<add>`). `[lock] url_authorization = "deny"` (or `"url_authorization.rules"`)
    keeps `web.toml` files from changing the rules at all.

    A remapped request (a default document: `/docs/` served as
    `/docs/index.html`) is judged again for the final URL before its handler runs,
    as IIS authorizes the child request.
    """

    key = "url_authorization"

    rules: list[Rule] = msgspec.field(
        default_factory=lambda: [Rule(access="allow", users=[EVERYONE])]
    )
    """Tables with `access` (`allow` or `deny`), `users` (names; `*` everyone,
    `?` anonymous requests), `roles` (the rule applies to a user with any of them;
    roles come from role providers such as `auth.roles`), and `verbs` (methods;
    empty or `*`: all; `GET` covers `HEAD`). A rule names users or roles or both. Names
    are matched exactly (Linux user and group names are case-sensitive), methods
    ignoring case. The default is IIS's stock server rule, everyone allowed:
    `[{ access = "allow", users = ["*"] }]`."""
    authenticated_status: Literal[401, 403] = 403
    """The answer to an authenticated user the rules refuse: 403, or 401 (IIS's
    own answer, 401.2: a browser then asks for other credentials). An anonymous
    request is always answered 401.2."""
    bypass_login_pages: bool = True
    """Let requests for an authentication scheme's own login page through (forms
    authentication marks them), whatever the rules say: a login page denied to
    anonymous users could never be reached (IIS `bypassLoginPages`)."""

    @cached_property
    def policy(self) -> Policy | None:
        """The compiled rules; None where everyone may do everything (nothing to check)."""
        if _everyone_allowed(self.rules):
            return None
        return Policy(self.rules)
