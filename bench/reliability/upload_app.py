"""The attack runs' application (WSGI): reads the whole request body, answers its length.

A slow body (R.U.D.Y.) is only an attack on a server that hands the body to an
application as it arrives: this app reads ``wsgi.input`` to the end, so a slow
upload holds what the server gives an application while it waits (a WSGI thread,
unless the server buffers the body first). GET answers "Hello, world!".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, world!"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read the request body to its end; answer its length (or hello for a GET)."""
    if environ["REQUEST_METHOD"] == "GET":
        body = HELLO
    else:
        stream = environ["wsgi.input"]
        total = 0
        while chunk := stream.read(65536):
            total += len(chunk)
        body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
