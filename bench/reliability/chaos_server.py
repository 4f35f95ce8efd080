"""A real ``colonnade serve`` (a master and its workers) in a folder of its own.

Used by the chaos suite, the soak and tests/reliability: it writes the server file
(a static site with ASGI at ``/asgi`` and WSGI at ``/wsgi``, the apps of
:mod:`chaos_apps`), starts the master with ``--workers N``, and reads what the
processes hold (pids, fds, RSS) for the leak checks. Every process it started is
stopped by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from colonnade.management import operations

HERE = Path(__file__).resolve().parent
#: Bytes of the static files served.
SMALL = 1024
LARGE = 1024 * 1024


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a true value; raise naming ``what`` on timeout."""
    end = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout:g} s in vain for: {what}")
        time.sleep(interval)
    return found


def server_toml(
    port: int,
    *,
    workers: int = 2,
    log_target: str = "logs/access.log",
    pool_extra: str = "",
    log_extra: str = "",
    timeouts_extra: str = "",
    modules: tuple[str, ...] = ("security.request_filtering", "handler.static", "log.http"),
    extra: str = "",
) -> str:
    """The server file: one site on ``port`` with the two apps and static files."""
    app_dir = json.dumps(str(HERE))
    return f"""\
[server]
modules = {json.dumps(list(modules))}
control_socket = "run/control.sock"

[server.timeouts]
graceful = 5
{timeouts_extra}

[pools.default]
workers = {workers}
start = "always"
ping_interval = 1
ping_response_time = 3
startup_time_limit = 30
shutdown_time_limit = 10
{pool_extra}

[http_logging]
target = {json.dumps(log_target)}
{log_extra}

[[sites]]
name = "chaos"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

  [[sites.applications]]
  path = "/asgi"
  app = "chaos_apps:asgi_app"
  app_dir = {app_dir}

  [[sites.applications]]
  path = "/wsgi"
  app = "chaos_apps:wsgi_app"
  app_dir = {app_dir}

{extra}
"""


class Server:
    """``colonnade serve -c FILE --workers N`` in a fresh folder."""

    def __init__(
        self,
        *,
        workers: int = 2,
        folder: Path | None = None,
        python: str | None = None,
        **toml: Any,
    ) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="colonnade-chaos-"))
        self.port = free_port()
        self.workers = workers
        (self.folder / "www").mkdir(exist_ok=True)
        (self.folder / "logs").mkdir(exist_ok=True)
        # The server's own temp folder: a leak shows there, not among other
        # programs' files in /tmp.
        self.tmp = self.folder / "tmp"
        self.tmp.mkdir(exist_ok=True)
        (self.folder / "www" / "small.txt").write_bytes(b"s" * SMALL)
        (self.folder / "www" / "large.bin").write_bytes(os.urandom(LARGE))
        self.config = self.folder / "colonnade.toml"
        self.toml = toml
        self.write_config(server_toml(self.port, workers=workers, **toml))
        self.control = str(self.folder / "run" / "control.sock")
        self.log_path = self.folder / "server.log"
        self.python = python or sys.executable
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()

    def render(self, **overrides: Any) -> str:
        """The server file with ``overrides`` of :func:`server_toml`'s options."""
        return server_toml(self.port, workers=self.workers, **{**self.toml, **overrides})

    def write_config(self, text: str) -> None:
        """Replace the server file (atomically: a reload never reads half of it)."""
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def start(self) -> Server:
        """Start the master; return once ``workers`` workers are ready."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "colonnade.management.cli",
                "serve",
                "-c",
                str(self.config),
                "--workers",
                str(self.workers),
                "--no-watch",
            ],
            cwd=self.folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(self.tmp)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_until(lambda: len(self.ready()) == self.workers, 60, "the workers ready")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def master(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        """``colonnade pools``, as JSON."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("the master exited:\n" + self.log()[-4000:])
        status = operations.pools(self.control)
        for pool in status["pools"]:
            self.seen.update(w["pid"] for w in pool["workers"])
        return status

    def workers_by_state(self) -> dict[str, list[int]]:
        """Worker pids by state."""
        found: dict[str, list[int]] = {}
        try:
            status = self.status()
        except operations.ControlError:
            return found
        for pool in status["pools"]:
            for w in pool["workers"]:
                found.setdefault(w["state"], []).append(w["pid"])
        return found

    def ready(self) -> list[int]:
        """Pids of the ready workers."""
        return sorted(self.workers_by_state().get("ready", []))

    def settled(self) -> list[int] | None:
        """The ready workers when there are ``workers`` of them and no other."""
        states = self.workers_by_state()
        ready = states.get("ready", [])
        if len(ready) == self.workers and len(states) == 1:
            return sorted(ready)
        return None

    def pool(self) -> dict[str, Any]:
        """The pool ``default`` as ``colonnade pools`` shows it."""
        return next(p for p in self.status()["pools"] if p["name"] == "default")

    def log(self) -> str:
        """The master's and workers' log so far."""
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """Every live process whose parent is the master."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.master:
                found.append(int(entry))
        return sorted(found)

    def reload(self) -> None:
        """SIGHUP: re-read the server file."""
        os.kill(self.master, signal.SIGHUP)

    def stop(self, timeout: float = 30) -> int | None:
        """Stop gracefully (SIGTERM), then by force; every worker seen is gone after."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode

    def remove(self) -> None:
        """Delete the server's folder (after :meth:`stop`)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def temp_entries(self) -> list[str]:
        """What the server's temp folder (its TMPDIR) holds: the temp-file leak check."""
        return sorted(os.listdir(self.tmp))
