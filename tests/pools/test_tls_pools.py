"""https:// bindings under the process model (``--workers 2``), over real sockets.

The master never reads a TLS port: a connection it accepts while no worker is
ready goes to the port's pool untouched, and the worker does the handshake. An
https port is served by one pool (checked); a recycle closes idle TLS
connections instead of handing them over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import threading
from pathlib import Path

import pytest
import trustme

from colonnade.config.load import from_dict
from colonnade.management import operations
from colonnade.pools.routing import RouteTable
from colonnade.pools.sandbox import landlock_abi
from tests.support.ports import free_port
from tests.support.tls import Issued, client_context, handshake, issue, request, tls_socket
from tests.support.wait import PATIENCE, wait_for

from .conftest import MODULES, Master

pytestmark = pytest.mark.e2e

NAME = "www.example.test"


def https_tail(cert: Issued) -> str:
    """The last site's certificate, and every request to acme.pid."""
    return f"""
[sites.tls]
certificate = "{cert.cert}"
key = "{cert.key}"

[[handlers]]
path = "*"
handler = "acme.pid"
"""


def https_toml(port: int, cert: Issued, *, start: str = "on_demand", sandbox: bool = False) -> str:
    return f"""
[server]
modules = {json.dumps(MODULES)}
control_socket = "run/control.sock"

[server.timeouts]
graceful = 5

[server.tls]
reload_check = 0.05

[pools.default]
start = "{start}"
sandbox = {"true" if sandbox else "false"}

[[sites]]
name = "main"
bindings = ["https://127.0.0.1:{port}"]
root = "www"
{https_tail(cert)}"""


def pid_of(port: int, ctx: ssl.SSLContext) -> int:
    head, body = request(port, NAME, ctx, "/")
    assert head.startswith(b"HTTP/1.1 200"), head
    pid: int = json.loads(body)["pid"]
    return pid


def test_two_workers_serve_https_and_the_master_hands_tls_over_unread(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = issue(ca, tmp_path / "certs", "www", NAME)
    port = free_port()
    master = Master(tmp_path, https_toml(port, cert), workers=2, port=port)
    try:
        ctx = client_context(ca)
        # No worker runs yet (on demand): the master accepts this one, passes the
        # socket on without reading it, and the new worker shakes hands.
        assert master.pids("default") == []
        first = pid_of(port, ctx)
        assert first in master.pids("default")
        wait_for(lambda: len(master.pids("default")) == 2, PATIENCE, "two workers ready")
        # Both workers accept from the shared socket and do their own handshakes.
        seen: set[int] = set()
        wait_for(
            lambda: seen.add(pid_of(port, ctx)) or len(seen) == 2,
            PATIENCE,
            "both workers answering over TLS",
        )
        assert handshake(port, NAME, ctx).der == cert.der

        # Rotation: every worker loads the new certificate for its new handshakes.
        new = issue(ca, tmp_path / "next", "www", NAME)
        assert new.key is not None and cert.key is not None
        os.replace(new.key, cert.key)
        os.replace(new.cert, cert.cert)
        fresh: set[int] = set()

        def rotated() -> bool:
            with tls_socket(port, NAME, ctx) as s:
                if s.getpeercert(binary_form=True) != new.der:
                    fresh.clear()  # an old certificate after a new one: start again
                    return False
                s.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            fresh.add(json.loads(data.partition(b"\r\n\r\n")[2])["pid"])
            return len(fresh) == 2

        wait_for(rotated, PATIENCE, "both workers presenting the new certificate")

        # A recycle: an idle TLS connection cannot move to the new worker; the old
        # one closes it once idle, and new connections reach the new workers.
        before = set(master.pids("default"))
        with tls_socket(port, NAME, ctx) as idle:
            idle.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")
            operations.recycle(master.control, "default")
            wait_for(lambda: master.replaced(before, 2), PATIENCE, "the pool recycled")
            # Closed either way (a close_notify or a bare close): never stuck.
            with contextlib.suppress(ssl.SSLError, ConnectionResetError):
                assert idle.recv(65536) == b""
        assert pid_of(port, ctx) not in before

        # A plain HTTP client on the TLS port: closed, logged once, no traceback.
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(65536) == b""
        wait_for(lambda: "plain HTTP request" in master.log(), PATIENCE, "the refusal logged")
        assert "Traceback" not in master.log()
    finally:
        master.stop()


def test_a_site_on_an_https_port_is_served_by_one_pool(tmp_path: Path) -> None:
    config = from_dict(
        {
            "pools": {"default": {}, "api": {}, "blog": {}},
            "sites": [
                {
                    "name": "main",
                    "bindings": ["https://127.0.0.1:8443", "http://127.0.0.1:8080"],
                    "applications": [{"path": "/api", "pool": "api"}],
                },
                {
                    "name": "blog",
                    "host_names": ["blog.test"],
                    "bindings": ["https://127.0.0.1:8443"],
                    "pool": "blog",
                },
            ],
        },
        source=str(tmp_path / "c.toml"),
        base_dir=str(tmp_path),
    )
    routes = RouteTable(config)
    # Sites of several pools may share the port (routed by SNI); one site may not
    # spread its applications over pools there.
    assert [f"{e.key}: {e.message}" for e in routes.check_tls_ports(config)] == [
        "sites[0].bindings[0]: site 'main' has applications in the pools api, default: "
        "a TLS connection is routed to a pool by its SNI name, which names a site, and "
        "stays in that pool's worker, so every application of a site on an https port "
        "must be in one pool"
    ]
    assert routes.tls_mixed(8443) and not routes.tls_mixed(8080)
    assert routes.tls_pool(8443, "blog.test") == "blog"
    assert routes.tls_pool(8443, "other.test") == "default"  # the default site's
    assert routes.tls_pool(8443, None) == "default"


def test_a_sandboxed_worker_reads_its_certificates(tmp_path: Path) -> None:
    if landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock")
    ca = trustme.CA()
    # Outside every content folder: only the sandbox's TLS rule lets the worker in.
    cert = issue(ca, tmp_path / "elsewhere", "www", NAME)
    port = free_port()
    master = Master(tmp_path, https_toml(port, cert, start="always", sandbox=True), port=port)
    try:
        wait_for(lambda: master.pids("default"), PATIENCE, "the sandboxed worker ready")
        assert "sandboxed with Landlock" in master.log()
        assert handshake(port, NAME, client_context(ca)).der == cert.der
    finally:
        master.stop()


def test_a_plain_pools_worker_reloads_beside_an_https_pool(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = issue(ca, tmp_path / "certs", "www", NAME)
    http, https = free_port(), free_port()
    config = f"""
[server]
modules = {json.dumps(MODULES)}
control_socket = "run/control.sock"

[pools.default]
start = "always"

[pools.secure]
start = "always"

[[sites]]
name = "plain"
bindings = ["http://127.0.0.1:{http}"]
root = "www"

[[sites]]
name = "secure"
bindings = ["https://127.0.0.1:{https}"]
root = "www"
pool = "secure"
{https_tail(cert)}"""
    master = Master(tmp_path, config, port=http)
    try:
        wait_for(
            lambda: master.pids("default") and master.pids("secure"), PATIENCE, "both pools ready"
        )
        # The default pool's view of the configuration has the secure site as a
        # stand-in without its certificate: its reload must not trip over that.
        master.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: master.log().count("configuration reloaded (master: reload)") >= 2,
            PATIENCE,
            "both workers reloaded",
        )
        assert "refused" not in master.log()
        assert handshake(https, NAME, client_context(ca)).der == cert.der
    finally:
        master.stop()


class TlsLoad:
    """Client threads, each: a new TLS connection, three kept-alive requests, close;
    until stopped. Counts what failed and which certificates were presented."""

    def __init__(self, port: int, ctx: ssl.SSLContext, clients: int = 4) -> None:
        self.port = port
        self.ctx = ctx
        self.ok = 0
        self.errors: list[str] = []
        self.seen: set[bytes] = set()
        self.last: dict[int, bytes] = {}  # worker pid -> the certificate it presented last
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self) -> None:
        while not self._stop.is_set():
            try:
                with tls_socket(self.port, NAME, self.ctx) as s:
                    der = s.getpeercert(binary_form=True) or b""
                    for _ in range(3):
                        s.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
                        data = b""
                        while not data.endswith(b"}"):
                            chunk = s.recv(65536)
                            if not chunk:
                                raise ConnectionError(f"closed after {data!r}")
                            data += chunk
                        if not data.startswith(b"HTTP/1.1 200"):
                            raise AssertionError(data[:60])
                    pid = json.loads(data.partition(b"\r\n\r\n")[2])["pid"]
                with self.lock:
                    self.ok += 1
                    self.seen.add(der)
                    self.last[pid] = der
            except Exception as exc:
                with self.lock:
                    self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(PATIENCE)


def test_rotation_and_a_broken_file_under_load_fail_no_request(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = issue(ca, tmp_path / "certs", "www", NAME)
    port = free_port()
    master = Master(tmp_path, https_toml(port, cert, start="always"), workers=2, port=port)
    load = None
    try:
        wait_for(lambda: len(master.pids("default")) == 2, PATIENCE, "two workers ready")
        load = TlsLoad(port, client_context(ca))
        wait_for(lambda: load.ok >= 20, PATIENCE, "load running")
        new = issue(ca, tmp_path / "next", "www", NAME)
        assert new.key is not None and cert.key is not None
        os.replace(new.key, cert.key)
        os.replace(new.cert, cert.cert)
        wait_for(
            lambda: len(load.last) == 2 and set(load.last.values()) == {new.der},
            PATIENCE,
            "both workers presenting the new certificate under load",
        )
        # A broken file: the new certificate goes on serving, and nothing fails.
        cert.cert.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
        wait_for(lambda: "does not load" in master.log(), PATIENCE, "the broken file noticed")
        with load.lock:
            load.seen.clear()
            before = load.ok
        wait_for(lambda: load.ok >= before + 20, PATIENCE, "more requests after the break")
        load.stop()
        assert load.errors == []
        assert load.seen == {new.der}
    finally:
        if load is not None:
            load.stop()
        master.stop()


def test_sites_of_two_pools_share_an_https_port_routed_by_sni(tmp_path: Path) -> None:
    ca = trustme.CA()
    a = issue(ca, tmp_path / "certs", "a", "a.test")
    b = issue(ca, tmp_path / "certs", "b", "b.test")
    port = free_port()
    sites = "".join(
        f"""
[[sites]]
name = "{name}"
host_names = ["{name}.test"]
bindings = ["https://127.0.0.1:{port}"]
root = "www"
pool = "{pool}"

[sites.tls]
certificate = "{cert.cert}"
key = "{cert.key}"
"""
        for name, pool, cert in (("a", "default", a), ("b", "blog", b))
    )
    config = f"""
[server]
modules = {json.dumps(MODULES)}
control_socket = "run/control.sock"

[pools.default]

[pools.blog]
{sites}
[[handlers]]
path = "*"
handler = "acme.pid"
"""
    master = Master(tmp_path, config, port=port)
    ctx = client_context(ca)

    def pool_of(name: str, host: str | None = None) -> str:
        with tls_socket(port, name, ctx) as s:
            s.sendall(
                f"GET / HTTP/1.1\r\nHost: {host or name}\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return head.split(b"\r\n")[0].decode()
        pool: str = json.loads(body)["pool"]
        return pool

    try:
        # No worker yet: the master peeks the ClientHello and starts the right pool.
        assert pool_of("b.test") == "blog"
        assert master.pids("default") == []
        assert pool_of("a.test") == "default"
        # Now the owner pool's worker accepts everything on the port and passes the
        # b.test connection on, unread; the blog worker shakes hands.
        for _ in range(5):
            assert pool_of("b.test") == "blog"
            assert pool_of("a.test") == "default"
        assert handshake(port, "b.test", ctx).der == b.der
        assert handshake(port, "a.test", ctx).der == a.der
        # SNI chose one pool, Host names the other's site: 421, as RFC 9110 says.
        assert pool_of("a.test", "b.test") == "HTTP/1.1 421 Misdirected Request"
        assert "Traceback" not in master.log()
    finally:
        master.stop()


def test_client_certificates_in_pool_workers(tmp_path: Path) -> None:
    """The first connection goes through the master untouched: the worker peeks
    the SNI name itself and asks for the certificate; a sandboxed worker reads the
    client CA file from a folder of its own."""
    sandboxed = landlock_abi() >= 1
    ca = trustme.CA()
    cert = issue(ca, tmp_path / "certs", "www", NAME)
    client_ca = tmp_path / "trust" / "clients.pem"
    client_ca.parent.mkdir()
    ca.cert_pem.write_to_path(str(client_ca))
    port = free_port()
    text = (
        https_toml(port, cert, sandbox=sandboxed)
        .replace(json.dumps(MODULES), json.dumps(["security.ssl", *MODULES]))
        .replace(
            f'key = "{cert.key}"\n',
            f'key = "{cert.key}"\nclient_certificates = "require"\nclient_ca = "{client_ca}"\n',
        )
    )
    master = Master(tmp_path, text, port=port)
    try:
        alice = client_context(ca)
        ca.issue_cert("alice@example.test").configure_cert(alice)
        assert master.pids("default") == []  # on demand: the master accepts the first
        assert pid_of(port, alice) in master.pids("default")
        head, body = request(port, NAME, client_context(ca), "/")
        assert head.startswith(b"HTTP/1.1 403") and b"403.7" in body
        assert "Traceback" not in master.log()
    finally:
        master.stop()
