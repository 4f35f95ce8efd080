"""The access log's line formatter (modules/http_logging): a request from the
client's bytes, logged in W3C and in JSON with every field.

Properties: formatting raises nothing; a W3C line is one line of exactly one
value per field, nothing unprintable and no space inside a value (a client cannot forge
fields or lines); a JSON line is one JSON object with every field's key.
"""

from __future__ import annotations

import json
import os

from colonnade.core.app import Application, Level
from colonnade.core.context import Context
from colonnade.modules.http_logging.compiler import compiled_line
from colonnade.modules.http_logging.fields import FIELDS, json_key
from colonnade.modules.http_logging.json_lines import JsonWriter
from colonnade.modules.http_logging.sink import Sink
from colonnade.modules.http_logging.w3c import W3cWriter
from colonnade.testing.client import RecordingWriter
from tests.fuzz.requests import request_from

_NAMES = (*FIELDS, "cs(User-Agent)", "cs(Referer)", "cs(Cookie)", "sc(Content-Type)")
_APP = Application(site="fuzz site", path="/", root=os.getcwd(), levels=(Level("/", {}, "<fuzz>"),))
_READ, _WRITE = os.pipe()
_SINK = Sink("fuzz", _WRITE)
_W3C = compiled_line(_NAMES, W3cWriter, _SINK)
_JSON = compiled_line(_NAMES, JsonWriter, _SINK)


async def _no_hooks(ctx: Context) -> None:
    return None


def _logged(ctx: Context, line: object) -> list[str]:
    # One capture, then the sink renders and writes it (no event loop: at once).
    line.capture(ctx)  # type: ignore[attr-defined]
    _SINK.flush()
    text = os.read(_READ, 1 << 20).decode("utf-8")
    # Lines end with LF (not str.splitlines: NEL, U+2028 and the like may stand
    # unescaped inside a JSON string, as RFC 8259 allows).
    return [row for row in text.split("\n")[:-1] if not row.startswith("#")]


def one_input(data: bytes) -> None:
    """``data[1:]`` as a client's request; ``data[0]`` the response status."""
    if not data:
        return
    request = request_from(data[1:])
    if request is None:
        return
    ctx = Context(request, _APP, RecordingWriter(), _no_hooks)
    ctx.response.status = 100 + data[0] * 2
    ctx.response.headers.append((b"content-type", data[1:40]))
    rows = _logged(ctx, _W3C)
    assert len(rows) == 1, rows
    assert len(rows[0].split(" ")) == len(_NAMES), rows[0]
    assert rows[0].rstrip("\r").isprintable(), rows[0]
    rows = _logged(ctx, _JSON)
    assert len(rows) == 1, rows
    record = json.loads(rows[0])
    assert set(record) == {json_key(name) for name in _NAMES}, record
