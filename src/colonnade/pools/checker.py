"""Checking a configuration in a short-lived child process, for the master.

Why a child: checking builds the whole server as a worker would (the engine, every
enabled module's section and plan, the TLS certificates), which imports the engine,
the pipeline, the modules, the handlers and ``ssl``. The master needs none of it to
supervise, and a process never gives back what it imported. So the master starts
``python -P -m colonnade.pools.checker``, writes the configuration source (the
server file's text as the master read it) to its stdin, and reads back a
:class:`Report`: the errors (file, line, key, message, as ``colonnade check``
names them) or, for a valid configuration, what the master derives from the
engine: the broken ``web.toml`` files, the application module sources to watch,
what each pool's user must reach (the preflight) and the third-party modules
found (handed to the workers). The child exits; its memory goes with it.

:func:`report` is the check itself (run in the child; ``colonnade check`` and the
tests run it in their own process).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import TYPE_CHECKING

import msgspec

from colonnade.config.tree import BrokenDir
from colonnade.errors import ConfigError, ModuleError, combined, each_error
from colonnade.pools.config import ConfigSource, without_python_apps
from colonnade.pools.preflight import Need

if TYPE_CHECKING:
    from colonnade.config.schema import ServerConfig
    from colonnade.core.registry import Registry
    from colonnade.engine import Engine


class Error(msgspec.Struct, frozen=True):
    """One :class:`ConfigError` (``module`` None) or :class:`ModuleError`."""

    message: str
    file: str | None = None
    line: int | None = None
    key: str = ""
    module: str | None = None

    @classmethod
    def of(cls, exc: ConfigError | ModuleError) -> list[Error]:
        """``exc`` as records (a :class:`ConfigErrors` gives one per error)."""
        if isinstance(exc, ModuleError):
            return [cls(exc.message, module=exc.module_id)]
        return [cls(e.message, e.file, e.line, e.key) for e in each_error(exc)]

    def error(self) -> ConfigError | ModuleError:
        """The exception this record was made from."""
        if self.module is not None:
            return ModuleError(self.module, self.message)
        return self.config_error()

    def config_error(self) -> ConfigError:
        """The :class:`ConfigError` this record was made from."""
        return ConfigError(self.message, file=self.file, line=self.line, key=self.key)


class Broken(msgspec.Struct, frozen=True):
    """A :class:`BrokenDir`: a ``web.toml`` whose folder answers 500.19."""

    site: str
    path: str
    file: str
    errors: list[Error]


class Report(msgspec.Struct, frozen=True):
    """What a check found: ``errors``, or what the master derives from a valid one."""

    errors: list[Error] = msgspec.field(default_factory=list)
    broken: list[Broken] = msgspec.field(default_factory=list)
    sources: list[str] = msgspec.field(default_factory=list)
    #: Per pool, what its user must reach (``preflight.content_needs``).
    needs: dict[str, list[Need]] = msgspec.field(default_factory=dict)
    #: The third-party modules registered from entry points (``Registry.entry_points``).
    entry_points: list[tuple[str, str, str]] = msgspec.field(default_factory=list)

    def raise_errors(self) -> None:
        """Raise what the check found wrong, as the in-process check would have."""
        if not self.errors:
            return
        errors = [e.error() for e in self.errors]
        modules = [e for e in errors if isinstance(e, ModuleError)]
        if modules:
            raise modules[0]
        raise combined([e for e in errors if isinstance(e, ConfigError)])

    def broken_dirs(self) -> tuple[BrokenDir, ...]:
        """The broken ``web.toml`` files as the engine reports them."""
        return tuple(
            BrokenDir(b.site, b.path, b.file, combined([e.config_error() for e in b.errors]))
            for b in self.broken
        )


def build(config: ServerConfig, registry: Registry) -> Engine:
    """Build ``config`` as a worker would, to check every level; starts nothing (the
    Python apps themselves are imported by the workers only)."""
    from colonnade.engine import Engine

    return Engine(without_python_apps(config), registry)


def report(
    source: ConfigSource, registry: Registry, config: ServerConfig | None = None
) -> tuple[Report, Engine | None]:
    """Check ``source`` (its text as held; ``config``: as already decoded from it) in
    this process: the report and the engine built (None when it has errors)."""
    from colonnade.pools.api import check_admin
    from colonnade.pools.preflight import content_needs
    from colonnade.pools.routes import RouteTable
    from colonnade.transport.tls import check_tls

    try:
        if config is None:
            config = source.load()
        engine = build(config, registry)
        tls_errors = [
            *check_tls(config),
            *RouteTable(config).check_tls_ports(config),
            *check_admin(config),
        ]
        if tls_errors:
            raise combined(tls_errors)
    except (ConfigError, ModuleError) as exc:
        return Report(errors=Error.of(exc)), None
    found = Report(
        broken=[Broken(b.site, b.path, b.file, Error.of(b.error)) for b in engine.broken],
        sources=sorted(engine.sources),
        needs=content_needs(config, engine),
        entry_points=registry.entry_points(),
    )
    return found, engine


def in_child(source: ConfigSource) -> Report:
    """Check ``source`` in a child process (see the module docstring). What the child
    logs goes to this process's stderr; a child that dies is a ConfigError."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "colonnade.pools.checker"],
        input=msgspec.json.encode(source),
        stdout=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(
            f"the configuration check stopped with exit status {done.returncode} "
            "(its error is in the log above)",
            file=source.file,
        )
    try:
        return msgspec.json.decode(done.stdout, type=Report)
    except msgspec.DecodeError as exc:  # pragma: no cover - main() keeps stdout for it
        raise ConfigError(f"the configuration check answered no report: {exc}") from None


def main() -> None:
    """The child: a :class:`ConfigSource` on stdin, its :class:`Report` on stdout."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from colonnade.core.registry import Registry
    from colonnade.modules.standard import BUILTIN

    report_to = sys.stdout.buffer
    # What a module prints while it is built goes to the log, not into the report.
    sys.stdout = sys.stderr
    source = msgspec.json.decode(sys.stdin.buffer.read(), type=ConfigSource)
    found, _ = report(source, Registry.standard(BUILTIN))
    report_to.write(msgspec.json.encode(found))
    report_to.flush()


if __name__ == "__main__":
    main()
