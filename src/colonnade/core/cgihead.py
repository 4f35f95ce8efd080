"""The response head a gateway application writes: a status, CGI header lines.

A WSGI application names its status as a string (``"404 Not Found"``); a CGI
script, and a FastCGI application on its stdout, write header lines and a blank
line before the body, the status in a ``Status:`` line (RFC 3875 6.3). Both are
read here, once:

- :func:`parse_status` reads ``"404 Not Found"``: three digits from 100 up, a
  space, a reason; the reason is passed on only when it is not the standard one.
- :func:`split_head` finds where the header lines end (LF or CRLF line ends, as
  RFC 3875 allows), refusing a head larger than a bound.
- :func:`parse_head` reads the header lines: names must be tokens, values are
  stripped of surrounding whitespace and may not hold CR or NUL; a continuation
  line (obs-fold) is refused. ``Status:`` (any case, once) sets the status;
  without it the status is 200. Every violation is a ``ValueError`` naming it:
  the caller answers 502, the application is at fault, not the client.

- :func:`parse_response` adds RFC 3875 6.2's reading of ``Location``: a local
  redirect (a URL path without ``Status``: the server serves that URL itself,
  ``Context.redirect_locally``) or a client redirect (an absolute URI without
  ``Status``: 302). WSGI does not use it: PEP 3333 leaves ``Location`` alone.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from colonnade.core.httputil import is_field_value, is_token
from colonnade.core.request import Headers
from colonnade.http.phrases import PHRASES

#: Standard reason phrases, by status.
_PHRASES: Final = PHRASES

#: The largest head :func:`split_head` waits for (nginx's fastcgi_buffer_size is
#: 4-8 KiB; Apache's limit on a script's header lines is 8190 bytes each).
MAX_HEAD: Final = 64 * 1024


class CgiHead(NamedTuple):
    """A parsed response head: status, reason (None: the standard one), headers."""

    status: int
    reason: bytes | None
    headers: Headers  # lower-case names, in order, Status removed


def parse_status(status: str) -> tuple[int, bytes | None]:
    """``"404 Not Found"`` → ``(404, None)``; a non-standard reason is kept as bytes.

    Raises ``ValueError`` unless the status starts with three digits, 100 or more.
    """
    code_text, _, reason = status.partition(" ")
    if len(code_text) != 3 or not code_text.isdigit() or int(code_text) < 100:
        raise ValueError(f"invalid status {status!r}")
    code = int(code_text)
    return code, None if _PHRASES.get(code) == reason else reason.encode("latin-1")


def split_head(data: bytes, limit: int = MAX_HEAD) -> tuple[bytes, bytes] | None:
    """``(header lines, start of the body)`` once ``data`` holds the blank line
    that ends the head; None while it may still come.

    Raises ``ValueError`` when ``limit`` bytes came without one.
    """
    end = _head_end(data)
    if end is None:
        if len(data) > limit:
            raise ValueError(f"the response head is larger than {limit} bytes")
        return None
    head_end, body_start = end
    if head_end > limit:
        raise ValueError(f"the response head is larger than {limit} bytes")
    return data[:head_end], data[body_start:]


def _head_end(data: bytes) -> tuple[int, int] | None:
    """Where the header lines end and the body starts, or None if not yet."""
    # Bytes compared by index (no method calls): compiled, each costs nothing.
    if not data:
        return None
    first = data[0]
    if first == 10:
        return 0, 1
    if first == 13 and len(data) > 1 and data[1] == 10:
        return 0, 2
    j = data.find(b"\n\r\n")
    if j >= 0:
        # A bare blank line before it (ending at j at the latest) ends the head first.
        i = data.find(b"\n\n", 0, j + 1)
        return (i + 1, i + 2) if i >= 0 else (j + 1, j + 3)
    i = data.find(b"\n\n")
    return None if i < 0 else (i + 1, i + 2)


def parse_head(block: bytes) -> CgiHead:
    """The status and headers of ``block``, the header lines before the blank one.

    Raises ``ValueError`` for a line that is no ``name: value`` header, a name
    that is no token, a value with CR or NUL, a continuation line, or a
    ``Status`` that is repeated or does not parse.
    """
    return _parse(block)[0]


def content_length(headers: Headers) -> int | None:
    """The ``Content-Length`` the head declares, or None.

    Raises ``ValueError`` for one that is not a decimal number of at most 18
    digits (int() refuses thousands and is quadratic before that: the gateways
    answer 502 for a script that sends such a length, never 500), or for two that
    differ.
    """
    found: int | None = None
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise ValueError(f"an invalid Content-Length: {_shown(value)}")
            length = int(value)
            if found is not None and length != found:
                raise ValueError("two different Content-Length values")
            found = length
    return found


class CgiResponse(NamedTuple):
    """A script's response head as RFC 3875 6.2 reads it."""

    head: CgiHead
    #: A local redirect's target, ``/path[?query]`` as the script wrote it: the
    #: server serves that URL itself (and ignores the rest). None otherwise.
    local_redirect: bytes | None


def parse_response(block: bytes) -> CgiResponse:
    """:func:`parse_head`, then RFC 3875 6.2's reading of ``Location``.

    Without ``Status``, a ``Location`` that is a URL path (``/`` and not ``//``)
    is a local redirect (6.2.2), and any other (an absolute URI) a client
    redirect: the status becomes 302 (6.2.3). With ``Status``, ``Location`` is
    an ordinary header (6.2.4: a client redirect with a document).
    """
    head, status_given = _parse(block)
    if status_given:
        return tuple.__new__(CgiResponse, (head, None))
    for name, value in head.headers:
        if name == b"location":
            if value.startswith(b"/") and not value.startswith(b"//"):
                return CgiResponse(head, value)
            return CgiResponse(CgiHead(302, None, head.headers), None)
    # tuple.__new__: the named tuple's own __new__ is Python code, dear from here.
    return tuple.__new__(CgiResponse, (head, None))


#: Header lines already read, as ``(lower-case name, value)``: an application
#: sends much the same head with every response (``X-Powered-By: PHP/8.2``,
#: ``Content-type: text/html``), and a line found here needs no checking again.
#: Emptied when full: lines that vary (cookies, dates) cannot crowd out for
#: good the ones that repeat. Long lines are not kept (at most 512 lines of
#: 256 bytes).
_LINES: Final[dict[bytes, tuple[bytes, bytes]]] = {}
_LINES_MAX: Final = 512
_LINE_MAX: Final = 256


def _parse(block: bytes) -> tuple[CgiHead, bool]:
    # The head, and whether it named its status.
    status = 200
    reason: bytes | None = None
    seen_status = False
    headers: Headers = []
    lines = _LINES
    for line in block.split(b"\n"):
        found = lines.get(line)
        if found is None:
            if not line or line == b"\r":
                continue  # the block's last line end
            found = _read_line(line)
            if len(line) <= _LINE_MAX:
                if len(lines) >= _LINES_MAX:
                    lines.clear()
                lines[line] = found
        lname, value = found
        if lname == b"status":
            if seen_status:
                raise ValueError("Status sent twice in the response head")
            seen_status = True
            status, reason = parse_status(value.decode("latin-1"))
            continue
        headers.append((lname, value))
    return tuple.__new__(CgiHead, (status, reason, headers)), seen_status


def _read_line(line: bytes) -> tuple[bytes, bytes]:
    # One header line (its CR, if any, still on): the lower-case name and the
    # value, or ValueError naming what is wrong with it.
    if line.endswith(b"\r"):
        line = line[:-1]
    if line[0] in b" \t":
        raise ValueError("a folded header line (obs-fold) in the response head")
    name, colon, value = line.partition(b":")
    if not colon:
        raise ValueError(f"a response head line without a colon: {_shown(line)}")
    if not is_token(name):
        raise ValueError(f"an invalid header name in the response head: {_shown(name)}")
    value = value.strip(b" \t")
    if not is_field_value(value):
        raise ValueError(f"CR, LF or NUL in the value of header {_shown(name)}")
    return name.lower(), value


def _shown(data: bytes) -> str:
    """``data`` for an error message: printable and short (it came from an app)."""
    text = data[:80].decode("latin-1")
    return repr(text if len(data) <= 80 else text + "...")
