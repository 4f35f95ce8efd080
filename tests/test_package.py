"""The package's top level: the module-author API, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import colonnade


def test_every_exported_name_resolves_to_where_it_lives() -> None:
    assert sorted(colonnade.__all__) == sorted(colonnade._EXPORTS)
    for name in colonnade.__all__:
        value = getattr(colonnade, name)
        module = sys.modules[colonnade._EXPORTS[name]]
        assert value is getattr(module, name)
    assert set(colonnade.__all__) <= set(dir(colonnade))
    with pytest.raises(AttributeError):
        _ = colonnade.NoSuchName  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_layer() -> None:
    """``import colonnade.x`` runs the package first: it must not load the engine,
    the pipeline or the request objects for processes that never use them."""
    code = (
        "import sys, colonnade, colonnade.buildinfo\n"
        "print(sorted(m for m in sys.modules if m.startswith('colonnade')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['colonnade', 'colonnade.buildinfo']"
