"""The per-request objects the pure install fills in place of their ``__init__``
(core.context's Response, the ASGI handler's HttpCycle, the transport's Request and
Exchange, the engine's Context): the same values, slot by slot, as the constructor
gives. A field added to ``__init__`` and not to the inline copy fails here (an unset
slot, or another value)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from colonnade.core import context
from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.request import Request
from colonnade.core.response import Response
from colonnade.engine import engine as engine_module
from colonnade.handlers.asgi import handler as asgi_handler
from colonnade.handlers.asgi.handler import AsgiHandler, HttpCycle
from colonnade.testing import build_engine
from colonnade.transport import connection
from colonnade.transport.connection import Exchange, HttpConnection
from tests.builds import take_path
from tests.fuzz.served import LOOP, STATE, Wire

_UNSET = object()


def _slots(obj: object) -> dict[str, Any]:
    names = [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
    assert names, f"{type(obj).__name__} has no slots to compare"
    return {n: getattr(obj, n, _UNSET) for n in names}


def _context() -> Context:
    app = Application(site="s", path="/", root="/")
    return Context(Request("GET", "/a"), app, None, None)  # type: ignore[arg-type]


def test_a_context_response_is_what_response_makes() -> None:
    if context.COMPILED:
        pytest.skip("the compiled build calls Response() (a native class: no __slots__ to read)")
    made = _slots(_context().response)
    assert _UNSET not in made.values()
    assert made == _slots(Response())
    # Each context its own header list.
    assert _context().response.headers is not _context().response.headers


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def test_the_asgi_cycle_is_what_httpcycle_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    take_path(asgi_handler, False, monkeypatch)  # the pure install's way
    ctx = _context()
    handler = AsgiHandler()
    handler.app = _app
    walk = handler.execute(ctx)
    cycle = walk.cr_frame.f_locals["self"]  # type: ignore[attr-defined]
    walk.close()  # type: ignore[attr-defined]
    assert type(cycle) is HttpCycle
    made = _slots(cycle)
    assert _UNSET not in made.values()
    assert made == _slots(HttpCycle(ctx, ctx.request.body))


@pytest.mark.parametrize(
    "head",
    [
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: s\r\n\r\n",
        b"POST /docs/ HTTP/1.0\r\nHost: s\r\nContent-Length: 3\r\nUpgrade: x\r\n\r\n",
    ],
)
def test_a_request_and_its_exchange_are_what_their_classes_make(
    head: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_path(connection, False, monkeypatch)  # the pure install's way

    async def go() -> tuple[Exchange, HttpConnection]:
        wire = Wire()
        conn = HttpConnection(STATE)
        wire.protocol = conn
        conn.connection_made(wire)
        conn.data_received(head)
        exchange = conn.queue[0]  # queued; its task has yet to run
        conn.connection_lost(None)
        for _ in range(5):
            await asyncio.sleep(0)
        return exchange, conn

    exchange, conn = LOOP.run_until_complete(go())
    request = exchange.request
    assert type(request) is Request and type(exchange) is Exchange
    made = _slots(request)
    assert _UNSET not in made.values()
    assert made == _slots(
        Request(
            request.method,
            request.path,
            request.raw_path,
            request.query,
            request.target,
            request.version,
            request.headers,
            request.host,
            request.scheme,
            request.client,
            request.server,
            request.body,
            request.keep_alive,
            request.tls,
            request.may_upgrade,
        )
    )
    made = _slots(exchange)
    assert _UNSET not in made.values()
    expected = Exchange(conn, exchange.head, request, exchange.body)  # type: ignore[arg-type]
    expected.record = exchange.record
    expected.route = exchange.route
    assert made == _slots(expected)


def test_the_engine_context_is_what_context_makes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_path(engine_module, False, monkeypatch)  # the pure install's way
    engine = build_engine(
        {
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(tmp_path)}],
            "handlers": [{"path": "*", "handler": "handler.static"}],
        }
    )
    engine.start()
    try:
        writer: Any = object()
        # A path seen before (its sections in the runtime's dict), and one not.
        for path in ("/a", "/a", "/b/"):
            request = Request("GET", path, server=("127.0.0.1", 8080), host="s")
            walk = engine.handle(request, writer)
            ctx = walk.cr_frame.f_locals["ctx"]  # type: ignore[attr-defined]
            walk.close()  # never started: the engine's books are this test's alone
            assert type(ctx) is Context and type(ctx.response) is Response
            runtime = engine.route(8080, "s", path)
            made = _slots(ctx)
            expected = _slots(Context(request, runtime.app, writer, runtime.send_response))
            # Set by the request monitor only, on a request it lists (Context's note).
            for name in ("monitor_walk", "monitor_prev", "monitor_next"):
                assert made.pop(name) is expected.pop(name) is _UNSET
            assert _UNSET not in made.values()
            assert isinstance(made.pop("started"), float)
            expected.pop("started")
            response = made.pop("response")
            assert _slots(response) == _slots(expected.pop("response"))
            assert made == expected
    finally:
        engine.close()
