"""Response compression (IIS StaticCompressionModule + DynamicCompressionModule).

How this works:

- *One hook, SEND_RESPONSE, priority HIGH.* SEND_RESPONSE runs in reverse
  priority order, so this hook runs after every MEDIUM, LOW and LAST hook
  (custom headers, stamps: the response is all but final) and before the FIRST
  ones, where the custom-error module replaces error bodies. Compression of
  application output is applied later still, by the writer adapter, to whatever
  those hooks left (see ``writer.py``): a replaced error page is compressed if
  it qualifies and passed through if it does not.
- *Decide cheaply.* A body of known size under ``min_size`` (the common small
  file) is decided before any header is read. Otherwise one pass over the
  response headers (type, existing coding, ``no-transform``, ETag, Vary), then
  one over the request's (Accept-Encoding, Range, If-None-Match). Settings are
  compiled once per section object into a :class:`Policy`; Accept-Encoding
  answers and type verdicts are cached per header value. A response that will
  not be compressed costs these checks and, if it could have been compressed
  for another client, one appended Vary header (merged into the response's own
  ``Vary`` field if it has one: ``Response.add_vary``): nothing else is
  allocated for it.
- *Static files* (a ``response.file``, or a body served from memory with its
  ``response.source``): a precompressed sibling is swapped in (still sendfile);
  else the cached static-level copy becomes the body (exact Content-Length, strong ETag);
  else this response is compressed at the dynamic level (weak ETag) while the
  cache has the static-level copy made in the background.
- *Application output*: a :class:`~colonnade.modules.compression.writer.
  CompressingWriter` replaces ``ctx.writer`` for this request. ``Context``
  calls ``ctx.writer`` after the SEND_RESPONSE hooks, so a buffered body is
  compressed in ``send_all`` and a streamed one in ``start``/``write``/``end``.
- *Validators.* A compressed variant's ETag gets the coding appended (``"x-br"``),
  so caches never take one variant for another; a client revalidating with that
  tag gets its 304 from here, since the handler only knows the original's tag.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from stat import S_ISREG

from colonnade.core.app import Application
from colonnade.core.compiled import PerSection
from colonnade.core.context import Context
from colonnade.core.httputil import has_token
from colonnade.core.module import Module, Priority, hook
from colonnade.core.response import FileBody, Response
from colonnade.core.stages import Stage
from colonnade.modules.compression import codings as coding_lib
from colonnade.modules.compression.cache import Key, StaticCache
from colonnade.modules.compression.codings import Coding
from colonnade.modules.compression.config import (
    DYNAMIC_LEVELS,
    STATIC_LEVELS,
    CompressionSection,
)
from colonnade.modules.compression.fast import send_response_hook
from colonnade.modules.compression.negotiate import Negotiator
from colonnade.modules.compression.variant import (
    ACCEPT_ENCODING,
    VARY,
    MediaTypes,
    encoded_headers,
    not_modified,
    variant_etag,
)
from colonnade.modules.compression.writer import CompressingWriter

log = logging.getLogger("colonnade.compression")

_MISSING_REPORTED: set[str] = set()


class Policy:
    """One effective ``[compression]`` section, compiled for the per-request checks."""

    __slots__ = (
        "codings",
        "dynamic",
        "dynamic_levels",
        "min_size",
        "negotiator",
        "no_http10",
        "no_range",
        "precompressed",
        "static",
        "static_levels",
        "static_max_size",
        "types",
    )

    def __init__(
        self, section: CompressionSection, negotiators: dict[tuple[str, ...], Negotiator]
    ) -> None:
        found: dict[str, Coding] = {}
        for name in section.codings:
            coding = coding_lib.load(name)
            if coding is None:
                if name not in _MISSING_REPORTED:
                    _MISSING_REPORTED.add(name)
                    log.warning(
                        "content coding %r is configured but its library is not installed"
                        " (brotli or brotlicffi for br, zstandard for zstd); not offered",
                        name,
                    )
                continue
            found[name] = coding
        offered = tuple(found)
        negotiator = negotiators.get(offered)
        if negotiator is None:
            negotiator = negotiators[offered] = Negotiator(offered)
        self.codings = found
        self.negotiator = negotiator
        # Nothing to offer turns both kinds off: the hook then returns at once.
        self.static = section.static and bool(offered)
        self.dynamic = section.dynamic and bool(offered)
        self.types = MediaTypes(section.mime_types)
        self.min_size = section.min_size
        self.static_levels = {**STATIC_LEVELS, **section.static_levels}
        self.dynamic_levels = {**DYNAMIC_LEVELS, **section.dynamic_levels}
        self.precompressed = section.precompressed
        self.static_max_size = section.static_max_size
        self.no_range = section.no_compression_for_range
        self.no_http10 = section.no_compression_for_http10


class Compression(Module):
    """``http.compression``: gzip, brotli and zstd for static files and application output."""

    id = "http.compression"
    section = CompressionSection

    def __init__(self) -> None:
        self._negotiators: dict[tuple[str, ...], Negotiator] = {}
        self._policies: PerSection[CompressionSection, Policy] = PerSection(
            lambda section: Policy(section, self._negotiators)
        )
        self.cache = StaticCache(CompressionSection().cache_max_bytes)
        # The hook as the plan calls it (fast.py, compiled): application output
        # where only static files are compressed is decided there in one test, the
        # other responses come to the method.
        self.__dict__["send_response"] = send_response_hook(
            self._policies.get, Compression.send_response.__get__(self)
        )

    def provision(self, app: Application) -> None:
        """Size the static cache from the application's settings; load the codings."""
        section = app.section(CompressionSection)
        self.cache.close()
        self.cache = StaticCache(section.cache_max_bytes)
        self.policy(section)  # a missing library is reported at start, not mid-traffic

    def cleanup(self) -> None:
        """Free the cached copies and stop the compression worker."""
        self.cache.close()
        self._policies.clear()

    def policy(self, section: CompressionSection) -> Policy:
        """The compiled form of ``section`` (compiled once per section object)."""
        return self._policies.get(section)

    @hook(Stage.SEND_RESPONSE, priority=Priority.HIGH)
    def send_response(self, ctx: Context) -> None:
        """Decide, for the response about to go out, whether and how to compress it."""
        sections = ctx.sections
        section = sections.decoded.get(CompressionSection) or sections.get(CompressionSection)
        policies = self._policies
        policy = section.__dict__.get(policies.key) or policies.get(section)
        response = ctx.response
        status = response.status
        if status != 200:
            if status == 304:
                # The 200 it stands for would have varied (RFC 9110 15.4.5); a 304
                # names no type to check, so it says so whenever compression is on.
                if policy.static or policy.dynamic:
                    response.add_vary(ACCEPT_ENCODING)
                return
            if status < 200 or status == 204 or status == 206:
                return
        file = response.file
        size: int | None
        if file is not None:
            static = True
            size = file.length
        else:
            body = response.body
            # A file served from memory says which file it is (Response.source).
            static = bool(body) and response.source is not None
            size = len(body) or None  # None: streamed, or not known yet
        if not (policy.static if static else policy.dynamic):
            return
        if size is not None and size < policy.min_size:
            # Too small whatever the headers say, and no Vary for it either: the
            # common small file decides here, without the header walk below.
            return

        content_type = etag = declared = None
        varies = False  # the response has a Vary field already
        for name, value in response.headers:
            if name == b"content-type":
                if not policy.types.match(value):
                    # No need to read on: a binary file (the common case) stops here.
                    return
                content_type = value
            elif name == b"etag":
                etag = value
            elif name == b"content-length":
                declared = value
            elif name == b"vary":
                varies = True
            elif (
                name == b"content-encoding"
                or name == b"content-range"
                or (name == b"cache-control" and has_token(value, b"no-transform"))
            ):
                return  # already encoded, a part, or the sender forbids transforming
        if content_type is None:
            return
        if (
            size is None
            and declared is not None
            and declared.isdigit()
            and int(declared) < policy.min_size
        ):
            return  # a stream that declares a small length
        if varies:
            response.add_vary(ACCEPT_ENCODING)  # one Vary field, naming it once
        else:
            response.headers.append(VARY)

        request = ctx.request
        accept = ranged = if_none_match = None
        for name, value in request.headers:
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b"," + value
            elif name == b"range":
                ranged = value
            elif name == b"if-none-match":
                # A list sent on several lines is one list (RFC 9110 5.3).
                if_none_match = value if if_none_match is None else if_none_match + b", " + value
        if accept is None:
            return
        if (ranged is not None and policy.no_range) or (
            policy.no_http10 and request.version == "1.0"
        ):
            return
        accepted = policy.negotiator.choose(accept)
        if (trace := ctx.trace) is not None:
            trace.event("compression", coding=accepted[0] if accepted else None, static=static)
        if not accepted:
            return

        if static:
            self._static(ctx, policy, accepted, etag, if_none_match)
            return
        coding = policy.codings[accepted[0]]
        if (
            etag is not None
            and response.body
            and not_modified(response, if_none_match, variant_etag(etag, coding))
        ):
            return
        ctx.writer = CompressingWriter(
            ctx.writer, response, coding, policy.dynamic_levels[coding.name], policy.min_size
        )

    def _static(
        self,
        ctx: Context,
        policy: Policy,
        accepted: tuple[str, ...],
        etag: bytes | None,
        if_none_match: bytes | None,
    ) -> None:
        """A static file: a precompressed sibling, else the cached copy, else this
        response compressed on the fly while the copy is made in the background."""
        response = ctx.response
        file = response.file
        version: Hashable
        if file is not None:
            path = file.path
            length = file.length
            try:
                st = os.stat(path)
            except OSError:
                return  # gone since the handler looked: let the transport say so
            if file.offset != 0 or length != st.st_size:
                return  # a byte range (or a file that changed): sent as it is
            mtime_ns = st.st_mtime_ns
            version = (mtime_ns, length)
        else:
            origin = response.source
            path = origin.path if origin is not None else ctx.physical_path
            length = len(response.body)
            mtime_ns = -1  # looked up only if a sibling exists
            validator = etag if etag is not None else response.header(b"last-modified")
            version = (validator, length)
        fits = length <= policy.static_max_size
        for name in accepted:
            coding = policy.codings[name]
            if policy.precompressed and self._sibling(ctx, coding, etag, if_none_match, mtime_ns):
                return
            if fits:
                break
        else:
            return  # too big to compress here, and no sibling
        if _revalidated(response, coding, etag, if_none_match):
            return
        key = Key(path, coding.name)
        data = self.cache.get(key, version)
        if data is not None:
            response.headers = encoded_headers(response.headers, coding, length=len(data))
            response.body = data
            response.file = None
            return
        if ctx.request.method == "GET" and version[0] is not None:
            source = path if file is not None else response.body
            self.cache.schedule(key, version, source, coding, policy.static_levels[coding.name])
        # This once, at the dynamic level; the ETag is weak since the cached copy
        # that follows will be other bytes.
        ctx.writer = CompressingWriter(
            ctx.writer,
            response,
            coding,
            policy.dynamic_levels[coding.name],
            policy.min_size,
            weak=True,
        )

    @staticmethod
    def _sibling(
        ctx: Context,
        coding: Coding,
        etag: bytes | None,
        if_none_match: bytes | None,
        mtime_ns: int,
    ) -> bool:
        """Send ``file.br`` (etc.) beside the file if it is there and current."""
        response = ctx.response
        file = response.file
        path = file.path if file is not None else ctx.physical_path
        try:
            sib = os.lstat(path + coding.extension)
        except OSError:
            return False
        if not S_ISREG(sib.st_mode):
            return False  # a symlink could point anywhere; a directory is no file
        if mtime_ns < 0:
            try:
                mtime_ns = os.stat(path).st_mtime_ns
            except OSError:
                return False
        if sib.st_mtime_ns < mtime_ns:
            return False  # older than the file: a forgotten build product
        if not _revalidated(response, coding, etag, if_none_match):
            response.headers = encoded_headers(response.headers, coding, length=sib.st_size)
            response.file = FileBody(path + coding.extension, 0, sib.st_size)
            response.body = b""
        return True


def _revalidated(
    response: Response, coding: Coding, etag: bytes | None, if_none_match: bytes | None
) -> bool:
    if if_none_match is None or etag is None:
        return False
    return not_modified(response, if_none_match, variant_etag(etag, coding))
