"""``[compression]``: which responses are compressed, with which codings and levels
(IIS ``httpCompression`` and ``urlCompression``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section, Where

#: The content codings this module can produce, in its default preference order.
CodingName = Literal["br", "zstd", "gzip"]

#: ``type/subtype`` where either part may be ``*``, or a structured-syntax suffix
#: pattern such as ``application/*+json`` (RFC 6838 4.2.8).
MimePattern = Annotated[
    str,
    Meta(
        pattern=r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)/([!#$%&'*+.^_`|~0-9A-Za-z-]+)$",
        max_length=255,
        description="a media type pattern such as 'text/*' or 'application/json'",
    ),
]

#: Level ranges per coding. zstd stops at 19: above it the window exceeds the
#: 8 MiB that HTTP decoders are required to handle (RFC 9659 section 3).
LEVEL_RANGES: dict[str, tuple[int, int]] = {"br": (0, 11), "zstd": (1, 19), "gzip": (1, 9)}

#: Defaults for files: compressed once, kept in the cache, so the densest setting wins.
STATIC_LEVELS: dict[str, int] = {"br": 11, "zstd": 19, "gzip": 9}
#: Defaults for application output: compressed on every request, so speed wins.
#: These three cost about the same CPU (roughly 40-80 MB/s of text per core).
DYNAMIC_LEVELS: dict[str, int] = {"br": 4, "zstd": 3, "gzip": 5}

#: IIS ``staticTypes``/``dynamicTypes`` plus the text formats the web uses today.
DEFAULT_MIME_TYPES: tuple[str, ...] = (
    "text/*",
    "message/*",
    "application/json",
    "application/*+json",
    "application/x-ndjson",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/*+xml",
    "application/yaml",
    "application/wasm",
    "application/rtf",
    "application/vnd.ms-fontobject",
    "image/svg+xml",
    "image/x-icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
)

_MiB = 1024 * 1024


def _default_mime_types() -> list[str]:
    return list(DEFAULT_MIME_TYPES)


def _default_codings() -> list[CodingName]:
    return ["br", "zstd", "gzip"]


def _check_levels(name: str, levels: dict[str, int]) -> None:
    for coding, level in levels.items():
        bounds = LEVEL_RANGES.get(coding)
        if bounds is None:
            raise ValueError(f"{name}: unknown coding {coding!r} (br, zstd or gzip)")
        low, high = bounds
        if not low <= level <= high:
            raise ValueError(f"{name}.{coding}: level {level} is outside {low}..{high}")


class CompressionSection(Section, frozen=True):
    """Response compression (IIS ``httpCompression`` + ``urlCompression``).

    The coding is negotiated from the request's ``Accept-Encoding`` (RFC 9110
    12.5.3): the client's q-values decide, ties go to the order of ``codings``.
    Responses that could be compressed carry ``Vary: Accept-Encoding`` whether or
    not this client got a compressed one; compressed ones get ``Content-Encoding``,
    their own ``Content-Length`` and an ``ETag`` with the coding appended
    (``"abc-br"``), weak when the bytes depend on how the application streamed.
    A compressed response is always sent whole and carries no ``Accept-Ranges``
    (as nginx's gzip): a ``Range`` request is answered from the file itself
    (206, uncompressed), which says ``Accept-Ranges: bytes``.

    Static files use a precompressed sibling (``app.css.br``, ``.zst``, ``.gz``)
    when there is one; else they are compressed once at the static level, in a
    background thread, and kept in memory (until that copy is ready they are
    compressed at the dynamic level). Application output is compressed at the
    dynamic level: a streamed body chunk by chunk, each chunk flushed so the
    client can decode it at once.

    HEAD gets the headers GET would get (for application output: when the
    application produces the body for HEAD too, as WSGI frameworks do). Not
    compressed: 1xx, 204, 206, 304 and ``Content-Range`` answers; bodies that
    already have a ``Content-Encoding`` or say ``Cache-Control: no-transform``;
    types outside ``mime_types``; bodies under ``min_size``; by default, Range
    and HTTP/1.0 requests. A client that accepts none of the offered codings, or
    even refuses ``identity``, gets the plain body (RFC 9110 allows this rather
    than a 406).
    """

    key = "compression"
    allowed_keys = {"cache_max_bytes": Where.SERVER | Where.APPLICATION}

    static: bool = True
    """Compress static files (IIS ``doStaticCompression``). On by default, as in a
    default IIS install: a file is compressed once and the copy served from memory."""

    dynamic: bool = False
    """Compress application output (IIS ``doDynamicCompression``). Off by default,
    as in a default IIS install (its dynamic compression module is not installed):
    it costs CPU on every response, and an application may compress its own."""

    codings: list[CodingName] = msgspec.field(default_factory=_default_codings)
    """The codings offered, in the server's order of preference: it breaks ties
    between codings the client rates equally. An empty list turns compression off."""

    mime_types: list[MimePattern] = msgspec.field(default_factory=_default_mime_types)
    """Media types worth compressing, matched without parameters: exact
    (`application/json`), any subtype (`text/*`) or a structured suffix
    (`application/*+json`). Already-compressed formats (images, video, archives,
    WOFF fonts) gain nothing and are left out."""

    min_size: Annotated[int, Meta(ge=0)] = 256
    """Bodies smaller than this many bytes are sent as they are. Text of 256 bytes
    still shrinks by about half with brotli or zstd, and at the dynamic levels it
    costs microseconds; below it the coding's own framing eats most of the gain.
    IIS's 2700 was chosen to save whole packets and leaves most JSON API answers
    uncompressed. A streamed body of unknown length is always compressed."""

    static_levels: dict[str, int] = msgspec.field(default_factory=lambda: dict(STATIC_LEVELS))
    """Levels for static files per coding (br 0-11, zstd 1-19, gzip 1-9); a coding
    left out keeps its default. The work is done once per file version, so the
    defaults are the densest (brotli 11 runs at about 1 MB/s)."""

    dynamic_levels: dict[str, int] = msgspec.field(default_factory=lambda: dict(DYNAMIC_LEVELS))
    """Levels for application output per coding (same ranges); paid on every
    response, so the defaults are fast ones."""

    precompressed: bool = True
    """Serve `name.br` / `name.zst` / `name.gz` beside a static file instead of
    compressing it, when that sibling is a regular file (not a symlink) at least
    as new as the original. The sibling is sent with sendfile, with the original's
    Content-Type."""

    static_max_size: Annotated[int, Meta(ge=0)] = 4 * _MiB
    """Largest static file compressed here; bigger ones go out as they are, with
    sendfile, unless a precompressed sibling exists (compressing them on every
    request would cost more than it saves; caching them, too much memory). The
    cached copy costs one background thread about 1 s per MB at brotli 11; 0
    leaves static files to precompressed siblings alone."""

    cache_max_bytes: Annotated[int, Meta(ge=0)] = 64 * _MiB
    """Memory for compressed static files, per application and worker; the least
    recently used are dropped first. An entry belongs to one file version (path,
    coding, modification time in ns and size; for a file the static handler sent
    from memory, its ETag and size), so a changed file is compressed again and
    its old copy dropped. Read once per application: set it in the server file or
    for the application (its root `web.toml`, a location at its path)."""

    no_compression_for_range: bool = True
    """Send requests that carry `Range` uncompressed, so byte ranges address the
    file itself (IIS `noCompressionForRange`)."""

    no_compression_for_http10: bool = True
    """Send HTTP/1.0 requests uncompressed: old proxies cache one variant for
    every client, whatever `Vary` says (IIS `noCompressionForHttp10`)."""

    def __post_init__(self) -> None:
        for pattern in self.mime_types:
            kind, _, sub = pattern.partition("/")
            if "*" in kind and (kind != "*" or sub != "*"):
                raise ValueError(f"mime_types: {pattern!r}: a wildcard type needs `*/*`")
            if "*" in sub and sub != "*" and not (sub.startswith("*+") and "*" not in sub[1:]):
                raise ValueError(
                    f"mime_types: {pattern!r}: the subtype may be `*` or `*+suffix` only"
                )
        if len(set(self.codings)) != len(self.codings):
            raise ValueError("codings: a coding is listed twice")
        _check_levels("static_levels", self.static_levels)
        _check_levels("dynamic_levels", self.dynamic_levels)
