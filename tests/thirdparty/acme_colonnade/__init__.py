"""A third-party module: stamps responses and counts requests per stage."""

from __future__ import annotations

import asyncio

import msgspec

from colonnade import Context, Handler, Module, Priority, Section, Stage, hook


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
    """Answers after ``?ms=N`` milliseconds; echoes a request body it reads whole."""

    id = "acme.slow"

    async def execute(self, ctx: Context) -> None:
        query = dict(
            part.split("=", 1) for part in ctx.request.query.decode().split("&") if "=" in part
        )
        await asyncio.sleep(int(query.get("ms", "0")) / 1000)
        body = await ctx.request.body.read()
        ctx.response.headers.append((b"content-type", b"text/plain"))
        if query.get("stream"):
            pad = b"." * int(query.get("pad", "0"))
            for i in range(int(query["stream"])):
                await ctx.write(b"chunk%d;" % i + pad)
            return
        ctx.response.body = b"slow:" + body
