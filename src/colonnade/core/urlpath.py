"""Turn a raw request path into the one canonical form every module sees.

Percent-decoding happens exactly once, here. The result has no dot segments, no
empty segments and no NUL; a path that climbs above the root is refused, so no
later join with a folder can leave it.
"""

from __future__ import annotations

from typing import Final

from colonnade.errors import HttpError

#: Recently decoded paths (servers see the same few paths again and again).
_CACHE: Final[dict[bytes, str]] = {}
_CACHE_MAX: Final = 4096


def decode_path(raw: bytes) -> str:
    """Decode ``raw`` (the path part of the target) or raise ``HttpError(400)``."""
    found = _CACHE.get(raw)
    if found is not None:
        return found
    path = _decode(raw)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[raw] = path
    return path


def _decode(raw: bytes) -> str:
    if not raw.startswith(b"/"):
        if raw == b"*":
            return "*"
        raise HttpError(400, 0, "the request path must start with /")
    # find, not "in": on CPython 3.11 bytes' "in" first tries its operand as an
    # integer and clears the TypeError, several times the cost of the search.
    if raw.find(b"%") < 0 and raw.find(b"/.") < 0 and raw.find(b"//") < 0:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise HttpError(400, 0, "the request path is not ASCII") from None
    if raw.find(b"%") >= 0:
        _check_escapes(raw)
    data = unquote_to_bytes(raw)
    if data.find(b"\x00") >= 0:
        raise HttpError(400, 0, "NUL in the request path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, 0, "the request path is not UTF-8") from None
    return normalize(text)


def _check_escapes(raw: bytes) -> None:
    i = raw.find(b"%")
    hexdigits = b"0123456789abcdefABCDEF"
    while i != -1:
        pair = raw[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in hexdigits or pair[1] not in hexdigits:
            raise HttpError(400, 0, "a malformed %-escape in the request path")
        i = raw.find(b"%", i + 3)


_HEXDIGITS: Final = b"0123456789abcdefABCDEF"


def unquote_to_bytes(data: bytes) -> bytes:
    """``data`` with each ``%XX`` escape decoded, a malformed one kept as it is: what
    ``urllib.parse.unquote_to_bytes`` answers for bytes. Here so that a worker does
    not import ``urllib.parse`` (with ``ipaddress``: ~0.45 MiB of its RSS) for the
    few calls its default modules make."""
    bits = data.split(b"%")
    if len(bits) == 1:
        return data
    out = [bits[0]]
    for item in bits[1:]:
        if len(item) >= 2 and item[0] in _HEXDIGITS and item[1] in _HEXDIGITS:
            out.append(bytes((int(item[:2], 16),)))
            out.append(item[2:])
        else:
            out.append(b"%")
            out.append(item)
    return b"".join(out)


#: The bytes ``quote`` never escapes (RFC 3986's unreserved characters).
_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
)


def quote(text: str, safe: str = "/") -> str:
    """``text`` encoded as UTF-8 and percent-escaped (upper-case hex) but for the
    unreserved characters and the ASCII ones of ``safe``: what ``urllib.parse.quote``
    answers with its default encoding, without importing it (see
    :func:`unquote_to_bytes`)."""
    data = text.encode("utf-8")
    keep = _UNRESERVED.union(safe.encode("ascii", "ignore"))
    return "".join([chr(b) if b in keep else f"%{b:02X}" for b in data])


def normalize(path: str) -> str:
    """Remove ``.``, ``..`` and empty segments; refuse to climb above ``/``."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not out:
                raise HttpError(400, 0, "the request path climbs above the root")
            out.pop()
        else:
            out.append(segment)
    result = "/" + "/".join(out)
    if path.endswith(("/", "/.", "/..")) and result != "/":
        result += "/"
    return result


def covers(prefix: str, path: str) -> bool:
    """True if the URL subtree at ``prefix`` holds ``path``: the prefix itself or a
    path below it, whole segments only (``/app`` covers ``/app/x``, not ``/apple``).

    ``prefix`` is canonical with no trailing slash (``/`` covers every path), as
    application, virtual directory and location paths are.
    """
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")
