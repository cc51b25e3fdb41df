"""Backend benchmarks: the QD-LLM circuit (docs/methods.md §1: 11 qubits, 2 layers, 144 weights) at
batch 1, 64 and 256, forward and forward+backward, on the torch backend and the tools people
compare it with; torch-backend scaling to 16 and 20 qubits with peak memory; and the reference
a ratio needs, measured in the same run: a copy of one state (the memory-traffic unit) and
the machine's multiply-add rate (the arithmetic unit; see ``benchmarks/floors.py``).

    pip install -c constraints.txt -e ".[benchmark]"
    pytest benchmarks/ --benchmark-json=benchmarks/results.json
    python -m benchmarks.report benchmarks/results.json > docs/benchmarks.md

Slow references (qiskit-machine-learning, cirq) run one round, and only where a run stays
under a few minutes; every case records its settings in ``extra_info``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numba
import numpy as np
import pytest
import torch

from benchmarks.conftest import THREADS
from benchmarks.floors import FMA_PER_VISIT, fma_per_sample, fma_rate_kernel
from qcompress.gradients import ExactParameterShiftWarning
from qcompress_plugins.backends.cirq_backend import CirqBackend
from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.backends.torch_sim.cpu_program import CpuProgram
from qcompress_plugins.backends.torch_sim.plan import compile_plan
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit

CIRCUIT = qdllm_circuit(11, 2)
BATCHES = [1, 64, 256]
MODES = ["forward", "forward+backward"]


class Weights:
    """Two weight vectors, taken in turn: each training step's weights differ from the last
    one's, and the torch backend keeps the gate matrices and phase vectors it built for the
    last weights, which a benchmark on fixed weights would time it reusing."""

    def __init__(self, both: torch.Tensor) -> None:
        self.both = both
        self.turn = 0

    def next(self) -> torch.Tensor:
        self.turn ^= 1
        return self.both[self.turn]


def inputs(batch: int, n_qubits: int = 11, dtype=torch.float32) -> tuple[torch.Tensor, Weights]:
    g = torch.Generator().manual_seed(batch)
    x = torch.rand(batch, n_qubits, generator=g) * 10  # QD-LLM's angles lie in [0, 10]
    w = torch.rand(2, qdllm_circuit(n_qubits, 2).n_weights, generator=g) * 6.28
    return x.to(dtype), Weights(w.to(dtype))


def step(model, x, weights: Weights, mode):
    w = weights.next()
    if mode == "forward":
        with torch.no_grad():
            return model(x, w)
    w = w.detach().requires_grad_()
    out = model(x, w)
    out.sum().backward()
    return w.grad


def torch_model(**config):
    backend = TorchBackend(TorchConfig(**config))
    return lambda x, w: backend.expectations(CIRCUIT, x, w)


def pennylane(device, diff_method):
    pytest.importorskip("pennylane")
    from benchmarks.references import pennylane_model

    return pennylane_model(CIRCUIT, device, diff_method)


def qiskit_ml():
    pytest.importorskip("qiskit_machine_learning")
    from benchmarks.references import qiskit_ml_model

    return qiskit_ml_model(CIRCUIT)[0]


def cirq_model():
    backend = CirqBackend()

    def run(x, w):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExactParameterShiftWarning)
            return backend.expectations(CIRCUIT, x.double(), w.double())

    return run


# (name, factory, dtype, largest batch per mode, rounds). The torch cases take many rounds:
# a shared VM slows down in bursts of seconds, and a median over a longer span rides them out.
IMPLEMENTATIONS = {
    "torch": (lambda: torch_model(), torch.float32, {}, 100),  # the CPU kernel
    "torch-ops": (lambda: torch_model(kernel="torch"), torch.float32, {}, 100),
    "torch-backprop": (lambda: torch_model(gradient="backprop"), torch.float32, {}, 100),
    "torch-complex128": (lambda: torch_model(dtype="complex128"), torch.float64, {}, 50),
    "pennylane-default.qubit-backprop": (
        lambda: pennylane("default.qubit", "backprop"), torch.float32, {}, 3),
    "pennylane-lightning.qubit-adjoint": (
        lambda: pennylane("lightning.qubit", "adjoint"), torch.float64, {}, 2),
    "qiskit-ml-EstimatorQNN-TorchConnector": (
        # forward+backward at batch 64 ran over 10 minutes here without finishing: its
        # gradient runs 2 x 144 shifted circuits per sample, so it is measured at batch 1
        # and its batch-64 cost is read off the linear per-sample scaling of its forward
        qiskit_ml, torch.float64, {"forward": 64, "forward+backward": 1}, 1),
    "cirq-parameter-shift": (
        cirq_model, torch.float64, {"forward": 64, "forward+backward": 1}, 1),
}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("copier", ["torch", "numpy"])
def test_state_copy_reference(benchmark, copier, batch):  # first: before any tool's threads
    """The memory-traffic unit: copying one complex64 state of the 11-qubit batch into a
    buffer that already exists (no allocation), with torch's threads and with one numpy
    memcpy; the report takes the faster."""
    source = torch.rand(2**11, batch, dtype=torch.complex64)
    target = torch.empty_like(source)
    copy = (lambda: target.copy_(source)) if copier == "torch" else (
        lambda: np.copyto(target.numpy(), source.numpy()))
    benchmark.extra_info.update(implementation="state-copy", copier=copier, batch=batch,
                                qubits=11, bytes=source.numel() * 8)
    benchmark.pedantic(copy, rounds=50, iterations=5, warmup_rounds=5)


@pytest.mark.parametrize("threads", sorted({1, THREADS}))
def test_fma_rate_reference(benchmark, threads):
    """The arithmetic unit: independent float32 multiply-adds on L1-resident data, on the
    benchmark's thread count (the rate the arithmetic floor divides by) and on one thread
    (what the threads add: nothing where they are two hardware threads of one core, as the
    two vCPUs of the VM in docs/benchmarks.md were in some runs)."""
    numba.set_num_threads(threads)
    data = np.ones((threads, 256), dtype=np.float32)
    reps = 20000
    fma_rate_kernel(data, 10)  # compile
    benchmark.extra_info.update(implementation="fma-rate", threads=threads,
                                fma=threads * 256 * reps * FMA_PER_VISIT)
    try:
        benchmark.pedantic(fma_rate_kernel, args=(data, reps), rounds=30, iterations=1,
                           warmup_rounds=3)
    finally:
        numba.set_num_threads(THREADS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_qdllm_circuit(benchmark, name, batch, mode):
    factory, dtype, largest, rounds = IMPLEMENTATIONS[name]
    if batch > largest.get(mode, batch):
        pytest.skip(f"{name} {mode} at batch {batch} takes too long on this machine")
    model = factory()
    x, weights = inputs(batch, dtype=dtype)
    step(model, x, weights, mode)  # warm-up: compiles plans, builds QNNs
    benchmark.extra_info.update(implementation=name, batch=batch, mode=mode, qubits=11,
                                layers=2, fma_per_sample=_fma(CIRCUIT, mode))
    benchmark.pedantic(step, args=(model, x, weights, mode), rounds=rounds, iterations=1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", BATCHES)
def test_torch_threads(benchmark, batch, mode):
    """The torch backend (its CPU kernel) on one thread and on the benchmark's threads, a few
    steps on each in turn every round: a shared VM's speed drifts within minutes, so two
    cases measured minutes apart would not say what the threads buy. The step after each
    switch is not timed (changing the count can restart OpenMP's threads). The kernel takes
    torch's thread count, forward and backward."""
    if THREADS == 1:
        pytest.skip("the benchmark runs on one thread already")
    model = torch_model()
    x, weights = inputs(batch)
    seconds: dict[int, list[float]] = {1: [], THREADS: []}
    steps = 5

    def a_few_steps_each():
        try:
            for threads, times in seconds.items():
                torch.set_num_threads(threads)
                step(model, x, weights, mode)
                start = time.perf_counter()
                for _ in range(steps):
                    step(model, x, weights, mode)
                times.append((time.perf_counter() - start) / steps)
        finally:  # the next cases run on the benchmark's threads, whatever happened here
            torch.set_num_threads(THREADS)

    a_few_steps_each()  # warm-up
    for times in seconds.values():
        times.clear()
    benchmark.pedantic(a_few_steps_each, rounds=20, iterations=1)
    benchmark.extra_info.update(
        implementation="torch-threads", batch=batch, mode=mode, qubits=11, layers=2,
        median_seconds_by_threads={str(t): float(np.median(v)) for t, v in seconds.items()})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("fusion", ["all", "product_state", "reorder", "diagonal",
                                    "permutation", "one_qubit", "absorb_readout"])
def test_torch_fusions(benchmark, fusion, batch, mode):
    """What each fusion buys: the torch backend (its CPU kernel) with one fusion off."""
    model = torch_model(disable_fusions=[] if fusion == "all" else [fusion])
    x, weights = inputs(batch)
    step(model, x, weights, mode)
    benchmark.extra_info.update(implementation=f"torch-without-{fusion}", batch=batch,
                                mode=mode, fusion=fusion)
    benchmark.pedantic(step, args=(model, x, weights, mode), rounds=30, iterations=1)


def _fma(circuit, mode: str) -> int:
    return fma_per_sample(CpuProgram(compile_plan(circuit), torch.float32), mode)


@pytest.mark.parametrize("n_qubits", [16, 20])
def test_torch_scaling(benchmark, n_qubits):
    """Forward+backward at 16 and 20 qubits, batch 64, with peak memory."""
    circuit = qdllm_circuit(n_qubits, 2)
    backend = TorchBackend()
    x, weights = inputs(64, n_qubits)
    copy_seconds = _copy_seconds(torch.zeros(2**n_qubits, 64, dtype=torch.complex64))

    def run():
        w_ = weights.next().detach().requires_grad_()
        backend.expectations(circuit, x, w_).sum().backward()

    run()  # warm-up, as for every other case: builds the circuit's program (once per circuit)
    measured = subprocess.run(
        [sys.executable, "-m", "benchmarks.peak_memory", str(n_qubits), "64"],
        capture_output=True, text=True, check=True,
    )
    benchmark.extra_info.update(
        implementation="torch", batch=64, mode="forward+backward", qubits=n_qubits,
        # peak resident memory of one step in a fresh process, above its level before the step
        peak_memory_mib=json.loads(measured.stdout)["peak_mib"],
        state_mib=2**n_qubits * 64 * 8 / 2**20, state_copy_seconds=copy_seconds,
        fma_per_sample=_fma(circuit, "forward+backward"),
    )
    benchmark.pedantic(run, rounds=2 if n_qubits == 20 else 5, iterations=1)


def _copy_seconds(state: torch.Tensor) -> float:
    """Best time of copying ``state`` into an existing buffer."""
    target = torch.empty_like(state)
    return _time(lambda: target.copy_(state))


def _time(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
