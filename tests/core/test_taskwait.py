"""core/taskwait.py's running_task_getter: the task a loop runs, where asyncio keeps it."""

from __future__ import annotations

import _asyncio
import asyncio

import pytest

from colonnade.core.taskwait import running_task_getter
from colonnade.handlers.fastcgi import handler as fastcgi
from colonnade.handlers.proxy import client as proxy


def _check(current: object) -> None:
    # ``current(loop)`` answers the task running on ``loop``, and None for a loop
    # running none.
    assert callable(current)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        running = asyncio.current_task()
        assert running is not None
        assert current(loop) is running

    asyncio.run(main())
    loop = asyncio.new_event_loop()
    try:
        assert current(loop) is None
    finally:
        loop.close()


def test_the_running_task_is_found() -> None:
    _check(running_task_getter())
    # The modules that ask per request ask the same (the proxy's Wait.wake guard,
    # the FastCGI exchange's start).
    assert running_task_getter() == proxy._CURRENT_TASK
    assert fastcgi._current_task == running_task_getter()


def test_the_running_task_is_found_where_asyncio_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Up to Python 3.13, asyncio's C tasks enter themselves in the C module's dict,
    # which tasks.py imports as _current_tasks. From 3.14 (CPython gh-129898) the C
    # module keeps the running task per thread and exports no dict: tasks.py's
    # _current_tasks is then the Python tasks' alone, which no C task enters. Read
    # there, the proxy's guard would never see a task (a wake from inside one, a
    # TLS transport's close, lost again) and every FastCGI exchange would start
    # without its task (an AssertionError). Here such an asyncio, made of this one:
    # the getter must answer what asyncio.current_task answers.
    entered = asyncio.tasks._current_tasks  # where this Python's C tasks enter
    monkeypatch.setattr(asyncio.tasks, "_current_tasks", {})
    monkeypatch.delattr(_asyncio, "_current_tasks")
    monkeypatch.setattr(
        asyncio, "current_task", lambda loop=None: entered.get(loop or asyncio.get_running_loop())
    )
    _check(running_task_getter())
