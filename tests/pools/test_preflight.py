"""The pool preflight: what a pool's user may reach, from mode bits; ``colonnade check``
naming the pool, path and permission; the master marking such a pool stopped.

The folders are made private on purpose (0700 under a world-searchable temp folder
the test owns), so the results do not depend on where the checkout lives.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from colonnade.core.registry import Registry
from colonnade.errors import ConfigError
from colonnade.management import operations
from colonnade.modules.standard import BUILTIN
from colonnade.pools import master as master_module
from colonnade.pools.config import ConfigSource
from colonnade.pools.preflight import (
    EXECUTE,
    READ,
    WRITE,
    Preflight,
    check_access,
    content_needs,
    missing_access,
)
from colonnade.pools.sandbox import Identity
from tests.e2e.wire import Conn

from .conftest import Master, get
from .identity import TEST_USER, Runtime, identity_of, open_temp_folder

#: An identity no file belongs to: every check is by the "other" bits.
STRANGER = Identity(54321, 54321, [54321, 54322], None, "/")


def fake_stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A world-searchable folder (0755) of this test's own, wherever the checkout is."""
    folder = open_temp_folder(STRANGER, prefix="colonnade-preflight-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def private(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def owner_text(path: Path) -> str:
    info = os.stat(path)
    return f"{pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}"


# -- the permission rule ----------------------------------------------------------------------


def test_one_class_of_bits_decides_as_the_kernel_does() -> None:
    folder = stat.S_IFDIR
    me = Identity(1000, 100, [100, 27], "me", "/")
    # The owner class alone counts for the owner, even where the group or others may.
    assert missing_access(me, fake_stat(folder | 0o077, uid=1000), READ | EXECUTE) == READ | EXECUTE
    assert missing_access(me, fake_stat(folder | 0o500, uid=1000), READ | EXECUTE) == 0
    # The group class for a member (primary or supplementary group), even where others may.
    assert missing_access(me, fake_stat(folder | 0o007, gid=100), EXECUTE) == EXECUTE
    assert missing_access(me, fake_stat(folder | 0o010, gid=27), EXECUTE) == 0
    # Else the other class.
    assert missing_access(me, fake_stat(folder | 0o770, gid=5), READ) == READ
    assert missing_access(me, fake_stat(folder | 0o004, gid=5), READ | WRITE) == WRITE
    # Root reads, writes and searches anything; it executes a file with an x bit only.
    root = Identity(0, 0, [0], "root", "/root")
    assert missing_access(root, fake_stat(folder | 0o000, uid=5), READ | WRITE | EXECUTE) == 0
    assert missing_access(root, fake_stat(stat.S_IFREG | 0o644, uid=5), EXECUTE) == EXECUTE
    assert missing_access(root, fake_stat(stat.S_IFREG | 0o700, uid=5), EXECUTE) == 0


def test_a_private_folder_on_the_way_is_named_with_its_mode(open_folder: Path) -> None:
    secret = private(open_folder / "secret")
    www = secret / "www"
    www.mkdir()
    refused = check_access(STRANGER, str(www), READ | EXECUTE)
    assert refused is not None
    assert (refused.path, refused.missing) == (str(secret), EXECUTE)
    assert str(refused) == (
        f"uid 54321, gid 54321 (54321) cannot search {secret} (mode 0700, "
        f"owner {owner_text(secret)})"
    )
    os.chmod(secret, 0o711)  # search is all a folder on the way needs
    os.chmod(www, 0o700)
    refused = check_access(STRANGER, str(www), READ | EXECUTE)
    assert refused is not None and (refused.path, refused.verbs()) == (str(www), "read and search")
    os.chmod(www, 0o755)
    assert check_access(STRANGER, str(www), READ | EXECUTE) is None
    # A file asked for READ | EXECUTE is read; a path that does not exist is no refusal.
    (www / "page.txt").write_text("x")
    assert check_access(STRANGER, str(www / "page.txt"), READ | EXECUTE) is None
    assert check_access(STRANGER, str(www / "missing" / "page.txt"), READ) is None


def test_symbolic_links_are_followed_through_both_paths(open_folder: Path) -> None:
    secret = private(open_folder / "secret")
    (open_folder / "bin").mkdir()
    real = secret / "python3.11"
    real.write_text("")
    os.chmod(real, 0o755)
    # A link in an open folder whose target is in a private one (a venv's python
    # pointing into /root/.pyenv): refused at the target's folder.
    (open_folder / "bin" / "python").symlink_to("../secret/python3.11")
    refused = check_access(STRANGER, str(open_folder / "bin" / "python"), EXECUTE)
    assert refused is not None and (refused.path, refused.verbs()) == (str(secret), "search")
    # A link inside a private folder pointing somewhere open: refused on the way to the link.
    opened = open_folder / "opened"
    opened.mkdir()
    (opened / "python").write_text("")
    os.chmod(opened / "python", 0o700)
    (secret / "link").symlink_to(opened / "python")
    refused = check_access(STRANGER, str(secret / "link"), EXECUTE)
    assert refused is not None and refused.path == str(secret)
    os.chmod(secret, 0o711)
    refused = check_access(STRANGER, str(secret / "link"), EXECUTE)
    assert refused is not None  # the target itself: 0700
    assert (refused.path, refused.verbs()) == (str(opened / "python"), "execute")
    os.chmod(opened / "python", 0o755)
    assert check_access(STRANGER, str(secret / "link"), EXECUTE) is None
    assert check_access(STRANGER, str(open_folder / "bin" / "python"), EXECUTE) is None


def test_a_file_to_create_needs_its_folder_writable(open_folder: Path) -> None:
    logs = open_folder / "logs"
    logs.mkdir(mode=0o755)
    os.chmod(logs, 0o755)
    refused = check_access(STRANGER, str(logs / "access.log"), WRITE, create=True)
    assert refused is not None and (refused.path, refused.verbs()) == (str(logs), "write")
    os.chmod(logs, 0o777)
    assert check_access(STRANGER, str(logs / "access.log"), WRITE, create=True) is None
    (logs / "access.log").write_text("")
    os.chmod(logs / "access.log", 0o644)
    refused = check_access(STRANGER, str(logs / "access.log"), WRITE, create=True)
    assert refused is not None and refused.path == str(logs / "access.log")


def test_a_path_with_an_acl_is_left_to_the_kernel(open_folder: Path) -> None:
    secret = private(open_folder / "secret")
    # POSIX ACL (xattr format version 2): user::rwx, user:54321:--x, group::---,
    # mask::--x, other::---.
    anyone = 0xFFFFFFFF
    entries = [(0x01, 7, anyone), (0x02, 1, 54321), (0x04, 0, anyone), (0x10, 1, anyone)]
    entries.append((0x20, 0, anyone))
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(secret, "system.posix_acl_access", acl)
    except OSError as exc:
        pytest.skip(f"the file system of {open_folder} takes no POSIX ACL: {exc.strerror}")
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o710  # the mask is the group class
    assert check_access(STRANGER, str(secret / "x"), READ) is None


# -- what a pool needs ------------------------------------------------------------------------

SERVER = """\
[pools.default]

[pools.web]
user = "nobody"
sandbox = "best-effort"

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:1"]
root = "www"

[[sites.applications]]
path = "/app"
pool = "web"
root = "secret/app"
app = "hello:app"
app_dir = "secret/code"

[[sites.virtual_directories]]
path = "/media"
root = "secret/media"

[[sites.virtual_directories]]
path = "/app/media"
root = "secret/media"

[http_logging]
target = "{logs}/access.log"
"""


def load(folder: Path) -> Preflight:
    source = ConfigSource(file=str(folder / "colonnade.toml")).read()
    config = source.load()
    engine = master_module.check(config, Registry.standard(BUILTIN))
    return Preflight(config, content_needs(config, engine))


def test_a_pools_folders_logs_and_temp_folder_are_checked(open_folder: Path) -> None:
    secret = private(open_folder / "secret")
    for name in ("app", "code", "media"):
        (secret / name).mkdir()
    (open_folder / "www").mkdir()
    logs = open_folder / "logs"
    logs.mkdir()
    os.chmod(logs, 0o755)
    config = open_folder / "colonnade.toml"
    config.write_text(SERVER.format(logs=logs))
    preflight = load(open_folder)
    temp = private(open_folder / "temp")

    def mine(pool: str) -> dict[tuple[str, str], tuple[str, ...]]:
        # Only this test's folders: the interpreter's depend on where Python lives.
        found = preflight.problems(pool, STRANGER, temp_dir=str(temp))
        return {
            (p.refused.path, p.refused.verbs()): p.needed_for
            for p in found
            if p.refused.path.startswith(str(open_folder))
        }

    web = mine("web")
    assert set(web) == {
        (str(secret), "search"),
        (str(logs), "write"),
        (str(temp), "read, write and search"),
    }
    assert web[(str(secret), "search")] == (
        f"the root of application 'main/app' ({secret / 'app'})",
        f"the root of virtual directory '/app/media' of site 'main' ({secret / 'media'})",
        f"the app_dir of application 'main/app' ({secret / 'code'})",
    )
    assert web[(str(logs), "write")] == (
        f"the file '{logs}/access.log' a module of application 'main/app' writes",
    )
    # The pool of the site root serves /media (and its log): not web's business.
    default = mine("default")
    assert set(default) == {(str(secret), "search"), (str(logs), "write")}
    assert "virtual directory '/media'" in default[(str(secret), "search")][0]
    # A pool that runs as the master is not checked.
    assert preflight.problems("web", None) == []
    # As configuration errors: on the pool's user key, with the line.
    errors = [e for e in preflight.errors("web", STRANGER) if str(secret) in e.message]
    assert len(errors) == 1
    assert (errors[0].file, errors[0].line, errors[0].key) == (str(config), 4, "pools.web.user")
    assert errors[0].message.startswith(
        f"pool 'web' runs as uid 54321, gid 54321 (54321), which cannot search {secret} "
        "(mode 0700, "
    )


def test_the_refusal_names_the_first_problem_and_counts_the_others(open_folder: Path) -> None:
    secret = private(open_folder / "secret")
    for name in ("app", "code", "media"):
        (secret / name).mkdir()
    (open_folder / "www").mkdir()
    logs = open_folder / "logs"
    logs.mkdir()
    os.chmod(logs, 0o755)
    (open_folder / "colonnade.toml").write_text(SERVER.format(logs=logs))
    preflight = load(open_folder)
    problems = preflight.problems("web", STRANGER)
    why = preflight.refusal("web", STRANGER)
    assert why is not None and why.startswith(str(problems[0]))
    assert why.endswith(f" (and {len(problems) - 1} more: see `colonnade check`)")
    assert any(p.refused.path == str(secret) for p in problems)


def test_a_pool_serving_https_must_read_its_certificates(open_folder: Path) -> None:
    keys = private(open_folder / "keys")
    store = private(open_folder / "store")
    (keys / "www.pem").write_text("read by the workers, not parsed here")
    (keys / "www.key").write_text("")
    (open_folder / "www").mkdir()
    (open_folder / "colonnade.toml").write_text(
        f"""
[pools.web]
user = "nobody"

[server.tls]
certificate_store = "{store}"

[[sites]]
name = "main"
bindings = ["https://127.0.0.1:8443"]
root = "www"
pool = "web"

[sites.tls]
certificate = "{keys / "www.pem"}"
key = "{keys / "www.key"}"

[[sites]]
name = "plain"
bindings = ["http://127.0.0.1:8080"]
host_names = ["plain"]
root = "www"
"""
    )
    problems = {
        (p.refused.path, p.refused.verbs()): p.needed_for
        for p in load(open_folder).problems("web", STRANGER)
        if p.refused.path.startswith(str(open_folder))
    }
    assert problems == {
        (str(keys), "search"): (
            f"the TLS certificate of sites[0].tls ({keys / 'www.pem'})",
            f"the TLS key of sites[0].tls ({keys / 'www.key'})",
        ),
        (str(store), "read and search"): (f"the certificate store of [server.tls] ({store})",),
    }
    # The pool with no https binding needs none of them.
    assert not [
        p
        for p in load(open_folder).problems("default", STRANGER)
        if p.refused.path.startswith(str(open_folder))
    ]


def test_an_unknown_user_is_a_located_config_error(open_folder: Path) -> None:
    config = open_folder / "colonnade.toml"
    config.write_text(
        '[pools.web]\nuser = "no-such-user-here"\n\n[[sites]]\nname = "s"\n'
        'bindings = ["http://127.0.0.1:1"]\nroot = "."\npool = "web"\n'
    )
    with pytest.raises(ConfigError) as info:
        master_module.load(ConfigSource(file=str(config)), Registry.standard(BUILTIN))
    exc = info.value
    assert (exc.file, exc.line, exc.key) == (str(config), 2, "pools.web.user")
    assert exc.message == "no user 'no-such-user-here' on this system"


# -- as a real user: the kernel agrees; `colonnade check`; `serve` -----------------------------


def as_user(user: pwd.struct_passwd, *command: str) -> int:
    """Run ``command`` as ``user`` (its groups too); its exit status."""
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *command],
        timeout=30,
        check=False,
    ).returncode


def test_the_preflight_agrees_with_the_kernel(
    system_user: pwd.struct_passwd, open_folder: Path
) -> None:
    identity = identity_of(system_user)
    secret = private(open_folder / "secret")
    (secret / "file").write_text("x")
    shared = open_folder / "shared"
    shared.mkdir()
    (shared / "grouped").write_text("x")
    os.chown(shared / "grouped", 0, system_user.pw_gid)
    os.chmod(shared / "grouped", 0o640)
    (shared / "private").write_text("x")
    os.chmod(shared / "private", 0o600)
    cases = [
        (secret, "-x", EXECUTE),
        (secret / "file", "-r", READ),
        (shared, "-x", EXECUTE),
        (shared, "-w", WRITE),
        (shared / "grouped", "-r", READ),
        (shared / "grouped", "-w", WRITE),
        (shared / "private", "-r", READ),
    ]
    for chmod in (0o700, 0o711):
        os.chmod(secret, chmod)
        for path, flag, access in cases:
            kernel = as_user(system_user, "test", flag, str(path)) == 0
            ours = check_access(identity, str(path), access) is None
            assert ours == kernel, (path, flag, oct(chmod))


@pytest.fixture
def user_folder(user_runtime: Runtime) -> Iterator[Path]:
    folder = user_runtime.folder("preflight")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def check_command(runtime: Runtime, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [runtime.python, "-m", "colonnade.management.cli", "check", "-c", "colonnade.toml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
        env={**os.environ, **runtime.env},
        check=False,
    )


def test_colonnade_check_names_the_pool_path_and_permission(
    system_user: pwd.struct_passwd, user_runtime: Runtime, user_folder: Path
) -> None:
    secret = private(user_folder / "secret")
    (secret / "www").mkdir()
    (user_folder / "colonnade.toml").write_text(
        f'[pools.web]\nuser = "{TEST_USER}"\n\n[[sites]]\nname = "main"\n'
        'bindings = ["http://127.0.0.1:1"]\nroot = "secret/www"\npool = "web"\n'
    )
    out = check_command(user_runtime, user_folder)
    assert out.returncode == 2, out
    assert out.stderr.splitlines() == [
        f"colonnade: colonnade.toml:2: pools.web.user: pool 'web' runs as uid "
        f"{system_user.pw_uid} ({TEST_USER}), which cannot search {secret} (mode 0700, "
        f"owner root:root); needed for the root of site 'main' ({secret / 'www'})"
    ]
    os.chmod(secret, 0o755)
    out = check_command(user_runtime, user_folder)
    assert (out.returncode, out.stderr) == (0, ""), out
    assert "configuration OK" in out.stdout


def test_serve_marks_the_pool_stopped_instead_of_rapid_failing(
    start_master: Callable[..., Master],
    system_user: pwd.struct_passwd,
    user_runtime: Runtime,
    user_folder: Path,
) -> None:
    www = private(user_folder / "www")  # the site's folder: the default pool runs as root
    master = start_master(
        {"default": {}, "web": {"user": TEST_USER}},
        apps={"/app": "web"},
        runtime=user_runtime,
        folder=user_folder,
    )
    pool = master.pool("web")
    reason = (
        f"pool 'web' runs as uid {system_user.pw_uid} ({TEST_USER}), which cannot read and "
        f"search {www} (mode 0700, owner root:root); needed for the root of application "
        f"'main/app' ({www})"
    )
    assert (pool["state"], pool["reason"], pool["workers"], pool["failures"]) == (
        "stopped",
        reason,
        [],
        0,
    )
    assert master.get("/who").status == 200  # the other pool serves
    response = master.get("/app/who")
    assert response.status == 503
    assert response.body.decode() == (
        f"503 Service Unavailable\n\nthe application pool is stopped ({reason})\n"
    )
    # Not a local client's request (a proxy header): the reason stays in the log.
    with Conn(master.port) as conn:
        conn.send(get("/app/who", "X-Forwarded-For: 192.0.2.1"))
        hidden = conn.response()
    assert (hidden.status, hidden.body) == (
        503,
        b"503 Service Unavailable\n\nthe application pool is stopped\n",
    )
    with pytest.raises(operations.ControlError, match="pool web stays stopped: pool 'web'"):
        master.command("start", "web")
    os.chmod(www, 0o755)
    assert master.command("start", "web") == "pool web started"
    assert master.json("/app/who")["uid"] == system_user.pw_uid
    log = master.log()
    assert f"pool web not started: {reason}" in log
    assert "cannot start a worker" not in log and "rapid-fail" not in log
    assert master.pool("web")["failures"] == 0
