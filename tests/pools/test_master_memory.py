"""What an idle master holds (issue #24 item 5): it supervises without the engine.

The module sets are read from the real master process (the control socket's
``imports``), after a worker served a request. The RSS aims (master < 20 MiB,
worker < 30 MiB) are measured by the bench's memory row and the numbers in
docs/process-model.md, not here: a test process's RSS depends on how the
interpreter was started (a run without bytecode files compiles every module, and
keeps the parser's memory), so the test asserts what the memory is made of.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade.management import operations
from colonnade.pools import checker
from colonnade.pools.config import ConfigSource
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

from .conftest import Master

#: Modules an idle master must not have imported: the engine and what it runs
#: (plans, modules, handlers, the serving transport), and TLS (OpenSSL's libssl
#: and libcrypto: the master hands TLS connections over before their handshake).
NOT_IN_AN_IDLE_MASTER = (
    "colonnade.engine.engine",
    "colonnade.engine.build",
    "colonnade.engine.runtime",
    "colonnade.engine.mapping",
    "colonnade.pipeline.plan",
    "colonnade.pipeline.runner",
    "colonnade.core.context",
    "colonnade.core.registry",
    "colonnade.modules.standard",
    "colonnade.transport.server",
    "colonnade.transport.connection",
    "colonnade.transport.tls",
    "colonnade.transport.handshake",
    "colonnade.pools.api",
    "colonnade.pools.single",
    "importlib.metadata",
    "ssl",
    "_ssl",
    "_hashlib",
    "uvloop",
    # The HTTP parser: a head on a port one pool serves is delivered unparsed.
    "httptools",
    # The command line: `serve` runs the master in a fresh image of its process.
    "argparse",
    "colonnade.management.cli",
    "colonnade.management.operations",
    "colonnade.management.serve_options",
    "colonnade.management.tables",
    # mypyc's one shared library for every compiled module (~2.5 MiB mapped).
    "colonnade__mypyc",
    # tempfile and shutil, with random and the compression modules (~0.9 MiB): only
    # a sandboxed pool's temp folder and the default control socket's path need them.
    "tempfile",
    "shutil",
    "random",
    "bz2",
    "lzma",
    "sysconfig",
    # msgspec takes typing's own (pools/lean.py).
    "typing_extensions",
    # What serve --reload watches of the code (with dataclasses and pathlib).
    "colonnade.config.codewatch",
    "dataclasses",
    "pathlib",
    # A plain binding is read without urlsplit (config/bindings.py); ipaddress only
    # for inherited sockets (pools/systemd.py).
    "urllib.parse",
    "ipaddress",
)
#: Prefixes of the same: every module and handler.
NOT_IN_AN_IDLE_MASTER_UNDER = ("colonnade.modules.", "colonnade.handlers.")


def _mypyc_table() -> dict[str, Any]:
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    with open(pyproject, "rb") as f:
        table: dict[str, Any] = tomllib.load(f)["tool"]["colonnade"]["mypyc"]
    return table


def compiled_modules() -> set[str]:
    """The modules the compiled build compiles (pyproject.toml): importing any one
    maps the whole shared library."""
    return set(_mypyc_table()["modules"])


def compiled_libraries() -> list[str]:
    """The compiled build's feature libraries (pyproject.toml): each maps only into
    a process that imports one of its modules."""
    return list(_mypyc_table()["libraries"])


def serve(tmp_path: Path) -> Master:
    """``colonnade serve --root www --workers 1`` as the bench runs it (no server file)."""
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello\n")
    control = str(tmp_path / "control.sock")
    return Master(
        tmp_path,
        "",
        port=port,
        serve_args=["--root", "www", "--bind", f"127.0.0.1:{port}", "--control", control],
        control=control,
    )


def held(modules: list[str]) -> list[str]:
    compiled = compiled_modules()
    return sorted(
        m
        for m in modules
        if m in NOT_IN_AN_IDLE_MASTER or m in compiled or m.startswith(NOT_IN_AN_IDLE_MASTER_UNDER)
    )


def test_an_idle_master_holds_no_engine_no_modules_and_no_tls(tmp_path: Path) -> None:
    master = serve(tmp_path)
    try:
        # The worker starts at the first request (the master accepted it and read
        # its head, then handed it over): everything an idle server ever did.
        response = master.get("/hello.txt")
        assert (response.status, response.body) == (200, b"hello\n")
        imports = operations.call(master.control, "imports")
        assert imports["pid"] == master.proc.pid
        assert held(imports["modules"]) == []
        assert "json" not in imports["modules"]  # until something is audited (a reload)
        # No TOML was parsed (no server file, no web.toml): no TOML parser (~0.2 MiB).
        assert "tomllib" not in imports["modules"]
        if importlib.util.find_spec("colonnade._libc") is not None:
            # The compiled build's C helper initialises the shared memory arena's
            # lock (and makes the configuration watch's inotify calls, which this
            # master, --no-watch, does not): no ctypes (~0.4 MiB of an idle master).
            assert "ctypes" not in imports["modules"]
        # `serve` became the master in place: the same process, a fresh image whose
        # command line holds no configuration (it came in a memory file).
        with open(f"/proc/{master.proc.pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert b"colonnade.management.master_process" in argv
        assert not any(b"www" in arg or b"127.0.0.1" in arg for arg in argv)
        # Supervising imported what it needs: the pools, asyncio, the configuration's
        # schema; the process is the one `serve` started (re-executed in place).
        assert {"colonnade.pools.master", "colonnade.config.schema", "asyncio"} <= set(
            imports["modules"]
        )

        status = master.status()["master"]
        assert status["pid"] == master.proc.pid
        assert 0 < status["private"] <= status["rss"]
        assert status["modules_imported"] >= len(imports["modules"])

        # An admin query that needs the engine builds it on demand (documented
        # cost: the engine and the enabled modules stay imported afterwards).
        apps = operations.applications(master.control)
        assert [a["path"] for a in apps] == ["/"]
        assert "handler.static" in apps[0]["modules"]
        after = operations.call(master.control, "imports")["modules"]
        assert "colonnade.engine.engine" in after
        # ...and the master keeps serving: its asyncio stays as it was imported
        # (without TLS), whatever the engine imported.
        assert master.get("/hello.txt").status == 200
        assert operations.applications(master.control) == apps
    finally:
        master.stop()


def mapped(pid: int) -> set[str]:
    """The file names of the shared objects process ``pid`` has mapped (/proc)."""
    with open(f"/proc/{pid}/maps") as f:
        return {os.path.basename(line.split()[-1]) for line in f if ".so" in line}


def test_what_the_processes_map_from_proc(tmp_path: Path) -> None:
    """The same seen from outside: the master maps no OpenSSL, no uvloop and not
    the compiled build's library (the pure build has none to map); an
    idle worker serving static files maps uvloop and ssl (uvloop's import needs
    it) but not hashlib's OpenSSL module (imported only when a feature needs it)."""
    master = serve(tmp_path)
    try:
        assert master.get("/hello.txt").status == 200
        [worker] = master.pids("default")
        in_master = mapped(master.proc.pid)
        assert not {m for m in in_master if m.startswith(("libssl", "_ssl.", "_hashlib."))}
        assert not {m for m in in_master if m.startswith("colonnade__mypyc")}
        assert not {m for m in in_master if m.startswith("loop.cpython")}  # uvloop's
        in_worker = mapped(worker)
        assert any(m.startswith("_ssl.") for m in in_worker)
        assert not any(m.startswith("_hashlib.") for m in in_worker)
        # Nor, serving files only, the compiled libraries of the features it does
        # not use (pyproject.toml's [tool.colonnade.mypyc.libraries]): no WSGI,
        # proxy, FastCGI or HTTP/2 code.
        features = tuple(f"{name}__mypyc." for name in compiled_libraries())
        assert features and not {m for m in in_worker if m.startswith(features)}
    finally:
        master.stop()


def test_a_reload_checks_in_a_child_and_keeps_the_master_lean(tmp_path: Path) -> None:
    """A reload (valid, then broken) is checked by a child process: the master
    still holds no engine, and a broken file is refused naming file, line and key."""
    port = free_port()
    (tmp_path / "www").mkdir()
    good = (
        f'[server]\ncontrol_socket = "run/control.sock"\n\n'
        f'[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:{port}"]\nroot = "www"\n'
    )
    master = Master(tmp_path, good, port=port)
    try:
        config = tmp_path / "colonnade.toml"
        config.write_text(good.replace('name = "main"', 'name = "renamed"'))
        assert "reloaded" in operations.call(master.control, "reload")["message"]
        assert [s["name"] for s in operations.sites(master.control)] == ["renamed"]

        config.write_text(good + "\n[server.limits]\nmax_request_body = -1\n")
        try:
            operations.call(master.control, "reload")
        except operations.ControlError as exc:
            assert "refused" in str(exc)
        else:
            raise AssertionError("a broken configuration was accepted")
        wait_for(
            lambda: "server.limits.max_request_body" in master.log(),
            PATIENCE,
            "the refused reload logged with its key",
        )
        line = next(x for x in master.log().splitlines() if "max_request_body" in x)
        assert "colonnade.toml:10: server.limits.max_request_body: unknown key" in line
        assert "still serving the previous configuration" in line
        assert [s["name"] for s in operations.sites(master.control)] == ["renamed"]
        assert held(operations.call(master.control, "imports")["modules"]) == []
    finally:
        master.stop()


def test_the_child_check_reports_what_the_in_process_check_does(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "docs").mkdir()
    (tmp_path / "www" / "docs" / "web.toml").write_text("[default_document]\nfiles = 3\n")
    file = tmp_path / "colonnade.toml"
    file.write_text(
        '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:8080"]\nroot = "www"\n'
    )
    source = ConfigSource(file=str(file)).read()
    found = checker.in_child(source)

    from colonnade.core.registry import Registry
    from colonnade.modules.standard import BUILTIN

    here, engine = checker.report(source, Registry.standard(BUILTIN))
    assert engine is not None
    assert found == here
    assert not found.errors
    [broken] = found.broken_dirs()
    assert (broken.site, broken.path) == ("main", "/docs")
    assert broken.error.key == "default_document.files" and broken.error.line == 2
    assert any(need.path == str(tmp_path / "www") for need in found.needs["default"])

    bad = msgspec.structs.replace(source, text=f"{source.text}\n[server]\nnope = 1\n")
    refused = checker.in_child(bad)
    [error] = refused.errors
    assert (error.file, error.line, error.key) == (str(file), 7, "server.nope")


def test_lean_without_hides_a_module_for_one_block_only() -> None:
    import sys

    from colonnade.pools.lean import without

    name = "colonnade_test_never_imported"
    with without(name, "os"):
        with pytest.raises(ImportError):
            __import__(name)
        import os as again  # imported already: it stays importable

        assert again is os
    assert name not in sys.modules and sys.modules["os"] is os


LEAN_MSGSPEC = """
import sys
from colonnade.pools.lean import Deferred, lean_msgspec

with lean_msgspec():
    import msgspec
deferred = ["msgspec.inspect", "msgspec._json_schema"]
assert all(isinstance(sys.modules[n], Deferred) for n in deferred), sys.modules
assert "typing_extensions" not in sys.modules


class Point(msgspec.Struct):
    x: int


# What the serving path uses works without them.
assert msgspec.json.decode(b'{"x": 1}', type=Point) == Point(1)
assert all(isinstance(sys.modules[n], Deferred) for n in deferred)
# A call of msgspec.json.schema imports both, inspect first (the schema module
# imports it), and answers as msgspec does.
assert msgspec.json.schema(Point)["$defs"]["Point"]["required"] == ["x"]
assert not any(isinstance(sys.modules[n], Deferred) for n in deferred)
assert msgspec.inspect is sys.modules["msgspec.inspect"]
assert sys.modules["msgspec._json_schema"].mi is msgspec.inspect
from msgspec.inspect import IntType
assert msgspec.inspect.type_info(int) == IntType()
print("ok")
"""

LEAN_MSGSPEC_INSPECT = """
import sys
from colonnade.pools.lean import Deferred, lean_msgspec

with lean_msgspec():
    import msgspec
# An application's first use of msgspec.inspect: through the stand-in it holds.
from msgspec.inspect import *  # noqa: F403
import msgspec.inspect as mi
assert type_info(int) == IntType()  # noqa: F405
assert mi.type_info(str) == mi.StrType()
assert not isinstance(sys.modules["msgspec.inspect"], Deferred)
assert isinstance(sys.modules["msgspec._json_schema"], Deferred)
print("ok")
"""


LEAN_HTTPTOOLS = """
import sys
from colonnade.pools.lean import Deferred, deferring, lean_msgspec

with lean_msgspec():
    import msgspec
with deferring("httptools"):
    import httptools
url_parser = "httptools.parser.url_parser"
assert isinstance(sys.modules[url_parser], Deferred)
# The request parser needs no URL parser.
parser = httptools.HttpRequestParser(object())
parser.feed_data(b"GET /x HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
assert isinstance(sys.modules[url_parser], Deferred)
# An application's parse_url: the real one answers, errors included; the other
# package's deferred modules stay deferred.
url = httptools.parse_url(b"http://a.example:81/p?q=1")
assert (url.host, url.port, url.path, url.query) == (b"a.example", 81, b"/p", b"q=1")
assert not isinstance(sys.modules[url_parser], Deferred)
assert isinstance(sys.modules["msgspec.inspect"], Deferred)
try:
    httptools.parse_url(b"\\x00")
except httptools.HttpParserInvalidURLError:
    print("ok")
"""


@pytest.mark.parametrize("script", [LEAN_MSGSPEC, LEAN_MSGSPEC_INSPECT, LEAN_HTTPTOOLS])
def test_lean_msgspec_defers_inspect_and_json_schema_until_used(script: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


# What an application does with a deferred module in a worker, as it would in any
# other process (review13): pickle msgspec.json.schema or httptools.parse_url (a
# multiprocessing pool's map of it), before and after the real module came in; and
# set an attribute of a deferred module before anything read one (a patch: mock's,
# pytest's monkeypatch, an application's own), which must reach the module that
# answers afterwards.
LEAN_PICKLE = """
import pickle
from colonnade.pools.lean import deferring, lean_msgspec

with lean_msgspec():
    import msgspec
with deferring("httptools"):
    import httptools


class Point(msgspec.Struct):
    x: int


forwards = (msgspec.json.schema, msgspec.json.schema_components, httptools.parse_url)
for fn in forwards:
    assert pickle.loads(pickle.dumps(fn)) is fn
assert pickle.loads(pickle.dumps(msgspec.json.schema))(Point)["$ref"] == "#/$defs/Point"
httptools.parse_url(b"http://a/")  # the real modules have come in
for fn in forwards:
    assert pickle.loads(pickle.dumps(fn)) is fn
print("ok")
"""

LEAN_PATCH = """
import sys
from colonnade.pools.lean import lean_msgspec

with lean_msgspec():
    import msgspec


def mine(tp):
    return "patched"


inspect = msgspec.inspect
inspect.type_info = mine  # before any read of the module
assert inspect.IntType  # a read: the real module comes in
assert msgspec.inspect.type_info is mine, msgspec.inspect.type_info
assert sys.modules["msgspec.inspect"].type_info is mine
assert sys.modules["msgspec._json_schema"].mi.type_info is mine  # the schema's too
print("ok")
"""


@pytest.mark.parametrize("script", [LEAN_PICKLE, LEAN_PATCH], ids=["pickle", "patch"])
def test_a_deferred_module_answers_an_application_as_the_real_one(script: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
