"""Client addresses and sets of networks, compiled once for fast lookups.

Shared by the modules that decide by address (trusted proxies, IP restrictions,
dynamic IP restrictions): one way to read an address a client or a proxy header
gives, one way to write a network in the configuration, and one lookup table.

:class:`RangeTable` turns a list of networks, each with a value, into sorted
disjoint ranges per address family: a lookup is one ``bisect`` whatever the
number of entries. Where networks overlap, the first one listed decides for the
addresses it covers (IIS's and nginx's order: rules are read top to bottom).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable
from typing import Generic, TypeVar

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

T = TypeVar("T")

#: What a network entry looks like, for configuration errors.
NETWORK_FORMS = (
    "an IPv4 or IPv6 address, a CIDR network such as '10.0.0.0/8' or '2001:db8::/32', "
    "or an IPv4 network with its subnet mask such as '192.168.0.0/255.255.0.0'"
)


#: Texts parsed lately → their address: parsing costs 2-4 µs, a repeat client
#: (and every keep-alive request) costs a dict lookup. Cleared when full.
_PARSED: dict[str, Address | None] = {}
_PARSED_MAX = 4096
#: Longer texts are not remembered (no address is this long).
_PARSED_LONGEST = 64


def parse_address(text: str) -> Address | None:
    """The address in ``text``, or None if it is not one.

    Accepts what transports and proxy headers carry: a plain IPv4 or IPv6
    address, an IPv6 address in brackets, an IPv6 zone id (dropped). An
    IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, a dual-stack socket's view of
    an IPv4 client) is the IPv4 address, so one rule covers both spellings.
    """
    try:
        return _PARSED[text]
    except KeyError:
        pass
    address = _parse_address(text)
    if len(text) <= _PARSED_LONGEST:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = address
    return address


def _parse_address(text: str) -> Address | None:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> Network:
    """The network ``text`` names (see :data:`NETWORK_FORMS`); ValueError if none.

    Host bits set below the prefix are refused (``10.0.0.1/8`` is a typing error
    more often than not): the message says which network was probably meant.
    """
    value = text.strip()
    try:
        network: Network = ipaddress.ip_network(value)
    except ValueError:
        try:
            meant = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not {NETWORK_FORMS}") from None
        raise ValueError(
            f"{text!r} has host bits set below its prefix: did you mean '{meant}'?"
        ) from None
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            # Clients in IPv4-mapped form are looked up as IPv4 (parse_address).
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


class _Family(Generic[T]):
    """Disjoint ranges of one address family: starts, ends and values, sorted."""

    __slots__ = ("ends", "starts", "values")

    def __init__(self, entries: list[tuple[Network, T]]) -> None:
        # CIDR networks never overlap partially: two are disjoint or one holds the
        # other. Sorted by start, larger first (equal ones in list order), a stack
        # holds the networks around the current point, each paired with the
        # earliest-listed network among itself and those below it: the one that
        # owns the points the stack's top covers.
        rows = sorted(
            (
                (int(net.network_address), int(net.broadcast_address), order, value)
                for order, (net, value) in enumerate(entries)
            ),
            key=lambda r: (r[0], -r[1], r[2]),
        )
        starts: list[int] = []
        ends: list[int] = []
        values: list[T] = []
        owners: list[int] = []

        def emit(lo: int, hi: int, owner: tuple[int, T]) -> None:
            if lo > hi:
                return
            if owners and owners[-1] == owner[0] and ends[-1] + 1 == lo:
                ends[-1] = hi  # a shadowed network inside its owner adds no range
                return
            starts.append(lo)
            ends.append(hi)
            values.append(owner[1])
            owners.append(owner[0])

        stack: list[tuple[int, tuple[int, T]]] = []  # (end, (order, value) of the owner)
        pos = 0
        for lo, hi, order, value in rows:
            while stack and stack[-1][0] < lo:
                top_hi, top_owner = stack.pop()
                emit(pos, top_hi, top_owner)
                pos = top_hi + 1
            owner = (order, value)
            if stack:
                emit(pos, lo - 1, stack[-1][1])
                if stack[-1][1][0] < order:
                    owner = stack[-1][1]
            pos = lo
            stack.append((hi, owner))
        while stack:
            top_hi, top_owner = stack.pop()
            emit(pos, top_hi, top_owner)
            pos = top_hi + 1
        self.starts = starts
        self.ends = ends
        self.values = values

    def get(self, number: int) -> T | None:
        i = bisect.bisect_right(self.starts, number) - 1
        if i >= 0 and number <= self.ends[i]:
            return self.values[i]
        return None


class RangeTable(Generic[T]):
    """Networks with values, compiled for lookups by address.

    The first network listed that holds an address decides for it, as in a
    scan of the list top to bottom: ``RangeTable([(parse_network("10.1.0.0/16"),
    "b"), (parse_network("10.0.0.0/8"), "a")]).get(parse_address("10.1.2.3"))`` is
    ``"b"``, and ``"a"`` with the two swapped (10.1.0.0/16 never decides then).
    """

    __slots__ = ("_v4", "_v6", "size")

    def __init__(self, entries: Iterable[tuple[Network, T]]) -> None:
        rows = list(entries)
        self._v4: _Family[T] = _Family(
            [(n, v) for n, v in rows if isinstance(n, ipaddress.IPv4Network)]
        )
        self._v6: _Family[T] = _Family(
            [(n, v) for n, v in rows if isinstance(n, ipaddress.IPv6Network)]
        )
        #: How many networks were given.
        self.size = len(rows)

    def get(self, address: Address) -> T | None:
        """The value of the first network listed that holds ``address``, or None."""
        family = self._v4 if address.version == 4 else self._v6
        return family.get(int(address))

    def __contains__(self, address: Address) -> bool:
        return self.get(address) is not None

    def __bool__(self) -> bool:
        return self.size > 0
