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
import ctypes
import gc
import grp
import os
import pwd
import resource
import signal
import stat
import sys
from collections.abc import Iterable
from typing import Any, NamedTuple

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
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def trim_memory() -> None:
    """Hand the memory start-up freed back to the kernel: a collection for the cycles
    it left, then glibc's ``malloc_trim`` (the C heap keeps freed pages mapped
    otherwise; about 1.4 MiB of an idle worker's RSS, measured)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        _libc().malloc_trim(0)


# -- Landlock -------------------------------------------------------------------------------

_SYS_CREATE_RULESET = 444  # the same numbers on every Linux architecture (generic table)
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_IOCTL_DEV = 1 << 15  # ABI 5
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        syscall = _libc().syscall
    except (OSError, AttributeError):  # pragma: no cover
        return 0
    syscall.restype = ctypes.c_long
    abi = syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(abi), 0)


def _handled(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE … MAKE_SYM
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


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


def confine(read: Iterable[str], read_write: Iterable[str]) -> int:
    """Restrict this process (and its future children) with Landlock; return the ABI.

    ``read`` folders and files may be read (and executed), ``read_write`` ones
    also written, created and removed; nothing else. Raises :class:`SandboxError`
    where Landlock is unavailable or a step fails. Call it before any thread
    starts: Landlock restricts the calling thread and what it creates.
    """
    abi = landlock_abi()
    if abi < 1:
        raise SandboxError("this kernel has no Landlock (Linux 5.13+, enabled in the LSM list)")
    libc = _libc()
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    handled = _handled(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise SandboxError(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        rules = [(p, _READ) for p in (*read, *SYSTEM_READ)]
        rules += [(p, _READ | _WRITE_FILE) for p in SYSTEM_DEVICES]
        rules += [(p, handled) for p in read_write]
        for path, rights in rules:
            _add_rule(syscall, ruleset, path, rights & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SandboxError(f"PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
        if syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise SandboxError(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def _add_rule(syscall: Any, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path this system does not have
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_RIGHTS
        rule = _PathBeneath(rights, fd)
        if syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise SandboxError(f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
