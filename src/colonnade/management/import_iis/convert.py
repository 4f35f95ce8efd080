"""One converter per ``system.webServer`` section: IIS element → Colonnade table.

Each converter reads one section element, writes into a :class:`Level` (the
tables of one ``web.toml``, of the server file, or of one ``[[locations]]``
entry) and says in the report what became of every element it looked at.
Collections keep IIS's ``add``/``remove``/``clear``: they are written as
Colonnade's collection operations (``{ add = [...], remove = [...],
clear = true }``), which have the same meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from colonnade.management.import_iis.paths import PathMap, windows_path
from colonnade.management.import_iis.report import Report
from colonnade.management.import_iis.tomlwrite import Block, key

__all__ = ["NEAREST", "Context", "Level", "key", "system_webserver"]
from colonnade.management.import_iis.xmlread import Node


@dataclass
class Level:
    """The tables one configuration level gets."""

    prefix: str = ""
    """``locations.`` for a ``[[locations]]`` entry, else empty."""
    server: bool = False
    app_root: bool = True
    """Handler mappings may be set here (the server, or an application's root)."""
    url: str = ""
    """The URL path of this level's folder (``/shop``; empty for the server file),
    which the patterns of its rules are relative to."""
    site: str = ""
    """The site a ``web.config`` level belongs to (empty for the server file, whose
    ``[[locations]]`` paths without a site name apply to every site)."""
    blocks: list[Block] = field(default_factory=list)
    sections: dict[str, Node] = field(default_factory=dict)
    """Each Colonnade section written here → the first element that wrote it."""
    optional: dict[str, str] = field(default_factory=dict)
    """Tables written only when their module (the value) is in use anyway."""

    def drop_unused(self, modules: set[str]) -> None:
        """Leave out the optional tables whose module no level needs."""
        for header, module_id in self.optional.items():
            if module_id not in modules:
                self.blocks = [b for b in self.blocks if b.header != self.prefix + header]
                self.sections.pop(header, None)

    _tables: dict[str, Block] = field(default_factory=dict)

    def table(self, header: str, node: Node) -> Block:
        """The table ``[header]`` of this level (made on first use)."""
        full = self.prefix + header
        self.sections.setdefault(header.split(".")[0], node)
        found = self._tables.get(full)
        if found is None:
            found = Block(full, source=f"{node.where} <{node.path}>")
            self._tables[full] = found
            self.blocks.append(found)
        return found

    def entry(self, header: str, node: Node) -> Block:
        """A new ``[[header]]`` entry of this level."""
        self.sections.setdefault(header.split(".")[0], node)
        block = Block(self.prefix + header, array=True, source=f"{node.where} <{node.path}>")
        self.blocks.append(block)
        return block


@dataclass
class Context:
    """What every converter shares: the report, the modules used, paths."""

    report: Report
    paths: PathMap
    modules: set[str] = field(default_factory=set)
    fastcgi: dict[str, dict[str, Any]] = field(default_factory=dict)
    """FastCGI applications by name (``[fastcgi.applications.NAME]``)."""
    fastcgi_sources: dict[str, Node] = field(default_factory=dict)
    locks: dict[str, tuple[str, Node, str]] = field(default_factory=dict)
    """``[lock]`` entries: section or ``section.key`` → ("allow"/"deny", source, why)."""
    path_locks: list[tuple[str, str, Node, str]] = field(default_factory=list)
    """``overrideMode`` of a ``location`` with a path: (section, mode, section
    element, the location's path), resolved when the server file is assembled."""
    lock_all: list[tuple[str, str, list[str], Node]] = field(default_factory=list)
    """``lockAllAttributesExcept``/``lockAllElementsExcept``: (section, which,
    the IIS names kept open, element), expanded against the section's keys."""
    pools: list[Block] = field(default_factory=list)
    """``[pools.NAME]`` from applicationHost.config."""
    sites: list[Block] = field(default_factory=list)
    """``[[sites]]`` from applicationHost.config."""
    folders: list[str] = field(default_factory=list)
    """Content folders to create (unmapped Windows paths), relative to the server file."""
    farm_names: dict[str, str] = field(default_factory=dict)
    """ARR web farms of applicationHost.config: lower-cased name → Colonnade name
    (known before any rule is read, as ``webFarms`` usually comes last)."""
    farms: list[Block] = field(default_factory=list)
    """``[farms.NAME]`` tables and their members and health, in order."""
    allowed_farms: dict[str, Node] = field(default_factory=dict)
    """Farms that ``rules`` (not ``global_rules``) route to → the first such rule:
    the server file's ``rewrite.allowed_farms``."""
    server_header: tuple[str, Node] | None = None
    """``[server] server_header`` from an outbound rule on ``RESPONSE_SERVER``."""
    cert_dir: str = "certs"
    """Where the https bindings' PEM files are to be put (``--cert-dir``), relative
    to the server file unless absolute."""

    def local_path(self, node: Node, text: str) -> str | None:
        """A POSIX path for ``text`` (mapped when Windows), else None (reported by the caller)."""
        if windows_path(text):
            return self.paths.map(text)
        return text.replace("\\", "/")


Converter = Callable[[Node, Level, Context], None]


def _source(node: Node) -> str:
    return f"{node.where} <{node.tag}>"


def _collection(
    node: Node,
    ctx: Context,
    item: Callable[[Node], Any],
    *,
    remove_key: Callable[[Node], Any] | None = None,
    prepend: bool = False,
    add_name: str = "add",
) -> dict[str, Any]:
    """IIS ``add``/``remove``/``clear`` children → Colonnade collection operations
    (``add_name``: the adding element's name where it is not ``add``)."""
    ops: dict[str, Any] = {}
    adds: list[Any] = []
    removes: list[Any] = []
    for child in node.children:
        if child.name == "clear":
            ops["clear"] = True
            adds.clear()
            removes.clear()
            ctx.report.converted(child, "clear = true")
        elif child.name == "remove":
            if remove_key is None:
                ctx.report.skipped(child, "Colonnade cannot remove one inherited entry here")
                continue
            removes.append(remove_key(child))
            ctx.report.converted(child, "remove")
        elif child.name == add_name:
            value = item(child)
            if value is not None:
                adds.append(value)
        else:
            ctx.report.skipped(child, "unknown element in this collection")
    if removes:
        ops["remove"] = removes
    if adds:
        ops["prepend" if prepend else "add"] = adds
    return ops


def _table_ops(ops: dict[str, Any]) -> dict[str, Any]:
    """List-shaped ``add`` of (name, value) pairs → the table form of a table collection."""
    out = dict(ops)
    for part in ("add", "prepend"):
        if part in out:
            out[part] = dict(out[part])
    return out


# -- static content --------------------------------------------------------------------


def default_document(node: Node, level: Level, ctx: Context) -> None:
    """``defaultDocument`` → ``[default_document]``."""
    table = level.table("default_document", node)
    if node.get("enabled") is not None:
        table.set("enabled", node.flag("enabled", True), _source(node))
    files = node.child("files")
    if files is not None:

        def add(child: Node) -> str | None:
            value = child.get("value")
            if not value or "/" in value or "\\" in value:
                ctx.report.skipped(child, "not a plain file name")
                return None
            ctx.report.converted(child, f"default_document.files {value!r}")
            return value

        # IIS's files collection is mergeAppend=false: a child's entries come
        # before the inherited ones, hence prepend.
        ops = _collection(files, ctx, add, remove_key=lambda c: c.get("value"), prepend=True)
        if ops:
            table.set("files", ops, _source(files))
    ctx.modules.add("static.default_document")
    ctx.report.converted(node, "[default_document]")


def directory_browse(node: Node, level: Level, ctx: Context) -> None:
    """``directoryBrowse`` → ``[directory_browse]``."""
    table = level.table("directory_browse", node)
    table.set("enabled", node.flag("enabled", False), _source(node))
    flags = node.get("showFlags")
    if flags is not None:
        names = {f.strip().lower() for f in flags.split(",")}
        table.set("show_size", "size" in names)
        table.set("show_modified", bool(names & {"date", "time", "longdate"}))
        ctx.report.changed(
            node,
            "showFlags: Size → show_size, Date/Time/LongDate → show_modified;"
            " Extension has no counterpart",
        )
    else:
        ctx.report.converted(node, "[directory_browse]")
    ctx.modules.add("static.directory_listing")


_CACHE_MODES = {
    "nocontrol": "none",
    "disablecache": "no-cache",
    "usemaxage": "max-age",
    "useexpires": "expires",
}


def static_content(node: Node, level: Level, ctx: Context) -> None:
    """``staticContent`` (mimeMap, clientCache) → ``[static_content]``."""
    table = level.table("static_content", node)
    mime: dict[str, Any] = {}
    for child in node.children:
        if child.name == "clientcache":
            _client_cache(child, table, ctx)
        elif child.name == "mimemap":
            ext, kind = child.get("fileExtension"), child.get("mimeType")
            if ext and kind:
                mime[ext.lower()] = kind
                ctx.report.converted(child, f"static_content.mime_map {ext!r}")
            else:
                ctx.report.skipped(child, "a mimeMap needs fileExtension and mimeType")
        elif child.name == "remove":
            ctx.report.changed(
                child,
                "removing a type: the built-in table still knows it (replace it with a mimeMap)",
            )
        elif child.name == "clear":
            ctx.report.changed(
                child, "the built-in type table cannot be cleared; the listed types are added"
            )
        else:
            ctx.report.skipped(child, "unknown element of staticContent")
    if mime:
        table.set("mime_map", mime, _source(node))
    ctx.report.converted(node, "[static_content]")


def _client_cache(node: Node, table: Block, ctx: Context) -> None:
    mode = (node.get("cacheControlMode") or "NoControl").lower()
    if mode not in _CACHE_MODES:
        ctx.report.skipped(node, f"unknown cacheControlMode {node.get('cacheControlMode')!r}")
        return
    table.set("cache_control", _CACHE_MODES[mode], _source(node))
    age = node.get("cacheControlMaxAge")
    if age is not None:
        seconds = _timespan(age)
        if seconds is None:
            ctx.report.skipped(node, f"cacheControlMaxAge {age!r} is not a d.hh:mm:ss time span")
            return
        table.set("max_age", int(seconds))
    if node.get("httpExpires"):
        table.set("expires", node.get("httpExpires"))
    if node.get("cacheControlCustom"):
        table.set("cache_control_custom", node.get("cacheControlCustom"))
    if node.get("setEtag") is not None:
        table.set("set_etag", node.flag("setEtag", True))
    ctx.report.converted(node, "static_content.cache_control")


def _timespan(text: str) -> float | None:
    """IIS time spans: ``hh:mm:ss``, ``d.hh:mm:ss`` (seconds may have a fraction)."""
    days = 0
    head, _, clock = text.strip().rpartition(" ")
    body = clock
    if "." in body.split(":")[0]:
        day_text, body = body.split(".", 1)
        days = int(day_text) if day_text.isdigit() else -1
    parts = body.split(":")
    if head or days < 0 or len(parts) != 3:
        return None
    try:
        hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        return None
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


# -- HTTP features ---------------------------------------------------------------------


def http_protocol(node: Node, level: Level, ctx: Context) -> None:
    """``httpProtocol/customHeaders`` → ``[custom_headers]``."""
    for child in node.children:
        if child.name == "customheaders":
            table = level.table("custom_headers", child)

            def add(entry: Node) -> tuple[str, str] | None:
                name, value = entry.get("name"), entry.get("value", "")
                if not name:
                    ctx.report.skipped(entry, "a header needs a name")
                    return None
                ctx.report.converted(entry, f"custom_headers.add {name!r}")
                return (name, value or "")

            ops = _collection(child, ctx, add, remove_key=lambda c: c.get("name"))
            if ops:
                table.set("add", _table_ops(ops), _source(child))
            ctx.modules.add("http.custom_headers")
            ctx.report.converted(child, "[custom_headers] add (IIS customHeaders semantics)")
        elif child.name == "redirectheaders":
            ctx.report.skipped(
                child, "headers only on redirects: no counterpart (custom_headers applies to all)"
            )
        else:
            ctx.report.skipped(child, "no counterpart")
    for attr in ("allowkeepalive", "keepalivetimeout"):
        if node.get(attr) is not None:
            ctx.report.skipped(node, f"{attr}: nearest is [server.timeouts] keep_alive")
    if not node.children:
        ctx.report.converted(node, "nothing to convert")


_ERROR_MODES = {
    "detailedlocalonly": "detailed_local_only",
    "custom": "custom",
    "detailed": "detailed",
}
_EXISTING = {"auto": "auto", "replace": "replace", "passthrough": "pass_through"}


def http_errors(node: Node, level: Level, ctx: Context) -> None:
    """``httpErrors`` → ``[custom_errors]``."""
    table = level.table("custom_errors", node)
    mode = node.get("errorMode")
    if mode is not None and mode.lower() in _ERROR_MODES:
        table.set("error_mode", _ERROR_MODES[mode.lower()], _source(node))
    existing = node.get("existingResponse")
    if existing is not None and existing.lower() in _EXISTING:
        table.set("existing_response", _EXISTING[existing.lower()])
    for attr in ("defaultpath", "defaultresponsemode", "detailedmoreinformationlink"):
        if node.get(attr):
            ctx.report.skipped(node, f"{attr}: no counterpart (every page is listed by status)")

    entries = [c for c in node.children if c.name != "error"]
    pages = [c for c in node.children if c.name == "error"]
    ops: dict[str, Any] = {}
    if any(c.name == "clear" for c in entries):
        ops["clear"] = True
    added = [p for p in (_error_page(c, ctx) for c in pages) if p is not None]
    for child in entries:
        if child.name == "clear":
            ctx.report.converted(child, "clear = true")
        elif child.name == "remove":
            status = child.get("statusCode")
            if any(str(p["status"]) == status for p in added):
                ctx.report.converted(child, "replaced by the error entry for the same status")
            else:
                ctx.report.changed(child, "an inherited page cannot be removed by status; it stays")
        else:
            ctx.report.skipped(child, "unknown element of httpErrors")
    if added:
        ops["add"] = added
    if ops:
        table.set("errors", ops)
    ctx.modules.add("http.custom_errors")
    ctx.report.converted(node, "[custom_errors]")


def _error_page(child: Node, ctx: Context) -> dict[str, Any] | None:
    try:
        status = int(child.get("statusCode") or "")
        substatus = int(child.get("subStatusCode") or "-1")
    except ValueError:
        ctx.report.skipped(child, "statusCode/subStatusCode are not numbers")
        return None
    if not 400 <= status <= 999:
        ctx.report.skipped(child, f"status {status}: custom pages answer 400-999 only")
        return None
    path = child.get("path") or ""
    mode = (child.get("responseMode") or "File").lower()
    entry: dict[str, Any] = {"status": status, "substatus": substatus}
    if mode == "redirect":
        entry["redirect"] = path
        ctx.report.converted(child, f"custom_errors.errors {status} redirect")
        return entry
    if mode == "executeurl":
        if path.lower().endswith((".htm", ".html")) and path.startswith("/"):
            entry["file"] = path.lstrip("/")
            ctx.report.changed(
                child, f"ExecuteURL {path}: served as a file (not run as a child request)"
            )
            return entry
        ctx.report.skipped(
            child,
            f"ExecuteURL {path}: no child request execution;"
            " nearest is a rewrite rule or custom_errors redirect",
        )
        return None
    prefix = child.get("prefixLanguageFilePath") or ""
    if prefix:
        # IIS picks <prefix>\<language>\<path> by Accept-Language; one folder is
        # chosen here (en-US, IIS's own fallback).
        folder = ctx.local_path(child, prefix)
        if folder is None:
            ctx.report.skipped(
                child,
                f"File {prefix}\\<language>\\{path}: IIS's language folders are not mapped"
                " (--path-map); Colonnade's built-in error page answers instead",
            )
            return None
        entry["file"] = f"{folder.rstrip('/')}/en-US/{path.replace(chr(92), '/')}"
        ctx.report.changed(child, f"File {path}: the en-US page only (no Accept-Language choice)")
        return entry
    local = ctx.local_path(child, path)
    if local is None:
        ctx.report.skipped(child, f"File {path}: Windows path without a --path-map")
        return None
    entry["file"] = local
    ctx.report.converted(child, f"custom_errors.errors {status} file")
    return entry


_REDIRECT_STATUS = {"permanent": 301, "found": 302, "temporary": 307, "permredirect": 308}


def http_redirect(node: Node, level: Level, ctx: Context) -> None:
    """``httpRedirect`` → ``[redirection]``."""
    if not node.flag("enabled", False):
        if level.server:
            ctx.report.converted(node, "not enabled: nothing to convert")
        else:
            # Written only if some level enables redirects (the module then runs).
            level.table("redirection", node).set("enabled", False, _source(node))
            level.optional["redirection"] = "http.redirection"
            ctx.report.converted(node, "redirection.enabled = false (where redirects are in use)")
        return
    table = level.table("redirection", node)
    table.set("enabled", True, _source(node))
    if node.get("destination"):
        table.set("destination", node.get("destination"))
    for attr, name in (("exactDestination", "exact_destination"), ("childOnly", "child_only")):
        if node.get(attr) is not None:
            table.set(name, node.flag(attr, False))
    status = (node.get("httpResponseStatus") or "Found").lower()
    table.set("status", _REDIRECT_STATUS.get(status, 302))
    # IIS matches wildcard paths without regard to case.
    table.set("ignore_case", True)
    rules = []
    for child in node.children:
        if child.name == "add":
            wildcard, dest = child.get("wildcard"), child.get("destination")
            if not wildcard or not dest:
                ctx.report.skipped(child, "a wildcard redirect needs wildcard and destination")
                continue
            if not wildcard.startswith(("/", "*")):
                wildcard = "/" + wildcard
            rules.append({"path": wildcard, "destination": dest})
            ctx.report.converted(child, "redirection.rules")
        else:
            ctx.report.skipped(child, "unknown element of httpRedirect")
    if rules:
        table.set("rules", rules)
    ctx.modules.add("http.redirection")
    ctx.report.converted(node, "[redirection]")


# -- security --------------------------------------------------------------------------


def security(node: Node, level: Level, ctx: Context) -> None:
    """``security``: each child section by its own converter."""
    node.visited = True
    for child in node.children:
        converter = SECURITY.get(child.name)
        if converter is None:
            ctx.report.skipped(child, NEAREST.get(child.name, "no counterpart"))
        else:
            converter(child, level, ctx)


def request_filtering(node: Node, level: Level, ctx: Context) -> None:
    """``security/requestFiltering`` → ``[request_filtering]``."""
    table = level.table("request_filtering", node)
    for attr, name in (
        ("allowDoubleEscaping", "allow_double_escaping"),
        ("allowHighBitCharacters", "allow_high_bit_characters"),
        ("unescapeQueryString", "unescape_query_string"),
    ):
        if node.get(attr) is not None:
            table.set(name, node.flag(attr, False), _source(node))
    for child in node.children:
        name = child.name
        if name == "requestlimits":
            _request_limits(child, table, ctx)
        elif name == "fileextensions":
            if child.get("allowUnlisted") is not None:
                table.set(
                    "allow_unlisted_extensions", child.flag("allowUnlisted", True), _source(child)
                )
            ops = _collection(
                child,
                ctx,
                lambda c: _pair(
                    c, "fileExtension", "allowed", ctx, "request_filtering.file_extensions"
                ),
                remove_key=lambda c: (c.get("fileExtension") or "").lower(),
            )
            if ops:
                table.set("file_extensions", _table_ops(ops))
            ctx.report.converted(child, "request_filtering.file_extensions")
        elif name == "verbs":
            if child.get("allowUnlisted") is not None:
                table.set("allow_unlisted_verbs", child.flag("allowUnlisted", True), _source(child))
            ops = _collection(
                child,
                ctx,
                lambda c: _pair(c, "verb", "allowed", ctx, "request_filtering.verbs"),
                remove_key=lambda c: c.get("verb"),
            )
            if ops:
                table.set("verbs", _table_ops(ops))
            ctx.report.converted(child, "request_filtering.verbs")
        elif name in ("hiddensegments", "denyurlsequences", "denyquerystringsequences"):
            attr = "segment" if name == "hiddensegments" else "sequence"
            target = {
                "hiddensegments": "hidden_segments",
                "denyurlsequences": "deny_url_sequences",
                "denyquerystringsequences": "deny_query_string_sequences",
            }[name]
            ops = _collection(
                child,
                ctx,
                partial(_single, attr=attr, ctx=ctx, into=f"request_filtering.{target}"),
                remove_key=partial(_attr, attr=attr),
            )
            if ops:
                table.set(target, ops, _source(child))
            ctx.report.converted(child, f"request_filtering.{target}")
        elif name == "filteringrules":
            ops = _collection(
                child,
                ctx,
                partial(_filtering_rule, ctx=ctx),
                remove_key=lambda c: {"name": c.get("name")},
                add_name="filteringrule",
            )
            if ops:
                table.set("filtering_rules", ops, _source(child))
            ctx.report.converted(child, "request_filtering.filtering_rules")
        else:
            ctx.report.skipped(child, NEAREST.get(name, "no counterpart in request_filtering"))
    ctx.modules.add("security.request_filtering")
    ctx.report.converted(node, "[request_filtering]")


_EXTENSION = re.compile(r"^\.[^/]*$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _filtering_rule(node: Node, ctx: Context) -> dict[str, Any] | None:
    name = node.get("name")
    if not name:
        ctx.report.skipped(node, "a filteringRule needs a name")
        return None
    rule: dict[str, Any] = {"name": name}
    if node.flag("scanUrl", False):
        rule["scan_url"] = True
    if node.flag("scanQueryString", False):
        rule["scan_query_string"] = True
    lists = (
        ("scanHeaders", "requestHeader", "scan_headers", _TOKEN),
        ("appliesTo", "fileExtension", "applies_to", _EXTENSION),
        ("denyStrings", "string", "deny_strings", None),
    )
    for element, attr, target, valid in lists:
        group = node.child(element)
        values: list[str] = []
        for entry in group.children if group is not None else []:
            if entry.name == "clear" and not values:
                ctx.report.converted(entry, "a new rule inherits nothing to clear")
                continue
            value = entry.get(attr) if entry.name == "add" else None
            if not value or (valid is not None and not valid.match(value)):
                ctx.report.skipped(entry, f"not an entry Colonnade's {target} takes")
                continue
            values.append(value)
            ctx.report.converted(entry, f"request_filtering.filtering_rules {target}")
        if values:
            rule[target] = values
    changes = []
    if node.flag("scanAllRaw", False):
        changes.append("scanAllRaw: only the headers named in scanHeaders are scanned")
    if node.flag("denyUnescapedPercent", False):
        changes.append("denyUnescapedPercent: a '%' that starts no escape is not refused")
    if not rule.get("deny_strings"):
        changes.append("no deny strings: the rule refuses nothing")
    if changes:
        ctx.report.changed(node, "; ".join(changes))
    else:
        ctx.report.converted(node, f"request_filtering.filtering_rules {name!r} (404.19)")
    return rule


def _pair(
    child: Node, name_attr: str, flag_attr: str, ctx: Context, into: str
) -> tuple[str, bool] | None:
    name = child.get(name_attr)
    if not name:
        ctx.report.skipped(child, f"needs {name_attr}")
        return None
    ctx.report.converted(child, f"{into} {name!r}")
    return (name.lower() if name_attr == "fileExtension" else name, child.flag(flag_attr, True))


def _attr(child: Node, attr: str) -> str | None:
    return child.get(attr)


def _single(child: Node, attr: str, ctx: Context, into: str) -> str | None:
    value = child.get(attr)
    if not value:
        ctx.report.skipped(child, f"needs {attr}")
        return None
    ctx.report.converted(child, f"{into} {value!r}")
    return value


def _request_limits(node: Node, table: Block, ctx: Context) -> None:
    for attr, name in (
        ("maxAllowedContentLength", "max_allowed_content_length"),
        ("maxUrl", "max_url"),
        ("maxQueryString", "max_query_string"),
    ):
        if node.get(attr) is not None:
            try:
                table.set(name, int(node.get(attr) or ""), _source(node))
            except ValueError:
                ctx.report.skipped(node, f"{attr} is not a number")
    for child in node.children:
        if child.name == "headerlimits":
            child.visited = True
            limits: dict[str, int] = {}
            for entry in child.each("add"):
                try:
                    limits[entry.get("header") or ""] = int(entry.get("sizeLimit") or "")
                    ctx.report.converted(entry, "request_filtering.header_limits")
                except ValueError:
                    ctx.report.skipped(entry, "sizeLimit is not a number")
            if limits:
                table.set("header_limits", {"add": limits})
        else:
            ctx.report.skipped(child, "no counterpart in request_filtering")
    ctx.report.converted(node, "request_filtering limits")


def authorization(node: Node, level: Level, ctx: Context) -> None:
    """``security/authorization`` → ``[url_authorization]``."""
    table = level.table("url_authorization", node)

    def rule(child: Node) -> dict[str, Any]:
        out: dict[str, Any] = {"access": (child.get("accessType") or "Allow").lower()}
        for attr in ("users", "roles", "verbs"):
            names = [n.strip() for n in (child.get(attr) or "").split(",") if n.strip()]
            if names:
                out[attr] = names
        return out

    def add(child: Node) -> dict[str, Any] | None:
        value = rule(child)
        if value["access"] not in ("allow", "deny") or not (
            value.get("users") or value.get("roles")
        ):
            ctx.report.skipped(child, "a rule needs accessType Allow/Deny and users or roles")
            return None
        ctx.report.converted(child, f"url_authorization.rules {value['access']}")
        return value

    ops = _collection(node, ctx, add, remove_key=rule)
    if ops:
        table.set("rules", ops, _source(node))
    if node.get("bypassLoginPages") is not None:
        table.set("bypass_login_pages", node.flag("bypassLoginPages", True))
    ctx.modules.add("authz.url")
    ctx.report.converted(node, "[url_authorization]")


_DENY_ACTIONS = {
    "abortrequest": "AbortRequest",
    "forbidden": "Forbidden",
    "notfound": "NotFound",
    "unauthorized": "Unauthorized",
}


def ip_security(node: Node, level: Level, ctx: Context) -> None:
    """``security/ipSecurity`` → ``[ip_security]``."""
    table = level.table("ip_security", node)
    if node.get("allowUnlisted") is not None:
        table.set("allow_unlisted", node.flag("allowUnlisted", True), _source(node))
    action = (node.get("denyAction") or "").lower()
    if action in _DENY_ACTIONS:
        table.set("deny_action", _DENY_ACTIONS[action])
    if node.get("enableReverseDns") is not None:
        table.set("enable_reverse_dns", node.flag("enableReverseDns", False))
    if node.flag("enableProxyMode", False):
        ctx.report.changed(
            node,
            "enableProxyMode: list the proxies in [trusted_proxies] (security.trusted_proxies)",
        )

    def add(child: Node) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        address, mask, domain = (
            child.get("ipAddress"),
            child.get("subnetMask"),
            child.get("domainName"),
        )
        if address:
            out["address"] = f"{address}/{mask}" if mask else address
        elif domain:
            out["domain"] = domain
        else:
            ctx.report.skipped(child, "needs ipAddress or domainName")
            return None
        out["allowed"] = child.flag("allowed", False)
        ctx.report.converted(child, "ip_security.rules")
        return out

    ops = _collection(node, ctx, add, remove_key=lambda c: {"address": c.get("ipAddress")})
    if ops:
        table.set("rules", ops)
    ctx.modules.add("security.ip")
    ctx.report.converted(node, "[ip_security]")


def dynamic_ip_security(node: Node, level: Level, ctx: Context) -> None:
    """``security/dynamicIpSecurity`` → ``[dynamic_ip_security]``."""
    table = level.table("dynamic_ip_security", node)
    action = (node.get("denyAction") or "").lower()
    if action in _DENY_ACTIONS:
        table.set("deny_action", _DENY_ACTIONS[action], _source(node))
    if node.get("enableLoggingOnlyMode") is not None:
        table.set("logging_only", node.flag("enableLoggingOnlyMode", False))
    for child in node.children:
        if child.name == "denybyconcurrentrequests":
            table.set("deny_by_concurrent_requests", child.flag("enabled", False), _source(child))
            if child.get("maxConcurrentRequests"):
                table.set("max_concurrent_requests", int(child.get("maxConcurrentRequests") or "5"))
            ctx.report.converted(child, "dynamic_ip_security concurrent requests")
        elif child.name == "denybyrequestrate":
            table.set("deny_by_request_rate", child.flag("enabled", False), _source(child))
            if child.get("maxRequests"):
                table.set("max_requests", int(child.get("maxRequests") or "20"))
            if child.get("requestIntervalInMilliseconds"):
                table.set(
                    "interval", int(child.get("requestIntervalInMilliseconds") or "200") / 1000
                )
            ctx.report.converted(child, "dynamic_ip_security request rate")
        else:
            ctx.report.skipped(child, "no counterpart")
    if node.flag("enableProxyMode", False):
        ctx.report.changed(node, "enableProxyMode: list the proxies in [trusted_proxies]")
    else:
        ctx.report.changed(
            node,
            "IPv6 clients are counted by their /64 (ipv6_prefix_length), IIS counts each address",
        )
    ctx.modules.add("security.dynamic_ip")


def _use_if_enabled(child: Node, level: Level, ctx: Context, section: str, module: str) -> None:
    """Enable ``module`` where IIS enabled the scheme; a scheme IIS has off is
    written only where another level enables the module (it costs nothing then)."""
    if child.flag("enabled", False):
        ctx.modules.add(module)
    else:
        level.optional[section] = module


def authentication(node: Node, level: Level, ctx: Context) -> None:
    """``security/authentication/*`` → the authentication modules' sections."""
    node.visited = True
    for child in node.children:
        if child.name == "anonymousauthentication":
            level.table("anonymous_authentication", child).set(
                "enabled", child.flag("enabled", True), _source(child)
            )
            ctx.modules.add("auth.anonymous")
            if child.get("userName") is not None:
                ctx.report.changed(child, "userName: anonymous requests run as the pool's user")
            else:
                ctx.report.converted(child, "[anonymous_authentication]")
        elif child.name == "basicauthentication":
            table = level.table("basic_authentication", child)
            table.set("enabled", False, _source(child))
            if child.get("realm"):
                table.set("realm", child.get("realm"))
            _use_if_enabled(child, level, ctx, "basic_authentication", "auth.basic")
            if child.flag("enabled", False):
                # IIS checks Windows accounts; which store replaces them is the
                # administrator's choice. Off fails closed: no one logs on.
                ctx.report.skipped(
                    child,
                    "Windows accounts: written off; set basic_authentication.user_file"
                    " (htpasswd) or pam, then enabled = true",
                )
            else:
                ctx.report.converted(child, "basic_authentication.enabled = false")
        elif child.name == "windowsauthentication":
            level.table("windows_authentication", child).set(
                "enabled", child.flag("enabled", False), _source(child)
            )
            _use_if_enabled(child, level, ctx, "windows_authentication", "auth.negotiate")
            ctx.report.changed(
                child, "Negotiate with Kerberos only (keytab); NTLM providers are not converted"
            )
        elif child.name == "clientcertificatemappingauthentication":
            level.table("client_certificate_mapping_authentication", child).set(
                "enabled", child.flag("enabled", False), _source(child)
            )
            _use_if_enabled(
                child,
                level,
                ctx,
                "client_certificate_mapping_authentication",
                "auth.client_certificate",
            )
            ctx.report.changed(
                child, "Active Directory mapping is not converted; add one_to_one mappings"
            )
        else:
            ctx.report.skipped(child, NEAREST.get(child.name, "no counterpart"))


# -- rewrite ---------------------------------------------------------------------------

_SYNTAX = {"ecmascript": "regex", "wildcard": "wildcard", "exactmatch": "exact"}
_MATCH_TYPES = {"pattern": "pattern", "isfile": "is_file", "isdirectory": "is_directory"}
_ACTIONS = {
    "rewrite": "rewrite",
    "redirect": "redirect",
    "customresponse": "custom_response",
    "abortrequest": "abort",
    "none": "none",
}


def rewrite(node: Node, level: Level, ctx: Context) -> None:
    """``rewrite`` (rules, globalRules, rewriteMaps, allowedServerVariables) → ``[rewrite]``."""
    ctx.modules.add("rewrite")
    for child in node.children:
        name = child.name
        if name in ("rules", "globalrules"):
            if name == "globalrules" and not level.server:
                ctx.report.skipped(child, "globalRules belong in applicationHost.config")
                continue
            target = "rewrite.rules" if name == "rules" else "rewrite.global_rules"
            for rule in child.children:
                if rule.name == "rule":
                    _rule(rule, level, ctx, target)
                elif rule.name == "clear":
                    # Colonnade's distributed rules never replace the parent's:
                    # both run, as IIS runs them unless a child clears.
                    if level.server:
                        ctx.report.converted(rule, "nothing inherited at this level")
                    else:
                        ctx.report.changed(
                            rule, "inherited rules still run before these (no clear)"
                        )
                else:
                    ctx.report.skipped(rule, "unknown element of rules")
            ctx.report.converted(child, target)
        elif name == "rewritemaps":
            child.visited = True
            for entry in child.children:
                if entry.name == "rewritemap":
                    _map(entry, level, ctx)
                else:
                    ctx.report.skipped(entry, "unknown element of rewriteMaps")
        elif name == "allowedservervariables":
            if not level.server:
                ctx.report.skipped(
                    child, "allowedServerVariables may be set in the server file only"
                )
                continue
            names = [c.get("name") for c in child.each("add") if c.get("name")]
            level.table("rewrite", child).set("allowed_server_variables", names, _source(child))
            ctx.report.converted(child, "rewrite.allowed_server_variables")
        elif name == "outboundrules":
            _outbound_rules(child, level, ctx)
        elif name == "providers":
            ctx.report.skipped(child, "rewrite providers (.NET): no counterpart; use a rewrite map")
        else:
            ctx.report.skipped(child, "unknown element of rewrite")


def _rule(node: Node, level: Level, ctx: Context, target: str) -> None:
    match = node.child("match")
    action = node.child("action")
    if match is None or action is None or match.get("url") is None:
        ctx.report.skipped(node, "a rule needs <match url> and <action>")
        return
    kind = (action.get("type") or "None").lower()
    if kind not in _ACTIONS:
        ctx.report.skipped(node, f"action {action.get('type')!r} has no counterpart")
        return
    syntax = _SYNTAX.get((node.get("patternSyntax") or "ECMAScript").lower())
    if syntax is None:
        ctx.report.skipped(node, f"patternSyntax {node.get('patternSyntax')!r}")
        return
    if match.flag("negate", False) and _BACK_REFERENCE.search(_templates(node, action)):
        # Colonnade refuses such a rule when the configuration loads.
        ctx.report.skipped(
            node, "{R:n} of a negated pattern: it captures nothing (Colonnade refuses the rule)"
        )
        return
    changes: list[str] = []
    done = f"[[{target}]] {node.get('name')!r}"
    route: tuple[str, str] | None = None
    if kind == "rewrite" and "://" in (action.get("url") or ""):
        route = _farm_route(node, action, ctx, target, changes)
        if route is None:
            ctx.report.skipped(
                node,
                "a rewrite to another host is a reverse proxy (ARR): nearest is handler.proxy"
                " (a [[handlers]] entry, [proxy] upstream or farm)",
            )
            return
        done += f", a route to [farms.{route[1]}] (handler.proxy)"
        # What it became, then how its meaning changed (most lines for routes).
        changes.insert(0, done)
    block = level.entry(target, node)
    block.set("name", node.get("name") or f"rule at line {node.line}")
    if not node.flag("enabled", True):
        block.set("enabled", False)
    block.set("pattern", match.get("url") or "")
    if syntax != "regex":
        block.set("pattern_syntax", syntax)
    if match.flag("negate", False):
        block.set("negate", True)
    if not match.flag("ignoreCase", True):
        block.set("ignore_case", False)
    conditions = node.child("conditions")
    if conditions is not None:
        if (conditions.get("logicalGrouping") or "").lower() == "matchany":
            block.set("logical_grouping", "match_any")
        if conditions.flag("trackAllCaptures", False):
            block.set("track_all_captures", True)
        items = _conditions(conditions, ctx) or []
        if items:
            block.set("conditions", items)
    variables = node.child("serverVariables")
    if variables is not None:
        sets = [
            {
                "name": v.get("name"),
                "value": v.get("value") or "",
                "replace": v.flag("replace", True),
            }
            for v in variables.each("set")
            if v.get("name")
        ]
        if sets:
            block.set("server_variables", sets)
    out = _action(action, kind, changes)
    if route is not None:
        out["url"] = route[0]
    block.set("action", out)
    if node.flag("stopProcessing", False):
        block.set("stop_processing", True)
    if action.flag("logRewrittenUrl", False):
        changes.append("logRewrittenUrl is not converted")
    if len(changes) > (1 if route is not None else 0):
        ctx.report.changed(node, "; ".join(changes))
    else:
        ctx.report.converted(node, done)


_BACK_REFERENCE = re.compile(r"\{R:\d", re.IGNORECASE)


def _templates(rule: Node, action: Node) -> str:
    """The text of a rule's templates (action URL, conditions' inputs, server
    variables' values), to look for back-references in."""
    texts = [action.get("url") or ""]
    for part in rule.children:
        if part.name in ("conditions", "servervariables"):
            texts.extend(c.attrs.get("input") or c.attrs.get("value") or "" for c in part.children)
    return "\n".join(texts)


def _conditions(node: Node, ctx: Context, *, files: bool = True) -> list[dict[str, Any]] | None:
    """``conditions``/``preCondition`` entries. One that cannot be converted is
    reported and left out (inbound rules, ``files``), or fails them all (None)."""
    items = []
    for cond in node.children:
        if cond.name != "add":
            ctx.report.skipped(cond, "unknown element of conditions")
            continue
        cond.visited = True
        item: dict[str, Any] = {"input": cond.get("input") or ""}
        match_type = _MATCH_TYPES.get((cond.get("matchType") or "Pattern").lower())
        if match_type is None or (match_type != "pattern" and not files):
            ctx.report.skipped(cond, f"matchType {cond.get('matchType')!r}")
            if files:
                continue
            return None
        if match_type != "pattern":
            item["match_type"] = match_type
        elif cond.get("pattern") is not None:
            item["pattern"] = cond.get("pattern")
        if cond.flag("negate", False):
            item["negate"] = True
        if not cond.flag("ignoreCase", True):
            item["ignore_case"] = False
        items.append(item)
    return items


def _outbound_rules(node: Node, level: Level, ctx: Context) -> None:
    """``outboundRules``: rules on response headers → ``rewrite.outbound_rules``;
    ``preConditions`` → ``rewrite.preconditions``; body rules are not converted."""
    rules: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    cleared = False
    for child in node.children:
        if child.name == "rule":
            rule = _outbound_rule(child, level, ctx)
            if rule is not None:
                rules.append(rule)
        elif child.name == "preconditions":
            child.visited = True
            for pre in child.children:
                if pre.name == "precondition" and pre.get("name"):
                    _precondition(pre, level, ctx)
                else:
                    ctx.report.skipped(pre, "unknown element of preConditions")
        elif child.name == "clear":
            cleared = True
            rules.clear()
            removed.clear()
            ctx.report.converted(child, "outbound_rules clear = true")
        elif child.name == "remove" and child.get("name") and level.server:
            ctx.report.converted(child, "nothing inherited at this level")
        elif child.name == "remove" and child.get("name"):
            removed.append({"name": child.get("name")})
            ctx.report.converted(child, "outbound_rules remove")
        else:
            ctx.report.skipped(child, "unknown element of outboundRules")
    if node.get("rewriteBeforeCache") is not None:
        ctx.report.skipped(node, "rewriteBeforeCache: for body rules only, which do not convert")
    if rules or cleared or removed:
        ops: dict[str, Any] = {"clear": True} if cleared else {}
        if removed:
            ops["remove"] = removed
        if rules:
            ops["add"] = rules
        table = level.table("rewrite", node)
        table.set("outbound_rules", rules if level.server and not cleared else ops)
    ctx.report.converted(node, "rewrite.outbound_rules")


def _precondition(node: Node, level: Level, ctx: Context) -> None:
    name = node.get("name") or ""
    items = _conditions(node, ctx, files=False)
    if items is None:
        ctx.report.skipped(node, "a precondition with a condition that does not convert")
        return
    table = level.table(f"rewrite.preconditions.{key(name)}", node)
    if (node.get("logicalGrouping") or "").lower() == "matchany":
        table.set("logical_grouping", "match_any")
    syntax = _SYNTAX.get((node.get("patternSyntax") or "ECMAScript").lower())
    if syntax is None:
        ctx.report.skipped(node, f"patternSyntax {node.get('patternSyntax')!r}")
        return
    if syntax != "regex":
        table.set("pattern_syntax", syntax)
    table.set("conditions", items)
    ctx.report.converted(node, f"rewrite.preconditions.{name}")


def _outbound_rule(node: Node, level: Level, ctx: Context) -> dict[str, Any] | None:
    match = node.child("match")
    action = node.child("action")
    name = node.get("name") or f"outbound rule at line {node.line}"
    variable = match.get("serverVariable") if match is not None else None
    if match is None or action is None:
        ctx.report.skipped(node, "an outbound rule needs <match> and <action>")
        return None
    if not variable:
        match.get("filterByTags")
        match.get("customTags")
        ctx.report.skipped(
            node,
            "an outbound rule on the response body (filterByTags): no counterpart"
            " (Colonnade's outbound rules rewrite response headers)",
        )
        return None
    kind = (action.get("type") or "None").lower()
    syntax = _SYNTAX.get((node.get("patternSyntax") or "ECMAScript").lower())
    header = variable.upper().removeprefix("RESPONSE_").replace("-", "_")
    if not variable.upper().startswith("RESPONSE_") or kind not in ("rewrite", "none"):
        ctx.report.skipped(node, f"{variable!r} / action {action.get('type')!r}: no counterpart")
        return None
    if syntax is None:
        ctx.report.skipped(node, f"patternSyntax {node.get('patternSyntax')!r}")
        return None
    if header == "SERVER":
        _server_header(node, action, level, ctx)
        return None
    if header in ("DATE", "CONTENT_LENGTH", "TRANSFER_ENCODING", "CONNECTION"):
        ctx.report.skipped(node, f"{variable}: written by the server, not rewritable")
        return None
    rule: dict[str, Any] = {"name": name}
    if not node.flag("enabled", True):
        rule["enabled"] = False
    rule["server_variable"] = "RESPONSE_" + variable[9:].replace("-", "_")
    rule["pattern"] = match.get("pattern") or ""
    if syntax != "regex":
        rule["pattern_syntax"] = syntax
    if match.flag("negate", False):
        rule["negate"] = True
    if not match.flag("ignoreCase", True):
        rule["ignore_case"] = False
    if node.get("preCondition"):
        rule["precondition"] = node.get("preCondition")
    conditions = node.child("conditions")
    if conditions is not None:
        items = _conditions(conditions, ctx, files=False)
        if items is None:
            ctx.report.skipped(node, "a condition that does not convert")
            return None
        if (conditions.get("logicalGrouping") or "").lower() == "matchany":
            rule["logical_grouping"] = "match_any"
        if conditions.flag("trackAllCaptures", False):
            rule["track_all_captures"] = True
        if items:
            rule["conditions"] = items
    rule["action"] = (
        {"type": "rewrite", "value": action.get("value") or ""}
        if kind == "rewrite"
        else {"type": "none"}
    )
    if node.flag("stopProcessing", False):
        rule["stop_processing"] = True
    ctx.report.converted(node, f"rewrite.outbound_rules {name!r} on {variable}")
    return rule


def _server_header(node: Node, action: Node, level: Level, ctx: Context) -> None:
    """The classic rule on ``RESPONSE_SERVER``: Colonnade writes that header itself."""
    value = action.get("value") or ""
    if not level.server:
        ctx.report.skipped(
            node, "RESPONSE_SERVER: the server writes it; nearest is [server] server_header"
        )
        return
    ctx.server_header = (value, node)
    ctx.report.changed(
        node,
        f"[server] server_header = {value!r}: every response of every site"
        " (the rule's pattern, conditions and precondition are not applied)",
    )


def _action(action: Node, kind: str, changes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _ACTIONS[kind]}
    if kind in ("rewrite", "redirect"):
        out["url"] = action.get("url") or ""
        if not action.flag("appendQueryString", True):
            out["append_query_string"] = False
    if kind == "redirect":
        out["redirect_type"] = action.get("redirectType") or "Permanent"
    if kind == "customresponse":
        out["status_code"] = int(action.get("statusCode") or "200")
        if action.get("subStatusCode"):
            out["sub_status"] = int(action.get("subStatusCode") or "0")
        if action.get("statusReason"):
            out["reason"] = action.get("statusReason")
        if action.get("statusDescription"):
            out["description"] = action.get("statusDescription")
        if action.get("url"):
            changes.append("a CustomResponse's url is ignored by IIS too: dropped")
    return out


# -- ARR: web farms, and the rules that send requests to them -----------------------------

_ALGORITHMS = {
    "weightedroundrobin": "weighted_round_robin",
    "leastrequests": "least_requests",
    "leastresponsetime": "least_response_time",
    "requesthash": "request_hash",
}


def _farm_route(
    node: Node, action: Node, ctx: Context, target: str, changes: list[str]
) -> tuple[str, str] | None:
    """The URL of a rule that rewrites to ``http://FARM/...`` (ARR's rule for a
    farm), written with the farm's Colonnade name, and that name: Colonnade's
    rewrite routes it to the farm as ARR does. None (reported by the caller)
    when FARM is no web farm of the input."""
    scheme, _, rest = (action.get("url") or "").partition("://")
    host, slash, tail = rest.partition("/")
    farm = ctx.farm_names.get(host.lower())
    if farm is None or scheme.lower() not in ("http", "https"):
        return None
    ctx.modules.add("handler.proxy")
    url = f"http://{farm}/{tail}" if slash else f"http://{farm}"
    if scheme.lower() == "https":
        changes.append(
            f"https://{host}/ → http://{farm}/: the members are reached as their"
            " [farms] addresses say (plain HTTP), not over TLS"
        )
    if target == "rewrite.rules":
        ctx.allowed_farms.setdefault(farm, node)
        changes.append(
            f"rewrite.allowed_farms of the server file lists {farm!r}: IIS lets any"
            " web.config rule route to any farm, Colonnade only to the farms the server"
            " file allows"
        )
    if not node.flag("stopProcessing", False):
        changes.append(
            "a route ends rule processing: no rule after it runs"
            " (IIS goes on to the next rule: stopProcessing is false)"
        )
    return url, farm


def farm_names(root: Node) -> dict[str, str]:
    """The ``webFarm`` names of one ``<configuration>`` (read again by :func:`web_farms`)."""
    names: dict[str, str] = {}
    for group in (c for c in root.children if c.name == "webfarms"):
        for farm in (c for c in group.children if c.name == "webfarm"):
            name = farm.attrs.get("name") or ""
            # Colonnade's farm names: letters, digits, "_.-", a letter or digit first.
            safe = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in name)
            if safe.lstrip("_.-"):
                names[name.lower()] = safe.lstrip("_.-")[:64]
    return names


def web_farms(node: Node, ctx: Context) -> None:
    """ARR's ``webFarms/webFarm`` → ``[farms.NAME]``, its members and health."""
    node.visited = True
    for farm in node.children:
        if farm.name != "webfarm":
            ctx.report.skipped(farm, "ARR server-wide settings: no counterpart")
            continue
        name = ctx.farm_names.get((farm.get("name") or "").lower()) or ""
        if not name:
            ctx.report.skipped(farm, "a web farm needs a name with a letter or digit")
            continue
        if not farm.flag("enabled", True):
            ctx.report.skipped(farm, "a disabled farm: not written")
            continue
        head = Block(f"farms.{key(name)}", source=f"{farm.where} <{farm.path}>")
        members: list[Block] = []
        changes: list[str] = []
        for server in farm.each("server"):
            member = _farm_member(server, name, ctx, changes)
            if member is not None:
                members.append(member)
        if not members:
            ctx.report.skipped(farm, "a farm without an enabled member cannot serve")
            continue
        health: Block | None = None
        arr = farm.child("applicationRequestRouting")
        for child in arr.children if arr is not None else []:
            if child.name == "loadbalancing":
                _farm_balancing(child, head, ctx)
            elif child.name == "affinity":
                head.set("affinity", child.flag("useCookie", False))
                if child.get("cookieName"):
                    head.set("affinity_cookie", child.get("cookieName"))
                ctx.report.converted(child, "affinity, affinity_cookie")
            elif child.name == "healthcheck":
                health = _farm_health(child, name, ctx)
            elif child.name == "protocol":
                ctx.report.skipped(
                    child, "ARR's protocol settings: nearest is [proxy] (timeouts, host header)"
                )
            else:
                ctx.report.skipped(child, "no counterpart")
        ctx.farms.extend([head, *members, *([health] if health is not None else [])])
        if changes:
            ctx.report.changed(farm, f"[farms.{name}]: " + "; ".join(changes))
        else:
            ctx.report.converted(farm, f"[farms.{name}]")
    ctx.report.converted(node, "[farms]")


def _farm_member(server: Node, farm: str, ctx: Context, changes: list[str]) -> Block | None:
    address = server.get("address") or ""
    if not address or any(c in address for c in "/ "):
        ctx.report.skipped(server, f"address {address!r}: a host name or address is needed")
        return None
    if not server.flag("enabled", True):
        ctx.report.changed(
            server, f"{address} is disabled: left out (add it back to [farms] to use it)"
        )
        return None
    arr = server.child("applicationRequestRouting")
    port = (arr.get("httpPort") if arr is not None else None) or "80"
    weight = int((arr.get("weight") if arr is not None else None) or "100")
    if arr is not None:
        arr.get("httpsPort")
    host = f"[{address}]" if ":" in address else address
    member = Block(
        f"farms.{key(farm)}.members", array=True, source=f"{server.where} <{server.path}>"
    )
    member.set("address", f"http://{host}:{port}" if port != "80" else f"http://{host}")
    # ARR weighs members 0-100 by default; Colonnade 1-1000, in the same proportions.
    if not 1 <= weight <= 1000:
        changes.append(f"{address}: weight {weight} written as {min(max(weight, 1), 1000)}")
    member.set("weight", min(max(weight, 1), 1000))
    ctx.report.converted(server, f"member {member.values[0][1]}")
    return member


def _farm_balancing(node: Node, head: Block, ctx: Context) -> None:
    algorithm = (node.get("algorithm") or "WeightedRoundRobin").lower()
    mapped = _ALGORITHMS.get(algorithm)
    if mapped is None:
        head.set("algorithm", "weighted_round_robin")
        ctx.report.changed(
            node, f"algorithm {node.get('algorithm')!r}: no counterpart; weighted_round_robin"
        )
        return
    head.set("algorithm", mapped)
    variable = (node.get("hashServerVariable") or "").strip()
    if node.get("queryStringNames"):
        ctx.report.changed(node, "queryStringNames: the whole URL is hashed (hash_by = url)")
        return
    if mapped == "request_hash" and variable:
        upper = variable.upper()
        if upper == "REMOTE_ADDR":
            head.set("hash_by", "client")
        elif upper in ("URL", "PATH_INFO", "SCRIPT_NAME"):
            head.set("hash_by", "path")
        elif upper.startswith("HTTP_"):
            head.set("hash_by", "header:" + "-".join(p.title() for p in upper[5:].split("_")))
        else:
            ctx.report.changed(node, f"hashServerVariable {variable}: hash_by = url")
            return
    ctx.report.converted(node, f"algorithm = {mapped!r}")


def _farm_health(node: Node, farm: str, ctx: Context) -> Block | None:
    from urllib.parse import urlsplit

    block = Block(f"farms.{key(farm)}.health", source=f"{node.where} <{node.path}>")
    url = node.get("url")
    if url:
        parts = urlsplit(url)
        block.set("url", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        # ARR asks with the URL's host; the farm's own name means "each member".
        if parts.hostname and parts.hostname.lower() != farm.lower():
            block.set("host", parts.netloc)
    for attr, name in (("interval", "interval"), ("timeout", "timeout")):
        seconds = _timespan(node.get(attr) or "")
        if seconds is not None and seconds > 0:
            block.set(name, seconds)
    if node.get("statusCodeMatch"):
        block.set("statuses", node.get("statusCodeMatch"))
    if node.get("responseMatch"):
        block.set("body_match", node.get("responseMatch"))
    if node.get("minServers") not in (None, "0"):
        ctx.report.changed(node, "minServers: no counterpart (members are judged one by one)")
    else:
        ctx.report.converted(node, f"[farms.{farm}.health]")
    return block if block.values else None


def _map(node: Node, level: Level, ctx: Context) -> None:
    name = node.get("name")
    if not name:
        ctx.report.skipped(node, "a rewrite map needs a name")
        return
    block = level.table(f"rewrite.maps.{key(name)}", node)
    if node.get("defaultValue") is not None:
        block.set("default", node.get("defaultValue"))
    if node.get("ignoreCase") is not None:
        block.set("ignore_case", node.flag("ignoreCase", True))
    entries = {c.get("key") or "": c.get("value") or "" for c in node.each("add")}
    block.set("entries", entries)
    ctx.report.converted(node, f"rewrite.maps.{name} ({len(entries)} entries)")


# -- handlers --------------------------------------------------------------------------


_RESOURCE = {
    "file": "file",
    "directory": "directory",
    "either": "either",
    "unspecified": "unspecified",
}


def handlers(node: Node, level: Level, ctx: Context) -> None:
    """``handlers``: FastCGI mappings → ``[[handlers]]`` to ``handler.fastcgi``,
    static ones to ``handler.static``; the rest reported."""
    if not level.app_root:
        ctx.report.skipped(
            node, "handler mappings below an application's root: set them at its root"
        )
        return
    for child in node.children:
        if child.name == "clear":
            ctx.report.changed(
                child, "the server's mappings are still tried after these (no clear)"
            )
            continue
        if child.name == "remove":
            ctx.report.changed(
                child, "a mapping cannot be removed; the entries here are tried first"
            )
            continue
        if child.name != "add":
            ctx.report.skipped(child, "unknown element of handlers")
            continue
        modules = (child.get("modules") or "").lower()
        path = child.get("path") or "*"
        if "fastcgimodule" in modules:
            _fastcgi_mapping(child, level, ctx, path)
        elif "staticfilemodule" in modules:
            _mapping(child, level, path, "handler.static")
            ctx.report.converted(child, f"[[handlers]] {path} → handler.static")
        elif "cgimodule" in modules:
            _cgi_mapping(child, level, ctx, path)
        else:
            ctx.report.skipped(
                child,
                f"handler {child.get('name')!r}"
                f" ({child.get('modules') or child.get('type')}): no counterpart",
            )
    if node.get("accessPolicy") is not None:
        ctx.report.changed(
            node, "accessPolicy: Colonnade runs mapped scripts; Unix permissions decide the rest"
        )


def _mapping(child: Node, level: Level, path: str, handler: str) -> None:
    """One ``[[handlers]]`` entry from a handler ``<add>``."""
    entry = level.entry("handlers", child)
    entry.set("path", path)
    entry.set("handler", handler)
    verbs = [v.strip().upper() for v in (child.get("verb") or "*").split(",") if v.strip()]
    if verbs != ["*"]:
        entry.set("verbs", verbs)
    resource = _RESOURCE.get((child.get("resourceType") or "Unspecified").lower())
    if resource and resource != "unspecified":
        entry.set("resource_type", resource)
    if child.get("name"):
        entry.set("name", child.get("name"))
    # The mapping itself is the access Colonnade gives (Read for static files,
    # Script for FastCGI): IIS's requireAccess has nothing further to say here.
    child.get("requireAccess")


def _fastcgi_mapping(child: Node, level: Level, ctx: Context, path: str) -> None:
    processor = child.get("scriptProcessor") or ""
    program, _, arguments = processor.partition("|")
    local = ctx.local_path(child, program) if program else None
    name = "php" if "php" in program.lower() else f"app{len(ctx.fastcgi) + 1}"
    if name not in ctx.fastcgi:
        settings: dict[str, Any] = {"program": local or "/usr/bin/php-cgi"}
        if arguments:
            settings["arguments"] = arguments.split()
        ctx.fastcgi[name] = settings
        ctx.fastcgi_sources[name] = child
    _mapping(child, level, path, "handler.fastcgi")
    ctx.modules.add("handler.fastcgi")
    if local is None:
        ctx.report.changed(
            child, f"scriptProcessor {program!r} has no --path-map: /usr/bin/php-cgi is used"
        )
    else:
        ctx.report.converted(child, f"[[handlers]] {path} → handler.fastcgi ({name})")


def _cgi_mapping(child: Node, level: Level, ctx: Context, path: str) -> None:
    _mapping(child, level, path, "handler.cgi")
    ctx.modules.add("handler.cgi")
    # handler.cgi splits path info off every script's URL (where a mapping such
    # as /cgi-bin/* reaches /tool.cgi/x): nothing to switch on.
    child.get("allowPathInfo")
    done = f"[[handlers]] {path} → handler.cgi (list the scripts in [cgi] allowed_programs)"
    processor = child.get("scriptProcessor")
    if processor:
        ctx.report.changed(
            child,
            f'{done}; scriptProcessor "{processor}" is not used:'
            " a script runs by its #! line (make it executable)",
        )
    else:
        ctx.report.converted(child, done)


def cgi(node: Node, level: Level, ctx: Context) -> None:
    """``system.webServer/cgi`` → ``[cgi] timeout`` (written when handler.cgi is in use)."""
    table = level.table("cgi", node)
    level.optional["cgi"] = "handler.cgi"
    seconds = _timespan(node.get("timeout") or "")
    if seconds is not None:
        table.set("timeout", seconds, _source(node))
    changes = []
    if node.get("createProcessAsUser") is not None:
        changes.append("createProcessAsUser: scripts run as the pool's user")
    if node.get("createCGIWithNewConsole") is not None:
        changes.append("createCGIWithNewConsole: no console on Linux")
    done = "[cgi] (written where a CGI mapping puts handler.cgi in use)"
    if changes:
        ctx.report.changed(node, f"{done}; " + "; ".join(changes))
    else:
        ctx.report.converted(node, done)


def isapi_cgi_restriction(node: Node, level: Level, ctx: Context) -> None:
    """``security/isapiCgiRestriction`` (server only) → ``[cgi] allowed_programs``,
    ``not_listed_allowed``; ISAPI entries reported."""
    if not level.server:
        ctx.report.skipped(node, "isapiCgiRestriction may be set in applicationHost.config only")
        return
    table = level.table("cgi", node)
    level.optional["cgi"] = "handler.cgi"
    if node.get("notListedCgisAllowed") is not None:
        table.set("not_listed_allowed", node.flag("notListedCgisAllowed", False), _source(node))
    node.get("notListedIsapisAllowed")  # ISAPI: nothing to allow
    allowed: list[str] = []
    for entry in node.children:
        text = (entry.get("path") or "").strip()
        program = text.strip('"')
        if entry.name == "clear":
            allowed.clear()
            ctx.report.converted(entry, "nothing inherited at this level")
            continue
        if entry.name != "add" or not text:
            ctx.report.skipped(entry, "only <add path> entries are converted")
            continue
        entry.get("groupId")
        entry.get("description")
        if program.lower().endswith(".dll"):
            ctx.report.skipped(entry, "an ISAPI extension: no counterpart")
            continue
        if not entry.flag("allowed", False):
            ctx.report.converted(entry, "not allowed: refused as any unlisted script is")
            continue
        if '"' in program or "%s" in program.lower():
            ctx.report.skipped(
                entry,
                "an interpreter with arguments: allowed_programs lists the scripts,"
                " which run by their #! line",
            )
            continue
        local = ctx.local_path(entry, program)
        if local is None or not local.startswith("/"):
            ctx.report.skipped(entry, f"{program}: no --path-map for it")
            continue
        allowed.append(local)
        ctx.report.converted(entry, f"[cgi] allowed_programs {local}")
    if allowed:
        table.set("allowed_programs", allowed, _source(node))
    ctx.report.converted(node, "[cgi] (written where a CGI mapping puts handler.cgi in use)")


def fastcgi(node: Node, level: Level, ctx: Context) -> None:
    """``fastCgi/application`` → ``[fastcgi.applications.NAME]`` (server file only)."""
    for app in node.children:
        if app.name != "application" or not app.get("fullPath"):
            ctx.report.skipped(app, "only <application fullPath> entries are converted")
            continue
        program = app.get("fullPath") or ""
        name = "php" if "php" in program.lower() else f"app{len(ctx.fastcgi) + 1}"
        local = ctx.local_path(app, program)
        settings = ctx.fastcgi.setdefault(name, {"program": local or "/usr/bin/php-cgi"})
        ctx.fastcgi_sources.setdefault(name, app)
        if app.get("arguments"):
            settings["arguments"] = (app.get("arguments") or "").split()
        for attr, key_name in (
            ("maxInstances", "max_instances"),
            ("instanceMaxRequests", "instance_max_requests"),
            ("queueLength", "queue_length"),
            ("rapidFailsPerMinute", "rapid_fails_per_minute"),
        ):
            if (app.get(attr) or "").isdigit():
                settings[key_name] = int(app.get(attr) or "0")
        for attr, key_name in (
            ("activityTimeout", "activity_timeout"),
            ("requestTimeout", "request_timeout"),
            ("idleTimeout", "idle_timeout"),
        ):
            if (app.get(attr) or "").isdigit():
                settings[key_name] = float(app.get(attr) or "0")
        variables = app.child("environmentVariables")
        if variables is not None:
            settings["environment"] = {
                v.get("name") or "": v.get("value") or ""
                for v in variables.each("environmentVariable")
            }
        if local is None:
            ctx.report.changed(
                app, f"fullPath {program!r} has no --path-map: /usr/bin/php-cgi is used"
            )
        else:
            ctx.report.converted(app, f"[fastcgi.applications.{name}]")
    node.visited = True


# -- compression, caching --------------------------------------------------------------


def url_compression(node: Node, level: Level, ctx: Context) -> None:
    """``urlCompression`` → ``[compression]`` static/dynamic."""
    table = level.table("compression", node)
    for attr, name in (("doStaticCompression", "static"), ("doDynamicCompression", "dynamic")):
        if node.get(attr) is not None:
            table.set(name, node.flag(attr, True), _source(node))
    ctx.modules.add("http.compression")
    ctx.report.converted(node, "[compression]")


def http_compression(node: Node, level: Level, ctx: Context) -> None:
    """``httpCompression`` → ``[compression]`` where it has a counterpart."""
    table = level.table("compression", node)
    if node.get("minFileSizeForComp") is not None:
        table.set("min_size", int(node.get("minFileSizeForComp") or "2700"), _source(node))
    for attr, name in (
        ("noCompressionForRange", "no_compression_for_range"),
        ("noCompressionForHttp10", "no_compression_for_http10"),
    ):
        if node.get(attr) is not None:
            table.set(name, node.flag(attr, True))
    types: list[str] = []
    for child in node.children:
        if child.name in ("statictypes", "dynamictypes"):
            child.visited = True
            for entry in child.children:
                kind = entry.get("mimeType") or ""
                if entry.name == "add" and entry.flag("enabled", True) and kind and kind != "*/*":
                    if kind not in types:
                        types.append(kind)
                    ctx.report.converted(entry, f"compression.mime_types {kind!r}")
                elif entry.name == "add":
                    ctx.report.converted(entry, "not enabled: not listed")
                else:
                    ctx.report.skipped(entry, "only <add> types are converted")
        elif child.name == "scheme":
            ctx.report.changed(child, "IIS's compression DLLs: Colonnade offers br, zstd and gzip")
        else:
            ctx.report.skipped(child, "no counterpart")
    if types:
        table.set("mime_types", types)
        ctx.report.changed(
            node, "staticTypes and dynamicTypes become one list, compression.mime_types"
        )
    else:
        ctx.report.converted(node, "[compression]")
    ctx.modules.add("http.compression")


def http_logging(node: Node, level: Level, ctx: Context) -> None:
    """``httpLogging`` → ``[http_logging]`` ``enabled``, ``selective``."""
    table = level.table("http_logging", node)
    if node.get("dontLog") is not None:
        table.set("enabled", not node.flag("dontLog", False), _source(node))
    selective = (node.get("selectiveLogging") or "").lower()
    if selective:
        choice = {"logall": "all", "logsuccessful": "success", "logerror": "error"}.get(selective)
        if choice is None:
            ctx.report.skipped(node, f"selectiveLogging {node.get('selectiveLogging')!r}")
            return
        table.set("selective", choice)
    ctx.report.converted(node, "[http_logging]")


def access(node: Node, level: Level, ctx: Context) -> None:
    """``security/access sslFlags`` → ``[ssl_settings] require_ssl``."""
    flags = {f.strip().lower() for f in (node.get("sslFlags") or "None").split(",") if f.strip()}
    table = level.table("ssl_settings", node)
    table.set("require_ssl", "ssl" in flags, _source(node))
    if "ssl" in flags:
        ctx.modules.add("security.ssl")
    else:
        # Nothing required: written only where another level uses the module.
        level.optional["ssl_settings"] = "security.ssl"
    if flags & {"sslnegotiatecert", "sslrequirecert"}:
        ctx.report.changed(
            node,
            "client certificates: ask for them in the site's handshake ([sites.tls]"
            " client_certificates and client_ca), then ssl_settings.client_certificates",
        )
    elif "ssl128" in flags:
        ctx.report.changed(node, "Ssl128: every cipher Colonnade offers is 128-bit or stronger")
    else:
        ctx.report.converted(node, "[ssl_settings] require_ssl")


_POLICIES = {
    "dontcache": "dont_cache",
    "cacheuntilchange": "until_change",
    "cachefortimeperiod": "for_time_period",
    "disablecache": "disable_cache",
}
#: The policies that store responses.
_CACHING = ("until_change", "for_time_period")


def caching(node: Node, level: Level, ctx: Context) -> None:
    """``caching`` profiles → ``[output_cache]``."""
    table = level.table("output_cache", node)
    if node.get("enabled") is not None:
        table.set("enabled", node.flag("enabled", True), _source(node))
    if node.get("maxResponseSize") is not None:
        table.set("max_response_size", int(node.get("maxResponseSize") or "262144"))
    profiles = []
    for child in node.children:
        if child.name != "profiles":
            ctx.report.skipped(child, "no counterpart")
            continue
        child.visited = True
        for entry in child.children:
            if entry.name != "add" or not entry.get("extension"):
                ctx.report.skipped(entry, "only <add extension> profiles are converted")
                continue
            policy = _POLICIES.get((entry.get("policy") or "DontCache").lower(), "dont_cache")
            profile: dict[str, Any] = {"extension": entry.get("extension"), "policy": policy}
            if policy == "for_time_period" and entry.get("duration"):
                seconds = _timespan(entry.get("duration") or "")
                if seconds:
                    profile["duration"] = seconds
            if entry.get("varyByQueryString") is not None:
                profile["vary_by_query_string"] = [
                    v.strip()
                    for v in (entry.get("varyByQueryString") or "").split(",")
                    if v.strip()
                ]
            if entry.get("varyByHeaders"):
                profile["vary_by_headers"] = [
                    v.strip() for v in (entry.get("varyByHeaders") or "").split(",")
                ]
            # The kernel cache's counterpart, the response cache, keeps what the output
            # cache stores (for its lifetime): on where kernelCachePolicy caches too
            # (IIS's default is DontCache, so a profile without it says false).
            kernel = _POLICIES.get(
                (entry.get("kernelCachePolicy") or "DontCache").lower(), "dont_cache"
            )
            if policy in _CACHING and kernel not in _CACHING:
                profile["response_cache"] = False
            profiles.append(profile)
            if kernel in _CACHING and kernel != policy:
                ctx.report.changed(
                    entry,
                    "kernelCachePolicy: the response cache keeps what the output cache"
                    " stores, for its lifetime (response_cache)",
                )
            else:
                ctx.report.converted(entry, "output_cache.profiles")
    if profiles:
        table.set("profiles", profiles)
    ctx.modules.add("cache.output")
    ctx.report.converted(node, "[output_cache]")


# -- serverRuntime ---------------------------------------------------------------------

#: IIS's request filtering body limit, which applies with serverRuntime's.
_IIS_CONTENT_LENGTH = 30_000_000
_RUNTIME_SKIPPED = {
    "appconcurrentrequestlimit": "503 past so many requests of an application: nearest are"
    " [pools.NAME] queue_length and [server.limits] max_connections",
    "uploadreadaheadsize": "bodies are read as the handler asks, not preloaded; client"
    " certificates are asked in the handshake ([sites.tls] client_certificates), never by"
    " renegotiation",
    "frequenthitthreshold": "the output cache stores a response from its first hit"
    " (nearest: [output_cache] profiles)",
    "frequenthittimeperiod": "the output cache stores a response from its first hit",
    "alternatehostname": "no counterpart: a redirect names the Host the client sent",
    "authenticateduseroverride": "requests run as the pool's user (pools.NAME.user)",
}


def server_runtime(node: Node, level: Level, ctx: Context) -> None:
    """``serverRuntime``: ``maxRequestEntityAllowed`` lowers the body limit; the rest
    is reported one attribute at a time, with the reason."""
    done: list[str] = []
    changes: list[str] = []
    if not node.flag("enabled", True):
        ctx.report.skipped(node, "enabled=false: no counterpart (the runtime is always on)")
    if node.get("enableNagling") is not None:
        if node.flag("enableNagling", False):
            ctx.report.skipped(node, "enableNagling=true: Colonnade never delays small writes")
        else:
            done.append("enableNagling=false: as Colonnade (TCP_NODELAY)")
    entity = node.get("maxRequestEntityAllowed")
    if entity is not None:
        if not entity.strip().isdigit():
            ctx.report.skipped(node, "maxRequestEntityAllowed is not a number")
        else:
            table = level.table("request_filtering", node)
            current = dict((k, v) for k, v, _ in table.values).get("max_allowed_content_length")
            limit = current if isinstance(current, int) else _IIS_CONTENT_LENGTH
            if int(entity) < limit:
                table.set("max_allowed_content_length", int(entity), _source(node))
                ctx.modules.add("security.request_filtering")
                changes.append(
                    f"maxRequestEntityAllowed {entity}: request_filtering."
                    "max_allowed_content_length (the lower of IIS's two body limits),"
                    " answered 413.1"
                )
            else:
                done.append(
                    f"maxRequestEntityAllowed {entity}: request_filtering."
                    f"max_allowed_content_length ({limit}) is the lower limit already"
                )
    for attr, why in _RUNTIME_SKIPPED.items():
        value = node.get(attr)
        if value is not None:
            ctx.report.skipped(node, f"{node.spelled.get(attr, attr)}={value}: {why}")
    if changes:
        ctx.report.changed(node, "; ".join(changes + done))
    elif done:
        ctx.report.converted(node, "; ".join(done))
    elif id(node) not in ctx.report.outcomes:
        ctx.report.converted(node, "IIS's defaults: nothing to write")


# -- tables ----------------------------------------------------------------------------

NEAREST: dict[str, str] = {
    "aspnetcore": (
        "ASP.NET Core module: host the app with handler.asgi / handler.wsgi, or proxy to it"
    ),
    "modules": "the module list is [server] modules; managed modules: application modules",
    "isapifilters": "ISAPI filters: no counterpart (a module of your own)",
    "asp": "classic ASP: no counterpart",
    "globalmodules": "[server] modules",
    "httptracing": "failed request tracing: no counterpart yet",
    "tracing": "failed request tracing: no counterpart yet",
    "serversideinclude": "no counterpart",
    "validation": "no counterpart (Colonnade validates every file strictly)",
    "webdav": "no counterpart",
    "logfile": "[http_logging] (log.http): W3C extended or JSON lines",
    "tracefailedrequestslogging": "failed request tracing: no counterpart yet",
    "applicationinitialization": 'pools start = "always"',
    "alwaysallowedurls": "no counterpart",
    "alwaysallowedquerystrings": "no counterpart",
    "requestfiltering": "[request_filtering]",
    "applicationdependencies": "no counterpart",
    "iiswebsocket": "WebSockets are always on for ASGI applications",
    "odbclogging": "no counterpart",
    "directorybrowse": "[directory_browse]",
    "management": "the admin API / colonnade command",
}

SECURITY: dict[str, Converter] = {
    "requestfiltering": request_filtering,
    "authorization": authorization,
    "ipsecurity": ip_security,
    "dynamicipsecurity": dynamic_ip_security,
    "authentication": authentication,
    "access": access,
    "isapicgirestriction": isapi_cgi_restriction,
}

WEBSERVER: dict[str, Converter] = {
    "defaultdocument": default_document,
    "directorybrowse": directory_browse,
    "staticcontent": static_content,
    "httpprotocol": http_protocol,
    "httperrors": http_errors,
    "httpredirect": http_redirect,
    "security": security,
    "rewrite": rewrite,
    "handlers": handlers,
    "urlcompression": url_compression,
    "httpcompression": http_compression,
    "caching": caching,
    "fastcgi": fastcgi,
    "cgi": cgi,
    "httplogging": http_logging,
    "serverruntime": server_runtime,
}


#: IIS section path (below ``system.webServer``, lower-cased) → Colonnade section.
SECTIONS: dict[str, str] = {
    "defaultdocument": "default_document",
    "directorybrowse": "directory_browse",
    "staticcontent": "static_content",
    "httpprotocol": "custom_headers",
    "httperrors": "custom_errors",
    "httpredirect": "redirection",
    "security/requestfiltering": "request_filtering",
    "security/authorization": "url_authorization",
    "security/ipsecurity": "ip_security",
    "security/dynamicipsecurity": "dynamic_ip_security",
    "security/authentication/anonymousauthentication": "anonymous_authentication",
    "security/authentication/basicauthentication": "basic_authentication",
    "security/authentication/windowsauthentication": "windows_authentication",
    "security/authentication/clientcertificatemappingauthentication": (
        "client_certificate_mapping_authentication"
    ),
    "security/access": "ssl_settings",
    "rewrite": "rewrite",
    "rewrite/rules": "rewrite",
    "urlcompression": "compression",
    "httpcompression": "compression",
    "caching": "output_cache",
    "httplogging": "http_logging",
    "fastcgi": "fastcgi",
    "cgi": "cgi",
    "security/isapicgirestriction": "cgi",
}


def section_path(node: Node) -> str:
    """``security/requestFiltering`` for that element (lower-cased, below system.webServer)."""
    parts: list[str] = []
    current: Node | None = node
    while current is not None and current.name != "system.webserver":
        parts.append(current.name)
        current = current.parent
    return "/".join(reversed(parts))


def snake(name: str) -> str:
    """``allowUnlisted`` → ``allow_unlisted`` (IIS's attribute names as Colonnade keys)."""
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return out.lstrip("_")


def lock(ctx: Context, target: str, mode: str, node: Node, why: str) -> None:
    """Record ``[lock] target = mode`` (a later, more specific source wins)."""
    # Reported when the server file is assembled: only then is it known whether
    # the section's module is enabled and the key exists.
    ctx.locks[target] = (mode, node, why)


def element_locks(node: Node, ctx: Context) -> None:
    """``lockAttributes`` / ``lockElements`` of a server-level section element."""
    section = SECTIONS.get(section_path(node))
    for attr in ("lockAttributes", "lockElements"):
        names = [n.strip() for n in (node.get(attr) or "").split(",") if n.strip()]
        for name in names:
            if section is None:
                ctx.report.skipped(node, f"{attr} {name}: the section has no counterpart")
                continue
            lock(ctx, f"{section}.{snake(name)}", "deny", node, attr)
    for attr in ("lockAllAttributesExcept", "lockAllElementsExcept"):
        text = node.get(attr)
        if text is None:
            continue
        if section is None:
            ctx.report.skipped(node, f"{attr}: the section has no counterpart")
            continue
        names = [n.strip() for n in text.split(",") if n.strip()]
        ctx.lock_all.append((section, attr, names, node))


def system_webserver(node: Node, level: Level, ctx: Context) -> None:
    """Every section of one ``system.webServer`` element."""
    node.visited = True
    # serverRuntime last: its body limit lowers request filtering's, wherever that is.
    for child in sorted(node.children, key=lambda c: c.name == "serverruntime"):
        converter = WEBSERVER.get(child.name)
        if converter is None:
            ctx.report.skipped(child, NEAREST.get(child.name, "unknown section: no counterpart"))
            continue
        converter(child, level, ctx)
        child.visited = True  # its converter reported what it did not convert
        if level.server:
            for element in _section_elements(child):
                element_locks(element, ctx)


def _section_elements(node: Node) -> list[Node]:
    """``node`` and, below ``security`` and ``authentication``, the sections they group."""
    found = [node]
    if node.name in ("security", "authentication"):
        for child in node.children:
            found.extend(_section_elements(child))
    return found
