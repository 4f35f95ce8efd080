"""Notice changed configuration files while serving (inotify through watchfiles)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from colonnade.config.sections import WEB_TOML

if TYPE_CHECKING:
    # Apart (with dataclasses, fnmatch and pathlib: ~0.3 MiB): only ``serve --reload``
    # watches code, and every master watches its configuration.
    from colonnade.config.codewatch import CodeWatch

log = logging.getLogger("colonnade")


def _outermost(paths: Iterable[str]) -> list[str]:
    found: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)}):
        if not any(path == f or path.startswith(f.rstrip("/") + "/") for f in found):
            found.append(path)
    return found


def _targets(
    folders: Iterable[str],
    config_file: str | None,
    files: Iterable[str] = (),
    code: CodeWatch | None = None,
) -> tuple[list[str], Callable[[object, str], bool]]:
    config_real = os.path.realpath(config_file) if config_file else None
    # The server file and application module sources: these files exactly.
    exact = {os.path.realpath(f) for f in files}
    if config_real is not None:
        exact.add(config_real)

    def wanted(_change: object, path: str) -> bool:
        return (
            os.path.basename(path) == WEB_TOML
            or os.path.realpath(path) in exact
            or (code is not None and code.matches(path))
        )

    code_folders = code.folders if code is not None else ()
    return _outermost([*folders, *code_folders, *(os.path.dirname(f) for f in exact)]), wanted


async def changes(
    folders: Iterable[str],
    config_file: str | None,
    stop: asyncio.Event,
    files: Iterable[str] = (),
    code: CodeWatch | None = None,
) -> AsyncIterator[set[str]]:
    """Yield the set of changed ``web.toml``/server files, of ``files`` (the sources
    of application modules) and of the files ``code`` matches, debounced, until
    ``stop``.

    The watcher waits on a thread of its own, as watchfiles' ``awatch`` does; not
    ``awatch`` itself, whose anyio event loop backend imports ``ssl`` (about 6 MiB
    of the master's RSS, see pools/lean.py), and where it can (:func:`_watcher`)
    not even the watchfiles package.
    """
    roots, wanted = _targets(folders, config_file, files, code)
    if not roots:
        return
    loop = asyncio.get_running_loop()
    halt = threading.Event()
    found: asyncio.Queue[set[str] | BaseException | None] = asyncio.Queue()

    def post(item: set[str] | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(found.put_nowait, item)

    watcher = _watcher(roots)

    def run() -> None:
        try:
            for batch in _batches(watcher, roots, wanted, halt):
                post(batch)
        except Exception as exc:  # raised where the changes are awaited
            post(exc)
        else:
            post(None)

    # The inotify watch sleeps until woken (watchfiles' notifier looks at the halt
    # every 50 ms by itself): the halt is set, then the watch woken to read it.
    wake: Callable[[], None] | None = getattr(watcher, "wake", None)

    def end_watch() -> None:
        halt.set()
        if wake is not None:
            wake()

    threading.Thread(target=run, name="colonnade-watch", daemon=True).start()
    stopping = loop.create_task(stop.wait())
    stopping.add_done_callback(lambda _: end_watch())
    try:
        while (item := await found.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        end_watch()
        stopping.cancel()


def _batches(
    watcher: Any, roots: list[str], wanted: Callable[[object, str], bool], halt: threading.Event
) -> Iterator[set[str]]:
    """The changed paths ``wanted`` under ``roots``, debounced (300 ms), until
    ``halt``: from ``watcher`` (:func:`_watcher`, watching already), driven as
    ``watchfiles.watch`` drives it; None: from ``watchfiles.watch`` itself."""
    if watcher is None:
        from watchfiles import watch

        for found in watch(
            *roots,
            watch_filter=wanted,
            stop_event=halt,
            debounce=300,
            step=50,
            recursive=True,
            raise_interrupt=False,
        ):
            yield {path for _change, path in found}
        return
    with watcher:
        while True:
            raw = watcher.watch(300, 50, 5000, halt)
            if raw in ("signal", "stop"):
                return
            if raw == "timeout":
                continue
            batch = {path for change, path in raw if wanted(change, path)}
            if batch:
                yield batch


def _watcher(roots: list[str]) -> Any:
    """What watches ``roots`` from now on: on Linux, :class:`~colonnade.config.inotify.
    Inotify` (it asks the kernel only for changes, so files read under a site root
    wake nobody); where polling is asked for, or inotify cannot be had,
    watchfiles' notifier (its Rust extension); None when that extension cannot be
    driven directly (then ``watchfiles.watch``).

    The package around the extension imports anyio and multiprocessing: about
    1.6 MiB of the master's RSS for a loop of a few lines. The settings
    ``watchfiles.watch`` reads from the environment are read here the same way
    (``WATCHFILES_FORCE_POLLING``, also on by itself on WSL;
    ``WATCHFILES_POLL_DELAY_MS``, ``WATCHFILES_DEBUG``,
    ``WATCHFILES_IGNORE_PERMISSION_DENIED``). Made on the caller's thread, so that
    a change right after the watch began is seen.
    """
    env = os.environ
    polling = env.get("WATCHFILES_FORCE_POLLING")
    if polling:
        force = polling.lower() not in {"false", "disable", "disabled"}
    else:  # watchfiles polls by itself on WSL, where inotify misses Windows' edits
        uname = os.uname()
        force = "microsoft-standard" in uname.release.lower() and uname.sysname.lower() == "linux"
    if not force and sys.platform == "linux":
        from colonnade.config.inotify import Inotify

        try:
            return Inotify(roots)
        except (OSError, AttributeError) as exc:  # no inotify in libc, or the watch limit
            log.warning("watching configuration with watchfiles' notifier: %s", exc)
    notify = _rust_notify()
    if notify is None:
        return None
    delay = env.get("WATCHFILES_POLL_DELAY_MS", "")
    return notify(
        roots,
        bool(env.get("WATCHFILES_DEBUG")),
        force,
        int(delay) if delay.isdecimal() else 300,
        True,
        bool(env.get("WATCHFILES_IGNORE_PERMISSION_DENIED")),
    )


def _rust_notify() -> Any:
    """``watchfiles._rust_notify.RustNotify`` loaded without its package, or None
    (an extension of another interface)."""
    import importlib.machinery
    import importlib.util
    import inspect

    name = "watchfiles._rust_notify"
    module = sys.modules.get(name)
    try:
        if module is None:
            package = importlib.util.find_spec("watchfiles")
            where = package.submodule_search_locations if package is not None else None
            spec = importlib.machinery.PathFinder.find_spec(name, where)
            if spec is None or spec.loader is None:
                return None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
        notify = module.RustNotify
        # watchfiles >= 0.21's constructor (its .pyi): paths, debug, force_polling,
        # poll_delay_ms, recursive, ignore_permission_denied.
        if len(inspect.signature(notify).parameters) != 6:
            return None
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    return notify
