"""Running under systemd: socket activation and ``sd_notify``, without libsystemd.

How this works
--------------
**Socket activation** (``sd_listen_fds``): systemd binds the sockets of a
``.socket`` unit and starts the service with them open from descriptor 3 on,
``LISTEN_FDS`` saying how many and ``LISTEN_PID`` which process they are for
(another process, such as a shell that did not ``exec``, must ignore them).
:func:`inherited` reads them once per process and removes the variables, so that
no worker or application takes them for its own. :func:`listening_socket` is
how the master (and single-process mode) gets the socket of a binding: an
inherited one bound to the same address and port when there is one, else a
socket it binds itself. An inherited socket that matches no binding is kept,
not served (systemd holds its own copy and keeps queueing its connections
whatever we do with ours), and named in a warning (:func:`unclaimed`); a reload
that adds a binding for it takes it.

**Notifications** (``sd_notify``): :class:`Notifier` sends ``READY=1`` once the
server accepts, ``RELOADING=1`` with ``MONOTONIC_USEC`` when a reload begins and
``READY=1`` when it is over (what ``Type=notify-reload`` expects), ``STOPPING=1``
when a graceful stop begins, ``STATUS=`` lines, and ``WATCHDOG=1`` every half
``WATCHDOG_USEC`` from the serving event loop (a loop that hangs stops them, and
systemd restarts the service). The datagrams go to ``NOTIFY_SOCKET``: a path, or
``@name`` in the abstract namespace. Without ``NOTIFY_SOCKET`` each call is a
no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import MutableMapping

from colonnade.config.bindings import Binding, is_unix
from colonnade.errors import ConfigError
from colonnade.transport.sockets import bind_socket

log = logging.getLogger("colonnade.pools")

#: The first descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3

#: The sockets of this process's socket activation not (yet) used by a binding.
_reserve: list[socket.socket] | None = None


def inherited(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The listening TCP sockets systemd passed this process (once per process;
    later calls answer what no binding has taken yet). ``LISTEN_PID``,
    ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed from ``environ``."""
    global _reserve
    if _reserve is not None:
        return _reserve
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "").split(":")
    _reserve = []
    if not count:
        return _reserve
    if not (pid.isdigit() and int(pid) == os.getpid() and count.isdigit()):
        log.warning(
            "socket activation: LISTEN_PID=%s, LISTEN_FDS=%s are not for this process "
            "(pid %d): ignored (the service must exec colonnade, not run it as a child)",
            pid,
            count,
            os.getpid(),
        )
        return _reserve
    for i in range(int(count)):
        fd = LISTEN_FDS_START + i
        name = names[i] if i < len(names) and names[i] else f"fd {fd}"
        try:
            _reserve.append(_listening(fd))
        except ValueError as exc:
            log.warning("socket activation: %s: %s: ignored", name, exc)
    log.info(
        "socket activation: %d listening socket(s) from systemd: %s",
        len(_reserve),
        ", ".join(_address(s) for s in _reserve) or "none usable",
    )
    return _reserve


def _listening(fd: int) -> socket.socket:
    """The listening TCP socket at descriptor ``fd`` (no longer inherited by children),
    or ValueError saying what it is instead (the descriptor is then left as it was)."""
    try:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"not a socket ({exc})") from None
    if (
        sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
        or sock.type != socket.SOCK_STREAM
        or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        or (sock.family == socket.AF_UNIX and not str(sock.getsockname()).startswith("/"))
    ):
        # Not ours to close either: the descriptor stays as it was given.
        sock.detach()
        raise ValueError(f"not a listening TCP or unix (path) stream socket ({sock})")
    sock.setblocking(False)
    return sock


def adopt(fd: int) -> str:
    """Serve the listening socket at descriptor ``fd`` (``colonnade serve --fd N``):
    it joins the sockets systemd passed (:func:`inherited`), so the binding to its
    address takes it as it would take systemd's. Returns that address
    (``HOST:PORT``, or ``unix:PATH``); ConfigError if ``fd`` is no listening TCP
    socket or unix socket with a path. (A unix socket file it did not create is not
    removed at stop: its creator owns it.)"""
    try:
        sock = _listening(fd)
    except ValueError as exc:
        raise ConfigError(f"--fd {fd}: {exc}") from None
    inherited().append(sock)
    return _address(sock)


def hand_down() -> list[int] | None:
    """Before this process ``exec``s the master (``management/master_process.py``):
    the descriptors of the inherited sockets no binding took yet, made inheritable
    again; None when :func:`inherited` was not asked (the master asks it then)."""
    if _reserve is None:
        return None
    for sock in _reserve:
        os.set_inheritable(sock.fileno(), True)
    return [sock.fileno() for sock in _reserve]


def take_over(fds: list[int]) -> None:
    """In the master's new image: the sockets :func:`hand_down` passed are this
    process's inherited ones (its environment no longer names them)."""
    global _reserve
    _reserve = [_listening(fd) for fd in fds]


def listening_socket(binding: Binding, backlog: int = 2048) -> socket.socket:
    """The listening socket for ``binding``: the inherited one bound to its address
    and port where systemd passed one (:func:`inherited`), else one bound now with
    ``backlog`` (``[server] listen_backlog``)."""
    reserve = inherited()
    for sock in reserve:
        if _matches(sock, binding.host, binding.port):
            reserve.remove(sock)
            log.info("%s: serving the socket systemd passed (%s)", binding, _address(sock))
            return sock
    return bind_socket(binding, backlog=backlog)


def unclaimed() -> None:
    """Warn about each inherited socket no binding took (it is kept, not served)."""
    for sock in inherited():
        log.warning(
            "socket activation: the socket on %s matches no binding of the configuration: "
            "not served (add a binding for it, or remove it from the .socket unit)",
            _address(sock),
        )


def _address(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _matches(sock: socket.socket, host: str, port: int) -> bool:
    """Whether ``sock`` listens where a binding to ``host:port`` would.

    The same address and port; or, for a wildcard binding (``0.0.0.0``, ``::``),
    a wildcard socket that covers its family (systemd's ``ListenStream=8080`` is
    an IPv6 wildcard socket that takes IPv4 too, unless ``BindIPv6Only=ipv6-only``).
    A unix socket: a unix binding to the same path."""
    if sock.family == socket.AF_UNIX or is_unix(host):
        return sock.family == socket.AF_UNIX and is_unix(host) and sock.getsockname() == host
    bound_host, bound_port = sock.getsockname()[:2]
    if bound_port != port:
        return False
    import ipaddress  # here: only for sockets systemd or --fd passed (the master's memory)

    bound = ipaddress.ip_address(bound_host.partition("%")[0])
    try:
        wanted = {ipaddress.ip_address(host.partition("%")[0])}
    except ValueError:  # a name: the addresses it stands for
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return False
        wanted = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found}
    if bound in wanted:
        return True
    if not bound.is_unspecified or not any(w.is_unspecified for w in wanted):
        return False
    if bound.version == 6 and any(w.version == 4 for w in wanted):
        return not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    return any(w.version == bound.version for w in wanted)


class Notifier:
    """Tells systemd how the service is doing (``sd_notify``); a no-op without
    ``NOTIFY_SOCKET``. Made once by the serving process: it removes
    ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from ``environ`` so
    that workers and applications do not notify in its name."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", "")
        usec, watchdog_pid = env.pop("WATCHDOG_USEC", ""), env.pop("WATCHDOG_PID", "")
        #: Where the datagrams go (an abstract name starts with NUL); None: nowhere.
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        elif address:
            log.warning("NOTIFY_SOCKET=%s: not a Unix socket path or @name: ignored", address)
        #: Seconds between WATCHDOG=1 (half of WATCHDOG_USEC); None: no watchdog.
        self.watchdog_interval: float | None = None
        for_us = not watchdog_pid or watchdog_pid == str(os.getpid())
        if usec.isdigit() and int(usec) > 0 and for_us:
            self.watchdog_interval = int(usec) / 2e6

    def send(self, *fields: str) -> None:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) in one datagram."""
        if self.address is None:
            return
        data = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self.address)
        except OSError as exc:
            # systemd gone or the socket unreachable: serving goes on regardless.
            log.debug("sd_notify %r failed: %s", fields, exc)

    def ready(self, status: str) -> None:
        """The service is up (or back from a reload)."""
        self.send("READY=1", f"STATUS={status}")

    def reloading(self, status: str) -> None:
        """A reload begins (``READY=1`` follows when it is over)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        """A graceful stop begins."""
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """A line for ``systemctl status``."""
        self.send(f"STATUS={status}")

    async def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every :attr:`watchdog_interval` until cancelled."""
        interval = self.watchdog_interval
        if interval is None or self.address is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
