"""The whole suite's fixtures and switches.

``COLONNADE_TEST_FORCE_BATCH=1``: every keep-alive answer is held for the loop's
next turn (``WriteBatch``), also on a worker's only connection, where it is
otherwise written at once: every path the tests take then meets a held answer
(a write, a file, a close, a half-close, a drain, an upgrade...), not only those
with a second connection open. ``make test`` runs a part of the suite so (see the
Makefile). A switch of the test suite only: servers the tests start in this
process (LiveServer, the in-process states) see it, not a subprocess.
"""

from __future__ import annotations

import os

from colonnade.transport import connection

FORCE_BATCH = os.environ.get("COLONNADE_TEST_FORCE_BATCH") == "1"

if FORCE_BATCH:
    connection.BATCH_FROM = 1
