"""The arena's own lock (core/shared.py), made by the arena's creator, the master:
through the compiled build's C helper (colonnade/_libc.c), so that the master never
loads ctypes, or through ctypes in the pure build. Either way it is a robust,
process-shared mutex: a process that dies holding it does not wedge the others."""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os

import pytest

from colonnade.core import shared


def test_a_lock_its_holder_died_with_is_taken_over() -> None:
    arena = shared.create(size=1 << 20)
    try:
        lock = shared.Mutex(arena.buffer, shared._DIR_MUTEX)
        pid = os.fork()
        if pid == 0:  # the child takes the lock and dies holding it
            lock.lock()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        trylock = ctypes.CDLL(None).pthread_mutex_trylock
        trylock.argtypes = [ctypes.c_void_p]
        # Robust: the kernel tells the next locker (a plain mutex answers EBUSY).
        assert trylock(lock.address) == errno.EOWNERDEAD
        shared.recover(lock.address, errno.EOWNERDEAD)
        lock.unlock()
        # ...and the arena keeps working under it.
        assert arena.zone("after", 64).size == 64
        lock.release()
    finally:
        arena.close()


@pytest.mark.skipif(
    importlib.util.find_spec("colonnade._libc") is None,
    reason="the compiled build's C helper (the pure build uses ctypes, tested above)",
)
def test_the_c_helper_refuses_a_place_no_mutex_fits() -> None:
    import colonnade._libc as _libc

    buffer = bytearray(128)
    for offset in (-8, 100, 3):  # before, past the end, misaligned
        with pytest.raises(ValueError):
            _libc.robust_mutex_init(buffer, offset)
    with pytest.raises(BufferError):
        _libc.robust_mutex_init(bytes(128), 0)  # not writable
