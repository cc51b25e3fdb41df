"""Both kernels' reused buffers and hand-written backwards: results never alias a buffer,
graphs built before a backward keep their own states, threads do not share buffers."""

from __future__ import annotations

import threading

import pytest
import torch

from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.backends.torch_sim.kernels import SquaredMagnitude
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit

CIRCUIT = qdllm_circuit(5, 2)


def _inputs(batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 5, generator=g, dtype=torch.float64) * 3
    w = torch.rand(CIRCUIT.n_weights, generator=g, dtype=torch.float64) * 6
    return x, w


def _backend(gradient: str = "adjoint", kernel: str = "auto") -> TorchBackend:
    return TorchBackend(TorchConfig(dtype="complex128", gradient=gradient, kernel=kernel))


KERNELS = pytest.mark.parametrize("kernel", ["cpu", "torch"])


@KERNELS
def test_a_result_is_not_overwritten_by_the_next_call(kernel):
    backend = _backend(kernel=kernel)
    x1, w = _inputs(4, 0)
    x2, _ = _inputs(4, 1)
    first = backend.expectations(CIRCUIT, x1, w)
    kept = first.clone()
    backend.expectations(CIRCUIT, x2, w)
    assert torch.equal(first, kept)


@KERNELS
def test_two_forwards_then_one_backward_match_backprop(kernel):
    # gradient accumulation: the second forward runs in the same buffers before any backward
    x1, w = _inputs(3, 2)
    x2, _ = _inputs(3, 3)
    grads = {}
    for gradient in ("adjoint", "backprop"):
        backend = _backend(gradient, kernel if gradient == "adjoint" else "torch")
        wg = w.clone().requires_grad_()
        loss = backend.expectations(CIRCUIT, x1, wg).sum() - 2 * backend.expectations(
            CIRCUIT, x2, wg).pow(2).sum()
        loss.backward()
        grads[gradient] = wg.grad
    torch.testing.assert_close(grads["adjoint"], grads["backprop"], atol=1e-10, rtol=0)


@KERNELS
def test_threads_get_their_own_buffers(kernel):
    backend = _backend(kernel=kernel)
    cases = [_inputs(8, seed) for seed in range(4)]
    expected = [backend.expectations(CIRCUIT, x, w) for x, w in cases]
    results: dict[int, list[torch.Tensor]] = {}

    def run(i: int) -> None:
        x, w = cases[i]
        results[i] = [backend.expectations(CIRCUIT, x, w) for _ in range(20)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, values in results.items():
        for value in values:
            torch.testing.assert_close(value, expected[i], atol=1e-12, rtol=0)


def test_squared_magnitude_gradient():
    psi = torch.randn(8, 3, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(SquaredMagnitude.apply, (psi,))
