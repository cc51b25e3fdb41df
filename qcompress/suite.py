"""Suite files: YAML -> a validated :class:`Suite` -> the list of cells to run.

Everything is checked before any work starts: the YAML itself (safe loader: plain data only,
no duplicate keys), the suite's own keys, then every plugin's keys against that plugin's
``Config``. Each problem becomes one line naming the file, the line, the key path and what was
expected; the problems of a stage are reported together as one :class:`SuiteError` (plugin keys
are checked once the suite's own keys are valid).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qcompress.errors import PluginError, SuiteError
from qcompress.interfaces import (
    BackendSpec,
    PluginConfig,
    TaskConfig,
    TrainSettings,
)
from qcompress.plugins import Registry
from qcompress.suite_model import (
    DATA_DIR_ENV,
    STUDENT_CORE_KEYS,
    Cell,
    Component,
    MeasureSettings,
    StudentSpec,
    Suite,
    SuiteModel,
    checked_seeds,
)
from qcompress.yaml_lines import Problems, read_document

__all__ = [
    "Cell", "Component", "MeasureSettings", "StudentSpec", "Suite", "load_suite", "load_suites"
]

FOLDER_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}")

def _component(
    problems: Problems,
    registry: Registry,
    kind: str,
    block: Any,
    loc: list[str | int],
    extra_exclude: Sequence[str] = (),
) -> Component | None:
    if not isinstance(block, dict):
        problems.add(loc, f"expected a mapping with at least a 'name' key, got {block!r}")
        return None
    name = block.get("name")
    if not isinstance(name, str):
        problems.add([*loc, "name"], f"expected the name of a registered {kind}, got {name!r}")
        return None
    try:
        plugin = registry.get(kind, name)
    except PluginError as error:
        problems.add([*loc, "name"], str(error))
        return None
    config_model: type[PluginConfig] = plugin.Config
    settings = {k: v for k, v in block.items() if k not in extra_exclude}
    if "name" not in config_model.model_fields:
        settings.pop("name")
    try:
        config = config_model.model_validate(settings)
    except ValidationError as error:
        problems.add_validation(loc, error, config_model, extra_allowed=extra_exclude)
        return None
    resolved = _resolve_backends(problems, registry, config, loc)
    if resolved is None:
        return None
    _check_requirements(problems, kind, name, plugin, resolved, loc)
    return Component(name, resolved)


def _check_requirements(
    problems: Problems,
    kind: str,
    name: str,
    plugin: Any,
    config: PluginConfig,
    loc: list[str | int],
) -> None:
    """Optional modules the plugin needs with these settings, missing here: found now, not
    minutes into a run."""
    for module, install in plugin.requirements(config).items():
        if not _importable(module):
            problems.add(loc, f"{kind} {name!r} needs {module}, which is not installed: {install}")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _resolve_backends(
    problems: Problems, registry: Registry, config: PluginConfig, loc: list[str | int]
) -> PluginConfig | None:
    """Check every :class:`BackendSpec` in a plugin's settings against the named backend's
    ``Config`` and replace it by the complete settings (defaults filled in, so records say
    exactly what ran). A single backend is one the plugin trains through: its
    ``training_warnings`` are shown; a list holds backends used only to evaluate."""
    updates: dict[str, Any] = {}
    valid = True
    for key in type(config).model_fields:
        value = getattr(config, key)
        evaluate_only = isinstance(value, list | tuple)
        specs = list(value) if evaluate_only else [value]
        if not specs or not all(isinstance(spec, BackendSpec) for spec in specs):
            continue
        resolved = []
        for index, spec in enumerate(specs):
            where = [*loc, key, index] if evaluate_only else [*loc, key]
            backend = _component(problems, registry, "backend", spec.model_dump(), where)
            if backend is None:
                valid = False
                continue
            if not evaluate_only:
                backend_cls = registry.get("backend", backend.name)
                for message in backend_cls.training_warnings(backend.config):
                    problems.warn(where, message)
            resolved.append(BackendSpec.model_validate(backend.as_dict()))
        updates[key] = resolved if evaluate_only else (resolved or [value])[0]
    if not valid:
        return None
    return config.model_copy(update=updates) if updates else config


def _student_label(entry: dict[str, Any]) -> str:
    """The row name: the ``label``, else the student name with its explicit settings. Nested
    settings (e.g. a list of backends) show as their size: give a ``label`` to name them."""
    if isinstance(entry.get("label"), str) and entry["label"].strip():
        return entry["label"].strip()
    own = {k: v for k, v in entry.items() if k not in STUDENT_CORE_KEYS}
    settings = ",".join(f"{key}={_short(own[key])}" for key in sorted(own))
    return f"{entry['name']}({settings})" if settings else str(entry["name"])


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name", "{...}"))
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return f"[{len(value)} entries]"
    return str(value)


def _student(
    problems: Problems,
    registry: Registry,
    entry: Any,
    index: int,
    default_objective: Component | None,
    default_train: TrainSettings,
) -> StudentSpec | None:
    loc: list[str | int] = ["students", index]
    student = _component(
        problems, registry, "student", entry, loc,
        extra_exclude=("label", "objective", "train", "seeds"),
    )  # fmt: skip
    if student is None:
        return None
    if "label" in entry and not (isinstance(entry["label"], str) and entry["label"].strip()):
        problems.add([*loc, "label"], f"expected a non-empty string, got {entry['label']!r}")
    objective = default_objective
    if "objective" in entry:
        objective = _component(
            problems, registry, "objective", entry["objective"], [*loc, "objective"]
        )
    train = default_train
    if "train" in entry:
        if not isinstance(entry["train"], dict):
            problems.add([*loc, "train"], f"expected a mapping, got {entry['train']!r}")
            return None
        try:
            train = TrainSettings.model_validate({**default_train.model_dump(), **entry["train"]})
        except ValidationError as error:
            problems.add_validation([*loc, "train"], error, TrainSettings)
            return None
    seeds = None
    if "seeds" in entry:
        value = entry["seeds"]
        try:
            if not (isinstance(value, list) and value and all(type(s) is int for s in value)):
                raise ValueError(f"expected a non-empty list of integers, got {value!r}")
            seeds = tuple(checked_seeds(value))
        except ValueError as error:
            problems.add([*loc, "seeds"], str(error))
            return None
    if objective is None:
        return None
    return StudentSpec(_student_label(entry), student, objective, train, seeds)


def load_suites(path: str | os.PathLike[str], registry: Registry) -> list[Suite]:
    """Read, validate and resolve a suite file into its parts: one :class:`Suite` per (task,
    teacher) pair (one for a file with ``task`` and ``teacher``); raise :class:`SuiteError`
    listing every problem found."""
    path = Path(path)
    data, document = read_document(path)
    problems = Problems(document)
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as error:
        problems.add_validation([], error, SuiteModel)
        problems.raise_if_any()
        raise AssertionError("unreachable") from error

    tasks = _grid(problems, registry, "task", model.task, model.tasks)
    for entry in tasks:
        if entry.component is not None and not isinstance(entry.component.config, TaskConfig):
            problems.add([*entry.loc, "name"], "the task plugin's Config must subclass TaskConfig")
    kind = _grid_kind(problems, registry, tasks)
    teachers = _grid(problems, registry, "teacher", model.teacher, model.teachers)
    objective_block = model.objective or _default_objective(problems, registry, kind)
    objective = (
        _component(problems, registry, "objective", objective_block, ["objective"])
        if objective_block is not None
        else None
    )
    students = [
        _student(problems, registry, entry, index, objective, model.train)
        for index, entry in enumerate(model.students)
    ]
    metrics = _metric_names(problems, registry, model.metrics, kind)
    reports = _names(problems, registry, "reporter", model.reports, ["reports"])
    _check_unique_labels(problems, students)
    _check_device(problems, model.device)
    if kind is not None:
        for entry in teachers:
            _check_task_kind(
                problems, registry, kind, entry.component, students, objective_block or {},
                entry.loc,
            )
    problems.raise_if_any()

    grid = model.tasks is not None or model.teachers is not None
    parts = []
    for task in tasks:
        for teacher in teachers:
            assert task.component is not None and teacher.component is not None
            parts.append(
                Suite(
                    path=path,
                    name=f"{model.name}/{task.label}-{teacher.label}" if grid else model.name,
                    description=model.description,
                    data_dir=_data_dir(path, model.data_dir),
                    task=task.component,
                    teacher=teacher.component,
                    students=[spec for spec in students if spec is not None],
                    seeds=model.seeds,
                    metrics=metrics,
                    reports=reports,
                    measure=model.measure,
                    device=model.device,
                    train=model.train,
                    raw=data,
                    warnings=problems.warnings,
                    group=model.name,
                )
            )
    return parts


def load_suite(path: str | os.PathLike[str], registry: Registry) -> Suite:
    """Read, validate and resolve a suite file of one task and one teacher; a file with
    ``tasks`` or ``teachers`` lists is loaded by :func:`load_suites`."""
    parts = load_suites(path, registry)
    if len(parts) > 1:
        raise SuiteError(
            f"{path}: a grid of {len(parts)} (task, teacher) pairs; load it with load_suites "
            "(or run_suites), which gives one suite per pair"
        )
    return parts[0]


@dataclass(frozen=True)
class GridEntry:
    """A task (teacher) of the suite: its label, its settings (None where invalid) and where
    it is in the file."""

    label: str
    component: Component | None
    loc: list[str | int]


def _grid(
    problems: Problems,
    registry: Registry,
    kind: str,
    single: dict[str, Any] | None,
    entries: list[Any] | None,
) -> list[GridEntry]:
    """The suite's tasks (or teachers) with their labels: ``task`` alone, or each entry of
    ``tasks``, whose ``label`` (default: the name) names its part's results folder."""
    if single is None and entries is None:
        problems.add([kind], f"missing required key (or '{kind}s', a list of them)")
        return []
    if single is not None and entries is not None:
        problems.add([f"{kind}s"], f"give either '{kind}' (one) or '{kind}s' (a list), not both")
        return []
    if single is not None:
        component = _component(problems, registry, kind, single, [kind])
        label = component.name if component and FOLDER_LABEL.fullmatch(component.name) else kind
        return [GridEntry(label, component, [kind])]
    assert entries is not None
    found: list[GridEntry] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        loc: list[str | int] = [f"{kind}s", index]
        component = _component(problems, registry, kind, entry, loc, extra_exclude=("label",))
        label = _grid_label(problems, entry, loc)
        if label in seen:
            problems.add(
                loc,
                f"same label {label!r} as {kind}s[{seen[label]}]; give one a different "
                "'label' (it names the pair's results folder)",
            )
        seen.setdefault(label, index)
        found.append(GridEntry(label, component, loc))
    return found


def _grid_label(problems: Problems, entry: Any, loc: list[str | int]) -> str:
    if not isinstance(entry, dict):
        return str(loc[-1])
    label = entry.get("label", entry.get("name"))
    if not isinstance(label, str) or not FOLDER_LABEL.fullmatch(label):
        if "label" in entry:
            problems.add(
                [*loc, "label"],
                f"expected letters, digits, '_', '.' or '-' (a folder name), got {label!r}",
            )
        return str(loc[-1])
    return label


def _grid_kind(
    problems: Problems,
    registry: Registry,
    tasks: list[GridEntry],
) -> str | None:
    """The kind of the suite's tasks: one kind, since students, objective and metrics are
    shared by every task."""
    kinds = [_task_kind(problems, registry, task.component, task.loc) for task in tasks]
    known = [(kind, task.loc) for kind, task in zip(kinds, tasks, strict=True) if kind]
    for kind, loc in known[1:]:
        if kind != known[0][0]:
            problems.add(
                [*loc, "name"],
                f"this task is of kind {kind!r}, the first of kind {known[0][0]!r}: the tasks "
                "of one suite share its students, objective and metrics, so must be of one kind",
            )
    return known[0][0] if known and len(known) == len(kinds) else None


def _task_kind(
    problems: Problems, registry: Registry, task: Component | None, loc: list[str | int]
) -> str | None:
    """The name of the task's kind, if a plugin registered that kind."""
    if task is None:
        return None
    kind = registry.get("task", task.name).kind
    try:
        registry.get("task_kind", kind)
    except PluginError as error:
        problems.add([*loc, "name"], f"task {task.name!r} is of kind {kind!r}: {error}")
        return None
    return kind


def _default_objective(
    problems: Problems, registry: Registry, kind: str | None
) -> dict[str, Any] | None:
    """The objective of the task kind's choice, for a suite that names none."""
    if kind is None:
        return None
    default = registry.get("task_kind", kind).default_objective
    if default is None:
        problems.add(["objective"], f"{kind} tasks have no default objective; name one")
        return None
    if default not in registry.names("objective"):
        problems.add(
            ["objective"],
            f"{kind} tasks train with objective {default!r} by default, and no loaded plugin "
            "registers it; name an objective, or install or unblock the plugin that has it",
        )
        return None
    return {"name": default}


def _names(
    problems: Problems,
    registry: Registry,
    kind: str,
    names: list[str] | None,
    loc: list[str | int],
) -> list[str]:
    if names is None:
        return registry.names(kind)
    for index, name in enumerate(names):
        try:
            registry.get(kind, name)
        except PluginError as error:
            problems.add([*loc, index], str(error))
    return list(dict.fromkeys(names))


def _metric_names(
    problems: Problems, registry: Registry, names: list[str] | None, kind: str | None
) -> list[str]:
    """The suite's metrics; by default every registered metric of the task's kind."""
    if names is None:
        return [
            name
            for name in registry.names("metric")
            if kind is None or registry.get("metric", name).task_kind == kind
        ]
    chosen = _names(problems, registry, "metric", names, ["metrics"])
    for index, name in enumerate(names):
        if name in registry.names("metric") and kind is not None:
            metric_kind = registry.get("metric", name).task_kind
            if metric_kind != kind:
                problems.add(
                    ["metrics", index],
                    f"metric {name!r} scores {metric_kind} tasks; the task is {kind}",
                )
    return chosen


def _check_task_kind(
    problems: Problems,
    registry: Registry,
    kind: str,
    teacher: Component | None,
    students: list[StudentSpec | None],
    default_objective: dict[str, Any],
    teacher_loc: list[str | int],
) -> None:
    """Every teacher, student and objective must serve the task's kind, and every teacher and
    student must implement the kind's protocol (what the runner will call on it)."""
    strategy = registry.get("task_kind", kind)
    protocols = {"teacher": strategy.teacher_protocol, "student": strategy.student_protocol}

    def check(plugin_kind: str, component: Component, loc: list[str | int]) -> None:
        plugin = registry.get(plugin_kind, component.name)
        served = plugin.task_kinds
        if kind not in served:
            problems.add(
                loc,
                f"{plugin_kind} {component.name!r} serves {', '.join(sorted(served))} tasks; "
                f"the task is {kind}",
            )
        elif plugin_kind in protocols and not issubclass(plugin, protocols[plugin_kind]):
            protocol = protocols[plugin_kind]
            problems.add(
                loc,
                f"{plugin_kind} {component.name!r} says it serves {kind} tasks but "
                f"{plugin.__name__} does not implement {protocol.__name__} "
                f"({', '.join(_protocol_methods(protocol))})",
            )

    if teacher is not None:
        check("teacher", teacher, [*teacher_loc, "name"])
    for index, spec in enumerate(students):
        if spec is None:
            continue
        check("student", spec.student, ["students", index, "name"])
        own = spec.objective.name != default_objective.get("name")
        where: list[str | int] = ["students", index, "objective"] if own else ["objective"]
        check("objective", spec.objective, where)


def _protocol_methods(protocol: type) -> list[str]:
    return sorted(
        name for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    )


def _check_device(problems: Problems, device: str) -> None:
    """A CUDA device must exist on this machine (``auto`` picks what there is)."""
    if not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        have = f"{count} CUDA device(s)" if count else "no CUDA device"
        problems.add(["device"], f"{device!r}: this machine has {have}; use cpu or auto")


def _check_unique_labels(problems: Problems, students: list[StudentSpec | None]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, spec in enumerate(students):
        if spec is None:
            continue
        key = (spec.label, spec.objective.name)
        if key in seen:
            problems.add(
                ["students", index],
                f"same student and objective as students[{seen[key]}] ({spec.label}, "
                f"{spec.objective.name}); give one a different setting or a 'label'",
            )
        seen[key] = index


def _data_dir(suite_path: Path, configured: str | None) -> Path | None:
    """The suite's ``data_dir`` (relative to the suite file), else ``QCOMPRESS_DATA_DIR``."""
    if configured:
        candidate = Path(os.path.expanduser(configured))
        return candidate if candidate.is_absolute() else (suite_path.parent / candidate)
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env).expanduser() if from_env else None
