"""The upstream of the proxy tests: a Starlette application (served by a
Colonnade node in the tests) that tells what it received."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


async def headers(request: Request) -> Response:
    return JSONResponse(
        {
            "headers": [[k, v] for k, v in request.headers.items()],
            "path": request.url.path,
            "query": request.url.query,
            "method": request.method,
            "client": list(request.client or ()),
        }
    )


async def digest(request: Request) -> Response:
    sha = hashlib.sha256()
    size = 0
    async for piece in request.stream():
        sha.update(piece)
        size += len(piece)
    return PlainTextResponse(f"{size} {sha.hexdigest()}")


async def big(request: Request) -> Response:
    size = int(request.query_params.get("n", "1000000"))
    block = b"0123456789abcdef" * 4096

    async def pieces() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)

    return StreamingResponse(pieces(), headers={"content-length": str(size)})


async def redirect(request: Request) -> Response:
    host = request.headers["host"]
    return Response(
        status_code=302,
        headers={
            "location": f"http://{host}/target?x=1",
            "content-location": f"http://{host}/here",
            "set-cookie": f"s=1; Domain={host.partition(':')[0]}; Path=/",
        },
    )


async def denied(request: Request) -> Response:
    return PlainTextResponse("no", status_code=401, headers={"www-authenticate": "Basic"})


async def hop(request: Request) -> Response:
    return PlainTextResponse(
        "hop", headers={"connection": "x-private", "x-private": "secret", "keep-alive": "5"}
    )


async def ws_echo(socket: WebSocket) -> None:
    await socket.accept(subprotocol=None)
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await socket.send_text("echo: " + message["text"])
            elif message.get("bytes") is not None:
                await socket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


routes = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/headers", headers, methods=["GET", "POST", "HEAD", "DELETE"]),
        Route("/digest", digest, methods=["POST", "PUT"]),
        Route("/big", big),
        Route("/redirect", redirect),
        Route("/denied", denied, methods=["GET", "POST"]),
        Route("/hop", hop),
        WebSocketRoute("/ws", ws_echo),
    ]
)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Each piece of the request body sent back as it arrives. Plain ASGI:
    Starlette's StreamingResponse also listens for a disconnect, which under
    some servers takes body messages away from the request stream."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
        await send(
            {"type": "http.response.body", "body": message.get("body", b""), "more_body": more}
        )


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: /echo, and the Starlette routes."""
    if scope["type"] == "http" and scope["path"] == "/echo":
        await echo(scope, receive, send)
    else:
        await routes(scope, receive, send)
