"""The compiled modules every serving process imports, imported from one compiled module.

In the compiled build (setup.py) each compiled module has a small shared object of
its own, a *shim*, that CPython's importer loads when interpreted code imports the
module first: the shim only finds the module's code in its group's library
(``colonnade__mypyc``) and runs it. A compiled module importing another of its own
library takes the module from the library directly, with no shim. Each shim mapped
costs a process 20 KiB of RSS (five 4 KiB mappings: its headers, text, read-only
data, relocated data and data), and a worker imported 19 to 21 of them, the first
import of each from interpreted code (the engine's package, the pools' modules).

A worker (``pools/worker.py``) imports this module right after msgspec and
httptools, before its other imports: one shim, and the compiled modules below come
from the library, each before anything interpreted imports it. Only the modules every worker imports
whatever it serves (the engine, the connection, the pipeline's walker and their
compiled helpers): a handler's or a module's compiled code is
still imported where its configuration enables it. The order is their
dependencies': a compiled module's import runs its package's ``__init__`` and the
interpreted modules it imports, whose imports of compiled modules not imported
yet go through the shims again. The HTTP/1 parser and its events are not here:
``colonnade.http``'s package imports them (it re-exports their names), so the
first import of its package, whoever asks, maps their shims. In the pure-Python
build this imports the same modules the process imports next anyway.
"""

# ruff: noqa: I001 - in dependency order (see above), not sorted
from __future__ import annotations

import colonnade.core.conditional
import colonnade.core.confine
import colonnade.core.metrics
import colonnade.core.urlpath
import colonnade.pipeline.walker
import colonnade.engine.mapping
import colonnade.engine.sites
import colonnade.engine.runtime
import colonnade.engine.engine
import colonnade.transport.connection  # noqa: F401 - imported for the process

#: Imported by this module (tests/pools/test_worker_memory.py checks a worker has
#: none of their shims mapped).
MODULES = (
    "colonnade.core.conditional",
    "colonnade.core.confine",
    "colonnade.core.metrics",
    "colonnade.core.urlpath",
    "colonnade.pipeline.walker",
    "colonnade.engine.mapping",
    "colonnade.engine.sites",
    "colonnade.engine.runtime",
    "colonnade.engine.engine",
    "colonnade.transport.connection",
)
