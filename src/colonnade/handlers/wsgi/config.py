"""``[wsgi]``: the WSGI handler's thread pool and request body buffering."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from colonnade.config.schema import RootPath
from colonnade.config.sections import Section, Where


class WsgiSection(Section, frozen=True):
    """WSGI hosting settings, read once per application (at its root).

    WSGI applications block, so they run on a bounded pool of threads per
    application; requests beyond ``threads`` wait for a free one. An application
    that never blocks may say so (``blocking = false``) and run on the event loop.
    """

    key = "wsgi"
    allowed = Where.SERVER | Where.APPLICATION

    blocking: bool = True
    """The application may block (I/O, locks, sleeps), so it runs on the thread pool
    (the default: most WSGI applications do). ``false`` declares that it never
    blocks: it is then called inline on the worker's event loop thread, with no
    hand-off to a thread (fewer instructions and system calls per request), and
    request bodies are read whole before it runs (as ``buffer_request_body``). An
    application that blocks anyway stalls every request of the worker while it
    does; a call that holds the loop 0.25 s or more is logged."""
    threads: Annotated[int, Meta(ge=1, le=1024)] = 8
    """Threads running the application (requests beyond this many wait their turn);
    unused with ``blocking = false``."""
    batch_threads: bool = True
    """Run the pool's threads under Linux's ``SCHED_BATCH`` policy: a thread woken
    for a request does not preempt the thread running on its CPU (most often the
    worker's event loop, which holds the GIL the woken thread needs) but runs once
    that one blocks or its time slice ends. Fewer context switches per request
    under load (0.24 -> 0.06 on one CPU, the WSGI hello benchmark); the threads'
    share of the CPU is unchanged. Threads the application starts from a request
    inherit the policy. ``false`` keeps the default policy (on a CPU shared with
    other busy processes, a woken thread then preempts them sooner). Threads
    running under another policy than the default (``chrt``) keep theirs; ignored
    where the system has no ``SCHED_BATCH``."""
    buffer_request_body: bool = True
    """Read the whole request body before the application runs, so that a slow
    upload holds no thread (as nginx buffers before it proxies). ``false`` streams
    bodies over 64 KiB to the application as they arrive: each slow upload then
    holds a thread, and ``threads`` of them leave none for other requests."""
    max_body_buffer: Annotated[int, Meta(ge=0, le=1 << 40)] = 1024 * 1024
    """With ``buffer_request_body``: bodies up to this many bytes stay in memory,
    larger ones are spooled to a temporary file."""
    root_path: RootPath = ""
    """The prefix a reverse proxy removed before it forwarded the request (uvicorn's
    ``--root-path``): requests arrive without it, and ``SCRIPT_NAME`` starts with it
    (before the application's own mount path), so the URLs the application makes
    carry it; ``PATH_INFO`` is unchanged. ``colonnade serve --root-path`` sets it
    (and ``[asgi]``'s)."""
