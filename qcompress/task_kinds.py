"""Task kinds: the strategy for each kind of task (what the teacher produces for students, how
a model is scored, the default objective, the headline metric) and the protocols a teacher and a
student of a kind implement, checked when a suite loads.

Kinds are registered by plugins (``register_task_kinds``); the first-party ones are in
``qcompress_plugins/kinds.py``. A new kind is an addition, not an edit of the runner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from qcompress.interfaces import (
    GenerationSettings,
    Predictions,
    Responses,
    RunContext,
    Split,
    Student,
    TaskData,
    Teacher,
    TokenLosses,
    Variant,
)
from qcompress.values import Targets, TopTokens


@runtime_checkable
class LogitTeacher(Protocol):
    """A teacher that gives class logits for texts."""

    def predict_logits(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        """Logits ``[len(texts), num_classes]`` on the CPU."""
        ...


@runtime_checkable
class TokenLossTeacher(Protocol):
    """A teacher that scores texts token by token (a language model)."""

    def token_losses(self, texts: Sequence[str], batch_size: int) -> TokenLosses:
        """The token losses of every text."""
        ...


@runtime_checkable
class TopTokenTeacher(Protocol):
    """A language-model teacher that also gives its ``k`` most likely next tokens at every
    predicted position (for token-level distillation and the token-level metrics)."""

    def top_tokens(self, texts: Sequence[str], batch_size: int, k: int) -> TopTokens: ...


@runtime_checkable
class LogitStudent(Protocol):
    """A student that gives class logits for a split (every :class:`Student` does, through
    :meth:`Student.predict_texts`)."""

    def predict_logits(self, split: Split, batch_size: int) -> torch.Tensor: ...


@runtime_checkable
class TokenLossStudent(Protocol):
    """A student that scores a split token by token (a language model)."""

    def token_losses(self, split: Split, batch_size: int) -> TokenLosses:
        """The token losses of every text of ``split``."""
        ...


@runtime_checkable
class TokenComparingStudent(Protocol):
    """A language-model student that can be scored against a teacher's top tokens on the same
    texts (:class:`TokenLosses` with ``kl``, ``top1`` and ``overlap``)."""

    def token_losses_against(
        self, split: Split, batch_size: int, teacher: TopTokens
    ) -> TokenLosses: ...


@runtime_checkable
class ResponseGenerator(Protocol):
    """A language model that answers prompts (a generation task's teacher and students)."""

    def generate(
        self, prompts: Sequence[str], batch_size: int, settings: GenerationSettings
    ) -> Responses:
        """One response per prompt, in order, decoded as ``settings`` say."""
        ...


@dataclass(frozen=True)
class ScoredVariant:
    """A variant's predictions on its rows beside the student's own on the same rows."""

    variant: Variant
    predictions: Predictions
    student_predictions: Predictions
    agreement_with_student: float


@dataclass(frozen=True)
class Evaluation:
    """A model scored on a task's evaluation split: what the metrics see, facts for the record
    (e.g. ``scored_tokens``), and the student's variants, scored."""

    predictions: Predictions
    facts: dict[str, Any] = field(default_factory=dict)
    variants: list[ScoredVariant] = field(default_factory=list)


class TaskKind(ABC):
    """A strategy for one kind of task (registered as an instance with
    ``register_task_kinds``): what the teacher must produce, how a model is scored, which
    objective students train with when the suite names none, and which metric ranks models.

    The runner calls nothing kind-specific itself; every difference between, say,
    two kinds of task lives in a subclass of this.
    """

    description: ClassVar[str] = ""
    # The protocols a teacher and a student serving this kind must implement.
    teacher_protocol: ClassVar[type]
    student_protocol: ClassVar[type]
    # Names of registered plugins (None: the suite must name an objective).
    default_objective: ClassVar[str | None] = None
    headline_metric: ClassVar[str | None] = None
    # Whether students train on the teacher's targets whatever their objective (a generation
    # task's students learn from the teacher's responses): the run always computes them then.
    trains_on_targets: ClassVar[bool] = False

    def summary(self, task: TaskData) -> str:
        """A few words on the loaded task, printed when the run starts."""
        return f"{len(task.train)} training and {len(task.eval)} evaluation texts"

    @abstractmethod
    def teacher_targets(
        self, teacher: Teacher, split: Split, batch_size: int, context: RunContext
    ) -> Targets:
        """What students are trained against on ``split`` and compared with (the teacher's
        logits, or its top tokens, cached), or ``None`` when there is none."""

    @abstractmethod
    def evaluate_teacher(
        self, teacher: Teacher, task: TaskData, targets: Targets, batch_size: int
    ) -> Evaluation:
        """The teacher scored on ``task.eval`` (``targets``: its own on that split)."""

    @abstractmethod
    def evaluate_student(
        self,
        student: Student,
        task: TaskData,
        teacher_targets: Targets,
        batch_size: int,
    ) -> Evaluation:
        """A trained student scored on ``task.eval`` against the teacher's targets there."""

    @abstractmethod
    def teacher_predictor(self, teacher: Teacher) -> Callable[[Sequence[str]], Any]:
        """Predict a batch of raw texts with the teacher (timed for latency and throughput)."""
