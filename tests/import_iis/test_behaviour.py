"""The imported configuration answers as IIS documents, request by request:
WordPress's and Laravel's front controllers reach index.php through
handler.fastcgi and a real php-cgi; request filtering, custom errors,
redirects and URL authorization imported from a web.config."""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonnade.testing.client import Client, build_engine
from tests.e2e.conftest import LiveServer
from tests.handlers.fastcgi.kit import request
from tests.handlers.fastcgi.php_kit import NEEDS_PHP, PHP_CGI
from tests.import_iis.kit import CORPUS, run

# applicationHost.config as a PHP host on IIS has it: PHP through FastCGI, the
# StaticFile mapping last.
APPHOST = r"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <application path="/">
          <virtualDirectory path="/" physicalPath="%SystemDrive%\inetpub\wwwroot" />
        </application>
        <bindings><binding protocol="http" bindingInformation="*:80:" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer>
    <defaultDocument><files><clear /><add value="index.php" /></files></defaultDocument>
    <fastCgi><application fullPath="C:\PHP\php-cgi.exe" maxInstances="2" /></fastCgi>
    <handlers>
      <add name="PHP_via_FastCGI" path="*.php" verb="*" modules="FastCgiModule"
           scriptProcessor="C:\PHP\php-cgi.exe" resourceType="Either" />
      <add name="StaticFile" path="*" verb="*" modules="StaticFileModule" resourceType="Either" />
    </handlers>
  </system.webServer>
</configuration>
"""

INDEX = (
    "<?php echo json_encode(['uri' => $_SERVER['REQUEST_URI'],"
    " 'script' => $_SERVER['SCRIPT_NAME'], 'get' => $_GET]);"
)


def imported_php_site(tmp_path: Path, corpus: str) -> tuple[dict[str, Any], Path]:
    """A content folder with ``corpus``'s web.config and index.php, imported with
    the applicationHost.config above; the server file as a dict, and its folder."""
    www = tmp_path / "www"
    (www / "assets").mkdir(parents=True)
    shutil.copy(CORPUS / corpus / "web.config", www / "web.config")
    (www / "index.php").write_text(INDEX)
    (www / "assets" / "site.css").write_text("body{}")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "applicationHost.config").write_text(APPHOST)
    assert PHP_CGI is not None
    code = run(
        [
            f"--path-map=C:\\inetpub\\wwwroot={www}",
            f"--path-map=C:\\PHP\\php-cgi.exe={PHP_CGI}",
            str(conf / "applicationHost.config"),
            str(www),
        ]
    )
    assert code == 0
    assert (www / "web.toml").exists()
    return tomllib.loads((conf / "colonnade.toml").read_text()), conf


@NEEDS_PHP
def test_wordpress_pretty_url_reaches_index_php(tmp_path: Path) -> None:
    cfg, conf = imported_php_site(tmp_path, "wordpress")
    with LiveServer(cfg, conf).start() as server:
        wire = request(server.port, "/2024/12/hello-world/?replytocom=5")
        assert wire.status == 200, wire.body
        assert json.loads(wire.body) == {
            "uri": "/2024/12/hello-world/?replytocom=5",
            "script": "/index.php",
            "get": {"replytocom": "5"},
        }
        # Files and folders are served as they are (the conditions).
        assert request(server.port, "/assets/site.css").body == b"body{}"
        # The folder has no index.php: not WordPress's to answer, and no listing.
        assert request(server.port, "/assets/").status == 403


@NEEDS_PHP
def test_laravel_front_controller_and_trailing_slash_redirect(tmp_path: Path) -> None:
    cfg, conf = imported_php_site(tmp_path, "laravel")
    with LiveServer(cfg, conf).start() as server:
        wire = request(server.port, "/users/42?tab=posts")
        assert wire.status == 200, wire.body
        assert json.loads(wire.body)["uri"] == "/users/42?tab=posts"
        assert json.loads(wire.body)["script"] == "/index.php"
        # "Imported Rule 1": a trailing slash on what is no folder → 301 without it.
        moved = request(server.port, "/users/42/")
        assert moved.status == 301
        assert moved.headers["location"].endswith("/users/42")
        # A real folder keeps its slash (and has no default document: 403.14).
        assert request(server.port, "/assets/").status == 403


WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <security>
      <requestFiltering>
        <requestLimits maxQueryString="64" />
        <fileExtensions><add fileExtension=".bak" allowed="false" /></fileExtensions>
        <verbs><add verb="TRACE" allowed="false" /></verbs>
        <hiddenSegments><add segment="private" /></hiddenSegments>
        <denyUrlSequences><add sequence=".." /></denyUrlSequences>
        <filteringRules>
          <filteringRule name="SQL injection" scanUrl="false" scanQueryString="true">
            <scanHeaders><add requestHeader="User-Agent" /></scanHeaders>
            <appliesTo><add fileExtension=".html" /></appliesTo>
            <denyStrings><add string="drop table" /><add string="@@version" /></denyStrings>
          </filteringRule>
        </filteringRules>
      </requestFiltering>
    </security>
    <httpErrors errorMode="Custom">
      <remove statusCode="404" subStatusCode="-1" />
      <error statusCode="404" path="/errors/404.html" responseMode="ExecuteURL" />
    </httpErrors>
    <httpRedirect enabled="true" httpResponseStatus="Permanent" exactDestination="true">
      <add wildcard="/old.html" destination="/new.html" />
    </httpRedirect>
  </system.webServer>
  <location path="admin">
    <system.webServer>
      <security>
        <authorization>
          <remove users="*" roles="" verbs="" />
          <add accessType="Allow" roles="admins" />
        </authorization>
      </security>
    </system.webServer>
  </location>
</configuration>
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    site = tmp_path / "site"
    for folder in ("errors", "private", "admin"):
        (site / folder).mkdir(parents=True)
    (site / "web.config").write_text(WEB_CONFIG)
    (site / "errors" / "404.html").write_text("<p>our own 404</p>")
    (site / "private" / "a.txt").write_text("secret")
    (site / "admin" / "index.html").write_text("admin")
    (site / "db.bak").write_text("backup")
    (site / "new.html").write_text("new")
    assert run([str(site)]) == 0
    cfg = tomllib.loads((site / "colonnade.toml").read_text())
    with Client(build_engine(cfg, base_dir=str(site))) as c:
        yield c


def test_request_filtering_answers_as_iis(client: Client) -> None:
    # Each refused request gets the custom 404 page (the 404 entry covers every
    # 404.x, errorMode Custom: for local clients too); the substatus is IIS's.
    for target, substatus in (("/db.bak", 7), ("/private/a.txt", 8), ("/x?" + "q" * 80, 15)):
        response = client.get(target)
        assert response.status == 404, target
        assert response.context.response.substatus == substatus, target
        assert response.text == "<p>our own 404</p>", target
    # The filtering rule: its strings, in the query or User-Agent of .html URLs → 404.19.
    for target, headers in (
        ("/new.html?q=DROP%20TABLE%20users", None),
        ("/new.html", {"user-agent": "x @@VERSION"}),
    ):
        refused = client.get(target, headers=headers)
        assert (refused.status, refused.context.response.substatus) == (404, 19), target
        assert refused.text == "<p>our own 404</p>"
    assert client.get("/new.html", headers={"referer": "@@version"}).text == "new"
    assert client.get("/new.txt?q=drop%20table").context.response.substatus == 0
    trace = client.request("TRACE", "/new.html")
    assert (trace.status, trace.context.response.substatus) == (404, 6)
    assert client.get("/new.html").text == "new"


def test_redirect_and_authorization(client: Client) -> None:
    moved = client.get("/old.html")
    assert moved.status == 301
    assert (moved.header("location") or "").endswith("/new.html")
    # The location's rules: the inherited "allow everyone" removed, admins only.
    assert client.get("/admin/index.html").status == 401
    assert client.get("/new.html").status == 200


def test_single_page_application_fallback(tmp_path: Path) -> None:
    # Vue Router's documented web.config: what is no file and no folder is
    # rewritten to "/", whose default document is the application's page.
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    shutil.copy(CORPUS / "vue-router" / "web.config", site / "web.config")
    (site / "index.html").write_text("<div id=app></div>")
    (site / "assets" / "app.js").write_text("boot()")
    assert run([str(site)]) == 0
    cfg = tomllib.loads((site / "colonnade.toml").read_text())
    with Client(build_engine(cfg, base_dir=str(site))) as c:
        for target in ("/", "/users/42", "/settings/profile?tab=2"):
            response = c.get(target)
            assert (response.status, response.text) == (200, "<div id=app></div>"), target
        assert c.get("/assets/app.js").text == "boot()"
        assert c.get("/web.config").status == 404  # hidden, as IIS hides it


OUTBOUND_WEB_CONFIG = """<configuration>
  <system.webServer>
    <httpRedirect enabled="true" httpResponseStatus="Permanent" exactDestination="true">
      <add wildcard="/old.html" destination="http://backend.internal/new.html" />
    </httpRedirect>
    <rewrite>
      <outboundRules>
        <rule name="Change Location Header">
          <match serverVariable="RESPONSE_LOCATION" pattern="^http://[^/]+/(.*)" />
          <conditions><add input="{RESPONSE_STATUS}" pattern="^301" /></conditions>
          <action type="Rewrite" value="http://{HTTP_HOST}/{R:1}" />
        </rule>
        <rule name="Add X-Frame-Options" preCondition="IsHTML">
          <match serverVariable="RESPONSE_X_Frame_Options" pattern=".*" />
          <action type="Rewrite" value="SAMEORIGIN" />
        </rule>
        <preConditions>
          <preCondition name="IsHTML">
            <add input="{RESPONSE_CONTENT_TYPE}" pattern="^text/html" />
          </preCondition>
        </preConditions>
      </outboundRules>
    </rewrite>
  </system.webServer>
</configuration>
"""


def test_imported_outbound_rules_rewrite_the_response_headers(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "web.config").write_text(OUTBOUND_WEB_CONFIG)
    (site / "new.html").write_text("<p>new</p>")
    (site / "a.txt").write_text("a")
    assert run([str(site)]) == 0
    cfg = tomllib.loads((site / "colonnade.toml").read_text())
    with Client(build_engine(cfg, base_dir=str(site))) as c:
        moved = c.get("/old.html", host="www.example.com")
        assert moved.status == 301
        assert moved.header("location") == "http://www.example.com/new.html"
        assert c.get("/new.html").header("x-frame-options") == "SAMEORIGIN"
        assert c.get("/a.txt").header("x-frame-options") is None  # not text/html
