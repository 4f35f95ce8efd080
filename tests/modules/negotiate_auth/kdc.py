"""A throw-away MIT Kerberos realm for the tests: a real KDC on a free port.

Everything lives in one temporary folder: ``krb5.conf`` (``KRB5_CONFIG``) for
the clients and the acceptor, ``kdc.conf`` (``KRB5_KDC_PROFILE``) for the KDC
tools, the database, the service keytab and the users' credential caches. The
KDC runs in the foreground (``krb5kdc -n``) as a child of the test process and
is stopped at teardown. Host names are taken as given (no DNS, no reverse
DNS): ``localhost`` is in the realm through ``[domain_realm]``.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.wait import PATIENCE, wait_for

REALM = "COLONNADE.TEST"
#: The host name the clients use for the server, so the service is HTTP/localhost.
HOST = "localhost"
#: Where Debian puts the KDC's tools (not always on a user's PATH).
_SBIN = ("/usr/sbin", "/sbin")

KDC_TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")


def tool(name: str) -> str | None:
    """The path of a Kerberos tool, or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def missing_tools() -> list[str]:
    """The KDC tools this machine lacks (``make sysdeps`` installs them)."""
    return [name for name in KDC_TOOLS if tool(name) is None]


class Realm:
    """A realm with a running KDC. ``add_user`` and ``add_service`` make
    principals; ``kinit`` gets a user's ticket into a ccache of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.krb5_conf = folder / "krb5.conf"
        self.kdc_conf = folder / "kdc.conf"
        self.keytab = folder / "http.keytab"
        self.kdc: subprocess.Popen[bytes] | None = None
        #: The main test user's credential cache (set by whoever runs ``kinit``).
        self.ccache = ""
        self.krb5_conf.write_text(
            f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{self.port}
    }}
[domain_realm]
    {HOST} = {REALM}
    .{HOST} = {REALM}
"""
        )
        self.kdc_conf.write_text(
            f"""[kdcdefaults]
    kdc_ports = {self.port}
    kdc_tcp_ports = {self.port}
[realms]
    {REALM} = {{
        database_name = {folder}/principal
        key_stash_file = {folder}/stash
        acl_file = {folder}/kadm5.acl
        kdc_ports = {self.port}
        kdc_tcp_ports = {self.port}
    }}
[logging]
    kdc = FILE:{folder}/kdc.log
"""
        )
        self.env = dict(
            os.environ,
            KRB5_CONFIG=str(self.krb5_conf),
            KRB5_KDC_PROFILE=str(self.kdc_conf),
            KRB5CCNAME=f"FILE:{folder}/nobody.ccache",
        )

    def _run(self, *args: str, stdin: bytes = b"") -> str:
        exe = tool(args[0])
        assert exe is not None, args[0]
        done = subprocess.run(
            [exe, *args[1:]],
            input=stdin,
            env=self.env,
            capture_output=True,
            timeout=PATIENCE,
            check=False,
        )
        output = (done.stdout + done.stderr).decode(errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {output}")
        return output

    def kadmin(self, query: str) -> str:
        """Run one ``kadmin.local`` query on the realm's database."""
        return self._run("kadmin.local", "-r", REALM, "-q", query)

    def start(self) -> Realm:
        """Create the database and start the KDC; return once it accepts connections."""
        self._run("kdb5_util", "create", "-s", "-r", REALM, "-P", "master-password-of-the-test")
        (self.folder / "kadm5.acl").write_text("")
        self.log = open(self.folder / "krb5kdc.out", "wb")  # noqa: SIM115 - closed in stop()
        exe = tool("krb5kdc")
        assert exe is not None
        self.kdc = subprocess.Popen(
            [exe, "-n", "-r", REALM],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(self._listening, PATIENCE, f"krb5kdc listening on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _listening(self) -> bool:
        assert self.kdc is not None
        if self.kdc.poll() is not None:
            log = (self.folder / "krb5kdc.out").read_text(errors="replace")
            raise RuntimeError(f"krb5kdc exited ({self.kdc.returncode}): {log}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop the KDC (and wait for it)."""
        if self.kdc is not None and self.kdc.poll() is None:
            self.kdc.terminate()
            try:
                self.kdc.wait(PATIENCE)
            except subprocess.TimeoutExpired:
                self.kdc.kill()
                self.kdc.wait(PATIENCE)
        if hasattr(self, "log"):
            self.log.close()

    def add_user(self, name: str, password: str) -> None:
        """A user principal ``name@REALM`` with ``password``."""
        self.kadmin(f"addprinc -pw {password} {name}")

    def add_service(self, principal: str, keytab: Path | None = None) -> None:
        """A service principal with a random key, exported to ``keytab``
        (default: the realm's HTTP keytab)."""
        self.kadmin(f"addprinc -randkey {principal}")
        self.kadmin(f"ktadd -k {keytab or self.keytab} {principal}")

    def kinit(self, name: str, password: str) -> str:
        """Get ``name``'s ticket with its password (on stdin) into a ccache of its
        own; returns the ccache name (``FILE:...``) for ``KRB5CCNAME``."""
        ccache = f"FILE:{self.folder}/{name.replace('/', '_')}.ccache"
        env_ccache = self.env["KRB5CCNAME"]
        self.env["KRB5CCNAME"] = ccache
        try:
            self._run("kinit", name, stdin=password.encode() + b"\n")
        finally:
            self.env["KRB5CCNAME"] = env_ccache
        return ccache

    def client_env(self, ccache: str) -> dict[str, str]:
        """The environment of a client process using ``ccache``."""
        return dict(self.env, KRB5CCNAME=ccache)

    def initiator(self, host: str = HOST, ccache: str = "") -> Any:
        """A python-gssapi client context for ``HTTP@host`` (SPNEGO, mutual
        authentication asked) with the tickets in ``ccache`` (default: the user's)."""
        import gssapi  # the tests that call this skip without it

        return gssapi.SecurityContext(
            name=gssapi.Name(f"HTTP@{host}", gssapi.NameType.hostbased_service),
            creds=gssapi.Credentials(usage="initiate", store={"ccache": ccache or self.ccache}),
            usage="initiate",
            mech=gssapi.Mechanism.from_sasl_name("SPNEGO"),
            flags=gssapi.RequirementFlag.mutual_authentication,
        )

    def negotiate(self, host: str = HOST, ccache: str = "") -> str:
        """A fresh ``Authorization`` value: ``Negotiate <the client's first token>``."""
        return negotiate(self.initiator(host, ccache).step())


def negotiate(token: bytes) -> str:
    """``Negotiate <base64 token>``, as a client sends it."""
    return "Negotiate " + base64.b64encode(token).decode()
