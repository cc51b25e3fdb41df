"""qcompress: compress language models with quantum and classical methods, and measure honestly
what each method buys.

The public API: what a plugin author subclasses, registers and calls, and what a notebook needs
to run a suite (:func:`run_suite`). Everything here is imported on first use, so
``import qcompress`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qcompress.hookspecs import hookimpl

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    # the contracts (qcompress.interfaces)
    **dict.fromkeys(
        [
            "Backend", "BackendInfo", "BackendSpec", "Encoder", "Metric", "Objective",
            "ParameterCounts", "Plugin", "PluginConfig", "Predictions", "Reporter", "RunContext",
            "Split", "Student", "Task", "TaskConfig", "TaskData", "Teacher", "TokenLosses",
            "TrainReport", "TrainSettings", "Variant", "count_parameters",
        ],
        "qcompress.interfaces",
    ),
    # task kinds (qcompress.task_kinds)
    **dict.fromkeys(
        [
            "Evaluation", "LogitStudent", "LogitTeacher", "ScoredVariant", "TaskKind",
            "TokenLossStudent", "TokenLossTeacher",
        ],
        "qcompress.task_kinds",
    ),
    # records and tables
    "Column": "qcompress.record",
    "Record": "qcompress.record",
    "ResultsTable": "qcompress.report",
    # shared bases and helpers for plugins
    "FrozenFeatureStudent": "qcompress.features",
    "FrozenEncoderConfig": "qcompress.features",
    "train_module": "qcompress.training",
    "subsample": "qcompress.tasks",
    "stratified_split": "qcompress.tasks",
    "describe_split": "qcompress.tasks",
    "fingerprint_of": "qcompress.fingerprint",
    "Circuit": "qcompress.circuit",
    "CircuitBuilder": "qcompress.circuit",
    "feature": "qcompress.circuit",
    "z": "qcompress.circuit",
    # errors a plugin raises for the user
    "QcompressError": "qcompress.errors",
    "DataError": "qcompress.errors",
    # running from Python
    "run_suite": "qcompress.api",
    "run_suites": "qcompress.api",
    "load_suite": "qcompress.suite",
    "load_suites": "qcompress.suite",
    "load_registry": "qcompress.plugins",
}

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendSpec",
    "Circuit",
    "CircuitBuilder",
    "Column",
    "DataError",
    "Encoder",
    "Evaluation",
    "FrozenEncoderConfig",
    "FrozenFeatureStudent",
    "LogitStudent",
    "LogitTeacher",
    "Metric",
    "Objective",
    "ParameterCounts",
    "Plugin",
    "PluginConfig",
    "Predictions",
    "QcompressError",
    "Record",
    "Reporter",
    "ResultsTable",
    "RunContext",
    "ScoredVariant",
    "Split",
    "Student",
    "Task",
    "TaskConfig",
    "TaskData",
    "TaskKind",
    "Teacher",
    "TokenLossStudent",
    "TokenLossTeacher",
    "TokenLosses",
    "TrainReport",
    "TrainSettings",
    "Variant",
    "__version__",
    "count_parameters",
    "describe_split",
    "feature",
    "fingerprint_of",
    "hookimpl",
    "load_registry",
    "load_suite",
    "load_suites",
    "run_suite",
    "run_suites",
    "stratified_split",
    "subsample",
    "train_module",
    "z",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qcompress' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and editors see
    from qcompress.api import run_suite, run_suites
    from qcompress.circuit import Circuit, CircuitBuilder, feature, z
    from qcompress.errors import DataError, QcompressError
    from qcompress.features import FrozenEncoderConfig, FrozenFeatureStudent
    from qcompress.fingerprint import fingerprint_of
    from qcompress.interfaces import (
        Backend,
        BackendInfo,
        BackendSpec,
        Encoder,
        Metric,
        Objective,
        ParameterCounts,
        Plugin,
        PluginConfig,
        Predictions,
        Reporter,
        RunContext,
        Split,
        Student,
        Task,
        TaskConfig,
        TaskData,
        Teacher,
        TokenLosses,
        TrainReport,
        TrainSettings,
        Variant,
        count_parameters,
    )
    from qcompress.plugins import load_registry
    from qcompress.record import Column, Record
    from qcompress.report import ResultsTable
    from qcompress.suite import load_suite, load_suites
    from qcompress.task_kinds import (
        Evaluation,
        LogitStudent,
        LogitTeacher,
        ScoredVariant,
        TaskKind,
        TokenLossStudent,
        TokenLossTeacher,
    )
    from qcompress.tasks import describe_split, stratified_split, subsample
    from qcompress.training import train_module
