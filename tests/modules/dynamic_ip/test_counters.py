"""The shared-memory counters: sliding windows, in-flight counts, eviction, processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from colonnade.core import shared
from colonnade.providers.client_counters import (
    ALLOWED,
    CONCURRENCY,
    FAILURES,
    RATE,
    WAYS,
    ClientCounters,
    Policy,
    client_key,
    rate_retry_ms,
)

_scopes = itertools.count(1001, 2)


def policy(**limits: int) -> Policy:
    values = {
        "max_concurrent": 0,
        "max_requests": 0,
        "interval_ms": 1000,
        "max_failures": 0,
        "failure_interval_ms": 1000,
        **limits,
    }
    return Policy(scope=next(_scopes), **values)


@pytest.fixture
def arena() -> Iterator[shared.SharedMemory]:
    memory = shared.create(4 * 1024 * 1024)
    yield memory
    os.close(memory.fd)


@pytest.fixture
def table(arena: shared.SharedMemory) -> ClientCounters:
    return ClientCounters(arena, "test", 1024)


def test_client_keys() -> None:
    assert client_key("127.0.0.1") == b"\0" * 10 + b"\xff\xff\x7f\0\0\1"
    # An IPv4-mapped IPv6 address is the same client as the IPv4 one.
    assert client_key("::ffff:127.0.0.1") == client_key("127.0.0.1")
    assert client_key("fe80::1%eth0") == client_key("fe80::1")
    assert client_key("/run/colonnade.sock") is None
    assert client_key("not an address") is None


def test_the_rate_holds_within_a_window(table: ClientCounters) -> None:
    p = policy(max_requests=5, interval_ms=1000)
    start = 10_000_000  # the start of a window
    codes = [table.admit("10.0.0.1", p, start + i).code for i in range(8)]
    assert codes == [ALLOWED] * 5 + [RATE] * 3
    # Refused requests do not count: still five.
    assert table.peek("10.0.0.1", p) == (0, 5, 0)
    # Another client has its own count.
    assert table.admit("10.0.0.2", p, start + 10).code == ALLOWED


def test_the_window_slides(table: ClientCounters) -> None:
    p = policy(max_requests=10, interval_ms=1000)
    start = 20_000_000
    for i in range(10):  # ten requests in the second half of one window
        assert table.admit("10.0.1.1", p, start + 500 + i).code == ALLOWED
    # A quarter into the next window the previous one still weighs 3/4: 7.5 of
    # 10 used, so three more (at 7.5, 8.5 and 9.5 < 10) and then no more.
    at = start + 1000 + 250
    codes = [table.admit("10.0.1.1", p, at).code for _ in range(5)]
    assert codes == [ALLOWED, ALLOWED, ALLOWED, RATE, RATE]
    # Two windows later the old requests weigh nothing.
    assert table.admit("10.0.1.1", p, start + 3000).code == ALLOWED


def test_a_client_that_keeps_asking_gets_the_rate(table: ClientCounters) -> None:
    # One request per millisecond for ten windows against 100 per window: the
    # sliding count lets through about 100 per window, never much more.
    p = policy(max_requests=100, interval_ms=1000)
    start = 30_000_000
    allowed = [0] * 10
    for t in range(10_000):
        if table.admit("10.0.2.1", p, start + t).code == ALLOWED:
            allowed[t // 1000] += 1
    assert allowed[0] == 100
    assert all(95 <= n <= 105 for n in allowed[1:]), allowed
    assert 990 <= sum(allowed) <= 1010


def test_retry_after_is_when_the_window_has_room(table: ClientCounters) -> None:
    p = policy(max_requests=4, interval_ms=1000)
    start = 40_000_000
    for i in range(4):
        table.admit("10.0.3.1", p, start + 100 + i)
    verdict = table.admit("10.0.3.1", p, start + 200)
    assert verdict.code == RATE
    retry_at = start + 200 + verdict.retry_ms
    assert table.admit("10.0.3.1", p, retry_at - 2).code == RATE
    assert table.admit("10.0.3.1", p, retry_at).code == ALLOWED


def test_rate_retry_arithmetic() -> None:
    # Full current window, no previous: just past the window's end.
    assert rate_retry_ms(0, 10, 300, 1000, 10) == 701
    # Previous window full, current empty, 250 ms in: 10 * (1000 - e) / 1000 < 10
    # - 0 → as soon as any of it slid out.
    assert rate_retry_ms(10, 0, 250, 1000, 10) == 1
    # Previous 10, current 5, limit 10: 10 * (1000 - e) / 1000 + 5 < 10 → e > 500.
    assert rate_retry_ms(10, 5, 250, 1000, 10) == 251
    # Room already: nothing to wait for.
    assert rate_retry_ms(0, 3, 0, 1000, 10) == 0


def test_concurrency_counts_requests_in_flight(table: ClientCounters) -> None:
    p = policy(max_concurrent=3)
    now = 50_000_000
    assert [table.admit("10.0.4.1", p, now).code for _ in range(4)] == [ALLOWED] * 3 + [CONCURRENCY]
    assert table.peek("10.0.4.1", p) == (3, 0, 0)
    table.release("10.0.4.1", p, now, admitted=True, failed=False)
    assert table.admit("10.0.4.1", p, now).code == ALLOWED
    for _ in range(5):  # more releases than requests never go below zero
        table.release("10.0.4.1", p, now, admitted=True, failed=False)
    assert table.peek("10.0.4.1", p) == (0, 0, 0)


def test_failures_are_counted_and_refuse(table: ClientCounters) -> None:
    p = policy(max_failures=3, failure_interval_ms=60_000)
    now = 60_000_000
    for _ in range(3):
        assert table.admit("10.0.5.1", p, now).code == ALLOWED
        table.release("10.0.5.1", p, now, admitted=False, failed=True)
    verdict = table.admit("10.0.5.1", p, now + 1)
    assert verdict.code == FAILURES
    assert 59_000 < verdict.retry_ms <= 60_001
    assert table.peek("10.0.5.1", p) == (0, 0, 3)
    # A failure of a client never seen before is counted too.
    table.release("10.0.5.2", p, now, admitted=False, failed=True)
    assert table.peek("10.0.5.2", p) == (0, 0, 1)


def test_policies_count_apart(table: ClientCounters) -> None:
    strict, loose = policy(max_requests=1), policy(max_requests=100)
    now = 70_000_000
    assert table.admit("10.0.6.1", strict, now).code == ALLOWED
    assert table.admit("10.0.6.1", strict, now).code == RATE
    assert table.admit("10.0.6.1", loose, now).code == ALLOWED


def test_unknown_clients_are_not_counted(table: ClientCounters) -> None:
    p = policy(max_requests=1)
    assert all(table.admit("/run/sock", p, 80_000_000).code == ALLOWED for _ in range(5))


def test_a_full_table_forgets_the_client_seen_least_recently(
    arena: shared.SharedMemory,
) -> None:
    small = ClientCounters(arena, "small", WAYS)  # one set: WAYS clients
    assert small.capacity == WAYS
    p = policy(max_requests=1, interval_ms=60_000)
    now = 90_000_000
    for i in range(WAYS):
        assert small.admit(f"10.1.0.{i}", p, now + i).code == ALLOWED
    assert small.admit("10.1.0.0", p, now + 100).code == RATE  # remembered
    # A new client takes the slot of the one seen least recently (10.1.0.1:
    # 10.1.0.0 was just seen again), which is then a new client.
    assert small.admit("10.1.0.99", p, now + 200).code == ALLOWED
    assert small.peek("10.1.0.1", p) is None
    assert small.admit("10.1.0.1", p, now + 300).code == ALLOWED
    # ... taking the slot of 10.1.0.2, the least recent now; 10.1.0.0 stays.
    assert small.peek("10.1.0.2", p) is None
    assert small.admit("10.1.0.0", p, now + 400).code == RATE


def test_idle_clients_go_before_busy_ones(arena: shared.SharedMemory) -> None:
    small = ClientCounters(arena, "busy", WAYS)
    p = policy(max_concurrent=10)
    now = 95_000_000
    for i in range(WAYS):
        small.admit(f"10.2.0.{i}", p, now + i)
    small.release("10.2.0.5", p, now + 50, admitted=True, failed=False)
    small.admit("10.2.0.99", p, now + 100)
    # 10.2.0.0 was seen first but has a request in flight: the idle one went.
    assert small.peek("10.2.0.5", p) is None
    assert small.peek("10.2.0.0", p) == (1, 0, 0)


def test_zones_are_found_by_name_and_size(arena: shared.SharedMemory) -> None:
    a = ClientCounters(arena, "zone", 64)
    b = ClientCounters(arena, "zone", 64)
    assert a.zone.offset == b.zone.offset
    c = ClientCounters(arena, "zone", 4096)  # another size: another zone
    assert c.zone.offset != a.zone.offset
    p = policy(max_requests=1)
    assert a.admit("10.3.0.1", p, 1000).code == ALLOWED
    assert b.admit("10.3.0.1", p, 1000).code == RATE


def test_a_full_arena_says_so() -> None:
    memory = shared.create(64 * 1024)
    try:
        with pytest.raises(shared.SharedMemoryError, match="shared memory is full"):
            ClientCounters(memory, "big", 100_000)
    finally:
        os.close(memory.fd)


_CHILD = textwrap.dedent(
    """
    import sys
    from colonnade.core import shared
    from colonnade.providers.client_counters import ClientCounters, Policy
    fd, scope, count, mode = map(int, sys.argv[1:5])
    table = ClientCounters(shared.adopt(fd), "procs", 1024)
    p = Policy(scope, 0, 1000, 60_000, 0, 1000)
    if mode == 1:
        # Die holding a stripe's lock: the others must take it over.
        import ctypes, os
        from colonnade.core.shared import mutex_lock
        for address in table._addresses:
            mutex_lock(address)
        os._exit(0)
    allowed = sum(table.admit("10.9.0.1", p, 5_000_000).code == 0 for _ in range(count))
    print(allowed)
    """
)


def _child(
    arena: shared.SharedMemory, scope: int, count: int, mode: int = 0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(arena.fd), str(scope), str(count), str(mode)],
        pass_fds=(arena.fd,),
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_share_one_count(arena: shared.SharedMemory) -> None:
    # Four processes each try 600 requests against one limit of 1000.
    scope = next(_scopes)
    children = [_child(arena, scope, 600) for _ in range(4)]
    allowed = [int(child.communicate(timeout=60)[0]) for child in children]
    assert sum(allowed) == 1000, allowed
    table = ClientCounters(arena, "procs", 1024)
    assert table.peek("10.9.0.1", Policy(scope, 0, 1000, 60_000, 0, 1000)) == (0, 1000, 0)


def test_a_process_that_dies_holding_the_lock_does_not_wedge_the_others(
    arena: shared.SharedMemory,
) -> None:
    scope = next(_scopes)
    dead = _child(arena, scope, 0, mode=1)
    dead.communicate(timeout=60)
    assert dead.returncode == 0
    alive = _child(arena, scope, 10)
    assert int(alive.communicate(timeout=60)[0]) == 10


def test_one_ipv6_64_is_one_client(table: ClientCounters) -> None:
    p = policy(max_requests=5, interval_ms=1000)
    start = 10_000_000
    codes = [table.admit(f"2001:db8:1:2::{i:x}", p, start + i).code for i in range(1, 9)]
    assert codes == [ALLOWED] * 5 + [RATE] * 3


def test_ipv6_prefix_128_counts_each_address_as_iis_does(table: ClientCounters) -> None:
    p = policy(max_requests=1, interval_ms=1000, ipv6_prefix=128)
    start = 20_000_000
    codes = [table.admit(f"2001:db8:1:2::{i:x}", p, start + i).code for i in range(1, 4)]
    assert codes == [ALLOWED] * 3
    # IPv4 clients are counted per address whatever the IPv6 prefix.
    q = policy(max_requests=1, interval_ms=1000, ipv6_prefix=32)
    assert [table.admit(f"10.0.0.{i}", q, start).code for i in (1, 2)] == [ALLOWED] * 2
