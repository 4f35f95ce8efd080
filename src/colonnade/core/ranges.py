"""Byte ranges (RFC 9110 14): parse ``Range``, coalesce, frame ``multipart/byteranges``.

Sans-IO: the handler decides what to read and send; whether ``Range`` applies
at all is :mod:`colonnade.core.conditional`'s call. The rules, nginx's where the
RFC leaves a choice:

- Only the ``bytes`` unit; a header that does not parse (or names another unit)
  is ignored and the whole file is sent — as is one asking for more than
  ``max_ranges`` ranges (many tiny or overlapping ranges are an old denial of
  service, CVE-2011-3192).
- ``a-b``, ``a-`` (to the end) and ``-n`` (the last n bytes); ``b`` past the end
  is clamped. A range starting at or past the end, and ``-0``, are unsatisfiable
  and dropped; if none is left the answer is 416 with ``Content-Range: bytes */N``.
- The ranges left are sorted and overlapping or adjacent ones merged (RFC 9110
  14.6 allows both), so the parts never add up to more than the file. One range
  left → a plain 206; several → ``multipart/byteranges``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

#: (start, stop): bytes ``start`` up to, not including, ``stop``.
Span = tuple[int, int]


def parse_ranges(header: bytes, size: int, max_ranges: int) -> list[Span] | None:
    """The satisfiable ranges of ``header`` for a file of ``size`` bytes.

    Returns None when the header is to be ignored (malformed, another unit, more
    than ``max_ranges`` ranges), an empty list when nothing is satisfiable (416),
    else the sorted, coalesced spans.
    """
    unit, eq, spec = header.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes":
        return None
    spans: list[Span] = []
    count = 0
    for item in spec.split(b","):
        item = item.strip(b" \t")
        if not item:
            continue  # empty list elements are allowed (RFC 9110 5.6.1.2)
        count += 1
        if count > max_ranges:
            return None
        first, dash, last = item.partition(b"-")
        if not dash:
            return None
        if first:
            if not first.isdigit() or (last and not last.isdigit()):
                return None
            start = _position(first)
            if last:
                end = _position(last)
                if end < start:
                    return None  # invalid, so the whole header is (RFC 9110 14.1.1)
                stop = min(end + 1, size)
            else:
                stop = size
            if start < size:
                spans.append((start, stop))
        else:
            if not last.isdigit():
                return None
            length = _position(last)
            if length > 0 and size > 0:
                spans.append((max(0, size - length), size))
    if count == 0:
        return None
    return coalesce(spans)


#: Beyond any file: a position of more digits counts as this. int() refuses over
#: 4,300 digits (ValueError) and takes quadratic time below that, and a client
#: choosing the digits must get a 416 or the whole file, never a 500.
_BEYOND = 10**18


def _position(digits: bytes) -> int:
    significant = digits.lstrip(b"0")
    return int(significant or b"0") if len(significant) <= 18 else _BEYOND


def coalesce(spans: list[Span]) -> list[Span]:
    """Sort ``spans`` and merge the ones that overlap or touch."""
    if len(spans) < 2:
        return spans
    spans.sort()
    merged = [spans[0]]
    for start, stop in spans[1:]:
        last_start, last_stop = merged[-1]
        if start <= last_stop:
            if stop > last_stop:
                merged[-1] = (last_start, stop)
        else:
            merged.append((start, stop))
    return merged


def content_range(span: Span, size: int) -> bytes:
    """The ``Content-Range`` value of ``span`` (``bytes 0-499/1234``)."""
    return b"bytes %d-%d/%d" % (span[0], span[1] - 1, size)


def unsatisfied_range(size: int) -> bytes:
    """The ``Content-Range`` value of a 416 (``bytes */1234``)."""
    return b"bytes */%d" % size


class Part(NamedTuple):
    """One part of a multipart body: its header block, then the file's bytes."""

    head: bytes
    start: int
    stop: int


class Multipart(NamedTuple):
    """A ``multipart/byteranges`` body, framed but not filled in."""

    content_type: bytes  # the response's Content-Type, boundary included
    parts: tuple[Part, ...]
    tail: bytes  # the closing delimiter
    length: int  # the whole body, known before any byte is read

    def join(self, data: bytes) -> bytes:
        """The whole body, the parts cut from ``data`` (the file in memory)."""
        out: list[bytes] = []
        for part in self.parts:
            out.append(part.head)
            out.append(data[part.start : part.stop])
        out.append(self.tail)
        return b"".join(out)


def multipart(spans: Sequence[Span], size: int, content_type: bytes) -> Multipart:
    """Frame ``spans`` of a ``size``-byte file of ``content_type`` as multipart.

    The boundary is random (a file cannot be crafted to contain it), and every
    delimiter is preceded by CRLF, the first one included (an empty preamble),
    as nginx and Apache send it.
    """
    import secrets  # here: only a multi-range answer needs it (and hmac, libcrypto)

    boundary = secrets.token_hex(12).encode("ascii")
    parts = tuple(
        Part(
            b"\r\n--%b\r\nContent-Type: %b\r\nContent-Range: %b\r\n\r\n"
            % (boundary, content_type, content_range(span, size)),
            span[0],
            span[1],
        )
        for span in spans
    )
    tail = b"\r\n--%b--\r\n" % boundary
    length = sum(len(p.head) + p.stop - p.start for p in parts) + len(tail)
    return Multipart(b"multipart/byteranges; boundary=" + boundary, parts, tail, length)
