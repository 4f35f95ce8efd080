"""Anonymous authentication through the real pipeline: the anonymous user where it is
enabled, 401.2 with one challenge per enabled scheme where it is not, per location,
per folder (locked by default, as IIS), and for the default document's URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.config.schema import DEFAULT_MODULES
from colonnade.core.principal import ANONYMOUS
from colonnade.testing import TestResponse
from tests.support.header_auth import HeaderAuth, OtherHeaderAuth, clients, credentials

MODULES = [
    "test.header_auth",
    "test.other_auth",
    "auth.anonymous",
    "static.default_document",
    "handler.static",
]


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    for folder in ("open", "closed", "docs"):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.txt").write_text(f"{folder} a")
    (root / "docs" / "index.html").write_text("docs index")
    return root


@pytest.fixture
def serve(www: Path) -> Iterator[Any]:
    def config(modules: list[str] = MODULES, **sections: Any) -> dict[str, Any]:
        return {
            "server": {"modules": modules},
            "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(www)}],
            **sections,
        }

    with clients(HeaderAuth, OtherHeaderAuth) as start:
        yield lambda *modules, **sections: start(config(*modules, **sections))


def closed(path: str = "/closed") -> list[dict[str, Any]]:
    return [{"path": path, "anonymous_authentication": {"enabled": False}}]


def code(response: TestResponse) -> tuple[int, int]:
    return response.status, response.context.response.substatus


def challenges(response: TestResponse) -> list[str]:
    return [v.decode() for k, v in response.headers if k == b"www-authenticate"]


def test_enabled_by_default_the_request_is_the_anonymous_user(serve: Any) -> None:
    response = serve().get("/closed/a.txt")
    assert response.status == 200
    assert response.context.user is ANONYMOUS


def test_disabled_no_credentials_is_401_2_with_every_enabled_schemes_challenge(
    serve: Any,
) -> None:
    client = serve(locations=closed())
    refused = client.get("/closed/a.txt")
    assert code(refused) == (401, 2)
    assert "access is denied due to server configuration" in refused.text
    assert challenges(refused) == ['Test realm="test"', 'Other realm="test"']
    assert refused.context.user is None
    assert client.get("/open/a.txt").status == 200

    # A scheme switched off for the URL sends no challenge there.
    client = serve(
        locations=[*closed(), {"path": "/closed", "test_other_auth": {"enabled": False}}]
    )
    assert challenges(client.get("/closed/a.txt")) == ['Test realm="test"']


def test_disabled_a_scheme_that_authenticated_serves(serve: Any) -> None:
    client = serve(locations=closed())
    served = client.get("/closed/a.txt", headers=credentials("alice"))
    assert served.text == "closed a"
    assert served.context.user.name == "alice"
    served = client.get("/closed/a.txt", headers={"Authorization": "Other bob"})
    assert served.context.user.auth_type == "Other"


def test_wrong_credentials_stay_401_1(serve: Any) -> None:
    # Anonymous runs last and never turns a scheme's refusal into anonymous access.
    for client in (serve(), serve(locations=closed())):
        refused = client.get("/open/a.txt", headers=credentials("bad"))
        assert code(refused) == (401, 1)
        assert challenges(refused) == ['Test realm="test"', 'Other realm="test"']


def test_an_unknown_scheme_is_anonymous(serve: Any) -> None:
    client = serve(locations=closed())
    assert client.get("/open/a.txt", headers={"Authorization": "Digest x"}).status == 200
    assert code(client.get("/closed/a.txt", headers={"Authorization": "Digest x"})) == (401, 2)


def test_the_challenges_survive_a_custom_error_page(serve: Any) -> None:
    modules = ["http.custom_errors", *MODULES]
    client = serve(
        modules,
        locations=closed(),
        custom_errors={"error_mode": "custom", "errors": [{"status": 401, "page": "<p>who?</p>"}]},
    )
    refused = client.get("/closed/a.txt")
    assert refused.status == 401 and refused.text == "<p>who?</p>"
    assert challenges(refused) == ['Test realm="test"', 'Other realm="test"']


def test_the_default_documents_url_is_judged_too(serve: Any) -> None:
    # /docs/ is open, the document it is served as is not: no way around it.
    client = serve(locations=closed("/docs/index.html"))
    assert code(client.get("/docs/")) == (401, 2)
    assert client.get("/docs/", headers=credentials("alice")).text == "docs index"
    assert client.get("/docs/a.txt").status == 200


def test_a_web_toml_may_not_switch_it_unless_the_server_allows(serve: Any, www: Path) -> None:
    (www / "closed" / "web.toml").write_text("[anonymous_authentication]\nenabled = false\n")
    (www / "open" / "web.toml").write_text("[anonymous_authentication]\nenabled = true\n")
    # Locked by default (IIS locks its authentication sections): the web.toml that
    # would switch anonymous access back on cannot, and its folder is refused
    # rather than served by its parent's rule.
    client = serve(locations=closed("/open"))
    for path in ("/open/a.txt", "/closed/a.txt"):
        locked = client.get(path)
        assert code(locked) == (500, 19), path
        assert "locked by the server configuration" in locked.text
    client = serve(locations=closed("/open"), lock={"anonymous_authentication": "allow"})
    assert client.get("/open/a.txt").text == "open a"
    assert code(client.get("/closed/a.txt")) == (401, 2)


def test_not_in_the_default_module_set() -> None:
    # Without a scheme it could only say "yes" (enabled) or refuse everything;
    # without it a request is anonymous anyway (ctx.user None), at no cost.
    assert "auth.anonymous" not in DEFAULT_MODULES
