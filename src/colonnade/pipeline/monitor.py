"""The request monitor's view of one process (IIS: Runtime Status and Control).

The engine keeps every executing request's context and walk
(``Engine.executing``: in the compiled build a list linked through the contexts, a
few attribute stores per request; in the pure install a dict); nothing else is
recorded while requests run. :func:`snapshot`, called only when somebody asks
(``colonnade requests``), turns that into rows: the stage and module are read
from where each suspended walk waits (:func:`runner.position`), the elapsed time
from the context's start.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:  # the master imports ExecutingRequest (its messages), nothing else
    from colonnade.core.context import Context

#: The longest URL a row shows (a request target is bounded by the HTTP layer,
#: but a monitor listing need not carry 8 KiB per request).
MAX_URL = 2048


class ExecutingRequest(msgspec.Struct, kw_only=True):
    """One request executing in a worker, as the request monitor lists it."""

    #: The request's correlation id (the one its error page and log lines show).
    id: str
    site: str
    app: str
    pool: str
    pid: int
    client: str
    verb: str
    url: str
    #: The stage it is in and the module whose hook it waits in (empty when unknown).
    stage: str
    module: str
    #: Milliseconds since the request started executing.
    elapsed: int


class Listing(Protocol):
    """What :func:`snapshot` reads: ``Engine.executing``, or a dict of the same pairs."""

    def items(self) -> Iterable[tuple[Context, Coroutine[Any, Any, object]]]:
        """Every executing request's context and walk."""
        ...


def snapshot(
    executing: Listing,
    *,
    pid: int,
    min_elapsed: int = 0,
) -> list[ExecutingRequest]:
    """The requests of ``executing`` (``Engine.executing``) that have run for at
    least ``min_elapsed`` milliseconds, longest-running first."""
    from colonnade.pipeline.runner import position

    now = time.monotonic()
    rows = []
    for ctx, walk in list(executing.items()):
        elapsed = int((now - ctx.started) * 1000)
        if elapsed < min_elapsed:
            continue
        where = position(walk, ctx)
        request = ctx.request
        client = request.client
        url = request.target.decode("latin-1")
        rows.append(
            ExecutingRequest(
                id=ctx.correlation_id,
                site=ctx.app.site,
                app=ctx.app.path,
                pool=ctx.app.pool,
                pid=pid,
                client=_address(client),
                verb=request.method,
                url=url if len(url) <= MAX_URL else url[:MAX_URL] + "…",
                stage=where[0].name if where else "",
                module=where[1] if where else "",
                elapsed=elapsed,
            )
        )
    rows.sort(key=lambda row: -row.elapsed)
    return rows


def _address(client: tuple[str, int] | None) -> str:
    if client is None:
        return ""
    host, port = client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
