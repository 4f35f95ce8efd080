"""The ASGI lifespan protocol, tied to the module lifecycle (``startup``/``shutdown``).

How this works: ``startup`` starts the application with a ``lifespan`` scope in a
task of its own, hands it ``lifespan.startup`` and waits for the answer, the end
of the task or the timeout, whichever comes first. The task lives on until
``shutdown`` hands it ``lifespan.shutdown``. An application that raises before it
ever called ``receive`` does not speak lifespan (Django raises at once on the
scope type): in ``auto`` mode that is fine and logged at debug level. Any other
failure refuses the start with the application's own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from colonnade.errors import ModuleError
from colonnade.handlers.asgi.scope import ASGI_LIFESPAN, App, Message

log = logging.getLogger("colonnade.asgi")


class Lifespan:
    """One application's lifespan conversation."""

    def __init__(
        self, app: App, *, mode: str, timeout: float, state: dict[str, Any], name: str
    ) -> None:
        self.app = app
        self.mode = mode
        self.timeout = timeout
        self.state = state
        self.name = name  # "pkg.module:attr", for messages
        self.supported = False
        self._task: asyncio.Task[None] | None = None
        self._received = 0
        self._shutdown_asked: asyncio.Future[None] | None = None
        self._startup_answer: asyncio.Future[Message] | None = None
        self._shutdown_answer: asyncio.Future[Message] | None = None

    # -- what the application calls -------------------------------------------------

    async def _receive(self) -> Message:
        self._received += 1
        if self._received == 1:
            return {"type": "lifespan.startup"}
        if self._received == 2 and self._shutdown_asked is not None:
            await self._shutdown_asked
            return {"type": "lifespan.shutdown"}
        await asyncio.get_running_loop().create_future()  # nothing more, ever
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            answer = self._startup_answer
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            answer = self._shutdown_answer
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
        if answer is None or answer.done():
            raise RuntimeError(f"ASGI lifespan message {kind!r} sent out of turn")
        answer.set_result(message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_LIFESPAN, "state": self.state}
        await self.app(scope, self._receive, self._send)

    # -- the module lifecycle ---------------------------------------------------------

    async def startup(self) -> None:
        """Run the application's startup; raise ``ModuleError`` if it failed."""
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._shutdown_asked = loop.create_future()
        self._startup_answer = answer = loop.create_future()
        self._shutdown_answer = loop.create_future()
        self._task = task = loop.create_task(self._main())
        done, _ = await asyncio.wait(
            (answer, task), timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if answer in done:
            message = answer.result()
            if message["type"] == "lifespan.startup.failed":
                await self._stop_task()
                text = message.get("message", "") or "(no message)"
                raise ModuleError("handler.asgi", f"{self.name}: lifespan startup failed: {text}")
            self.supported = True
            return
        if task in done:
            exc = task.exception()
            if exc is None:
                # Returned without answering: an application that ignores lifespan.
                log.debug("%s returned from the lifespan scope: lifespan not used", self.name)
                return
            if self.mode == "auto" and self._received == 0:
                log.debug(
                    "%s does not support the ASGI lifespan protocol (%s: %s)",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
                return
            raise ModuleError(
                "handler.asgi",
                f"{self.name}: lifespan startup raised {type(exc).__name__}: {exc}",
            ) from exc
        await self._stop_task()
        raise ModuleError(
            "handler.asgi", f"{self.name}: lifespan startup did not finish in {self.timeout:g}s"
        )

    async def shutdown(self) -> None:
        """Run the application's shutdown (logging, never raising, on failure)."""
        task = self._task
        if task is None or task.done() or not self.supported:
            await self._stop_task()
            return
        assert self._shutdown_asked is not None and self._shutdown_answer is not None
        if not self._shutdown_asked.done():
            self._shutdown_asked.set_result(None)
        answer = self._shutdown_answer
        done, _ = await asyncio.wait(
            (answer, task), timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if answer in done:
            message = answer.result()
            if message["type"] == "lifespan.shutdown.failed":
                log.error("%s: lifespan shutdown failed: %s", self.name, message.get("message", ""))
        elif task in done and task.exception() is not None:
            exc = task.exception()
            log.error("%s: lifespan shutdown raised", self.name, exc_info=exc)
        elif not done:
            log.error("%s: lifespan shutdown did not finish in %gs", self.name, self.timeout)
        # Give the application a moment to return after its answer, then stop it.
        if not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 1.0)
        await self._stop_task()

    async def _stop_task(self) -> None:
        task = self._task
        if task is None:
            return
        self._task = None
        if not task.done():
            task.cancel()
        await asyncio.wait((task,))
        if not task.cancelled():
            task.exception()  # seen (and reported where it mattered)
