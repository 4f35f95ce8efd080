"""``colonnade serve --uds PATH`` and ``-b unix:PATH``: HTTP over a unix socket, in
one process and with workers (the master binds, workers inherit, the front door
hands off), over real sockets with httpx's unix-socket transport."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from colonnade.engine.sites import Binding, parse_binding
from colonnade.errors import ConfigError
from colonnade.transport.sockets import bind_unix
from tests.support.wait import PATIENCE, wait_for

WEB = """
import json

async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"client": scope["client"], "server": scope["server"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    seen = {k: environ.get(k) for k in ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME")}
    return [json.dumps(seen).encode()]
"""


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (a unix socket's path is at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cuds", dir="/tmp") as folder:
        (Path(folder) / "web.py").write_text(WEB)
        yield Path(folder)


def _listening(path: Path) -> bool:
    # Polled with a socket of our own: httpx leaves a socket unclosed when its
    # unix-socket connect fails.
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _get(path: Path, target: str = "/") -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=PATIENCE) as c:
        return c.get(f"http://app.test{target}")


def _serve(folder: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "colonnade", "serve", *argv, "--no-watch"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _answer(proc: subprocess.Popen[bytes], path: Path) -> httpx.Response:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"colonnade serve exited ({proc.returncode})")
        return _listening(path)

    wait_for(listening, PATIENCE, f"colonnade serve listening on {path}")
    return _get(path)


@pytest.mark.parametrize(("workers", "flag"), [(0, "--uds"), (1, "--uds"), (0, "-b"), (2, "-b")])
def test_http_over_a_unix_socket(short_dir: Path, workers: int, flag: str) -> None:
    path = short_dir / "web.sock"
    target = "web.sock" if flag == "--uds" else "unix:web.sock"  # relative: made absolute
    # A stale socket file (its server gone without removing it) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    argv = ["web:asgi", flag, target, "-w", str(workers), "--control", str(short_dir / "c")]
    proc = _serve(short_dir, argv)
    try:
        answer = _answer(proc, path)
        assert answer.status_code == 200
        # As uvicorn: a unix peer has no IP address, so client and server are None.
        assert answer.json() == {"client": None, "server": None}
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        # A second server on the same path is refused: the first one listens there.
        second = _serve(short_dir, [*argv[:3], "--control", str(short_dir / "c2")])
        assert second.wait(PATIENCE) != 0
        assert _get(path).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(PATIENCE) == 0
    assert not path.exists()  # removed at stop


def test_wsgi_over_a_unix_socket_has_no_remote_addr(short_dir: Path) -> None:
    path = short_dir / "w.sock"
    proc = _serve(short_dir, ["web:wsgi", "--uds", str(path)])
    try:
        answer = _answer(proc, path)
        assert answer.status_code == 200
        assert answer.json() == {
            "REMOTE_ADDR": None,
            "REMOTE_PORT": None,
            "SERVER_NAME": "app.test",
        }
    finally:
        proc.terminate()
        assert proc.wait(PATIENCE) == 0


def test_unix_bindings_parse_and_refuse_what_is_not_one(short_dir: Path) -> None:
    assert parse_binding("unix:/run/app/../web.sock") == Binding("http", "/run/web.sock", 0)
    assert str(parse_binding("unix:/run/web.sock")) == "unix:/run/web.sock"
    for bad in ("unix:relative.sock", "unix:/" + "x" * 120):
        with pytest.raises(ConfigError, match="unix:/ABSOLUTE/PATH"):
            parse_binding(bad)
    # A file that is not a socket is never removed to make room.
    taken = short_dir / "file.sock"
    taken.write_text("mine")
    with pytest.raises(OSError, match="not a socket"):
        bind_unix(str(taken), 16)
    assert taken.read_text() == "mine"
    os.unlink(taken)


@pytest.mark.parametrize(("allow", "client"), [(None, None), ("unix", ["203.0.113.9", 0])])
def test_proxy_headers_from_a_unix_peer_only_when_trusted(
    short_dir: Path, allow: str | None, client: list[object] | None
) -> None:
    # nginx in front of a unix socket: its X-Forwarded-For counts only with
    # --forwarded-allow-ips unix (a unix peer has no address to list).
    path = short_dir / "p.sock"
    argv = ["web:asgi", "--uds", str(path), "--proxy-headers"]
    argv += ["--forwarded-allow-ips", allow] if allow else []
    proc = _serve(short_dir, argv)
    try:
        _answer(proc, path)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=PATIENCE) as c:
            answer = c.get("http://app.test/", headers={"X-Forwarded-For": "203.0.113.9"})
        assert answer.json()["client"] == client
    finally:
        proc.terminate()
        assert proc.wait(PATIENCE) == 0


@pytest.mark.parametrize("workers", [0, 1])
def test_fd_serves_an_inherited_unix_socket_and_leaves_its_file(
    short_dir: Path, workers: int
) -> None:
    path = short_dir / "fd.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(5)
    with listener:
        fd = listener.fileno()
        argv = ["web:asgi", "--fd", str(fd), "--no-watch", "-w", str(workers)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "colonnade", "serve", *argv, "--control", str(short_dir / "c")],
            cwd=short_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
        )
        try:
            assert _answer(proc, path).json() == {"client": None, "server": None}
        finally:
            proc.terminate()
            assert proc.wait(PATIENCE) == 0
    assert path.exists()  # the file is its creator's, not removed by the server
