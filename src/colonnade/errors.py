"""One error hierarchy for the whole server.

- ``ConfigError``: a user's configuration is wrong; it names the file, the line
  where known, and the dotted key. Never shown with a stack trace.
  ``ConfigErrors`` (a ``ConfigError`` too) holds every independent error one
  check found, so that a user fixes them all in one round.
- ``ModuleError``: a module misbehaved or cannot be loaded; it names the module id.
- ``HttpError``: carries HTTP meaning (status, substatus). Raised anywhere in the
  pipeline it becomes that response at the pipeline's one error boundary.
- ``ClientDisconnectedError``: the client closed the connection or stopped reading
  before its response was complete. Nobody is left to answer, and it is not the
  server's fault: the pipeline ends the request without an error page or an
  error log line (the access log records it as Win32 status 64, as IIS does).
  ``ServerAbortedError`` (one of them): the server dropped the connection itself
  (a timer gave up on the client, an HTTP/2 protocol error, a stop's or a drain's
  deadline): ended the same way, logged with Win32 status 1236
  (ERROR_CONNECTION_ABORTED) rather than the client's 64.
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


class ConfigErrors(ConfigError):  # noqa: N818 - several ConfigErrors, raised as one
    """Several configuration errors found in one run, in the order found.

    It is a :class:`ConfigError`, so whoever handles one handles all; ``str()``
    puts each error on its own line, and :func:`each_error` lists them.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        flat: list[ConfigError] = []
        for error in errors:
            for one in each_error(error):
                if all(str(one) != str(seen) for seen in flat):
                    flat.append(one)
        self.errors = flat
        first = flat[0] if flat else ConfigError("invalid configuration")
        super().__init__(first.message, file=first.file, line=first.line, key=first.key)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def each_error(error: ConfigError) -> list[ConfigError]:
    """The single errors inside ``error`` (itself, unless it is a :class:`ConfigErrors`)."""
    return list(error.errors) if isinstance(error, ConfigErrors) else [error]


def combined(errors: list[ConfigError]) -> ConfigError:
    """One error to raise for ``errors`` (not empty): the error itself, or ConfigErrors."""
    if len(errors) == 1:
        return errors[0]
    return ConfigErrors(errors)


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
    """An error with HTTP meaning: raise it to answer with ``status.substatus``.

    ``message`` is shown to every client; ``detail`` only to a local one and in
    the log (see ``Context.error_response``).
    """

    def __init__(
        self,
        status: int,
        substatus: int = 0,
        message: str = "",
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        detail: str = "",
    ) -> None:
        self.status = status
        self.substatus = substatus
        self.message = message
        self.headers = headers or []
        #: For the administrator only (the local detailed page and the log line):
        #: what to change, such as the setting that refused the request.
        self.detail = detail
        super().__init__(f"{status}.{substatus} {message}".strip())


class ClientDisconnectedError(ColonnadeError, ConnectionError):
    """The client went away (closed, reset, or stopped reading) mid-request.

    A ``ConnectionError``, so application code that already catches those keeps
    working; the transport and the handlers raise this one only for the client's
    side, never for a connection the application made itself.
    """

    #: The Win32 status IIS logs for it (ERROR_NETNAME_DELETED).
    WIN32_STATUS = 64


class ServerAbortedError(ClientDisconnectedError):
    """The server dropped the connection (or HTTP/2 stream) under the request
    itself: a timer gave up on the client (a body or a reading below the minimum
    rate once the answer began, a send stuck for ``timeouts.body``), the client
    broke the HTTP/2 protocol, a stop's (or a pool worker's drain's) deadline
    passed with the request unfinished, or its response failed half-way (the
    application raised after the head went out: the pipeline's ``_abort``, with
    the failure as its ``__cause__``, logged in the error log already).

    Not the client's leaving, but ended alike, as nobody is left to answer: no
    error page, no error log line, the always-run stages run. The access log tells
    the two apart by the Win32 status, as IIS does.
    """

    #: ERROR_CONNECTION_ABORTED: "the network connection was aborted by the local
    #: system", what IIS logs for a connection the server (not the client) ended.
    WIN32_STATUS = 1236


#: The message of the cancellation a lost connection sends its request's task
#: (``task.cancel(CLIENT_GONE)``; HTTP/2: a stream the client reset, or its
#: connection lost): the walk ends that request as a client's leaving
#: (:func:`connection_ended`), its always-run stages run (the access log line,
#: Win32 status 64), then the task ends.
CLIENT_GONE = "the client went away"

#: The message of the cancellation the server's own abort sends the requests
#: still at work (``ServerState.cancel_request``: a connection's ``drop``, a
#: stop's or drain's deadline, ``abort_all``): ended as
#: :class:`ServerAbortedError` (logged with Win32 status 1236). Any other
#: cancellation (the application's own) goes on through the walk as before.
SERVER_ABORTED = "the server aborted the connection"


def connection_ended(exc: BaseException) -> ClientDisconnectedError | None:
    """What ends the request whose task got ``exc`` (a CancelledError): the error
    of a lost connection (:data:`CLIENT_GONE`) or of the server's own abort
    (:data:`SERVER_ABORTED`); None for any other cancellation, which is not ours
    to stop."""
    args = exc.args
    if not args:
        return None
    message = args[0]
    if message == CLIENT_GONE:
        return ClientDisconnectedError(CLIENT_GONE)
    if message == SERVER_ABORTED:
        return ServerAbortedError(SERVER_ABORTED)
    return None
