"""The SEND_RESPONSE hook as the plan calls it, compiled by mypyc.

:func:`send_response_hook` makes the callable the module puts in place of its
method (see ``core.module.Module``): application output where only static files
are compressed (the default) is left alone here with no interpreted frame (what
the module's checks would decide, in one test); every other response goes to the
module's method. Whether application output is compressed is remembered per
effective settings (``ctx.sections``): a dict hit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from colonnade.config.sections import SectionSet
from colonnade.core.context import Context
from colonnade.modules.compression.config import CompressionSection

Hook = Callable[[Context], None]

#: Effective settings remembered, at most (then it starts over): a bound, not a target.
KNOWN_MAX = 1024


def send_response_hook(policy: Callable[[CompressionSection], Any], full: Hook) -> Hook:
    """The hook: the common response decided here, every other one by ``full``.

    ``policy`` is the module's compiled policy of a section (its ``PerSection``'s
    ``get``)."""
    dynamic: dict[SectionSet, bool] = {}
    # The last response's settings and their answer: most responses have the
    # settings of the one before (see http_logging's fast hook), an identity test.
    last: SectionSet | None = None
    last_compressed = True

    def send_response(ctx: Context) -> None:
        nonlocal last, last_compressed
        response = ctx.response
        if response.source is None and response.file is None and response.status != 304:
            sections = ctx.sections
            if sections is last:
                compressed = last_compressed
            else:
                found = dynamic.get(sections)
                if found is None:
                    found = bool(policy(ctx.section(CompressionSection)).dynamic)
                    if len(dynamic) >= KNOWN_MAX:
                        dynamic.clear()
                    dynamic[sections] = found
                compressed = last_compressed = found
                last = sections
            if not compressed:
                return
        full(ctx)

    return send_response
