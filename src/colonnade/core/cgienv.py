"""The CGI/1.1 request variables (RFC 3875 4.1), for every gateway handler.

``handler.cgi`` puts them in a script's environment, ``handler.fastcgi`` in its
PARAMS records; ``handler.wsgi`` shares the header rules and the path form.
The API (kept stable, other handlers build on it):

- :func:`find_script` (or :func:`script_parts`, the same as a plain tuple)
  splits the request's URL path into the script and the path info after it:
  the URL prefix whose physical path is an existing regular file, inside the
  application's roots (IIS and PHP semantics:
  ``/app/index.php/extra`` → script ``/app/index.php``, path info ``/extra``).
  Only a regular file is ever a script, never a directory or a device, and the
  search never goes past a regular file: ``/uploads/a.jpg/x.php`` finds
  ``a.jpg``, which an ``accept`` test such as "ends with ``.php``" refuses, so
  nothing is found. It returns a :class:`Script` or None.
- :func:`cgi_variables` builds the variables of a request for a
  :class:`Script`: a ``dict[str, str]`` whose values hold bytes as latin-1
  characters (PEP 3333's convention; decoded URL paths are UTF-8 bytes read as
  latin-1): ``value.encode("latin-1")`` gives the bytes to send, and
  :func:`as_bytes` does it for all.

What the variables hold (``GATEWAY_INTERFACE`` ``CGI/1.1``, ``SERVER_SOFTWARE``,
``REQUEST_METHOD``, ``REQUEST_SCHEME`` and ``SERVER_PROTOCOL`` need no comment):

- ``QUERY_STRING``: the raw query as sent (``""`` without one).
- ``REQUEST_URI``: the request target as the client sent it, before any remap
  or rewrite (``Request.target``); ``SCRIPT_NAME`` and ``PATH_INFO`` follow the
  path being served (``Request.path``, which a rewrite changes).
- ``SCRIPT_NAME`` / ``PATH_INFO``: the decoded URL path of the script / the rest
  (``""`` when none); ``SCRIPT_FILENAME``: the script's file; ``PATH_TRANSLATED``:
  ``DOCUMENT_ROOT`` + ``PATH_INFO`` (as nginx does), only when ``PATH_INFO`` is
  not empty. ``DOCUMENT_ROOT``: the application's root folder unless the
  caller names another.
- ``SERVER_NAME``: the request's host name (``Host``/``:authority``, else the
  address the connection came to); ``SERVER_PORT`` / ``SERVER_ADDR``: the local
  end of the connection; ``REMOTE_ADDR`` / ``REMOTE_PORT``: the client (as the
  trusted proxy module may have set it).
- ``HTTPS`` = ``on`` and ``REQUEST_SCHEME`` = ``https`` when the request came
  over TLS (or a trusted proxy says it did: ``Request.scheme``); ``HTTPS`` is
  absent otherwise, as Apache and nginx leave it.
- ``REMOTE_USER`` / ``AUTH_TYPE``: the user the server's authentication modules
  established (``ctx.user``); absent for an anonymous request.
- ``CONTENT_TYPE`` / ``CONTENT_LENGTH``: from the request's headers, when sent
  (a chunked body has no ``CONTENT_LENGTH``: the script reads to the end).
- ``HTTP_*``: every other request header, upper case, ``-`` → ``_``
  (:class:`HeaderVariables`). Repeated headers are joined with ``, `` (RFC 9110
  5.3), ``Cookie`` with ``; `` (RFC 6265 5.4). Dropped: ``Proxy`` (httpoxy:
  ``HTTP_PROXY`` is what HTTP client libraries read as their proxy setting), and
  names holding anything but letters, digits and ``-`` (``X_Real_IP`` would
  otherwise pass for ``X-Real-IP``; nginx and Apache drop them too).
  ``Authorization`` is passed (``HTTP_AUTHORIZATION``), as nginx and php-fpm
  do: applications do their own bearer-token or Basic checks with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING, Final, NamedTuple

from colonnade.core.confine import FILE_CHECKS
from colonnade.core.httputil import split_host
from colonnade.core.urlpath import decode_path
from colonnade.errors import HttpError

if TYPE_CHECKING:
    from colonnade.core.context import Context
    from colonnade.core.request import Request

_PROTOCOLS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2.0"}


def protocol_name(version: str) -> str:
    """``SERVER_PROTOCOL`` for ``Request.version``: ``"1.1"`` → ``"HTTP/1.1"``."""
    return _PROTOCOLS.get(version) or "HTTP/" + version


def latin1_path(path: str) -> str:
    """A decoded URL path as UTF-8 bytes read as latin-1 (PEP 3333's form)."""
    return path if path.isascii() else path.encode("utf-8").decode("latin-1")


def http_name(name: bytes) -> str:
    """``HTTP_`` + the header name upper case, ``-`` → ``_`` (RFC 3875 4.1.18)."""
    return "HTTP_" + name.decode("latin-1").upper().replace("-", "_")


_CACHE_MAX: Final = 1024


class HeaderVariables:
    """Request headers → variables, by a naming rule: ``rule(name)`` is the
    variable's name for header ``name`` (lower case), or None to drop it.

    Repeated headers are joined with ``separator`` (RFC 9110 5.3: a comma and
    optional whitespace), ``Cookie`` with ``; `` (RFC 6265 5.4).
    Names are few: the rule's answers are cached (bounded). ``Content-Type`` and
    ``Content-Length`` are ``CONTENT_TYPE`` and ``CONTENT_LENGTH`` whatever the rule.
    """

    __slots__ = ("_keys", "rule", "separator")

    def __init__(self, rule: Callable[[bytes], str | None], separator: str = ", ") -> None:
        self.rule = rule
        self.separator = separator
        self._keys: dict[bytes, str | None] = {
            b"content-type": "CONTENT_TYPE",
            b"content-length": "CONTENT_LENGTH",
        }

    def key(self, name: bytes) -> str | None:
        """The variable name of header ``name`` (lower case), or None: dropped."""
        key = self._keys.get(name, "")
        if key != "":
            return key
        key = self.rule(name)
        if len(self._keys) < _CACHE_MAX:
            self._keys[name] = key
        return key

    def add(self, variables: dict[str, str], headers: list[tuple[bytes, bytes]]) -> None:
        """Put ``headers`` into ``variables`` (values as latin-1 text), repeated
        ones joined with the separator (``Cookie`` with ``; ``)."""
        # A list, not any iterable: compiled, the loop indexes it (no iterator
        # object per call) and unpacks each pair as a tuple.
        keys = self._keys
        separator = self.separator
        for name, value in headers:
            key = keys.get(name, "")
            if key == "":
                key = self.key(name)
            if key is None:
                continue
            text = value.decode("latin-1")
            previous = variables.get(key)
            if previous is None:
                variables[key] = text
            else:
                variables[key] = previous + ("; " if key == "HTTP_COOKIE" else separator) + text


_NAME_CHARS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-")


def _cgi_rule(name: bytes) -> str | None:
    # httpoxy: HTTP_PROXY is a proxy setting to every HTTP client library.
    if name == b"proxy" or not name or not _NAME_CHARS.issuperset(name):
        return None
    return http_name(name)


#: The CGI handlers' header rule (see the module docstring).
CGI_HEADERS: Final = HeaderVariables(_cgi_rule)


class Script(NamedTuple):
    """Where a request's script is: its URL path, its file, the path info after it."""

    name: str  # SCRIPT_NAME, decoded: "/app/index.php"
    filename: str  # SCRIPT_FILENAME: the regular file, as mapped (symlinks not resolved)
    path_info: str  # PATH_INFO, decoded: "/extra", or ""


def _kind(path: str) -> int:
    # 1: a regular file, 2: a directory, 0: anything else or nothing.
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return 0
    return 1 if S_ISREG(mode) else 2 if S_ISDIR(mode) else 0


def _physical(ctx: Context, url_path: str) -> str:
    # The file path of url_path as Context.physical_path maps the request's own.
    app = ctx.app
    path = app.map_path(url_path)
    if app.map_path_hooks is not None:
        path = app.map_path_hooks(ctx, url_path, path)
    return path


def find_script(ctx: Context, accept: Callable[[str], bool] | None = None) -> Script | None:
    """The script ``ctx``'s request names, or None: no script is there.

    The script is the URL prefix of ``ctx.request.path`` (ending at a ``/`` or
    at the end) whose physical path is a regular file whose real path lies
    inside the application's roots, and that ``accept`` (if given) accepts;
    the rest of the path is the path info. Prefixes are looked at from the
    application's path down; the search stops at the first regular file or at
    a prefix that is neither a file nor a folder (no folder, nothing below it),
    so a file is never skipped to reach a "script" below it. The whole path is
    tried first: the common case costs one ``lstat`` per path component below
    the application's root (``Application.lstat_inside``), no ``realpath``, and
    nothing when the handler mapping already walked that path
    (``ctx.file_stat``); the walk's answers are kept a short while
    (``core.confine.FILE_CHECKS``).
    """
    found = script_parts(ctx, accept)
    return None if found is None else Script(*found)


def script_parts(
    ctx: Context, accept: Callable[[str], bool] | None = None
) -> tuple[str, str, str] | None:
    """:func:`find_script`'s answer as a plain tuple (a named tuple costs a
    Python-level call to make: what a handler that runs per request uses)."""
    request_path = ctx.request.path
    app = ctx.app
    if accept is None or accept(request_path):
        physical = ctx.physical_path
        found = ctx.file_stat
        if found is not None and found[0] == physical:
            st: os.stat_result | None = found[1]  # the handler mapping's walk
        else:
            try:
                # The common case: a file below the root, no symlink on the way.
                st = FILE_CHECKS.lstat_inside(app.root_prefixes, physical)
            except (OSError, ValueError):
                st = None
        if st is not None:
            if st.st_mode & _S_IFMT == _S_IFREG:  # S_ISREG, without its call
                return request_path, physical, ""
        elif _kind(physical) == 1:
            return _confined(ctx, request_path, physical, "")
    # Where the application's own path ends: its prefixes are not the app's to run.
    start = 0 if app.path == "/" else len(app.path)
    length = len(request_path)
    while start < length:
        end = request_path.find("/", start + 1)
        if end < 0:
            return None  # the whole path: tried above
        prefix = request_path[:end]
        physical = _physical(ctx, prefix)
        kind = _kind(physical)
        if kind == 1:
            if accept is not None and not accept(prefix):
                return None
            return _confined(ctx, prefix, physical, request_path[end:])
        if kind == 0 and not app.virtual_directories:
            return None
        start = end
    return None


#: stat's file type bits and a regular file's (``stat.S_IFMT``, ``S_IFREG``).
_S_IFMT: Final = 0o170000
_S_IFREG: Final = 0o100000


def _confined(
    ctx: Context, name: str, filename: str, path_info: str
) -> tuple[str, str, str] | None:
    # A symlink may lead out of the application: such a file is no script of it.
    if not ctx.app.contains(os.path.realpath(filename)):
        return None
    return name, filename, path_info


def cgi_variables(
    ctx: Context, script: Script, *, software: str = "colonnade", document_root: str | None = None
) -> dict[str, str]:
    """The CGI/1.1 variables of ``ctx``'s request for ``script`` (see the module
    docstring); values are latin-1 text standing for bytes.

    ``software`` is ``SERVER_SOFTWARE`` (handlers pass ``colonnade/<version>``:
    the core does not import the package's top); ``document_root`` replaces the
    application's root folder as ``DOCUMENT_ROOT``.
    """
    # In three parts, the order handler.fastcgi sends them in (it keeps the first
    # two made): the script's, the connection's, the request's own.
    request = ctx.request
    root = ctx.app.root if document_root is None else document_root
    variables = dict(script_pairs(software, *script, root))
    variables.update(connection_pairs(request))
    variables["REQUEST_METHOD"] = request.method
    variables["QUERY_STRING"] = request.query.decode("latin-1")
    variables["REQUEST_URI"] = request.target.decode("latin-1")
    user = ctx.user
    if user is not None and user.name:
        variables["REMOTE_USER"] = user.name.encode("utf-8").decode("latin-1")
        variables["AUTH_TYPE"] = user.auth_type
    CGI_HEADERS.add(variables, request.headers)
    return variables


def script_pairs(
    software: str, name: str, filename: str, path_info: str, root: str
) -> list[tuple[str, str]]:
    """:func:`cgi_variables`' first pairs, of the script (``GATEWAY_INTERFACE`` to
    ``PATH_TRANSLATED``), for a script's ``name``, ``filename`` and ``path_info``
    (:class:`Script`) and the document root."""
    pairs = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", software),
        ("SCRIPT_NAME", latin1_path(name)),
        ("SCRIPT_FILENAME", fs_text(filename)),
        ("PATH_INFO", latin1_path(path_info)),
        ("DOCUMENT_ROOT", fs_text(root)),
    ]
    if path_info:
        pairs.append(("PATH_TRANSLATED", fs_text(root.rstrip("/") + path_info)))
    return pairs


def connection_pairs(request: Request) -> list[tuple[str, str]]:
    """:func:`cgi_variables`' pairs of the connection (``SERVER_PROTOCOL`` to
    ``HTTPS``), which the requests of one connection share."""
    server = request.server
    host = request.host
    pairs = [
        ("SERVER_PROTOCOL", protocol_name(request.version)),
        ("REQUEST_SCHEME", request.scheme),
        ("SERVER_NAME", split_host(host) if host else (server[0] if server else "")),
    ]
    if server is not None:
        pairs.append(("SERVER_ADDR", str(server[0])))
        pairs.append(("SERVER_PORT", str(server[1])))
    else:
        pairs.append(("SERVER_PORT", ""))
    client = request.client
    if client is not None:
        pairs.append(("REMOTE_ADDR", str(client[0])))
        pairs.append(("REMOTE_PORT", str(client[1])))
    else:
        pairs.append(("REMOTE_ADDR", ""))
    if request.scheme == "https":
        pairs.append(("HTTPS", "on"))
    return pairs


def fs_text(path: str) -> str:
    """A file path's bytes (as the OS has them) as latin-1 text."""
    return path if path.isascii() else os.fsencode(path).decode("latin-1")


def as_bytes(variables: dict[str, str]) -> dict[bytes, bytes]:
    """``variables`` as bytes, ready for a process environment or FastCGI PARAMS."""
    return {name.encode("latin-1"): value.encode("latin-1") for name, value in variables.items()}


async def serve_local_redirect(ctx: Context, target: bytes, gateway: str) -> None:
    """Answer a gateway's local redirect (RFC 3875 6.2.2: ``Location: /path?query``
    without ``Status``) as the server would answer that URL: the handler the
    mapping picks for it runs now (``Context.redirect_locally``).

    ``gateway`` names the script or application in the 502.2's detail when the
    target is no usable path of the application; the mapping's own answers for
    the new path (404.4, 405) stand.
    """
    raw_path, _, query = target.partition(b"?")
    try:
        handler = ctx.redirect_locally(decode_path(raw_path), query)
    except (ValueError, HttpError) as exc:
        if isinstance(exc, HttpError) and exc.status != 400:
            raise
        raise HttpError(
            502,
            2,
            "bad gateway",
            detail=f"{gateway}: cannot serve its local redirect "
            f"{target.decode('latin-1')!r}: {exc}",
        ) from None
    pending = handler.execute(ctx)
    if pending is not None:
        await pending
