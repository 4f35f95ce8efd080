"""``[default_document]``: which file answers for a directory URL."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from colonnade.config.sections import Section

#: A plain file name: no separator, no NUL, not "." or "..".
FileName = Annotated[
    str,
    Meta(
        pattern=r"^(?!\.\.?$)[^/\\\x00]+$",
        description="a plain file name such as 'index.html' (no '/', not '.' or '..')",
    ),
]


class DefaultDocumentSection(Section, frozen=True):
    """Default document settings (IIS ``defaultDocument``).

    - ``enabled``: look for a default document at all (IIS default true).
    - ``files``: tried in order in the requested directory; the first regular file
      found is served. (IIS lists ``Default.htm`` first; names here are matched
      exactly, as Linux file systems are case-sensitive.)

    A directory URL without its trailing ``/`` is redirected (301) to the URL
    with it, query string kept, whether or not a default document exists, so
    relative links in the page resolve against the directory.
    """

    key = "default_document"

    enabled: bool = True
    files: list[FileName] = msgspec.field(
        default_factory=lambda: ["index.html", "index.htm", "default.html", "default.htm"]
    )
