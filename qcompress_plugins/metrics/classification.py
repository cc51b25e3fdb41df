"""Prediction metrics: accuracy and macro-F1 against the labels; top-1 agreement and
KL(teacher || student) against the teacher (the judge-free distillation measures)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qcompress import hookimpl
from qcompress.interfaces import Metric, Predictions
from qcompress_plugins.kinds import CLASSIFICATION


def accuracy(predictions: Predictions) -> float:
    return (predictions.logits.argmax(-1) == predictions.labels).float().mean().item()


def macro_f1(predictions: Predictions) -> float:
    """F1 per class, averaged with equal weight (classes absent from both labels and
    predictions are left out, as scikit-learn does with zero_division handling)."""
    predicted = predictions.logits.argmax(-1)
    labels = predictions.labels
    scores = []
    for label in torch.unique(torch.cat([labels, predicted])).tolist():
        true_positive = ((predicted == label) & (labels == label)).sum().item()
        predicted_count = (predicted == label).sum().item()
        actual_count = (labels == label).sum().item()
        scores.append(2 * true_positive / (predicted_count + actual_count))
    return sum(scores) / len(scores)


def weighted_f1(predictions: Predictions) -> float:
    """F1 per class weighted by the class's share of the labels (scikit-learn's
    ``average="weighted"``; QD-LLM reports it): classes absent from the labels weigh 0."""
    predicted = predictions.logits.argmax(-1)
    labels = predictions.labels
    total = 0.0
    for label in torch.unique(labels).tolist():
        true_positive = ((predicted == label) & (labels == label)).sum().item()
        predicted_count = (predicted == label).sum().item()
        actual_count = (labels == label).sum().item()
        total += actual_count * 2 * true_positive / (predicted_count + actual_count)
    return total / len(labels)


def agreement(predictions: Predictions) -> float | None:
    """How often the student's top-1 class is the teacher's."""
    if predictions.teacher_logits is None:
        return None
    same = predictions.logits.argmax(-1) == predictions.teacher_logits.argmax(-1)
    return same.float().mean().item()


def teacher_kl(predictions: Predictions) -> float | None:
    """KL(teacher || student) of the output distributions (temperature 1), in nats."""
    if predictions.teacher_logits is None:
        return None
    return F.kl_div(
        F.log_softmax(predictions.logits.float(), -1),
        F.log_softmax(predictions.teacher_logits.float(), -1),
        reduction="batchmean",
        log_target=True,
    ).item()


@hookimpl
def register_metrics(register):
    def metric(compute, description, higher_is_better=True):
        return Metric(compute, description, higher_is_better, task_kind=CLASSIFICATION)

    register("accuracy", metric(accuracy, "fraction of evaluation texts classified correctly"))
    register("macro_f1", metric(macro_f1, "F1 averaged over classes with equal weight"))
    register("weighted_f1", metric(weighted_f1, "F1 averaged over classes by label share"))
    register("agreement", metric(agreement, "top-1 agreement with the teacher"))
    register("kl", metric(teacher_kl, "KL(teacher || student) in nats", higher_is_better=False))
