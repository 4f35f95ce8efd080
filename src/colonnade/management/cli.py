"""The ``colonnade`` command: serve, inspect and operate a Colonnade server."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from colonnade import __version__, buildinfo
from colonnade.config.load import load_file
from colonnade.config.schema import ServerConfig
from colonnade.core.tracestore import trace_directory
from colonnade.errors import ConfigError, ModuleError, each_error
from colonnade.management import operations, serve_options
from colonnade.management.master_process import MasterStart, exec_master, report, setup_logging
from colonnade.management.summary import serving_lines
from colonnade.management.tables import table, use_colour
from colonnade.pools.config import ConfigSource

if TYPE_CHECKING:
    from colonnade.core.registry import Registry
    from colonnade.engine import Engine

# The engine, the module registry and TLS are imported where a command needs them:
# `colonnade --version` and the control commands should start at once, and the
# master (`serve --workers N`) imports only what supervising needs.


def registry(*, with_entry_points: bool = True) -> Registry:
    """The built-in modules and, unless told not to, the installed third-party ones."""
    from colonnade.core.registry import Registry
    from colonnade.modules.standard import BUILTIN

    return Registry.standard(BUILTIN, with_entry_points=with_entry_points)


def new_engine(config: ServerConfig, modules: Registry) -> Engine:
    """Build the engine for ``config`` (imported here: see the note at the imports)."""
    from colonnade.engine import Engine

    return Engine(config, modules)


def version_line() -> str:
    """``colonnade 0.1.0 (compiled: 20 modules)``, or ``(pure Python)``: which build runs."""
    return f"colonnade {__version__} ({buildinfo.describe()})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colonnade",
        description="Colonnade: a modular web server and Python application server. "
        "Without -c, serve, check, modules and config show read ./colonnade.toml when "
        "there is one, else serve the current folder (or --root) with the embedded "
        "default configuration.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser, *, serving: bool = False) -> None:
        p.add_argument("-c", "--config", metavar="FILE", help="server config (colonnade.toml)")
        p.add_argument("--root", metavar="DIR", help="folder to serve (no config file)")
        p.add_argument(
            *(("-b", "--bind") if serving else ("--bind",)),
            metavar="HOST:PORT",
            action="append",
            help="address to listen on (repeatable; default 127.0.0.1:8080)"
            + (" [env COLONNADE_BIND, comma-separated]" if serving else ""),
        )
        if not serving:  # serve's comes from its option table (--access-log too)
            p.add_argument("--no-access-log", action="store_true", help="do not load log.http")

    serve = sub.add_parser("serve", help="serve sites (the current folder with no config)")
    serve.add_argument(
        "python_app",
        nargs="?",
        metavar="APP",
        help="a Python application, pkg.module:attr (WSGI or ASGI), mounted at / "
        "[env COLONNADE_APP]",
    )
    serve.add_argument(
        "--interface",
        choices=["auto", "asgi", "wsgi"],
        help="the application's interface (default: detected) [env COLONNADE_INTERFACE]",
    )
    serve.add_argument(
        "--factory",
        action="store_true",
        default=None,
        help="APP names a factory to call for the application [env COLONNADE_FACTORY]",
    )
    serve.add_argument(
        "--app-dir",
        metavar="DIR",
        help="a folder to put on sys.path before importing APP [env COLONNADE_APP_DIR]",
    )
    serve.add_argument(
        "--static",
        metavar="URL=DIR",
        action="append",
        help="serve the folder DIR (relative to the current folder) at the URL path URL, "
        "a virtual directory; inside APP's URL space the static handler answers it, not "
        "APP (repeatable): --static /static=staticfiles [env COLONNADE_STATIC, comma-separated]",
    )
    config_args(serve, serving=True)
    serve_options.add_to(serve)
    serve.add_argument(
        "--start-workers",
        action="store_true",
        help="with --workers: start the pool 'default' at once, not at its first request",
    )
    serve.add_argument(
        "--control",
        metavar="SOCKET",
        help="the master's control socket (default: [server] control_socket, else one per "
        "user); give each master its own to run several side by side. Its folder must be "
        "yours and writable by no other user (a missing one is created with mode 0700) "
        "[env COLONNADE_CONTROL]",
    )
    serve.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload when configuration files change (SIGHUP still does)",
    )

    modules = sub.add_parser(
        "modules", help="print an application's modules, handler mappings and compiled pipeline"
    )
    config_args(modules)
    modules.add_argument("--site", help="site name (default: the first)")
    modules.add_argument("--app", default="/", metavar="PATH", help="application path")
    modules.add_argument("--json", action="store_true", help="print JSON")

    check = sub.add_parser("check", help="validate the configuration without serving")
    config_args(check)

    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="action", required=True)
    show = config_sub.add_parser("show", help="the effective settings for a URL, with origins")
    config_args(show)
    show.add_argument("--site", help="site name (default: the first)")
    show.add_argument("--path", default="/", help="URL path (default: /)")
    show.add_argument("--json", action="store_true", help="print JSON")
    config_sub.add_parser("docs", help="print the configuration reference (Markdown)")

    def control_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", metavar="FILE", help="server config: its control socket")
        p.add_argument(
            "--control",
            metavar="SOCKET",
            help="the master's control socket [env COLONNADE_CONTROL]",
        )

    for name, text in (
        ("pools", "the running master's pools and workers"),
        ("sites", "the running server's sites"),
        ("apps", "the running server's applications"),
        ("workers", "the running master's worker processes"),
    ):
        listing = sub.add_parser(name, help=text)
        control_args(listing)
        listing.add_argument("--json", action="store_true", help="print JSON")
        if name == "apps":
            listing.add_argument("--site", help="only this site's")
        if name == "workers":
            listing.add_argument("--pool", help="only this pool's")
    for name, text in (
        ("recycle", "replace a pool's workers (overlapped: no request is lost)"),
        ("stop", "stop a pool: its workers drain and exit; it answers 503"),
        ("start", "start a stopped pool (also after rapid-fail protection)"),
    ):
        command = sub.add_parser(name, help=text)
        control_args(command)
        command.add_argument("pool", help="pool name")
        if name == "recycle":
            command.add_argument(
                "--wait",
                action="store_true",
                help="wait until the old workers are gone, showing how far it is",
            )
            command.add_argument(
                "--timeout", type=float, default=300.0, metavar="S", help="give up after S s"
            )
    for name, text in (
        ("set", "set a section in the running server's configuration (checked, applied)"),
        ("file", "the file that owns a level's settings, its version and sections"),
    ):
        action = config_sub.add_parser(name, help=text)
        control_args(action)
        action.add_argument("--site", help="site name (default: the first)")
        action.add_argument(
            "--path", help="URL path: its folder's web.toml (default: the server file)"
        )
        if name == "file":
            action.add_argument("--json", action="store_true", help="print JSON")
            continue
        action.add_argument("section", help="the section (table) name, e.g. custom_headers")
        what = action.add_mutually_exclusive_group(required=True)
        what.add_argument("--values", metavar="JSON", help="the section's new table, as JSON")
        what.add_argument("--delete", action="store_true", help="delete the section there")
        action.add_argument(
            "--version", help="the file's version this change is based on (else unconditional)"
        )
    reload = sub.add_parser("reload", help="make the running master re-read its configuration")
    control_args(reload)
    cache = sub.add_parser("cache", help="the output cache of the running master's workers")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    purge = cache_sub.add_parser("purge", help="drop the cached responses of a URL path")
    control_args(purge)
    purge.add_argument("url", help="URL path (every query string and variant of it goes)")
    purge.add_argument(
        "--prefix", action="store_true", help="every path starting with URL (/news/ purges /news/*)"
    )
    requests = sub.add_parser(
        "requests", help="the requests executing in the running master's workers"
    )
    control_args(requests)
    requests.add_argument(
        "--elapsed",
        type=int,
        default=0,
        metavar="MS",
        help="only requests executing for at least MS milliseconds",
    )
    requests.add_argument("--pool", help="only the requests of this pool")
    requests.add_argument("--site", help="only the requests of this site")
    requests.add_argument("--json", action="store_true", help="print JSON")
    stats = cache_sub.add_parser("stats", help="hits, misses, entries, bytes, evictions")
    control_args(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    log_tail = sub.add_parser("log", help="the tail of a site's access log file")
    control_args(log_tail)
    log_tail.add_argument("site", nargs="?", help="the site (default: the first)")
    log_tail.add_argument("-n", "--lines", type=int, default=100, help="how many (1-1000)")
    log_tail.add_argument("--contains", help="only lines containing this (any case)")
    log_tail.add_argument("--json", action="store_true", help="print JSON")
    metrics = sub.add_parser("metrics", help="the counters of every worker (Prometheus text)")
    control_args(metrics)
    farms = sub.add_parser("farms", help="the server farms: members, state, counters")
    control_args(farms)
    farms.add_argument("--json", action="store_true", help="print JSON")
    farm = sub.add_parser("farm", help="drain, enable or disable a member of a server farm")
    farm.add_argument(
        "action",
        choices=["drain", "enable", "disable"],
        help="drain: only its affinity clients; disable: no new requests; enable: all",
    )
    control_args(farm)
    farm.add_argument("farm", help="farm name")
    farm.add_argument("member", help="member name (or address)")
    trace = sub.add_parser("trace", help="kept failed-request traces (tracing.failed_requests)")
    trace_sub = trace.add_subparsers(dest="trace_command", required=True)
    listing = trace_sub.add_parser("list", help="the kept traces, newest first")
    control_args(listing)
    listing.add_argument("--site", help="only this site's traces")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = trace_sub.add_parser("show", help="one trace: every stage and hook, timed, and events")
    control_args(show)
    show.add_argument("id", help="the trace's id (the request's correlation id)")
    show.add_argument("--json", action="store_true", help="print the trace file's JSON")

    import_iis = sub.add_parser(
        "import-iis", help="convert IIS applicationHost.config / web.config files"
    )
    import_iis.add_argument("paths", nargs="+", metavar="PATH", help="config files or folders")
    import_iis.add_argument("--out", metavar="DIR", help="write here instead of beside the content")
    import_iis.add_argument("--force", action="store_true", help="overwrite existing files")
    import_iis.add_argument(
        "--strict", action="store_true", help="exit 1 when anything was not converted"
    )
    import_iis.add_argument(
        "--path-map", action="append", default=[], metavar="WIN=POSIX", help="map a Windows path"
    )
    import_iis.add_argument(
        "--cert-dir",
        default="certs",
        metavar="DIR",
        help="where https bindings' PEM certificates go (relative to colonnade.toml)",
    )
    return parser


#: Seconds between two looks at a recycle that ``recycle --wait`` follows.
PROGRESS_INTERVAL = 0.2

#: The server file looked for in the current folder when no -c is given.
LOCAL_CONFIG = "colonnade.toml"


def config_source(args: argparse.Namespace) -> ConfigSource:
    """Where the configuration the command line asks for comes from.

    Without ``-c`` and without ``--root``, ``--bind`` or an APP, a
    ``colonnade.toml`` in the current folder is the configuration.
    """
    static = getattr(args, "static", None)
    explicit = args.root or args.bind or getattr(args, "python_app", None) or static
    if not args.config and not explicit and os.path.isfile(LOCAL_CONFIG):
        args.config = LOCAL_CONFIG
    if args.config:
        if explicit:
            raise ConfigError(
                "APP, --root, --bind and --static apply only without -c; set them in the file"
            )
        return ConfigSource(
            file=os.path.abspath(args.config),
            no_access_log=args.no_access_log,
            overrides=getattr(args, "overrides", {}),
        )
    bindings = [_binding(b) for b in (args.bind or [])]
    app = getattr(args, "python_app", None)
    app_dir = getattr(args, "app_dir", None)
    for option, folder in (("--root", args.root), ("--app-dir", app_dir)):
        if folder is not None and not os.path.isdir(folder):
            # Else every request would be a 404 without a word why.
            raise ConfigError(f"{option} {folder}: no such folder: {os.path.abspath(folder)}")
    # Serving an app, the content root (and where web.toml files are looked for) is
    # its folder unless --root says otherwise.
    root = args.root or (app_dir if app and app_dir else None) or os.getcwd()
    return ConfigSource(
        root=os.path.abspath(root),
        bindings=bindings or ["http://127.0.0.1:8080"],
        no_access_log=args.no_access_log,
        app=app,
        interface=getattr(args, "interface", "auto"),
        factory=getattr(args, "factory", False),
        app_dir=os.path.abspath(app_dir) if app_dir else (os.getcwd() if app else None),
        static=static_mounts(static or []),
        overrides=getattr(args, "overrides", {}),
    )


def _binding(text: str) -> str:
    """A ``-b`` value as a binding: ``http://`` where no scheme is given; a unix
    socket's path (``unix:PATH``, gunicorn's form) made absolute."""
    if text.startswith("unix:"):
        return "unix:" + os.path.abspath(text[5:])
    return text if "://" in text else f"http://{text}"


def static_mounts(values: Sequence[str]) -> list[tuple[str, str]]:
    """``--static URL=DIR`` values as (URL path, absolute folder) pairs, checked."""
    mounts: dict[str, str] = {}
    for value in values:
        path, sep, folder = value.partition("=")
        if sep and path.strip("/") == "" and path:
            raise ConfigError(f"--static {value}: a folder at / is --root DIR")
        path = path.rstrip("/")
        if not sep or not folder or not path.startswith("/") or any(c.isspace() for c in path):
            raise ConfigError(f"--static {value}: give URL=DIR, such as /static=staticfiles")
        if path in mounts:
            raise ConfigError(f"--static {value}: {path} is given twice")
        folder = os.path.abspath(folder)
        if not os.path.isdir(folder):
            raise ConfigError(f"--static {value}: no such folder: {folder}")
        mounts[path] = folder
    return list(mounts.items())


def load_config(args: argparse.Namespace) -> ServerConfig:
    """The server config the command line asks for."""
    return config_source(args).load()


def load_checked(args: argparse.Namespace) -> ServerConfig:
    """The server config, with its TLS settings checked (certificates load): what a
    single process serves. (A pool worker's reload needs no such check: its master
    checked the whole configuration, and the worker's view of it leaves out the
    certificates of other pools' sites.)"""
    config = load_config(args)
    from colonnade.transport.tls import require_valid_tls

    require_valid_tls(config)
    return config


def build(args: argparse.Namespace) -> Engine:
    """Load the configuration and build the engine for it."""
    return new_engine(load_config(args), registry())


def cmd_serve(args: argparse.Namespace) -> int:
    """``colonnade serve``."""
    notes = serve_options.prepare(args, os.environ)
    setup_logging(args.log_level.upper(), args.log_config)
    for note in notes:
        logging.getLogger("colonnade").warning("%s", note)
    if args.start_workers and not args.workers:
        raise ConfigError("--start-workers goes with --workers N")
    log = logging.getLogger("colonnade")
    if args.workers:
        control = os.path.abspath(args.control) if args.control else None
        source = msgspec.structs.replace(
            config_source(args),
            default_workers=args.workers,
            control_socket=control,
            default_start="always" if args.start_workers else None,
        )
        config = source.load()
        log.info("%s", version_line())  # which build runs: compiled or pure Python
        for line in serving_lines(config, workers=True):
            log.info("%s", line)
        code = args.code
        # The master runs in a fresh image of this process, without the command line's
        # modules (management/master_process.py).
        exec_master(
            MasterStart(
                source=source,
                log_level=args.log_level.upper(),
                log_config=args.log_config,
                watch=not args.no_watch,
                # No TLS in the master unless its admin binding is https (pools/lean.py).
                tls=(config.admin.bind or "").startswith("https://"),
                code=None if code is None else (code.folders, code.include, code.exclude),
            )
        )
    config = load_checked(args)
    modules = registry()
    engine = new_engine(config, modules)
    log.info("%s", version_line())
    for line in serving_lines(config, workers=False):
        log.info("%s", line)
    engine.log_broken(logging.getLogger("colonnade.config"))
    from colonnade.pools import single

    reloading = single.Reloading(
        lambda: load_checked(args), modules, args.config, watch=not args.no_watch
    )
    try:
        single.run(engine, reloading)
    except OSError as exc:
        print(f"colonnade: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


#: The heading of the handler mappings in ``modules`` and ``config show``.
MAPPINGS_TITLE = (
    "handler mappings, in the order tried (the first whose path, resource type and "
    "verb match serves):"
)


def cmd_modules(args: argparse.Namespace) -> int:
    """``colonnade modules``: the compiled plan, stage by stage."""
    from colonnade.engine.effective import describe_application, find_application
    from colonnade.management.effective import format_mappings

    engine = build(args)
    runtime = find_application(engine, args.site, args.app)
    found = describe_application(engine, runtime)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"application {found['id']}  (root {found['root']})")
    print("modules, in configuration order:")
    for module in found["modules"]:
        print(f"  {module['id']:32} {module['origin']}")
    print(MAPPINGS_TITLE)
    for line in format_mappings(found["handler_mappings"]):
        print(line)
    print("plan (stages nobody joined cost nothing and are not in the plan):")
    for row in found["plan"]:
        print(f"  {row['stage']:34} {', '.join(row['hooks']) if row['hooks'] else '-'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``colonnade check``: build everything, serve nothing.

    The configuration is built as ``serve`` builds it (the same ``Engine``): every
    mistake it finds is reported, each on its own line, also those of ``web.toml``
    files that ``serve`` confines to their folders (500.19). The pools are checked
    as ``serve --workers N`` would: their users and groups, their sandboxes, and
    what each pool's user must reach (the pool preflight, ``pools/preflight.py``).
    """
    from colonnade.pools import master

    modules = registry()
    source = config_source(args)
    config = source.load()
    engine = new_engine(config, modules)
    loaded = master.load(source, modules)
    assert loaded.preflight is not None
    problems: list[ConfigError] = [e for d in engine.broken for e in each_error(d.error)]
    problems += [
        error
        for name, identity in loaded.identities.items()
        for error in loaded.preflight.errors(name, identity)
    ]
    for problem in problems:
        print(f"colonnade: {problem}", file=sys.stderr)
    if problems:
        return 2
    for runtime in engine.runtimes:
        pool = config.pools.get(runtime.app.pool)
        workers = pool.workers if pool is not None else 1
        for module in runtime.modules:
            for warning in module.config_warnings(runtime.app, workers):
                print(f"colonnade: warning: {runtime.app.id}: {warning}", file=sys.stderr)
    apps = len(engine.runtimes)
    print(f"configuration OK: {len(engine.sites)} site(s), {apps} application(s)")
    for line in serving_lines(config, workers=False):
        print(line)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``colonnade config show|docs|set|file``."""
    if args.action == "set":
        return cmd_config_set(args)
    if args.action == "file":
        found = operations.config_file(_control(args), args.site, args.path)
        if args.json:
            print(json.dumps(found, indent=2))
            return 0
        state = "" if found["exists"] else " (does not exist yet)"
        print(f"{found['file']}{state}\nversion {found['version']}")
        for name, values in found["sections"].items():
            print(f"[{name}] {json.dumps(values)}")
        return 0
    if args.action == "docs":
        from colonnade.management.docgen import render

        print(render(registry(with_entry_points=False)), end="")
        return 0
    from colonnade.engine.effective import effective_config
    from colonnade.management.effective import format_mappings

    engine = build(args)
    found = effective_config(engine, args.site, args.path)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(
        f"site {found['site']}, path {found['path']}: application {found['application']}, "
        f"handler {found['handler'] or '(none)'}"
    )
    print(f"modules: {', '.join(found['modules'])}")
    if "broken" in found:
        print(f"answered 500.19 (configuration data is invalid): {found['broken']}")
    print(f"\n{MAPPINGS_TITLE}")
    for line in format_mappings(found["handler_mappings"]):
        print(line)
    for name, rows in found["sections"].items():
        print(f"\n[{name}]")
        width = max((len(k) for k in rows), default=0)
        for key, row in rows.items():
            value = json.dumps(row["value"])
            print(f"  {key:<{width}} = {value}    # {row['from']}")
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    """``colonnade config set SECTION --values JSON | --delete``."""
    values = None
    if args.values is not None:
        try:
            values = json.loads(args.values)
        except ValueError as exc:
            raise ConfigError(f"--values: not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError("--values: give a JSON object (the section's table)")
    reply = operations.config_set(
        _control(args),
        args.section,
        values,
        site=args.site,
        url=args.path,
        version=args.version,
    )
    print(f"{reply['message']} (version {reply['version']})")
    return 0


def _control(args: argparse.Namespace, config: ServerConfig | None = None) -> str:
    """The control socket a command talks to: ``--control``, else the environment's
    ``COLONNADE_CONTROL`` (as ``serve`` reads it: the same variable reaches the same
    master), else the server file's, else the user's default."""
    if config is None and args.config:
        config = load_file(args.config)
    explicit = args.control or os.environ.get("COLONNADE_CONTROL") or None
    return operations.control_path(config, explicit)


def cmd_pools(args: argparse.Namespace) -> int:
    """``colonnade pools``: state, workers, PIDs, uptime, requests, memory."""
    status = operations.pools(_control(args))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(operations.format_pools(status, colour=use_colour()))
    return 0


def cmd_listing(args: argparse.Namespace) -> int:
    """``colonnade sites|apps|workers``: the running server's, as a table or JSON."""
    control = _control(args)
    colour = use_colour()
    if args.command == "workers":
        found = operations.workers(control, args.pool)
        lines = operations.format_workers(found, colour=colour) if found else ["no worker runs"]
    elif args.command == "sites":
        found = operations.sites(control)
        rows = [
            (s["name"], ", ".join(s["bindings"]), s["pool"], len(s["applications"]), s["root"])
            for s in found
        ]
        lines = table(("NAME", "BINDINGS", "POOL", "APPS", "ROOT"), rows, colour=colour)
    else:
        found = operations.applications(control, args.site)
        rows = [(a["site"], a["path"], a["pool"], len(a["modules"]), a["root"]) for a in found]
        lines = table(("SITE", "PATH", "POOL", "MODULES", "ROOT"), rows, colour=colour)
    print(json.dumps(found, indent=2) if args.json else "\n".join(lines))
    return 0


def cmd_pool_action(args: argparse.Namespace) -> int:
    """``colonnade recycle|stop|start POOL``; ``recycle --wait`` shows a progress
    line (rewritten in place on a terminal) until the old workers are gone."""
    action = {"recycle": operations.recycle, "stop": operations.stop, "start": operations.start}
    control = _control(args)
    before: set[int] = set()
    waiting = args.command == "recycle" and args.wait
    if waiting:
        status = operations.pools(control)
        pool = next((p for p in status["pools"] if p["name"] == args.pool), None)
        before = {w["pid"] for w in pool["workers"]} if pool is not None else set()
    print(action[args.command](control, args.pool))
    if not waiting or not before:
        return 0
    live = sys.stdout.isatty()
    deadline = time.monotonic() + args.timeout
    line = ""
    while True:
        status = operations.pools(control)
        pool = next((p for p in status["pools"] if p["name"] == args.pool), None)
        done, line = (True, line) if pool is None else operations.recycle_progress(before, pool)
        if live:
            print(f"\r\x1b[K{line}", end="", flush=True)
        if done:
            print("" if live else line)
            return 0
        if time.monotonic() > deadline:
            print("" if live else line)
            print(f"colonnade: still recycling after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(PROGRESS_INTERVAL)


def cmd_reload(args: argparse.Namespace) -> int:
    """``colonnade reload``: what SIGHUP does, with the answer."""
    print(operations.reload(_control(args)))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """``colonnade cache purge URL [--prefix]`` and ``colonnade cache stats``."""
    control = _control(args)
    if args.cache_command == "purge":
        url = args.url
        if "://" in url:  # a whole URL pasted: its path is what is purged
            url = "/" + url.split("://", 1)[1].partition("/")[2]
        print(operations.purge_cache(control, url.partition("?")[0], prefix=args.prefix))
        return 0
    totals = operations.cache_stats(operations.pools(control))
    print(json.dumps(totals, indent=2) if args.json else operations.format_cache_stats(totals))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """``colonnade log [SITE] [-n N] [--contains S]``: the last lines of a site's
    access log file, read by the master (the same as the console's log page)."""
    fields: dict[str, Any] = {"site": args.site, "lines": args.lines}
    if args.contains is not None:
        fields["contains"] = args.contains
    found = operations.call(_control(args), "access_log", **fields)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if found.get("fields"):
        print(found["fields"])
    for line in found["lines"]:
        print(line)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """``colonnade metrics``: what ``GET /metrics`` answers, summed over the workers."""
    print(operations.call(_control(args), "metrics")["text"], end="")
    return 0


def cmd_farms(args: argparse.Namespace) -> int:
    """``colonnade farms``: members, state, in flight, requests, failures, times."""
    report = operations.farms(_control(args))
    print(json.dumps(report, indent=2) if args.json else operations.format_farms(report))
    return 0


def cmd_farm(args: argparse.Namespace) -> int:
    """``colonnade farm drain|enable|disable FARM MEMBER``."""
    print(operations.farm_action(_control(args), args.action, args.farm, args.member))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    """``colonnade trace list [--site S]`` and ``colonnade trace show ID``: asked of
    the running master, or read from the folder the server file names when no
    master runs (a single-process server)."""
    config = load_file(args.config) if args.config else None
    control = _control(args, config)
    directory = trace_directory(config.sections) if config is not None else None
    if args.trace_command == "list":
        listing = operations.traces(control, args.site, directory=directory)
        print(json.dumps(listing, indent=2) if args.json else operations.format_traces(listing))
        return 0
    found = operations.trace(control, args.id, directory=directory)
    print(json.dumps(found, indent=2) if args.json else operations.format_trace(found))
    return 0


def cmd_import_iis(args: argparse.Namespace) -> int:
    """``colonnade import-iis``: convert IIS configuration (see docs/migrating-from-iis.md)."""
    from colonnade.management import import_iis

    return import_iis.main(
        args.paths, args.out, args.force, args.strict, args.path_map, args.cert_dir
    )


def cmd_requests(args: argparse.Namespace) -> int:
    """``colonnade requests [--elapsed MS]``: the request monitor."""
    if args.elapsed < 0:
        raise ConfigError("--elapsed: MS must be 0 or more")
    found = operations.requests(
        _control(args), elapsed=args.elapsed, pool=args.pool, site=args.site
    )
    print(
        json.dumps(found["requests"], indent=2) if args.json else operations.format_requests(found)
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colonnade`` console script."""
    args = _parser().parse_args(argv)
    commands = {
        "serve": cmd_serve,
        "modules": cmd_modules,
        "check": cmd_check,
        "config": cmd_config,
        "pools": cmd_pools,
        "sites": cmd_listing,
        "apps": cmd_listing,
        "workers": cmd_listing,
        "recycle": cmd_pool_action,
        "stop": cmd_pool_action,
        "start": cmd_pool_action,
        "reload": cmd_reload,
        "cache": cmd_cache,
        "log": cmd_log,
        "metrics": cmd_metrics,
        "farms": cmd_farms,
        "farm": cmd_farm,
        "trace": cmd_trace,
        "import-iis": cmd_import_iis,
        "requests": cmd_requests,
    }
    try:
        return commands[args.command](args)
    except BrokenPipeError:
        # The reader went away (`colonnade config show | head`): not an error of
        # ours. Point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # what a shell reports for a process ended by SIGPIPE
    except operations.ControlError as exc:
        for mistake in exc.errors:  # a refused write: every mistake, each on its own line
            print(f"colonnade: {mistake}", file=sys.stderr)
        return 1
    except (ConfigError, ModuleError) as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
