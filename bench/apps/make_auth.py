"""Generate the folders of the ``auth`` workload (stdlib and the real htpasswd tool).

    cd bench && python -m apps.make_auth [OUT]      (default: bench/out/auth)

The workload serves the same 1 KiB file anonymously and behind each authentication
scheme, every variant from its own content folder whose ``web.toml`` enables the
scheme and a URL authorization rule refusing anonymous requests (the usual way to
protect a folder), so the protected rows pay for authentication and authorization:

    OUT/keys/users.htpasswd   user ``bench``, made by ``htpasswd -bB`` (bcrypt)
    OUT/keys/jwt.secret       the HS256 secret (outside the content, as auth.jwt asks)
    OUT/basic/                1k.bin, web.toml (auth.basic + authz.url)
    OUT/jwt/                  1k.bin, web.toml (auth.jwt + authz.url)
    OUT/keys/forms.keys       the forms key ring (one random AES-256 key)
    OUT/keys/forms.cookie     a ticket for ``bench`` sealed with it (until 2100)
    OUT/forms/                1k.bin, web.toml (auth.forms + authz.url)
    OUT/*/public/hello.txt    what the readiness probe asks for: open to anyone

The credentials the load sends come from :func:`headers`: a Basic header, a JWT
signed here with the stdlib (HS256 is deterministic), and a forms ticket cookie,
which only Colonnade can seal (AES-GCM with a random nonce): it is made once by an
interpreter that has Colonnade (``generate(python=...)``) and kept with its key.
Idempotent: files are rewritten only when their content changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from apps.make_modules import HELLO, write_if_changed

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "out" / "auth"
USER, PASSWORD = "bench", "bench-password"
JWT_SECRET = b"colonnade-bench-hs256-secret-of-32-bytes!"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt() -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": USER, "iss": "bench", "exp": 4102444800}  # 2100-01-01
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(JWT_SECRET, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


_BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode("ascii")
FORMS_COOKIE = ".COLONNADEAUTH"
#: The variant folders, each protected by one scheme.
SCHEMES = ("basic", "forms", "jwt")


def headers(scheme: str, out: Path = DEFAULT_OUT) -> tuple[str, ...]:
    """The request headers that authenticate in variant ``scheme`` (after generate)."""
    if scheme == "basic":
        return (f"Authorization: Basic {_BASIC}",)
    if scheme == "jwt":
        return (f"Authorization: Bearer {_jwt()}",)
    ticket = (out / "keys" / "forms.cookie").read_text().strip()
    return (f"Cookie: {FORMS_COOKIE}={ticket}",)


_SEAL = """
import sys, time
from colonnade.modules.forms_auth.ticket import KeyRing, Ticket, parse_keys
keys = parse_keys(open(sys.argv[1]).read(), sys.argv[1], lines=True)
ticket = Ticket(sys.argv[2], (), int(time.time()), 4102444800)
print(KeyRing(keys).seal(ticket, sys.argv[3]))
"""


def _forms(keys: Path, python: str) -> None:
    key_file, cookie = keys / "forms.keys", keys / "forms.cookie"
    if key_file.is_file() and cookie.is_file():
        return
    write_if_changed(key_file, base64.b64encode(os.urandom(32)) + b"\n")
    sealed = subprocess.run(
        [python, "-c", _SEAL, str(key_file), USER, FORMS_COOKIE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    write_if_changed(cookie, sealed.encode() + b"\n")


_PROTECT = """
[url_authorization]
rules = { add = [{ access = "deny", users = ["?"] }] }
"""
_PUBLIC = """[url_authorization]
rules = [{ access = "allow", users = ["*"] }]
"""


def _htpasswd(path: Path) -> None:
    if path.is_file() and f"{USER}:$2y$".encode() in path.read_bytes():
        return
    tool = shutil.which("htpasswd")
    if tool is None:
        raise SystemExit("htpasswd not found: install apache2-utils (make sysdeps)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([tool, "-bcB", str(path), USER, PASSWORD], check=True, capture_output=True)


def generate(
    out: Path = DEFAULT_OUT, www: Path | None = None, python: str = sys.executable
) -> Path:
    """Write the variants under ``out``; ``www`` holds the 1k.bin they serve;
    ``python`` has Colonnade (it seals the forms ticket)."""
    out = out.resolve()
    source = (www or DEFAULT_OUT.parent / "www") / "1k.bin"
    keys = out / "keys"
    _htpasswd(keys / "users.htpasswd")
    write_if_changed(keys / "jwt.secret", JWT_SECRET)
    _forms(keys, python)
    web = {
        "basic": f"""[modules]
add = ["auth.basic", "authz.url"]

[basic_authentication]
enabled = true
realm = "bench"
user_file = "{keys / "users.htpasswd"}"
""",
        "forms": f"""[modules]
add = ["auth.forms", "authz.url"]

[forms_authentication]
enabled = true
key_file = "{keys / "forms.keys"}"
""",
        "jwt": f"""[modules]
add = ["auth.jwt", "authz.url"]

[jwt_authentication]
enabled = true
algorithms = ["HS256"]
issuer = "bench"
secret_file = "{keys / "jwt.secret"}"
""",
    }
    for name, text in web.items():
        write_if_changed(out / name / "1k.bin", source.read_bytes())
        write_if_changed(out / name / "web.toml", (text + _PROTECT).encode())
        write_if_changed(out / name / "public" / "hello.txt", HELLO)
        write_if_changed(out / name / "public" / "web.toml", _PUBLIC.encode())
    return out


if __name__ == "__main__":
    print(generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
