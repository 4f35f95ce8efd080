"""A real PHP application from Debian's packages, clicked through in headless Chromium.

Adminer (Debian's ``adminer``: one compiled ``adminer.php`` in /usr/share/adminer)
runs behind ``handler.fastcgi`` with php-cgi managed by Colonnade. The package's
folder is a virtual directory (``/adminer``), served as it is installed; beside it
the site's own ``adminer-login.php`` is Adminer's documented customization (as
Debian's /etc/adminer/conf.php): it defines ``adminer_object()`` with the
package's ``login-password-less`` plugin and includes the package's
``adminer.php``. Adminer refuses a database without a password (its ``login()``
check, and its SQLite driver refuses one with), and that plugin is how its
documentation opens one: the login form takes a password the plugin checks against
a hash and hands the driver none.

Chromium, driven over the DevTools protocol, signs in with the SQLite driver to a
database file the test made with Python's sqlite3, opens the table, reads a row,
edits it and inserts one through Adminer's forms; the test reads the file again.
Everything is asserted from the page's DOM. Adminer's own pages, its CSS and
JavaScript (served by adminer.php itself, ``?file=``), its session and its CSRF
tokens all go through the server.

Needs Debian's ``chromium``, ``php-cgi``, ``adminer`` and ``php-sqlite3`` (make
sysdeps installs them; the test skips naming what is missing).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_forms_browser import DevTools
from tests.browser.test_listing_browser import chromium
from tests.e2e.conftest import LiveServer
from tests.handlers.fastcgi.php_kit import NEEDS_PHP, PHP_CGI, config, php_cgi

pytestmark = [pytest.mark.e2e, NEEDS_PHP]

#: Where Debian's adminer package puts the application.
ADMINER = Path("/usr/share/adminer")
#: The password the login plugin accepts (SQLite itself has none).
PASSWORD = "colonnade-test"

LOGIN_PHP = f"""<?php
// Adminer's documented customization: its object, with the package's plugins.
function adminer_object() {{
    include_once "{ADMINER}/plugins/plugin.php";
    include_once "{ADMINER}/plugins/login-password-less.php";
    include_once "{ADMINER}/plugins/version-noverify.php";
    return new AdminerPlugin(array(
        new AdminerLoginPasswordLess(password_hash("{PASSWORD}", PASSWORD_DEFAULT)),
        new AdminerVersionNoverify(),  // no script from adminer.org
    ));
}}
include "{ADMINER}/adminer.php";
"""


class Page(DevTools):
    """The DevTools page, with what Adminer's forms need: fields by name, a select,
    a click on any element."""

    def fill(self, name: str, text: str) -> None:
        """Focus the form field named ``name``, select what it holds and type
        ``text`` over it, as a person does."""
        found = self.evaluate(
            f"(() => {{ const f = document.querySelector('[name=\"' + {json.dumps(name)} + '\"]');"
            " if (!f) return false; f.focus(); f.select(); return true; })()"
        )
        assert found, f"no field {name!r}: {self.text()!r}"
        self.page("Input.insertText", text=text)

    def choose(self, name: str, value: str) -> None:
        """Pick an option of a select, telling the page's script as a change does."""
        found = self.evaluate(
            f"(() => {{ const s = document.querySelector('select[name=\"' + {json.dumps(name)}"
            " + '\"]'); if (!s) return false;"
            f" s.value = {json.dumps(value)};"
            " s.dispatchEvent(new Event('change', {bubbles: true})); return s.value; })()"
        )
        assert found == value, f"no option {value!r} in {name!r}"

    def click(self, selector: str) -> None:
        """Click the middle of the element ``selector`` finds, and wait for the
        page that follows."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        assert box, f"nothing matches {selector!r}: {self.text()!r}"
        self.click_at(box[0], box[1])

    def rows(self) -> list[dict[str, str]]:
        """The rows of Adminer's data table, by column name."""
        found = self.evaluate(
            "(() => { const t = document.getElementById('table'); if (!t) return null;"
            # A column's heading is th id="th[name]" (the first is the row's links).
            " const names = [...t.tHead.rows[0].cells]"
            ".map(c => (c.id.match(/^th\\[(.*)\\]$/) || [])[1]);"
            " return [...t.tBodies[0].rows].map(r => Object.fromEntries("
            "[...r.cells].map((c, i) => [names[i], c.textContent.trim()]))); })()"
        )
        assert found is not None, f"no data table: {self.text()!r}"
        return list(found)


def needs_adminer() -> None:
    if not (ADMINER / "adminer.php").is_file():
        pytest.skip("Debian's adminer is not installed (make sysdeps installs it)")
    assert PHP_CGI is not None
    modules = subprocess.run(
        [PHP_CGI, "-m"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    if "sqlite3" not in modules:
        pytest.skip("PHP's SQLite extension is not installed (make sysdeps installs php-sqlite3)")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    """Adminer served by Colonnade; (the server, the SQLite file it is to open)."""
    needs_adminer()
    (tmp_path / "www").mkdir()
    (tmp_path / "sessions").mkdir()
    (tmp_path / "www" / "adminer-login.php").write_text(LOGIN_PHP)
    data = tmp_path / "data"
    data.mkdir()
    database = data / "shop.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)")
        db.executemany(
            "INSERT INTO fruit VALUES (?, ?, ?)",
            [(1, "apple", 3), (2, "banana", 12), (3, "cherry", 40)],
        )
    db.close()
    cfg = config(php_cgi(tmp_path))
    cfg["sites"][0]["virtual_directories"] = [{"path": "/adminer", "root": str(ADMINER)}]
    server = LiveServer(cfg, tmp_path).start()
    yield server, database
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    with Page(chromium(), tmp_path / "profile") as page:
        yield page


def fruit(database: Path) -> list[tuple[int, str, int]]:
    db = sqlite3.connect(database)
    try:
        return list(db.execute("SELECT id, name, qty FROM fruit ORDER BY id"))
    finally:
        db.close()


def sign_in(browser: Page, url: str, database: Path, password: str) -> None:
    browser.goto(url)
    assert browser.evaluate("document.title") == "Login - Adminer"
    # Adminer's own script, served by adminer.php (?file=functions.js), ran.
    assert browser.evaluate("document.body.classList.contains('js')")
    browser.choose("auth[driver]", "sqlite")
    browser.fill("auth[password]", password)
    browser.fill("auth[db]", str(database))
    browser.click("input[type=submit][value=Login]")


def test_adminer_opens_reads_edits_and_inserts(
    site: tuple[LiveServer, Path], browser: Page
) -> None:
    server, database = site
    origin = f"http://127.0.0.1:{server.port}"
    # The package's adminer.php as installed: a database without a password is
    # refused, with Adminer's message.
    sign_in(browser, origin + "/adminer/adminer.php", database, "")
    assert "Adminer does not support accessing a database without a password" in browser.text()

    # Through the documented customization: signed in, the database's tables.
    sign_in(browser, origin + "/adminer-login.php", database, PASSWORD)
    query = urllib.parse.parse_qs(browser.evaluate("location.search")[1:], keep_blank_values=True)
    assert query["sqlite"] == [""] and query["db"] == [str(database)], query
    assert browser.evaluate("document.querySelector('h2').textContent").startswith("Database:")
    tables = browser.evaluate(
        "[...document.querySelectorAll('#tables a.structure')].map(a => a.textContent)"
    )
    assert tables == ["fruit"]

    # The table's rows, read from the page.
    browser.click("#tables a.select")
    assert [(r["id"], r["name"], r["qty"]) for r in browser.rows()] == [
        ("1", "apple", "3"),
        ("2", "banana", "12"),
        ("3", "cherry", "40"),
    ]

    # Editing banana's quantity through Adminer's form.
    browser.click("#table tbody tr:nth-child(2) a[href*='edit=']")
    assert browser.evaluate("document.querySelector('[name=\"fields[name]\"]').value") == "banana"
    browser.fill("fields[qty]", "7")
    browser.click("input[type=submit][value=Save]")
    assert "Item has been updated." in browser.text()
    assert fruit(database)[1] == (2, "banana", 7)

    # A new row through "New item".
    browser.click("#content a[href$='edit=fruit']")
    browser.fill("fields[name]", "damson")
    browser.fill("fields[qty]", "5")
    browser.click("input[type=submit][value=Save]")
    assert "Item 4 has been inserted." in browser.text()  # with the new row's id
    assert fruit(database) == [
        (1, "apple", 3),
        (2, "banana", 7),
        (3, "cherry", 40),
        (4, "damson", 5),
    ]
    # And the page shows it.
    assert ("4", "damson", "5") in [(r["id"], r["name"], r["qty"]) for r in browser.rows()]
