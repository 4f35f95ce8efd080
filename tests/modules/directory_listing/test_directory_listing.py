"""Directory listing: off by default, readable HTML with escaped names, JSON, sorting."""

from __future__ import annotations

import json
import os
from pathlib import Path

from colonnade.testing import Client, build_engine

MODULES = ["static.default_document", "static.directory_listing", "handler.static"]


def engine(tmp_path: Path, enabled: bool = True):  # type: ignore[no-untyped-def]
    return build_engine(
        {
            "server": {"modules": MODULES},
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": "www"}],
            "directory_browse": {"enabled": enabled},
        },
        base_dir=str(tmp_path),
    )


def tree(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "sub" / "index.html").write_text("index")
    (www / "big.bin").write_bytes(b"x" * 3000)
    (www / "a.txt").write_text("a")
    (www / ".hidden").write_text("h")
    (www / "web.toml").write_text("")
    (www / '<img src=x onerror="alert(1)">&.txt').write_text("evil")
    os.utime(www / "a.txt", (1_000_000_000, 1_000_000_000))
    return www


def test_off_by_default_answers_403_14(tmp_path: Path) -> None:
    tree(tmp_path)
    with Client(engine(tmp_path, enabled=False)) as c:
        r = c.get("/")
    assert r.status == 403 and "403.14" in r.text


def test_html_listing_escapes_names_and_hides_what_it_must(tmp_path: Path) -> None:
    tree(tmp_path)
    with Client(engine(tmp_path)) as c:
        r = c.get("/")
    assert r.status == 200 and r.header("content-type") == "text/html; charset=utf-8"
    page = r.text
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;.txt" in page
    assert 'href="%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%26.txt"' in page
    assert ".hidden" not in page and "web.toml" not in page
    assert 'href="sub/"' in page and "2.9 KiB" in page and "2001-09-09 01:46" in page


def test_json_listing_and_sorting(tmp_path: Path) -> None:
    tree(tmp_path)
    with Client(engine(tmp_path)) as c:
        r = c.get("/?sort=size&order=desc", headers={"accept": "application/json"})
        names = [e["name"] for e in json.loads(r.body)["entries"]]
        assert names[0] == "sub" and names[1] == "big.bin"
        by_name = c.get("/", headers={"accept": "application/json"})
        files = [e["name"] for e in json.loads(by_name.body)["entries"] if e["type"] == "file"]
        assert files == sorted(files, key=str.lower)


def test_default_document_wins_over_listing(tmp_path: Path) -> None:
    tree(tmp_path)
    with Client(engine(tmp_path)) as c:
        assert c.get("/sub/").body == b"index"
        r = c.get("/sub")
        assert r.status == 301 and r.header("location") == "/sub/"
