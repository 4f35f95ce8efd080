"""The static file handler (IIS StaticFileModule): serve ``ctx.physical_path``.

How this works, per request:

1. *Find the file, confined to the application's roots.* The physical path was
   mapped from the URL under one of the application's root folders; the handler
   calls ``lstat`` on each path component below that root. If none is a symlink the real
   path is the root's real path plus the same components, so it is inside the root
   and the last ``lstat`` is the file's ``stat`` — one syscall per component, where
   ``os.path.realpath`` would cost several times that. Only when a symlink (or
   anything unusual) shows up does it fall back to ``os.path.realpath`` and
   :meth:`~colonnade.core.app.Application.contains`.
2. *Type it* from the extension with the section's MIME table (404.3 if unmapped
   and no ``default_mime_type``, as IIS).
3. *Validators and preconditions:* ``Last-Modified`` and an ``ETag`` from the
   modification time (ns) and size; ``If-None-Match`` / ``If-Modified-Since``
   answer 304. :func:`evaluate_preconditions` is the one place the conditional
   (and later Range) rules live.
4. *Body:* ``ctx.response.file`` names the byte range; the transport sends it with
   ``sendfile`` (and not at all for HEAD).
"""

from __future__ import annotations

import calendar
import os
import time
from email.utils import parsedate_tz
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import NamedTuple

from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.request import Headers
from colonnade.core.response import FileBody
from colonnade.handlers.static.config import StaticContentSection

_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (
    b"",
    b"Jan",
    b"Feb",
    b"Mar",
    b"Apr",
    b"May",
    b"Jun",
    b"Jul",
    b"Aug",
    b"Sep",
    b"Oct",
    b"Nov",
    b"Dec",
)
#: Formatted ``Last-Modified`` values by whole second; files share modification
#: seconds often (a deploy), and formatting costs more than the lookup.
_HTTP_DATES: dict[int, bytes] = {}
_HTTP_DATES_MAX = 4096

OK = 200
NOT_MODIFIED = 304

#: The per-directory configuration file (``colonnade.config.tree.WEB_TOML``; the
#: import rule keeps handlers off the config tree, so the name is repeated here).
_CONFIG_NAME = "web.toml"
_CONFIG_NAME_LEN = len(_CONFIG_NAME)


def http_date(seconds: int) -> bytes:
    """``seconds`` since the epoch as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    found = _HTTP_DATES.get(seconds)
    if found is None:
        t = time.gmtime(seconds)
        found = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
            _DAYS[t.tm_wday],
            t.tm_mday,
            _MONTHS[t.tm_mon],
            t.tm_year,
            t.tm_hour,
            t.tm_min,
            t.tm_sec,
        )
        if len(_HTTP_DATES) >= _HTTP_DATES_MAX:
            _HTTP_DATES.clear()
        _HTTP_DATES[seconds] = found
    return found


class Validators(NamedTuple):
    """What a client may hold about a file version to ask "has it changed?"."""

    etag: bytes | None
    last_modified: bytes
    mtime: int  # whole seconds, the precision of Last-Modified


class Preconditions(NamedTuple):
    """The request's conditional headers (one pass over the headers collects them)."""

    if_none_match: bytes | None
    if_modified_since: bytes | None


NO_PRECONDITIONS = Preconditions(None, None)


def preconditions(headers: Headers) -> Preconditions:
    """Collect the conditional request headers (first value of each)."""
    none_match = modified_since = None
    for name, value in headers:
        # Plain comparisons: bytes of another length differ at the length check,
        # which measured faster than any prefix test to skip the rest.
        if name == b"if-none-match":
            if none_match is None:
                none_match = value
        elif name == b"if-modified-since" and modified_since is None:
            modified_since = value
    if none_match is None and modified_since is None:
        return NO_PRECONDITIONS
    return Preconditions(none_match, modified_since)


def evaluate_preconditions(found: Preconditions, current: Validators) -> int:
    """The status the preconditions call for: 200 (send it) or 304 (RFC 9110 13.2.2).

    If-None-Match wins over If-Modified-Since when both are present.
    """
    if found.if_none_match is not None:
        return NOT_MODIFIED if etag_matches(found.if_none_match, current.etag) else OK
    since = found.if_modified_since
    if since is not None:
        if since == current.last_modified:
            return NOT_MODIFIED  # what browsers send back: skip parsing the date
        when = parse_http_date(since)
        if when is not None and current.mtime <= when:
            return NOT_MODIFIED
    return OK


def etag_matches(header: bytes, etag: bytes | None) -> bool:
    """Weak comparison of an ``If-None-Match`` list against ``etag``."""
    if header.strip() == b"*":
        return True
    if etag is None:
        return False
    if header == etag:
        return True
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP date (any of the three formats), or None."""
    parsed = parsedate_tz(value.decode("latin-1"))
    if parsed is None:
        return None
    offset = parsed[9] or 0
    return calendar.timegm((*parsed[:6], 0, 0, 0)) - offset


def _root_prefixes(app: Application) -> tuple[str, ...]:
    # The folders map_path joins URLs onto, with a trailing separator so a prefix
    # test cannot match "/srv/www-other" for "/srv/www".
    roots = (app.root, *(vdir.root for vdir in app.virtual_directories))
    prefixes = []
    for root in roots:
        root = os.path.normpath(os.path.abspath(root))
        prefixes.append(root if root.endswith(os.sep) else root + os.sep)
    return tuple(sorted(set(prefixes), key=len, reverse=True))


class StaticFile(Handler):
    """``handler.static``: regular files under the application's roots, GET and HEAD."""

    id = "handler.static"
    section = StaticContentSection
    verbs = frozenset({"GET", "HEAD"})

    def __init__(self) -> None:
        self._app: Application | None = None
        self._roots: tuple[str, ...] = ()

    def provision(self, app: Application) -> None:
        """Remember the application's root folders for the confinement check."""
        self._app = app
        self._roots = _root_prefixes(app)

    def execute(self, ctx: Context) -> None:
        """Answer with the file, a 304, or an IIS-style error (404.0, 403.14, 404.3)."""
        settings = ctx.section(StaticContentSection)
        path = ctx.physical_path
        try:
            if settings.allow_symlinks_outside_root:
                st = os.stat(path)
            else:
                path, st = self._confined_stat(ctx.app, path)
        except (FileNotFoundError, NotADirectoryError):
            ctx.error_response(404, 0, "the file does not exist")
            return
        except PermissionError:
            ctx.error_response(403, 0, "the file cannot be read")
            return
        except OSError:  # a name too long, a symlink loop: nothing to serve either
            ctx.error_response(404, 0, "the file does not exist")
            return
        mode = st.st_mode
        if not S_ISREG(mode):
            if S_ISDIR(mode):
                ctx.error_response(403, 14, "directory listing is denied")
            else:  # devices, fifos, sockets are never content
                ctx.error_response(404, 0, "the file does not exist")
            return

        name = path[path.rfind("/") + 1 :]
        if len(name) == _CONFIG_NAME_LEN and name.lower() == _CONFIG_NAME:
            # Per-directory configuration is never content, whatever request
            # filtering and the MIME map say (DESIGN: "web.toml is never served").
            ctx.error_response(404, 8, "configuration files are not served")
            return
        dot = name.rfind(".")
        content_type = settings.content_types.get(name[dot:].lower() if dot >= 0 else ".")
        if content_type is None:
            content_type = settings.default_content_type
            if content_type is None:
                ctx.error_response(404, 3, "no MIME type is mapped for this file extension")
                return

        size = st.st_size
        mtime = int(st.st_mtime)
        etag = b'"%x-%x"' % (st.st_mtime_ns, size) if settings.set_etag else None
        last_modified = http_date(mtime)
        response = ctx.response
        headers = response.headers
        found = preconditions(ctx.request.headers)
        if (
            found is not NO_PRECONDITIONS
            and evaluate_preconditions(found, Validators(etag, last_modified, mtime))
            == NOT_MODIFIED
        ):
            response.status = NOT_MODIFIED
            if etag is not None:
                headers.append((b"etag", etag))
            headers.append((b"last-modified", last_modified))
            return
        headers.append((b"content-type", content_type))
        # The protocol layer frames by FileBody.length; the header keeps the
        # response self-describing for SEND_RESPONSE modules (it must agree).
        headers.append((b"content-length", b"%d" % size))
        headers.append((b"last-modified", last_modified))
        if etag is not None:
            headers.append((b"etag", etag))
        response.file = FileBody(path, 0, size)

    def _confined_stat(self, app: Application, path: str) -> tuple[str, os.stat_result]:
        """``(path to send, its stat)`` if the file's real path is inside ``app``.

        Raises ``FileNotFoundError`` for a missing file and for one outside the
        roots (a client must not learn which files exist out there).
        """
        if app is not self._app:  # not provisioned for this application (harness use)
            self.provision(app)
        st = self._walk(path)
        if st is not None:
            return path, st
        real = os.path.realpath(path)
        if not app.contains(real):
            raise FileNotFoundError(path)
        st = os.stat(real)
        if path.endswith("/") and not S_ISDIR(st.st_mode):
            raise NotADirectoryError(path)
        return real, st

    def _walk(self, path: str) -> os.stat_result | None:
        """The stat of ``path`` if no component below its root is a symlink.

        None when the walk cannot vouch for the path (a symlink, a path outside
        the roots, an odd segment): the caller then resolves it fully.
        """
        for root in self._roots:
            if path.startswith(root):
                break
        else:
            return None
        rel = path[len(root) :]
        wants_dir = rel.endswith("/")
        if wants_dir:
            rel = rel[:-1]
        current = root[:-1]  # "" for the root "/": components are appended with "/"
        st = None
        if rel:
            for part in rel.split("/"):
                if part in ("", ".", ".."):
                    return None  # not what map_path makes: let realpath judge
                current = f"{current}/{part}"
                st = os.lstat(current)
                if S_ISLNK(st.st_mode):
                    return None
        if st is None:  # the root itself
            return os.stat(root)
        if wants_dir and not S_ISDIR(st.st_mode):
            raise NotADirectoryError(path)  # "file.txt/" names no file
        return st
