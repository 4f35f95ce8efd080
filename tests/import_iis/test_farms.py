"""ARR web farms and the rewrite rule that sends a site to one become
``[farms.NAME]`` and a ``handler.proxy`` mapping; the imported front end
spreads requests over real members."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx
import pytest

from colonnade.management.cli import main
from tests.e2e.conftest import LiveServer
from tests.handlers.proxy.kit import upstream_node
from tests.import_iis.kit import copy_entry, run

# What IIS Manager writes for a farm (the rule is ARR's own, in globalRules);
# webFarms comes after system.webServer, as in applicationHost.config.
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
    <rewrite>
      <globalRules>
        <rule name="ARR_app_loadbalance" patternSyntax="Wildcard" stopProcessing="true">
          <match url="*" />
          <conditions />
          <action type="Rewrite" url="http://app/{{R:0}}" />
        </rule>
      </globalRules>
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
    )
    (conf / "applicationHost.config").write_text(text)
    return conf


def test_a_web_farm_and_its_rule_become_a_farm_and_a_proxy_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = imported(tmp_path, (8081, 8082), "RequestHash", "HTTP_X_TENANT", "true")
    assert run([str(conf / "applicationHost.config")]) == 0
    out = capsys.readouterr().out
    data = tomllib.loads((conf / "colonnade.toml").read_text())
    assert "handler.proxy" in data["server"]["modules"]
    assert data["handlers"] == [
        {"path": "*", "handler": "handler.proxy", "name": "ARR_app_loadbalance"}
    ]
    assert data["proxy"] == {"farm": "app"}
    assert "rewrite" not in data or "global_rules" not in data["rewrite"]
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
    assert "converted: system.webServer/rewrite/globalRules/rule" in out
    assert "[[handlers]] * → handler.proxy, [proxy] farm = 'app'" in out
    assert out.endswith("0 converted with a change of meaning, 0 not converted\n"), out
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err


def test_what_does_not_map_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = imported(tmp_path, (8081, 8082), "WeightedTotalTraffic")
    text = (conf / "applicationHost.config").read_text()
    # A second rule after it, and a rule with a condition (not a mapping).
    text = text.replace(
        "</globalRules>",
        """  <rule name="by host">
          <match url="(.*)" />
          <conditions><add input="{HTTP_HOST}" pattern="^api\\." /></conditions>
          <action type="Rewrite" url="http://app/{R:0}" />
        </rule>
      </globalRules>""",
    )
    text = text.replace(
        '<server address="127.0.0.1" enabled="true">',
        '<server address="10.0.0.9" enabled="false">',
        1,
    )
    (conf / "applicationHost.config").write_text(text)
    assert run([str(conf / "applicationHost.config")]) == 0
    out = capsys.readouterr().out
    assert 'changed: system.webServer/rewrite/globalRules/rule[name="ARR_app_loadbalance"]' in out
    assert "the rules after it still run for these URLs" in out
    assert 'rule[name="by host"]: a rewrite to farm app under conditions' in out
    assert "algorithm 'WeightedTotalTraffic': no counterpart; weighted_round_robin" in out
    assert "10.0.0.9 is disabled: left out" in out
    data = tomllib.loads((conf / "colonnade.toml").read_text())
    assert data["farms"]["app"]["members"] == [{"address": "http://127.0.0.1:8082", "weight": 100}]
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err


@pytest.mark.e2e
def test_the_imported_front_end_spreads_requests_over_the_members(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with upstream_node(tmp_path / "a") as a, upstream_node(tmp_path / "b") as b:
        balanced_over(tmp_path, (a.port, b.port))


def balanced_over(tmp_path: Path, ports: tuple[int, int]) -> None:
    conf = imported(tmp_path, ports, affinity="true")
    assert run([str(conf / "applicationHost.config")]) == 0
    cfg = tomllib.loads((conf / "colonnade.toml").read_text())
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


def test_a_farm_rule_in_a_web_config_maps_its_own_subtree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = tmp_path / "api"
    api.mkdir()
    conf = imported(tmp_path, (8081, 8082))
    text = (conf / "applicationHost.config").read_text()
    (conf / "applicationHost.config").write_text(
        text.replace(
            "<bindings>",
            f'<application path="/api"><virtualDirectory path="/" physicalPath="{api}" />'
            "</application><bindings>",
            1,
        )
    )
    (api / "web.config").write_text(
        "<configuration><system.webServer><rewrite><rules>"
        '<rule name="v1"><match url="^v1/(.*)" />'
        '<action type="Rewrite" url="http://app/{R:0}" /></rule>'
        "</rules></rewrite></system.webServer></configuration>"
    )
    assert run([str(conf / "applicationHost.config"), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    web = tomllib.loads((api / "web.toml").read_text())
    # The pattern saw the path below /api; a handler path is the whole URL.
    assert web["handlers"] == [{"path": "/api/v1/*", "handler": "handler.proxy", "name": "v1"}]
    assert web["proxy"] == {"farm": "app"}
    assert "the farm gets the whole URL (ARR sends {R:0}, the path below this folder)" in out
    data = tomllib.loads((conf / "colonnade.toml").read_text())
    assert data["lock"] == {"proxy": "allow"}
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err


SECOND_FARM = """
        <rule name="ARR_api_loadbalance" stopProcessing="true">
          <match url="^api/(.*)" />
          <action type="Rewrite" url="http://api/{{R:0}}" />
        </rule>
      </globalRules>"""

API_FARM = """
    <webFarm name="api">
      <server address="127.0.0.1"><applicationRequestRouting httpPort="{port}" /></server>
    </webFarm>
  </webFarms>"""


@pytest.mark.e2e
def test_a_second_farm_at_one_level_gets_its_subtree(
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
        conf = imported(tmp_path, (a.port, b.port))
        text = (conf / "applicationHost.config").read_text()
        text = text.replace("\n      </globalRules>", SECOND_FARM.format(), 1)
        text = text.replace("\n  </webFarms>", API_FARM.format(port=c.port), 1)
        (conf / "applicationHost.config").write_text(text)
        assert run([str(conf / "applicationHost.config")]) == 0
        out = capsys.readouterr().out
        assert (
            "[[handlers]] /api/* → handler.proxy, [proxy] farm = 'api'"
            ' in [[locations]] path "/api" (a second farm at this level)'
        ) in out
        cfg = tomllib.loads((conf / "colonnade.toml").read_text())
        assert cfg["proxy"] == {"farm": "app"}
        assert cfg["locations"] == [{"path": "/api", "proxy": {"farm": "api"}}]
        assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err
        with LiveServer(cfg, conf).start() as server, httpx.Client() as client:
            front = f"http://127.0.0.1:{server.port}"
            # ARR sends {R:0}: the member gets the whole path, /api/where.txt.
            api = client.get(f"{front}/api/where.txt").text
            rest = {
                dict(client.get(f"{front}/headers").json()["headers"])["host"] for _ in range(4)
            }
        assert api == "the api farm"
        assert rest == {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}


def test_a_catch_all_farm_after_a_subtrees_farm_takes_the_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # corpus/ms-more: ^api/(.*) → apiFarm, then * → contosoFarm (ARR's rules, in order).
    folder = copy_entry("ms-more", tmp_path)
    assert run([str(folder / "applicationHost.config")]) == 0
    assert "(farm 'apiFarm' moves to [[locations]] '/api')" in capsys.readouterr().out
    cfg = tomllib.loads((folder / "colonnade.toml").read_text())
    assert cfg["proxy"] == {"farm": "contosoFarm"}
    assert {"path": "/api", "proxy": {"farm": "apiFarm"}} in cfg["locations"]
    assert [h["path"] for h in cfg["handlers"] if h["handler"] == "handler.proxy"] == [
        "*",
        "/api/*",
    ]
