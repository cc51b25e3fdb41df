"""The plugin contract: one ``register_*`` hook per kind of thing a plugin can add.

Every hook receives a ``register`` callback and calls it once per thing it adds::

    from qcompress import hookimpl

    @hookimpl
    def register_students(register):
        register("my-student", MyStudent)

``register(name, thing)`` takes a name unique within its kind (a non-empty string; it is what a
suite file writes) and the thing itself; what the thing must be is given with each hook below.
First-party plugins (``qcompress_plugins``) use these hooks exactly as third-party packages
do, through the ``qcompress`` entry-point group. ``docs/plugins.md`` documents every hook, and
a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "qcompress"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, Any], None]


@hookspec
def register_teachers(register: Register) -> None:
    """Register teachers: subclasses of :class:`qcompress.interfaces.Teacher`."""


@hookspec
def register_students(register: Register) -> None:
    """Register students: subclasses of :class:`qcompress.interfaces.Student`."""


@hookspec
def register_backends(register: Register) -> None:
    """Register quantum backends: subclasses of :class:`qcompress.interfaces.Backend`."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks: subclasses of :class:`qcompress.interfaces.Task`."""


@hookspec
def register_objectives(register: Register) -> None:
    """Register training objectives: subclasses of :class:`qcompress.interfaces.Objective`."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register prediction metrics: :class:`qcompress.interfaces.Metric` instances."""


@hookspec
def register_reporters(register: Register) -> None:
    """Register reporters: :class:`qcompress.interfaces.Reporter` instances."""


@hookspec
def register_task_kinds(register: Register) -> None:
    """Register task kinds: :class:`qcompress.interfaces.TaskKind` instances, each the strategy
    for one kind of task (what the teacher produces, how models are scored, the default
    objective and the headline metric). A task's ``kind`` names one."""


@hookspec
def register_models(register: Register) -> None:
    """Register model names that teachers and students accept wherever a setting names a model
    (``model``, ``encoder``): a function of no arguments returning a Hugging Face folder, a hub
    id or a ``.gguf`` file (dequantized once and cached; :mod:`qcompress.models`)."""
