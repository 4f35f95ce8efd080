"""``colonnade serve`` options about where it listens: --backlog, --fd, and the
serve options set through the environment (COLONNADE_APP, COLONNADE_BIND, ...),
over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import colonnade
from colonnade.errors import ConfigError
from colonnade.management import serve_options
from colonnade.management.cli import _parser, config_source
from tests.management.test_serve_options import _exchange, env_app
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

WEB = (
    "def app(environ, start_response):\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
    "    return [b'hello']\n"
)


def _backlog(port: int) -> int | None:
    """The backlog of the socket listening on ``port`` (ss -ltn: a listening socket's
    Send-Q is its backlog), or None while none listens."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2]) if out else None


def _get(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
            return _exchange(sock)
    except OSError:
        return None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes of ``colonnade serve`` a test starts (terminated, and checked to exit 0)."""
    (tmp_path / "web.py").write_text(WEB)
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
    for proc in started:
        assert proc.wait(PATIENCE) == 0


def _start(
    started: list[subprocess.Popen[bytes]],
    cwd: Path,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "colonnade", "serve", *argv],
        cwd=cwd,
        env=dict(os.environ) if env is None else env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=pass_fds,
    )
    started.append(proc)
    return proc


def _answer(proc: subprocess.Popen[bytes], port: int) -> bytes:
    def answer() -> bytes | None:
        if proc.poll() is not None:
            raise RuntimeError(f"colonnade serve exited ({proc.returncode})")
        return _get(port)

    return wait_for(answer, PATIENCE, f"colonnade serve answering on {port}")


def test_backlog_in_one_process() -> None:
    with colonnade.Server(env_app, backlog=77) as server:
        assert _backlog(server.port) == 77
        assert (_get(server.port) or b"").startswith(b"HTTP/1.1 200")
    with colonnade.Server(env_app) as server:
        assert _backlog(server.port) == 2048  # the default, as before the option


def test_backlog_through_the_environment_with_workers(
    serve: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    env = dict(os.environ, COLONNADE_BACKLOG="99")
    argv = ["web:app", "-w", "1", "--port", str(port), "--control", str(tmp_path / "c.sock")]
    proc = _start(serve, tmp_path, [*argv, "--no-watch"], env=env)
    assert _answer(proc, port).endswith(b"hello")
    # The master's socket, which the worker inherits and accepts from.
    assert _backlog(port) == 99


@pytest.mark.parametrize("workers", [0, 1])
def test_fd_serves_an_inherited_listening_socket(
    serve: list[subprocess.Popen[bytes]], tmp_path: Path, workers: int
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    with listener:
        fd = listener.fileno()
        argv = ["web:app", "--fd", str(fd), "--no-watch", "-w", str(workers)]
        argv += ["--control", str(tmp_path / "c.sock")]
        proc = _start(serve, tmp_path, argv, pass_fds=(fd,))
        assert _answer(proc, port).endswith(b"hello")
    # This process's copy is closed: the server's copy still accepts.
    assert (_get(port) or b"").endswith(b"hello")


def test_fd_must_be_a_listening_socket_and_excludes_bind() -> None:
    left, right = socket.socketpair()
    with left, right:
        args = _parser().parse_args(["serve", "--fd", str(left.fileno())])
        with pytest.raises(ConfigError, match=r"--fd \d+: not a listening TCP or unix"):
            serve_options.prepare(args, {})
        args = _parser().parse_args(["serve", "--fd", "3", "--port", "80"])
        with pytest.raises(ConfigError, match="--fd and --bind"):
            serve_options.prepare(args, {})
        # The descriptor is left open: it was not ours.
        left.sendall(b"x")
        assert right.recv(1) == b"x"


def test_app_and_its_options_come_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    environ = {
        "COLONNADE_APP": "web:app",
        "COLONNADE_INTERFACE": "wsgi",
        "COLONNADE_FACTORY": "true",
        "COLONNADE_APP_DIR": str(tmp_path),
        "COLONNADE_BIND": "127.0.0.1:8001, 127.0.0.1:8002",
        "COLONNADE_STATIC": f"/s={tmp_path / 'static'}",
        "COLONNADE_CONTROL": "ctl.sock",
    }
    args = _parser().parse_args(["serve"])
    serve_options.prepare(args, environ)
    source = config_source(args)
    assert (source.app, source.interface, source.factory) == ("web:app", "wsgi", True)
    assert source.app_dir == str(tmp_path) and source.root == str(tmp_path)
    assert source.bindings == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    assert source.static == [("/s", str(tmp_path / "static"))]
    assert args.control == "ctl.sock"
    # The command line wins over each.
    args = _parser().parse_args(["serve", "other:app", "-b", "127.0.0.1:9", "--interface", "asgi"])
    serve_options.prepare(args, environ)
    source = config_source(args)
    assert (source.app, source.interface, source.bindings) == (
        "other:app",
        "asgi",
        ["http://127.0.0.1:9"],
    )
    args = _parser().parse_args(["serve", "--root", str(tmp_path)])
    serve_options.prepare(args, {"COLONNADE_ROOT": "/nowhere"})
    assert config_source(args).root == str(tmp_path)


def test_serve_with_no_arguments_serves_the_environments_app(
    serve: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = dict(
        os.environ,
        COLONNADE_APP="web:app",
        COLONNADE_APP_DIR=str(tmp_path),
        COLONNADE_BIND=f"127.0.0.1:{port}",
    )
    proc = _start(serve, elsewhere, [], env=env)
    assert _answer(proc, port).endswith(b"hello")
