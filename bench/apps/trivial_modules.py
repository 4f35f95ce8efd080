"""Trivial modules for the ``modules-*`` workloads and ``bench/pipeline_cost.py``.

``Trivial00`` … ``Trivial49`` (ids ``bench.trivial.m00`` …) each join every stage of
the request walk (``colonnade.core.stages.STAGES``, SEND_RESPONSE included) with one
synchronous hook that does nothing and answers CONTINUE (None). The out-of-band
notifications (MAP_PATH, ERROR) are not joined: they are not part of every request.
Importing this needs colonnade; ``apps/make_modules.py`` installs them as entry points.
"""

from __future__ import annotations

from typing import Any

from apps.make_modules import COUNT, class_name, module_id
from colonnade import Module, hook
from colonnade.core.stages import STAGES


def _noop(self: Module, ctx: Any) -> None:
    return None


# One plain function marked for every stage: one subscription per stage.
for _info in STAGES:
    _noop = hook(_info.stage)(_noop)

HOOKS_PER_MODULE = len(STAGES)

CLASSES: list[type[Module]] = [
    type(class_name(i), (Module,), {"id": module_id(i), "noop": _noop, "__module__": __name__})
    for i in range(COUNT)
]
globals().update({cls.__name__: cls for cls in CLASSES})  # entry points name them
