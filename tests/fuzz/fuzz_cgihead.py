"""A CGI or FastCGI application's response head (RFC 3875 6), as the gateway
handlers read it from the script's output.

Properties: ``split_head``, ``parse_response`` and ``content_length`` raise only
``ValueError`` (the handlers answer 502 for it); a head that parses has a
three-digit status, token header names in lower case, values without CR, LF or
NUL, a length under 10**18, and a local redirect only to a path.
"""

from __future__ import annotations

from colonnade.core.cgihead import content_length, parse_response, split_head
from colonnade.core.httputil import is_field_value, is_token
from tests.fuzz.harness import expand


def one_input(data: bytes) -> None:
    """``data`` as the first bytes a script wrote."""
    try:
        data = expand(data)
        split = split_head(data, 2048)
        if split is None:
            return
        block, rest = split
        assert len(block) + len(rest) <= len(data)
        response = parse_response(block)
        declared = content_length(response.head.headers)
    except ValueError:
        return
    assert declared is None or 0 <= declared < 10**18
    head = response.head
    assert 100 <= head.status <= 999
    for name, value in head.headers:
        assert is_token(name) and name == name.lower(), name
        assert is_field_value(value), value
    if response.local_redirect is not None:
        assert response.local_redirect.startswith(b"/")
        assert not response.local_redirect.startswith(b"//")
