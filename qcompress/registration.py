"""What each kind of registered thing must be, checked the moment a plugin registers it (as
lm-evaluation-harness's registry checks its entries): a plugin whose thing is of the wrong type,
has no ``Config``, cannot be built (abstract methods left), or serves no task kind is recorded
as broken with a message naming it, instead of failing minutes into a run."""

from __future__ import annotations

import inspect
from typing import Any

from qcompress.errors import PluginError
from qcompress.interfaces import (
    Backend,
    Metric,
    Objective,
    PluginConfig,
    Reporter,
    Student,
    Task,
    TaskConfig,
    Teacher,
)
from qcompress.task_kinds import (
    TaskKind,
)

# kind -> (what it must be, whether it is a class to subclass or an instance to register)
EXPECTED: dict[str, tuple[type, bool]] = {
    "task": (Task, True),
    "teacher": (Teacher, True),
    "student": (Student, True),
    "objective": (Objective, True),
    "backend": (Backend, True),
    "metric": (Metric, False),
    "reporter": (Reporter, False),
    "task_kind": (TaskKind, False),
}


def check_registered(kind: str, name: str, thing: Any) -> None:
    """Raise :class:`PluginError` saying what is wrong with ``thing`` registered as ``name``."""
    what = f"{kind} {name!r}"
    if kind == "model":
        if not callable(thing):
            raise PluginError(
                f"{what}: expected a function returning a folder, a hub id or a .gguf file"
            )
        return
    base, is_class = EXPECTED[kind]
    if is_class:
        if not (isinstance(thing, type) and issubclass(thing, base)):
            raise PluginError(f"{what}: expected a subclass of {_qualified(base)}, got {thing!r}")
        _check_class(what, kind, thing)
    elif not isinstance(thing, base):
        raise PluginError(f"{what}: expected a {_qualified(base)} instance, got {thing!r}")
    elif isinstance(thing, Metric) and not thing.task_kind:
        raise PluginError(f"{what}: set task_kind to the kind of task it scores")


def _check_class(what: str, kind: str, cls: type) -> None:
    config = getattr(cls, "Config", None)
    needed = TaskConfig if kind == "task" else PluginConfig
    if not (isinstance(config, type) and issubclass(config, needed)):
        raise PluginError(
            f"{what}: {cls.__name__}.Config must be a subclass of {_qualified(needed)} "
            f"(the keys a suite may give it), got {config!r}"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise PluginError(
            f"{what}: {cls.__name__} cannot be built: it does not implement {missing}"
        )
    _check_constructor(what, kind, cls)
    if kind == "task" and not getattr(cls, "kind", None):
        raise PluginError(f"{what}: {cls.__name__}.kind must name its task kind")
    if kind in ("teacher", "student", "objective") and not getattr(cls, "task_kinds", None):
        raise PluginError(
            f"{what}: {cls.__name__}.task_kinds must name the task kinds it serves"
        )


# How the runner builds each kind of class: the arguments its __init__ must accept.
CONSTRUCTED_WITH = {
    "task": ("config",),
    "teacher": ("config",),
    "student": ("config", "task", "context"),
    "objective": ("config",),
    "backend": ("config",),
}


def _check_constructor(what: str, kind: str, cls: type) -> None:
    arguments = CONSTRUCTED_WITH[kind]
    try:
        inspect.signature(cls).bind(*arguments)
    except TypeError as error:
        raise PluginError(
            f"{what}: {cls.__name__} cannot be built as the runner builds it, "
            f"{cls.__name__}({', '.join(arguments)}): {error}"
        ) from None
    except ValueError:  # no signature to inspect (a C extension type): trust it
        return


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
