"""Starting one worker process: its command line, environment and identity.

fork+exec through ``subprocess``, so no Python code runs between fork and exec;
``subprocess`` switches to the pool's user and groups in the child before exec,
so the worker never runs a line of Python as root. The worker inherits its end of
the control channel and the listening sockets of the ports its pool owns.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from colonnade.pools import ipc
from colonnade.pools.pool import Pool
from colonnade.pools.preflight import EXECUTE, WORKER_CWD, check_access


class SpawnError(Exception):
    """A worker process could not be started; the message says why."""


def spawn(
    pool: Pool, listeners: list[ipc.Listener], shared_fd: int | None = None
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a worker of ``pool``: the process and the master's end of its control channel.

    ``shared_fd``: the server's shared memory (``core/shared.py``), inherited too.

    Raises SpawnError with the reason (naming a folder the pool's user cannot
    search on the way to the interpreter, when that is why).
    """
    env, cwd, kwargs = _identity(pool)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-P",  # no working folder on sys.path: only installed code is imported
                "-m",
                "colonnade.pools.worker",
                "--control-fd",
                str(child.fileno()),
            ],
            pass_fds=(
                child.fileno(),
                *(lst.fd for lst in listeners),
                *(() if shared_fd is None else (shared_fd,)),
            ),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
    except OSError as exc:
        parent.close()
        why = str(exc)
        identity = pool.identity
        if identity is not None and (refused := check_access(identity, sys.executable, EXECUTE)):
            why += f" ({refused})"
        raise SpawnError(why) from exc
    finally:
        child.close()
    return proc, parent


def working_folder(pool: Pool) -> str:
    """The folder ``pool``'s workers start in, where their relative paths resolve:
    the master's, or :data:`WORKER_CWD` for a pool run as another user."""
    return os.getcwd() if pool.identity is None else WORKER_CWD


def _identity(pool: Pool) -> tuple[dict[str, str], str, dict[str, Any]]:
    """The worker's environment, working folder and ``Popen`` user/group arguments."""
    settings = pool.settings
    env = dict(os.environ)
    env.update(settings.env)
    env["COLONNADE_POOL"] = pool.name
    kwargs: dict[str, Any] = {}
    cwd = working_folder(pool)
    identity = pool.identity
    if identity is not None:
        kwargs.update(user=identity.uid, group=identity.gid, extra_groups=identity.groups)
        if identity.name is not None:
            env.update(USER=identity.name, LOGNAME=identity.name, HOME=identity.home or "/")
    if pool.temp_dir is not None:
        env["TMPDIR"] = pool.temp_dir
    return env, cwd, kwargs
