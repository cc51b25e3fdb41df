"""Judge-free measures of how much a classifier student became its teacher (after Lee et al.
2025, "Distillation Quantification for LLMs"; docs/methods.md §4), beside ``agreement`` and ``kl``:

- ``js``: Jensen-Shannon divergence of the teacher's and the student's output distributions
  (nats; symmetric and bounded by ln 2, unlike KL);
- ``ece``: the model's expected calibration error (15 equal-width confidence bins), for
  students and the teacher alike;
- ``ece_gap``: student ECE minus teacher ECE on the same rows (> 0: less calibrated than its
  teacher).
"""

from __future__ import annotations

import torch

from qcompress import hookimpl
from qcompress.interfaces import Metric, Predictions
from qcompress_plugins.kinds import CLASSIFICATION

ECE_BINS = 15


def js_divergence(predictions: Predictions) -> float | None:
    if predictions.teacher_logits is None:
        return None
    p = predictions.teacher_logits.float().softmax(-1)
    q = predictions.logits.float().softmax(-1)
    m = (p + q) / 2

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (a.log() - b.log()), torch.zeros_like(a)).sum(-1)

    return ((kl(p, m) + kl(q, m)) / 2).mean().item()


def calibration_error(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over confidence bins of (share of rows) x |accuracy - mean confidence|."""
    confidence, predicted = logits.float().softmax(-1).max(-1)
    correct = (predicted == labels).float()
    # Bin b holds confidences in (b/B, (b+1)/B]; a confidence of exactly 0 cannot occur.
    bins = (confidence * ECE_BINS).ceil().long().clamp(1, ECE_BINS) - 1
    total = 0.0
    for b in bins.unique().tolist():
        members = bins == b
        gap = (correct[members].mean() - confidence[members].mean()).abs()
        total += members.float().mean().item() * gap.item()
    return total


def ece(predictions: Predictions) -> float:
    return calibration_error(predictions.logits, predictions.labels)


def ece_gap(predictions: Predictions) -> float | None:
    if predictions.teacher_logits is None:
        return None
    teacher = calibration_error(predictions.teacher_logits, predictions.labels)
    return ece(predictions) - teacher


@hookimpl
def register_metrics(register):
    register(
        "js",
        Metric(js_divergence, "Jensen-Shannon divergence from the teacher's outputs, nats",
               higher_is_better=False, task_kind=CLASSIFICATION),
    )  # fmt: skip
    register(
        "ece",
        Metric(ece, "expected calibration error (15 bins)", higher_is_better=False,
               task_kind=CLASSIFICATION),
    )
    register(
        "ece_gap",
        Metric(ece_gap, "student ECE minus teacher ECE (> 0: less calibrated)",
               higher_is_better=False, task_kind=CLASSIFICATION),
    )  # fmt: skip
