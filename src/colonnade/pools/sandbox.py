"""A worker's identity, resource limits and file-system sandbox.

- Identity is applied by the master when it starts the worker: ``subprocess``
  calls ``setgroups``/``setgid``/``setuid`` in the child between fork and exec
  (no Python code runs there), so the worker never runs a line as root.
- Resource limits and the sandbox are applied by the worker itself, first thing,
  before it imports any module or application and before it starts a thread.
- The sandbox is Landlock (Linux 5.13+): the worker may read the content folders
  of the sites its pool serves and what Python needs (its prefixes, ``sys.path``,
  shared libraries, a few files of ``/etc``, ``/proc/self``), and read and write a
  private temp folder; everything else on the file system is refused, whatever
  the Unix permissions say. Sockets and already-open descriptors are not affected.
  A kernel without Landlock refuses a pool with ``sandbox = true`` (the master
  checks at load) and runs a ``"best-effort"`` one unconfined, with a warning.
"""

from __future__ import annotations

import contextlib
import gc
import grp
import os
import pwd
import resource
import signal
import sys
from collections.abc import Iterable
from typing import Final, NamedTuple

from colonnade.config.schema import PoolConfig, PoolLimits
from colonnade.errors import ConfigError


class SandboxError(Exception):
    """The sandbox could not be set up."""


# -- identity ---------------------------------------------------------------------------


class Identity(NamedTuple):
    """Who a pool's workers run as."""

    uid: int
    gid: int
    groups: list[int]
    name: str | None
    home: str | None


def resolve_identity(settings: PoolConfig, pool: str) -> Identity | None:
    """The user and groups of ``pool``; None when it runs as the master."""
    if settings.user is None and settings.group is None:
        return None
    name = home = None
    uid = os.geteuid()
    gid = os.getegid()
    if settings.user is not None:
        try:
            pw = (
                pwd.getpwuid(settings.user)
                if isinstance(settings.user, int)
                else pwd.getpwnam(settings.user)
            )
        except KeyError:
            raise ConfigError(
                f"no user {settings.user!r} on this system", key=f"pools.{pool}.user"
            ) from None
        uid, gid, name, home = pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir
    if settings.group is not None:
        try:
            gr = (
                grp.getgrgid(settings.group)
                if isinstance(settings.group, int)
                else grp.getgrnam(settings.group)
            )
        except KeyError:
            raise ConfigError(
                f"no group {settings.group!r} on this system", key=f"pools.{pool}.group"
            ) from None
        gid = gr.gr_gid
    if (uid, gid) != (os.geteuid(), os.getegid()) and os.geteuid() != 0:
        raise ConfigError(
            "running a pool as another user or group needs a master started as root",
            key=f"pools.{pool}.{'user' if settings.user is not None else 'group'}",
        )
    groups = sorted(set(os.getgrouplist(name, gid))) if name is not None else [gid]
    return Identity(uid, gid, groups, name, home)


# -- resource limits ----------------------------------------------------------------------


def apply_limits(limits: PoolLimits) -> None:
    """Lower this process's limits (soft and hard: the application cannot raise them)."""
    wanted = (
        (resource.RLIMIT_NOFILE, limits.open_files, "open_files"),
        (resource.RLIMIT_AS, limits.memory, "memory"),
    )
    for kind, value, key in wanted:
        if value is None:
            continue
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY and value > hard:
            raise SandboxError(f"limits.{key} = {value} is above the master's hard limit {hard}")
        resource.setrlimit(kind, (value, value))


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the master dies (PR_SET_PDEATHSIG)."""
    try:
        import colonnade._libc as _libc
    except ImportError:  # the pure-Python build: the same call through ctypes
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # pragma: no cover - not Linux
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
        return
    _libc.die_with_parent(int(signal.SIGTERM))


def trim_memory() -> None:
    """Hand the memory start-up freed back to the kernel: a collection for the cycles
    it left, then glibc's ``malloc_trim`` (the C heap keeps freed pages mapped
    otherwise; about 1.4 MiB of an idle worker's RSS, measured)."""
    gc.collect()
    try:
        import colonnade._libc as _libc
    except ImportError:  # the pure-Python build: the same call through ctypes
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL(None).malloc_trim(0)
        return
    _libc.malloc_trim()


#: CPython's young-generation threshold, unless something changed it.
_DEFAULT_YOUNG: Final = 700
#: A serving process's: tracked objects allocated (less those freed) before a young
#: collection; at most a few MiB of cyclic garbage waits for one.
YOUNG_THRESHOLD: Final = 10_000


def freeze_heap() -> None:
    """Tune the cycle collector for serving, once listening: what start-up left
    alive is frozen out of its walks (a collection for the cycles start-up left,
    then ``gc.freeze()``: the survivors go to the permanent generation, which no
    collection walks), and the young generation's threshold goes from CPython's
    700 to :data:`YOUNG_THRESHOLD` (unless the application set one of its own).

    Why: requests answered one after another never make the collector run (what a
    request made is freed before the next), but concurrent requests that wait (64
    on the WSGI thread pool's queue, each with ~17 tracked objects: its task's
    frames, the request, the bridge) are alive at each young collection and
    promoted, and CPython's count of young objects never goes below zero, so
    those freed just after a collection are not taken off it: under load the
    pool's wsgi-hello row ran a young collection every ~100 requests and a full
    one every ~10,000, walking the ~32k objects of the start-up heap (modules, the
    configuration, the applications). Callgrind, h2load -c 64, instructions per
    request: 60.5k (6.0k of them in the collector), 57.9k frozen (3.5k), 53.9k
    frozen with the threshold at 10,000 (0.25k). A reload unfreezes and freezes
    again once the old generation is gone (:func:`refreeze_heap`)."""
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    if young == _DEFAULT_YOUNG:
        gc.set_threshold(YOUNG_THRESHOLD, *older)


def refreeze_heap() -> None:
    """Where :func:`freeze_heap` ran: after a reload's old generation has gone,
    let the collector see the frozen objects again (the old generation's cycles
    among them), collect, and freeze what is left. Elsewhere (an embedding program,
    a test) nothing."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def python_paths() -> list[str]:
    """What the interpreter and installed packages are read from."""
    found = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    found.update(p for p in sys.path if p)
    found.add(os.path.dirname(os.path.realpath(sys.executable)))
    found.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # colonnade
    # Editable installs (setuptools) map package names to source folders outside
    # sys.path, through a finder module holding a MAPPING.
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)
        if name.startswith("__editable__") and isinstance(mapping, dict):
            found.update(str(path) for path in mapping.values())
    return sorted(found)


#: Read-only system paths every Python process needs (those that exist are used).
SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/proc/self",
    "/sys/devices/system/cpu",
)
#: Devices opened for reading and writing.
SYSTEM_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/tty")


# -- Landlock (pools/landlock.py: ctypes, imported by the processes that use it) -----------


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    from colonnade.pools import landlock

    return landlock.landlock_abi()


def confine(read: Iterable[str], read_write: Iterable[str]) -> int:
    """Restrict this process (and its future children) with Landlock; return the ABI.

    ``read`` folders and files may be read (and executed), ``read_write`` ones
    also written, created and removed; nothing else. Raises :class:`SandboxError`
    where Landlock is unavailable or a step fails. Call it before any thread
    starts: Landlock restricts the calling thread and what it creates.
    """
    from colonnade.pools import landlock

    return landlock.confine(read, read_write)
