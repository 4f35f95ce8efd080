"""A Starlette application: a page, a JSON route, a WebSocket echo, a lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def index(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello from Starlette")


async def item(request: Request) -> JSONResponse:
    return JSONResponse({"item": request.path_params["n"], "started": request.app.state.started})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"echo: {text}")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.started = True
    yield


app = Starlette(
    routes=[
        Route("/", index),
        Route("/items/{n:int}", item),
        WebSocketRoute("/ws", echo),
    ],
    lifespan=lifespan,
)
