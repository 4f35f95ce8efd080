"""Live reload in a serving process: build the new generation whole, then switch.

How this works: a change (a watched file, SIGHUP, or a command) asks for a
reload. The configuration is read and a new :class:`Engine` is built beside the
serving one, reusing every application whose inputs did not change. Only when
the new generation is complete, provisioned and started does it replace the old
one; requests already running finish on the generation they started on, and the
old generation then releases what the new one did not keep. Any error leaves the
old generation serving and is logged with its file, line and key; a ``web.toml``
that cannot be used is no such error: the new generation answers its folder's
requests 500.19 (and a later reload that fixes it heals the folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from colonnade.config.schema import ServerConfig
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, ModuleError
from colonnade.pools.config import log_refused
from colonnade.pools.sandbox import refreeze_heap
from colonnade.transport.server import ServerState

log = logging.getLogger("colonnade.config")


class Reloader:
    """Rebuilds the engine of ``state`` on request or when config files change."""

    def __init__(
        self,
        state: ServerState,
        load: Callable[[], ServerConfig],
        registry: Registry,
        generation: int = 1,
        *,
        report_broken: bool = True,
    ) -> None:
        self.state = state
        self.load = load
        self.registry = registry
        self.generation = generation
        # Log the web.toml files the new generation confines (500.19); a pool
        # worker leaves that to its master, which logs them once for all workers.
        self.report_broken = report_broken
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self, reason: str, generation: int | None = None) -> bool:
        """Try to switch to the configuration on disk; False if it was refused.

        ``generation``: the number the result has (a pool worker takes its master's);
        by default the next one."""
        async with self._lock:
            old = self.state.engine
            try:
                config = self.load()
                new = Engine(config, self.registry, previous=old)
            except (ConfigError, ModuleError) as exc:
                log_refused(log, reason, exc)
                return False
            try:
                new.start()
                await new.startup()
            except Exception as exc:
                await new.abandon()
                log.error(
                    "reload (%s) refused: the new configuration failed to start: %s", reason, exc
                )
                return False
            self.state.switch(new)
            if self.report_broken:
                new.log_broken(log)
            self.generation = self.generation + 1 if generation is None else generation
            task = asyncio.get_running_loop().create_task(self._retire(old, new))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info(
                "configuration reloaded (%s): generation %d, %d application(s) switched, "
                "%d unchanged",
                reason,
                self.generation,
                len(new.fresh),
                len(new.reused),
            )
            return True

    async def _retire(self, old: Engine, new: Engine) -> None:
        await old.retire(new, new.settings.timeouts.graceful)
        # The old generation's objects were frozen with the rest at start-up (a
        # serving process's heap, pools/sandbox.py): the collector may see its
        # cycles again now.
        refreeze_heap()

    def folders(self) -> list[str]:
        """The content roots whose web.toml files are watched."""
        return [root for rt in self.state.engine.runtimes for root in rt.app.roots]

    async def watch(self, config_file: str | None, stop: asyncio.Event) -> None:
        """Reload whenever a watched file changes (a ``web.toml``, the server file, an
        application module's source), until ``stop``; re-aim after each."""
        from colonnade.config.watch import changes  # a pool worker never watches

        while not stop.is_set():
            folders = self.folders()
            sources = self.state.engine.sources
            restart = False
            async for changed in changes(folders, config_file, stop, sources):
                names = ", ".join(sorted(changed))
                await self.reload(f"changed: {names}")
                if (
                    sorted(self.folders()) != sorted(folders)
                    or self.state.engine.sources != sources
                ):
                    restart = True  # roots or module sources moved: watch the new ones
                    break
            if not restart:
                return

    async def drain(self) -> None:
        """Wait for old generations still retiring."""
        for task in list(self._retiring):
            with contextlib.suppress(Exception):
                await task
