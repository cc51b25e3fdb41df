"""A sample third-party qcompress plugin: everything a suite needs, with no download.

- task ``tiny-sentiment``: a small two-class sentiment set built in code;
- teacher ``keyword``: counts positive and negative keywords (no weights at all);
- student ``bow``: bag-of-words logistic regression trained against the objective;
- metric ``error_rate``: the fraction of evaluation texts misclassified.

It is registered through the ``qcompress`` entry-point group of its ``pyproject.toml``, exactly
as a package published on PyPI would be.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from qcompress import (
    Column,
    Metric,
    Objective,
    ParameterCounts,
    PluginConfig,
    Predictions,
    RunContext,
    Split,
    Student,
    Task,
    TaskConfig,
    TaskData,
    Teacher,
    TrainReport,
    TrainSettings,
    count_parameters,
    describe_split,
    fingerprint_of,
    hookimpl,
    subsample,
    train_module,
)

# The first-party task kind this package serves (registered by qcompress's own plugins).
CLASSIFICATION = "classification"

__version__ = "0.1.0"

LABELS = ["negative", "positive"]
POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "delightful",
    "superb",
    "lovely",
    "brilliant",
)
NEGATIVE = ("bad", "awful", "terrible", "boring", "dreadful", "poor", "dull", "horrible")
SUBJECTS = (
    "the movie",
    "the plot",
    "the acting",
    "the music",
    "the ending",
    "the script",
    "the cast",
    "the film",
    "the story",
)
FILLERS = ("honestly", "overall", "frankly", "really", "quite", "truly", "simply")


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


# ---------------------------------------------------------------------------------------------
# Task


def sentences(count: int, offset: int) -> Split:
    """``count`` labelled sentences, alternating negative and positive; no randomness, so the
    data (and its fingerprint) is the same on every machine. Every seventh sentence also holds
    one word of the other polarity (the majority still decides)."""
    texts, labels = [], []
    for index in range(offset, offset + count):
        label = index % 2
        own, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        subject = SUBJECTS[(index // 2) % len(SUBJECTS)]
        filler = FILLERS[index % len(FILLERS)]
        first, second = own[index % len(own)], own[(3 * index + 1) % len(own)]
        text = f"{subject} was {first} and {filler} {second}"
        if index % 7 == 0:
            text += f" though a little {other[index % len(other)]}"
        texts.append(text)
        labels.append(label)
    return Split(texts, torch.tensor(labels, dtype=torch.long))


class TinySentimentConfig(TaskConfig):
    train_count: int = Field(default=80, ge=4, description="sentences built for training")
    eval_count: int = Field(default=40, ge=4, description="sentences built for evaluation")


class TinySentiment(Task):
    Config = TinySentimentConfig
    kind = CLASSIFICATION
    description = "tiny built-in two-class sentiment set (no files, no download)"

    def load(self, data_dir: Path | None) -> TaskData:
        config: TinySentimentConfig = self.config
        train = subsample(sentences(config.train_count, 0), config.train_size, config.seed)
        evaluation = subsample(sentences(config.eval_count, 10_000), config.eval_size, config.seed)
        return TaskData(
            name="tiny-sentiment",
            label_names=LABELS,
            train=train,
            eval=evaluation,
            provenance={
                "source": "built in code by qcompress_sample",
                "train": describe_split(train, LABELS),
                "eval": describe_split(evaluation, LABELS),
                "subsample_seed": config.seed,
            },
        )


# ---------------------------------------------------------------------------------------------
# Teacher


class KeywordConfig(PluginConfig):
    positive: tuple[str, ...] = POSITIVE
    negative: tuple[str, ...] = NEGATIVE
    scale: float = Field(default=2.0, gt=0, description="logit gap per keyword of difference")


class KeywordTeacher(Teacher):
    Config = KeywordConfig
    task_kinds = frozenset({CLASSIFICATION})
    description = "counts positive minus negative keywords (no parameters)"

    def prepare(self, task: TaskData, context: RunContext) -> None:
        if task.num_classes != 2:
            raise ValueError(
                f"the keyword teacher needs 2 classes, {task.name} has {task.num_classes}"
            )

    def fingerprint(self) -> str:
        return fingerprint_of("qcompress-sample:keyword", self.config.model_dump(mode="json"))

    def predict_logits(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        config: KeywordConfig = self.config
        positive, negative = set(config.positive), set(config.negative)
        scores = []
        for text in texts:
            words = tokens(text)
            difference = sum(w in positive for w in words) - sum(w in negative for w in words)
            scores.append(config.scale * difference / 2)
        score = torch.tensor(scores, dtype=torch.float32)
        return torch.stack([-score, score], dim=1)

    def parameter_counts(self) -> ParameterCounts:
        return ParameterCounts(trainable=0, inference_total=0)

    def describe(self) -> dict[str, Any]:
        return {"keywords": len(self.config.positive) + len(self.config.negative)}


# ---------------------------------------------------------------------------------------------
# Student


class BagOfWordsConfig(PluginConfig):
    min_count: int = Field(default=1, ge=1, description="rarer training words are dropped")
    binary: bool = Field(default=True, description="presence (1/0) instead of counts")


class BagOfWordsStudent(Student):
    Config = BagOfWordsConfig
    description = "bag-of-words logistic regression over the training vocabulary"
    task_kinds = frozenset({CLASSIFICATION})
    # A column of its own in the results table: the size of the vocabulary it learned.
    columns = (Column("details.vocabulary", "vocabulary", "{:,.0f}"),)

    def __init__(self, config: BagOfWordsConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        counts = Counter(word for text in task.train.texts for word in tokens(text))
        words = sorted(word for word, count in counts.items() if count >= config.min_count)
        self.vocabulary = {word: column for column, word in enumerate(words)}
        self.linear: torch.nn.Linear | None = None

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        rows = torch.zeros(len(texts), len(self.vocabulary))
        for row, text in enumerate(texts):
            for word in tokens(text):
                column = self.vocabulary.get(word)
                if column is not None:
                    rows[row, column] = 1.0 if self.config.binary else rows[row, column] + 1
        return rows

    def fit(
        self,
        train: Split,
        teacher_logits: torch.Tensor | None,
        objective: Objective,
        settings: TrainSettings,
    ) -> TrainReport:
        self.linear = torch.nn.Linear(len(self.vocabulary), self.task.num_classes)
        self.linear.to(self.context.device)
        return train_module(
            self.linear,
            self.features(train.texts),
            teacher_logits,
            train.labels,
            objective,
            settings,
            self.context.progress,
            description="training bow",
        )

    @torch.no_grad()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        if self.linear is None:
            raise RuntimeError("predict before fit")
        return self.linear(self.features(texts).to(self.context.device)).float().cpu()

    def parameter_counts(self) -> ParameterCounts:
        weights = count_parameters(self.linear) if self.linear is not None else 0
        return ParameterCounts(
            trainable=weights, inference_total=weights, details={"linear": weights}
        )

    def describe(self) -> dict[str, Any]:
        return {"vocabulary": len(self.vocabulary)}


# ---------------------------------------------------------------------------------------------
# Metric


def error_rate(predictions: Predictions) -> float:
    wrong = predictions.logits.argmax(-1) != predictions.labels
    return wrong.float().mean().item()


# ---------------------------------------------------------------------------------------------
# Hooks


@hookimpl
def register_tasks(register):
    register("tiny-sentiment", TinySentiment)


@hookimpl
def register_teachers(register):
    register("keyword", KeywordTeacher)


@hookimpl
def register_students(register):
    register("bow", BagOfWordsStudent)


@hookimpl
def register_metrics(register):
    register(
        "error_rate",
        Metric(
            error_rate,
            "fraction of evaluation texts misclassified",
            higher_is_better=False,
            task_kind=CLASSIFICATION,
        ),
    )
