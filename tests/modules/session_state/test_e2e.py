"""state.session over real sockets: a Flask (WSGI) and a Starlette (ASGI) app keep a
session through ``colonnade serve``; two nodes sharing one redis-server see the same
sessions (a farm); Redis killed and restarted under wrk load: 200 or 503 as
configured, never another status, one log line each way."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Process
from tests.support.ports import free_port
from tests.support.redis import RedisServer
from tests.support.wait import PATIENCE, wait_for

pytest.importorskip("flask")
pytest.importorskip("starlette")

pytestmark = pytest.mark.e2e

WRK = shutil.which("wrk")
COOKIE = "ColonnadeSessionId"

FLASK_APP = """
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/count")
def count():
    session = request.environ["colonnade.session"]
    session["n"] = session.get("n", 0) + 1
    return jsonify(n=session["n"])


@app.get("/read")
def read():
    return jsonify(dict(request.environ["colonnade.session"]))
"""

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def count(request):
    request.session["n"] = request.session.get("n", 0) + 1
    return JSONResponse({"n": request.session["n"]})


async def read(request):
    return JSONResponse(dict(request.session))


async def bye(request):
    request.session.clear()
    return JSONResponse({})


app = Starlette(routes=[Route("/count", count), Route("/read", read), Route("/bye", bye)])
"""

#: Counts answers by status in every wrk thread; prints them at the end.
WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, busy, other = 0, 0, 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then busy = busy + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok"); b = b + t:get("busy"); c = c + t:get("other")
  end
  io.write(string.format("statuses 200=%d 503=%d other=%d\\n", a, b, c))
end
"""


def node(folder: Path, redis: RedisServer | None, session: str = "") -> Process:
    """``colonnade serve`` with the Flask app at /flask and Starlette's at /star."""
    folder.mkdir(exist_ok=True)
    (folder / "www").mkdir(exist_ok=True)
    apps = folder / "apps"
    apps.mkdir(exist_ok=True)
    (apps / "flask_sess.py").write_text(FLASK_APP)
    (apps / "star_sess.py").write_text(STARLETTE_APP)
    port = free_port()
    store = ""
    if redis is not None:
        store = (
            'provider = "redis"\n\n[redis]\n'
            f'url = "redis://127.0.0.1:{redis.port}/0"\npassword_file = "redis.pw"\n'
            "command_timeout = 0.3\nretry_min = 0.05\nretry_max = 0.5\n"
        )
        (folder / "redis.pw").write_text(redis.password + "\n")
    (folder / "colonnade.toml").write_text(
        f"""
[server]
modules = ["state.session", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:{port}"]
root = "www"

[[sites.applications]]
path = "/flask"
app = "flask_sess:app"
app_dir = "apps"

[[sites.applications]]
path = "/star"
app = "star_sess:app"
app_dir = "apps"

[session_state]
{session}
{store}
"""
    )
    return Process(["-c", str(folder / "colonnade.toml"), "--no-watch"], folder, port)


def get(port: int, path: str, sid: str | None = None) -> tuple[int, Any, str | None]:
    """(status, JSON body, the session id a Set-Cookie gave)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        conn.request("GET", path, headers={"Cookie": f"{COOKIE}={sid}"} if sid else {})
        resp = conn.getresponse()
        body = resp.read()
        given = None
        for value in resp.headers.get_all("Set-Cookie") or []:
            found = re.match(rf"{COOKIE}=([a-z0-5]+);", value)
            if found:
                given = found.group(1)
                assert f"Path={path.rsplit('/', 1)[0]}" in value, value
        data = json.loads(body) if resp.status == 200 else None
        return resp.status, data, given
    finally:
        conn.close()


@pytest.mark.parametrize("app", ["flask", "star"])
def test_an_app_keeps_a_session_in_memory(tmp_path: Path, app: str) -> None:
    server = node(tmp_path, None)
    try:
        status, data, sid = get(server.port, f"/{app}/count")
        assert (status, data) == (200, {"n": 1}) and sid is not None
        for n in (2, 3):
            assert get(server.port, f"/{app}/count", sid) == (200, {"n": n}, None)
        assert get(server.port, f"/{app}/read", sid) == (200, {"n": 3}, None)
        # Each application has its own sessions (and cookie path).
        other = "star" if app == "flask" else "flask"
        assert get(server.port, f"/{other}/read", sid)[1] == {}
    finally:
        server.kill()


def test_two_nodes_share_sessions_through_redis(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path, password="pw-Farm77q")
    a = node(tmp_path / "a", redis)
    b = node(tmp_path / "b", redis)
    try:
        for app in ("flask", "star"):
            status, data, sid = get(a.port, f"/{app}/count")
            assert (status, data) == (200, {"n": 1}) and sid is not None
            assert get(b.port, f"/{app}/read", sid) == (200, {"n": 1}, None)
            assert get(b.port, f"/{app}/count", sid) == (200, {"n": 2}, None)
            assert get(a.port, f"/{app}/count", sid) == (200, {"n": 3}, None)
        assert "pw-Farm77q" not in a.stderr() + b.stderr()
    finally:
        a.kill()
        b.kill()
        redis.kill()


def redis_commands(redis: RedisServer) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(redis.port), "-a", redis.password, "--no-auth-warning", "info"],
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"total_commands_processed:(\d+)", out)
    return int(found.group(1)) if found else 0


@pytest.mark.skipif(WRK is None, reason="wrk is not installed (make sysdeps)")
def test_redis_killed_and_restarted_under_load(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path, password="pw-Load51x")
    server = node(tmp_path / "s", redis, 'redis_failure = "closed"')
    again: RedisServer | None = None
    try:
        status, _, sid = get(server.port, "/star/count")
        assert status == 200 and sid is not None
        script = tmp_path / "count.lua"
        script.write_text(WRK_SCRIPT)
        assert WRK is not None
        load = subprocess.Popen(
            [
                WRK,
                "-t2",
                "-c8",
                # As long as the scenario takes: stopped by SIGINT below (wrk then
                # prints its summary and runs done()). A fixed duration raced the
                # kill-and-restart on a loaded machine.
                "-d300s",
                "-s",
                str(script),
                "-H",
                f"Cookie: {COOKIE}={sid}",
                f"http://127.0.0.1:{server.port}/star/count",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(lambda: redis_commands(redis) > 300, PATIENCE, "load reaching Redis")
            redis.kill()
            wait_for(lambda: "cannot be reached" in server.stderr(), PATIENCE, "the outage seen")
            again = RedisServer(tmp_path, redis.port, password="pw-Load51x")
            wait_for(lambda: "answers again" in server.stderr(), PATIENCE, "Redis used again")
            wait_for(lambda: redis_commands(again) > 300, PATIENCE, "load reaching Redis again")
        finally:
            load.send_signal(signal.SIGINT)
            out = load.communicate(timeout=PATIENCE)[0]
        found = re.search(r"statuses 200=(\d+) 503=(\d+) other=(\d+)", out)
        assert found is not None, out
        ok, refused, other = (int(g) for g in found.groups())
        print("wrk:", out)
        assert other == 0, out
        assert ok > 0 and refused > 0, out
        log = server.stderr()
        assert log.count("cannot be reached") == 1, log
        assert log.count("answers again") == 1, log
        assert "Traceback" not in log
        assert "pw-Load51x" not in log
    finally:
        server.kill()
        redis.kill()
        if again is not None:
            again.kill()
