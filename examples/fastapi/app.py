"""A FastAPI application: its lifespan (startup and shutdown) and background tasks.

The lifespan opens a resource at startup (here a list standing in for a database
pool) and says it closed it at shutdown; ``POST /jobs/{name}`` answers at once and
runs the job after the response is sent (``BackgroundTasks``); ``GET /jobs`` shows
the jobs done.
"""

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.done = []
    app.state.started = True
    print("lifespan: startup complete", file=sys.stderr, flush=True)
    yield
    print(f"lifespan: shutdown, {len(app.state.done)} job(s) done", file=sys.stderr, flush=True)


app = FastAPI(lifespan=lifespan)


async def run_job(name: str) -> None:
    await asyncio.sleep(0.05)  # the work, after the response has gone
    app.state.done.append(name)


@app.get("/")
async def index() -> dict[str, object]:
    return {"hello": "fastapi", "lifespan_started": app.state.started}


@app.post("/jobs/{name}", status_code=202)
async def submit(name: str, tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(run_job, name)
    return {"accepted": name}


@app.get("/jobs")
async def jobs() -> dict[str, list[str]]:
    return {"done": list(app.state.done)}
