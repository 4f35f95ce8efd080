"""Read the inputs, run the converters, assemble and write the output files.

Nothing is written until every input has been read and every output rendered:
a fatal error (a file that is not XML, an output that exists without
``--force``) leaves the disk as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import msgspec

from colonnade.config.keys import check_dotted_key
from colonnade.config.sections import Section
from colonnade.core.registry import Registry
from colonnade.management.import_iis import convert
from colonnade.management.import_iis.convert import Context, Level
from colonnade.management.import_iis.paths import PathMap, windows_path
from colonnade.management.import_iis.report import Report
from colonnade.management.import_iis.tomlwrite import Block, render
from colonnade.management.import_iis.xmlread import Node, XmlReadError, parse
from colonnade.modules.standard import BUILTIN

# Always listed, in this order, with what the inputs need inserted: the order of
# hooks within a stage is the order of this list.
MODULE_ORDER = (
    "security.request_filtering",
    "security.ip",
    "security.dynamic_ip",
    "security.ssl",
    "rewrite",
    "auth.anonymous",
    "auth.basic",
    "auth.negotiate",
    "auth.client_certificate",
    "authz.url",
    "http.redirection",
    "http.custom_headers",
    "http.custom_errors",
    "http.compression",
    "cache.output",
    "static.default_document",
    "static.directory_listing",
    "handler.proxy",
    "handler.cgi",
    "handler.fastcgi",
    "handler.static",
    "log.http",
)
ALWAYS = {
    "security.request_filtering",
    "http.compression",
    "static.default_document",
    "static.directory_listing",
    "handler.static",
    "log.http",
}
# IIS hides these by default (its requestFiltering/hiddenSegments), and the
# Colonnade files must never be served either.
HIDDEN = [
    "web.toml",
    "colonnade.toml",
    "web.config",
    "bin",
    "App_code",
    "App_GlobalResources",
    "App_LocalResources",
    "App_WebReferences",
    "App_Data",
    "App_Browsers",
]
HEADER = "Written by `colonnade import-iis`; each table names the IIS element it came from."


class ImportFailedError(Exception):
    """A fatal problem: nothing is written."""


@dataclass
class Outputs:
    """The files to write: path → text."""

    files: dict[str, str] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)


@dataclass
class Inputs:
    """What the command line named, classified."""

    apphost: list[str] = field(default_factory=list)
    web_configs: list[tuple[str, str]] = field(default_factory=list)
    """(file, folder relative to the content root). A folder named after the first
    one holds another site's content: its files' folders start with its own name,
    so that their labels and their places under ``--out`` stay apart."""
    root: str | None = None


def classify(paths: list[str]) -> Inputs:
    """Sort the arguments into applicationHost.config files and web.config files."""
    found = Inputs()
    for path in paths:
        if os.path.isdir(path):
            tree = os.path.abspath(path)
            own = "" if found.root in (None, tree) else os.path.basename(tree)
            found.root = found.root or tree
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    if name.lower() == "web.config":
                        rel = os.path.normpath(os.path.join(own, os.path.relpath(folder, path)))
                        found.web_configs.append(
                            (os.path.join(folder, name), "" if rel == "." else rel)
                        )
        elif os.path.isfile(path):
            if os.path.basename(path).lower() == "applicationhost.config":
                found.apphost.append(path)
            else:
                found.web_configs.append((path, ""))
                found.root = found.root or os.path.dirname(os.path.abspath(path))
        else:
            raise ImportFailedError(f"{path}: no such file or folder")
    if not found.apphost and not found.web_configs:
        raise ImportFailedError("no applicationHost.config or web.config among the inputs")
    return found


def read(path: str, label: str) -> Node:
    """Parse ``path``, naming it ``label`` in messages."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(convert_limit())
    except OSError as exc:
        raise ImportFailedError(f"{label}: {exc.strerror}") from None
    try:
        return parse(data, label)
    except XmlReadError as exc:
        raise ImportFailedError(str(exc)) from None


def convert_limit() -> int:
    """Bytes read of one file (one more than the parser accepts, so it can say so)."""
    from colonnade.management.import_iis.xmlread import MAX_BYTES

    return MAX_BYTES + 1


def _configuration(
    root: Node, level: Level, ctx: Context, locations: list[tuple[str, Level, Node]], base: str
) -> None:
    """The children of one ``<configuration>``: system.webServer, locations, the rest."""
    for child in root.children:
        name = child.name
        if name == "system.webserver":
            convert.system_webserver(child, level, ctx)
        elif name == "location":
            path = (child.get("path") or "").strip().replace("\\", "/").strip("/")
            mode = _override_mode(child)
            if mode is not None and not level.server:
                ctx.report.skipped(child, "overrideMode in a web.config: only the server locks")
            elif mode is not None:
                for section in _sections_in(child):
                    target = convert.SECTIONS.get(convert.section_path(section))
                    if target is None:
                        continue
                    if path in ("", "."):
                        convert.lock(ctx, target, mode, section, f"overrideMode {mode}")
                    else:
                        ctx.path_locks.append((target, mode, section, path))
            if path in ("", "."):
                _configuration(child, level, ctx, locations, base)
                ctx.report.converted(child, "the same level as its file")
            else:
                full = f"{base}/{path}" if base else path
                # "SITE/shop" of applicationHost.config names the application /shop.
                url = "/" + full.partition("/")[2]
                at_app = level.server and url in _application_paths(ctx)
                inner = Level(
                    prefix="locations.",
                    server=False,
                    app_root=at_app,
                    url=url if level.server else "/" + full,
                )
                _configuration(child, inner, ctx, locations, base)
                locations.append((full, inner, child))
                ctx.report.converted(child, f'[[locations]] path "{full}"')
        elif name == "configprotecteddata":
            ctx.report.skipped(
                child,
                "encrypted sections cannot be read: decrypt them on the Windows server"
                " (aspnet_regiis -pdf) and import again",
            )
        elif name == "configsections":
            ctx.report.converted(child, "section declarations: Colonnade's schemas are built in")
            if level.server:
                _declared_locks(child, "", ctx)
            _seen_whole(child)
        elif name == "system.applicationhost":
            _application_host(child, level, ctx)
        elif name == "webfarms" and level.server:
            convert.web_farms(child, ctx)
        elif name in (
            "system.web",
            "system.web.extensions",
            "system.codedom",
            "runtime",
            "appsettings",
            "connectionstrings",
        ):
            ctx.report.skipped(
                child,
                "ASP.NET / .NET settings: no counterpart"
                " (Python applications read their own settings)",
            )
        else:
            if child.get("configProtectionProvider") is not None:
                ctx.report.skipped(
                    child,
                    "an encrypted section (configProtectionProvider):"
                    " decrypt it on the Windows server and import again",
                )
            else:
                ctx.report.skipped(child, "no counterpart")


def _referenced_pools(ctx: Context) -> list[str]:
    """The pools the sites and their applications name, in order."""
    found: list[str] = []
    for site in ctx.sites:
        for name, value, _ in site.values:
            names = [value] if name == "pool" else []
            if name == "applications":
                names = [app["pool"] for app in value if "pool" in app]
            found.extend(n for n in names if n not in found)
    return found


def _application_paths(ctx: Context, site_name: str | None = None) -> set[str]:
    """The URL paths of the applications applicationHost.config declared (of one
    site when ``site_name`` is given)."""
    found: set[str] = {"/"}
    for site in ctx.sites:
        values = dict((k, v) for k, v, _ in site.values)
        if site_name is None or values.get("name") == site_name:
            found.update(app["path"] for app in values.get("applications", []))
    return found


def _owner(ctx: Context, folder: str, site_dir: str) -> tuple[str, str] | None:
    """The site whose physical folders hold ``folder`` (the deepest folder wins, as
    an application's or virtual directory's folder may lie inside the site's), and
    the URL path of ``folder`` in it without its leading slash; None when no site's do."""
    best: tuple[int, str, str] | None = None
    for site in ctx.sites:
        values = dict((k, v) for k, v, _ in site.values)
        places: list[tuple[str, Any]] = [("/", values.get("root"))]
        places += [(a["path"], a.get("root")) for a in values.get("applications", [])]
        places += [(v["path"], v["root"]) for v in values.get("virtual_directories", [])]
        for url, root in places:
            if not isinstance(root, str):
                continue
            physical = os.path.normpath(os.path.join(site_dir, root))
            if folder != physical and not folder.startswith(physical.rstrip(os.sep) + os.sep):
                continue
            if best is None or len(physical) > best[0]:
                rest = os.path.relpath(folder, physical).replace(os.sep, "/")
                path = url.strip("/") + ("/" + rest if rest != "." else "")
                best = (len(physical), values["name"], path.strip("/"))
    return (best[1], best[2]) if best is not None else None


def _seen_whole(node: Node) -> None:
    """Mark a subtree as looked at (declarations that need no report line each)."""
    for child in node.children:
        child.visited = True
        child.read.update(child.attrs)
        _seen_whole(child)


def _override_mode(node: Node) -> str | None:
    """A location's ``overrideMode`` (or the older ``allowOverride``) as allow/deny."""
    mode = (node.get("overrideMode") or "").lower()
    if mode in ("allow", "deny"):
        return mode
    legacy = node.get("allowOverride")
    if legacy is not None:
        return "allow" if legacy.strip().lower() == "true" else "deny"
    return None


def _sections_in(location: Node) -> list[Node]:
    """The section elements inside a location's ``system.webServer``."""
    found: list[Node] = []
    for group in location.each("system.webServer"):
        for child in group.children:
            found.extend(child.children if child.name == "security" else [child])
    return found


def _declared_locks(node: Node, prefix: str, ctx: Context) -> None:
    """``configSections``: a section's ``overrideModeDefault`` → ``[lock]``."""
    for child in node.children:
        name = (child.get("name") or "").lower()
        full = f"{prefix}/{name}" if prefix else name
        if child.name == "sectiongroup":
            _declared_locks(child, full, ctx)
        elif child.name == "section":
            mode = (child.get("overrideModeDefault") or "").lower()
            below = full.removeprefix("system.webserver/")
            target = convert.SECTIONS.get(below) if full.startswith("system.webserver/") else None
            if mode in ("allow", "deny") and target is not None:
                convert.lock(ctx, target, mode, child, "overrideModeDefault")


def _application_host(node: Node, level: Level, ctx: Context) -> None:
    node.visited = True
    for child in node.children:
        if child.name == "applicationpools":
            defaults = child.child("applicationPoolDefaults")
            base = _pool(defaults, ctx) if defaults is not None else None
            for pool in child.each("add"):
                ctx.pools.append(_pool(pool, ctx, base))
            ctx.report.converted(child, "[pools.NAME]")
        elif child.name == "sites":
            default_pool = _site_defaults(child, ctx)
            for site in child.each("site"):
                block = _site(site, ctx, default_pool)
                if block is not None:
                    ctx.sites.append(block)
            ctx.report.converted(child, "[[sites]]")
        else:
            ctx.report.skipped(child, convert.NEAREST.get(child.name, "no counterpart"))


def _site_defaults(sites: Node, ctx: Context) -> str | None:
    """``siteDefaults``, ``applicationDefaults``, ``virtualDirectoryDefaults``: the
    default pool of applications that name none (returned), the rest reported."""
    pool: str | None = None
    defaults = sites.child("applicationDefaults")
    if defaults is not None:
        pool = defaults.get("applicationPool")
        ctx.report.converted(defaults, f"applications that name no pool run in {pool!r}")
    vdirs = sites.child("virtualDirectoryDefaults")
    if vdirs is not None:
        if vdirs.flag("allowSubDirConfig", True):
            ctx.report.converted(vdirs, "web.toml files are read in every folder")
        else:
            ctx.report.changed(vdirs, "allowSubDirConfig=false: web.toml files are still read")
    site = sites.child("siteDefaults")
    if site is not None:
        for child in site.children:
            ctx.report.skipped(child, convert.NEAREST.get(child.name, "no counterpart"))
        ctx.report.converted(site, "read for its parts below")
    return pool


def _pool(node: Node, ctx: Context, base: Block | None = None) -> Block:
    name = node.get("name") or "default"
    block = Block(f"pools.{convert.key(name)}", source=f"{node.where} <{node.path}>")
    if base is not None:
        # applicationPoolDefaults first; the pool's own settings replace them,
        # attribute by attribute (recycling and rapid_fail merged below).
        block.values = [
            (k, v, f"applicationPoolDefaults, {base.source}") for k, v, _ in base.values
        ]
    changes: list[str] = []
    if (node.get("startMode") or "").lower() == "alwaysrunning":
        block.set("start", "always")
    if node.get("queueLength"):
        block.set("queue_length", int(node.get("queueLength") or "1000"))
    model = node.child("processModel")
    if model is not None:
        if model.get("maxProcesses"):
            block.set("workers", int(model.get("maxProcesses") or "1"))
        timeout = model.get("idleTimeout")
        if timeout:
            seconds = convert._timespan(timeout)
            if seconds is not None:
                block.set("idle_timeout", seconds)
        if model.get("identityType") or model.get("userName"):
            changes.append(
                "identity: set pools.user to a Unix account (Windows identities do not map)"
            )
    recycling = node.child("recycling")
    restart = recycling.child("periodicRestart") if recycling is not None else None
    if restart is not None:
        parts: dict[str, Any] = {}
        if restart.get("time"):
            seconds = convert._timespan(restart.get("time") or "")
            if seconds is not None:
                parts["time"] = seconds
        if restart.get("requests"):
            parts["requests"] = int(restart.get("requests") or "0")
        if restart.get("memory"):
            parts["memory"] = int(restart.get("memory") or "0") * 1024
        if restart.get("privateMemory"):
            parts["private_memory"] = int(restart.get("privateMemory") or "0") * 1024
        schedule = restart.child("schedule")
        if schedule is not None:
            times = [(c.get("value") or "")[:8] for c in schedule.each("add") if c.get("value")]
            # A collection: the pool's entries add to the defaults' unless it clears them.
            inherited: Any = next((v for k, v, _ in block.values if k == "recycling"), {})
            if schedule.child("clear") is None and isinstance(inherited, dict):
                times = [*inherited.get("schedule", []), *times]
            parts["schedule"] = list(dict.fromkeys(times))
        if parts:
            block.set("recycling", _merged(block, "recycling", parts))
    failure = node.child("failure")
    if failure is not None:
        rapid: dict[str, Any] = {}
        if failure.get("rapidFailProtection") is not None:
            rapid["enabled"] = failure.flag("rapidFailProtection", True)
        if failure.get("rapidFailProtectionMaxCrashes"):
            rapid["max_crashes"] = int(failure.get("rapidFailProtectionMaxCrashes") or "5")
        if failure.get("rapidFailProtectionInterval"):
            seconds = convert._timespan(failure.get("rapidFailProtectionInterval") or "")
            if seconds:
                rapid["interval"] = seconds
        if rapid:
            block.set("rapid_fail", _merged(block, "rapid_fail", rapid))
    for attr in ("managedRuntimeVersion", "managedPipelineMode", "enable32BitAppOnWin64"):
        if node.get(attr) is not None:
            changes.append(f"{attr}: no counterpart (Python pools)")
    if changes:
        ctx.report.changed(node, "; ".join(changes))
    else:
        ctx.report.converted(node, f"[pools.{name}]")
    return block


def _merged(block: Block, name: str, own: dict[str, Any]) -> dict[str, Any]:
    """A pool's own ``name`` table over the one it took from applicationPoolDefaults:
    IIS inherits attribute by attribute, so what the pool does not set stays."""
    inherited = next((v for k, v, _ in block.values if k == name), None)
    return {**inherited, **own} if isinstance(inherited, dict) else own


def _site(node: Node, ctx: Context, default_pool: str | None = None) -> Block | None:
    # The id has no counterpart and needs none: sites are known by name.
    name = node.get("name") or f"site{node.get('id') or ''}"
    node.get("id")
    block = Block("sites", array=True, source=f"{node.where} <{node.path}>")
    block.set("name", name)
    bindings: list[str] = []
    hosts: list[str] = []
    any_host = False  # an http binding without a host name answers any host
    secure: list[tuple[Node, str, str]] = []  # https bindings: (element, URL, host)
    container = node.child("bindings")
    for binding in container.each("binding") if container is not None else []:
        protocol = (binding.get("protocol") or "http").lower()
        info = binding.get("bindingInformation") or ""
        address, _, rest = info.partition(":")
        port, _, host = rest.partition(":")
        if protocol not in ("http", "https") or not port.isdigit():
            ctx.report.skipped(binding, f"{protocol} binding {info!r}: no counterpart")
            continue
        address = "0.0.0.0" if address in ("*", "") else address
        url = f"{protocol}://{address}:{port}"
        if url not in bindings:
            bindings.append(url)
        if host and host not in hosts and protocol == "http":
            hosts.append(host)
        any_host = any_host or (not host and protocol == "http")
        if protocol == "https":
            secure.append((binding, url, host))
            continue
        ctx.report.converted(binding, url)
    if not bindings:
        ctx.report.skipped(node, "a site without an http or https binding")
        return None
    block.set("bindings", bindings)
    applications: list[dict[str, Any]] = []
    vdirs: list[dict[str, Any]] = []
    for app in node.each("application"):
        app_path = app.get("path") or "/"
        pool = app.get("applicationPool") or default_pool
        root: str | None = None
        for vdir in app.each("virtualDirectory"):
            physical = _physical(vdir, ctx)
            vpath = vdir.get("path") or "/"
            if vpath == "/":
                root = physical
            else:
                full = (app_path.rstrip("/") + vpath) if app_path != "/" else vpath
                vdirs.append({"path": full, "root": physical})
                ctx.report.converted(vdir, f"virtual directory {full}")
        if app_path == "/":
            if root is not None:
                block.set("root", root)
            if pool:
                block.set("pool", pool)
            ctx.report.converted(app, "the site's root application")
        else:
            entry: dict[str, Any] = {"path": app_path}
            if root is not None:
                entry["root"] = root
            if pool:
                entry["pool"] = pool
            applications.append(entry)
            ctx.report.converted(app, f"[[sites.applications]] {app_path}")
    if applications:
        block.set("applications", applications)
    if vdirs:
        block.set("virtual_directories", vdirs)
    site_pool = next((v for k, v, _ in block.values if k == "pool"), "default")
    pools = sorted({site_pool, *(a.get("pool", site_pool) for a in applications)})
    if secure and len(pools) > 1:
        # Colonnade routes a TLS connection to a pool by its SNI name (a site).
        for binding, url, _ in secure:
            bindings.remove(url)
            ctx.report.skipped(
                binding,
                f"{url}: the site's applications run in the pools {', '.join(pools)}, and"
                " a site on an https port must keep every application in one pool (a TLS"
                " connection stays in the worker its SNI name chose): put them in one pool,"
                " then add the binding and [sites.tls]",
            )
        secure = []
        if not bindings:
            ctx.report.skipped(node, "a site without an http or https binding it can keep")
            return None
    hosts.extend(h for _, _, h in secure if h and h not in hosts)
    any_host = any_host or any(not h for _, _, h in secure)
    site_change = ""
    if hosts and any_host:
        # Colonnade's host names are the site's, on all its bindings; IIS's are
        # each binding's. Without them the site takes the hosts no site claims,
        # which is what IIS's binding without a host name does.
        site_change = (
            f"host names {', '.join(hosts)} are not written: a binding without one"
            " answers any host, and Colonnade's host_names hold for every binding of a site"
        )
    elif hosts:
        block.set("host_names", hosts)
    if secure:
        block.set("tls", _site_tls(name, secure, ctx))
    for child in node.children:
        if child.name not in ("bindings", "application"):
            ctx.report.skipped(child, convert.NEAREST.get(child.name, "no counterpart"))
    if site_change:
        ctx.report.changed(node, f"[[sites]] {name}: {site_change}")
    else:
        ctx.report.converted(node, f"[[sites]] {name}")
    return block


def _ssl_flags(binding: Node) -> int:
    text = (binding.get("sslFlags") or "0").strip()
    return int(text) if text.isdigit() else 0


def _site_tls(name: str, secure: list[tuple[Node, str, str]], ctx: Context) -> dict[str, str]:
    """``[sites.tls]`` for a site's https bindings, each reported: the certificate
    is in the Windows store (a hash), so the file it must be exported to is named.
    Several host names, or IIS's Centralized Certificate Store (``sslFlags`` 2):
    a folder of ``HOST.pem`` files chosen by SNI; else one file, named after the
    host or the site."""
    hosts = sorted({host for _, _, host in secure if host})
    store = any(_ssl_flags(binding) & 2 for binding, _, _ in secure)
    folder = ctx.cert_dir.rstrip("/") or "."
    if store or len(hosts) > 1:
        tls = {"certificate_store": folder}
        where = f"{folder}/HOST.pem for each host name ({', '.join(hosts) or 'none named'})"
    else:
        stem = hosts[0] if hosts else "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        tls = {"certificate": f"{folder}/{stem}.pem"}
        where = tls["certificate"]
    for binding, url, host in secure:
        thumbprint = binding.get("certificateHash")
        held = binding.get("certificateStoreName") or "My"
        origin = f"certificate {thumbprint} in store {held}" if thumbprint else "the certificate"
        ctx.report.changed(
            binding,
            f"{url} (host {host or '*'}), [sites.tls]: certificate file must be provided:"
            f" export {origin} with its key as PEM to {where}"
            " (colonnade check refuses a missing file)",
        )
    return tls


def _physical(node: Node, ctx: Context) -> str:
    text = node.get("physicalPath") or ""
    if windows_path(text):
        mapped = ctx.paths.map(text)
        if mapped is not None:
            ctx.report.converted(node, f"{text} → {mapped}")
            return mapped
        # Best effort: the same folders below the output, created empty so the
        # configuration checks; the report says to copy the content there.
        relative = "content/" + convert_drive(text)
        ctx.folders.append(relative)
        ctx.report.changed(
            node, f"{text}: no --path-map; written as {relative} (copy the content there)"
        )
        return relative
    return text or "."


def convert_drive(text: str) -> str:
    """``%SystemDrive%\\inetpub\\wwwroot`` → ``inetpub/wwwroot`` (drive and variables dropped)."""
    from colonnade.management.import_iis.paths import expand

    path = expand(text).replace("\\", "/")
    if len(path) > 1 and path[1] == ":":
        path = path[2:]
    return path.strip("/") or "root"


def run_import(
    paths: list[str], out: str | None, force: bool, path_map: list[str], cert_dir: str = "certs"
) -> tuple[Outputs, Report]:
    """Convert ``paths``; return the files to write and the report. Raises ImportFailedError."""
    try:
        mapper = PathMap(path_map)
    except ValueError as exc:
        raise ImportFailedError(str(exc)) from None
    inputs = classify(paths)
    report = Report()
    ctx = Context(report=report, paths=mapper, cert_dir=cert_dir)
    server_level = Level(server=True)
    locations: list[tuple[str, Level, Node]] = []
    for path in inputs.apphost:
        root = read(path, os.path.basename(path))
        ctx.farm_names.update(convert.farm_names(root))
        _configuration(root, server_level, ctx, locations, "")
        report.audit(root)
    # Where the files go: the server file into --out, else beside
    # applicationHost.config, else at the content root; each web.toml beside its
    # web.config (or at the same relative place under --out).
    if out is not None:
        server_dir = content_dir = os.path.abspath(out)
    else:
        content_dir = inputs.root or ""
        server_dir = (
            os.path.dirname(os.path.abspath(inputs.apphost[0])) if inputs.apphost else content_dir
        )
    web_levels: list[tuple[str, Level]] = []
    first_site = ctx.sites[0].values[0][1] if ctx.sites else "imported"
    for path, rel in inputs.web_configs:
        label = os.path.join(rel, os.path.basename(path)) if rel else os.path.basename(path)
        root = read(path, label)
        # Site roots are relative to the server file, as `colonnade check` reads them.
        owner = _owner(ctx, os.path.dirname(os.path.abspath(path)), server_dir)
        # A file no site's folders hold: the content root is the first site's.
        site_name, base = owner or (first_site, rel.replace(os.sep, "/"))
        level = Level(
            app_root=not base or f"/{base}" in _application_paths(ctx, site_name),
            url=f"/{base}" if base else "",
            site=site_name,
        )
        file_locations: list[tuple[str, Level, Node]] = []
        _configuration(root, level, ctx, file_locations, base)
        report.audit(root)
        for loc_path, loc_level, loc_node in file_locations:
            locations.append((f"{site_name}/{loc_path}", loc_level, loc_node))
        web_levels.append((rel, level))
    _allowed_farms(ctx, server_level)
    outputs = Outputs()
    outputs.folders = [os.path.join(server_dir, f) for f in ctx.folders]
    for level in [server_level, *(lv for _, lv in web_levels), *(lv for _, lv, _ in locations)]:
        level.drop_unused(ctx.modules)
    web_sections: dict[str, Node] = {}
    for _, level in web_levels:
        for section, node in level.sections.items():
            web_sections.setdefault(section, node)
    outputs.files[os.path.join(server_dir, "colonnade.toml")] = _server_file(
        ctx,
        server_level,
        locations,
        web_sections,
        # The web.config tree's root is the site's content, wherever the server file is.
        os.path.relpath(content_dir, server_dir) if content_dir else ".",
    )
    for (source, rel), (_, level) in zip(inputs.web_configs, web_levels, strict=True):
        if level.blocks:
            folder = os.path.join(content_dir, rel) if out is not None else None
            path = os.path.join(folder or os.path.dirname(os.path.abspath(source)), "web.toml")
            outputs.files[path] = render(level.blocks, HEADER)
    if not force:
        existing = [p for p in outputs.files if os.path.exists(p)]
        if existing:
            raise ImportFailedError(
                f"{existing[0]} exists (--force to overwrite); nothing was written"
            )
    return outputs, report


def _allowed_farms(ctx: Context, level: Level) -> None:
    """``rewrite.allowed_farms`` of the server file: the farms ``rules`` route to."""
    if not ctx.allowed_farms:
        return
    node = next(iter(ctx.allowed_farms.values()))
    new = not any(b.header == "rewrite" for b in level.blocks)
    table = level.table("rewrite", node)
    # A new table's comment names the rule already.
    table.set(
        "allowed_farms", list(ctx.allowed_farms), "" if new else f"{node.where} <{node.path}>"
    )
    if new:
        # [rewrite] before its rules, where a reader looks for it.
        level.blocks.remove(table)
        first = next(
            (i for i, b in enumerate(level.blocks) if b.header.startswith("rewrite.")),
            len(level.blocks),
        )
        level.blocks.insert(first, table)


def _server_file(
    ctx: Context,
    level: Level,
    locations: list[tuple[str, Level, Node]],
    web_sections: dict[str, Node],
    site_root: str,
) -> str:
    modules = [m for m in MODULE_ORDER if m in ALWAYS or m in ctx.modules]
    blocks: list[Block] = [Block("server", values=[("modules", modules, "")])]
    if ctx.server_header is not None:
        value, node = ctx.server_header
        blocks[0].set("server_header", value, f"{node.where} <{node.path}>")
    blocks.extend(ctx.pools)
    declared = {b.header for b in ctx.pools}
    for name in _referenced_pools(ctx):
        if f"pools.{convert.key(name)}" not in declared and name != "default":
            # IIS refuses such a site too; an empty pool (the defaults) lets it serve.
            declared.add(f"pools.{convert.key(name)}")
            blocks.append(
                Block(f"pools.{convert.key(name)}", source="named by a site, not declared")
            )
    if ctx.sites:
        blocks.extend(ctx.sites)
    else:
        site = Block(
            "sites", array=True, source="the web.config tree (no applicationHost.config given)"
        )
        site.set("name", "imported")
        site.set("bindings", ["http://127.0.0.1:8080"])
        site.set("root", site_root)
        blocks.append(site)
    filtering = next((b for b in level.blocks if b.header == "request_filtering"), None)
    if filtering is None:
        filtering = Block(
            "request_filtering", source="IIS's default hidden segments, and Colonnade's files"
        )
        level.blocks.insert(0, filtering)
    current = dict((k, v) for k, v, _ in filtering.values).get("hidden_segments")
    if current is None:
        filtering.set("hidden_segments", list(HIDDEN))
    elif isinstance(current, dict) and not current.get("clear"):
        added = current.setdefault("add", [])
        added.extend(h for h in ("web.toml", "colonnade.toml") if h not in added)
    blocks.extend(level.blocks)
    locks = _locks(ctx, modules, web_sections)
    if locks is not None:
        blocks.append(locks)
    mappings = [b for b in level.blocks if b.header == "handlers"]
    if mappings and not any(
        dict((k, v) for k, v, _ in b.values).get("path") == "*" for b in mappings
    ):
        # A server file with mappings has no built-in StaticFile entry: IIS's
        # list ends with one, so the converted list does too.
        blocks.append(
            Block(
                "handlers",
                array=True,
                values=[("path", "*", ""), ("handler", "handler.static", "")],
                source="IIS's StaticFile mapping, last in its handler list",
            )
        )
    blocks.extend(ctx.farms)
    for name, settings in ctx.fastcgi.items():
        node = ctx.fastcgi_sources[name]
        blocks.append(
            Block(
                f"fastcgi.applications.{convert.key(name)}",
                values=[(k, v, "") for k, v in settings.items()],
                source=f"{node.where} <{node.path}>",
            )
        )
    for path, loc_level, node in locations:
        if not loc_level.blocks:
            continue
        blocks.append(
            Block(
                "locations",
                array=True,
                values=[("path", path, "")],
                source=f"{node.where} <{node.path}>",
            )
        )
        blocks.extend(loc_level.blocks)
    return render(blocks, HEADER)


def _locks(ctx: Context, modules: list[str], web_sections: dict[str, Node]) -> Block | None:
    """``[lock]``: what the inputs locked or opened, for the sections of enabled modules;
    and a section a web.config sets that Colonnade locks by default (as IIS does) is
    opened: on IIS that web.config worked, so its server must have opened it too."""
    registry = Registry.standard(BUILTIN)
    sections = {}
    for module_id in modules:
        section = registry.load(module_id).section
        if section is not None:
            sections[section.key] = section
    block = Block("lock", source="overrideModeDefault, overrideMode, lockAttributes, lockElements")
    for target, (mode, node, origin) in ctx.locks.items():
        name, _, rest = target.partition(".")
        section = sections.get(name)
        if section is None:
            ctx.report.converted(
                node, f"{origin} of {name}: its module is not in use, nothing to lock"
            )
            continue
        problem = check_dotted_key(section, rest) if rest else None
        if problem is not None:
            ctx.report.skipped(node, f"{origin}: {target}: {problem}")
            continue
        block.set(target, mode, f"{node.where} <{node.path}>")
        ctx.report.converted(node, f'[lock] {target} = "{mode}" ({origin})')
    _lock_all(ctx, sections, block)
    _path_locks(ctx, sections, web_sections, block)
    for name, node in web_sections.items():
        section = sections.get(name)
        if section is None or not section.locked or name in ctx.locks:
            continue
        block.set(name, "allow", f"{node.where} <{node.path}>")
        ctx.report.changed(
            node,
            f'{name} is locked by default (as in IIS); [lock] {name} = "allow" opens it'
            " for every web.toml, as this file's server must have",
        )
    return block if block.values else None


def _lock_all(ctx: Context, sections: dict[str, type[Section]], block: Block) -> None:
    """``lockAllAttributesExcept`` / ``lockAllElementsExcept``: a ``[lock]`` entry for
    each of the section's keys of that kind (settings; tables and lists) but the ones
    named, which IIS spells in camelCase."""
    for name, attr, kept, node in ctx.lock_all:
        section = sections.get(name)
        if section is None:
            ctx.report.converted(node, f"{attr} of {name}: its module is not in use")
            continue
        elements = attr == "lockAllElementsExcept"
        keys = [k for k, is_element in _section_keys(section) if is_element is elements]
        open_keys = {convert.snake(n) for n in kept}
        unknown = sorted(n for n in kept if convert.snake(n) not in dict(_section_keys(section)))
        locked = [k for k in keys if k not in open_keys]
        for key_name in locked:
            if f"{name}.{key_name}" not in ctx.locks:
                block.set(f"{name}.{key_name}", "deny", f"{node.where} <{node.path}> {attr}")
        kind = "tables and lists" if elements else "settings"
        how = (
            f'{attr}: [lock] "{name}.KEY" = "deny" for each of its {kind} but '
            f"{', '.join(sorted(open_keys & set(keys))) or 'none'}: {', '.join(locked) or 'none'}"
            " (a key Colonnade adds later is not locked)"
        )
        if unknown:
            how += f"; {', '.join(unknown)}: no such key in {name}"
        ctx.report.changed(node, how)


def _section_keys(section: type[Section]) -> list[tuple[str, bool]]:
    """The section's keys, each with whether it is an element (a table or list) in IIS's
    sense rather than an attribute (a single setting)."""
    info: Any = msgspec.inspect.type_info(section)
    found = []
    for item in info.fields:
        kind = item.type
        if isinstance(kind, msgspec.inspect.UnionType):
            kind = next(
                (t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)), kind
            )
        element = isinstance(
            kind, msgspec.inspect.ListType | msgspec.inspect.DictType | msgspec.inspect.StructType
        )
        found.append((item.encode_name, element))
    return found


def _path_locks(
    ctx: Context, sections: dict[str, type[Section]], web_sections: dict[str, Node], block: Block
) -> None:
    """``overrideMode`` of a ``location`` with a path. ``[lock]`` is server-wide: a
    deny becomes the server's when no imported web.config sets the section (stricter
    than IIS: every web.toml is denied it), else it is not written; an allow needs
    nothing unless the section is locked by default, when it is opened only where an
    imported web.config needs it (below)."""
    for name, mode, node, path in ctx.path_locks:
        section = sections.get(name)
        if section is None:
            ctx.report.converted(node, f"overrideMode {mode} for {path}: {name} is not in use")
        elif mode == "deny" and name in web_sections:
            ctx.report.skipped(
                node,
                f"overrideMode Deny for {path}: [lock] is server-wide, and"
                f" {web_sections[name].where} sets {name} (nearest: [lock] {name} ="
                ' "deny", once that web.toml no longer needs it)',
            )
        elif mode == "deny":
            if name not in ctx.locks:
                block.set(name, "deny", f"{node.where} <{node.path}>")
            ctx.report.changed(
                node,
                f'overrideMode Deny for {path}: [lock] {name} = "deny" for every web.toml, not'
                " only those below it ([lock] is server-wide; no imported web.config sets it)",
            )
        elif ctx.locks.get(name, ("",))[0] == "deny":
            ctx.report.changed(
                node,
                f"overrideMode Allow for {path}: {name} stays denied to every web.toml"
                " ([lock] is server-wide and denies it)",
            )
        elif not section.locked or name in web_sections:
            ctx.report.converted(
                node,
                f"overrideMode Allow for {path}: web.toml files may set {name}"
                + (" (opened below for the web.config that sets it)" if section.locked else ""),
            )
        else:
            ctx.report.changed(
                node,
                f"overrideMode Allow for {path}: {name} stays locked (Colonnade's default, as"
                f' IIS\'s): [lock] {name} = "allow" would open it for every site;'
                " set it when a web.toml below needs it",
            )


def write(outputs: Outputs) -> list[str]:
    """Write every file (folders made as needed); return the paths written."""
    for folder in outputs.folders:
        os.makedirs(folder, exist_ok=True)
    written = []
    for path, text in outputs.files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return written
