"""Running under systemd, emulated by the test: socket activation (``LISTEN_FDS``,
``LISTEN_PID``) and ``sd_notify`` (a ``NOTIFY_SOCKET`` the test listens on)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from colonnade.pools.systemd import Notifier, _matches
from tests.e2e.wire import Conn
from tests.support.ports import free_port, listening
from tests.support.wait import PATIENCE

from .conftest import get, server_toml

pytestmark = pytest.mark.e2e

#: What systemd does between fork and exec: the passed sockets become descriptors
#: 3, 4, … and LISTEN_PID names the process that execs the service.
EXEC_WRAPPER = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 3, 4, ...
for i, fd in enumerate(copies):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class Notifications:
    """A NOTIFY_SOCKET: the datagrams the service sends, read with a deadline."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.seen: list[dict[str, str]] = []
        self.proc: subprocess.Popen[bytes] | None = None  # the sender, when known

    def expect(self, field: str, timeout: float = PATIENCE) -> dict[str, str]:
        """The first datagram (from now on) carrying ``field`` (``"READY=1"``)."""
        name, _, value = field.partition("=")
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {field} within {timeout} s; got {self.seen}")
            if self.proc is not None and self.proc.poll() is not None and field != "STOPPING=1":
                raise AssertionError(f"the server exited ({self.proc.returncode}) before {field}")
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.partition("=")[::2] for line in data.decode().splitlines())
            self.seen.append(fields)
            if fields.get(name) == value:
                return fields

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[tuple[str, Notifications]]:
    """An abstract-namespace NOTIFY_SOCKET (``@name``), as systemd's own is."""
    name = f"colonnade-test-{secrets.token_hex(6)}"
    found = Notifications("\0" + name)
    yield "@" + name, found
    found.close()


def start(
    folder: Path, sockets: list[socket.socket], notify: str, *serve: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify,
        "WATCHDOG_USEC": "300000",
        "PYTHONUNBUFFERED": "1",
    }
    fds = [s.fileno() for s in sockets]
    with open(folder / "server.log", "wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                EXEC_WRAPPER,
                ",".join(map(str, fds)),
                "-m",
                "colonnade.management.cli",
                "serve",
                *serve,
                "--no-watch",
            ],
            cwd=folder,
            env=env,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def check_lifecycle(
    proc: subprocess.Popen[bytes], port: int, notes: Notifications, folder: Path
) -> None:
    """READY, a request over the passed socket, WATCHDOG, RELOADING + READY on
    SIGHUP, STOPPING on SIGTERM and a clean exit."""
    notes.proc = proc
    notes.expect("READY=1")
    with Conn(port) as conn:
        conn.send(get("/"))
        assert conn.response().status == 200
    notes.expect("WATCHDOG=1")
    proc.send_signal(signal.SIGHUP)
    reloading = notes.expect("RELOADING=1")
    # Type=notify-reload wants the time the reload began, CLOCK_MONOTONIC in µs.
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now - int(reloading["MONOTONIC_USEC"]) < PATIENCE * 1e6
    notes.expect("READY=1")
    proc.send_signal(signal.SIGTERM)
    notes.expect("STOPPING=1")
    assert proc.wait(PATIENCE) == 0, (folder / "server.log").read_text()
    log = (folder / "server.log").read_text()
    assert f"serving the socket systemd passed (127.0.0.1:{port})" in log, log


def test_master_serves_the_passed_socket_and_notifies(
    tmp_path: Path, notifications: tuple[str, Notifications]
) -> None:
    port, other = free_port(), free_port()
    (tmp_path / "www").mkdir()
    config = tmp_path / "colonnade.toml"
    config.write_text(server_toml(port, {"default": {}}))
    # Bound by "systemd" (this test): the master could not bind the port itself.
    served, unmatched = listening(port), listening(other)
    address, notes = notifications
    try:
        proc = start(tmp_path, [served, unmatched], address, "-c", str(config), "--workers", "1")
    finally:
        served.close()
        unmatched.close()
    try:
        check_lifecycle(proc, port, notes, tmp_path)
    finally:
        stop(proc)
    log = (tmp_path / "server.log").read_text()
    # The socket no binding asked for: named, not served.
    assert f"the socket on 127.0.0.1:{other} matches no binding" in log, log


def test_single_process_serves_the_passed_socket_and_notifies(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello")
    served = listening(port)
    path = str(tmp_path / "notify.sock")  # a path this time, not an abstract name
    notes = Notifications(path)
    try:
        proc = start(tmp_path, [served], path, "--root", "site", "--bind", f"127.0.0.1:{port}")
    finally:
        served.close()
    try:
        check_lifecycle(proc, port, notes, tmp_path)
    finally:
        stop(proc)
        notes.close()


def test_sockets_meant_for_another_process_are_ignored(
    tmp_path: Path, notifications: tuple[str, Notifications]
) -> None:
    port = free_port()
    address, notes = notifications
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": "1", "NOTIFY_SOCKET": address}
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "colonnade.management.cli", "serve"),
                *("--bind", f"127.0.0.1:{port}", "--root", str(tmp_path), "--no-watch"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    notes.proc = proc
    try:
        notes.expect("READY=1")
        with Conn(port) as conn:  # it bound the port itself
            conn.send(get("/"))
            assert conn.response().status in (200, 403, 404)
        proc.send_signal(signal.SIGTERM)
        notes.expect("STOPPING=1")
        assert proc.wait(PATIENCE) == 0
    finally:
        stop(proc)
    assert "are not for this process" in (tmp_path / "server.log").read_text()


# -- the parts, in this process ------------------------------------------------------------


def test_a_binding_matches_the_socket_on_its_address() -> None:
    port = free_port()
    with listening(port) as sock:
        assert _matches(sock, "127.0.0.1", port)
        assert _matches(sock, "localhost", port) or not _resolves_to_loopback4()
        assert not _matches(sock, "127.0.0.1", port + 1)
        assert not _matches(sock, "0.0.0.0", port)
    with socket.socket(socket.AF_INET6) as wildcard:
        wildcard.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        wildcard.bind(("::", 0))
        wildcard.listen()
        any_port = wildcard.getsockname()[1]
        # systemd's ListenStream=PORT: an IPv6 wildcard that takes IPv4 as well.
        assert _matches(wildcard, "0.0.0.0", any_port)
        assert _matches(wildcard, "::", any_port)
        assert not _matches(wildcard, "127.0.0.1", any_port)
        wildcard.close()


def _resolves_to_loopback4() -> bool:
    return any(info[4][0] == "127.0.0.1" for info in socket.getaddrinfo("localhost", 80))


def test_notifier_reads_and_removes_its_variables() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert env == {}  # workers and applications must not notify in the server's name
    assert notifier.address == "\0x"
    assert notifier.watchdog_interval == 2.0
    other = Notifier({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"})
    assert other.address == "/run/n" and other.watchdog_interval is None
    silent = Notifier({})
    assert silent.address is None
    silent.ready("nothing happens")  # no NOTIFY_SOCKET: a no-op
