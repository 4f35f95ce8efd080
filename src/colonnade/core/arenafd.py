"""The server's shared memory arena as a worker inherits it: its descriptor, kept
until something first asks for the arena (``core/shared.py`` maps it then).

A worker whose modules ask for no zone never maps it nor imports
``core/shared.py`` and ``mmap`` (~0.1 MiB of an idle worker's RSS); this module
is all the worker imports to hand the descriptor on.
"""

from __future__ import annotations

#: The inherited arena's descriptor, until core/shared.py adopts it.
inherited: int | None = None
