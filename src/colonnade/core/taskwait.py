"""One task's wait on one object reused for every wait: asyncio's future protocol
as a task uses it, without a future made per wait.

Making an ``asyncio.Future`` per wait costs ~1,000 instructions compiled, more
with its loop given (a keyword call, a dict per call; without it a ``getpid``
system call: CPython 3.11's running-loop check), and freeing it more again. A
connection whose task waits once per request (the client's connection between
requests, an upstream connection for each response's bytes) keeps one
:class:`TaskWait` instead and arms it again for each wait.

This module holds what both kinds share: the state (pending, done, cancelled),
the one waiting task's wake-up and its context, and the protocol's calls
(``done``, ``cancelled``, ``result``, ``exception``, ``add_done_callback``,
``remove_done_callback``, ``cancel``). A subclass adds how a wait ends and what
its ``await`` gives: transport/connection.py's ``Waker`` (a value, the
client's side) and handlers/proxy/client.py's ``Wait`` (the upstream's side,
which may run the task's wake-up at once from the read callback). The compiled
build waits on :data:`C_WAIT` for both, the two in one C type
(core/_taskwait.c).

Only one task waits at a time: a second waiter is a bug and raises. A wait that
ended (done or cancelled) stays as it is until :meth:`TaskWait.arm` begins the
next one; ending it again does nothing (unlike a future's ``set_result``, which
raises).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from colonnade.core._taskwait import Wait as CWait

PENDING: Final = 0
DONE: Final = 1
CANCELLED: Final = 2


def running_task_getter() -> Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]:
    """What answers ``asyncio.current_task(loop)``, the task ``loop`` is running now
    (None: none), at the least cost: on Python 3.11 that function is Python (a
    frame per call, ~450 instructions) reading a dict whose ``get`` is C. That
    dict's ``get`` where the tasks enter it: up to 3.13 the C module's own (tasks.py
    imports it), or asyncio's where it runs without its C module. From 3.14 the C
    tasks keep the running task per thread (CPython gh-129898) and tasks.py's dict
    is the Python tasks' alone, never entered: then the function itself. Asked
    once, at import, by the modules that ask per request."""
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    accelerated = sys.modules.get("_asyncio")
    if accelerated is not None and getattr(accelerated, "_current_tasks", None) is not tasks:
        return asyncio.current_task
    if isinstance(tasks, dict):
        found: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = tasks.get
        return found
    return asyncio.current_task


def _c_wait() -> type[CWait] | None:
    # core/_taskwait.c's Wait where built, else None. Why C: asyncio's task reads
    # a wait's attributes by name at each wait (whether it blocks, its loop, its
    # add_done_callback: a bound method made per wait) and calls that method with
    # a keyword (context=), which a compiled (mypyc) object answers through its
    # type's generic attribute look-up and a generic parse of its arguments; the
    # C type answers each name by a pointer compare, binds the two methods once,
    # and is its own await iterator (no generator made per wait).
    try:
        from colonnade.core._taskwait import Wait
    except ImportError:
        return None
    return Wait


#: The C wait (the compiled build's: core/_taskwait.c), or None (the pure build,
#: or a build without it): ``C_WAIT(loop, finished_future(loop), current_task)``,
#: where ``current_task`` is :func:`running_task_getter`'s answer.
C_WAIT: Final = _c_wait()


#: The one finished future of :func:`finished_future` (empty until first asked for).
_FINISHED: Final[list[asyncio.Future[None]]] = []


def finished_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """A future finished with the result None, to hand a task's wake-up in place of
    a wait that ended well: the task reads a future's result in C, where a wait's
    ``result()`` is a method looked up by name and called (~1,400 instructions of
    an ASGI hello request, compiled). One serves every wait of every loop: the
    wake-up reads only its result, never its loop. Made on first use with ``loop``."""
    if not _FINISHED:
        future = loop.create_future()
        future.set_result(None)
        _FINISHED.append(future)
    return _FINISHED[0]


class TaskWait:
    """A reusable wait of one task (see the module docstring)."""

    __slots__ = ("_asyncio_future_blocking", "_loop", "callback", "context", "message", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Read by the task (asyncio's futures._get_loop: no get_loop() to call).
        self._loop = loop
        self._asyncio_future_blocking = False
        self.state = DONE
        #: The waiting task's wake-up and its context (None: nobody waits yet).
        self.callback: Callable[[Any], object] | None = None
        self.context: contextvars.Context | None = None
        self.message: object = None  # a cancellation's

    def arm(self) -> None:
        """Begin a wait (the last one ended)."""
        self.state = PENDING
        self.callback = None
        self.context = None

    def schedule_wake(self, handed: object = None) -> None:
        """Schedule the waiting task's wake-up, if a task waits, for the loop's next
        turn (as a future's done callbacks are); the wait has ended. ``handed``: what
        the wake-up is called with, the wait itself if None (its ``result()`` then
        says how the wait ended), or :func:`finished_future` for a wait that ended
        well and whose ``await`` gives its outcome itself."""
        callback = self.callback
        if callback is None:
            return  # not awaited yet: the await returns at once
        context = self.context
        self.callback = self.context = None
        self._loop.call_soon(callback, self if handed is None else handed, context=context)

    # -- asyncio's future protocol (what the task calls) ---------------------------------

    def done(self) -> bool:
        """The wait ended."""
        return self.state != PENDING

    def cancelled(self) -> bool:
        """The wait was cancelled."""
        return self.state == CANCELLED

    def result(self) -> object:
        """None (a subclass may give a value); raises CancelledError where the wait
        was cancelled."""
        self.check()
        return None

    def check(self) -> None:
        """Raise what ``result()`` raises: CancelledError for a cancelled wait,
        InvalidStateError for one that goes on."""
        if self.state == CANCELLED:
            raise asyncio.CancelledError(self.message)
        if self.state == PENDING:
            raise asyncio.InvalidStateError("the wait goes on")

    def exception(self) -> BaseException | None:
        """None: a wait never ends with an exception (but a cancellation's)."""
        self.check()
        return None

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        """Call ``fn(self)`` when the wait ends: only its task waits (soon if it ended)."""
        if self.state != PENDING:
            self._loop.call_soon(fn, self, context=context)
            return
        if self.callback is not None:
            raise RuntimeError("a reusable wait has one waiter: its task")
        self.callback = fn
        self.context = context

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        """Forget ``fn``; the number of callbacks removed."""
        if self.callback is not None and self.callback == fn:
            self.callback = self.context = None
            return 1
        return 0

    def cancel(self, msg: object = None) -> bool:
        """Cancel the wait (the task's cancel())."""
        if self.state != PENDING:
            return False
        self.state = CANCELLED
        self.message = msg
        self.schedule_wake()
        return True
