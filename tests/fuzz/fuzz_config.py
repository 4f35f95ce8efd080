"""The server configuration file: TOML bytes → parsed document → ``ServerConfig``
(the strict schema decoder) → a built engine (module sections decoded, sites,
locations, handlers and rules checked).

Property: a file that cannot be used gives a ``ConfigError`` (or several, as
``ConfigErrors``), each naming the file and a line or a key, never another
exception; what is accepted builds an engine.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from colonnade.config.load import from_dict
from colonnade.config.tree import parse_toml
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, each_error
from colonnade.modules.standard import BUILTIN

_BASE = tempfile.mkdtemp(prefix="colonnade-fuzz-config-")
atexit.register(shutil.rmtree, _BASE, True)
(Path(_BASE) / "www").mkdir()
(Path(_BASE) / "www" / "index.html").write_text("home")
FILE = str(Path(_BASE) / "colonnade.toml")
_REGISTRY = Registry.standard(BUILTIN)


def one_input(data: bytes) -> None:
    """``data`` as the bytes of the server's configuration file."""
    try:
        document, lines = parse_toml(data, FILE)
        config = from_dict(document, source=FILE, base_dir=_BASE, lines=lines)
        engine = Engine(config, _REGISTRY)
    except ConfigError as exc:
        for error in each_error(exc):
            assert error.file == FILE, f"an error that names no file: {error!r}"
            # Located: a line, or a key (one the file lacks, or its whole text).
            whole = error.message == "not UTF-8 text"
            assert error.line is not None or error.key or whole, f"not located: {error!r}"
        return
    engine.close()
