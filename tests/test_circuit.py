"""The backend-neutral circuit: building, validation, binding, accounting, QASM export."""

from __future__ import annotations

import math

import pytest
import torch

from qcompress.circuit import (
    CircuitBuilder,
    CircuitError,
    diagonal_readouts,
    feature,
    pauli,
    probabilities,
    weight,
    z,
)
from qcompress.export import to_qasm


def small_circuit():
    b = CircuitBuilder(3)
    for q in range(3):
        b.rx(q, feature(q, scale=0.5, offset=0.1))
    b.ry(0, b.new_weight()).rzz(1, 2, b.new_weight()).cnot(0, 1).crz(2, 0, weight(0, scale=2.0))
    return b.build([z(0), pauli("XZI"), probabilities([2, 1])])


def test_counts_and_description():
    c = small_circuit()
    assert (c.n_qubits, c.n_inputs, c.n_weights, c.n_angles) == (3, 3, 2, 6)
    assert c.n_outputs == 1 + 1 + 4
    assert c.describe() == {"qubits": 3, "circuit_parameters": 2, "inputs": 3, "gates": 7,
                            "two_qubit_gates": 3, "depth": 4, "outputs": 6}


def test_angles_apply_scale_offset_and_constants():
    c = small_circuit()
    x = torch.tensor([[1.0, 2.0, 3.0]])
    w = torch.tensor([0.7, -0.2])
    a = c.angles(x, w)[0].tolist()
    assert a == pytest.approx([0.6, 1.1, 1.6, 0.7, -0.2, 1.4])


def test_angles_are_differentiable():
    c = small_circuit()
    w = torch.tensor([0.7, -0.2], requires_grad=True)
    c.angles(torch.zeros(2, 3), w).sum().backward()
    assert w.grad.tolist() == [2 * (1 + 2), 2]  # w0 in ry and 2*w0 in crz, for 2 rows


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: b.rx(3, 0.1), "qubit 3 is out of range"),
        (lambda b: b.cnot(1, 1), "must be distinct"),
        (lambda b: b.add("toffoli", [0, 1, 2]), "unknown gate 'toffoli'"),
        (lambda b: b.add("rx", [0], []), "expected 1 angle"),
        (lambda b: b.rx(0, float("nan")), "NaN or infinite"),
        (lambda b: b.rx(0, weight(-1)), "non-negative"),
    ],
)
def test_bad_gates_are_refused_by_name(build, message):
    with pytest.raises(CircuitError, match=message):
        build(CircuitBuilder(3))


def test_bad_readouts_and_widths():
    b = CircuitBuilder(2).rx(0, feature(0))
    with pytest.raises(CircuitError, match="readout"):
        b.build([z(2)])
    with pytest.raises(CircuitError, match="at least one readout"):
        b.build([])
    with pytest.raises(CircuitError, match="unknown Pauli"):
        pauli("ZQ")
    c = b.build([z(0)])
    with pytest.raises(CircuitError, match=r"expected a \[batch, 1\] tensor"):
        c.angles(torch.zeros(4, 2), torch.zeros(0))
    with pytest.raises(CircuitError, match="expected a vector of 0 values"):
        c.angles(torch.zeros(4, 1), torch.zeros(3))


def test_nan_inputs_name_the_gate():
    c = small_circuit()
    x = torch.tensor([[1.0, float("nan"), 3.0]])
    with pytest.raises(CircuitError, match=r"gate rx\(0.5\*x\[1\]\+0.1\) q\[1\]: input feature 1"):
        c.angles(x, torch.zeros(2))
    with pytest.raises(CircuitError, match=r"gate rzz\(w\[1\]\) q\[1, 2\]: weight 1"):
        c.angles(torch.zeros(1, 3), torch.tensor([0.0, math.inf]))


def test_diagonal_readouts_from_probabilities():
    c = CircuitBuilder(2).rx(0, 0.0).build([z(0), z(1), pauli("ZZ"), probabilities([1, 0])])
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # |00>, |01>, |10>, |11> (qubit 0 first)
    out = diagonal_readouts(c, probs)[0].tolist()
    assert out == pytest.approx([0.3 - 0.7, 0.4 - 0.6, 0.1 - 0.2 - 0.3 + 0.4, 0.1, 0.3, 0.2, 0.4])


def test_qasm2_and_qasm3_text():
    c = small_circuit()
    text2 = to_qasm(c, [1, 2, 3], [0.5, 0.25])
    assert text2.startswith('OPENQASM 2.0;\ninclude "qelib1.inc";\ngate rzz(theta) a, b')
    assert "qreg q[3];\ncreg c[3];" in text2
    assert "rzz(0.25) q[1], q[2];" in text2 and "crz(1.0) q[2], q[0];" in text2
    assert text2.rstrip().endswith("measure q -> c;")
    text3 = to_qasm(c, [1, 2, 3], [0.5, 0.25], version=3, measure=False)
    assert "qubit[3] q;" in text3 and "gate rzz(theta) a, b" in text3
    with pytest.raises(CircuitError, match="version must be 2 or 3"):
        to_qasm(c, [1, 2, 3], [0.5, 0.25], version=4)
