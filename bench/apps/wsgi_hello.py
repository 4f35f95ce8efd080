"""Raw WSGI (PEP 3333) app: 200 "Hello, world!" text/plain.

Serve with e.g. ``gunicorn --chdir bench apps.wsgi_hello:app``.
"""

BODY = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", HEADERS)
    return [BODY]
