"""The master's control socket: ``colonnade pools|recycle|stop|start`` talk to it.

A Unix stream socket that only the master's owner (and root) can use: it is
created with mode 0600 in a folder that is the owner's and writable by no other
user (a missing folder is created with mode 0700; group write is allowed for the
owner's private group, the umask-002 default of Debian and Ubuntu), and every client's uid is
checked with ``SO_PEERCRED``. One JSON object per line each way::

    → {"op": "pools"}                     ← {"ok": true, "pools": [...], "master": {...}}
    → {"op": "recycle", "pool": "api"}    ← {"ok": true, "message": "..."}
    → {"op": "stop" | "start", "pool": "api"}
    → {"op": "purge", "path": "/news/", "prefix": true}
                                          ← {"ok": true, "message": "...", "purged": 3, ...}
    → {"op": "farms"}                     ← {"ok": true, "farms": [{"farm": ..., "members": [...]}]}
    → {"op": "farm", "action": "drain", "farm": "app", "member": "10.0.0.5:8080"}
    → {"op": "traces", "site": "main"}    ← {"ok": true, "traces": [{"id": ..., ...}]}
    → {"op": "trace", "trace_id": "3f.."} ← {"ok": true, "trace": {...}}
    → {"op": "access_log", "site": "main", "lines": 50, "contains": "404"}
                                          ← {"ok": true, "file": "...", "lines": [...]}
    → {"op": "requests", "elapsed": 1000, "pool": "api", "site": "main"} (all optional)
                                          ← {"ok": true, "requests": [...], "workers": 2, ...}
    ← {"ok": false, "error": "no pool named 'x'"}

A client that sends something other than a JSON object is spoken to in HTTP/1.1:
the admin API (``api.py``), whose resources are these same commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec.structs import replace

from colonnade.config.schema import ServerConfig
from colonnade.errors import ConfigError

log = logging.getLogger("colonnade.pools")

MAX_LINE = 64 * 1024


class Command(msgspec.Struct, forbid_unknown_fields=True):
    """One request on the control socket (and of the admin API, ``api.py``)."""

    op: Literal[
        "pools",
        "recycle",
        "stop",
        "start",
        "reload",
        "purge",
        "server",
        "sites",
        "applications",
        "workers",
        "modules",
        "config",
        "config_file",
        "config_set",
        "config_tree",
        "config_schema",
        "farms",
        "farm",
        "traces",
        "trace",
        "requests",
        "metrics",
        "access_log",
        "imports",
    ]
    pool: str | None = None
    #: ``purge``: the URL path to purge, and whether every path under it goes too.
    #: ``config*``: the URL path whose settings are meant (None: the server file's).
    path: str | None = None
    prefix: bool = False
    #: ``farm``: what to do to which member (its name or address) of which farm.
    action: Literal["drain", "enable", "disable"] | None = None
    farm: str | None = None
    member: str | None = None
    #: ``modules``, ``config*``: the site (None: the first); ``traces``: only its traces.
    site: str | None = None
    #: ``modules``: the application's path.
    app: str = "/"
    #: ``config_set``: the section, its new table (the whole table at that level),
    #: or ``delete`` it; ``version``: the file's version the change was made
    #: against (``config_file`` tells it; another one is a conflict).
    section: str | None = None
    values: dict[str, Any] | None = None
    delete: bool = False
    version: str | None = None
    #: Who asks (for the audit log): set by the server, never taken from a client.
    who: str = ""
    #: ``trace``: the kept request trace to show (``traces`` lists ``site``'s).
    trace_id: str | None = None
    #: ``requests``: only those executing for at least this many milliseconds (and,
    #: given ``pool`` or ``site``, only that pool's or site's).
    elapsed: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: ``access_log``: the last ``lines`` lines of ``site``'s access log file, only
    #: those containing ``contains`` (case-insensitive) when it is given.
    lines: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    contains: Annotated[str, msgspec.Meta(max_length=256)] | None = None


def default_path() -> str:
    """Where the control socket is when ``[server] control_socket`` is not set."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "colonnade", "control.sock")
    if os.geteuid() == 0:
        return "/run/colonnade/control.sock"
    import tempfile  # here: the master imports it only when it needs it (master.py)

    return os.path.join(tempfile.gettempdir(), f"colonnade-{os.geteuid()}", "control.sock")


def socket_path(config: ServerConfig) -> str:
    """The control socket of the server ``config`` describes."""
    path = config.server.control_socket
    if path is None:
        return default_path()
    return os.path.normpath(os.path.join(config.base_dir, path))


def _private_group(gid: int, uid: int) -> bool:
    """True for the user's own private group (Debian's and Ubuntu's default for a
    user: same name as the user, no other member), where group-writable folders
    are the norm (umask 002) and give nobody else access."""
    try:
        group = grp.getgrgid(gid)
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    if group.gr_name != user.pw_name or group.gr_mem:
        return False
    # No other account has it as its primary group either.
    return not any(p.pw_gid == gid and p.pw_uid != uid for p in pwd.getpwall())


def _private_folder(folder: str) -> None:
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    info = os.stat(folder)
    uid = os.geteuid()
    others = bool(info.st_mode & stat.S_IWOTH) or (
        bool(info.st_mode & stat.S_IWGRP) and not _private_group(info.st_gid, uid)
    )
    if info.st_uid != uid or others:
        # Another user who may write there could replace the socket with one of
        # their own, which `colonnade` commands would then talk to.
        owner = "is not yours" if info.st_uid != uid else "others may write in it"
        raise ConfigError(
            f"the control socket's folder {folder} {owner} (mode "
            f"{stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid}): give a socket in a "
            f"folder that belongs to uid {uid} and that no other user may write to (a "
            "missing folder is created with mode 0700), e.g. --control ./run/control.sock",
            key="server.control_socket",
        )


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", data)
    return int(uid)


Handler = Callable[[Command], Awaitable[dict[str, Any]]]


class ControlServer:
    """Serves :class:`Command` lines on the control socket."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Create the socket (refusing if another master answers on it)."""
        _private_folder(os.path.dirname(self.path) or ".")
        if os.path.exists(self.path):  # noqa: ASYNC240 - a stat, at start
            if _alive(self.path):
                raise ConfigError(
                    f"another master is running on {self.path}; give this one a socket of "
                    "its own (serve --control SOCKET, or [server] control_socket)",
                    key="server.control_socket",
                )
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(
                self._client, path=self.path, limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock) if sock is not None else -1
            if uid not in (os.geteuid(), 0):
                log.warning("control socket: refused a client with uid %d", uid)
                return
            who = _user(uid)
            while True:
                line = await reader.readline()
                if not line:
                    return
                if not line.lstrip().startswith(b"{"):
                    # Not a JSON line: the admin API's HTTP (``curl --unix-socket``).
                    from colonnade.pools.api import serve_http

                    await serve_http(reader, writer, line, self.handler, who)
                    return
                try:
                    command = msgspec.json.decode(line, type=Command)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    reply: dict[str, Any] = {"ok": False, "error": f"bad command: {exc}"}
                else:
                    reply = await run_command(self.handler, replace(command, who=who))
                writer.write(msgspec.json.encode(reply) + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop serving and remove the socket."""
        if self.server is not None:
            await stop_server(self.server)
            self.server = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _user(uid: int) -> str:
    """``uid 1000 (alice)``: who a control-socket client is, for the audit log."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


async def stop_server(server: asyncio.AbstractServer) -> None:
    """Stop accepting on ``server`` and wait until it is closed."""
    server.close()
    with contextlib.suppress(Exception):
        await server.wait_closed()


async def run_command(handler: Handler, command: Command) -> dict[str, Any]:
    """``handler``'s reply to ``command``; an exception is logged, and answered
    with its type only (the log has the rest)."""
    try:
        return await handler(command)
    except Exception as exc:
        log.exception("control command %s failed", command.op)
        return {"ok": False, "error": f"internal error ({type(exc).__name__}): see the server log"}


def _alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True
