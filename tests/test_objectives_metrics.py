"""The first-party objectives (Hinton KD, cross-entropy) and metrics (accuracy, macro-F1,
agreement, KL) against values computed by hand with the math module."""

from __future__ import annotations

import math

import pytest
import torch

from qcompress.interfaces import Predictions
from qcompress.plugins import load_registry
from qcompress_plugins.metrics.classification import (
    accuracy,
    agreement,
    macro_f1,
    teacher_kl,
    weighted_f1,
)
from qcompress_plugins.objectives.kd import CrossEntropy, HintonKD, LogitMSE


def softmax(logits: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(value / temperature) for value in logits]
    return [value / sum(exps) for value in exps]


def kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) in nats."""
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))


STUDENT = [[2.0, 0.0], [-1.0, 0.5]]
TEACHER = [[0.0, 1.0], [1.5, -0.5]]
LABELS = [0, 1]


def hand_ce(student: list[list[float]], labels: list[int]) -> float:
    return sum(-math.log(softmax(row)[y]) for row, y in zip(student, labels, strict=True)) / len(
        labels
    )


def hand_kl(teacher: list[list[float]], student: list[list[float]], t: float = 1.0) -> float:
    pairs = zip(teacher, student, strict=True)
    return sum(kl(softmax(tr, t), softmax(sr, t)) for tr, sr in pairs) / len(teacher)


def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)


# ---------------------------------------------------------------------------------------------
# Objectives


def test_kd_matches_the_hand_computation() -> None:
    objective = HintonKD(HintonKD.Config(temperature=2.0, alpha=0.5))
    loss = objective(*tensors())
    expected = 0.5 * hand_ce(STUDENT, LABELS) + 0.5 * 2.0**2 * hand_kl(TEACHER, STUDENT, 2.0)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_kd_numbers_for_one_row() -> None:
    # s = [2, 0], t = [0, 1], label 0, T = 2, alpha = 0.5, written out:
    ce = math.log(1 + math.exp(-2))
    p_t = [1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5))]  # softmax([0, 0.5])
    p_s = [1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1))]  # softmax([1, 0])
    soft = p_t[0] * math.log(p_t[0] / p_s[0]) + p_t[1] * math.log(p_t[1] / p_s[1])
    assert ce == pytest.approx(0.126928, abs=1e-6)
    assert soft == pytest.approx(0.272874, abs=1e-6)
    objective = HintonKD(HintonKD.Config(temperature=2.0, alpha=0.5))
    loss = objective(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * 4 * soft, rel=1e-5)  # 0.609211


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kd_endpoints_of_alpha(temperature: float) -> None:
    hard = HintonKD(HintonKD.Config(temperature=temperature, alpha=0.0))(*tensors())
    soft = HintonKD(HintonKD.Config(temperature=temperature, alpha=1.0))(*tensors())
    assert hard.item() == pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-5)
    expected_soft = temperature**2 * hand_kl(TEACHER, STUDENT, temperature)
    assert soft.item() == pytest.approx(expected_soft, rel=1e-5)


def test_kd_soft_term_vanishes_when_student_copies_teacher() -> None:
    teacher = torch.tensor(TEACHER)
    loss = HintonKD(HintonKD.Config(alpha=1.0))(teacher.clone(), teacher, torch.tensor(LABELS))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_kd_gradient_flows_to_the_student() -> None:
    student = torch.tensor(STUDENT, requires_grad=True)
    HintonKD(HintonKD.Config())(student, torch.tensor(TEACHER), torch.tensor(LABELS)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_ce_matches_the_hand_computation_and_ignores_the_teacher() -> None:
    student, teacher, labels = tensors()
    objective = CrossEntropy(CrossEntropy.Config())
    assert objective(student, teacher, labels).item() == pytest.approx(
        hand_ce(STUDENT, LABELS), rel=1e-6
    )
    assert objective(student, torch.zeros_like(teacher), labels).item() == pytest.approx(
        objective(student, teacher, labels).item()
    )


def test_ce_label_smoothing() -> None:
    eps = 0.2
    expected = 0.0
    for row, y in zip(STUDENT, LABELS, strict=True):
        logp = [math.log(p) for p in softmax(row)]
        expected += -(1 - eps) * logp[y] - eps * sum(logp) / len(logp)
    expected /= len(LABELS)
    objective = CrossEntropy(CrossEntropy.Config(label_smoothing=eps))
    assert objective(*tensors()).item() == pytest.approx(expected, rel=1e-5)


def test_logit_mse_matches_the_hand_computation() -> None:
    alpha = 0.3
    expected = 0.0
    for s_row, t_row, y in zip(STUDENT, TEACHER, LABELS, strict=True):
        ce = -math.log(softmax(s_row)[y])
        mse = sum((a - b) ** 2 for a, b in zip(s_row, t_row, strict=True)) / len(s_row)
        expected += (1 - alpha) * ce + alpha * mse
    expected /= len(LABELS)
    objective = LogitMSE(LogitMSE.Config(alpha=alpha))
    assert objective(*tensors()).item() == pytest.approx(expected, rel=1e-5)
    # A student that copies the teacher's logits pays only the label term.
    _, teacher, labels = tensors()
    copy = objective(teacher, teacher, labels).item()
    ce_only = CrossEntropy(CrossEntropy.Config())(teacher, teacher, labels).item()
    assert copy == pytest.approx((1 - alpha) * ce_only, rel=1e-6)


def test_objectives_are_registered() -> None:
    registry = load_registry()
    assert registry.get("objective", "mse") is LogitMSE
    assert registry.get("objective", "kd") is HintonKD
    assert registry.get("objective", "ce") is CrossEntropy


# ---------------------------------------------------------------------------------------------
# Metrics


def predictions(
    predicted: list[int], labels: list[int], teacher: list[int] | None = None, classes: int = 2
) -> Predictions:
    """Logits whose argmax is ``predicted`` (and the teacher's, ``teacher``)."""

    def one_hot(rows: list[int]) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor(rows), classes).float()

    return Predictions(
        one_hot(predicted), torch.tensor(labels), None if teacher is None else one_hot(teacher)
    )


def test_accuracy() -> None:
    assert accuracy(predictions([0, 1, 1, 1], [0, 0, 1, 1])) == pytest.approx(0.75)
    assert accuracy(predictions([1, 0], [1, 0])) == 1.0
    assert accuracy(predictions([1, 1, 0], [0, 0, 1])) == 0.0


def test_macro_f1_hand_values() -> None:
    # class 0: tp 1, predicted 1, actual 2 -> 2/3; class 1: tp 2, predicted 3, actual 2 -> 4/5
    assert macro_f1(predictions([0, 1, 1, 1], [0, 0, 1, 1])) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_macro_f1_class_never_predicted_scores_zero() -> None:
    # class 0: 2*2/(4+2) = 2/3; class 1 never predicted: 0
    assert macro_f1(predictions([0, 0, 0, 0], [0, 0, 1, 1])) == pytest.approx(1 / 3)


def test_macro_f1_class_only_predicted_counts_too() -> None:
    # class 0: 2*2/(2+3) = 4/5; class 1 predicted once, never true: 0
    assert macro_f1(predictions([0, 1, 0], [0, 0, 0])) == pytest.approx(0.4)


def test_macro_f1_leaves_out_classes_absent_from_labels_and_predictions() -> None:
    perfect = predictions([0, 2, 2, 0], [0, 2, 2, 0], classes=4)
    assert macro_f1(perfect) == pytest.approx(1.0)


def test_weighted_f1_hand_values() -> None:
    # class 0: F1 2/3, 2 of 4 labels; class 1: F1 4/5, 2 of 4 labels
    assert weighted_f1(predictions([0, 1, 1, 1], [0, 0, 1, 1])) == pytest.approx(
        (2 * 2 / 3 + 2 * 4 / 5) / 4)
    # class 0 (3 labels): 2*2/(2+3) = 4/5; class 1 (1 label): 2*1/(2+1) = 2/3
    assert weighted_f1(predictions([0, 1, 0, 1], [0, 0, 0, 1])) == pytest.approx(
        (3 * 4 / 5 + 1 * 2 / 3) / 4)


def test_agreement_against_the_teacher() -> None:
    assert agreement(predictions([0, 1, 1, 0], [0, 0, 0, 0], teacher=[0, 1, 0, 1])) == 0.5


def test_kl_matches_the_hand_computation() -> None:
    student, teacher, labels = tensors()
    value = teacher_kl(Predictions(student, labels, teacher))
    assert value == pytest.approx(hand_kl(TEACHER, STUDENT), rel=1e-5)
    assert teacher_kl(Predictions(teacher, labels, teacher)) == pytest.approx(0.0, abs=1e-6)


def test_teacher_row_has_no_teacher_metrics() -> None:
    student, _, labels = tensors()
    own = Predictions(student, labels, None)
    assert agreement(own) is None
    assert teacher_kl(own) is None
    assert accuracy(own) == 1.0  # label-based metrics still apply


# ---------------------------------------------------------------------------------------------
# Distillation quantification


def test_js_matches_the_hand_computation() -> None:
    from qcompress_plugins.metrics.distillation import js_divergence

    student, teacher, labels = tensors()
    expected = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER, strict=True):
        p, q = softmax(t_row), softmax(s_row)
        m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
        expected += (kl(p, m) + kl(q, m)) / 2
    value = js_divergence(Predictions(student, labels, teacher))
    assert value == pytest.approx(expected / 2, rel=1e-5)
    assert js_divergence(Predictions(teacher, labels, teacher)) == pytest.approx(0, abs=1e-7)
    assert js_divergence(Predictions(student, labels, None)) is None


def test_ece_matches_the_hand_computation() -> None:
    from qcompress_plugins.metrics.distillation import ece, ece_gap

    # Confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins (13/15, 14/15] and (8/15, 9/15].
    logits = torch.tensor([[math.log(9.0), 0.0], [math.log(9.0), 0.0], [0.0, math.log(1.5)]])
    labels = torch.tensor([0, 1, 1])
    expected = (2 / 3) * abs(0.5 - 0.9) + (1 / 3) * abs(1.0 - 0.6)
    assert ece(Predictions(logits, labels, None)) == pytest.approx(expected, rel=1e-5)
    teacher = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.0, 5.0]])  # right and confident
    teacher_ece = 1 - torch.tensor(5.0).exp().div(1 + torch.tensor(5.0).exp()).item()
    gap = ece_gap(Predictions(logits, labels, teacher))
    assert gap == pytest.approx(expected - teacher_ece, rel=1e-4)
    assert ece_gap(Predictions(logits, labels, None)) is None
