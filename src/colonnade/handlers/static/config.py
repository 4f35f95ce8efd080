"""``[static_content]``: how the static file handler types and validates files."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from msgspec import Meta

from colonnade.config.sections import Section

#: ``.css``, or ``.`` for files without an extension (as IIS spells it).
Extension = Annotated[str, Meta(pattern=r"^\.[^/]*$")]
#: ``type/subtype`` with optional parameters, printable ASCII (it becomes a header).
MimeType = Annotated[str, Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[\x20-\x7e]+$")]

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
    """Static file settings (IIS ``staticContent`` and ``clientCache/setEtag``).

    - ``mime_map``: extension → MIME type, added to (or overriding) the built-in
      table of common web types. ``.`` is the key for files without an extension.
    - ``default_mime_type``: the type of a file whose extension is not mapped.
      IIS has none and answers 404.3 (so a stray ``.bak`` or ``.py`` beside the
      content is not served); set it (``application/octet-stream``) to serve all.
    - ``allow_symlinks_outside_root``: by default a file is served only if its
      real path (symlinks resolved) lies under one of the application's roots
      (its folder and virtual directories); true serves symlink targets anywhere.
    - ``set_etag``: send an ``ETag`` (as IIS ``setEtag``, default true).
    """

    key = "static_content"

    mime_map: dict[Extension, MimeType] = {}
    default_mime_type: MimeType | None = None
    allow_symlinks_outside_root: bool = False
    set_etag: bool = True

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
