"""The per-request objects the pure install fills in place of their ``__init__``
(core.context's Response, the ASGI handler's HttpCycle): the same values, slot by
slot, as the constructor gives. A field added to ``__init__`` and not to the
inline copy fails here (an unset slot, or another value)."""

from __future__ import annotations

from typing import Any

import pytest

from colonnade.core import context
from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.request import Request
from colonnade.core.response import Response
from colonnade.handlers.asgi import handler as asgi_handler
from colonnade.handlers.asgi.handler import AsgiHandler, HttpCycle
from tests.builds import take_path

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
