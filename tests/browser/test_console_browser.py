"""The web console (Colonnade Manager) in headless Chromium, against a real master:
sign in, see a pool's workers, recycle it and watch a new worker appear, watch a
slow request in the request monitor while it executes, follow the access log with a
filter, open a trace and see its waterfall, edit a setting and see the located error of a bad
value, and keep what was typed when the session runs out mid-edit.

Driven over the DevTools protocol (the driver of test_forms_browser.py). With
``COLONNADE_CONSOLE_SHOTS=DIR`` (``make console-shots``) a screenshot of each page
is written to DIR (docs/console/ holds the committed ones).

Needs Debian's ``chromium`` (skipped without it, except under CI).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from colonnade.management import operations
from tests.browser.test_adminer_browser import Page
from tests.browser.test_listing_browser import chromium, decode_png, most_common
from tests.e2e.wire import Conn
from tests.pools.conftest import MODULES, Master, get, server_toml
from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "console-token-7"


class Console(Page):
    """The console's page: a single page whose views change without a page load."""

    def view(self, hash_: str) -> None:
        """Go to a view (``#/pools``) and wait until it has been drawn."""
        self.evaluate(f"location.hash = {json.dumps(hash_)}")
        self.drawn(hash_)

    def drawn(self, hash_: str) -> None:
        wait_for(
            lambda: self.evaluate("document.body.dataset.ready") == hash_,
            PATIENCE,
            f"the view {hash_}",
        )

    def press(self, selector: str) -> None:
        """Focus an element and press Enter on it: the keyboard does what a click does."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.focus(); return document.activeElement === e; })()"
        )
        assert found, f"cannot focus {selector!r}: {self.text()!r}"
        self.key_enter()

    def shot(self, name: str) -> None:
        folder = os.environ.get("COLONNADE_CONSOLE_SHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.screenshot(Path(folder) / f"{name}.png")


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    (tmp_path / "tokens").write_text(f"ops {TOKEN}\n")
    (tmp_path / "tokens").chmod(0o600)
    admin = free_port()
    port = free_port()
    config = server_toml(
        port,
        {"default": {"start": "always"}},
        modules=[*MODULES, "http.custom_headers", "tracing.failed_requests", "log.http"],
        extra=(
            f"[http_logging]\ntarget = {json.dumps(str(tmp_path / 'access.log'))}\n"
            "buffer_size = 0\n\n"
            '[custom_headers]\nset = { X-Served-By = "colonnade" }\n\n'
            '[lock]\n"custom_headers.remove" = "deny"\n\n'
            "[failed_request_tracing]\n"
            f"directory = {json.dumps(str(tmp_path / 'traces'))}\n"
            'rules = [{ path = "/traced/*", status_codes = "200" }]\n\n'
            f'[admin]\nbind = "127.0.0.1:{admin}"\ntoken_file = "tokens"\n'
        ),
    )
    # A folder with its own web.toml: a leaf of the configuration tree.
    (tmp_path / "www" / "docs").mkdir(parents=True)
    (tmp_path / "www" / "docs" / "web.toml").write_text(
        '# the docs folder\n[custom_headers]\nset = { X-Docs = "1" }\n'
    )
    running = Master(tmp_path, config, workers=1, port=port)
    running.admin_port = admin  # type: ignore[attr-defined]
    try:
        wait_for(lambda: "admin API on" in running.log(), PATIENCE, "the admin binding")
        wait_for(lambda: running.pids("default"), PATIENCE, "a ready worker")
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Console]:
    with Console(chromium(), tmp_path / "profile") as page:
        yield page


def sign_in(browser: Console, base: str) -> None:
    browser.goto(base + "/console/")
    assert browser.where() == "/console/sign-in"
    browser.type_into("Admin token", TOKEN)
    browser.press_enter()
    assert browser.where() == "/console/"
    browser.drawn("#/overview")


def counters(browser: Console) -> dict[str, str]:
    found = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.counter')]"
        ".map(c => [c.dataset.name, c.querySelector('dd').textContent]))"
    )
    return dict(found or {})


def worker_pids(browser: Console) -> list[int]:
    found = browser.evaluate(
        "[...document.querySelectorAll('[data-pool=\"default\"] tbody tr')]"
        ".map(r => r.cells[1].textContent === 'ready' ? +r.cells[0].textContent : 0)"
    )
    return [pid for pid in found or [] if pid]


def test_console_end_to_end(master: Master, browser: Console, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{master.admin_port}"  # type: ignore[attr-defined]
    # A wrong token is refused and said so.
    browser.goto(base + "/console/sign-in")
    browser.type_into("Admin token", "wrong")
    browser.press_enter()
    assert "That token does not sign in." in browser.text()
    sign_in(browser, base)

    # 1. The overview's counters come from the API, and keep coming (polling).
    assert master.get("/x").status == 200
    seen = wait_for(
        lambda: (c := counters(browser)).get("Requests served") not in (None, "0") and c,
        PATIENCE,
        "the overview's counters",
    )
    assert seen["Master pid"] == str(master.proc.pid)
    assert seen["Workers ready"] == "1 of 1"
    before = int(seen["Requests served"])
    assert master.get("/y").status == 200
    wait_for(
        lambda: int(counters(browser).get("Requests served", "0")) > before,
        PATIENCE,
        "the counter to move",
    )
    browser.shot("overview")

    # 2. The pool's worker; a recycle by keyboard; the new worker appears.
    browser.view("#/pools")
    (old,) = wait_for(lambda: worker_pids(browser), PATIENCE, "the pool's worker")
    assert master.pids("default") == [old]
    browser.press('[data-action="default/recycle"]')
    new = wait_for(
        lambda: [p for p in worker_pids(browser) if p != old],
        PATIENCE,
        "a new worker pid on the page",
    )
    wait_for(lambda: master.replaced({old}, 1), PATIENCE, "the recycle")
    assert new == master.pids("default")
    wait_for(lambda: old not in worker_pids(browser), PATIENCE, "the old worker gone")
    assert "recycling 1 worker" in browser.evaluate(
        "document.getElementById('announce').textContent"
    )
    browser.shot("pools")

    # 3. A traced request, in the trace list, and its waterfall.
    assert master.get("/traced/page").status == 200
    wait_for(lambda: operations.traces(master.control)["traces"], PATIENCE, "the trace kept")
    browser.view("#/traces")
    assert "/traced/page" in browser.text()
    browser.shot("traces")
    link = "a[href^='#/traces/']"
    trace_hash = browser.evaluate(
        f"document.querySelector({json.dumps(link)}).getAttribute('href')"
    )
    browser.press(link)
    browser.drawn(trace_hash)
    bars = browser.evaluate(
        "[...document.querySelectorAll('.waterfall .row')].filter(r => r.querySelector('.bar'))"
        ".map(r => { const b = r.querySelector('.bar'),"
        " t = b.parentElement.getBoundingClientRect(), x = b.getBoundingClientRect();"
        " return {kind: r.classList.contains('stage') ? 'stage' : 'hook',"
        " label: r.querySelector('.label').textContent,"
        " left: (x.left - t.left) / t.width, right: (x.right - t.left) / t.width}; })"
    )
    stages = [b["label"] for b in bars if b["kind"] == "stage"]
    hooks = [b for b in bars if b["kind"] == "hook"]
    assert "EXECUTE_REQUEST_HANDLER" in stages and len(stages) >= 2
    handler = next(b for b in hooks if b["label"] == "acme.pid")
    # Bars sit on one time axis: stages in order, each inside the request.
    lefts = [b["left"] for b in bars if b["kind"] == "stage"]
    assert lefts == sorted(lefts)
    assert all(-0.001 <= b["left"] <= b["right"] <= 1.001 for b in bars)
    assert 0 < handler["left"] < 1
    # Focus (keyboard) on a bar tells its timings.
    browser.evaluate("document.querySelector('.hook-bar').focus()")
    details = browser.evaluate("document.querySelector('.details').textContent")
    assert "→" in details and ("µs" in details or "ms" in details)
    assert browser.evaluate("document.querySelectorAll('.marker').length") >= 1
    browser.shot("trace")

    # 4. The tree: site → application → the folders with a web.toml; effective
    # settings with their origins and lock badges.
    browser.view("#/config?site=main&path=/")
    tree = browser.evaluate(
        "[...document.querySelectorAll('.tree [data-app]')].map(a => ({app: a.dataset.app,"
        " folders: [...a.querySelectorAll('[data-folder]')].map(f => f.dataset.folder)}))"
    )
    assert tree == [{"app": "/", "folders": ["/docs"]}]
    browser.press(".tree [data-folder='/docs'] a")
    browser.drawn("#/config?site=main&path=%2Fdocs")
    section = "[data-section='custom_headers']"
    origins = browser.evaluate(
        f'[...document.querySelectorAll("{section} tbody tr")]'
        ".map(r => [r.cells[0].firstChild.textContent, r.cells[2].textContent])"
    )
    assert dict(origins)["set"] == str(tmp_path / "www" / "docs" / "web.toml")
    browser.view("#/config?site=main&path=/")
    origin = browser.evaluate(f'document.querySelector("{section} .origin").textContent')
    assert origin.endswith("colonnade.toml")
    # A lock badge on the key the server file's [lock] denies, on no other.
    locked = browser.evaluate(
        f'[...document.querySelectorAll("{section} tbody tr")]'
        ".filter(r => r.querySelector('.badge.locked')).map(r => r.cells[0].firstChild.textContent)"
    )
    assert locked == ["remove"]
    browser.shot("configuration")

    # 5. The per-key editor: a field per key of the section's schema; a bad value's
    # located error (file:line: key) at its field; nothing written.
    browser.press(f"{section} button.edit")
    wait_for(
        lambda: browser.evaluate("!!document.querySelector('.editor .fields')"),
        PATIENCE,
        "the editor's form",
    )
    kinds = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.editor [data-kind]')]"
        ".map(f => [f.name, f.tagName + ':' + f.dataset.kind]))"
    )
    assert kinds["set"] == "TEXTAREA:json"
    assert browser.evaluate("document.activeElement.closest('.editor') !== null")
    browser.fill("set", '{"Bad Name": "x"}')
    browser.press(".editor .save")
    error = wait_for(
        lambda: browser.evaluate(
            "document.getElementById('field-custom_headers-set-error').textContent"
        ),
        PATIENCE,
        "the located error at its field",
    )
    assert "web.toml:" in error and "custom_headers" in error
    assert "'Bad Name' is not a valid header name" in error
    assert browser.evaluate(
        "document.getElementById('field-custom_headers-set').getAttribute('aria-invalid')"
    )
    assert not (tmp_path / "www" / "web.toml").exists()  # refused: nothing written
    browser.shot("configuration-error")

    # The session runs out mid-edit in the form: what was typed is kept, and said so.
    browser.fill("set", '{"X-Kept": "form"}')
    browser.call("Storage.clearCookies")
    browser.events.clear()
    browser.press(".editor .save")
    browser.wait_for_load()
    assert browser.where().startswith("/console/sign-in?expired=1")
    assert "Your session expired" in browser.text()
    browser.type_into("Admin token", TOKEN)
    browser.press_enter()
    browser.drawn("#/config?site=main&path=/")
    wait_for(
        lambda: browser.evaluate("!!document.getElementById('field-custom_headers-set')"),
        PATIENCE,
        "the editor's form again",
    )
    typed = browser.evaluate("document.getElementById('field-custom_headers-set').value")
    assert json.loads(typed) == {"X-Kept": "form"}
    assert "Restored what you typed" in browser.text()

    # The text editor is the alternative: the form's values as JSON; the session
    # runs out there too, and the text comes back as typed.
    browser.press(".editor .mode")
    wait_for(
        lambda: browser.evaluate("!!document.getElementById('values')"),
        PATIENCE,
        "the text editor",
    )
    assert json.loads(browser.evaluate("document.getElementById('values').value"))["set"] == {
        "X-Kept": "form"
    }
    browser.fill("values", '{"set": {"X-Kept": "yes"}')  # not JSON yet: kept as typed
    browser.call("Storage.clearCookies")
    browser.events.clear()
    browser.evaluate("location.reload()")
    browser.wait_for_load()
    assert browser.where().startswith("/console/sign-in")
    browser.type_into("Admin token", TOKEN)
    browser.press_enter()
    # Back at the view: the draft is still there, as typed.
    browser.drawn("#/overview")
    browser.view("#/config?site=main&path=/")
    wait_for(
        lambda: browser.evaluate("document.getElementById('values')?.value"),
        PATIENCE,
        "the text editor again",
    )
    assert browser.evaluate("document.getElementById('values').value") == (
        '{"set": {"X-Kept": "yes"}'
    )
    # Saved (valid now): answered once applied, the draft gone, the form back.
    browser.fill("values", '{"set": {"X-Kept": "yes"}}')
    browser.press(".editor .save")
    wait_for(
        lambda: (
            "Saved and applied"
            in browser.evaluate("document.getElementById('announce').textContent")
        ),
        PATIENCE,
        "the save",
    )
    assert master.get("/x").headers["x-kept"] == "yes"
    assert (
        browser.evaluate(
            "Object.keys(sessionStorage).filter(k => k.startsWith('colonnade-draft')).length"
        )
        == 0
    )


def executing(browser: Console) -> list[dict[str, Any]]:
    """The request monitor page's rows, by column heading."""
    found = browser.evaluate(
        "(() => { const t = document.querySelector('main table'); if (!t) return [];"
        " const heads = [...t.tHead.rows[0].cells].map(c => c.textContent);"
        " return [...t.tBodies[0].rows].map(r =>"
        " Object.fromEntries([...r.cells].map((c, i) => [heads[i], c.textContent]))); })()"
    )
    return list(found or [])


def detail(browser: Console) -> dict[str, str]:
    """An opened request's fields, by name."""
    found = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('main dd[data-name]')]"
        ".map(d => [d.dataset.name, d.textContent]))"
    )
    return dict(found or {})


def test_a_slow_request_in_the_request_monitor(
    master: Master, browser: Console, tmp_path: Path
) -> None:
    sign_in(browser, f"http://127.0.0.1:{master.admin_port}")  # type: ignore[attr-defined]
    browser.view("#/requests")
    wait_for(lambda: "No request is executing." in browser.text(), PATIENCE, "the empty monitor")
    # acme.slow holds its answer until the test makes the gate file.
    gate = tmp_path / "go"
    url = f"/slow/console?until={quote(str(gate))}"
    with Conn(master.port) as conn:
        conn.send(get(url))
        (row,) = wait_for(lambda: executing(browser), PATIENCE, "the request on the page")
        assert (row["stage"], row["module"]) == ("EXECUTE_REQUEST_HANDLER", "acme.slow")
        assert (row["verb"], row["URL"], row["site"], row["pool"]) == (
            "GET",
            url,
            "main",
            "default",
        )
        assert int(row["pid"]) in master.pids("default")
        assert "1 worker answered" in browser.text()
        # The page refreshes itself: the same request, with a larger elapsed time.
        first = int(row["elapsed"].removesuffix(" ms"))
        later = wait_for(
            lambda: [
                r
                for r in executing(browser)
                if r["id"] == row["id"] and int(r["elapsed"].removesuffix(" ms")) > first
            ],
            PATIENCE,
            "the elapsed time growing on the page",
        )
        assert len(later) == 1
        browser.shot("requests")
        # The filter keeps requests running at least that long: an hour leaves none.
        browser.fill("elapsed", "3600000")
        browser.press("form.inline button")
        browser.drawn("#/requests?elapsed=3600000")
        wait_for(lambda: "No request is executing." in browser.text(), PATIENCE, "the filter")
        browser.view("#/requests")
        wait_for(lambda: executing(browser), PATIENCE, "the request listed again")
        # Opened (by keyboard): its own page, refreshed while it runs.
        opened = f"#/requests/{row['id']}"
        browser.press(f"a[href='{opened}']")
        browser.drawn(opened)
        shown = detail(browser)
        assert (shown["Stage"], shown["Module"]) == ("EXECUTE_REQUEST_HANDLER", "acme.slow")
        assert shown["Request"] == f"GET {url}"
        since = int(shown["Elapsed"].removesuffix(" ms"))
        wait_for(
            lambda: int(detail(browser).get("Elapsed", "0 ms").removesuffix(" ms")) > since,
            PATIENCE,
            "the opened request's elapsed time growing",
        )
        gate.touch()
        assert conn.response().status == 200
    # Finished: the opened page says so at its next refresh, and the list is empty.
    wait_for(
        lambda: f"Request {row['id']} is no longer executing: it finished." in browser.text(),
        PATIENCE,
        "the opened request finished",
    )
    browser.view("#/requests")
    wait_for(
        lambda: not executing(browser) and "No request is executing." in browser.text(),
        PATIENCE,
        "the finished request gone from the page",
    )


def logged_paths(browser: Console) -> list[str]:
    """The cs-uri-stem of each line the access log page shows (directives left out)."""
    text = browser.evaluate("document.querySelector('.log-lines')?.textContent ?? ''")
    return [line.split()[4] for line in str(text).splitlines() if not line.startswith("#")]


def test_a_view_left_while_it_loads_draws_nothing_and_stops_polling(
    master: Master, browser: Console
) -> None:
    sign_in(browser, f"http://127.0.0.1:{master.admin_port}")  # type: ignore[attr-defined]
    # Every API read the page makes from now on, in order, each answered 300 ms late
    # (a slow network), so that a view left at once is left with its reads in flight.
    browser.evaluate(
        "(() => { window.reads = []; window.pending = 0; const fetch = window.fetch;"
        " window.fetch = (path, ...rest) => { window.reads.push(String(path).split('?')[0]);"
        " window.pending++; return new Promise(r => setTimeout(r, 300))"
        ".then(() => fetch(path, ...rest)).finally(() => window.pending--); }; return true; })()"
    )
    # Each view is left as soon as it has asked the API for its first answer.
    for hash_ in ("#/config", "#/overview", "#/log", "#/pools"):
        asked = browser.evaluate("window.reads.length")
        browser.evaluate(f"location.hash = {json.dumps(hash_)}")
        wait_for(
            lambda asked=asked: browser.evaluate("window.reads.length") > asked,
            PATIENCE,
            f"the view {hash_} asking the API",
        )
    browser.drawn("#/pools")
    # Every answer has come, the left views' too...
    wait_for(lambda: browser.evaluate("window.pending") == 0, PATIENCE, "the API's answers")
    # ... and they drew nothing over the view shown: the configuration's page, drawn
    # after its first reads, would replace it, and the log's form would join it.
    assert browser.evaluate("document.title") == "Pools and workers · Colonnade Manager"
    assert browser.evaluate("document.querySelector('#main h1').textContent") == (
        "Pools and workers"
    )
    assert browser.evaluate("document.querySelectorAll('#main form').length") == 0
    assert browser.evaluate("document.querySelectorAll('#main section.pool').length") >= 1
    # Only the view shown polls (every 2 s): the others' polls stopped with their views.
    browser.evaluate("window.reads.length = 0")
    time.sleep(4.5)
    reads = browser.evaluate("window.reads")
    assert reads and set(reads) == {"/api/pools"}, reads
    assert len(reads) <= 3, reads


def test_an_editor_opened_on_a_view_left_at_once_reports_no_error(
    master: Master, browser: Console
) -> None:
    # The editor's reads (an action's, nobody awaits them) answered after the view
    # was left end there (Left): no unhandled rejection in the page, nothing drawn.
    sign_in(browser, f"http://127.0.0.1:{master.admin_port}")  # type: ignore[attr-defined]
    browser.view("#/config?site=main&path=/")
    browser.evaluate(
        "(() => { window.rejected = []; window.addEventListener('unhandledrejection',"
        " e => { if (!e.defaultPrevented) window.rejected.push(String(e.reason)); });"
        " window.pending = 0; const fetch = window.fetch; window.fetch = (...args) =>"
        " { window.pending++; return new Promise(r => setTimeout(r, 500))"
        ".then(() => fetch(...args)).finally(() => window.pending--); }; return true; })()"
    )
    browser.press("[data-section='custom_headers'] button.edit")
    assert browser.evaluate("window.pending") == 2  # the file and the schema
    browser.evaluate('location.hash = "#/overview"')
    browser.drawn("#/overview")
    wait_for(lambda: browser.evaluate("window.pending") == 0, PATIENCE, "the API's answers")
    browser.evaluate("new Promise(r => setTimeout(() => r(true), 100))")  # their rejections
    assert browser.evaluate("window.rejected") == []
    assert browser.evaluate("document.querySelectorAll('.editor').length") == 0


def test_the_access_log_with_a_filter(master: Master, browser: Console) -> None:
    sign_in(browser, f"http://127.0.0.1:{master.admin_port}")  # type: ignore[attr-defined]
    for path in ("/a", "/needle/1", "/b", "/needle/2"):
        assert master.get(path).status == 200
    browser.view("#/log")
    # Refreshed every 2 s: what comes later appears without a reload, newest last.
    wait_for(
        lambda: logged_paths(browser)[-4:] == ["/a", "/needle/1", "/b", "/needle/2"],
        PATIENCE,
        "the lines",
    )
    assert master.get("/later").status == 200
    wait_for(lambda: logged_paths(browser)[-1:] == ["/later"], PATIENCE, "a new line on the page")
    # The filter, applied by the server: only the lines containing it.
    browser.fill("contains", "NEEDLE")
    browser.press("form.inline button")
    browser.drawn("#/log?site=main&lines=100&contains=NEEDLE")
    assert logged_paths(browser) == ["/needle/1", "/needle/2"]
    assert "2 lines containing “NEEDLE” from " in browser.text()
    # What the columns are, though the filter left the #Fields line out.
    fields = browser.evaluate("document.querySelector('.log-fields').textContent")
    assert fields.startswith("#Fields: date time s-ip cs-method cs-uri-stem ")
    assert master.get("/needle/3").status == 200
    wait_for(
        lambda: logged_paths(browser) == ["/needle/1", "/needle/2", "/needle/3"],
        PATIENCE,
        "the new match",
    )
    browser.shot("access-log")
    # A site the server does not have: the API's refusal, on the page.
    browser.view("#/log?site=nope")
    wait_for(lambda: "no site named 'nope'" in browser.text(), PATIENCE, "the refusal")


def test_a_narrow_window(master: Master, tmp_path: Path) -> None:
    with Console(chromium(), tmp_path / "narrow") as browser:
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            width=380,
            height=700,
            deviceScaleFactor=1,
            mobile=True,
        )
        sign_in(browser, f"http://127.0.0.1:{master.admin_port}")  # type: ignore[attr-defined]
        assert master.get("/" + "long-path-" * 30).status == 200  # a wide log line
        # Each view with what shows it has been drawn (JavaScript).
        for view, drawn in (
            ("#/overview", "!!document.querySelector('main dl')"),
            ("#/pools", "!!document.querySelector('main table')"),
            ("#/requests", "!!document.querySelector('main .monitor p')"),
            ("#/log", "document.querySelector('main pre')?.textContent.includes('long-path-')"),
            ("#/config?site=main&path=/", "!!document.querySelector('main table')"),
        ):
            browser.view(view)
            wait_for(lambda drawn=drawn: browser.evaluate(drawn), PATIENCE, view)
            # Nothing wider than the window: tables scroll inside their own box.
            assert browser.evaluate("document.documentElement.scrollWidth") <= 380, view
        # The per-key editor fits too: its fields stack in one column.
        browser.press("[data-section='custom_headers'] button.edit")
        wait_for(
            lambda: browser.evaluate("!!document.querySelector('.editor .fields')"),
            PATIENCE,
            "the editor's form",
        )
        assert browser.evaluate("document.documentElement.scrollWidth") <= 380
        browser.shot("narrow-configuration")
        shot = tmp_path / "narrow.png"
        browser.screenshot(shot)
        width, _, pixels = decode_png(shot.read_bytes())
        assert width == 380
        background = most_common(pixels)
        assert sum(1 for p in pixels if p != background) / len(pixels) > 0.02
