"""What an idle worker holds (issue #24 item 5: an idle worker under 30 MiB).

"Nothing else is loaded" (DESIGN.md): a worker imports the modules and handlers
its configuration enables and what they need, not the code of features it does not
use. The module set is read inside the real worker process: the application it
hosts answers with its ``sys.modules``. The RSS itself is measured by the bench's
memory row (docs/process-model.md), for the reason tests/pools/test_master_memory.py
gives.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade.pools import native
from colonnade.pools.sandbox import YOUNG_THRESHOLD
from tests.support.ports import free_port

from .conftest import Master

#: An ASGI app that answers with the names in its process's ``sys.modules`` (the
#: worker's), one a line; a WSGI one doing the same.
APPS = """
import sys


def imported():
    # A deferred module (pools/lean.py: a stand-in until it is first used) is not.
    return sorted(n for n, m in sys.modules.items() if type(m).__name__ != "Deferred")


def mapped():
    # The shared objects of Colonnade's package mapped in this process.
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "colonnade" in line}
    return sorted(p for p in paths if p.endswith(".so"))


def answer(path):
    return mapped() if path == "/maps" else imported()


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = "\\n".join(answer(scope["path"])).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    start_response("200 OK", [])
    return ["\\n".join(answer(environ["PATH_INFO"])).encode()]
"""

#: Modules the serving path of an idle worker has no use for:
#: each came with one rarely used feature (TOML, in a server started from the command
#: line alone) (a date parsed from a request, a
#: "did you mean" in an error, the JSON log format, a JSON directory listing,
#: compression's thread pool, systemd's notifications, TLS where no binding is https,
#: a WSGI request body spooled to a temporary file, percent-escapes and a loopback
#: check: core.urlpath's own, not urllib.parse's; typing_extensions, which msgspec
#: takes only where it can; the stdlib's http, for its reason phrases; mypy_extensions,
#: for a decorator mypyc reads at compile time).
NOT_IN_AN_IDLE_WORKER = (
    "email",
    "email.utils",
    "calendar",
    "random",
    "difflib",
    "json",
    "tempfile",
    "shutil",
    "importlib.metadata",
    "argparse",
    "urllib.parse",
    "ipaddress",
    "typing_extensions",
    "http",
    "mypy_extensions",
    "colonnade.pools.systemd",
    "colonnade.transport.tls",
    "colonnade.transport.handshake",
    "colonnade.pools.master",
    "colonnade.management.cli",
    # No server file and no web.toml: nothing to parse (config/tree.py imports the
    # TOML parser, ~0.2 MiB, for the first file it parses).
    "tomllib",
    # No module asks for a shared memory zone: the inherited arena stays unmapped
    # (core/arenafd.py; ~0.1 MiB with mmap). One pool on its port: no router
    # (pools/routing.py is imported for a drain that hands connections back).
    "colonnade.core.shared",
    "mmap",
    "colonnade.pools.routing",
    # msgspec's type descriptions and JSON schema (~0.24 MiB): deferred (pools/lean.py).
    "msgspec.inspect",
    "msgspec._json_schema",
    # httptools' URL parser (~0.1 MiB): http/h1.py never calls it; deferred too.
    "httptools.parser.url_parser",
)

#: The modules a default site enables (config/schema.py DEFAULT_MODULES): their
#: packages may be imported; no other module's or handler's.
ENABLED = (
    "colonnade.modules.request_filtering",
    "colonnade.modules.default_document",
    "colonnade.modules.directory_listing",
    "colonnade.modules.http_logging",
    "colonnade.modules.compression",
    "colonnade.handlers.static",
)


def worker_modules(tmp_path: Path, interface: str) -> set[str]:
    return worker_answers(tmp_path, interface, "/")


def worker_answers(tmp_path: Path, interface: str, path: str) -> set[str]:
    port = free_port()
    (tmp_path / "apps.py").write_text(APPS)
    control = str(tmp_path / "control.sock")
    master = Master(
        tmp_path,
        "",
        port=port,
        serve_args=[
            f"apps:{interface}",
            "--interface",
            interface,
            "--app-dir",
            str(tmp_path),
            "--bind",
            f"127.0.0.1:{port}",
            "--control",
            control,
        ],
        control=control,
    )
    try:
        response = master.get(path)
        assert response.status == 200, master.log()
        [worker] = master.pids("default")
        assert worker != master.proc.pid
        return set(response.body.decode().split("\n"))
    finally:
        master.stop()


def unexpected(modules: set[str], interface: str, other: str) -> list[str]:
    """Modules and handlers imported that the configuration does not enable."""
    allowed = (*ENABLED, f"colonnade.handlers.{interface}")
    known = {f"colonnade.handlers.{other}", f"colonnade.handlers.{other}.config"}
    return sorted(
        m
        for m in modules
        if m.startswith(("colonnade.modules.", "colonnade.handlers."))
        and m != "colonnade.modules.standard"
        and m not in known
        and not any(m == a or m.startswith(a + ".") for a in allowed)
    )


@pytest.mark.parametrize(("interface", "other"), [("asgi", "wsgi"), ("wsgi", "asgi")])
def test_an_idle_worker_imports_only_what_its_site_enables(
    tmp_path: Path, interface: str, other: str
) -> None:
    modules = worker_modules(tmp_path, interface)
    # It is the worker that answered, with the engine and the app's handler.
    assert {"colonnade.engine.engine", f"colonnade.handlers.{interface}.handler"} <= modules
    # The other Python handler's section is known ([wsgi] settings are checked for
    # an ASGI app's server too), but its code is not imported.
    assert f"colonnade.handlers.{other}.config" in modules
    assert f"colonnade.handlers.{other}.handler" not in modules
    assert unexpected(modules, interface, other) == []
    assert sorted(modules.intersection(NOT_IN_AN_IDLE_WORKER)) == []
    if importlib.util.find_spec("colonnade._libc") is not None:
        # The compiled build's C helper makes the start-up calls (prctl, malloc_trim),
        # and no module the site enables asks for shared-memory mutexes: no ctypes.
        assert "ctypes" not in modules


@pytest.mark.skipif(
    importlib.util.find_spec("colonnade._libc") is None, reason="the compiled build only"
)
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_worker_maps_no_shim_of_the_modules_it_imports_natively(
    tmp_path: Path, interface: str
) -> None:
    """pools/native.py: the compiled modules every worker imports come from the main
    library, imported by one compiled module, without a shim object each (20 KiB of
    RSS apiece)."""
    mapped = worker_answers(tmp_path, interface, "/maps")
    modules = {
        "colonnade." + path.rsplit("/colonnade/", 1)[1].split(".")[0].replace("/", ".")
        for path in mapped
        if "/colonnade/" in path
    }
    assert any("__mypyc" in path for path in mapped), mapped  # the compiled build's library
    assert sorted(modules.intersection(native.MODULES)) == [], sorted(mapped)


TRIM = """
import sys
from colonnade.pools.sandbox import trim_memory

def anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

# 40 MiB in 1 KiB blocks from the C heap, one in 64 kept: the freed ones lie
# between live ones, where the heap cannot shrink from its top.
blocks = [bytes(1024) for _ in range(40 * 1024)]
kept = blocks[::64]
del blocks
before = anon()
trim_memory()
print(before, anon())
"""


def test_trim_memory_gives_freed_heap_pages_back() -> None:
    """What a worker does once it listens (pools/worker.py): the pages start-up
    freed in the middle of the C heap leave its RSS."""
    out = subprocess.run(
        [sys.executable, "-c", TRIM], capture_output=True, text=True, check=True, timeout=60
    )
    before, after = map(int, out.stdout.split())
    assert before - after > 20 * 1024, (before, after)  # KiB: most of the 39 MiB freed


FREEZE = """
import gc, weakref
from colonnade.pools.sandbox import freeze_heap, refreeze_heap

class Node:
    pass

refreeze_heap()  # nothing frozen (an embedding program, a test): nothing done
untouched = gc.get_freeze_count() == 0
node = Node()
node.me = node  # a cycle: only the collector frees it
gone = weakref.ref(node)
freeze_heap()
frozen = gc.get_freeze_count() > 0
del node
gc.collect()
kept = gone() is not None  # frozen: no collection walks it
refreeze_heap()  # a reload's old generation has gone
print(untouched, frozen, kept, gone() is None, gc.get_freeze_count() > 0)
print(gc.get_threshold()[0])
"""

OWN_THRESHOLD = """
import gc
from colonnade.pools.sandbox import freeze_heap

gc.set_threshold(5000, 20, 30)  # the application's own
freeze_heap()
print(gc.get_threshold())
"""


def test_the_heap_frozen_at_start_up_is_walked_again_after_a_reload() -> None:
    """What a serving process does once it listens (freeze_heap), and once a
    reload's old generation has gone (refreeze_heap): a cycle frozen with the
    start-up heap is collected only then. In a process of its own: freezing this
    one would keep the test run's garbage."""
    out = subprocess.run(
        [sys.executable, "-c", FREEZE], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True"] * 5 + [str(YOUNG_THRESHOLD)], out.stderr


def test_an_application_s_own_collector_threshold_is_kept() -> None:
    out = subprocess.run(
        [sys.executable, "-c", OWN_THRESHOLD],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "(5000, 20, 30)", out.stderr


PDEATHSIG = """
import ctypes, signal
from colonnade.pools.sandbox import die_with_parent

die_with_parent()
value = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
print(value.value == signal.SIGTERM)
"""


def test_die_with_parent_asks_for_sigterm() -> None:
    """The worker's first call (pools/worker.py): through the compiled build's C
    helper or, in the pure build, ctypes."""
    out = subprocess.run(
        [sys.executable, "-c", PDEATHSIG], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True", out.stderr


def test_msgspec_needs_nothing_of_typing_extensions_on_this_python() -> None:
    """A worker imports msgspec without typing_extensions (pools/lean.py), which
    msgspec would use for three names only: check that here they are typing's."""
    import typing

    te = pytest.importorskip("typing_extensions")

    class Movie(te.TypedDict, total=False):
        title: te.Required[te.Annotated[str, 1]]
        year: te.NotRequired[int]
        cast: te.ReadOnly[list[str]]

    assert te.Required is typing.Required and te.NotRequired is typing.NotRequired
    for obj in (Movie, test_msgspec_needs_nothing_of_typing_extensions_on_this_python):
        ours = typing.get_type_hints(obj, localns={"te": te}, include_extras=True)
        assert te.get_type_hints(obj, localns={"te": te}, include_extras=True) == ours
