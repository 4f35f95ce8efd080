"""The SEND_RESPONSE hook as the plan calls it, compiled by mypyc.

:func:`send_response_hook` makes the callable the module puts in place of its
method (see ``core.module.Module``): application output where only static files
are compressed (the default) is left alone here with no interpreted frame (what
the module's checks would decide, in one test); so is a static file's 200 that
static compression leaves alone (off, the file under ``min_size``, or a type not
to compress: the module's first checks, none of which changes anything on its
way out). Every other response goes to the module's method. What the settings
say (application output compressed or not, static files compressed or not, the
minimum size, the types) is remembered per effective settings (``ctx.sections``):
a dict hit.
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


class _Said:
    """What one effective ``[compression]`` section says for the checks here."""

    __slots__ = ("_match", "_types", "dynamic", "min_size", "static")

    def __init__(self, policy: Any) -> None:
        self.dynamic = bool(policy.dynamic)
        self.static = bool(policy.static)
        self.min_size: int = policy.min_size
        self._match: Callable[[bytes], bool] = policy.types.match
        #: ``Content-Type`` values and whether they name a compressible type (the
        #: policy's own answer, kept here: its method is an interpreted call).
        self._types: dict[bytes, bool] = {}

    def compressible(self, content_type: bytes) -> bool:
        """Whether ``content_type`` names a type the section compresses."""
        found = self._types.get(content_type)
        if found is None:
            found = self._match(content_type)
            if len(self._types) >= KNOWN_MAX:
                self._types.clear()
            self._types[content_type] = found
        return found


def send_response_hook(policy: Callable[[CompressionSection], Any], full: Hook) -> Hook:
    """The hook: the common response decided here, every other one by ``full``.

    ``policy`` is the module's compiled policy of a section (its ``PerSection``'s
    ``get``)."""
    known: dict[SectionSet, _Said] = {}
    # The last response's settings and what they say: most responses have the
    # settings of the one before (see http_logging's fast hook), an identity test.
    last: SectionSet | None = None
    last_said: _Said | None = None

    def send_response(ctx: Context) -> None:
        nonlocal last, last_said
        response = ctx.response
        sections = ctx.sections
        if sections is last and last_said is not None:
            said = last_said
        else:
            found = known.get(sections)
            if found is None:
                found = _Said(policy(ctx.section(CompressionSection)))
                if len(known) >= KNOWN_MAX:
                    known.clear()
                known[sections] = found
            said = last_said = found
            last = sections
        file = response.file
        source = response.source
        if file is None and source is None:
            if response.status != 304 and not said.dynamic:
                return
        elif response.status == 200:
            # A static file's 200 (Compression.send_response's first checks, in
            # its order): static compression off, a file too small for it.
            if file is not None:
                size = file.length
            else:
                size = len(response.body)
                if not size:
                    full(ctx)  # an empty body is no static file there
                    return
            if not said.static or size < said.min_size:
                return
            for name, value in response.headers:
                # A type it does not compress (a binary file, the common case):
                # the module's header walk returns there, or sooner, with nothing
                # done on any way out before it.
                if name == b"content-type" and not said.compressible(value):
                    return
        full(ctx)

    return send_response
