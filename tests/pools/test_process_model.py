"""The process model over real processes: master, pools, workers, hand-off, supervision."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.wire import Conn
from tests.support.ports import free_port
from tests.support.wait import PATIENCE

from .conftest import Load, Master, get, wait_for
from .identity import TEST_USER, Runtime

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]


def test_two_pools_share_one_keep_alive_connection(start_master: StartMaster) -> None:
    master = start_master({"default": {}, "api": {}}, workers=1, apps={"/api": "api"})
    seen: dict[str, set[int]] = {"default": set(), "api": set()}
    with Conn(master.port) as c:
        for i in range(6):
            path = f"/api/item{i}" if i % 2 else f"/page{i}"
            c.send(get(path))
            response = c.response()
            assert response.status == 200, response.body
            info = json.loads(response.body)
            assert info["path"] == path
            seen[info["pool"]].add(info["pid"])
    assert seen["default"] == set(master.pids("default"))
    assert seen["api"] == set(master.pids("api"))
    assert not seen["default"] & seen["api"]


def test_pipelined_request_for_another_pool_closes_after_the_local_ones(
    start_master: StartMaster,
) -> None:
    master = start_master({"default": {}, "api": {}}, apps={"/api": "api"})
    master.get("/warm")  # the default pool's worker accepts; the api pool starts on demand
    master.get("/api/warm")
    with Conn(master.port) as c:
        c.send(get("/slow?ms=100") + get("/api/x") + get("/z"))
        first = c.response()
        assert first.status == 200 and first.body == b"slow:"
        assert first.headers.get("connection") == "close"
        assert c.closed()  # the client retries /api/x and /z on a new connection


def test_requests_pipelined_before_one_for_another_pool_are_all_answered(
    start_master: StartMaster,
) -> None:
    master = start_master({"default": {}, "api": {}}, apps={"/api": "api"})
    master.get("/warm")
    master.get("/api/warm")
    with Conn(master.port) as c:
        c.send(get("/slow?ms=100") + get("/slow?ms=1") + get("/api/x") + get("/z"))
        first = c.response()
        assert first.status == 200 and first.body == b"slow:"
        assert "connection" not in first.headers
        second = c.response()
        assert second.status == 200 and second.body == b"slow:"
        assert second.headers.get("connection") == "close"
        assert c.closed()


def test_sigkill_under_load_fails_only_requests_in_flight(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}}, workers=2)
    wait_for(lambda: len(master.pids("default")) == 2, 10, "two workers")
    victim, survivor = master.pids("default")
    with Load(master.port, "/slow?ms=30", clients=8, keep_alive=False) as load:
        load.wait_ok(40)
        failed_before = load.failed
        inflight = load.inflight
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: len([p for p in master.pids("default") if p not in (victim,)]) == 2,
            10,
            "the killed worker is replaced",
        )
        load.wait_ok(60)
    assert failed_before == 0
    assert load.failed <= inflight, (load.failed, inflight, load.errors)
    assert victim not in master.pids("default") and survivor in master.pids("default")
    assert "exited unexpectedly (signal 9)" in master.log()


def test_recycle_under_load_loses_nothing(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}}, workers=2)
    wait_for(lambda: len(master.pids("default")) == 2, 10, "two workers")
    before = set(master.pids("default"))
    with (
        Load(master.port, "/slow?ms=20", clients=6, keep_alive=True) as kept,
        Load(master.port, "/slow?ms=20", clients=4, keep_alive=False) as fresh,
    ):
        kept.wait_ok(30)
        assert "recycling 2 worker(s)" in master.command("recycle", "default")
        wait_for(lambda: master.replaced(before, 2), 15, "new workers only")
        kept.wait_ok(30)
        fresh.wait_ok(20)
    assert (kept.failed, fresh.failed) == (0, 0), kept.errors + fresh.errors
    assert kept.ok > 60 and fresh.ok > 20


def test_reload_under_load_recycles_the_changed_pool_and_loses_nothing(
    start_master: StartMaster,
) -> None:
    master = start_master(
        {"default": {"start": "always", "env": {"ACME_ENV": "one"}}, "api": {"start": "always"}},
        apps={"/api": "api"},
    )
    wait_for(lambda: master.pids("default") and master.pids("api"), 10, "workers")
    api_before = master.pids("api")
    old = master.pids("default")
    with Load(master.port, "/", clients=6, keep_alive=True) as load:
        load.wait_ok(30)
        master.config.write_text(master.config.read_text().replace('"one"', '"two"'))
        master.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: master.json("/")["env"] == "two", 10, "the new environment")
        load.wait_ok(30)
    assert load.failed == 0, load.errors
    assert not set(master.pids("default")) & set(old)
    assert master.pids("api") == api_before  # its inputs did not change: not recycled

    # A broken configuration keeps everything serving and says where it is wrong.
    text = master.config.read_text().replace("[pools.api]", "[pools.api]\nbogus = 1")
    master.config.write_text(text)
    line = text.splitlines().index("bogus = 1") + 1
    master.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload (SIGHUP) refused" in master.log(), 10, "the refusal")
    assert f"colonnade.toml:{line}: pools.api.bogus: unknown key" in master.log()
    assert master.json("/")["env"] == "two"


def test_master_and_workers_agree_on_the_generation(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}})
    first = wait_for(lambda: master.pids("default"), 10, "a worker")[0]

    def reloaded(generation: int, pid: int) -> bool:
        log = master.log()
        return (
            f"configuration reloaded (SIGHUP): generation {generation}" in log
            and f":{pid}]" in log  # the worker's lines carry its pid
            and re.search(rf"{pid}.*reloaded \(master: reload\): generation {generation}", log)
            is not None
        )

    master.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloaded(2, first), 10, "generation 2 in master and worker")
    # A worker started after a reload counts from the master's number, not from 1.
    master.command("recycle", "default")
    second = wait_for(
        lambda: (p := master.pids("default")) and first not in p and p[0], 10, "a new worker"
    )
    master.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloaded(3, second), 10, "generation 3 in master and the new worker")
    assert not re.search(rf"{second}.*generation 2", master.log())


def test_recycling_by_request_count(start_master: StartMaster) -> None:
    master = start_master({"default": {"recycling": {"requests": 25}}})
    with Load(master.port, "/", clients=4, keep_alive=True) as load:
        wait_for(lambda: len(load.pids) >= 3, 20, "two recycles")
    assert load.failed == 0, load.errors
    # Each recycle starts at exactly the count: the worker says so the moment it
    # is reached (before, the once-a-second statistics made it 400 for 50).
    counts = re.findall(r"recycling worker \d+ \((\d+) requests\)", master.log())
    assert len(counts) >= 2 and set(counts) == {"25"}, counts


def test_crash_loop_trips_rapid_fail_protection(start_master: StartMaster) -> None:
    master = start_master(
        {
            "default": {},
            "api": {"env": {"ACME_CRASH": "start"}, "rapid_fail": {"max_crashes": 3}},
        },
        apps={"/api": "api"},
    )
    started = time.monotonic()
    response = master.get("/api/x", timeout=PATIENCE)
    assert response.status == 503, response
    assert b"rapid-fail" in response.body
    # Three worker starts, about a second on an idle machine; no waiting beyond them.
    assert time.monotonic() - started < 20
    pool = master.pool("api")
    assert pool["state"] == "stopped" and pool["reason"] == "rapid-fail protection"
    assert master.json("/x")["pool"] == "default"  # the other pool is not affected
    assert master.get("/api/y").status == 503  # answered by the master at once
    assert "started" in master.command("start", "api")
    assert master.pool("api")["state"] in ("idle", "running")


def test_crash_on_request_is_replaced(start_master: StartMaster) -> None:
    master = start_master({"default": {}})
    first = master.json("/")["pid"]
    with Conn(master.port) as c:
        c.send(get("/crash"))
        with pytest.raises((EOFError, ConnectionError)):
            c.response()
    second = master.json("/")["pid"]
    assert second != first
    assert master.pool("default")["failures"] == 1


def test_idle_pool_stops_and_starts_again_on_demand(start_master: StartMaster) -> None:
    master = start_master({"default": {"idle_timeout": 1.0}})
    assert master.pool("default")["workers"] == []  # on demand: nothing yet
    with Conn(master.port) as c:  # an idle keep-alive connection survives the shutdown
        c.send(get("/one"))
        first = json.loads(c.response().body)["pid"]
        wait_for(lambda: master.pool("default")["workers"] == [], 10, "idle shutdown")
        assert "no request for 1s" in master.log()
        c.send(get("/two"))
        second = json.loads(c.response().body)
    assert second["pid"] != first and second["path"] == "/two"


def test_hung_worker_is_replaced(start_master: StartMaster) -> None:
    # Time enough to answer a ping on a loaded machine; the hang outlasts any wait.
    master = start_master({"default": {"ping_interval": 0.5, "ping_response_time": 2.0}})
    hung = master.json("/")["pid"]
    with Conn(master.port) as c:
        c.send(get("/?block=60000"))
        with pytest.raises((EOFError, ConnectionError)):
            c.response()
    assert "did not answer a ping" in master.log()
    assert master.json("/")["pid"] != hung


def test_queue_limit_answers_503(start_master: StartMaster, tmp_path: Path) -> None:
    gate = tmp_path / "go"  # the worker starts only once it exists
    env = {"ACME_CRASH": f"until:{gate}"}
    master = start_master({"default": {"queue_length": 2, "env": env}})
    conns = [Conn(master.port) for _ in range(5)]
    try:
        for c in conns:
            c.send(get("/"))
        wait_for(lambda: master.log().count("queue full") == 3, PATIENCE, "three refused")
        gate.touch()
        statuses = sorted(c.response().status for c in conns)
    finally:
        for c in conns:
            c.close()
    assert statuses == [200, 200, 503, 503, 503]
    assert "queue full" in master.log()


def test_stop_and_start_commands(start_master: StartMaster) -> None:
    master = start_master({"default": {}})
    assert master.get("/").status == 200
    master.command("stop", "default")
    wait_for(lambda: master.pool("default")["workers"] == [], 10, "workers gone")
    response = master.get("/")
    assert response.status == 503 and b"stopped by command" in response.body
    master.command("start", "default")
    assert master.get("/").status == 200


def test_pools_command_prints_workers(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}}, workers=2)
    wait_for(lambda: len(master.pids("default")) == 2, 10, "two workers")
    out = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "colonnade"),
            "pools",
            "--control",
            master.control,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    for pid in master.pids("default"):
        assert str(pid) in out
    assert "pool default: running" in out and "RSS" in out


def test_pool_runs_as_its_user(
    start_master: StartMaster, system_user: pwd.struct_passwd, user_runtime: Runtime
) -> None:
    master = start_master(
        {"default": {}, "api": {"user": TEST_USER, "limits": {"open_files": 256}}},
        apps={"/api": "api"},
        runtime=user_runtime,
    )
    info = master.json("/api/who")
    assert info["uid"] == system_user.pw_uid and info["pool"] == "api"
    with open(f"/proc/{info['pid']}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    assert status["Uid"].split() == [str(system_user.pw_uid)] * 4
    assert status["Gid"].split() == [str(system_user.pw_gid)] * 4
    assert "0" not in status["Groups"].split()
    with open(f"/proc/{info['pid']}/limits") as f:
        limits = next(line for line in f if line.startswith("Max open files"))
    assert limits.split()[3:5] == ["256", "256"]
    assert master.json("/who")["uid"] == os.geteuid()


def test_sandboxed_pool_reads_only_its_folders(start_master: StartMaster, tmp_path: Path) -> None:
    from colonnade.pools.sandbox import landlock_abi

    if landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    master = start_master({"default": {"sandbox": True}})
    (tmp_path / "www" / "page.txt").write_text("yes")
    inside = master.json(f"/?read={tmp_path / 'www' / 'page.txt'}")
    assert inside["read"] == "ok"
    assert master.json(f"/?read={secret}")["read"] == "EACCES"
    assert master.json("/?read=/etc/hostname")["read"] == "EACCES"
    assert "sandboxed with Landlock" in master.log()


def test_sandboxed_pool_writes_where_it_is_granted(
    start_master: StartMaster, tmp_path: Path
) -> None:
    # A Django app on SQLite needs to write its database's folder; media uploads
    # and caches the same. Elsewhere, even in its own content, it may not write.
    from colonnade.pools.sandbox import landlock_abi

    if landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock")
    (tmp_path / "var").mkdir()
    master = start_master({"default": {"sandbox": True, "writable": ["var"]}})
    granted = tmp_path / "var" / "db.sqlite3"
    assert master.json(f"/?write={granted}")["write"] == "ok"
    assert granted.read_bytes() == b"x"
    assert master.json(f"/?read={granted}")["read"] == "ok"
    assert master.json(f"/?write={tmp_path / 'www' / 'upload.bin'}")["write"] == "EACCES"
    assert not (tmp_path / "www" / "upload.bin").exists()


def test_workers_stop_when_the_master_dies(start_master: StartMaster) -> None:
    master = start_master({"default": {"start": "always"}}, workers=2)
    pids = wait_for(lambda: len(master.pids("default")) == 2 and master.pids("default"), 10, "up")
    master.proc.kill()
    master.proc.wait(5)

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") for pid in pids)

    wait_for(gone, 10, "workers outliving their master")


def test_memory_recycling_trigger() -> None:
    from types import SimpleNamespace

    from colonnade.config.schema import PoolConfig, Recycling
    from colonnade.pools.supervision import recycle_reason

    worker = SimpleNamespace(
        pid=os.getpid(), ready_at=0.0, requests=0, memory_read=0.0, rss=0, private=0
    )
    settings = PoolConfig(recycling=Recycling(time=0, memory=1))
    reason = recycle_reason(worker, settings, 10.0)  # type: ignore[arg-type]
    assert reason is not None and reason.startswith("memory ") and worker.rss > 1_000_000
    worker.memory_read = 10.0
    assert recycle_reason(worker, settings, 10.5) is None  # type: ignore[arg-type]
    settings = PoolConfig(recycling=Recycling(time=0, private_memory=1))
    assert recycle_reason(worker, settings, 20.0).startswith("private memory")  # type: ignore[arg-type, union-attr]
    assert recycle_reason(worker, PoolConfig(), 200_000.0) == "uptime 104400s"  # type: ignore[arg-type]


def test_control_socket_is_the_owners_only(
    start_master: StartMaster, system_user: pwd.struct_passwd, user_runtime: Runtime
) -> None:
    master = start_master({"default": {}})
    assert stat.S_IMODE(os.stat(master.control).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(master.control)).st_mode) == 0o700
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    as_user = [
        "setpriv",
        f"--reuid={system_user.pw_uid}",
        f"--regid={system_user.pw_gid}",
        "--clear-groups",
        user_runtime.python,  # one the user can run, wherever the checkout is
        "-c",
        probe,
        master.control,
    ]
    env = {**os.environ, **user_runtime.env}
    result = subprocess.run(
        as_user, capture_output=True, text=True, timeout=10, check=False, env=env
    )
    assert result.stdout.strip() == "refused", result.stderr
    assert (
        "configuration reloaded"
        in subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "colonnade"),
                "reload",
                "--control",
                master.control,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    )


def test_masters_side_by_side_each_with_its_own_control_socket(tmp_path: Path) -> None:
    # `serve --control` gives each master its own socket: without it the second master
    # of a user would be refused ("another master is running on ...").
    masters: list[Master] = []
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            (folder / "www").mkdir(parents=True)
            (folder / "www" / "hello.txt").write_text(f"hello from {name}")
            port = free_port()
            control = str(folder / "control.sock")
            args = ["--root", str(folder / "www"), "--bind", f"127.0.0.1:{port}"]
            masters.append(
                Master(
                    folder, "", port=port, serve_args=[*args, "--control", control], control=control
                )
            )
        for name, master in zip("ab", masters, strict=True):
            response = master.get("/hello.txt")
            assert (response.status, response.body) == (200, f"hello from {name}".encode())
        a, b = (set(master.pids("default")) for master in masters)
        assert a and b and not a & b
    finally:
        for master in masters:
            master.stop()
