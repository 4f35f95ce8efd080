"""Bad input, --force, --strict, --path-map: each answered as the issue asks."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from colonnade.management.cli import main
from tests.import_iis.kit import run

WEB_CONFIG = """<?xml version="1.0"?>
<Configuration>
  <System.WebServer>
    <DefaultDocument><Files><Clear/><Add VALUE="index.php"/></Files></DefaultDocument>
    <aspNetCore processPath="dotnet" arguments=".\\app.dll" />
  </System.WebServer>
</Configuration>
"""


def write(folder: Path, text: str, name: str = "web.config") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


def test_names_are_matched_without_regard_to_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write(tmp_path / "site", WEB_CONFIG)
    assert run([str(site)]) == 0
    data = tomllib.loads((site / "web.toml").read_text())
    assert data["default_document"]["files"] == {"clear": True, "prepend": ["index.php"]}
    out = capsys.readouterr().out
    assert "web.config:5: not converted: System.WebServer/aspNetCore: ASP.NET Core module" in out


def test_strict_exits_1_when_something_was_not_converted(tmp_path: Path) -> None:
    site = write(tmp_path / "site", WEB_CONFIG)
    assert run(["--strict", str(site)]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "<configuration>\n<system.webServer>\n<rewrite>\n</configuration>",
            "web.config:4: malformed XML: mismatched tag",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;">]>\n'
            "<configuration>&lol2;</configuration>",
            "web.config:2: a document type declaration is refused",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE c SYSTEM "file:///etc/passwd">\n<configuration/>',
            "web.config:2: a document type declaration is refused",
        ),
        ("<html/>", "web.config:1: expected <configuration>, found <html>"),
    ],
)
def test_a_fatal_error_is_located_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    site = write(tmp_path / "site", text)
    write(site / "sub", WEB_CONFIG)  # a good file beside it is not written either
    assert run([str(site)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(os.listdir(site)) == ["sub", "web.config"]
    assert os.listdir(site / "sub") == ["web.config"]


def test_nothing_is_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write(tmp_path / "site", WEB_CONFIG)
    (site / "colonnade.toml").write_text("# mine\n")
    assert run([str(site)]) == 2
    assert "exists (--force to overwrite); nothing was written" in capsys.readouterr().err
    assert (site / "colonnade.toml").read_text() == "# mine\n"
    assert not (site / "web.toml").exists()
    assert run(["--force", str(site)]) == 0
    assert "[server]" in (site / "colonnade.toml").read_text()


APPHOST = r"""<configuration>
  <configProtectedData><providers/></configProtectedData>
  <system.applicationHost>
    <sites>
      <site name="shop" id="2">
        <application path="/">
          <virtualDirectory path="/" physicalPath="%SystemDrive%\inetpub\Shop" />
        </application>
        <application path="/api">
          <virtualDirectory path="/" physicalPath="E:\apps\api" />
        </application>
        <bindings><binding protocol="http" bindingInformation="*:8081:shop.example" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def test_windows_paths_are_mapped_or_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = tmp_path / "srv" / "Shop"
    shop.mkdir(parents=True)
    write(tmp_path / "conf", APPHOST, "applicationHost.config")
    code = run(
        [
            f"--path-map=C:\\inetpub={tmp_path}/srv",
            str(tmp_path / "conf" / "applicationHost.config"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    data = tomllib.loads((tmp_path / "conf" / "colonnade.toml").read_text())
    site = data["sites"][0]
    # %SystemDrive% expands to C:, matched without regard to case; the rest keeps its case.
    assert site["root"] == str(shop)
    assert site["bindings"] == ["http://0.0.0.0:8081"] and site["host_names"] == ["shop.example"]
    assert site["applications"] == [{"path": "/api", "root": "content/apps/api"}]
    assert (tmp_path / "conf" / "content" / "apps" / "api").is_dir()
    assert "E:\\apps\\api: no --path-map; written as content/apps/api" in out
    assert "applicationHost.config:2: not converted: configProtectedData: encrypted sections" in out
    assert run(["--strict", "--force", str(tmp_path / "conf" / "applicationHost.config")]) == 1


def test_a_bad_path_map_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = write(tmp_path / "site", WEB_CONFIG)
    assert run(["--path-map", "C:\\x", str(site)]) == 2
    assert "expected WINDOWS_PATH=POSIX_PATH" in capsys.readouterr().err


LOCKING = """<configuration>
  <configSections>
    <sectionGroup name="system.webServer">
      <section name="defaultDocument" overrideModeDefault="Deny" />
    </sectionGroup>
  </configSections>
  <system.webServer>
    <directoryBrowse enabled="false" lockAttributes="enabled" />
  </system.webServer>
  <location path="" overrideMode="Deny">
    <system.webServer>
      <security><requestFiltering allowDoubleEscaping="false" /></security>
    </system.webServer>
  </location>
</configuration>
"""


def test_locking_becomes_lock_entries_that_web_toml_files_meet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "conf", LOCKING, "applicationHost.config")
    site = write(
        tmp_path / "site",
        "<configuration><system.webServer><security>"
        '<ipSecurity allowUnlisted="true" />'
        "</security></system.webServer></configuration>",
    )
    assert run([str(tmp_path / "conf" / "applicationHost.config"), str(site)]) == 0
    out = capsys.readouterr().out
    data = tomllib.loads((tmp_path / "conf" / "colonnade.toml").read_text())
    assert data["lock"] == {
        "default_document": "deny",
        "directory_browse.enabled": "deny",
        "request_filtering": "deny",
        # Locked by default in Colonnade as in IIS: the web.config worked, so
        # its server had opened it.
        "ip_security": "allow",
    }
    assert "ip_security is locked by default (as in IIS); [lock]" in out
    # A web.toml that sets a locked section is refused by `colonnade check`.
    (site / "web.toml").write_text("[default_document]\nenabled = false\n")
    assert main(["check", "-c", str(tmp_path / "conf" / "colonnade.toml")]) == 2
    assert "default_document" in capsys.readouterr().err


def test_out_writes_the_tree_there_and_leaves_the_content_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = write(tmp_path / "site", WEB_CONFIG)
    write(site / "blog", WEB_CONFIG)
    out = tmp_path / "out"
    assert run(["--out", str(out), str(site)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.toml")) == [
        "blog/web.toml",
        "colonnade.toml",
        "web.toml",
    ]
    assert sorted(os.listdir(site)) == ["blog", "web.config"]
    capsys.readouterr()
    assert main(["check", "-c", str(out / "colonnade.toml")]) == 0, capsys.readouterr().err
    # The generated files say where each table came from.
    text = (out / "blog" / "web.toml").read_text()
    assert "# from blog/web.config:4 <System.WebServer/DefaultDocument>" in text


TWO_SITES = """<configuration>
  <system.applicationHost>
    <sites>
      <site name="first" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="{a}" /></application>
        <bindings>
          <binding protocol="http" bindingInformation="127.0.0.1:8080:a.example" />
        </bindings>
      </site>
      <site name="second" id="2">
        <application path="/"><virtualDirectory path="/" physicalPath="{b}" /></application>
        <application path="/shop"><virtualDirectory path="/" physicalPath="{shop}" /></application>
        <bindings>
          <binding protocol="http" bindingInformation="127.0.0.1:8080:b.example" />
        </bindings>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""
ADMIN_LOCATION = """<configuration>
  <location path="admin">
    <system.webServer><directoryBrowse enabled="true" /></system.webServer>
  </location>
</configuration>
"""


def test_a_web_config_belongs_to_the_site_whose_folder_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, shop = tmp_path / "a", tmp_path / "b", tmp_path / "apps" / "shop"
    for folder in (a, b, shop):
        write(folder, ADMIN_LOCATION)
    write(b / "blog", ADMIN_LOCATION)
    conf = write(
        tmp_path / "conf",
        TWO_SITES.format(a=a, b=b, shop=shop),
        "applicationHost.config",
    )
    assert run([str(conf / "applicationHost.config"), str(a), str(b), str(shop)]) == 0
    data = tomllib.loads((conf / "colonnade.toml").read_text())
    # Each file's locations follow its own site (the second site's, and its
    # application's, whose folder lies elsewhere), not the first site's.
    assert [loc["path"] for loc in data["locations"]] == [
        "first/admin",
        "second/admin",
        "second/blog/admin",
        "second/shop/admin",
    ]
    capsys.readouterr()
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err


POOL_DEFAULTS = """<configuration>
  <system.applicationHost>
    <applicationPools>
      <applicationPoolDefaults>
        <recycling><periodicRestart time="1.00:00:00" requests="5000">
          <schedule><add value="03:00:00" /></schedule>
        </periodicRestart></recycling>
        <failure rapidFailProtectionMaxCrashes="7" rapidFailProtectionInterval="00:10:00" />
      </applicationPoolDefaults>
      <add name="shop">
        <recycling><periodicRestart requests="100">
          <schedule><add value="15:00:00" /></schedule>
        </periodicRestart></recycling>
        <failure rapidFailProtectionMaxCrashes="3" />
      </add>
      <add name="blog">
        <recycling>
          <periodicRestart memory="1024"><schedule><clear /></schedule></periodicRestart>
        </recycling>
      </add>
    </applicationPools>
    <sites>
      <site name="main" id="1">
        <application path="/" applicationPool="shop">
          <virtualDirectory path="/" physicalPath="{root}" />
        </application>
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:8080:" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def test_a_pools_own_recycling_and_rapid_fail_merge_over_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write(tmp_path, POOL_DEFAULTS.format(root=tmp_path), "applicationHost.config")
    assert run([str(conf / "applicationHost.config")]) == 0
    pools = tomllib.loads((conf / "colonnade.toml").read_text())["pools"]
    # IIS inherits attribute by attribute: what the pool does not set is the
    # defaults'; schedule is a collection, added to unless cleared.
    assert pools["shop"]["recycling"] == {
        "time": 86400,
        "requests": 100,
        "schedule": ["03:00:00", "15:00:00"],
    }
    assert pools["shop"]["rapid_fail"] == {"max_crashes": 3, "interval": 600}
    assert pools["blog"]["recycling"] == {
        "time": 86400,
        "requests": 5000,
        "memory": 1024 * 1024,
        "schedule": [],
    }
    assert pools["blog"]["rapid_fail"] == {"max_crashes": 7, "interval": 600}
    capsys.readouterr()
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err
