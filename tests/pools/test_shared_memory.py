"""The server's shared memory reaches every worker: of every pool, whatever its user
and sandbox (``core/shared.py``, passed by the master as a descriptor)."""

from __future__ import annotations

import pwd
from collections.abc import Callable

from tests.support.wait import PATIENCE

from .conftest import MODULES, Master, wait_for
from .identity import TEST_USER, Runtime

StartMaster = Callable[..., Master]

LIMIT = 6


def test_pools_of_other_users_and_sandboxes_share_one_count(
    start_master: StartMaster, system_user: pwd.struct_passwd, user_runtime: Runtime
) -> None:
    from colonnade.pools.sandbox import landlock_abi

    sandbox = "best-effort" if landlock_abi() < 1 else True
    master = start_master(
        {
            "default": {"start": "always", "sandbox": sandbox},
            "api": {"user": TEST_USER, "start": "always"},
        },
        apps={"/api": "api"},
        modules=["security.dynamic_ip", *MODULES],
        workers=2,
        runtime=user_runtime,
        extra=(
            "[dynamic_ip_security]\n"
            f"deny_by_request_rate = true\nmax_requests = {LIMIT}\ninterval = 600\n"
        ),
    )
    wait_for(lambda: len(master.pids("default")) == 2, PATIENCE, "two default workers")
    # One site, one setting: one count per client, whichever pool serves it.
    assert master.json("/api/who")["uid"] == system_user.pw_uid
    statuses = [master.get("/who").status for _ in range(3)]
    statuses += [master.get("/api/who").status for _ in range(4)]
    statuses.append(master.get("/who").status)
    assert statuses == [200] * (LIMIT - 1) + [403] * (len(statuses) - LIMIT + 1)
    if sandbox is True:
        assert master.log().count("sandboxed with Landlock") == 2
    # The memory is the master's: recycled workers find the counts where they were.
    before = set(master.pids("default"))
    master.command("recycle", "default")
    wait_for(lambda: master.replaced(before, 2), PATIENCE, "new workers only")
    assert master.get("/who").status == 403
