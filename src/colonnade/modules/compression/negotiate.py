"""``Accept-Encoding`` negotiation (RFC 9110 12.5.3), cached per header value.

Browsers send a handful of distinct values, so a :class:`Negotiator` parses each
value once and answers later requests with one dict lookup.

The rules, as RFC 9110 12.5.3 states them and as applied here:

- A coding listed with ``q=0`` is refused; ``*`` stands for every coding not
  listed by name; ``x-gzip`` is ``gzip``. Names are case-insensitive.
- The answer is every offered coding the client accepts, best first: higher q
  first, ties in the server's order of preference.
- ``identity`` (no coding) is acceptable unless ``identity;q=0``, or ``*;q=0``
  without an ``identity`` entry, says otherwise. A coding rated below an explicit
  ``identity`` (or ``*``, which covers identity when it is not named) is dropped:
  the client prefers the plain bytes. An implicit identity ranks below every
  accepted coding.
- No header, or an empty one: identity only (RFC 9110 allows any coding without
  the header, but clients that send none, such as scripts, rarely decode any).
- Nothing acceptable at all (``identity;q=0`` and no offered coding accepted):
  the answer is identity anyway. RFC 9110 lets a server send an unencoded
  response here rather than a 406; refusing content is not a compression
  module's call, and nginx, Apache and IIS behave the same.
"""

from __future__ import annotations

#: How many distinct header values keep their answer (cleared when full: the
#: values in use come back at once, and a flood of odd values cannot grow it).
CACHE_SIZE = 512

_ALIASES = {"x-gzip": "gzip"}


def _qvalue(params: list[str]) -> float | None:
    """The q parameter among ``params`` (1.0 without one); None if malformed."""
    for param in params:
        name, eq, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        if not eq:
            return None
        try:
            q = float(value.strip())
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0 or q != q:  # also rejects nan
            return None
        return q
    return 1.0


def negotiate(header: str, offered: tuple[str, ...]) -> tuple[str, ...]:
    """The codings of ``offered`` (server preference order) the client accepts, best first.

    ``()`` means: send the response without a content coding.
    """
    explicit: dict[str, float] = {}
    star: float | None = None
    for element in header.split(","):
        name, *params = element.split(";")
        name = name.strip().lower()
        if not name:
            continue
        q = _qvalue(params)
        if q is None:
            continue  # a malformed element says nothing we can trust
        if name == "*":
            star = q if star is None else max(star, q)
            continue
        name = _ALIASES.get(name, name)
        explicit[name] = max(q, explicit.get(name, 0.0))
    ranked: list[tuple[float, int, str]] = []
    for index, coding in enumerate(offered):
        q = explicit.get(coding, star if star is not None else 0.0)
        if q > 0.0:
            ranked.append((-q, index, coding))
    if not ranked:
        return ()
    identity = explicit.get("identity", star)
    floor = identity if identity is not None else 0.0
    ranked.sort()
    return tuple(coding for neg_q, _, coding in ranked if -neg_q >= floor)


class Negotiator:
    """Negotiation for one offer (the codings and their order), with its cache."""

    __slots__ = ("_cache", "offered")

    def __init__(self, offered: tuple[str, ...]) -> None:
        self.offered = offered
        self._cache: dict[bytes, tuple[str, ...]] = {}

    def choose(self, header: bytes) -> tuple[str, ...]:
        """The accepted codings for an ``Accept-Encoding`` value, best first."""
        found = self._cache.get(header)
        if found is None:
            found = negotiate(header.decode("latin-1"), self.offered) if self.offered else ()
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[header] = found
        return found
