"""auth.negotiate against a real MIT KDC, over real sockets, with real clients.

The realm (conftest) has user ``alice`` and service ``HTTP/localhost``; the
server is a live Colonnade on a free port, reached as ``localhost`` so that the
clients ask the KDC for ``HTTP/localhost``. Clients: ``curl --negotiate`` and
python-gssapi (which also checks the server's mutual-authentication token).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.support.wait import PATIENCE

from .conftest import HOST, PASSWORD, REALM, USER, NoAnonymous
from .kdc import Realm, negotiate

WSGI = """
import json

def app(environ, start_response):
    if environ["PATH_INFO"] == "/deny":  # the application's own refusal
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"not you"]
    body = json.dumps({"user": environ.get("REMOTE_USER"),
                       "auth_type": environ.get("AUTH_TYPE")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""

ASGI = """
import json

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    user = scope["extensions"]["colonnade"]["user"]
    body = json.dumps({"user": user.name, "auth_type": user.auth_type}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""


def site(tmp_path: Path, realm: Realm, anonymous: bool = False, **settings: Any) -> dict[str, Any]:
    """Static files at /, a WSGI app at /wsgi, an ASGI app at /asgi; Negotiate on,
    anonymous off (the test-only stand-in) unless ``anonymous``."""
    # Module names of their own: an app's module stays imported for the process.
    for name, source in (("wsgi", WSGI), ("asgi", ASGI)):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / f"negotiate_whoami_{name}.py").write_text(source)
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    (www / "hello.txt").write_text("Hello, Kerberos!")
    section: dict[str, Any] = {
        "enabled": True,
        "keytab": str(realm.keytab),
        # Private to the test: no litter in /var/tmp, and replays still refused.
        "replay_cache": f"file2:{tmp_path}/rcache",
    }
    section.update(settings)
    return {
        "server": {
            "modules": [
                "auth.negotiate",
                *([] if anonymous else ["tests.no_anonymous"]),
                "handler.static",
            ]
        },
        "sites": [
            {
                "name": "main",
                "bindings": ["http://127.0.0.1:1"],
                "root": "www",
                "applications": [
                    {
                        "path": "/wsgi",
                        "root": "wsgi",
                        "app": "negotiate_whoami_wsgi:app",
                        "app_dir": "wsgi",
                    },
                    {
                        "path": "/asgi",
                        "root": "asgi",
                        "app": "negotiate_whoami_asgi:app",
                        "app_dir": "asgi",
                    },
                ],
            }
        ],
        "windows_authentication": section,
    }


@pytest.fixture
def serve(tmp_path: Path, realm: Realm) -> Iterator[Any]:
    """``serve(**windows_authentication settings)`` → a started LiveServer."""
    servers: list[LiveServer] = []

    def start(anonymous: bool = False, **settings: Any) -> LiveServer:
        config = site(tmp_path, realm, anonymous, **settings)
        server = LiveServer(config, tmp_path, modules=[NoAnonymous]).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def url(server: LiveServer, path: str) -> str:
    return f"http://{HOST}:{server.port}{path}"


def get(server: LiveServer, path: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    # To 127.0.0.1 (where the server listens), naming the host the SPN names.
    return httpx.get(
        f"http://127.0.0.1:{server.port}{path}",
        headers={"Host": f"{HOST}:{server.port}", **headers},
        timeout=PATIENCE,
    )


def challenges(response: httpx.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


def curl(server: LiveServer, realm: Realm, path: str, *options: str) -> tuple[list[str], str]:
    """``curl --include OPTIONS`` as alice: the status lines and header blocks of
    every response it shows, and the last body."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed")
    features = subprocess.run([exe, "-V"], capture_output=True, text=True, check=True).stdout
    if "SPNEGO" not in features or "GSS-API" not in features:
        pytest.skip(f"this curl has no GSS-API/SPNEGO support: {features.splitlines()[-1]}")
    done = subprocess.run(
        [
            exe,
            "--silent",
            "--show-error",
            "--include",
            *options,
            "--user",
            ":",
            "--resolve",
            f"{HOST}:{server.port}:127.0.0.1",
            url(server, path),
        ],
        env=realm.client_env(realm.ccache),
        capture_output=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    heads, _, body = out.rpartition("\r\n\r\n")
    blocks = ["HTTP/" + block for block in ("\r\n" + heads).split("\r\nHTTP/")[1:]]
    return blocks, body


def test_curl_negotiate_reaches_the_wsgi_app_as_the_principal(serve: Any, realm: Realm) -> None:
    server = serve()
    # --negotiate sends the ticket at once (curl 7.x does so with -u :).
    (head,), body = curl(server, realm, "/wsgi/whoami", "--negotiate")
    assert head.startswith("HTTP/1.1 200")
    assert "\r\nwww-authenticate: negotiate " in head.lower()  # the server's token
    assert json.loads(body) == {"user": f"{USER}@{REALM}", "auth_type": "Negotiate"}


def test_curl_answers_the_challenge_with_its_ticket(serve: Any, realm: Realm) -> None:
    server = serve()
    # --anyauth asks without credentials first and picks what the 401 offers.
    heads, body = curl(server, realm, "/asgi/", "--anyauth")
    assert [head.split("\r\n", 1)[0] for head in heads] == [
        "HTTP/1.1 401 Unauthorized",
        "HTTP/1.1 200 OK",
    ]
    assert "\r\nwww-authenticate: Negotiate\r\n" in heads[0] + "\r\n"
    assert json.loads(body) == {"user": f"{USER}@{REALM}", "auth_type": "Negotiate"}


def test_python_gssapi_client_gets_a_valid_mutual_authentication_token(
    serve: Any, realm: Realm
) -> None:
    server = serve()
    client = realm.initiator()
    response = get(server, "/asgi/whoami", negotiate(client.step()))
    assert response.status_code == 200
    assert response.json() == {"user": f"{USER}@{REALM}", "auth_type": "Negotiate"}
    (reply,) = challenges(response)
    scheme, _, token = reply.partition(" ")
    assert scheme == "Negotiate"
    # The client checks the server's proof: only the holder of the key can make it.
    assert client.step(base64.b64decode(token)) is None
    assert client.complete


def test_static_files_are_protected_alike(serve: Any, realm: Realm) -> None:
    server = serve()
    anonymous = get(server, "/hello.txt")
    assert anonymous.status_code == 401
    assert challenges(anonymous) == ["Negotiate"]
    response = get(server, "/hello.txt", realm.negotiate())
    assert (response.status_code, response.text) == (200, "Hello, Kerberos!")


def test_strip_realm_names_the_user_without_it(serve: Any, realm: Realm) -> None:
    server = serve(strip_realm=True, realms=[REALM])
    response = get(server, "/wsgi/", realm.negotiate())
    assert response.json() == {"user": USER, "auth_type": "Negotiate"}


def test_a_realm_not_allowed_is_refused(serve: Any, realm: Realm) -> None:
    server = serve(realms=["OTHER.TEST"])
    response = get(server, "/wsgi/", realm.negotiate())
    assert response.status_code == 401
    assert challenges(response) == ["Negotiate"]


def test_a_replayed_token_is_refused(serve: Any, realm: Realm) -> None:
    server = serve()
    token = realm.negotiate()
    assert get(server, "/wsgi/", token).status_code == 200
    again = get(server, "/wsgi/", token)
    assert again.status_code == 401
    assert challenges(again) == ["Negotiate"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Negotiate",  # no token
        "Negotiate !!!not base64!!!",
        "Negotiate " + base64.b64encode(b"\x60\x82garbage that is no SPNEGO token").decode(),
        "Negotiate " + base64.b64encode(bytes(range(256)) * 4).decode(),
        "Negotiate " + "A" * (17 * 1024),  # longer than core.auth.MAX_AUTHORIZATION
        "negotiate " + base64.b64encode(b"\x00").decode(),  # the scheme is case-insensitive
    ],
    ids=["empty", "not-base64", "garbage-gss", "binary", "oversized", "lower-case"],
)
def test_bad_tokens_are_a_401_with_the_challenge_never_a_500(
    serve: Any, authorization: str
) -> None:
    server = serve()
    response = get(server, "/wsgi/", authorization)
    assert response.status_code == 401
    assert challenges(response) == ["Negotiate"]


def test_another_scheme_is_left_to_its_module(serve: Any) -> None:
    # Basic credentials are not Negotiate's: no 401.1 from it; anonymous-off answers.
    server = serve()
    response = get(server, "/wsgi/", "Basic " + base64.b64encode(b"alice:x").decode())
    assert response.status_code == 401
    assert challenges(response) == ["Negotiate"]


def test_a_ticket_for_another_service_is_refused(serve: Any, realm: Realm, tmp_path: Path) -> None:
    # HTTP/www.localhost exists in the realm, but its key is not in the server's keytab.
    realm.add_service(f"HTTP/www.{HOST}", keytab=tmp_path / "elsewhere.keytab")
    server = serve()
    response = get(server, "/wsgi/", realm.negotiate(host=f"www.{HOST}"))
    assert response.status_code == 401


def test_with_anonymous_on_no_token_is_served_without_a_challenge(serve: Any, realm: Realm) -> None:
    server = serve(anonymous=True)
    response = get(server, "/wsgi/")
    assert response.json() == {"user": None, "auth_type": None}
    assert challenges(response) == []
    # A token still authenticates where anonymous access is allowed.
    response = get(server, "/wsgi/", realm.negotiate())
    assert response.json() == {"user": f"{USER}@{REALM}", "auth_type": "Negotiate"}


def test_an_applications_own_401_gets_the_challenge(serve: Any, realm: Realm) -> None:
    server = serve(anonymous=True)
    response = get(server, "/wsgi/deny")
    assert (response.status_code, response.text) == (401, "not you")
    assert challenges(response) == ["Negotiate"]
    # After a good ticket the application refused all the same: a fresh challenge.
    response = get(server, "/wsgi/deny", realm.negotiate())
    assert response.status_code == 401
    assert challenges(response) == ["Negotiate"]


def test_a_key_rotated_into_the_keytab_is_used_without_a_restart(
    serve: Any, realm: Realm, tmp_path: Path
) -> None:
    host = f"rotate.{HOST}"
    keytab = tmp_path / "rotate.keytab"
    realm.add_service(f"HTTP/{host}", keytab=keytab)
    server = serve(keytab=str(keytab))
    assert get(server, "/wsgi/", realm.negotiate(host)).status_code == 200
    # A new key (a new kvno) for the service, appended to the keytab the server
    # already uses; kinit starts the cache afresh, so the ticket is under the new key.
    realm.kadmin(f"ktadd -k {keytab} HTTP/{host}")
    ccache = realm.kinit(USER, PASSWORD)
    response = get(server, "/wsgi/", realm.negotiate(host, ccache))
    assert response.json() == {"user": f"{USER}@{REALM}", "auth_type": "Negotiate"}


def test_concurrent_logons_are_judged_each_on_its_own(serve: Any, realm: Realm) -> None:
    server = serve()
    tokens = [realm.negotiate() for _ in range(24)] + ["Negotiate AAAA"] * 8

    async def all_at_once() -> list[int]:
        async with httpx.AsyncClient(timeout=PATIENCE) as client:
            base = f"http://127.0.0.1:{server.port}"
            host = f"{HOST}:{server.port}"
            answers = await asyncio.gather(
                *(
                    client.get(f"{base}/wsgi/", headers={"Host": host, "Authorization": token})
                    for token in tokens
                )
            )
        return [answer.status_code for answer in answers]

    assert asyncio.run(all_at_once()) == [200] * 24 + [401] * 8


def test_tokens_beyond_the_bound_are_503_not_queued(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One token held in gss_accept_sec_context (a slow keytab read, say): with a
    # bound of one, the next token is answered 503 at once instead of queueing.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from colonnade.modules.negotiate_auth import gss, module

    monkeypatch.setattr(module, "MAX_CHECKS", 1)
    entered, release = threading.Event(), threading.Event()
    real = gss.Acceptor.accept

    def held(self: Any, token: bytes) -> Any:
        entered.set()
        release.wait(PATIENCE)
        return real(self, token)

    monkeypatch.setattr(gss.Acceptor, "accept", held)
    server = serve()
    garbage = "Negotiate " + base64.b64encode(b"not a token").decode()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(get, server, "/wsgi/", garbage)
        assert entered.wait(PATIENCE)
        try:
            second = get(server, "/wsgi/", garbage)
        finally:
            release.set()
        assert second.status_code == 503
        assert second.headers["retry-after"] == "1"
        assert first.result().status_code == 401  # judged once a thread had it
    assert get(server, "/wsgi/", garbage).status_code == 401  # the count came back
