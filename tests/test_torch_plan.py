"""The torch backend's compiler: which fusions fire on the QD-LLM circuit, and what they imply."""

from __future__ import annotations

import torch

from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.backends.torch_sim.plan import Fusions, compile_plan
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit


def test_qdllm_circuit_compiles_to_few_stages():
    circuit = qdllm_circuit(11, 2)
    plan = compile_plan(circuit)
    kinds = [s.kind for s in plan.stages]
    assert kinds == ["diagonal", "permutation", "one-qubit", "diagonal", "permutation",
                     "diagonal", "one-qubit"]
    # qubit 0 meets no two-qubit gate until the first CNOT: RX, 3 RY and 3 RZ fold into |0>
    assert [circuit.gates[p].name for p in plan.prefix[0]] == ["rx"] + ["ry"] * 3 + ["rz"] * 3
    assert all(len(plan.prefix[q]) == 1 for q in range(1, 11))  # the angle encoding
    assert plan.readout_permutation is not None  # the last CNOT block folded into the readout


def test_without_fusions_every_gate_is_its_own_stage():
    circuit = qdllm_circuit(5, 1)
    plan = compile_plan(circuit, Fusions(product_state=False, reorder=False, diagonal=False,
                                         permutation=False, one_qubit=False,
                                         absorb_readout=False))
    assert len(plan.stages) == len(circuit.gates)


def test_last_layer_rz_angles_cannot_change_z_readouts():
    circuit = qdllm_circuit(5, 2)
    w = torch.rand(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    x = torch.rand(3, 5, dtype=torch.float64)
    TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w).sum().backward()
    per_layer = circuit.n_weights // 2
    rz_last_layer = w.grad[per_layer:][-3 * 5:]
    assert rz_last_layer.abs().max() < 1e-12  # dropped by the plan, or zero to rounding
    assert w.grad[:per_layer].abs().sum() > 0


def test_fused_qdllm_circuit_matches_qiskit():
    from qcompress_plugins.backends.qiskit_backend import QiskitBackend

    circuit = qdllm_circuit(6, 2)
    x = torch.rand(2, 6, dtype=torch.float64) * 10
    w = torch.rand(circuit.n_weights, dtype=torch.float64) * 6
    fused = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)
    torch.testing.assert_close(fused, QiskitBackend().expectations(circuit, x, w),
                               atol=1e-9, rtol=0)
