"""The pool preflight: can a pool's user reach what its workers need?

How this works
--------------
A pool with ``user``/``group`` runs its workers as that identity. When the
identity cannot reach the interpreter, the application's folders or the files
its modules write, every worker dies at start and rapid-fail protection stops
the pool after a few rounds, with a reason that does not say why. The preflight
looks first. ``colonnade check`` reports each refusal as a configuration error on
the pool's ``user`` key (file, line, key, the path and the missing permission);
the master marks such a pool stopped with the reason instead of starting it
(``colonnade pools`` shows it; its requests are answered 503).

What a pool's workers need (:class:`Preflight`, built from a checked configuration):

- execute the interpreter the master starts them with (``sys.executable``: every
  folder on the way to it, and to the target of each symbolic link, is searched),
  and read the standard library, the environment's ``site-packages`` and the
  ``colonnade`` package;
- read and search the roots of the sites, applications and virtual directories
  the pool serves, and each of its Python applications' ``app_dir``;
- read the certificates, keys and passphrase files, and read and search the
  certificate stores, of the https ports it serves;
- write the files its modules write (:meth:`Section.written_paths
  <colonnade.config.sections.Section.written_paths>`: the access log), or the
  folder a missing one is created in;
- a sandboxed pool: read and write its private temp folder (before the master
  made it, as ``colonnade check`` sees it: search the folder it is made in).

Workers write no socket file: their control channel is an inherited socket pair
and the listening sockets are inherited too; the control socket is the master's
alone. There is nothing to check there.

Access is computed from the mode bits, as the kernel does without ACLs: the owner
class when the identity owns the path, else the group class when the path's group
is the identity's group or one of its supplementary groups, else other; search
(``x``) on every folder of a path, the access asked for on the path itself. Out of
scope: POSIX ACLs, capabilities other than root's, Linux security modules
(SELinux, AppArmor) and read-only mounts. A path refused by its mode bits that
carries an access ACL is not judged (the kernel decides when the worker starts),
so an ACL that grants access never makes the preflight refuse a pool. A path that
does not exist is not a permission problem and is left to the checks that own it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from colonnade.config.load import locate
from colonnade.config.schema import CertificateFiles, ServerConfig
from colonnade.errors import ConfigError
from colonnade.pools.config import app_pool
from colonnade.pools.sandbox import Identity

if TYPE_CHECKING:  # the master's preflight needs no engine: its child check made `needs`
    from colonnade.core.app import Application
    from colonnade.core.module import Module
    from colonnade.engine import Engine

#: Permission bits, in the order of a mode's ``rwx`` triplets; EXECUTE is search on a folder.
READ, WRITE, EXECUTE = 4, 2, 1

#: More symbolic links than this on one path: ELOOP, as the kernel counts.
_MAX_LINKS = 40
#: The folder a worker run as another user starts in (relative paths resolve there).
WORKER_CWD = "/"


class Refused(NamedTuple):
    """``identity`` may not ``missing`` (READ/WRITE/EXECUTE bits) on ``path``."""

    identity: Identity
    path: str
    missing: int
    info: os.stat_result

    def verbs(self) -> str:
        """``read and search``, ``read, write and search``: the refused permissions."""
        folder = stat.S_ISDIR(self.info.st_mode)
        words = [
            word
            for bit, word in (
                (READ, "read"),
                (WRITE, "write"),
                (EXECUTE, "search" if folder else "execute"),
            )
            if self.missing & bit
        ]
        return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]

    def where(self) -> str:
        """``/root (mode 0700, owner root:root)``."""
        mode = stat.S_IMODE(self.info.st_mode)
        owner = f"{_user_name(self.info.st_uid)}:{_group_name(self.info.st_gid)}"
        return f"{self.path} (mode {mode:04o}, owner {owner})"

    def __str__(self) -> str:
        return f"{who(self.identity)} cannot {self.verbs()} {self.where()}"


def who(identity: Identity) -> str:
    """``uid 998 (colonnade-test)``, with the group when it is not the user's own."""
    text = f"uid {identity.uid}" + (f" ({identity.name})" if identity.name else "")
    try:
        primary = pwd.getpwuid(identity.uid).pw_gid
    except KeyError:
        primary = None
    if identity.gid != primary:
        text += f", gid {identity.gid} ({_group_name(identity.gid)})"
    return text


def missing_access(identity: Identity, info: os.stat_result, access: int) -> int:
    """The bits of ``access`` the mode bits of ``info`` refuse to ``identity``.

    The one permission rule of Colonnade (see the module's docstring for what it
    leaves out): the owner class for the owner, else the group class for a member
    of the path's group, else other. Root may read, write and search anything, and
    execute a file that has some execute bit.
    """
    mode = info.st_mode
    if identity.uid == 0:
        if access & EXECUTE and not stat.S_ISDIR(mode) and not mode & 0o111:
            return EXECUTE
        return 0
    if info.st_uid == identity.uid:
        granted = (mode >> 6) & 7
    elif info.st_gid == identity.gid or info.st_gid in identity.groups:
        granted = (mode >> 3) & 7
    else:
        granted = mode & 7
    return access & ~granted


def _refusal(identity: Identity, path: str, info: os.stat_result, access: int) -> Refused | None:
    missing = missing_access(identity, info, access)
    if not missing or _has_acl(path):
        return None
    return Refused(identity, path, missing, info)


def _has_acl(path: str) -> bool:
    try:
        os.getxattr(path, "system.posix_acl_access")
    except OSError:  # ENODATA: none; ENOTSUP: a file system without ACLs
        return False
    return True


class _Resolved(NamedTuple):
    path: str  # the real path (every symbolic link followed)
    info: os.stat_result | None  # None: it does not exist


def _resolve(identity: Identity, path: str) -> _Resolved | Refused:
    """Follow ``path`` as the kernel would for ``identity``: search every folder on
    the way, through the target of each symbolic link; the first refusal, or the
    real path."""
    parts = deque(os.path.abspath(path).split("/"))
    current = "/"
    links = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        try:
            folder = os.stat(current)
        except OSError:
            return _Resolved(current, None)
        refused = _refusal(identity, current, folder, EXECUTE)
        if refused is not None:
            return refused
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            info = os.lstat(candidate)
        except OSError:
            return _Resolved(os.path.join(candidate, *parts), None)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            target = os.readlink(candidate)
            if links > _MAX_LINKS:
                return _Resolved(candidate, None)
            if target.startswith("/"):
                current = "/"
            parts.extendleft(reversed(target.split("/")))
            continue
        if parts and not stat.S_ISDIR(info.st_mode):
            return _Resolved(candidate, None)  # ENOTDIR: not a permission problem
        current = candidate
    try:
        return _Resolved(current, os.stat(current))
    except OSError:
        return _Resolved(current, None)


def check_access(
    identity: Identity, path: str, access: int, *, create: bool = False
) -> Refused | None:
    """Whether ``identity`` may ``access`` (READ/WRITE/EXECUTE bits) ``path``.

    Every folder on the way is searched, following symbolic links. EXECUTE on a
    folder is search; asked of a folder together with READ, it is dropped for a
    file (``READ | EXECUTE`` is "read this folder or file"). ``create``: a path
    that does not exist is created by the worker, which then needs to write and
    search its folder. None when allowed, or when the path does not exist.
    """
    resolved = _resolve(identity, path)
    if isinstance(resolved, Refused):
        return resolved
    if resolved.info is None:
        if not create:
            return None
        return check_access(identity, os.path.dirname(os.path.abspath(path)), WRITE | EXECUTE)
    if access & READ and not stat.S_ISDIR(resolved.info.st_mode):
        access &= ~EXECUTE
    return _refusal(identity, resolved.path, resolved.info, access)


class Need(NamedTuple):
    """Something a pool's workers must be able to do: ``access`` on ``path``."""

    path: str
    access: int
    what: str  # what it is, for the message: "the root of site 'main'"
    create: bool = False  # a file the worker creates when it is missing


def runtime_needs(executable: str | None = None) -> list[Need]:
    """What every worker needs to start: the interpreter and what it imports."""
    executable = executable or sys.executable
    needs = [Need(executable, EXECUTE, f"the interpreter {executable}")]
    import sysconfig  # here: only a pool with a user of its own needs it (the master's memory)

    for key in ("stdlib", "purelib", "platlib"):
        path = sysconfig.get_path(key)
        needs.append(Need(path, READ | EXECUTE, f"the Python library folder {path}"))
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    needs.append(Need(package, READ | EXECUTE, f"the colonnade package {package}"))
    return needs


def content_needs(config: ServerConfig, engine: Engine) -> dict[str, list[Need]]:
    """Per pool, the folders it serves and the files its modules write.

    ``engine`` is built from ``config`` (Python applications may be left out: their
    ``app_dir`` is read from ``config``).
    """
    needs: dict[str, list[Need]] = {}
    for site in engine.sites:
        for rt in site.apps:
            app = rt.app
            kind = f"site {site.name!r}" if app.path == "/" else f"application {app.id!r}"
            pool = needs.setdefault(app.pool, [])
            pool.append(Need(app.root, READ | EXECUTE, f"the root of {kind} ({app.root})"))
            for vdir in app.virtual_directories:
                # A virtual directory is served by the application its path falls in.
                owner = next(r.app for r in site.apps if _within(vdir.path, r.app.path))
                if owner is app:
                    what = f"virtual directory {vdir.path!r} of site {site.name!r} ({vdir.root})"
                    pool.append(Need(vdir.root, READ | EXECUTE, f"the root of {what}"))
            for written in _written(rt.modules, app):
                path = os.path.join(WORKER_CWD, written)
                what = f"the file {written!r} a module of {kind} writes"
                if path != written:
                    what += f" (as {path}: workers run in {WORKER_CWD})"
                pool.append(Need(path, WRITE, what, create=True))
    for site_config in config.sites:
        for app_config in site_config.applications:
            if app_config.app_dir is not None:
                pool = needs.setdefault(app_pool(site_config, app_config), [])
                app_id = f"{site_config.name}{app_config.path.rstrip('/') or '/'}"
                what = f"the app_dir of application {app_id!r} ({app_config.app_dir})"
                pool.append(Need(app_config.app_dir, READ | EXECUTE, what))
    for pool_name, tls in tls_needs(config).items():
        needs.setdefault(pool_name, []).extend(tls)
    return needs


def tls_needs(config: ServerConfig) -> dict[str, list[Need]]:
    """Per pool, the certificates, keys, passphrase files and stores of the https
    sites it serves (its workers shake hands for them)."""
    needs: dict[str, list[Need]] = {}
    for i, site in enumerate(config.sites):
        if not any(b.startswith("https://") for b in site.bindings):
            continue
        pool = needs.setdefault(site.pool, [])
        levels: list[tuple[str, CertificateFiles]] = [("[server.tls]", config.server.tls)]
        if site.tls is not None:
            levels.append((f"sites[{i}].tls", site.tls))
        for where, files in levels:
            for name in ("certificate", "key", "passphrase_file", "client_ca", "client_crl"):
                path = getattr(files, name)
                need = Need(path, READ, f"the TLS {name.replace('_', ' ')} of {where} ({path})")
                if path is not None and need not in pool:
                    pool.append(need)
            store = files.certificate_store
            if store is not None:
                need = Need(store, READ | EXECUTE, f"the certificate store of {where} ({store})")
                if need not in pool:
                    pool.append(need)
    return needs


def _within(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _written(modules: Iterable[Module], app: Application) -> list[str]:
    found: list[str] = []
    # The application's own level and every configuration level below it (a
    # location or a web.toml) may name another file.
    paths = app.level_paths()
    for module in modules:
        section = module.section
        if section is None:
            continue
        for path in paths:
            for written in app.sections_for(path).get(section).written_paths():
                if written not in found:
                    found.append(written)
    return found


class Problem(NamedTuple):
    """One refusal and everything of the pool it blocks."""

    pool: str
    refused: Refused
    needed_for: tuple[str, ...]

    def __str__(self) -> str:
        shown = "; ".join(self.needed_for[:3])
        if len(self.needed_for) > 3:
            shown += f"; and {len(self.needed_for) - 3} more"
        refused = self.refused
        return (
            f"pool {self.pool!r} runs as {who(refused.identity)}, which cannot "
            f"{refused.verbs()} {refused.where()}; needed for {shown}"
        )


class Preflight:
    """What each pool's workers need, from a checked configuration; :meth:`problems`
    checks it for an identity (cheap: a few ``stat`` calls, so the master runs it
    again whenever it is about to start a pool).

    ``needs``: :func:`content_needs` of the configuration's engine (the master's
    comes from its check process, ``pools/checker.py``).
    """

    def __init__(self, config: ServerConfig, needs: dict[str, list[Need]]) -> None:
        self.config = config
        self.needs = needs

    def problems(
        self,
        pool: str,
        identity: Identity | None,
        *,
        temp_dir: str | None = None,
        executable: str | None = None,
    ) -> list[Problem]:
        """What ``identity`` is refused of what ``pool``'s workers need (none for a
        pool that runs as the master). ``temp_dir``: the sandbox's temp folder, once
        the master made it."""
        if identity is None:
            return []
        needs = [*runtime_needs(executable), *self.needs.get(pool, [])]
        settings = self.config.pools.get(pool)
        if settings is not None and settings.sandbox:
            if temp_dir is None:
                import tempfile  # here: only a sandboxed pool needs it (the master's memory)

                base = tempfile.gettempdir()
                needs.append(Need(base, EXECUTE, "the folder the sandbox's temp folder is made in"))
            else:
                needs.append(Need(temp_dir, READ | WRITE | EXECUTE, "the sandbox's temp folder"))
        found: dict[tuple[str, int], list[str]] = {}
        refusals: dict[tuple[str, int], Refused] = {}
        for need in needs:
            refused = check_access(identity, need.path, need.access, create=need.create)
            if refused is not None:
                key = (refused.path, refused.missing)
                refusals.setdefault(key, refused)
                if need.what not in found.setdefault(key, []):
                    found[key].append(need.what)
        return [Problem(pool, refusals[key], tuple(whats)) for key, whats in found.items()]

    def errors(
        self, pool: str, identity: Identity | None, *, temp_dir: str | None = None
    ) -> list[ConfigError]:
        """:meth:`problems` as configuration errors on the pool's ``user`` key (its
        ``group`` key when only that is set), with file and line."""
        settings = self.config.pools[pool]
        key = f"pools.{pool}.{'user' if settings.user is not None else 'group'}"
        return [
            locate(ConfigError(str(problem), key=key), self.config.source, self.config.lines)
            for problem in self.problems(pool, identity, temp_dir=temp_dir)
        ]

    def refusal(
        self, pool: str, identity: Identity | None, *, temp_dir: str | None = None
    ) -> str | None:
        """Why the master must not start ``pool`` (the first problem, and how many
        more there are), or None."""
        problems = self.problems(pool, identity, temp_dir=temp_dir)
        if not problems:
            return None
        more = len(problems) - 1
        return str(problems[0]) + (f" (and {more} more: see `colonnade check`)" if more else "")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
