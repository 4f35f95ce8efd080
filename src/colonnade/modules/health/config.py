"""``[health]``: the paths of the liveness and readiness probes."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from colonnade.config.sections import Section, Where

_PATH = Annotated[
    str,
    Meta(
        pattern=r"^(/[^?#\s]*)?$",
        max_length=512,
        description="a URL path ('/' and then no spaces, '?' or '#'), or '' for none",
    ),
]


class HealthSection(Section, frozen=True):
    """Liveness and readiness probes (Kubernetes' ``livenessProbe`` and
    ``readinessProbe``, a load balancer's health check).

    Only GET and HEAD on the exact path are answered, before any other module
    (authentication, rewriting, the application) sees the request; other methods
    go on as usual. The answers carry ``Cache-Control: no-store``. They are logged
    like any request; turn the access log off for them with a ``[[locations]]``
    entry (``http_logging.enabled = false``).

    - ``liveness``: the path answered 200 ``ok`` while the process serves at all
      (a failing liveness probe makes Kubernetes restart the container).
    - ``readiness``: the path answered 200 ``ready`` while this worker takes new
      work, and 503 ``draining`` once its graceful stop or drain has begun
      (SIGTERM, a recycle, a stopped pool): Kubernetes then sends no new traffic.
      A pool with no worker never reaches one: its requests are answered 503 by
      the front door, the readiness probe's included.
    - An empty path turns that probe off.
    - ``stop_delay``: seconds a graceful stop (SIGTERM) goes on accepting and
      serving as usual, readiness answering 503, before the listeners close and
      the requests in flight are finished: the time Kubernetes (or a load
      balancer polling readiness) needs to stop sending traffic here, without a
      ``preStop`` sleep. 0 (the default): the listeners close at once, and a
      readiness probe meets a closed port. Server-wide (the largest any site sets);
      a recycle's drain never waits (its pool's other workers take the traffic).
    """

    key = "health"
    allowed = Where.SERVER | Where.APPLICATION

    liveness: _PATH = "/healthz"
    readiness: _PATH = "/readyz"
    stop_delay: Annotated[float, Meta(ge=0, le=300)] = 0.0
