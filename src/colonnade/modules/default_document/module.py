"""Default document (IIS DefaultDocumentModule) at MAP_REQUEST_HANDLER.

It runs before the engine's handler mapping (which is the last step of the stage),
so it only changes *which file* the URL names; the mapping still picks the handler
by URL (``*`` → ``handler.static`` by default). A directory URL without its
trailing slash gets a 301 to the slashed URL; with the slash, the first listed file
that exists becomes ``ctx.physical_path``. Without one, the request goes on and
the handler answers (403.14 from the static handler, as IIS). A directory whose
real path lies outside the application's roots (a symlink out) is not redirected.
"""

from __future__ import annotations

import os
from stat import S_ISDIR, S_ISREG
from urllib.parse import quote

from colonnade.core.context import Context
from colonnade.core.module import CONTINUE, FINISH, Module, Outcome, hook
from colonnade.core.stages import Stage
from colonnade.modules.default_document.config import DefaultDocumentSection

#: Characters left as they are when the canonical path is re-encoded for Location.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


class DefaultDocument(Module):
    """``static.default_document``: index files and the trailing-slash redirect."""

    id = "static.default_document"
    section = DefaultDocumentSection

    @hook(Stage.MAP_REQUEST_HANDLER)
    def map_request_handler(self, ctx: Context) -> Outcome:
        """Redirect ``/dir`` to ``/dir/``; point ``/dir/`` at its default document."""
        settings = ctx.section(DefaultDocumentSection)
        if not settings.enabled:
            return CONTINUE
        path = ctx.request.path
        if path.endswith("/"):
            directory = ctx.physical_path
            for name in settings.files:
                candidate = os.path.join(directory, name)
                try:
                    st = os.stat(candidate)
                except OSError:  # missing, or the "directory" is not one
                    continue
                if S_ISREG(st.st_mode):
                    ctx.physical_path = candidate
                    return CONTINUE
            return CONTINUE
        physical = ctx.physical_path
        try:
            st = os.stat(physical)
        except OSError:
            return CONTINUE
        # A folder reached through a symlink out of the application is none of
        # ours: do not confirm it exists (the handler answers as for any path).
        # realpath is costly but this branch runs only for directory URLs.
        if not S_ISDIR(st.st_mode) or not ctx.app.contains(os.path.realpath(physical)):
            return CONTINUE
        return self._redirect(ctx, path)

    @staticmethod
    def _redirect(ctx: Context, path: str) -> Outcome:
        # The canonical path, re-encoded, not the raw one: a raw "//host" or
        # "/\\host" would make the Location an open redirect to another host.
        location = quote(path, safe=_PATH_SAFE).encode("ascii") + b"/"
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
        return FINISH
