"""Per-directory configuration: the ``web.toml`` files of a site's content folders.

Any content folder may hold a ``web.toml``. Its top-level tables are module
sections that apply to the folder's URL subtree; at an application's root it may
also change the application's module list (``[modules]`` with add/remove/clear)
and prepend handler mappings (``[[handlers]]``), and declare application modules
in ``[application_modules]``: ``"id" = "module:Class"`` (a module class shipped in
the folder) or ``"id" = { asgi_middleware = "module:attr", options = { ... } }``
(an ASGI middleware that wraps every handler of the application). The files are
found once per configuration generation by walking the content roots (hidden
folders and symlinked folders are not entered), parsed strictly and kept with
their line index for error messages.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import msgspec

from colonnade.config.keys import did_you_mean
from colonnade.config.sections import WEB_TOML, Raw
from colonnade.config.toml_lines import KeyLines
from colonnade.config.validation import convert, locate
from colonnade.errors import ConfigError, combined, each_error

#: Keys of a web.toml that are not module sections.
RESERVED = frozenset({"modules", "handlers", "application_modules"})
#: Folders deeper than this below a content root are not searched.
MAX_DEPTH = 32

_TOML_LINE = re.compile(r"\(at line (\d+)")
#: ``module:attribute`` (both dotted names) of an application module or middleware.
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class MiddlewareDecl(NamedTuple):
    """An ASGI middleware declared in ``[application_modules]``.

    ``target`` names a class or factory, called as ``target(app, **options)``.
    """

    id: str
    target: str
    options: dict[str, Any]

    @property
    def key(self) -> str:
        """The dotted key of the declaration, for error messages."""
        return f"application_modules.{self.id}"


class _MiddlewareTable(msgspec.Struct, forbid_unknown_fields=True):
    asgi_middleware: str
    options: dict[str, Any] = {}


class DirConfig(NamedTuple):
    """One ``web.toml``: the URL folder it configures and what it says."""

    site: str
    path: str  # URL path of its folder, "/" or "/a/b"
    file: str
    sections: Raw
    modules: Raw | None  # collection operations on the application's module list
    handlers: list[Raw]
    lines: KeyLines
    # Application modules shipped in the application's folder: id → "module:Class".
    app_modules: dict[str, str] = {}
    # ASGI middleware declared as application modules, outermost first.
    asgi_middleware: tuple[MiddlewareDecl, ...] = ()


#: Files read from memory instead of disk (see :func:`overlaid`), in this thread.
_OVERLAY: contextvars.ContextVar[Mapping[str, bytes]] = contextvars.ContextVar(
    "colonnade_config_overlay", default=types.MappingProxyType({})
)


@contextlib.contextmanager
def overlaid(files: Mapping[str, bytes]) -> Iterator[None]:
    """Within the block, read these files (absolute path → content) from memory:
    a configuration write is built and checked before anything is written."""
    token = _OVERLAY.set(files)
    try:
        yield
    finally:
        _OVERLAY.reset(token)


def read_toml(file: str) -> tuple[dict[str, Any], KeyLines]:
    """Parse a TOML file; a syntax error names the file and line."""
    pending = _OVERLAY.get().get(file)
    if pending is not None:
        return parse_toml(pending, file)
    try:
        with open(file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError("no such file", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", file=file) from None
    return parse_toml(data, file)


def parse_toml(data: bytes, file: str) -> tuple[dict[str, Any], KeyLines]:
    """Parse the bytes of ``file`` (read before, possibly by another process)."""
    # Imported here, when the first file is parsed: a server started from the
    # command line alone (the embedded default) with no web.toml never parses TOML,
    # and tomllib is ~0.2 MiB of its master's and each worker's RSS.
    import tomllib

    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        if line is None and "(at end of document)" in str(exc):
            # An unclosed string, array or table: tomllib names no line, the
            # reader wants the last one (found by fuzzing: errors with no line).
            line = max(1, len(text.splitlines()))
        message = _TOML_LINE.split(str(exc))[0].strip().rstrip("(").strip()
        raise ConfigError(f"not valid TOML: {message}", file=file, line=line) from None
    return doc, KeyLines(text)


def _error(file: str, lines: KeyLines, key: str, message: str) -> ConfigError:
    # A web.toml error names the file, the line of ``key`` and the key.
    return ConfigError(message, file=file, line=lines.line_for(key), key=key)


class BrokenDir(NamedTuple):
    """A ``web.toml`` that cannot be used, and why: its URL subtree answers 500.19."""

    site: str
    path: str  # URL path of its folder
    file: str
    error: ConfigError


def read_dir_config(file: str, site: str, url_path: str) -> DirConfig:
    """Read one ``web.toml`` strictly (sections are checked later, by the engine);
    every mistake of its structure is reported at once."""
    doc, lines = read_toml(file)
    errors: list[ConfigError] = []
    sections: Raw = {}
    for key, value in doc.items():
        if key in RESERVED:
            continue
        if not isinstance(value, dict):
            errors.append(_error(file, lines, key, "a module section must be a table"))
            continue
        sections[key] = value
    modules = doc.get("modules")
    if modules is not None and not isinstance(modules, dict):
        errors.append(_error(file, lines, "modules", "[modules] is a table of add/remove/clear"))
        modules = None
    if modules is not None:
        for name in sorted(set(modules) - {"add", "remove", "clear"}):
            hint = did_you_mean(name, ("add", "remove", "clear"))
            message = f"unknown key{hint or ' (use add, remove or clear)'}"
            errors.append(_error(file, lines, f"modules.{name}", message))
    handlers = doc.get("handlers", [])
    if not isinstance(handlers, list):
        errors.append(_error(file, lines, "handlers", "[[handlers]] is an array of tables"))
        handlers = []
    try:
        app_modules, middleware = _application_modules(doc, file, lines)
    except ConfigError as exc:
        errors.extend(each_error(exc))
    if errors:
        raise combined(errors)
    return DirConfig(
        site, url_path, file, sections, modules, handlers, lines, app_modules, middleware
    )


def _application_modules(
    doc: dict[str, Any], file: str, lines: KeyLines
) -> tuple[dict[str, str], tuple[MiddlewareDecl, ...]]:
    """``[application_modules]``: module classes by id, and ASGI middleware in order."""
    table = doc.get("application_modules", {})
    if not isinstance(table, dict):
        raise _error(
            file,
            lines,
            "application_modules",
            "[application_modules] is a table of application module ids",
        )
    classes: dict[str, str] = {}
    middleware: list[MiddlewareDecl] = []
    for module_id, value in table.items():
        key = f"application_modules.{module_id}"
        if isinstance(value, str):
            if _TARGET.match(value) is None:
                raise _error(
                    file,
                    lines,
                    key,
                    'an application module is "module:Class" (a file in the application folder)',
                )
            classes[module_id] = value
            continue
        if not isinstance(value, dict):
            raise _error(
                file,
                lines,
                key,
                'an application module is "module:Class", or an ASGI middleware: '
                '{ asgi_middleware = "module:attr", options = { ... } }',
            )
        try:
            found = convert(value, _MiddlewareTable, prefix=key, file=file)
        except ConfigError as exc:
            raise locate(exc, file, lines) from None
        if _TARGET.match(found.asgi_middleware) is None:
            where = f"{key}.asgi_middleware"
            raise _error(file, lines, where, "not of the form 'module:attribute'")
        middleware.append(MiddlewareDecl(module_id, found.asgi_middleware, found.options))
    return classes, tuple(middleware)


def discover(
    site: str, roots: Iterable[tuple[str, str]]
) -> tuple[list[DirConfig], list[BrokenDir]]:
    """Every ``web.toml`` under ``roots`` (URL path, folder), shallowest first; and
    those that cannot be read or parsed, with their errors."""
    found: dict[str, DirConfig] = {}
    broken: dict[str, BrokenDir] = {}
    overlay = _OVERLAY.get()
    for url_root, folder in roots:
        if not os.path.isdir(folder):
            continue
        base_depth = folder.rstrip(os.sep).count(os.sep)
        for dirpath, dirnames, filenames in os.walk(folder):
            depth = dirpath.count(os.sep) - base_depth
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".")
                and not os.path.islink(os.path.join(dirpath, d))
                and depth < MAX_DEPTH
            ]
            if WEB_TOML not in filenames and os.path.join(dirpath, WEB_TOML) not in overlay:
                continue
            rel = os.path.relpath(dirpath, folder)
            url = url_root.rstrip("/") + ("" if rel == "." else "/" + rel.replace(os.sep, "/"))
            url = url or "/"
            file = os.path.join(dirpath, WEB_TOML)
            # A folder reachable as two URLs (an app inside the site root) is read
            # once per URL: each URL inherits from its own parents.
            key = f"{url}\0{file}"
            if key in found or key in broken:
                continue
            try:
                found[key] = read_dir_config(file, site, url)
            except ConfigError as exc:
                broken[key] = BrokenDir(site, url, file, exc)
    return sorted(found.values(), key=_shallowest), sorted(broken.values(), key=_shallowest)


def _shallowest(d: DirConfig | BrokenDir) -> tuple[int, str]:
    return d.path.count("/"), d.path


def log_broken(broken: Iterable[BrokenDir], logger: logging.Logger) -> None:
    """Log each error of the ``web.toml`` files in ``broken``, with the URLs it takes down."""
    for d in broken:
        for error in each_error(d.error):
            logger.error(
                "%s (requests for site %s at %s and below are answered 500.19)",
                error,
                d.site,
                d.path,
            )
