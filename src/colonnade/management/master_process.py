"""The master's own process: ``colonnade serve --workers N`` becomes this module.

``cmd_serve`` parses the command line, reads and summarises the configuration,
then replaces its process image (``execv``: the same process id, so systemd,
a supervisor or a shell's ``$!`` still see the master) with a fresh interpreter
running :func:`main` here. The master then holds only what supervising needs:
not the command line's parser, option tables, control client and summary, nor
what reading the configuration left in the heap (~3 MiB of an idle master; see
docs/process-model.md, "Memory").

What the master is to run (:class:`MasterStart`) travels in an anonymous memory
file (``memfd``) the new image inherits, not on its command line: the server
file's text may hold what ``ps`` must not show.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from colonnade.pools.lean import lean_msgspec

# First here: in the master's image msgspec comes without typing_extensions, its
# inspect and JSON schema modules deferred (pools/lean.py); where msgspec is imported
# already (``cmd_serve``) nothing changes.
with lean_msgspec():
    import msgspec

    from colonnade.errors import ConfigError, ModuleError, each_error
    from colonnade.pools.config import ConfigSource

#: The format of the master's log lines (``colonnade serve``'s).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class MasterStart(msgspec.Struct, kw_only=True, frozen=True):
    """What ``cmd_serve`` hands the master's process."""

    source: ConfigSource
    log_level: str
    log_config: str | None = None
    watch: bool = True
    #: asyncio with TLS (an https admin binding; see ``pools/lean.py``).
    tls: bool = False
    #: ``serve --reload``: the folders, include and exclude globs of its CodeWatch.
    code: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None
    #: Listening sockets inherited (``--fd N``, systemd's) and taken up before the
    #: ``exec`` (``pools/systemd.py``): their descriptors, still open in the new image.
    listening: list[int] | None = None


def report(exc: ConfigError | ModuleError) -> int:
    """Print a configuration's or a module's error as ``colonnade`` commands do; the
    exit status (2)."""
    # ConfigError: every mistake found, each on its own line.
    for error in each_error(exc) if isinstance(exc, ConfigError) else (exc,):
        print(f"colonnade: {error}", file=sys.stderr)
    return 2


def setup_logging(level: str, log_config: str | None) -> None:
    """The master's logging: to stderr, JSON when asked, or ``--log-config``'s."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    from colonnade.core import logformat

    logformat.use_json_if_asked()
    if log_config:
        from colonnade.management.serve_options import configure_logging

        configure_logging(log_config)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log reloads ourselves


def exec_master(start: MasterStart) -> NoReturn:
    """Replace this process with the master's (:func:`main`), handing it ``start``."""
    from colonnade.pools import systemd

    start = msgspec.structs.replace(start, listening=systemd.hand_down())
    data = msgspec.msgpack.encode(start)
    fd = os.memfd_create("colonnade-master", 0)  # no MFD_CLOEXEC: the new image reads it
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        # -P: no current folder on sys.path (the master imports no application).
        os.execv(sys.executable, [sys.executable, "-P", "-m", __name__, str(fd)])
    finally:  # only if execv failed
        os.close(fd)


def read_start(fd: int) -> MasterStart:
    """The :class:`MasterStart` in memory file ``fd`` (closed here)."""
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return msgspec.msgpack.decode(b"".join(chunks), type=MasterStart)


def main(argv: Sequence[str]) -> int:
    """Run the master described by the memory file whose descriptor is ``argv[1]``."""
    start = read_start(int(argv[1]))
    try:
        setup_logging(start.log_level, start.log_config)
        from colonnade.pools import lean

        lean.import_asyncio(tls=start.tls)  # first: what follows imports asyncio
        if start.listening is not None:
            from colonnade.pools import systemd

            systemd.take_over(start.listening)
        from colonnade.pools import master

        code = None
        if start.code is not None:
            from colonnade.config.codewatch import CodeWatch

            folders, include, exclude = start.code
            code = CodeWatch(folders, include, exclude)
        master.run(start.source, log_level=start.log_level, watch=start.watch, code=code)
    except OSError as exc:
        print(f"colonnade: cannot listen: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, ModuleError) as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
