"""``http.health``: liveness and readiness probes answered without the application.

BEGIN_REQUEST, priority FIRST: a probe is answered before authentication, URL
rewriting or the application see it, so it costs no application work and is not
refused for lacking credentials. Readiness reads :func:`core.lifecycle.draining`,
which the worker sets when its stop or drain begins; ``stop_delay`` (see the
section) keeps a stopping worker serving long enough for that 503 to be seen.
"""

from __future__ import annotations

from colonnade.core import lifecycle
from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage
from colonnade.modules.health.config import HealthSection

_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]


class Health(Module):
    """``http.health``: ``/healthz`` (live) and ``/readyz`` (ready) per site."""

    id = "http.health"
    section = HealthSection

    def provision(self, app: Application) -> None:
        """Tell the pool layer how long a graceful stop goes on serving."""
        delay = app.section(HealthSection).stop_delay
        if delay > lifecycle.stop_delay():
            lifecycle.set_stop_delay(delay)

    @hook(Stage.BEGIN_REQUEST, priority=Priority.FIRST)
    def begin_request(self, ctx: Context) -> Outcome:
        """Answer a probe; let anything else through."""
        request = ctx.request
        if request.method not in ("GET", "HEAD"):
            return CONTINUE
        section = ctx.section(HealthSection)
        path = request.path
        if path == section.liveness:
            status, body = 200, b"ok\n"
        elif path == section.readiness:
            status, body = (503, b"draining\n") if lifecycle.draining() else (200, b"ready\n")
        else:
            return CONTINUE
        response = ctx.response
        response.clear()
        response.status = status
        response.headers.extend(_HEADERS)
        response.body = body
        response.skip_custom_errors = True
        return FINISH
