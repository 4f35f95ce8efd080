"""One error hierarchy for the whole server.

- ``ConfigError``: a user's configuration is wrong; it names the file, the line
  where known, and the dotted key. Never shown with a stack trace.
- ``ModuleError``: a module misbehaved or cannot be loaded; it names the module id.
- ``HttpError``: carries HTTP meaning (status, substatus). Raised anywhere in the
  pipeline it becomes that response at the pipeline's one error boundary.
- ``ClientDisconnectedError``: the client closed the connection or stopped reading
  before its response was complete. Nobody is left to answer, and it is not the
  server's fault: the pipeline ends the request without an error page or an
  error log line (the access log records it as Win32 status 64, as IIS does).
"""

from __future__ import annotations

import os


class ColonnadeError(Exception):
    """Base of every error Colonnade raises on purpose."""


class ConfigError(ColonnadeError):
    """A configuration file is invalid."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, key: str = ""
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            name = _short(self.file)
            where = name if self.line is None else f"{name}:{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


def _short(path: str) -> str:
    # Paths below the working folder read better relative to it.
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


class ModuleError(ColonnadeError):
    """A module is broken: bad declaration, import failure, provisioning failure."""

    def __init__(self, module_id: str, message: str) -> None:
        self.module_id = module_id
        self.message = message
        super().__init__(f"module {module_id!r}: {message}")


class HttpError(ColonnadeError):
    """An error with HTTP meaning: raise it to answer with ``status.substatus``."""

    def __init__(
        self,
        status: int,
        substatus: int = 0,
        message: str = "",
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.substatus = substatus
        self.message = message
        self.headers = headers or []
        super().__init__(f"{status}.{substatus} {message}".strip())


class ClientDisconnectedError(ColonnadeError, ConnectionError):
    """The client went away (closed, reset, or stopped reading) mid-request.

    A ``ConnectionError``, so application code that already catches those keeps
    working; the transport and the handlers raise this one only for the client's
    side, never for a connection the application made itself.
    """

    #: The Win32 status IIS logs for it (ERROR_NETNAME_DELETED).
    WIN32_STATUS = 64
