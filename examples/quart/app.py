"""A Quart application (Flask's API on ASGI): a page, a JSON route, a WebSocket."""

from quart import Quart, jsonify, request, websocket

app = Quart(__name__)


@app.get("/")
async def index() -> str:
    return "Hello from Quart"


@app.get("/api/greet")
async def greet():  # type: ignore[no-untyped-def]
    name = request.args.get("name", "world")
    return jsonify(greeting=f"hello, {name}", framework="quart")


@app.websocket("/ws")
async def echo() -> None:
    while True:
        text = await websocket.receive()
        await websocket.send(f"echo: {text}")
