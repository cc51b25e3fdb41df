"""The one training loop every student and teacher uses, and the batch orders it is given.

:func:`train_loop` runs epochs of minibatches: an optimizer (Adam or AdamW), optionally a
warm-up then linear decay of the learning rate, a check that every loss is finite, a progress
bar, and the mean loss of each epoch. What differs between methods is passed in: the batches of
row indices of an epoch (:func:`shuffled_rows`, :func:`shuffled_buckets`...) and the loss of
one batch. :func:`train_module` is the loop for a module on fixed inputs (cached features).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from qcompress.errors import NonFiniteLossError
from qcompress.interfaces import Objective, TrainReport, TrainSettings
from qcompress.progress import ProgressReporter

Batches = Callable[[], Sequence[Sequence[int]]]


@dataclass(frozen=True)
class Optimization:
    """How parameters are updated. ``warmup_fraction``: the share of all steps over which the
    learning rate rises linearly, after which it decays linearly towards zero at the last
    step; ``None`` keeps it constant."""

    lr: float
    weight_decay: float = 0.0
    optimizer: Literal["adam", "adamw"] = "adam"
    warmup_fraction: float | None = None

    def build(
        self, parameters: list[torch.nn.Parameter], total_steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        optimizer = kind(parameters, lr=self.lr, weight_decay=self.weight_decay)
        if self.warmup_fraction is None:
            return optimizer, None
        warmup = max(1, int(self.warmup_fraction * total_steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min((step + 1) / warmup, (total_steps - step) / total_steps),
        )
        return optimizer, schedule


def train_loop(
    modules: Sequence[torch.nn.Module],
    parameters: Iterable[torch.nn.Parameter],
    epochs: int,
    steps_per_epoch: int,
    batches: Batches,
    batch_loss: Callable[[Sequence[int]], torch.Tensor],
    optimization: Optimization,
    progress: ProgressReporter,
    description: str = "training",
    mean_over: Literal["rows", "batches"] = "rows",
) -> TrainReport:
    """Train for ``epochs``: each epoch takes its batches from ``batches()`` (called at the
    epoch's start, so shuffles draw from their generators in a fixed order) and steps on
    ``batch_loss(rows)``. The epoch's loss is the mean over rows (each batch weighted by its
    size) or over batches. ``modules`` are put in training mode, and back in eval mode after."""
    total_steps = epochs * steps_per_epoch
    optimizer, schedule = optimization.build(list(parameters), total_steps)
    losses: list[float] = []
    initial_loss: float | None = None
    for module in modules:
        module.train()
    with progress.task(description, total=total_steps) as advance:
        for epoch in range(epochs):
            total, rows_seen, count = 0.0, 0, 0
            for step, rows in enumerate(batches()):
                loss = batch_loss(rows)
                check_finite(loss, f"epoch {epoch + 1}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                value = loss.item()
                if initial_loss is None:  # computed before the first update
                    initial_loss = value
                total += value * (len(rows) if mean_over == "rows" else 1)
                rows_seen += len(rows)
                count += 1
                advance()
            losses.append(round(total / max(rows_seen if mean_over == "rows" else count, 1), 6))
    for module in modules:
        module.eval()
    return TrainReport(loss_per_epoch=losses, steps=total_steps, initial_loss=initial_loss)


def check_finite(loss: torch.Tensor, where: str) -> None:
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss became {value} at {where}")


# ---------------------------------------------------------------------------------------------
# Batch orders


def length_buckets(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Batches of row indices of similar text length (little padding, so little wasted work),
    shortest first."""
    order = sorted(range(len(texts)), key=lambda row: len(texts[row]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def shuffled_rows(rows: int, batch_size: int) -> Batches:
    """Each epoch, all rows in a new random order (torch's global generator, which the runner
    seeds per cell), cut into batches."""

    def epoch() -> list[list[int]]:
        order = torch.randperm(rows).tolist()
        return [order[start : start + batch_size] for start in range(0, rows, batch_size)]

    return epoch


def shuffled_buckets(texts: Sequence[str], batch_size: int) -> Batches:
    """Each epoch, the length buckets in a new random order (torch's global generator)."""
    buckets = length_buckets(texts, batch_size)

    def epoch() -> list[list[int]]:
        return [buckets[index] for index in torch.randperm(len(buckets)).tolist()]

    return epoch


# ---------------------------------------------------------------------------------------------
# A module on fixed inputs


def train_module(
    module: torch.nn.Module,
    inputs: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    objective: Objective,
    settings: TrainSettings,
    progress: ProgressReporter,
    description: str = "training",
) -> TrainReport:
    """Adam over shuffled minibatches of fixed inputs (e.g. cached frozen-encoder features)
    for ``settings.epochs`` epochs, against ``objective``."""
    device = next(module.parameters()).device

    def batch_loss(rows: Sequence[int]) -> torch.Tensor:
        index = torch.as_tensor(rows)
        targets = None if teacher_logits is None else teacher_logits[index].to(device)
        return objective(module(inputs[index].to(device)), targets, labels[index].to(device))

    return train_loop(
        [module],
        [p for p in module.parameters() if p.requires_grad],
        settings.epochs,
        math.ceil(len(inputs) / settings.batch_size),
        shuffled_rows(len(inputs), settings.batch_size),
        batch_loss,
        Optimization(lr=settings.lr, weight_decay=settings.weight_decay),
        progress,
        description,
    )
