"""The BEGIN_REQUEST hook as the plan calls it, compiled by mypyc.

:func:`begin_request_hook` makes the callable the module puts in place of its
method (see ``core.module.Module``): a request with no body and no query whose raw
path passed the path rules before, under settings that set no other rule, is let
through here with no interpreted frame (what ``refuse`` would find, in one test);
every other request goes to the module's method, the full check.

Per effective settings (``ctx.sections``, one object per path shared by its
requests) the hook remembers the one thing it needs, the rules' set of raw paths
that passed (empty where the rules are not plain): a dict hit instead of four
attribute reads on interpreted objects.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from typing import Final

from colonnade.config.sections import SectionSet
from colonnade.core.context import Context
from colonnade.core.module import Outcome
from colonnade.core.request import EMPTY_BODY
from colonnade.modules.request_filtering.config import RequestFilteringSection

Hook = Callable[[Context], Outcome | None]

#: Effective settings remembered, at most (then it starts over): a bound, not a target.
KNOWN_MAX = 1024
_NOTHING_PASSES: frozenset[bytes] = frozenset()
#: The empty body, as a static of the compiled module (not a look-up in its globals
#: on every request).
_NO_BODY: Final = EMPTY_BODY


def begin_request_hook(full: Hook) -> Hook:
    """The hook: the common request decided here, every other one by ``full``."""
    known: dict[SectionSet, Set[bytes]] = {}
    # The last request's settings and what they let pass: most requests have the
    # settings of the one before (see http_logging's fast hook), an identity test.
    last: SectionSet | None = None
    last_clean: Set[bytes] = _NOTHING_PASSES

    def begin_request(ctx: Context) -> Outcome | None:
        nonlocal last, last_clean
        request = ctx.request
        sections = ctx.sections
        if sections is last:
            clean = last_clean
        else:
            found = known.get(sections)
            if found is None:
                rules = ctx.section(RequestFilteringSection).rules
                found = rules.clean_paths if rules.plain else _NOTHING_PASSES
                if len(known) >= KNOWN_MAX:
                    known.clear()
                known[sections] = found
            clean = last_clean = found
            last = sections
        if request.body is _NO_BODY and not request.query and request.raw_path in clean:
            return None
        return full(ctx)

    return begin_request
