"""ARR web farms and the rewrite rules that send requests to them become
``[farms.NAME]`` and rewrite rules routing to those farms (docs/rewrite.md,
"Route to a farm"); the imported front end spreads requests over real members."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from colonnade.management.cli import main
from tests.e2e.conftest import LiveServer
from tests.handlers.proxy.kit import upstream_node
from tests.import_iis.kit import copy_entry, run

# ARR's own rule for a farm, as IIS Manager writes it (in globalRules).
ARR_RULE = """
      <globalRules>
        <rule name="ARR_app_loadbalance" patternSyntax="Wildcard" stopProcessing="true">
          <match url="*" />
          <conditions />
          <action type="Rewrite" url="http://app/{R:0}" />
        </rule>
      </globalRules>"""

# What IIS Manager writes for a farm; webFarms comes after system.webServer, as
# in applicationHost.config.
APPHOST = """<configuration>
  <system.applicationHost>
    <sites>
      <site name="front" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="{root}" /></application>
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:8080:" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer>
    <rewrite>{rules}
    </rewrite>
  </system.webServer>
  <webFarms>
    <webFarm name="app" enabled="true">
      <server address="127.0.0.1" enabled="true">
        <applicationRequestRouting weight="100" httpPort="{a}" />
      </server>
      <server address="127.0.0.1" enabled="true">
        <applicationRequestRouting weight="100" httpPort="{b}" />
      </server>
      <applicationRequestRouting>
        <healthCheck url="http://app/hello" interval="00:00:05" timeout="00:00:02"
                     responseMatch="Hello" statusCodeMatch="200-299" />
        <loadBalancing algorithm="{algorithm}" {hash} />
        <affinity useCookie="{affinity}" cookieName="Sticky" />
      </applicationRequestRouting>
    </webFarm>
  </webFarms>
</configuration>
"""


def imported(
    tmp_path: Path,
    ports: tuple[int, int],
    algorithm: str = "WeightedRoundRobin",
    hash_variable: str = "",
    affinity: str = "false",
    rules: str = ARR_RULE,
) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    text = APPHOST.format(
        root=tmp_path,
        a=ports[0],
        b=ports[1],
        algorithm=algorithm,
        hash=f'hashServerVariable="{hash_variable}"' if hash_variable else "",
        affinity=affinity,
        rules=rules,
    )
    (conf / "applicationHost.config").write_text(text)
    return conf


def converted(
    capsys: pytest.CaptureFixture[str], conf: Path, *more: Path
) -> tuple[str, dict[str, Any]]:
    """``colonnade import-iis`` of ``conf``'s applicationHost.config (and ``more``):
    the report, and the server file written, which ``colonnade check`` accepts."""
    assert run([str(conf / "applicationHost.config"), *map(str, more)]) == 0
    out = capsys.readouterr().out
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return out, tomllib.loads((conf / "colonnade.toml").read_text())


def test_a_web_farm_and_its_rule_become_a_farm_and_a_route_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = imported(tmp_path, (8081, 8082), "RequestHash", "HTTP_X_TENANT", "true")
    out, data = converted(capsys, conf)
    assert {"rewrite", "handler.proxy"} <= set(data["server"]["modules"])
    # ARR's rule stays a rule, as written: the rewrite module routes it.
    assert data["rewrite"] == {
        "global_rules": [
            {
                "name": "ARR_app_loadbalance",
                "pattern": "*",
                "pattern_syntax": "wildcard",
                "action": {"type": "rewrite", "url": "http://app/{R:0}"},
                "stop_processing": True,
            }
        ]
    }
    # No mapping or [proxy] table of its own, and a global rule may route to
    # any farm: no allowed_farms.
    assert "handlers" not in data
    assert "proxy" not in data
    assert data["farms"]["app"] == {
        "algorithm": "request_hash",
        "hash_by": "header:X-Tenant",
        "affinity": True,
        "affinity_cookie": "Sticky",
        "members": [
            {"address": "http://127.0.0.1:8081", "weight": 100},
            {"address": "http://127.0.0.1:8082", "weight": 100},
        ],
        "health": {
            "url": "/hello",
            "interval": 5,
            "timeout": 2,
            "statuses": "200-299",
            "body_match": "Hello",
        },
    }
    assert (
        'converted: system.webServer/rewrite/globalRules/rule[name="ARR_app_loadbalance"]:'
        " [[rewrite.global_rules]] 'ARR_app_loadbalance', a route to [farms.app] (handler.proxy)"
    ) in out
    assert out.endswith("0 converted with a change of meaning, 0 not converted\n"), out


BY_HOST = """
        <rule name="by host">
          <match url="^(shop|api)/(.*)" />
          <conditions logicalGrouping="MatchAny">
            <add input="{HTTP_HOST}" pattern="^api\\." />
            <add input="{HTTP_X_TENANT}" pattern="^beta$" />
          </conditions>
          <serverVariables><set name="HTTP_X_VIA_RULE" value="{R:1}" /></serverVariables>
          <action type="Rewrite" url="http://APP/{R:2}" appendQueryString="false" />
        </rule>
        <rule name="elsewhere" stopProcessing="true">
          <match url="^ext/(.*)" />
          <action type="Rewrite" url="http://backend.example/{R:1}" />
        </rule>"""


def test_a_rule_with_conditions_and_any_pattern_converts_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = imported(
        tmp_path,
        (8081, 8082),
        "WeightedTotalTraffic",
        rules=ARR_RULE.replace("\n      </globalRules>", BY_HOST + "\n      </globalRules>"),
    )
    text = (conf / "applicationHost.config").read_text()
    text = text.replace(
        '<server address="127.0.0.1" enabled="true">',
        '<server address="10.0.0.9" enabled="false">',
        1,
    )
    (conf / "applicationHost.config").write_text(text)
    out, data = converted(capsys, conf)
    rule = data["rewrite"]["global_rules"][1]
    # Conditions, server variables, a pattern that is no catch-all, {R:n}, the
    # query string setting: all kept; the host written as the farm is named.
    assert rule == {
        "name": "by host",
        "pattern": "^(shop|api)/(.*)",
        "logical_grouping": "match_any",
        "conditions": [
            {"input": "{HTTP_HOST}", "pattern": "^api\\."},
            {"input": "{HTTP_X_TENANT}", "pattern": "^beta$"},
        ],
        "server_variables": [{"name": "HTTP_X_VIA_RULE", "value": "{R:1}", "replace": True}],
        "action": {"type": "rewrite", "url": "http://app/{R:2}", "append_query_string": False},
    }
    assert len(data["rewrite"]["global_rules"]) == 2
    # Without stopProcessing, IIS goes on to the next rule; a route does not.
    assert (
        'changed: system.webServer/rewrite/globalRules/rule[name="by host"]:'
        " [[rewrite.global_rules]] 'by host', a route to [farms.app] (handler.proxy);"
        " a route ends rule processing: no rule after it runs"
        " (IIS goes on to the next rule: stopProcessing is false)"
    ) in out
    # A host that is no web farm is a proxy to that host: not converted.
    assert (
        'not converted: system.webServer/rewrite/globalRules/rule[name="elsewhere"]:'
        " a rewrite to another host is a reverse proxy (ARR)"
    ) in out
    assert "algorithm 'WeightedTotalTraffic': no counterpart; weighted_round_robin" in out
    assert "10.0.0.9 is disabled: left out" in out
    assert data["farms"]["app"]["members"] == [{"address": "http://127.0.0.1:8082", "weight": 100}]


@pytest.mark.e2e
def test_the_imported_front_end_spreads_requests_over_the_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with upstream_node(tmp_path / "a") as a, upstream_node(tmp_path / "b") as b:
        balanced_over(tmp_path, (a.port, b.port), capsys)


def balanced_over(
    tmp_path: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    conf = imported(tmp_path, ports, affinity="true")
    _, cfg = converted(capsys, conf)
    with LiveServer(cfg, conf).start() as server, httpx.Client() as client:
        seen = []
        for _ in range(4):
            got = client.get(f"http://127.0.0.1:{server.port}/headers")
            assert got.status_code == 200, got.text
            seen.append(dict(got.json()["headers"])["host"])
            client.cookies.clear()
        assert set(seen) == {f"127.0.0.1:{p}" for p in ports}
        # The affinity cookie, named as in ARR, keeps a client on its member.
        first = client.get(f"http://127.0.0.1:{server.port}/headers")
        assert "Sticky" in first.cookies
        again = [
            dict(client.get(f"http://127.0.0.1:{server.port}/headers").json()["headers"])["host"]
            for _ in range(3)
        ]
        assert again == [dict(first.json()["headers"])["host"]] * 3


# A web.config's rules, below /api: {R:n} are of the path below the folder.
API_RULES = """<configuration><system.webServer><rewrite><rules>
  <rule name="v1" stopProcessing="true"><match url="^v1/(.*)" />
    <action type="Rewrite" url="http://App/{R:1}" /></rule>
  <rule name="fixed query" stopProcessing="true"><match url="^fixed/(.*)" />
    <action type="Rewrite" url="http://app/{R:1}?from=rule" appendQueryString="false" /></rule>
</rules></rewrite></system.webServer></configuration>"""


@pytest.mark.e2e
def test_a_web_config_rule_routes_below_its_folder_once_the_server_file_allows_its_farm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = tmp_path / "api"
    api.mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (api / "web.config").write_text(API_RULES)
    with upstream_node(tmp_path / "a") as a, upstream_node(tmp_path / "b") as b:
        conf = imported(tmp_path, (a.port, b.port), rules="")
        text = (conf / "applicationHost.config").read_text()
        (conf / "applicationHost.config").write_text(
            text.replace(
                "<bindings>",
                f'<application path="/api"><virtualDirectory path="/" physicalPath="{api}" />'
                "</application><bindings>",
                1,
            )
        )
        out, cfg = converted(capsys, conf, tmp_path)
        web = tomllib.loads((api / "web.toml").read_text())
        assert [r["action"] for r in web["rewrite"]["rules"]] == [
            {"type": "rewrite", "url": "http://app/{R:1}"},
            {"type": "rewrite", "url": "http://app/{R:1}?from=rule", "append_query_string": False},
        ]
        # Listed once for the two rules; the change of meaning said on each.
        assert cfg["rewrite"] == {"allowed_farms": ["app"]}
        assert {"rewrite", "handler.proxy"} <= set(cfg["server"]["modules"])
        allowed = (
            "rewrite.allowed_farms of the server file lists 'app': IIS lets any web.config"
            " rule route to any farm, Colonnade only to the farms the server file allows"
        )
        assert out.count(allowed) == 2, out
        assert 'api/web.config:2: changed: system.webServer/rewrite/rules/rule[name="v1"]' in out
        with LiveServer(cfg, conf).start() as server, httpx.Client() as client:
            front = f"http://127.0.0.1:{server.port}"
            got = client.get(f"{front}/api/v1/headers?x=1")
            assert got.status_code == 200, got.text
            seen = got.json()
            assert (seen["path"], seen["query"]) == ("/headers", "x=1")
            assert dict(seen["headers"])["x-original-url"] == "/api/v1/headers?x=1"
            fixed = client.get(f"{front}/api/fixed/headers?x=1").json()
            assert (fixed["path"], fixed["query"]) == ("/headers", "from=rule")


SECOND_FARM = """
        <rule name="ARR_api_loadbalance" stopProcessing="true">
          <match url="^api/(.*)" />
          <conditions><add input="{HTTP_X_TENANT}" pattern="^beta$" /></conditions>
          <action type="Rewrite" url="http://api/{R:0}" />
        </rule>"""

API_FARM = """
    <webFarm name="api">
      <server address="127.0.0.1"><applicationRequestRouting httpPort="{port}" /></server>
    </webFarm>
  </webFarms>"""


@pytest.mark.e2e
def test_two_farms_at_one_level_each_rule_routes_to_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b", "c/api"):
        (tmp_path / name).mkdir(parents=True)
    # The api farm's member: a static site, so its answer tells where it came from.
    (tmp_path / "c" / "api" / "where.txt").write_text("the api farm")
    static = {
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "c", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
    }
    with (
        upstream_node(tmp_path / "a") as a,
        upstream_node(tmp_path / "b") as b,
        LiveServer(static, tmp_path / "c").start() as c,
    ):
        # The api rule first, as ARR orders a subtree's farm before the catch-all.
        rules = ARR_RULE.replace("\n      <globalRules>", "\n      <globalRules>" + SECOND_FARM)
        conf = imported(tmp_path, (a.port, b.port), rules=rules)
        text = (conf / "applicationHost.config").read_text()
        text = text.replace("\n  </webFarms>", API_FARM.format(port=c.port), 1)
        (conf / "applicationHost.config").write_text(text)
        _, cfg = converted(capsys, conf)
        assert [r["action"]["url"] for r in cfg["rewrite"]["global_rules"]] == [
            "http://api/{R:0}",
            "http://app/{R:0}",
        ]
        with LiveServer(cfg, conf).start() as server, httpx.Client() as client:
            front = f"http://127.0.0.1:{server.port}"
            # ARR sends {R:0}: the member gets the whole path, /api/where.txt.
            beta = client.get(f"{front}/api/where.txt", headers={"X-Tenant": "beta"})
            # Without the condition's header the catch-all's farm takes it.
            other = client.get(f"{front}/api/where.txt")
            rest = {
                dict(client.get(f"{front}/headers").json()["headers"])["host"] for _ in range(4)
            }
        assert (beta.status_code, beta.text) == (200, "the api farm")
        assert other.status_code == 404
        assert rest == {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}


SERVER_RULES = """
      <rules>
        <rule name="to app" stopProcessing="true">
          <match url="^app/(.*)" />
          <action type="Rewrite" url="http://_app/{R:1}" />
        </rule>
      </rules>"""

LOCATION = """
  <location path="front/shop">
    <system.webServer><rewrite><rules>
      <rule name="shop" stopProcessing="true"><match url="(.*)" />
        <action type="Rewrite" url="http://_APP/shop/{R:1}" /></rule>
    </rules></rewrite></system.webServer>
  </location>
  <webFarms>"""


def test_rules_of_the_server_file_and_of_a_location_need_allowed_farms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = imported(tmp_path, (8081, 8082), rules=ARR_RULE + SERVER_RULES)
    text = (conf / "applicationHost.config").read_text()
    # A name Colonnade's farms cannot take as it is: the rule follows the rename.
    text = text.replace('<webFarm name="app"', '<webFarm name="_app"')
    text = text.replace("http://app/{R:0}", "http://_app/{R:0}")
    (conf / "applicationHost.config").write_text(text.replace("\n  <webFarms>", LOCATION, 1))
    out, cfg = converted(capsys, conf)
    assert cfg["rewrite"]["allowed_farms"] == ["app"]
    assert [r["action"]["url"] for r in cfg["rewrite"]["global_rules"]] == ["http://app/{R:0}"]
    assert [r["action"]["url"] for r in cfg["rewrite"]["rules"]] == ["http://app/{R:1}"]
    shop = next(loc for loc in cfg["locations"] if loc["path"] == "front/shop")
    assert shop["rewrite"]["rules"][0]["action"]["url"] == "http://app/shop/{R:1}"
    assert out.count("rewrite.allowed_farms of the server file lists 'app'") == 2, out


def test_https_to_a_farm_becomes_http_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # corpus/ms-arr: ARR's rules with SSL offloading off ({HTTPS} on → https://FARM/).
    folder = copy_entry("ms-arr", tmp_path)
    out, cfg = converted(capsys, folder)
    assert (
        "https://myServerFarm/ → http://myServerFarm/: the members are reached as their"
        " [farms] addresses say (plain HTTP), not over TLS"
    ) in out
    first = cfg["rewrite"]["global_rules"][0]
    assert first["conditions"] == [{"input": "{HTTPS}", "pattern": "On"}]
    assert first["action"] == {"type": "rewrite", "url": "http://myServerFarm/{R:0}"}


def test_a_negated_pattern_routing_its_captures_is_reported_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    negated = ARR_RULE.replace('<match url="*" />', '<match url="static/*" negate="true" />')
    conf = imported(tmp_path, (8081, 8082), rules=negated)
    out, cfg = converted(capsys, conf)
    assert (
        'not converted: system.webServer/rewrite/globalRules/rule[name="ARR_app_loadbalance"]:'
        " {R:n} of a negated pattern: it captures nothing (Colonnade refuses the rule)"
    ) in out
    assert "rewrite" not in cfg
