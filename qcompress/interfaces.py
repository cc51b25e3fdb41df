"""The contracts plugins implement: Task, Teacher, Student, Objective, Backend (classes to
subclass, each a :class:`Plugin`); Metric and Reporter (instances to register); and the run
context a plugin is given. The values they exchange are in ``qcompress.values`` (re-exported
here), task kinds in ``qcompress.task_kinds``.

Each registered class carries a ``Config``: a pydantic model of the keys a suite may give it.
The suite loader validates every entry against that model before any work starts, so a plugin
never sees an unknown key or a value of the wrong type.

Task kinds (what a task asks of a model: a class per text, the texts themselves...) are
strategies registered by plugins (``qcompress.task_kinds.TaskKind``); tasks, teachers,
students, objectives and metrics name the kinds they serve, and the suite loader checks that a
suite's parts agree and that each teacher and student implements its kind's protocol.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from pydantic import Field

from qcompress.circuit import GATES, Circuit, CircuitError
from qcompress.record import Column  # re-exported: plugins declare table columns with it
from qcompress.values import (  # re-exported: the values of the contracts below
    MAX_ROWS,
    SEED_MAX,
    BackendInfo,
    BackendSpec,
    GenerationSettings,
    ParameterCounts,
    PluginConfig,
    Predictions,
    Responses,
    Split,
    Targets,
    TaskData,
    TokenLosses,
    TopTokens,
    TrainReport,
    TrainSettings,
    Variant,
    count_parameters,
)

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendSpec",
    "Column",
    "Encoder",
    "GenerationSettings",
    "Metric",
    "Objective",
    "ParameterCounts",
    "Plugin",
    "PluginConfig",
    "Predictions",
    "Reporter",
    "Responses",
    "RunContext",
    "Split",
    "Student",
    "Targets",
    "Task",
    "TaskConfig",
    "TaskData",
    "Teacher",
    "TokenLosses",
    "TopTokens",
    "TrainReport",
    "TrainSettings",
    "Variant",
    "count_parameters",
]

if TYPE_CHECKING:
    from rich.console import Console

    from qcompress.cache import Cache
    from qcompress.progress import ProgressReporter
    from qcompress.report import ResultsTable


class Plugin:
    """What every registered class has: its settings model, a description, and the optional
    modules it needs for given settings (checked when a suite loads, before any work)."""

    Config: ClassVar[type[PluginConfig]]
    description: ClassVar[str] = ""

    @classmethod
    def requirements(cls, config: PluginConfig) -> dict[str, str]:
        """Modules that must be importable to run with ``config``: import name -> how to
        install it (e.g. ``{"some_simulator": "pip install 'some-simulator'"}``)."""
        return {}


# ---------------------------------------------------------------------------------------------
# Tasks


class TaskConfig(PluginConfig):
    """Settings every task accepts."""

    name: str
    train_size: int | None = Field(
        default=None, ge=2, le=MAX_ROWS,
        description="seeded subsample of the training split; all if unset",
    )
    eval_size: int | None = Field(
        default=None, ge=2, le=MAX_ROWS,
        description="seeded subsample of the evaluation split; all if unset",
    )
    seed: int = Field(
        default=0, ge=0, le=SEED_MAX, description="seed of the subsamples and of any split"
    )


class Task(Plugin, ABC):
    """A task of kind ``kind`` (the name of a registered :class:`TaskKind`). ``load`` reads it
    from the data directory (or elsewhere)."""

    Config: ClassVar[type[TaskConfig]] = TaskConfig
    description: ClassVar[str] = ""
    kind: ClassVar[str]

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    @abstractmethod
    def load(self, data_dir: Path | None) -> TaskData:
        """Load the task; raise :class:`qcompress.errors.DataError` saying what is missing."""


# ---------------------------------------------------------------------------------------------
# Models


class Teacher(Plugin, ABC):
    """The model being compressed. ``task_kinds`` names the task kinds it serves; for each, it
    implements that kind's teacher protocol (for instance :class:`LogitTeacher`: logits
    ``[N, C]`` per text, or :class:`TokenLossTeacher`: per-text token losses).

    ``prepare`` makes the teacher ready for a task (e.g. fine-tunes it once, reusing the
    context's cache); after it, ``fingerprint`` identifies the exact weights, so teacher
    outputs can be cached content-addressed.
    """

    Config: ClassVar[type[PluginConfig]]
    description: ClassVar[str] = ""
    task_kinds: ClassVar[frozenset[str]] = frozenset()
    # Columns this teacher adds to the results table (keys into its record).
    columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abstractmethod
    def prepare(self, task: TaskData, context: RunContext) -> None:
        """Load (and where the teacher needs it, fine-tune) the model for ``task``."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable identity of the prepared weights and tokenisation."""

    @abstractmethod
    def parameter_counts(self) -> ParameterCounts:
        """Parameters of the prepared teacher."""

    def describe(self) -> dict[str, Any]:
        """Facts for the record beyond the config (e.g. how its fine-tuning went)."""
        return {}

    def encoder_source(self) -> str | None:
        """A Hugging Face folder or hub id whose encoder (``AutoModel``) is this teacher's own,
        for students that learn on the teacher's features; ``None`` when there is none."""
        return None


class Student(Plugin, ABC):
    """A compressed model plus its recipe: built from its config and the task, trained against
    the teacher's targets with an objective, then asked for predictions. ``task_kinds`` names
    the task kinds it serves; for each, it implements that kind's student protocol (e.g.
    :class:`TokenLossStudent` for language modelling).
    """

    Config: ClassVar[type[PluginConfig]]
    description: ClassVar[str] = ""
    task_kinds: ClassVar[frozenset[str]] = frozenset()
    # Columns this student adds to the results table, e.g.
    # ``Column("details.head_latency_ms", "head ms", "{:.3f}")``.
    columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, config: PluginConfig, task: TaskData, context: RunContext) -> None:
        self.config = config
        self.task = task
        self.context = context

    def prepare(self, splits: Sequence[Split]) -> None:
        """Called before training is timed: compute or fetch inputs that are cached across
        cells (e.g. frozen-encoder features), so no cell is billed for a cache miss."""

    @abstractmethod
    def fit(
        self,
        train: Split,
        teacher_logits: Targets,
        objective: Objective,
        settings: TrainSettings,
    ) -> TrainReport:
        """Train on ``train``. ``teacher_logits`` are the teacher's targets aligned with its rows,
        as the task kind produces them: class logits, a language-model teacher's
        :class:`TopTokens` (``.rows(batch)`` gives a batch's), or ``None`` where there are none;
        the objective sees the batch's share with the student's logits and the labels (for
        language modelling: the token logits and the token ids)."""

    @abstractmethod
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits from raw texts, end to end, as a deployed model would run (used for latency);
        a language model gives the next-token logits after each text."""

    def predict_logits(self, split: Split, batch_size: int) -> torch.Tensor:
        """Logits for a whole split; students with cached features override this for speed.
        It must agree with :meth:`predict_texts`."""
        chunks = [
            self.predict_texts(split.texts[start : start + batch_size])
            for start in range(0, len(split), batch_size)
        ]
        return torch.cat(chunks)

    @abstractmethod
    def parameter_counts(self) -> ParameterCounts:
        """Trainable and inference-total parameters."""

    def describe(self) -> dict[str, Any]:
        """Facts for the record beyond the config (e.g. qubits, depth, two-qubit gates)."""
        return {}

    def variants(self, split: Split, batch_size: int) -> list[Variant]:
        """Other ways to evaluate the trained student on ``split`` (default: none)."""
        return []


class Objective(Plugin, ABC):
    """A training loss over student logits, teacher logits and labels. For language modelling
    the logits are ``[B, T, V]``, the teacher's its :class:`TopTokens` for the batch (or
    ``None``) and the labels the token ids ``[B, T]`` with -100 where nothing is to be
    predicted (padding)."""

    Config: ClassVar[type[PluginConfig]]
    description: ClassVar[str] = ""
    task_kinds: ClassVar[frozenset[str]] = frozenset()
    # Whether it reads the teacher's targets on the training split: when no student's does,
    # the run does not compute them (a language-model teacher's top tokens cost a pass).
    uses_teacher: ClassVar[bool] = True

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abstractmethod
    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: Targets,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """A scalar loss (mean over the batch); ``teacher_logits`` are the batch's targets
        (class logits ``[B, C]``, a language-model teacher's :class:`TopTokens` for the batch's
        texts, or ``None``)."""


# ---------------------------------------------------------------------------------------------
# Quantum backends


class Backend(Plugin, ABC):
    """Executes a parametrised circuit: ``(circuit, inputs [B, k], weights [P]) -> [B, m]``
    expectation values, one per readout of the circuit, differentiable in inputs and weights.

    A backend implements :meth:`run` on *bound angles* (one column per angle occurrence, see
    :meth:`Circuit.angles <qcompress.circuit.Circuit.angles>`). A backend that can only
    evaluate gets gradients from :func:`qcompress.gradients.parameter_shift`.
    """

    Config: ClassVar[type[PluginConfig]]
    description: ClassVar[str] = ""
    # The gates this backend can run; a circuit with another gate is refused by name.
    supported_gates: ClassVar[frozenset[str]] = frozenset(GATES)

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @classmethod
    def training_warnings(cls, config: PluginConfig) -> list[str]:
        """Why training through this backend with ``config`` may be a poor choice (e.g.
        parameter shift on an exact simulator); the suite loader shows them before any work."""
        return []

    def expectations(
        self, circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Expectations of the circuit's readouts for a batch of inputs, ``[B, m]``."""
        self.check_supported(circuit)
        return self.run(circuit, circuit.angles(inputs, weights))

    def check_supported(self, circuit: Circuit) -> None:
        # once per circuit: a training step would otherwise walk every gate again
        checked = self.__dict__.setdefault("_supported_circuits", set())
        if circuit.fingerprint in checked:
            return
        for gate in circuit.gates:
            if gate.name not in self.supported_gates:
                raise CircuitError(
                    f"gate {gate}: the {self.info().name} backend does not support "
                    f"{gate.name!r}; it supports {', '.join(sorted(self.supported_gates))}"
                )
        checked.add(circuit.fingerprint)

    @abstractmethod
    def run(self, circuit: Circuit, angles: torch.Tensor) -> torch.Tensor:
        """Expectations ``[B, m]`` for bound angles ``[B, n_angles]``, differentiable in them."""

    @abstractmethod
    def info(self) -> BackendInfo:
        """Device, exact or sampled, noise, gradient method, dtype."""


# ---------------------------------------------------------------------------------------------
# Metrics and reporters (registered as instances)


@dataclass(frozen=True)
class Metric:
    """A number computed from predictions; ``None`` when it does not apply (e.g. agreement
    for the teacher itself). ``task_kind`` names the kind of task it scores;
    ``higher_is_better`` is shown in tables and ranks the leaderboard."""

    compute: Callable[[Predictions], float | None]
    description: str
    higher_is_better: bool = True
    task_kind: str = ""


@dataclass(frozen=True)
class Reporter:
    """Renders the results table of a run: to the terminal, or to a file in the given
    directory (returning its path)."""

    write: Callable[[ResultsTable, Path, Console], Path | None]
    description: str
    # Prints to the console (rather than writing a file): `qcompress report` uses these
    # when no reporter is named.
    terminal: bool = False


# ---------------------------------------------------------------------------------------------
# What a plugin may use from the run


class Encoder(Protocol):
    """A frozen text encoder shared by the students of a run."""

    def encode(self, texts: Sequence[str], batch_size: int) -> torch.Tensor: ...

    def fingerprint(self) -> str: ...

    def parameter_count(self) -> int: ...


class RunContext(ABC):
    """What a plugin gets from the run, built once per run and not changed during it: the
    device, the cache, progress bars, the prepared teacher and the loaded task (``None`` while
    the teacher itself prepares), shared frozen encoders and their cached features, backends
    by name."""

    cache: Cache
    device: torch.device
    progress: ProgressReporter
    data_dir: Path | None
    teacher: Teacher | None
    task: TaskData | None

    @abstractmethod
    def frozen_encoder(self, name_or_path: str, pooling: str, max_length: int) -> Encoder:
        """One shared encoder per (model, pooling, length) for the run, loaded lazily."""

    @abstractmethod
    def frozen_features(self, encoder: Encoder, split: Split, batch_size: int = 64) -> torch.Tensor:
        """Pooled encoder features of a split, computed once and cached on disk."""

    @abstractmethod
    def backend(self, spec: BackendSpec) -> Backend:
        """The backend a plugin's settings name (a :class:`BackendSpec` field)."""

    @abstractmethod
    def resolve_model(self, name_or_path: str) -> str:
        """A folder or hub id that ``from_pretrained`` loads, for a model named in a plugin's
        settings: ``teacher`` (the prepared teacher's own encoder), a name a plugin registered,
        a ``.gguf`` file (dequantized once and cached), or a hub id or folder
        (:mod:`qcompress.models`)."""
