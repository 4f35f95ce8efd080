"""A real master (``colonnade serve --workers N``) per test, and a small load generator.

Every process a test starts is cleaned up by PID: the master, and every worker
it ever reported or that is still its child.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.management import operations
from tests.e2e.wire import Conn, Wire
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .identity import NotArrangedError, Runtime, identity_of, open_temp_folder, stage_runtime
from .identity import system_user as make_system_user

#: pid, uid, pool, path as JSON (acme.pid); /slow answers after ?ms=N (acme.slow).
MODULES = ["acme.pid", "acme.slow", "acme.crash"]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def server_toml(
    port: int,
    pools: dict[str, dict[str, Any]],
    *,
    apps: dict[str, str] | None = None,
    modules: list[str] | None = None,
    extra: str = "",
) -> str:
    """One site on ``port``; ``apps`` maps URL paths to pools (``/`` is the site's)."""
    apps = dict(apps or {})
    root_pool = apps.pop("/", "default")
    lines = [
        "[server]",
        f"modules = {toml_value(modules or MODULES)}",
        'control_socket = "run/control.sock"',
        "",
        "[server.timeouts]",
        "graceful = 5",
        "",
    ]
    for name, settings in pools.items():
        lines.append(f"[pools.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
        lines.append("")
    lines += [
        "[[sites]]",
        'name = "main"',
        f'bindings = ["http://127.0.0.1:{port}"]',
        'root = "www"',
        f"pool = {toml_value(root_pool)}",
        "",
    ]
    for path, pool in apps.items():
        lines += [
            "[[sites.applications]]",
            f'path = "{path}"',
            f'pool = "{pool}"',
            'root = "www"',
            "",
        ]
    lines += [
        "[[handlers]]",
        'path = "/slow*"',
        'handler = "acme.slow"',
        "",
        "[[handlers]]",
        'path = "/crash*"',
        'handler = "acme.crash"',
        "",
        "[[handlers]]",
        'path = "*"',
        'handler = "acme.pid"',
        "",
        extra,
    ]
    return "\n".join(lines)


class Master:
    """``colonnade serve -c FILE --workers N`` as a child process; with ``serve_args``,
    ``colonnade serve SERVE_ARGS --workers N`` (no file) whose control socket is
    ``control``. ``runtime``: run it (and so its workers) with that Python."""

    def __init__(
        self,
        folder: Path,
        config: str,
        *,
        workers: int = 1,
        port: int,
        serve_args: list[str] | None = None,
        control: str | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.folder = folder
        self.port = port
        self.config = folder / "colonnade.toml"
        if serve_args is None:
            self.config.write_text(config)
            serve_args = ["-c", str(self.config)]
        (folder / "www").mkdir(exist_ok=True)
        self.control = control or str(folder / "run" / "control.sock")
        self.log_path = folder / "server.log"
        self.seen: set[int] = set()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                runtime.python if runtime else sys.executable,
                "-m",
                "colonnade.management.cli",
                "serve",
                *serve_args,
                "--workers",
                str(workers),
                "--no-watch",
            ],
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(runtime.env if runtime else {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self._answers, PATIENCE, "the master answering on its control socket")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("the master exited:\n" + self.log())
        try:
            self.status()
        except operations.ControlError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        status = operations.pools(self.control)
        for pool in status["pools"]:
            self.seen.update(w["pid"] for w in pool["workers"])
        return status

    def pool(self, name: str) -> dict[str, Any]:
        return next(p for p in self.status()["pools"] if p["name"] == name)

    def pids(self, name: str, state: str = "ready") -> list[int]:
        return [w["pid"] for w in self.pool(name)["workers"] if w["state"] == state]

    def replaced(self, before: set[int], count: int, pool: str = "default") -> bool:
        """``pool`` runs ``count`` ready workers, none of ``before``, and none draining."""
        ready = set(self.pids(pool))
        return ready.isdisjoint(before) and len(ready) == count and not self.pids(pool, "draining")

    def command(self, op: str, pool: str) -> str:
        return {"recycle": operations.recycle, "stop": operations.stop, "start": operations.start}[
            op
        ](self.control, pool)

    def get(self, path: str, *, timeout: float = 10) -> Wire:
        with Conn(self.port, timeout=timeout) as c:
            c.send(get(path))
            return c.response()

    def json(self, path: str) -> dict[str, Any]:
        response = self.get(path)
        assert response.status == 200, (response.status, response.body)
        data: dict[str, Any] = json.loads(response.body)
        return data

    def children(self) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == self.proc.pid:
                        found.add(int(entry))
        return found

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for the master and anything left of its workers."""
        workers = self.seen | self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in workers:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"colonnade.pools.worker" in f.read():
                    os.kill(pid, signal.SIGKILL)
        self._log.close()


def get(path: str, *extra: str, host: str = "t") -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", f"Host: {host}", *extra, "", ""]).encode()


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[Callable[..., Master]]:
    """Start a master on a fresh port; every one started is stopped after the test.

    ``runtime`` (from the ``user_runtime`` fixture): for pools with a ``user``; the
    master runs that Python, in a folder of the runtime's (the user can reach both).
    """
    started: list[Master] = []

    def start(
        pools: dict[str, dict[str, Any]],
        *,
        workers: int = 1,
        runtime: Runtime | None = None,
        folder: Path | None = None,
        **kwargs: Any,
    ) -> Master:
        port = free_port()
        if folder is None:
            folder = runtime.folder("master") if runtime else tmp_path
        config = server_toml(port, pools, **kwargs)
        master = Master(folder, config, workers=workers, port=port, runtime=runtime)
        started.append(master)
        return master

    yield start
    for master in started:
        master.stop()


@pytest.fixture(scope="session")
def system_user() -> pwd.struct_passwd:
    """A system user for pools to run as (created when missing); the tests skip unless root."""
    if os.geteuid() != 0:
        pytest.skip("running a pool as another user needs root")
    return make_system_user()


@pytest.fixture(scope="session")
def user_runtime(system_user: pwd.struct_passwd) -> Iterator[Runtime]:
    """A Python ``system_user`` can run, staged under a world-searchable temp folder
    (``tests/pools/identity.py``): it does not matter where the checkout lives."""
    identity = identity_of(system_user)
    try:
        root = open_temp_folder(identity, prefix="colonnade-runtime-", executable=True)
    except NotArrangedError as exc:
        pytest.skip(str(exc))
    try:
        yield stage_runtime(identity, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Load:
    """``clients`` threads sending GET requests until stopped; counts what failed.

    ``keep_alive``: each client reuses its connection (reconnecting only after a
    failure), else one connection per request. ``inflight`` is the number of
    requests sent and not yet answered, at any moment.
    """

    def __init__(self, port: int, path: str, *, clients: int = 8, keep_alive: bool = True) -> None:
        self.port = port
        self.path = path
        self.keep_alive = keep_alive
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.inflight = 0
        self.pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(20)

    def _client(self) -> None:
        conn: Conn | None = None
        while not self._stop.is_set():
            try:
                with self._lock:  # counted from the connection attempt on
                    self.inflight += 1
                try:
                    if conn is None:
                        conn = Conn(self.port, timeout=10)
                    conn.send(get(self.path, *(() if self.keep_alive else ("Connection: close",))))
                    response = conn.response()
                finally:
                    with self._lock:
                        self.inflight -= 1
                if response.status != 200:
                    raise AssertionError(f"status {response.status}: {response.body[:200]!r}")
                with self._lock:
                    self.ok += 1
                    with contextlib.suppress(ValueError, KeyError):
                        self.pids.add(json.loads(response.body)["pid"])
                if not self.keep_alive:
                    conn.close()
                    conn = None
            except Exception as exc:
                with self._lock:
                    self.failed += 1
                    self.errors.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def wait_ok(self, count: int, timeout: float = 10) -> None:
        start = self.ok
        wait_for(lambda: self.ok >= start + count, timeout, f"load: {count} more requests")
