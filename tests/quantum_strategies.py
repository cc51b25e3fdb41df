"""Hypothesis strategies for random circuits, and the float32 error bound, shared by the
backend tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from qcompress.circuit import (
    GATES,
    Circuit,
    CircuitBuilder,
    constant,
    feature,
    pauli,
    probabilities,
    weight,
)


@st.composite
def angles(draw, n_inputs: int, n_weights: int):
    kind = draw(st.sampled_from(["constant", "input", "weight"]))
    scale = draw(st.sampled_from([1.0, 0.5, -2.0]))
    offset = draw(st.sampled_from([0.0, 0.3]))
    if kind == "constant":
        return constant(draw(st.floats(-3.2, 3.2)))
    if kind == "input":
        return feature(draw(st.integers(0, n_inputs - 1)), scale, offset)
    return weight(draw(st.integers(0, n_weights - 1)), scale, offset)


@st.composite
def circuits(draw, max_qubits: int = 4, max_gates: int = 10, gates=tuple(GATES),
             readout_paulis: str = "IXYZ") -> Circuit:
    """Random circuits; ``readout_paulis="IZ"`` keeps every readout diagonal."""
    n = draw(st.integers(2, max_qubits))
    n_inputs, n_weights = n, 4
    b = CircuitBuilder(n)
    for q in range(n):  # angle encoding, as every qcompress method starts
        b.rx(q, feature(q))
    for _ in range(draw(st.integers(1, max_gates))):
        name = draw(st.sampled_from(gates))
        spec = GATES[name]
        qubits = draw(st.permutations(range(n)))[: spec.qubits]
        b.add(name, qubits, [draw(angles(n_inputs, n_weights)) for _ in range(spec.angles)])
    # every weight index must exist for the backends: make sure the last one is used
    b.ry(0, weight(n_weights - 1))
    readouts = [pauli({q: "Z"}) for q in range(n)]
    paulis = draw(st.lists(st.sampled_from(readout_paulis), min_size=n, max_size=n))
    if set(paulis) != {"I"}:
        readouts.append(pauli("".join(paulis)))
    if draw(st.booleans()):
        readouts.append(probabilities(draw(st.permutations(range(n)))[:2]))
    return b.build(readouts, n_inputs=n_inputs)


def float32_bound(circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """How far a float32 (complex64) expectation may be from the exact one, per sample
    ``[B, 1]``: every gate rounds each amplitude with a relative error of a few float32
    epsilons, and rounding an angle to float32 moves it by up to |angle| * eps; an expectation
    moves by at most twice the state's error. A bound, not one machine's figure: SIMD width and
    fused multiply-adds change the rounding between CPUs (an Intel Xeon saw 2.2e-5 where this
    AMD machine sees 2e-7)."""
    eps = torch.finfo(torch.float32).eps
    angles = circuit.angles(inputs.double(), weights.double()).abs().sum(-1, keepdim=True)
    return 2 * eps * (4 * len(circuit.gates) + angles)


def assert_float32_close(got: torch.Tensor, exact: torch.Tensor, bound: torch.Tensor) -> None:
    """Expectations within the per-sample bound."""
    error = (got.double() - exact.double()).abs()
    assert (error <= bound).all(), (error.max().item(), bound.min().item())


def assert_float32_gradient_close(got: torch.Tensor, exact: torch.Tensor, bound: torch.Tensor
                                  ) -> None:
    """Gradients (sums over samples and readouts) within the per-gate bound, relatively."""
    error = (got.double() - exact.double()).norm() / exact.double().norm().clamp_min(1e-30)
    assert error <= bound.max(), (error.item(), bound.max().item())
