"""The ``colonnade`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from colonnade.config.load import embedded_default, load_file
from colonnade.config.schema import ServerConfig
from colonnade.core.registry import Registry
from colonnade.core.stages import NOTIFICATIONS, STAGES
from colonnade.engine import Engine
from colonnade.engine.engine import effective_config
from colonnade.errors import ConfigError, ModuleError
from colonnade.modules.standard import BUILTIN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colonnade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", metavar="FILE", help="server config (colonnade.toml)")
        p.add_argument("--root", metavar="DIR", help="folder to serve (no config file)")
        p.add_argument(
            "--bind",
            metavar="HOST:PORT",
            action="append",
            help="address to listen on (repeatable; default 127.0.0.1:8080)",
        )
        p.add_argument("--no-access-log", action="store_true", help="do not load log.http")

    serve = sub.add_parser("serve", help="serve sites (the current folder with no config)")
    config_args(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes (0: single process; pools come later)",
    )
    serve.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload when configuration files change (SIGHUP still does)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    modules = sub.add_parser("modules", help="print an application's compiled pipeline")
    config_args(modules)
    modules.add_argument("--site", help="site name (default: the first)")
    modules.add_argument("--app", default="/", metavar="PATH", help="application path")

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
    return parser


def load_config(args: argparse.Namespace) -> ServerConfig:
    """The server config the command line asks for."""
    if args.config:
        if args.root or args.bind:
            raise ConfigError("--root and --bind apply only without -c; set them in the file")
        config = load_file(args.config)
    else:
        bindings = [b if "://" in b else f"http://{b}" for b in (args.bind or [])]
        config = embedded_default(args.root or os.getcwd(), bindings or ["http://127.0.0.1:8080"])
    if args.no_access_log:
        config.server.modules = [m for m in config.server.modules if m != "log.http"]
    return config


def build(args: argparse.Namespace) -> Engine:
    """Load the configuration and build the engine for it."""
    return Engine(load_config(args), Registry.standard(BUILTIN))


def cmd_serve(args: argparse.Namespace) -> int:
    """``colonnade serve``."""
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log reloads ourselves
    if args.workers != 0:
        raise ConfigError("--workers: only single-process mode (0) is available yet")
    registry = Registry.standard(BUILTIN)
    engine = Engine(load_config(args), registry)
    from colonnade.pools import single

    reloading = single.Reloading(
        lambda: load_config(args), registry, args.config, watch=not args.no_watch
    )
    try:
        single.run(engine, reloading)
    except OSError as exc:
        print(f"colonnade: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_modules(args: argparse.Namespace) -> int:
    """``colonnade modules``: the compiled plan, stage by stage."""
    engine = build(args)
    site = next((s for s in engine.sites if args.site in (None, s.name)), None)
    if site is None:
        raise ConfigError(f"no site named {args.site!r}")
    runtime = next((rt for rt in site.apps if rt.app.path == (args.app.rstrip("/") or "/")), None)
    if runtime is None:
        raise ConfigError(f"site {site.name!r} has no application at {args.app!r}")
    print(f"application {runtime.app.id}  (root {runtime.app.root})")
    print("modules, in configuration order:")
    for module in runtime.modules:
        print(f"  {module.id:32} {engine.registry.origin(module.id)}")
    print("plan (stages nobody joined cost nothing and are not in the plan):")
    joined = dict(runtime.plan.describe())
    for info in (*STAGES, *NOTIFICATIONS):
        hooks = joined.get(info.stage)
        print(f"  {info.stage.name:34} {', '.join(hooks) if hooks else '-'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``colonnade check``: build everything, serve nothing."""
    engine = build(args)
    apps = len(engine.runtimes)
    print(f"configuration OK: {len(engine.sites)} site(s), {apps} application(s)")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``colonnade config show|docs``."""
    if args.action == "docs":
        from colonnade.management.docgen import render

        print(render(Registry.standard(BUILTIN, with_entry_points=False)), end="")
        return 0
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
    for name, rows in found["sections"].items():
        print(f"\n[{name}]")
        width = max((len(k) for k in rows), default=0)
        for key, row in rows.items():
            value = json.dumps(row["value"])
            print(f"  {key:<{width}} = {value}    # {row['from']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colonnade`` console script."""
    args = _parser().parse_args(argv)
    commands = {
        "serve": cmd_serve,
        "modules": cmd_modules,
        "check": cmd_check,
        "config": cmd_config,
    }
    try:
        return commands[args.command](args)
    except (ConfigError, ModuleError) as exc:
        print(f"colonnade: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
