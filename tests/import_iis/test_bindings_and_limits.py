"""https bindings (the certificate file the importer names, `check` and a live
handshake once it is there), serverRuntime, per-path overrideMode, the
lockAll*Except attributes and a second farm at one level."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import trustme

from colonnade.management.cli import main
from colonnade.testing.client import Client, build_engine
from tests.e2e.conftest import LiveServer
from tests.import_iis.kit import provide_certificates, run
from tests.support.ports import free_port
from tests.support.tls import client_context, request

HTTPS_APPHOST = r"""<configuration>
  <system.applicationHost>
    <sites>
      <site name="shop" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="C:\www" /></application>
        <bindings>
          <binding protocol="http" bindingInformation="127.0.0.1:8080:shop.example" />
          <binding protocol="https" bindingInformation="127.0.0.1:{https}:shop.example"
                   certificateHash="0123456789ABCDEF0123456789ABCDEF01234567"
                   certificateStoreName="WebHosting" sslFlags="1" />
        </bindings>
      </site>
      <site name="many" id="2">
        <application path="/"><virtualDirectory path="/" physicalPath="C:\www" /></application>
        <bindings>
          <binding protocol="https" bindingInformation="*:8443:a.example" sslFlags="3" />
          <binding protocol="https" bindingInformation="*:8443:b.example" sslFlags="3" />
        </bindings>
      </site>
      <site name="two pools" id="3">
        <application path="/"><virtualDirectory path="/" physicalPath="C:\www" /></application>
        <application path="/api" applicationPool="api">
          <virtualDirectory path="/" physicalPath="C:\www" />
        </application>
        <bindings>
          <binding protocol="http" bindingInformation="*:8081:" />
          <binding protocol="https" bindingInformation="*:8444:" />
        </bindings>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def import_https(tmp_path: Path, https: int = 8443) -> Path:
    """Import ``HTTPS_APPHOST`` (its first https binding on ``https``); the server file."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello over TLS")
    apphost = tmp_path / "applicationHost.config"
    apphost.write_text(HTTPS_APPHOST.replace("{https}", str(https)))
    assert run([f"--path-map=C:\\www={www}", "--cert-dir=tls", str(apphost)]) == 0
    return tmp_path / "colonnade.toml"


def test_https_bindings_are_written_with_the_certificate_file_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server_file = import_https(tmp_path)
    out = capsys.readouterr().out
    server = tomllib.loads(server_file.read_text())
    shop, many, two = server["sites"]
    assert shop["bindings"] == ["http://127.0.0.1:8080", "https://127.0.0.1:8443"]
    assert shop["host_names"] == ["shop.example"]
    assert shop["tls"] == {"certificate": "tls/shop.example.pem"}
    # Several names (and IIS's Centralized Certificate Store): a folder, by SNI name.
    assert many["bindings"] == ["https://0.0.0.0:8443"]
    assert many["tls"] == {"certificate_store": "tls"}
    # Two pools cannot share a TLS port in Colonnade: the http binding stays alone.
    assert two["bindings"] == ["http://0.0.0.0:8081"] and "tls" not in two
    assert (
        'changed: system.applicationHost/sites/site[name="shop"]/bindings/binding:'
        " https://127.0.0.1:8443 (host shop.example), [sites.tls]: certificate file must be"
        " provided: export certificate 0123456789ABCDEF0123456789ABCDEF01234567 in store"
        " WebHosting with its key as PEM to tls/shop.example.pem"
    ) in out
    assert "tls/HOST.pem for each host name (a.example, b.example)" in out
    assert "the site's applications run in the pools api, default" in out
    # `check` refuses the configuration until the file is there, then accepts it.
    assert main(["check", "-c", str(server_file)]) == 2
    assert "tls/shop.example.pem" in capsys.readouterr().err
    provide_certificates(server_file)
    assert main(["check", "-c", str(server_file)]) == 0, capsys.readouterr().err


def test_the_imported_https_binding_serves_once_the_certificate_is_there(tmp_path: Path) -> None:
    port = free_port()
    server_file = import_https(tmp_path, https=port)
    ca = trustme.CA()
    provide_certificates(server_file, ca)
    config = tomllib.loads(server_file.read_text())
    config["sites"] = config["sites"][:1]  # the other sites' ports are fixed ones
    config["sites"][0]["bindings"] = [f"https://127.0.0.1:{port}"]
    with LiveServer(config, tmp_path, port=port).start() as server:
        head, body = request(server.port, "shop.example", client_context(ca))
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"hello over TLS"


def one_site(name: str) -> str:
    """The start of an applicationHost.config: one site ``name`` serving C:\\www."""
    return (
        "<configuration><system.applicationHost><sites>"
        f'<site name="{name}" id="1"><application path="/">'
        '<virtualDirectory path="/" physicalPath="C:\\www" /></application>'
        '<bindings><binding protocol="http" bindingInformation="127.0.0.1:8080:" /></bindings>'
        "</site></sites></system.applicationHost>\n"
    )


RUNTIME_APPHOST = (
    one_site("Default Web Site")
    + r"""  <system.webServer>
    <serverRuntime maxRequestEntityAllowed="1048576" uploadReadAheadSize="49152"
                   enableNagling="false" />
    <security><requestFiltering><requestLimits maxUrl="2048" /></requestFiltering></security>
  </system.webServer>
  <location path="Default Web Site">
    <system.webServer>
      <serverRuntime enabled="true" frequentHitThreshold="5" frequentHitTimePeriod="00:00:20" />
    </system.webServer>
  </location>
</configuration>
"""
)


def test_server_runtime_lowers_the_body_limit_and_reports_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_text("a")
    (tmp_path / "applicationHost.config").write_text(RUNTIME_APPHOST)
    assert run([f"--path-map=C:\\www={www}", str(tmp_path / "applicationHost.config")]) == 0
    out = capsys.readouterr().out
    config = tomllib.loads((tmp_path / "colonnade.toml").read_text())
    # Read after requestFiltering, whatever the order: the lower of the two limits.
    assert config["request_filtering"]["max_allowed_content_length"] == 1048576
    assert config["request_filtering"]["max_url"] == 2048
    for line in (
        "changed: system.webServer/serverRuntime: maxRequestEntityAllowed 1048576:"
        " request_filtering.max_allowed_content_length (the lower of IIS's two body limits),"
        " answered 413.1;"
        " enableNagling=false: as Colonnade (TCP_NODELAY)",
        "not converted: system.webServer/serverRuntime: uploadReadAheadSize=49152: bodies",
        'not converted: location[path="Default Web Site"]/system.webServer/serverRuntime:'
        " frequentHitThreshold=5: the output cache stores a response from its first hit",
    ):
        assert line in out
    with Client(build_engine(config, base_dir=str(tmp_path))) as client:
        big = client.request("POST", "/a.txt", headers={"content-length": "1048577"})
        assert (big.status, big.context.response.substatus) == (413, 1)
        assert client.request("GET", "/a.txt").status == 200


LOCKS_APPHOST = (
    one_site("main")
    + r"""  <system.webServer>
    <httpErrors errorMode="DetailedLocalOnly" lockAllAttributesExcept="errorMode" />
    <security>
      <requestFiltering lockAllElementsExcept="fileExtensions,verbs,noSuchElement" />
    </security>
  </system.webServer>
  <location path="main/private" overrideMode="Deny">
    <system.webServer>
      <defaultDocument enabled="false" />
      <directoryBrowse enabled="false" />
    </system.webServer>
  </location>
  <location path="main/open" overrideMode="Allow">
    <system.webServer><security><ipSecurity allowUnlisted="true" /></security></system.webServer>
  </location>
</configuration>
"""
)


def test_per_path_override_mode_and_lock_all_except(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "web.config").write_text(
        '<configuration><system.webServer><directoryBrowse enabled="true" />'
        "</system.webServer></configuration>"
    )
    (tmp_path / "applicationHost.config").write_text(LOCKS_APPHOST)
    assert (
        run([f"--path-map=C:\\www={www}", str(tmp_path / "applicationHost.config"), str(www)]) == 0
    )
    out = capsys.readouterr().out
    server_file = tmp_path / "colonnade.toml"
    lock = tomllib.loads(server_file.read_text())["lock"]
    # Deny for one path: server-wide where no imported web.config sets the section.
    assert lock["default_document"] == "deny"
    assert "directory_browse" not in lock
    assert "[lock] is server-wide, and web.config:1 sets directory_browse" in out
    # Allow for one path of a section locked by default: it stays locked.
    assert "ip_security" not in lock
    assert "overrideMode Allow for main/open: ip_security stays locked" in out
    # lockAllAttributesExcept: every setting but errorMode; the lists stay open.
    assert lock["custom_errors.existing_response"] == "deny"
    assert "custom_errors.error_mode" not in lock and "custom_errors.errors" not in lock
    # lockAllElementsExcept: every table and list but those named; settings stay open.
    assert lock["request_filtering.hidden_segments"] == "deny"
    assert lock["request_filtering.filtering_rules"] == "deny"
    for open_key in ("file_extensions", "verbs", "max_url"):
        assert f"request_filtering.{open_key}" not in lock
    assert "noSuchElement: no such key in request_filtering" in out
    assert main(["check", "-c", str(server_file)]) == 0, capsys.readouterr().err
    # What web.toml files meet: the open keys pass, the locked ones are refused.
    (www / "web.toml").write_text('[custom_errors]\nerror_mode = "custom"\n')
    assert main(["check", "-c", str(server_file)]) == 0, capsys.readouterr().err
    for text in (
        '[custom_errors]\nexisting_response = "replace"\n',
        '[request_filtering]\nhidden_segments = ["x"]\n',
        "[default_document]\nenabled = true\n",
    ):
        (www / "web.toml").write_text(text)
        assert main(["check", "-c", str(server_file)]) == 2, text
        capsys.readouterr()


def test_an_outbound_rule_on_the_server_header_becomes_server_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (tmp_path / "applicationHost.config").write_text(
        one_site("main") + "<system.webServer><rewrite><outboundRules>"
        '<rule name="Remove Server header"><match serverVariable="RESPONSE_Server" pattern=".+" />'
        '<action type="Rewrite" value="" /></rule>'
        "</outboundRules></rewrite></system.webServer></configuration>"
    )
    assert run([f"--path-map=C:\\www={www}", str(tmp_path / "applicationHost.config")]) == 0
    assert "[server] server_header = '': every response of every site" in capsys.readouterr().out
    config = tomllib.loads((tmp_path / "colonnade.toml").read_text())
    assert config["server"]["server_header"] == ""
    assert "outbound_rules" not in config.get("rewrite", {})
    assert main(["check", "-c", str(tmp_path / "colonnade.toml")]) == 0
