"""Keeping the master and workers small: asyncio without ``ssl``, modules deferred.

``import asyncio`` imports ``ssl`` (``asyncio.base_events`` does, to offer TLS),
which maps OpenSSL's libssl and libcrypto: about 6 MiB of a process's RSS, a
third of an idle master's. The master terminates no TLS: an https port's
connections are handed to a worker of their pool before the handshake (its SNI
name is only peeked, ``transport/clienthello.py``; see docs/tls.md). Only an
https admin binding (``[admin] bind = "https://…"``, fixed while the master runs)
needs TLS in the master. Otherwise :func:`import_asyncio` imports asyncio with
``ssl`` hidden, so asyncio's own modules take "no TLS here" (their ``ssl`` is
None); ``ssl`` itself stays importable afterwards for whatever needs it, but
asyncio in that process then serves no TLS. The master then also runs asyncio's
own event loop instead of uvloop, whose import needs ``ssl`` (:func:`loop_factory`).

The same way (:func:`without`), the master's image and a worker import msgspec
without ``typing_extensions`` (~0.2 MiB of an idle master, ~0.45 MiB of a worker,
measured with tracemalloc): msgspec takes it only where it can (``try: import``),
for what Python 3.11's ``typing`` has itself. There msgspec answers the same
without it, also for an application's own types in a worker: it asks
``get_type_hints`` with ``include_extras=True``, for which typing_extensions'
version returns ``typing.get_type_hints``'s answer as it is (its own work is for
Python < 3.11 or without extras), and its ``Required`` and ``NotRequired`` are
``typing``'s. ``typing_extensions`` stays importable for the application.

:func:`lean_msgspec` does that, and defers two modules msgspec imports at its
own import for what no serving process asks of it: ``msgspec.inspect`` (its
type descriptions: some forty struct types) and ``msgspec._json_schema``
(``msgspec.json.schema``), ~0.24 MiB of RSS together. Each stands in
``sys.modules`` as a :class:`Deferred` module until an attribute of it is read
(``msgspec.inspect.type_info``, ``from msgspec.inspect import IntType``, a call
of ``msgspec.json.schema``): then the real module is imported, takes its place
in ``sys.modules`` and on its package, and answers, as for an application that
uses them. Colonnade reads ``msgspec.inspect`` only for a dotted configuration
key on the command line or in a ``web.toml`` write (``config/keys.py``).

A worker imports httptools the same way (:func:`deferring`): its package imports
its URL parser (``httptools.parse_url``, a Cython module of its own, ~0.1 MiB),
which Colonnade's parser never calls (``http/h1.py`` takes the request target as
it comes).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec, PathFinder
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Hide the modules ``names`` from what is imported in the block (those not
    imported yet: an imported one is there to stay); importable again after it."""
    hidden = [name for name in names if name not in sys.modules]
    # None in sys.modules makes an import raise ImportError: the documented way to hide one.
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


#: Modules deferred (see the module docstring), each with the names another module
#: of its package takes from it at import, which become forwarding calls
#: (``msgspec.json``'s ``from ._json_schema import schema, schema_components``,
#: ``httptools.parser``'s ``from .url_parser import parse_url``), and the deferred
#: modules it imports itself (loaded first).
DEFERRED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "msgspec.inspect": ((), ()),
    "msgspec._json_schema": (("schema", "schema_components"), ("msgspec.inspect",)),
    "httptools.parser.url_parser": (("parse_url",), ()),
}

#: The module that takes the forwarded names of a deferred one (above): a forwarding
#: call is named as its attribute there, where it stays (pickle finds a function by
#: its module and name, and must find that same object: the real module's own, once
#: it came in, is another).
FORWARDED_TO: dict[str, str] = {
    "msgspec._json_schema": "msgspec.json",
    "httptools.parser.url_parser": "httptools.parser",
}

_loading = threading.RLock()


class Deferred(types.ModuleType):
    """A module's stand-in in ``sys.modules`` until one of its attributes is read;
    then the real module is imported (:func:`load`) and answers."""

    def __getattr__(self, name: str) -> Any:
        # Dunder names are what tools probe modules for (``__path__``,
        # ``__wrapped__``): not a reason to import; ``__all__`` is a star import.
        if name.startswith("__") and name != "__all__":
            raise AttributeError(name)
        return getattr(load(self.__name__), name)

    def __setattr__(self, name: str, value: Any) -> None:
        # A patch (mock's, pytest's monkeypatch, an application's own) goes to the
        # module that answers from now on, not to the stand-in it replaces.
        if name.startswith("__"):
            super().__setattr__(name, value)
        else:
            setattr(load(self.__name__), name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("__"):
            super().__delattr__(name)
        else:
            delattr(load(self.__name__), name)


def load(name: str) -> types.ModuleType:
    """The module ``name``, imported now in place of its :class:`Deferred` stand-in."""
    with _loading:
        module = sys.modules.get(name)
        if module is not None and not isinstance(module, Deferred):
            return module
        for first in DEFERRED.get(name, ((), ()))[1]:
            load(first)
        sys.modules.pop(name, None)
        try:
            module = importlib.import_module(name)
        except BaseException:
            if name not in sys.modules and module is not None:
                sys.modules[name] = module  # the stand-in stays: the next read retries
            raise
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)
        return module


def _forward(module: str, name: str) -> Callable[..., Any]:
    target: Callable[..., Any] | None = None

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal target
        if target is None:
            target = getattr(load(module), name)
        return target(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = FORWARDED_TO.get(module, module)
    return call


def _spec(name: str) -> ModuleSpec | None:
    """``name``'s spec, found without importing its packages (``find_spec`` of a
    dotted name imports the packages above it first)."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top) if top not in sys.modules else None
    for depth in range(1, len(rest) + 1):
        folders = spec.submodule_search_locations if spec is not None else None
        if not folders:
            return None
        spec = PathFinder.find_spec(".".join([top, *rest[:depth]]), list(folders))
    return spec


@contextmanager
def deferring(package: str) -> Iterator[None]:
    """For the block that imports ``package``: the modules of :data:`DEFERRED` in it
    stand in for themselves (unless it is imported already: then nothing changes)."""
    if package not in sys.modules:
        for name, (names, _) in DEFERRED.items():
            if not name.startswith(package + ".") or name in sys.modules:
                continue
            spec = _spec(name)
            if spec is None:
                continue
            stand_in = Deferred(name)
            stand_in.__spec__ = spec
            stand_in.__file__ = spec.origin
            stand_in.__package__ = spec.parent
            for attribute in names:
                stand_in.__dict__[attribute] = _forward(name, attribute)  # (not a patch)
            sys.modules[name] = stand_in
    yield


@contextmanager
def lean_msgspec() -> Iterator[None]:
    """For the block that imports msgspec: without ``typing_extensions``, and with
    its modules of :data:`DEFERRED` deferred."""
    with deferring("msgspec"), without("typing_extensions"):
        yield


def import_asyncio(*, tls: bool) -> bool:
    """Import asyncio, without ``ssl`` unless ``tls`` (or unless either is imported
    already); whether asyncio came without it."""
    if tls or "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    with without("ssl"):
        import asyncio  # noqa: F401 - imported for the rest of the process
    return True


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop where ``ssl`` is imported already (its cost is paid), else
    asyncio's own (importing uvloop would import ``ssl``)."""
    import asyncio

    if "ssl" not in sys.modules or asyncio.base_events.ssl is None:  # type: ignore[attr-defined]
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    return uvloop.new_event_loop
