"""Default document (IIS DefaultDocumentModule) after the handler mapping.

It joins POST_MAP_REQUEST_HANDLER and acts only when the mapping chose a handler
that serves files (``Handler.serves_files``: the static file handler), as IIS runs
DefaultDocumentModule only within the StaticFile handler mapping: a Python app
mounted at ``/`` costs it nothing. For a folder URL with its trailing slash, the
request is remapped (``ctx.remap``) to the first listed file that exists, so the
handler mapping runs again for it, as IIS runs a child request: ``/dir/`` with
``index.php`` reaches whatever handler ``*.php`` maps to, ``index.html`` the
static file handler. Without one the handler answers (403.14, or a listing). A
folder URL without its trailing slash is redirected by the static file handler,
which looks at the path anyway.
"""

from __future__ import annotations

import os
from stat import S_ISREG

from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.module import Module, hook
from colonnade.core.stages import Stage
from colonnade.modules.default_document.config import DefaultDocumentSection


class DefaultDocument(Module):
    """``static.default_document``: index files and the trailing-slash redirect."""

    id = "static.default_document"
    section = DefaultDocumentSection

    def joins(self, stage: Stage, mapped: tuple[Handler, ...]) -> bool:
        """Only where the mapping can choose a handler that serves files: not in a
        Python application whose mappings name none (decided when the plan is built)."""
        return any(handler.serves_files for handler in mapped)

    @hook(Stage.POST_MAP_REQUEST_HANDLER)
    def post_map_request_handler(self, ctx: Context) -> None:
        """Remap ``/dir/`` to its default document."""
        handler = ctx.handler
        if handler is None or not handler.serves_files or not ctx.request.path.endswith("/"):
            return
        settings = ctx.section(DefaultDocumentSection)
        if not settings.enabled:
            return
        directory = ctx.physical_path
        # A folder URL's physical path ends with "/" as mapped; a MAP_PATH hook's
        # may not. Concatenation costs a fraction of os.path.join.
        join = directory.endswith("/")
        for name in settings.files:
            candidate = directory + name if join else os.path.join(directory, name)
            try:
                st = os.stat(candidate)
            except OSError:  # missing, or the "directory" is not one
                continue
            if S_ISREG(st.st_mode):
                # A plain file name (the section's rule) keeps the path normalized.
                ctx.remap(ctx.request.path + name)
                return
