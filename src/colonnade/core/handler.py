"""The one handler contract: static files, WSGI, ASGI, FastCGI, CGI, proxy."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from colonnade.core.module import Module

if TYPE_CHECKING:
    from colonnade.core.context import Context

#: The ``ctx.items`` key where a gateway handler (``handler.proxy``) names the
#: upstream that served the request (``HOST:PORT``): the access log's ``x-upstream``.
UPSTREAM = "upstream"

#: The ``ctx.items`` key of a :class:`Route`: where a module that handed the
#: request to a gateway handler (``Context.hand_to``) sends it.
ROUTE = "gateway.route"


class Route(NamedTuple):
    """A request handed to a gateway by a module (URL Rewrite's route to a farm,
    ARR's ``http://FARM/{R:0}``): ``handler.proxy`` sends it to ``farm`` (a
    ``[farms.NAME]`` of the server file) with ``target`` (path and query, as
    sent on the wire) instead of what its ``[proxy]`` settings and the client's
    request target say."""

    farm: str
    target: bytes


class Handler(Module):
    """Produces the response for the requests the handler mapping gives it.

    A handler is a module with one more method, :meth:`execute`, called in
    EXECUTE_REQUEST_HANDLER when the mapping chose it. ``verbs`` lists the methods
    it serves (None: any); the engine answers others with 405 and ``Allow``.
    """

    verbs: ClassVar[frozenset[str] | None] = None
    #: True for a handler that serves the file the URL maps to (the static file
    #: handler): default documents and directory listings apply only to such.
    serves_files: ClassVar[bool] = False
    #: False for a handler that never reads the session (static files, FastCGI,
    #: CGI, the proxy): ``state.session`` leaves its requests alone, so a session
    #: store that is away fails only the requests that use it (ASP.NET loads
    #: session state only for handlers marked ``IRequiresSessionState``).
    uses_session: ClassVar[bool] = True

    def execute(self, ctx: Context) -> Awaitable[None] | None:
        """Build the response in ``ctx.response`` (or stream it with ``ctx.write``)."""
        raise NotImplementedError(f"handler {self.id!r} does not implement execute()")
