"""The application of each node: it says which node answered and whom it sees as
the client (the real one: the node trusts the front end's X-Forwarded-For), counts
the visits of this browser's session (state.session, kept in Redis: any node finds
it), and serves a page the output cache keeps in Redis for every node."""

import json
import os
import time

NODE = os.environ.get("NODE_NAME", "node")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/cached":
        # Made once a minute by whichever node is asked first; the others serve
        # the copy from Redis (output_cache store = "redis").
        body = json.dumps({"made_by": NODE, "at": time.time()})
    else:
        session = scope["session"]
        session["visits"] = session.get("visits", 0) + 1
        client = scope["client"][0] if scope.get("client") else None
        body = json.dumps({"node": NODE, "visits": session["visits"], "client": client})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
