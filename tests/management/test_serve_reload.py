"""``colonnade serve --reload``: a code change recycles the workers with overlap,
through the master's file watcher. Over real sockets: a view is edited while a
client sends requests in a loop; the new code answers and no request fails."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

import colonnade
from colonnade.config.codewatch import CodeWatch
from colonnade.errors import ConfigError
from colonnade.management import serve_options
from colonnade.management.cli import _parser
from tests.management.test_serve_options import _exchange
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

WEB = """
import os
import views

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{views.MESSAGE} {os.getpid()}".encode()]
"""


class Loop(threading.Thread):
    """A client sending requests one after another (kept-alive) until stopped."""

    def __init__(self, url: str, uds: str | None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.uds = uds
        self.answers: list[str] = []
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        transport = httpx.HTTPTransport(uds=self.uds)
        with httpx.Client(transport=transport, timeout=PATIENCE) as client:
            while not self.halt.is_set():
                try:
                    answer = client.get(self.url)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                else:
                    self.answers.append(answer.text)

    def count(self, message: str) -> int:
        return sum(1 for a in list(self.answers) if a.split()[0] == message)


@pytest.mark.parametrize(("workers", "where"), [(0, "tcp"), (2, "tcp"), (1, "unix")])
def test_an_edited_view_answers_and_no_request_fails(
    tmp_path: Path, workers: int, where: str
) -> None:
    (tmp_path / "web.py").write_text(WEB)
    views = tmp_path / "views.py"
    views.write_text('MESSAGE = "v1"\n')
    port = free_port()
    argv = ["web:app", "--reload", "--control", str(tmp_path / "c")]
    uds = None
    if where == "unix":
        # Kept-alive unix connections are handed back by the old worker and migrate.
        folder = tempfile.mkdtemp(prefix="creload", dir="/tmp")
        uds = os.path.join(folder, "s")
        argv += ["--uds", uds]
    else:
        argv += ["--port", str(port)]
    # No .pyc: a same-second edit of the same size would otherwise look unchanged.
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "colonnade", "serve", *argv, "-w", str(workers)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    loop = Loop(f"http://127.0.0.1:{port}/", uds)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"colonnade serve exited ({proc.returncode})")
            if uds is not None:
                with socket.socket(socket.AF_UNIX) as probe:  # (httpx leaks one here)
                    return probe.connect_ex(uds) == 0
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=PATIENCE).is_success
            except httpx.HTTPError:
                return False

        wait_for(up, PATIENCE, "the server answering")
        idle = None
        if uds is not None:
            # A kept-alive connection idle through the recycle: the old worker hands
            # it back to the master (a unix socket, on the unix port), the new one
            # answers its next request.
            idle = socket.socket(socket.AF_UNIX)
            idle.settimeout(PATIENCE)
            idle.connect(uds)
            assert _exchange(idle).split(b"\r\n\r\n")[1].startswith(b"v1 ")
        loop.start()
        wait_for(lambda: loop.count("v1") >= 20, PATIENCE, "requests answered by v1")
        views.write_text('MESSAGE = "version-2"\n')
        wait_for(lambda: loop.count("version-2") >= 1, PATIENCE, "the edited view answering")
        seen = len(loop.answers)
        # Then only the new code answers (the old workers have drained).
        wait_for(
            lambda: (
                all(a.startswith("version-2") for a in loop.answers[seen + 20 :])
                and len(loop.answers) >= seen + 40
            ),
            PATIENCE,
            "the new code answering alone",
        )
        if idle is not None:
            with idle:
                assert _exchange(idle).split(b"\r\n\r\n")[1].startswith(b"version-2 ")
    finally:
        loop.halt.set()
        loop.join(PATIENCE)
        proc.terminate()
        assert proc.wait(PATIENCE) == 0
        if uds is not None:
            shutil.rmtree(os.path.dirname(uds))
    assert loop.failures == []
    old = {a.split()[1] for a in loop.answers if a.startswith("v1 ")}
    new = {a.split()[1] for a in loop.answers[-10:]}
    assert old and new and not old & new  # new processes answer the new code


def test_code_watch_globs(tmp_path: Path) -> None:
    code = CodeWatch((str(tmp_path),))
    assert code.matches(str(tmp_path / "app" / "views.py"))
    for ignored in (
        "notes.txt",
        ".hidden.py",
        ".venv/lib/site.py",
        "app/__pycache__/views.cpython-311.pyc",
        "views.py.swp",
        "~views.py",
    ):
        assert not code.matches(str(tmp_path / ignored)), ignored
    assert not code.matches("/elsewhere/views.py")
    args = _parser().parse_args(
        ["serve", "m:app", "--reload", "--reload-include", "*.html", "--reload-exclude", "gen"]
    )
    serve_options.prepare(args, {"COLONNADE_RELOAD_DIR": str(tmp_path)})
    assert args.workers == 1 and args.code.folders == (os.path.realpath(tmp_path),)
    assert args.code.matches(str(tmp_path / "templates" / "page.html"))
    assert not args.code.matches(str(tmp_path / "views.py"))
    assert not args.code.matches(str(tmp_path / "gen" / "page.html"))


def test_reload_options_need_reload_and_the_watcher() -> None:
    args = _parser().parse_args(["serve", "m:app", "--reload-dir", "."])
    with pytest.raises(ConfigError, match="--reload-dir: only with --reload"):
        serve_options.prepare(args, {})
    args = _parser().parse_args(["serve", "m:app", "--reload", "--no-watch"])
    with pytest.raises(ConfigError, match="--no-watch"):
        serve_options.prepare(args, {})


def test_run_and_server_with_reload() -> None:
    # Reloading runs worker processes: they import the app by its string.
    with pytest.raises(ConfigError, match="import string"):
        colonnade.run(lambda environ, start_response: [], reload=True)
    with pytest.raises(ConfigError, match="use run"):
        colonnade.Server(lambda environ, start_response: [], reload=True)
    with pytest.raises(ConfigError, match="use run"):
        colonnade.Server(lambda environ, start_response: [], uds="/tmp/x.sock")
