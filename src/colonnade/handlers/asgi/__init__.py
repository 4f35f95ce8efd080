"""Hosting ASGI 3 applications (http, websocket, lifespan) as a handler.

``handler.py`` holds the handler and the http cycle, ``websocket.py`` the
WebSocket session over wsproto, ``lifespan.py`` the lifespan protocol,
``scope.py`` the ASGI types and shared scope parts, ``config.py`` the ``[asgi]``
section.
"""
