"""``colonnade.run`` and ``colonnade.Server``: Colonnade from Python code.

``run(app, host=..., port=..., workers=..., **options)`` is ``colonnade serve`` with
keyword arguments named as its options (``timeout_keep_alive=5``,
``limit_concurrency=100``, ``env_file=".env"``...; the table in
``management/serve_options.py``), as ``uvicorn.run`` is ``uvicorn``'s command line.

``Server(app, ...)`` serves in a thread of the calling process, for tests and
notebooks: ``start()`` returns once it listens (``port=0`` picks a free port; read
``.port`` and ``.url``), ``stop()`` stops it gracefully; it is also a context
manager and an async context manager.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from colonnade.errors import ConfigError
from colonnade.management import serve_options

#: Names of the stand-in modules holding app objects given to ``run``/``Server``.
_EMBEDDED = itertools.count(1)


def _app_reference(app: Any, workers: int) -> str:
    """``mod:attr`` for ``app``: a string as given; an object is put in a module of
    its own in this process (worker processes cannot import it: ``workers`` must be 0)."""
    if isinstance(app, str):
        return app
    if workers:
        raise ConfigError(
            "colonnade.run: with workers > 0 (or reload), give the app as an import string "
            '("pkg.module:app"), which each worker process imports; an app object '
            "lives in this process only"
        )
    name = f"_colonnade_embedded_{next(_EMBEDDED)}"
    module = types.ModuleType(name)
    module.app = app  # type: ignore[attr-defined]
    sys.modules[name] = module
    return f"{name}:app"


def _argv(app: str, options: dict[str, Any]) -> list[str]:
    """``colonnade serve`` arguments for keyword ``options`` (named as the table's dests,
    plus the serve options outside the table: interface, factory, app_dir, root,
    config, static, control)."""
    argv = ["serve", app]
    for key, value in options.items():
        if value is None:
            continue
        option = serve_options.BY_DEST.get(key)
        if option is not None and option.type == "bool":
            argv.append(option.flags[-1] if value else (option.negative or ""))
            continue
        flag = option.flags[-1] if option is not None else "--" + key.replace("_", "-")
        if key in ("factory", "start_workers", "no_watch"):
            if value:
                argv.append(flag)
            continue
        for one in value if isinstance(value, list | tuple) else [value]:
            argv.extend([flag, str(one)])
    return [a for a in argv if a]


def run(app: Any, **options: Any) -> int:
    """Serve ``app`` (an ASGI or WSGI app object, or ``"pkg.module:attr"``) until
    stopped (SIGINT/SIGTERM), like ``colonnade serve``; returns its exit status.

    Keywords are ``colonnade serve``'s options: ``host``, ``port``, ``workers``,
    ``timeout_keep_alive``, ``log_level``... (``colonnade serve --help``). With
    ``workers`` > 0 the app must be an import string.
    """
    from colonnade.management.cli import main

    reference = _app_reference(app, int(options.get("workers") or options.get("reload") or 0))
    return main(_argv(reference, options))


class Server:
    """A Colonnade server in a thread of this process (one process, no workers)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, **options: Any):
        """``app``: an app object or ``"pkg.module:attr"``; ``options``: as for :func:`run`
        (``workers`` is not one: the server runs in this process)."""
        if options.get("workers") or options.get("reload"):
            raise ConfigError(
                "colonnade.Server serves in this process: use run() for workers or reload"
            )
        if options.get("uds") is not None or options.get("fd") is not None:
            raise ConfigError("colonnade.Server listens on host and port: use run() for uds or fd")
        self.host = host
        self.port = port
        self.scheme = "https" if options.get("ssl_certfile") else "http"
        self._args = _argv(_app_reference(app, 0), {"host": host, "port": port, **options})
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The server's base URL (its real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        """Bind, start serving in a thread, and return once it listens."""
        from colonnade.core.registry import Registry
        from colonnade.engine import Engine
        from colonnade.engine.sites import Binding
        from colonnade.management.cli import _parser, load_checked
        from colonnade.modules.standard import BUILTIN
        from colonnade.transport.sockets import bind_socket

        args = _parser().parse_args(self._args)
        serve_options.prepare(args, os.environ)
        engine = Engine(load_checked(args), Registry.standard(BUILTIN))
        backlog = engine.config.server.listen_backlog
        sock = bind_socket(Binding("http", self.host, self.port), backlog=backlog)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(engine, sock), name="colonnade", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"colonnade.Server did not start within {timeout}s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self, engine: Any, sock: Any) -> None:
        from colonnade.pools.single import new_event_loop, serve

        loop = self._loop = new_event_loop()
        asyncio.set_event_loop(loop)
        ready: Callable[[Any], None] = lambda _server: self._ready.set()  # noqa: E731
        try:
            self._stop = asyncio.Event()
            loop.run_until_complete(serve(engine, [sock], stop=self._stop, on_ready=ready))
        except BaseException as exc:  # raised to the caller by start() or stop()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop gracefully (requests in flight finish) and wait for the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"colonnade.Server did not stop within {timeout}s")
        self._thread = None
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Server:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
