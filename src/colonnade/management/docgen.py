"""Generate ``docs/configuration.md`` from the schemas, so the reference cannot drift.

Every table of the server file and every module's section is a ``msgspec.Struct``;
this walks their fields (type, default, range from ``msgspec.inspect``) and takes
each field's meaning from its attribute docstring or the comment beside it in the
source. ``colonnade config docs`` prints the page; a test compares it with the
committed file.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap

import msgspec
import msgspec.inspect as mi

from colonnade.config import schema
from colonnade.config.sections import Section, Where
from colonnade.core.registry import Registry

_TOP = (
    ("[server]", schema.ServerSettings, "Settings every site of the server shares."),
    ("[server.limits]", schema.Limits, ""),
    ("[server.timeouts]", schema.Timeouts, ""),
    ("[server.http2]", schema.Http2, ""),
    ("[server.response_cache]", schema.ResponseCache, ""),
    ("[server.tls]", schema.TlsSettings, ""),
    ("[pools.NAME]", schema.PoolConfig, ""),
    ("[pools.NAME.recycling]", schema.Recycling, ""),
    ("[pools.NAME.rapid_fail]", schema.RapidFail, ""),
    ("[pools.NAME.limits]", schema.PoolLimits, ""),
    ("[[sites]]", schema.SiteConfig, ""),
    ("[[sites.applications]]", schema.ApplicationConfig, ""),
    ("[[sites.virtual_directories]]", schema.VirtualDirectoryConfig, ""),
    (
        "[sites.tls]",
        schema.CertificateFiles,
        "A site's certificate on its `https://` bindings (for its host names, or for "
        "every name when it is the port's default site), or a certificate store of its "
        "own; `passphrase_*` unlock their keys. See [TLS](tls.md).",
    ),
    ("[[handlers]]", schema.HandlerMapping, ""),
    ("[redis]", schema.RedisSettings, ""),
    ("[farms.NAME]", schema.FarmSettings, ""),
    ("[[farms.NAME.members]]", schema.FarmMember, ""),
    ("[farms.NAME.health]", schema.FarmHealth, ""),
    ("[admin]", schema.AdminSettings, ""),
    (
        "[admin.tls]",
        schema.CertificateFiles,
        "The certificate of an `https://` admin binding; `client_ca` lets client "
        "certificates it issued sign in. See [Operations](operations.md#admin-api).",
    ),
)


def field_notes(cls: type) -> dict[str, str]:
    """Field name → its documentation (attribute docstring, or adjacent comments)."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, msgspec.Struct) or klass.__module__.startswith("msgspec"):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for i, node in enumerate(body):
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            name = node.target.id
            text = ""
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                text = inspect.cleandoc(nxt.value.value)
            else:
                above: list[str] = []
                j = node.lineno - 2
                while j >= 0 and lines[j].strip().startswith("#"):
                    above.insert(0, lines[j].strip().lstrip("#").strip())
                    j -= 1
                line = lines[node.lineno - 1]
                if "#" in line and not above:
                    above.append(line.split("#", 1)[1].strip())
                text = " ".join(above)
            notes[name] = " ".join(text.split()).replace("``", "`")
    # Fields explained in the class docstring's bullet list ("- ``name``: ...").
    for bullet in re.split(r"\n\s*- ", "\n" + (inspect.getdoc(cls) or ""))[1:]:
        text = " ".join(bullet.split()).replace("``", "`")
        for name in re.findall(r"`(\w+)`", text):
            if not notes.get(name):
                notes[name] = text
    return notes


def type_name(t: mi.Type) -> str:
    """A short readable name for a msgspec type, with its range."""
    if isinstance(t, mi.Metadata):
        inner = type_name(t.type)
        description = (t.extra_json_schema or {}).get("description")
        return f"{inner}: {description}" if description else inner
    if isinstance(t, mi.IntType | mi.FloatType):
        name = "integer" if isinstance(t, mi.IntType) else "number"
        bounds = []
        if t.ge is not None:
            bounds.append(f"≥ {t.ge}")
        if t.gt is not None:
            bounds.append(f"> {t.gt}")
        if t.le is not None:
            bounds.append(f"≤ {t.le}")
        if t.lt is not None:
            bounds.append(f"< {t.lt}")
        return f"{name} ({', '.join(bounds)})" if bounds else name
    simple = {mi.StrType: "string", mi.BoolType: "boolean", mi.AnyType: "any", mi.NoneType: "none"}
    for kind, name in simple.items():
        if isinstance(t, kind):
            return name
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return f"array of {type_name(t.item_type)}"
    if isinstance(t, mi.DictType):
        return f"table of {type_name(t.key_type)} → {type_name(t.value_type)}"
    if isinstance(t, mi.LiteralType):
        return " \\| ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in t.values)
    if isinstance(t, mi.UnionType):
        return " or ".join(type_name(x) for x in t.types)
    if isinstance(t, mi.StructType):
        return "table"
    return type(t).__name__.replace("Type", "").lower()


def _default(field: mi.Field) -> str:
    if field.required:
        return "required"
    if field.default is not msgspec.NODEFAULT:
        value = field.default
    elif field.default_factory is not msgspec.NODEFAULT:
        value = field.default_factory()
    else:  # pragma: no cover
        return ""
    if isinstance(value, msgspec.Struct):
        return "(table)"
    return f"`{msgspec.json.encode(msgspec.to_builtins(value)).decode()}`"


def table(cls: type[msgspec.Struct]) -> list[str]:
    """The markdown rows for one struct."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    notes = field_notes(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for field in info.fields:
        if isinstance(field.type, mi.StructType):
            continue  # documented as its own table
        note = notes.get(field.name, "").replace("|", "\\|")
        rows.append(
            f"| `{field.encode_name}` | {type_name(field.type)} | {_default(field)} | {note} |"
        )
    return rows


def _doc(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(cls.__name__ + "("):
        return ""  # msgspec's generated signature, not a description
    return doc.replace("``", "`")


def _where(section: type[Section]) -> list[str]:
    """Where the section and its keys may be set, where that is not everywhere."""
    lines = []
    if section.allowed != Where.ANYWHERE:
        lines.append(f"- The section may be set {section.allowed.describe()} only.")
    for dotted, where in section.allowed_keys.items():
        if where != section.allowed:
            lines.append(f"- `{dotted}` may be set {where.describe()} only.")
    if section.locked:
        lines.append('- Locked: a `web.toml` may set it only where `[lock]` says `"allow"`.')
    return [*lines, ""] if lines else []


def render(registry: Registry) -> str:
    """The whole configuration reference page."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `colonnade config docs` from the schemas; do not edit by hand. -->",
        "",
        "The server file is `colonnade.toml`; any content folder may hold a `web.toml`",
        "that overrides module sections for its URL subtree (see",
        "[architecture](architecture.md) and the rules below). Decoding is strict: an",
        "unknown key, a wrong type or a value out of range is an error naming the file,",
        'the line and the dotted key, in plain words ("did you mean", the allowed',
        "values); every mistake of a tree is reported in one run. `colonnade check`",
        "validates a whole tree exactly as `serve` does (and also fails on a `web.toml`",
        "that `serve` confines, below), and `colonnade config show --site S --path P`",
        "prints the effective settings of a URL with the file each value came from,",
        "and its application's handler mappings in the order tried, each with the file",
        "and line that added it.",
        "",
        "## How levels combine",
        "",
        "- Levels, root first: the server file's module sections, then per URL path the",
        "  `[[locations]]` entries and the `web.toml` files (at the same path the",
        "  `web.toml` comes after the location). A key a level does not set keeps the",
        "  parent's value, else the section's default.",
        "- Collections: a value replaces the parent's list or table, unless it is a table",
        '  of operations: `files = { add = ["home.html"], prepend = ["a.html"],',
        '  remove = ["index.htm"], clear = true }` (tables of tables are keyed by their',
        "  `id`/`name`/`path`/`extension`/`key`/`address`/`domain` field; other",
        "  tables by all their values).",
        '- `[lock]` in the server file: `section = "deny"` or `"section.key" = "deny"`',
        '  forbids `web.toml` files to set it (the error names both files); `"allow"`',
        "  opens a section that is locked by default.",
        "- Where a setting may be set: each level is of one kind, by where it sits: the",
        "  *server* level (the server file's module sections), an *application* level",
        "  (the `web.toml` at an application's root, or a `[[locations]]` entry at its",
        "  path) or a *directory* level (below an application's root: a subfolder's or",
        "  a virtual directory's `web.toml`, or a location there). A setting read once",
        "  per application (a cache budget, a thread pool) may be set at the server and",
        "  application levels only; the sections below say so where it applies, and",
        "  setting it elsewhere is an error naming the file, line and key.",
        "- A `web.toml` at an application's root may also change the module list",
        "  (`[modules] add = [...], remove = [...], clear = true`) and prepend handler",
        "  mappings (`[[handlers]]`); a `[[locations]]` entry at an application's path",
        "  may prepend handler mappings too (`[[locations.handlers]]`).",
        '- `[[locations]]`: `path = "SITE/url/path"` (one site) or `"/url/path"` (every',
        "  site), plus section tables, e.g. `directory_browse = { enabled = true }`.",
        "- Also refused, as `serve` would otherwise start and serve nothing there: a",
        "  content folder (site, application or virtual directory root) that does not",
        "  exist, a location for a site that does not exist, two sites on one port that",
        "  answer the same host names (or both every host name), and a virtual directory",
        "  at an application's own path.",
        "- A `web.toml` that cannot be used (it does not parse, or sets what it may not)",
        "  is confined to its folder, as IIS confines a bad `web.config`: requests at and",
        "  below it are answered 500.19, with the file, line and key on the page for local",
        "  clients and in the log; the rest of the site serves. At an application's root",
        "  it takes the whole application down (it may have changed its modules). A",
        "  broken server file refuses the start.",
        "- A changed `colonnade.toml` or `web.toml` is picked up while serving (and on",
        "  SIGHUP): the new configuration is built whole first; a broken server file (or",
        "  application module code that no longer imports) is logged and the old",
        "  configuration keeps serving; a broken `web.toml` answers 500.19 in its folder",
        "  until a change fixes it.",
        "",
        "## The server file",
        "",
    ]
    for title, cls, extra in _TOP:
        out += [f"### `{title}`", ""]
        doc = extra or _doc(cls)
        if doc:
            out += [doc, ""]
        out += [*table(cls), ""]
    out += [
        "## Module sections",
        "",
        "Each section belongs to a module and is accepted only when that module is",
        "enabled (`[server] modules`).",
        "",
    ]
    for module_id in registry.ids():
        section = registry.load(module_id).section
        if section is None:
            continue
        out += [f"### `[{section.key}]` — module `{module_id}`", ""]
        doc = _doc(section) if issubclass(section, Section) else ""
        if doc:
            out += [doc, ""]
        out += _where(section)
        out += [*table(section), ""]
        out += _nested(section.key, section)
    return "\n".join(out).rstrip() + "\n"


def _nested(prefix: str, cls: type[msgspec.Struct]) -> list[str]:
    """Tables for the tables a section holds: a key whose value is a table of
    tables (``[fastcgi.applications.NAME]``) or an array of tables
    (``[[redirection.rules]]``), with the rows of their struct."""
    out: list[str] = []
    seen: dict[type, str] = {}  # a struct shown once; later keys point to it
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    for field in info.fields:
        t = field.type
        if isinstance(t, mi.DictType) and isinstance(t.value_type, mi.StructType):
            title, inner = f"[{prefix}.{field.encode_name}.NAME]", t.value_type.cls
        elif isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StructType):
            title, inner = f"[[{prefix}.{field.encode_name}]]", t.item_type.cls
        else:
            continue
        out += [f"#### `{title}`", ""]
        if inner in seen:
            out += [f"The same keys as `{seen[inner]}`.", ""]
            continue
        seen[inner] = title
        doc = _doc(inner)
        if doc:
            out += [doc, ""]
        out += [*table(inner), ""]
    return out
