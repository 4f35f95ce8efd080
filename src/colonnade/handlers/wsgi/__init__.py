"""Hosting WSGI (PEP 3333) applications as a handler, on a bounded thread pool.

``handler.py`` holds the handler and the application thread's side of a request,
``environ.py`` the environ and its streams, ``bridge.py`` the thread pool and the
channel between an application thread and the event loop, ``config.py`` the
``[wsgi]`` section.
"""
