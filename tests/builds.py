"""Running a module's compiled-build path and its pure-install path in one suite."""

from __future__ import annotations

from types import ModuleType

import pytest


def take_path(module: ModuleType, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``module`` take the path of the compiled build (``compiled``) or of the pure
    install, where it chooses by its ``_COMPILED`` flag. The pure suite patches the
    flag, so both paths run there; a compiled module's flag is a static no patch
    reaches, so the compiled suite runs its own path and skips the other."""
    if module._COMPILED:
        if not compiled:
            pytest.skip("the compiled build takes its own path only")
    else:
        monkeypatch.setattr(module, "_COMPILED", compiled)
