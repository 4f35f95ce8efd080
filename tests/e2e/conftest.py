"""Live servers over real sockets: in a thread (fast) or as a real process."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from colonnade.core.module import Module
from colonnade.engine.sites import Binding
from colonnade.pools.single import new_event_loop, serve
from colonnade.testing import build_engine
from colonnade.transport.server import HttpServer, ServerState
from colonnade.transport.sockets import bind_socket
from tests.hosting.apps import asgi_apps
from tests.support.wait import PATIENCE, wait_for

T = TypeVar("T")


class LiveServer:
    """``serve()`` running on its own uvloop in a thread, on an ephemeral port."""

    def __init__(
        self,
        config: dict[str, Any],
        root: Path,
        modules: Iterable[type[Module]] = (),
        *,
        port: int = 0,
        more_ports: tuple[int, ...] = (),
    ) -> None:
        """``port``: listen there (an ``https://`` binding's port is TLS only where
        the socket's port is the binding's); 0: an ephemeral port. ``more_ports``:
        listen there too."""
        self.engine = build_engine(
            config, base_dir=str(root), modules=modules, with_entry_points=True
        )
        self.sock = bind_socket(Binding("http", "127.0.0.1", port))
        self.port: int = self.sock.getsockname()[1]
        self.more = [bind_socket(Binding("http", "127.0.0.1", p)) for p in more_ports]
        self.loop = new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ready(self, server: HttpServer) -> None:
        self.server = server
        self.ready.set()

    def engine_state(self) -> ServerState:
        return self.server.state

    def look(self, fn: Callable[[ServerState], T], *, turns: int = 0) -> T:
        """``fn(state)``, run on the server's loop (where the state changes) after
        ``turns`` more turns of it."""

        async def run() -> T:
            for _ in range(turns):
                await asyncio.sleep(0)
            return fn(self.server.state)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(PATIENCE)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.stop_event = asyncio.Event()
            self.loop.run_until_complete(
                serve(
                    self.engine, [self.sock, *self.more], stop=self.stop_event, on_ready=self._ready
                )
            )
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    def start(self) -> LiveServer:
        self.thread.start()
        assert self.ready.wait(PATIENCE), "server did not start"
        if self.error:
            raise self.error
        return self

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def begin_stop(self) -> None:
        """Begin a graceful stop, without waiting for its end."""
        if self.stop_event is not None and self.thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.stop_event.set)
            except RuntimeError:
                # Stopped meanwhile (an earlier begin_stop): the thread closed its
                # loop and is about to end.
                if not self.loop.is_closed():
                    raise

    def stop(self) -> None:
        self.begin_stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "server did not stop"
        if self.error:
            raise self.error


def win32_statuses(log: Path, needle: str) -> list[str]:
    """The sc-win32-status of each line holding ``needle`` in the W3C access log ``log``."""
    text = log.read_text().splitlines()
    fields = next(ln for ln in text if ln.startswith("#Fields:")).split()
    win32 = fields.index("sc-win32-status") - 1
    return [line.split()[win32] for line in text if needle in line]


def site_config(**server: Any) -> dict[str, Any]:
    """acme.slow at /slow, static files elsewhere, optional [server] overrides."""
    modules = server.pop("modules", ["acme.stamp", "acme.slow", "handler.static"])
    return {
        "server": {"modules": modules, **server},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [
            {"path": "/slow*", "handler": "acme.slow"},
            {"path": "*", "handler": "handler.static"},
        ],
    }


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("Hello, world!")
    return tmp_path


@pytest.fixture
def live(www: Path) -> Iterator[LiveServer]:
    server = LiveServer(site_config(), www).start()
    yield server
    server.stop()


#: Source of the lifespan part of an ASGI app served by `colonnade serve web:app`;
#: it goes right after ``async def app(scope, receive, send):``.
ASGI_LIFESPAN = """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
"""


class Process:
    """``colonnade serve`` as a real child process; what it writes goes to a file, so
    that a test can watch its log while it runs."""

    def __init__(self, args: list[str], cwd: Path, port: int) -> None:
        self.port = port
        # Not in ``cwd``: a test may serve a folder of the repository (examples/).
        # Kept until the test session ends: a test reads it after the process exits.
        self._log_dir = tempfile.mkdtemp(prefix="colonnade-serve-")
        atexit.register(shutil.rmtree, self._log_dir, ignore_errors=True)
        self.log_path = Path(self._log_dir) / "serve.log"
        if "--workers" in args and "--control" not in args:
            # A master of its own control socket: never the user's default one,
            # which another master (a developer's, a parallel run) may hold.
            args = [*args, "--control", str(Path(self._log_dir) / "control.sock")]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "colonnade.management.cli", "serve", *args],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_for(self._listening, PATIENCE, "colonnade serve listening")
        except BaseException:
            self.kill()
            raise

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("colonnade serve exited:\n" + self.stderr())
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stderr(self) -> str:
        """Everything the process has written so far (its log goes to stderr)."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def gate() -> Iterator[None]:
    """``asgi_apps.GATE`` cleared for the test (its applications wait at it), set
    again after it: no application left waiting."""
    asgi_apps.GATE.clear()
    try:
        yield
    finally:
        asgi_apps.GATE.set()
