"""The platform's crypt(3), through ctypes (libxcrypt on current Linux distributions).

Python's ``crypt`` module is deprecated (PEP 594) and gone in 3.13; what it wrapped
is still the system library, which knows the SHA-256/512 (``$5$``, ``$6$``),
yescrypt (``$y$``), MD5 (``$1$``) and DES hashes its build enables. ``crypt_rn``
is the reentrant form: the caller owns the work area, so threads may hash at once.
It releases the GIL (a ctypes call), so a slow hash never holds up the event loop
or the other threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

#: ``sizeof(struct crypt_data)`` in libxcrypt (and glibc's, which is smaller).
_DATA_SIZE = 32768

_lock = threading.Lock()
_crypt_rn: Any | None = None
_loaded = False


def _load() -> Any | None:
    global _crypt_rn, _loaded
    with _lock:
        if not _loaded:
            _loaded = True
            name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
            try:
                lib = ctypes.CDLL(name)
                fn = lib.crypt_rn
            except (OSError, AttributeError):
                return None
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
            _crypt_rn = fn
    return _crypt_rn


def available() -> bool:
    """True if the platform's crypt(3) could be loaded."""
    return _load() is not None


def crypt(password: bytes, setting: bytes) -> bytes | None:
    """crypt(3) of ``password`` with ``setting`` (a stored hash, or its prefix).

    None when the library is missing or refuses the setting (a method this build
    does not have, a malformed hash). ``password`` must hold no NUL byte: C would
    end it there.
    """
    fn = _load()
    if fn is None or b"\x00" in password or b"\x00" in setting:
        return None
    data = ctypes.create_string_buffer(_DATA_SIZE)
    result: bytes | None = fn(password, setting, data, _DATA_SIZE)
    # libxcrypt answers a setting it cannot use with a string starting with "*".
    if not result or result.startswith(b"*"):
        return None
    return result
