"""What a suite is, once loaded: its validated settings (:class:`Suite`), the plugins it names
with their settings (:class:`Component`), and the cells it expands to (:class:`Cell`: one
student trained with one seed, identified by a hash of its resolved config).
``qcompress.suite`` reads and validates suite files into these."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qcompress.fingerprint import fingerprint_of
from qcompress.interfaces import PluginConfig, TrainSettings
from qcompress.values import MAX_ROWS, SEED_MAX

DATA_DIR_ENV = "QCOMPRESS_DATA_DIR"
# Keys of a student entry that the core reads; all others belong to the student plugin.
STUDENT_CORE_KEYS = ("name", "label", "objective", "train", "seeds")
# Most entries of a suite's ``tasks`` or ``teachers`` list.
MAX_GRID = 50


class MeasureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_samples: int = Field(
        default=50, ge=1, le=100_000, description="batch-1 predictions timed"
    )
    warmup: int = Field(default=5, ge=0, le=10_000, description="untimed batch-1 predictions first")
    throughput_samples: int = Field(
        default=256, ge=1, le=MAX_ROWS,
        description="evaluation texts predicted in batches to time throughput",
    )


class SuiteModel(BaseModel):
    """The suite's own keys; plugin blocks are validated against their plugin's Config after."""

    model_config = ConfigDict(extra="forbid")

    # A folder name on any file system (results/<name>/).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    data_dir: str | None = None
    # One task and one teacher, or a grid: ``tasks`` x ``teachers``, each pair its own part
    # (results/<name>/<task label>-<teacher label>/), all with the same students and seeds.
    task: dict[str, Any] | None = None
    tasks: list[Any] | None = Field(default=None, min_length=1, max_length=MAX_GRID)
    teacher: dict[str, Any] | None = None
    teachers: list[Any] | None = Field(default=None, min_length=1, max_length=MAX_GRID)
    objective: dict[str, Any] | None = None  # default: the task kind's default objective
    train: TrainSettings = Field(default_factory=TrainSettings)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=1000)
    students: list[dict[str, Any]] = Field(min_length=1)
    metrics: list[str] | None = None
    reports: list[str] | None = None
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        return checked_seeds(seeds)


@dataclass(frozen=True)
class Component:
    """A plugin chosen by name, with its validated settings."""

    name: str
    config: PluginConfig

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json", exclude={"name"})}


def checked_seeds(seeds: list[int]) -> list[int]:
    if any(not 0 <= seed <= SEED_MAX for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers from 0 to {SEED_MAX}")
    return seeds


@dataclass(frozen=True)
class StudentSpec:
    label: str
    student: Component
    objective: Component
    train: TrainSettings
    # The student's own seeds (e.g. one for a model that does not train), else the suite's.
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Cell:
    """One unit of work: a student trained with one seed."""

    suite: str
    task: Component
    teacher: Component
    spec: StudentSpec
    seed: int

    def config(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "task": self.task.as_dict(),
            "teacher": self.teacher.as_dict(),
            "student": self.spec.student.as_dict(),
            "label": self.spec.label,
            "objective": self.spec.objective.as_dict(),
            "train": self.spec.train.model_dump(mode="json"),
            "seed": self.seed,
        }

    @property
    def cell_id(self) -> str:
        return fingerprint_of(self.config())

    @property
    def file_name(self) -> str:
        # Labels can hold long paths; the id prefix keeps shortened names unique.
        label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.spec.label).strip("_")[:80]
        return f"{label}-{self.spec.objective.name}-seed{self.seed}-{self.cell_id[:8]}.json"


@dataclass(frozen=True)
class Suite:
    """One (task, teacher) pair of a suite file with its students and seeds. A file with
    ``tasks`` or ``teachers`` lists loads as several: ``name`` is then ``<file's name>/<task
    label>-<teacher label>`` (the results folder under ``results/``) and ``group`` is the
    file's name."""

    path: Path
    name: str
    description: str
    data_dir: Path | None
    task: Component
    teacher: Component
    students: list[StudentSpec]
    seeds: list[int]
    metrics: list[str]
    reports: list[str]
    measure: MeasureSettings
    device: str
    train: TrainSettings
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    # Advice found while loading (e.g. parameter shift on an exact simulator); not errors.
    warnings: list[str] = field(default_factory=list)
    group: str = ""  # the suite file's name; differs from ``name`` for a part of a grid

    def cells(self) -> list[Cell]:
        return [
            Cell(self.name, self.task, self.teacher, spec, seed)
            for spec in self.students
            for seed in (spec.seeds if spec.seeds is not None else self.seeds)
        ]
