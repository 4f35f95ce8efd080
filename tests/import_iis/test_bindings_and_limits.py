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
from tests.e2e.conftest import LiveServer, free_port
from tests.import_iis.kit import provide_certificates, run
from tests.support.tls import client_context, request

HTTPS_APPHOST = r"""<configuration>
  <system.applicationHost>
    <sites>
      <site name="shop" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="C:\www" /></application>
        <bindings>
          <binding protocol="http" bindingInformation="127.0.0.1:8080:" />
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


RUNTIME_APPHOST = r"""<configuration>
  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="C:\www" /></application>
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:8080:" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer>
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
