"""handler.fastcgi over real sockets, with a FastCGI program of the tests'
(``fcgi_app.py``) started and managed as php-cgi would be, and the same
program as an external server: variables, streaming both ways, recycling, and
every way a program can misbehave."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.handlers.fastcgi.pool import POOLS
from tests.e2e.conftest import LiveServer
from tests.e2e.wire import Conn
from tests.handlers.fastcgi.kit import processes, request, site
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

APP = str(Path(__file__).with_name("fcgi_app.py"))
SCRIPTS = [
    "echo.t",
    "big.t",
    "die.t",
    "diehead.t",
    "hang.t",
    "trickle.t",
    "flood.t",
    "warn.t",
    "bad.t",
    "badstatus.t",
    "hugelength.t",
    "overloaded.t",
    "redirect.t",
    "early.t",
    "noend.t",
    "local.t",
    "loop.t",
    "slow.t",
]


def make_tree(base: Path) -> Path:
    www = base / "www"
    (www / "sub").mkdir(parents=True, exist_ok=True)
    (www / "uploads").mkdir(exist_ok=True)
    for name in SCRIPTS:
        (www / name).write_text("")
    (www / "sub" / "echo.t").write_text("")
    (www / "uploads" / "a.jpg").write_text("not a script")
    return base


def config(app: dict[str, Any]) -> dict[str, Any]:
    return site(
        {"script_extensions": [".t"], "max_instances": 2, **app},
        {"path": "*.t", "handler": "handler.fastcgi", "resource_type": "file"},
        {"path": "/sub/echo.t/*", "handler": "handler.fastcgi"},
    )


MANAGED = {"program": sys.executable, "arguments": [APP]}


def echo(port: int, target: str = "/echo.t", **kw: Any) -> dict[str, Any]:
    wire = request(port, target, **kw)
    assert wire.status == 200, wire
    doc: dict[str, Any] = json.loads(wire.body)
    return doc


def children() -> set[int]:
    """The pids of fcgi_app.py processes alive now."""
    return processes(lambda pid: APP.encode() in Path(f"/proc/{pid}/cmdline").read_bytes())


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("fastcgi"))


@pytest.fixture(scope="module")
def live(tree: Path) -> Iterator[LiveServer]:
    app = {**MANAGED, "activity_timeout": 2.0, "request_timeout": 20.0}
    server = LiveServer(config(app), tree).start()
    yield server
    server.stop()


# -- variables -----------------------------------------------------------------------------


def test_cgi_variables_reach_the_program(live: LiveServer, tree: Path) -> None:
    doc = echo(
        live.port,
        "/echo.t?a=1&b=%20",
        headers="proxy: http://evil.example\r\nx-thing: 1\r\ncookie: a=1\r\n",
    )
    env = doc["env"]
    assert env["SCRIPT_FILENAME"] == str(tree / "www" / "echo.t")
    assert env["SCRIPT_NAME"] == "/echo.t"
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["REQUEST_URI"] == "/echo.t?a=1&b=%20"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REDIRECT_STATUS"] == "200"
    assert env["HTTP_X_THING"] == "1" and env["HTTP_COOKIE"] == "a=1"
    assert "HTTP_PROXY" not in env  # httpoxy
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_path_info(live: LiveServer, tree: Path) -> None:
    env = echo(live.port, "/sub/echo.t/more/path")["env"]
    assert env["SCRIPT_NAME"] == "/sub/echo.t"
    assert env["PATH_INFO"] == "/more/path"
    assert env["SCRIPT_FILENAME"] == str(tree / "www" / "sub" / "echo.t")


def test_a_file_that_is_no_script_is_never_run(live: LiveServer) -> None:
    # The *.t mapping needs a file, /uploads/a.jpg/x.t is none: the static handler.
    assert request(live.port, "/uploads/a.jpg/x.t").status == 404
    assert request(live.port, "/missing.t").status == 404


def test_headers_and_redirect(live: LiveServer) -> None:
    wire = request(live.port, "/echo.t")
    assert wire.headers["x-test"] == "1"
    assert wire.headers["content-type"] == "application/json"
    assert "content-length" in wire.headers  # a short response goes out whole
    redirect = request(live.port, "/redirect.t")
    assert redirect.status == 302
    assert redirect.headers["location"] == "https://example.org/elsewhere"


def test_local_redirect(tree: Path) -> None:
    # One instance: the redirect's own request to the program must find it free.
    with LiveServer(config({**MANAGED, "max_instances": 1}), tree).start() as server:
        wire = request(server.port, "/local.t?x=1", "POST", b"a=b")
        assert wire.status == 200
        env = json.loads(wire.body)["env"]
        assert env["REQUEST_METHOD"] == "GET"
        assert env["SCRIPT_NAME"] == "/echo.t"
        assert env["QUERY_STRING"] == "from=local"
        assert env["REQUEST_URI"] == "/local.t?x=1"  # what the client asked
        assert "CONTENT_LENGTH" not in env
        assert request(server.port, "/loop.t").status == 500
        assert echo(server.port)["pid"]


# -- streaming -----------------------------------------------------------------------------


def test_upload_is_streamed_and_hashed(live: LiveServer) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    doc = echo(live.port, method="POST", body=body, headers="content-type: x/y\r\n")
    assert doc["length"] == len(body)
    assert doc["sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["env"]["CONTENT_LENGTH"] == str(len(body))
    assert doc["env"]["CONTENT_TYPE"] == "x/y"


def test_chunked_upload(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(
            b"POST /echo.t HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        doc = json.loads(conn.response().body)
    assert doc["length"] == 11
    assert doc["sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert "CONTENT_LENGTH" not in doc["env"]


@pytest.mark.parametrize("sized", [False, True])
def test_large_download_is_streamed(live: LiveServer, sized: bool) -> None:
    n = 20 * 1024 * 1024 + 3
    wire = request(live.port, f"/big.t?n={n}" + ("&len=1" if sized else ""))
    assert wire.status == 200
    assert len(wire.body) == n and wire.body.count(b"x") == n
    assert wire.chunked is not sized


def test_head_request(live: LiveServer) -> None:
    wire = request(live.port, "/echo.t", method="HEAD")
    assert wire.status == 200 and wire.body == b""


def test_an_answer_before_the_body_is_read(live: LiveServer) -> None:
    body = os.urandom(2 * 1024 * 1024)
    wire = request(live.port, "/early.t", method="POST", body=body)
    assert wire.status == 200
    assert request(live.port, "/echo.t").status == 200


def test_keep_alive_reuses_one_process(live: LiveServer) -> None:
    pids = {echo(live.port)["pid"] for _ in range(6)}
    assert len(pids) <= 2  # max_instances


# -- misbehaviour ---------------------------------------------------------------------------


def test_death_before_the_head_is_502_2(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        wire = request(live.port, "/diehead.t")
    assert wire.status == 502
    assert "502.2" in wire.body.decode() or wire.status == 502
    assert any(
        "FastCGI application 'app'" in r.getMessage() and "pool 'default'" in r.getMessage()
        for r in caplog.records
    )
    assert echo(live.port)["pid"]  # replaced, serving


def test_death_mid_response_cuts_the_connection(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /die.t HTTP/1.1\r\nhost: x\r\n\r\n")
        with pytest.raises(EOFError):
            conn.response()
    assert echo(live.port)["pid"]


def test_close_without_end_request(live: LiveServer) -> None:
    assert request(live.port, "/noend.t").status == 502
    assert echo(live.port)["pid"]


# hugelength.t: a Content-Length int() refused (found by fuzzing: a 500 before).
@pytest.mark.parametrize("script", ["bad.t", "badstatus.t", "hugelength.t"])
def test_malformed_answers_are_502(live: LiveServer, script: str) -> None:
    assert request(live.port, f"/{script}").status == 502
    assert echo(live.port)["pid"]


def test_overloaded_is_503(live: LiveServer) -> None:
    assert request(live.port, "/overloaded.t").status == 503


def test_a_hung_program_is_killed_504(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /hang.t HTTP/1.1\r\nhost: x\r\n\r\n")
        wire = conn.response()
        # The same client connection goes on.
        conn.send(b"GET /echo.t HTTP/1.1\r\nhost: x\r\n\r\n")
        assert conn.response().status == 200
    assert wire.status == 504
    # The hung process was killed: fewer than max_instances + 1 programs live.
    wait_for(lambda: len(children()) <= 2, PATIENCE, "the hung process killed")


def test_activity_and_request_timeouts(tree: Path) -> None:
    # Progress restarts the activity timeout; the request timeout bounds the whole.
    app = {**MANAGED, "activity_timeout": 0.5, "request_timeout": 2.0}
    with LiveServer(config(app), tree).start() as server:
        wire = request(server.port, "/trickle.t?s=1.2")  # longer than the activity timeout
        assert wire.status == 200 and wire.body.startswith(b"....")
        # Never quiet, but longer than the whole (its few bytes are still held).
        wire = request(server.port, "/trickle.t?s=30")
        assert wire.status == 504 and "request timeout (2s)" in wire.body.decode()
        wire = request(server.port, "/hang.t")
        assert wire.status == 504 and "activity timeout (0.5s)" in wire.body.decode()


def test_a_timeout_while_the_body_is_still_pumped_is_504(tree: Path) -> None:
    # The client sends part of its body, then nothing: the program waits for all of
    # STDIN, the pump for the client. The activity timeout ends the exchange with a
    # 504.1, its pump stopped on the way (the timeout's cancellation of the request,
    # which arrived before the pump is stopped, is the timeout's, not a new one).
    app = {**MANAGED, "activity_timeout": 0.5, "request_timeout": 20.0}
    with LiveServer(config(app), tree).start() as server, Conn(server.port) as conn:
        conn.send(b"POST /hang.t HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        wire = conn.response()
        assert wire.status == 504 and "activity timeout (0.5s)" in wire.body.decode()


def test_a_hang_after_the_head_cuts_the_connection(live: LiveServer) -> None:
    with Conn(live.port) as conn:
        conn.send(b"GET /hang.t?after=1 HTTP/1.1\r\nhost: x\r\n\r\n")
        with pytest.raises(EOFError):
            conn.response()


def test_stderr_flood_is_logged_bounded(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "colonnade.fastcgi"):
        wire = request(live.port, "/flood.t")
    assert wire.status == 200 and wire.body == b"flooded"
    lines = [r.getMessage() for r in caplog.records if "STDERR" in r.getMessage()]
    assert len(lines) == 1
    assert len(lines[0]) < 8192 + 400
    assert "bytes more" in lines[0]


def test_queue_full_is_503_4(tree: Path) -> None:
    app = {**MANAGED, "max_instances": 1, "queue_length": 0, "activity_timeout": 30.0}
    with LiveServer(config(app), tree).start() as server, Conn(server.port) as held:
        held.send(b"GET /hang.t?after=1 HTTP/1.1\r\nhost: x\r\n\r\n")
        held.await_head()
        wire = request(server.port, "/echo.t")
        assert wire.status == 503
        assert "503.4" in wire.body.decode()


def test_waiting_requests_share_the_instances(tree: Path) -> None:
    # One process, two places in the queue: a first request and two waiting ones
    # are served in turn by that one process; a fourth is refused at once.
    app = {**MANAGED, "max_instances": 1, "queue_length": 2}
    before = children()
    with LiveServer(config(app), tree).start() as server:
        first = Conn(server.port)
        first.send(b"GET /slow.t?s=1 HTTP/1.1\r\nhost: x\r\n\r\n")
        wait_for(lambda: children() - before, PATIENCE, "the first request's process")
        waiting = [Conn(server.port) for _ in range(2)]
        for conn in waiting:
            conn.send(b"GET /slow.t HTTP/1.1\r\nhost: x\r\n\r\n")
        wait_for(
            lambda: server.look(lambda _: len(POOLS.here()[0].waiters) == 2),
            PATIENCE,
            "two requests waiting",
        )
        assert request(server.port, "/slow.t").status == 503
        bodies = {c.response().body for c in [first, *waiting]}
        for conn in [first, *waiting]:
            conn.close()
        assert len(bodies) == 1  # one process served all three


def test_stderr_fail_mode(tree: Path) -> None:
    app = {**MANAGED, "stderr_mode": "fail"}
    with LiveServer(config(app), tree).start() as server:
        wire = request(server.port, "/warn.t")
        assert wire.status == 500
        assert "something odd" in wire.body.decode()  # local client: the detail
        assert request(server.port, "/echo.t").status == 200


def test_instance_max_requests_recycles(tree: Path) -> None:
    app = {**MANAGED, "max_instances": 1, "instance_max_requests": 3}
    with LiveServer(config(app), tree).start() as server:
        docs = [echo(server.port) for _ in range(7)]
        pids = [d["pid"] for d in docs]
        assert pids[0] == pids[1] == pids[2] != pids[3]
        assert pids[3] == pids[4] == pids[5] != pids[6]
        assert docs[0]["env"].get("PHP_FCGI_MAX_REQUESTS") is None  # env, not params
        wait_for(lambda: len(children() & set(pids)) <= 1, PATIENCE, "recycled processes end")


def test_environment_of_the_program(tree: Path, tmp_path: Path) -> None:
    probe = tmp_path / "env.json"
    code = (
        "import json,os,sys;"
        f"json.dump(dict(os.environ),open({str(probe)!r},'w'));"
        f"sys.argv=[{APP!r}];exec(open({APP!r}).read())"
    )
    app = {
        "program": sys.executable,
        "arguments": ["-c", code],
        "environment": {"APP_MODE": "test"},
        "instance_max_requests": 50,
        "params": {"APP_ENV": "tést", "SERVER_SOFTWARE": "mine"},
    }
    with LiveServer(config(app), tree).start() as server:
        params = echo(server.port)["env"]
        assert params["APP_ENV"].encode("latin-1").decode() == "tést"  # UTF-8 bytes
        assert params["SERVER_SOFTWARE"] == "mine"  # params come last and win
        env = json.loads(wait_for(probe.read_text, PATIENCE, "the probe"))
    assert env["APP_MODE"] == "test"
    assert env["PHP_FCGI_MAX_REQUESTS"] == "50"
    assert env["PHP_FCGI_CHILDREN"] == "0"
    assert "FCGI_WEB_SERVER_ADDRS" not in env
    assert set(env) <= {
        "APP_MODE",
        "PHP_FCGI_MAX_REQUESTS",
        "PHP_FCGI_CHILDREN",
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "LC_CTYPE",
    }


def test_a_programs_own_stderr_is_logged(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    # What a program writes outside FastCGI (PHP's start-up errors) is logged.
    code = "import sys;print('starting up: no php.ini', file=sys.stderr, flush=True);" + (
        f"sys.argv=[{APP!r}];exec(open({APP!r}).read())"
    )
    app = {"program": sys.executable, "arguments": ["-c", code]}
    with (
        caplog.at_level(logging.WARNING, "colonnade.fastcgi"),
        LiveServer(config(app), tree).start() as server,
    ):
        pid = echo(server.port)["pid"]
        wait_for(
            lambda: any("starting up: no php.ini" in r.getMessage() for r in caplog.records),
            PATIENCE,
            "the line logged",
        )
    line = next(r.getMessage() for r in caplog.records if "starting up" in r.getMessage())
    assert f"process {pid} wrote: starting up: no php.ini" in line
    assert "FastCGI application 'app'" in line


def test_monitor_changes_to_recycles(tree: Path, tmp_path: Path) -> None:
    ini = tmp_path / "php.ini"
    ini.write_text("a=1\n")
    app = {**MANAGED, "max_instances": 1, "monitor_changes_to": str(ini)}
    with LiveServer(config(app), tree).start() as server:
        first = echo(server.port)["pid"]
        ini.write_text("a=22\n")
        wait_for(lambda: echo(server.port)["pid"] != first, PATIENCE, "a new process")


def test_idle_timeout_ends_processes(tree: Path) -> None:
    app = {**MANAGED, "idle_timeout": 0.5}
    with LiveServer(config(app), tree).start() as server:
        pid = echo(server.port)["pid"]
        wait_for(lambda: pid not in children(), PATIENCE, "the idle process ends")
        assert echo(server.port)["pid"] != pid


def test_a_killed_process_is_replaced(tree: Path) -> None:
    app = {**MANAGED, "max_instances": 1}
    with LiveServer(config(app), tree).start() as server:
        pid = echo(server.port)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: pid not in children(), PATIENCE, "the process dies")
        assert echo(server.port)["pid"] != pid


def test_rapid_fails_stop_new_processes(tree: Path) -> None:
    app = {**MANAGED, "max_instances": 1, "rapid_fails_per_minute": 2}
    with LiveServer(config(app), tree).start() as server:
        statuses = [request(server.port, "/diehead.t").status for _ in range(3)]
        assert statuses == [502, 502, 502]
        wire = request(server.port, "/echo.t")
        assert wire.status == 503


def test_no_process_outlives_the_server(tree: Path) -> None:
    app = {**MANAGED, "max_instances": 3}
    settings = config(app)
    settings["server"]["timeouts"] = {"graceful": 1.0}  # the hung request is cut then
    others = children()
    server = LiveServer(settings, tree).start()
    with Conn(server.port) as a, Conn(server.port) as b:
        a.send(b"GET /hang.t?after=1 HTTP/1.1\r\nhost: x\r\n\r\n")
        a.await_head()
        b.send(b"GET /echo.t HTTP/1.1\r\nhost: x\r\n\r\n")
        pid = json.loads(b.response().body)["pid"]
        assert pid in children()
        hung = children() - others - {pid}
        assert hung
        server.stop()
    wait_for(lambda: not (children() & (hung | {pid})), PATIENCE, "the processes end")


# -- an external server -------------------------------------------------------------------


@pytest.fixture
def external(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "ext.sock")
    proc = subprocess.Popen([sys.executable, APP, path])
    try:
        wait_for(lambda: os.path.exists(path), PATIENCE, "the external server listening")
        yield path
    finally:
        proc.kill()
        proc.wait()


def test_external_server_with_keep_alive(tree: Path, external: str) -> None:
    with LiveServer(config({"address": f"unix:{external}"}), tree).start() as server:
        docs = [echo(server.port) for _ in range(4)]
        body = os.urandom(500_000)
        doc = echo(server.port, method="POST", body=body)
        assert doc["sha256"] == hashlib.sha256(body).hexdigest()
        assert {d["pid"] for d in docs} == {doc["pid"]}
        assert request(server.port, "/bad.t").status == 502
        assert echo(server.port)["pid"] == doc["pid"]


def test_external_server_down_is_502_3(tree: Path, tmp_path: Path) -> None:
    app = {"address": f"unix:{tmp_path}/nobody.sock"}
    with LiveServer(config(app), tree).start() as server:
        wire = request(server.port, "/echo.t")
        assert wire.status == 502 and "502.3" in wire.body.decode()


def test_external_tcp_address(tree: Path) -> None:
    port = free_port()  # nobody listens there
    app = {"address": f"127.0.0.1:{port}"}
    with LiveServer(config(app), tree).start() as server:
        assert request(server.port, "/echo.t").status == 502


def test_a_process_killed_while_idle_costs_no_request(tree: Path) -> None:
    # Killed and asked at once, before the worker may have noticed: the request
    # goes to a new process (nothing of it had been taken by the dead one).
    app = {**MANAGED, "max_instances": 1}
    with LiveServer(config(app), tree).start() as server:
        for _ in range(3):
            pid = echo(server.port)["pid"]
            os.kill(pid, signal.SIGKILL)
            assert echo(server.port)["pid"] != pid


def test_a_death_is_counted_once(tree: Path) -> None:
    # Found dead at the next request, then notified by the kernel: one failure.
    app = {**MANAGED, "max_instances": 1}
    with LiveServer(config(app), tree).start() as server:
        pid = echo(server.port)["pid"]
        os.kill(pid, signal.SIGKILL)
        assert echo(server.port)["pid"] != pid
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), PATIENCE, "the process reaped")
        failures = server.look(lambda _: len(POOLS.here()[0].failures), turns=5)
        assert failures == 1


def test_a_program_that_ignores_keep_conn(tree: Path) -> None:
    # It closes each connection after its answer: connected to anew each time,
    # the same process serves, and nothing counts as a failure.
    app = {**MANAGED, "max_instances": 1, "environment": {"FCGI_TEST_CLOSE": "1"}}
    with LiveServer(config(app), tree).start() as server:
        pids = {echo(server.port)["pid"] for _ in range(6)}
        body = os.urandom(300_000)
        doc = echo(server.port, method="POST", body=body)
        assert doc["sha256"] == hashlib.sha256(body).hexdigest()
        assert pids == {doc["pid"]}
        assert server.look(lambda _: len(POOLS.here()[0].failures)) == 0
