"""``colonnade modules`` and ``config show`` list the handler mappings in the order
they are tried, with where each came from (IIS's ``<handlers>`` list)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import AppRuntime, Engine
from colonnade.management.effective import handler_mappings
from colonnade.modules.standard import BUILTIN
from colonnade.pools.config import ConfigSource
from tests.management.test_cli import colonnade

SERVER = """\
[server]
modules = ["handler.static", "handler.cgi"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]
root = "www"

[[sites.applications]]
path = "/app"

[[sites.applications]]
path = "/py"
app = "myapp:app"
interface = "wsgi"

[[sites.virtual_directories]]
path = "/py/static"
root = "assets"

[[handlers]]
name = "Scripts"
path = "/cgi-bin/*"
handler = "handler.cgi"
verbs = ["POST", "GET"]

[[handlers]]
name = "StaticFile"
path = "*"
handler = "handler.static"

[[locations]]
path = "main/app"

  [[locations.handlers]]
  name = "Reports"
  path = "/app/reports/*"
  handler = "handler.cgi"
  verbs = ["GET"]
"""

APP_WEB_TOML = """\
# The application's own scripts, tried before the server's mappings.
[[handlers]]
name = "CGI"
path = "*.cgi"
handler = "handler.cgi"
resource_type = "file"
"""


def _tree(tmp_path: Path) -> Path:
    for folder in ("www/app", "www/py", "assets"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "colonnade.toml").write_text(SERVER)
    (tmp_path / "www/app/web.toml").write_text(APP_WEB_TOML)
    return tmp_path


def _columns(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["index"],
        row["name"],
        row["path"],
        row["verbs"],
        row["handler"],
        row["resource_type"],
        row["entry"],
        row["origin"],
    )


def test_config_show_lists_the_mappings_in_order_with_their_origins(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    server, web = root / "colonnade.toml", root / "www/app/web.toml"

    def shown(path: str) -> list[tuple[Any, ...]]:
        done = colonnade("config", "show", "--path", path, "--json", cwd=root)
        assert done.returncode == 0, done.stderr
        return [_columns(row) for row in json.loads(done.stdout)["handler_mappings"]]

    # The application's root web.toml first (prepended), then the [[locations]]
    # entry for its path, then the server file's, each naming its file, line and
    # key; set at /app, inherited below it.
    cgi = (1, "CGI", "*.cgi", ["*"], "handler.cgi", "file")
    reports = (2, "Reports", "/app/reports/*", ["GET"], "handler.cgi", "unspecified")
    scripts = (3, "Scripts", "/cgi-bin/*", ["GET", "POST"], "handler.cgi", "unspecified")
    static = (4, "StaticFile", "*", ["*"], "handler.static", "unspecified")
    assert shown("/app/") == [
        (*cgi, "local", f"{web}:2: handlers[0]"),
        (*reports, "local", f"{server}:35: locations[0].handlers[0]"),
        (*scripts, "inherited", f"{server}:21: handlers[0]"),
        (*static, "inherited", f"{server}:27: handlers[1]"),
    ]
    assert [row[6] for row in shown("/app/sub/x.cgi")] == ["inherited"] * 4
    # The site's root application has no web.toml: the server file's alone.
    assert [row[1] for row in shown("/")] == ["Scripts", "StaticFile"]

    # A hosted Python application: the server's catch-all "*" never applies to
    # it; the static files of its virtual directory come before its own catch-all.
    vdir = f"{server}:17: sites[0].virtual_directories[0]"
    app = f"{server}:14: sites[0].applications[1].app"
    assert shown("/py") == [
        (1, *scripts[1:], "inherited", f"{server}:21: handlers[0]"),
        (2, "", "/py/static", ["*"], "handler.static", "unspecified", "inherited", vdir),
        (3, "", "/py/static/*", ["*"], "handler.static", "unspecified", "inherited", vdir),
        (4, "", "*", ["*"], "handler.wsgi", "unspecified", "local", app),
    ]
    assert [row[6] for row in shown("/py/static/")][1:3] == ["local", "local"]


def test_modules_and_config_show_print_an_aligned_table(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    server, web = root / "colonnade.toml", root / "www/app/web.toml"
    expected = [
        "  #  NAME        PATH            VERBS     HANDLER         RESOURCE     ENTRY      ORIGIN",
        f"  1  CGI         *.cgi           *         handler.cgi     file         local      "
        f"{web}:2: handlers[0]",
        f"  2  Reports     /app/reports/*  GET       handler.cgi     unspecified  local      "
        f"{server}:35: locations[0].handlers[0]",
        f"  3  Scripts     /cgi-bin/*      GET,POST  handler.cgi     unspecified  inherited  "
        f"{server}:21: handlers[0]",
        f"  4  StaticFile  *               *         handler.static  unspecified  inherited  "
        f"{server}:27: handlers[1]",
    ]
    for args in (("modules", "--app", "/app"), ("config", "show", "--path", "/app")):
        done = colonnade(*args, cwd=root)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("handler mappings"))
        assert lines[start + 1 : start + 6] == expected
        assert not lines[start + 6].startswith("  5")


def test_the_built_in_mapping_says_default(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    done = colonnade("config", "show", "--root", "www", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["handler_mappings"]
    assert [_columns(row) for row in rows] == [
        (1, "StaticFile", "*", ["*"], "handler.static", "unspecified", "inherited", "(default)")
    ]
    assert (rows[0]["file"], rows[0]["line"], rows[0]["key"]) == (None, None, None)


def _runtime(engine: Engine, path: str) -> AppRuntime:
    return next(rt for rt in engine.runtimes if rt.app.path == path)


def test_lines_are_those_of_the_generation_shown_when_a_runtime_is_kept(tmp_path: Path) -> None:
    # Lines moving (a comment added) change no mapping: a reload keeps the
    # application's runtime, and the listing still points at the right lines.
    root = _tree(tmp_path)
    registry = Registry.standard(BUILTIN)
    first = Engine(load_file(str(root / "colonnade.toml")), registry)
    (root / "colonnade.toml").write_text("# moved down\n\n" + SERVER)
    (root / "www/app/web.toml").write_text("#\n" + APP_WEB_TOML)
    second = Engine(load_file(str(root / "colonnade.toml")), registry, previous=first)
    kept = _runtime(second, "/app")
    assert kept is _runtime(first, "/app") and kept in second.reused
    lines = [row["line"] for row in handler_mappings(second, kept, "/app")]
    assert lines == [3, 37, 23, 29]
    assert [row["line"] for row in handler_mappings(first, kept, "/app")] == [2, 35, 21, 27]


def test_the_command_line_is_named_where_no_file_says_it(tmp_path: Path) -> None:
    # `colonnade serve myapp:app --static /static=assets`: no file to point at.
    for folder in ("www", "assets"):
        (tmp_path / folder).mkdir()
    source = ConfigSource(
        root=str(tmp_path / "www"),
        bindings=["http://127.0.0.1:8080"],
        app="myapp:app",
        interface="wsgi",
        static=[("/static", str(tmp_path / "assets"))],
    )
    engine = Engine(source.load(), Registry.standard(BUILTIN))
    rows = handler_mappings(engine, _runtime(engine, "/"), "/")
    assert [(r["path"], r["handler"], r["entry"], r["origin"]) for r in rows] == [
        ("/static", "handler.static", "inherited", "(command line) --static /static"),
        ("/static/*", "handler.static", "inherited", "(command line) --static /static"),
        ("*", "handler.wsgi", "local", "(command line) APP"),
    ]
    assert {r["file"] for r in rows} == {None}


def test_a_location_maps_handlers_only_at_an_application_root(tmp_path: Path) -> None:
    # As for a web.toml: below an application's root the mapping would still be
    # the application's, so a location there is refused, naming its line.
    root = _tree(tmp_path)
    (root / "colonnade.toml").write_text(SERVER.replace('"main/app"', '"main/app/reports"'))
    done = colonnade("check", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "colonnade: colonnade.toml:35: locations[0].handlers: handlers can change only at "
        "an application's root, not below one (site main, /app/reports)"
    )


def test_a_location_mapping_is_checked_as_the_server_files_are(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    cgi = 'handler = "handler.cgi"\n  verbs = ["GET"]'
    assert cgi in SERVER
    wrong = SERVER.replace(cgi, 'handler = "handler.wsgi"\n  verb = ["GET"]')
    (root / "colonnade.toml").write_text(wrong)
    done = colonnade("check", cwd=root)
    assert done.returncode == 2
    assert "colonnade.toml:39: locations[0].handlers[0].verb: unknown key" in done.stderr
    (root / "colonnade.toml").write_text(wrong.replace("  verb = ", "  verbs = "))
    done = colonnade("check", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "colonnade: colonnade.toml:38: locations[0].handlers[0].handler: "
        "'handler.wsgi' is not an enabled handler"
    )


def test_a_later_location_for_the_same_path_comes_first(tmp_path: Path) -> None:
    # Levels at one path come in file order, and a later level's mappings are
    # tried before an earlier one's: the web.toml's, then the last location's.
    root = _tree(tmp_path)
    second = (
        '\n[[locations]]\npath = "/app"\nhandlers = [{ path = "*.pl", handler = "handler.cgi" }]\n'
    )
    (root / "colonnade.toml").write_text(SERVER + second)
    engine = Engine(load_file(str(root / "colonnade.toml")), Registry.standard(BUILTIN))
    rows = handler_mappings(engine, _runtime(engine, "/app"), "/app")
    assert [(r["path"], r["key"], r["line"]) for r in rows] == [
        ("*.cgi", "handlers[0]", 2),
        ("*.pl", "locations[1].handlers[0]", 43),
        ("/app/reports/*", "locations[0].handlers[0]", 35),
        ("/cgi-bin/*", "handlers[0]", 21),
        ("*", "handlers[1]", 27),
    ]
    # What the listing says is what maps requests: a GET below /app/reports/ goes
    # to the location's mapping, a POST (not its verb) on to the server's "*".
    select = _runtime(engine, "/app").handler_map.select
    assert select("/app/reports/r.txt", "GET").id == "handler.cgi"
    assert select("/app/reports/r.txt", "POST").id == "handler.static"
    assert select("/app/a.pl", "POST").id == "handler.cgi"
