"""QTHA's pieces (docs/methods.md §3, reconstructed): the MPO projections, the quantum branch's
circuit, the adapter's start from the base model and its parameter count against LoRA's."""

from __future__ import annotations

import pytest
import torch

from qcompress.plugins import load_registry
from qcompress_plugins.adapters.qtha import (
    MPOLinear,
    QTHAAdapter,
    attach_qtha,
    factorize,
    lora_equivalent,
    qtha_circuit,
)


def torch_backend():
    backend_cls = load_registry().get("backend", "torch")
    return backend_cls(backend_cls.Config())


@pytest.mark.parametrize(
    ("n", "parts", "factors"),
    [(384, 3, [8, 8, 6]), (8, 3, [2, 2, 2]), (4, 3, [2, 2, 1]), (768, 2, [32, 24]), (7, 2, [7, 1])],
)
def test_factorize_balances_prime_factors(n, parts, factors) -> None:
    assert factorize(n, parts) == factors


def test_mpo_weight_is_the_contraction_of_its_cores() -> None:
    mpo = MPOLinear(d_in=6, d_out=4, cores=2, bond=3)
    first, second = mpo.cores  # [1, o1, i1, 3], [3, o2, i2, 1]
    (o1, o2), (i1, i2) = mpo.out_factors, mpo.in_factors
    expected = torch.zeros(o1, o2, i1, i2)
    for a in range(o1):
        for b in range(o2):
            for c in range(i1):
                for d in range(i2):
                    expected[a, b, c, d] = (first[0, a, c, :] * second[:, b, d, 0]).sum()
    torch.testing.assert_close(mpo.weight(), expected.reshape(4, 6))
    x = torch.randn(5, 6)
    torch.testing.assert_close(mpo(x), x @ expected.reshape(4, 6).T)


def test_mpo_initial_scale_matches_a_linear_layer() -> None:
    torch.manual_seed(0)
    weight = MPOLinear(384, 384, cores=3, bond=4).weight()
    assert weight.std().item() == pytest.approx(384**-0.5, rel=0.15)


def test_circuit_is_ry_encoding_then_rotation_layers_and_a_cnot_ring() -> None:
    circuit = qtha_circuit(4, layers=2)
    names = [gate.name for gate in circuit.gates]
    assert names[:4] == ["ry"] * 4
    layer = ["ry", "rz"] * 4 + ["cnot"] * 4
    assert names[4:] == layer * 2
    assert [g.qubits for g in circuit.gates if g.name == "cnot"][:4] == [
        (0, 1), (1, 2), (2, 3), (3, 0)]  # fmt: skip
    assert circuit.n_weights == 16 and circuit.n_inputs == 4 and circuit.n_outputs == 4


def test_adapted_layer_starts_as_the_base_and_learns() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8))
    base = model[0]
    x = torch.randn(3, 5, 12)
    before = base(x).detach()
    (layer,) = attach_qtha(
        model, ["0"], alpha=8.0, backend=torch_backend(), rank=4, qubits=2, layers=1,
        cores=2, bond=2,
    )  # fmt: skip
    assert model[0] is layer and layer.scale == 2.0
    torch.testing.assert_close(model(x), before)  # the up-projection starts at zero
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    target = torch.randn(3, 5, 8)
    for _ in range(3):
        loss = ((model(x) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert base.weight.grad is None  # frozen
    loss = ((model(x) - target) ** 2).mean()
    loss.backward()
    adapter = layer.adapter
    assert adapter.circuit_weights.grad.abs().sum() > 0  # the quantum branch trains
    assert all(core.grad.abs().sum() > 0 for core in adapter.down.cores)


def test_minilm_sized_layer_trains_a_quarter_of_loras_values() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(384, 384))
    lora = lora_equivalent(model, ["0"], rank=4)
    assert lora == 4 * (384 + 384)
    (layer,) = attach_qtha(
        model, ["0"], alpha=8.0, backend=torch_backend(), rank=4, qubits=4, layers=2,
        cores=3, bond=4,
    )  # fmt: skip
    adapter = layer.adapter
    # down: 384 = 8*8*6 in, 4 = 2*2*1 out, bonds 1-4-4-1; up: the transpose.
    mpo = 1 * 2 * 8 * 4 + 4 * 2 * 8 * 4 + 4 * 1 * 6 * 1
    fusion = (4 + 4) * 4 + 4
    circuit = 2 * 4 * 2
    assert sum(p.numel() for p in adapter.parameters()) == 2 * mpo + fusion + circuit == 740
    assert 740 / lora == pytest.approx(0.24, abs=0.01)  # the paper claims 76% fewer than LoRA


def test_qubits_beyond_rank_are_refused() -> None:
    with pytest.raises(ValueError, match="qubits must be between 1 and rank"):
        QTHAAdapter(8, 8, torch_backend(), rank=2, qubits=3, layers=1, cores=1, bond=1)
