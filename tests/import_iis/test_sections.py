"""Every converter on one applicationHost.config and a web.config tree: the
values written are IIS's meaning in Colonnade's keys, and `check` accepts them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from colonnade.management.cli import main
from tests.import_iis.kit import run

APPHOST = r"""<configuration>
  <system.applicationHost>
    <sites>
      <site name="main" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="C:\www" /></application>
        <application path="/shop" applicationPool="shop">
          <virtualDirectory path="/" physicalPath="C:\www\shop" />
        </application>
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:8080:" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer>
    <rewrite>
      <allowedServerVariables><add name="HTTP_X_ORIGINAL_HOST" /></allowedServerVariables>
      <globalRules>
        <rule name="canonical host" stopProcessing="true">
          <match url="(.*)" />
          <conditions><add input="{HTTP_HOST}" pattern="^example\.com$" /></conditions>
          <action type="Redirect" url="https://www.example.com/{R:1}" redirectType="Found" />
        </rule>
        <rule name="to a backend">
          <match url="^api/(.*)" />
          <action type="Rewrite" url="http://10.0.0.5/{R:1}" />
        </rule>
      </globalRules>
    </rewrite>
    <httpCompression minFileSizeForComp="1024" noCompressionForHttp10="false">
      <scheme name="gzip" dll="%Windir%\system32\inetsrv\gzip.dll" />
      <staticTypes>
        <add mimeType="text/*" enabled="true" />
        <add mimeType="image/svg+xml" enabled="true" />
        <add mimeType="*/*" enabled="false" />
      </staticTypes>
    </httpCompression>
    <urlCompression doDynamicCompression="true" />
    <httpLogging dontLog="false" selectiveLogging="LogError" />
    <caching enabled="true" maxResponseSize="131072">
      <profiles>
        <add extension=".html" policy="CacheForTimePeriod" duration="00:10:00"
             varyByQueryString="page" />
        <add extension=".php" policy="DontCache" kernelCachePolicy="DontCache" />
      </profiles>
    </caching>
    <security>
      <access sslFlags="Ssl, Ssl128" />
      <ipSecurity allowUnlisted="true" denyAction="NotFound">
        <add ipAddress="192.0.2.0" subnetMask="255.255.255.0" allowed="false" />
        <add ipAddress="198.51.100.7" />
      </ipSecurity>
      <dynamicIpSecurity denyAction="Forbidden">
        <denyByConcurrentRequests enabled="true" maxConcurrentRequests="10" />
        <denyByRequestRate enabled="true" maxRequests="50" requestIntervalInMilliseconds="1000" />
      </dynamicIpSecurity>
      <authentication>
        <basicAuthentication enabled="true" realm="Members" />
      </authentication>
    </security>
  </system.webServer>
</configuration>
"""

ROOT_WEB_CONFIG = """<configuration>
  <system.webServer>
    <staticContent>
      <remove fileExtension=".json" />
      <mimeMap fileExtension=".JSON" mimeType="application/json; charset=utf-8" />
      <clientCache cacheControlMode="UseMaxAge" cacheControlMaxAge="01:00:00"
                   cacheControlCustom="public" />
    </staticContent>
    <directoryBrowse enabled="true" showFlags="Date, Size" />
    <httpProtocol>
      <customHeaders>
        <remove name="X-Powered-By" />
        <add name="X-Frame-Options" value="SAMEORIGIN" />
      </customHeaders>
    </httpProtocol>
    <rewrite>
      <rewriteMaps>
        <rewriteMap name="legacy" defaultValue="">
          <add key="/old-page.asp" value="/page.html" />
        </rewriteMap>
      </rewriteMaps>
      <rules>
        <rule name="legacy pages" stopProcessing="true">
          <match url=".*" />
          <conditions><add input="{legacy:{REQUEST_URI}}" pattern="(.+)" /></conditions>
          <serverVariables><set name="HTTP_X_ORIGINAL_HOST" value="{HTTP_HOST}" /></serverVariables>
          <action type="Redirect" url="{C:1}" appendQueryString="false" />
        </rule>
      </rules>
      <outboundRules>
        <remove name="inherited" />
        <rule name="x"><match serverVariable="RESPONSE_Server" pattern=".*" /></rule>
        <rule name="hsts" preCondition="secure">
          <match serverVariable="RESPONSE_Strict_Transport_Security" pattern=".*" />
          <conditions><add input="{HTTPS}" pattern="on" ignoreCase="true" /></conditions>
          <action type="Rewrite" value="max-age=31536000" />
        </rule>
        <rule name="links" preCondition="secure">
          <match filterByTags="A" pattern="^http://(.*)$" />
          <action type="Rewrite" value="https://{R:1}" />
        </rule>
        <preConditions>
          <preCondition name="secure" logicalGrouping="MatchAny">
            <add input="{RESPONSE_CONTENT_TYPE}" pattern="^text/html" />
          </preCondition>
        </preConditions>
      </outboundRules>
    </rewrite>
    <security>
      <ipSecurity allowUnlisted="false" />
      <requestFiltering allowDoubleEscaping="true">
        <requestLimits maxAllowedContentLength="1048576" maxUrl="2048">
          <headerLimits><add header="Content-Type" sizeLimit="100" /></headerLimits>
        </requestLimits>
        <filteringRules>
          <filteringRule name="no sql" scanUrl="true" scanAllRaw="true"
                         denyUnescapedPercent="true">
            <denyStrings><add string="--" /></denyStrings>
          </filteringRule>
          <remove name="inherited" />
        </filteringRules>
      </requestFiltering>
    </security>
  </system.webServer>
</configuration>
"""

SUB_WEB_CONFIG = """<configuration>
  <system.webServer>
    <handlers><add name="php" path="*.php" verb="*" modules="FastCgiModule"
                   scriptProcessor="C:\\php\\php-cgi.exe" /></handlers>
    <httpRedirect enabled="false" />
  </system.webServer>
</configuration>
"""


@pytest.fixture
def imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Any, Any, Any, str]:
    www = tmp_path / "www"
    (www / "shop" / "media").mkdir(parents=True)
    (www / "web.config").write_text(ROOT_WEB_CONFIG)
    (www / "shop" / "media" / "web.config").write_text(SUB_WEB_CONFIG)
    (tmp_path / "applicationHost.config").write_text(APPHOST)
    code = run([f"--path-map=C:\\www={www}", str(tmp_path / "applicationHost.config"), str(www)])
    assert code == 0
    out = capsys.readouterr().out
    assert main(["check", "-c", str(tmp_path / "colonnade.toml")]) == 0, capsys.readouterr().err
    server = tomllib.loads((tmp_path / "colonnade.toml").read_text())
    root = tomllib.loads((www / "web.toml").read_text())
    # Nothing there that Colonnade needs: the mapping is refused below the
    # application's root, and redirects are off where no level uses them.
    assert not (www / "shop" / "media" / "web.toml").exists()
    return server, root, None, out


def test_server_sections(imported: tuple[Any, Any, Any, str]) -> None:
    server, _, _, out = imported
    assert server["sites"][0]["applications"] == [
        {"path": "/shop", "root": server["sites"][0]["root"] + "/shop", "pool": "shop"}
    ]
    assert server["rewrite"]["allowed_server_variables"] == ["HTTP_X_ORIGINAL_HOST"]
    [canonical] = server["rewrite"]["global_rules"]  # the proxy rule is not converted
    assert canonical["action"] == {
        "type": "redirect",
        "url": "https://www.example.com/{R:1}",
        "redirect_type": "Found",
    }
    assert "a rewrite to another host is a reverse proxy (ARR)" in out
    assert server["compression"] == {
        "min_size": 1024,
        "no_compression_for_http10": False,
        "mime_types": ["text/*", "image/svg+xml"],
        "dynamic": True,
    }
    assert server["http_logging"] == {"enabled": True, "selective": "error"}
    assert server["ssl_settings"] == {"require_ssl": True}
    assert "Ssl128: every cipher Colonnade offers is 128-bit or stronger" in out
    assert server["output_cache"]["max_response_size"] == 131072
    assert server["output_cache"]["profiles"] == [
        {
            "extension": ".html",
            "policy": "for_time_period",
            "duration": 600.0,
            "vary_by_query_string": ["page"],
            "response_cache": False,  # no kernelCachePolicy: IIS's DontCache
        },
        {"extension": ".php", "policy": "dont_cache"},
    ]
    assert server["ip_security"] == {
        "allow_unlisted": True,
        "deny_action": "NotFound",
        "rules": {
            "add": [
                {"address": "192.0.2.0/255.255.255.0", "allowed": False},
                {"address": "198.51.100.7", "allowed": False},
            ]
        },
    }
    assert server["dynamic_ip_security"] == {
        "deny_action": "Forbidden",
        "deny_by_concurrent_requests": True,
        "max_concurrent_requests": 10,
        "deny_by_request_rate": True,
        "max_requests": 50,
        "interval": 1.0,
    }
    # Windows accounts have no counterpart chosen for the administrator: off, fails closed.
    assert server["basic_authentication"] == {"enabled": False, "realm": "Members"}
    assert "Windows accounts: written off; set basic_authentication.user_file" in out
    # ipSecurity is locked by default (as in IIS): the web.config's use opens it.
    assert server["lock"] == {"ip_security": "allow"}
    # A mapping below the application's root is refused; the fastcgi program is known.
    assert "handlers" not in server or all(h["path"] == "*" for h in server["handlers"])


def test_web_config_sections(imported: tuple[Any, Any, Any, str]) -> None:
    _, root, sub, out = imported
    assert root["static_content"] == {
        "cache_control": "max-age",
        "max_age": 3600,
        "cache_control_custom": "public",
        "mime_map": {".json": "application/json; charset=utf-8"},
    }
    assert root["directory_browse"] == {"enabled": True, "show_size": True, "show_modified": True}
    assert root["custom_headers"] == {
        "add": {"remove": ["X-Powered-By"], "add": {"X-Frame-Options": "SAMEORIGIN"}}
    }
    assert root["rewrite"]["maps"]["legacy"] == {
        "default": "",
        "entries": {"/old-page.asp": "/page.html"},
    }
    [rule] = root["rewrite"]["rules"]
    assert rule["server_variables"] == [
        {"name": "HTTP_X_ORIGINAL_HOST", "value": "{HTTP_HOST}", "replace": True}
    ]
    assert rule["action"] == {
        "type": "redirect",
        "url": "{C:1}",
        "append_query_string": False,
        "redirect_type": "Permanent",
    }
    # IIS's outbound rules are the parent's, then the child's: added to the inherited.
    assert root["rewrite"]["outbound_rules"] == {
        "remove": [{"name": "inherited"}],
        "add": [
            {
                "name": "hsts",
                "server_variable": "RESPONSE_Strict_Transport_Security",
                "pattern": ".*",
                "precondition": "secure",
                "conditions": [{"input": "{HTTPS}", "pattern": "on"}],
                "action": {"type": "rewrite", "value": "max-age=31536000"},
            }
        ],
    }
    assert root["rewrite"]["preconditions"] == {
        "secure": {
            "logical_grouping": "match_any",
            "conditions": [{"input": "{RESPONSE_CONTENT_TYPE}", "pattern": "^text/html"}],
        }
    }
    assert root["request_filtering"] == {
        "allow_double_escaping": True,
        "max_allowed_content_length": 1048576,
        "max_url": 2048,
        "header_limits": {"add": {"Content-Type": 100}},
        "filtering_rules": {
            "remove": [{"name": "inherited"}],
            "add": [{"name": "no sql", "scan_url": True, "deny_strings": ["--"]}],
        },
    }
    assert root["ip_security"] == {"allow_unlisted": False}
    assert sub is None
    assert "shop/media/web.config:5: converted: system.webServer/httpRedirect" in out
    for line in (
        'web.config:32: not converted: system.webServer/rewrite/outboundRules/rule[name="x"]:'
        " an outbound rule needs <match> and <action>",
        'web.config:38: not converted: system.webServer/rewrite/outboundRules/rule[name="links"]:'
        " an outbound rule on the response body (filterByTags): no counterpart",
        "web.config:56: changed: system.webServer/security/requestFiltering/filteringRules/"
        'filteringRule[name="no sql"]: scanAllRaw: only the headers named in scanHeaders'
        " are scanned; denyUnescapedPercent: a '%' that starts no escape is not refused",
        "shop/media/web.config:3: not converted: system.webServer/handlers: handler mappings"
        " below an application's root",
    ):
        assert line in out
