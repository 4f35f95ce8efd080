"""Where kept request traces live: one JSON file per request, one folder per site.

``DIRECTORY/SITE/frYYYYmmddTHHMMSSffffff-ID.json``: the name sorts in the order
the traces were written, and ``ID`` is the request's correlation id (the one on
its error page and in its log lines). The module ``tracing.failed_requests``
writes them (:func:`write_trace`, on a thread); the master and the ``colonnade
trace`` command read them (:func:`list_traces`, :func:`read_trace`), which is why
this lives in ``core``: both sides of the import rule reach it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from typing import Any

#: The module section holding the folder, and its default (relative to the
#: server's working directory, as the access log's file).
SECTION_KEY = "failed_request_tracing"
DEFAULT_DIRECTORY = "logs/failed-requests"
DEFAULT_MAX_FILES = 50

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME = re.compile(r"^fr\d{8}T\d{12}-([0-9A-Za-z]{1,64})\.json$")
_ID = re.compile(r"^[0-9A-Za-z]{1,64}$")
#: The largest trace file read back (a trace is bounded in records: see core.tracing).
MAX_READ = 16 * 1024 * 1024


def site_folder(directory: str, site: str) -> str:
    """The folder of ``site``'s traces under ``directory``."""
    safe = _UNSAFE.sub("_", site)
    if safe in ("", ".", ".."):
        safe = f"_{safe}"
    return os.path.join(directory, safe)


def trace_directory(sections: dict[str, dict[str, Any]]) -> str:
    """The traces' folder the server file's raw module ``sections`` name, relative
    to the working directory (as the module resolves it), so that the master and
    the CLI find it without importing the module."""
    table = sections.get(SECTION_KEY) or {}
    return os.path.abspath(str(table.get("directory", DEFAULT_DIRECTORY)))


def file_name(trace_id: str, wall: float) -> str:
    """The file name of trace ``trace_id`` begun at ``wall`` (epoch seconds)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall))
    micros = int((wall % 1) * 1_000_000)
    return f"fr{stamp}{micros:06d}-{trace_id}.json"


def write_trace(folder: str, name: str, data: bytes, max_files: int) -> str:
    """Write one trace (atomically: readers never see half a file) and remove the
    oldest files of ``folder`` beyond ``max_files``; the path written.

    Blocking: call it off the event loop. Several workers may write into one
    folder; a file another one removed first is not an error.
    """
    os.makedirs(folder, mode=0o750, exist_ok=True)
    path = os.path.join(folder, name)
    partial = f"{path}.{os.getpid()}.part"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)
    names = sorted(n for n in os.listdir(folder) if _NAME.match(n))
    for old in names[: max(0, len(names) - max_files)]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, old))
    return path


def list_traces(directory: str, site: str | None = None) -> list[dict[str, Any]]:
    """The kept traces under ``directory`` (of ``site`` only, when given), newest
    first: each a summary (id, site, time, status, method, URL, time taken)."""
    if site is not None:
        folders = [(site, site_folder(directory, site))]
    else:
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        folders = [(e, os.path.join(directory, e)) for e in entries]
    found: list[tuple[str, dict[str, Any]]] = []
    for site_name, folder in folders:
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if _NAME.match(name) is None:
                continue
            data = _load(os.path.join(folder, name))
            if data is None:
                continue
            request = data.get("request", {})
            found.append(
                (
                    name,
                    {
                        "id": data.get("id"),
                        "site": data.get("site", site_name),
                        "time": data.get("time"),
                        "status": request.get("status"),
                        "method": request.get("method"),
                        "url": request.get("url"),
                        "time_taken_ms": request.get("time_taken_ms"),
                        "reason": data.get("reason"),
                        "file": os.path.join(folder, name),
                    },
                )
            )
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [summary for _, summary in found]


def read_trace(directory: str, trace_id: str) -> dict[str, Any] | None:
    """The trace ``trace_id`` (a correlation id) under ``directory``, or None."""
    if _ID.match(trace_id) is None:
        return None
    try:
        sites = sorted(os.listdir(directory))
    except FileNotFoundError:
        return None
    suffix = f"-{trace_id}.json"
    for site in sites:
        folder = os.path.join(directory, site)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.endswith(suffix) and _NAME.match(name):
                return _load(os.path.join(folder, name))
    return None


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_READ + 1)
    except OSError:
        return None  # removed by the file-count limit meanwhile
    if len(raw) > MAX_READ:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
