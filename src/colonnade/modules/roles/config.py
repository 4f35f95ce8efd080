"""``[roles]``: where the roles of authenticated users come from."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from colonnade.config.sections import Section


class RolesSection(Section, frozen=True, dict=True):
    """Roles of authenticated users from a group file in Apache's format (the file
    `AuthGroupFile` reads): one `group: user1 user2 ...` line per group, members
    separated by spaces; a group may have several lines; blank lines and lines
    starting with `#` are skipped. The groups a user is a member of become the
    user's roles at POST_AUTHENTICATE_REQUEST, beside roles a scheme gave (token
    claims, Unix groups), for `url_authorization` rules and applications
    (`scope["user"].roles`). Anonymous requests get none.

    The file is read when first needed and again when it changes (its size,
    modification time or inode), looked at no more often than `check_interval`.
    A line without `:` is an error naming the file and line: at start-up it
    refuses the configuration; in a changed file it is logged and the previous
    content stays in use (as when the file disappears), so that a half-written
    file never takes roles away or gives them.
    """

    key = "roles"

    group_file: str = ""
    """The group file: an absolute path, or relative to the application's root
    folder (`../private/groups` keeps it out of the content). Empty: no roles
    from a group file. Keep it where it is never served (outside the content, or
    a name starting with `.`, which request filtering hides)."""
    check_interval: Annotated[float, Meta(ge=0, le=3600)] = 2.0
    """At most how often, in seconds, the file is looked at for changes (0: at
    every request that needs it)."""
