"""Configuration writes of the admin API: set (or delete) a section at a path.

How this works
--------------
A write names a section and a level: the server file (no site, no path), or a
URL path of a site, whose folder's ``web.toml`` is the file that owns the
settings of that level (created if there is none). Then, in order, and under
one lock so two writes never interleave:

1. The file's version (the SHA-256 of its bytes) is compared with the one the
   write was made against, if it says one: another is a conflict (409).
2. The new text is the old one edited with tomlkit: the section's table becomes
   the given one, keys left as they were keep their lines and comments, and the
   rest of the file is untouched byte for byte.
3. The configuration is built with the new text, without writing it: the
   server file's through ``master.load(read=False)``, a ``web.toml`` read from
   memory (``config.tree.overlaid``). Any mistake refuses the write with the
   errors ``colonnade check`` would print (file:line: key); a section locked by
   the server file's ``[lock]`` is refused with 403.
4. Only then is the file replaced (atomically, keeping its mode) and the change
   applied live, as a SIGHUP or the file watcher would: a server file reload,
   or every worker re-reading its ``web.toml`` files. A reload that fails now
   puts the old bytes back.
5. Every write, done or refused, goes to the audit log with who asked, the file,
   the section, and the old and new tables with secrets masked (``audit.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from colonnade.config.load import SERVER_KEYS
from colonnade.config.sections import WEB_TOML, Section
from colonnade.config.tree import RESERVED, overlaid, parse_toml
from colonnade.errors import ConfigError, ModuleError, combined, each_error
from colonnade.pools import audit
from colonnade.pools.control import Command
from colonnade.pools.workers import SETTLE_WAIT

if TYPE_CHECKING:
    from colonnade.pools.master import Master

#: A section name a write may give: a top-level table of the file.
_SECTION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The server file's own sections a write may give: ``server``, ``pools`` (every
#: pool), ``pools.NAME`` (one pool) and ``sites.NAME`` (the ``[[sites]]`` entry of
#: that name). ``[lock]`` and ``[admin]`` never: who may write what, and how to sign
#: in, are not the API's to change.
_SERVER_SECTION = re.compile(r"^(server|pools|pools\.[A-Za-z0-9_-]{1,64}|sites\.[^\s/\\]{1,128})$")
#: Keys whose values the audit log and the API never show.
_SECRET = re.compile(r"(?i)(password|passphrase|secret|token|private_key|api_key|credential)")
#: What a masked secret reads as; written back unchanged, it keeps the secret.
HIDDEN = "(hidden)"
#: What a lock refusal says (engine/build.py).
_LOCKED = "locked by the server configuration"
#: Where a lock is held while a write is checked and made, per master.
_LOCK_ATTR = "_config_write_lock"


class Target(NamedTuple):
    """The file that owns the settings of a level."""

    file: str
    level: str  # "server" or "site/url-path"
    server: bool


def version_of(data: bytes) -> str:
    """A file's version: what a write says it was made against."""
    return hashlib.sha256(data).hexdigest()


def target(master: Master, command: Command) -> Target:
    """The file of the level ``command`` names; ConfigError if there is none."""
    if command.site is None and command.path is None:
        file = master.source.file
        if file is None:
            raise ConfigError("this server runs without a server file (no -c): nothing to write")
        return Target(file, "server", True)
    path = command.path or "/"
    if (
        not path.startswith("/")
        or any(part in (".", "..") for part in path.split("/"))
        or "//" in path
        or "\\" in path
        or "\0" in path
    ):
        raise ConfigError(f"{path!r} is not a normalised URL path")
    engine = master.engine()
    site = next((s for s in engine.sites if command.site in (None, s.name)), None)
    if site is None:
        raise ConfigError(f"no site named {command.site!r}")
    runtime = site.app_for(path)
    if runtime is None:
        raise ConfigError(f"no application of site {site.name!r} serves {path!r}")
    folder = runtime.app.map_path(path.rstrip("/") or "/")
    real = os.path.realpath(folder)
    if not os.path.isdir(real) or not runtime.app.contains(real):
        raise ConfigError(f"{path} is no folder of site {site.name!r} ({folder})")
    return Target(os.path.join(folder, WEB_TOML), f"{site.name}{path}", False)


def _read(file: str) -> bytes | None:
    try:
        with open(file, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def describe(master: Master, command: Command) -> dict[str, Any]:
    """``config_file``: the file that owns a level, its version and its sections
    (secrets masked): what a write is made against."""
    try:
        found = target(master, command)
    except ConfigError as exc:
        return {"ok": False, "error": str(exc), "status": 404}
    data = _read(found.file)
    sections: dict[str, Any] = {}
    if data is not None:
        try:
            doc, _ = parse_toml(data, found.file)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "status": 422}
        reserved = SERVER_KEYS if found.server else RESERVED
        sections = {
            k: mask(master, k, v)
            for k, v in doc.items()
            if k not in reserved and isinstance(v, dict)
        }
        if found.server:
            sections.update(_own_sections(doc))
    return {
        "ok": True,
        "file": found.file,
        "level": found.level,
        "exists": data is not None,
        "version": version_of(data or b""),
        "sections": sections,
    }


async def write(master: Master, command: Command) -> dict[str, Any]:
    """``config_set``: check and make one write; the reply, with its HTTP status."""
    lock: asyncio.Lock | None = getattr(master, _LOCK_ATTR, None)
    if lock is None:
        lock = asyncio.Lock()
        setattr(master, _LOCK_ATTR, lock)
    async with lock:
        reply, what = await _write(master, command)
    what["version"] = reply.get("version")
    audit.record(master, command.who, "delete" if command.delete else "set", what, reply)
    return reply


async def _write(master: Master, command: Command) -> tuple[dict[str, Any], dict[str, Any]]:
    audit: dict[str, Any] = {"section": command.section, "site": command.site, "path": command.path}
    section = command.section or ""
    try:
        found = target(master, command)
    except ConfigError as exc:
        return {"ok": False, "error": str(exc), "status": 404}, audit
    audit["file"] = found.file
    if not writable(section, found.server):
        error = f"{section!r} is not a section this API writes"
        return {"ok": False, "error": error, "status": 400}, audit
    if command.values is None and not command.delete:
        return {"ok": False, "error": "give the section's values", "status": 400}, audit
    old = _read(found.file)
    current = version_of(old or b"")
    if command.version is not None and command.version != current:
        return {
            "ok": False,
            "error": f"{found.file} changed since version {command.version}: read it again",
            "version": current,
            "status": 409,
        }, audit
    try:
        new, before = edit(old or b"", found.file, section, command.values, command.delete)
    except ConfigError as exc:
        return _refused(exc), audit
    audit["old"] = mask(master, section, before)
    audit["new"] = None if command.delete else mask(master, section, command.values or {})
    if new == (old or b""):
        return {
            "ok": True,
            "message": "nothing to change",
            "file": found.file,
            "version": current,
        }, audit
    loop = asyncio.get_running_loop()
    try:
        if found.server:
            await loop.run_in_executor(None, _check_server, master, new)
        else:
            await loop.run_in_executor(None, _check_dir, master, found.file, new)
    except (ConfigError, ModuleError) as exc:
        return _refused(exc), audit
    _replace(found.file, new, old)
    if not await _apply(master, found, command.who):
        _restore(found.file, old)
        error = "the new configuration could not be applied (see the server log): file restored"
        return {"ok": False, "error": error, "status": 500}, audit
    generation = master.generation
    settled, why = await master.workers.settle(generation, SETTLE_WAIT)
    if settled is False:
        # A worker refused it, or one started with it failed: back to the old
        # file, applied again, so master and workers serve what they did before.
        _restore(found.file, old)
        if await _apply(master, found, f"{command.who}: restoring after a failed apply"):
            # Answer once the previous configuration serves again.
            await master.workers.settle(master.generation, SETTLE_WAIT)
        return {
            "ok": False,
            "error": "the workers could not apply the new configuration: "
            + "; ".join(why)
            + ". The file is restored and the previous configuration applied again",
            "errors": why,
            "status": 500,
        }, audit
    done = f"{'deleted' if command.delete else 'set'} [{section}] in {found.file}"
    reply = {
        "ok": True,
        "applied": bool(settled),
        "message": done,
        "file": found.file,
        "version": version_of(new),
        "generation": generation,
    }
    if settled is None:
        # Written and switched to by the master; some workers have not said so yet.
        reply["message"] = f"{done}; not yet confirmed after {SETTLE_WAIT:g} s by: {', '.join(why)}"
        reply["pending"] = why
        reply["status"] = 202
    return reply, audit


async def _apply(master: Master, found: Target, who: str) -> bool:
    """Apply the file just written: the server file by a reload (False: refused),
    a ``web.toml`` by every worker re-reading its files."""
    if found.server:
        return await master.reload(f"admin API, {who}")
    await master.reread(found.file)
    return True


def writable(section: str, server: bool) -> bool:
    """Whether a write may name ``section`` in the server file (``server``) or a
    ``web.toml``: a module section, or one of the server file's own
    (:data:`_SERVER_SECTION`)."""
    if server and _SERVER_SECTION.match(section):
        return True
    return bool(_SECTION.match(section)) and section not in (SERVER_KEYS if server else RESERVED)


def _own_sections(doc: dict[str, Any]) -> dict[str, Any]:
    """The server file's own sections a write may name, as a read shows them."""
    found: dict[str, Any] = {}
    for key in ("server", "pools"):
        if isinstance(doc.get(key), dict):
            found[key] = mask_keys(doc[key])
    for site in doc.get("sites") or ():
        if isinstance(site, dict) and isinstance(site.get("name"), str):
            found[f"sites.{site['name']}"] = mask_keys(site)
    return found


def _locate(doc: Any, section: str) -> tuple[Any, Any]:
    """Where ``section`` lives in ``doc``: (its container, its key there). A site's
    key is its index in the ``[[sites]]`` array (None: no site of that name yet)."""
    if section.startswith("sites."):
        name = section[len("sites.") :]
        sites = doc.get("sites")
        index = next(
            (i for i, site in enumerate(sites or ()) if _plain(site.get("name")) == name), None
        )
        return sites, index
    if section.startswith("pools."):
        return doc.get("pools"), section[len("pools.") :]
    return doc, section


def edit(
    data: bytes, file: str, section: str, values: dict[str, Any] | None, delete: bool
) -> tuple[bytes, dict[str, Any]]:
    """``data`` with ``section`` set to ``values`` (or deleted); and the table it
    had. Keys that keep their value keep their line, comments included; so do the
    keys of a sub-table (``[server.limits]``) and of an array of tables
    (``[[sites.applications]]``) whose entries stay as many."""
    import tomlkit
    import tomlkit.exceptions

    parse_toml(data, file)  # a file that is not TOML: its located error
    try:
        doc = tomlkit.parse(data.decode("utf-8"))
    except tomlkit.exceptions.TOMLKitError as exc:  # pragma: no cover - parse_toml said OK
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    if section.startswith("sites.") and values is not None and not delete:
        # A site is named by its entry: a write keeps the name the path gives.
        values = {"name": section[len("sites.") :], **values}
        values["name"] = section[len("sites.") :]
    hidden = [k for k, v in (values or {}).items() if v == HIDDEN]
    container, key = _locate(doc, section)
    if section.startswith("pools.") and container is None and not delete:
        doc["pools"] = container = tomlkit.table(is_super_table=True)
    if container is None or key is None:
        existing = None
    else:
        existing = container[key] if isinstance(key, int) else container.get(key)
    unknown = [k for k in hidden if not isinstance(existing, dict) or k not in existing]
    if unknown:
        raise ConfigError(
            f"{HIDDEN!r} keeps a secret that is set; {section}.{unknown[0]} has none here",
            file=file,
            key=f"{section}.{unknown[0]}",
        )
    before = existing.unwrap() if existing is not None and hasattr(existing, "unwrap") else {}
    if delete:
        if existing is None:
            raise ConfigError(f"there is no [{section}] to delete", file=file, key=section)
        del container[key]
    elif isinstance(existing, dict) and not isinstance(existing, tomlkit.items.InlineTable):
        assert values is not None
        _merge(existing, values)
    else:
        assert values is not None
        table = tomlkit.table()
        for name, value in values.items():
            table[name] = _item(value)
        if section.startswith("sites."):
            if container is None:
                doc["sites"] = container = tomlkit.aot()
            if key is None:
                container.append(table)
            else:
                container[key] = table
        else:
            if existing is not None:
                del container[key]
            container[key] = table
    try:
        text = tomlkit.dumps(doc)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot be written as TOML: {exc}", key=section) from None
    return text.encode("utf-8"), before if isinstance(before, dict) else {}


def _merge(table: Any, values: dict[str, Any]) -> None:
    """Make ``table`` (a tomlkit table) hold ``values``, touching only what changes."""
    import tomlkit

    for key in [k for k in table if k not in values]:
        del table[key]
    for key, value in values.items():
        current = table.get(key)
        if value == HIDDEN and key in table:
            continue  # what a read showed masked, sent back: the secret stays
        if _plain(current) == value and key in table:
            continue
        if (
            isinstance(current, tomlkit.items.Table)
            and not isinstance(current, tomlkit.items.InlineTable)
            and isinstance(value, dict)
        ):
            _merge(current, value)  # [server.limits]: its lines stay where they are
        elif (
            isinstance(current, tomlkit.items.AoT)
            and isinstance(value, list)
            and len(value) == len(current)
            and all(isinstance(v, dict) for v in value)
        ):
            for entry, wanted in zip(current, value, strict=True):
                _merge(entry, wanted)
        elif isinstance(current, tomlkit.items.AoT) and isinstance(value, list):
            aot = tomlkit.aot()
            for wanted in value:
                entry = tomlkit.table()
                _merge(entry, wanted)
                aot.append(entry)
            table[key] = aot
        else:
            table[key] = _item(value)


def _item(value: Any) -> Any:
    """A value as TOML writes it in a section: a table as an inline table (``set =
    { X-A = "1" }``, one line that keeps its comment), not a sub-table header."""
    import tomlkit

    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        for key, inner in value.items():
            inline[key] = _item(inner)
        return inline
    if isinstance(value, list):
        return [_item(v) for v in value]
    return value


def _plain(item: Any) -> Any:
    return item.unwrap() if hasattr(item, "unwrap") else item


def _check_server(master: Master, new: bytes) -> None:
    """Build the configuration with the server file's text ``new``: as a reload
    would, and refusing what would newly break a ``web.toml``."""
    from colonnade.pools.master import load

    source = msgspec.structs.replace(master.source, text=new.decode("utf-8"))
    loaded = load(source, read=False)
    before = {b.file for b in master.loaded.broken} if master.loaded is not None else set()
    errors = [e for b in loaded.broken if b.file not in before for e in each_error(b.error)]
    if errors:
        raise combined(errors)


def _check_dir(master: Master, file: str, new: bytes) -> None:
    """Build the configuration with ``file`` (a ``web.toml``) holding ``new``."""
    from colonnade.pools.master import check

    with overlaid({file: new}):
        engine = check(master.config, master.registry)
    errors = [e for b in engine.broken if b.file == file for e in each_error(b.error)]
    if errors:
        raise combined(errors)


def _refused(exc: ConfigError | ModuleError) -> dict[str, Any]:
    errors = [str(e) for e in each_error(exc)] if isinstance(exc, ConfigError) else [str(exc)]
    locked = all(_LOCKED in e for e in errors)
    return {
        "ok": False,
        "error": "; ".join(errors),
        "errors": errors,
        "status": 403 if locked else 422,
    }


def _replace(file: str, new: bytes, old: bytes | None) -> None:
    """Write ``new`` to ``file`` in one step (a reader sees the old or the new
    bytes, never part), keeping the old file's mode (and owner)."""
    folder = os.path.dirname(file)
    info = os.stat(file) if old is not None else None
    fd, temp = tempfile.mkstemp(prefix=".web.toml-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, info.st_mode & 0o7777 if info is not None else 0o644)
        if info is not None and os.geteuid() == 0:
            # A master running as root keeps the file its owner's.
            os.chown(temp, info.st_uid, info.st_gid)
        os.replace(temp, file)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _restore(file: str, old: bytes | None) -> None:
    if old is None:
        os.unlink(file)
    else:
        _replace(file, old, old)


# -- masking and the audit log ----------------------------------------------------------


def mask_keys(table: dict[str, Any]) -> dict[str, Any]:
    """``table`` with the values of keys named like a secret hidden, at any depth."""
    return {k: _masked(k, v, None) for k, v in table.items()}


def mask(master: Master, section: str, table: dict[str, Any]) -> dict[str, Any]:
    """``table`` of ``section`` with its secrets hidden: keys named like a secret,
    and what the section's own ``shown`` hides (a password in a URL)."""
    cls = _section_class(master, section)
    instance: Section | None = None
    if cls is not None:
        try:
            instance = cls()
        except (TypeError, msgspec.ValidationError):
            instance = None
    return {k: _masked(k, v, instance) for k, v in table.items()}


def _masked(key: str, value: Any, instance: Section | None) -> Any:
    if isinstance(value, dict):
        return {k: _masked(k, v, None) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(key, v, None) if isinstance(v, dict) else v for v in value]
    if _SECRET.search(key) and not key.endswith(("_file", "_env")):
        return HIDDEN
    if instance is not None:
        return instance.shown(key, value)
    return value


def _section_class(master: Master, section: str) -> type[Section] | None:
    if master.loaded is None:
        return None
    for runtime in master.engine().runtimes:
        for module in runtime.modules:
            cls = module.section
            if cls is not None and cls.key == section:
                return cls
    return None


# -- what the console's tree and per-key form need --------------------------------------


def tree(master: Master, command: Command) -> dict[str, Any]:
    """``config_tree``: site → application → each folder with a ``web.toml``
    (its URL path, file, sections, and the error of one that cannot be used)."""
    engine = master.engine()
    from colonnade.core.urlpath import covers

    sites = []
    for site in engine.sites:
        if command.site not in (None, site.name):
            continue
        apps = sorted((rt.app for rt in site.apps), key=lambda app: app.path)
        rows = []
        for app in apps:
            # The levels below this application's path and not below a deeper one's.
            deeper = [a.path for a in apps if a.path != app.path and covers(app.path, a.path)]
            folders = [
                {
                    "path": level.path,
                    "file": level.source,
                    "sections": sorted(level.raw),
                    "broken": None if level.broken is None else str(level.broken),
                }
                for level in app.levels
                if os.path.basename(level.source) == WEB_TOML
                and covers(app.path, level.path)
                and not any(covers(d, level.path) for d in deeper)
            ]
            rows.append({"path": app.path, "pool": app.pool, "root": app.root, "folders": folders})
        sites.append({"name": site.name, "applications": rows})
    if command.site is not None and not sites:
        raise ConfigError(f"no site named {command.site!r}")
    return {"sites": sites}


def schema(master: Master, command: Command) -> dict[str, Any]:
    """``config_schema``: the keys of ``section`` as a form shows them: each key's
    type (``boolean``, ``integer``, ``number``, ``string``, ``enum``, or ``json``
    for lists, tables and the rest), whether it may be null, its bounds, choices
    and default."""
    import msgspec.inspect as mi

    from colonnade.config.schema import PoolConfig, ServerSettings, SiteConfig

    section = command.section or ""
    own: dict[str, type[msgspec.Struct]] = {"server": ServerSettings}
    cls: type[msgspec.Struct] | None
    if section.startswith("pools."):
        cls = PoolConfig
    elif section.startswith("sites."):
        cls = SiteConfig
    else:
        cls = own.get(section) or _section_class(master, section)
    if cls is None:
        raise ConfigError(f"no loaded module has a section [{section}]")
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return {"section": section, "keys": [_field(f) for f in info.fields]}


def _field(field: Any) -> dict[str, Any]:
    import msgspec.inspect as mi

    kind: Any = field.type
    nullable = False
    if isinstance(kind, mi.UnionType):
        inner = [t for t in kind.types if not isinstance(t, mi.NoneType)]
        nullable = len(inner) < len(kind.types)
        kind = inner[0] if len(inner) == 1 else kind
    out: dict[str, Any] = {"key": field.encode_name, "nullable": nullable}
    if isinstance(kind, mi.BoolType):
        out["type"] = "boolean"
    elif isinstance(kind, mi.IntType | mi.FloatType):
        out["type"] = "integer" if isinstance(kind, mi.IntType) else "number"
        for bound in ("ge", "le", "gt", "lt"):
            if getattr(kind, bound, None) is not None:
                out[bound] = getattr(kind, bound)
    elif isinstance(kind, mi.StrType):
        out["type"] = "string"
        if kind.pattern is not None:
            out["pattern"] = kind.pattern
    elif isinstance(kind, mi.LiteralType):
        out["type"] = "enum"
        out["choices"] = list(kind.values)
    else:
        out["type"] = "json"
    default = field.default
    if default is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
        default = field.default_factory()
    if default is not msgspec.NODEFAULT:
        out["default"] = msgspec.to_builtins(default)
    return out
