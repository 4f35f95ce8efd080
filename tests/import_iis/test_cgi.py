"""CGI handler mappings, system.webServer/cgi and isapiCgiRestriction become
``handler.cgi`` with ``[cgi]``; the imported site runs the listed script and
answers 404.2 for one off the list, as IIS does."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from colonnade.management.cli import main
from colonnade.testing import Client, build_engine
from tests.import_iis.kit import run

APPHOST = r"""<configuration>
  <system.applicationHost>
    <sites>
      <site name="main" id="1">
        <application path="/">
          <virtualDirectory path="/" physicalPath="C:\inetpub\wwwroot" />
        </application>
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:8080:" /></bindings>
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer>
    <cgi timeout="00:01:30" createProcessAsUser="true" />
    <handlers>
      <add name="CGI-sh" path="*.cgi" verb="GET,HEAD,POST" modules="CgiModule"
           resourceType="File" allowPathInfo="true" />
      <add name="Perl" path="*.pl" verb="*" modules="CgiModule"
           scriptProcessor="C:\Perl\bin\perl.exe &quot;%s&quot; %s" resourceType="File" />
    </handlers>
    <security>
      <isapiCgiRestriction notListedIsapisAllowed="false" notListedCgisAllowed="false">
        <add path="%windir%\Microsoft.NET\Framework64\v4.0.30319\aspnet_isapi.dll"
             allowed="true" groupId="ASP.NET v4.0.30319" description="ASP.NET v4.0.30319" />
        <add path="C:\inetpub\wwwroot\hello.cgi" allowed="true" />
        <add path="C:\inetpub\wwwroot\old.cgi" allowed="false" />
        <add path="C:\Perl\bin\perl.exe &quot;%s&quot; %s" allowed="true" />
      </isapiCgiRestriction>
    </security>
  </system.webServer>
</configuration>
"""
SCRIPT = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s' \"$QUERY_STRING\"\n"


def test_cgi_mappings_and_the_restriction_list_become_handler_cgi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(os.path.realpath(tmp_path))
    www = root / "www"
    www.mkdir()
    for name in ("hello.cgi", "old.cgi"):
        (www / name).write_text(SCRIPT)
        (www / name).chmod(0o755)
    conf = root / "conf"
    conf.mkdir()
    (conf / "applicationHost.config").write_text(APPHOST)
    assert (
        run([f"--path-map=C:\\inetpub\\wwwroot={www}", str(conf / "applicationHost.config")]) == 0
    )
    out = capsys.readouterr().out
    data = tomllib.loads((conf / "colonnade.toml").read_text())
    assert "handler.cgi" in data["server"]["modules"]
    assert data["handlers"][:2] == [
        {
            "path": "*.cgi",
            "handler": "handler.cgi",
            "verbs": ["GET", "HEAD", "POST"],
            "resource_type": "file",
            "name": "CGI-sh",
        },
        {"path": "*.pl", "handler": "handler.cgi", "resource_type": "file", "name": "Perl"},
    ]
    assert data["cgi"] == {
        "timeout": 90,
        "not_listed_allowed": False,
        "allowed_programs": [str(www / "hello.cgi")],
    }
    assert 'scriptProcessor "C:\\Perl\\bin\\perl.exe "%s" %s" is not used' in out
    assert "createProcessAsUser: scripts run as the pool's user" in out
    assert "an ISAPI extension: no counterpart" in out
    assert "an interpreter with arguments: allowed_programs lists the scripts" in out
    assert main(["check", "-c", str(conf / "colonnade.toml")]) == 0, capsys.readouterr().err
    with Client(build_engine(data, base_dir=str(conf))) as client:
        ran = client.get("/hello.cgi?a=1")
        assert (ran.status, ran.body) == (200, b"a=1")
        # Off the restriction list (allowed="false"): 404.2, as IIS answers.
        refused = client.get("/old.cgi")
        assert (refused.status, refused.context.response.substatus) == (404, 2)


def test_without_a_cgi_mapping_the_restriction_list_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every applicationHost.config lists ASP.NET's ISAPI DLLs: no [cgi] for them.
    text = APPHOST.replace('modules="CgiModule"', 'modules="StaticFileModule"')
    (tmp_path / "applicationHost.config").write_text(
        text.replace(r"C:\inetpub\wwwroot", str(tmp_path))
    )
    assert run([str(tmp_path / "applicationHost.config")]) == 0
    capsys.readouterr()
    data = tomllib.loads((tmp_path / "colonnade.toml").read_text())
    assert "cgi" not in data and "handler.cgi" not in data["server"]["modules"]
