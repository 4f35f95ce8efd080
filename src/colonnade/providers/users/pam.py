"""System accounts through PAM (libpam via ctypes): the Linux counterpart of IIS
checking a Windows account.

Why ctypes rather than a PyPI wrapper (``pamela``, ``python-pam``): the part we need
is five calls and a conversation function, and owning it lets us pass what a web
server should: ``PAM_SILENT`` and ``PAM_DISALLOW_NULL_AUTHTOK`` (an account without
a password never logs on over the network, although Debian's ``pam_unix`` says
``nullok``), the client's address as ``PAM_RHOST`` (for ``pam_faillock`` and the
auth log), no credential or session setup (``pam_setcred``/``pam_open_session``
make sense for a login shell, not a request), and a fail delay that is handed
back to the caller instead of sleeping in the thread (:attr:`PamResult.delay`).

Every call here blocks (``pam_unix`` reads ``/etc/shadow``; others ask LDAP or
Kerberos): run :func:`authenticate` in a worker thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd
import threading
from typing import Any, NamedTuple

from colonnade.providers.users import Logon, UserStoreError

# <security/_pam_types.h>
PAM_SUCCESS = 0
PAM_SERVICE_ERR = 3
PAM_SYSTEM_ERR = 4
PAM_BUF_ERR = 5
PAM_PERM_DENIED = 6
PAM_AUTH_ERR = 7
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10
PAM_MAXTRIES = 11
PAM_NEW_AUTHTOK_REQD = 12
PAM_ACCT_EXPIRED = 13
PAM_CONV_ERR = 19
PAM_ABORT = 26

PAM_SILENT = 0x8000
PAM_DISALLOW_NULL_AUTHTOK = 0x0001

PAM_USER = 2
PAM_RHOST = 4
PAM_FAIL_DELAY = 10

PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_ERROR_MSG = 3
PAM_TEXT_INFO = 4

#: Statuses that mean "these credentials are wrong" (401) rather than "PAM is broken".
REFUSALS = frozenset(
    {
        PAM_AUTH_ERR,
        PAM_USER_UNKNOWN,
        PAM_MAXTRIES,
        PAM_PERM_DENIED,
        PAM_NEW_AUTHTOK_REQD,
        PAM_ACCT_EXPIRED,
    }
)


class _Message(ctypes.Structure):
    _fields_ = (("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p))


class _Response(ctypes.Structure):
    _fields_ = (("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int))


_CONV = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(_Message)),
    ctypes.POINTER(ctypes.POINTER(_Response)),
    ctypes.c_void_p,
)
_DELAY = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class _Conv(ctypes.Structure):
    _fields_ = (("conv", _CONV), ("appdata_ptr", ctypes.c_void_p))


class _Lib(NamedTuple):
    start: Any
    authenticate: Any
    acct_mgmt: Any
    end: Any
    set_item: Any
    get_item: Any
    strerror: Any
    calloc: Any
    strdup: Any
    free: Any


_lock = threading.Lock()
_lib: list[_Lib | None] = []


def _load() -> _Lib | None:
    with _lock:
        if not _lib:
            _lib.append(_open())
        return _lib[0]


def _open() -> _Lib | None:
    try:
        pam = ctypes.CDLL(ctypes.util.find_library("pam") or "libpam.so.0")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    handle_p = ctypes.POINTER(ctypes.c_void_p)
    pam.pam_start.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(_Conv),
        handle_p,
    ]
    pam.pam_start.restype = ctypes.c_int
    for name in ("pam_authenticate", "pam_acct_mgmt", "pam_end"):
        fn = getattr(pam, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_int
    pam.pam_set_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    pam.pam_set_item.restype = ctypes.c_int
    pam.pam_get_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    pam.pam_get_item.restype = ctypes.c_int
    pam.pam_strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pam.pam_strerror.restype = ctypes.c_char_p
    # PAM frees the responses: they must come from the C allocator.
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.calloc.restype = ctypes.c_void_p
    libc.strdup.argtypes = [ctypes.c_char_p]
    libc.strdup.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    return _Lib(
        pam.pam_start,
        pam.pam_authenticate,
        pam.pam_acct_mgmt,
        pam.pam_end,
        pam.pam_set_item,
        pam.pam_get_item,
        pam.pam_strerror,
        libc.calloc,
        libc.strdup,
        libc.free,
    )


def available() -> bool:
    """True if libpam could be loaded."""
    return _load() is not None


class PamResult(NamedTuple):
    """What one PAM check found."""

    ok: bool
    """The user logged on (authenticated, and the account may be used now)."""
    user: str
    """The user name PAM settled on (a module may map the name it was given)."""
    status: int
    """The PAM status of the failing call (``PAM_SUCCESS`` when ``ok``)."""
    reason: str
    """``pam_strerror`` of that status, for the log ("" when ``ok``)."""
    delay: float
    """Seconds PAM asked to wait before answering a failure (``pam_faildelay``);
    the caller waits them without holding a thread."""

    @property
    def refused(self) -> bool:
        """True for wrong credentials or an account that may not log on (401);
        False when PAM itself failed (a configuration or system problem)."""
        return not self.ok and self.status in REFUSALS


def _conversation(lib: _Lib, user: bytes, password: bytes) -> Any:
    """A PAM conversation function answering password prompts with ``password``."""

    def conv(count: int, messages: Any, responses: Any, _appdata: Any) -> int:
        if count <= 0 or count > 32:
            return PAM_CONV_ERR
        block = lib.calloc(count, ctypes.sizeof(_Response))
        if not block:
            return PAM_BUF_ERR
        answers = ctypes.cast(block, ctypes.POINTER(_Response))
        for i in range(count):
            # Linux-PAM passes an array of pointers (Solaris a pointer to an array);
            # reading messages[i][0] is right for Linux-PAM.
            style = messages[i][0].msg_style
            if style == PAM_PROMPT_ECHO_OFF:
                answers[i].resp = lib.strdup(password)
            elif style == PAM_PROMPT_ECHO_ON:
                answers[i].resp = lib.strdup(user)
            elif style in (PAM_ERROR_MSG, PAM_TEXT_INFO):
                continue
            else:
                for j in range(i):
                    lib.free(answers[j].resp)
                lib.free(block)
                return PAM_CONV_ERR
        responses[0] = answers
        return PAM_SUCCESS

    return _CONV(conv)


def authenticate(service: str, user: str, password: str, rhost: str | None) -> PamResult:
    """Ask PAM ``service`` whether ``user`` may log on with ``password`` now.

    Runs ``pam_authenticate`` then ``pam_acct_mgmt`` (expired accounts and
    passwords, ``pam_nologin``, access rules). Blocking: call it from a thread.
    Raises ``OSError`` when libpam cannot be loaded.
    """
    lib = _load()
    if lib is None:
        raise OSError("libpam cannot be loaded")
    user_b = user.encode("utf-8")
    conv = _conversation(lib, user_b, password.encode("utf-8"))
    delays: list[int] = []

    def on_delay(status: int, usec: int, _appdata: Any) -> None:
        if status != PAM_SUCCESS:
            delays.append(usec)

    delay_fn = _DELAY(on_delay)
    conv_struct = _Conv(conv, None)
    handle = ctypes.c_void_p()
    status = lib.start(service.encode("ascii"), user_b, ctypes.byref(conv_struct), handle)
    if status != PAM_SUCCESS:
        return PamResult(False, user, status, _strerror(lib, None, status), 0.0)
    final = status
    try:
        lib.set_item(handle, PAM_FAIL_DELAY, ctypes.cast(delay_fn, ctypes.c_void_p))
        if rhost:
            lib.set_item(handle, PAM_RHOST, ctypes.c_char_p(rhost.encode("ascii", "replace")))
        status = lib.authenticate(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
        if status == PAM_SUCCESS:
            status = lib.acct_mgmt(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
        final = status
        name = user
        if status == PAM_SUCCESS:
            item = ctypes.c_void_p()
            if lib.get_item(handle, PAM_USER, ctypes.byref(item)) == PAM_SUCCESS and item.value:
                name = (ctypes.string_at(item.value) or user_b).decode("utf-8", "replace")
        reason = "" if status == PAM_SUCCESS else _strerror(lib, handle, status)
    finally:
        lib.end(handle, final)
    delay = sum(delays) / 1e6 if delays else 0.0
    return PamResult(status == PAM_SUCCESS, name, status, reason, delay)


def _strerror(lib: _Lib, handle: Any, status: int) -> str:
    text: bytes | None = lib.strerror(handle, status)
    return text.decode("utf-8", "replace") if text else f"PAM error {status}"


def unix_groups(user: str) -> frozenset[str]:
    """The names of ``user``'s Unix groups (primary and supplementary), from NSS.

    Empty when the name is not a Unix account (a PAM module that authenticates
    users the system does not know). Blocking (NSS may ask LDAP): call it from a
    thread.
    """
    try:
        entry = pwd.getpwnam(user)
        gids = os.getgrouplist(user, entry.pw_gid)
    except (KeyError, OSError):
        return frozenset()
    names = set()
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.add(str(gid))
    return frozenset(names)


class PamService:
    """A PAM service as a :class:`~colonnade.providers.users.PasswordStore`.

    It knows every name (PAM answers "unknown user" as a failure), so
    :meth:`check` never returns None. The user's Unix groups become its roles.
    """

    def __init__(self, service: str) -> None:
        self.service = service

    def check(self, name: str, password: str, client: str | None = None) -> Logon:
        """Log ``name`` on through PAM (blocking). Raises :class:`UserStoreError`
        when libpam is missing or PAM fails for another reason than the
        credentials (a broken service file, an unreachable directory)."""
        try:
            result = authenticate(self.service, name, password, client)
        except OSError as exc:
            raise UserStoreError(str(exc)) from None
        if result.ok:
            return Logon(True, result.user, unix_groups(result.user))
        why = f"PAM service {self.service!r}: {result.reason}"
        if not result.refused:
            raise UserStoreError(f"user {name!r}: {why}")
        return Logon(False, name, reason=why, delay=result.delay)
