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
    """List folders that have no default document (else 403.14)."""
    show_size: bool = True
    """Show a size column."""
    show_modified: bool = True
    """Show a last-modified column (UTC)."""
    show_hidden: bool = False
    """List entries whose names start with "." (web.toml is never listed)."""
