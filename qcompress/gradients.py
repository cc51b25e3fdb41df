"""Gradients for backends that can only evaluate a circuit: the parameter-shift rule.

For a gate ``exp(-i t G)`` whose generator ``G`` has eigenvalues +-1/2 (RX, RY, RZ, RZZ, each
angle of U3), ``d<O>/dt = (<O>(t + pi/2) - <O>(t - pi/2)) / 2`` exactly, also for sampled
expectations (where it is an unbiased estimate). Controlled rotations have eigenvalues
{0, +-1/2} and need the four-term rule (Anderson et al. 2022; Wierichs et al. 2022).

The rule is applied per *angle occurrence*, so a weight used by several gates gets the sum of
its occurrences' derivatives through autograd. All shifted circuits of one backward pass go to
the backend as one batch (one job of its simulator).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from qcompress.circuit import Circuit

Evaluate = Callable[[Circuit, torch.Tensor], torch.Tensor]

_C1 = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_C2 = (math.sqrt(2) - 1) / (4 * math.sqrt(2))
# shift -> coefficient, per rule
SHIFT_RULES: dict[str, tuple[tuple[float, float], ...]] = {
    "two-term": ((math.pi / 2, 0.5), (-math.pi / 2, -0.5)),
    "four-term": (
        (math.pi / 2, _C1),
        (-math.pi / 2, -_C1),
        (3 * math.pi / 2, -_C2),
        (-3 * math.pi / 2, _C2),
    ),
}


class ExactParameterShiftWarning(UserWarning):
    """Parameter shift on an exact simulator: correct, but 2 to 4 evaluations per angle where
    backprop or the adjoint method on the torch backend gives the same gradient in one."""


def exact_training_advice(backend: str) -> str:
    """Why training through an exact simulator that only evaluates is a poor choice."""
    return (
        f"training through the exact {backend} simulator takes parameter-shift gradients "
        "(2-4 evaluations per angle); the torch backend gives the same gradients by adjoint, "
        f"far faster; use {backend} with shots to cost training as hardware would"
    )


def parameter_shift(
    evaluate: Evaluate,
    circuit: Circuit,
    angles: torch.Tensor,
    *,
    columns: torch.Tensor | None = None,
    exact: bool = False,
) -> torch.Tensor:
    """``evaluate(circuit, angles)`` with gradients by the parameter-shift rule.

    ``evaluate`` maps bound angles ``[B, n_angles]`` to expectations ``[B, m]`` without
    gradients. ``columns`` (bool ``[n_angles]``) limits the shifts to angles that need a
    gradient (default: every angle that is not a constant). ``exact`` warns, at the first
    backward pass, that parameter shift is being paid for on an exact simulator.
    """
    if columns is None:
        columns = torch.tensor(
            [a.source != "constant" for g in circuit.gates for a in g.angles], dtype=torch.bool
        )
    return _ParameterShift.apply(evaluate, circuit, angles, columns, exact)


def _shift_plan(circuit: Circuit, columns: torch.Tensor) -> list[tuple[int, float, float]]:
    """(column, shift, coefficient) for every shifted evaluation."""
    plan, col = [], 0
    for gate in circuit.gates:
        for _ in gate.angles:
            rule = gate.spec.shift_rule
            if columns[col] and rule is not None:  # every gate with an angle has a rule
                plan += [(col, s, c) for s, c in SHIFT_RULES[rule]]
            col += 1
    return plan


class _ParameterShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, evaluate, circuit, angles, columns, exact):
        ctx.evaluate, ctx.circuit, ctx.columns, ctx.exact = evaluate, circuit, columns, exact
        ctx.save_for_backward(angles)
        with torch.no_grad():
            return evaluate(circuit, angles.detach())

    @staticmethod
    def backward(ctx, grad_out):
        (angles,) = ctx.saved_tensors
        if ctx.exact:
            warnings.warn(
                "parameter-shift gradients on an exact simulator: each step evaluates the "
                "circuit 2-4 times per angle; the torch backend's adjoint or backprop "
                "gradient is identical and far cheaper",
                ExactParameterShiftWarning,
                stacklevel=2,
            )
        plan = _shift_plan(ctx.circuit, ctx.columns)
        grad = torch.zeros_like(angles)
        if not plan:
            return None, None, grad, None, None
        batch = angles.shape[0]
        shifted = angles.detach().repeat(len(plan), 1)
        for i, (col, shift, _) in enumerate(plan):
            shifted[i * batch : (i + 1) * batch, col] += shift
        with torch.no_grad():
            values = ctx.evaluate(ctx.circuit, shifted).reshape(len(plan), batch, -1)
        values = values.to(grad_out.dtype)
        # d loss / d angle = sum_m grad_out[b, m] * sum_shifts coeff * value[shift, b, m]
        weighted = (values * grad_out[None]).sum(-1)  # [n_shifts, B]
        for i, (col, _, coeff) in enumerate(plan):
            grad[:, col] += coeff * weighted[i].to(grad.dtype)
        return None, None, grad, None, None
