"""Compile a field list into a capture function and a renderer, like nginx's log formats.

``capture(ctx)`` runs for every request: it appends the line's raw values (the
request's path object, the header values asked for, the status, the elapsed
time...) to its sink's ``pending`` list and does nothing else. The list is flat,
``width`` values a line: no object per request stays alive until the write, so
the garbage collector, which runs after every few hundred surviving allocations
and then walks all of them, has nothing of the log's to count or walk (a tuple per
line doubled its work).

``render(batch)`` turns a whole batch into text when the sink writes: one tight
loop over ``width``-sized slices, so the formatting, the memoised escapes and the
header lookups run hot in the caches instead of cold between two requests.

Both are generated from the field table (:mod:`.fields`) and a writer
(:mod:`.w3c`, :mod:`.json_lines`): only the table's fixed expressions and
generated names go into the source; header names are bound as names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from colonnade.core.context import Context
from colonnade.modules.http_logging.fields import CAPTURE_NAMES, RENDER_NAMES, Field, field

if TYPE_CHECKING:
    from colonnade.modules.http_logging.sink import Sink

#: Appends one request's values to its sink.
Capture = Callable[[Context], None]
#: Turns captured values (a flat list, ``width`` per line) into text, one line each.
Render = Callable[[list[Any]], str]


class Writer(Protocol):
    """A log format: how the table's values are rendered, and its directives."""

    @staticmethod
    def value(field: Field) -> str:
        """The field's render expression for this format."""
        ...

    @staticmethod
    def names() -> dict[str, Any]:
        """Names the render expressions use, fresh for each compiled field list."""
        ...

    @staticmethod
    def render_source(lines: str, values: Sequence[str], fields: Sequence[Field]) -> str:
        """Source of ``render(batch)``; ``lines`` is the for-clause over the batch."""
        ...

    @staticmethod
    def directive(fields: Sequence[str]) -> str | None:
        """The ``#Fields`` line the format needs in force, if any."""
        ...

    @staticmethod
    def header(directive: str) -> str:
        """The block that puts ``directive`` in force, as of now."""
        ...


class CompiledLine(NamedTuple):
    """A field list compiled for one writer and one sink."""

    capture: Capture  # per request: the raw values, appended to the sink's pending list
    render: Render  # per batch: the pending values as text
    width: int  # values per line in the pending list
    directive: str | None  # the #Fields line these lines need in force (W3C)
    writer: Writer  # the format (its ``header`` puts ``directive`` in force)


# Local names the capture code may use, in the order they are set up: each is set
# up only when a capture expression (or a later set-up) uses it.
_PRELUDE = (
    ("clock", "if now() >= clock.next:\n        clock.refresh(now())"),
    ("r", "r = ctx.request"),
    ("resp", "resp = ctx.response"),
    ("hd", "hd = dict(r.headers)"),  # one C-level pass, only for cs(...) fields
)


def _prelude(captures: Sequence[str]) -> str:
    used = " ".join(captures)
    statements: list[str] = []
    for name, statement in reversed(_PRELUDE):
        if re.search(rf"\b{name}\b", used):
            statements.insert(0, f"    {statement}\n")
            used += " " + statement
    return "".join(statements)


def compiled_line(
    fields: tuple[str, ...],
    writer: Writer,
    sink: Sink,
    build: Callable[[tuple[str, ...], Writer, Sink], CompiledLine] | None = None,
) -> CompiledLine:
    """The compiled line for ``fields`` in ``writer``'s format, writing into ``sink``.

    One per field list, format and sink, shared by every module instance writing
    there: their lines form one batch. ``build`` makes it instead of the generated
    code (the compiled default W3C line, :mod:`.w3cline`).
    """
    key = (writer, fields)
    line = sink.compiled.get(key)
    if line is None:
        line = sink.compiled[key] = (build or generated_line)(fields, writer, sink)
    return line


def generated_line(names: tuple[str, ...], writer: Writer, sink: Sink) -> CompiledLine:
    """The generated capture and renderer of ``names`` (any field list, any writer)."""
    fields = [field(name) for name in names]
    namespace: dict[str, Any] = {
        **CAPTURE_NAMES,
        **RENDER_NAMES,
        **writer.names(),
        "now": time.time,
        "sink": sink,
        "pending": sink.pending,
    }
    captures: list[str] = []  # capture expressions, deduplicated; slot k is "c{k}"

    def slot(expr: str) -> str:
        if expr not in captures:
            captures.append(expr)
        return f"c{captures.index(expr)}"

    values = []
    for i, f in enumerate(fields):
        if f.arg is not None:
            namespace[f"a{i}"] = f.arg
        text = writer.value(f)
        for k, expr in enumerate(f.capture):
            text = text.replace("{" + str(k) + "}", slot(expr.replace("{arg}", f"a{i}")))
        values.append(text)
    if not captures:
        slot("None")  # a line of constants still takes one value: the count of lines
    namespace["width"] = width = len(captures)
    # Tuples written "(a, b, )": valid for any count.
    captured = "(" + "".join(f"{expr}, " for expr in captures) + ")"
    slots = "(" + "".join(f"c{k}, " for k in range(width)) + ")"
    source = (
        "def capture(ctx):\n"
        "    if sink.render is not render:\n"
        "        sink.switch(line)  # another field list wrote here meanwhile\n"
        + _prelude(captures)
        + f"    pending.extend({captured})\n"
        "    if len(pending) >= sink.max_pending:\n"
        "        sink.flush()\n"
        "    elif sink.timer is None:\n"
        "        sink.schedule()\n"
        "\n" + writer.render_source(f"for {slots} in zip(*[iter(batch)] * width)", values, fields)
    )
    exec(compile(source, "<colonnade access log format>", "exec"), namespace)
    line = CompiledLine(
        namespace["capture"], namespace["render"], width, writer.directive(names), writer
    )
    namespace["line"] = line
    return line
