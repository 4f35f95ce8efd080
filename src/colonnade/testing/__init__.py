"""The test kit for module authors (and for Colonnade's own tests).

- :class:`Client`: runs requests through an :class:`~colonnade.engine.Engine`
  in-process, without sockets, and returns what the client would have received.
- :func:`build_engine`: an engine from a TOML string or dict and extra modules.
- :func:`run_stage`: runs one module's hooks for one stage on a built context.
"""

from colonnade.testing.client import Client, RecordingWriter, TestResponse, build_engine
from colonnade.testing.harness import make_context, run_stage

__all__ = [
    "Client",
    "RecordingWriter",
    "TestResponse",
    "build_engine",
    "make_context",
    "run_stage",
]
