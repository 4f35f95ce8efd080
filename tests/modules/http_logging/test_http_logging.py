"""The access log: W3C header and fields, JSON, escaping, selection, buffering, sharing."""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import Context, Handler, Module, Principal, Stage, __version__, hook
from colonnade.config.load import from_dict
from colonnade.engine import Engine
from colonnade.errors import ConfigError
from colonnade.modules.http_logging import sink as sinkmod
from colonnade.modules.http_logging import w3c as w3cmod
from colonnade.modules.http_logging.config import (
    IIS_DEFAULT_FIELDS,
    STANDARD_FIELDS,
    HttpLoggingSection,
)
from colonnade.modules.http_logging.fields import COMPUTER_NAME, json_key
from colonnade.modules.http_logging.module import HttpLogging
from colonnade.modules.http_logging.w3c import w3c_escape
from colonnade.testing import Client, build_engine, make_context, run_stage
from tests.support.wait import PATIENCE, wait_for_async

FILTERED = ["security.request_filtering", "static.default_document", "handler.static", "log.http"]
IIS_HEADER = (
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
    "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
)


class Boom(Handler):
    """Fails on /boom, answers 503 itself on /busy, else a small 200."""

    id = "test.boom"

    def execute(self, ctx: Context) -> None:
        if ctx.request.path == "/boom":
            raise RuntimeError("boom")
        if ctx.request.path == "/busy":
            ctx.response.status = 503
        ctx.response.body = b"ok"


class OddUser(Module):
    """Sets a user whose name is no str on /odd (a module bug the log must survive)."""

    id = "test.odd_user"

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate(self, ctx: Context) -> None:
        if ctx.request.path == "/odd":
            ctx.user = Principal(name=12345)  # type: ignore[arg-type]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("home")
    (site / "a b.txt").write_text("spaced")
    return site


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "access.log"


@pytest.fixture(autouse=True)
def no_open_sinks() -> Iterator[None]:
    yield
    assert sinkmod._SINKS == {}, "a test left a log target open"


def make_config(
    root: Path, log: dict[str, Any], modules: list[str] = FILTERED, **extra: Any
) -> dict[str, Any]:
    site: dict[str, Any] = {"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}
    if "applications" in extra:
        site["applications"] = extra.pop("applications")
    return {"server": {"modules": modules}, "sites": [site], "http_logging": log, **extra}


def serve(root: Path, log: dict[str, Any], modules: list[str] = FILTERED, **extra: Any) -> Client:
    return Client(build_engine(make_config(root, log, modules, **extra), modules=[Boom]))


def read_w3c(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Directive lines, and each line as field → value under the #Fields in force."""
    directives: list[str] = []
    records: list[dict[str, str]] = []
    fields: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            directives.append(line)
            if line.startswith("#Fields: "):
                fields = line[len("#Fields: ") :].split(" ")
            continue
        values = line.split(" ")
        assert len(values) == len(fields), line
        records.append(dict(zip(fields, values, strict=True)))
    return directives, records


def test_w3c_header_and_fields(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path)}) as client:
        client.get(
            "/index.html?x=1&y=two",
            headers={"user-agent": "Mozilla/5.0 (X11; Linux)", "referer": "http://localhost/"},
        )
        client.get("/missing")
    directives, records = read_w3c(log_path)
    assert directives[:2] == [f"#Software: Colonnade {__version__}", "#Version: 1.0"]
    assert re.fullmatch(r"#Date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", directives[2])
    assert directives[3] == IIS_HEADER + " x-correlation-id"
    assert len(directives) == 4
    first, second = records
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", first["date"])
    assert re.fullmatch(r"\d\d:\d\d:\d\d", first["time"])
    assert first == {
        **first,
        "s-ip": "127.0.0.1",
        "cs-method": "GET",
        "cs-uri-stem": "/index.html",
        "cs-uri-query": "x=1&y=two",
        "s-port": "8080",
        "cs-username": "-",
        "c-ip": "127.0.0.1",
        "cs(User-Agent)": "Mozilla/5.0+(X11;+Linux)",
        "cs(Referer)": "http://localhost/",
        "sc-status": "200",
        "sc-substatus": "0",
        "sc-win32-status": "0",
        "x-correlation-id": "-",
    }
    assert first["time-taken"].isdigit()
    assert (second["cs-uri-stem"], second["cs-uri-query"], second["sc-status"]) == (
        "/missing",
        "-",
        "404",
    )
    assert second["cs(User-Agent)"] == "-"


@pytest.mark.parametrize("log_format", ["w3c", "json"])
def test_a_default_document_is_logged_as_the_url_the_client_sent(
    root: Path, log_path: Path, log_format: str
) -> None:
    # The default document remaps "/" to "/index.html"; IIS logs the URL as sent.
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path), "format": log_format}) as client:
        response = client.get("/")
        assert (response.status, response.text) == (200, "home")
        assert response.context is not None
        assert response.context.request.path == "/index.html"
    if log_format == "json":
        assert json.loads(log_path.read_text())["cs_uri_stem"] == "/"
    else:
        assert read_w3c(log_path)[1][0]["cs-uri-stem"] == "/"


def test_substatus_of_a_request_filtering_refusal(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path)}) as client:
        assert client.get("/web.toml").status == 404
        client.get("/a+b")
    _, records = read_w3c(log_path)
    assert [(r["cs-uri-stem"], r["sc-status"], r["sc-substatus"]) for r in records] == [
        ("/web.toml", "404", "8"),
        ("/a+b", "404", "11"),
    ]


def test_optional_fields(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    fields = [
        "cs-method",
        "sc-bytes",
        "cs-bytes",
        "cs-host",
        "cs-version",
        "s-sitename",
        "s-computername",
        "cs(X-Forwarded-For)",
        "sc(Content-Type)",
        "cs(Cookie)",
    ]
    with serve(root, {"target": str(log_path), "fields": fields}) as client:
        response = client.get(
            "/index.html",
            headers={"x-forwarded-for": "10.0.0.1, 10.0.0.2"},
            host="example.com:8080",
        )
    directives, records = read_w3c(log_path)
    assert directives[-1] == "#Fields: " + " ".join(fields)
    (record,) = records
    assert response.context is not None
    assert record == {
        "cs-method": "GET",
        "sc-bytes": str(response.context.writer.bytes_sent),
        "cs-bytes": record["cs-bytes"],
        "cs-host": "example.com:8080",
        "cs-version": "HTTP/1.1",
        "s-sitename": "t",
        "s-computername": COMPUTER_NAME.replace(" ", "+") or "-",
        "cs(X-Forwarded-For)": "10.0.0.1,+10.0.0.2",
        "sc(Content-Type)": "text/html;+charset=utf-8",
        "cs(Cookie)": "-",
    }
    assert int(record["cs-bytes"]) > len("GET /index.html HTTP/1.1\r\n")
    assert int(record["sc-bytes"]) == 4


def test_json_format(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path), "format": "json"}) as client:
        client.get("/a%20b.txt?q=1", headers={"user-agent": "curl/8 (x)"})
        client.get("/web.toml")
    lines = log_path.read_text().splitlines()
    assert len(lines) == 2  # no W3C header in a JSON log
    first, second = (json.loads(line) for line in lines)
    assert list(first) == [json_key(f) for f in [*IIS_DEFAULT_FIELDS, "x-correlation-id"]]
    assert first == {
        **first,
        "s_ip": "127.0.0.1",
        "cs_method": "GET",
        "cs_uri_stem": "/a b.txt",
        "cs_uri_query": "q=1",
        "s_port": 8080,
        "cs_username": None,
        "c_ip": "127.0.0.1",
        "cs_user_agent": "curl/8 (x)",
        "cs_referer": None,
        "sc_status": 200,
        "sc_substatus": 0,
        "sc_win32_status": 0,
        "x_correlation_id": None,
    }
    assert isinstance(first["time_taken"], int)
    assert (second["sc_status"], second["sc_substatus"]) == (404, 8)


def test_w3c_escaping(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/a%20b.txt", headers={"user-agent": "", "referer": "a\tb"})
        client.get("/x%0D%0Ay%E2%80%A8z")  # CR LF and U+2028 must not split the line
    _, records = read_w3c(log_path)
    assert records[0]["cs-uri-stem"] == "/a+b.txt"
    assert records[0]["cs(User-Agent)"] == "-"
    assert records[0]["cs(Referer)"] == "a%09b"
    assert records[1]["cs-uri-stem"] == "/x%0D%0Ay%E2%80%A8z"


def test_w3c_escape() -> None:
    assert w3c_escape("") == "-"
    assert w3c_escape("a b  c") == "a+b++c"
    assert w3c_escape("café") == "café"
    assert w3c_escape("a\nb\x7f") == "a%0Ab%7F"


def test_a_line_that_cannot_be_formatted_is_reported_and_the_others_kept(
    root: Path, log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_path.parent.mkdir()
    config = make_config(root, {"target": str(log_path)}, [*FILTERED, "test.odd_user"])
    with Client(build_engine(config, modules=[Boom, OddUser])) as client:
        for target in ["/index.html"] * 5 + ["/odd", "/index.html"]:
            client.get(target)  # one batch: formatted when the client closes
    assert "1 of 7 lines could not be formatted" in caplog.text
    _, records = read_w3c(log_path)
    assert [r["cs-uri-stem"] for r in records] == ["/index.html"] * 6


def test_lines_keep_their_field_list_when_a_reload_adds_another(
    root: Path, log_path: Path, tmp_path: Path
) -> None:
    # A reload adds a site whose web.toml logs other fields to the same file; the
    # kept application's lines (pending and new) stay under their own #Fields.
    log_path.parent.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "web.toml").write_text('[http_logging]\nfields = ["date", "cs-uri-stem"]\n')

    def config(with_other: bool) -> dict[str, Any]:
        cfg = make_config(
            root, {"target": str(log_path), "fields": ["cs-method", "cs-uri-stem", "sc-status"]}
        )
        if with_other:
            cfg["sites"].append(
                {"name": "o", "bindings": ["http://127.0.0.1:8081"], "root": str(other)}
            )
        return cfg

    first = build_engine(config(False))
    with Client(first) as client:
        client.get("/index.html")
        source = from_dict(config(True), source="<test>", base_dir=str(tmp_path))
        second = Engine(source, first.registry, previous=first)
        second.start()
        later = Client(second)
        later.loop.close()
        later.loop = client.loop  # the kept application's module lives on this loop
        later.get("/index.html")
        client.loop.run_until_complete(second.shutdown())
        second.close()
    _, records = read_w3c(log_path)  # asserts each line fits its #Fields
    assert [r["cs-uri-stem"] for r in records] == ["/index.html", "/index.html"]


def test_repeated_values_are_escaped_once_and_the_memo_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def escape(value: str) -> str:
        calls.append(value)
        return w3c_escape(value)

    monkeypatch.setattr(w3cmod, "MEMO_MAX", 3)
    memo = w3cmod._Memo(escape)
    assert [memo["a b"], memo["a b"], memo["x\ny"]] == ["a+b", "a+b", "x%0Ay"]
    assert calls == ["a b", "x\ny"]  # the second "a b" was a hit
    for value in ("c", "d", "e", "f"):
        memo[value]
    assert len(memo) <= 3  # hostile unique values start it over, never grow it


def test_lines_logged_many_times_keep_their_escapes(root: Path, log_path: Path) -> None:
    # The memoised escapes must give every line the same, safe text.
    log_path.parent.mkdir()
    (root / "a b.txt").write_text("x")
    with serve(root, {"target": str(log_path)}) as client:
        for _ in range(3):
            client.get("/a%20b.txt?q=1%0D%0Ax", headers={"user-agent": "evil\tagent"})
    _, records = read_w3c(log_path)
    assert len(records) == 3
    for record in records:
        assert record["cs-uri-stem"] == "/a+b.txt"
        assert record["cs-uri-query"] == "q=1%0D%0Ax"
        assert record["cs(User-Agent)"] == "evil%09agent"


@pytest.mark.parametrize(
    ("selective", "logged"),
    [
        ("all", ["/index.html", "/missing", "/web.toml"]),
        ("success", ["/index.html"]),
        ("error", ["/missing", "/web.toml"]),
    ],
)
def test_selective(root: Path, log_path: Path, selective: str, logged: list[str]) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path), "selective": selective}) as client:
        for target in ("/index.html", "/missing", "/web.toml"):
            client.get(target)
    _, records = read_w3c(log_path)
    assert [r["cs-uri-stem"] for r in records] == logged


def test_disabled_and_disabled_by_location(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    (root / "quiet").mkdir()
    (root / "quiet" / "q.txt").write_text("q")
    with serve(root, {"target": str(log_path), "enabled": False}) as client:
        client.get("/index.html")
    assert read_w3c(log_path)[1] == []
    locations = [{"path": "/quiet", "http_logging": {"enabled": False}}]
    with serve(root, {"target": str(log_path)}, locations=locations) as client:
        client.get("/quiet/q.txt")
        client.get("/index.html")
    assert [r["cs-uri-stem"] for r in read_w3c(log_path)[1]] == ["/index.html"]


def test_requests_taking_turns_between_settings_log_by_their_own(
    root: Path, log_path: Path
) -> None:
    # The hook remembers the last request's settings and capture (the pure
    # install's walk tests them inline): a request of other settings is looked up.
    log_path.parent.mkdir()
    (root / "quiet").mkdir()
    (root / "quiet" / "q.txt").write_text("q")
    locations = [{"path": "/quiet", "http_logging": {"enabled": False}}]
    paths = [
        "/quiet/q.txt",
        "/index.html",
        "/index.html",
        "/quiet/q.txt",
        "/quiet/q.txt",
        "/index.html",
    ]
    with serve(root, {"target": str(log_path)}, locations=locations) as client:
        for path in paths:
            assert client.get(path).status == 200
    assert [r["cs-uri-stem"] for r in read_w3c(log_path)[1]] == ["/index.html"] * 3


def test_correlation_id_on_5xx_only(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    modules = ["log.http", "test.boom"]
    extra = {"handlers": [{"path": "*", "handler": "test.boom"}]}
    with serve(root, {"target": str(log_path)}, modules, **extra) as client:
        failed = client.get("/boom")
        busy = client.get("/busy")
        client.get("/fine")
    assert failed.context is not None and busy.context is not None
    _, records = read_w3c(log_path)
    assert [r["sc-status"] for r in records] == ["500", "503", "200"]
    assert records[0]["x-correlation-id"] == failed.context.correlation_id
    assert failed.context.correlation_id.encode() in failed.body
    assert records[1]["x-correlation-id"] == busy.context.correlation_id
    assert records[2]["x-correlation-id"] == "-"


# -- buffering ---------------------------------------------------------------------------


def test_buffer_is_flushed_on_cleanup_not_per_request(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    client = serve(root, {"target": str(log_path), "flush_interval": 3600})
    with client:
        client.get("/index.html")
        client.get("/index.html")
        directives, records = read_w3c(log_path)
        assert len(directives) == 4 and records == []  # the header went out at start-up
    assert len(read_w3c(log_path)[1]) == 2


def test_buffer_is_flushed_after_flush_interval(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    # The timer runs while the loop does (during a request, or the waits below); the
    # interval is long enough that no stall of a loaded machine lets it fire before
    # a request's own work is done.
    with serve(root, {"target": str(log_path), "flush_interval": 0.5}) as client:

        def written(lines: int) -> None:
            check = wait_for_async(
                lambda: len(read_w3c(log_path)[1]) == lines, PATIENCE, f"{lines} line(s) written"
            )
            client.loop.run_until_complete(check)

        client.get("/index.html")
        assert read_w3c(log_path)[1] == []
        written(1)
        client.get("/index.html")  # a new timer for the next batch
        assert len(read_w3c(log_path)[1]) == 1
        written(2)


def test_buffer_is_flushed_when_full(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(
        root, {"target": str(log_path), "buffer_size": 300, "flush_interval": 3600}
    ) as client:
        for _ in range(7):
            client.get("/index.html")
        written = len(read_w3c(log_path)[1])
        # Written in batches of about 300 characters: some, not all, not one by one.
        assert 0 < written < 7
    assert len(read_w3c(log_path)[1]) == 7


def test_buffer_size_zero_writes_each_line(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path), "buffer_size": 0}) as client:
        client.get("/index.html")
        assert len(read_w3c(log_path)[1]) == 1


# -- targets: files shared, headers kept consistent ------------------------------------


def test_existing_file_with_same_fields_gets_no_new_header(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    for _ in range(2):
        with serve(root, {"target": str(log_path)}) as client:
            client.get("/index.html")
    directives, records = read_w3c(log_path)
    assert len(directives) == 4 and len(records) == 2


def test_existing_file_with_other_fields_gets_a_new_header(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/index.html")
    with serve(root, {"target": str(log_path), "fields": ["date", "cs-uri-stem"]}) as client:
        client.get("/index.html")
    directives, records = read_w3c(log_path)
    assert [d for d in directives if d.startswith("#Fields")] == [
        IIS_HEADER + " x-correlation-id",
        "#Fields: date cs-uri-stem",
    ]
    assert records[1] == {"date": records[1]["date"], "cs-uri-stem": "/index.html"}


def test_a_far_back_fields_line_is_still_the_one_in_force(root: Path, log_path: Path) -> None:
    # A busy log: its #Fields line well over a read chunk behind the last line.
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/index.html")
    line = log_path.read_text().splitlines()[-1] + "\n"
    with log_path.open("a") as f:
        f.write(line * (3 * sinkmod._CHUNK // len(line)))
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/index.html")
    assert len(read_w3c(log_path)[0]) == 4


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13, 64])
def test_last_fields_line_across_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(sinkmod, "_CHUNK", chunk)
    cases = {
        b"": None,
        b"no directives\n": None,
        b"#Fields: a b": "#Fields: a b",
        b"#Fields: a b\nx y\n": "#Fields: a b",
        b"#Fields: a\nx\n#Fields: b c\nline one\nline two\n": "#Fields: b c",
        b"x #Fields: not a directive\n": None,
    }
    path = tmp_path / "f.log"
    for content, expected in cases.items():
        path.write_bytes(content)
        fd = os.open(path, os.O_RDONLY)
        try:
            assert sinkmod._last_directive(fd) == expected, content
            monkeypatch.setattr(sinkmod, "_SCAN_MAX", 4)  # searched no further back
            assert sinkmod._last_directive(fd) is (None if len(content) > 4 else expected)
            monkeypatch.setattr(sinkmod, "_SCAN_MAX", 1 << 20)
        finally:
            os.close(fd)


def test_directives_are_checked_and_written_under_an_exclusive_lock(
    root: Path, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers of a pool open one file at once: each checks the file's last #Fields
    # and writes its own directives inside one flock, so no two find it empty.
    log_path.parent.mkdir()
    events: list[tuple[str, int]] = []
    check = sinkmod._last_directive

    def flock(fd: int, operation: int) -> None:
        name = {fcntl.LOCK_EX: "lock", fcntl.LOCK_UN: "unlock"}[operation]
        events.append((name, log_path.read_text().count("#Fields: ")))
        fcntl.flock(fd, operation)

    def last_directive(fd: int) -> str | None:
        events.append(("check", log_path.read_text().count("#Fields: ")))
        return check(fd)

    monkeypatch.setattr(sinkmod, "flock", flock)
    monkeypatch.setattr(sinkmod, "_last_directive", last_directive)
    for _ in range(2):
        with serve(root, {"target": str(log_path)}) as client:
            client.get("/index.html")
    # (what happened, #Fields lines in the file then): the second start finds the
    # first one's directives and writes none.
    first = [("lock", 0), ("check", 0), ("unlock", 1)]
    assert events == [*first, ("lock", 1), ("check", 1), ("unlock", 1)]


def test_a_rotated_or_truncated_file_starts_with_the_directives(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/index.html")
    log_path.rename(log_path.with_suffix(".1"))  # logrotate's default
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/index.html")
    directives, records = read_w3c(log_path)
    assert len(directives) == 4 and len(records) == 1
    log_path.write_text("")  # logrotate's copytruncate
    with serve(root, {"target": str(log_path)}) as client:
        client.get("/index.html")
    directives, records = read_w3c(log_path)
    assert len(directives) == 4 and len(records) == 1


def test_applications_share_one_file(root: Path, log_path: Path) -> None:
    log_path.parent.mkdir()
    (root / "app").mkdir()
    (root / "app" / "a.html").write_text("a")
    engine = build_engine(
        make_config(root, {"target": str(log_path)}, applications=[{"path": "/app"}])
    )
    with Client(engine) as client:
        (sink,) = sinkmod._SINKS.values()
        assert sink.refs == 2
        client.get("/index.html")
        client.get("/app/a.html")
    directives, records = read_w3c(log_path)
    assert len(directives) == 4
    assert [r["cs-uri-stem"] for r in records] == ["/index.html", "/app/a.html"]


def test_relative_target_is_relative_to_the_working_directory(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with serve(root, {"target": "relative.log"}) as client:
        client.get("/index.html")
    assert len(read_w3c(tmp_path / "relative.log")[1]) == 1


def test_stdout_target(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(root, {}) as client:
        client.get("/index.html")
    out = capsys.readouterr().out
    assert out.startswith("#Software: Colonnade")
    assert " GET /index.html - 8080 " in out


def test_stderr_target(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(root, {"target": "stderr", "format": "json"}) as client:
        client.get("/index.html")
    assert json.loads(capsys.readouterr().err)["cs_uri_stem"] == "/index.html"


def test_missing_log_folder_is_a_config_error(root: Path, tmp_path: Path) -> None:
    engine = build_engine(make_config(root, {"target": str(tmp_path / "no" / "such.log")}))
    with pytest.raises(ConfigError) as raised:
        engine.start()
    assert raised.value.key == "http_logging.target"


def test_location_gets_its_own_log(root: Path, tmp_path: Path) -> None:
    (root / "api").mkdir()
    (root / "api" / "v.json").write_text("{}")
    api_log = tmp_path / "api.log"
    site_log = tmp_path / "site.log"
    locations = [{"path": "/api", "http_logging": {"target": str(api_log), "format": "json"}}]
    with serve(root, {"target": str(site_log)}, locations=locations) as client:
        assert api_log.exists()  # opened at start-up, before any request
        client.get("/api/v.json")
        client.get("/index.html")
    assert [r["cs-uri-stem"] for r in read_w3c(site_log)[1]] == ["/index.html"]
    assert json.loads(api_log.read_text())["cs_uri_stem"] == "/api/v.json"


def test_requests_alternating_between_locations_log_to_their_own_targets(
    root: Path, tmp_path: Path
) -> None:
    # The hook remembers the last request's settings and their capture: a request
    # with other settings (another location) must not be logged by that capture.
    (root / "api").mkdir()
    (root / "api" / "v.json").write_text("{}")
    api_log = tmp_path / "api.log"
    site_log = tmp_path / "site.log"
    locations = [{"path": "/api", "http_logging": {"target": str(api_log), "format": "json"}}]
    order = ["/index.html"] * 3 + ["/api/v.json"] * 3 + ["/index.html", "/api/v.json"]
    with serve(root, {"target": str(site_log)}, locations=locations) as client:
        for path in order:
            assert client.get(path).status == 200
    assert [r["cs-uri-stem"] for r in read_w3c(site_log)[1]] == ["/index.html"] * 4
    api = [json.loads(line)["cs_uri_stem"] for line in api_log.read_text().splitlines()]
    assert api == ["/api/v.json"] * 4


def test_bad_location_target_fails_at_start_up(root: Path, tmp_path: Path) -> None:
    locations = [{"path": "/sub", "http_logging": {"target": str(tmp_path / "no" / "x.log")}}]
    engine = build_engine(
        make_config(root, {"target": str(tmp_path / "ok.log")}, locations=locations)
    )
    with pytest.raises(ConfigError):
        engine.start()


def test_location_at_an_application_sets_its_log(root: Path, tmp_path: Path) -> None:
    (root / "app").mkdir()
    (root / "app" / "a.html").write_text("a")
    app_log = tmp_path / "app.log"
    site_log = tmp_path / "site.log"
    locations = [{"path": "/app", "http_logging": {"target": str(app_log)}}]
    engine = build_engine(
        make_config(
            root, {"target": str(site_log)}, applications=[{"path": "/app"}], locations=locations
        )
    )
    with Client(engine) as client:
        client.get("/index.html")
        client.get("/app/a.html")
    assert [r["cs-uri-stem"] for r in read_w3c(site_log)[1]] == ["/index.html"]
    assert [r["cs-uri-stem"] for r in read_w3c(app_log)[1]] == ["/app/a.html"]


# -- hook level and configuration ---------------------------------------------------------


def log_one(ctx: Context) -> None:
    """Provision the module for ``ctx``'s application, log ``ctx``, release the targets."""
    module = HttpLogging()
    module.provision(ctx.app)
    try:
        run_stage(module, Stage.LOG_REQUEST, ctx)
    finally:
        module.cleanup()


def test_hook_level(log_path: Path) -> None:
    log_path.parent.mkdir()
    ctx = make_context(
        "GET", "/x?y", settings={"http_logging": {"target": str(log_path), "format": "json"}}
    )
    ctx.response.status = 201
    log_one(ctx)
    record = json.loads(log_path.read_text())
    assert (record["cs_uri_stem"], record["cs_uri_query"], record["sc_status"]) == ("/x", "y", 201)


@pytest.mark.parametrize("fmt", ["w3c", "json"])
def test_every_field_renders_in_both_formats(log_path: Path, fmt: str) -> None:
    # Every field the section accepts comes from the one table; each compiles and
    # renders one value, whatever the format.
    log_path.parent.mkdir()
    fields = [*sorted(STANDARD_FIELDS), "cs(Accept)", "sc(Content-Type)"]
    settings = {"http_logging": {"target": str(log_path), "format": fmt, "fields": fields}}
    ctx = make_context("GET", "/a b?q", headers={"accept": "*/*"}, settings=settings)
    log_one(ctx)
    if fmt == "json":
        record = json.loads(log_path.read_text())
        assert list(record) == [json_key(f) for f in fields]
        assert (record["cs_uri_stem"], record["cs_accept"]) == ("/a b", "*/*")
    else:
        directives, (record,) = read_w3c(log_path)
        assert directives[-1] == "#Fields: " + " ".join(fields)
        assert (record["cs-uri-stem"], record["cs(Accept)"]) == ("/a+b", "*/*")


def test_json_keys() -> None:
    assert json_key("cs(User-Agent)") == "cs_user_agent"
    assert json_key("x-correlation-id") == "x_correlation_id"


@pytest.mark.parametrize(
    "raw",
    [
        {"fields": []},
        {"fields": ["date", "bogus"]},
        {"fields": ["date", "date"]},
        {"fields": ["cs(Bad Header)"]},
        {"format": "ncsa"},
        {"selective": "some"},
        {"target": ""},
        {"flush_interval": 0},
        {"buffer_size": -1},
    ],
)
def test_invalid_settings_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, HttpLoggingSection, strict=True)


def test_lines_lost_to_a_full_disk_are_counted_and_serving_goes_on(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # /dev/full: every write fails with ENOSPC, as on a full disk.
    with serve(root, {"target": "/dev/full", "buffer_size": 0}) as client:
        sink = sinkmod._SINKS["/dev/full"]
        header = sink.lost  # the directives written at start-up were lost too
        assert header == 4
        for _ in range(3):
            assert client.get("/index.html").status == 200
        assert sink.lost == header + 3
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert lost[-1].startswith("access log /dev/full: 1 line(s) lost (7 since it was opened)")
    assert "No space left on device" in lost[-1]


def test_a_short_write_counts_the_cut_line_as_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = sinkmod.Sink("cut", os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT))
    sink.lines.append("one\ntwo\nthree\n")
    writes = iter([5])  # "one\nt": the disk fills up inside line two
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        n = next(writes, None)
        if n is None:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data)[:n])

    monkeypatch.setattr(sinkmod.os, "write", write)
    sink.flush()
    monkeypatch.undo()
    assert sink.lost == 2
    assert (tmp_path / "log").read_bytes() == b"one\nt"
    sink.close()
