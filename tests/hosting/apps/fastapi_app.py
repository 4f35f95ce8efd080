"""A small FastAPI application (ASGI), with a lifespan and background tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from tests.support.wait import PATIENCE, wait_for_async

#: Set when the background task of /slow-background has finished.
BACKGROUND_DONE = threading.Event()
#: Set by the test to let the background task of /slow-background finish.
BACKGROUND_GO_ON = threading.Event()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    yield {"started_by": "lifespan"}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    """An item by id."""
    if item_id == 404:
        raise HTTPException(status_code=404, detail="no such item")
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item) -> dict[str, object]:
    """Validates the body (422 on error)."""
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, object]:
    """The lifespan state, root_path and what colonnade passed in."""
    ext = request.scope["extensions"]["colonnade"]
    return {
        "started_by": request.state.started_by,
        "root_path": request.scope["root_path"],
        "url": str(request.url),
        "user": ext["user"].name if ext["user"] else None,
    }


@app.get("/stream")
async def stream() -> StreamingResponse:
    """A streamed response of five parts."""

    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"part {i}\n".encode()
            await asyncio.sleep(0.01)  # the behaviour: parts produced over time

    return StreamingResponse(parts(), media_type="text/plain")


@app.get("/slow-background")
async def slow_background(tasks: BackgroundTasks) -> dict[str, str]:
    """Answers at once; a background task runs on afterwards, until BACKGROUND_GO_ON."""
    BACKGROUND_DONE.clear()

    async def work() -> None:
        await wait_for_async(BACKGROUND_GO_ON.is_set, PATIENCE, "the test's go-ahead")
        BACKGROUND_DONE.set()

    tasks.add_task(work)
    return {"status": "accepted"}
