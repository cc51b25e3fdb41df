"""qcompress.training.train_module: it learns a separable toy problem, reports its losses and
steps, and stops on a non-finite loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from qcompress.errors import NonFiniteLossError, QcompressError
from qcompress.interfaces import Objective, PluginConfig, TrainSettings
from qcompress.progress import ProgressReporter
from qcompress.training import check_finite, train_module


class LabelCE(Objective):
    Config = PluginConfig

    def __call__(self, student_logits, teacher_logits, labels):
        return F.cross_entropy(student_logits, labels)


class NaNObjective(Objective):
    Config = PluginConfig

    def __call__(self, student_logits, teacher_logits, labels):
        return student_logits.sum() * float("nan")


def blobs(rows: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs in 2-D, far apart: linearly separable."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(rows) % 2
    centres = torch.tensor([[-2.0, -2.0], [2.0, 2.0]])[labels]
    return centres + 0.5 * torch.randn(rows, 2, generator=generator), labels


def quiet() -> ProgressReporter:
    return ProgressReporter(enabled=False)


def test_train_module_reduces_the_loss_on_a_separable_problem() -> None:
    torch.manual_seed(0)
    inputs, labels = blobs()
    module = torch.nn.Linear(2, 2)
    teacher = torch.zeros(len(labels), 2)
    settings = TrainSettings(epochs=10, batch_size=32, lr=0.05)
    report = train_module(
        module, inputs, teacher, labels, LabelCE(PluginConfig()), settings, quiet()
    )
    assert len(report.loss_per_epoch) == 10
    assert report.steps == 10 * math.ceil(200 / 32)
    assert report.loss_per_epoch[-1] < report.loss_per_epoch[0] / 2
    assert all(math.isfinite(loss) for loss in report.loss_per_epoch)
    with torch.no_grad():
        accuracy = (module(inputs).argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.95
    assert not module.training  # left in evaluation mode


def test_train_module_is_reproducible_under_the_global_seed() -> None:
    inputs, labels = blobs()
    settings = TrainSettings(epochs=2, batch_size=16, lr=0.01)

    def run() -> list[float]:
        torch.manual_seed(123)
        module = torch.nn.Linear(2, 2)
        teacher = torch.zeros(len(labels), 2)
        objective = LabelCE(PluginConfig())
        report = train_module(module, inputs, teacher, labels, objective, settings, quiet())
        return report.loss_per_epoch

    assert run() == run()


def test_train_module_only_updates_trainable_parameters() -> None:
    inputs, labels = blobs(rows=40)
    module = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 2))
    module[0].requires_grad_(False)
    frozen = module[0].weight.clone()
    train_module(
        module,
        inputs,
        torch.zeros(40, 2),
        labels,
        LabelCE(PluginConfig()),
        TrainSettings(epochs=2, batch_size=8, lr=0.1),
        quiet(),
    )
    assert torch.equal(module[0].weight, frozen)


def test_a_nan_objective_raises_non_finite_loss_error() -> None:
    inputs, labels = blobs(rows=20)
    module = torch.nn.Linear(2, 2)
    before = module.weight.clone()
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, step 1"):
        train_module(
            module,
            inputs,
            torch.zeros(20, 2),
            labels,
            NaNObjective(PluginConfig()),
            TrainSettings(epochs=2, batch_size=8),
            quiet(),
        )
    assert torch.equal(module.weight, before)  # stopped before any update
    assert issubclass(NonFiniteLossError, QcompressError)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_check_finite_rejects_non_finite_values(value: float) -> None:
    with pytest.raises(NonFiniteLossError, match="somewhere"):
        check_finite(torch.tensor(value), "somewhere")


def test_check_finite_accepts_finite_values() -> None:
    check_finite(torch.tensor(3.5), "anywhere")


def test_the_loss_before_any_update_is_reported() -> None:
    torch.manual_seed(0)
    inputs, labels = blobs()
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():  # the whole data set's loss; the first batch's is close to it
        before = F.cross_entropy(module(inputs), labels).item()
    settings = TrainSettings(epochs=2, batch_size=200, lr=0.05)
    report = train_module(
        module, inputs, torch.zeros(len(labels), 2), labels, LabelCE(PluginConfig()), settings,
        quiet(),
    )  # fmt: skip
    assert report.initial_loss == pytest.approx(before, rel=1e-5)  # one batch: the same rows


@pytest.mark.parametrize(
    ("losses", "initial", "expected"),
    [
        ([0.7, 0.5, 0.4], 0.7, None),
        ([0.7, 0.9, 8.0], 0.7, "the last epoch's loss 8 is 11.4x the first's 0.7"),
        # exploded inside the first epoch, then fell: the epochs alone look like learning
        ([1.25e7, 1.4e4, 5.1e3], 0.7, "epoch 1's mean loss 1.25e+07 is 1.79e+07x the loss"),
        ([1.25e7, 1.4e4, 5.1e3], None, None),  # a trainer that did not say: no verdict
    ],
)
def test_divergence_is_read_from_the_losses(losses, initial, expected) -> None:
    from qcompress.interfaces import TrainReport
    from qcompress.runner import divergence

    verdict = divergence(TrainReport(losses, steps=3, initial_loss=initial))
    if expected is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict.startswith(expected)
