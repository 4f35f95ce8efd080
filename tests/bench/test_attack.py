"""The suite's short pass of ``make attack`` (bench/reliability/attack.py): a slowloris
of 200 connections against a one-worker server while the script's good client gets
every answer, over real sockets. Skips only where slowhttptest is not installed (the
Makefile's SYSDEPS install it where it may)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pools.conftest import Master
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from reliability.attack import APP, ATTACKS, HERE, established, good_client, summary  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("slowhttptest") is None,
        reason="slowhttptest is not installed (make sysdeps installs it as root)",
    ),
]

CONNECTIONS = 200


def test_slowloris_leaves_a_good_client_every_answer(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"Hello, world!")
    port = free_port()
    control = str(tmp_path / "run" / "control.sock")
    serve = [APP, "--interface", "wsgi", "--app-dir", str(HERE), "--static", f"/files={www}"]
    serve += ["--bind", f"127.0.0.1:{port}", "--start-workers", "--control", control]
    master = Master(tmp_path, "", port=port, serve_args=serve, control=control, workers=1)
    attack: subprocess.Popen[bytes] | None = None
    try:
        worker = wait_for(lambda: master.pids("default"), PATIENCE, "the worker ready")
        slowloris = ATTACKS["slowloris"]
        # A header line every second, for longer than the test: the server's header
        # timeout (30 s) never ends these connections while the client measures.
        argv = ["slowhttptest", *slowloris.flags, "-c", str(CONNECTIONS), "-r", "200"]
        argv += ["-l", "60", "-u", f"http://127.0.0.1:{port}{slowloris.path}"]
        argv[argv.index("-i") + 1] = "1"
        with (tmp_path / "slowhttptest.out").open("wb") as out:
            attack = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for(
            lambda: established(port) >= CONNECTIONS,
            PATIENCE,
            f"slowhttptest holding its {CONNECTIONS} connections",
        )
        args = argparse.Namespace(rate=20.0, timeout=5.0)
        got = summary(asyncio.run(good_client(port, 5.0, args)))
        assert got["requests"] >= 90
        assert got["success"] == 1.0, got["errors"]
        # the attack went on all along, with the same worker
        assert attack.poll() is None
        assert established(port) >= CONNECTIONS
        assert master.pids("default") == worker
    finally:
        if attack is not None and attack.poll() is None:
            attack.send_signal(signal.SIGTERM)
            attack.wait(10)
        master.stop()
