"""A third-party module: stamps responses and counts requests per stage."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from urllib.parse import unquote

import msgspec

from colonnade import Context, Handler, Module, Priority, Section, Stage, hook
from colonnade.core.app import Application


class StampSection(Section):
    """``[acme_stamp]``: the header value to add."""

    key = "acme_stamp"
    value: str = "acme"
    max_len: int = msgspec.field(default=64)


class Stamp(Module):
    """Adds ``x-acme`` to every response; records the stages it saw."""

    id = "acme.stamp"
    section = StampSection

    @hook(Stage.BEGIN_REQUEST, priority=Priority.HIGH)
    def begin(self, ctx: Context) -> None:
        ctx.items["acme.stages"] = ["BEGIN_REQUEST"]

    @hook(Stage.SEND_RESPONSE)
    async def stamp(self, ctx: Context) -> None:
        ctx.response.headers.append((b"x-acme", ctx.section(StampSection).value.encode()))

    @hook(Stage.END_REQUEST)
    def end(self, ctx: Context) -> None:
        ctx.items.setdefault("acme.stages", []).append("END_REQUEST")


class Slow(Handler):
    """Answers after ``?ms=N`` milliseconds; echoes a request body it reads whole.

    ``?until=PATH`` holds the answer until the file PATH exists (a test's gate, for at
    most a minute); with ``?head=1`` the response head goes out before that wait, so
    that a client sees its request is being handled.
    """

    id = "acme.slow"

    async def execute(self, ctx: Context) -> None:
        query = dict(
            part.split("=", 1) for part in ctx.request.query.decode().split("&") if "=" in part
        )
        if query.get("head"):
            ctx.response.headers.append((b"content-type", b"text/plain"))
            await ctx.start_response()
        await asyncio.sleep(int(query.get("ms", "0")) / 1000)
        if "until" in query:
            path, deadline = unquote(query["until"]), time.monotonic() + 60
            while _shut(path, deadline):  # noqa: ASYNC110 - the gate is another process's file
                await asyncio.sleep(0.01)
        body = await ctx.request.body.read()
        if not ctx.response.headers_sent:
            ctx.response.headers.append((b"content-type", b"text/plain"))
        if query.get("stream"):
            pad = b"." * int(query.get("pad", "0"))
            for i in range(int(query["stream"])):
                await ctx.write(b"chunk%d;" % i + pad)
            return
        if ctx.response.headers_sent:
            await ctx.write(b"slow:" + body)
        else:
            ctx.response.body = b"slow:" + body


def _shut(gate: str, deadline: float) -> bool:
    """True while the file ``gate`` (made by a test) does not exist, until ``deadline``."""
    return not os.path.exists(gate) and time.monotonic() < deadline


class Pid(Handler):
    """Answers who serves: ``{"pid", "uid", "gid", "pool", "path"}`` as JSON.

    ``?block=MS`` blocks the event loop that long (a hung worker); ``?read=PATH``
    tries to read a file, ``?write=PATH`` to append to one, and each reports
    ``"ok"`` or the error name (sandbox tests).
    """

    id = "acme.pid"

    async def execute(self, ctx: Context) -> None:
        query = dict(
            part.split("=", 1) for part in ctx.request.query.decode().split("&") if "=" in part
        )
        if "block" in query:
            time.sleep(int(query["block"]) / 1000)  # noqa: ASYNC251 - blocking on purpose
        info: dict[str, object] = {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "pool": os.environ.get("COLONNADE_POOL"),
            "path": ctx.request.path,
            "env": os.environ.get("ACME_ENV"),
        }
        if "read" in query:
            try:
                with open(unquote(query["read"]), "rb") as f:  # noqa: ASYNC230 - a probe
                    f.read(1)
                info["read"] = "ok"
            except OSError as exc:
                info["read"] = errno.errorcode.get(exc.errno or 0, str(exc))
        if "write" in query:
            try:
                with open(unquote(query["write"]), "ab") as f:  # noqa: ASYNC230 - a probe
                    f.write(b"x")
                info["write"] = "ok"
            except OSError as exc:
                info["write"] = errno.errorcode.get(exc.errno or 0, str(exc))
        ctx.response.headers.append((b"content-type", b"application/json"))
        ctx.response.body = json.dumps(info).encode()


class Crash(Handler):
    """Kills its worker on every request it answers; with ``ACME_CRASH=start`` (a pool's
    ``env``) already at start, with ``ACME_CRASH=until:PATH`` it starts only once the
    file PATH exists (a test's gate, at most a minute later)."""

    id = "acme.crash"

    def provision(self, app: Application) -> None:
        mode = os.environ.get("ACME_CRASH", "")
        if mode == "start":
            os._exit(3)
        if mode.startswith("until:"):
            path, deadline = mode.removeprefix("until:"), time.monotonic() + 60
            while _shut(path, deadline):
                time.sleep(0.01)

    async def execute(self, ctx: Context) -> None:
        os._exit(4)


class FarmPick(Handler):
    """Answers which member of the farm ``app`` the request goes to, as JSON
    ``{"member", "pid"}`` (no proxying: the farm's choice is the answer), with
    the affinity cookie when there is one; 502 when no member may take it.
    ``?hold=MS`` keeps the request in flight that long; ``?outcome=failed``
    (or ``connect_failed``) reports the request failed."""

    id = "acme.farm"

    def provision(self, app: Application) -> None:
        from colonnade.providers.farms import farm_for

        self.farm = farm_for(app.farms["app"], name="app")

    async def shutdown(self) -> None:
        await self.farm.close()

    async def execute(self, ctx: Context) -> None:
        query = dict(
            part.split("=", 1) for part in ctx.request.query.decode().split("&") if "=" in part
        )
        lease = self.farm.choose(ctx)
        ctx.response.headers.append((b"content-type", b"application/json"))
        if lease is None:
            ctx.response.status = 502
            ctx.response.body = b'{"member": null}'
            return
        started = time.monotonic()
        try:
            await asyncio.sleep(int(query.get("hold", "0")) / 1000)
        finally:
            outcome = query.get("outcome", "ok")
            lease.finished(outcome, time.monotonic() - started)  # type: ignore[arg-type]
        if lease.set_cookie is not None:
            ctx.response.headers.append((b"set-cookie", lease.set_cookie))
        info = {"member": lease.member.name, "pid": os.getpid()}
        ctx.response.body = json.dumps(info).encode()
