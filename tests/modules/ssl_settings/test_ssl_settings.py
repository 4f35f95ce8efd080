"""security.ssl through the pipeline (no sockets: the request carries the TLS
connection's TlsInfo): 403.4, 403.7, 403.16, 403.17 per the path's settings and
the site's handshake, and locking."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from colonnade.core.request import TlsInfo
from colonnade.testing import Client, TestResponse, build_engine


def code(response: TestResponse) -> tuple[int, int]:
    return response.status, response.context.response.substatus


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "admin").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "admin" / "b.txt").write_text("b")
    return root


@pytest.fixture
def client(www: Path) -> Iterator[Any]:
    started: list[Client] = []

    def start(**sections: Any) -> Client:
        cfg = {
            "server": {"modules": ["security.ssl", "handler.static"]},
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(www)}],
            **sections,
        }
        c = Client(build_engine(cfg, base_dir=str(www.parent))).__enter__()
        started.append(c)
        return c

    yield start
    for c in started:
        c.__exit__(None, None, None)


def tls(mode: str = "accept", der: bytes | None = None) -> TlsInfo:
    return TlsInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256", "www.test", None, mode, der)


@pytest.fixture(scope="module")
def certs() -> dict[str, bytes]:
    ca = trustme.CA()
    now = time.time()
    import datetime

    def der(**kw: Any) -> bytes:
        leaf = ca.issue_cert("a@example.test", **kw)
        return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())

    day = datetime.timedelta(days=1)
    soon = datetime.datetime.fromtimestamp(now, datetime.UTC) + day
    return {
        "good": der(),
        "future": der(not_before=soon, not_after=soon + day),
        "junk": b"\x30\x03\x02\x01\x00",
    }


def test_the_sites_handshake_setting_is_the_default(client: Any, certs: dict[str, bytes]) -> None:
    c = client()
    assert code(c.get("/a.txt")) == (200, 0)  # plain HTTP: nothing to judge
    assert code(c.get("/a.txt", tls=tls("require"))) == (403, 7)
    assert code(c.get("/a.txt", tls=tls("require", certs["good"]))) == (200, 0)
    assert code(c.get("/a.txt", tls=tls("accept"))) == (200, 0)
    assert code(c.get("/a.txt", tls=tls("accept", certs["future"]))) == (403, 17)
    assert code(c.get("/a.txt", tls=tls("accept", certs["junk"]))) == (403, 16)
    # ignore: the certificate is not looked at.
    assert code(c.get("/a.txt", tls=tls("ignore", certs["junk"]))) == (200, 0)


def test_per_path_settings(client: Any, certs: dict[str, bytes]) -> None:
    c = client(
        ssl_settings={"require_ssl": True},
        locations=[
            {"path": "s/admin", "ssl_settings": {"client_certificates": "require"}},
            {
                "path": "s/a.txt",
                "ssl_settings": {"require_ssl": False, "client_certificates": "ignore"},
            },
        ],
    )
    assert code(c.get("/admin/b.txt")) == (403, 4)
    assert code(c.get("/a.txt")) == (200, 0)
    assert code(c.get("/admin/b.txt", tls=tls("accept"))) == (403, 7)
    assert code(c.get("/admin/b.txt", tls=tls("accept", certs["good"]))) == (200, 0)
    # A path's ignore lifts the site's require.
    assert code(c.get("/a.txt", tls=tls("require"))) == (200, 0)
    # require where the handshake asks for nothing: 403.7, and the detail says why.
    denied = c.get("/admin/b.txt", tls=tls("ignore"))
    assert code(denied) == (403, 7)
    assert "does not ask for one" in denied.text


def test_locked_against_web_toml_unless_allowed(client: Any, www: Path) -> None:
    (www / "admin" / "web.toml").write_text('[ssl_settings]\nclient_certificates = "ignore"\n')
    locked = client().get("/admin/b.txt", tls=tls("require"))
    assert code(locked) == (500, 19)
    allowed = client(lock={"ssl_settings": "allow"})
    assert code(allowed.get("/admin/b.txt", tls=tls("require"))) == (200, 0)
