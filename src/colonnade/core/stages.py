"""The pipeline's shape, in one table.

Every request walks ``STAGES`` in order. Each row says whether the stage still runs
after a hook answered FINISH (or after an error) and whether its subscribers run in
reverse configuration order. The docs' pipeline picture and ``colonnade modules`` are
drawn from this table; the runner in ``colonnade.pipeline`` only reads it.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class Stage(enum.IntEnum):
    """A point in the request's life a module can join (IIS names, in order)."""

    BEGIN_REQUEST = 0
    POST_BEGIN_REQUEST = 1
    AUTHENTICATE_REQUEST = 2
    POST_AUTHENTICATE_REQUEST = 3
    AUTHORIZE_REQUEST = 4
    POST_AUTHORIZE_REQUEST = 5
    RESOLVE_REQUEST_CACHE = 6
    POST_RESOLVE_REQUEST_CACHE = 7
    MAP_REQUEST_HANDLER = 8
    POST_MAP_REQUEST_HANDLER = 9
    ACQUIRE_REQUEST_STATE = 10
    POST_ACQUIRE_REQUEST_STATE = 11
    PRE_EXECUTE_REQUEST_HANDLER = 12
    POST_PRE_EXECUTE_REQUEST_HANDLER = 13
    EXECUTE_REQUEST_HANDLER = 14
    POST_EXECUTE_REQUEST_HANDLER = 15
    RELEASE_REQUEST_STATE = 16
    POST_RELEASE_REQUEST_STATE = 17
    UPDATE_REQUEST_CACHE = 18
    POST_UPDATE_REQUEST_CACHE = 19
    # The response head is about to go out (not a step of the walk: it fires when the
    # response is first flushed, which is at the latest right before LOG_REQUEST).
    SEND_RESPONSE = 20
    LOG_REQUEST = 21
    POST_LOG_REQUEST = 22
    END_REQUEST = 23
    # Out-of-band notifications.
    MAP_PATH = 24
    ERROR = 25


class Always(enum.Enum):
    """When a stage runs after the request was finished early."""

    NO = "no"  # skipped after FINISH or an error
    IF_STATE = "if-state"  # runs only if ACQUIRE_REQUEST_STATE ran
    YES = "yes"  # always runs


class StageInfo(NamedTuple):
    """One row of the pipeline table."""

    stage: Stage
    always: Always
    reverse: bool
    summary: str


_N, _S, _Y = Always.NO, Always.IF_STATE, Always.YES

#: The walk, in order. SEND_RESPONSE sits where a buffered response is flushed.
STAGES: tuple[StageInfo, ...] = (
    StageInfo(Stage.BEGIN_REQUEST, _N, False, "request filtering, IP rules, rate limits"),
    StageInfo(Stage.POST_BEGIN_REQUEST, _N, False, ""),
    StageInfo(Stage.AUTHENTICATE_REQUEST, _N, False, "establish the user"),
    StageInfo(Stage.POST_AUTHENTICATE_REQUEST, _N, False, ""),
    StageInfo(Stage.AUTHORIZE_REQUEST, _N, False, "allow or deny the user"),
    StageInfo(Stage.POST_AUTHORIZE_REQUEST, _N, False, ""),
    StageInfo(Stage.RESOLVE_REQUEST_CACHE, _N, False, "serve a cached response"),
    StageInfo(Stage.POST_RESOLVE_REQUEST_CACHE, _N, False, ""),
    StageInfo(Stage.MAP_REQUEST_HANDLER, _N, False, "default document, directory listing"),
    StageInfo(Stage.POST_MAP_REQUEST_HANDLER, _N, False, "the handler mapping has chosen"),
    StageInfo(Stage.ACQUIRE_REQUEST_STATE, _N, False, "load session state"),
    StageInfo(Stage.POST_ACQUIRE_REQUEST_STATE, _N, False, ""),
    StageInfo(Stage.PRE_EXECUTE_REQUEST_HANDLER, _N, False, "last look before the handler"),
    StageInfo(Stage.POST_PRE_EXECUTE_REQUEST_HANDLER, _N, False, ""),
    StageInfo(Stage.EXECUTE_REQUEST_HANDLER, _N, False, "the handler runs"),
    StageInfo(Stage.POST_EXECUTE_REQUEST_HANDLER, _N, False, ""),
    StageInfo(Stage.RELEASE_REQUEST_STATE, _S, False, "save session state"),
    StageInfo(Stage.POST_RELEASE_REQUEST_STATE, _S, False, ""),
    StageInfo(Stage.UPDATE_REQUEST_CACHE, _N, False, "store the response in a cache"),
    StageInfo(Stage.POST_UPDATE_REQUEST_CACHE, _N, False, ""),
    StageInfo(Stage.SEND_RESPONSE, _Y, True, "response head about to go out (reverse order)"),
    StageInfo(Stage.LOG_REQUEST, _Y, False, "access log"),
    StageInfo(Stage.POST_LOG_REQUEST, _Y, False, ""),
    StageInfo(Stage.END_REQUEST, _Y, False, "request monitor, clean-up"),
)

#: Notifications outside the walk: they fire when something asks for them.
NOTIFICATIONS: tuple[StageInfo, ...] = (
    StageInfo(Stage.MAP_PATH, _Y, False, "a URL is mapped to a file path"),
    StageInfo(Stage.ERROR, _Y, False, "an exception escaped a module"),
)

INFO: dict[Stage, StageInfo] = {row.stage: row for row in STAGES + NOTIFICATIONS}
