"""``[static_content]``: how the static file handler types, validates, caches and
splits files (IIS ``staticContent`` and ``staticContent/clientCache``)."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from msgspec import Meta

from colonnade.config.sections import Section, Where
from colonnade.core.httputil import format_http_date, parse_http_date

#: ``.css``, or ``.`` for files without an extension (as IIS spells it).
Extension = Annotated[
    str,
    Meta(
        pattern=r"^\.[^/]*$",
        description="a file extension such as '.css' ('.' alone: files without one)",
    ),
]
#: ``type/subtype`` with optional parameters, printable ASCII (it becomes a header).
MimeType = Annotated[
    str,
    Meta(
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[\x20-\x7e]+$",
        description="a media type such as 'text/plain; charset=utf-8' (printable ASCII)",
    ),
]
#: Extra ``Cache-Control`` directives: printable ASCII, no CR/LF (it becomes a header).
Directives = Annotated[
    str,
    Meta(
        pattern=r"^[\x20-\x7e]*$",
        max_length=1024,
        description="Cache-Control directives in printable ASCII, on one line",
    ),
]
#: An HTTP date such as ``Sun, 06 Nov 1994 08:49:37 GMT``.
HttpDate = Annotated[
    str,
    Meta(
        pattern=r"^[\x20-\x7e]+$",
        max_length=64,
        description="an HTTP date such as 'Sun, 06 Nov 1994 08:49:37 GMT'",
    ),
]

CacheControlMode = Literal["none", "no-cache", "max-age", "expires"]

#: The largest delta-seconds a cache honours (RFC 9111 1.2.2).
_MAX_DELTA = 2**31 - 1

_UTF8 = "; charset=utf-8"

#: The built-in MIME map: the common web types. Text types carry ``charset=utf-8``
#: (IIS sends none and browsers then guess; nginx and Caddy name it too).
BUILTIN_MIME_TYPES: dict[str, str] = {
    # text and documents
    ".html": "text/html" + _UTF8,
    ".htm": "text/html" + _UTF8,
    ".xhtml": "application/xhtml+xml",
    ".css": "text/css" + _UTF8,
    ".js": "text/javascript" + _UTF8,
    ".mjs": "text/javascript" + _UTF8,
    ".cjs": "text/javascript" + _UTF8,
    ".json": "application/json",
    ".jsonld": "application/ld+json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain" + _UTF8,
    ".text": "text/plain" + _UTF8,
    ".log": "text/plain" + _UTF8,
    ".md": "text/markdown" + _UTF8,
    ".markdown": "text/markdown" + _UTF8,
    ".csv": "text/csv" + _UTF8,
    ".tsv": "text/tab-separated-values" + _UTF8,
    ".xml": "application/xml",
    ".xsl": "application/xml",
    ".xslt": "application/xslt+xml",
    ".dtd": "application/xml-dtd",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".ics": "text/calendar" + _UTF8,
    ".vcf": "text/vcard" + _UTF8,
    ".vtt": "text/vtt" + _UTF8,
    ".srt": "application/x-subrip",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".rtf": "application/rtf",
    ".pdf": "application/pdf",
    ".epub": "application/epub+zip",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ppt": "application/vnd.ms-powerpoint",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    # images
    ".png": "image/png",
    ".apng": "image/apng",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".jxl": "image/jxl",
    ".svg": "image/svg+xml",
    ".svgz": "image/svg+xml",
    ".ico": "image/x-icon",
    ".cur": "image/x-icon",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".psd": "image/vnd.adobe.photoshop",
    # fonts
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    # audio and video
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".opus": "audio/opus",
    ".wav": "audio/wav",
    ".weba": "audio/webm",
    ".flac": "audio/flac",
    ".mid": "audio/midi",
    ".midi": "audio/midi",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpeg",
    ".ogv": "video/ogg",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".mkv": "video/x-matroska",
    ".ts": "video/mp2t",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".3gp": "video/3gpp",
    # archives and binaries
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".7z": "application/x-7z-compressed",
    ".rar": "application/vnd.rar",
    ".tar": "application/x-tar",
    ".jar": "application/java-archive",
    ".wasm": "application/wasm",
    ".bin": "application/octet-stream",
    ".exe": "application/octet-stream",
    ".dll": "application/octet-stream",
    ".iso": "application/octet-stream",
    ".dmg": "application/octet-stream",
    ".deb": "application/vnd.debian.binary-package",
    ".rpm": "application/x-rpm",
    ".apk": "application/vnd.android.package-archive",
    ".msi": "application/x-msdownload",
    ".swf": "application/x-shockwave-flash",
}


class StaticContentSection(Section, frozen=True, dict=True):
    """Static file settings: types, validators, client caching, ranges, the file cache.

    As IIS ``staticContent`` (MIME map), ``staticContent/clientCache``
    (``cache_control``, ``max_age``, ``expires``, ``cache_control_custom``) and
    ``setEtag``. Every key may be set per URL (``[[locations]]``, ``web.toml``),
    except ``cache_max_bytes``: the application's whole budget, set at its level.
    """

    key = "static_content"
    allowed_keys = {"cache_max_bytes": Where.SERVER | Where.APPLICATION}

    mime_map: dict[Extension, MimeType] = {}
    """Extension → MIME type, added to (or overriding) the built-in table of common
    web types. ``.`` is the key for files without an extension."""
    default_mime_type: MimeType | None = None
    """The type of a file whose extension is not mapped. IIS has none and answers
    404.3 (so a stray ``.bak`` or ``.py`` beside the content is not served); set it
    (``application/octet-stream``) to serve every file."""
    allow_symlinks_outside_root: bool = False
    """By default a file is served only if its real path (symlinks resolved) lies
    under one of the application's roots (its folder and virtual directories); true
    serves symlink targets anywhere."""
    set_etag: bool = True
    """Send a strong ``ETag`` (from the modification time in nanoseconds and the
    size, so every node of a farm that copied the files with their times agrees), as
    IIS ``setEtag``. ``Last-Modified`` is always sent."""
    cache_control: CacheControlMode = "none"
    """Client caching, as IIS ``cacheControlMode``: ``"none"`` sends no
    ``Cache-Control`` of its own (NoControl), ``"no-cache"`` makes clients revalidate
    every time (DisableCache), ``"max-age"`` lets them keep the file ``max_age``
    seconds (UseMaxAge), ``"expires"`` sends ``Expires: <expires>`` (UseExpires)."""
    max_age: Annotated[int, Meta(ge=0, le=_MAX_DELTA)] = 86400
    """Seconds a client may keep the file with ``cache_control = "max-age"`` (IIS
    ``cacheControlMaxAge``, default one day)."""
    send_expires: bool = False
    """With ``cache_control = "max-age"``, also send ``Expires`` (the response time
    plus ``max_age``) for HTTP/1.0 caches."""
    expires: HttpDate | None = None
    """The fixed date sent as ``Expires`` with ``cache_control = "expires"`` (IIS
    ``httpExpires``), an HTTP date such as ``"Fri, 01 Jan 2027 00:00:00 GMT"``."""
    cache_control_custom: Directives = ""
    """Extra ``Cache-Control`` directives appended to what ``cache_control`` sends
    (``"public, immutable"``), as IIS ``cacheControlCustom``; sent on its own with
    ``cache_control = "none"``."""
    max_ranges: Annotated[int, Meta(ge=0, le=1024)] = 16
    """The most byte ranges one request may ask for; more and the ``Range`` header is
    ignored (a full 200, as nginx ``max_ranges``). 0 turns range requests off (no
    ``Accept-Ranges`` is sent)."""
    cache_max_file_size: Annotated[int, Meta(ge=0, le=16 * 1024 * 1024)] = 256 * 1024
    """Files up to this many bytes are kept in memory, with their response headers
    prepared, and answered without touching the disk (256 KiB, IIS's
    ``maxResponseSize``); larger ones go out with ``sendfile``. The response cache
    keeps only answers from memory, so this bounds what it can hold too. 0 turns
    the cache off here."""
    cache_max_bytes: Annotated[int, Meta(ge=0, le=1 << 40)] = 32 * 1024 * 1024
    """The memory the file cache of one application may hold (least recently used
    files go first); 0 turns the cache off. Set it in the server file or for the
    application (its root `web.toml`, or a location at its path): set below, it
    is an error."""
    cache_check_interval: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    """Seconds a cached file is trusted before it is checked again (one ``stat`` per
    path component: identity, size, modification and change times). A changed file
    is never served from the cache longer than this; 0 checks on every request."""

    def __post_init__(self) -> None:
        if self.expires is not None and parse_http_date(self.expires) is None:
            raise ValueError(f"expires: {self.expires!r} is not an HTTP date")
        if self.cache_control == "expires" and self.expires is None:
            raise ValueError('cache_control = "expires" needs an `expires` date')

    @cached_property
    def content_types(self) -> dict[str, bytes]:
        """Lower-case extension → ``Content-Type`` header value, built on first use."""
        table = dict(BUILTIN_MIME_TYPES)
        table.update((ext.lower(), mime) for ext, mime in self.mime_map.items())
        return {ext: mime.encode("latin-1") for ext, mime in table.items()}

    @cached_property
    def default_content_type(self) -> bytes | None:
        """``default_mime_type`` as a header value (None: unmapped files get 404.3)."""
        mime = self.default_mime_type
        return None if mime is None else mime.encode("latin-1")

    @cached_property
    def cache_control_value(self) -> bytes | None:
        """The ``Cache-Control`` header value these settings send (None: none)."""
        mode = self.cache_control
        parts = []
        if mode == "no-cache":
            parts.append("no-cache")
        elif mode == "max-age":
            parts.append(f"max-age={self.max_age}")
        custom = self.cache_control_custom.strip()
        if custom:
            parts.append(custom)
        return ", ".join(parts).encode("latin-1") if parts else None

    @cached_property
    def fixed_expires(self) -> bytes | None:
        """The ``Expires`` value of ``cache_control = "expires"``, normalised."""
        if self.cache_control != "expires" or self.expires is None:
            return None
        when = parse_http_date(self.expires)
        return None if when is None else format_http_date(when)

    @cached_property
    def expires_delta(self) -> int | None:
        """Seconds from now for a per-response ``Expires`` (max-age mode), else None."""
        return self.max_age if self.cache_control == "max-age" and self.send_expires else None
