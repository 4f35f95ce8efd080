"""Forms authentication as a person goes through it, in real headless Chromium.

Chromium is driven over the DevTools protocol (a WebSocket): it opens a
protected static file, lands on the server's login page, types the user name and
password into the labelled fields and presses Enter, gets the file, a Python
application's page and a directory listing as the same user, clicks "Sign out",
and is sent to the login page again when it asks for the file. Everything the
page does is plain HTML: the form posts without JavaScript (the protocol only
plays the keyboard and the mouse, and reads the page).

URL authorization (``authz.url``) refuses the content to anonymous users.
Needs Debian's ``chromium`` (skipped without it, except under CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.browser.test_listing_browser import HEIGHT, WIDTH, chromium, decode_png, most_common
from tests.e2e.conftest import LiveServer
from tests.modules.forms_auth.support import USERS, protected_site
from tests.support.wait import PATIENCE, _Deadline, wait_for

pytestmark = pytest.mark.e2e


class DevTools:
    """One page of a headless Chromium, over the DevTools protocol."""

    def __init__(self, browser: str, profile: Path, *flags: str) -> None:
        """``flags``: more command-line switches for Chromium."""
        profile.mkdir(parents=True, exist_ok=True)
        self.stack = ExitStack()
        self.proc = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                *flags,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"HOME": str(profile), "PATH": "/usr/bin:/bin"},
        )
        try:
            # Chromium writes the port it chose and the browser's path here.
            active = profile / "DevToolsActivePort"
            lines = (
                wait_for(
                    lambda: active.is_file() and len(active.read_text().split()) >= 2 and active,
                    PATIENCE,
                    "Chromium's DevTools port",
                )
                .read_text()
                .split()
            )
            # Entered as a context manager: websockets 17 wants connect() so.
            self.ws: ClientConnection = self.stack.enter_context(
                connect(
                    f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=PATIENCE
                )
            )
            self.ids = 0
            self.events: list[dict[str, Any]] = []
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            self.page("Page.enable")
            self.page("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stack.close()
        self.proc.kill()
        self.proc.wait(15)

    def _receive(self, deadline: _Deadline) -> dict[str, Any]:
        deadline.check()
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=PATIENCE))
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.ids += 1
        message: dict[str, Any] = {"id": self.ids, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = _Deadline(PATIENCE, f"the answer to {method}")
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self.ids:
                assert "error" not in answer, answer
                result: dict[str, Any] = answer["result"]
                return result
            self.events.append(answer)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, self.session, **params)

    def wait_for_load(self) -> None:
        """Until the page's next load event (after the redirects of a navigation)."""
        deadline = _Deadline(PATIENCE, "the page to load")
        while True:
            while self.events:
                if self.events.pop(0).get("method") == "Page.loadEventFired":
                    return
            self.events.append(self._receive(deadline))

    def goto(self, url: str) -> None:
        self.events.clear()
        self.page("Page.navigate", url=url)
        self.wait_for_load()

    def evaluate(self, expression: str) -> Any:
        found = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        return found["result"].get("value")

    def after_rendering(self) -> None:
        """Until the page has been rendered once since now.

        Some of what a page asks for happens only when it is next rendered, not
        by its load event: an ``autofocus`` field gets the focus when the
        browser "flushes autofocus candidates" in its rendering update (HTML,
        "update the rendering"). A second animation frame starts after that.
        """
        self.page(
            "Runtime.evaluate",
            expression="new Promise(done => requestAnimationFrame("
            "() => requestAnimationFrame(() => done(true))))",
            awaitPromise=True,
            returnByValue=True,
        )

    def where(self) -> str:
        return str(self.evaluate("location.pathname + location.search"))

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def type_into(self, label: str, text: str) -> None:
        """Focus the field a label names, as a person clicking the label, and type."""
        found = self.evaluate(
            "(() => { const l = [...document.querySelectorAll('label')]"
            f".find(l => l.textContent.trim() === {json.dumps(label)});"
            " if (!l || !l.control) return false; l.control.focus(); return true; })()"
        )
        assert found, f"no field labelled {label!r}: {self.text()!r}"
        self.page("Input.insertText", text=text)

    def key_enter(self) -> None:
        """Press and release Enter on what has the focus."""
        for kind in ("keyDown", "keyUp"):
            self.page(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                **({"text": "\r"} if kind == "keyDown" else {}),
            )

    def press_enter(self) -> None:
        """Enter, and the page load that follows (a form's submission)."""
        self.events.clear()
        self.key_enter()
        self.wait_for_load()

    def click_button(self, name: str) -> None:
        box = self.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')]"
            f".find(b => b.textContent.trim() === {json.dumps(name)});"
            " if (!b) return null; const r = b.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        assert box, f"no button {name!r}: {self.text()!r}"
        self.click_at(box[0], box[1])

    def click_at(self, x: float, y: float) -> None:
        """A left click at (x, y) of the page, and the page load that follows."""
        self.events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.page(
                "Input.dispatchMouseEvent",
                type=kind,
                x=x,
                y=y,
                button="left",
                clickCount=1,
            )
        self.wait_for_load()

    def screenshot(self, path: Path) -> None:
        import base64

        data = self.page("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("forms-browser")
    server = LiveServer(protected_site(base), base)
    yield server.start()
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    with DevTools(chromium(), tmp_path / "profile") as tools:
        yield tools


def test_sign_in_see_everything_sign_out(
    browser: DevTools, live: LiveServer, tmp_path: Path
) -> None:
    site = f"http://127.0.0.1:{live.port}"
    # A protected static file: the browser lands on the login page.
    browser.goto(site + "/private/a.txt")
    assert browser.where() == "/login?ReturnUrl=/private/a.txt"
    assert browser.evaluate("document.title") == "Sign in"
    assert "the protected file" not in browser.text()
    shot = tmp_path / "login.png"
    browser.screenshot(shot)
    if os.environ.get("COLONNADE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["COLONNADE_KEEP_SCREENSHOT"])
    _, _, pixels = decode_png(shot.read_bytes())
    background = most_common(pixels)
    assert sum(1 for p in pixels if p != background) / len(pixels) > 0.01  # a drawn form
    # Signing in with the keyboard, as a person does.
    browser.type_into("User name", "alice")
    browser.type_into("Password", USERS["alice"])
    browser.press_enter()
    assert browser.where() == "/private/a.txt"
    assert browser.text() == "the protected file"
    # The cookie is the server's: not readable by scripts (HttpOnly).
    assert browser.evaluate("document.cookie") == ""
    # A Python application's page and a directory listing, as the same user.
    browser.goto(site + "/wsgi/page")
    assert browser.text().startswith("wsgi user=alice type=Forms api=alice")
    browser.goto(site + "/private/docs/")
    assert "report.txt" in browser.text()
    assert browser.where() == "/private/docs/"
    # Signing out: a button on the sign-out page.
    browser.goto(site + "/logout")
    assert "You are signed in as alice." in browser.text()
    browser.click_button("Sign out")
    assert browser.where() == "/login"
    # Refused again.
    browser.goto(site + "/private/a.txt")
    assert browser.where() == "/login?ReturnUrl=/private/a.txt"
    assert "the protected file" not in browser.text()


def test_a_wrong_password_is_announced(browser: DevTools, live: LiveServer) -> None:
    browser.goto(f"http://127.0.0.1:{live.port}/private/docs/")
    browser.type_into("User name", "alice")
    browser.type_into("Password", "not the password")
    browser.press_enter()
    assert browser.where() == "/login?ReturnUrl=/private/docs/"
    alert = browser.evaluate("document.querySelector('[role=alert]').textContent")
    assert alert == "The user name or password is incorrect."
    # The name is kept and the password field, described by the alert, has focus.
    assert browser.evaluate("document.getElementById('username').value") == "alice"
    browser.after_rendering()
    assert browser.evaluate("document.activeElement.id") == "password"
    assert (
        browser.evaluate("document.getElementById('password').getAttribute('aria-describedby')")
        == "error"
    )
