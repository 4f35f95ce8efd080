"""Memory shared by every process of one server: the master and all its workers.

How this works: the server has one *arena*, a ``memfd`` mapped by every process.
The master creates it before it starts any worker and passes it to each one
(an inherited descriptor, named in the worker's start message); a worker keeps
the descriptor (``core/arenafd.py``) and maps it at the first :func:`server_memory`
call, when a module asks for its first zone: one that asks for none imports
neither this module nor ``mmap``. In single-process mode, and in
tests, the first :func:`server_memory` call creates it in the process. Because
it is passed as a descriptor, it reaches workers that run as other users or in
a Landlock sandbox alike, and it disappears with the last process using it.

Inside the arena, a module asks for a named *zone* of a fixed size
(:meth:`SharedMemory.zone`), like nginx's ``ngx_shared_memory_add``: the first
process to ask allocates it and runs its ``init`` (under the arena's lock), the
others find it by name and size. Zones live as long as the master: counters
survive reloads and worker recycles. A zone asked for with another size (a
changed setting) is a new zone; the old one's space is not reused until the
master restarts.

Locks are process-shared, *robust* POSIX mutexes (``pthread_mutex_t`` in the
shared memory, called through ``ctypes``): an uncontended lock and unlock stay
in user space (a futex), about 0.3 µs each from Python, where an ``fcntl``
record lock costs two system calls (~2.5 µs a pair, measured). A process that
dies holding one (a crashed worker) does not wedge the others: the next locker
is told so by the kernel and takes the lock over (:meth:`Mutex.lock`). ctypes
(~0.4 MiB of a process's RSS) is imported with the first mutex: a worker whose
modules ask for no zone adopts the arena without it, and the master, which
creates it, initialises its lock without (:func:`initialize_mutex`).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from colonnade.core import arenafd

if TYPE_CHECKING:
    import ctypes

#: The arena's size: address space reserved in every process, not memory used
#: (a memfd's pages are allocated when first written).
DEFAULT_SIZE = 32 * 1024 * 1024

#: Bytes reserved for one mutex (glibc's ``pthread_mutex_t`` is 40 bytes on
#: x86-64 and 48 on arm64; a cache line keeps two mutexes off one line).
MUTEX_BYTES = 64

_MAGIC = b"COLNSHM1"
_PAGE = 4096
_HEADER = struct.Struct("<8sqq")  # magic, size, next free offset
_DIR_MUTEX = 64
_ENTRY = struct.Struct("<32sqq")  # zone name, offset, size
_ENTRIES = 128
_FIRST_ZONE = _PAGE * 2  # header + directory (128 * 48 bytes) fit below

_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1


class SharedMemoryError(Exception):
    """The arena cannot give what was asked (full, or not an arena)."""


def _load_libc() -> ctypes.CDLL:
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)  # glibc's name
    except OSError:
        # Another C library (musl): ask where it is. Not first: find_library runs
        # ldconfig, and ctypes.util imports shutil and subprocess into every worker.
        from ctypes.util import find_library

        libc = ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
    for name in (
        "pthread_mutex_init",
        "pthread_mutex_lock",
        "pthread_mutex_unlock",
        "pthread_mutex_consistent",
    ):
        fn = getattr(libc, name)
        fn.restype = ctypes.c_int
    libc.pthread_mutex_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    libc.pthread_mutex_lock.argtypes = [ctypes.c_void_p]
    libc.pthread_mutex_unlock.argtypes = [ctypes.c_void_p]
    libc.pthread_mutex_consistent.argtypes = [ctypes.c_void_p]
    return libc


_loaded: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    """The C library, its mutex functions typed (loaded by the first caller)."""
    global _loaded, _lock_fn, _unlock_fn
    libc = _loaded
    if libc is None:
        libc = _loaded = _load_libc()
        _lock_fn = libc.pthread_mutex_lock
        _unlock_fn = libc.pthread_mutex_unlock
    return libc


_lock_fn: Callable[[int], int]
_unlock_fn: Callable[[int], int]

if TYPE_CHECKING:
    #: ``mutex_lock(address)`` / ``mutex_unlock(address)``: the C functions
    #: themselves, for a hot path that keeps :attr:`Mutex.address`
    #: (``mutex_lock`` answers 0, or a code for :func:`recover`).
    mutex_lock: Callable[[int], int]
    mutex_unlock: Callable[[int], int]
else:

    def __getattr__(name: str) -> object:
        # mutex_lock and mutex_unlock load the C library when first imported.
        if name in ("mutex_lock", "mutex_unlock"):
            _libc()
            return _lock_fn if name == "mutex_lock" else _unlock_fn
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Mutex:
    """A robust, process-shared mutex living in shared memory.

    ``lock``/``unlock`` are plain calls (no context manager) because they run on
    every request; keep what runs between them short and free of waits.
    """

    __slots__ = ("_address", "_keep")

    def __init__(self, buffer: mmap.mmap, offset: int) -> None:
        _libc()
        import ctypes

        self._keep = (ctypes.c_char * MUTEX_BYTES).from_buffer(buffer, offset)
        self._address = ctypes.addressof(self._keep)

    @property
    def address(self) -> int:
        """The mutex's address in this process."""
        return self._address

    def initialize(self) -> None:
        """Make the bytes a robust, process-shared mutex (once, by its creator)."""
        import ctypes

        libc = _libc()
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes
        libc.pthread_mutexattr_init(attr)
        libc.pthread_mutexattr_setpshared(attr, _PTHREAD_PROCESS_SHARED)
        libc.pthread_mutexattr_setrobust(attr, _PTHREAD_MUTEX_ROBUST)
        code = libc.pthread_mutex_init(self._address, attr)
        libc.pthread_mutexattr_destroy(attr)
        if code:
            raise OSError(code, f"pthread_mutex_init: {os.strerror(code)}")

    def lock(self) -> None:
        """Take the mutex, waiting for it; taken over from a process that died."""
        code = _lock_fn(self._address)
        if code:
            recover(self._address, code)

    def unlock(self) -> None:
        """Release the mutex."""
        _unlock_fn(self._address)

    def release(self) -> None:
        """Drop this process's view of it (before the mapping closes)."""
        del self._keep


def initialize_mutex(buffer: mmap.mmap, offset: int) -> None:
    """Make the bytes at ``offset`` a robust, process-shared mutex (once, by its
    creator), without a :class:`Mutex`: through the compiled build's C helper
    (colonnade/_libc.c, a leaf the master loads anyway), so that the master, which
    makes the arena and locks nothing in it, never loads ctypes; through ctypes in
    the pure build."""
    try:
        import colonnade._libc as _libc
    except ImportError:  # the pure-Python build
        Mutex(buffer, offset).initialize()
        return
    _libc.robust_mutex_init(buffer, offset)


def recover(address: int, code: int) -> None:
    """After ``pthread_mutex_lock(address)`` answered ``code`` (not 0): take the
    lock over from a dead owner, or raise. The data it guarded may be half
    updated; what the zones keep (counters) tolerates that."""
    if code == errno.EOWNERDEAD:
        _libc().pthread_mutex_consistent(address)
        return
    raise OSError(code, f"pthread_mutex_lock: {os.strerror(code)}")


class Zone:
    """A named part of the arena: ``buffer[offset:offset + size]`` is this zone's."""

    __slots__ = ("arena", "buffer", "name", "offset", "size")

    def __init__(self, arena: SharedMemory, name: str, offset: int, size: int) -> None:
        self.arena = arena
        self.buffer = arena.buffer
        self.name = name
        self.offset = offset
        self.size = size

    def mutex(self, at: int) -> Mutex:
        """The mutex at ``at`` bytes into the zone (initialised by the zone's ``init``)."""
        return Mutex(self.buffer, self.offset + at)


class SharedMemory:
    """The arena: a memfd mapped in this process (see the module docstring)."""

    def __init__(self, fd: int, *, create: bool, size: int = DEFAULT_SIZE) -> None:
        if create:
            os.ftruncate(fd, size)
            # No process may shrink or grow it: a shrunk file is SIGBUS elsewhere.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        else:
            size = os.fstat(fd).st_size
        if size < _FIRST_ZONE:
            raise SharedMemoryError(f"shared memory descriptor {fd} is too small ({size} bytes)")
        self.fd = fd
        self.size = size
        self.buffer = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # This process's view of the directory's mutex is made by the first zone()
        # (a Mutex loads ctypes): the master, which makes the arena, uses no zone.
        self._directory: Mutex | None = None
        self._zones: dict[tuple[str, int], Zone] = {}
        self._local = threading.Lock()  # threads of this process (the mutex is per arena)
        if create:
            _HEADER.pack_into(self.buffer, 0, _MAGIC, size, _FIRST_ZONE)
            initialize_mutex(self.buffer, _DIR_MUTEX)
        elif _HEADER.unpack_from(self.buffer, 0)[0] != _MAGIC:
            raise SharedMemoryError(f"descriptor {fd} is not a Colonnade shared memory arena")

    def zone(self, name: str, size: int, init: Callable[[Zone], None] | None = None) -> Zone:
        """The zone ``name`` of ``size`` bytes, allocated (and ``init`` run on it,
        under the arena's lock, so nobody sees it half made) if no process has
        made it yet. Raises :class:`SharedMemoryError` when the arena is full."""
        encoded = name.encode()
        if not encoded or len(encoded) > 32:
            raise ValueError(f"zone name {name!r}: 1 to 32 bytes")
        found = self._zones.get((name, size))
        if found is not None:
            return found
        buffer = self.buffer
        with self._local:
            directory = self._directory
            if directory is None:
                directory = self._directory = Mutex(buffer, _DIR_MUTEX)
            directory.lock()
            try:
                offset = self._find(encoded, size)
                if offset is None:
                    offset = self._allocate(encoded, size)
                    zone = Zone(self, name, offset, size)
                    if init is not None:
                        init(zone)
                    # Published last: a zone found in the directory is complete.
                    slot = self._free_entry()
                    _ENTRY.pack_into(buffer, slot, encoded, offset, size)
                else:
                    zone = Zone(self, name, offset, size)
            finally:
                directory.unlock()
        self._zones[name, size] = zone
        return zone

    def _find(self, name: bytes, size: int) -> int | None:
        for i in range(_ENTRIES):
            entry, offset, length = _ENTRY.unpack_from(self.buffer, _PAGE + i * _ENTRY.size)
            if not offset:
                return None
            if entry.rstrip(b"\0") == name and length == size:
                return int(offset)
        return None

    def _free_entry(self) -> int:
        for i in range(_ENTRIES):
            at = _PAGE + i * _ENTRY.size
            if not _ENTRY.unpack_from(self.buffer, at)[1]:
                return at
        raise SharedMemoryError(f"shared memory: more than {_ENTRIES} zones")

    def _allocate(self, name: bytes, size: int) -> int:
        self._free_entry()  # fail before taking space
        _magic, total, free = _HEADER.unpack_from(self.buffer, 0)
        offset = -(-free // _PAGE) * _PAGE
        if offset + size > total:
            raise SharedMemoryError(
                f"shared memory is full: zone {name.decode()!r} needs {size} bytes, "
                f"{max(0, total - offset)} are left of {total}"
            )
        _HEADER.pack_into(self.buffer, 0, _MAGIC, total, offset + size)
        return int(offset)

    def close(self) -> None:
        """Unmap and close the descriptor (zones handed out must be dropped first)."""
        if self._directory is not None:
            self._directory.release()
        self._zones.clear()
        self.buffer.close()
        os.close(self.fd)

    def usage(self) -> tuple[int, int]:
        """(bytes allocated to zones, arena size)."""
        return int(_HEADER.unpack_from(self.buffer, 0)[2]), self.size


_arena: SharedMemory | None = None
_arena_lock = threading.Lock()


def create(size: int = DEFAULT_SIZE) -> SharedMemory:
    """A new arena (the master's, before it starts workers). Not the process's own
    arena: the master serves no requests; pass ``fd`` to each worker."""
    fd = os.memfd_create("colonnade-shared", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        return SharedMemory(fd, create=True, size=size)
    except BaseException:
        os.close(fd)
        raise


def adopt(fd: int) -> SharedMemory:
    """Make the inherited arena ``fd`` this process's (a worker, before its engine)."""
    global _arena
    with _arena_lock:
        _arena = SharedMemory(fd, create=False)
        return _arena


def server_memory() -> SharedMemory:
    """This process's arena: the one the master passed (a worker maps it here, at
    the first call: ``core/arenafd.py``), else one made here (a single process
    serves alone: nobody to share with)."""
    global _arena
    arena = _arena
    if arena is None:
        with _arena_lock:
            if _arena is None:
                fd = arenafd.inherited
                arenafd.inherited = None
                _arena = create() if fd is None else SharedMemory(fd, create=False)
            arena = _arena
    return arena
