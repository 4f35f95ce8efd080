"""URL Rewrite through the real pipeline (in process): the classic recipes, rule
order and back-references, distributed rules in web.toml files, locking, loops,
and every malformed rule refused at load with its file, line and key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from colonnade import Context, Handler
from colonnade.config.load import load_file
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, each_error
from colonnade.modules.rewrite.config import (
    SERVER_VARIABLES,
    Action,
    RewriteSection,
    Rule,
    first_chars,
)
from colonnade.modules.rewrite.rules import _VARIABLES, URL_SAFE, CompiledRule, RuleSet, url_text
from colonnade.modules.standard import BUILTIN
from colonnade.testing import Client, TestResponse, build_engine

MODULES = [
    "security.request_filtering",
    "security.trusted_proxies",
    "rewrite",
    "authz.url",
    "static.default_document",
    "handler.static",
    "test.echo",
]


class Echo(Handler):
    """Says which URL it was asked to serve, as an application would see it."""

    id = "test.echo"

    def execute(self, ctx: Context) -> None:
        request = ctx.request
        original = request.header(b"x-original-url")
        probe = request.header(b"x-probe")
        ctx.response.headers.append((b"content-type", b"text/plain"))
        ctx.response.body = (
            f"path={request.path} query={request.query.decode()} "
            f"original={original.decode() if original else '-'} "
            f"probe={probe.decode() if probe else '-'}"
        ).encode()


@pytest.fixture
def www(tmp_path: Path) -> Path:
    site = tmp_path / "www"
    for name in (
        "index.html",
        "front.html",
        "page.html",
        "docs/index.html",
        "docs/a.html",
        "blog/index.html",
    ):
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<{name}>")
    return site


def config(www: Path, rewrite: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": MODULES},
        "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": str(www)}],
        "handlers": [
            {"path": "*.echo", "handler": "test.echo"},
            {"path": "*", "handler": "handler.static"},
        ],
        "trusted_proxies": {"proxies": ["127.0.0.1"]},
        **more,
    }
    if rewrite is not None:
        out["rewrite"] = rewrite
    return out


@pytest.fixture
def serve(www: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(rewrite: dict[str, Any] | None = None, **more: Any) -> Client:
        client = Client(build_engine(config(www, rewrite, **more), modules=[Echo]))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def rule(name: str, pattern: str, action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "pattern": pattern, "action": action, **extra}


def rewrite_to(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "rewrite", "url": url, **extra}


def redirect_to(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "redirect", "url": url, **extra}


NOT_A_FILE_OR_FOLDER = [
    {"input": "{REQUEST_FILENAME}", "match_type": "is_file", "negate": True},
    {"input": "{REQUEST_FILENAME}", "match_type": "is_directory", "negate": True},
]


def moved(response: TestResponse) -> tuple[int, str | None]:
    return response.status, response.header("location")


# -- the classic recipes -------------------------------------------------------------


def test_front_controller_serves_what_is_not_a_file_or_folder(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "front controller",
                    "^(.*)$",
                    rewrite_to("app.echo?route={R:1}"),
                    conditions=NOT_A_FILE_OR_FOLDER,
                )
            ]
        }
    )
    # Files and folders are served as they are...
    assert client.get("/page.html").text == "<page.html>"
    assert client.get("/docs/").text == "<docs/index.html>"
    # ... everything else reaches the front controller, with the route and the
    # client's query, and the original URL for the application.
    response = client.get("/blog/2024/hello?x=1")
    assert response.status == 200
    assert response.text == (
        "path=/app.echo query=route=blog/2024/hello&x=1 original=/blog/2024/hello?x=1 probe=-"
    )


def test_http_to_https_redirect(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "to https",
                    "(.*)",
                    redirect_to("https://{HTTP_HOST}/{R:1}", redirect_type="Permanent"),
                    conditions=[{"input": "{HTTPS}", "pattern": "^OFF$"}],
                )
            ]
        }
    )
    response = client.get("/docs/a.html?q=1", host="example.com")
    assert moved(response) == (301, "https://example.com/docs/a.html?q=1")
    # Over HTTPS (as a trusted proxy says) the condition fails: served.
    secure = client.get("/docs/a.html", headers={"X-Forwarded-Proto": "https"})
    assert (secure.status, secure.text) == (200, "<docs/a.html>")


def test_canonical_host_name(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "canonical host",
                    "(.*)",
                    redirect_to("http://www.example.com/{R:1}", redirect_type=308),
                    conditions=[
                        {"input": "{HTTP_HOST}", "pattern": "^www\\.example\\.com$", "negate": True}
                    ],
                )
            ]
        }
    )
    assert moved(client.get("/page.html", host="example.com")) == (
        308,
        "http://www.example.com/page.html",
    )
    assert client.get("/page.html", host="WWW.Example.com").status == 200  # ignore_case


def test_trailing_slash_for_folders_only(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "add slash",
                    "(.*[^/])$",
                    redirect_to("{R:1}/", redirect_type=302),
                    conditions=[
                        {"input": "{REQUEST_FILENAME}", "match_type": "is_file", "negate": True},
                        {"input": "{REQUEST_FILENAME}", "match_type": "is_directory"},
                    ],
                )
            ]
        }
    )
    assert moved(client.get("/docs?a=b")) == (302, "/docs/?a=b")
    assert client.get("/docs/a.html").status == 200
    assert client.get("/nothing").status == 404


def test_a_rewrite_map(serve: Any) -> None:
    client = serve(
        {
            "maps": {"legacy": {"entries": {"old-page.asp": "/page.html", "Gone": "/front.html"}}},
            "rules": [
                rule(
                    "legacy urls",
                    "^(.+)$",
                    rewrite_to("{C:1}"),
                    conditions=[{"input": "{legacy:{R:1}}", "pattern": "(.+)"}],
                )
            ],
        }
    )
    assert client.get("/old-page.asp").text == "<page.html>"
    assert client.get("/gone").text == "<front.html>"  # maps ignore case by default
    assert client.get("/unlisted.asp").status == 404  # no entry: the condition fails


def test_custom_response(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "no admin",
                    "^admin/",
                    {
                        "type": "custom_response",
                        "status_code": 403,
                        "sub_status": 7,
                        "reason": "Go Away",
                        "description": "The admin area is closed.",
                    },
                )
            ]
        }
    )
    with caplog.at_level(logging.INFO):
        response = client.get("/admin/x")
    assert response.status == 403
    assert response.context.response.reason == b"Go Away"
    assert "The admin area is closed." in response.text
    assert response.context.response.substatus == 7
    assert "'no admin'" in caplog.text  # the administrator learns which rule


def test_abort_drops_the_connection(serve: Any) -> None:
    client = serve({"rules": [rule("drop", r"\.bak$", {"type": "abort"})]})
    response = client.get("/config/site.bak")
    assert response.aborted
    assert client.get("/page.html").status == 200


def test_query_string_appended_or_replaced(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule("keep", "^keep$", rewrite_to("k.echo?a=1")),
                rule("drop", "^drop$", rewrite_to("d.echo?a=1", append_query_string=False)),
                rule("bare", "^bare$", rewrite_to("b.echo", append_query_string=False)),
                rule("kept", "^kept$", rewrite_to("c.echo")),
            ]
        }
    )
    assert "query=a=1&x=2 " in client.get("/keep?x=2").text
    assert "query=a=1 " in client.get("/drop?x=2").text
    assert "query= " in client.get("/bare?x=2").text
    assert "query=x=2 " in client.get("/kept?x=2").text


def test_condition_back_references_and_functions(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "item",
                    "^item$",
                    rewrite_to(
                        "item.echo?id={C:1}&host={ToLower:{HTTP_HOST}}", append_query_string=False
                    ),
                    conditions=[{"input": "{QUERY_STRING}", "pattern": "^id=(\\d+)$"}],
                ),
                rule(
                    "search",
                    "^find/(.*)$",
                    rewrite_to("s.echo?q={UrlEncode:{R:1}}", append_query_string=False),
                ),
            ]
        }
    )
    assert "query=id=42&host=example.org " in client.get("/item?id=42", host="Example.ORG").text
    assert client.get("/item?id=x").status == 404  # the condition does not hold
    assert "query=q=a%20b%26c " in client.get("/find/a%20b&c").text


def test_track_all_captures_numbers_the_groups_of_every_condition(serve: Any) -> None:
    conditions = [
        {"input": "{HTTP_HOST}", "pattern": "^(www\\.)?([^.]+)\\.example\\.com$"},
        {"input": "{QUERY_STRING}", "pattern": "^id=(\\d+)$"},
    ]
    client = serve(
        {
            "rules": [
                rule(
                    "all",
                    "^all$",
                    rewrite_to("a.echo?sub={C:2}&id={C:3}&first={C:0}", append_query_string=False),
                    conditions=conditions,
                    track_all_captures=True,
                ),
                rule(
                    "last",
                    "^last$",
                    rewrite_to("l.echo?id={C:1}&whole={C:0}", append_query_string=False),
                    conditions=conditions,
                ),
            ]
        }
    )
    tracked = client.get("/all?id=7", host="www.shop.example.com").text
    assert "query=sub=shop&id=7&first=www.shop.example.com " in tracked
    assert "query=id=7&whole=id=7 " in client.get("/last?id=7", host="shop.example.com").text


def test_negate_and_match_any(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "bots",
                    ".*",
                    {"type": "custom_response", "status_code": 403},
                    logical_grouping="match_any",
                    conditions=[
                        {"input": "{HTTP_USER_AGENT}", "pattern": "^badbot"},
                        {"input": "{QUERY_STRING}", "pattern": "debug=1"},
                    ],
                ),
                rule(
                    "only docs",
                    "^docs/",
                    {"type": "custom_response", "status_code": 404, "sub_status": 5},
                    negate=True,
                    conditions=[{"input": "{URL}", "pattern": "^/$", "negate": True}],
                ),
            ]
        }
    )
    assert client.get("/docs/a.html", headers={"User-Agent": "BadBot/1"}).status == 403
    assert client.get("/docs/a.html?debug=1").status == 403
    assert client.get("/docs/a.html").status == 200
    assert client.get("/").status == 200
    refused = client.get("/page.html")
    assert (refused.status, refused.context.response.substatus) == (404, 5)


def test_wildcard_and_exact_patterns_and_case(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule(
                    "wild",
                    "old/*/*.htm",
                    rewrite_to("w.echo?a={R:1}&b={R:2}"),
                    pattern_syntax="wildcard",
                ),
                rule("exact", "Exact", rewrite_to("e.echo"), pattern_syntax="exact"),
                rule("cased", "^Cased$", rewrite_to("c.echo"), ignore_case=False),
            ]
        }
    )
    assert "query=a=x&b=y " in client.get("/old/x/y.htm").text
    assert client.get("/old/x/y.html").status == 404  # the whole path must match
    assert "path=/e.echo" in client.get("/exact").text
    assert client.get("/exact/more").status == 404
    assert "path=/c.echo" in client.get("/Cased").text
    assert client.get("/cased").status == 404


def test_rules_see_the_previous_rules_output_and_stop_processing(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                rule("one", "^a$", rewrite_to("b")),
                rule("two", "^b$", rewrite_to("c.echo"), stop_processing=True),
                rule("three", "^c\\.echo$", rewrite_to("never.echo")),
            ]
        }
    )
    assert "path=/c.echo " in client.get("/a").text


def test_server_variables_set_request_headers(serve: Any) -> None:
    client = serve(
        {
            "allowed_server_variables": ["HTTP_X_PROBE"],
            "global_rules": [
                rule(
                    "tag",
                    "^(.*)$",
                    {"type": "none"},
                    server_variables=[{"name": "MY_SEEN", "value": "seen:{R:1}"}],
                )
            ],
            "rules": [
                rule(
                    "probe",
                    "^p$",
                    rewrite_to("p.echo"),
                    server_variables=[{"name": "HTTP_X_PROBE", "value": "{MY_SEEN}"}],
                )
            ],
        }
    )
    assert "probe=seen:p" in client.get("/p", headers={"X-Probe": "client"}).text


def test_server_variables_read_what_the_request_says(serve: Any) -> None:
    names = [
        "HTTPS", "SERVER_PORT", "SERVER_PORT_SECURE", "SERVER_NAME", "REMOTE_ADDR",
        "REQUEST_URI", "UNENCODED_URL", "URL", "PATH_INFO", "QUERY_STRING", "CACHE_URL",
        "REQUEST_METHOD", "SERVER_PROTOCOL", "HTTP_USER_AGENT", "HTTP_NOT_SENT",
    ]  # fmt: skip
    client = serve(
        {
            "allowed_server_variables": ["HTTP_X_PROBE"],
            "rules": [
                rule("first", "^vars$", rewrite_to("v.echo?y=2")),
                rule(
                    "probe",
                    "^v\\.echo$",
                    {"type": "none"},
                    server_variables=[
                        {"name": "HTTP_X_PROBE", "value": "|".join(f"{{{n}}}" for n in names)}
                    ],
                ),
            ],
        }
    )
    text = client.get("/vars?x=1", host="h.example:8080", headers={"User-Agent": "UA/1"}).text
    assert text.split("probe=")[1].split("|") == [
        "off", "8080", "0", "h.example", "127.0.0.1", "/vars?x=1", "/vars?x=1", "/v.echo",
        "/v.echo", "y=2&x=1", "http://h.example:8080/v.echo?y=2&x=1", "GET", "HTTP/1.1",
        "UA/1", "",
    ]  # fmt: skip


def test_set_server_variables_replace_or_keep(serve: Any) -> None:
    client = serve(
        {
            "allowed_server_variables": ["HTTP_X_PROBE", "HTTP_HOST"],
            "rules": [
                rule(
                    "keep",
                    "^keep$",
                    rewrite_to("k.echo"),
                    server_variables=[{"name": "HTTP_X_PROBE", "value": "new", "replace": False}],
                ),
                rule(
                    "replace",
                    "^replace$",
                    rewrite_to("r.echo"),
                    server_variables=[
                        {"name": "HTTP_X_PROBE", "value": "{UrlDecode:{QUERY_STRING}}"}
                    ],
                ),
                rule(
                    "host",
                    "^host/(.*)$",
                    rewrite_to("h.echo"),
                    server_variables=[{"name": "HTTP_HOST", "value": "{R:1}"}],
                ),
            ],
        }
    )
    assert "probe=old" in client.get("/keep", headers={"X-Probe": "old"}).text
    assert "probe=-" not in client.get("/keep").text  # not set before: set
    replaced = client.get("/replace?new%0D%0AX:%20y", headers={"X-Probe": "old"})
    assert "probe=newX: y" in replaced.text  # control characters dropped
    assert client.get("/host/other.example:81").context.request.host == "other.example:81"
    assert client.get("/host/bad host").context.request.host == "localhost"  # not a host


def test_a_disabled_rule_does_nothing(serve: Any) -> None:
    client = serve({"rules": [rule("off", "^page", {"type": "abort"}, enabled=False)]})
    assert client.get("/page.html").status == 200


def test_a_client_cannot_send_its_own_original_url(serve: Any) -> None:
    client = serve({"rules": [rule("x", "^x$", rewrite_to("x.echo"))]})
    assert "original=-" in client.get("/y.echo", headers={"X-Original-URL": "/admin"}).text
    assert "original=/x " in client.get("/x", headers={"X-Original-URL": "/admin"}).text


def test_global_rules_run_first_then_the_folder_rules_of_the_new_url(serve: Any, www: Path) -> None:
    (www / "blog" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "posts"\npattern = "^(\\\\d+)/(.*)$"\n'
        'action = { type = "rewrite", url = "post.echo?year={R:1}&slug={R:2}" }\n'
    )
    client = serve(
        {
            "global_rules": [rule("journal", "^journal/(.*)", rewrite_to("/blog/{R:1}"))],
            "rules": [rule("site", "^(\\d+)/(.*)$", rewrite_to("site.echo"))],
        }
    )
    # The folder's rule sees the path relative to /blog; its relative URL is in /blog.
    assert client.get("/blog/2024/hello").text.startswith(
        "path=/blog/post.echo query=year=2024&slug=hello "
    )
    # A global rule's rewrite lands in /blog: its rules run on the new URL.
    assert client.get("/journal/2023/x").text.startswith(
        "path=/blog/post.echo query=year=2023&slug=x original=/journal/2023/x "
    )
    # The site-level rules still apply elsewhere (the /blog rules do not).
    assert "path=/site.echo" in client.get("/2024/x").text


def test_parent_rules_run_before_child_rules(serve: Any, www: Path) -> None:
    (www / "docs" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "child"\npattern = "^(.*)$"\n'
        'action = { type = "rewrite", url = "child.echo?saw={R:1}" }\n'
    )
    client = serve({"rules": [rule("parent", "^docs/old/(.*)$", rewrite_to("/docs/new/{R:1}"))]})
    assert "path=/docs/child.echo query=saw=new/z " in client.get("/docs/old/z").text


def test_rules_that_loop_end_in_a_500_naming_the_rule(
    serve: Any, www: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, other in (("a", "b"), ("b", "a")):
        (www / name).mkdir()
        (www / name / "web.toml").write_text(
            f'[[rewrite.rules]]\nname = "to {other}"\npattern = "^(.*)$"\n'
            f'action = {{ type = "rewrite", url = "/{other}/{{R:1}}" }}\n'
        )
    client = serve({})
    with caplog.at_level(logging.ERROR):
        response = client.get("/a/x")
    assert (response.status, response.context.response.substatus) == (500, 50)
    assert "URL rewrite rule 'to " in caplog.text
    assert "web.toml: rewrite.rules[0]" in caplog.text
    assert "a rewrite or redirect loop" in caplog.text  # core.context says it


def test_a_locked_section_refuses_folder_rules(serve: Any, www: Path) -> None:
    (www / "docs" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "x"\npattern = "."\naction = { type = "abort" }\n'
    )
    client = serve({}, lock={"rewrite": "deny"})
    response = client.get("/docs/a.html")
    assert (response.status, response.context.response.substatus) == (500, 19)
    assert client.get("/page.html").status == 200


def test_the_rewritten_url_is_the_one_authorization_judges(serve: Any) -> None:
    client = serve(
        {"rules": [rule("alias", "^public/(.*)$", rewrite_to("/docs/{R:1}"))]},
        locations=[
            {"path": "/docs", "url_authorization": {"rules": [{"access": "deny", "users": ["?"]}]}}
        ],
    )
    assert client.get("/docs/a.html").status == 401
    assert client.get("/public/a.html").status == 401  # not a way around the rule
    assert client.get("/page.html").status == 200


def test_no_rules_cost_nothing_visible(serve: Any) -> None:
    client = serve()
    response = client.get("/page.html?x=1")
    assert (response.status, response.text) == (200, "<page.html>")


def test_every_server_variable_has_a_getter() -> None:
    assert set(_VARIABLES) == SERVER_VARIABLES


# -- configuration errors: file, line and key ---------------------------------------------

SERVER = """\
[server]
modules = ["rewrite", "handler.static"]

[[sites]]
name = "s"
bindings = ["http://127.0.0.1:8080"]
root = "www"

[rewrite]
allowed_server_variables = ["HTTP_X_OK"]

[rewrite.maps.known]
entries = {{ a = "b" }}

[[rewrite.rules]]
name = "r"
pattern = {pattern}
{extra}
"""


def load_errors(tmp_path: Path, pattern: str, extra: str) -> list[str]:
    (tmp_path / "www").mkdir(exist_ok=True)
    path = tmp_path / "colonnade.toml"
    path.write_text(SERVER.format(pattern=pattern, extra=extra))
    with pytest.raises(ConfigError) as caught:
        Engine(load_file(str(path)), Registry.standard(BUILTIN))
    return [str(e) for e in each_error(caught.value)]


ACTION = 'action = {{ type = "rewrite", url = "{url}" }}'


@pytest.mark.parametrize(
    ("pattern", "extra", "line", "key", "message"),
    [
        (
            '"^(a"',
            ACTION.format(url="x"),
            17,
            "rewrite.rules[0].pattern",
            "missing ), unterminated",
        ),
        (
            '"^(a)(b)$"',
            ACTION.format(url="{R:3}"),
            18,
            "rewrite.rules[0].action.url",
            "{R:3}: the rule's pattern has 2 groups",
        ),
        (
            '"^a$"',
            ACTION.format(url="{C:1}"),
            18,
            "rewrite.rules[0].action.url",
            "{C:1}: no condition before it captures",
        ),
        (
            '"^a$"',
            'conditions = [{ input = "{URL}", pattern = "(a)(b)" }, '
            '{ input = "{URL}", pattern = "(c)" }]\n' + ACTION.format(url="{C:2}"),
            19,
            "rewrite.rules[0].action.url",
            "{C:2}: the conditions capture {C:0}-{C:1} only",
        ),
        (
            '"^a$"',
            'track_all_captures = true\nconditions = [{ input = "{URL}", pattern = "(a)(b)" }, '
            '{ input = "{URL}", pattern = "(c)" }]\n' + ACTION.format(url="{C:4}"),
            20,
            "rewrite.rules[0].action.url",
            "{C:4}: the conditions capture {C:0}-{C:3} only",
        ),
        (
            '"^a$"',
            ACTION.format(url="{unknown:{R:0}}"),
            18,
            "rewrite.rules[0].action.url",
            "no rewrite map named 'unknown' here (maps: known)",
        ),
        (
            '"^a$"',
            ACTION.format(url="{NO_SUCH_VAR}"),
            18,
            "rewrite.rules[0].action.url",
            "{NO_SUCH_VAR} is not a server variable",
        ),
        ('"^a$"', ACTION.format(url="{R:1"), 18, "rewrite.rules[0].action.url", "is not closed"),
        (
            '"^a$"',
            'action = { type = "rewrite", url = "https://elsewhere/" }',
            18,
            "rewrite.rules[0].action.url",
            "a rewrite stays on this server",
        ),
        (
            '"^a$"',
            'action = { type = "redirect" }',
            18,
            "rewrite.rules[0].action",
            "a redirect action needs a url",
        ),
        (
            '"^a$"',
            'negate = true\naction = { type = "rewrite", url = "{R:0}" }',
            19,
            "rewrite.rules[0].action.url",
            "negated",
        ),
        (
            '"^a$"',
            'action = { type = "none" }\n'
            'server_variables = [{ name = "HTTP_X_NOPE", value = "1" }]',
            19,
            "rewrite.rules[0].server_variables[0].name",
            "HTTP_X_NOPE may be set only if the server file lists it",
        ),
        (
            '"^a$"',
            'action = { type = "none" }\n'
            'conditions = [{ input = "{HTTP_HOST}", match_type = "is_file", pattern = "x" }]',
            19,
            "rewrite.rules[0].conditions[0].pattern",
            "takes no pattern",
        ),
        (
            '"^a$"',
            'action = { type = "teleport" }',
            18,
            "rewrite.rules[0].action.type",
            "'teleport'",
        ),
    ],
)
def test_a_bad_rule_is_refused_at_load_with_file_line_and_key(
    tmp_path: Path, pattern: str, extra: str, line: int, key: str, message: str
) -> None:
    errors = load_errors(tmp_path, pattern, extra)
    assert len(errors) == 1, errors
    assert f"{tmp_path.name}/colonnade.toml:{line}: {key}: " in errors[0], errors
    assert message in errors[0]


def test_a_bad_folder_rule_confines_the_error_to_its_folder(serve: Any, www: Path) -> None:
    (www / "docs" / "web.toml").write_text(
        '# a comment\n[[rewrite.rules]]\nname = "x"\npattern = "^(a)$"\n'
        'action = { type = "rewrite", url = "{R:2}" }\n'
    )
    client = serve({})
    response = client.get("/docs/a.html")
    assert (response.status, response.context.response.substatus) == (500, 19)
    assert "web.toml:5: rewrite.rules[0].action.url: {R:2}" in response.text
    assert client.get("/page.html").status == 200


def test_a_folder_may_use_the_maps_and_variables_of_the_server(serve: Any, www: Path) -> None:
    (www / "docs" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "m"\npattern = "^(.+)$"\n'
        'conditions = [{ input = "{pages:{R:1}}", pattern = "(.+)" }]\n'
        'server_variables = [{ name = "HTTP_X_PROBE", value = "{R:1}" }]\n'
        'action = { type = "rewrite", url = "{C:1}" }\n'
    )
    client = serve(
        {
            "allowed_server_variables": ["HTTP_X_PROBE"],
            "maps": {"pages": {"entries": {"home": "/docs/h.echo"}}},
        }
    )
    assert (
        "path=/docs/h.echo query= original=/docs/home probe=home" in client.get("/docs/home").text
    )


def test_duplicate_rule_names_are_refused(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        '"a"',
        'action = { type = "none" }\n\n'
        '[[rewrite.rules]]\nname = "R"\npattern = "b"\naction = { type = "none" }',
    )
    assert len(errors) == 1
    assert errors[0].endswith(
        "colonnade.toml:21: rewrite.rules[1].name: 'R' is also the name of rules[0]"
    )


# -- the first-character dispatch never skips a rule that matches ---------------------------


@pytest.mark.parametrize(
    ("pattern", "syntax", "ignore_case", "expected"),
    [
        ("^products/(\\d+)$", "regex", True, "pP"),
        ("^Products/", "regex", False, "P"),
        ("^secret", "regex", True, "sS\u017f"),
        ("^\\.well-known/", "regex", True, "."),
        ("^a?b", "regex", True, None),
        ("^a|b", "regex", True, None),
        ("^(a|b)", "regex", True, None),
        ("^[ab]x|y", "regex", True, None),
        ("\\.php$", "regex", True, None),
        ("legacy/*.asp", "wildcard", True, "lL"),
        ("*.asp", "wildcard", True, None),
        ("Exact", "exact", False, "E"),
    ],
)
def test_first_chars(pattern: str, syntax: str, ignore_case: bool, expected: str | None) -> None:
    assert first_chars(pattern, syntax, ignore_case) == expected


def test_candidates_hold_every_rule_that_matches() -> None:
    patterns = [
        ("^products/(\\d+)$", "regex", True),
        ("^Shop/", "regex", False),
        ("\\.(bak|old)$", "regex", True),
        ("^secret", "regex", True),
        ("^(a|b)c", "regex", True),
        ("^x|y", "regex", True),
        ("old/*", "wildcard", True),
        ("Exact", "exact", True),
        ("^Kelvin", "regex", True),
        ("^imprint", "regex", True),
    ]
    section = RewriteSection(
        rules=[
            Rule(
                name=str(i),
                pattern=p,
                pattern_syntax=syntax,  # type: ignore[arg-type]
                ignore_case=case,
                action=Action(type="none"),
            )
            for i, (p, syntax, case) in enumerate(patterns)
        ]
    )
    compiled = tuple(CompiledRule(p, i, "t", {}) for i, p in enumerate(section.parsed[1]))
    rule_set = RuleSet("/", compiled)
    subjects = [
        "products/12", "Products/12", "PRODUCTS/x", "shop/a", "Shop/a", "a.bak", "bc",
        "ac", "xyz", "ay", "old/x", "OLD/y", "exact", "EXACT", "\u017fecret", "\u212aelvin",
        "\u0130mprint", "", "/", "secret",
    ]  # fmt: skip
    for subject in subjects:
        matching = [r for r in compiled if r.test(subject) is not None]
        candidates = rule_set.candidates(subject)
        assert all(r in candidates for r in matching), subject
        assert list(candidates) == sorted(candidates, key=lambda r: r.index)


def test_errors_in_locations_name_the_entry(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    path = tmp_path / "colonnade.toml"
    path.write_text(
        SERVER.split("[rewrite]")[0]
        + '[[locations]]\npath = "/blog"\n\n  [[locations.rewrite.rules]]\n  name = "a"\n'
        '  pattern = "^(a)$"\n  action = { type = "rewrite", url = "{R:2}" }\n\n'
        '[[locations]]\npath = "/shop"\nrewrite.rules = [{ name = "m", pattern = "x", '
        'action = { type = "rewrite", url = "{nomap:{R:0}}" } }]\n'
    )
    with pytest.raises(ConfigError) as caught:
        Engine(load_file(str(path)), Registry.standard(BUILTIN))
    errors = sorted(str(e).split("colonnade.toml:")[1] for e in each_error(caught.value))
    assert errors == [
        "15: locations[0].rewrite.rules[0].action.url: {R:2}: the rule's pattern has 1 group",
        "19: locations[1].rewrite.rules[0].action.url: no rewrite map named 'nomap' here "
        "(maps: none is defined)",
    ]


def test_url_text_encodes_exactly_what_a_url_cannot_hold() -> None:
    for code in range(0x180):
        char = chr(code)
        assert url_text(f"/a{char}b") == quote(f"/a{char}b", safe=URL_SAFE), repr(char)
    assert url_text("/a b?q=\r\n<x>") == "/a%20b?q=%0D%0A%3Cx%3E"
    assert url_text("/caf\u00e9?x=%41") == "/caf%C3%A9?x=%41"


def test_rules_of_two_levels_at_one_path_are_each_checked(tmp_path: Path) -> None:
    # The site root's web.toml replaces the server file's rules in the merged
    # settings at "/", yet both lists run: each is checked on its own.
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "web.toml").write_text(
        '[[rewrite.rules]]\nname = "b"\npattern = "y"\naction = { type = "none" }\n'
    )
    errors = load_errors(tmp_path, '"x"', ACTION.format(url="{nomap:{R:0}}"))
    assert len(errors) == 1
    assert errors[0].endswith(
        "colonnade.toml:18: rewrite.rules[0].action.url: no rewrite map named 'nomap' "
        "here (maps: known)"
    )
