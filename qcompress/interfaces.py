"""The contracts plugins implement: Task, Teacher, Student, Objective, Backend (classes to
subclass); Metric, Reporter and TaskKind (instances to register); the run context a plugin is
given; and the small value types they exchange.

Each registered class carries a ``Config``: a pydantic model of the keys a suite may give it.
The suite loader validates every entry against that model before any work starts, so a plugin
never sees an unknown key or a value of the wrong type.

Task kinds (what a task asks of a model: a class per text, the texts themselves...) are
strategies registered by plugins (:class:`TaskKind`); tasks, teachers, students, objectives and
metrics name the kinds they serve, and the suite loader checks that a suite's parts agree and
that each teacher and student implements its kind's protocol.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from qcompress.circuit import GATES, Circuit, CircuitError
from qcompress.fingerprint import fingerprint_of
from qcompress.record import Column  # re-exported: plugins declare table columns with it

if TYPE_CHECKING:
    from rich.console import Console

    from qcompress.cache import Cache
    from qcompress.progress import ProgressReporter
    from qcompress.report import ResultsTable

class PluginConfig(BaseModel):
    """Base of every plugin's settings: unknown keys are errors, values are checked (numbers
    must be finite: ``.inf`` or ``1e999`` in a suite is a mistake, not a setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


@dataclass(frozen=True)
class Split:
    """Texts and their integer labels (``None`` for language modelling: the texts are the
    targets)."""

    texts: list[str]
    labels: torch.Tensor | None = None  # long, [N]

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode())
            digest.update(b"\0")
        if self.labels is not None:
            digest.update(self.labels.numpy().tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TaskData:
    """A loaded task: the split students train on and the one they are scored on.

    ``provenance`` says where the data came from and how it was split (files, sizes, seed); it
    goes into every record. ``kind`` names the task kind (the runner fills it in from the
    task class when the task leaves it unset); ``label_names`` name the classes, if any.
    """

    name: str
    label_names: list[str]
    train: Split
    eval: Split
    provenance: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def fingerprint(self) -> str:
        return fingerprint_of(
            self.name, self.label_names, self.train.fingerprint(), self.eval.fingerprint()
        )


class TaskConfig(PluginConfig):
    """Settings every task accepts."""

    name: str
    train_size: int | None = Field(
        default=None, ge=2, description="seeded subsample of the training split; all if unset"
    )
    eval_size: int | None = Field(
        default=None, ge=2, description="seeded subsample of the evaluation split; all if unset"
    )
    seed: int = Field(default=0, ge=0, description="seed of the subsamples and of any split")


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


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters, counted honestly.

    ``trainable``: what the method trains. ``inference_total``: everything that must be loaded to
    predict, frozen encoders included. ``details``: named parts (e.g. ``encoder``, ``head``,
    ``circuit``) that add up to ``inference_total``.
    """

    trainable: int
    inference_total: int
    details: dict[str, int] = field(default_factory=dict)


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of a module (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for parameter in module.parameters():
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


class TrainSettings(PluginConfig):
    """How a student is trained (the suite's ``train`` block, overridable per student)."""

    epochs: int = Field(default=3, ge=1, le=10_000)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-2, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)


@dataclass
class TrainReport:
    """What training did: the mean loss of every epoch, steps taken, and method-specific extras."""

    loss_per_epoch: list[float]
    steps: int
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenLosses:
    """How well a language model predicts each text: the summed negative log-likelihood (nats)
    of the text's predicted tokens, and how many tokens were predicted (padding excluded)."""

    nll: torch.Tensor  # float64, [N]
    tokens: torch.Tensor  # long, [N]

    def mean_nll(self) -> float:
        """Nats per token over all texts, every token weighing the same."""
        return float(self.nll.sum() / self.tokens.sum().clamp_min(1))


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


@dataclass(frozen=True)
class Variant:
    """A trained student evaluated another way, e.g. its circuit run with shots and noise on
    another backend. The runner scores ``logits`` with the suite's metrics and records the
    result beside the cell's own; ``rows`` says which evaluation rows they cover (all when
    ``None``), ``details`` what the variant is."""

    label: str
    logits: torch.Tensor
    rows: torch.Tensor | None = None
    details: dict[str, Any] = field(default_factory=dict)


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
        teacher_logits: torch.Tensor | None,
        objective: Objective,
        settings: TrainSettings,
    ) -> TrainReport:
        """Train on ``train``. ``teacher_logits`` are the teacher's targets aligned with its rows,
        as the task kind produces them (``None`` where it produces none, as for language
        modelling, where the objective sees the student's token logits and the token ids)."""

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
    the logits are ``[B, T, V]``, the teacher's ``None`` and the labels the token ids ``[B, T]``
    with -100 where nothing is to be predicted (padding)."""

    Config: ClassVar[type[PluginConfig]]
    description: ClassVar[str] = ""
    task_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @abstractmethod
    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """A scalar loss (mean over the batch)."""


# ---------------------------------------------------------------------------------------------
# Quantum backends


@dataclass(frozen=True)
class BackendInfo:
    """What a backend is, recorded with every result it produced."""

    name: str
    device: str
    exact: bool
    shots: int | None
    noise: str | None
    gradient: str  # "backprop", "adjoint" or "parameter-shift"
    dtype: str
    kernel: str | None = None  # the backend's own name for the implementation that ran


class BackendSpec(BaseModel):
    """A backend chosen in a plugin's settings: ``name`` plus that backend's own settings, e.g.
    ``{name: <backend>, shots: 1024}``, or just the name as a string.

    A plugin declares a field of this type; the suite loader checks the settings against the
    named backend's ``Config`` (and fills in its defaults) like any other plugin block, and
    :meth:`RunContext.backend` builds it.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str  # a registered backend; a plugin's field gives its own default

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def settings(self) -> dict[str, Any]:
        """The backend's own settings (everything but the name)."""
        return dict(self.model_extra or {})


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
class Predictions:
    """What a metric sees, as the task kind fills it in: class logits on the evaluation split,
    the labels, and the teacher's logits on the same rows (``None`` when scoring the teacher
    itself); or, for language models, ``token_losses`` (the others ``None``)."""

    logits: torch.Tensor | None
    labels: torch.Tensor | None
    teacher_logits: torch.Tensor | None
    token_losses: TokenLosses | None = None


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
    device, the cache, progress bars, the prepared teacher (``None`` while the teacher itself
    prepares), shared frozen encoders and their cached features, backends by name."""

    cache: Cache
    device: torch.device
    progress: ProgressReporter
    data_dir: Path | None
    teacher: Teacher | None

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
    def resolve_encoder(self, name_or_path: str) -> str:
        """A folder or hub id for an encoder named in a plugin's settings: ``teacher`` (the
        prepared teacher's own encoder), a name a plugin registered, or a hub id or path."""
