"""Raw ASGI 3 app: 200 "Hello, world!" text/plain. No framework, so the server is what is measured.

Serve with e.g. ``uvicorn apps.asgi_hello:app --app-dir bench``.
"""

BODY = b"Hello, world!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
BODY_MSG = {"type": "http.response.body", "body": BODY, "more_body": False}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    kind = scope["type"]
    if kind == "http":
        await send(START)
        await send(BODY_MSG)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    else:  # websocket: refuse
        await send({"type": "websocket.close", "code": 1000})
