"""URL Rewrite (modules/rewrite) at run time: a client's request against the
classic rule recipes (front controller, canonical host, HTTPS redirect, trailing
slash, a rewrite map, a custom response, server variables), through the real
pipeline in process.

Property: the pipeline never fails with an exception of its own making: the
request ends in a response, and any error it carries is an ``HttpError``
(a 500 from an unexpected exception in a rule is a crash here).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from colonnade.errors import HttpError
from colonnade.testing import Client, build_engine
from colonnade.testing.client import RecordingWriter
from tests.fuzz.requests import request_from

_ROOT = tempfile.mkdtemp(prefix="colonnade-fuzz-rewrite-")
atexit.register(shutil.rmtree, _ROOT, True)
for _name in ("index.html", "page.html", "docs/index.html", "docs/a.html"):
    _path = Path(_ROOT) / _name
    _path.parent.mkdir(parents=True, exist_ok=True)
    _path.write_text(_name)

NOT_A_FILE_OR_FOLDER = [
    {"input": "{REQUEST_FILENAME}", "match_type": "is_file", "negate": True},
    {"input": "{REQUEST_FILENAME}", "match_type": "is_directory", "negate": True},
]
RULES: list[dict[str, Any]] = [
    {
        "name": "no admin",
        "pattern": "^admin/",
        "action": {"type": "custom_response", "status_code": 403, "sub_status": 7},
    },
    {
        "name": "canonical host",
        "pattern": "(.*)",
        "conditions": [{"input": "{HTTP_HOST}", "pattern": "^(www\\.)?example\\.com$"}],
        "action": {"type": "redirect", "url": "http://www.example.com/{R:1}", "redirect_type": 308},
    },
    {
        "name": "to https",
        "pattern": "^secure/(.*)",
        "conditions": [{"input": "{HTTPS}", "pattern": "^OFF$"}],
        "action": {"type": "redirect", "url": "https://{HTTP_HOST}/{R:1}"},
    },
    {
        "name": "legacy",
        "pattern": "^(.+)\\.asp$",
        "conditions": [{"input": "{legacy:{R:1}}", "pattern": "(.+)"}],
        "action": {"type": "rewrite", "url": "{C:1}"},
    },
    {
        "name": "wildcard",
        "pattern": "blog/*/*",
        "pattern_syntax": "wildcard",
        "action": {"type": "rewrite", "url": "app.php?y={R:1}&s={R:2}&q={QUERY_STRING}"},
    },
    {
        "name": "front controller",
        "pattern": "^(.*)$",
        "conditions": NOT_A_FILE_OR_FOLDER,
        "server_variables": [{"name": "HTTP_X_ROUTE", "value": "{R:1}|{UNENCODED_URL}"}],
        "action": {"type": "rewrite", "url": "index.html?route={UrlEncode:{R:1}}"},
    },
]
CONFIG: dict[str, Any] = {
    "server": {"modules": ["security.request_filtering", "rewrite", "handler.static"]},
    "sites": [{"name": "s", "bindings": ["http://127.0.0.1:8080"], "root": _ROOT}],
    "handlers": [{"path": "*", "handler": "handler.static"}],
    "rewrite": {
        "maps": {"legacy": {"entries": {"old": "/page.html", "docs/a": "/docs/a.html"}}},
        "allowed_server_variables": ["HTTP_X_ROUTE"],
        "rules": RULES,
    },
}
_CLIENT = Client(build_engine(CONFIG))
_CLIENT.__enter__()
atexit.register(_CLIENT.__exit__, None, None, None)


def one_input(data: bytes) -> None:
    """``data`` as a client's request bytes."""
    request = request_from(data)
    if request is None:
        return
    writer = RecordingWriter()
    ctx = _CLIENT.loop.run_until_complete(_CLIENT.engine.handle(request, writer))
    assert writer.status is not None and 100 <= writer.status <= 599
    error = ctx.error if ctx is not None else None
    assert error is None or isinstance(error, HttpError), repr(error)
