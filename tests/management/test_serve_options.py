"""``colonnade serve``'s uvicorn/gunicorn options, from their one table: the
precedence rule (command line > environment > config file > default) for every
row, and each option's behaviour over real sockets where it has one."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import colonnade
from colonnade.config.schema import ServerConfig
from colonnade.errors import ConfigError
from colonnade.management import serve_options
from colonnade.management.cli import _parser, config_source
from colonnade.management.embed import _argv
from colonnade.management.serve_options import OPTIONS
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

#: Rows that set a config key, with a value the file gives, and others for the
#: environment and the command line (all in range, all different).
KEYED = [
    o for o in OPTIONS if o.config_key is not None and o.type in ("int", "float") and not o.choices
]
VALUES = {"int": (7, 11, 13), "float": (7.0, 11.0, 13.0)}


def _key(config: ServerConfig, dotted: str) -> Any:
    parts = dotted.split(".")
    value: Any = config
    if parts[0] == "pools":
        value, parts = config.pools["default"], parts[2:]
    for part in parts:
        value = getattr(value, part)
    return value


def _file(tmp_path: Path, dotted: str | None = None, value: Any = None) -> Path:
    (tmp_path / "www").mkdir(exist_ok=True)
    text = '[[sites]]\nname = "main"\nbindings = ["http://127.0.0.1:1"]\nroot = "www"\n'
    if dotted is not None:
        table, _, key = dotted.rpartition(".")
        text = f"[{table}]\n{key} = {json.dumps(value)}\n\n" + text
    path = tmp_path / "colonnade.toml"
    path.write_text(text)
    return path


def _loaded(argv: list[str], environ: dict[str, str]) -> ServerConfig:
    args = _parser().parse_args(["serve", *argv])
    serve_options.prepare(args, environ)
    return config_source(args).load()


@pytest.mark.parametrize("option", KEYED, ids=[o.dest for o in KEYED])
def test_precedence_command_line_environment_file_default(
    option: serve_options.ServeOption, tmp_path: Path
) -> None:
    assert option.config_key is not None
    in_file, in_env, on_line = VALUES[option.type]
    scale = option.scale
    default = _key(_loaded(["-c", str(_file(tmp_path))], {}), option.config_key)
    path = str(_file(tmp_path, option.config_key, in_file * scale))
    flag, env = option.flags[-1], {option.env: str(in_env)}
    assert _key(_loaded(["-c", path], {}), option.config_key) == in_file * scale != default
    assert _key(_loaded(["-c", path], env), option.config_key) == in_env * scale
    both = _loaded(["-c", path, flag, str(on_line)], env)
    assert _key(both, option.config_key) == on_line * scale


def test_an_environment_value_of_the_wrong_type_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="COLONNADE_LIMIT_CONCURRENCY='many'"):
        _loaded([], {"COLONNADE_LIMIT_CONCURRENCY": "many"})


def test_a_value_out_of_range_names_the_config_key() -> None:
    with pytest.raises(ConfigError) as caught:
        _loaded(["--limit-concurrency", "0"], {})
    assert caught.value.key == "server.limits.max_connections"


def test_switches_and_process_options_come_from_the_environment_too() -> None:
    args = _parser().parse_args(["serve"])
    serve_options.prepare(args, {"COLONNADE_ACCESS_LOG": "false", "COLONNADE_WORKERS": "3"})
    assert args.no_access_log and args.workers == 3
    args = _parser().parse_args(["serve", "--access-log", "-w", "2"])
    serve_options.prepare(args, {"COLONNADE_ACCESS_LOG": "false", "COLONNADE_WORKERS": "3"})
    assert not args.no_access_log and args.workers == 2
    args = _parser().parse_args(["serve"])
    serve_options.prepare(args, {})
    assert not args.no_access_log and args.workers == 0 and args.log_level == "info"


def test_max_requests_jitter_adds_at_most_n_and_needs_max_requests() -> None:
    drawn = {
        serve_options.overrides({"max_requests": 100, "max_requests_jitter": 5}, random.Random(s))[
            "pools.default.recycling.requests"
        ]
        for s in range(200)
    }
    assert drawn == set(range(100, 106))
    with pytest.raises(ConfigError, match="goes with --max-requests"):
        serve_options.overrides({"max_requests_jitter": 5})


def test_max_rss_is_mib_and_timeout_is_the_ping_response_time() -> None:
    config = _loaded(["--max-rss", "300", "--timeout", "20", "-w", "2"], {})
    assert config.pools["default"].recycling.memory == 300 * 1024 * 1024
    assert config.pools["default"].ping_response_time == 20.0


def test_host_and_port_are_a_binding_and_exclude_bind() -> None:
    args = _parser().parse_args(["serve", "--host", "::1", "--port", "9001"])
    serve_options.prepare(args, {})
    assert args.bind == ["[::1]:9001"]
    args = _parser().parse_args(["serve", "--host", "0.0.0.0", "-b", "127.0.0.1:1"])
    with pytest.raises(ConfigError, match="one or the other"):
        serve_options.prepare(args, {})


def test_worker_class_takes_uvicorns_and_refuses_others() -> None:
    args = _parser().parse_args(["serve", "-k", "uvicorn.workers.UvicornWorker"])
    assert "ignored" in serve_options.prepare(args, {})[0]
    args = _parser().parse_args(["serve", "-k", "gevent"])
    with pytest.raises(ConfigError, match="gevent"):
        serve_options.prepare(args, {})


def test_env_file_fills_the_environment_without_overriding(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# comment\n\nexport A=1\nB=\"two words\"\nC='x'\nKEPT=file\n")
    environ = {"KEPT": "env"}
    assert serve_options.load_env_file(str(path), environ) == {
        "A": "1",
        "B": "two words",
        "C": "x",
        "KEPT": "file",
    }
    assert environ == {"KEPT": "env", "A": "1", "B": "two words", "C": "x"}
    path.write_text("no equals sign\n")
    with pytest.raises(ConfigError, match="line 1"):
        serve_options.load_env_file(str(path), {})


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("cliparity.test")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # A dictConfig without disable_existing_loggers: false disables every logger
    # that exists (colonnade's too): later tests reading caplog would see nothing.
    enabled = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.disabled
    ]
    yield
    for each in enabled:
        each.disabled = False
    # fileConfig replaces the root logger's handlers (pytest's own among them).
    root.handlers[:] = handlers
    root.setLevel(level)
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def test_log_config_json_and_ini(tmp_path: Path, restore_logging: None) -> None:
    out = tmp_path / "out.log"
    conf = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"f": {"class": "logging.FileHandler", "filename": str(out)}},
        "loggers": {"cliparity.test": {"handlers": ["f"], "level": "WARNING"}},
    }
    (tmp_path / "log.json").write_text(json.dumps(conf))
    serve_options.configure_logging(str(tmp_path / "log.json"))
    logging.getLogger("cliparity.test").warning("through json")
    assert "through json" in out.read_text()
    (tmp_path / "log.ini").write_text(
        "[loggers]\nkeys=root,t\n[handlers]\nkeys=f\n[formatters]\nkeys=\n"
        "[logger_root]\nhandlers=\n[logger_t]\nqualname=cliparity.test\nhandlers=f\n"
        f"level=ERROR\n[handler_f]\nclass=FileHandler\nargs=({str(tmp_path / 'ini.log')!r},)\n"
    )
    serve_options.configure_logging(str(tmp_path / "log.ini"))
    logging.getLogger("cliparity.test").error("through ini")
    assert "through ini" in (tmp_path / "ini.log").read_text()
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError, match="not a dictionary"):
        serve_options.configure_logging(str(tmp_path / "bad.json"))


def test_log_config_yaml_needs_pyyaml_or_says_so(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "log.yaml"
    path.write_text("version: 1\nloggers:\n  cliparity.test:\n    level: ERROR\n")
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="PyYAML"):
            serve_options.configure_logging(str(path))
    else:
        serve_options.configure_logging(str(path))
        assert logging.getLogger("cliparity.test").level == logging.ERROR


def test_run_keywords_are_the_serve_options() -> None:
    argv = _argv("m:app", {"port": 5, "access_log": False, "factory": True, "workers": 2})
    assert argv == [
        "serve",
        "m:app",
        "--port",
        "5",
        "--no-access-log",
        "--factory",
        "--workers",
        "2",
    ]
    args = _parser().parse_args(argv)
    assert args.port == 5 and args.access_log is False and args.factory and args.workers == 2


def test_run_with_workers_needs_an_import_string() -> None:
    with pytest.raises(ConfigError, match="import string"):
        colonnade.run(lambda environ, start_response: [], workers=2)


def test_import_colonnade_loads_no_engine() -> None:
    code = (
        "import sys, colonnade; "
        "print(sorted(m for m in sys.modules if m.startswith(('colonnade.engine', "
        "'colonnade.transport', 'colonnade.pools', 'colonnade.management'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Over real sockets: colonnade.Server in this process (no workers).


def _exchange(sock: socket.socket, target: str = "/", *, send: bool = True) -> bytes:
    if send:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(h.split(b":")[1])
            for h in head.split(b"\r\n")
            if h.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def env_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A WSGI app answering its process's CLIPARITY_GREETING."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.environ.get("CLIPARITY_GREETING", "unset").encode()]


def test_server_port_zero_env_file_and_limit_concurrency(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("CLIPARITY_GREETING=from-env-file\n")
    os.environ.pop("CLIPARITY_GREETING", None)
    try:
        with colonnade.Server(env_app, env_file=str(env), limit_concurrency=1) as server:
            assert server.port != 0 and server.url == f"http://127.0.0.1:{server.port}"
            with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as one:
                answer = _exchange(one)
                assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"from-env-file")
                # The first connection is still open: a second is beyond the limit.
                with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as two:
                    assert _exchange(two).startswith(b"HTTP/1.1 503")
    finally:
        os.environ.pop("CLIPARITY_GREETING", None)


def test_timeout_keep_alive_closes_an_idle_connection() -> None:
    with colonnade.Server(env_app, timeout_keep_alive=0.3) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
        with sock:
            assert _exchange(sock).startswith(b"HTTP/1.1 200")
            assert sock.recv(1) == b""  # closed by the server, well within PATIENCE


def test_server_is_an_async_context_manager() -> None:
    async def use() -> bytes:
        async with colonnade.Server(env_app) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            return answer

    assert asyncio.run(use()).startswith(b"HTTP/1.1 200")


def test_python_m_colonnade_takes_port_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'hello']\n"
    )
    port = free_port()
    env = dict(os.environ, COLONNADE_PORT=str(port), COLONNADE_HOST="127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "colonnade", "serve", "web:app", "--no-watch"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answer() -> bytes | None:
            if proc.poll() is not None:
                raise RuntimeError("python -m colonnade exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    return _exchange(sock)
            except OSError:
                return None

        assert wait_for(answer, PATIENCE, "python -m colonnade listening").endswith(b"hello")
    finally:
        proc.terminate()
        assert proc.wait(PATIENCE) == 0


def test_parser_namespace_is_untouched_by_unknown_dests() -> None:
    # Every row has a dest the parser knows (the docs table and run() rely on it).
    args = _parser().parse_args(["serve"])
    assert isinstance(args, argparse.Namespace)
    for option in OPTIONS:
        assert hasattr(args, option.dest), option.dest


def addr_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A WSGI app answering the client address and scheme it was given."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()]


def _forwarded(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"X-Forwarded-Proto: https\r\n\r\n"
        )
        return _exchange_rest(sock)


def _exchange_rest(sock: socket.socket) -> bytes:
    return _exchange(sock, send=False).partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("options", "seen"),
    [
        ({}, b"127.0.0.1 http"),
        ({"proxy_headers": True}, b"203.0.113.9 https"),
        ({"forwarded_allow_ips": "10.0.0.1"}, b"127.0.0.1 http"),
        ({"forwarded_allow_ips": "*"}, b"203.0.113.9 https"),
        ({"forwarded_allow_ips": "*", "proxy_headers": False}, b"127.0.0.1 http"),
    ],
)
def test_proxy_headers_through_trusted_proxies(options: dict[str, Any], seen: bytes) -> None:
    with colonnade.Server(addr_app, **options) as server:
        assert _forwarded(server.port) == seen


def test_ssl_certfile_and_keyfile_serve_https(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    from tests.support.tls import issue

    ca = trustme.CA()
    issued = issue(ca, tmp_path, "localhost", "localhost", passphrase=b"s3cret")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    port = free_port()
    os.environ.pop("COLONNADE_SSL_KEYFILE_PASSWORD", None)
    try:
        with colonnade.Server(
            addr_app,
            port=port,
            ssl_certfile=str(issued.cert),
            ssl_keyfile=str(issued.key),
            ssl_keyfile_password="s3cret",
        ) as server:
            assert server.url == f"https://127.0.0.1:{port}"
            raw = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
            with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
                assert _exchange(sock).endswith(b"127.0.0.1 https")
    finally:
        os.environ.pop("COLONNADE_SSL_KEYFILE_PASSWORD", None)


def test_the_docs_table_is_the_option_table() -> None:
    doc = Path(__file__).parents[2] / "docs" / "coming-from-uvicorn.md"
    text = doc.read_text(encoding="utf-8")
    start = text.index(serve_options.DOCS_BEGIN) + len(serve_options.DOCS_BEGIN)
    assert text[start : text.index(serve_options.DOCS_END)] == "\n" + (
        serve_options.markdown_table()
    ), "stale: python -m colonnade.management.serve_options docs/coming-from-uvicorn.md"
    for option in OPTIONS:
        assert option.flags[-1] in text and option.env in text


#: The NCSA lines as goaccess's COMMON/COMBINED formats and awstats's LogFormat=1 read them.
COMMON = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) "
    r"\[(?P<day>\d{2})/(?P<month>[A-Z][a-z]{2})/(?P<year>\d{4}):(?P<hms>\d{2}:\d{2}:\d{2}) "
    r'(?P<zone>[+-]\d{4})\] "(?P<method>\S+) (?P<target>\S+) (?P<proto>HTTP/\d\.\d)" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)$"
)
COMBINED = re.compile(
    COMMON.pattern[:-1] + r' "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


@pytest.mark.parametrize("form", ["common", "combined"])
def test_access_log_common_and_combined_parse_as_log_tools_expect(
    form: str, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    with colonnade.Server(env_app, access_log_format=form) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
        with sock:
            sock.sendall(
                b'GET /a%20b?x=1&y="2" HTTP/1.1\r\nHost: t\r\nReferer: http://r.example/p\r\n'
                b'User-Agent: Tool/1.0 (a "quoted" \\ agent)\r\n\r\n'
            )
            assert _exchange(sock, send=False).startswith(b"HTTP/1.1 200")
    lines = [line for line in capfd.readouterr().out.splitlines() if "/a" in line]
    assert len(lines) == 1, lines
    match = (COMBINED if form == "combined" else COMMON).match(lines[0])
    assert match is not None, lines[0]
    assert match["host"] == "127.0.0.1" and match["ident"] == "-" and match["user"] == "-"
    assert match["method"] == "GET" and match["status"] == "200" and match["zone"] == "+0000"
    assert match["target"] == "/a%20b?x=1&y=\\x222\\x22"
    assert int(match["bytes"]) > 0 and match["proto"] == "HTTP/1.1"
    if form == "combined":
        assert match["referer"] == "http://r.example/p"
        assert match["agent"] == "Tool/1.0 (a \\x22quoted\\x22 \\x5c agent)"


def test_log_format_json_carries_the_request_fields(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text(
        "def app(environ, start_response):\n    raise RuntimeError('boom')\n"
    )
    port = free_port()
    log = tmp_path / "serve.log"
    env = dict(os.environ, COLONNADE_LOG_FORMAT="json")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "colonnade", "serve", "web:app", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:

        def failed() -> bytes | None:
            if proc.poll() is not None:
                raise RuntimeError("colonnade serve exited: " + log.read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    return _exchange(sock, "/broken?x=1")
            except OSError:
                return None

        assert wait_for(failed, PATIENCE, "listening").startswith(b"HTTP/1.1 500")

        def record() -> dict[str, Any] | None:
            for line in log.read_text().splitlines():
                data = json.loads(line)  # every line of the server log is JSON
                if data.get("request_id"):
                    return dict(data)
            return None

        found = wait_for(record, PATIENCE, "the error's log record")
    finally:
        proc.terminate()
        proc.wait(PATIENCE)
    assert found["level"] == "ERROR" and found["method"] == "GET"
    assert found["path"] == "/broken" and found["status"] == 500 and found["site"]
    assert "RuntimeError: boom" in found["exception"]
    assert found["request_id"] in found["message"]


def test_max_requests_recycles_the_worker_without_a_failed_request(tmp_path: Path) -> None:
    from tests.e2e.conftest import Process

    (tmp_path / "web.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(os.getpid()).encode()]\n"
    )
    port = free_port()
    env_before = os.environ.get("COLONNADE_MAX_REQUESTS")
    os.environ["COLONNADE_MAX_REQUESTS"] = "5"  # through the environment, to the pool
    try:
        server = Process(
            ["web:app", "--port", str(port), "-w", "1", "--start-workers", "--no-watch"],
            tmp_path,
            port,
        )
    finally:
        if env_before is None:
            os.environ.pop("COLONNADE_MAX_REQUESTS", None)
        else:
            os.environ["COLONNADE_MAX_REQUESTS"] = env_before
    try:
        pids = set()

        def two_workers_seen() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer  # no request fails
            pids.add(answer.partition(b"\r\n\r\n")[2])
            return len(pids) >= 2

        wait_for(two_workers_seen, PATIENCE, "a recycled worker answering")
    finally:
        server.kill()


def test_ssl_ca_certs_and_cert_reqs_ask_for_a_client_certificate(tmp_path: Path) -> None:
    # uvicorn's --ssl-ca-certs / --ssl-cert-reqs 2 (ssl.CERT_REQUIRED): a client with a
    # certificate from that CA is served; one without is answered 403.7, as IIS's
    # "SSL client certificate required" (docs/tls.md).
    trustme = pytest.importorskip("trustme")
    from tests.support.tls import issue

    ca = trustme.CA()
    issued = issue(ca, tmp_path, "localhost", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    client_cert = ca.issue_cert("client@example.test")
    port = free_port()
    with colonnade.Server(
        addr_app,
        port=port,
        ssl_certfile=str(issued.cert),
        ssl_keyfile=str(issued.key),
        ssl_ca_certs=str(tmp_path / "clients.pem"),
        ssl_cert_reqs=2,
    ):

        def get(with_certificate: bool) -> bytes:
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
            if with_certificate:
                client_cert.configure_cert(ctx)
            raw = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
            with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
                return _exchange(sock)

        assert get(True).startswith(b"HTTP/1.1 200")
        assert get(False).startswith(b"HTTP/1.1 403")
