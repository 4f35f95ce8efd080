"""Configuration errors in plain words: "did you mean", allowed values, what a pattern
wants, always the key, and every mistake of a file in one run."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from colonnade.config.load import load_file
from colonnade.config.schema import ServerConfig
from colonnade.config.sections import Section, decode_section
from colonnade.config.validation import convert, describe_type
from colonnade.core.registry import Registry
from colonnade.engine import Engine
from colonnade.errors import ConfigError, ConfigErrors, each_error
from colonnade.modules.standard import BUILTIN
from tests.config.test_errors import HEAD


def errors_of(tmp_path: Path, server: str, web: str | None = None) -> list[str]:
    """Every error the tree is refused with (file:line: key: message), in order."""
    (tmp_path / "www" / "sub").mkdir(parents=True, exist_ok=True)
    (tmp_path / "colonnade.toml").write_text(server)
    if web is not None:
        (tmp_path / "www" / "sub" / "web.toml").write_text(web)
    with pytest.raises(ConfigError) as info:
        Engine(load_file(str(tmp_path / "colonnade.toml")), Registry.standard(BUILTIN))
    return [
        f"{os.path.relpath(e.file or '', tmp_path)}:{e.line}: {e.key}: {e.message}"
        for e in each_error(info.value)
    ]


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (
            HEAD + "\n[server.limits]\nmax_conections = 5\n",
            "colonnade.toml:10: server.limits.max_conections: unknown key "
            "(did you mean 'max_connections'?)",
        ),
        (
            HEAD + '\n[lock]\ndefault_document = "Deny"\n',
            "colonnade.toml:10: lock.default_document: 'Deny' is not one of: 'allow', 'deny' "
            "(did you mean 'deny'?)",
        ),
        (
            HEAD + '\n  [[sites.applications]]\n  path = "api"\n',
            "colonnade.toml:10: sites[0].applications[0].path: 'api': expected a URL path: "
            "'/' and then no spaces",
        ),
        (
            HEAD + '\n[pools.api]\nstart = "allways"\n',
            "colonnade.toml:10: pools.api.start: 'allways' is not one of: 'on_demand', 'always' "
            "(did you mean 'always'?)",
        ),
        (
            HEAD + '\n[pools.api]\nsandbox = "maybe"\n',
            "colonnade.toml:10: pools.api.sandbox: 'maybe' is not one of: true, false, "
            "'best-effort'",
        ),
        (
            HEAD + '\n[pools.api]\nrecycling = { schedule = ["3:00"] }\n',
            "colonnade.toml:10: pools.api.recycling.schedule[0]: '3:00': expected a time of day, "
            "'HH:MM' or 'HH:MM:SS' (00:00 to 23:59:59)",
        ),
        (
            HEAD + '\n[request_filtering]\nverbs = { "GE T" = false }\n',
            "colonnade.toml:10: request_filtering.verbs.GE T: 'GE T': expected an HTTP method "
            "such as 'GET' (an HTTP token)",
        ),
        (
            HEAD.replace('"handler.static"]', '"handler.statc"]'),
            "colonnade.toml:2: server.modules[2]: no module named 'handler.statc' is installed "
            "(did you mean 'handler.static'?)",
        ),
        (
            HEAD + "\n[default_documents]\nenabled = false\n",
            "colonnade.toml:9: default_documents: no enabled module owns this section "
            "(did you mean 'default_document'?)",
        ),
        (
            HEAD + "\n[directory_browse]\nenabled = true\n",
            "colonnade.toml:9: directory_browse: no enabled module owns this section: it "
            "belongs to 'static.directory_listing', which is not in server.modules",
        ),
    ],
)
def test_a_mistake_in_plain_words_with_its_key(tmp_path: Path, server: str, expected: str) -> None:
    assert errors_of(tmp_path, server) == [expected]


def test_every_mistake_of_a_file_in_one_run(tmp_path: Path) -> None:
    server = (
        HEAD.replace('root = "www"', 'root = "www"\npool = "web"\nhost_names = "a"')
        + '\n  [[sites.applications]]\n  path = "/api"\n  interface = "asgii"\n'
        + '\n[[sites]]\nname = ""\nbindings = ["http://127.0.0.1:8081"]\n'
        + "\n[server.timeouts]\nkeep_alive = -1\nheadr = 3\n"
        + '\n[pools.web]\nworkers = "2"\n'
    )
    assert errors_of(tmp_path, server) == [
        "colonnade.toml:9: sites[0].host_names: Expected `array`, got `str`",
        "colonnade.toml:13: sites[0].applications[0].interface: 'asgii' is not one of: "
        "'auto', 'asgi', 'wsgi' (did you mean 'asgi'?)",
        "colonnade.toml:16: sites[1].name: Expected `str` of length >= 1",
        "colonnade.toml:20: server.timeouts.keep_alive: Expected `float` > 0.0",
        "colonnade.toml:21: server.timeouts.headr: unknown key (did you mean 'header'?)",
        "colonnade.toml:24: pools.web.workers: Expected `int`, got `str`",
    ]


def test_every_mistake_of_a_web_toml_in_one_run(tmp_path: Path) -> None:
    web = (
        "[default_document]\nenabeld = true\nfiles = 3\n"
        "\n[request_filtering]\nmax_url = -1\n"
        "\n[modules]\nad = []\n"
    )
    (tmp_path / "www" / "sub").mkdir(parents=True)
    (tmp_path / "www" / "sub" / "web.toml").write_text(web)
    (tmp_path / "colonnade.toml").write_text(HEAD)
    engine = Engine(load_file(str(tmp_path / "colonnade.toml")), Registry.standard(BUILTIN))
    (broken,) = engine.broken
    assert [(e.line, e.key, e.message) for e in each_error(broken.error)] == [
        (9, "modules.ad", "unknown key (did you mean 'add'?)"),
    ]
    # The structure first (it decides what the rest means), then the sections.
    (tmp_path / "www" / "sub" / "web.toml").write_text(web.replace("ad = []", "add = []"))
    engine = Engine(load_file(str(tmp_path / "colonnade.toml")), Registry.standard(BUILTIN))
    (broken,) = engine.broken
    assert [(e.line, e.key, e.message) for e in each_error(broken.error)] == [
        (2, "default_document.enabeld", "unknown key (did you mean 'enabled'?)"),
        (3, "default_document.files", "Expected `array`, got `int`"),
        (6, "request_filtering.max_url", "Expected `int` >= 1"),
        (8, "modules", "modules and handlers can change only at an application's root"),
    ]


class Nested(msgspec.Struct, forbid_unknown_fields=True):
    level: typing.Literal["low", "high"] = "low"


class Probe(Section, frozen=True):
    key = "probe"
    modes: dict[str, typing.Literal["on", "off"]] = {}
    nested: Nested | None = None
    items: list[Nested] = []


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        # msgspec says "$.modes[...]": which entry? The key says.
        ({"modes": {"a": "on", "b": "onn"}}, "probe.modes.b", "'onn' is not one of: 'on', 'off'"),
        ({"nested": {"levle": "low"}}, "probe.nested.levle", "(did you mean 'level'?)"),
        ({"items": [{}, {"level": "hi"}]}, "probe.items[1].level", "'hi' is not one of"),
    ],
)
def test_the_key_of_a_table_entry_and_of_a_nested_table(
    raw: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        decode_section(Probe, raw)
    assert info.value.key == key
    assert message in info.value.message


def test_several_errors_are_one_exception_listing_each() -> None:
    with pytest.raises(ConfigErrors) as info:
        convert({"modes": {"a": 1}, "items": [{"level": 2}], "x": 0}, Probe, prefix="probe")
    assert [e.key for e in info.value.errors] == [
        "probe.modes.a",
        "probe.items[0].level",
        "probe.x",
    ]
    assert str(info.value).count("\n") == 2  # one line each


def _patterns(tp: Any, seen: set[int]) -> list[Any]:
    """Every ``Annotated`` string type with a pattern reachable from ``tp``."""
    found = []
    if typing.get_origin(tp) is typing.Annotated:
        base, *metas = typing.get_args(tp)
        if any(isinstance(m, msgspec.Meta) and m.pattern for m in metas):
            found.append(tp)
        return found + _patterns(base, seen)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if id(tp) in seen:
            return []
        seen.add(id(tp))
        for field in msgspec.structs.fields(tp):
            found += _patterns(field.type, seen)
        return found
    for arg in typing.get_args(tp):
        found += _patterns(arg, seen)
    return found


def test_every_pattern_of_the_schema_says_in_words_what_it_wants() -> None:
    registry = Registry.standard(BUILTIN, with_entry_points=False)
    roots: list[Any] = [ServerConfig]
    roots += [registry.load(m).section for m in registry.ids() if registry.load(m).section]
    seen: set[int] = set()
    patterns = [p for root in roots for p in _patterns(root, seen)]
    assert len(patterns) >= 10
    missing = [p for p in patterns if not describe_type(p)]
    assert missing == []
