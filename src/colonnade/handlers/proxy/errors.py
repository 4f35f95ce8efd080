"""The failures of an upstream connection (``handlers.proxy.client``).

Apart from the client because they subclass ``TimeoutError`` and ``OSError``,
which a mypyc-compiled module cannot: the client is compiled, these stay Python.
"""

from __future__ import annotations


class UpstreamTimeoutError(TimeoutError):
    """A wait on an upstream took longer than its timeout."""


class UpstreamConnectError(OSError):
    """The upstream could not be reached (the message says why)."""
