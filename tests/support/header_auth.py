"""A test-only authentication scheme (never shipped): ``Authorization: Test NAME[;ROLE,ROLE]``.

It follows the scheme contract of ``colonnade.core.auth`` like the real schemes:
it reads only its own scheme, refuses wrong credentials (the name ``bad``) with
401.1, and adds its challenge to every 401 at SEND_RESPONSE while it is enabled
for the URL. ``OtherHeaderAuth`` is a second scheme (``Other``), to see one
challenge per enabled scheme.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from colonnade import FINISH, Context, Module, Outcome, Section, Stage, hook
from colonnade.core.auth import (
    CHALLENGE_PRIORITY,
    add_challenge,
    authorization,
    refuse_credentials,
)
from colonnade.core.principal import Principal
from colonnade.testing import Client, build_engine


class HeaderAuthSection(Section, frozen=True):
    """``[test_header_auth]``."""

    key = "test_header_auth"
    enabled: bool = True
    realm: str = "test"


class HeaderAuth(Module):
    """``test.header_auth``: the user named in ``Authorization: Test NAME;ROLES``."""

    id = "test.header_auth"
    section: type[Section] = HeaderAuthSection
    scheme = "test"
    auth_type = "Test"

    def settings(self, ctx: Context) -> HeaderAuthSection:
        found = ctx.section(self.section)
        assert isinstance(found, HeaderAuthSection)
        return found

    @hook(Stage.AUTHENTICATE_REQUEST)
    def authenticate_request(self, ctx: Context) -> Outcome | None:
        if not self.settings(ctx).enabled:
            return None
        found = authorization(ctx.request)
        if found is None or found.scheme != self.scheme:
            return None
        name, _, roles = found.credentials.decode("latin-1").partition(";")
        if not name or name == "bad":
            refuse_credentials(ctx, self.scheme, "unknown user")
            return FINISH
        ctx.user = Principal(name, self.auth_type, frozenset(filter(None, roles.split(","))))
        return None

    @hook(Stage.SEND_RESPONSE, priority=CHALLENGE_PRIORITY)
    def send_response(self, ctx: Context) -> None:
        settings = self.settings(ctx)
        if ctx.response.status == 401 and settings.enabled:
            challenge = f'{self.auth_type} realm="{settings.realm}"'.encode()
            add_challenge(ctx, challenge)


class OtherHeaderAuthSection(HeaderAuthSection, frozen=True):
    """``[test_other_auth]``."""

    key = "test_other_auth"


class OtherHeaderAuth(HeaderAuth):
    """``test.other_auth``: the same, as scheme ``Other``."""

    id = "test.other_auth"
    section = OtherHeaderAuthSection
    scheme = "other"
    auth_type = "Other"


def credentials(name: str, *roles: str) -> dict[str, str]:
    """The request header that authenticates ``name`` with ``roles``."""
    value = name + (";" + ",".join(roles) if roles else "")
    return {"Authorization": f"Test {value}"}


@contextlib.contextmanager
def clients(*modules: type[Module]) -> Iterator[Callable[[dict[str, Any]], Client]]:
    """``start(config)``: an in-process client (the real pipeline) for ``config``, with
    ``modules`` registered; every client started is closed at the end."""
    started: list[Client] = []

    def start(config: dict[str, Any]) -> Client:
        client = Client(build_engine(config, modules=modules)).__enter__()
        started.append(client)
        return client

    try:
        yield start
    finally:
        for client in started:
            client.__exit__(None, None, None)
