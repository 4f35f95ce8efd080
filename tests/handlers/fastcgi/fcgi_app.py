"""A small FastCGI program for the tests, started by ``handler.fastcgi`` like
php-cgi: it accepts on the listening socket it finds as file descriptor 0 (or,
with an address argument, listens there itself: an "external" server).

With ``FCGI_TEST_CLOSE`` set it closes every connection after one request,
whatever FCGI_KEEP_CONN asks. What it does is chosen by the script's file name
(``SCRIPT_FILENAME``):

- ``slow.t``: its pid, after ``?s=SECONDS``;
- ``echo.t``: a JSON document of the params, the body's length and SHA-256, its pid;
- ``big.t``: ``?n=BYTES`` of ``x`` streamed in 64 KiB writes (``?len=1``: with
  Content-Length);
- ``die.t``: part of a body, then ``os._exit(3)``; ``diehead.t``: exits before a head;
- ``hang.t``: never answers (``?after=1``: after a first body write);
- ``trickle.t``: a head, then a byte every 0.1 s for ``?s=SECONDS``;
- ``flood.t``: 1 MiB of STDERR, then a normal answer; ``warn.t``: one STDERR line;
- ``bad.t``: a record of version 9; ``badstatus.t``: ``Status: nope``;
  ``hugelength.t``: a ``Content-Length`` of 5,000 digits;
- ``overloaded.t``: END_REQUEST with OVERLOADED; ``redirect.t``: ``Location`` only;
- ``early.t``: answers at once without reading its body;
- ``noend.t``: a head, then closes the connection without END_REQUEST;
- ``local.t``: a local redirect to ``/echo.t?from=local``; ``loop.t``: to itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

from colonnade.handlers.fastcgi import records as r


def serve(conn: socket.socket) -> bool:
    """Serve requests on ``conn`` until it closes; False to stop the program."""
    reader = r.RecordReader()
    while True:
        params = b""
        body = hashlib.sha256()
        length = 0
        keep = True
        request_id = 0
        env: dict[str, str] = {}
        got_params = False
        stdin_done = False
        early = False
        while not stdin_done:
            rec = reader.next_record()
            if rec is None:
                data = conn.recv(65536)
                if not data:
                    return True
                reader.receive(data)
                continue
            if rec.type == r.GET_VALUES:
                conn.sendall(r.get_values_result([(r.MAX_CONNS, b"1"), (r.MPXS_CONNS, b"0")]))
            elif rec.type == r.BEGIN_REQUEST:
                request_id = rec.request_id
                _, keep = r.parse_begin_request(rec.content)
            elif rec.type == r.PARAMS:
                if rec.content:
                    params += rec.content
                else:
                    got_params = True
                    env = {
                        k.decode("latin-1"): v.decode("latin-1") for k, v in r.decode_pairs(params)
                    }
                    if os.path.basename(env.get("SCRIPT_FILENAME", "")) == "early.t":
                        early = True
                        break
            elif rec.type == r.STDIN:
                if rec.content:
                    body.update(rec.content)
                    length += len(rec.content)
                else:
                    stdin_done = True
        assert got_params
        out = respond(conn, request_id, env, length, body.hexdigest(), early)
        if out is False:
            return False
        if not keep or early or os.environ.get("FCGI_TEST_CLOSE"):
            conn.close()
            return True


def respond(
    conn: socket.socket, rid: int, env: dict[str, str], length: int, digest: str, early: bool
) -> bool | None:
    name = os.path.basename(env.get("SCRIPT_FILENAME", ""))
    query = dict(urllib.parse.parse_qsl(env.get("QUERY_STRING", "")))
    send = conn.sendall
    if name in ("echo.t", "early.t"):
        doc = {"env": env, "length": length, "sha256": digest, "pid": os.getpid()}
        data = json.dumps(doc).encode()
        send(r.stdout(rid, b"Content-Type: application/json\r\nX-Test: 1\r\n\r\n" + data))
    elif name == "slow.t":  # answers after ?s seconds
        time.sleep(float(query.get("s", "0")))
        send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\n%d" % os.getpid()))
    elif name == "big.t":
        n = int(query.get("n", "0"))
        head = b"Content-Type: application/octet-stream\r\n"
        if query.get("len"):
            head += b"Content-Length: %d\r\n" % n
        send(r.stdout(rid, head + b"\r\n"))
        chunk = b"x" * 65536
        while n > 0:
            part = chunk[: min(n, len(chunk))]
            send(r.stdout(rid, part))
            n -= len(part)
    elif name == "die.t":
        send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\n" + b"y" * 200000))
        os._exit(3)
    elif name == "diehead.t":
        send(r.stdout(rid, b"Content-Type: te"))
        os._exit(4)
    elif name == "hang.t":
        if query.get("after"):
            send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\n" + b"z" * 100000))
        time.sleep(3600)
    elif name == "trickle.t":
        send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\n"))
        end = time.monotonic() + float(query.get("s", "0"))
        while time.monotonic() < end:
            time.sleep(0.1)
            send(r.stdout(rid, b"."))
    elif name == "flood.t":
        line = b"E" * 1023 + b"\n"
        for _ in range(1024):
            send(r.stderr(rid, line))
        send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\nflooded"))
    elif name == "warn.t":
        send(r.stderr(rid, b"PHP Warning: something odd\n"))
        send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\nwarned"))
    elif name == "bad.t":
        send(b"\x09\x06\x00\x01\x00\x00\x00\x00")
        return None
    elif name == "badstatus.t":
        send(r.stdout(rid, b"Status: nope\r\nContent-Type: text/plain\r\n\r\nx"))
    elif name == "hugelength.t":  # a Content-Length of 5,000 digits
        send(r.stdout(rid, b"Content-Length: " + b"1" * 5000 + b"\r\n\r\nx"))
    elif name == "overloaded.t":
        send(r.end_request(rid, 0, r.OVERLOADED))
        return None
    elif name == "redirect.t":
        send(r.stdout(rid, b"Location: https://example.org/elsewhere\r\n\r\n"))
    elif name == "local.t":  # a local redirect, with a body that must not count
        send(r.stdout(rid, b"Location: /echo.t?from=local\r\n\r\nignored"))
    elif name == "loop.t":
        send(r.stdout(rid, b"Location: /loop.t\r\n\r\n"))
    elif name == "noend.t":
        send(r.stdout(rid, b"Content-Type: text/plain\r\n\r\nhalf"))
        conn.close()
        return None
    else:
        send(
            r.stdout(rid, b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such test")
        )
    send(r.stdout(rid, b"") + r.end_request(rid, 0))
    return None


def main() -> None:
    if len(sys.argv) > 1:  # an external server: listen on a unix socket of our own
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sys.argv[1])
        listener.listen(16)
    else:
        listener = socket.socket(fileno=0)
    external = len(sys.argv) > 1
    while True:
        conn, _ = listener.accept()
        if external:  # a server of its own serves connections side by side
            threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()
        else:  # php-cgi's way: one connection at a time
            _serve_one(conn)


def _serve_one(conn: socket.socket) -> None:
    try:
        serve(conn)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    main()
