"""The runnable example trees in examples/: they validate and serve what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.modules.standard import BUILTIN
from colonnade.testing import Client

EXAMPLES = Path(__file__).parents[2] / "examples"
TREES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "colonnade.toml").exists())


def client(name: str) -> Client:
    engine = Engine(load_file(str(EXAMPLES / name / "colonnade.toml")), Registry.standard(BUILTIN))
    return Client(engine)


@pytest.mark.parametrize("name", TREES)
def test_colonnade_check_accepts_it(name: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "colonnade.management.cli",
            "check",
            "-c",
            str(EXAMPLES / name / "colonnade.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout


def test_static_site_browsable_folder_and_locked_section(tmp_path: Path) -> None:
    with client("static-site") as c:
        assert c.get("/").status == 200
        assert c.get("/notes/").status == 404
        listing = c.get("/files/")
        assert listing.status == 200 and "notes.txt" in listing.text
        assert "B</td>" in listing.text  # sizes shown here...
        reports = c.get("/files/reports/")
        assert "q3.txt" in reports.text and "B</td>" not in reports.text  # ...not there
        assert c.get("/files/reports/web.toml").status == 404
    # The locked section cannot be overridden by a web.toml.
    tree = tmp_path / "site"
    subprocess.run(["cp", "-r", str(EXAMPLES / "static-site"), str(tree)], check=True)
    (tree / "www" / "files" / "web.toml").write_text("[request_filtering]\nmax_url = 10\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "colonnade.management.cli",
            "check",
            "-c",
            str(tree / "colonnade.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tree,
    )
    assert out.returncode == 2
    assert "www/files/web.toml:1: request_filtering: locked by" in out.stderr
    assert "colonnade.toml:" in out.stderr


def test_two_sites_on_one_port_by_host_name() -> None:
    with client("two-sites") as c:
        alpha = c.get("/", host="alpha.localhost:8080")
        beta = c.get("/", host="beta.localhost")
        nobody = c.get("/", host="gamma.localhost")
    assert "Alpha site" in alpha.text
    assert "Beta site" in beta.text
    assert nobody.status == 404 and "404.1" in nobody.text


def test_python_app_mounted_at_a_path_and_a_virtual_directory() -> None:
    with client("python-app") as c:
        api = c.get("/api/hello")
        page = c.get("/")
        css = c.get("/media/site.css")
    assert api.status == 200
    assert json.loads(api.body) == {"path": "/api/hello", "root_path": "/api"}
    assert "Static pages beside the API" in page.text
    assert css.status == 200 and css.text.startswith("body")
