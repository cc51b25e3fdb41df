"""The torch backend's compiled CPU kernel (``kernel: cpu``): the same numbers as qiskit and
as finite differences on random circuits with diagonal readouts, whatever the batch's split
into chunks and threads; clear refusals where it does not apply."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from quantum_strategies import (
    assert_float32_close,
    assert_float32_gradient_close,
    circuits,
    float32_bound,
)

from qcompress.circuit import CircuitBuilder, CircuitError, feature, pauli, probabilities, z
from qcompress_plugins.backends.qiskit_backend import QiskitBackend
from qcompress_plugins.backends.torch_sim import cpu_program
from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.backends.torch_sim.plan import compile_plan
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit

EXACT = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIAGONAL = circuits(readout_paulis="IZ")


def _inputs(circuit, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 6 - 3
    w = torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6 - 3
    return x, w


def _cpu(**config) -> TorchBackend:
    return TorchBackend(TorchConfig(dtype="complex128", kernel="cpu", **config))


@EXACT
@given(DIAGONAL)
def test_expectations_agree_with_qiskit(circuit):
    x, w = _inputs(circuit, batch=3)
    reference = QiskitBackend().expectations(circuit, x, w)
    for backend in (_cpu(), _cpu(disable_fusions=["product_state", "reorder", "diagonal",
                                                  "permutation", "one_qubit", "absorb_readout"])):
        torch.testing.assert_close(backend.expectations(circuit, x, w), reference, atol=1e-6,
                                   rtol=0)
        assert backend.info().kernel == "cpu"


def _finite_differences(circuit, x, w, eps=1e-6):
    """d sum(outputs * weights) / d (inputs, weights) by central differences."""
    backend = TorchBackend(TorchConfig(dtype="complex128", kernel="torch"))
    mix = torch.linspace(-1, 1, circuit.n_outputs, dtype=torch.float64)

    def loss(x_, w_):
        return (backend.expectations(circuit, x_, w_) * mix).sum()

    grads = []
    for t in (x, w):
        g = torch.zeros_like(t)
        for j in range(t.numel()):
            up, down = t.clone(), t.clone()
            up.view(-1)[j] += eps
            down.view(-1)[j] -= eps
            args_up = (up, w) if t is x else (x, up)
            args_down = (down, w) if t is x else (x, down)
            g.view(-1)[j] = (loss(*args_up) - loss(*args_down)) / (2 * eps)
        grads.append(g)
    return grads, mix


@EXACT
@given(circuits(max_gates=8, readout_paulis="IZ"))
def test_input_and_weight_gradients_agree_with_finite_differences(circuit):
    x, w = _inputs(circuit, batch=2)
    (gx, gw), mix = _finite_differences(circuit, x, w)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    (_cpu().expectations(circuit, xg, wg) * mix).sum().backward()
    torch.testing.assert_close(xg.grad, gx, atol=1e-5, rtol=0)
    torch.testing.assert_close(wg.grad, gw, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 5, 17, 70])
@pytest.mark.parametrize("threads", [1, 2])
def test_any_batch_split_gives_the_torch_kernels_numbers(batch, threads):
    circuit = qdllm_circuit(6, 2)
    x, w = _inputs(circuit, batch, seed=batch)
    expected = {}
    for kernel in ("torch", "cpu"):
        backend = TorchBackend(TorchConfig(dtype="complex128", kernel=kernel))
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = backend.expectations(circuit, xg, wg)
            out.pow(2).sum().backward()
        finally:
            torch.set_num_threads(previous)
        expected[kernel] = (out.detach(), xg.grad, wg.grad)
    for got, want in zip(expected["cpu"], expected["torch"], strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_complex64_is_close_to_complex128():
    circuit = qdllm_circuit(11, 2)
    x, w = _inputs(circuit, batch=40)
    w64 = w.clone().requires_grad_()
    ref = _cpu().expectations(circuit, x, w64)
    ref.sum().backward()
    w32 = w.float().requires_grad_()
    out = TorchBackend(TorchConfig(kernel="cpu")).expectations(circuit, x.float(), w32)
    out.sum().backward()
    assert out.dtype == torch.float32
    bound = float32_bound(circuit, x, w)
    assert_float32_close(out, ref.detach(), bound)
    assert_float32_gradient_close(w32.grad, w64.grad, bound)


def test_a_second_backward_through_the_same_graph_gives_the_same_gradient():
    circuit = qdllm_circuit(5, 2)
    x, w = _inputs(circuit, batch=9)
    wg = w.clone().requires_grad_()
    loss = _cpu().expectations(circuit, x, wg).pow(2).sum()
    (first,) = torch.autograd.grad(loss, wg, retain_graph=True)
    (second,) = torch.autograd.grad(loss, wg)
    torch.testing.assert_close(first, second, atol=0, rtol=0)


@pytest.mark.parametrize("grads", ["both", "inputs", "weights", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_binding_angles_in_the_kernel_matches_binding_them_with_torch(grads, dtype):
    # expectations() binds the angles in numpy; run() takes angles bound by Circuit.angles
    b = CircuitBuilder(3)
    b.rx(0, feature(0, scale=0.5, offset=1.0)).ry(1, feature(1)).rz(2, b.new_weight())
    b.cnot(0, 2).rzz(1, 2, b.new_weight()).add("crx", (2, 0), [feature(0)])
    b.ry(0, b.new_weight()).ry(0, 0.3)
    circuit = b.build([z(0), z(2), probabilities([1, 2])])
    x, w = (t.to(dtype) for t in _inputs(circuit, batch=6))
    backend = _cpu()
    results = []
    for bind in ("kernel", "torch"):
        xg = x.clone().requires_grad_(grads in ("both", "inputs"))
        wg = w.clone().requires_grad_(grads in ("both", "weights"))
        if bind == "kernel":
            out = backend.expectations(circuit, xg, wg)
        else:
            out = backend.run(circuit, circuit.angles(xg, wg))
        if out.requires_grad:
            out.pow(2).sum().backward()
        results.append([out.detach(), xg.grad, wg.grad])
    assert results[0][0].dtype == torch.float64
    # float32 gradients: torch sums the angles' float32 gradients per input, the kernel sums
    # in float64 and rounds once, so they may differ in the last place
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    for got, want in zip(*results, strict=True):
        if want is None:
            assert got is None
        else:
            assert got.dtype == want.dtype
            torch.testing.assert_close(got, want, atol=atol, rtol=0)


def test_rotation_chains_take_the_short_gradient_and_give_the_same_numbers():
    # RY chains are undone as one rotation, whose gradient needs one sum instead of a 2x2's
    # four; H/RY chains (real, not rotations) and RX chains (complex) keep the general one
    b = CircuitBuilder(3)
    b.rx(0, feature(0)).rx(1, feature(1)).rx(2, feature(2)).cnot(0, 1).cnot(1, 2)
    b.ry(0, b.new_weight()).ry(0, b.new_weight()).ry(0, 0.4)
    b.h(1).ry(1, b.new_weight())
    b.rx(2, b.new_weight())
    circuit = b.build([z(0), z(1), z(2)])
    program = TorchBackend(TorchConfig(dtype="complex128")).cpu_kernel_program(circuit, False)
    one_kinds = {int(program.kinds[slot]) for op, _, slot, _, _ in program.ops
                 if op == cpu_program.k.ONE}
    assert one_kinds == {cpu_program.k.ROTATION, cpu_program.k.REAL, cpu_program.k.COMPLEX}
    x, w = _inputs(circuit, batch=4)
    grads = []
    for kernel in ("cpu", "torch"):
        wg = w.clone().requires_grad_()
        backend = TorchBackend(TorchConfig(dtype="complex128", kernel=kernel))
        (backend.expectations(circuit, x, wg) * torch.tensor([0.3, -1.0, 2.0])).sum().backward()
        grads.append(wg.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=0)


@EXACT
@given(DIAGONAL)
def test_phases_joined_to_permutations_give_the_same_numbers(circuit):
    # the kernel multiplies the phase vectors next to a permutation in while it moves the state
    x, w = _inputs(circuit, batch=3)
    plan = compile_plan(circuit)
    angles = circuit.angles(x, w).numpy()
    results = []
    for joined in (True, False):
        program = cpu_program.CpuProgram(plan, torch.float64, phases_into_permutations=joined)
        out, kept = program.forward(angles, keep_states=True)
        grad_out = np.linspace(-1, 1, out.size).reshape(out.shape)
        results.append((out, program.backward(angles, kept, grad_out)))
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


def test_auto_runs_non_diagonal_readouts_on_torch_ops():
    circuit = CircuitBuilder(2).rx(0, feature(0)).cnot(0, 1).build([z(1), pauli("XY")])
    backend = TorchBackend()
    backend.expectations(circuit, torch.zeros(1, 1), torch.zeros(0))
    assert backend.info().kernel == "torch"
    refusal = r"kernel 'cpu': cannot run this circuit: readout X0Y1 is not diagonal"
    with pytest.raises(CircuitError, match=refusal):
        TorchBackend(TorchConfig(kernel="cpu")).expectations(circuit, torch.zeros(1, 1),
                                                             torch.zeros(0))


def test_cpu_kernel_refuses_backprop():
    with pytest.raises(ValidationError, match="adjoint method"):
        TorchConfig(kernel="cpu", gradient="backprop")


def test_unsupported_names_what_stops_the_cpu_kernel():
    assert cpu_program.unsupported(qdllm_circuit(4, 1)) is None
    wide = CircuitBuilder(2).rx(0, feature(0)).build([pauli("ZX")])
    assert "not diagonal" in cpu_program.unsupported(wide)


def test_without_numba_auto_runs_torch_ops_and_cpu_is_refused(monkeypatch):
    from qcompress.errors import PluginError
    from qcompress_plugins.backends.torch_sim import backend as torch_backend

    monkeypatch.setattr(torch_backend, "cpu_program", None)
    monkeypatch.setattr(torch_backend, "CPU_KERNEL_MISSING", "numba did not import",
                        raising=False)
    circuit = qdllm_circuit(3, 1)
    x, w = _inputs(circuit, batch=2)
    backend = TorchBackend(TorchConfig(dtype="complex128"))
    out = backend.expectations(circuit, x, w)
    assert backend.info().kernel == "torch"
    torch.testing.assert_close(out, QiskitBackend().expectations(circuit, x, w), atol=1e-6,
                               rtol=0)
    with pytest.raises(PluginError, match="kernel 'cpu': numba did not import"):
        TorchBackend(TorchConfig(kernel="cpu"))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_blas_runs_on_one_thread_inside_the_parallel_kernel(capfd):
    # from 14 qubits on, a chunk's readout product is large enough for a threaded OpenBLAS to
    # split it, inside numba's threads: it then warns that it "may hang" (and ran 16 qubits
    # 1.4-1.6x slower than it does on one thread)
    b = CircuitBuilder(16)
    for q in range(16):
        b.ry(q, feature(q))
    circuit = b.build([z(q) for q in range(16)])
    program = cpu_program.CpuProgram(compile_plan(circuit), torch.float32)
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls, loaded)
    from threadpoolctl import threadpool_info

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    angles = np.random.default_rng(0).uniform(0, 3, (2 * program.chunk, 16))
    out, kept = program.forward(angles, keep_states=True, threads=2)
    program.backward(angles, kept, np.ones_like(out), threads=2)
    assert "OpenBLAS" not in capfd.readouterr().err
    after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert after == before  # restored once the call is over
    # each qubit's own RY on |0>: <Z_q> = cos(angle_q)
    np.testing.assert_allclose(out, np.cos(angles), atol=1e-5)


def test_large_states_run_in_narrower_chunks():
    assert cpu_program.CpuProgram(compile_plan(qdllm_circuit(14, 1)), torch.float32).chunk == 32
    assert cpu_program.CpuProgram(compile_plan(qdllm_circuit(15, 1)), torch.float32).chunk == 16


@pytest.mark.parametrize(("n_qubits", "batch", "tile", "threads"), [
    (6, 5, 64, 2),  # 16-row tiles of 3-sample chunks: gates on both sides of the split
    (7, 33, 128, 1),  # 4-row tiles, then a one-sample chunk whose tile is the whole state
    (6, 40, 16, 1),  # one-row tiles: every gate on gathered columns, 16 of a row's 32
    (5, 1, 4, 1),
])
def test_one_qubit_stages_in_tiles_give_the_same_numbers(n_qubits, batch, tile, threads):
    circuit = qdllm_circuit(n_qubits, 2)
    plan = compile_plan(circuit)
    x, w = _inputs(circuit, batch, seed=n_qubits)
    angles = circuit.angles(x, w).numpy()
    grad_out = np.cos(np.arange(batch * circuit.n_outputs)).reshape(batch, -1)
    results = []
    for program in (cpu_program.CpuProgram(plan, torch.float64, tile=0),
                    cpu_program.CpuProgram(plan, torch.float64, tile=tile)):
        out, kept = program.forward(angles, keep_states=True, threads=threads)
        results.append((out, program.backward(angles, kept, grad_out, threads=threads)))
    (out, grad), (tiled_out, tiled_grad) = results
    np.testing.assert_allclose(tiled_out, out, atol=1e-12, rtol=0)
    np.testing.assert_allclose(tiled_grad, grad, atol=1e-12, rtol=0)


def test_tiles_start_where_a_chunk_overflows_the_cache():
    def program(n):
        return cpu_program.CpuProgram(compile_plan(qdllm_circuit(n, 1)), torch.float32)

    assert program(11).tile == 0
    assert program(15).tile == 0
    assert program(16).tile == cpu_program.TILE_VALUES


def test_a_16_qubit_circuit_in_tiles_agrees_with_torch_ops():
    # the defaults at this size: chunks of 16 samples, one-qubit stages in tiles, BLAS held
    # to one thread; against the torch-op kernel, an independent implementation
    circuit = qdllm_circuit(16, 1)
    assert cpu_program.CpuProgram(compile_plan(circuit), torch.float32).tile > 0
    x, w = _inputs(circuit, batch=20, seed=16)
    results = []
    for kernel in ("cpu", "torch"):
        xg, wg = x.float().requires_grad_(), w.float().requires_grad_()
        out = TorchBackend(TorchConfig(kernel=kernel)).expectations(circuit, xg, wg)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        results.append((out.detach(), xg.grad, wg.grad))
    # two float32 implementations, each within the bound of the exact numbers
    bound = 2 * float32_bound(circuit, x, w)
    outputs, *gradients = zip(*results, strict=True)
    assert_float32_close(outputs[0], outputs[1], bound)
    for got, want in gradients:
        assert_float32_gradient_close(got, want, bound)


def test_the_kernel_leaves_torchs_thread_count_as_it_was():
    # numba's first OpenMP launch in a process resets the OpenMP thread count, which torch
    # reads as its own: TorchBackend() (whose warm-up makes that launch) once left a process
    # that had asked torch for one thread running torch on two. A fresh process, so that the
    # launch is its first.
    import os
    import subprocess
    import sys

    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from qcompress_plugins.backends.torch_sim.backend import TorchBackend\n"
        "TorchBackend()\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
