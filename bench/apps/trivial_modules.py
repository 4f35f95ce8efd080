"""Trivial modules for the ``modules-*`` workloads and ``bench/pipeline_cost.py``.

Each joins stages with one synchronous hook that does nothing and answers CONTINUE
(None). Two families of 50:

- ``Trivial00`` … ``Trivial49`` (ids ``bench.trivial.m00`` …): every stage of DESIGN.md's
  pipeline, BEGIN_REQUEST … END_REQUEST, 12 hooks. This is the module of issue #6's
  target ("a trivial module subscribed to every stage").
- ``TrivialPost00`` … ``TrivialPost49`` (ids ``bench.trivial.p00`` …): the same 12 stages
  and their 11 post stages, 23 hooks: every point of the walk a module can join.

Neither joins a notification (SEND_RESPONSE, MAP_PATH, ERROR: DESIGN.md's non-stage
notifications). ``bench/RESULTS.md`` gives the cost per hook too, for any other count.
Importing this needs colonnade; ``apps/make_modules.py`` installs them as entry points.
"""

from __future__ import annotations

from typing import Any

from apps.make_modules import COUNT, class_name, module_id
from colonnade import Module, hook
from colonnade.core.stages import STAGES, Stage

#: The 12 stages, in walk order.
MAIN_STAGES: tuple[Stage, ...] = tuple(
    info.stage
    for info in STAGES
    if info.stage is not Stage.SEND_RESPONSE and not info.stage.name.startswith("POST_")
)
#: The 12 stages and their 11 post stages, in walk order.
WALK_STAGES: tuple[Stage, ...] = tuple(
    info.stage for info in STAGES if info.stage is not Stage.SEND_RESPONSE
)


def _joining(stages: tuple[Stage, ...]) -> Any:
    # A fresh plain function per family, marked for each of ``stages``: one
    # subscription per stage.
    def noop(self: Module, ctx: Any) -> None:
        return None

    for stage in stages:
        noop = hook(stage)(noop)
    return noop


#: Hooks per module of each family (False: the 12 stages; True: with post stages).
HOOKS: dict[bool, int] = {False: len(MAIN_STAGES), True: len(WALK_STAGES)}


def _family(post: bool) -> list[type[Module]]:
    noop = _joining(WALK_STAGES if post else MAIN_STAGES)
    return [
        type(
            class_name(i, post),
            (Module,),
            {"id": module_id(i, post), "noop": noop, "__module__": __name__},
        )
        for i in range(COUNT)
    ]


CLASSES: list[type[Module]] = _family(False)
POST_CLASSES: list[type[Module]] = _family(True)
globals().update({cls.__name__: cls for cls in CLASSES + POST_CLASSES})  # entry points name them
