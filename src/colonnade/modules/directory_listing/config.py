"""``[directory_browse]``: whether and how folders without a default document list."""

from __future__ import annotations

from colonnade.config.sections import Section


class DirectoryBrowseSection(Section, frozen=True):
    """Directory listing for folders without a default document (IIS directoryBrowse).

    Off by default, as in IIS: a folder URL with neither a default document nor
    listing enabled is answered 403.14 by the static file handler.
    """

    key = "directory_browse"

    enabled: bool = False
    show_size: bool = True
    show_modified: bool = True
    # Entries whose names start with "." and web.toml files are never listed.
    show_hidden: bool = False
