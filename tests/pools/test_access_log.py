"""One access log file written by several workers: its W3C directives appear once; the
``access_log`` command (the admin API's and the console's tail of a site's log)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from colonnade.http.events import RequestHead
from colonnade.management import cli, operations
from colonnade.pools.api import ApiError, Request, command_for
from colonnade.pools.commands import TAIL_BYTES, tail_lines

from .conftest import MODULES, Master, toml_value, wait_for
from .identity import TEST_USER, Runtime, identity_of, open_temp_folder

pytestmark = pytest.mark.e2e

StartMaster = Callable[..., Master]


def recycle(master: Master) -> None:
    before = set(master.pids("default"))
    assert "recycling 2 worker(s)" in master.command("recycle", "default")
    wait_for(lambda: master.replaced(before, 2), 15, "two new workers")


def read_log(log: Path) -> tuple[list[str], list[str]]:
    """The file's directive lines, and the cs-uri-stem of each line (which must fit the
    #Fields line in force)."""
    directives: list[str] = []
    stems: list[str] = []
    fields: list[str] = []
    for line in log.read_text().splitlines():
        if line.startswith("#"):
            directives.append(line)
            if line.startswith("#Fields: "):
                fields = line.split()[1:]
            continue
        values = line.split(" ")
        assert len(values) == len(fields), line[:200]
        stems.append(values[fields.index("cs-uri-stem")])
    return directives, stems


def wait_logged(log: Path, stems: list[str]) -> None:
    """Lines are written just after their response, by whichever worker answered."""
    wait_for(lambda: all(f" {stem} " in log.read_text() for stem in stems), 10, "the lines written")


def test_workers_and_their_recycles_write_the_directives_once(
    start_master: StartMaster, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    master = start_master(
        {"default": {"start": "always"}},
        workers=2,
        modules=[*MODULES, "log.http"],
        extra=f"[http_logging]\ntarget = {toml_value(str(log))}\nbuffer_size = 0\n",
    )
    # Two workers opened the new file at the same time.
    wait_for(lambda: len(master.pids("default")) == 2, 10, "two workers")
    paths = [f"/{'p' * 4000}/{i}" for i in range(20)]
    for path in paths:
        assert master.get(path).status == 200
    wait_logged(log, paths)
    assert log.stat().st_size > 70_000  # the #Fields line is far back now

    recycle(master)  # two more open it, at the same time again
    assert master.get("/recycled").status == 200
    wait_logged(log, ["/recycled"])
    directives, stems = read_log(log)
    assert len(directives) == 4 and directives[0].startswith("#Software: Colonnade")
    assert sorted(stems) == sorted([*paths, "/recycled"])

    # Rotated away (logrotate's rename): the next workers start a new file, once.
    log.rename(tmp_path / "access.log.1")
    recycle(master)
    assert master.get("/rotated").status == 200
    master.stop()  # the workers flush as they stop
    directives, stems = read_log(log)
    assert len(directives) == 4 and directives[0].startswith("#Software: Colonnade")
    assert stems == ["/rotated"]
    assert sorted(read_log(tmp_path / "access.log.1")[1]) == sorted([*paths, "/recycled"])


def test_tail_reads_at_most_64_kib_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    # 2000 lines of 100 bytes: 200 000 bytes, more than TAIL_BYTES.
    log.write_bytes(b"".join(b"line %05d " % i + b"x" * 88 + b"\n" for i in range(2000)))
    found = tail_lines(str(log), 1000)
    assert found["truncated"] and found["size"] == 200_000
    # Only what fits in the last 64 KiB, whole lines only (the cut one is left out).
    assert len(found["lines"]) == TAIL_BYTES // 100
    assert found["lines"][-1].startswith("line 01999 ")
    assert all(len(line) == 99 for line in found["lines"])
    # The count, and the filter (case-insensitive) applied before the count.
    assert [line[:10] for line in tail_lines(str(log), 3)["lines"]] == [
        "line 01997",
        "line 01998",
        "line 01999",
    ]
    assert [line[:10] for line in tail_lines(str(log), 2, "LINE 0199")["lines"]] == [
        "line 01998",
        "line 01999",
    ]
    assert tail_lines(str(log), 5, "line 00001 ")["lines"] == []  # too far back to be read
    assert found["fields"] is None
    small = tmp_path / "small.log"
    small.write_bytes(b"first\nsecond\n")
    assert tail_lines(str(small), 10) == {
        "file": str(small),
        "size": 13,
        "truncated": False,
        "fields": None,
        "lines": ["first", "second"],
    }
    with pytest.raises(FileNotFoundError):
        tail_lines(str(tmp_path / "missing.log"), 10)


def admin_get(path: bytes, query: bytes) -> RequestHead:
    """The head of ``GET path?query`` on the admin binding."""
    return RequestHead(
        method=b"GET",
        target=path + b"?" + query,
        path=path,
        query=query,
        version=b"1.1",
        headers=[],
        host=b"admin",
        keep_alive=True,
        expect_continue=False,
        content_length=None,
        chunked=False,
    )


@pytest.mark.parametrize("query", [b"lines=0", b"lines=1001", b"contains=" + b"x" * 257])
def test_tail_bounds_are_refused(query: bytes) -> None:
    path = b"/api/sites/main/log"
    with pytest.raises(ApiError) as refused:
        command_for(Request(admin_get(path, query), b""), "test")
    assert refused.value.status == 400
    # Within the bounds, the route fills the command's fields.
    fine = admin_get(path, b"lines=1000&contains=404")
    command = command_for(Request(fine, b""), "test")
    assert (command.op, command.site, command.lines, command.contains) == (
        "access_log",
        "main",
        1000,
        "404",
    )


def test_the_tail_of_a_sites_access_log(
    start_master: StartMaster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "logs" / "access.log"
    log.parent.mkdir()
    master = start_master(
        {"default": {"start": "always"}},
        modules=[*MODULES, "log.http"],
        # Relative: to the working folder the master and its workers share.
        extra='[http_logging]\ntarget = "logs/access.log"\nbuffer_size = 0\n',
    )
    for i in range(5):
        assert master.get(f"/tail/{i}").status == 200
    assert master.get("/other").status == 200
    wait_logged(log, ["/other"])
    found = operations.call(master.control, "access_log", site="main", lines=2)
    assert found["file"] == str(log) and found["site"] == "main"
    assert found["fields"].startswith("#Fields: date time s-ip cs-method cs-uri-stem ")
    assert [line.split()[4] for line in found["lines"]] == ["/tail/4", "/other"]
    found = operations.call(master.control, "access_log", lines=3, contains="/TAIL/")
    assert [line.split()[4] for line in found["lines"]] == ["/tail/2", "/tail/3", "/tail/4"]
    # The same from the command line: the #Fields line, then the lines.
    assert cli.main(["log", "main", "-n", "2", "--control", master.control]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("#Fields: ") and [p.split()[4] for p in printed[1:]] == [
        "/tail/4",
        "/other",
    ]
    assert cli.main(["log", "--contains", "/tail/0", "--json", "--control", master.control]) == 0
    assert [line.split()[4] for line in json.loads(capsys.readouterr().out)["lines"]] == ["/tail/0"]
    # The file gone (rotated away, not yet reopened): said so.
    log.rename(tmp_path / "logs" / "access.log.1")
    with pytest.raises(
        operations.ControlError, match=r"cannot read the access log .*access\.log: No such file"
    ):
        operations.call(master.control, "access_log")
    with pytest.raises(operations.ControlError, match="no site named 'nope'"):
        operations.call(master.control, "access_log", site="nope")


@pytest.mark.parametrize(
    ("modules", "extra", "error"),
    [
        (MODULES, "", "site 'main' keeps no access log"),
        ([*MODULES, "log.http"], "", "site 'main' writes its access log to stdout, not to a file"),
    ],
)
def test_a_site_without_a_log_file(
    start_master: StartMaster, modules: list[str], extra: str, error: str
) -> None:
    master = start_master({"default": {"start": "always"}}, modules=modules, extra=extra)
    with pytest.raises(operations.ControlError, match=error):
        operations.call(master.control, "access_log", site="main")


def test_a_relative_log_of_a_pool_run_as_another_user(
    start_master: StartMaster, system_user: pwd.struct_passwd, user_runtime: Runtime
) -> None:
    # Its workers start in / (spawn.py), so a relative target is under /, not
    # under the master's folder: the tail reads the file they write.
    folder = open_temp_folder(identity_of(system_user), prefix="colonnade-log-")
    try:
        os.chown(folder, system_user.pw_uid, system_user.pw_gid)
        target = os.path.relpath(folder / "access.log", "/")
        master = start_master(
            {"default": {"start": "always", "user": TEST_USER}},
            modules=[*MODULES, "log.http"],
            runtime=user_runtime,
            extra=f"[http_logging]\ntarget = {toml_value(target)}\nbuffer_size = 0\n",
        )
        assert master.get("/as-the-user").status == 200
        wait_logged(folder / "access.log", ["/as-the-user"])
        found = operations.call(master.control, "access_log", contains="as-the-user")
        assert found["file"] == str(folder / "access.log")
        assert [line.split()[4] for line in found["lines"]] == ["/as-the-user"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
