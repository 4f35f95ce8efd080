"""The module contract: a static declaration plus explicit registration.

A module is a class with an ``id``, an optional config ``section`` type and hooks
marked with :func:`hook`. Its subscriptions are collected when the class is defined,
so tools can list them without constructing anything. The engine owns the lifecycle:
construct (no side effects) → ``provision`` (open files, pools) → ``startup`` (on
the event loop) → serve → ``shutdown`` → ``cleanup`` (also when provisioning failed).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

from colonnade.config.sections import Section, Where
from colonnade.core.stages import Stage
from colonnade.errors import ModuleError

if TYPE_CHECKING:
    from colonnade.core.app import Application
    from colonnade.core.handler import Handler


class Outcome(enum.Enum):
    """What a hook answers: go on, or the response is made and the request ends."""

    CONTINUE = "continue"
    FINISH = "finish"


CONTINUE = Outcome.CONTINUE
FINISH = Outcome.FINISH


class Priority(enum.IntEnum):
    """Coarse order inside a stage; ties keep the configuration order.

    For SEND_RESPONSE the order is reversed, so a FIRST hook there sees the response
    last (the module that renders error pages registers FIRST).
    """

    FIRST = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3
    LAST = 4


class Subscription(NamedTuple):
    """One hook of a module: the stage it joins, its priority and the method name."""

    stage: Stage
    priority: Priority
    method: str
    awaits: bool = False
    """A plain function that answers None or an awaitable of its outcome (see
    :func:`hook`)."""


_HOOK_ATTR = "__colonnade_hook__"
F = TypeVar("F", bound=Callable[..., Any])


def hook(
    stage: Stage, *, priority: Priority = Priority.MEDIUM, awaits: bool = False
) -> Callable[[F], F]:
    """Mark a method of a :class:`Module` as the module's hook for ``stage``.

    The method takes the request :class:`~colonnade.core.context.Context` and
    answers ``CONTINUE`` (``None`` means the same) or ``FINISH``. It may be a plain
    function or a coroutine function; a plain one is called without a coroutine.

    ``awaits=True`` is for a hook whose common case needs no waiting and whose
    rare one does (credentials verified once on a thread, then remembered): a
    plain function that answers None (continue) or an awaitable whose result is
    the outcome. The common case then costs no coroutine. It never answers
    ``FINISH`` itself; a coroutine that returns it does.

    ``Stage.MAP_PATH`` differs: the hook is a plain function
    ``(ctx, url_path, physical_path)`` called where the request's URL becomes a
    file path (the first read of ``ctx.physical_path``), and answers a new
    absolute path or None to keep ``physical_path``.
    """

    def mark(fn: F) -> F:
        marks: list[tuple[Stage, Priority, bool]] = getattr(fn, _HOOK_ATTR, [])
        setattr(fn, _HOOK_ATTR, [*marks, (Stage(stage), Priority(priority), awaits)])
        return fn

    return mark


class Module:
    """Base class of server and application modules.

    Class attributes (the static declaration):

    - ``id``: a dotted, unique id such as ``"log.http"``.
    - ``section``: the :class:`Section` type holding this module's settings, or None.
    - ``subscriptions``: filled in from the ``@hook`` marks when the class is defined.
    - ``leads``: True for a module that changes what the others read about the
      request (``security.trusted_proxies`` sets the client address): its hooks
      run ahead of every other module's hooks of the same priority, whatever the
      configuration order (two leading modules keep their configuration order).
    - ``grants_response_cache``: True for a module that may set ``ctx.cache_grant``
      (:mod:`colonnade.core.cachegrant`): a generation whose applications enable
      one has a response cache even without a static file handler.

    The plan calls a hook as ``getattr(instance, method)``: a module may put a
    callable of its own under the hook's name on the instance (in ``__init__``,
    before the plan is compiled), typically a closure from a module mypyc
    compiles, which the compiled walk calls without an interpreted frame. The
    method stays the declaration (stage, priority, ``async``, ``-> None``).
    """

    id: ClassVar[str] = ""
    section: ClassVar[type[Section] | None] = None
    subscriptions: ClassVar[tuple[Subscription, ...]] = ()
    leads: ClassVar[bool] = False
    grants_response_cache: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        subs: list[Subscription] = []
        for name, member in inspect.getmembers(cls):
            for stage, priority, awaits in getattr(member, _HOOK_ATTR, ()):
                subs.append(Subscription(stage, priority, name, awaits))
        subs.sort(key=lambda s: (s.stage, s.priority))
        cls.subscriptions = tuple(subs)

    def provision(self, app: Application) -> None:
        """Acquire what the module needs for ``app`` (files, pools, threads).

        Runs once per application and configuration generation, before any request.
        Raise :class:`~colonnade.errors.ModuleError` or ``ConfigError`` to refuse.
        """

    async def startup(self) -> None:
        """Runs on the serving event loop before the first request is accepted.

        For work that needs the loop (an ASGI app's lifespan startup, connection
        pools). Raise to refuse to start; :meth:`shutdown` then still runs.
        """

    async def shutdown(self) -> None:
        """Runs on the serving event loop after the last request finished."""

    def cleanup(self) -> None:
        """Release what :meth:`provision` acquired. Runs even if provisioning failed."""

    def joins(self, stage: Stage, mapped: tuple[Handler, ...]) -> bool:
        """Whether this module's hook for ``stage`` belongs in the plan of an
        application whose handler mapping can choose only the ``mapped`` handlers
        (those its rules name, remaps included).

        Decided once, when the plan is built: a hook that can never act there
        (the default document, where no rule maps to a handler serving files)
        costs nothing per request instead of a call and a test. True by default.
        """
        return True

    def config_warnings(self, app: Application, workers: int) -> list[str]:
        """Warnings for ``colonnade check``: settings of ``app`` (served by a pool
        of ``workers`` worker processes) that work, but likely not as meant. Reads
        settings only (the module is not provisioned). None by default."""
        return []


def check_declaration(cls: type[Module]) -> None:
    """Refuse a module class whose declaration is unusable."""
    module_id = getattr(cls, "id", "")
    if not isinstance(module_id, str) or not module_id.strip():
        raise ModuleError(repr(cls), "a module needs a non-empty string id")
    if cls.section is not None and not (
        isinstance(cls.section, type) and issubclass(cls.section, Section) and cls.section.key
    ):
        raise ModuleError(module_id, "section must be a Section subclass with a key")
    if cls.section is not None:
        _check_where_allowed(module_id, cls.section)
    for sub in cls.subscriptions:
        fn = getattr(cls, sub.method)
        if sub.awaits and (sub.stage is Stage.MAP_PATH or inspect.iscoroutinefunction(fn)):
            raise ModuleError(
                module_id,
                f"{sub.method}: awaits=True is for a plain function answering None or an "
                "awaitable, and not on MAP_PATH",
            )
        if sub.stage is Stage.MAP_PATH:
            if inspect.iscoroutinefunction(fn):
                raise ModuleError(module_id, f"{sub.method}: MAP_PATH hooks must be synchronous")
            try:
                inspect.signature(fn).bind(None, None, "/", "/")
            except TypeError:
                raise ModuleError(
                    module_id,
                    f"{sub.method}: a MAP_PATH hook takes (self, ctx, url_path, physical_path)",
                ) from None
            except ValueError:  # no signature to inspect (a builtin): trust it
                pass


def _check_where_allowed(module_id: str, section: type[Section]) -> None:
    # A misspelt key in allowed_keys would restrict nothing, silently.
    name = section.__name__
    if not isinstance(section.allowed, Where):
        raise ModuleError(module_id, f"{name}.allowed must be a Where value")
    fields = set(section.__struct_encode_fields__)
    for dotted, where in section.allowed_keys.items():
        if dotted.split(".", 1)[0] not in fields:
            raise ModuleError(module_id, f"{name}.allowed_keys names no key of it: {dotted!r}")
        if not isinstance(where, Where):
            raise ModuleError(module_id, f"{name}.allowed_keys[{dotted!r}] must be a Where value")
