"""A small Flask application (WSGI)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, session, stream_with_context, url_for

app = Flask(__name__)
app.config["SECRET_KEY"] = "test-only-secret"


@app.get("/")
def index() -> dict[str, str]:
    """Where Flask thinks it is."""
    return {
        "script_root": request.script_root,
        "path": request.path,
        "url": request.url,
        "url_for": url_for("index"),
        "remote_addr": request.remote_addr or "",
    }


@app.post("/json")
def echo_json() -> Response:
    """Echoes a JSON body with one more key."""
    data = request.get_json()
    return jsonify({**data, "seen": True})


@app.post("/form")
def form() -> dict[str, list[str]]:
    """The form fields and uploaded file sizes."""
    out = {k: request.form.getlist(k) for k in request.form}
    for name, f in request.files.items():
        out[name] = [f.filename or "", str(len(f.read()))]
    return out


@app.get("/session")
def visit() -> dict[str, int]:
    """Counts visits in the signed session cookie."""
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"]}


@app.get("/stream")
def stream() -> Response:
    """A streamed response that reads the request while streaming."""

    def generate() -> Iterator[str]:
        for i in range(3):
            yield f"line {i} for {request.args.get('who', 'nobody')}\n"
            time.sleep(0.01)  # the behaviour: lines produced over time

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/error")
def error() -> str:
    """Fails: Flask answers its own 500 page and logs through wsgi.errors."""
    raise RuntimeError("SECRET-TRACEBACK-DETAIL flask")
