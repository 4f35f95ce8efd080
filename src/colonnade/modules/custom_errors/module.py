"""Custom, detailed and terse error pages (IIS CustomErrorModule) at SEND_RESPONSE.

How this works:

- *When.* SEND_RESPONSE runs in reverse priority order; this hook registers FIRST,
  so it runs last, right before the head goes out, and sees the final status and
  headers (IIS's CustomErrorModule registers there at HIGH for the same reason).
  A response below 400 costs one comparison.
- *Which body counts as existing.* A body a module wrote (``body`` or ``file``) is
  "existing"; an empty body or the pipeline's built-in error page
  (:func:`colonnade.core.errorpage.render`, written by ``ctx.error_response`` and
  by the runner after an exception) is not, since it stands for IIS's status-only
  ``SetStatus``. :func:`builtin_message` recognises that page and recovers the
  message it carries.
- *Which page.* ``existing_response`` may keep the body (see the section). Otherwise
  ``error_mode`` and the client address choose a detailed page
  (:func:`detailed_page`) or a custom one: the ``errors`` entry for
  ``status.substatus``, else for ``status``, else the built-in terse page.
- *Never a traceback, never an exception's message.* Only :func:`detailed_page`
  shows exception details (its type and where it was raised), and it is chosen
  for a remote client only by the explicit ``error_mode = "detailed"``. "Local"
  is a loopback client address and no proxy header (:func:`is_local`).
  Everything inserted into a page is HTML-escaped.
- *What to change.* An error response may carry a detail for the administrator
  (``Context.error_response(..., detail=)``: the setting that refused the
  request, the configuration file and line at fault). The detailed page shows
  it; the built-in page shows it to local clients, so where this module's mode
  gives a local client the terse page, the page is drawn again without it.
- *Correlation id.* Every 5xx page carries ``ctx.correlation_id``: the same id the
  runner logged with the traceback and the access log's ``x-correlation-id``.
- When the page is replaced, the headers that describe the old body
  (``Content-Type``, ``Content-Encoding``, ``ETag``, ...) go with it; others
  (``WWW-Authenticate``, ``Allow``, ``Retry-After``, custom headers, cookies) stay.
"""

from __future__ import annotations

import html
import logging
import os
import time
from stat import S_ISREG

from colonnade.core.app import Application
from colonnade.core.context import Context
from colonnade.core.errorpage import ERROR_DETAIL, FAILED_AT, reason, render
from colonnade.core.handler import Handler
from colonnade.core.module import Module, Priority, hook
from colonnade.core.request import is_local
from colonnade.core.response import Response
from colonnade.core.stages import Stage
from colonnade.modules.custom_errors.config import (
    CORRELATION_TOKEN,
    CustomErrorsSection,
    ErrorPage,
)

log = logging.getLogger("colonnade.custom_errors")

_HTML = b"text/html; charset=utf-8"
#: Headers describing the body being replaced; they do not describe the new page.
_BODY_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"content-language",
        b"content-location",
        b"content-range",
        b"content-disposition",
        b"etag",
        b"last-modified",
        b"location",
    }
)
#: How often an error page file is checked for changes, in seconds.
_RECHECK = 1.0
#: The largest error page file read (they live in memory).
MAX_FILE_SIZE = 1024 * 1024

_TOKEN = CORRELATION_TOKEN.encode("ascii")
#: What every built-in page starts and ends with (see colonnade.core.errorpage).
_BUILTIN_START = b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
_BUILTIN_END = b"</body></html>\n"


def builtin_message(response: Response) -> str | None:
    """The message of the built-in error page in ``response``; None if it holds another body.

    ``""`` for a built-in page without a message.
    """
    body = response.body
    if (
        response.file is not None
        or not body.startswith(_BUILTIN_START)
        or not body.endswith(_BUILTIN_END)
    ):
        return None
    marker = b"<p>Error code: "
    code_at = body.find(marker)
    heading_end = body.find(b"</h1>")
    if code_at == -1 or heading_end == -1 or heading_end > code_at:
        return None
    between = body[heading_end + len(b"</h1>") : code_at]
    if not between:
        return ""
    if between.startswith(b"<p>") and between.endswith(b"</p>"):
        return html.unescape(between[3:-4].decode("utf-8", "replace"))
    return None


def culprit(exc: BaseException) -> tuple[str, str] | None:
    """``(module id, stage or method)`` of the outermost module frame in ``exc``'s traceback.

    The runner catches the exception, so the traceback starts in the pipeline; the
    first frame whose ``self`` is a module is the hook (or handler) that failed.
    """
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if isinstance(owner, Module):
            method = frame.f_code.co_name
            for sub in type(owner).subscriptions:
                if sub.method == method:
                    return owner.id, sub.stage.name
            if isinstance(owner, Handler) and method == "execute":
                return owner.id, Stage.EXECUTE_REQUEST_HANDLER.name
            return owner.id, method
        tb = tb.tb_next
    return None


def _code(status: int, substatus: int) -> str:
    return f"{status}.{substatus}"


def _row(name: str, value: str, *, code: bool = False) -> str:
    shown = html.escape(value)
    if code:
        shown = f"<code>{shown}</code>"
    return f"<tr><th>{name}</th><td>{shown}</td></tr>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "h1{color:#a00}th{text-align:left;padding-right:1em;vertical-align:top}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto}"
)


def failed_at(ctx: Context) -> tuple[str, str] | None:
    """``(module, stage)`` where the request's exception escaped, or None.

    The runner names the stage (and on a traced request the module, every hook
    being timed there); otherwise the module is found in the traceback.
    """
    error = ctx.error
    if error is None:
        return None
    stage, module = ctx.items.get(FAILED_AT) or (None, None)
    found = culprit(error)
    if module is None and found is not None:
        module = found[0]
    if stage is None and found is not None:
        stage = found[1]
    if module is None and stage == Stage.EXECUTE_REQUEST_HANDLER.name and ctx.handler is not None:
        # A compiled (mypyc) handler leaves no frame of its own in the traceback:
        # what escaped the handler stage with no module frame is the handler's.
        module = ctx.handler.id
    if module is None and stage is None:
        return None
    return module or "-", stage or "-"


def _raised_at(error: BaseException) -> str:
    # Where the exception was raised (its innermost frame): a place to look, not a
    # traceback, and not the message (which may carry data the page must not show).
    tb = error.__traceback__
    if tb is None:
        return "-"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename}:{tb.tb_lineno} in {code.co_name}"


def detailed_page(ctx: Context, message: str) -> bytes:
    """The detailed error page: what an administrator at this machine needs.

    Shows the status, the module and stage that failed, the handler, application,
    URL, physical path, user and authentication type, the correlation id (5xx),
    the id of the request's trace when one is kept and, for an exception, its type
    and where it was raised. Never the exception's message or a traceback (they
    are in the error log under the correlation id). Every value is HTML-escaped.
    """
    response = ctx.response
    request = ctx.request
    status, substatus = response.status, response.substatus
    title = f"HTTP Error {_code(status, substatus)} - {reason(status)}"
    error = ctx.error if status >= 500 else None
    found = failed_at(ctx) if error is not None else None
    handler = ctx.handler.id if ctx.handler is not None else "(none chosen)"
    try:
        physical = ctx.physical_path
    except Exception:  # a path this application cannot map: say so, do not fail
        physical = "(not mapped)"
    url = f"{request.scheme}://{request.host or '-'}{request.target.decode('latin-1')}"
    user = ctx.user.name if ctx.user is not None and ctx.user.name else "(anonymous)"
    auth_type = ctx.user.auth_type if ctx.user is not None and ctx.user.auth_type else "(none)"
    rows = [
        _row("Status", _code(status, substatus)),
        _row("Module", found[0] if found else "-"),
        _row("Stage", found[1] if found else "-"),
        _row("Handler", handler),
        _row("Application", ctx.app.id),
        _row("Requested URL", url),
        _row("Physical path", physical),
        _row("Logon user", user),
        _row("Logon method", auth_type),
    ]
    if status >= 500:
        rows.append(_row("Correlation id", ctx.correlation_id, code=True))
    trace = ctx.trace
    if trace is not None and trace.kept_for(ctx):
        rows.append(_row("Failed request trace", f"colonnade trace show {trace.id}", code=True))
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>',
        html.escape(title),
        f"</title><style>{_STYLE}</style></head><body><h1>",
        html.escape(title),
        "</h1>",
    ]
    if message:
        parts.append(f"<p>{html.escape(message)}</p>")
    detail = ctx.items.get(ERROR_DETAIL)
    if detail:
        parts.append(f"<h2>What to change</h2><p>{html.escape(str(detail))}</p>")
    parts += ["<h2>Detailed error information</h2><table>", *rows, "</table>"]
    if error is not None:
        kind = type(error)
        name = kind.__qualname__
        if kind.__module__ != "builtins":
            name = f"{kind.__module__}.{name}"
        parts += [
            "<h2>Exception</h2><table>",
            _row("Type", name, code=True),
            _row("Raised at", _raised_at(error), code=True),
            "</table><p>Its message and traceback are in the error log "
            "(<code>colonnade.error</code>) under the correlation id.</p>",
        ]
    parts.append(
        "<p><small>This detailed page is shown because [custom_errors] error_mode allows "
        "it for this client; other clients get the custom or terse page.</small></p>"
        "</body></html>\n"
    )
    return "".join(parts).encode("utf-8")


def with_correlation_id(page: bytes, correlation_id: str | None) -> bytes:
    """``page`` with ``{{correlation_id}}`` filled in; a 5xx page without the token
    gets the id in a paragraph before ``</body>`` (or at the end)."""
    value = correlation_id.encode("ascii") if correlation_id else b""
    if _TOKEN in page:
        return page.replace(_TOKEN, value)
    if not correlation_id:
        return page
    note = b"<p>Correlation id: <code>" + value + b"</code></p>"
    end = page.lower().rfind(b"</body>")
    if end == -1:
        return page + note
    return page[:end] + note + page[end:]


class _PageFile:
    """One error page file as last read: its stat key and content (None: unusable)."""

    __slots__ = ("checked", "content", "key")

    def __init__(self, key: object, content: bytes | None, checked: float) -> None:
        self.key = key
        self.content = content
        self.checked = checked


class PageFiles:
    """Error page files, read once and re-read when they change.

    A file is checked (one ``stat``) at most once a second; it is re-read when its
    modification time, size or inode changed. A file that is missing, not a
    regular file, larger than :data:`MAX_FILE_SIZE` or (symlinks resolved) outside
    the application's folders is not used (the built-in page is sent instead),
    with one warning per change of state.
    """

    def __init__(self) -> None:
        self._files: dict[str, _PageFile] = {}

    def get(self, app: Application, relative: str) -> bytes | None:
        """The content of ``relative`` (below ``app.root``), or None if unusable."""
        path = os.path.join(app.root, relative)
        now = time.monotonic()
        entry = self._files.get(path)
        if entry is not None and now - entry.checked < _RECHECK:
            return entry.content
        key, content, problem = self._load(app, path, entry)
        if problem and (entry is None or entry.key != key):
            log.warning("custom error page %s cannot be used: %s", path, problem)
        self._files[path] = _PageFile(key, content, now)
        return content

    @staticmethod
    def _load(
        app: Application, path: str, entry: _PageFile | None
    ) -> tuple[object, bytes | None, str]:
        try:
            st = os.stat(path)
        except OSError as exc:
            return ("error", exc.strerror), None, exc.strerror or "cannot be read"
        key = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)
        if entry is not None and entry.key == key:
            return key, entry.content, ""  # unchanged: no need to read again
        if not S_ISREG(st.st_mode):
            return key, None, "not a regular file"
        if st.st_size > MAX_FILE_SIZE:
            return key, None, f"larger than {MAX_FILE_SIZE} bytes"
        if not app.contains(os.path.realpath(path)):
            return key, None, "it lies outside the application's folders"
        try:
            with open(path, "rb") as f:
                return key, f.read(MAX_FILE_SIZE + 1)[:MAX_FILE_SIZE], ""
        except OSError as exc:
            return ("error", exc.strerror), None, exc.strerror or "cannot be read"

    def clear(self) -> None:
        """Forget every file read."""
        self._files.clear()


class CustomErrors(Module):
    """``http.custom_errors``: IIS ``httpErrors`` at SEND_RESPONSE (priority FIRST)."""

    id = "http.custom_errors"
    section = CustomErrorsSection

    def __init__(self) -> None:
        self.files = PageFiles()

    def provision(self, app: Application) -> None:
        """Warn now about application-level page files that cannot be used."""
        for entry in app.section(CustomErrorsSection).errors:
            if entry.file:
                self.files.get(app, entry.file)

    def cleanup(self) -> None:
        """Drop the cached page files."""
        self.files.clear()

    @hook(Stage.SEND_RESPONSE, priority=Priority.FIRST)
    def send_response(self, ctx: Context) -> None:
        """Replace the body of an error response with the page the settings choose."""
        response = ctx.response
        if response.status < 400:
            return
        # A streamed body is already on its way behind this head: it cannot be
        # replaced. (``streaming`` is the flag Context.start_response sets, where
        # the core provides it.)
        if response.streaming:
            return
        settings = ctx.section(CustomErrorsSection)
        mode = settings.error_mode
        detailed = mode == "detailed" or (mode == "detailed_local_only" and is_local(ctx.request))
        message = builtin_message(response)
        written = message is None and (bool(response.body) or response.file is not None)
        existing = settings.existing_response
        if existing == "auto":
            # IIS Auto: a module that asked to skip custom errors keeps its response,
            # and a detailed page is never drawn over a body a module wrote.
            if response.skip_custom_errors or (written and detailed):
                return
        elif existing == "pass_through" and written:
            return
        if detailed:
            self._send(response, detailed_page(ctx, message or ""))
            response.set_header(b"cache-control", b"no-store")
            return
        correlation_id = ctx.correlation_id if response.status >= 500 else None
        pages = settings.pages
        entry = pages.get((response.status, response.substatus)) or pages.get((response.status, -1))
        if entry is not None and self._custom(ctx, entry, correlation_id):
            return
        if message is not None:
            if ctx.items.get(ERROR_DETAIL) and is_local(ctx.request):
                # The built-in page shows a local client the detail; this mode
                # says the client gets the terse page.
                self._send(
                    response,
                    render(response.status, response.substatus, message, correlation_id),
                )
            return  # the built-in page is there already (with the id for a 5xx)
        self._send(response, render(response.status, response.substatus, "", correlation_id))

    def _custom(self, ctx: Context, entry: ErrorPage, correlation_id: str | None) -> bool:
        """Send ``entry``'s page; False if it has none usable (the built-in page then)."""
        response = ctx.response
        if entry.redirect:
            location = entry.redirect.replace(CORRELATION_TOKEN, correlation_id or "")
            href = html.escape(location)
            note = f"<p>Correlation id: <code>{correlation_id}</code></p>" if correlation_id else ""
            self._send(
                response,
                (
                    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Moved</title>'
                    f'</head><body><p>See <a href="{href}">{href}</a>.</p>{note}</body></html>\n'
                ).encode("ascii"),
            )
            response.status = 302
            response.substatus = 0
            response.reason = None
            response.headers.append((b"location", location.encode("ascii")))
            return True
        if entry.page:
            page = entry.page.encode("utf-8")
        elif entry.file:
            content = self.files.get(ctx.app, entry.file)
            if content is None:
                return False
            page = content
        else:
            return False  # an entry without a page: the built-in one
        self._send(response, with_correlation_id(page, correlation_id))
        return True

    @staticmethod
    def _send(response: Response, page: bytes) -> None:
        response.headers = [pair for pair in response.headers if pair[0] not in _BODY_HEADERS]
        response.headers.append((b"content-type", _HTML))
        response.body = page
        response.file = None
