"""A real MIT KDC for the Negotiate tests, one per test module; skips without one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from colonnade.core.context import Context
from colonnade.core.module import FINISH, Module, Outcome, Priority, hook
from colonnade.core.stages import Stage

from .kdc import HOST, REALM, Realm, missing_tools

USER, PASSWORD = "alice", "alice-password-1"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    """The realm ``COLONNADE.TEST``: user ``alice``, service ``HTTP/localhost`` in
    ``realm.keytab``, ``alice``'s ticket in ``realm.ccache``. ``KRB5_CONFIG`` points
    at its krb5.conf for this process (the acceptor runs in the test's server)."""
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"no MIT Kerberos KDC tools here ({', '.join(missing)} missing): "
            "`make sysdeps` installs krb5-kdc, krb5-admin-server and krb5-user"
        )
    pytest.importorskip(
        "gssapi", reason="the gssapi package is not installed (pip install 'colonnade[kerberos]')"
    )
    kdc = Realm(tmp_path_factory.mktemp("realm")).start()
    before = os.environ.get("KRB5_CONFIG")
    os.environ["KRB5_CONFIG"] = str(kdc.krb5_conf)
    try:
        kdc.add_user(USER, PASSWORD)
        kdc.add_service(f"HTTP/{HOST}")
        kdc.ccache = kdc.kinit(USER, PASSWORD)
        yield kdc
    finally:
        if before is None:
            os.environ.pop("KRB5_CONFIG", None)
        else:
            os.environ["KRB5_CONFIG"] = before
        kdc.stop()


class NoAnonymous(Module):
    """Test-only stand-in for ``auth.anonymous`` switched off: a request that no
    scheme authenticated is a 401.2 (the schemes add their challenges)."""

    id = "tests.no_anonymous"

    @hook(Stage.AUTHENTICATE_REQUEST, priority=Priority.LAST)
    def authenticate_request(self, ctx: Context) -> Outcome | None:
        if ctx.user is None:
            ctx.error_response(401, 2, "Unauthorized: anonymous access is off")
            return FINISH
        return None


__all__ = ["HOST", "PASSWORD", "REALM", "USER", "NoAnonymous"]
