"""config.inotify.Inotify: a recursive watch that reports what changes a file or a
folder's entries, and is not woken by files being read."""

from __future__ import annotations

import errno
import importlib.util
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from colonnade.config import inotify as inotify_module
from colonnade.config.inotify import ADDED, DELETED, IN_CLOSE_NOWRITE, IN_OPEN, MODIFIED, Inotify

HALT = threading.Event()


def changes(watch: Inotify, timeout_ms: int = 2000) -> set[tuple[int, str]]:
    raw = watch.watch(100, 20, timeout_ms, HALT)
    assert not isinstance(raw, str), raw
    return raw


def test_reading_files_wakes_nobody(tmp_path: Path) -> None:
    served = tmp_path / "big.bin"
    served.write_bytes(b"x" * 1024)
    with Inotify([str(tmp_path)]) as watch:
        for _ in range(5):
            served.read_bytes()
        assert watch.watch(100, 20, 300, HALT) == "timeout"
        # The kernel is not even asked for opens: no event is queued for a read.
        masks = [
            int(line.split("mask:")[1].split()[0], 16)
            for line in Path(f"/proc/self/fdinfo/{watch._fd}").read_text().splitlines()
            if line.startswith("inotify wd:")
        ]
        assert masks and all(not m & (IN_OPEN | IN_CLOSE_NOWRITE) for m in masks)


def test_a_written_file_and_a_removed_one(tmp_path: Path) -> None:
    web = tmp_path / "web.toml"
    web.write_text("a = 1\n")
    with Inotify([str(tmp_path)]) as watch:
        web.write_text("a = 2\n")
        assert (MODIFIED, str(web)) in changes(watch)
        web.unlink()
        assert changes(watch) == {(DELETED, str(web))}


def test_an_editor_save_renames_over_the_file(tmp_path: Path) -> None:
    web = tmp_path / "web.toml"
    web.write_text("a = 1\n")
    with Inotify([str(tmp_path)]) as watch:
        temp = tmp_path / ".web.toml.swp"
        temp.write_text("a = 2\n")
        os.replace(temp, web)
        assert (ADDED, str(web)) in changes(watch)


def test_touch_is_a_change(tmp_path: Path) -> None:
    web = tmp_path / "web.toml"
    web.write_text("")
    with Inotify([str(tmp_path)]) as watch:
        os.utime(web)
        assert changes(watch) == {(MODIFIED, str(web))}


def test_new_folders_are_watched_and_trees_moved_in_are_reported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    with Inotify([str(site)]) as watch:
        (site / "a").mkdir()
        assert (ADDED, str(site / "a")) in changes(watch)
        (site / "a" / "web.toml").write_text("")
        assert (MODIFIED, str(site / "a" / "web.toml")) in changes(watch)
        # A tree made elsewhere and moved in whole: its files are reported, and
        # its folders are watched from then on.
        (tmp_path / "new" / "deep").mkdir(parents=True)
        (tmp_path / "new" / "deep" / "web.toml").write_text("")
        (tmp_path / "new" / "deep").rename(site / "b")
        assert (ADDED, str(site / "b" / "web.toml")) in changes(watch)
        (site / "b" / "web.toml").write_text("x = 1\n")
        assert (MODIFIED, str(site / "b" / "web.toml")) in changes(watch)


def test_a_folder_moved_out_is_forgotten(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "a").mkdir(parents=True)
    with Inotify([str(site)]) as watch:
        assert watch.folders == 2
        (site / "a").rename(tmp_path / "gone")
        assert (DELETED, str(site / "a")) in changes(watch)
        assert watch.folders == 1
        (tmp_path / "gone" / "web.toml").write_text("")
        assert watch.watch(100, 20, 300, HALT) == "timeout"


def test_a_removed_tree(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "a" / "b").mkdir(parents=True)
    with Inotify([str(site)]) as watch:
        shutil.rmtree(site / "a")
        assert (DELETED, str(site / "a")) in changes(watch)
        assert watch.watch(100, 20, 300, HALT) == "timeout"
        assert watch.folders == 1


def test_halt_stops_the_wait(tmp_path: Path) -> None:
    halt = threading.Event()

    def stop() -> None:
        halt.set()
        watch.wake()

    with Inotify([str(tmp_path)]) as watch:
        threading.Timer(0.2, stop).start()
        began = time.monotonic()
        # A step far longer than the test: the wake-up ends the wait, not a poll.
        assert watch.watch(100, 60_000, 0, halt) == "stop"
        assert time.monotonic() - began < 5


def test_an_idle_watch_sleeps_until_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No wake-up every step to look at the halt: an idle server's watcher thread
    asks the kernel once per timeout (it polled every 50 ms, 20 wake-ups a second)."""
    waits: list[int] = []
    real_poll = select.poll

    class CountingPoll:
        def __init__(self) -> None:
            self._poll = real_poll()

        def register(self, fd: int, mask: int) -> None:
            self._poll.register(fd, mask)

        def poll(self, timeout: int) -> list[tuple[int, int]]:
            waits.append(timeout)
            return self._poll.poll(timeout)

    monkeypatch.setattr(inotify_module.select, "poll", CountingPoll)
    with Inotify([str(tmp_path)]) as watch:
        assert watch.watch(100, 20, 600, HALT) == "timeout"
    assert len(waits) <= 2, waits  # one wait of ~600 ms (a second if woken early)


def test_a_wake_after_close_is_harmless(tmp_path: Path) -> None:
    watch = Inotify([str(tmp_path)])
    watch.close()
    watch.wake()  # no write to a closed (or reused) descriptor
    other = os.open(os.devnull, os.O_RDONLY)
    try:
        watch.wake()
    finally:
        os.close(other)


def test_no_descriptor_is_left_open_when_the_wake_up_pipe_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of descriptors (EMFILE) after inotify_init1: the caller falls back to
    another watcher, and the inotify descriptor made already is closed, not leaked
    (one per configuration watch started)."""

    def no_pipe(_flags: int) -> tuple[int, int]:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(inotify_module.os, "pipe2", no_pipe)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        Inotify([str(tmp_path)])
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_missing_root_is_no_error_and_a_closed_watch_stays_closed(tmp_path: Path) -> None:
    watch = Inotify([str(tmp_path / "nowhere")])
    assert watch.folders == 0
    watch.close()
    watch.close()


@pytest.mark.parametrize("burst", [3000])
def test_an_overflowed_queue_reports_every_file(tmp_path: Path, burst: int) -> None:
    """When the kernel's queue overflows (max_queued_events), events are lost: every
    file in the watched folders then counts as changed, so a web.toml is not missed."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    (tmp_path / "web.toml").write_text("")
    with Inotify([str(tmp_path)]) as watch:
        for i in range(limit // 2 + burst):  # each file: create + close-write events
            (tmp_path / f"f{i}").write_bytes(b"")
        # The queue is read in batches (each at most a debounce long): the overflow
        # is at its end.
        found: set[tuple[int, str]] = set()
        while (batch := watch.watch(100, 20, 300, HALT)) != "timeout":
            assert not isinstance(batch, str)
            found |= batch
        assert (MODIFIED, str(tmp_path / "web.toml")) in found


def _call_sets() -> list[inotify_module._Calls]:
    """ctypes' calls (the pure build's), and the C helper's where this build has it."""
    found = [inotify_module._ctypes_calls()]
    if importlib.util.find_spec("colonnade._libc") is not None:
        found.append(inotify_module._calls())
    return found


@pytest.mark.parametrize("calls", _call_sets())
def test_each_way_to_the_system_calls_raises_with_their_errno(
    tmp_path: Path, calls: inotify_module._Calls
) -> None:
    """Both ways to inotify (colonnade/_libc.c in the compiled build, ctypes in the pure
    one): a descriptor and watch descriptors, and OSError with the call's errno."""
    fd = calls.init1(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        wd = calls.add_watch(fd, os.fsencode(tmp_path), inotify_module.MASK)
        assert wd >= 1
        with pytest.raises(OSError) as missing:
            calls.add_watch(fd, os.fsencode(tmp_path / "nowhere"), inotify_module.MASK)
        assert missing.value.errno == errno.ENOENT
        calls.rm_watch(fd, wd)
        with pytest.raises(OSError) as gone:
            calls.rm_watch(fd, wd)
        assert gone.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    with pytest.raises(OSError) as closed:
        calls.add_watch(fd, os.fsencode(tmp_path), inotify_module.MASK)
    assert closed.value.errno == errno.EBADF


WATCH_WITHOUT_CTYPES = """
import sys
from colonnade.config.inotify import Inotify

watch = Inotify([sys.argv[1]])
watch.close()
print("ctypes" in sys.modules)
"""


@pytest.mark.skipif(
    importlib.util.find_spec("colonnade._libc") is None,
    reason="the compiled build's C helper (the pure build watches through ctypes)",
)
def test_the_compiled_build_watches_without_ctypes(tmp_path: Path) -> None:
    """The master's configuration watch loads no ctypes (~0.4 MiB of an idle
    master): in a process of its own, since this one may have loaded it."""
    out = subprocess.run(
        [sys.executable, "-c", WATCH_WITHOUT_CTYPES, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "False", out.stderr
