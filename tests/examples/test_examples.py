"""The framework examples in examples/, each run as its README says (`colonnade
serve ...` in its folder, on a free port) and driven over real sockets.

Each test runs a copy of the example's folder, so nothing (``__pycache__``,
collected static files, a database) is written into the repository.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Process
from tests.examples.support import collectstatic, copy_example
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e


def copy(name: str, tmp_path: Path) -> Path:
    return copy_example(name, tmp_path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's own settings, whatever another test set in this process."""
    for key in list(os.environ):
        if key.startswith("DJANGO_"):
            monkeypatch.delenv(key)


def serve_app(tree: Path, *args: str) -> Process:
    """`colonnade serve APP ...` in ``tree``, as the README says, on a free port."""
    port = free_port()
    return Process([*args, "--bind", f"127.0.0.1:{port}"], cwd=tree, port=port)


@pytest.fixture
def running() -> Iterator[list[Process]]:
    servers: list[Process] = []
    yield servers
    for server in servers:
        server.kill()


def client(server: Process) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=PATIENCE)


# -- Django ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Django example with its static files collected, as its README does."""
    pytest.importorskip("django")
    tree = copy("django-site", tmp_path_factory.mktemp("django"))
    collectstatic(tree)
    return tree


def serve_config(tree: Path) -> Process:
    """`colonnade serve -c colonnade.toml` in ``tree``, its binding moved to a free port."""
    port = free_port()
    config = tree / "colonnade.toml"
    text = config.read_text()
    assert "127.0.0.1:8080" in text
    config.write_text(text.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    return Process(["-c", "colonnade.toml"], cwd=tree, port=port)


def check_admin_and_static(server: Process, tree: Path) -> None:
    with client(server) as c:
        login = c.get("/admin/login/")
        assert login.status_code == 200
        assert "Django administration" in login.text
        assert 'href="/static/admin/css/base.css"' in login.text
        # The admin's CSS, from STATIC_ROOT through the static handler: validators...
        css = c.get("/static/admin/css/base.css", headers={"Accept-Encoding": "identity"})
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert css.content == (tree / "staticfiles/admin/css/base.css").read_bytes()
        etag, modified = css.headers["etag"], css.headers["last-modified"]
        again = c.get("/static/admin/css/base.css", headers={"If-None-Match": etag})
        assert (again.status_code, again.content) == (304, b"")
        since = c.get("/static/admin/css/base.css", headers={"If-Modified-Since": modified})
        assert since.status_code == 304
        # ... and compression when asked for.
        with c.stream(
            "GET", "/static/admin/css/base.css", headers={"Accept-Encoding": "gzip"}
        ) as packed:
            assert packed.headers["content-encoding"] == "gzip"
            assert "accept-encoding" in packed.headers["vary"].lower()
            raw = b"".join(packed.iter_raw())
        assert gzip.decompress(raw) == css.content
        assert len(raw) < len(css.content)
        # MEDIA_ROOT at MEDIA_URL.
        media = c.get("/media/example.txt")
        assert media.status_code == 200
        assert media.content == (tree / "media/example.txt").read_bytes()
        assert media.headers["etag"]


def test_django_asgi_with_its_colonnade_toml(
    django_tree: Path, clean_env: None, running: list[Process]
) -> None:
    server = serve_config(django_tree)
    running.append(server)
    check_admin_and_static(server, django_tree)
    with client(server) as c:
        assert c.get("/healthz").text == "ok\n"
        assert c.get("/readyz").text == "ready\n"


def test_django_wsgi_from_the_command_line(
    django_tree: Path, clean_env: None, running: list[Process]
) -> None:
    server = serve_app(
        django_tree,
        "mysite.wsgi:application",
        "--static",
        "/static=staticfiles",
        "--static",
        "/media=media",
    )
    running.append(server)
    check_admin_and_static(server, django_tree)


# -- Flask ----------------------------------------------------------------------------------


def test_flask(tmp_path: Path, running: list[Process]) -> None:
    tree = copy("flask", tmp_path)
    server = serve_app(tree, "app:app", "--static", "/static=static")
    running.append(server)
    with client(server) as c:
        page = c.get("/")
        assert page.status_code == 200 and "Hello from Flask" in page.text
        assert 'href="/static/style.css"' in page.text
        assert c.get("/api/greet", params={"name": "you"}).json() == {
            "greeting": "hello, you",
            "framework": "flask",
        }
        css = c.get("/static/style.css")
        assert css.status_code == 200 and css.headers["etag"]
        assert css.content == (tree / "static/style.css").read_bytes()


# -- FastAPI --------------------------------------------------------------------------------


def test_fastapi_lifespan_and_background_tasks(tmp_path: Path, running: list[Process]) -> None:
    pytest.importorskip("fastapi")
    tree = copy("fastapi", tmp_path)
    server = serve_app(tree, "app:app")
    running.append(server)
    with client(server) as c:
        assert c.get("/").json() == {"hello": "fastapi", "lifespan_started": True}
        assert "lifespan: startup complete" in server.stderr()
        accepted = c.post("/jobs/report")
        assert (accepted.status_code, accepted.json()) == (202, {"accepted": "report"})
        # The job runs after its response has gone: seen by a later request.
        wait_for(
            lambda: c.get("/jobs").json() == {"done": ["report"]},
            PATIENCE,
            "the background task done",
        )
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(PATIENCE) == 0
    assert "lifespan: shutdown, 1 job(s) done" in server.stderr()


# -- Starlette, Litestar, Quart -------------------------------------------------------------


async def echo(port: int, text: str) -> str:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(text)
        answer = await ws.recv()
        assert isinstance(answer, str)
        return answer


def test_starlette(tmp_path: Path, running: list[Process]) -> None:
    pytest.importorskip("starlette")
    server = serve_app(copy("starlette", tmp_path), "app:app")
    running.append(server)
    with client(server) as c:
        assert c.get("/").text == "Hello from Starlette"
        assert c.get("/items/7").json() == {"item": 7, "started": True}
    assert asyncio.run(echo(server.port, "hi")) == "echo: hi"


def test_litestar(tmp_path: Path, running: list[Process]) -> None:
    pytest.importorskip("litestar")
    server = serve_app(copy("litestar", tmp_path), "app:app")
    running.append(server)
    with client(server) as c:
        assert c.get("/").text == "Hello from Litestar"
        item = c.get("/items/7")
        assert item.headers["content-type"].startswith("application/json")
        assert item.json() == {"item": 7, "framework": "litestar"}
        assert c.get("/items/x").status_code == 404  # Litestar: no route for a non-integer


def test_quart(tmp_path: Path, running: list[Process]) -> None:
    pytest.importorskip("quart")
    server = serve_app(copy("quart", tmp_path), "app:app")
    running.append(server)
    with client(server) as c:
        assert c.get("/").text == "Hello from Quart"
        assert c.get("/api/greet", params={"name": "you"}).json() == {
            "greeting": "hello, you",
            "framework": "quart",
        }
    assert asyncio.run(echo(server.port, "hi")) == "echo: hi"
