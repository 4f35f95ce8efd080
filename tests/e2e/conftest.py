"""Live servers over real sockets: in a thread (fast) or as a real process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.core.module import Module
from colonnade.engine.sites import Binding
from colonnade.pools.single import new_event_loop, serve
from colonnade.testing import build_engine
from colonnade.transport.server import HttpServer, ServerState, bind_socket


class LiveServer:
    """``serve()`` running on its own uvloop in a thread, on an ephemeral port."""

    def __init__(
        self, config: dict[str, Any], root: Path, modules: Iterable[type[Module]] = ()
    ) -> None:
        self.engine = build_engine(
            config, base_dir=str(root), modules=modules, with_entry_points=True
        )
        self.sock = bind_socket(Binding("http", "127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
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

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.stop_event = asyncio.Event()
            self.loop.run_until_complete(
                serve(self.engine, [self.sock], stop=self.stop_event, on_ready=self._ready)
            )
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    def start(self) -> LiveServer:
        self.thread.start()
        assert self.ready.wait(10), "server did not start"
        if self.error:
            raise self.error
        return self

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.stop_event is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)
        assert not self.thread.is_alive(), "server did not stop"
        if self.error:
            raise self.error


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """``colonnade serve`` as a real child process."""

    def __init__(self, args: list[str], cwd: Path, port: int) -> None:
        self.port = port
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "colonnade.management.cli", "serve", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("colonnade serve did not start listening")

    def stderr(self) -> str:
        """Everything the process wrote to stderr (after it exited)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
