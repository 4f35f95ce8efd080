"""A Flask application: a page, a JSON route, and its static folder (served by
Colonnade: ``--static /static=static``)."""

from flask import Flask, jsonify, render_template_string, request

app = Flask(__name__)

PAGE = """<!doctype html>
<title>Flask on Colonnade</title>
<link rel="stylesheet" href="{{ url_for('static', filename='style.css') }}">
<h1>Hello from Flask</h1>
"""


@app.get("/")
def index() -> str:
    return render_template_string(PAGE)


@app.get("/api/greet")
def greet():  # type: ignore[no-untyped-def]
    name = request.args.get("name", "world")
    return jsonify(greeting=f"hello, {name}", framework="flask")
