"""Landlock, through ctypes: the file-system sandbox of ``pools/sandbox.py``.

A module of its own so that ctypes (~0.4 MiB of a process's RSS) is imported by
the processes that confine a worker or ask for the kernel's Landlock ABI, not by
every worker: :func:`colonnade.pools.sandbox.confine` and
:func:`~colonnade.pools.sandbox.landlock_abi` import it when called.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Iterable
from typing import Any

from colonnade.pools.sandbox import SYSTEM_DEVICES, SYSTEM_READ, SandboxError

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
    """:func:`colonnade.pools.sandbox.landlock_abi` (documented there)."""
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


def confine(read: Iterable[str], read_write: Iterable[str]) -> int:
    """:func:`colonnade.pools.sandbox.confine` (documented there)."""
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
