"""The container recipe: the Dockerfile's user, stop signal, health check and
entrypoint, the entrypoint's command run on the host, and the compose farm
(Redis, two nodes, a front end) run on the host with its own configuration files.

A container engine may not run where the tests do; what can be checked without
one is: the Dockerfile says what it must, and the commands and configurations it
and compose.yaml give Colonnade work as they are.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import Process
from tests.examples.support import EXAMPLES, copy_example
from tests.support.ports import free_port
from tests.support.redis import RedisServer
from tests.support.wait import PATIENCE, wait_for

pytestmark = pytest.mark.e2e

REPO = EXAMPLES.parent
DOCKERFILE = REPO / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (KEYWORD, arguments), continuations joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def argv(form: str) -> list[str]:
    """An exec-form (JSON) argument list; the shell form is refused: with it the
    server would not be PID 1 and would not get the stop signal."""
    assert form.startswith("["), f"not the exec form: {form}"
    value = json.loads(form)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def last(found: list[tuple[str, str]], keyword: str) -> str:
    values = [rest for key, rest in found if key == keyword]
    assert values, f"no {keyword} in the Dockerfile"
    return values[-1]


def final_stage(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (key, _) in enumerate(found) if key == "FROM"]
    return found[starts[-1] :]


def copies(stage: list[tuple[str, str]]) -> dict[str, Path]:
    """The image path -> the repository path of each COPY from the build context."""
    mapping = {}
    for key, rest in stage:
        if key == "COPY" and "--from" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            *sources, target = parts
            assert len(sources) == 1, rest
            mapping[target] = REPO / sources[0]
    return mapping


def test_the_dockerfile_runs_unprivileged_and_stops_gracefully() -> None:
    found = instructions(DOCKERFILE)
    stage = final_stage(found)
    base = stage[0][1]
    assert re.fullmatch(r"python:\S*-slim( AS \w+)?", base), base
    user = last(stage, "USER").split(":")[0]
    assert user not in ("root", "0")
    # The user is made in the image, with a fixed non-zero uid.
    made = [rest for key, rest in stage if key == "RUN" and "useradd" in rest]
    assert made and re.search(rf"useradd[^&]*--uid [1-9]\d*[^&]* {user}\b", made[0]), made
    # The stop signal is the one Colonnade's graceful stop answers to.
    operations = (REPO / "docs" / "operations.md").read_text()
    assert "`SIGTERM` (`systemctl stop`): stop gracefully" in operations
    assert last(stage, "STOPSIGNAL") == "SIGTERM"
    # The compiled build: asked for, and checked while the image is built.
    assert any(key == "ENV" and "COLONNADE_MYPYC=1" in rest for key, rest in found)
    assert any(key == "RUN" and "not compiled" in rest for key, rest in stage)


def entrypoint() -> list[str]:
    stage = final_stage(instructions(DOCKERFILE))
    return argv(last(stage, "ENTRYPOINT")) + argv(last(stage, "CMD"))


def healthcheck() -> list[str]:
    stage = final_stage(instructions(DOCKERFILE))
    rest = last(stage, "HEALTHCHECK")
    options, _, command = rest.partition("CMD ")
    assert "--interval" in options and "--timeout" in options
    return argv(command)


@pytest.fixture
def image_command(tmp_path: Path) -> Iterator[tuple[Process, list[str]]]:
    """The image's ENTRYPOINT + CMD run on the host: its configuration file (what
    the Dockerfile copies to the path CMD names) with the image's paths mapped to
    the repository's, and its port moved to a free one."""
    command = entrypoint()
    assert command[:2] == ["colonnade", "serve"], command
    config_in_image = command[command.index("-c") + 1]
    mapping = copies(final_stage(instructions(DOCKERFILE)))
    text = mapping[config_in_image].read_text()
    port = free_port()
    assert "0.0.0.0:8080" in text
    text = text.replace("0.0.0.0:8080", f"127.0.0.1:{port}")
    for image_path, source in mapping.items():
        if image_path != config_in_image:
            text = text.replace(f'"{image_path}"', json.dumps(str(source)))
    config = tmp_path / "colonnade.toml"
    config.write_text(text)
    args = [str(config) if a == config_in_image else a for a in command[2:]]
    server = Process(args, cwd=tmp_path, port=port)
    yield server, healthcheck()
    server.kill()


def test_the_image_command_serves_and_its_health_check_passes(
    image_command: tuple[Process, list[str]],
) -> None:
    server, check = image_command
    assert check[0] == "python" and "/healthz" in " ".join(check)
    probe = [sys.executable, *[a.replace(":8080/", f":{server.port}/") for a in check[1:]]]
    assert subprocess.run(probe, timeout=30, check=False).returncode == 0, shlex.join(probe)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=PATIENCE) as c:
        assert c.get("/").status_code == 200
        assert c.get("/readyz").text == "ready\n"
        # docker stop: SIGTERM; the configuration keeps serving a few seconds with
        # readiness failing, then the server exits cleanly.
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: c.get("/readyz").status_code == 503, PATIENCE, "readiness 503")
        assert c.get("/healthz").status_code == 200
    assert server.proc.wait(PATIENCE) == 0
    # A failing probe fails the check: nothing listens any more.
    assert subprocess.run(probe, timeout=30, capture_output=True, check=False).returncode != 0


# -- the compose farm ------------------------------------------------------------------------


@pytest.fixture
def farm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[int, dict[str, Process]]]:
    """compose.yaml's services run on the host: Redis, then each Colonnade service
    with the configuration file compose mounts, service names and the image's
    paths mapped to the host's."""
    pytest.importorskip("redis")
    tree = copy_example("farm-of-two", tmp_path)
    compose = yaml.safe_load((tree / "compose.yaml").read_text())
    services = compose["services"]
    assert services["redis"]["image"].startswith("redis:")
    redis = RedisServer(tmp_path)
    ports = {name: free_port() for name in services if name != "redis"}
    # The front end's fixed address in compose's subnet, which the nodes trust: on
    # the host the front end reaches the nodes from loopback.
    front_ip = services["front"]["networks"]["default"]["ipv4_address"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(front_ip) in ipaddress.ip_network(subnet)
    started: dict[str, Process] = {}
    try:
        # Started in the order compose's depends_on gives: nodes, then the front.
        for name in sorted(ports, key=lambda n: "front" in services[n].get("depends_on", {})):
            service = services[name]
            assert service["image"] == "colonnade:local"
            assert service["build"]["context"] == "../.."
            mounts = dict(v.removesuffix(":ro").split(":")[::-1] for v in service["volumes"])
            config = tree / mounts.pop("/etc/colonnade/colonnade.toml")
            text = config.read_text().replace("0.0.0.0:8080", f"127.0.0.1:{ports[name]}")
            text = text.replace("redis://redis:6379/0", redis.url)
            text = text.replace(f'"{front_ip}"', '"127.0.0.1"')
            for other, port in ports.items():
                text = text.replace(f"http://{other}:8080", f"http://127.0.0.1:{port}")
            for target, source in mounts.items():
                text = text.replace(f'"{target}"', json.dumps(str(tree / source)))
            host_config = tmp_path / f"{name}.toml"
            host_config.write_text(text)
            for key, value in service.get("environment", {}).items():
                monkeypatch.setenv(key, value)
            started[name] = Process(["-c", str(host_config)], cwd=tmp_path, port=ports[name])
        yield ports["front"], started
    finally:
        for server in started.values():
            server.kill()
        redis.kill()


def test_the_compose_farm_shares_sessions_and_the_cache_in_redis(
    farm: tuple[int, dict[str, Process]],
) -> None:
    port, _ = farm
    # The browser on an address of its own: the nodes see it, not the front end.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=PATIENCE, transport=transport
    ) as c:
        # The front end's health check marks both nodes up before it spreads requests.
        def both_answer() -> bool:
            nodes = {c.get("/").json()["node"] for _ in range(4)}
            return nodes == {"node1", "node2"}

        wait_for(both_answer, PATIENCE, "both nodes answering through the front end")
        c.cookies.clear()
        seen = [c.get("/").json() for _ in range(4)]
        # One session, counted on whichever node answered: it lives in Redis.
        assert [s["visits"] for s in seen] == [1, 2, 3, 4]
        assert {s["node"] for s in seen} == {"node1", "node2"}
        assert {s["client"] for s in seen} == {"127.0.0.2"}

        # The output cache is one for the farm: every node serves the first copy.
        # (Two first requests may race, each node making its copy: the last one
        # stored wins, and from then on both nodes serve that one.)
        def one_copy() -> bool:
            return len({c.get("/cached").text for _ in range(4)}) == 1

        wait_for(one_copy, PATIENCE, "both nodes serving the one cached copy")
        assert c.get("/healthz").text == "ok\n"
