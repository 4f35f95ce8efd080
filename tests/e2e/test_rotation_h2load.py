"""Certificate rotation under HTTP/2 load from ``h2load`` (nghttp2): no request fails.

``colonnade serve`` runs as a real process with an ``https://`` binding. h2load
runs round after round, back to back, from a thread: each round opens new TLS
connections (handshakes with SNI, ALPN ``h2``) and sends its requests as
concurrent streams, so handshakes and streams are in flight whenever the files
change. While it runs the certificate and key are replaced three ways:

1. atomically, as certbot and friends do (new files renamed over the old ones);
2. as an operator's ``cp`` does: each file truncated and rewritten in place (same
   inode), the certificate first. Until the key follows, the pair does not
   match; the server must notice that state (and say so), keep serving the
   previous certificate, and take the new pair once the key is there;
3. broken: the certificate file overwritten with garbage. The last good
   certificate goes on serving and the log names the file and the reason.

After each step new connections must present the expected certificate (its
serial number read from a fresh handshake), and h2load must report no failed or
errored request in any round. The single-request rotation tests are in
tests/transport/test_tls.py, the multi-worker one with Python clients in
tests/pools/test_tls_pools.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import trustme
from cryptography import x509

from tests.e2e.conftest import Process
from tests.support.ports import free_port
from tests.support.tls import Issued, client_context, handshake, issue
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

NAME = "www.example.test"
# One round: this many new connections, each carrying its share of the requests
# as up to STREAMS concurrent streams.
CONNECTIONS, REQUESTS, STREAMS = 8, 160, 4
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.M,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)


def h2load() -> str:
    found = shutil.which("h2load")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("h2load is not installed (apt-get install -y nghttp2-client)")
    pytest.skip("h2load is not installed")


class Round(NamedTuple):
    """One h2load run: when it started and what it reported."""

    started: float
    total: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    ok_2xx: int
    protocol: str


class Load:
    """h2load rounds back to back until stopped; every round's report is kept."""

    def __init__(self, tool: str, port: int) -> None:
        self.argv = [
            tool,
            f"--connect-to=127.0.0.1:{port}",  # the URL's host is the SNI name
            "-t1",
            f"-c{CONNECTIONS}",
            f"-n{REQUESTS}",
            f"-m{STREAMS}",
            f"https://{NAME}:{port}/hello.txt",
        ]
        self.rounds: list[Round] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                done = subprocess.run(
                    self.argv, capture_output=True, text=True, timeout=PATIENCE, check=False
                )
            except subprocess.TimeoutExpired:
                with self.lock:
                    self.problems.append("an h2load round did not finish in time")
                continue
            counts = _REQUESTS.search(done.stdout)
            status = _STATUS.search(done.stdout)
            protocol = _PROTOCOL.search(done.stdout)
            with self.lock:
                if done.returncode != 0 or counts is None or status is None:
                    self.problems.append(f"h2load exited {done.returncode}: {done.stdout[-600:]}")
                    continue
                n = [int(x) for x in counts.groups()]
                name = protocol.group(1) if protocol else "none"
                found = Round(started, n[0], n[3], n[4], n[5], n[6], int(status.group(1)), name)
                self.rounds.append(found)
                if found.succeeded != found.total or found.failed or found.errored:
                    self.problems.append(f"a round failed requests: {found}\n{done.stdout}")

    def finished_since(self, moment: float) -> int:
        """Rounds that started after ``moment`` and have finished."""
        with self.lock:
            return sum(1 for r in self.rounds if r.started > moment)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(PATIENCE)


def serial(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def test_rotation_under_h2load_fails_no_request(tmp_path: Path) -> None:
    tool = h2load()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("Hello over h2")
    ca = trustme.CA()
    trusted = client_context(ca)
    live = issue(ca, tmp_path / "certs", "www", NAME)  # the files the server reads
    assert live.key is not None
    first = live.der
    port = free_port()
    config = tmp_path / "colonnade.toml"
    # reload_check as shipped (1 s): the test waits for what it causes, never a time.
    config.write_text(f"""
[[sites]]
name = "main"
root = "www"
host_names = ["{NAME}"]
bindings = ["https://127.0.0.1:{port}"]

[sites.tls]
certificate = "{live.cert}"
key = "{live.key}"
""")
    server = Process(["-c", str(config), "--no-access-log", "--no-watch"], tmp_path, port)
    load: Load | None = None

    def presented() -> bytes:
        return handshake(port, NAME, trusted).der

    def load_covers(moment: float) -> None:
        assert load is not None
        wait_for(lambda: load.finished_since(moment) >= 2, PATIENCE, "two more h2load rounds")

    def issued(stem: str) -> Issued:
        made = issue(ca, tmp_path / stem, "www", NAME)
        assert made.key is not None and serial(made.der) != serial(presented())
        return made

    try:
        wait_for(lambda: "listening on https://" in server.stderr(), PATIENCE, "serving")
        assert presented() == first
        load = Load(tool, port)
        load_covers(0.0)

        # 1. Atomic: the key, then the certificate, renamed over the old files.
        second = issued("second")
        assert second.key is not None
        os.replace(second.key, live.key)
        os.replace(second.cert, live.cert)
        wait_for(lambda: presented() == second.der, PATIENCE, "the renamed certificate served")
        load_covers(time.monotonic())

        # 2. In place, as `cp` does (O_TRUNC, then write): the certificate first.
        third = issued("third")
        assert third.key is not None
        inode = live.cert.stat().st_ino
        subprocess.run(["cp", str(third.cert), str(live.cert)], check=True)
        assert live.cert.stat().st_ino == inode
        wait_for(
            lambda: "does not belong to the certificate" in server.stderr(),
            PATIENCE,
            "the new certificate with the old key noticed",
        )
        assert presented() == second.der  # the half-done pair is not served
        subprocess.run(["cp", str(third.key), str(live.key)], check=True)
        wait_for(lambda: presented() == third.der, PATIENCE, "the copied pair served")
        load_covers(time.monotonic())

        # 3. Broken: the last good certificate goes on serving; the log says why.
        live.cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
        wait_for(
            lambda: (
                f"certificate {live.cert} changed but does not load: not a PEM" in server.stderr()
            ),
            PATIENCE,
            "the broken file logged",
        )
        load_covers(time.monotonic())
        for _ in range(3):
            assert serial(presented()) == serial(third.der)
        load.stop()

        assert load.problems == []
        rounds = load.rounds
        assert len(rounds) >= 8
        assert {r.protocol for r in rounds} == {"h2"}
        assert (
            sum(r.ok_2xx for r in rounds) == sum(r.total for r in rounds) == len(rounds) * REQUESTS
        )
        log = server.stderr()
        assert "Traceback" not in log
        broken = [line for line in log.splitlines() if "not a PEM" in line]
        assert len(broken) == 1, broken  # once, not once per handshake
        assert "the previous one goes on serving" in broken[0]
    finally:
        if load is not None:
            load.stop()
        server.kill()
