"""A module's leave for the connection's response cache to keep a request's answer.

The response cache (``transport/respcache.py``, the HTTP.sys kernel-cache analog)
keeps answers of the static file handler on its own rule. A module that answers a
request from its own store (the output cache's hit) may let it keep that answer
too: it sets ``ctx.cache_grant`` to a :class:`CacheGrant`. The engine's rule
(``engine/respcache.py``) then treats the granting module as transparent for the
request, takes the answer whatever handler there was (none: the hit skipped the
mapping), and keeps it no longer than the grant says; every other module of the
request must still be transparent by its usual rule. The granting module revokes
the grant when its own entry goes (a purge, an expiry, a changed file, eviction):
the response cache then drops its copy on the next request for it.

The engine never imports a feature: this class is the whole contract between them.
"""

from __future__ import annotations


class CacheGrant:
    """Leave to keep one stored answer in the response cache (see the module docstring).

    - ``by``: the id of the granting module (transparent for the granted request);
    - ``expires``: a ``time.monotonic()`` deadline past which the response cache
      must not answer from its copy (the module's entry lifetime);
    - ``recheck``: the answer came from files that may change (the module looks at
      them on each of its hits): the response cache keeps its copy no longer than
      it keeps a static file's answer (the static handler's ``cache_check_interval``
      for the path), so an edit is seen as soon as a static file's would be;
    - ``age_since``: the ``time.time()`` the answer was first made, when the answer's
      last header is an ``Age`` computed from it per response (a cache hit); the
      response cache then computes it per response too. None: no such header;
    - ``revoked``: set by the module when its entry is gone;
    - ``hits``: requests the response cache answered under this grant (the module
      counts them as its own hits: its hit ratio stays what its entries serve).
    """

    __slots__ = ("age_since", "by", "expires", "hits", "recheck", "revoked")

    def __init__(
        self, by: str, expires: float, age_since: float | None = None, recheck: bool = False
    ) -> None:
        self.by = by
        self.expires = expires
        self.age_since = age_since
        self.recheck = recheck
        self.revoked = False
        self.hits = 0
