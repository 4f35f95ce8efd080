"""HTTP redirection: rules and captures, query keeping, statuses, the subtree
redirect, per-folder settings, and destinations that must never leave the site."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade import FINISH, Stage
from colonnade.errors import ConfigError
from colonnade.management.docgen import field_notes
from colonnade.modules.redirection.config import RedirectionSection, RedirectRule
from colonnade.modules.redirection.module import HttpRedirection
from colonnade.testing import Client, TestResponse, build_engine, make_context, run_stage

MODULES = [
    "security.request_filtering",
    "http.redirection",
    "static.default_document",
    "handler.static",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    for name in ("index.html", "new/index.html", "new/a.html", "keep/x.html", "folder/a.html"):
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return site


def config(
    root: Path,
    settings: dict[str, Any] | None = None,
    locations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "server": {"modules": MODULES},
        "sites": [{"name": "t", "bindings": ["http://127.0.0.1:8080"], "root": str(root)}],
    }
    if settings is not None:
        out["redirection"] = settings
    if locations is not None:
        out["locations"] = locations
    return out


@pytest.fixture
def serve(root: Path) -> Iterator[Any]:
    clients: list[Client] = []

    def start(
        settings: dict[str, Any] | None = None, locations: list[dict[str, Any]] | None = None
    ) -> Client:
        client = Client(build_engine(config(root, settings, locations)))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def rules(*pairs: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"rules": [{"path": p, "destination": d} for p, d in pairs], **extra}


def moved(response: TestResponse) -> tuple[int, str | None]:
    return response.status, response.header("location")


# -- rules and captures --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "target", "expected"),
    [
        ((("/old.html", "/new/a.html"),), "/old.html", "/new/a.html"),
        ((("/old.html", "/new%20page/a b.html"),), "/old.html", "/new%20page/a%20b.html"),
        ((("/old/*", "/new/$1"),), "/old/a/b.html", "/new/a/b.html"),
        ((("/old/*", "/new/$1"),), "/old/", "/new/"),
        ((("*.php", "$1.html"),), "/shop/cart.php", "/shop/cart.html"),
        ((("/a/*/b/*", "/x/$2/$1"),), "/a/1/b/2/3", "/x/2/3/1"),
        (
            (("/blog/*", "https://blog.example.com/$1"),),
            "/blog/p/1",
            "https://blog.example.com/p/1",
        ),
        ((("/v/*", "/see$V"),), "/v/x", "/see/v/x"),
        ((("/price/*", "/cost/$$/$1"),), "/price/9", "/cost/$/9"),
        ((("/café/*", "/neu/$1"),), "/caf%C3%A9/ö", "/neu/%C3%B6"),
    ],
)
def test_rule_captures(
    serve: Any, pairs: tuple[tuple[str, str], ...], target: str, expected: str
) -> None:
    assert moved(serve(rules(*pairs)).get(target)) == (302, expected)


def test_first_matching_rule_wins_and_others_pass(serve: Any) -> None:
    client = serve(rules(("/old/special", "/special"), ("/old/*", "/new/$1")))
    assert moved(client.get("/old/special")) == (302, "/special")
    assert moved(client.get("/old/other")) == (302, "/new/other")
    response = client.get("/new/a.html")
    assert (response.status, response.text) == (200, "new/a.html")


def test_exact_rule_does_not_match_a_longer_path(serve: Any) -> None:
    client = serve(rules(("/old", "/new/")))
    assert client.get("/old/x").status == 404
    assert moved(client.get("/old")) == (302, "/new/")


def test_paths_are_case_sensitive_unless_ignore_case(serve: Any) -> None:
    assert serve(rules(("/Old/*", "/new/$1"))).get("/old/a").status == 404
    client = serve(rules(("/Old/*", "/new/$1"), ("/EXACT", "/e"), ignore_case=True))
    assert moved(client.get("/old/A")) == (302, "/new/A")  # captures keep their case
    assert moved(client.get("/exact")) == (302, "/e")


def test_redirects_without_a_file_behind_the_url(serve: Any) -> None:
    # MAP_REQUEST_HANDLER, before the default document: /folder would get the
    # trailing-slash 301 from the default document, but the rule answers first.
    client = serve(rules(("/folder", "/new/")))
    assert moved(client.get("/folder")) == (302, "/new/")


def test_request_filtering_runs_first(serve: Any) -> None:
    client = serve(rules(("/*", "/new/$1")))
    response = client.get("/.git/config")
    assert response.status == 404 and response.header("location") is None
    assert response.context is not None and response.context.response.substatus == 8


def test_a_rule_pointing_at_itself_is_skipped(serve: Any) -> None:
    client = serve(rules(("/new/*", "/new/$1"), ("/new/*", "/elsewhere/$1")))
    assert moved(client.get("/new/x")) == (302, "/elsewhere/x")
    client = serve(rules(("/index.html", "/index.html")))
    assert client.get("/index.html").status == 200


# -- query strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "target", "expected"),
    [
        (rules(("/o", "/n")), "/o?a=1&b=2", "/n?a=1&b=2"),
        (rules(("/o", "/n"), keep_query=False), "/o?a=1", "/n"),
        (rules(("/o", "/n?lang=en")), "/o?a=1", "/n?lang=en&a=1"),
        (rules(("/o", "/n#top")), "/o?a=1", "/n?a=1#top"),
        (rules(("/o", "/n/x$Q")), "/o?a=1", "/n/x?a=1"),
        (rules(("/o", "/n/x$Q")), "/o", "/n/x"),
        (rules(("/o", "/n/x$Q"), keep_query=False), "/o?a=1", "/n/x?a=1"),  # $Q is explicit
        (
            {"rules": [{"path": "/o", "destination": "/n", "keep_query": False}]},
            "/o?a=1",
            "/n",
        ),
        (
            {
                "keep_query": False,
                "rules": [{"path": "/o", "destination": "/n", "keep_query": True}],
            },
            "/o?a=1",
            "/n?a=1",
        ),
    ],
)
def test_query_string(serve: Any, settings: dict[str, Any], target: str, expected: str) -> None:
    assert serve(settings).get(target).header("location") == expected


def test_odd_query_bytes_are_encoded_escapes_kept(serve: Any) -> None:
    response = serve(rules(("/o", "/n"))).get('/o?q=a"b<c>%41 x')
    assert response.header("location") == "/n?q=a%22b%3Cc%3E%41%20x"


# -- statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_statuses(serve: Any, status: int) -> None:
    response = serve(rules(("/o", "/n"), status=status)).get("/o")
    assert moved(response) == (status, "/n")
    assert b'href="/n"' in response.body
    assert response.header("content-type") == "text/html; charset=utf-8"


def test_default_status_is_302_and_a_rule_may_override(serve: Any) -> None:
    client = serve(
        {
            "rules": [
                {"path": "/perm", "destination": "/n", "status": 301},
                {"path": "/temp", "destination": "/n"},
            ]
        }
    )
    assert client.get("/perm").status == 301
    assert client.get("/temp").status == 302
    assert client.head("/perm").status == 301


@pytest.mark.parametrize("status", [300, 303, 200, 404])
def test_other_statuses_are_refused(root: Path, status: int) -> None:
    with pytest.raises(ConfigError) as raised:
        build_engine(config(root, {"status": status, "destination": "/n"}))
    assert raised.value.key.startswith("redirection")


# -- the subtree redirect (IIS destination) ------------------------------------------------


def test_whole_site_to_another_host_keeps_path_and_query(serve: Any) -> None:
    client = serve({"destination": "https://new.example.com/"})
    response = client.get("/a/b.html?x=1")
    assert moved(response) == (302, "https://new.example.com/a/b.html?x=1")
    assert client.get("/").header("location") == "https://new.example.com/"


def test_destination_without_trailing_slash_joins_with_one(serve: Any) -> None:
    client = serve({"destination": "https://new.example.com/base"})
    assert client.get("/a").header("location") == "https://new.example.com/base/a"
    client = serve({"destination": "https://new.example.com/base?from=old"})
    assert client.get("/a?x=1").header("location") == (
        "https://new.example.com/base/a?from=old&x=1"
    )


def test_exact_destination(serve: Any) -> None:
    client = serve({"destination": "/new/index.html", "exact_destination": True})
    assert moved(client.get("/some/where?x=1")) == (302, "/new/index.html?x=1")
    # The destination itself is not redirected to itself.
    assert client.get("/new/index.html").status == 200


def test_maintenance_page_does_not_loop(serve: Any) -> None:
    client = serve({"destination": "/new/a.html", "exact_destination": True, "keep_query": False})
    assert client.get("/anything").header("location") == "/new/a.html"
    assert client.get("/new/a.html").status == 200


def test_root_destination_inside_the_site_does_not_loop(serve: Any) -> None:
    client = serve({"destination": "/new/"})
    assert client.get("/old/a.html").header("location") == "/new/old/a.html"
    response = client.get("/new/a.html")
    assert (response.status, response.text) == (200, "new/a.html")
    assert client.get("/new").status == 301  # the default document's slash redirect


def test_destination_set_for_a_folder_appends_the_rest_below_it(serve: Any) -> None:
    locations = [{"path": "/old", "redirection": {"destination": "https://n.example/"}}]
    client = serve(locations=locations)
    assert client.get("/old/a/b.html").header("location") == "https://n.example/a/b.html"
    assert client.get("/old").header("location") == "https://n.example/"
    assert client.get("/index.html").status == 200  # outside the folder


def test_destination_from_a_web_toml(serve: Any, root: Path) -> None:
    (root / "old").mkdir()
    (root / "old" / "web.toml").write_text('[redirection]\ndestination = "/new/"\nstatus = 301\n')
    client = serve()
    assert moved(client.get("/old/a.html")) == (301, "/new/a.html")
    assert client.get("/index.html").status == 200


def test_child_only(serve: Any) -> None:
    locations = [
        {"path": "/old", "redirection": {"destination": "/new/", "child_only": True}},
    ]
    client = serve(locations=locations)
    assert client.get("/old/a.html").header("location") == "/new/a.html"
    assert client.get("/old/sub/a.html").status == 404


def test_variables_in_destination(serve: Any) -> None:
    locations = [
        {
            "path": "/old",
            "redirection": {"destination": "/new/index.html?from=$S&all=$V"},
        },
    ]
    client = serve(locations=locations)
    assert client.get("/old/a b&c=1").header("location") == (
        "/new/index.html?from=a%20b%26c%3D1&all=/old/a%20b%26c%3D1"
    )


def test_enabled_false_exempts_a_subtree(serve: Any) -> None:
    locations = [{"path": "/keep", "redirection": {"enabled": False}}]
    client = serve({"destination": "https://n.example/", "rules": []}, locations=locations)
    assert client.get("/a").header("location") == "https://n.example/a"
    assert client.get("/keep/x.html").status == 200


def test_rules_come_before_the_destination(serve: Any) -> None:
    client = serve(
        {"destination": "https://n.example/", "rules": [{"path": "/r", "destination": "/new/"}]}
    )
    assert client.get("/r").header("location") == "/new/"
    assert client.get("/s").header("location") == "https://n.example/s"


def test_web_toml_adds_rules_to_inherited_ones(serve: Any, root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "web.toml").write_text(
        '[redirection.rules]\nadd = [{ path = "/sub/b", destination = "/new/b" }]\n'
    )
    client = serve(rules(("/a", "/new/a"), ("/sub/b", "/never")))
    assert client.get("/a").header("location") == "/new/a"
    # Same path: the folder's entry replaced the inherited one.
    assert client.get("/sub/b").header("location") == "/new/b"


# -- safety: refused at load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key_part"),
    [
        ({"destination": "//evil.example/"}, "names another host"),
        ({"destination": "/\\evil.example/"}, "names another host"),
        ({"destination": "evil.example/"}, "must start with"),
        ({"destination": "javascript:alert(1)"}, "must start with"),
        ({"destination": "https://$S/"}, "host"),
        ({"destination": "https:///x"}, "host"),
        ({"destination": "/a\r\nSet-Cookie: x=1"}, "control characters"),
        ({"destination": "/a$1"}, "$1 is not a variable"),
        ({"destination": "/100%"}, "must start a %XX escape"),
        ({"destination": "/a%2"}, "must start a %XX escape"),
        ({"destination": "/a$"}, "a lone $"),
        (rules(("/a", "/b$1")), "rules[0].destination"),
        (rules(("/a/*", "/b$S")), "$S is not a variable"),
        (rules(("/a/*", "/b/$2")), "$2 is not a variable"),
        (rules(("a/*", "/b")), "rules[0].path"),
        (rules(("/" + "*/" * 10, "/b")), "at most nine"),
        ({"rules": [{"path": "/a"}]}, "destination"),
        ({"rules": [{"path": "/a", "destination": "/b", "other": 1}]}, "unknown key"),
    ],
)
def test_bad_destinations_are_refused_at_load(
    root: Path, settings: dict[str, Any], key_part: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_engine(config(root, settings))
    error = raised.value
    assert error.key.startswith("redirection")
    assert key_part in str(error)


def test_bad_destination_in_web_toml_names_the_file(serve: Any, root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "web.toml").write_text('[redirection]\ndestination = "//evil.example"\n')
    (broken,) = build_engine(config(root)).broken  # its folder answers 500.19
    assert broken.error.file is not None and broken.error.file.endswith("web.toml")
    assert broken.path == "/sub"


# -- safety: neutralised at request time ---------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "target", "expected"),
    [
        # A capture never splits the header ...
        ((("/old/*", "/new/$1"),), "/old/%0d%0aSet-Cookie:%20x=1", "/new/%0D%0ASet-Cookie:%20x=1"),
        # ... never names another host ...
        ((("/old*", "/$1"),), "/old/evil.example/x", "/evil.example/x"),
        ((("/r/*", "$1"),), "/r/evil.example", "/evil.example"),
        ((("/r/*", "$1"),), "/r/%5C%5Cevil.example", "/%5C%5Cevil.example"),
        ((("/go/*", "/$1"),), "/go/%5Cevil.example", "/%5Cevil.example"),
        ((("/go/*", "/$1"),), "/go/%2F%2Fevil.example", "/evil.example"),
        # ... and never adds query parameters or a fragment.
        ((("/s/*", "/search?q=$1"),), "/s/a&admin=1", "/search?q=a%26admin%3D1"),
        ((("/s/*", "/search?q=$1"),), "/s/a%23frag", "/search?q=a%23frag"),
        ((("/s/*", "/p/$1"),), "/s/a%3Fb=1", "/p/a%3Fb=1"),
        # Quotes and angle brackets are encoded, so the body's link is inert too.
        ((("/s/*", "/p/$1"),), '/s/"><script>', "/p/%22%3E%3Cscript%3E"),
    ],
)
def test_captures_are_neutralised(
    serve: Any, pairs: tuple[tuple[str, str], ...], target: str, expected: str
) -> None:
    response = serve(rules(*pairs)).get(target)
    location = response.header("location")
    assert location == expected
    assert location is not None and location.isascii() and location.isprintable()
    assert b"<script>" not in response.body


def test_absolute_destination_host_is_fixed(serve: Any) -> None:
    client = serve(rules(("/x/*", "https://good.example/$1")))
    location = client.get("/x/@evil.example/%2F%2Fevil").header("location")
    assert location is not None and location.startswith("https://good.example/")
    assert location == "https://good.example/@evil.example/evil"


# -- compiled once -------------------------------------------------------------------------


def test_compiled_once_per_section() -> None:
    section = msgspec.convert(rules(("/a/*", "/b/$1")), RedirectionSection, strict=True)
    assert section.redirects is section.redirects
    assert RedirectionSection().redirects is None  # nothing to do: the hook returns at once
    disabled = msgspec.convert(
        {"enabled": False, "destination": "/x"}, RedirectionSection, strict=True
    )
    assert disabled.redirects is None


def test_same_section_object_serves_every_request(serve: Any) -> None:
    client = serve(rules(("/a/*", "/b/$1")))
    first, second = client.get("/a/1"), client.get("/a/2")
    assert first.context is not None and second.context is not None
    assert first.context.section(RedirectionSection) is second.context.section(RedirectionSection)


def test_stage_harness() -> None:
    ctx = make_context("GET", "/old/x?y=1", settings={"redirection": rules(("/old/*", "/n/$1"))})
    assert run_stage(HttpRedirection(), Stage.MAP_REQUEST_HANDLER, ctx) is FINISH
    assert ctx.response.status == 302
    assert ctx.response.header(b"location") == b"/n/x?y=1"


def test_subscription() -> None:
    (sub,) = HttpRedirection.subscriptions
    assert sub.stage is Stage.MAP_REQUEST_HANDLER
    assert sub.priority.name == "HIGH"


def test_every_setting_is_explained() -> None:
    for cls in (RedirectionSection, RedirectRule):
        notes = field_notes(cls)
        assert all(notes.get(name) for name in cls.__struct_fields__), cls
