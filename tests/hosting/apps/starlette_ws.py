"""A Starlette application with a WebSocket echo endpoint."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

#: Close codes the endpoint saw.
CLOSES: list[int] = []


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                CLOSES.append(message["code"])
                return
            if message.get("text") is not None:
                await websocket.send_text("echo: " + message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        CLOSES.append(exc.code)


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("starlette home")


app = Starlette(routes=[Route("/", home), WebSocketRoute("/ws", echo)])
