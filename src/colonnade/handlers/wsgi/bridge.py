"""The thread pool WSGI applications run on, and the channel back to the event loop.

How this works: :class:`ThreadPool` is a minimal bounded pool: a ``SimpleQueue``
of requests' bridges, each carrying its job, and up to ``size`` daemon threads,
started when queued jobs outnumber the threads waiting for work.

:class:`Bridge` connects one request's application thread with the coroutine
that runs the request on the loop. The thread *posts* commands (write this
chunk, read that many body bytes, here is the finished response) to the loop's
:class:`Outbox`; the coroutine waits for them by awaiting the bridge itself,
carries them out with the loop's I/O and answers by releasing a lock the thread
waits on. One command is in flight at a time: the thread posts again only once
answered. A response that needs nothing from the loop costs exactly one hop
there and one back, and no lock.

The bridge is the request's future: a reusable wait (core/taskwait.py's
``TaskWait``, asyncio's duck-typed future protocol as a task uses it), pending
for each command in turn, and a delivered command wakes the waiting task *at
once*: the outbox's drain is itself a loop callback, outside any task, so it
runs the task's wake-up there instead of scheduling it (an ``asyncio.Future``
would: one more callback, one more turn of the loop and a future made per
command). The wake-up is handed the one finished ``asyncio.Future``
(``taskwait.finished_future``) rather than the bridge: asyncio's task reads a
real future's result in C, and would ask the bridge for its ``result()`` by
name.

The :class:`Outbox` is the one way back to a loop: commands posted while a
wake-up of the loop is pending ride on it, so under load one wake-up (one
``call_soon_threadsafe``: one write to the loop's wake-up descriptor) carries
the answers of every request finished in the meantime.

If the request's task is cancelled (the client went away) or its write fails,
the bridge is *gone*: a thread waiting for an answer gets
``ConnectionError``, and so does every later command, so the application's
iterable is closed promptly instead of producing for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator
from contextvars import Context, copy_context
from threading import get_ident
from typing import Any, Final, cast

from colonnade.core import loopwake
from colonnade.core.taskwait import DONE as ENDED
from colonnade.core.taskwait import PENDING, TaskWait, finished_future
from colonnade.errors import ClientDisconnectedError

log = logging.getLogger("colonnade.wsgi")

# Commands from the application thread to the loop.
START: Final = 0  # (status, reason, headers, first chunk): flush the head, write the chunk
WRITE: Final = 1  # a chunk
READ: Final = 2  # up to n request body bytes
READ_ALL: Final = 3  # the rest of the request body
DONE: Final = 4  # the whole response: (status, reason, headers, body or FileBody)
STREAMED: Final = 5  # the streamed response is complete
FAILED: Final = 6  # the application raised: the exception

Command = tuple[int, Any]
#: A command on its way from the thread to the coroutine, typed as an object: it
#: is held as it is posted (a constant for the common final ones). Compiled, a
#: parameter or variable typed ``Command`` holds the tuple unboxed (a C struct),
#: and storing it in an attribute would box it again: a new tuple each time.
Posted = object

_GONE: Final = "the client went away"

#: ``Context.run``, unbound: a delivery runs the task's wake-up in its context with
#: one call, not a method looked up by name on the context each time.
_run_in: Final[Callable[[Context, Callable[[Any], object], Any], object]] = Context.run

# The loop's wake-up descriptor (Linux); None elsewhere: call_soon_threadsafe.
_eventfd: Callable[[int, int], int] | None = getattr(os, "eventfd", None)
_EFD_FLAGS: Final = getattr(os, "EFD_CLOEXEC", 0) | getattr(os, "EFD_NONBLOCK", 0)


def _no_eventfd_write(fd: int, value: int) -> None:
    raise OSError("no eventfd")


def _no_eventfd_read(fd: int) -> int:
    raise OSError("no eventfd")


class Outbox:
    """Commands from application threads to one event loop, one wake-up per batch.

    Where the platform has ``eventfd`` (Linux), the loop watches one of its own
    (``add_reader``) and a thread wakes it with an 8-byte write (core/loopwake.py's
    pair: in the compiled build with the GIL held over the system call): the drain then
    runs in the loop's poll phase, with no handle made per wake-up and no turn of
    the loop after it, where ``call_soon_threadsafe`` (elsewhere) makes a handle
    and runs it one turn later. The descriptor is closed once the outbox is
    garbage (no thread can hold it then: each posts through a bridge that holds
    the outbox), not by :meth:`close`, so a late thread never writes to a
    reused descriptor number.
    """

    __slots__ = (
        "_append",
        "_drain",
        "_fd",
        "_is_closed",
        "_pop",
        "_read",
        "_signal",
        "_wake",
        "armed",
        "closed",
        "finished",
        "is_running",
        "items",
        "loop",
        "thread",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The loop's thread: a cached outbox is the running loop's only there.
        self.thread = get_ident()
        #: The bridges with a command posted (each holds its own: one in flight).
        self.items: deque[Bridge] = deque()
        self.armed = False  # a drain is scheduled on the loop (or its wake-up written)
        self.closed = False
        #: A finished asyncio.Future (result None) that a waiting task is woken with:
        #: asyncio's task wake-up asks the future it is given for its result, in C
        #: for an asyncio.Future, by a method call by name for the bridge (~1,500
        #: instructions per request, the name made from a C string each time).
        self.finished: asyncio.Future[None] = finished_future(loop)
        # The per-request calls as bound methods, made once: compiled code looks a
        # method of a non-native object up by name on every call (~300
        # instructions each), a stored bound method is called directly.
        #: The loop's is_running (the outbox's owner checks it per request).
        self.is_running: Callable[[], bool] = loop.is_running
        self._is_closed: Callable[[], bool] = loop.is_closed
        self._wake: Callable[[Callable[[], None]], object] = loop.call_soon_threadsafe
        self._drain: Callable[[], None] = self.drain
        self._pop: Callable[[], Bridge] = self.items.popleft
        self._append: Callable[[Bridge], None] = self.items.append
        self._signal: Callable[[int, int], None] = _no_eventfd_write
        self._read: Callable[[int], int] = _no_eventfd_read
        self._fd = -1
        # os's write and read, or the compiled build's that keep the GIL held over
        # the system call (core/loopwake.py: the descriptor is non-blocking).
        signal = loopwake.eventfd_write
        read = loopwake.eventfd_read
        if _eventfd is not None and signal is not None and read is not None:
            fd = _eventfd(0, _EFD_FLAGS)
            try:
                loop.add_reader(fd, self._drain)
            except (NotImplementedError, RuntimeError, OSError):
                # This loop cannot watch a descriptor (a proactor loop's add_reader
                # raises NotImplementedError), so call_soon_threadsafe stays the wake-up.
                os.close(fd)
            else:
                self._fd = fd
                self._signal = signal
                self._read = read

    def post(self, bridge: Bridge, command: Posted, answered: bool = True) -> None:
        """Hand ``command`` to the loop (any thread). ``answered``: the thread will
        wait for the loop's answer, so a closed loop raises RuntimeError at once. A
        final command (``answered`` False: nobody waits for it) skips that check;
        after :meth:`close`, ``call_soon_threadsafe`` still raises for a closed loop."""
        # The bridge carries its command (one in flight: the thread posts again only
        # once answered), so a post makes no tuple.
        bridge.posted = command
        self._append(bridge)
        if answered and self._is_closed():
            # Checked on every answered post, not only on the one that arms the
            # wake-up: a wake-up written to a loop that closed before draining it
            # would otherwise leave this thread waiting for an answer forever.
            raise RuntimeError("the event loop is closed")
        # Appended first, then the flag read: a drain that already cleared the flag
        # either takes the item or is followed by the one scheduled here.
        if not self.armed:
            self.armed = True
            fd = self._fd
            try:
                if fd < 0 or self.closed:
                    self._wake(self._drain)
                else:
                    self._signal(fd, 1)
            except BaseException:
                self.armed = False
                raise

    def drain(self) -> None:
        """Deliver every posted command (on the loop; each wakes its task here)."""
        fd = self._fd
        if fd >= 0:
            # Read (reset) before the flag is cleared: a wake-up written after this
            # read stays readable for the next turn.
            # Not contextlib.suppress: an interpreted context manager per wake-up.
            try:  # noqa: SIM105
                self._read(fd)
            except BlockingIOError:  # nothing written since the last read
                pass
        self.armed = False
        items = self.items
        pop = self._pop
        while items:
            bridge = pop()
            command = bridge.posted
            bridge.posted = None
            if command is None:
                continue
            try:
                bridge.deliver(command)
            except Exception as exc:  # a task's wake-up failed: the others still get theirs
                self.loop.call_exception_handler(
                    {"message": "delivering a WSGI command failed", "exception": exc}
                )

    def close(self) -> None:
        """Stop watching the wake-up descriptor. A request still in flight (its
        thread finishing after a reload's deadline) is still answered: later posts
        wake the loop with ``call_soon_threadsafe`` (RuntimeError once the loop is
        closed), and a drain follows, for what was posted with the descriptor."""
        if self.closed:
            return
        self.closed = True
        fd = self._fd
        if fd < 0:
            return
        loop = self.loop
        try:
            if get_ident() == self.thread or not loop.is_running():
                loop.remove_reader(fd)
                loop.call_soon(self._drain)
            else:  # the loop is not this thread's to touch
                loop.call_soon_threadsafe(loop.remove_reader, fd)
                loop.call_soon_threadsafe(self._drain)
        except (RuntimeError, OSError, ValueError):  # the loop is closed already
            pass

    def __del__(self) -> None:
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass


class Bridge(TaskWait):
    """One request's channel between its application thread and the loop, and the
    wait its coroutine awaits for the thread's next command: a
    :class:`~colonnade.core.taskwait.TaskWait` (asyncio's future protocol, the
    loop as ``_loop``: the task reads that attribute where it would call a
    ``get_loop()`` by name), pending until a command is delivered, and pending
    again once the coroutine took it."""

    __slots__ = ("_lock", "_reply", "command", "gone", "job", "job_context", "outbox", "posted")

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox.loop)
        self.state = PENDING  # waiting for the thread's first command
        self.outbox = outbox
        #: The command delivered and not yet taken by the awaiting coroutine.
        self.command: Posted = None
        #: The command posted by the thread and not yet delivered (the outbox's).
        self.posted: Posted = None
        #: The request is over for the loop: the thread's commands get ConnectionError.
        self.gone = False
        # Made by the thread's first call(): a buffered response never needs one.
        self._lock: threading.Lock | None = None
        self._reply: Any = None
        #: The request's job and a copy of its submitter's context, from
        #: :meth:`ThreadPool.submit` until the thread that runs it takes them.
        self.job: object = None
        self.job_context: Context | None = None

    # -- the application thread ---------------------------------------------------------

    def call(self, op: int, arg: Any) -> Any:
        """Post a command and wait for the loop's answer (raised if an exception)."""
        if self.gone:
            raise ClientDisconnectedError(_GONE)
        lock = self._lock
        if lock is None:
            # Made here, before the command is posted: the loop answers by
            # releasing it, so it must exist (and be held) first.
            lock = self._lock = threading.Lock()
            lock.acquire()
        try:
            self.outbox.post(self, (op, arg))
        except RuntimeError:  # the loop is closed
            raise ClientDisconnectedError(_GONE) from None
        lock.acquire()
        reply, self._reply = self._reply, None
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def post(self, command: Posted) -> None:
        """Post the final command (no answer)."""
        # Not contextlib.suppress: an interpreted context manager per request.
        try:  # noqa: SIM105
            self.outbox.post(self, command, False)
        except RuntimeError:  # the loop is closed: nobody waits
            pass

    # -- the loop -----------------------------------------------------------------------

    def deliver(self, command: Posted) -> None:
        """Hand ``command`` to the request's coroutine and wake its task now (the
        outbox's drain: a loop callback, outside any task)."""
        if self.gone:  # the request is gone (its task cancelled, its write failed)
            if cast("Command", command)[0] < DONE:
                self.answer(ClientDisconnectedError(_GONE))
            return
        self.command = command
        self.state = ENDED
        callback = self.callback
        if callback is not None:
            context = self.context
            self.callback = self.context = None
            # The callback is the awaiting task's wake-up (the bridge is only
            # awaited by this package's coroutines, each in its request's task),
            # run here rather than at the loop's next turn: it is handed the
            # outbox's finished future, whose result (None: the command is taken
            # from the bridge after the resume) the task reads in C.
            if context is None:
                callback(self.outbox.finished)
            else:
                _run_in(context, callback, self.outbox.finished)

    def __await__(self) -> Generator[Any, None, Command]:
        """The thread's next command (taken: the bridge waits for the following one)."""
        command = self.command
        if command is None:
            yield self.wait()  # to the task, which adds its wake-up (asyncio's protocol)
            return self.take()
        self.command = None
        self.state = PENDING
        return cast("Command", command)

    def wait(self) -> Bridge:
        """The bridge, marked as waited on: what an ``__await__`` yields to its task
        while no command is there (asyncio's future protocol)."""
        self._asyncio_future_blocking = True
        return self

    def take(self) -> Command:
        """After the task's wake-up: the command delivered, taken (the bridge waits
        for the following one); CancelledError where the wait was cancelled."""
        command = self.command
        if command is None:  # cancelled: result() raised into the task instead
            raise asyncio.CancelledError(self.message)
        self.command = None
        self.state = PENDING
        return cast("Command", command)

    def answer(self, value: Any) -> None:
        """Wake the thread waiting in :meth:`call` with ``value``."""
        self._reply = value
        lock = self._lock
        if lock is not None:  # always, for a thread that waits: call() made it
            lock.release()

    def abandon(self, waiting: bool) -> None:
        """The request is over for the loop; ``waiting``: the thread awaits an answer."""
        self.gone = True
        if waiting:
            self.answer(ClientDisconnectedError(_GONE))

    # -- asyncio's future protocol: TaskWait's, with these differences -------------------

    def result(self) -> Command | None:
        """The command delivered; raises CancelledError where the wait was cancelled."""
        self.check()
        return cast("Command | None", self.command)

    def cancel(self, msg: object = None) -> bool:
        """Cancel the wait (the task's cancel()): the request is then gone too."""
        if not super().cancel(msg):
            return False
        self.gone = True
        return True


#: Linux's scheduling policy for CPU-bound threads (None elsewhere).
_SCHED_BATCH: Final[int | None] = getattr(os, "SCHED_BATCH", None)


def batch_scheduling() -> bool:
    """Put the calling thread under ``SCHED_BATCH`` (Linux) where it runs under the
    default policy; False where it runs under another (an operator's ``chrt``: a
    real-time or idle policy is kept) or the call is unavailable or refused (the
    thread then stays as it was).

    Why the pool's threads are: a thread woken under ``SCHED_BATCH`` does not
    preempt the thread running on its CPU, it runs once that one blocks or its
    time slice ends; its share of the CPU is unchanged (same weight, same slices).
    A pool thread woken for a job needs the GIL, which the loop's thread holds
    while it runs, so preempting the loop only to block on the GIL again was two
    context switches for nothing, and more at each later hand-over of the GIL
    (the waker still holds the GIL's mutex when its signal lets the other run).
    Measured on one CPU under load (wsgi-hello, 64 connections, bench/wsgi_split.py):
    0.24 context switches and 0.29 ``futex`` calls per request before, 0.06 and
    0.07 after. The loop's thread keeps the default policy: it still preempts
    whatever runs when a connection or a pool thread wakes it.
    """
    policy = _SCHED_BATCH
    if policy is None:
        return False
    try:
        # pid 0: the calling thread (Linux's scheduler calls act on a thread id).
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return False
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except (OSError, AttributeError):  # a sandbox refusing it; no such call here
        return False
    return True


class ThreadPool:
    """At most ``size`` threads each calling ``run(job)`` for the jobs submitted,
    started as needed. The queue's item is the request's bridge, which carries its
    job and context until a thread takes them: a submission makes no tuple.

    A thread is started when a job is queued and the jobs waiting outnumber
    the threads waiting for work; idle threads are kept. With ``batch`` (the
    default) each thread puts itself under ``SCHED_BATCH`` first
    (:func:`batch_scheduling`): woken for a job, it waits for the loop's thread
    to block or use up its slice instead of preempting it.
    """

    def __init__(
        self, size: int, name: str, run: Callable[[Any], object], batch: bool = True
    ) -> None:
        self.size = size
        self.name = name
        self.batch = batch
        self._run = run
        self._queue: queue.SimpleQueue[Bridge | None] = queue.SimpleQueue()
        # Bound once (see Outbox): called on every submit.
        self._put = self._queue.put
        self._copy_context: Callable[[], Context] = copy_context
        self._qsize = self._queue.qsize
        # One item per thread blocked waiting for a call (until the pool is full):
        # a deque's append and pop are atomic, where a counter would need a lock.
        self._idle: deque[None] = deque()
        self._threads: list[threading.Thread] = []
        # Every thread started: _idle is no longer needed, nor kept.
        self._full = False
        self._closed = False

    def submit(self, bridge: Bridge, job: object) -> None:
        """Run ``run(job)`` on a pool thread, in a copy of the caller's context;
        ``bridge``, the request's, carries them there (it has no job queued yet)."""
        if self._closed:
            raise RuntimeError("the thread pool is shut down")
        bridge.job = job
        bridge.job_context = self._copy_context()
        self._put(bridge)
        if not self._full and self._qsize() > len(self._idle):
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            self._full = len(self._threads) >= self.size
            thread.start()

    def _work(self) -> None:
        if self.batch:
            batch_scheduling()
        get = self._queue.get
        idle = self._idle
        # Bound once: a method call by name costs a lookup each time.
        append = idle.append
        pop = idle.pop
        run_in = _run_in
        run = self._run
        while True:
            if self._full:
                bridge = get()
            else:
                append(None)
                bridge = get()
                pop()
            if bridge is None:
                return
            # Taken off the bridge: the job (the request's answer) holds the bridge,
            # and a cycle would wait for the cycle collector.
            job = bridge.job
            context = bridge.job_context
            bridge.job = bridge.job_context = None
            del bridge
            try:
                run_in(context, run, job)  # type: ignore[arg-type]
            except BaseException:  # the jobs report their own errors
                log.exception("a WSGI pool thread's task failed")
            del job, context

    def shutdown(self) -> None:
        """Let every thread finish its current call and exit."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        self._threads.clear()
