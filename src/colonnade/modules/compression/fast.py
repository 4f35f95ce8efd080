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

    def send_response(ctx: Context) -> None:
        response = ctx.response
        if response.source is None and response.file is None and response.status != 304:
            sections = ctx.sections
            compressed = dynamic.get(sections)
            if compressed is None:
                compressed = bool(policy(ctx.section(CompressionSection)).dynamic)
                if len(dynamic) >= KNOWN_MAX:
                    dynamic.clear()
                dynamic[sections] = compressed
            if not compressed:
                return
        full(ctx)

    return send_response
