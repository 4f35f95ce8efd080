"""The server log as JSON lines (``colonnade serve --log-format json``).

Each record is one JSON object: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, ``process``; ``pool`` in a pool's worker; the request fields the
record carries as attributes (``logger.error(..., extra={"request_id": ...})``:
:data:`REQUEST_FIELDS`) where the line concerns a request; ``exception`` with the
traceback when there is one. Log tools (Loki, Elasticsearch, journald's JSON) then
filter on the fields instead of parsing the message.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

#: Record attributes carried into the JSON object when a log call set them.
REQUEST_FIELDS = (
    "request_id",
    "site",
    "app",
    "method",
    "path",
    "status",
    "duration_ms",
    "stage",
    "client",
)

#: The environment variable that selects the format; worker processes inherit it.
ENV = "COLONNADE_LOG_FORMAT"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, pool: str | None = None) -> None:
        super().__init__()
        self.pool = pool

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        seconds = int(record.created)
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if self.pool is not None:
            data["pool"] = self.pool
        for name in REQUEST_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        import json  # only under --log-format json: not in every worker

        return json.dumps(data, default=str)


def use_json_if_asked(pool: str | None = None) -> bool:
    """Give the root logger's handlers the JSON formatter when :data:`ENV` is ``json``."""
    if os.environ.get(ENV, "").strip().lower() != "json":
        return False
    formatter = JsonFormatter(pool)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    return True
