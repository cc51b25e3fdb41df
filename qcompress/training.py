"""Training loops shared by students: minibatch training of a torch module on fixed inputs
(e.g. cached frozen-encoder features) against an objective."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from qcompress.errors import NonFiniteLossError
from qcompress.interfaces import Objective, TrainReport, TrainSettings
from qcompress.progress import ProgressReporter


def length_buckets(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Batches of row indices of similar text length (little padding, so little wasted work),
    shortest first."""
    order = sorted(range(len(texts)), key=lambda row: len(texts[row]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def check_finite(loss: torch.Tensor, where: str) -> None:
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss became {value} at {where}")


def train_module(
    module: torch.nn.Module,
    inputs: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    settings: TrainSettings,
    progress: ProgressReporter,
    description: str = "training",
) -> TrainReport:
    """Adam over shuffled minibatches for ``settings.epochs`` epochs; the shuffling draws from
    torch's global generator, which the runner seeds per cell."""
    device = next(module.parameters()).device
    optimizer = torch.optim.Adam(
        [p for p in module.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    rows = len(inputs)
    batches_per_epoch = math.ceil(rows / settings.batch_size)
    losses: list[float] = []
    module.train()
    with progress.task(description, total=settings.epochs * batches_per_epoch) as advance:
        for epoch in range(settings.epochs):
            order = torch.randperm(rows)
            total = 0.0
            for step, start in enumerate(range(0, rows, settings.batch_size)):
                batch = order[start : start + settings.batch_size]
                logits = module(inputs[batch].to(device))
                loss = objective(logits, teacher_logits[batch].to(device), labels[batch].to(device))
                check_finite(loss, f"epoch {epoch + 1}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                advance()
            losses.append(round(total / rows, 6))
    module.eval()
    return TrainReport(loss_per_epoch=losses, steps=settings.epochs * batches_per_epoch)
