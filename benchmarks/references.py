"""The same circuit in the tools researchers compare against: PennyLane (default.qubit with
backprop, lightning.qubit with adjoint) and qiskit-machine-learning (EstimatorQNN +
TorchConnector). Each returns a torch callable ``(inputs [B, k], weights [P]) -> [B, m]``
whose gradients flow back to ``weights``. Install with ``pip install 'qcompress[benchmark]'``.
"""

from __future__ import annotations

import torch

from qcompress.circuit import Angle, Circuit, PauliString
from qcompress.export import qiskit_observable, to_qiskit

PENNYLANE_GATES = {"rx": "RX", "ry": "RY", "rz": "RZ", "u3": "U3", "h": "Hadamard",
                   "x": "PauliX", "cnot": "CNOT", "cz": "CZ", "rzz": "IsingZZ",
                   "crx": "CRX", "cry": "CRY", "crz": "CRZ"}


def pennylane_model(circuit: Circuit, device: str = "default.qubit", diff_method="backprop"):
    import pennylane as qml

    dev = qml.device(device, wires=circuit.n_qubits)

    def value(a: Angle, x, w):
        if a.source == "constant":
            return a.offset
        source = x[..., a.index] if a.source == "input" else w[a.index]
        return a.scale * source + a.offset

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def qnode(x, w):
        for gate in circuit.gates:
            op = getattr(qml, PENNYLANE_GATES[gate.name])
            op(*[value(a, x, w) for a in gate.angles], wires=list(gate.qubits))
        out = []
        for r in circuit.readouts:
            assert isinstance(r, PauliString)
            obs = [getattr(qml, f"Pauli{p}")(q) for q, p in r.paulis]
            out.append(qml.expval(qml.prod(*obs) if len(obs) > 1 else obs[0]))
        return out

    def run(inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if device == "default.qubit":  # parameter broadcasting: the whole batch at once
            return torch.stack(qnode(inputs, weights), -1)
        return torch.stack([torch.stack(qnode(x, weights)) for x in inputs])

    return run


def qiskit_ml_model(circuit: Circuit):
    """EstimatorQNN (StatevectorEstimator, its default gradient) behind a TorchConnector."""
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = to_qiskit(circuit)
    qnn = EstimatorQNN(
        circuit=qc,
        observables=[qiskit_observable(r, circuit.n_qubits) for r in circuit.readouts],
        input_params=list(x),
        weight_params=list(w),
        input_gradients=False,
    )
    connector = TorchConnector(qnn)

    def run(inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            connector.weight.copy_(weights.detach().double())
        connector.weight.requires_grad_(weights.requires_grad)
        return connector(inputs.double())

    return run, connector
