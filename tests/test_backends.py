"""Every backend runs the same circuit: exact expectations agree to 1e-6 (complex128),
gradients agree with finite differences, sampled expectations sit within statistical bounds,
and bad input gets an error naming the gate."""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from quantum_strategies import assert_float32_close, circuits, float32_bound

from qcompress.circuit import CircuitBuilder, CircuitError, feature, z
from qcompress.errors import QcompressError
from qcompress.gradients import ExactParameterShiftWarning, parameter_shift
from qcompress_plugins.backends.cirq_backend import CirqBackend, CirqConfig
from qcompress_plugins.backends.qiskit_backend import QiskitBackend, QiskitConfig
from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit

EXACT = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NO_FUSIONS = ["product_state", "reorder", "diagonal", "permutation", "one_qubit",
              "absorb_readout"]


def torch_backends():
    """The torch backend's kernels and fusion settings (the CPU kernel takes the circuits
    whose readouts are diagonal; ``auto`` runs the others on torch ops)."""
    return [
        TorchBackend(TorchConfig(dtype="complex128")),
        TorchBackend(TorchConfig(dtype="complex128", kernel="torch")),
        TorchBackend(TorchConfig(dtype="complex128", gradient="backprop", block_qubits=2)),
        TorchBackend(TorchConfig(dtype="complex128", disable_fusions=NO_FUSIONS,
                                 block_qubits=1)),
        TorchBackend(TorchConfig(dtype="complex128", disable_fusions=NO_FUSIONS,
                                 kernel="torch")),
    ]


def inputs_for(circuit, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 6 - 3
    w = torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6 - 3
    return x, w


@EXACT
@given(circuits())
def test_exact_expectations_agree_across_backends(circuit):
    x, w = inputs_for(circuit)
    reference = QiskitBackend().expectations(circuit, x, w)
    for backend in [*torch_backends(), CirqBackend()]:
        out = backend.expectations(circuit, x, w)
        assert out.shape == (3, circuit.n_outputs)
        torch.testing.assert_close(out.double(), reference, atol=1e-6, rtol=0)


def finite_difference(backend, circuit, x, w, eps=1e-6):
    grads = torch.zeros_like(w)
    for j in range(len(w)):
        up, down = w.clone(), w.clone()
        up[j] += eps
        down[j] -= eps
        grads[j] = (backend.expectations(circuit, x, up).sum()
                    - backend.expectations(circuit, x, down).sum()) / (2 * eps)
    return grads


@EXACT
@given(circuits(max_gates=8))
def test_gradients_agree_with_finite_differences(circuit):
    x, w = inputs_for(circuit, batch=2)
    reference = finite_difference(TorchBackend(TorchConfig(dtype="complex128")), circuit, x, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExactParameterShiftWarning)
        for backend in [*torch_backends(), QiskitBackend(), CirqBackend()]:
            wg = w.clone().requires_grad_()
            xg = x.clone().requires_grad_()
            backend.expectations(circuit, xg, wg).sum().backward()
            torch.testing.assert_close(wg.grad, reference, atol=1e-5, rtol=0)
            assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_input_gradients_agree_between_adjoint_and_parameter_shift():
    circuit = qdllm_circuit(4, 1)
    x, w = inputs_for(circuit, batch=2)
    grads = []
    for backend in [TorchBackend(TorchConfig(dtype="complex128")), CirqBackend()]:
        xg = x.clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExactParameterShiftWarning)
            backend.expectations(circuit, xg, w).pow(2).sum().backward()
        grads.append(xg.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "backend",
    [QiskitBackend(QiskitConfig(shots=4000, seed=1)), CirqBackend(CirqConfig(shots=4000, seed=1))],
    ids=["qiskit", "cirq"],
)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuit=circuits(max_qubits=3, max_gates=6))
def test_sampled_expectations_fall_within_statistical_bounds(backend, circuit):
    x, w = inputs_for(circuit, batch=2)
    exact = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)
    sampled = backend.expectations(circuit, x, w).double()
    # each output averages 4000 shots of a value in [-1, 1]: std <= 1/sqrt(4000) ~ 0.016;
    # five standard deviations, so a correct backend fails about once in 10^6 outputs
    assert (sampled - exact).abs().max() < 5 / math.sqrt(4000)


def test_noise_pulls_expectations_towards_zero():
    b = CircuitBuilder(2)
    b.ry(0, 0.2).cnot(0, 1)
    for _ in range(10):
        b.cnot(0, 1).cnot(0, 1)
    circuit = b.build([z(0), z(1)])
    x, w = torch.zeros(1, 0), torch.zeros(0)
    exact = TorchBackend().expectations(circuit, x, w)[0]
    noisy = QiskitBackend(QiskitConfig(shots=4000, noise="depolarizing", depolarizing_2q=0.05))
    cirq_noisy = CirqBackend(CirqConfig(shots=4000, depolarizing=0.02))
    for backend in (noisy, cirq_noisy):
        values = backend.expectations(circuit, x, w)[0]
        assert (values < exact - 0.1).all(), (backend.info(), values, exact)
        assert backend.info().noise is not None and not backend.info().exact


@pytest.mark.parametrize("noise", ["generic", "fake:FakeManilaV2"])
def test_fake_device_runs_a_circuit(noise):
    if noise.startswith("fake:"):
        pytest.importorskip("qiskit_ibm_runtime")
    circuit = qdllm_circuit(3, 1)
    x, w = inputs_for(circuit, batch=1)
    backend = QiskitBackend(QiskitConfig(shots=2000, noise=noise))
    exact = TorchBackend().expectations(circuit, x, w).double()
    out = backend.expectations(circuit, x, w)
    assert out.shape == (1, 3)
    assert (out - exact).abs().max() < 0.35  # the device's errors, but the same circuit
    assert backend.info().noise == noise


def test_unknown_ibm_fake_device_is_named():
    pytest.importorskip("qiskit_ibm_runtime")
    circuit = qdllm_circuit(3, 1)
    x, w = inputs_for(circuit, batch=1)
    backend = QiskitBackend(QiskitConfig(shots=100, noise="fake:FakeNowhereV2"))
    with pytest.raises(QcompressError, match="has no FakeNowhereV2"):
        backend.expectations(circuit, x, w)


def test_qiskit_machine_learning_mode_matches_torch():
    pytest.importorskip("qiskit_machine_learning")
    circuit = qdllm_circuit(4, 1)
    x, w = inputs_for(circuit, batch=2)
    reference = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)
    backend = QiskitBackend(QiskitConfig(method="machine-learning"))
    wg = w.clone().requires_grad_()
    out = backend.expectations(circuit, x, wg)
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)
    out.sum().backward()
    expected = finite_difference(TorchBackend(TorchConfig(dtype="complex128")), circuit, x, w)
    torch.testing.assert_close(wg.grad, expected, atol=1e-5, rtol=0)


def test_backend_configs_reject_impossible_settings():
    with pytest.raises(ValueError, match="noise model needs shots"):
        QiskitConfig(noise="depolarizing")
    with pytest.raises(ValueError, match="unknown noise 'loud'"):
        QiskitConfig(shots=10, noise="loud")
    with pytest.raises(ValueError, match="needs shots"):
        CirqConfig(depolarizing=0.1)


def test_parameter_shift_on_an_exact_simulator_warns():
    with pytest.warns(ExactParameterShiftWarning, match="parameter-shift"):
        TorchBackend(TorchConfig(gradient="parameter-shift"))
    circuit = qdllm_circuit(3, 1)
    x, w = inputs_for(circuit, batch=1)
    wg = w.clone().requires_grad_()
    with pytest.warns(ExactParameterShiftWarning):
        CirqBackend().expectations(circuit, x, wg).sum().backward()


def test_parameter_shift_wrapper_matches_autograd_on_torch():
    circuit = qdllm_circuit(4, 2)
    x, w = inputs_for(circuit, batch=3)
    torch_backend = TorchBackend(TorchConfig(dtype="complex128"))

    def gradients(run):
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        run(circuit.angles(xg, wg)).pow(2).sum().backward()
        return xg.grad, wg.grad

    expected = gradients(lambda angles: torch_backend.run(circuit, angles))
    shifted = gradients(lambda angles: parameter_shift(torch_backend.run, circuit, angles))
    for got, want in zip(shifted, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("backend", [TorchBackend(), QiskitBackend(), CirqBackend()],
                         ids=["torch", "qiskit", "cirq"])
def test_bad_input_gets_an_error_naming_the_gate(backend):
    circuit = qdllm_circuit(3, 1)
    x, w = inputs_for(circuit, batch=2)
    with pytest.raises(CircuitError, match=r"expected a \[batch, 3\] tensor"):
        backend.expectations(circuit, x[:, :2], w)
    x[1, 2] = float("nan")
    with pytest.raises(CircuitError, match=r"gate rx\(x\[2\]\) q\[2\]: input feature 2"):
        backend.expectations(circuit, x, w)


def test_unsupported_gate_is_named():
    class NoControlledRotations(TorchBackend):
        supported_gates = frozenset({"rx", "ry", "rz", "cnot"})

    b = CircuitBuilder(2).rx(0, feature(0)).crx(0, 1, 0.3)
    circuit = b.build([z(1)])
    with pytest.raises(CircuitError, match=r"gate crx\(0.3\) q\[0, 1\]: the torch backend does "
                                           "not support 'crx'"):
        NoControlledRotations().expectations(circuit, torch.zeros(1, 1), torch.zeros(0))


def test_backend_info_is_recorded_metadata():
    info = TorchBackend().info()
    assert (info.name, info.exact, info.gradient, info.dtype, info.kernel) == (
        "torch", True, "adjoint", "complex64", "cpu")
    info = QiskitBackend(QiskitConfig(shots=128, noise="depolarizing")).info()
    assert info.shots == 128 and info.noise.startswith("depolarizing")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_torch_backend_follows_the_inputs_to_cuda():
    circuit = qdllm_circuit(5, 2)
    x, w = inputs_for(circuit, batch=4)
    cpu = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)
    gpu = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x.cuda(), w.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-9, rtol=0)


def test_float32_default_is_close_to_complex128():
    circuit = qdllm_circuit(11, 2)
    x, w = inputs_for(circuit, batch=4)
    ref = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)
    out = TorchBackend().expectations(circuit, x.float(), w.float())
    assert out.dtype == torch.float32
    assert_float32_close(out, ref, float32_bound(circuit, x, w))


@pytest.mark.parametrize("version", [2, 3])
def test_trained_circuit_round_trips_through_openqasm(version):
    """Train a few steps on the torch backend, export to QASM, re-import into qiskit: the
    re-imported circuit gives the same expectations."""
    import qiskit.qasm2
    import qiskit.qasm3
    from qiskit.quantum_info import Statevector

    from qcompress.export import qiskit_observable, to_qasm

    circuit = qdllm_circuit(5, 2)
    x, w = inputs_for(circuit, batch=1)
    w = w.float().requires_grad_()
    optimiser = torch.optim.Adam([w], lr=0.1)
    for _ in range(5):
        optimiser.zero_grad()
        TorchBackend().expectations(circuit, x.float(), w).sum().backward()
        optimiser.step()
    expected = TorchBackend(TorchConfig(dtype="complex128")).expectations(
        circuit, x, w.detach().double())[0]
    text = to_qasm(circuit, x[0].tolist(), w.detach().double().tolist(), version=version,
                   measure=False)
    loaded = qiskit.qasm2.loads(text) if version == 2 else qiskit.qasm3.loads(text)
    state = Statevector(loaded)
    values = [state.expectation_value(qiskit_observable(r, 5)).real for r in circuit.readouts]
    torch.testing.assert_close(torch.tensor(values, dtype=torch.float64), expected,
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize(("module", "backend"), [("qiskit", QiskitBackend), ("cirq", CirqBackend)])
def test_missing_quantum_library_gets_a_clear_error(monkeypatch, module, backend):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(QcompressError, match=r"pip install 'qcompress\[quantum\]'"):
        backend()


def test_parametrised_exports_match_the_torch_backend():
    """to_qiskit (ParameterVectors x, w) and to_cirq (sympy symbols), resolved with the same
    values, give the torch backend's expectations."""
    import cirq
    from qiskit.quantum_info import Statevector

    from qcompress.export import qiskit_observable, to_cirq, to_qiskit

    circuit = qdllm_circuit(4, 1)
    x, w = inputs_for(circuit, batch=1)
    expected = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)[0]

    qc, xs, ws = to_qiskit(circuit)
    assert qc.num_parameters == circuit.n_inputs + circuit.n_weights
    bound = qc.assign_parameters({**dict(zip(xs, x[0].tolist(), strict=True)),
                                  **dict(zip(ws, w.tolist(), strict=True))})
    state = Statevector(bound)
    values = [state.expectation_value(qiskit_observable(r, 4)).real for r in circuit.readouts]
    torch.testing.assert_close(torch.tensor(values, dtype=torch.float64), expected,
                               atol=1e-9, rtol=0)

    program, qubits, xsym, wsym = to_cirq(circuit)
    resolver = cirq.ParamResolver({**dict(zip(xsym, x[0].tolist(), strict=True)),
                                   **dict(zip(wsym, w.tolist(), strict=True))})
    final = cirq.Simulator(dtype=np.complex128).simulate(
        program, resolver, qubit_order=qubits).final_state_vector
    probs = torch.as_tensor(np.abs(final) ** 2)
    bits = (torch.arange(16)[:, None] >> torch.arange(3, -1, -1)) & 1
    z_values = (probs[:, None] * (1 - 2 * bits)).sum(0)
    torch.testing.assert_close(z_values, expected, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# Inert weights, checked against gradients


def weight_gradients(circuit, seed: int) -> torch.Tensor:
    """d(random mix of every readout)/d(weights) at a random point, exactly (complex128)."""
    x, w = inputs_for(circuit, batch=2, seed=seed)
    w = w.clone().requires_grad_()
    out = TorchBackend(TorchConfig(dtype="complex128")).expectations(circuit, x, w)
    mix = torch.rand(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (out * mix).sum().backward()
    return w.grad


@EXACT
@given(circuits(max_gates=16, readout_paulis="IZ"))
def test_inert_weights_have_zero_gradient_on_random_circuits(circuit):
    inert = circuit.inert_weights()
    for seed in (1, 2):
        gradients = weight_gradients(circuit, seed)
        if inert:
            assert gradients[inert].abs().max() < 1e-10, (inert, gradients)


@pytest.mark.parametrize("rotations_first", [True, False])
def test_inert_weights_do_not_depend_on_gate_order(rotations_first: bool) -> None:
    """Per qubit an RY then an RZ, the RZs last before a Z readout: all four are inert,
    whether the RYs come first or each qubit's pair comes in turn."""
    b = CircuitBuilder(4)
    for q in range(4):
        b.rx(q, feature(q))
    b.cnot(0, 1).cnot(2, 3)
    ry = [b.new_weight() for _ in range(4)]
    rz = [b.new_weight() for _ in range(4)]
    if rotations_first:
        for q in range(4):
            b.ry(q, ry[q])
        for q in range(4):
            b.rz(q, rz[q])
    else:
        for q in range(4):
            b.ry(q, ry[q]).rz(q, rz[q])
    b.cnot(1, 2)  # a permutation after the phases keeps them phases
    circuit = b.build([z(q) for q in range(4)])
    assert circuit.inert_weights() == [w.index for w in rz]
    gradients = weight_gradients(circuit, seed=3)
    assert gradients[[w.index for w in rz]].abs().max() < 1e-12
    assert gradients[[w.index for w in ry]].abs().min() > 1e-6
