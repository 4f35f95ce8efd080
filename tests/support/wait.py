"""Waiting for an observable condition, with a deadline, instead of sleeping.

A test that sleeps guesses how long the machine needs; on a loaded machine the guess
is wrong and the test fails (or, worse, passes without testing anything). These
helpers poll the condition itself, return as soon as it holds and fail with a
message naming it once the deadline has passed. Deadlines are generous: a passing
test never waits them out, so they cost nothing on a fast machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: The deadline for a condition that takes well under a second on an idle machine.
PATIENCE = 30.0
#: How often a condition is checked.
INTERVAL = 0.02


class _Deadline:
    def __init__(self, timeout: float, message: str) -> None:
        self.end = time.monotonic() + timeout
        self.timeout = timeout
        self.message = message

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(f"waited {self.timeout:g} s in vain for: {self.message}")


def wait_for(check: Callable[[], T], timeout: float, message: str) -> T:
    """Call ``check`` until it returns a true value, and return that value; fail
    naming ``message`` (what was awaited) once ``timeout`` seconds have passed."""
    deadline = _Deadline(timeout, message)
    while not (found := check()):
        deadline.check()
        time.sleep(INTERVAL)
    return found


async def wait_for_async(
    check: Callable[[], T],
    timeout: float,  # noqa: ASYNC109 - the deadline belongs to the failure message
    message: str,
) -> T:
    """:func:`wait_for` inside an event loop, which runs on while it waits."""
    deadline = _Deadline(timeout, message)
    while not (found := check()):
        deadline.check()
        await asyncio.sleep(INTERVAL)
    return found
