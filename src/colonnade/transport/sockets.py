"""Listening sockets: binding them (TCP, IPv6, unix) and removing a unix socket's file.

Apart from ``transport/server.py`` so that the master, which binds every listening
socket but serves none, imports these without the serving side (the engine, the
connections, TLS).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from colonnade.config.bindings import UNIX_PORT, Binding, is_unix

#: The file mode of a unix socket a binding creates: owner and group may connect
#: (a front proxy in the server's group), others not.
UNIX_SOCKET_MODE = 0o660


def bind_socket(binding: Binding, *, backlog: int = 2048) -> socket.socket:
    """A listening socket for ``binding`` (SO_REUSEADDR; IPv6 for IPv6 hosts; a unix
    socket for ``unix:/path``, see :func:`bind_unix`)."""
    if is_unix(binding.host):
        return bind_unix(binding.host, backlog)
    family = socket.AF_INET6 if ":" in binding.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((binding.host, binding.port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def bind_unix(path: str, backlog: int) -> socket.socket:
    """A listening unix socket at ``path``, mode :data:`UNIX_SOCKET_MODE`.

    A socket file left by a server that is gone (nothing accepts on it) is replaced;
    one a running server listens on is an OSError (EADDRINUSE), as a TCP port in use
    is; a file that is not a socket is never removed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)  # stale: its server is gone
            else:
                raise OSError(errno.EADDRINUSE, f"{path}: a server is listening on it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        _bound_here.add(path)
        # Before listen(): no client can connect while the mode is still the umask's.
        os.chmod(path, UNIX_SOCKET_MODE)
        sock.listen(backlog)
    except OSError:
        sock.close()
        remove_unix_socket(path)
        raise
    sock.setblocking(False)
    return sock


#: The unix socket files this process created (the ones it removes; a socket
#: systemd or ``--fd`` passed belongs to whoever made it).
_bound_here: set[str] = set()


def unix_path(sock: socket.socket) -> str | None:
    """The path of a listening unix socket (None: not one, or closed)."""
    if sock.family != socket.AF_UNIX or sock.fileno() < 0:
        return None
    path = sock.getsockname()
    return path if isinstance(path, str) and path.startswith("/") else None


def remove_unix_socket(path: str | None) -> None:
    """Remove the file of a unix socket this process bound (at stop, or when a reload
    drops its binding; :func:`unix_path` of the socket, taken before it is closed).
    A socket file this process did not create is left alone."""
    if path is not None and path in _bound_here:
        _bound_here.discard(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


#: Linux's TCP_NOTSENT_LOWAT (socket.py names it where the platform has it).
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", None)


def limit_unsent(sock: socket.socket, size: int) -> bool:
    """Bound the unsent bytes the kernel queues on ``sock``'s connections to ``size``
    (``TCP_NOTSENT_LOWAT``; ``[server] tcp_notsent_lowat``), 0 back to the kernel's
    default. On a listening socket every connection accepted after inherits it.
    False where it does not apply (not TCP, a platform without the option, or the
    kernel refused it: then the kernel's default stays, logged by the caller)."""
    if _TCP_NOTSENT_LOWAT is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, size)
    except OSError:
        return False
    return True


def listening_port(sock: socket.socket) -> int:
    """The port a listening socket routes as (a unix socket's: ``UNIX_PORT``)."""
    return UNIX_PORT if sock.family == socket.AF_UNIX else int(sock.getsockname()[1])
