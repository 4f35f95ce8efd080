"""docs/proxy.md's recipe ("one site across several machines"), as written there:
its node and front-end configurations run as real servers on loopback, two nodes
from the one node file and the front end over https, with a real Redis, and the
front end serves what the recipe says it does."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.e2e.conftest import Process
from tests.support.ports import free_port
from tests.support.redis import RedisServer
from tests.support.tls import issue
from tests.support.wait import PATIENCE, wait_for

DOC = Path(__file__).parents[3] / "docs" / "proxy.md"

# What the nodes run: which node answered, what it took for the client (the
# front end's forwarding fields read through security.trusted_proxies), and the
# visits of the browser's session (state.session in Redis: any node finds it).
APP = """
import json, os

NODE = os.environ["RECIPE_NODE"]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    session = scope["session"]
    session["visits"] = session.get("visits", 0) + 1
    headers = dict(scope["headers"])
    body = json.dumps({
        "node": NODE,
        "scheme": scope["scheme"],
        "client": scope["client"][0],
        "host": headers.get(b"host", b"").decode(),
        "visits": session["visits"],
    })
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode()})
"""


def recipe_configs() -> tuple[str, str]:
    """The recipe's two TOML blocks: the node's, then the front end's."""
    text = DOC.read_text()
    recipe = text[text.index("## Recipe: one site across several machines") :]
    node, front = re.findall(r"```toml\n(.*?)```", recipe, re.S)[:2]
    assert "# node.toml" in node and "# front.toml" in front
    return node, front


def swap(text: str, old: str, new: str) -> str:
    # Each address the recipe names must be there to be mapped (a recipe edited
    # so that a mapping no longer applies fails here, not by testing less).
    assert old in text, f"{old!r} not in the recipe"
    return text.replace(old, new)


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, Path]]:
    """The front end's https port and the CA file that signed its certificate."""
    pytest.importorskip("redis")
    node_toml, front_toml = recipe_configs()
    app_dir = tmp_path / "srv" / "app"
    (app_dir / "public" / "static").mkdir(parents=True)
    (app_dir / "app.py").write_text(APP)
    (app_dir / "public" / "static" / "site.css").write_text("body { color: teal }\n")
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = issue(ca, tmp_path / "tls", "site", "localhost", combined=True).cert
    redis = RedisServer(tmp_path)
    nodes = {"node1": ("10.0.0.5", free_port()), "node2": ("10.0.0.6", free_port())}
    front_port = free_port()
    started: list[Process] = []
    try:
        for name, (_address, port) in nodes.items():
            text = swap(node_toml, "http://10.0.0.5:8080", f"http://127.0.0.1:{port}")
            text = swap(text, "redis://10.0.0.20:6379/0", redis.url)
            text = swap(text, '["10.0.0.2"]', '["127.0.0.1"]')  # the front end's address
            text = swap(text, '"/srv/app"', json.dumps(str(app_dir)))
            (tmp_path / f"{name}.toml").write_text(text)
            monkeypatch.setenv("RECIPE_NODE", name)
            started.append(Process(["-c", str(tmp_path / f"{name}.toml")], tmp_path, port))
        text = front_toml
        for address, port in nodes.values():
            text = swap(text, f"http://{address}:8080", f"http://127.0.0.1:{port}")
        text = swap(text, "https://0.0.0.0:443", f"https://127.0.0.1:{front_port}")
        text = swap(text, '"/etc/colonnade/site.pem"', json.dumps(str(cert)))
        text = swap(text, '"/srv/app/public"', json.dumps(str(app_dir / "public")))
        (tmp_path / "front.toml").write_text(text)
        started.append(Process(["-c", str(tmp_path / "front.toml")], tmp_path, front_port))
        yield front_port, ca_file
    finally:
        for server in started:
            server.kill()
        redis.kill()


def test_the_recipe_balances_over_https_with_the_client_seen_and_sessions_shared(
    recipe: tuple[int, Path],
) -> None:
    port, ca_file = recipe
    tls = ssl.create_default_context(cafile=str(ca_file))
    base = f"https://localhost:{port}"
    # From another loopback address than the front end's own (127.0.0.1, which the
    # nodes see as their peer): the client address the application sees is the
    # front end's X-Forwarded-For, not the node's peer.
    transport = httpx.HTTPTransport(verify=tls, local_address="127.0.0.2")
    with httpx.Client(base_url=base, transport=transport, timeout=PATIENCE) as c:

        def both_answer() -> bool:
            got = {c.get("/").json()["node"] for _ in range(4)}
            return got == {"node1", "node2"}

        wait_for(both_answer, PATIENCE, "both nodes answering through the front end")
        c.cookies.clear()
        # A forged X-Forwarded-For from the client is replaced by the front end, and
        # the nodes trust the front end's: the application sees the real client,
        # the https it came in on (the nodes' own bindings are plain http) and the
        # public host (preserve_host).
        seen = [c.get("/", headers={"X-Forwarded-For": "203.0.113.9"}).json() for _ in range(4)]
        assert {s["node"] for s in seen} == {"node1", "node2"}  # least_requests spreads
        assert {s["scheme"] for s in seen} == {"https"}
        assert {s["client"] for s in seen} == {"127.0.0.2"}
        assert {s["host"] for s in seen} == {f"localhost:{port}"}
        # One session across the nodes: it lives in Redis.
        assert [s["visits"] for s in seen] == [1, 2, 3, 4]
        # The static files come from the front end itself, not from a node.
        css = c.get("/static/site.css")
        assert css.status_code == 200
        assert css.text == "body { color: teal }\n"
