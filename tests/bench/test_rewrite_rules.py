"""The bench's rewrite folder (bench/apps/make_rewrite.py): 20 rules, none for 1k.bin."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from apps.make_rewrite import COUNT, RULES, generate  # noqa: E402

from colonnade.testing import Client, build_engine  # noqa: E402


def test_the_rules_load_and_leave_the_file_alone(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    data = bytes(range(256)) * 4
    (www / "1k.bin").write_bytes(data)
    out = generate(www, tmp_path / "rewrite")
    assert len(RULES) == COUNT == 20
    config = {
        "server": {"modules": ["handler.static"]},
        "sites": [{"name": "b", "bindings": ["http://127.0.0.1:8080"], "root": "."}],
    }
    engine = build_engine(config, base_dir=str(out))
    with Client(engine) as client:
        response = client.get("/1k.bin")
        assert (response.status, response.body) == (200, data)
        # The rules are there and run: the ones these paths match answer.
        assert client.get("/wp-login").status == 404
        moved = client.get("/articles/old-post.html")
        assert (moved.status, moved.header("location")) == (301, "/blog/old-post")
