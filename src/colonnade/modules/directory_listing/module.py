"""Directory listing: an HTML page a person can read (or JSON), for folder URLs.

It joins POST_MAP_REQUEST_HANDLER after the default document (priority LOW):
when the mapping chose a file-serving handler, the URL names a folder, ends with
"/", no default document was found and listing is enabled, it makes itself the
handler. The page has sortable columns (links with
``?sort=`` and ``?order=``, no script needed), escapes every name, and never lists
``web.toml`` or hidden entries. ``Accept: application/json`` gets the same
entries as JSON.
"""

from __future__ import annotations

import os
import stat
import time
from typing import NamedTuple

from colonnade.config.sections import WEB_TOML
from colonnade.core.context import Context
from colonnade.core.handler import Handler
from colonnade.core.markup import escape
from colonnade.core.module import Priority, hook
from colonnade.core.stages import Stage
from colonnade.core.urlpath import quote
from colonnade.errors import HttpError
from colonnade.modules.directory_listing.config import DirectoryBrowseSection

_NEVER = frozenset({WEB_TOML})
_SORTS = ("name", "size", "modified")

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:56rem;padding:0 1rem;color:#1d1d1f;background:#fafaf7}
h1{font-size:1.3rem;font-weight:600;word-break:break-all}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e4e2dc}
th a{color:inherit;text-decoration:none}th a:hover{text-decoration:underline}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.date{white-space:nowrap;color:#555}a{color:#0b57b0}tr:hover td{background:#f0eee8}
.dir a{font-weight:600}footer{margin-top:1rem;color:#777;font-size:.85rem}
"""


class Entry(NamedTuple):
    """One listed entry."""

    name: str
    is_dir: bool
    size: int
    modified: float


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


class DirectoryListing(Handler):
    """``static.directory_listing``: lists a folder when nothing else answers it."""

    id = "static.directory_listing"
    section = DirectoryBrowseSection
    verbs = frozenset({"GET", "HEAD"})

    def joins(self, stage: Stage, mapped: tuple[Handler, ...]) -> bool:
        """Only where the mapping can choose a handler that serves files: not in a
        Python application whose mappings name none (decided when the plan is built)."""
        return any(handler.serves_files for handler in mapped)

    @hook(Stage.POST_MAP_REQUEST_HANDLER, priority=Priority.LOW)
    def post_map_request_handler(self, ctx: Context) -> None:
        """Take folder URLs (ending in "/") mapped to a file-serving handler that
        have no default document (which runs before, at MEDIUM)."""
        handler = ctx.handler
        if handler is None or not handler.serves_files or not ctx.request.path.endswith("/"):
            return
        if not ctx.section(DirectoryBrowseSection).enabled:
            return
        physical = ctx.physical_path
        if not os.path.isdir(physical):
            return  # a default document was chosen, or nothing is there
        if not ctx.app.contains(os.path.realpath(physical)):
            return  # a folder reached through a symlink out of the application
        ctx.handler = self

    def execute(self, ctx: Context) -> None:
        """Render the listing of ``ctx.physical_path``."""
        settings = ctx.section(DirectoryBrowseSection)
        try:
            entries = self._entries(ctx.physical_path, settings)
        except OSError:
            raise HttpError(404, 0, "the folder cannot be read") from None
        # Here, not at import: a worker that lists no folder keeps urllib.parse out.
        from urllib.parse import parse_qsl

        query = dict(parse_qsl(ctx.request.query.decode("latin-1")))
        sort = query.get("sort", "name")
        sort = sort if sort in _SORTS else "name"
        descending = query.get("order") == "desc"
        entries.sort(key=lambda e: e.name.lower())
        if sort == "size":
            entries.sort(key=lambda e: e.size)
        elif sort == "modified":
            entries.sort(key=lambda e: e.modified)
        if descending:
            entries.reverse()
        entries.sort(key=lambda e: not e.is_dir)  # folders first, order kept
        response = ctx.response
        accept = ctx.request.header(b"accept") or b""
        if b"application/json" in accept and b"text/html" not in accept:
            import json  # a listing asked for as JSON only: not in every worker

            response.headers.append((b"content-type", b"application/json"))
            response.body = json.dumps(
                {
                    "path": ctx.request.path,
                    "entries": [
                        {
                            "name": e.name,
                            "type": "directory" if e.is_dir else "file",
                            "size": None if e.is_dir else e.size,
                            "modified": time.strftime(
                                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.modified)
                            ),
                        }
                        for e in entries
                    ],
                }
            ).encode()
        else:
            response.headers.append((b"content-type", b"text/html; charset=utf-8"))
            response.body = self._html(ctx.request.path, entries, settings, sort, descending)
        response.add_vary(b"Accept")
        response.headers.append((b"cache-control", b"no-cache"))

    @staticmethod
    def _entries(folder: str, settings: DirectoryBrowseSection) -> list[Entry]:
        entries = []
        with os.scandir(folder) as it:
            for item in it:
                name = item.name
                if name in _NEVER or (name.startswith(".") and not settings.show_hidden):
                    continue
                try:
                    st = item.stat()  # follows symlinks: shows what a request would get
                except OSError:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir and not stat.S_ISREG(st.st_mode):
                    continue  # sockets, fifos, devices: nothing a client can fetch
                entries.append(Entry(name, is_dir, st.st_size, st.st_mtime))
        return entries

    @staticmethod
    def _html(
        path: str,
        entries: list[Entry],
        settings: DirectoryBrowseSection,
        sort: str,
        descending: bool,
    ) -> bytes:
        title = escape(path)

        def header(label: str, key: str, css: str = "") -> str:
            order = "asc" if sort == key and descending else "desc" if sort == key else "asc"
            mark = (" \u25be" if descending else " \u25b4") if sort == key else ""
            cls = f' class="{css}"' if css else ""
            return f'<th{cls}><a href="?sort={key}&amp;order={order}">{label}{mark}</a></th>'

        cols = [header("Name", "name")]
        if settings.show_size:
            cols.append(header("Size", "size", "num"))
        if settings.show_modified:
            cols.append(header("Modified (UTC)", "modified"))
        rows = []
        if path != "/":
            rows.append(
                f'<tr class="dir"><td><a href="../">../</a></td>'
                f"{'<td></td>' * (len(cols) - 1)}</tr>"
            )
        for e in entries:
            href = escape(quote(e.name) + ("/" if e.is_dir else ""), quote=True)
            label = escape(e.name + ("/" if e.is_dir else ""))
            cells = [f'<td><a href="{href}">{label}</a></td>']
            if settings.show_size:
                cells.append(f'<td class="num">{"" if e.is_dir else _human(e.size)}</td>')
            if settings.show_modified:
                stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.modified))
                cells.append(f'<td class="date">{stamp}</td>')
            css = ' class="dir"' if e.is_dir else ""
            rows.append(f"<tr{css}>{''.join(cells)}</tr>")
        count = len(entries)
        page = (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Index of {title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Index of {title}</h1><table><thead><tr>{''.join(cols)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            f"<footer>{count} entr{'y' if count == 1 else 'ies'}</footer></body></html>\n"
        )
        return page.encode()
