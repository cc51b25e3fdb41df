"""The first-party task kinds: text classification, causal language modelling and generation
(prompts in, responses out).

Each is the strategy the runner follows for tasks of its kind: what the teacher produces for
students to learn from, how a model is scored, the objective students train with when a suite
names none, and the metric that ranks models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from qcompress import hookimpl
from qcompress.interfaces import (
    Predictions,
    Responses,
    RunContext,
    Split,
    Student,
    TaskData,
    Teacher,
    TokenLosses,
)
from qcompress.task_kinds import (
    Evaluation,
    LogitStudent,
    LogitTeacher,
    ResponseGenerator,
    ScoredVariant,
    TaskKind,
    TokenComparingStudent,
    TokenLossStudent,
    TokenLossTeacher,
    TopTokenTeacher,
)
from qcompress.values import GenerationSettings, Targets, TopTokens
from qcompress_plugins.identity import exchange_facts

CLASSIFICATION = "classification"
CAUSAL_LM = "causal-lm"
GENERATION = "generation"
# The teacher's most likely tokens kept per predicted position (32 x 12 bytes a token in the
# cache); the probability of all the others is kept as one bucket.
TOP_K = 32


class Classification(TaskKind):
    """A class per text. The teacher gives logits, cached per teacher and split; students
    train against them and the labels, and are scored on their logits, the labels and the
    teacher's logits on the same rows."""

    description = "a class per text, scored on logits (accuracy ranks)"
    teacher_protocol = LogitTeacher
    student_protocol = LogitStudent
    default_objective = "kd"
    headline_metric = "accuracy"

    def summary(self, task: TaskData) -> str:
        return f"{super().summary(task)}, {task.num_classes} classes"

    def teacher_targets(
        self, teacher: Teacher, split: Split, batch_size: int, context: RunContext
    ) -> torch.Tensor:
        assert isinstance(teacher, LogitTeacher)
        parts = {"teacher": teacher.fingerprint(), "split": split.fingerprint()}

        def compute() -> dict[str, torch.Tensor]:
            with context.progress.task(f"teacher logits ({len(split)} texts)", total=1) as step:
                logits = teacher.predict_logits(split.texts, batch_size=batch_size)
                step()
            return {"logits": logits.float().cpu()}

        return context.cache.tensors("teacher-logits", parts, compute)["logits"]

    def evaluate_teacher(
        self, teacher: Teacher, task: TaskData, targets: Targets, batch_size: int
    ) -> Evaluation:
        assert not isinstance(targets, TopTokens)
        return Evaluation(Predictions(targets, task.eval.labels, None))

    def evaluate_student(
        self,
        student: Student,
        task: TaskData,
        teacher_targets: Targets,
        batch_size: int,
    ) -> Evaluation:
        assert not isinstance(teacher_targets, TopTokens)
        logits = student.predict_logits(task.eval, batch_size)
        predictions = Predictions(logits, task.eval.labels, teacher_targets)
        variants = self._variants(student, task, predictions, batch_size)
        return Evaluation(predictions, variants=variants)

    @staticmethod
    def _variants(
        student: Student, task: TaskData, own: Predictions, batch_size: int
    ) -> list[ScoredVariant]:
        """The student's other evaluations (e.g. its circuit with shots and noise), each beside
        the student's own predictions on the rows it covers."""
        assert own.logits is not None and own.labels is not None
        scored = []
        for variant in student.variants(task.eval, batch_size):
            rows = variant.rows if variant.rows is not None else torch.arange(len(task.eval))
            teacher = None if own.teacher_logits is None else own.teacher_logits[rows]
            agreement = (variant.logits.argmax(-1) == own.logits[rows].argmax(-1)).float().mean()
            scored.append(
                ScoredVariant(
                    variant,
                    Predictions(variant.logits, own.labels[rows], teacher),
                    Predictions(own.logits[rows], own.labels[rows], teacher),
                    round(agreement.item(), 6),
                )
            )
        return scored

    def teacher_predictor(self, teacher: Teacher) -> Callable[[Sequence[str]], Any]:
        assert isinstance(teacher, LogitTeacher)
        return lambda texts: teacher.predict_logits(texts, batch_size=len(texts))


class CausalLM(TaskKind):
    """The texts themselves (next-token prediction). Every model is scored on its token
    losses. A teacher that gives its top tokens (:class:`TopTokenTeacher`) gives them for both
    splits, cached: students may distil them token by token (``token-kd``), and students that
    can (:class:`TokenComparingStudent`) are also scored against them on the evaluation split
    (KL from the teacher, top-1 agreement, top-10 overlap)."""

    description = "next-token prediction, scored on token losses (perplexity ranks)"
    teacher_protocol = TokenLossTeacher
    student_protocol = TokenLossStudent
    default_objective = "lm"
    headline_metric = "perplexity"

    def summary(self, task: TaskData) -> str:
        return f"{super().summary(task)}, language modelling"

    def teacher_targets(
        self, teacher: Teacher, split: Split, batch_size: int, context: RunContext
    ) -> TopTokens | None:
        if not isinstance(teacher, TopTokenTeacher):
            return None
        parts = {"teacher": teacher.fingerprint(), "split": split.fingerprint(), "k": TOP_K}

        def compute() -> dict[str, torch.Tensor]:
            with context.progress.task(f"teacher top tokens ({len(split)} texts)", total=1) as step:
                top = teacher.top_tokens(split.texts, batch_size=batch_size, k=TOP_K)
                step()
            return top.as_tensors()

        return TopTokens.from_tensors(context.cache.tensors("teacher-top-tokens", parts, compute))

    def evaluate_teacher(
        self, teacher: Teacher, task: TaskData, targets: Targets, batch_size: int
    ) -> Evaluation:
        assert isinstance(teacher, TokenLossTeacher)
        return _scored(teacher.token_losses(task.eval.texts, batch_size=batch_size))

    def evaluate_student(
        self,
        student: Student,
        task: TaskData,
        teacher_targets: Targets,
        batch_size: int,
    ) -> Evaluation:
        if isinstance(teacher_targets, TopTokens) and isinstance(student, TokenComparingStudent):
            return _scored(student.token_losses_against(task.eval, batch_size, teacher_targets))
        assert isinstance(student, TokenLossStudent)
        return _scored(student.token_losses(task.eval, batch_size))

    def teacher_predictor(self, teacher: Teacher) -> Callable[[Sequence[str]], Any]:
        assert isinstance(teacher, TokenLossTeacher)
        return lambda texts: teacher.token_losses(texts, batch_size=len(texts))


def _scored(losses: TokenLosses) -> Evaluation:
    """A language model's evaluation: its token losses, and how many tokens they cover."""
    return Evaluation(
        Predictions(None, None, None, token_losses=losses),
        facts={"scored_tokens": int(losses.tokens.sum())},
    )


class Generation(TaskKind):
    """Prompts in, responses out. The teacher answers both splits' prompts (cached per teacher,
    split and decoding settings, so a rerun generates nothing twice); students learn from its
    answers to the training prompts (sequence-level distillation: the next-token loss on the
    teacher's response after each prompt) and are scored on their own answers to the
    evaluation prompts beside the teacher's. Each evaluation's facts keep every prompt and
    response, and the identities the responses claim (:mod:`qcompress_plugins.identity`)."""

    description = "prompts in, responses out; scored on the responses (response similarity ranks)"
    teacher_protocol = ResponseGenerator
    student_protocol = ResponseGenerator
    default_objective = "lm"
    headline_metric = "rse"
    trains_on_targets = True

    def summary(self, task: TaskData) -> str:
        return f"{len(task.train)} training and {len(task.eval)} evaluation prompts, generation"

    def teacher_targets(
        self, teacher: Teacher, split: Split, batch_size: int, context: RunContext
    ) -> Responses:
        assert isinstance(teacher, ResponseGenerator)
        settings = _settings(context)
        parts = {"teacher": teacher.fingerprint(), "split": split.fingerprint(),
                 "settings": settings.model_dump()}  # fmt: skip

        def compute() -> dict[str, torch.Tensor]:
            title = f"teacher responses ({len(split)} prompts)"
            with context.progress.task(title, total=1) as step:
                responses = teacher.generate(split.texts, batch_size, settings)
                step()
            return responses.as_tensors()

        return Responses.from_tensors(context.cache.tensors("teacher-responses", parts, compute))

    def evaluate_teacher(
        self, teacher: Teacher, task: TaskData, targets: Targets, batch_size: int
    ) -> Evaluation:
        assert isinstance(targets, Responses)
        return _answered(task, targets, None)

    def evaluate_student(
        self, student: Student, task: TaskData, teacher_targets: Targets, batch_size: int
    ) -> Evaluation:
        assert isinstance(student, ResponseGenerator)
        assert isinstance(teacher_targets, Responses) and task.generation is not None
        responses = student.generate(task.eval.texts, batch_size, task.generation)
        return _answered(task, responses, teacher_targets)

    def teacher_predictor(self, teacher: Teacher) -> Callable[[Sequence[str]], Any]:
        assert isinstance(teacher, ResponseGenerator)
        # Timed as students are (their next-token logits after the prompt): reading the prompt
        # and giving the first token; decoding speed is in the generation columns.
        settings = GenerationSettings(max_new_tokens=1)
        return lambda prompts: teacher.generate(prompts, len(prompts), settings)


def _settings(context: RunContext) -> GenerationSettings:
    task = context.task
    return task.generation if task is not None and task.generation else GenerationSettings()


def _groups(task: TaskData) -> list[str] | None:
    """The group of each evaluation prompt: its label's name (e.g. the wrapper it came in)."""
    labels = task.eval.labels
    if labels is None or not task.label_names:
        return None
    return [task.label_names[label] for label in labels.tolist()]


def _answered(task: TaskData, responses: Responses, teacher: Responses | None) -> Evaluation:
    """A generation evaluation: what the metrics see, and every exchange for the record."""
    prompts, groups = list(task.eval.texts), _groups(task)
    predictions = Predictions(
        None, None, None, prompts=prompts, groups=groups, responses=responses,
        teacher_responses=teacher,
    )  # fmt: skip
    facts = {"generation": exchange_facts(prompts, groups, responses, teacher)}
    return Evaluation(predictions, facts=facts)


@hookimpl
def register_task_kinds(register):
    register(CLASSIFICATION, Classification())
    register(CAUSAL_LM, CausalLM())
    register(GENERATION, Generation())
