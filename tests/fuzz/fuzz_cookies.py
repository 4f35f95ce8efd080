"""Cookie headers as the session, affinity and forms modules read them.

The input is ``Cookie`` header values, one a line. Properties: ``cookie_values``
raises nothing, returns at most ``limit`` values, each found in a Cookie header
(not another one), without ``;`` or surrounding spaces; a session id the session
module would accept has the form of one the server issues; an affinity cookie
names a member only if it is one of the farm's.
"""

from __future__ import annotations

from colonnade.core.httputil import cookie_values
from colonnade.core.session import ID_LENGTH, valid_session_id

_NAMES = (b"ASP.NET_SessionId=", b"ARRAffinity=", b".ASPXAUTH=", b"a=")
_MEMBERS = {b"m1-7f3a": "m1", b"m2-19c0": "m2"}


def one_input(data: bytes) -> None:
    """``data[1:]`` as Cookie header lines; ``data[0]`` picks the name and the limit."""
    if not data:
        return
    name_eq = _NAMES[data[0] % len(_NAMES)]
    limit = 1 + data[0] // len(_NAMES) % 4
    headers = [(b"cookie", line) for line in data[1:].split(b"\n")]
    headers.append((b"x-not-a-cookie", data[1:]))
    found = cookie_values(headers, name_eq, limit)
    assert len(found) <= limit
    for value in found:
        assert b";" not in value
        assert value == value.strip()
        assert any(name_eq in line and value in line for _, line in headers[:-1])
        # The session module: 26 characters of its alphabet, else a new session.
        if len(value) == ID_LENGTH:
            text = value.decode("ascii", "replace")
            if valid_session_id(text):
                assert text.isascii() and text.isalnum()
        # The farm: only its members' cookies bind.
        member = _MEMBERS.get(value)
        assert member is None or value.startswith(member.encode())
