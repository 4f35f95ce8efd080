"""Roles from a group file (Apache ``mod_authz_groupfile``'s file) at POST_AUTHENTICATE_REQUEST.

Per request with an authenticated user: one dict lookup (and a clock read); the
file is looked at for changes at most once per ``check_interval``. Each distinct
file (by path and interval) is read once per application, whatever number of
locations name it.
"""

from __future__ import annotations

import os

from colonnade.core.app import Application
from colonnade.core.compiled import PerSection
from colonnade.core.context import Context
from colonnade.core.module import Module, hook
from colonnade.core.stages import Stage
from colonnade.modules.roles.config import RolesSection
from colonnade.modules.roles.groups import GroupFile


class GroupFileRoles(Module):
    """``auth.roles``: the groups of a group file become the user's roles."""

    id = "auth.roles"
    section = RolesSection

    def __init__(self) -> None:
        self.root = "/"
        self.files: dict[tuple[str, float], GroupFile] = {}
        self.compiled: PerSection[RolesSection, GroupFile | None] = PerSection(self._compile)

    def provision(self, app: Application) -> None:
        """Read the application's own group file now: a bad one refuses the start."""
        self.root = app.root
        self.compiled.get(app.section(RolesSection))

    def _compile(self, section: RolesSection) -> GroupFile | None:
        if not section.group_file:
            return None
        path = os.path.normpath(os.path.join(self.root, section.group_file))
        key = (path, section.check_interval)
        found = self.files.get(key)
        if found is None:
            found = self.files[key] = GroupFile(path, section.check_interval)
        return found

    @hook(Stage.POST_AUTHENTICATE_REQUEST)
    def post_authenticate_request(self, ctx: Context) -> None:
        """Add the user's groups to ``ctx.user.roles``."""
        user = ctx.user
        if user is None or not user.name:
            return
        groups = self.compiled.get(ctx.sections.get(RolesSection))
        if groups is None:
            return
        roles = groups.roles_of(user.name)
        if roles and not roles <= user.roles:
            ctx.user = user._replace(roles=user.roles | roles)

    def cleanup(self) -> None:
        """Forget the files read."""
        self.compiled.clear()
        self.files.clear()
