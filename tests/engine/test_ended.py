"""``Engine.ended``: the pure install counts a request's common case (a 2xx within
the first duration bucket) inline, in place of ``SiteCounters.done``; the counters
must come out as ``done`` leaves them, for that case and for every other."""

from __future__ import annotations

from typing import Any

import pytest

from colonnade.core.context import Context
from colonnade.core.metrics import SiteCounters
from colonnade.core.request import Request
from colonnade.engine import engine as engine_module
from colonnade.testing import build_engine
from tests.builds import take_path


class _Writer:
    bytes_sent = 123


def _counters(counters: SiteCounters) -> dict[str, Any]:
    return {name: getattr(counters, name) for name in SiteCounters.__slots__}


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize(
    ("status", "elapsed", "ended_at"),
    [
        (200, 0.0004, True),  # the common case, its end read by the access log
        (204, 0.0004, False),  # the common case, its end read here
        (200, 0.003, True),  # a later bucket
        (404, 0.0004, True),  # another class
        (403, 0.0004, True),  # the substatus read
        (199, 0.0004, True),
        (300, 0.0004, True),
    ],
)
def test_ended_counts_as_done_does(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    compiled: bool,
    status: int,
    elapsed: float,
    ended_at: bool,
) -> None:
    if not ended_at and not engine_module.__file__.endswith(".py"):
        pytest.skip("the compiled build's clock is a static no patch reaches")
    take_path(engine_module, compiled, monkeypatch)
    engine = build_engine(
        {
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(tmp_path)}],
            "handlers": [{"path": "*", "handler": "handler.static"}],
        }
    )
    engine.start()
    try:
        counters = engine.route(8080, "s", "/").app.metrics
        assert engine.counting
        expected = SiteCounters()
        for books in (engine, None):
            request = Request("GET", "/a", server=("127.0.0.1", 8080), host="s")
            walk = engine.handle(request, _Writer())  # type: ignore[arg-type]
            frame = getattr(walk, "cr_frame", None)
            if frame is None:
                walk.close()  # type: ignore[attr-defined]
                pytest.skip("the compiled walk has no frame to read its context from")
            ctx: Context = frame.f_locals["ctx"]
            walk.close()
            ctx.response.status = status
            ctx.response.substatus = 503
            if ended_at:
                ctx.ended_at = ctx.started + elapsed
            else:
                # Read by the count itself: a clock that says this much later.
                then = ctx.started + elapsed
                monkeypatch.setattr(engine_module, "_MONOTONIC", lambda then=then: then)
                monkeypatch.setattr("colonnade.core.metrics._monotonic", lambda then=then: then)
            if books is not None:
                before = _counters(counters)
                books.ended(ctx)
                after = _counters(counters)
                got = {k: after[k] - before[k] for k in after}
            else:
                expected.done(ctx)
                engine.active -= 1  # handle counted it in flight
            assert ctx.ended_at == pytest.approx(ctx.started + elapsed)
        assert got == _counters(expected)
        assert engine.active == 0
    finally:
        engine.close()
