"""Hypothesis strategies for random circuits, shared by the backend tests."""

from __future__ import annotations

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
