"""A real ``redis-server`` for tests: on a free loopback port, no persistence,
stopped by the fixture (or killed mid-test to play an outage, and started again
on the same port to end it)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

REDIS = shutil.which("redis-server")


class RedisTls:
    """Files of a TLS ``redis-server``: its certificate and key, the CA that
    issued it (and the clients' certificates, which it requires)."""

    def __init__(self, cert: Path, key: Path, ca: Path) -> None:
        self.cert = cert
        self.key = key
        self.ca = ca


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence, in ``folder``."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        password: str = "",
        tls: RedisTls | None = None,
        unix: Path | None = None,
    ) -> None:
        if REDIS is None:
            pytest.skip("redis-server is not installed (make sysdeps)")
        self.folder = folder
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.unix = unix
        auth = ["--requirepass", password] if password else []
        listen = ["--port", str(self.port)]
        if unix is not None:
            listen = ["--port", "0", "--unixsocket", str(unix), "--unixsocketperm", "700"]
        if tls is not None:
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(tls.cert),
                "--tls-key-file",
                str(tls.key),
                "--tls-ca-cert-file",
                str(tls.ca),
                "--tls-auth-clients",
                "yes",
            ]
        self.proc = subprocess.Popen(
            [
                REDIS,
                *listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                *auth,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        wait_for(self._pongs, PATIENCE, f"redis-server answering on port {self.port}")

    @property
    def url(self) -> str:
        if self.unix is not None:
            return f"unix://{self.unix}?db=0"
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def _pongs(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        if self.unix is not None:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(1)
                    s.connect(str(self.unix))
                    s.sendall(b"PING\r\n")
                    return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
            except OSError:
                return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if self.tls is not None:
                    # Listening is enough: a TLS client needs a certificate here.
                    return True
                s.sendall(b"PING\r\n")
                answer = s.recv(64)
                # With a password, an unauthenticated PING is refused: it answers.
                return answer.startswith((b"+PONG", b"-NOAUTH"))
        except (OSError, ssl.SSLError):
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` for one test (killed at its end)."""
    server = RedisServer(tmp_path)
    yield server
    server.kill()
