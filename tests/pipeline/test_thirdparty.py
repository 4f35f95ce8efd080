"""A module packaged outside src/ joins through its entry point, config and CLI."""

from __future__ import annotations

from pathlib import Path

from colonnade.core.registry import Registry
from colonnade.modules.standard import BUILTIN
from colonnade.testing import Client, build_engine

from .conftest import colonnade_modules

CONFIG = """
[server]
modules = ["acme.stamp", "handler.static"]

[[sites]]
name = "main"
bindings = ["http://127.0.0.1:8080"]
root = "www"

[acme_stamp]
value = "from-config"
"""


def test_entry_point_is_registered() -> None:
    registry = Registry.standard(BUILTIN)
    assert "acme.stamp" in registry
    assert registry.origin("acme.stamp").startswith("entry point (acme-colonnade")


def test_entry_points_hand_over_as_strings() -> None:
    """What the master hands a worker (ipc.Start.entry_points): the worker registers
    the same ids, origins and classes without reading entry points itself."""
    master = Registry.standard(BUILTIN)
    handed = master.entry_points()
    assert ("acme.stamp", "acme_colonnade:Stamp", master.origin("acme.stamp")) in handed
    assert all(not module_id.startswith(("handler.", "log.")) for module_id, _, _ in handed)
    worker = Registry.standard(BUILTIN, with_entry_points=False)
    for module_id, target, origin in handed:
        worker.add(module_id, target, origin=origin)
    assert worker.ids() == master.ids()
    assert worker.load("acme.stamp") is master.load("acme.stamp")
    assert worker.origin("acme.stamp") == master.origin("acme.stamp")


def test_thirdparty_module_joins_stages_with_its_config(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "a.txt").write_text("hello")
    engine = build_engine(CONFIG, base_dir=str(tmp_path), with_entry_points=True)
    with Client(engine) as client:
        r = client.get("/a.txt")
    assert r.status == 200
    assert r.header("x-acme") == "from-config"
    assert r.context.items["acme.stages"] == ["BEGIN_REQUEST", "END_REQUEST"]


def test_colonnade_modules_lists_it(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    cfg = tmp_path / "colonnade.toml"
    cfg.write_text(CONFIG)
    out, lines = colonnade_modules(cfg)
    assert "acme.stamp" in out and "entry point (acme-colonnade)" in out
    assert "acme.stamp (high)" in lines["BEGIN_REQUEST"]
    assert "acme.stamp (medium)" in lines["SEND_RESPONSE"]
    assert "acme.stamp" in lines["END_REQUEST"]
    assert lines["AUTHENTICATE_REQUEST"].split()[-1] == "-"
