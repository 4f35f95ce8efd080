"""URL Rewrite's route to a farm (ARR's ``http://FARM/{R:0}`` rule) over real
sockets: a Colonnade front end whose rewrite rules hand some URLs to
handler.proxy for a farm of two Colonnade nodes, and serve the rest itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from colonnade.errors import ConfigError, ModuleError
from colonnade.testing import Client, build_engine
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e


def routing_config(
    ports: list[int],
    rules: list[dict[str, Any]],
    modules: list[str] | None = None,
    *,
    global_rules: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A front end serving its files, with ``rules`` (which may route to the farm
    ``app`` of the nodes), and ``global_rules``."""
    return {
        "server": {
            "modules": modules or ["rewrite", "authz.url", "handler.proxy", "handler.static"]
        },
        "sites": [{"name": "front", "bindings": ["http://127.0.0.1:8080"]}],
        "handlers": [{"path": "*", "handler": "handler.static"}],
        "farms": {"app": {"members": [{"address": f"http://127.0.0.1:{p}"} for p in ports]}},
        "rewrite": {
            "rules": rules,
            "global_rules": global_rules or [],
            "allowed_farms": ["app"],
        },
    }


def api_rule(url: str = "http://app/{R:1}", **more: Any) -> dict[str, Any]:
    return {
        "name": "api",
        "pattern": "^api/(.*)",
        "action": {"type": "rewrite", "url": url},
        **more,
    }


def seen(client: httpx.Client, url: str, **kwargs: Any) -> dict[str, Any]:
    got = client.get(url, **kwargs)
    assert got.status_code == 200, got.text
    found: dict[str, Any] = got.json()
    found["headers"] = dict(found["headers"])
    return found


def test_a_rewrite_to_a_farm_is_proxied_to_its_members(
    nodes: list[LiveServer], tmp_path: Path
) -> None:
    (tmp_path / "hello.txt").write_text("served by the front end")
    config = routing_config([n.port for n in nodes], [api_rule()])
    with LiveServer(config, tmp_path).start() as front, httpx.Client() as client:
        base = f"http://127.0.0.1:{front.port}"
        answers = [seen(client, f"{base}/api/headers?x=1") for _ in range(4)]
        local = client.get(f"{base}/hello.txt")
    # The upstream is asked for the URL the rule made, the query appended, and
    # told what the client asked for.
    for answer in answers:
        assert answer["path"] == "/headers" and answer["query"] == "x=1"
        assert answer["headers"]["x-original-url"] == "/api/headers?x=1"
        assert answer["headers"]["x-forwarded-host"] == f"127.0.0.1:{front.port}"
    # Spread over the farm's members (weighted round robin), as a mapping's farm is.
    hosts = [a["headers"]["host"] for a in answers]
    assert set(hosts) == {f"127.0.0.1:{n.port}" for n in nodes}
    assert hosts[0] != hosts[1]
    # What no rule routes is the front end's own.
    assert local.status_code == 200 and local.text == "served by the front end"


def test_arrs_own_rule_with_conditions_and_the_farm_named_in_any_case(
    nodes: list[LiveServer], tmp_path: Path
) -> None:
    # The global rule ARR's "create a farm" wizard writes, with a condition (which
    # a handler mapping could not express): only the beta tenant goes to the farm.
    rule = {
        "name": "ARR_app_loadbalance",
        "pattern": "*",
        "pattern_syntax": "wildcard",
        "conditions": [{"input": "{HTTP_X_TENANT}", "pattern": "beta"}],
        "action": {"type": "rewrite", "url": "http://APP/{R:0}"},
        "stop_processing": True,
    }
    config = routing_config([n.port for n in nodes], [], global_rules=[rule])
    del config["rewrite"]["allowed_farms"]  # global rules may route to any farm
    with LiveServer(config, tmp_path).start() as front, httpx.Client() as client:
        url = f"http://127.0.0.1:{front.port}/headers"
        routed = seen(client, url, headers={"x-tenant": "beta"})
        other = client.get(url, headers={"x-tenant": "alpha"})
    assert routed["path"] == "/headers" and routed["headers"]["x-tenant"] == "beta"
    assert "x-original-url" not in routed["headers"]  # the client's own URL went on
    assert other.status_code == 404  # no such file at the front end


def test_a_folder_rule_routes_the_path_below_its_folder(
    nodes: list[LiveServer], tmp_path: Path
) -> None:
    # A web.toml's rule sees the path below its folder, as ARR's {R:0} there.
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "to-farm"\npattern = ".*"\n'
        'action = { type = "rewrite", url = "http://app/{R:0}", append_query_string = false }\n'
    )
    config = routing_config([n.port for n in nodes], [])
    with LiveServer(config, tmp_path).start() as front, httpx.Client() as client:
        answer = seen(client, f"http://127.0.0.1:{front.port}/shop/headers?dropped=1")
    assert answer["path"] == "/headers" and answer["query"] == ""
    assert answer["headers"]["x-original-url"] == "/shop/headers?dropped=1"


def test_authorization_judges_the_url_the_client_asked_for(
    nodes: list[LiveServer], tmp_path: Path
) -> None:
    config = routing_config([n.port for n in nodes], [api_rule()])
    config["locations"] = [
        {
            "path": "/api/private",
            "url_authorization": {"rules": [{"access": "deny", "users": ["?"]}]},
        },
    ]
    with LiveServer(config, tmp_path).start() as front, httpx.Client() as client:
        base = f"http://127.0.0.1:{front.port}"
        denied = client.get(f"{base}/api/private/headers")
        allowed = client.get(f"{base}/api/headers")
    assert denied.status_code == 401
    assert allowed.status_code == 200


@pytest.mark.parametrize("where", ["global_rules", "allowed_farms"])
def test_an_undefined_farm_is_refused_at_start(tmp_path: Path, where: str) -> None:
    if where == "global_rules":
        config = routing_config([1], [], global_rules=[api_rule("http://nowhere/{R:1}")])
        key = "rewrite.global_rules[0].action.url"
    else:
        config = routing_config([1], [])
        config["rewrite"]["allowed_farms"] = ["app", "nowhere"]
        key = "rewrite.allowed_farms"
    engine = build_engine(config, base_dir=str(tmp_path))
    (runtime,) = engine.runtimes
    (module,) = [m for m in runtime.modules if m.id == "rewrite"]
    (warning,) = module.config_warnings(runtime.app, 1)  # colonnade check says it
    assert "farms.nowhere" in warning and "defined: app" in warning and key in warning
    with pytest.raises((ConfigError, ModuleError), match=r"farms\.nowhere"), Client(engine):
        pass


def test_rules_route_only_to_the_farms_the_server_file_allows(tmp_path: Path) -> None:
    # A web.toml could otherwise send its folder's requests to any farm of the
    # server: one the front end guards elsewhere (an internal site's).
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "to-farm"\npattern = ".*"\n'
        'action = { type = "rewrite", url = "http://APP/{R:0}" }\n'
    )
    (tmp_path / "hello.txt").write_text("hello")
    config = routing_config([1], [])
    config["rewrite"]["allowed_farms"] = []
    with Client(build_engine(config, base_dir=str(tmp_path))) as client:
        refused = client.get("/shop/x")
        elsewhere = client.get("/hello.txt")
    # Confined to the folder, as any broken web.toml: 500.19 naming file, line, key.
    assert refused.context is not None
    assert (refused.status, refused.context.response.substatus) == (500, 19)
    assert "shop/web.toml:4: rewrite.rules[0].action.url" in refused.text
    assert "rewrite.allowed_farms" in refused.text
    assert elsewhere.status == 200
    # Listed (in any case), the folder's rule routes.
    config["rewrite"]["allowed_farms"] = ["App"]
    with Client(build_engine(config, base_dir=str(tmp_path))) as client:
        routed = client.get("/shop/x")
    assert routed.context is not None and routed.context.handler is not None
    assert routed.context.handler.id == "handler.proxy"
