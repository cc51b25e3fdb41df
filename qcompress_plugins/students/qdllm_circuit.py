"""The QD-LLM variational circuit, gate for gate as its authors released it (docs/methods.md §1).

At 11 qubits and 2 layers: RX angle encoding, then per layer 30 RY, 9 RZZ and 33 RZ trainable
rotations (72 parameters) and a fixed CNOT pattern; <Z_i> on every qubit. 144 parameters.
"""

from __future__ import annotations

from qcompress.circuit import Circuit, CircuitBuilder, feature, z


def qdllm_circuit(n_qubits: int = 11, layers: int = 2) -> Circuit:
    if n_qubits < 3:
        raise ValueError(f"the QD-LLM ansatz needs at least 3 qubits, got {n_qubits}")
    b = CircuitBuilder(n_qubits)
    for q in range(n_qubits):
        b.rx(q, feature(q))
    for _ in range(layers):
        for j in range(n_qubits - 1):
            for _ in range(3):
                b.ry(j, b.new_weight())
            if j <= n_qubits - 3:
                b.rzz(j + 1, j + 2, b.new_weight())
        for j in range(n_qubits):
            for _ in range(3):
                b.rz(j, b.new_weight())
        b.cnot(n_qubits - 1, 0)
        for k in range(1, n_qubits - 2):
            b.cnot(k, k + 1)
            b.cnot(k, k - 1)
    return b.build([z(q) for q in range(n_qubits)])
