"""The FastCGI handler's PARAMS: made without the variables' dict (the common case)
they are the same bytes as ``core.cgienv.cgi_variables`` encoded with the
configured params after them, for a table of requests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.app import Application
from colonnade.core.cgienv import Script, cgi_variables
from colonnade.core.context import Context
from colonnade.core.principal import Principal
from colonnade.core.request import Request
from colonnade.handlers.fastcgi import records
from colonnade.handlers.fastcgi.config import FastCgiApplication
from colonnade.handlers.fastcgi.handler import FastCgiHandler, _App, _tail
from colonnade.handlers.fastcgi.pool import Pool

LONG = "x" * 300  # past a one-byte length

REQUESTS: list[dict[str, Any]] = [
    {},
    {"query": b"a=1&b=%20", "target": b"/app/index.php?a=1&b=%20"},
    {"method": "POST", "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]},
    {"version": "1.0", "host": "example.com:8080", "server": ("10.0.0.1", 8080)},
    {"version": "2", "scheme": "https", "host": "[::1]:443", "client": ("::1", 5000)},
    {"client": ("192.0.2.7", 61000), "server": ("192.0.2.1", 80), "host": "h"},
    {
        "headers": [
            (b"host", b"h"),
            (b"cookie", b"a=1"),
            (b"x-thing", b"1"),
            (b"cookie", b"b=2"),
            (b"x-thing", b"2"),
            (b"proxy", b"http://evil"),
            (b"x_real_ip", b"1.2.3.4"),
            (b"x-long", LONG.encode()),
        ]
    },
    {"query": LONG.encode(), "target": b"/app/index.php?" + LONG.encode()},
    {"user": Principal("j\u00f6rg", "Basic")},
    # PARAMS past one record (64 KiB): cut into records by the records module.
    {"headers": [(b"x-big", b"v" * 70000)]},
    {"user": Principal("", "anonymous")},
]

SCRIPTS = [
    Script("/app/index.php", "/srv/www/app/index.php", ""),
    Script("/app/index.php", "/srv/www/app/index.php", "/extra/caf\u00e9"),
    Script("/caf\u00e9.php", "/srv/www/caf\u00e9.php", ""),
    Script("/" + LONG + ".php", "/srv/www/" + LONG + ".php", "/" + LONG),
]


async def _pool(settings: FastCgiApplication) -> Pool:
    # A pool (made on a running loop, as the handler's are); unused but typed.
    return Pool("php", settings, "default")


def handler(tmp_path: Path, params: dict[str, str]) -> tuple[FastCgiHandler, Application]:
    app = Application(site="s", path="/", root=str(tmp_path / "www"))
    h = FastCgiHandler()
    settings = FastCgiApplication(address="unix:/run/php.sock", params=params)
    tail, replaced = _tail(settings)
    h.apps["php"] = _App(asyncio.run(_pool(settings)), None, tail, replaced)
    return h, app


def context(app: Application, script: Script, kw: dict[str, Any]) -> Context:
    kw = dict(kw)
    user = kw.pop("user", None)
    request = Request(kw.pop("method", "GET"), script.name + script.path_info, **kw)
    ctx = Context(request, app, writer=None, send_response=None)  # type: ignore[arg-type]
    ctx.user = user
    return ctx


def expected(ctx: Context, script: Script, h: FastCgiHandler, params: dict[str, str]) -> bytes:
    variables = cgi_variables(ctx, script, software=h.software)
    for name in params:
        variables.pop(name, None)
    encoded = records.encode_text_pairs(variables.items()) + h.apps["php"].tail
    return records.begin_request(1) + records.params_stream(1, encoded)


@pytest.mark.parametrize("params", [{}, {"PHP_VALUE": "x=1", "APP_ENV": "t\u00e9st"}])
@pytest.mark.parametrize("kw", REQUESTS)
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_same_bytes_as_the_variables(
    tmp_path: Path, params: dict[str, str], kw: dict[str, Any], script: Script
) -> None:
    h, app = handler(tmp_path, params)
    ctx = context(app, script, kw)
    made = h._request_head(ctx, script, h.apps["php"])
    # Without a body the end of STDIN follows, in the same bytes.
    assert made == expected(ctx, script, h, params) + records.stdin_end(1)


def test_replaced_variables_are_sent_once_with_the_configured_value(tmp_path: Path) -> None:
    params = {"SERVER_NAME": "configured", "HTTPS": "on"}
    h, app = handler(tmp_path, params)
    ctx = Context(Request("GET", "/a.php", host="h"), app, writer=None, send_response=None)  # type: ignore[arg-type]
    made = h._request_head(ctx, Script("/a.php", "/srv/a.php", ""), h.apps["php"])
    reader = records.RecordReader()
    reader.receive(made)
    content = b""
    while (rec := reader.next_record()) is not None:
        if rec.type == records.PARAMS:
            content += rec.content
    pairs = records.decode_pairs(content)
    names = [n for n, _ in pairs]
    assert names.count(b"SERVER_NAME") == 1 and names.count(b"HTTPS") == 1
    assert dict(pairs)[b"SERVER_NAME"] == b"configured"


def test_one_handler_keeps_parts_but_every_request_gets_its_own_bytes(tmp_path: Path) -> None:
    # The script's and the connection's pairs are kept between requests: the
    # whole table through one handler, twice (the second time from what was
    # kept), gives every request the bytes of its own variables.
    h, app = handler(tmp_path, {})
    for _ in range(2):
        for script in SCRIPTS:
            for kw in REQUESTS:
                ctx = context(app, script, kw)
                made = h._request_head(ctx, script, h.apps["php"])
                assert made == expected(ctx, script, h, {}) + records.stdin_end(1)
    assert 0 < len(h.script_texts) <= len(SCRIPTS)
    assert 0 < len(h.connection_texts) <= len(REQUESTS)
