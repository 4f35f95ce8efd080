"""Applications for the output cache's end-to-end tests: they count their calls."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

CALLS: dict[str, int] = {}
_LOCK = threading.Lock()


def count(path: str) -> int:
    with _LOCK:
        CALLS[path] = CALLS.get(path, 0) + 1
        return CALLS[path]


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/slow``: takes a while (the work a cache saves); ``/cookie``: sets one;
    ``/private``: says so; anything else: a plain text page with an ETag."""
    path = environ["PATH_INFO"]
    n = count(path)
    if path == "/slow":
        time.sleep(0.3)  # simulated work, so that concurrent requests overlap it
    headers = [("Content-Type", "text/plain"), ("ETag", f'"{path}-{n}"')]
    if path == "/cookie":
        headers.append(("Set-Cookie", "session=abc"))
    if path == "/private":
        headers.append(("Cache-Control", "private"))
    body = f"{path} call {n} {'x' * 200}\n".encode()
    if path.endswith(".tpl"):
        # A page made from a template file: the cache is told which one.
        template = urllib.parse.unquote(environ["QUERY_STRING"].partition("=")[2])
        environ["colonnade.items"]["cache.output.files"] = [template]
        with open(template, "rb") as f:
            body = f.read()
    start_response("200 OK", headers)
    return [body]
