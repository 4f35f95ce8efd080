"""A Litestar application: a page and a JSON route."""

from litestar import Litestar, get


@get("/", media_type="text/plain")
async def index() -> str:
    return "Hello from Litestar"


@get("/items/{n:int}")
async def item(n: int) -> dict[str, object]:
    return {"item": n, "framework": "litestar"}


app = Litestar(route_handlers=[index, item])
