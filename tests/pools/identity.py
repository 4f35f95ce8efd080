"""Running pools as another user in tests, wherever the checkout lives.

A pool's workers run as its user: that user must reach the interpreter, the
installed packages and the test's files. A checkout (with its ``.venv``) in a
private folder — ``mktemp -d`` (0700), ``/root``, a Debian home — is out of its
reach, and so is a Python installed there (pyenv below ``/root``). Rather than
opening those folders up (a shared machine's ``/root`` made searchable for the
length of a test), :func:`stage_runtime` puts together what a worker runs under
a world-searchable temp folder the test owns:

- the base Python (only where the user cannot already reach it): the executable,
  the standard library (without its own tests and GUI kits) and the shared
  ``libpython`` (found through ``LD_LIBRARY_PATH``: the executable's run path still
  names the original);
- a virtual environment made by that Python, holding what a worker imports:
  ``colonnade``, the test modules' ``acme-colonnade`` and their requirements, as
  installed in the environment the tests run in (the source folders of editable
  installs included).

Files are hard links where the file system allows it and the file is world
readable already, else copies; folders are 0755. The result is proven by running
it as the user. The master is then started with that interpreter, so its workers
run it too.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from colonnade.pools.preflight import EXECUTE, READ, check_access
from colonnade.pools.sandbox import Identity

TEST_USER = "colonnade-test"

#: Top-level folders of the standard library a worker never imports.
STDLIB_SKIP = frozenset({"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"})
#: The distributions a worker of the tests imports (their requirements come along).
WORKER_DISTRIBUTIONS = ("colonnade", "acme-colonnade")


class NotArrangedError(Exception):
    """What a test needs cannot be arranged on this machine (the message says why)."""


def system_user() -> pwd.struct_passwd:
    """The test user (a system user without a home), created when missing; needs root."""
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=True,
            timeout=30,
        )
        return pwd.getpwnam(TEST_USER)


def identity_of(user: pwd.struct_passwd) -> Identity:
    """The identity a pool with ``user = NAME`` runs as (as the master resolves it)."""
    groups = sorted(set(os.getgrouplist(user.pw_name, user.pw_gid)))
    return Identity(user.pw_uid, user.pw_gid, groups, user.pw_name, user.pw_dir)


def open_temp_folder(identity: Identity, *, prefix: str, executable: bool = False) -> Path:
    """A new folder (0755) the identity can search, under the first temp folder that
    lets it: ``$TMPDIR``, ``/tmp``, ``/var/tmp``, ``/dev/shm``. One on the file system
    of the Python installation is preferred (files are linked, not copied, there);
    ``executable``: not on a ``noexec`` mount."""
    home = os.stat(os.path.realpath(sys.base_prefix)).st_dev
    found: list[str] = []
    why: list[str] = []
    for candidate in dict.fromkeys([tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]):
        if not os.path.isdir(candidate):
            continue
        refused = check_access(identity, candidate, EXECUTE)
        if refused is not None:
            why.append(str(refused))
        elif executable and os.statvfs(candidate).f_flag & os.ST_NOEXEC:
            why.append(f"{candidate} is mounted noexec")
        elif not os.access(candidate, os.W_OK):
            why.append(f"{candidate} is not writable by this test")
        else:
            found.append(candidate)
    if not found:
        raise NotArrangedError(f"no temp folder {identity.name} can use: {'; '.join(why)}")
    found.sort(key=lambda folder: os.stat(folder).st_dev != home)
    folder = tempfile.mkdtemp(prefix=prefix, dir=found[0])
    os.chmod(folder, 0o755)
    return Path(folder)


class Runtime(NamedTuple):
    """A Python the test user can run, with Colonnade and the test modules installed."""

    python: str  # the interpreter to start the master with (its workers run it too)
    env: dict[str, str]  # to add to the environment of what runs it
    root: Path  # a world-searchable folder holding it; tests make their folders in it

    def folder(self, name: str) -> Path:
        """A new world-searchable folder for one test's files."""
        tests = self.root / "tests"
        tests.mkdir(mode=0o755, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tests))
        os.chmod(folder, 0o755)
        return folder


def stage_runtime(identity: Identity, root: Path) -> Runtime:
    """Put together (in ``root``) a Python ``identity`` can run; see the module's docstring."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    stdlib = sysconfig.get_path("stdlib")
    library = None
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        name = str(sysconfig.get_config_var("INSTSONAME"))
        library = os.path.join(str(sysconfig.get_config_var("LIBDIR")), name)
    env: dict[str, str] = {}
    reachable = (
        check_access(identity, base, EXECUTE) is None
        and check_access(identity, stdlib, READ | EXECUTE) is None
        and (library is None or check_access(identity, library, READ) is None)
    )
    if reachable:
        home = os.path.dirname(base)
        python = os.path.join(home, os.path.basename(base))
    else:
        staged = root / "base"
        (staged / "bin").mkdir(mode=0o755, parents=True)
        python = str(staged / "bin" / version)
        _place(base, python)
        copy_tree(stdlib, str(staged / "lib" / version), lambda rel: rel in STDLIB_SKIP)
        if library is not None:
            _place(library, str(staged / "lib" / os.path.basename(library)))
            env["LD_LIBRARY_PATH"] = str(staged / "lib")
    venv = root / "venv"
    subprocess.run(
        [python, "-m", "venv", "--without-pip", str(venv)],
        env={**os.environ, **env},
        check=True,
        timeout=120,
        capture_output=True,
    )
    site = str(venv / "lib" / version / "site-packages")
    for dist in _closure(WORKER_DISTRIBUTIONS):
        _copy_distribution(dist, site)
    for package, source in _editable_packages().items():
        copy_tree(source, os.path.join(site, package))
    for folder, dirs, _ in os.walk(root):  # whatever the umask made of them
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
    runtime = Runtime(str(venv / "bin" / "python"), env, root)
    _prove(runtime, identity)
    return runtime


def _prove(runtime: Runtime, identity: Identity) -> None:
    # A worker's imports, as the user, from "/" (where a worker with a user runs).
    probe = "import colonnade.pools.worker, colonnade.modules.standard, acme_colonnade"
    result = subprocess.run(
        [runtime.python, "-P", "-c", probe],
        env={**os.environ, **runtime.env},
        user=identity.uid,
        group=identity.gid,
        extra_groups=identity.groups,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the staged Python does not run as {identity.name}:\n{result.stderr}")


def _closure(names: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``names`` and everything they require (no extras)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = found[name] = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def _copy_distribution(dist: importlib.metadata.Distribution, site: str) -> None:
    """The files ``dist`` installed into its ``site-packages`` (its RECORD), and the
    folders its editable ``.pth`` file puts on ``sys.path`` (the finder-module kind
    of editable install is :func:`_editable_packages`)."""
    if dist.files is None:
        raise RuntimeError(f"{dist.metadata['Name']} lists no files (no RECORD): cannot stage it")
    for file in dist.files:
        rel = os.path.normpath(str(file))
        source = str(dist.locate_file(file))
        if rel.startswith("..") or not os.path.isfile(source):
            continue  # a script in bin/, or gone
        if not os.path.basename(rel).startswith("__editable__"):
            os.makedirs(os.path.dirname(os.path.join(site, rel)), exist_ok=True)
            _place(source, os.path.join(site, rel))
        elif rel.endswith(".pth"):
            for line in Path(source).read_text().splitlines():
                if not line.startswith("import") and os.path.isdir(line.strip()):
                    copy_tree(line.strip(), site, _metadata)


def _metadata(rel: str) -> bool:
    return rel.endswith((".egg-info", ".dist-info"))


def _editable_packages() -> dict[str, str]:
    """Package → source folder of editable installs made through a finder module."""
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)
        if name.startswith("__editable__") and isinstance(mapping, dict):
            found.update((str(k), str(v)) for k, v in mapping.items())
    return found


def copy_tree(source: str, target: str, skip: Callable[[str], bool] = lambda rel: False) -> None:
    """``source`` into ``target`` (merged), world-readable; ``skip(relative path)``."""
    for folder, dirs, files in os.walk(source, followlinks=True):
        rel = os.path.relpath(folder, source)
        dirs[:] = [d for d in dirs if not skip(os.path.normpath(os.path.join(rel, d)))]
        into = os.path.normpath(os.path.join(target, rel))
        os.makedirs(into, exist_ok=True)
        for name in files:
            if not skip(os.path.normpath(os.path.join(rel, name))):
                with contextlib.suppress(FileNotFoundError):  # a dangling link
                    _place(os.path.join(folder, name), os.path.join(into, name))


def _place(source: str, target: str) -> None:
    """A hard link to a world-readable (and, if executable, world-executable) file,
    else a copy made so."""
    mode = os.stat(source).st_mode
    executable = bool(mode & stat.S_IXUSR)
    if mode & stat.S_IROTH and (mode & stat.S_IXOTH or not executable):
        try:
            os.link(source, target)
            return
        except FileExistsError:
            return
        except OSError:
            pass  # another file system, or links refused: copy
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if executable else 0o644)
