"""``[asgi]``: how the ASGI handler runs an application's lifespan and WebSockets."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from colonnade.config.schema import RootPath
from colonnade.config.sections import Section, Where


class AsgiSection(Section, frozen=True):
    """ASGI hosting settings, read once per application (at its root).

    - ``lifespan``: run the ASGI lifespan protocol. ``"auto"`` runs it and carries
      on if the application does not support it (it raises on the lifespan scope
      before receiving anything); ``"on"`` makes any lifespan failure fatal;
      ``"off"`` never sends a lifespan scope.
    """

    key = "asgi"
    allowed = Where.SERVER | Where.APPLICATION

    lifespan: Literal["auto", "on", "off"] = "auto"
    """Run the ASGI lifespan protocol: ``auto``, ``on`` (failures are fatal) or ``off``."""
    lifespan_timeout: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """Seconds the application's lifespan startup (and shutdown) may take."""
    ws_max_message_size: Annotated[int, Meta(ge=1, le=1 << 31)] = 16 * 1024 * 1024
    """Largest WebSocket message accepted from a client, in bytes (larger: close 1009)."""
    ws_per_message_deflate: bool = True
    """Accept the permessage-deflate extension when a WebSocket client offers it."""
    ws_close_timeout: Annotated[float, Meta(gt=0, le=300)] = 5.0
    """Seconds to wait for the client's close frame after the server sent its own."""
    root_path: RootPath = ""
    """The prefix a reverse proxy removed before it forwarded the request (uvicorn's
    ``--root-path``): requests arrive without it, and the application sees it as the
    start of ``root_path`` (before its own mount path) and of ``path`` and
    ``raw_path``, as the client sent them to the proxy, so the URLs it makes
    (``url_for``) carry it. ``colonnade serve --root-path`` sets it (and ``[wsgi]``'s)."""
