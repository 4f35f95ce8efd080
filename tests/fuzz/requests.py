"""Requests made from fuzzed bytes the way the transport makes them (shared by targets)."""

from __future__ import annotations

from colonnade.core.request import EMPTY_BODY, Request
from colonnade.core.urlpath import decode_path
from colonnade.errors import HttpError
from colonnade.http import HTTP1Connection, RequestHead


def request_from(data: bytes) -> Request | None:
    """The first request ``data`` parses to (as ``transport/connection.py`` builds
    it), or None when it is no request or its path does not decode (a 400 there)."""
    for event in HTTP1Connection().feed(data):
        if isinstance(event, RequestHead):
            return request_of(event)
    return None


def request_of(head: RequestHead) -> Request | None:
    """``head`` as a :class:`Request` from 127.0.0.1, or None for a path that the
    transport refuses before the pipeline."""
    try:
        path = decode_path(head.path)
    except HttpError:
        return None
    return Request(
        head.method.decode("ascii"),
        path,
        head.path,
        head.query,
        head.target,
        "1.1" if head.version == b"1.1" else head.version.decode("ascii"),
        head.headers,
        head.host.decode("latin-1"),
        "http",
        ("127.0.0.1", 50000),
        ("127.0.0.1", 8080),
        EMPTY_BODY,
        head.keep_alive,
        None,
    )
