"""Colonnade benchmark harness: Colonnade against peer servers, on loopback only.

    bench/run.sh [options]          (runs bench/setup.sh, then this file with bench/.venv)
    bench/.venv/bin/python bench/run.py [options]

Every server runs with ONE worker pinned to CPU 0 (``taskset -c 0``); wrk runs pinned to
CPU 1 (``taskset -c 1 wrk -t1 -c64 -d5s --latency``). Each workload starts its servers,
warms each one up, then runs wrk ``--repeat`` times, alternating the servers round-robin,
and reports the medians and the ratio colonnade/peer. A server that fails to start is
reported as "n/a (...)" and the run carries on.
The ``instructions`` workload counts instead the user-space CPU instructions per request
under valgrind's callgrind (bench/instructions.py): repeatable where req/s are not.

Results go into bench/RESULTS.md (``--out``): the "latest run" section is replaced and a
short history table of headline ratios is kept. Raw numbers: bench/out/results-*.json.

Every process started here is stopped by process group, also on Ctrl-C, SIGTERM or an
exception; every step is bounded in time, and ``--max-minutes`` bounds the whole run.
Python 3 stdlib only; psutil (bench/.venv) is used for memory when present.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import re
import resource
import secrets
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # /proc fallback below
    psutil = None

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
WWW = OUT / "www"
LOGS = OUT / "logs"
NGINX_DIR = OUT / "nginx"
TLS_DIR = OUT / "tls"  # the TLS rows' certificate (made each run) and colonnade's files
PHP_DIR = OUT / "php"  # the PHP rows: hello.php, php-fpm's and colonnade's configurations
PROXY_DIR = OUT / "proxy"  # the proxy rows: the upstreams' sockets, colonnade's configurations
PHP_WWW = PHP_DIR / "www"
BENCH_PY = "bench/.venv/bin"  # peer servers, relative to the repo root (the servers' cwd)
# Colonnade as a production install runs: the mypyc-compiled build (`make compiled`,
# see docs/architecture.md). The pure-Python install of `make` (.venv, editable) is
# measured too, in asgi-hello and instructions only, as colonnade-asgi-py.
COLONNADE = ".venv-compiled/bin/colonnade"
COLONNADE_PURE = ".venv/bin/colonnade"
COLONNADE_PYTHON = ".venv-compiled/bin/python"  # seals the forms ticket (make_auth)
COLONNADE_PY = ".venv-compiled/bin/python"  # runs bench/pipeline_cost.py (needs colonnade)
HOST = "127.0.0.1"
NOFILE = 65536
sys.path.insert(0, str(BENCH))

from apps import make_php  # noqa: E402
from apps.make_auth import SCHEMES as AUTH_SCHEMES  # noqa: E402
from apps.make_auth import generate as generate_auth  # noqa: E402
from apps.make_auth import headers as auth_headers  # noqa: E402
from apps.make_cache import cache_conf  # noqa: E402
from apps.make_modules import generate as generate_modules  # noqa: E402
from apps.make_rewrite import COUNT as REWRITE_RULES  # noqa: E402
from apps.make_rewrite import generate as generate_rewrite  # noqa: E402
from apps.make_static import generate as generate_static  # noqa: E402
from apps.make_tls import colonnade_conf  # noqa: E402
from apps.make_tls import generate as generate_tls  # noqa: E402
from instructions import (  # noqa: E402
    VALGRIND,
    callgrind_total,
    drive,
    drive_h2load,
    implausible,
    valgrind_argv,
)

# ======================================================================================
# Servers. argv is a template: {port} {www} {nginx_conf}; the servers' cwd is the repo
# root, so paths stay short and the reported command lines are copy-pasteable from there.
# ``idle`` holds extra args for the idle-connections memory test (long keep-alive).
# ======================================================================================


# colonnade's idle keep-alive for the memory test, as the peers get theirs: on a loaded
# host opening 10,000 connections can outlast the 15 s default, and the first would close.
_COLONNADE_IDLE = "--timeout-keep-alive 300"


@dataclass(frozen=True)
class Server:
    name: str
    product: str  # key into the versions table
    argv: str
    probe: str = "/"  # path used for readiness and for the memory test
    env: tuple[tuple[str, str], ...] = ()
    nginx_log: bool | None = None  # set for nginx variants: generate a config
    idle: str = ""
    # (old, new): if the server exits at start, try once more with ``old`` replaced by
    # ``new`` in argv; the row then shows the command that really ran.
    fallback: tuple[str, str] | None = None
    # request headers wrk sends to this server only (credentials of its scheme), read
    # when wrk starts: some are made by the setup (a sealed forms ticket)
    headers: Callable[[], tuple[str, ...]] | None = None
    # speaks TLS with bench/out/tls's certificate ({cert}, {key} in argv); a colonnade
    # one runs from a generated server file ({conf}) mounting ``app`` (None: files only)
    tls: bool = False
    app: str | None = None
    # a colonnade one that runs from a generated server file ({conf}) with the output
    # cache on: "memory", or "redis" (a redis-server on {redis_port}, apps/with_redis.sh)
    cache: str | None = None
    # a PHP row: "fpm" — the harness starts php-fpm (apps/make_php.py) pinned with the
    # server, and the server (nginx, or colonnade from a generated server file, {conf})
    # passes *.php to its socket; "cgi" — colonnade manages as many php-cgi itself
    php: str | None = None
    # a proxy row: the harness starts an upstream on a unix socket of its own, pinned
    # with the server — "asgi": uvicorn serving apps.asgi_hello; "static": nginx serving
    # bench/out/www — and the server (nginx with an upstream block and keepalive, or
    # colonnade's handler.proxy from a generated server file) forwards every request to it
    proxy: str | None = None
    # the operator's tools (issue 21): a colonnade one that runs from a generated server
    # file ({conf}, ops_conf) — "on": an [admin] binding serving /metrics, the trace-rule
    # site (failed request tracing, one rule matching nothing), the request monitor and
    # the metrics counters on (their default); "off": the same site and application
    # with none of them ([server] request_monitor and metrics false, no [admin], the
    # plain www folder)
    ops: str | None = None

    @property
    def is_colonnade(self) -> bool:
        return self.product == "colonnade"


PYPATH = (("PYTHONPATH", "bench"),)
_C = f"{COLONNADE} serve"
_CP = f"{COLONNADE_PURE} serve"
# Each master its own control socket: several colonnade servers run side by side
# (a workload's variants; the pure-Python row beside the compiled one).
_B = f"--bind {HOST}:{{port}} --workers 1 --control {OUT}/control-{{port}}.sock"
# Colonnade's pools (master + worker) come later; until then only --workers 0 (single
# process, which is also exactly one serving process) is accepted: fall back to it.
_CF = ("--workers 1", "--workers 0")
# The same from a server file (-c): the TLS rows, whose certificate no flag can give.
_BC = f"--workers 1 --control {OUT}/control-{{port}}.sock"
# granian caps concurrent connections at backlog/workers (1024) and closes a keep-alive
# connection that sends no request within the header-read timeout (30 s by default).
_GRANIAN_IDLE = "--backlog 4096 --backpressure 20000 --http1-header-read-timeout 60000"
# The modules-* variants serve bench/out/modules/mN: a hello.txt and a web.toml adding N
# trivial modules to the defaults; the 50 are installed as entry points by putting the
# generated dist-info folder on PYTHONPATH (no pip step). See apps/make_modules.py.
MODULES_DIR = "bench/out/modules"
# The auth-* variants serve bench/out/auth/<scheme>: the 1 KiB file behind a scheme and
# a rule refusing anonymous requests (apps/make_auth.py); wrk sends the credentials.
AUTH_DIR = "bench/out/auth"
# The rewrite variant serves bench/out/rewrite: the 1 KiB file and a web.toml enabling
# the rewrite module with 20 rules, none matching (apps/make_rewrite.py).
REWRITE_DIR = "bench/out/rewrite"
# The trace-rule variant serves asgi-hello from bench/out/trace-rule: a web.toml enabling
# tracing.failed_requests with a rule no request matches (issue 21: such a rule must
# cost nothing measurable).
TRACE_RULE_DIR = "bench/out/trace-rule"
TRACE_RULE_TOML = (
    "# bench: failed request tracing enabled, its one rule matching no request\n"
    '[modules]\nadd = ["tracing.failed_requests"]\n\n'
    "[failed_request_tracing]\n"
    'rules = [{ path = "/never/*", status_codes = "500-599" }]\n'
)
# The ops variant: asgi-hello from a server file (ops_conf) whose one site serves the
# trace-rule folder, under the master (--workers 1: the request monitor and the metrics
# counters exist), with an [admin] binding on ADMIN_PORT_OFFSET + its port serving
# /metrics, signed in by a token made each run in OPS_DIR/admin-tokens.
OPS_DIR = "bench/out/ops"
ADMIN_PORT_OFFSET = 30000
#: issue #21's aim: asgi-hello with the operator's tools on at least this x without them
OPS_AIM = 0.97


def _modules_env(installed: bool) -> tuple[tuple[str, str], ...]:
    return (("PYTHONPATH", f"bench:{MODULES_DIR}/site" if installed else "bench"),)


_NGINX = "nginx -p {nginx_dir}/ -e {nginx_dir}/error-{port}.log -c {nginx_conf} -g 'daemon off;'"
_ASGI_APP = "apps.asgi_hello:app"

SERVERS: dict[str, Server] = {
    s.name: s
    for s in [
        # --- ASGI hello --------------------------------------------------------------
        Server(
            "colonnade-asgi",
            "colonnade",
            f"{_C} apps.asgi_hello:app --app-dir bench --root {{www}} {_B}",
            fallback=_CF,
            idle=_COLONNADE_IDLE,
        ),
        Server(
            "colonnade-asgi-py",
            "colonnade",
            f"{_CP} apps.asgi_hello:app --app-dir bench --root {{www}} {_B}",
            fallback=_CF,
        ),
        # the pure install without its access log: like for like with the uvicorn row
        Server(
            "colonnade-asgi-py-nolog",
            "colonnade",
            f"{_CP} apps.asgi_hello:app --app-dir bench --root {{www}} {_B} --no-access-log",
            fallback=_CF,
        ),
        Server(
            "colonnade-asgi-trace-rule",
            "colonnade",
            f"{_C} apps.asgi_hello:app --app-dir bench --root {TRACE_RULE_DIR} {_B}",
            fallback=_CF,
        ),
        # no fallback to --workers 0: without the master there is no /metrics to measure
        Server("colonnade-asgi-ops", "colonnade", f"{_C} -c {{conf}} {_BC}", ops="on"),
        # its baseline: the same server file's way, every operator's tool switched off
        Server("colonnade-asgi-ops-off", "colonnade", f"{_C} -c {{conf}} {_BC}", ops="off"),
        Server(
            "uvicorn",
            "uvicorn",
            f"{BENCH_PY}/uvicorn apps.asgi_hello:app --app-dir bench --host {HOST} --port {{port}}"
            " --loop uvloop --http httptools --no-access-log --workers 1 --log-level warning",
            idle="--timeout-keep-alive 300",
        ),
        # uvicorn as installed: its access log on (one line per request to stdout,
        # bench/out/logs/), log level info
        Server(
            "uvicorn-log",
            "uvicorn",
            f"{BENCH_PY}/uvicorn apps.asgi_hello:app --app-dir bench --host {HOST} --port {{port}}"
            " --loop uvloop --http httptools --workers 1 --log-level info",
        ),
        Server(
            "granian-asgi",
            "granian",
            f"{BENCH_PY}/granian --interface asgi --host {HOST} --port {{port}} --workers 1"
            " --working-dir bench --log-level warning apps.asgi_hello:app",
            idle=_GRANIAN_IDLE,
        ),
        Server(
            "hypercorn",
            "hypercorn",
            f"{BENCH_PY}/hypercorn --bind {HOST}:{{port}} --workers 1 --worker-class uvloop"
            " apps.asgi_hello:app",
            env=PYPATH,
            idle="--keep-alive 300",
        ),
        # --- WSGI hello --------------------------------------------------------------
        Server(
            "colonnade-wsgi",
            "colonnade",
            f"{_C} apps.wsgi_hello:app --interface wsgi --app-dir bench --root {{www}} {_B}",
            fallback=_CF,
            idle=_COLONNADE_IDLE,
        ),
        # the same app declared non-blocking ([wsgi] blocking = false): called on the
        # event loop's thread, no hand-off to the thread pool (issue #24)
        Server(
            "colonnade-wsgi-loop",
            "colonnade",
            f"{_C} apps.wsgi_hello:app --interface wsgi --no-wsgi-blocking --app-dir bench"
            f" --root {{www}} {_B}",
            fallback=_CF,
        ),
        Server(
            "gunicorn",
            "gunicorn",
            f"{BENCH_PY}/gunicorn -k gthread --threads 8 -w 1 --bind {HOST}:{{port}}"
            " --chdir bench apps.wsgi_hello:app",
            idle="--keep-alive 300 --worker-connections 20000 --backlog 4096",
        ),
        Server(
            "granian-wsgi",
            "granian",
            f"{BENCH_PY}/granian --interface wsgi --host {HOST} --port {{port}} --workers 1"
            " --working-dir bench --log-level warning apps.wsgi_hello:app",
            idle=_GRANIAN_IDLE,
        ),
        # --- the output cache: wsgi_1k cached (apps/make_cache.py), and uncached ------
        Server(
            "colonnade-cached",
            "colonnade",
            f"{_C} -c {{conf}} {_BC}",
            probe="/1k.bin",
            fallback=_CF,
            cache="memory",
        ),
        Server(
            "colonnade-cached-redis",
            "colonnade",
            f"bench/apps/with_redis.sh {{redis_port}} {_C} -c {{conf}} {_BC}",
            probe="/1k.bin",
            fallback=_CF,
            cache="redis",
        ),
        Server(
            "colonnade-wsgi-1k",
            "colonnade",
            f"{_C} apps.wsgi_1k:app --interface wsgi --app-dir bench --root {{www}} {_B}",
            probe="/1k.bin",
            fallback=_CF,
        ),
        # --- static files ------------------------------------------------------------
        Server(
            "colonnade-static",
            "colonnade",
            f"{_C} --root {{www}} {_B}",
            probe="/hello.txt",
            fallback=_CF,
            idle=_COLONNADE_IDLE,
        ),
        Server(
            "colonnade-static-nolog",
            "colonnade",
            f"{_C} --root {{www}} {_B} --no-access-log",
            probe="/hello.txt",
            fallback=_CF,
        ),
        Server("nginx", "nginx", _NGINX, probe="/hello.txt", nginx_log=True),
        Server("nginx-nolog", "nginx", _NGINX, probe="/hello.txt", nginx_log=False),
        # --- over TLS (h2load): the bench's certificate, made once per run -------------
        Server(
            "colonnade-asgi-tls",
            "colonnade",
            f"{_C} -c {{conf}} {_BC}",
            fallback=_CF,
            tls=True,
            app=_ASGI_APP,
        ),
        Server(
            "uvicorn-tls",
            "uvicorn",
            f"{BENCH_PY}/uvicorn {_ASGI_APP} --app-dir bench --host {HOST} --port {{port}}"
            " --loop uvloop --http httptools --no-access-log --workers 1 --log-level warning"
            " --ssl-certfile {cert} --ssl-keyfile {key}",
            tls=True,
        ),
        *(
            Server(
                f"granian-asgi-{'h2' if version == '2' else 'tls'}",
                "granian",
                f"{BENCH_PY}/granian --interface asgi --host {HOST} --port {{port}} --workers 1"
                f" --working-dir bench --log-level warning --http {version}"
                f" --ssl-certificate {{cert}} --ssl-keyfile {{key}} {_ASGI_APP}",
                tls=True,
            )
            for version in ("1", "2")
        ),
        Server(
            "hypercorn-tls",
            "hypercorn",
            f"{BENCH_PY}/hypercorn --bind {HOST}:{{port}} --workers 1 --worker-class uvloop"
            f" --certfile {{cert}} --keyfile {{key}} {_ASGI_APP}",
            env=PYPATH,
            tls=True,
        ),
        Server(
            "colonnade-static-tls",
            "colonnade",
            f"{_C} -c {{conf}} {_BC}",
            probe="/hello.txt",
            fallback=_CF,
            tls=True,
        ),
        Server("nginx-h2", "nginx", _NGINX, probe="/hello.txt", nginx_log=True, tls=True),
        # --- PHP: hello.php through php-fpm (started per row) or managed php-cgi ---------
        Server(
            "colonnade-php-fpm", "colonnade", f"{_C} -c {{conf}} {_BC}", fallback=_CF, php="fpm"
        ),
        Server("nginx-php", "nginx", _NGINX, nginx_log=True, php="fpm"),
        Server(
            "colonnade-php-cgi", "colonnade", f"{_C} -c {{conf}} {_BC}", fallback=_CF, php="cgi"
        ),
        # --- reverse proxy: asgi-hello from uvicorn (started per row) behind the server ---
        Server(
            "colonnade-proxy", "colonnade", f"{_C} -c {{conf}} {_BC}", fallback=_CF, proxy="asgi"
        ),
        Server("nginx-proxy", "nginx", _NGINX, nginx_log=True, proxy="asgi"),
        # ... and a 100 MiB file from an nginx (started per row) behind the server
        Server(
            "colonnade-proxy-static",
            "colonnade",
            f"{_C} -c {{conf}} {_BC}",
            probe="/hello.txt",
            fallback=_CF,
            proxy="static",
        ),
        Server(
            "nginx-proxy-static",
            "nginx",
            _NGINX,
            probe="/hello.txt",
            nginx_log=True,
            proxy="static",
        ),
        # --- URL Rewrite: static-1k behind 20 rules that do not match ----------------------
        # the baseline: the same module enabled with no rule (the same pipeline; a path
        # with rewrite on is not answered from the response cache, as static-1k is)
        Server(
            "colonnade-rewrite-0",
            "colonnade",
            f"{_C} --root {REWRITE_DIR}-0 {_B}",
            probe="/1k.bin",
            fallback=_CF,
        ),
        Server(
            f"colonnade-rewrite-{REWRITE_RULES}",
            "colonnade",
            f"{_C} --root {REWRITE_DIR} {_B}",
            probe="/1k.bin",
            fallback=_CF,
        ),
        # --- authentication: the 1 KiB file behind each scheme (apps/make_auth.py) ------
        *(
            Server(
                f"colonnade-auth-{scheme}",
                "colonnade",
                f"{_C} --root {AUTH_DIR}/{scheme} {_B}",
                probe="/public/hello.txt",
                fallback=_CF,
                headers=functools.partial(auth_headers, scheme, REPO / AUTH_DIR),
            )
            for scheme in AUTH_SCHEMES
        ),
        # --- pipeline cost: N trivial modules (apps/make_modules.py) ---------------------
        *(
            Server(
                f"colonnade-modules-{variant}",
                "colonnade",
                f"{_C} --root {MODULES_DIR}/m{variant} {_B} --no-access-log",
                probe="/hello.txt",
                env=_modules_env(installed),
                fallback=_CF,
            )
            for variant, installed in (
                ("0", False),
                ("10", True),
                ("50", True),
                ("50-disabled", True),
                ("50-post", True),
            )
        ),
    ]
}

# ======================================================================================
# Workloads: one line each. metric "rps" (requests/s) or "transfer" (bytes/s) is the
# headline number the ratio colonnade/peer is computed on.
# ======================================================================================

# colonnade-asgi (compiled) comes first: the ratios are computed against it.
ASGI = ("colonnade-asgi", "colonnade-asgi-py", "uvicorn", "granian-asgi", "hypercorn")
# colonnade-wsgi (the default: the thread pool) first: the ratios are computed against it.
WSGI = ("colonnade-wsgi", "colonnade-wsgi-loop", "gunicorn", "granian-wsgi")
STATIC = ("colonnade-static", "nginx")
# colonnade-cached first: the ratios are computed against it (issue #20: >= 0.8x static).
CACHE = ("colonnade-cached", "colonnade-static", "colonnade-wsgi-1k", "colonnade-cached-redis")


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    servers: tuple[str, ...]
    connections: int = 64
    headers: tuple[str, ...] = ()
    metric: str = "rps"
    about: str = ""
    # the load client: "wrk" (HTTP/1.1, cleartext), or h2load over TLS: "h1" (--h1:
    # HTTP/1.1) or "h2" (HTTP/2 by ALPN, ``streams`` concurrent streams per connection)
    client: str = "wrk"
    streams: int = 1
    # issue aims: (peer server, the least colonnade/peer ratio aimed at); a colonnade
    # peer is compared with the workload's first server; "A/B" compares row A with row
    # B (the pure-Python install against uvicorn)
    aims: tuple[tuple[str, float], ...] = ()
    issue: int = 17  # the issue that set the aims
    # an aim too: no wrk socket timeout in any run of a colonnade row (issue #24, c1024)
    no_timeouts: bool = False

    @property
    def latency(self) -> tuple[str, str]:
        """The two latency numbers reported: wrk's percentiles, h2load's mean and max."""
        return ("p50", "p99") if self.client == "wrk" else ("mean", "max")

    def load(self) -> str:
        """The connections (and streams) and the client, for the report."""
        if self.client == "wrk":
            return f"{self.connections} connections"
        if self.client == "h1":
            return f"{self.connections} connections, h2load --h1 (HTTP/1.1 over TLS)"
        return f"{self.connections} connections x {self.streams} streams, h2load (HTTP/2 over TLS)"


STATIC_NOLOG = ("colonnade-static-nolog", "nginx-nolog")
# The pure install against uvicorn on equal terms: neither logs, or both do.
ASGI_PY_NOLOG = ("colonnade-asgi-py-nolog", "uvicorn")
ASGI_PY_LOG = ("colonnade-asgi-py", "uvicorn-log")
# The anonymous static server first: the auth-* rows are compared with it.
AUTH = ("colonnade-static", *(f"colonnade-auth-{scheme}" for scheme in AUTH_SCHEMES))
# The pipeline-cost variants, measured in turns within one workload so that drift of the
# machine hits them alike; colonnade-modules-0 is the base of every difference.
MODULES = tuple(f"colonnade-modules-{v}" for v in ("0", "10", "50", "50-disabled", "50-post"))
# Over TLS, measured with h2load (issue #17).
TLS_H1 = ("colonnade-asgi-tls", "uvicorn-tls", "granian-asgi-tls")
TLS_H2 = ("colonnade-asgi-tls", "granian-asgi-h2", "hypercorn-tls")
TLS_STATIC = ("colonnade-static-tls", "nginx-h2")
# PHP (issue #18): the same php-fpm configuration behind both; colonnade with php-fpm
# first (the ratios), then its managed php-cgi as a row of its own.
PHP = ("colonnade-php-fpm", "nginx-php", "colonnade-php-cgi")
# Reverse proxy (issue #19): the same uvicorn upstream behind both, kept connections.
PROXY = ("colonnade-proxy", "nginx-proxy")
PROXY_STATIC = ("colonnade-proxy-static", "nginx-proxy-static")
# The rewrite rule set's cost: static-1k's server, and the same behind the 20 rules.
REWRITE = ("colonnade-rewrite-0", f"colonnade-rewrite-{REWRITE_RULES}")
#: issue #18's aim for the rule set: µs per request at most
REWRITE_AIM_US = 5.0
# asgi-hello without and with the operator's tools (issue #21): the base first.
OPS = ("colonnade-asgi-ops-off", "colonnade-asgi-ops")

# fmt: off
WORKLOADS: list[Workload] = [
    Workload("asgi-hello", "/", ASGI, aims=(("granian-asgi", 1.4), ("colonnade-asgi-py/uvicorn", 1.0)), issue=24, about="raw ASGI 3 app, 13-byte text/plain"),  # noqa: E501
    Workload("asgi-hello-py-log-off", "/", ASGI_PY_NOLOG, about="asgi-hello, the pure-Python install against uvicorn with neither writing an access log (`--no-access-log` both)"),  # noqa: E501
    Workload("asgi-hello-py-log-on", "/", ASGI_PY_LOG, about="asgi-hello, the pure-Python install against uvicorn with both writing an access log (colonnade's W3C file; uvicorn's default, a line per request to stdout, redirected to a file)"),  # noqa: E501
    Workload("wsgi-hello", "/", WSGI, aims=(("granian-wsgi", 1.0), ("gunicorn", 4.0)), issue=24, about="raw WSGI app, 13-byte text/plain; colonnade-wsgi runs it on the thread pool (the default), colonnade-wsgi-loop inline on the event loop (`--no-wsgi-blocking`, `[wsgi] blocking = false`)"),  # noqa: E501
    Workload("static-1k", "/1k.bin", STATIC, aims=(("nginx", 1.2),), issue=24, about="1 KiB static file"),  # noqa: E501
    Workload("cache-1k", "/1k.bin", CACHE, about="a WSGI app's 1 KiB answer from cache.output: in the worker's memory (colonnade-cached), in Redis on the same CPU (colonnade-cached-redis), against the 1 KiB static file (colonnade-static) and the app uncached (colonnade-wsgi-1k)", aims=(("colonnade-static", 0.8),), issue=20),  # noqa: E501
    Workload("static-100k", "/100k.bin", STATIC, aims=(("nginx", 1.0),), issue=24, about="100 KiB static file"),  # noqa: E501
    Workload("static-10m", "/10m.bin", STATIC, connections=4, metric="transfer", aims=(("nginx", 1.0),), issue=24, about="10 MiB static file, throughput"),  # noqa: E501
    Workload("hello-static-log-on", "/hello.txt", STATIC, about="13-byte file, access log on"),
    Workload("hello-static-log-off", "/hello.txt", STATIC_NOLOG, about="13-byte file, access log off"),  # noqa: E501
    Workload("close", "/1k.bin", STATIC, headers=("Connection: close",), aims=(("nginx", 0.7),), issue=24, about="static-1k, a new connection per request"),  # noqa: E501
    Workload("c1024", "/1k.bin", STATIC, connections=1024, aims=(("nginx", 0.8),), issue=24, no_timeouts=True, about="static-1k with 1024 connections"),  # noqa: E501
    Workload("auth", "/1k.bin", AUTH, about="static-1k anonymous (colonnade-static) and behind each authentication scheme with a rule refusing anonymous requests (colonnade-auth-*: auth.basic with cached bcrypt credentials, auth.forms with its ticket cookie, auth.jwt HS256 with its token cache; url authorization on), the credentials sent by wrk"),  # noqa: E501
    Workload("tls-h1-asgi-hello", "/", TLS_H1, client="h1", aims=(("uvicorn-tls", 1.0),), about="asgi-hello over HTTPS, HTTP/1.1 (ALPN http/1.1): uvicorn and granian (`--http 1`) with TLS"),  # noqa: E501
    Workload("h2-asgi-hello", "/", TLS_H2, connections=16, streams=8, client="h2", aims=(("granian-asgi-h2", 0.6), ("hypercorn-tls", 3.0)), about="asgi-hello over HTTP/2 and TLS (ALPN h2): granian `--http 2`, hypercorn (h2)"),  # noqa: E501
    Workload("h2-static-1k", "/1k.bin", TLS_STATIC, connections=16, streams=8, client="h2", aims=(("nginx-h2", 0.5),), about="1 KiB static file over HTTP/2 and TLS: nginx `listen ... ssl http2`, access log on for both"),  # noqa: E501
    Workload("php-hello", "/hello.php", PHP, aims=(("nginx-php", 0.9),), issue=18, about=f"`<?php echo \"Hello, world!\";` through the same php-fpm (`pm = static`, {make_php.CHILDREN} children, started per row on a Unix socket of its own, pinned to the server CPU with the server): colonnade-php-fpm (`max_instances = {make_php.CHILDREN}`: one kept connection per child) and nginx (`fastcgi_pass unix:` with Debian's fastcgi.conf); colonnade-php-cgi: {make_php.CHILDREN} php-cgi processes colonnade manages; access log on for all"),  # noqa: E501
    Workload("proxy-hello", "/", PROXY, aims=(("nginx-proxy", 0.8),), issue=19, about="asgi-hello from uvicorn (`--loop uvloop --http httptools`, started per row on a Unix socket of its own, pinned to the server CPU with the server) behind a reverse proxy: colonnade's handler.proxy (`upstream = \"unix:...\"`, its keep-alive pool) and nginx (`proxy_pass` to an upstream block with `keepalive 64`, `proxy_http_version 1.1`); access log on for both"),  # noqa: E501
    Workload("proxy-100m", "/100m.bin", PROXY_STATIC, connections=4, metric="transfer", aims=(("nginx-proxy-static", 0.8),), issue=19, about="a 100 MiB file from an nginx upstream (started per row on a Unix socket of its own, pinned with the server, access log off) through the reverse proxy: colonnade's handler.proxy and nginx `proxy_pass` (upstream keepalive, its default response buffering); throughput"),  # noqa: E501
    Workload("rewrite", "/1k.bin", REWRITE, issue=18, about=f"the 1 KiB file behind a web.toml enabling `rewrite` with no rule (colonnade-rewrite-0: the same pipeline; a path where rewrite is on is not answered from the response cache, as static-1k is) and with {REWRITE_RULES} rules (regex, wildcard, exact), none matching (colonnade-rewrite-{REWRITE_RULES}, apps/make_rewrite.py): the difference is the per-request cost of the rule set"),  # noqa: E501
    Workload("asgi-ops", "/", OPS, issue=21, about=f"asgi-hello from a server file under the master (`--workers 1`), with every operator's tool switched off (colonnade-asgi-ops-off: `[server] request_monitor = false`, `metrics = false`, no `[admin]`, no trace rule) and on (colonnade-asgi-ops: the request monitor and the metrics counters on, an `[admin]` binding serving the master's `/metrics` — signed in by a token; checked once at start, not scraped during the runs — and `tracing.failed_requests` with one rule matching no request, {TRACE_RULE_DIR}/web.toml); headline on/off, aim ≥ {OPS_AIM:g}x (issue #21)"),  # noqa: E501
    Workload("modules", "/hello.txt", MODULES, about="13-byte file, default modules without the access log; modules-0: no trivial module, modules-10/-50: 10/50 trivial modules with a do-nothing hook on each of the 12 stages, modules-50-disabled: the trivial modules installed but none enabled, modules-50-post: 50 joining the 12 stages and their 11 post stages (23 hooks)"),  # noqa: E501
]
# fmt: on
# modules-N variant (server colonnade-modules-N) → trivial modules enabled in it.
MODULE_COUNTS: dict[str, int] = {
    "modules-10": 10,
    "modules-50": 50,
    "modules-50-disabled": 0,
    "modules-50-post": 50,
}

# Memory test: idle RSS and RSS holding --memory-conns idle keep-alive connections.
MEMORY_SERVERS: tuple[str, ...] = (
    tuple(s for s in ASGI if s != "colonnade-asgi-py")
    + tuple(s for s in WSGI if s != "colonnade-wsgi-loop")
    + STATIC
)
MEMORY = "memory"
# Front-end RSS while 1,000 slow clients download a large file through the proxy
# (issue #19: below 200 MiB, so no response is buffered whole): each client reads the
# response head and leaves the body unread (bench/idle_conns.py --head-only).
SLOW = "proxy-slow"
SLOW_SERVERS = PROXY_STATIC
SLOW_PATH = "/100m.bin"
SLOW_CONNS = 1000
SLOW_AIM_MIB = 200
# In-process pipeline cost (bench/pipeline_cost.py, colonnade's venv), no sockets.
PIPELINE = "pipeline"
# In-process session cost (bench/session_cost.py): read-modify-write, memory and Redis.
SESSION = "session"
# User-space CPU instructions per request under callgrind (bench/instructions.py): per
# workload whose path is requested, the servers compared (colonnade first).
INSTRUCTIONS = "instructions"
INSTRUCTION_PAIRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "asgi-hello",
        (
            "colonnade-asgi",
            "colonnade-asgi-py",
            "colonnade-asgi-trace-rule",
            "colonnade-asgi-ops",
            "colonnade-asgi-ops-off",
            "uvicorn",
            "granian-asgi",
        ),
    ),
    ("static-1k", STATIC),
    # the two larger files of issue #24: the response cache (100 KiB) and sendfile (10 MiB)
    ("static-100k", STATIC),
    ("static-10m", STATIC),
    # `Connection: close`, a new connection per request: accept, set-up and close
    # counted in each request (issue #24 item 4)
    ("close", STATIC),
    # a memory-tier hit of the output cache against the static file (issue #20)
    ("cache-1k", ("colonnade-cached", "colonnade-static")),
    ("wsgi-hello", WSGI),
    ("auth", AUTH),
    # over TLS with h2load (instructions.drive_h2load): HTTP/2, 8 streams at once
    ("h2-asgi-hello", TLS_H2),
    ("h2-static-1k", TLS_STATIC),
    ("php-hello", ("colonnade-php-fpm", "nginx-php")),
    ("rewrite", REWRITE),
    # the front end only: the upstream (uvicorn) is started outside valgrind
    ("proxy-hello", PROXY),
)
INSTRUCTION_REQUESTS = (1000, 3000)  # the runs (N1 twice); --quick: QUICK_INSTRUCTION_REQUESTS
QUICK_INSTRUCTION_REQUESTS = (300, 900)
INSTR_START_TIMEOUT = 180.0  # colonnade imports slowly under valgrind
INSTR_STOP_GRACE = 60.0  # callgrind writes its output at exit, slowly
CALLGRIND_DIR = OUT / "callgrind"

# ======================================================================================
# Process control: every child is a process-group leader; stop() kills the group.
# ======================================================================================

_RUNNING: dict[int, subprocess.Popen[Any]] = {}


def spawn(
    argv: Sequence[str], *, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.Popen[Any]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(list(argv), cwd=REPO, env=env, start_new_session=True, **kw)
    _RUNNING[proc.pid] = proc
    return proc


def _descendants(pid: int) -> list[int]:
    if psutil is not None:
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(x) for x in (task / "children").read_text().split()]
                out += kids
                todo += kids
    return out


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Stop a child and its whole process group: SIGTERM, then SIGKILL after ``grace``."""
    pid = proc.pid
    kids = _descendants(pid) if proc.poll() is None else []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    # the leader is gone; its group may still hold stragglers, and a child that left the
    # group (setsid) is killed by PID from the snapshot taken before.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for k in kids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(k, signal.SIGKILL)
    _RUNNING.pop(pid, None)


def stop_all() -> None:
    for proc in list(_RUNNING.values()):
        stop(proc, grace=2.0)


class AbortError(Exception):
    pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise AbortError(f"signal {signal.Signals(signum).name}")


# ======================================================================================
# Helpers
# ======================================================================================


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


_PORTS: dict[str, int] = {}


def port_for(server: str, base: int) -> int:
    """A stable port per server variant (base + index), or any free one if taken."""
    port = _PORTS.get(server) or base + list(SERVERS).index(server)
    if not port_free(port):
        port = free_port()
    _PORTS[server] = port
    return port


def probe(port: int, path: str, timeout: float = 1.0) -> int | None:
    """One HTTP/1.1 GET; the status code, or None if the port does not answer HTTP."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
    except OSError:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def probe_h2load(port: int, path: str, client: str, timeout: float = 1.0) -> int | None:
    """One request by h2load over TLS (``client`` "h1": HTTP/1.1, "h2": HTTP/2); a
    status code of the class it got, or None if the port does not answer."""
    argv = ["h2load", "-n1", "-c1", *H2LOAD_MODE[client], f"https://{HOST}:{port}{path}"]
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 5, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _H2LOAD_STATUS.search(out)
    if not m:
        return None
    for count, status in zip(m.groups(), (200, 300, 400, 500), strict=True):
        if int(count):
            return status
    return None


def stderr_reason(path: Path) -> str:
    """The most useful stderr line: for a Python traceback the final exception line, for
    an argparse error its last line, otherwise the first line."""
    try:
        raw = [ln.rstrip() for ln in path.read_text(errors="replace").splitlines()]
    except OSError:
        return "no stderr"
    lines = [ln for ln in raw if ln.strip()]
    if not lines:
        return "no stderr output"
    reason = lines[0]
    if any(ln.startswith("Traceback") for ln in lines):
        exc = [
            ln
            for ln in lines
            if not ln.startswith((" ", "Traceback", "During handling", "The above exception"))
            and re.match(r"[\w.]+(: |$)", ln)
        ]
        reason = exc[-1] if exc else reason
    elif reason.startswith("usage:"):  # argparse: the error is the last line
        reason = lines[-1]
    return reason.strip()[:200].replace("|", "/")


def _listener_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on TCP ``port`` (/proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    found.add(f"socket:[{f[9]}]")
    return found


def _tree_holds(pid: int, sockets: set[str]) -> bool:
    """Processes of ``pid``'s tree hold every one of ``sockets`` (``socket:[inode]``):
    with SO_REUSEPORT another server's listener on the same port would take a share of
    the connections, so one held is not enough."""
    held: set[str] = set()
    for p in (pid, *_descendants(pid)):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    held.add(os.readlink(f"/proc/{p}/fd/{fd}"))
    return sockets <= held


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS bytes summed over the process and all its descendants, process count)."""
    total, n, _ = tree_memory_detail(pid)
    return total, n


def tree_memory_detail(pid: int) -> tuple[int, int, int]:
    """:func:`tree_memory`, plus the RSS of the largest single process of the tree
    (the worker, for a server with a master and one worker)."""
    pids = [pid, *_descendants(pid)]
    total = 0
    n = 0
    largest = 0
    for p in pids:
        rss = None
        if psutil is not None:
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(p).memory_info().rss
        else:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
        if rss is not None:
            total += rss
            n += 1
            largest = max(largest, rss)
    return total, n, largest


def raise_nofile(want: int = NOFILE) -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for limits in ((want, max(want, hard)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cmdline(argv: Sequence[str], env: Sequence[tuple[str, str]] = ()) -> str:
    pre = " ".join(f"{k}={shlex.quote(v)}" for k, v in env)
    return (pre + " " if pre else "") + shlex.join(argv)


# ======================================================================================
# nginx config
# ======================================================================================


_NGINX_CONFS: list[Path] = []  # written during this run, for the report
# The first server file of each kind written for the TLS rows (nginx, colonnade), ditto.
_TLS_CONFS: dict[str, Path] = {}
# The first server file of each kind written for the PHP rows, ditto.
_PHP_CONFS: dict[str, Path] = {}
# ... and of the proxy rows.
_PROXY_CONFS: dict[str, Path] = {}
# ... and of the ops row (the token file's content is not shown).
_OPS_CONFS: dict[str, Path] = {}


def ops_conf(path: Path, port: int, admin_port: int, tools: bool = True) -> Path:
    """A server file like ``colonnade serve apps.asgi_hello:app --root TRACE_RULE_DIR
    --bind`` makes (the default modules, one site) plus an ``[admin]`` binding on
    ``admin_port`` whose token file, beside it, holds a token made now (mode 0600: the
    master refuses a token file every user may read). Without ``tools``: the request
    monitor and the metrics counters off, no ``[admin]``, the plain www folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if tools:
        tokens = path.parent / "admin-tokens"
        tokens.touch(mode=0o600)
        tokens.chmod(0o600)
        tokens.write_text(f"bench {secrets.token_urlsafe(24)}\n")
        head = f"""# generated by bench/run.py (ops_conf): asgi-hello with the operator's tools on
[admin]
bind = "{HOST}:{admin_port}"
token_file = "{tokens.name}"
"""
        root = REPO / TRACE_RULE_DIR
    else:
        head = """# generated by bench/run.py (ops_conf): asgi-hello with the operator's tools off
[server]
request_monitor = false
metrics = false
"""
        root = WWW
    path.write_text(
        f"""{head}
[[sites]]
name = "default"
root = "{root}"
bindings = ["{HOST}:{port}"]

  [[sites.applications]]
  path = "/"
  app = "{_ASGI_APP}"
  app_dir = "{BENCH}"
"""
    )
    return path


def metrics_status(conf: Path) -> tuple[int | None, str]:
    """GET /metrics on the admin binding of ``conf`` (ops_conf) with its token:
    (the status, or None when it does not answer; the colonnade_requests_total lines)."""
    text = conf.read_text()
    m = re.search(r'^bind = "([^"]+):(\d+)"', text, re.M)
    token = (conf.parent / "admin-tokens").read_text().split()[1]
    if m is None:
        return None, ""
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), timeout=5) as s:
            s.sendall(
                f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}"
                "\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while len(data) < 1 << 20 and (chunk := s.recv(65536)):
                data += chunk
    except OSError:
        return None, ""
    st = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    lines = [
        ln
        for ln in data.decode(errors="replace").splitlines()
        if ln.startswith("colonnade_requests_total{")
    ]
    return (int(st.group(1)) if st else None), "; ".join(lines)


def nginx_conf(
    port: int,
    access_log: bool,
    tls: bool = False,
    php: Path | None = None,
    proxy: Path | None = None,
    *,
    workers: int = 1,
    locations: str = "",
) -> Path:
    """nginx's configuration for ``port``; ``workers`` and extra ``locations`` (a
    server-block fragment) for bench/reliability/attack.py."""
    NGINX_DIR.mkdir(parents=True, exist_ok=True)
    tmp = NGINX_DIR / "tmp"
    tmp.mkdir(exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    log_line = f"access_log {NGINX_DIR}/access-{port}.log;" if access_log else "access_log off;"
    conf = NGINX_DIR / f"nginx-{port}.conf"
    conf.write_text(
        f"""# generated by bench/run.py: one worker, no system config needed
{user}worker_processes {workers};
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[0]};
pid {NGINX_DIR}/nginx-{port}.pid;
error_log {NGINX_DIR}/error-{port}.log warn;
events {{ worker_connections 16384; }}
http {{
    types {{ text/plain txt; application/octet-stream bin; text/html html; }}
    default_type application/octet-stream;
    {log_line}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    client_body_temp_path {tmp}/client;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;{_nginx_upstream(proxy)}
    server {{
        {_nginx_listen(port, tls)}
        root {PHP_WWW if php else WWW};{_nginx_php(php)}{_nginx_proxy(proxy)}{locations}
    }}
}}
"""
    )
    if tls:
        _TLS_CONFS.setdefault("nginx", conf)
    elif php:
        _PHP_CONFS.setdefault("nginx", conf)
    elif proxy:
        _PROXY_CONFS.setdefault("nginx", conf)
    elif conf not in _NGINX_CONFS:
        _NGINX_CONFS.append(conf)
    return conf


def _nginx_php(sock: Path | None) -> str:
    # As Debian's snippets/fastcgi-php.conf does: the script must exist, then
    # fastcgi.conf's parameters (SCRIPT_FILENAME and the CGI variables).
    if sock is None:
        return ""
    return (
        "\n        location ~ \\.php$ {\n"
        "            try_files $uri =404;\n"
        "            include /etc/nginx/fastcgi.conf;\n"
        f"            fastcgi_pass unix:{sock};\n"
        "        }"
    )


def _nginx_upstream(sock: Path | None) -> str:
    # The upstream with kept connections (without keepalive nginx opens one per request).
    # 64, the workloads' most connections: with 32, nginx closes the idle connections
    # over 32 as a burst of responses comes back and opens new ones for the next
    # (0.43 per request at 64 clients); colonnade's pool keeps such a surplus for 1 s
    # (handler.proxy's max_idle), so nginx gets enough not to pay for that either.
    if sock is None:
        return ""
    return f"\n    upstream app {{\n        server unix:{sock};\n        keepalive 64;\n    }}"


def _nginx_proxy(sock: Path | None) -> str:
    if sock is None:
        return ""
    return (
        "\n        location / {\n"
        "            proxy_pass http://app;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_set_header X-Forwarded-Proto $scheme;\n"
        "        }"
    )


def proxy_conf(path: Path, port: int, sock: Path) -> Path:
    """A colonnade server file: every URL to the upstream on ``sock`` through
    handler.proxy, the access log on (as nginx's), to a file emptied here, at every
    start, as the other rows' logs to standard output are: a log file reads its last
    ``#Fields`` line back at start (up to 64 MiB of it before session 24, 1 MiB since), so a log grown by earlier rows
    and runs made one callgrind run's start-up cost ~100M instructions more than the
    next one's (run AE's proxy row read 420 instructions per request)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (PROXY_DIR / f"access-{port}.log").unlink(missing_ok=True)
    path.write_text(
        f"""# generated by bench/run.py
[server]
modules = ["handler.proxy", "log.http"]

[[sites]]
name = "default"
bindings = ["http://127.0.0.1:{port}"]

[[handlers]]
path = "*"
handler = "handler.proxy"

[proxy]
upstream = "unix:{sock}"

[http_logging]
target = "{PROXY_DIR}/access-{port}.log"
"""
    )
    return path


def _nginx_listen(port: int, tls: bool) -> str:
    if not tls:
        return f"listen {HOST}:{port};"
    # `listen ... http2` rather than `http2 on;` (nginx >= 1.25.1): Debian 12 has 1.22.
    # keepalive_requests (also HTTP/2's limit since 1.19.7, default 1000): h2load, unlike
    # wrk, does not reconnect when a connection is closed, so its default would end
    # every connection after 1000 requests and the run with it.
    return (
        f"listen {HOST}:{port} ssl http2;\n"
        f"        ssl_certificate {TLS_DIR}/cert.pem;\n"
        f"        ssl_certificate_key {TLS_DIR}/key.pem;\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        "        keepalive_requests 100000000;"
    )


# ======================================================================================
# Starting a server
# ======================================================================================


@dataclass
class Running:
    server: Server
    port: int
    proc: subprocess.Popen[Any] | None
    argv: list[str]
    error: str | None = None
    idle_rss: int | None = None
    nprocs: int = 0
    probe_status: int | None = None
    log_prefix: Path | None = None
    exited: bool = False
    note: str = ""
    # php-fpm of a PHP row: started before the server, stopped with it (stop_run)
    aux: subprocess.Popen[Any] | None = None
    aux_argv: list[str] = field(default_factory=list)

    @property
    def cmd(self) -> str:
        own = cmdline(self.argv, self.server.env)
        return f"{shlex.join(self.aux_argv)} &\n{own}" if self.aux_argv else own

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def stop_run(r: Running, grace: float = 5.0) -> None:
    """Stop a started server and its php-fpm, if it has one."""
    if r.proc is not None:
        stop(r.proc, grace)
    if r.aux is not None:
        stop(r.aux)
        r.aux = None


def start_fpm(port: int, args: argparse.Namespace) -> tuple[subprocess.Popen[Any], list[str], Path]:
    """php-fpm for one PHP row, pinned to the server CPU, on a socket of its own:
    (the process, its argv, the socket) once it accepts; RuntimeError if it does not."""
    conf, sock = make_php.fpm_conf(PHP_DIR, str(port))
    argv = ["taskset", "-c", str(args.server_cpu), *make_php.fpm_argv(conf)]
    return _start_on_socket(argv, sock, LOGS / f"php-fpm-{port}.err", PHP_DIR / f"fpm-{port}.log")


def start_upstream(
    port: int, kind: str, args: argparse.Namespace
) -> tuple[subprocess.Popen[Any], list[str], Path]:
    """The upstream of one proxy row, pinned to the server CPU, on a socket of its
    own: uvicorn serving apps.asgi_hello (``kind`` "asgi") or nginx serving
    bench/out/www ("static"). (The process, its argv, the socket) once it accepts;
    RuntimeError if it does not."""
    PROXY_DIR.mkdir(parents=True, exist_ok=True)
    sock = PROXY_DIR / f"up-{port}.sock"
    pin = ("taskset", "-c", str(args.server_cpu))
    if kind == "static":
        conf = PROXY_DIR / f"upstream-nginx-{port}.conf"
        conf.write_text(_upstream_nginx_conf(port, sock))
        argv = [
            *pin,
            "nginx",
            "-p",
            f"{NGINX_DIR}/",
            "-e",
            f"{PROXY_DIR}/upstream-nginx-{port}.err",
        ]
        argv += ["-c", str(conf), "-g", "daemon off;"]
        err = LOGS / f"upstream-{port}.err"
        return _start_on_socket(argv, sock, err, err)
    argv = [
        *(*pin, f"{BENCH_PY}/uvicorn", _ASGI_APP),
        *("--app-dir", "bench", "--uds", str(sock), "--loop", "uvloop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "300"),
    ]
    err = LOGS / f"upstream-{port}.err"
    return _start_on_socket(argv, sock, err, err)


def _upstream_nginx_conf(port: int, sock: Path) -> str:
    # The static upstream of a proxy-100m row: bench/out/www on a unix socket.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    tmp = NGINX_DIR / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return f"""# generated by bench/run.py: the upstream of a proxy row
{user}worker_processes 1;
pid {PROXY_DIR}/upstream-nginx-{port}.pid;
error_log {PROXY_DIR}/upstream-nginx-{port}.err warn;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    client_body_temp_path {tmp}/client;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen unix:{sock};
        root {WWW};
    }}
}}
"""


def _start_on_socket(
    argv: list[str], sock: Path, err_path: Path, see: Path
) -> tuple[subprocess.Popen[Any], list[str], Path]:
    # A helper process of a row (php-fpm, an upstream) that listens on the unix socket
    # ``sock``: started, and returned once the socket accepts (``see``: its log).
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(err_path, "wb") as err:
        proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f"exited with {proc.returncode}; see {see}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            return proc, argv, sock
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("its socket did not accept within 20 s")


def start_server(
    name: str,
    tag: str,
    args: argparse.Namespace,
    probe_path: str,
    *,
    idle: bool = False,
    wrap: Sequence[str] = (),
    timeout: float | None = None,
    client: str = "wrk",
) -> Running:
    """Start ``name`` pinned to the server CPU and wait until it answers ``probe_path``.

    ``wrap`` goes between taskset and the server's argv (valgrind): the server is then
    slow, so it gets ``timeout`` seconds (default ``--start-timeout``) and the probe
    waits for its answer instead of retrying every second, so exactly one probe request
    reaches the server. ``client``: the workload's, which also probes a TLS server."""
    server = SERVERS[name]
    port = port_for(name, args.base_port)
    fmt: dict[str, Any] = {
        "port": port,
        "www": os.path.relpath(WWW, REPO),
        "nginx_dir": NGINX_DIR,
        "nginx_conf": "",
        "cert": os.path.relpath(TLS_DIR / "cert.pem", REPO),
        "key": os.path.relpath(TLS_DIR / "key.pem", REPO),
        "conf": "",
        "redis_port": port + 20000,
    }
    aux: tuple[subprocess.Popen[Any], list[str], Path] | None = None
    if server.php == "fpm":
        try:
            aux = start_fpm(port, args)
        except (OSError, RuntimeError) as exc:
            log(f"  {name}: php-fpm failed to start: {exc}")
            return Running(server, port, None, [], error=f"n/a (php-fpm failed to start: {exc})")
    if server.proxy:
        try:
            aux = start_upstream(port, server.proxy, args)
        except (OSError, RuntimeError) as exc:
            log(f"  {name}: the upstream failed to start: {exc}")
            return Running(server, port, None, [], error=f"n/a (upstream failed to start: {exc})")
    if server.nginx_log is not None:
        sock = aux[2] if aux is not None else None
        fmt["nginx_conf"] = nginx_conf(
            port,
            server.nginx_log,
            server.tls,
            None if server.proxy else sock,
            sock if server.proxy else None,
        )
    if server.proxy and server.is_colonnade:
        assert aux is not None
        conf = proxy_conf(PROXY_DIR / f"colonnade-{port}.toml", port, aux[2])
        fmt["conf"] = os.path.relpath(conf, REPO)
        _PROXY_CONFS.setdefault(server.name, conf)
    if server.php and server.is_colonnade:
        try:
            app = make_php.external(aux[2]) if aux is not None else make_php.managed()
        except FileNotFoundError as exc:
            return Running(server, port, None, [], error=f"n/a ({exc})")
        conf = make_php.colonnade_conf(PHP_DIR / f"colonnade-{port}.toml", port, PHP_WWW, app)
        fmt["conf"] = os.path.relpath(conf, REPO)
        _PHP_CONFS.setdefault(server.name, conf)
    if server.ops:
        admin_port = port + ADMIN_PORT_OFFSET
        if not port_free(admin_port):
            admin_port = free_port()
        conf = ops_conf(
            REPO / OPS_DIR / f"colonnade-{port}.toml", port, admin_port, server.ops == "on"
        )
        fmt["conf"] = os.path.relpath(conf, REPO)
        _OPS_CONFS.setdefault(server.name, conf)
    if server.tls and server.is_colonnade:
        conf = colonnade_conf(
            TLS_DIR / f"colonnade-{port}.toml",
            port,
            TLS_DIR / "cert.pem",
            TLS_DIR / "key.pem",
            WWW,
            server.app,
            BENCH,
        )
        _TLS_CONFS.setdefault(f"colonnade ({'ASGI' if server.app else 'static'})", conf)
        fmt["conf"] = os.path.relpath(conf, REPO)
    elif server.cache is not None:
        conf = cache_conf(
            OUT / "cache" / f"colonnade-{port}.toml",
            port,
            WWW,
            BENCH,
            fmt["redis_port"] if server.cache == "redis" else None,
        )
        fmt["conf"] = os.path.relpath(conf, REPO)
    template = server.argv
    if server.is_colonnade and args.colonnade_workers is not None:
        template = template.replace("--workers 1", f"--workers {args.colonnade_workers}")
    how = _How(tag, probe_path, idle, tuple(wrap), timeout or args.start_timeout, client)
    if name in _FELL_BACK and server.fallback:  # already known: go straight to it
        run = _start(server, template.replace(*server.fallback), fmt, how, args)
        run.note = _FELL_BACK[name]
    else:
        run = _start(server, template, fmt, how, args)
        if run.error and run.exited and server.fallback and server.fallback[0] in template:
            first = run.error
            run = _start(server, template.replace(*server.fallback), fmt, how, args)
            if run.error is None:
                old, new = server.fallback
                run.note = _FELL_BACK[name] = f"ran with `{new}`; `{old}` gave: {first}"
                log(f"  {name}: {run.note}")
    if aux is not None:
        run.aux, run.aux_argv = aux[0], aux[1]
        if run.error:
            stop_run(run)
    if server.ops == "on" and run.error is None and not wrap:  # not under callgrind: it counts
        status, counted = metrics_status(REPO / fmt["conf"])
        log(f"  {name}: GET /metrics on the admin binding: HTTP {status}; {counted or '-'}")
        if status != 200:
            run.note = "; ".join(x for x in (run.note, f"/metrics answered {status}") if x)
    return run


_FELL_BACK: dict[str, str] = {}


@dataclass(frozen=True)
class _How:
    """How :func:`_start` starts a server (see :func:`start_server`)."""

    tag: str
    probe_path: str
    idle: bool
    wrap: tuple[str, ...]
    timeout: float
    client: str = "wrk"


def _start(
    server: Server, template: str, fmt: dict[str, Any], how: _How, args: argparse.Namespace
) -> Running:
    name, port = server.name, fmt["port"]
    argv = shlex.split(template.format(**fmt))
    if how.idle and server.idle:
        argv += shlex.split(server.idle)
    full = ["taskset", "-c", str(args.server_cpu), *how.wrap, *argv]
    env = dict(os.environ, **dict(server.env))
    env.pop("PYTHONSTARTUP", None)
    LOGS.mkdir(parents=True, exist_ok=True)
    prefix = LOGS / f"{how.tag}-{name}"
    run = Running(server, port, None, full, log_prefix=prefix)
    if server.is_colonnade and not (REPO / argv[0]).exists():
        run.error = f"n/a (failed to start: {argv[0]} not found; run `make` first)"
        return run
    with open(f"{prefix}.out", "wb") as out, open(f"{prefix}.err", "wb") as err:
        try:
            run.proc = spawn(full, env=env, stdout=out, stderr=err)
        except OSError as exc:
            run.error = f"n/a (failed to start: {exc})"
            return run
    deadline = time.monotonic() + how.timeout
    while True:
        code = run.proc.poll()
        if code is not None:
            run.exited = True
            run.error = f"n/a (failed to start: {stderr_reason(Path(f'{prefix}.err'))})"
            log(f"  {name}: exited with {code} at start — {run.error}")
            stop(run.proc)
            return run
        wait = max(1.0, deadline - time.monotonic()) if how.wrap else 1.0
        if how.client == "wrk":
            status = probe(port, how.probe_path, wait)
        else:
            status = probe_h2load(port, how.probe_path, how.client, wait)
        if status is not None:
            run.probe_status = status
            break
        if time.monotonic() > deadline:
            run.error = f"n/a (port never answered within {how.timeout:g}s)"
            log(f"  {name}: {run.error}")
            stop(run.proc)
            return run
        time.sleep(0.1)
    time.sleep(0.5)  # let it settle before sampling idle memory
    listeners = _listener_inodes(port)
    if listeners and not _tree_holds(run.proc.pid, listeners):
        # Another process took the port between port_for's check and this server's
        # bind (another checkout's bench): it answered the probe, and would be measured.
        run.error = f"n/a (another process listens on :{port}; pass --base-port)"
        log(f"  {name}: {run.error}")
        stop(run.proc)
        return run
    run.idle_rss, run.nprocs = tree_memory(run.proc.pid)
    note = "" if status == 200 else f" (probe answered HTTP {status}!)"
    log(f"  {name}: ready on :{port}, RSS {mib(run.idle_rss)} in {run.nprocs} proc(s){note}")
    return run


# ======================================================================================
# wrk
# ======================================================================================

_UNITS_T = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _time(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", v)
    if not m:
        raise ValueError(v)
    return float(m.group(1)) * _UNITS_T[m.group(2)]


def _bytes(v: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMGT]?B)", v)
    if not m:
        raise ValueError(v)
    return float(m.group(1)) * _UNITS_B[m.group(2)]


def parse_wrk(text: str) -> dict[str, float]:
    """requests/s, transfer/s (bytes), latency p50/p99 (s), requests, errors, non2xx."""
    r: dict[str, float] = {}
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        r["rps"] = float(m.group(1))
    if m := re.search(r"^Transfer/sec:\s+(\S+)", text, re.M):
        r["transfer"] = _bytes(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        if m := re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", text, re.M):
            r[key] = _time(m.group(1))
    if m := re.search(r"^\s*(\d+) requests in ([\d.]+\w+), (\S+) read", text, re.M):
        r["requests"] = float(m.group(1))
    errs = 0
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        errs += sum(int(x) for x in m.groups())
        r["socket_errors"] = float(errs)
        # Which kind, for the notes: a timeout is a slow answer, connect a full backlog.
        for kind, count in zip(("connect", "read", "write", "timeout"), m.groups(), strict=True):
            if int(count):
                r[f"socket_errors_{kind}"] = float(count)
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        r["non2xx"] = float(m.group(1))
        errs += int(m.group(1))
    r["errors"] = float(errs)
    if "rps" not in r or "p50" not in r:
        raise ValueError("unparseable wrk output")
    return r


# h2load's switches per client mode, and the protocol ALPN must choose for it.
H2LOAD_MODE: dict[str, tuple[str, ...]] = {"h1": ("--h1",), "h2": ()}
H2LOAD_ALPN = {"h1": "http/1.1", "h2": "h2"}
_H2LOAD_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)


def parse_h2load(text: str) -> dict[str, float]:
    """requests/s, transfer/s (bytes), latency mean/max (s), requests, errors, non2xx.

    h2load gives no percentiles: its "time for request" line has min, max, mean, sd.
    errors = failed requests (not answered: connect, TLS, stream errors, timeouts) +
    4xx/5xx responses."""
    r: dict[str, float] = {}
    if m := re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s, (\S+)/s", text, re.M):
        r["rps"] = float(m.group(1))
        r["transfer"] = _bytes(m.group(2))
    if m := re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M):
        r["max"], r["mean"] = _time(m.group(2)), _time(m.group(3))
    if m := re.search(
        r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
        text,
        re.M,
    ):
        r["requests"] = float(m.group(2))
        r["failed"] = float(m.group(4))
    if m := _H2LOAD_STATUS.search(text):
        r["non2xx"] = float(int(m.group(3)) + int(m.group(4)))
    r["errors"] = r.get("failed", 0.0) + r.get("non2xx", 0.0)
    if "rps" not in r or "mean" not in r or "requests" not in r:
        raise ValueError("unparseable h2load output")
    return r


def client_argv(
    w: Workload, port: int, duration: int, args: argparse.Namespace, server: str = ""
) -> list[str]:
    """The load client's command line: wrk, or h2load over TLS for the TLS workloads."""
    if w.client == "wrk":
        tool = ["wrk", "-t1", f"-c{w.connections}", f"-d{duration}s", "--latency"]
        url = f"http://{HOST}:{port}{w.path}"
    else:
        tool = ["h2load", "-t1", f"-c{w.connections}", f"-m{w.streams}", f"-D{duration}"]
        tool += H2LOAD_MODE[w.client]
        url = f"https://{HOST}:{port}{w.path}"
    argv = ["taskset", "-c", str(args.client_cpu), *tool]
    own = SERVERS[server].headers if server else None
    for h in (*w.headers, *(own() if own is not None else ())):
        argv += ["-H", h]
    return [*argv, url]


def run_client(
    argv: list[str], duration: int, client: str = "wrk"
) -> tuple[dict[str, float] | None, str]:
    """Run the load client (wrk, or h2load in ``client`` mode); its numbers or why not."""
    tool = "wrk" if client == "wrk" else "h2load"
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + 20)
    except subprocess.TimeoutExpired:
        stop(proc)
        return None, f"{tool} timed out"
    except BaseException:
        stop(proc)
        raise
    _RUNNING.pop(proc.pid, None)
    if proc.returncode != 0:
        return None, f"{tool} exited {proc.returncode}: {out.strip().splitlines()[-1:]}"
    if client != "wrk":
        # What ALPN chose: a server answering another protocol is not measured as this one.
        m = re.search(r"^Application protocol: (\S+)", out, re.M)
        if m is None or m.group(1) != H2LOAD_ALPN[client]:
            got = m.group(1) if m else "none (no TLS connection)"
            return None, f"negotiated {got}, not {H2LOAD_ALPN[client]}: {out[-300:]!r}"
    try:
        return (parse_wrk(out) if client == "wrk" else parse_h2load(out)), out
    except ValueError as exc:
        return None, f"{exc}: {out[-300:]!r}"


# ======================================================================================
# Results
# ======================================================================================


@dataclass
class Row:
    server: str
    product: str
    colonnade: bool
    cmd: str = ""
    wrk_cmd: str = ""
    error: str | None = None
    runs: list[dict[str, float]] = field(default_factory=list)
    idle_rss: int | None = None
    nprocs: int = 0
    probe_status: int | None = None
    note: str = ""

    def med(self, key: str) -> float | None:
        vals = [r[key] for r in self.runs if key in r]
        return statistics.median(vals) if vals else None


def mib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f} MiB"


def fmt_rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.0f} B"


def fmt_time(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 1:
        return f"{v:.2f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.2f} ms"
    return f"{v * 1e6:.0f} µs"


def headline_ratio(w: Workload, rows: list[Row], peer: Row) -> float | None:
    col = next((r for r in rows if r.colonnade), None)
    if col is None or peer.colonnade:
        return None
    a, b = col.med(w.metric), peer.med(w.metric)
    if a is None or b is None or b == 0:
        return None
    return a / b


def first_row_ratio(w: Workload, rows: list[Row], row: Row) -> float | None:
    """``row``'s headline over the first row's: for workloads of colonnade variants only
    (auth: each scheme against the anonymous file)."""
    a, b = row.med(w.metric), rows[0].med(w.metric) if rows else None
    if row is rows[0] or a is None or not b:
        return None
    return a / b


def _variant_ratio(w: Workload, rows: list[Row], row: Row) -> str:
    peers = [r for r in rows if not r.colonnade and r.med(w.metric)]
    mine = row.med(w.metric)
    if not peers or mine is None:
        return ""
    best = max(peers, key=lambda r: r.med(w.metric) or 0)
    return f"{mine / (best.med(w.metric) or 1):.2f} (vs {best.server})"


def best_peer_ratio(w: Workload, rows: list[Row]) -> float | None:
    peers = [r for r in rows if not r.colonnade and r.med(w.metric)]
    if not peers:
        return None
    best = max(peers, key=lambda r: r.med(w.metric) or 0)
    return headline_ratio(w, rows, best)


# ======================================================================================
# The run
# ======================================================================================


def run_workload(w: Workload, servers: list[str], args: argparse.Namespace) -> list[Row]:
    log(f"workload {w.name}: {w.about} — {', '.join(servers)}")
    lat1, lat2 = w.latency
    rows: dict[str, Row] = {}
    running: dict[str, Running] = {}
    try:
        for name in servers:
            srv = SERVERS[name]
            row = rows[name] = Row(name, srv.product, srv.is_colonnade)
            # A server that wants credentials answers the bare path 401: probe its own.
            r = start_server(
                name,
                w.name,
                args,
                w.path if srv.headers is None else srv.probe,
                client=w.client,
            )
            row.cmd, row.error = r.cmd, r.error
            row.idle_rss, row.nprocs, row.probe_status = r.idle_rss, r.nprocs, r.probe_status
            row.note = r.note
            if r.error is None:
                running[name] = r
                row.wrk_cmd = cmdline(client_argv(w, r.port, args.duration, args, name))
        # warm-up, then round-robin repeats
        plan = [(0, args.warmup)] if args.warmup > 0 else []
        plan += [(i + 1, args.duration) for i in range(args.repeat)]
        for rep, duration in plan:
            for name, r in running.items():
                row = rows[name]
                if row.error:
                    continue
                if not r.alive():
                    code = r.proc.poll() if r.proc else None
                    reason = stderr_reason(Path(f"{r.log_prefix}.err"))
                    row.error = f"n/a (server exited with {code} during the run: {reason})"
                    log(f"  {name}: {row.error}")
                    continue
                before = _interference_sample(r, args)
                res, raw = run_client(
                    client_argv(w, r.port, duration, args, name), duration, w.client
                )
                if res is not None:
                    after = _interference_sample(r, args)
                    foreign = _interference(before, after)
                    if foreign is not None:
                        res["foreign_cpu"], res["foreign_client_cpu"] = foreign
                    if before is not None and after is not None and res.get("requests"):
                        # the server tree's CPU time per request: exact even when wrk
                        # (starved of CPU) does not saturate the server
                        res["cpu_per_req"] = (after.server_own - before.server_own) / res[
                            "requests"
                        ]
                label = "warm-up" if rep == 0 else f"run {rep}/{args.repeat}"
                if res is None:
                    log(f"  {name} {label}: wrk failed: {raw}")
                    if rep > 0:
                        row.error = f"n/a (wrk failed: {raw[:160]})"
                    continue
                if rep > 0:
                    row.runs.append(res)
                log(
                    f"  {name} {label}: {res['rps']:,.0f} req/s, "
                    f"{fmt_bytes(res.get('transfer'))}/s, {lat1} {fmt_time(res.get(lat1))}, "
                    f"{lat2} {fmt_time(res.get(lat2))}, errors {res['errors']:.0f}"
                    + (
                        f", other load on CPU{args.server_cpu} {res['foreign_cpu']:.0f}%"
                        if res.get("foreign_cpu", 0) >= FOREIGN_WARN
                        else ""
                    )
                    + (
                        f", other load on CPU{args.client_cpu} {res['foreign_client_cpu']:.0f}%"
                        if res.get("foreign_client_cpu", 0) >= FOREIGN_WARN
                        else ""
                    )
                )
    finally:
        for r in running.values():
            stop_run(r)
    return [rows[n] for n in servers]


@dataclass
class MemRow:
    server: str
    product: str
    cmd: str = ""
    error: str | None = None
    idle_rss: int | None = None
    nprocs: int = 0
    loaded_rss: int | None = None
    idle_largest: int | None = None
    loaded_largest: int | None = None
    ok: int = 0
    failed: int = 0
    alive: int | None = None
    connect_s: float | None = None
    client_errors: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _read_line(proc: subprocess.Popen[Any], prefix: str, timeout: float) -> dict[str, Any] | None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            return None
        if line.startswith(prefix + " "):
            return json.loads(line[len(prefix) + 1 :])  # type: ignore[no-any-return]
    return None


def run_memory(servers: list[str], args: argparse.Namespace, *, slow: bool = False) -> list[MemRow]:
    """RSS idle and holding connections: ``--memory-conns`` idle keep-alive ones, or
    (``slow``, the proxy-slow test) SLOW_CONNS clients that requested SLOW_PATH and
    read only its head."""
    n = SLOW_CONNS if slow else args.memory_conns
    held = f"{n} slow downloads of {SLOW_PATH}" if slow else f"{n} idle keep-alive connections"
    log(f"{SLOW if slow else MEMORY}: idle RSS and RSS with {held} — {', '.join(servers)}")
    rows: list[MemRow] = []
    for name in servers:
        srv = SERVERS[name]
        row = MemRow(name, srv.product)
        rows.append(row)
        r = start_server(name, SLOW if slow else MEMORY, args, srv.probe, idle=True)
        row.cmd, row.error, row.note = r.cmd, r.error, r.note
        if r.error or r.proc is None:
            continue
        client = None
        try:
            time.sleep(1.0)
            row.idle_rss, row.nprocs, row.idle_largest = tree_memory_detail(r.proc.pid)
            client = spawn(
                [
                    "taskset",
                    "-c",
                    str(args.client_cpu),
                    sys.executable,
                    str(BENCH / "idle_conns.py"),
                    "--port",
                    str(r.port),
                    "--path",
                    SLOW_PATH if slow else srv.probe,
                    "-n",
                    str(n),
                    "--timeout",
                    "40",
                    "--hold",
                    "90",
                    *(["--head-only"] if slow else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            ready = _read_line(client, "READY", 55)
            if ready is None:
                row.error = "n/a (idle client did not finish connecting in time)"
                continue
            row.ok, row.failed = ready["ok"], ready["failed"]
            row.connect_s, row.client_errors = ready["seconds"], ready["errors"]
            time.sleep(1.0)
            if r.alive():
                row.loaded_rss, _, row.loaded_largest = tree_memory_detail(r.proc.pid)
            else:
                row.error = "n/a (server died holding the connections)"
            assert client.stdin is not None
            client.stdin.write("check\n")
            client.stdin.flush()
            alive = _read_line(client, "ALIVE", 10)
            row.alive = alive["alive"] if alive else None
            log(
                f"  {name}: idle {mib(row.idle_rss)} → {mib(row.loaded_rss)} with "
                f"{row.ok}/{n} connections ({row.alive} still open), connect {row.connect_s}s"
                + (f", errors {row.client_errors}" if row.client_errors else "")
            )
        finally:
            if client is not None:
                with contextlib.suppress(OSError):
                    client.stdin.close()  # type: ignore[union-attr]
                try:
                    client.wait(timeout=10)
                    _RUNNING.pop(client.pid, None)
                except subprocess.TimeoutExpired:
                    stop(client)
            stop_run(r)
    return rows


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """bench/pipeline_cost.py pinned to the server CPU: its JSON, or {"error": why}."""
    n, r = (5000, 5) if args.quick else (20000, 7)
    log(f"{PIPELINE}: in-process cost of trivial modules ({n:,} requests x {r} rounds)")
    result = run_in_process("bench/pipeline_cost.py", n, r, args)
    for name, v in result.get("variants", {}).items():
        per = f", {v['per_module_us']:.3f} µs/module" if "per_module_us" in v else ""
        log(f"  {name}: {v['median_us']:.2f} µs/request, Δ {v['delta_us']:+.2f} µs{per}")
    return result


def run_session(args: argparse.Namespace) -> dict[str, Any]:
    """bench/session_cost.py pinned to the server CPU (its redis-server too): its
    JSON, or {"error": why}."""
    n, r = (500, 2) if args.quick else (2000, 5)
    log(f"{SESSION}: in-process cost of a session read-modify-write ({n:,} requests x {r} rounds)")
    result = run_in_process("bench/session_cost.py", n, r, args)
    for name, us in result.get("median_us", {}).items():
        added = result["added_us"].get(name)
        log(
            f"  {name}: {us:.1f} µs/request"
            + (f", +{added:.1f} µs" if added is not None else "")
            + f", {result['round_trips'][name]:g} round trips to Redis"
        )
    if "median_us" in result:
        result["requests_per_variant"], result["repeat"] = n * r, r
    return result


def run_in_process(script: str, n: int, r: int, args: argparse.Namespace) -> dict[str, Any]:
    """``script --json --requests n --repeat r`` with colonnade's python, pinned to
    the server CPU: the JSON of its last line (with "cmd"), or {"error": why}."""
    argv = [
        "taskset",
        "-c",
        str(args.server_cpu),
        COLONNADE_PY,
        script,
        "--json",
        "--requests",
        str(n),
        "--repeat",
        str(r),
    ]
    if not (REPO / COLONNADE_PY).exists():
        return {"error": f"{COLONNADE_PY} not found; run `make` first", "cmd": shlex.join(argv)}
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        stop(proc)
        return {"error": "timed out after 300 s", "cmd": shlex.join(argv)}
    except BaseException:
        stop(proc)
        raise
    _RUNNING.pop(proc.pid, None)
    try:
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        lines = [ln for ln in (err or out).strip().splitlines() if ln.strip()]
        why = lines[-1][:200] if lines else f"exit {proc.returncode}"
        return {"error": f"failed: {why}", "cmd": shlex.join(argv)}
    result["cmd"] = shlex.join(argv)
    return result


@dataclass
class IrRow:
    """One server of the instructions workload: a callgrind run per request count."""

    server: str
    product: str
    colonnade: bool
    cmd: str = ""
    error: str | None = None
    note: str = ""
    requests: list[int] = field(default_factory=list)  # N of each finished run
    totals: list[int] = field(default_factory=list)  # its instructions, all processes
    procs: list[int] = field(default_factory=list)  # its callgrind files (processes)
    seconds: list[float] = field(default_factory=list)  # its wall time: start to stopped
    reconnects: list[int] = field(default_factory=list)  # new connections the server asked for
    body: bytes | None = None  # every response's body, in every run (instructions.drive)
    per_request: float | None = None


def _check_valgrind(args: argparse.Namespace) -> tuple[str | None, argparse.Namespace, str]:
    """(why valgrind cannot be used, or None; the args to start servers with; a note).

    valgrind 3.19 (Debian 12's) does not implement pidfd_open, which colonnade's master
    needs to watch its workers: its worker then never starts. Where a pidfd_open under
    valgrind fails, colonnade runs with ``--workers 0`` (one process, serving) instead,
    and the rows say so."""
    if not sh(["sh", "-c", f"command -v {VALGRIND}"]):
        return "valgrind not found: run bench/setup.sh", args, ""
    code = "import os; os.close(os.pidfd_open(os.getpid())); print('pidfd ok')"
    if "pidfd ok" in sh([VALGRIND, "-q", "--tool=none", sys.executable, "-c", code], 60):
        return None, args, ""
    version = sh([VALGRIND, "--version"]) or "valgrind"
    note = (
        f"ran with `--workers 0` (one process) under callgrind: {version} does not "
        "implement pidfd_open, which the master needs to watch its worker"
    )
    return None, argparse.Namespace(**{**vars(args), "colonnade_workers": 0}), note


def run_instructions(
    pairs: list[tuple[Workload, list[str]]], args: argparse.Namespace
) -> list[tuple[Workload, list[IrRow]]]:
    """Per server: callgrind runs of N1, N2 and again N1 requests; (total2 - total1) /
    (N2 - N1), unless the runs fail :func:`instructions.implausible` (the row then says
    why, as n/a: a wrong reading does not pass as a number)."""
    n1, n2 = args.instruction_requests
    log(
        f"{INSTRUCTIONS}: user-space instructions per request under callgrind, "
        f"{n1:,}, {n2:,} and again {n1:,} keep-alive requests on one connection"
    )
    why, start_args, note = _check_valgrind(args)
    if why:
        log(f"  {why}")
    elif note:
        log(f"  colonnade: {note}")
    out: list[tuple[Workload, list[IrRow]]] = []
    for w, servers in pairs:
        rows: list[IrRow] = []
        out.append((w, rows))
        for name in servers:
            srv = SERVERS[name]
            row = IrRow(name, srv.product, srv.is_colonnade)
            rows.append(row)
            if why:
                row.error = f"n/a ({why})"
                continue
            for n in (n1, n2, n1):
                if not _callgrind_run(row, w, n, start_args):
                    break
            if _closes(w):
                pass  # every request on a new connection: the workload's point, not a note
            elif any(row.reconnects):
                row.note = (
                    "closed the keep-alive connection by design (`Connection: close`); the "
                    f"client opened a new one {' / '.join(map(str, row.reconnects))} time(s) "
                    "in the runs, so a little connection set-up is counted"
                )
            if srv.is_colonnade and note:
                row.note = "; ".join(x for x in (note, row.note) if x)
            if len(row.totals) == 3:
                if fault := implausible(n1, n2, row.totals, row.procs):
                    row.error = f"n/a (a faulty reading: {fault})"
                    log(f"  {name}: {row.error}")
                    continue
                row.per_request = (row.totals[1] - row.totals[0]) / (n2 - n1)
                log(
                    f"  {name}: {row.per_request:,.0f} instructions/request "
                    f"({row.procs[-1]} process(es); "
                    f"{' + '.join(f'{x:.0f} s' for x in row.seconds)}; the repeated "
                    f"{n1:,}-request run {row.totals[2] - row.totals[0]:+,} instructions)"
                )
    return out


def _closes(w: Workload) -> bool:
    """The workload asks for a new connection per request (``Connection: close``)."""
    return any(h.lower().replace(" ", "") == "connection:close" for h in w.headers)


def _callgrind_run(row: IrRow, w: Workload, n: int, args: argparse.Namespace) -> bool:
    """Start ``row.server`` under callgrind, send it ``n`` requests, stop it, count."""
    cg = CALLGRIND_DIR / row.server  # the same for both runs: one command line
    shutil.rmtree(cg, ignore_errors=True)
    cg.mkdir(parents=True)
    t0 = time.monotonic()
    r: Running | None = None
    try:
        r = start_server(
            row.server,
            f"{INSTRUCTIONS}-{n}",
            args,
            w.path,
            wrap=valgrind_argv(cg.relative_to(REPO)),  # servers run in REPO
            timeout=INSTR_START_TIMEOUT,
            client=w.client,
        )
        row.cmd, row.error, row.note = r.cmd, r.error, r.note
        if r.proc is None or r.error:
            return False
        try:
            if w.client == "wrk":
                own = SERVERS[row.server].headers
                headers = (*w.headers, *(own() if own else ()))
                driven = drive(
                    HOST, r.port, w.path, n, timeout=60 + 0.1 * n, headers=headers, body=row.body
                )
                reconnects, row.body = driven.reconnects, driven.body
            else:
                mode = H2LOAD_MODE[w.client]
                reconnects = drive_h2load(HOST, r.port, w.path, n, mode, timeout=60 + 0.1 * n)
            listeners = _listener_inodes(r.port)
            if not listeners or not _tree_holds(r.proc.pid, listeners):
                raise ValueError(f"the server no longer holds every listener on :{r.port}")
        except (OSError, ValueError) as exc:
            row.error = f"n/a ({n} requests: {exc})"
            log(f"  {row.server}: {row.error}")
            return False
        # gracefully: callgrind writes each process's counts when it exits, slowly
        stop_run(r, grace=INSTR_STOP_GRACE)
        try:
            total, procs = callgrind_total(cg)
        except (OSError, ValueError) as exc:
            row.error = f"n/a (callgrind: {exc})"
            log(f"  {row.server}: {row.error}")
            return False
        row.requests.append(n)
        row.totals.append(total)
        row.procs.append(procs)
        row.seconds.append(time.monotonic() - t0)
        row.reconnects.append(reconnects)
        return True
    finally:
        if r is not None and r.proc is not None and r.proc.pid in _RUNNING:
            stop(r.proc, grace=2.0)  # on a failure or an abort: no counts wanted
        if r is not None:
            stop_run(r)
        shutil.rmtree(cg, ignore_errors=True)


# ======================================================================================
# Report
# ======================================================================================


def sh(argv: Sequence[str], timeout: float = 15) -> str:
    try:
        p = subprocess.run(
            list(argv),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (p.stdout + p.stderr).strip()


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory": mem,
        "os": sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def versions() -> dict[str, str]:
    v: dict[str, str] = {}
    bench_py = REPO / BENCH_PY / "python"
    code = (
        "import importlib.metadata as m, sys\n"
        "print('python', sys.version.split()[0])\n"
        "for d in sys.argv[1:]:\n"
        "    try: print(d, m.version(d))\n"
        "    except Exception: print(d, 'not installed')\n"
    )
    out = sh(
        [
            str(bench_py),
            "-c",
            code,
            "uvicorn",
            "httptools",
            "uvloop",
            "granian",
            "gunicorn",
            "hypercorn",
            "psutil",
        ]
    )
    for line in out.splitlines():
        k, _, val = line.partition(" ")
        v["python (bench venv)" if k == "python" else k] = val
    col_py = REPO / COLONNADE_PY
    out = sh([str(col_py), "-c", code, "colonnade", "httptools", "uvloop", "msgspec"])
    for line in out.splitlines():
        k, _, val = line.partition(" ")
        if k == "python":
            v["python (colonnade .venv-compiled)"] = val
        elif k == "colonnade":
            v["colonnade"] = val
        else:
            v[f"{k} (colonnade .venv-compiled)"] = val
    v.setdefault("colonnade", "not installed")
    # mypyc installs a compiled module's .py beside its .so; the build's C helper
    # (pools/_libc) has none and is no compiled module (as colonnade.buildinfo counts)
    compiled = sorted(
        f
        for f in col_py.parent.parent.glob("lib/python*/site-packages/colonnade/**/*.so")
        if f.with_name(f.name.split(".")[0] + ".py").is_file()
    )
    v["colonnade build"] = (
        f"mypyc, {len(compiled)} modules compiled"
        f" ({', '.join(f.name.split('.')[0] for f in compiled)});"
        " colonnade-asgi-py: pure Python (.venv)"
    )
    v["nginx"] = sh(["nginx", "-v"]).rpartition("/")[2] or "not installed"
    v["valgrind"] = sh([VALGRIND, "--version"]).removeprefix("valgrind-") or "not installed"
    wrk = sh(["wrk", "-v"]).splitlines()
    v["wrk"] = wrk[0].split(" [")[0].replace("wrk ", "") if wrk else "not installed"
    h2load = sh(["h2load", "--version"])
    v["h2load"] = h2load.rpartition("/")[2] if "nghttp2/" in h2load else "not installed"
    v["openssl"] = sh(["openssl", "version"]).removeprefix("OpenSSL ") or "not installed"
    v["python (harness)"] = platform.python_version()
    return v


FOREIGN_WARN = 5.0  # % of the server CPU used by something else during a run: flagged


def _cpu_busy(cpu: int) -> tuple[float, float] | None:
    """(busy s, total s) of one CPU from /proc/stat; busy = user+nice+system (no irq)."""
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                f = [int(x) for x in line.split()[1:9]]
                return (f[0] + f[1] + f[2]) / tick, sum(f) / tick
    return None


@dataclass(frozen=True)
class Sample:
    server_cpu: tuple[float, float] | None  # busy s, total s
    server_own: float  # CPU s used by the server's process tree
    client_cpu: tuple[float, float] | None
    client_own: float  # CPU s used by our finished children (wrk) and the harness


def _interference_sample(r: Running, args: argparse.Namespace) -> Sample | None:
    if psutil is None or r.proc is None:
        return None
    own = 0.0
    # a PHP row's php-fpm is the server's own: the pair shares the server CPU
    roots = [r.proc.pid] + ([r.aux.pid] if r.aux is not None else [])
    for pid in [p for root in roots for p in (root, *_descendants(root))]:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            own += t.user + t.system
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    client_own = ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime
    return Sample(_cpu_busy(args.server_cpu), own, _cpu_busy(args.client_cpu), client_own)


def _share(x: tuple[float, float] | None, y: tuple[float, float] | None, own: float) -> float:
    if x is None or y is None or y[1] <= x[1]:
        return 0.0
    return max(0.0, 100.0 * ((y[0] - x[0]) - own) / (y[1] - x[1]))


def _interference(a: Sample | None, b: Sample | None) -> tuple[float, float] | None:
    """% of the server CPU and of the client CPU used by anything but the server and wrk
    during a run (another process, kernel threads): a measure of how noisy it was."""
    if a is None or b is None:
        return None
    return (
        _share(a.server_cpu, b.server_cpu, b.server_own - a.server_own),
        _share(a.client_cpu, b.client_cpu, b.client_own - a.client_own),
    )


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy jiffies, total jiffies) from /proc/stat."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                f = line.split()
                vals = [int(x) for x in f[1:9]]
                idle = vals[3] + vals[4]  # idle + iowait
                out[int(f[0][3:])] = (sum(vals) - idle, sum(vals))
    return out


def background_load(cpus: Sequence[int], seconds: float = 1.0) -> str:
    """How busy the benchmark CPUs are while we run nothing, and the top other processes.

    The benchmark assumes an otherwise idle machine; on a shared one the numbers are
    noise. This is recorded in the report, and warned about."""
    procs = []
    if psutil is not None:
        procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
        for pr in procs:
            with contextlib.suppress(psutil.Error):
                pr.cpu_percent(None)
    a = _cpu_times()
    time.sleep(seconds)
    b = _cpu_times()
    parts = []
    for c in cpus:
        if c in a and c in b and b[c][1] > a[c][1]:
            busy = 100.0 * (b[c][0] - a[c][0]) / (b[c][1] - a[c][1])
            parts.append(f"CPU{c} {busy:.0f}%")
    text = "busy " + ", ".join(parts) if parts else "unknown"
    hogs = []
    for pr in procs:
        with contextlib.suppress(psutil.Error):
            pct = pr.cpu_percent(None)
            if pct >= 10 and pr.pid != os.getpid():
                cmd = " ".join(pr.info.get("cmdline") or [pr.info.get("name") or "?"])
                hogs.append((pct, f"{cmd[:60]} ({pct:.0f}%)"))
    if hogs:
        text += "; other processes: " + ", ".join(h for _, h in sorted(hogs, reverse=True)[:3])
    return text


def git_rev() -> str:
    rev = sh(["git", "rev-parse", "--short", "HEAD"])
    if not rev or "fatal" in rev:
        return "no commit"
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    return rev + ("+dirty" if dirty else "")


def module_costs(
    results: list[tuple[Workload, list[Row]]], key: str = "rps"
) -> dict[str, tuple[float, float]]:
    """From wrk: modules-N variant → (µs per request, µs per trivial module, or for
    modules-50-disabled the Δ µs against modules-0), per module = (t_N - t_0) / N.

    The variants of the ``modules`` workload take turns, so run i of each is from the
    same round: the difference is taken per round, and its median over rounds reported
    (the difference of medians where a run failed and the rounds no longer pair up).
    ``key="rps"``: t = 1/rate, the server's CPU time per request when wrk saturates its
    one CPU. ``key="cpu_per_req"``: t = the server tree's CPU seconds / requests (psutil),
    which holds even when wrk, short of CPU itself, does not saturate the server."""

    rows = {
        r.server.removeprefix("colonnade-"): r
        for w, rs in results
        if w.name == "modules"
        for r in rs
        if not r.error
    }
    base = rows.get("modules-0")
    out: dict[str, tuple[float, float]] = {}
    if base is None or not (t0 := times_us(base, key)):
        return out
    out["modules-0"] = (statistics.median(t0), 0.0)
    for name, n in MODULE_COUNTS.items():
        if name not in rows or (pair := paired_delta(base, rows[name], key)) is None:
            continue
        per_req, delta = pair
        out[name] = (per_req, delta / n if n else delta)
    return out


def times_us(row: Row, key: str) -> list[float]:
    """µs per request of each run: 1e6 / rate (``key="rps"``), or the server's CPU
    time per request (``key="cpu_per_req"``)."""
    return [1e6 / v if key == "rps" else 1e6 * v for r in row.runs if (v := r.get(key))]


def paired_delta(base: Row, row: Row, key: str) -> tuple[float, float] | None:
    """(``row``'s µs/request, its difference to ``base``'s): the rows took turns, so
    run i of each is from the same round and the difference is taken per round, its
    median reported (the difference of medians where a run failed and the rounds no
    longer pair up)."""
    t0, tn = times_us(base, key), times_us(row, key)
    if not t0 or not tn:
        return None
    if len(tn) == len(t0):
        delta = statistics.median(a - b for a, b in zip(tn, t0, strict=True))
    else:
        delta = statistics.median(tn) - statistics.median(t0)
    return statistics.median(tn), delta


def rewrite_cost(results: list[tuple[Workload, list[Row]]]) -> dict[str, tuple[float, float]]:
    """The rewrite workload: key ("rps": 1/rate, "cpu_per_req": server CPU) →
    (µs/request behind the rules, µs more than the same file without them)."""
    for w, rows in results:
        if w.name != "rewrite" or len(rows) != 2 or any(r.error for r in rows):
            continue
        return {
            key: pair
            for key in ("rps", "cpu_per_req")
            if (pair := paired_delta(rows[0], rows[1], key)) is not None
        }
    return {}


def render_rewrite(results: list[tuple[Workload, list[Row]]]) -> list[str]:
    """What the rule set costs per request, against the aim of issue #18."""
    cost = rewrite_cost(results)
    if not cost:
        return []
    parts = []
    for key, what in (("cpu_per_req", "server CPU time"), ("rps", "1/rate")):
        if key in cost:
            per_req, delta = cost[key]
            parts.append(f"{what}: {per_req:.2f} µs/request, Δ {delta:+.2f} µs")
    delta = cost.get("cpu_per_req", cost.get("rps"))[1]  # type: ignore[index]
    verdict = "met" if delta < REWRITE_AIM_US else "missed"
    return [
        f"Rule set cost ({REWRITE_RULES} rules, none matching; median over rounds of the "
        "paired difference to colonnade-rewrite-0, the module with no rule): "
        + "; ".join(parts)
        + f". Aim (issue #18): < {REWRITE_AIM_US:g} µs per request — {verdict} (server "
        "CPU time where measured). On a busy machine this scatters by a few µs: the "
        f"`pipeline` workload measures the same rules in-process (row rewrite-{REWRITE_RULES}), "
        "and the instructions workload gives their difference without machine noise.",
        "",
    ]


def ops_ratio(results: list[tuple[Workload, list[Row]]]) -> dict[str, float]:
    """The asgi-ops workload: key → on / off, > 1 = the tools cost nothing: "rps"
    the ratio of the median req/s, "cpu_per_req" the off row's server CPU time per
    request over the on row's (median of each)."""
    for w, rows in results:
        if w.name != "asgi-ops" or len(rows) != 2 or any(r.error for r in rows):
            continue
        plain, ops = rows
        out = {}
        if (a := ops.med("rps")) and (b := plain.med("rps")):
            out["rps"] = a / b
        if (c := ops.med("cpu_per_req")) and (d := plain.med("cpu_per_req")):
            out["cpu_per_req"] = d / c
        return out
    return {}


def render_ops(results: list[tuple[Workload, list[Row]]]) -> list[str]:
    """asgi-hello with the operator's tools against without, and issue #21's aim."""
    ratio = ops_ratio(results)
    if "rps" not in ratio:
        return []
    cpu = ratio.get("cpu_per_req")
    verdict = "met" if ratio["rps"] >= OPS_AIM else "missed"
    return [
        "Operator's tools (the request monitor, the metrics counters, an admin binding "
        "serving /metrics, a trace rule matching nothing; all off in the baseline): "
        f"colonnade-asgi-ops / colonnade-asgi-ops-off = {ratio['rps']:.3f} (req/s)"
        + (f", {cpu:.3f} (server CPU time per request, off/on)" if cpu else "")
        + f". Aim (issue #21): ≥ {OPS_AIM:g}x — {verdict} (req/s, same run).",
        "",
    ]


def render_modules(
    results: list[tuple[Workload, list[Row]]], pipeline: dict[str, Any] | None
) -> list[str]:
    """The per-module cost: from the modules-* wrk rows, and in-process."""
    costs = module_costs(results)
    cpu = module_costs(results, "cpu_per_req")
    if not costs and not pipeline:
        return []
    o = ["### modules — what a trivial module costs per request", ""]
    o.append(
        "Target (issue #6): each trivial module subscribed to every stage under 1 µs per "
        "request; a module that is installed but not enabled costs nothing measurable. A "
        "trivial module has a synchronous do-nothing hook on each of the 12 stages of the "
        "pipeline, BEGIN_REQUEST … END_REQUEST (`bench/apps/trivial_modules.py`). The "
        "`50-post` rows show modules that also join the 11 post stages: 23 hooks, every "
        "point of the walk a module can join (notifications such as SEND_RESPONSE are not "
        "stages). A hook's cost is one interpreter call: the ns per hook column scales to "
        "any count."
    )
    o.append("")
    if costs:
        o.append(
            "**Over HTTP (wrk):** µs/request = 1 / (req/s), the server's time per request "
            "while wrk saturates its one CPU; server CPU µs/request = CPU time of the "
            "server's process tree / requests (holds also when wrk, short of CPU, does not "
            "saturate it). Per module = (value - value of modules-0) / N, the median over "
            "rounds of that difference: the variants take turns, one wrk run each per "
            "round, so slow drift of the machine hits them alike, but a noisy spell during "
            "one run does not (1 % of req/s is ~0.3 µs/request at 30k req/s). The "
            "in-process numbers below are the precise ones."
        )
        o.append("")
        o.append(
            "| workload | trivial modules | µs/request (1/rate) | per module (Δ for disabled) "
            "| server CPU µs/request | per module (Δ for disabled) |"
        )
        o.append("|---|---|---:|---:|---:|---:|")
        label = {
            "modules-0": "none installed",
            "modules-10": "10 enabled",
            "modules-50": "50 enabled",
            "modules-50-disabled": "installed, none enabled",
            "modules-50-post": "50 enabled, 23 hooks each",
        }

        def cells(name: str, pair: tuple[float, float] | None) -> str:
            if pair is None:
                return "n/a | n/a"
            per_req, per_mod = pair
            if name == "modules-0":
                return f"{per_req:.2f} | —"
            if name == "modules-50-disabled":
                return f"{per_req:.2f} | Δ {per_mod:+.2f} µs/request"
            return f"{per_req:.2f} | {per_mod:+.3f} µs"

        for name, pair in costs.items():
            o.append(
                f"| {name} | {label[name]} | {cells(name, pair)} | {cells(name, cpu.get(name))} |"
            )
        o.append("")
    if pipeline and "error" in pipeline:
        o.append(f"**In-process** (`bench/pipeline_cost.py`): n/a ({pipeline['error']})")
        o.append("")
    elif pipeline:
        o.append(
            f"**In-process** (`bench/pipeline_cost.py`, no sockets, pinned to the server "
            f"CPU): `GET /hello.txt` through `colonnade.testing.Client`, "
            f"{pipeline['requests']:,} requests x {pipeline['repeat']} rounds per variant, "
            "variants taking turns; medians over rounds of the paired difference to "
            f"variant 0. {pipeline['implementation']} {pipeline['python']}."
        )
        o.append("")
        o.append(
            "| variant | µs/request | Δ vs 0 (µs) | µs per module | ns per hook | "
            "per module (or Δ) over rounds |"
        )
        o.append("|---|---:|---:|---:|---:|---|")
        for name, v in pipeline["variants"].items():
            per = f"{v['per_module_us']:.3f}" if "per_module_us" in v else ""
            hook = f"{v['per_hook_ns']:.0f}" if "per_hook_ns" in v else ""
            lo, hi = v.get("per_module_spread_us") or v["delta_spread_us"]
            o.append(
                f"| {name} | {v['median_us']:.2f} | {v['delta_us']:+.2f} | {per} | {hook} | "
                f"{lo:.3f} … {hi:.3f} |"
            )
        o.append("")
        verdict = []
        if "per_module_us" in pipeline["variants"].get("50", {}):
            per = pipeline["variants"]["50"]["per_module_us"]
            verdict.append(
                f"{per:.2f} µs per enabled module (50) — {'met' if per < 1 else 'missed'}"
            )
        if "per_module_us" in pipeline["variants"].get("50-post", {}):
            per = pipeline["variants"]["50-post"]["per_module_us"]
            verdict.append(f"with post stages, {per:.2f} µs per module (50-post)")
        if "50-disabled" in pipeline["variants"] and pipeline.get("noise_us") is not None:
            delta, noise = pipeline["variants"]["50-disabled"]["delta_us"], pipeline["noise_us"]
            verdict.append(
                f"50 disabled: Δ {delta:+.2f} µs/request against a noise floor of {noise:.2f} "
                f"µs (consecutive rounds of variant 0) — "
                + ("not measurable" if abs(delta) <= noise else "measurable")
            )
        rewrite = pipeline["variants"].get(f"rewrite-{REWRITE_RULES}")
        if rewrite is not None:
            delta = rewrite["delta_us"]
            verdict.append(
                f"rewrite-{REWRITE_RULES} (hello.txt behind {REWRITE_RULES} rewrite rules, "
                f"none matching): Δ {delta:+.2f} µs/request — "
                f"{'met' if delta < REWRITE_AIM_US else 'missed'} (issue #18: < "
                f"{REWRITE_AIM_US:g} µs)"
            )
        if verdict:
            o.append("Against the targets: " + "; ".join(verdict) + ".")
            o.append("")
    return o


def render_session(session: dict[str, Any] | None) -> list[str]:
    """The session row: a read-modify-write's added latency and its round trips."""
    if not session:
        return []
    o = ["### session — a session read-modify-write, in-process", ""]
    if "error" in session:
        return [*o, f"`bench/session_cost.py`: n/a ({session['error']})", ""]
    o.append(
        "`bench/session_cost.py`, pinned to the server CPU with its redis-server (loopback): "
        "`GET /inc` through `colonnade.testing.Client` (no sockets), a handler that "
        'increments `session["n"]`; the same engine without `state.session` (none) is the '
        f"base. {session['requests_per_variant']:,} requests per variant in "
        f"{session['repeat']} rounds, variants taking turns; median request time. Round "
        "trips: writes of the redis-py client per request (one per command or pipeline), "
        "counted over 100 more requests. Issue #20: a read-modify-write with Redis costs "
        "one round trip to lock and load, one to save and unlock."
    )
    o.append("")
    o.append("| variant | median µs/request | added to none (µs) | round trips to Redis |")
    o.append("|---|---:|---:|---:|")
    about = {
        "none": "none (no session module)",
        "memory": "memory, read-write",
        "redis": "redis, read-write",
        "redis-read": "redis, read-only location",
    }
    for name, us in session["median_us"].items():
        added = session["added_us"].get(name)
        o.append(
            f"| {about.get(name, name)} | {us:.1f} | "
            f"{'—' if added is None else f'+{added:.1f}'} | {session['round_trips'][name]:g} |"
        )
    o.append("")
    return o


def instruction_ratio(rows: list[IrRow], peer: IrRow) -> float | None:
    """peer / colonnade instructions per request: > 1 = colonnade executes fewer."""
    col = next((r for r in rows if r.colonnade), None)
    if col is None or peer.colonnade or not col.per_request or peer.per_request is None:
        return None
    return peer.per_request / col.per_request


def render_memory(
    rows: list[MemRow], n: int, heading: str, how: str, notes: dict[str, str]
) -> list[str]:
    """The table of a memory test (run_memory): ``how`` each connection was used."""
    o = [heading, ""]
    o.append(
        "RSS summed over the server's whole process tree (master + worker where there is "
        "one), and of its largest process (the worker: where the connections live). "
        f"{how} (bench/idle_conns.py, pinned to the client CPU). "
        "'open' = connections the server had not closed when RSS was sampled."
    )
    o.append("")
    o.append(
        "| server | procs | idle RSS | RSS with conns | Δ | Δ per conn | "
        "largest proc idle | largest proc with conns | connected | open |"
    )
    o.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mr in rows:
        if mr.error and mr.loaded_rss is None:
            idle = mib(mr.idle_rss) if mr.idle_rss else ""
            o.append(f"| {mr.server} | {mr.error} | {idle} | | | | | | | |")
            continue
        d = (mr.loaded_rss - mr.idle_rss) if (mr.loaded_rss and mr.idle_rss) else None
        per = f"{d / max(mr.ok, 1) / 1024:.1f} KiB" if d is not None else "n/a"
        notes.update({mr.server: mr.note} if mr.note else {})
        o.append(
            f"| {mr.server} | {mr.nprocs} | {mib(mr.idle_rss)} | {mib(mr.loaded_rss)} | "
            f"{mib(d)} | {per} | {mib(mr.idle_largest)} | {mib(mr.loaded_largest)} | "
            f"{mr.ok:,}/{n:,} | "
            f"{'n/a' if mr.alive is None else f'{mr.alive:,}'} |"
        )
    o.append("")
    return o


#: Issue #24's memory aims: idle master and idle worker RSS (MiB), and the RSS each
#: idle keep-alive connection adds (KiB).
MASTER_AIM_MIB, WORKER_AIM_MIB, CONN_AIM_KIB = 20, 30, 5


def render_memory_aims(rows: list[MemRow]) -> list[str]:
    """Issue #24's verdicts for each colonnade server of the memory test: its idle
    worker (the largest process), its idle master (the rest of the tree: a server
    with one worker has two processes) and the RSS per idle connection."""
    out = []
    for mr in rows:
        if not mr.server.startswith("colonnade") or mr.idle_rss is None:
            continue
        verdicts = []
        worker = mr.idle_largest
        if worker is not None:
            met = worker < WORKER_AIM_MIB * 2**20
            verdicts.append(
                f"idle worker < {WORKER_AIM_MIB} MiB: {mib(worker)} — {'met' if met else 'missed'}"
            )
            if mr.nprocs == 2:
                master = mr.idle_rss - worker
                met = master < MASTER_AIM_MIB * 2**20
                verdicts.append(
                    f"idle master < {MASTER_AIM_MIB} MiB: {mib(master)} — "
                    + ("met" if met else "missed")
                )
        if mr.loaded_rss is not None and mr.ok:
            per = (mr.loaded_rss - mr.idle_rss) / mr.ok / 1024
            met = per < CONN_AIM_KIB
            verdicts.append(
                f"< {CONN_AIM_KIB} KiB per idle connection: {per:.1f} KiB — "
                + ("met" if met else "missed")
            )
        out.append(f"Aims (issue #24), {mr.server}: " + "; ".join(verdicts) + ".")
        out.append("")
    return out


def render_slow_aim(rows: list[MemRow]) -> list[str]:
    """The proxy-slow verdict: each colonnade front end's RSS (its process tree)
    with SLOW_CONNS slow downloads against SLOW_AIM_MIB (issue #19). Where fewer
    clients connected (a loaded machine: the client gave up on some), the size at
    SLOW_CONNS is estimated from the cost per connection measured, and says so."""
    out = []
    for mr in rows:
        if not SERVERS[mr.server].is_colonnade or not mr.ok:
            continue
        if mr.loaded_rss is None or mr.idle_rss is None:
            continue
        at_n = mr.idle_rss + (mr.loaded_rss - mr.idle_rss) / mr.ok * SLOW_CONNS
        how = "" if mr.ok >= SLOW_CONNS else f" (estimated: {mr.ok:,} connected)"
        verdict = "met" if at_n < SLOW_AIM_MIB * 2**20 else "missed"
        out.append(
            f"Aim (issue #19): {mr.server} below {SLOW_AIM_MIB} MiB with "
            f"{SLOW_CONNS:,} slow downloads: {mib(at_n)}{how} — {verdict}."
        )
    return [*out, ""] if out else []


def render_instructions(
    instr: list[tuple[Workload, list[IrRow]]], args: argparse.Namespace
) -> list[str]:
    if not instr:
        return []
    n1, n2 = args.instruction_requests
    o = ["### instructions — user-space CPU instructions per request (callgrind)", ""]
    o.append(
        "Instructions executed in user space by all of the server's processes (master and "
        "worker where there are two), counted by valgrind's callgrind while the server, "
        f"pinned to CPU {args.server_cpu}, answers {n1:,} and, in a second run, {n2:,} "
        "sequential keep-alive `GET`s on one connection: per request = (total₂ - total₁) / "
        f"{n2 - n1:,}, so start-up and shut-down cancel out. A third run of {n1:,} checks "
        "that they do (its total within 5 % of total₂ - total₁ of the first's), and every "
        "response must be a 200 with the same body: a row that fails reads n/a with the "
        "reason. The kernel's share of a "
        "request (syscalls, TCP) is not counted, so the ratio compares the servers' own "
        "code, and unlike req/s it does not move with machine noise. peer / colonnade > 1 "
        "means Colonnade executes fewer instructions, the same direction as the throughput "
        "ratios."
    )
    o.append("")
    for w, rows in instr:
        if _closes(w):
            o.append(f"#### {w.name} — `GET {w.path}`, `Connection: close`")
            o.append("")
            o.append(
                "Each request on a new connection (the client opens the next once the "
                "server closed the last): accept, connection set-up and close are in every "
                "request's count."
            )
        else:
            o.append(f"#### {w.name} — `GET {w.path}`")
        o.append("")
        o.append("| server | instructions/request | peer / colonnade | command line |")
        o.append("|---|---:|---:|---|")
        own_only = all(r.colonnade for r in rows)  # variants: Δ to the first row instead
        for r in rows:
            cmd = f"`{r.cmd}`" if r.cmd else ""
            cmd = cmd.replace("\n", " ")
            if r.per_request is None:
                o.append(f"| {r.server} | {r.error or 'n/a'} | | {cmd} |")
                continue
            ratio = instruction_ratio(rows, r)
            ratio_s = "" if r.colonnade else ("n/a" if ratio is None else f"{ratio:.2f}")
            base = rows[0].per_request
            if own_only and r is not rows[0] and base is not None:
                ratio_s = f"Δ {r.per_request - base:+,.0f} vs {rows[0].server}"
            o.append(f"| {r.server} | {r.per_request:,.0f} | {ratio_s} | {cmd} |")
        o.append("")
    by_note: dict[str, list[str]] = {}
    for _, rows in instr:
        for r in rows:
            if r.note:
                by_note.setdefault(r.note, []).append(r.server)
    for note, servers in by_note.items():
        o.append(f"Note: **{', '.join(servers)}** {note}.")
        o.append("")
    return o


def render_aims(w: Workload, rows: list[Row]) -> list[str]:
    """The workload's aims against its peers, each met or missed (or not measured)."""
    if not w.aims:
        return []
    verdicts = []
    by_name = {r.server: r for r in rows}
    for peer, aim in w.aims:
        row = by_name.get(peer)
        ratio = None
        if "/" in peer:
            mine, other = (by_name.get(name) for name in peer.split("/", 1))
            a = mine.med(w.metric) if mine else None
            b = other.med(w.metric) if other else None
            ratio = a / b if a and b else None
        elif row is not None and row.colonnade:
            ratio = first_row_ratio(w, rows, row)
            ratio = 1 / ratio if ratio else None
        elif row is not None:
            ratio = headline_ratio(w, rows, row)
        if ratio is None:
            verdicts.append(f"≥ {aim:.1f}x {peer}: not measured")
        else:
            verdicts.append(
                f"≥ {aim:.1f}x {peer}: {ratio:.2f} — {'met' if ratio >= aim else 'missed'}"
            )
    if w.no_timeouts:
        for row in (r for r in rows if r.colonnade and r.runs):
            timeouts = sum(int(run.get("socket_errors_timeout", 0)) for run in row.runs)
            verdict = "met" if timeouts == 0 else "missed"
            verdicts.append(
                f"no wrk timeout in {row.server}'s {len(row.runs)} runs: {timeouts} — {verdict}"
            )
    return [f"Aims (issue #{w.issue}): " + "; ".join(verdicts) + ".", ""]


def render(
    results: list[tuple[Workload, list[Row]]],
    mem: list[MemRow] | None,
    args: argparse.Namespace,
    meta: dict[str, Any],
    pipeline: dict[str, Any] | None = None,
    instr: list[tuple[Workload, list[IrRow]]] | None = None,
    session: dict[str, Any] | None = None,
    slow: list[MemRow] | None = None,
) -> str:
    o: list[str] = []
    notes: dict[str, str] = {}
    noisy = False
    m, v = meta["machine"], meta["versions"]
    o.append(f"## Latest run — {meta['date']}")
    o.append("")
    o.append(f"- **Command:** `{meta['argv']}` (wall time {meta['wall']})")
    o.append(f"- **Commit:** {meta['commit']}")
    o.append(
        f"- **Machine:** {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, kernel {m['kernel']}, "
        f"{m['os']}"
    )
    h2load = any(w.client != "wrk" for w, _ in results)
    o.append(
        f"- **Method:** each server with one worker pinned to CPU {args.server_cpu} "
        f"(`taskset -c {args.server_cpu}`), wrk `-t1`"
        + (" (h2load `-t1` for the TLS rows)" if h2load else "")
        + f" pinned to CPU {args.client_cpu}; "
        f"{args.warmup}s warm-up, then {args.repeat} x {args.duration}s per server, "
        "round-robin; medians shown. Errors = socket errors + non-2xx/3xx"
        + (" (h2load: failed requests + 4xx/5xx)" if h2load else "")
        + ", summed over runs."
    )
    o.append(
        f"- **Background load** (1 s sample while idle): before {meta['load_before']}; "
        f"after {meta['load_after']}"
    )
    o.append("- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()))
    o.append("")
    for w, rows in results:
        hdr = "transfer/s" if w.metric == "transfer" else "req/s"
        o.append(
            f"### {w.name} — `GET {w.path}`, {w.load()}"
            + (f", `{'`, `'.join(w.headers)}`" if w.headers else "")
        )
        o.append("")
        o.append(f"{w.about}. Headline: {hdr}.")
        o.append("")
        own_only = all(r.colonnade for r in rows)  # ratios to the first row instead
        lat1, lat2 = w.latency
        o.append(
            f"| server | req/s | transfer/s | {lat1} | {lat2} | errors | colonnade/peer "
            f"({hdr}) | runs ({hdr}) | idle RSS |"
        )
        o.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for r in rows:
            if r.error and not r.runs:
                idle = mib(r.idle_rss) if r.idle_rss else ""
                o.append(f"| {r.server} | {r.error} | | | | | | | {idle} |")
                continue
            ratio = headline_ratio(w, rows, r)
            ratio_s = "" if r.colonnade else ("n/a" if ratio is None else f"{ratio:.2f}")
            if own_only and (base := first_row_ratio(w, rows, r)) is not None:
                ratio_s = f"{base:.2f} of {rows[0].server}"
            elif r.colonnade and r is not next(x for x in rows if x.colonnade):
                # another colonnade variant (managed php-cgi): against the best peer too
                ratio_s = _variant_ratio(w, rows, r)
            runs = ", ".join(
                (fmt_bytes(x.get("transfer")) if w.metric == "transfer" else f"{x['rps']:,.0f}")
                for x in r.runs
            )
            errs = sum(x.get("errors", 0) for x in r.runs)
            note = f" ⚠ {r.error}" if r.error else ""
            reqs = sum(x.get("requests", 0) for x in r.runs)
            if errs > 0.01 * max(reqs, 1):
                note += f" ⚠ {errs / max(reqs, 1):.0%} of responses failed (see the server log)"
            foreign = max((x.get("foreign_cpu", 0.0) for x in r.runs), default=0.0)
            if foreign >= FOREIGN_WARN:
                note += f" ⚠ CPU{args.server_cpu} {foreign:.0f}% busy with other work"
                noisy = True
            foreign = max((x.get("foreign_client_cpu", 0.0) for x in r.runs), default=0.0)
            if foreign >= FOREIGN_WARN:
                note += f" ⚠ CPU{args.client_cpu} (load client) {foreign:.0f}% busy with other work"
                noisy = True
            if r.probe_status not in (None, 200):
                note += f" ⚠ probe HTTP {r.probe_status}"
            o.append(
                f"| {r.server}{note} | {fmt_rate(r.med('rps'))} | {fmt_bytes(r.med('transfer'))} | "
                f"{fmt_time(r.med(lat1))} | {fmt_time(r.med(lat2))} | {errs:,.0f} | {ratio_s} | "
                f"{runs} | {mib(r.idle_rss)} |"
            )
        o.append("")
        o += render_aims(w, rows)
        if w.name == "rewrite":
            o += render_rewrite(results)
        if w.name == "asgi-ops":
            o += render_ops(results)
        notes.update({r.server: r.note for r in rows if r.note})
    o += render_modules(results, pipeline)
    o += render_session(session)
    o += render_instructions(instr or [], args)
    if mem:
        o += render_memory(
            mem,
            args.memory_conns,
            f"### memory — idle, and holding {args.memory_conns:,} idle keep-alive connections",
            "Each connection sent one keep-alive GET of the probe path and read the "
            "response, then stayed idle",
            notes,
        )
        o += render_memory_aims(mem)
    if slow:
        o += render_memory(
            slow,
            SLOW_CONNS,
            f"### {SLOW} — the front end holding {SLOW_CONNS:,} slow downloads "
            f"(aim: below {SLOW_AIM_MIB} MiB)",
            f"Each client sent one GET of {SLOW_PATH} (through the proxy, from its nginx "
            "upstream) and read only the response head, leaving the body unread, as a "
            "client too slow to download it (`--head-only`)",
            notes,
        )
        o += render_slow_aim(slow)
    if noisy:
        o.append(
            f"⚠ CPU… busy = during at least one run, something other than the server (on "
            f"CPU{args.server_cpu}) or wrk (on CPU{args.client_cpu}) used that share of the "
            "CPU (another process, kernel threads): that row's numbers are understated. "
            "Rerun on an idle machine."
        )
        o.append("")
    if notes:
        o.append("Notes: " + "; ".join(f"**{k}** {val}" for k, val in notes.items()) + ".")
        o.append("")
    o.append("### Command lines")
    o.append("")
    o.append(
        "Run from the repository root. Servers: `stdout`/`stderr` in `bench/out/logs/`; "
        "nginx config in `bench/out/nginx/`."
    )
    o.append("")
    o.append("<details><summary>servers and load clients (wrk, h2load), per workload</summary>")
    o.append("")
    o.append("```sh")
    for w, rows in results:
        o.append(f"# {w.name}")
        for r in rows:
            if r.error and not r.runs:
                o.append(f"# {r.server} failed to start; last command tried:")
            o.append(r.cmd or f"# {r.server}: not started")
            if r.wrk_cmd:
                o.append(r.wrk_cmd)
    if pipeline:
        o.append(f"# {PIPELINE} (in-process)")
        o.append(pipeline["cmd"])
    if session and "cmd" in session:
        o.append(f"# {SESSION} (in-process)")
        o.append(session["cmd"])
    for w, ir_rows in instr or []:
        n1, n2 = args.instruction_requests
        o.append(
            f"# {INSTRUCTIONS} {w.name}: each run twice; the harness sends {n1} / {n2} "
            f"x 'GET {w.path}' on one keep-alive connection"
        )
        o += [r.cmd for r in ir_rows if r.cmd]
    if mem:
        o.append(f"# {MEMORY} (idle keep-alive settings)")
        for mr in mem:
            if mr.cmd:
                o.append(mr.cmd)
        o.append(
            f"{shlex.quote(sys.executable)} bench/idle_conns.py --port PORT --path PROBE "
            f"-n {args.memory_conns}   # pinned with taskset -c {args.client_cpu}"
        )
    if slow:
        o.append(f"# {SLOW} (slow downloads through the proxy)")
        o += [mr.cmd for mr in slow if mr.cmd]
        o.append(
            f"{shlex.quote(sys.executable)} bench/idle_conns.py --port PORT --path {SLOW_PATH} "
            f"-n {SLOW_CONNS} --head-only   # pinned with taskset -c {args.client_cpu}"
        )
    o.append("```")
    o.append("")
    conf = _NGINX_CONFS
    if conf:
        o.append(f"nginx config (`{conf[0].name}`; `nginx-nolog` has `access_log off;`):")
        o.append("")
        o.append("```nginx")
        o.append(conf[0].read_text().rstrip())
        o.append("```")
        o.append("")
    confs = [
        *(
            (f"TLS rows, {kind}", p, "; the certificate is made anew each run")
            for kind, p in _TLS_CONFS.items()
        ),
        *((f"PHP rows, {kind}", p, "") for kind, p in _PHP_CONFS.items()),
        *((f"Proxy rows, {kind}", p, "") for kind, p in _PROXY_CONFS.items()),
        *(
            (
                f"{name}",
                p,
                f"; its site's web.toml is {TRACE_RULE_DIR}/web.toml" * ("off" not in name),
            )
            for name, p in _OPS_CONFS.items()
        ),
    ]
    for what, path, more in confs:
        o.append(f"{what} (`{path.name}`{more}):")
        o.append("")
        o.append("```nginx" if what.endswith("nginx") else "```toml")
        o.append(path.read_text().rstrip())
        o.append("```")
        o.append("")
    fpm = next(iter(sorted(PHP_DIR.glob("fpm-*.conf"))), None)
    if fpm is not None and any(w.name == "php-hello" for w, _ in results):
        o.append(f"PHP rows, php-fpm (`{fpm.name}`, one per row with its own socket):")
        o.append("")
        o.append("```ini")
        o.append(fpm.read_text().rstrip())
        o.append("```")
        o.append("")
    o.append("</details>")
    o.append("")
    return "\n".join(o)


RESULTS_HEADER = """# Colonnade benchmark results

Written by `bench/run.py` (see bench/README.md). The latest run is replaced on each run;
the history keeps the headline ratio colonnade / best peer per workload (> 1 = Colonnade
faster).
"""
HIST_START, HIST_END = "<!-- history:start -->", "<!-- history:end -->"
LATEST_START, LATEST_END = "<!-- latest:start -->", "<!-- latest:end -->"
NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"
HIST_MAX = 40


def write_results(path: Path, section: str, history_row: str) -> None:
    text = path.read_text() if path.exists() else ""
    rows: list[str] = []
    if HIST_START in text and HIST_END in text:
        body = text.split(HIST_START, 1)[1].split(HIST_END, 1)[0]
        rows = [ln for ln in body.splitlines() if ln.startswith("| 20")]
    rows = [history_row, *rows][:HIST_MAX]
    # Hand-written analysis (profiles, what a miss needs) survives every run.
    notes: list[str] = []
    if NOTES_START in text and NOTES_END in text:
        kept = text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0]
        notes = [NOTES_START, kept.strip("\n"), NOTES_END, ""]
    out = [
        RESULTS_HEADER,
        *notes,
        LATEST_START,
        section.rstrip(),
        LATEST_END,
        "",
        HIST_START,
        "## History",
        "",
        "| date | commit | mode | colonnade / best peer (headline metric) |",
        "|---|---|---|---|",
        *rows,
        HIST_END,
        "",
    ]
    if path.exists() and not path.is_file():
        # Not a results file (``--out /dev/null``): written to, never replaced; a
        # rename over /dev/null would leave a regular file there for every process.
        with path.open("w") as sink:
            sink.write("\n".join(out))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(out))
    tmp.replace(path)


# ======================================================================================
# main
# ======================================================================================


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark Colonnade against peer servers on loopback.",
        epilog="Workloads: "
        + ", ".join(w.name for w in WORKLOADS)
        + f", {MEMORY}, {SLOW}, {PIPELINE}, {SESSION}, {INSTRUCTIONS}",
    )
    ap.add_argument(
        "--only",
        help="comma-separated workloads (and/or 'memory', 'pipeline', 'session', "
        "'instructions', or 'instructions:W' for workload W's callgrind pair only) to run",
    )
    ap.add_argument(
        "--servers",
        help="comma-separated server variants to include, or 'peers' / 'colonnade' (default: all)",
    )
    # 5 runs of 3 s rather than 3 of 5 s: the same time per server, but the servers
    # take turns more often, so a noisy spell of the VM hits one run in five.
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per server (default 5)")
    ap.add_argument(
        "--warmup", type=int, default=1, help="warm-up seconds per server (default 1; 0 = none)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 repeat of 2s; instructions: {},{} requests".format(*QUICK_INSTRUCTION_REQUESTS),
    )
    ap.add_argument(
        "--memory-conns",
        type=int,
        default=10000,
        help="idle connections for the memory test (default 10000)",
    )
    ap.add_argument(
        "--out",
        default=str(BENCH / "RESULTS.md"),
        help="results file (default bench/RESULTS.md); '-' = print only",
    )
    ap.add_argument("--server-cpu", type=int, default=None, help="CPU for servers (default 0)")
    ap.add_argument("--client-cpu", type=int, default=None, help="CPU for wrk (default 1)")
    ap.add_argument(
        "--colonnade-workers",
        type=int,
        default=None,
        help="value for colonnade's --workers (default 1, falling back to 0 "
        "while only single-process mode exists)",
    )
    ap.add_argument(
        "--instruction-requests",
        metavar="N1,N2",
        help="requests of the callgrind runs of the instructions workload (N1 twice) "
        "(default {},{})".format(*INSTRUCTION_REQUESTS),
    )
    ap.add_argument("--base-port", type=int, default=18080)
    ap.add_argument(
        "--start-timeout",
        type=float,
        default=20.0,
        help="seconds for a server to answer (default 20)",
    )
    ap.add_argument("--max-minutes", type=float, default=30.0, help="hard bound on the whole run")
    ap.add_argument("--list", action="store_true", help="list workloads and servers, then exit")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.duration = 1, 2
    if args.duration < 1 or args.repeat < 1:
        ap.error("--duration and --repeat must be >= 1")
    if args.instruction_requests:
        try:
            n1, n2 = (int(x) for x in args.instruction_requests.split(","))
        except ValueError:
            ap.error("--instruction-requests: two numbers N1,N2")
        if not 0 < n1 < n2:
            ap.error("--instruction-requests: need 0 < N1 < N2")
        args.instruction_requests = (n1, n2)
    else:
        args.instruction_requests = (
            QUICK_INSTRUCTION_REQUESTS if args.quick else INSTRUCTION_REQUESTS
        )
    cpus = sorted(os.sched_getaffinity(0))
    if args.server_cpu is None:
        args.server_cpu = cpus[0]
    if args.client_cpu is None:
        args.client_cpu = cpus[1] if len(cpus) > 1 else cpus[0]
    return args


def select_servers(names: Sequence[str], spec: str | None) -> list[str]:
    if not spec:
        return list(names)
    want = {s.strip() for s in spec.split(",") if s.strip()}
    return [
        n
        for n in names
        if n in want
        or SERVERS[n].product in want
        or ("peers" in want and not SERVERS[n].is_colonnade)
        or ("colonnade" in want and SERVERS[n].is_colonnade)
    ]


def estimate(
    workloads: list[Workload],
    mem: list[str],
    args: argparse.Namespace,
    pipeline: bool = False,
    instr: Sequence[tuple[Workload, list[str]]] = (),
    session: bool = False,
) -> float:
    t = 0.0
    # per callgrind run (N1, N2, N1 again): ~10 s to start and stop, ~1 ms per request
    n1, n2 = args.instruction_requests
    t += sum(len(s) for _, s in instr) * (30.0 + (2 * n1 + n2) / 1000)
    for w in workloads:
        t += len(w.servers) * (2.0 + args.warmup + 0.3 + args.repeat * (args.duration + 0.3))
    if pipeline:
        t += 8.0 if args.quick else 25.0
    if session:
        t += 10.0 if args.quick else 40.0
    return t + len(mem) * 8.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:22} GET {w.path:10} -c{w.connections:<5} {', '.join(w.servers)}")
        print(f"{MEMORY:22} {', '.join(MEMORY_SERVERS)}")
        print(f"{SLOW:22} GET {SLOW_PATH} x{SLOW_CONNS} head only: {', '.join(SLOW_SERVERS)}")
        print(f"{PIPELINE:22} in-process (bench/pipeline_cost.py), colonnade only")
        print(f"{SESSION:22} in-process (bench/session_cost.py), colonnade + redis-server")
        pairs = "; ".join(f"{w} {', '.join(s)}" for w, s in INSTRUCTION_PAIRS)
        print(f"{INSTRUCTIONS:22} callgrind: {pairs}")
        return 0
    names = {w.name for w in WORKLOADS} | {MEMORY, SLOW, PIPELINE, SESSION, INSTRUCTIONS}
    only = [s.strip() for s in args.only.split(",")] if args.only else [*sorted(names)]
    # ``instructions:W``: the instructions workload for W's pair only (W of INSTRUCTION_PAIRS)
    instr_only = {s.split(":", 1)[1] for s in only if s.startswith(f"{INSTRUCTIONS}:")}
    if instr_only:
        only = [s for s in only if not s.startswith(f"{INSTRUCTIONS}:")] + [INSTRUCTIONS]
    if bad := [s for s in only if s not in names] + sorted(
        instr_only - {w for w, _ in INSTRUCTION_PAIRS}
    ):
        print(
            f"unknown workload(s): {', '.join(bad)}; known: {', '.join(sorted(names))}",
            file=sys.stderr,
        )
        return 2
    workloads = [
        dataclasses.replace(w, servers=tuple(select_servers(w.servers, args.servers)))
        for w in WORKLOADS
        if w.name in only
    ]
    workloads = [w for w in workloads if w.servers]
    mem_servers = select_servers(MEMORY_SERVERS, args.servers) if MEMORY in only else []
    slow_servers = select_servers(SLOW_SERVERS, args.servers) if SLOW in only else []
    # colonnade-only: skipped when --servers names no colonnade variant
    with_pipeline = PIPELINE in only and any(
        SERVERS[n].is_colonnade for n in select_servers(list(SERVERS), args.servers)
    )
    with_session = SESSION in only and any(
        SERVERS[n].is_colonnade for n in select_servers(list(SERVERS), args.servers)
    )
    by_name = {w.name: w for w in WORKLOADS}
    instr_pairs = [
        (by_name[w], servers)
        for w, candidates in INSTRUCTION_PAIRS
        if INSTRUCTIONS in only
        and (not instr_only or w in instr_only)
        and (servers := select_servers(candidates, args.servers))
    ]
    tls = any(w.client != "wrk" for w in [*workloads, *(w for w, _ in instr_pairs)])
    for tool in ("wrk", "taskset", "nginx", *(("h2load", "openssl") if tls else ())):
        if not sh(["sh", "-c", f"command -v {tool}"]):
            print(f"{tool} not found: run bench/setup.sh first", file=sys.stderr)
            return 2

    atexit.register(stop_all)
    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(int(args.max_minutes * 60))
    nofile = raise_nofile()
    with contextlib.suppress(OSError):  # keep the harness itself off the server CPU
        os.sched_setaffinity(0, {args.client_cpu})
    generate_static(WWW)
    generate_modules(REPO / MODULES_DIR)
    generate_auth(REPO / AUTH_DIR, WWW, str(REPO / COLONNADE_PYTHON))
    generate_rewrite(WWW, REPO / REWRITE_DIR)
    generate_rewrite(WWW, REPO / f"{REWRITE_DIR}-0", ())
    trace_rule = REPO / TRACE_RULE_DIR / "web.toml"
    trace_rule.parent.mkdir(parents=True, exist_ok=True)
    trace_rule.write_text(TRACE_RULE_TOML)
    make_php.generate(PHP_DIR)
    if tls:  # a new certificate each run, for every TLS server alike
        generate_tls(TLS_DIR)
    LOGS.mkdir(parents=True, exist_ok=True)

    cpus = sorted({args.server_cpu, args.client_cpu})
    load_before = background_load(cpus)
    if any(int(x.split()[1].rstrip("%")) >= 10 for x in re.findall(r"CPU\d+ \d+%", load_before)):
        log(f"WARNING: the machine is not idle ({load_before}); results will be noisy")
    started = time.monotonic()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    log(
        f"{len(workloads)} workload(s), memory test on {len(mem_servers)} server(s)"
        f"{', in-process pipeline cost' if with_pipeline else ''}"
        f"{', in-process session cost' if with_session else ''}"
        f"{', instructions under callgrind' if instr_pairs else ''}; estimated "
        f"{estimate(workloads, mem_servers + slow_servers, args, with_pipeline, instr_pairs, with_session) / 60:.1f}"  # noqa: E501
        " min; "
        f"RLIMIT_NOFILE {nofile}"
    )
    results: list[tuple[Workload, list[Row]]] = []
    mem: list[MemRow] | None = None
    slow: list[MemRow] | None = None
    pipeline: dict[str, Any] | None = None
    session: dict[str, Any] | None = None
    instr: list[tuple[Workload, list[IrRow]]] = []
    interrupted = None
    try:
        for w in workloads:
            results.append((w, run_workload(w, list(w.servers), args)))
        if with_pipeline:
            pipeline = run_pipeline(args)
        if with_session:
            session = run_session(args)
        if instr_pairs:
            instr = run_instructions(instr_pairs, args)
        if mem_servers:
            mem = run_memory(mem_servers, args)
        if slow_servers:
            slow = run_memory(slow_servers, args, slow=True)
    except (KeyboardInterrupt, AbortError) as exc:
        interrupted = f"interrupted ({exc or 'Ctrl-C'})"
        log(interrupted + "; stopping servers")
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # don't break the clean-up
            signal.signal(sig, signal.SIG_IGN)
        stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    wall = time.monotonic() - started
    meta = {
        "load_before": load_before,
        "load_after": background_load(cpus),
        "date": date,
        "argv": shlex.join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "wall": f"{int(wall // 60)}m{int(wall % 60):02d}s"
        + (f", {interrupted}" if interrupted else ""),
        "commit": git_rev(),
        "machine": machine_info(),
        "versions": versions(),
    }
    section = render(results, mem, args, meta, pipeline, instr, session, slow)
    mode = f"{args.repeat}x{args.duration}s" + (" (interrupted)" if interrupted else "")
    cells = []
    for w, rows in results:
        if all(r.colonnade for r in rows):  # no peer: each against the first row (auth)
            if w.name == "auth":
                parts = [
                    f"{r.server.removeprefix('colonnade-auth-')} {x:.2f}"
                    for r in rows
                    if (x := first_row_ratio(w, rows, r)) is not None
                ]
                cells.append(f"auth/anonymous {'/'.join(parts) or 'n/a'}")
            if w.name == "rewrite" and (cost := rewrite_cost(results)):
                delta = cost.get("cpu_per_req", cost.get("rps"))[1]  # type: ignore[index]
                cells.append(f"rewrite-{REWRITE_RULES} Δ {delta:+.2f} µs")
            if w.name == "asgi-ops" and (ops := ops_ratio(results)):
                cells.append(f"asgi-ops on/off {ops['rps']:.2f}")
            continue
        ratio = best_peer_ratio(w, rows)
        cells.append(f"{w.name} {'n/a' if ratio is None else f'{ratio:.2f}'}")
    costs, what = module_costs(results, "cpu_per_req"), "server CPU"
    if not costs:
        costs, what = module_costs(results), "1/rate"
    keys = ("modules-10", "modules-50", "modules-50-post")
    per_module = [f"{costs[k][1]:.2f}" for k in keys if k in costs]
    if per_module:
        cells.append(f"µs/module (wrk, {what}, 10/50/50-post) {'/'.join(per_module)}")
    if pipeline and "variants" in pipeline:
        v = pipeline["variants"]
        per_module = [f"{v[k]['per_module_us']:.2f}" for k in ("10", "50", "50-post") if k in v]
        cells.append(f"µs/module (in-process, 10/50/50-post) {'/'.join(per_module)}")
    if session and "added_us" in session and "redis" in session["added_us"]:
        trips = session["round_trips"]["redis"]
        cells.append(
            f"session redis +{session['added_us']['redis']:.0f} µs ({trips:g} round trips)"
        )
    for w, ir_rows in instr:
        # the peer with the fewest instructions: peer / colonnade, > 1 = colonnade fewer
        ratios = [x for r in ir_rows if (x := instruction_ratio(ir_rows, r)) is not None]
        if ratios:
            cells.append(f"instructions {w.name} {min(ratios):.2f}")
    history_row = f"| {date} | {meta['commit']} | {mode} | {' · '.join(cells) or '—'} |"

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = {
        "meta": meta,
        "args": vars(args),
        "workloads": [
            {"workload": w.name, "rows": [r.__dict__ for r in rows]} for w, rows in results
        ],
        "memory": [r.__dict__ for r in mem] if mem else [],
        SLOW: [r.__dict__ for r in slow] if slow else [],
        "pipeline": pipeline,
        "session": session,
        "instructions": [
            {"workload": w.name, "path": w.path, "rows": [r.__dict__ for r in ir_rows]}
            for w, ir_rows in instr
        ],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"results-{stamp}.json").write_text(json.dumps(raw, indent=1, default=str))
    if args.out == "-":
        print(section)
    else:
        out = Path(args.out)
        if not out.is_absolute():
            out = Path.cwd() / out
        if interrupted:  # partial numbers never replace a complete run
            out = OUT / "RESULTS-interrupted.md"
        write_results(out, section, history_row)
        print(section)
        log(f"wrote {out} (raw: bench/out/results-{stamp}.json)")
    log(f"done in {meta['wall']}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
