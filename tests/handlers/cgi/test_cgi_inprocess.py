"""handler.cgi through the in-process test client: requests no socket would carry."""

from __future__ import annotations

import os
from pathlib import Path

from colonnade.testing import Client, build_engine


def test_a_nul_byte_that_no_environment_can_hold_is_a_400(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    script = root / "www" / "run.cgi"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nran'\n")
    script.chmod(0o755)
    config = {
        "server": {"modules": ["handler.static", "handler.cgi"]},
        "sites": [{"name": "main", "bindings": ["http://127.0.0.1:1"], "root": "www"}],
        "handlers": [{"path": "*.cgi", "handler": "handler.cgi", "resource_type": "file"}],
        "cgi": {"allowed_programs": [str(script)]},
    }
    with Client(build_engine(config, base_dir=str(root))) as client:
        assert client.get("/run.cgi?a=1").body == b"ran"
        assert client.get("/run.cgi?a=\x00").status == 400
