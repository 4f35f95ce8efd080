"""Strict decoding: every error names the file, the line and the dotted key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError
from colonnade.modules.standard import BUILTIN

HEAD = """[server]
modules = ["security.request_filtering", "static.default_document", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]
root = "www"
"""

# (name, server file text, web.toml text or None, file, line, key, message part)
CASES = [
    (
        "unknown server key",
        HEAD + "\n[server.limits]\nmax_conections = 5\n",
        None,
        "colonnade.toml",
        10,
        "server.limits.max_conections",
        "unknown key",
    ),
    (
        "wrong type",
        HEAD.replace('root = "www"', "root = 5"),
        None,
        "colonnade.toml",
        7,
        "sites[0].root",
        "Expected `str`, got `int`",
    ),
    (
        "out of range",
        HEAD + "\n[server.timeouts]\nkeep_alive = -1\n",
        None,
        "colonnade.toml",
        10,
        "server.timeouts.keep_alive",
        "Expected `float` > 0.0",
    ),
    (
        "unsent bound out of range",
        HEAD.replace("[server]\n", "[server]\ntcp_notsent_lowat = -1\n"),
        None,
        "colonnade.toml",
        2,
        "server.tcp_notsent_lowat",
        "Expected `int` >= 0",
    ),
    (
        "unknown pool",
        HEAD.replace("[[sites]]", "[pools.api]\n\n[[sites]]")
        + '\n  [[sites.applications]]\n  path = "/api"\n  pool = "apii"\n',
        None,
        "colonnade.toml",
        13,
        "sites[0].applications[0].pool",
        "no pool named 'apii' (did you mean 'api'?)",
    ),
    (
        "misspelt key in [lock]",
        HEAD + '\n[lock]\n"request_filtering.max_urll" = "deny"\n',
        None,
        "colonnade.toml",
        10,
        "lock.request_filtering.max_urll",
        "no setting named 'max_urll' (did you mean 'max_url'?)",
    ),
    (
        "key below a single setting in [lock]",
        HEAD + '\n[lock]\n"request_filtering.max_url.bytes" = "deny"\n',
        None,
        "colonnade.toml",
        10,
        "lock.request_filtering.max_url.bytes",
        "'max_url' is a single setting: it has no key 'bytes'",
    ),
    (
        "misspelt section in [lock]",
        HEAD + '\n[lock]\nrequest_filtring = "deny"\n',
        None,
        "colonnade.toml",
        10,
        "lock.request_filtring",
        "no enabled module owns this section (did you mean 'request_filtering'?)",
    ),
    (
        "unknown module",
        HEAD.replace('"handler.static"]', '"handler.static", "nope"]'),
        None,
        "colonnade.toml",
        2,
        "server.modules[3]",
        "no module named 'nope'",
    ),
    (
        "unknown handler",
        HEAD + '\n[[handlers]]\npath = "*.php"\nhandler = "fastcgi"\n',
        None,
        "colonnade.toml",
        11,
        "handlers[0].handler",
        "'fastcgi' is not an enabled handler",
    ),
    (
        "unknown section",
        HEAD + "\n[directory_brwse]\nenabled = true\n",
        None,
        "colonnade.toml",
        9,
        "directory_brwse",
        "no enabled module owns",
    ),
    (
        "bad section value",
        HEAD + '\n[request_filtering]\nmax_url = "long"\n',
        None,
        "colonnade.toml",
        10,
        "request_filtering.max_url",
        "Expected `int`",
    ),
    (
        "bad location value",
        HEAD + '\n[[locations]]\npath = "/x"\nrequest_filtering = { max_url = "x" }\n',
        None,
        "colonnade.toml",
        11,
        "locations[0].request_filtering.max_url",
        "Expected `int`",
    ),
    (
        "bad binding",
        HEAD.replace('"http://127.0.0.1:8080"', '"ftp://x:1"'),
        None,
        "colonnade.toml",
        6,
        "sites[0].bindings[0]",
        "unsupported scheme",
    ),
    ("toml syntax", HEAD + "\n[server\n", None, "colonnade.toml", 9, "", "not valid TOML"),
    # tomllib names no line for what the end of the file leaves open: the last one.
    (
        "toml syntax at the end",
        HEAD + '\n[pools.default]\nuser = "www-data',
        None,
        "colonnade.toml",
        10,
        "",
        "Unterminated string",
    ),
    # A table made by a header of a table inside it is on that header's line.
    (
        "implied table",
        HEAD + "\n[s.erver]\nx = 1\n",
        None,
        "colonnade.toml",
        9,
        "s",
        "no enabled module owns",
    ),
    (
        "web.toml unknown key",
        HEAD,
        "[default_document]\nenabeld = true\n",
        "www/sub/web.toml",
        2,
        "default_document.enabeld",
        "unknown key",
    ),
    (
        "web.toml wrong type",
        HEAD,
        "\n[request_filtering]\nmax_url = true\n",
        "www/sub/web.toml",
        3,
        "request_filtering.max_url",
        "Expected `int`, got `bool`",
    ),
    (
        "web.toml unknown section",
        HEAD,
        "[log_http]\nenabled = false\n",
        "www/sub/web.toml",
        1,
        "log_http",
        "no enabled module owns",
    ),
    ("web.toml syntax", HEAD, "[default_document\n", "www/sub/web.toml", 1, "", "not valid TOML"),
    (
        "web.toml bad collection op",
        HEAD,
        "[default_document]\nenabled = { add = [1] }\n",
        "www/sub/web.toml",
        2,
        "default_document.enabled",
        "only to collections",
    ),
]


def write_tree(tmp_path: Path, server: str, web: str | None) -> Path:
    (tmp_path / "www" / "sub").mkdir(parents=True)
    config = tmp_path / "colonnade.toml"
    config.write_text(server)
    if web is not None:
        (tmp_path / "www" / "sub" / "web.toml").write_text(web)
    return config


@pytest.mark.parametrize(
    ("name", "server", "web", "file", "line", "key", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_error_names_file_line_and_key(
    tmp_path: Path,
    name: str,
    server: str,
    web: str | None,
    file: str,
    line: int,
    key: str,
    message: str,
) -> None:
    config = write_tree(tmp_path, server, web)
    exc, confined = refusal(config)
    # A web.toml's mistake is confined to its folder (500.19); the server file's
    # refuses the whole configuration.
    assert confined is file.endswith("web.toml"), name
    assert exc.file == str(tmp_path / file), name
    assert exc.line == line, (name, str(exc))
    assert exc.key == key, (name, str(exc))
    assert message in exc.message, (name, str(exc))
    text = str(exc)
    assert re.search(rf"{re.escape(file)}:{line}: ", text), text


def refusal(config: Path) -> tuple[ConfigError, bool]:
    """The error the tree is refused with (False), else the one a web.toml's folder
    answers 500.19 with (True: confined to it)."""
    try:
        engine = Engine(load_file(str(config)), Registry.standard(BUILTIN))
    except ConfigError as exc:
        return exc, False
    (broken,) = engine.broken
    return broken.error, True


def test_colonnade_check_reports_and_exits_non_zero(tmp_path: Path) -> None:
    config = write_tree(tmp_path, HEAD, "[default_document]\nfiles = 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "colonnade: www/sub/web.toml:2: default_document.files: Expected `array`, got `int`"
    )
    (tmp_path / "www" / "sub" / "web.toml").write_text('[default_document]\nfiles = ["a.html"]\n')
    ok = subprocess.run(
        [sys.executable, "-m", "colonnade.management.cli", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout


def test_declaring_a_pool_keeps_the_implicit_default(tmp_path: Path) -> None:
    # A site that names no pool is served by "default", also when the file
    # declares pools of its own (before, [pools.web] removed "default" and the
    # error blamed [[sites]] for a pool key nobody wrote).
    server = HEAD.replace("[[sites]]", "[pools.web]\nworkers = 2\n\n[[sites]]")
    config = write_tree(tmp_path, server, None)
    loaded = load_file(str(config))
    assert set(loaded.pools) == {"default", "web"}
    assert loaded.sites[0].pool == "default"
    Engine(loaded, Registry.standard(BUILTIN))
