"""The uvicorn/gunicorn-style options of ``colonnade serve``, from one table.

Each row of :data:`OPTIONS` names an option's flags, its environment variable
(``COLONNADE_<OPTION>``), the ``colonnade.toml`` key it sets (when one exists), its
type and its help. The argument parser, the precedence rule, the docs table
(docs/coming-from-uvicorn.md) and the tests are all built from the rows, so they
cannot disagree.

Precedence, one rule for every option: the command line, else the environment
variable, else the configuration file, else the default. A row with a config key
is applied on top of the loaded configuration only when the command line or the
environment gave it; otherwise the file's value (or the default) stands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from colonnade.errors import ConfigError

if TYPE_CHECKING:
    from colonnade.config.codewatch import CodeWatch

#: The uvicorn worker classes gunicorn users name with ``-k``; Colonnade's own workers
#: take their place (there is no worker class to choose).
UVICORN_WORKER_CLASSES = frozenset(
    {
        "uvicorn.workers.UvicornWorker",
        "uvicorn.workers.UvicornH11Worker",
        "uvicorn_worker.UvicornWorker",
        "uvicorn_worker.UvicornH11Worker",
        "sync",
        "gthread",
    }
)


@dataclass(frozen=True)
class ServeOption:
    """One option of ``colonnade serve``: what the table row says about it."""

    flags: tuple[str, ...]
    """The command-line flags, the long one first (the others: aliases)."""
    dest: str
    """The attribute on the parsed arguments, and the environment name's stem."""
    type: str
    """``int``, ``float``, ``str``, ``bool`` (a switch) or ``choice``."""
    help: str
    config_key: str | None = None
    """The dotted ``colonnade.toml`` key the option sets (``pools.default.…`` is the
    pool ``colonnade serve`` puts its APP in); None: the option has no config key."""
    choices: tuple[str, ...] = ()
    scale: int = 1
    """The option's unit in the config key's (``--max-rss`` is MiB, the key bytes)."""
    negative: str | None = None
    """A switch's ``--no-…`` flag, when it has one."""
    default: Any = None
    """The value when neither the command line, the environment nor the file sets it
    (None: the configuration's default)."""
    origin: str = "uvicorn"
    """Whose option this is: ``uvicorn``, ``gunicorn`` or ``both``."""
    parsed_elsewhere: bool = False
    """The argument is defined by ``colonnade serve``'s parser itself (APP, options
    other subcommands share): :func:`add_to` leaves it out, the environment and the
    docs table have it all the same."""
    env_stem: str | None = None
    """The environment name's stem when it is not ``dest`` (``APP``, not ``PYTHON_APP``)."""

    @property
    def env(self) -> str:
        """The environment variable that sets the option."""
        return "COLONNADE_" + (self.env_stem or self.dest).upper()


OPTIONS: tuple[ServeOption, ...] = (
    ServeOption(
        ("APP",),
        "python_app",
        "str",
        "a Python application, pkg.module:attr (WSGI or ASGI), mounted at /",
        parsed_elsewhere=True,
        env_stem="app",
        origin="both",
    ),
    ServeOption(
        ("--interface",),
        "interface",
        "choice",
        "the application's interface: auto (detected, the default), asgi or wsgi",
        choices=("auto", "asgi", "wsgi"),
        default="auto",
        parsed_elsewhere=True,
    ),
    ServeOption(
        ("--factory",),
        "factory",
        "bool",
        "APP names a factory to call for the application",
        parsed_elsewhere=True,
        default=False,
    ),
    ServeOption(
        ("--app-dir",),
        "app_dir",
        "str",
        "a folder to put on sys.path before importing APP (default: the current folder)",
        parsed_elsewhere=True,
    ),
    ServeOption(
        ("-b", "--bind"),
        "bind",
        "list",
        "address to listen on, HOST:PORT (repeatable; in the environment, comma-separated; "
        "default 127.0.0.1:8080)",
        parsed_elsewhere=True,
        origin="gunicorn",
    ),
    ServeOption(
        ("--uds",),
        "uds",
        "str",
        "serve HTTP on a unix socket at this path (the same as -b unix:PATH; mode 0660, "
        "a stale socket file is replaced, the file is removed at stop)",
    ),
    ServeOption(
        ("--fd",),
        "fd",
        "int",
        "serve the listening TCP or unix socket at this inherited file descriptor (a "
        "binding to its address; with -c, the configuration's binding to that address "
        "takes it, as one systemd passed)",
    ),
    ServeOption(
        ("--root",),
        "root",
        "str",
        "folder to serve (no config file; default: the current folder)",
        parsed_elsewhere=True,
        origin="colonnade",
    ),
    ServeOption(
        ("--static",),
        "static",
        "list",
        "URL=DIR: serve the folder DIR at the URL path URL, a virtual directory "
        "(repeatable; in the environment, comma-separated)",
        parsed_elsewhere=True,
        origin="colonnade",
    ),
    ServeOption(
        ("--control",),
        "control",
        "str",
        "the master's control socket (one per master to run several side by side); "
        "`colonnade pools`, `recycle`, `reload` and the other commands that ask the "
        "master read the same variable",
        parsed_elsewhere=True,
        origin="colonnade",
    ),
    ServeOption(
        ("-w", "--workers"),
        "workers",
        "int",
        "0 (default): serve in this one process; N: run the master (activation service) "
        "with N workers for the pool 'default', the other pools as configured; workers "
        'start at a pool\'s first request unless the pool says start = "always"',
        default=0,
        origin="both",
    ),
    ServeOption(
        ("--reload",),
        "reload",
        "bool",
        "recycle the workers (overlapped: no request fails) when the application's code "
        "changes, through the configuration's file watcher; without --workers, one "
        "worker under the master (a supervisor, as uvicorn runs)",
    ),
    ServeOption(
        ("--reload-dir",),
        "reload_dir",
        "list",
        "a folder whose files --reload watches (repeatable; default: --app-dir, else the "
        "current folder)",
    ),
    ServeOption(
        ("--reload-include",),
        "reload_include",
        "list",
        "a glob of the files --reload watches (repeatable; default *.py)",
    ),
    ServeOption(
        ("--reload-exclude",),
        "reload_exclude",
        "list",
        "a glob of files or folders --reload ignores (repeatable; default: hidden ones "
        ".*, *.py[cod], *.sw.*, ~*, __pycache__)",
    ),
    ServeOption(
        ("--log-level",),
        "log_level",
        "choice",
        "the server log's level (trace is debug)",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        default="info",
        origin="both",
    ),
    ServeOption(("--host",), "host", "str", "address to listen on (uvicorn; with --port)"),
    ServeOption(("--port",), "port", "int", "port to listen on (uvicorn; with --host)"),
    ServeOption(
        ("--timeout-keep-alive",),
        "timeout_keep_alive",
        "float",
        "seconds an idle kept-alive connection stays open",
        config_key="server.timeouts.keep_alive",
    ),
    ServeOption(
        ("--keep-alive",),
        "keep_alive",
        "float",
        "gunicorn's name for --timeout-keep-alive",
        config_key="server.timeouts.keep_alive",
        origin="gunicorn",
    ),
    ServeOption(
        ("--timeout-graceful-shutdown",),
        "timeout_graceful_shutdown",
        "float",
        "on stop, seconds requests in flight may still run",
        config_key="server.timeouts.graceful",
    ),
    ServeOption(
        ("--graceful-timeout",),
        "graceful_timeout",
        "float",
        "gunicorn's name for --timeout-graceful-shutdown",
        config_key="server.timeouts.graceful",
        origin="gunicorn",
    ),
    ServeOption(
        ("--limit-concurrency",),
        "limit_concurrency",
        "int",
        "open connections per worker; more are answered 503",
        config_key="server.limits.max_connections",
    ),
    ServeOption(
        ("--backlog",),
        "backlog",
        "int",
        "the listening sockets' queue of connections not yet accepted (default 2048; "
        "the kernel caps it at net.core.somaxconn)",
        config_key="server.listen_backlog",
        origin="both",
    ),
    ServeOption(
        ("--max-requests",),
        "max_requests",
        "int",
        "requests a worker answers before it is recycled (with overlap; needs --workers)",
        config_key="pools.default.recycling.requests",
        origin="both",
    ),
    ServeOption(
        ("--max-requests-jitter",),
        "max_requests_jitter",
        "int",
        "add 0..N at random to --max-requests (drawn once per start)",
        origin="gunicorn",
    ),
    ServeOption(
        ("--max-rss",),
        "max_rss",
        "int",
        "resident memory in MiB above which a worker is recycled (needs --workers)",
        config_key="pools.default.recycling.memory",
        scale=1024 * 1024,
        origin="colonnade",
    ),
    ServeOption(
        ("--timeout",),
        "timeout",
        "float",
        "seconds a worker may leave a ping unanswered before it is replaced (gunicorn's "
        "hung-worker timeout; needs --workers)",
        config_key="pools.default.ping_response_time",
        origin="gunicorn",
    ),
    ServeOption(
        ("--env-file",),
        "env_file",
        "str",
        "a file of NAME=value lines put into the environment before the app is imported",
    ),
    ServeOption(
        ("--log-config",),
        "log_config",
        "str",
        "a logging configuration: .json or .yaml/.yml (logging.config.dictConfig), "
        "else .ini/.conf (fileConfig)",
        origin="both",
    ),
    ServeOption(
        ("--log-format",),
        "log_format",
        "choice",
        "the server log's format: text (default) or json (one object a line, with the "
        "request's fields where a line concerns a request)",
        choices=("text", "json"),
        default="text",
        origin="colonnade",
    ),
    ServeOption(
        ("--access-log",),
        "access_log",
        "bool",
        "write the access log (log.http; the default)",
        negative="--no-access-log",
        default=True,
    ),
    ServeOption(
        ("--access-log-format",),
        "access_log_format",
        "choice",
        "the access log's format: w3c (IIS's, the default), json, common or combined",
        config_key="sections.http_logging.format",
        choices=("w3c", "json", "common", "combined"),
        origin="colonnade",
    ),
    ServeOption(
        ("--proxy-headers",),
        "proxy_headers",
        "bool",
        "read the client from X-Forwarded-*/Forwarded sent by --forwarded-allow-ips "
        "(security.trusted_proxies; off by default, unlike uvicorn)",
        negative="--no-proxy-headers",
    ),
    ServeOption(
        ("--forwarded-allow-ips",),
        "forwarded_allow_ips",
        "str",
        "comma-separated proxy addresses or networks trusted for --proxy-headers "
        "(default 127.0.0.1,::1; unix: the peers of a unix socket, --uds; * trusts every "
        "peer); implies --proxy-headers",
        config_key="sections.trusted_proxies.proxies",
    ),
    ServeOption(
        ("--root-path",),
        "root_path",
        "str",
        "the path prefix a reverse proxy strips before it forwards (requests arrive "
        "without it): ASGI root_path and path, WSGI SCRIPT_NAME start with it, so the "
        "app's URLs carry it (also sets [wsgi] root_path)",
        config_key="sections.asgi.root_path",
    ),
    ServeOption(
        ("--wsgi-blocking",),
        "wsgi_blocking",
        "bool",
        "a WSGI app may block, so it runs on a thread pool (the default); "
        "--no-wsgi-blocking declares that it never blocks: it is called on the event "
        "loop's thread, with no hand-off ([wsgi] blocking; a blocking app then stalls "
        "the worker)",
        config_key="sections.wsgi.blocking",
        negative="--no-wsgi-blocking",
        origin="colonnade",
    ),
    ServeOption(
        ("--ssl-certfile",),
        "ssl_certfile",
        "str",
        "PEM certificate (and chain): the bindings become https://",
        config_key="server.tls.certificate",
    ),
    ServeOption(
        ("--ssl-keyfile",),
        "ssl_keyfile",
        "str",
        "PEM private key of --ssl-certfile",
        config_key="server.tls.key",
    ),
    ServeOption(
        ("--ssl-keyfile-password",),
        "ssl_keyfile_password",
        "str",
        "the key's passphrase (better: the environment variable, which keeps it out of ps)",
    ),
    ServeOption(
        ("--ssl-ca-certs",),
        "ssl_ca_certs",
        "str",
        "CA certificates (PEM) client certificates must chain to",
        config_key="server.tls.client_ca",
    ),
    ServeOption(
        ("--ssl-cert-reqs",),
        "ssl_cert_reqs",
        "int",
        "client certificates: 0 none (default), 1 optional, 2 required (ssl.CERT_*; "
        "2 enables security.ssl, which answers 403.7 to a request without one)",
        config_key="server.tls.client_certificates",
        choices=("0", "1", "2"),
    ),
    ServeOption(
        ("-k", "--worker-class"),
        "worker_class",
        "str",
        "accepted for uvicorn's worker classes (Colonnade's own workers serve)",
        origin="gunicorn",
    ),
)

#: Options by their ``dest``.
BY_DEST: Mapping[str, ServeOption] = {option.dest: option for option in OPTIONS}


def _allow_ips(text: str) -> list[str]:
    ips = [part.strip() for part in text.split(",") if part.strip()]
    return ["0.0.0.0/0", "::/0", "unix"] if "*" in ips else ips


#: Option values whose config key wants another form (by ``dest``).
CONVERT: Mapping[str, Callable[[Any], Any]] = {
    "forwarded_allow_ips": _allow_ips,
    "ssl_cert_reqs": lambda n: ("ignore", "accept", "require")[int(n)],
    "root_path": lambda path: "/" + path.strip("/") if path.strip("/") else "",
    "ssl_certfile": os.path.abspath,
    "ssl_keyfile": os.path.abspath,
    "ssl_ca_certs": os.path.abspath,
}


def add_to(parser: argparse.ArgumentParser) -> None:
    """Add every row of :data:`OPTIONS` to ``parser`` (``colonnade serve``'s).

    Defaults are None here, so that :func:`resolve` can tell a value given on the
    command line from one left to the environment, the file or the default.
    """
    for option in OPTIONS:
        if option.parsed_elsewhere:
            continue
        if option.type == "bool":
            parser.add_argument(
                *option.flags, dest=option.dest, action="store_true", default=None, help=option.help
            )
            if option.negative:
                parser.add_argument(
                    option.negative,
                    dest=option.dest,
                    action="store_false",
                    default=None,
                    help=f"the opposite of {option.flags[0]}",
                )
            continue
        if option.type == "list":
            parser.add_argument(
                *option.flags,
                dest=option.dest,
                action="append",
                default=None,
                metavar=option.dest.split("_")[-1].upper(),
                help=f"{option.help} [env {option.env}, comma-separated]",
            )
            continue
        kind: Callable[[str], Any] = {"int": int, "float": float}.get(option.type, str)
        if option.choices:
            kind = str
        parser.add_argument(
            *option.flags,
            dest=option.dest,
            type=kind,
            default=None,
            metavar=option.dest.split("_")[-1].upper(),
            choices=option.choices or None,
            help=f"{option.help} [env {option.env}]",
        )


def _from_env(option: ServeOption, text: str) -> Any:
    """An environment variable's text as the option's value (an error names the variable)."""
    try:
        if option.type == "int" and not option.choices:
            return int(text)
        if option.type == "float":
            return float(text)
        if option.type == "bool":
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if option.type == "list":
            return [part.strip() for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option.env}={text!r}: not a valid {option.type}") from None
    if option.choices and text not in option.choices:
        raise ConfigError(f"{option.env}={text!r}: one of {', '.join(option.choices)}")
    return text


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The options given on the command line or in the environment (the command line
    wins), by ``dest``; the ones given by neither are left out (the file or the
    default decides them). ``args`` is updated to hold the same values."""
    given: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(args, option.dest, None)
        if value is None and option.env in environ:
            value = _from_env(option, environ[option.env])
        if value is not None:
            given[option.dest] = value
            setattr(args, option.dest, value)
        elif option.default is not None:
            setattr(args, option.dest, option.default)
    return given


def overrides(given: Mapping[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
    """The config keys the given options set, by dotted key, in the config's units."""
    out: dict[str, Any] = {}
    for dest, value in given.items():
        option = BY_DEST[dest]
        if option.config_key is None:
            continue
        convert = CONVERT.get(dest)
        if convert is not None:
            value = convert(value)
        out[option.config_key] = value * option.scale if option.scale != 1 else value
    # --forwarded-allow-ips alone means --proxy-headers (as in uvicorn, where proxy
    # headers are on by default); --no-proxy-headers wins over both.
    proxies = out.pop("sections.trusted_proxies.proxies", None)
    if given.get("proxy_headers", proxies is not None):
        out["sections.trusted_proxies.proxies"] = proxies or ["127.0.0.1", "::1"]
        out["server.modules+"] = ["security.trusted_proxies"]
    if out.get("server.tls.client_certificates") == "require":
        # As --proxy-headers: the option works alone. security.ssl is what answers
        # 403.7 to a request without a certificate.
        out["server.modules+"] = [*out.get("server.modules+", []), "security.ssl"]
    if "sections.asgi.root_path" in out:  # one prefix, whichever interface the app has
        out["sections.wsgi.root_path"] = out["sections.asgi.root_path"]
    if "ssl_keyfile_password" in given:
        # The passphrase is read from the environment (inherited by workers), never
        # put into the configuration, where it could be logged or shown.
        os.environ[BY_DEST["ssl_keyfile_password"].env] = given["ssl_keyfile_password"]
        out["server.tls.passphrase_env"] = BY_DEST["ssl_keyfile_password"].env
    jitter = given.get("max_requests_jitter")
    if jitter:
        if "max_requests" not in given:
            raise ConfigError("--max-requests-jitter goes with --max-requests")
        if jitter < 0:
            raise ConfigError("--max-requests-jitter: N must be 0 or more")
        out["pools.default.recycling.requests"] += (rng or random.Random()).randint(0, jitter)
    return out


def load_env_file(path: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Put a ``.env`` file's ``NAME=value`` lines into the environment (names already
    set there are kept, as python-dotenv does by default); returns what it read.

    Blank lines and ``#`` comments are skipped, ``export`` is allowed before a name,
    and a value may be quoted with ``'`` or ``"``.
    """
    target = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"--env-file: cannot be read: {exc.strerror}", file=path) from None
    read: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigError(f"--env-file line {number}: not NAME=value", file=path)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        read[name] = value
        target.setdefault(name, value)
    return read


def configure_logging(path: str) -> None:
    """Configure Python logging from ``--log-config``: dictConfig for JSON or YAML
    (YAML needs PyYAML), fileConfig for the ``.ini`` format."""
    # Here, not at the top: logging.config (with socketserver) is ~1 MiB of the
    # master's memory, for a flag few servers are given.
    import logging.config

    extension = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ConfigError("--log-config: no such file", file=path)
    if extension in (".json", ".yaml", ".yml"):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if extension == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--log-config: not JSON: {exc}", file=path) from None
        else:
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigError(
                    "--log-config: a YAML file needs PyYAML (pip install pyyaml), "
                    "or give the same dictionary as .json",
                    file=path,
                ) from None
            data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ConfigError("--log-config: not a dictionary (dictConfig schema)", file=path)
        try:
            logging.config.dictConfig(data)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            raise ConfigError(f"--log-config: {exc}", file=path) from None
        return
    try:
        logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as exc:  # fileConfig raises whatever configparser or a handler does
        raise ConfigError(f"--log-config: {exc}", file=path) from None


def worker_class_note(name: str) -> str:
    """What ``-k NAME`` means here (a note logged at start), or a ConfigError."""
    if name not in UVICORN_WORKER_CLASSES:
        raise ConfigError(
            f"--worker-class {name}: Colonnade serves with its own workers; "
            "only uvicorn's worker classes are accepted (and ignored)"
        )
    return (
        f"--worker-class {name}: ignored, Colonnade's own workers serve "
        "(-w/--workers sets how many)"
    )


def prepare(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """Settle ``colonnade serve``'s options before anything is loaded: resolve the
    command line against the environment, load ``--env-file``, configure logging from
    ``--log-config``, turn ``--host``/``--port`` into a binding, and keep the config
    keys to set in ``args.overrides``. Returns notes to log once logging is set up."""
    given = resolve(args, environ)
    notes: list[str] = []
    if args.workers < 0:
        raise ConfigError("--workers: N must be 0 (one process) or more")
    if args.log_level == "trace":
        args.log_level = "debug"
    args.no_access_log = not args.access_log
    if args.env_file:
        load_env_file(args.env_file)
    # Worker processes inherit the environment: the format reaches them that way.
    os.environ[BY_DEST["log_format"].env] = args.log_format
    if args.worker_class:
        notes.append(worker_class_note(args.worker_class))
    args.code = code_watch(args, notes)
    if args.host is not None or args.port is not None:
        if args.bind:
            raise ConfigError("--host/--port and --bind: give one or the other")
        host = args.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        args.bind = [f"{host}:{8000 if args.port is None else args.port}"]
    if args.uds is not None:
        if args.bind or args.fd is not None:
            raise ConfigError("--uds and --bind/--host/--port/--fd: give one or the other")
        args.bind = ["unix:" + os.path.abspath(args.uds)]
    elif args.fd is not None:
        if args.bind:
            raise ConfigError("--fd and --bind/--host/--port: give one or the other")
        from colonnade.pools import systemd  # only here: import colonnade stays light

        address = systemd.adopt(args.fd)
        if not args.config:
            args.bind = [address]
    if args.ssl_certfile:
        args.bind = [
            b if "://" in b or b.startswith("unix:") else f"https://{b}"
            for b in args.bind or ["127.0.0.1:8443"]
        ]
    args.overrides = overrides(given)
    pool_keys = [k for k in args.overrides if k.startswith("pools.")]
    if pool_keys and not args.workers:
        notes.append(
            "without --workers there is no pool to recycle or ping: "
            + ", ".join(sorted({BY_DEST[d].flags[0] for d in given if _is_pool(d)}))
            + " take effect with --workers N"
        )
    return notes


def code_watch(args: argparse.Namespace, notes: list[str]) -> CodeWatch | None:
    """What ``--reload`` watches (None without it). A single process cannot load new
    code into its imported modules, so ``--reload`` without ``--workers`` runs the
    master with one worker, whose recycle is the reload (noted in ``notes``)."""
    given = [
        flag
        for flag, value in (
            ("--reload-dir", args.reload_dir),
            ("--reload-include", args.reload_include),
            ("--reload-exclude", args.reload_exclude),
        )
        if value
    ]
    if not args.reload:
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --reload")
        return None
    if getattr(args, "no_watch", False):
        raise ConfigError("--reload watches files: it does not go with --no-watch")
    from colonnade.config.codewatch import CodeWatch

    folders = args.reload_dir or [getattr(args, "app_dir", None) or os.getcwd()]
    for folder in folders:
        if not os.path.isdir(folder):
            raise ConfigError(f"--reload-dir {folder}: no such folder")
    code = CodeWatch(tuple(os.path.abspath(f) for f in folders))
    if args.reload_include:
        code = dataclasses.replace(code, include=tuple(args.reload_include))
    if args.reload_exclude:
        code = dataclasses.replace(code, exclude=(*code.exclude, *args.reload_exclude))
    if not args.workers:
        args.workers = 1
        notes.append(
            "--reload: serving with one worker under the master, which recycles it when "
            "the code changes (a process cannot re-import changed modules)"
        )
    return code


def _is_pool(dest: str) -> bool:
    key = BY_DEST[dest].config_key
    return key is not None and key.startswith("pools.")


#: Markers around the generated table in docs/coming-from-uvicorn.md.
DOCS_BEGIN = "<!-- serve-options:begin -->"
DOCS_END = "<!-- serve-options:end -->"


def markdown_table() -> str:
    """The docs table of the options (docs/coming-from-uvicorn.md, between
    :data:`DOCS_BEGIN` and :data:`DOCS_END`)."""
    rows = [
        "| option | environment | colonnade.toml | from | what it does |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS:
        flags = ", ".join(f"`{flag}`" for flag in option.flags)
        if option.negative:
            flags += f", `{option.negative}`"
        key = f"`{option.config_key}`" if option.config_key else "—"
        key = key.replace("`sections.", "`").replace("pools.default.", "pools.NAME.")
        what = option.help.replace("|", "\\|")
        rows.append(f"| {flags} | `{option.env}` | {key} | {option.origin} | {what} |")
    return "\n".join(rows) + "\n"


def update_docs(path: str) -> bool:
    """Rewrite the table in the docs file at ``path``; True if it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.index(DOCS_BEGIN) + len(DOCS_BEGIN)
    end = text.index(DOCS_END)
    new = text[:start] + "\n" + markdown_table() + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":  # `python -m colonnade.management.serve_options DOC`
    import sys

    update_docs(sys.argv[1])
