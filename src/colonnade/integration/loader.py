"""Loading what an application ships in its own folder: module classes, middleware.

Application modules (the managed-module analogue) and ASGI middleware are
imported from the application's folder, each file under a name of its own and
afresh at every configuration generation; their paths are remembered so that a
changed source rebuilds its application at the next reload.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from colonnade.core.module import Module, check_declaration
from colonnade.errors import ModuleError


def source_digest(path: str) -> str:
    """A digest of the file at ``path`` (part of its application's fingerprint)."""
    import hashlib  # here and below: only applications that ship modules need it

    try:
        with open(path, "rb") as f:
            return hashlib.sha1(f.read()).hexdigest()
    except OSError:
        return "-"  # gone since it was imported: differs from any content


def import_from_folder(
    folder: str, module_name: str, owner: str, sources: list[str] | None = None
) -> Any:
    """The module ``module_name`` from a file in ``folder``, or None if there is none.

    The file is loaded under a name of its own (two applications may both ship a
    ``guard.py``), without touching ``sys.path``, and afresh each time (a reload
    sees the file as it is now). Its path is added to ``sources``.
    """
    rel = module_name.replace(".", os.sep)
    for candidate in (os.path.join(folder, rel + ".py"), os.path.join(folder, rel, "__init__.py")):
        if os.path.isfile(candidate):
            path = candidate
            break
    else:
        return None
    import hashlib

    unique = (
        "colonnade_app_"
        + hashlib.sha1(path.encode()).hexdigest()[:12]
        + "_"
        + (module_name.replace(".", "_"))
    )
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ModuleError(owner, f"cannot load {path}")
    if sources is not None and path not in sources:
        sources.append(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(unique, None)
        raise ModuleError(owner, f"{path} failed to import: {exc!r}") from exc
    return module


def load_local_class(
    folder: str, target: str, module_id: str, sources: list[str] | None = None
) -> type[Module]:
    """Import ``module:Class`` from a file in ``folder`` (an application module)."""
    module_name, _, attr = target.partition(":")
    module = import_from_folder(folder, module_name, module_id, sources)
    if module is None:
        raise ModuleError(module_id, f"no file for {module_name!r} in {folder}")
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise ModuleError(module_id, f"{target!r} is not a Module subclass")
    if cls.id != module_id:
        raise ModuleError(module_id, f"class {cls.__qualname__} declares id {cls.id!r}")
    check_declaration(cls)
    return cls


def load_local_object(
    folder: str, target: str, owner: str, sources: list[str] | None = None
) -> Any:
    """``module:attr`` from a file in ``folder``, else from an installed package.

    For ASGI middleware: shipped with the application (loaded as
    :func:`load_local_class` loads), or a framework's (``starlette.middleware...``).
    ``attr`` may be dotted.
    """
    module_name, _, attr = target.partition(":")
    module = import_from_folder(folder, module_name, owner, sources)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ModuleError(
                owner,
                f"cannot import {module_name!r} (no file in {folder}, no installed module): "
                f"{type(exc).__name__}: {exc}",
            ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModuleError(owner, f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
