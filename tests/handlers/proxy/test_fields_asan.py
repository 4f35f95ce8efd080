"""The C field-line loop (handlers/proxy/_fields.c) built with AddressSanitizer and
UndefinedBehaviorSanitizer, and driven by the proxy_wire fuzz target's properties
(tests/fuzz/fuzz_proxy_wire.py: its seeds, then random upstream heads): it reads
bytes from upstreams, so an out-of-bounds read or write there must fail a test,
not wait for a crash in production. core/_taskwait.c's Wait (an upstream
connection's wait, and a client connection's between requests) is built so and
driven there too: woken, ended with a value, cancelled, collected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO / "src" / "colonnade" / "handlers" / "proxy" / "_fields.c"
WAIT_SOURCE = REPO / "src" / "colonnade" / "core" / "_taskwait.c"

# Run in a child whose C library calls go through ASan (LD_PRELOAD): the sanitized
# module is put in place of the built one before wire imports it.
DRIVER = r"""
import importlib.util, random, sys
spec = importlib.util.spec_from_file_location("colonnade.handlers.proxy._fields", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["colonnade.handlers.proxy._fields"] = module
from colonnade.handlers.proxy import wire
assert wire._C_HEADER_LINES is module.header_lines
assert wire._C_RESPONSE_HEAD is module.response_head
from tests.fuzz.fuzz_proxy_wire import one_input
from tests.fuzz.harness import seeds
inputs = [path.read_bytes() for path in seeds("proxy_wire")]
rnd = random.Random(1)
pieces = [b"Name: v", b"X-Y:  a \t", b"A:", b"B: \x00", b"c d: e", b" folded", b"\x7f: x",
          b"Content-Length: 3", b"UPPER-case: Value", b"n:" + b"v" * 300, b"N" * 300 + b": x"]
for _ in range(int(sys.argv[2])):
    lines = [rnd.choice(pieces) for _ in range(rnd.randint(0, 6))]
    ends = [rnd.choice([b"\r\n", b"\n", b"\r"]) for _ in lines]
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(line + end for line, end in zip(lines, ends))
    inputs.append(bytes((rnd.randrange(2), rnd.randrange(256))) + head + b"\r\nabc")
for data in inputs:
    one_input(data)
    # Every cut of the head, each passed to the C loop as a head of that size.
    body = data[2:]
    for size in range(len(body) + 1):
        try:
            wire._header_lines(body[:size], 17, size)
        except wire.UpstreamProtocolError:
            pass  # not a head: refused, as it must be
        # And each cut read by the C head reader, with limits around its size.
        for limit in (0, size // 2, size, 1 << 16):
            module.response_head(body[:size], limit)
# The request head in one piece (_fields.c's request_head) against the Python
# equivalent, for random fields (empty values and names among them).
from colonnade.handlers.proxy import forward
names = [b"host", b"cookie", b"connection", b"upgrade", b"te", b"accept", b"", b"x" * 40]
values = [b"", b"keep-alive", b"v", b"a" * 300]
for _ in range(2000):
    fields = [(rnd.choice(names), rnd.choice(values)) for _ in range(rnd.randint(0, 8))]
    args = (forward._PLAIN_KINDS, b"GET", rnd.choice([b"", b"/x"]), b"h", fields,
            rnd.choice([b"", b"\r\n"]))
    assert module.request_head(*args) == forward._plain_head_py(*args), fields
# The connections' Wait (core/_taskwait.c's): waits woken now, at the next turn,
# ended with a value and cancelled, under a task, its references dropped and
# collected.
import asyncio, gc
spec = importlib.util.spec_from_file_location("colonnade.core._taskwait", sys.argv[3])
waits_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(waits_module)


async def waits():
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    finished.set_result(None)
    for i in range(300):
        wait = waits_module.Wait(loop, finished, asyncio.current_task)
        wait.arm()

        async def waiting():
            return await wait

        task = loop.create_task(waiting())
        await asyncio.sleep(0)
        if i % 4 == 0:
            loop.call_soon(wait.wake, True)
        elif i % 4 == 1:
            wait.wake(False)
        elif i % 4 == 2:
            wait.set_result(i % 8 == 2)
        else:
            task.cancel("gone")
        try:
            got = await task
            assert got is (True if i % 8 == 2 else False if i % 4 == 2 else None), (i, got)
        except asyncio.CancelledError:
            assert wait.cancelled() and i % 4 == 3
        wait.add_done_callback(lambda _: None, context=None)
        await asyncio.sleep(0)
    gc.collect()


asyncio.run(waits())
print("checked", len(inputs))
"""


def _asan_library() -> str | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    found = subprocess.run(
        [gcc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler: the pure build has no C")
def test_the_c_field_loop_is_clean_under_the_sanitizers(tmp_path: Path) -> None:
    library = _asan_library()
    assert library is not None, "gcc's AddressSanitizer runtime (libasan) is missing"
    module = tmp_path / "_fields.so"
    waits = tmp_path / "_taskwait.so"
    for source, built in ((SOURCE, module), (WAIT_SOURCE, waits)):
        subprocess.run(
            [
                "gcc",
                "-shared",
                "-fPIC",
                "-g",
                "-O1",
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer",
                f"-I{sysconfig.get_paths()['include']}",
                str(source),
                "-o",
                str(built),
            ],
            check=True,
        )
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=library,
        # Python's own allocations are not ours to judge: leaks off; any error ends
        # the child with a report.
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=86",
        # Every object its own malloc block, with red zones (pymalloc hands out
        # pieces of its arenas, inside which ASan sees no boundary).
        PYTHONMALLOC="malloc",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        # The repository for tests/, before what the caller's path holds (a
        # worktree's src/ ahead of an editable install of another checkout).
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(module), "3000", str(waits)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "checked" in result.stdout
