"""Trivial modules for the ``modules-*`` workloads and ``bench/pipeline_cost.py``.

``Trivial00`` … ``Trivial49`` (ids ``bench.trivial.m00`` …) each join every stage of
the request walk with one synchronous hook that does nothing and answers CONTINUE
(None): the 12 stages of DESIGN.md's pipeline and the 11 post stages, 23 in all. The
notifications are not joined: DESIGN.md counts SEND_RESPONSE, MAP_PATH and ERROR as
non-stage notifications (``bench/RESULTS.md`` gives the cost per hook, for any count).
Importing this needs colonnade; ``apps/make_modules.py`` installs them as entry points.
"""

from __future__ import annotations

from typing import Any

from apps.make_modules import COUNT, class_name, module_id
from colonnade import Module, hook
from colonnade.core.stages import STAGES, Stage

#: Every stage of the walk, in order (SEND_RESPONSE, a notification, left out).
WALK_STAGES: tuple[Stage, ...] = tuple(
    info.stage for info in STAGES if info.stage is not Stage.SEND_RESPONSE
)


def _noop(self: Module, ctx: Any) -> None:
    return None


# One plain function marked for every stage: one subscription per stage.
for _stage in WALK_STAGES:
    _noop = hook(_stage)(_noop)

HOOKS_PER_MODULE = len(WALK_STAGES)

CLASSES: list[type[Module]] = [
    type(class_name(i), (Module,), {"id": module_id(i), "noop": _noop, "__module__": __name__})
    for i in range(COUNT)
]
globals().update({cls.__name__: cls for cls in CLASSES})  # entry points name them
