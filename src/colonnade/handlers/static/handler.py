"""The static file handler (IIS StaticFileModule): serve ``ctx.physical_path``.

How this works, per request:

1. *The cache first.* A file up to ``cache_max_file_size`` bytes that was served
   before is in the :class:`~colonnade.handlers.static.cache.FileCache` under
   its physical path, with the header lists of its answers prepared. A hit that
   is younger than ``cache_check_interval`` and carries no conditional or range
   header is answered with a copy of that list and the bytes in memory: no
   system call, no formatting. Everything else takes the steps below, and an
   entry past its interval is looked up again in full (step 2) before use.
2. *Find the file, confined to the application's roots.* The physical path was
   mapped from the URL under one of the application's root folders; the handler
   calls ``lstat`` on each path component below that root. If none is a symlink
   the real path is the root's real path plus the same components, so it is
   inside the root and the last ``lstat`` is the file's ``stat`` — one syscall
   per component, where ``os.path.realpath`` would cost several times that. Only
   when a symlink (or anything unusual) shows up does it fall back to
   ``os.path.realpath`` and :meth:`~colonnade.core.app.Application.contains`.
   A cached entry is only ever created, and only ever trusted again, after this
   same walk, so the cache cannot serve what the walk would refuse.
3. *Type it* from the extension with the section's MIME table (404.3 if unmapped
   and no ``default_mime_type``, as IIS); ``web.toml`` is never served.
4. *Describe it* (:class:`~colonnade.handlers.static.cache.Representation`):
   ``Last-Modified``, a strong ``ETag`` from the modification time (ns) and
   size, ``Cache-Control``/``Expires`` from the client-cache settings; small files
   are read into memory and cached. A larger file's description is cached too,
   without its bytes and never trusted without step 2: each request still stats
   the file, and describes it again only when its identity changed (~14k
   instructions of a 10 MiB response were this step, every time).
5. *Preconditions and ranges*, decided by :func:`colonnade.core.conditional.decide`
   (the API every handler has): 304, 412, 416, a 206 of one range, or a
   ``multipart/byteranges`` 206 of several (:mod:`colonnade.core.ranges`).
6. *Body:* bytes in memory, or ``ctx.response.file`` naming the byte range, which
   the transport sends with ``sendfile`` (and not at all for HEAD). A multipart
   body of a large file streams part by part with its length declared up front,
   so every big part still goes out zero-copy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable
from stat import S_ISDIR, S_ISREG

from colonnade.config.sections import WEB_TOML
from colonnade.core.app import Application
from colonnade.core.conditional import (
    FIELDS,
    NOT_MODIFIED,
    OK,
    PRECONDITION_FAILED,
    RANGE_NOT_SATISFIABLE,
    Validators,
    decide,
    precondition_failed,
    range_not_satisfiable,
)
from colonnade.core.confine import lstat_inside
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.httputil import http_date
from colonnade.core.ranges import Multipart, Span, content_range, multipart
from colonnade.core.request import Headers
from colonnade.core.response import FileBody, Response
from colonnade.core.urlpath import quote
from colonnade.handlers.static.cache import (
    ENTRY_OVERHEAD,
    RACY_NS,
    FileCache,
    Representation,
    identity,
    read_exactly,
)
from colonnade.handlers.static.config import StaticContentSection

#: A multipart body of an uncached file up to this size is read into memory and
#: sent in one write; a larger one streams part by part.
_MULTIPART_IN_MEMORY = 64 * 1024

_ACCEPT_RANGES = (b"accept-ranges", b"bytes")
_NS = 1_000_000_000

_CONFIG_NAME_LEN = len(WEB_TOML)

_monotonic = time.monotonic
#: What to change for a 403.14 (a folder without a default document or listing).
_NO_LISTING = (
    "this folder has no default document and directory listing is off here: list it "
    "with directory_browse.enabled = true (module static.directory_listing), or add a "
    "file named in default_document.files"
)


#: Characters left as they are when the canonical path is re-encoded for Location.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def redirect_to_folder(ctx: Context) -> None:
    """Answer 301 to the folder URL with its trailing slash, keeping the query."""
    # The canonical path, re-encoded, not the raw one: a raw "//host" or "/\\host"
    # would make the Location an open redirect to another host.
    location = quote(ctx.request.path, safe=_PATH_SAFE).encode("ascii") + b"/"
    query = ctx.request.query
    if query:
        location += b"?" + query
    response = ctx.response
    response.clear()
    response.status = 301
    response.headers.append((b"location", location))
    response.headers.append((b"content-type", b"text/html; charset=utf-8"))
    response.body = b'<!DOCTYPE html><html><body><a href="%s">Moved</a></body></html>\n' % (
        location.replace(b"&", b"&amp;").replace(b'"', b"&quot;")
    )


class StaticFile(Handler):
    """``handler.static``: regular files under the application's roots, GET and HEAD.

    A folder URL without its trailing slash is redirected to it (IIS does this in
    the default document module, nginx in its static module; here the handler
    that already looked at the path does it, so no other module stats every URL).
    """

    id = "handler.static"
    section = StaticContentSection
    verbs = frozenset({"GET", "HEAD"})
    serves_files = True
    uses_session = False

    def __init__(self) -> None:
        self._app: Application | None = None
        self.cache = FileCache(0)
        self._entries = self.cache.entries

    def provision(self, app: Application) -> None:
        """Remember the application's roots; size the file cache from its settings."""
        self._app = app
        self.cache = FileCache(app.section(StaticContentSection).cache_max_bytes)
        self._entries = self.cache.entries

    def cleanup(self) -> None:
        """Release the cached files."""
        self.cache.clear()

    def execute(self, ctx: Context) -> Awaitable[None] | None:
        """Answer with the file (or part of it), a 304/412/416, or an IIS-style
        error (404.0, 403.14, 404.3, 404.8)."""
        settings = ctx.section(StaticContentSection)
        path = ctx.physical_path
        rep = self._entries.get(path)
        if rep is not None and rep.settings is settings and _monotonic() < rep.fresh_until:
            # The hit path: prepared headers, bytes in memory, nothing to decide.
            request = ctx.request
            body = rep.body
            method = request.method
            if (
                (method == "GET" or method == "HEAD")
                and body is not None
                and rep.expires_delta is None
            ):
                for name, _ in request.headers:
                    if name in FIELDS:
                        break
                else:
                    response = ctx.response
                    response.headers = rep.headers.copy()
                    response.body = body
                    response.source = rep.source
                    return None
        else:
            rep = self._lookup(ctx, settings, path, rep)
            if rep is None:
                return None
        return self._respond(ctx, rep)

    # -- finding and describing the file ------------------------------------------------

    def _lookup(
        self,
        ctx: Context,
        settings: StaticContentSection,
        path: str,
        old: Representation | None,
    ) -> Representation | None:
        """The representation of the file at ``path`` (cached when small), or None
        after answering with an error. ``old`` is the cache's entry for ``path``."""
        found = self._find(ctx, settings, path)
        if found is None:
            if old is not None:
                self.cache.drop(path)
            return None
        real, st, content_type = found
        ident = identity(st)
        now = _monotonic()
        if (
            old is not None
            and old.identity == ident
            and old.settings is settings
            and old.path == real
            and not old.racy
        ):
            if old.body is not None:
                old.fresh_until = now + settings.cache_check_interval
            self.cache.touch(old)
            return old
        rep = describe(path, real, st, settings, content_type)
        limit = settings.cache_max_file_size
        if limit and self.cache.max_bytes:
            if rep.size <= limit:
                body = read_exactly(real, ident)
                if body is not None:
                    rep.body = body
                    rep.cost = len(body) + len(path) + len(real) + ENTRY_OVERHEAD
                    changed = max(st.st_mtime_ns, st.st_ctime_ns)
                    rep.racy = time.time_ns() - changed < RACY_NS
                    rep.fresh_until = now + settings.cache_check_interval
                    if self.cache.put(rep):
                        return rep
            elif rep.validators.mtime == st.st_mtime_ns // _NS:
                # A large file: its description only (no bytes), kept so that the
                # next request's lookup, which still walks and stats the file every
                # time (fresh_until stays 0), finds the same version described
                # already and skips describe(). Its headers follow from the stat
                # alone, so a version in the same timestamp tick is described the
                # same (not racy). Not when the file is stamped in the future: its
                # Last-Modified is "now", which moves.
                rep.cost = len(path) + len(real) + ENTRY_OVERHEAD
                if self.cache.put(rep):
                    return rep
        if old is not None:
            self.cache.drop(path)
        return rep

    def _find(
        self, ctx: Context, settings: StaticContentSection, path: str
    ) -> tuple[str, os.stat_result, bytes] | None:
        """``(path to send, its stat, its Content-Type)``, or None after answering
        with an error."""
        try:
            if settings.allow_symlinks_outside_root:
                real, st = path, os.stat(path)
            else:
                real, st = self._confined_stat(ctx.app, path)
        except (FileNotFoundError, NotADirectoryError):
            ctx.error_response(404, 0, "the file does not exist")
            return None
        except PermissionError:
            ctx.error_response(403, 0, "the file cannot be read")
            return None
        except OSError:  # a name too long, a symlink loop: nothing to serve either
            ctx.error_response(404, 0, "the file does not exist")
            return None
        mode = st.st_mode
        if not S_ISREG(mode):
            if S_ISDIR(mode):
                if not ctx.request.path.endswith("/"):
                    redirect_to_folder(ctx)  # /dir -> /dir/, as nginx and IIS do
                else:
                    ctx.error_response(403, 14, "directory listing is denied", _NO_LISTING)
            else:  # devices, fifos, sockets are never content
                ctx.error_response(404, 0, "the file does not exist")
            return None
        name = path[path.rfind("/") + 1 :]
        if _is_config(name) or (real is not path and _is_config(real[real.rfind("/") + 1 :])):
            # Per-directory configuration is never content, whatever request
            # filtering and the MIME map say (DESIGN: "web.toml is never served"),
            # not even through a symlink with another name.
            ctx.error_response(404, 8, "configuration files are not served")
            return None
        # The type follows the name the client asked for, not a symlink's target.
        dot = name.rfind(".")
        content_type = settings.content_types.get(name[dot:].lower() if dot >= 0 else ".")
        if content_type is None:
            content_type = settings.default_content_type
            if content_type is None:
                ctx.error_response(
                    404,
                    3,
                    "no MIME type is mapped for this file extension",
                    f"no MIME type is mapped for the extension "
                    f"{name[dot:].lower() if dot >= 0 else '.'!r}: add it to "
                    "static_content.mime_map (or set static_content.default_mime_type)",
                )
                return None
        return real, st, content_type

    # -- answering ----------------------------------------------------------------------

    def _respond(self, ctx: Context, rep: Representation) -> Awaitable[None] | None:
        """The full decision: preconditions, ranges, then the whole file."""
        request = ctx.request
        method = request.method
        response = ctx.response
        decision = decide(request, rep.validators, rep.size, max_ranges=rep.settings.max_ranges)
        status = decision.status
        if status != OK:
            if status == NOT_MODIFIED:
                response.status = NOT_MODIFIED
                response.headers = rep.validator_headers.copy()
                _add_expires(response, rep)
                return None
            if status == PRECONDITION_FAILED:
                precondition_failed(ctx)
                return None
            if status == RANGE_NOT_SATISFIABLE:
                range_not_satisfiable(ctx, rep.size)
                return None
            return self._partial(ctx, rep, decision.spans)
        response.headers = rep.headers.copy()
        _add_expires(response, rep)
        body = rep.body
        if body is not None and (method == "GET" or method == "HEAD"):
            # HEAD too (the transport sends no body for it): its head is then the
            # GET's, compressed variant and validators included.
            response.body = body
            response.source = rep.source
        else:
            response.file = rep.source  # the whole file: FileBody(rep.path, 0, rep.size)
        return None

    def _partial(
        self, ctx: Context, rep: Representation, spans: tuple[Span, ...]
    ) -> Awaitable[None] | None:
        """A 206 of ``spans`` (one range, or multipart)."""
        response = ctx.response
        size = rep.size
        response.status = 206
        headers = rep.validator_headers.copy()
        headers.append(_ACCEPT_RANGES)  # as on the 200: the file still takes ranges
        response.headers = headers
        body = rep.body
        if len(spans) == 1:
            start, stop = span = spans[0]
            headers += (
                (b"content-type", rep.content_type),
                (b"content-length", b"%d" % (stop - start)),
                (b"content-range", content_range(span, size)),
            )
            _add_expires(response, rep)
            if body is not None:
                response.body = body[start:stop]
            else:
                response.file = FileBody(rep.path, start, stop - start)
            return None
        parts = multipart(spans, size, rep.content_type)
        headers += (
            (b"content-type", parts.content_type),
            (b"content-length", b"%d" % parts.length),
        )
        _add_expires(response, rep)
        if body is not None:
            response.body = parts.join(body)
            return None
        if parts.length <= _MULTIPART_IN_MEMORY:
            response.body = _read_parts(rep.path, parts)
            return None
        return _stream_parts(ctx, rep.path, parts)

    def _confined_stat(self, app: Application, path: str) -> tuple[str, os.stat_result]:
        """``(path to send, its stat)`` if the file's real path is inside ``app``.

        Raises ``FileNotFoundError`` for a missing file and for one outside the
        roots (a client must not learn which files exist out there).
        """
        if app is not self._app:  # not provisioned for this application (harness use)
            self.provision(app)
        # The walk itself, not Application.lstat_inside: app.py is not compiled, and
        # its wrapper cost a call into the interpreter per request (~800 instructions).
        st = lstat_inside(app.root_prefixes, path)
        if st is not None:
            return path, st
        real = os.path.realpath(path)
        if not app.contains(real):
            raise FileNotFoundError(path)
        st = os.stat(real)
        if path.endswith("/") and not S_ISDIR(st.st_mode):
            raise NotADirectoryError(path)
        return real, st


def describe(
    key: str,
    path: str,
    st: os.stat_result,
    settings: StaticContentSection,
    content_type: bytes,
) -> Representation:
    """The representation of the file ``path`` (found under ``key``) as ``st`` shows it."""
    size = st.st_size
    mtime = st.st_mtime_ns // _NS
    # Never a Last-Modified in the future (RFC 9110 8.8.2.1): a file stamped ahead
    # of the clock gets "now" (and stays racy, so it is looked at again).
    now = int(time.time())
    mtime = min(mtime, now)
    etag = b'"%x-%x"' % (st.st_mtime_ns, size) if settings.set_etag else None
    last_modified = http_date(mtime)
    validator_headers: Headers = [(b"last-modified", last_modified)]
    if etag is not None:
        validator_headers.append((b"etag", etag))
    cache_control = settings.cache_control_value
    if cache_control is not None:
        validator_headers.append((b"cache-control", cache_control))
    expires = settings.fixed_expires
    if expires is not None:
        validator_headers.append((b"expires", expires))
    headers: Headers = [
        (b"content-type", content_type),
        # The protocol layer frames by the body's length; the header keeps the
        # response self-describing for SEND_RESPONSE modules (it must agree).
        (b"content-length", b"%d" % size),
        *validator_headers,
    ]
    if settings.max_ranges:
        headers.append(_ACCEPT_RANGES)
    return Representation(
        key=key,
        path=path,
        ident=identity(st),
        settings=settings,
        content_type=content_type,
        validators=Validators(etag, last_modified, mtime),
        validator_headers=validator_headers,
        headers=headers,
    )


def _is_config(name: str) -> bool:
    return len(name) == _CONFIG_NAME_LEN and name.lower() == WEB_TOML


def _add_expires(response: Response, rep: Representation) -> None:
    # ``max-age`` with ``send_expires``: Expires moves with the clock.
    delta = rep.expires_delta
    if delta is not None:
        response.headers.append((b"expires", http_date(int(time.time()) + delta)))


def _read_parts(path: str, parts: Multipart) -> bytes:
    """A small multipart body, its parts read from ``path``."""
    out: list[bytes] = []
    with open(path, "rb") as f:
        fd = f.fileno()
        for part in parts.parts:
            count = part.stop - part.start
            data = os.pread(fd, count, part.start)
            if len(data) != count:
                raise OSError(f"{path}: the file shrank while it was being read")
            out.append(part.head)
            out.append(data)
    out.append(parts.tail)
    return b"".join(out)


async def _stream_parts(ctx: Context, path: str, parts: Multipart) -> None:
    """Send a large multipart body: each part's head, then its bytes from the file.

    The length was declared, so the writer sends big parts with zero-copy
    ``sendfile`` and small ones with one read and write.
    """
    await ctx.start_response()
    writer = ctx.writer
    for part in parts.parts:
        await ctx.write(part.head)
        await writer.sendfile(path, part.start, part.stop - part.start)
    await ctx.write(parts.tail)
