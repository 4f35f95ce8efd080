"""``SENT``: what the ASGI ``send`` returns for a message it took whole.

Awaiting it ends at once with None, and costs no allocation and no Python frame:
it is a generator-based coroutine (``types.coroutine``) that has run to its end
already. ``await`` takes such a generator as it is, and sending into an exhausted
generator returns None (an exhausted *coroutine* would raise instead, which is why
this is not an ``async def``). It stays exhausted, so one object serves every
``await`` of every loop. Being a generator, it is also a coroutine to asyncio:
``asyncio.ensure_future``, ``create_task`` and ``gather`` take it.

This module is not compiled (it is not in ``[tool.colonnade.mypyc]``): mypyc
would make the generator a native one, which ``types.coroutine`` cannot flag.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Generator
from typing import Any, cast


@types.coroutine
def _nothing() -> Generator[Any, None, None]:
    return
    yield  # a generator function, which types.coroutine flags as awaitable


def _exhausted() -> Generator[Any, None, None]:
    done = _nothing()
    for _ in done:  # runs to its end at once
        pass
    return done


#: The awaitable of every message ``send`` took whole (typed as what it is to
#: ``await``: types.coroutine makes it one, which type checkers cannot see).
SENT = cast("Awaitable[None]", _exhausted())
