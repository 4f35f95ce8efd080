"""Raw WSGI (PEP 3333) app: 200 with a 1 KiB body, the size of the static-1k file.

The output cache rows compare it, cached and uncached, with the 1 KiB static file.
"""

BODY = bytes(range(256)) * 4
HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", HEADERS)
    return [BODY]
