"""QPA: a quantum circuit that *generates* the values of a LoRA adapter (Liu et al., ICLR 2025;
docs/methods.md §2). Training updates the generator; inference uses the generated values as a plain
LoRA, so the generator is not needed to predict.

Pipeline, as released (the defaults reproduce it):

1. ``M`` LoRA values are cut into chunks of ``c``; ``n_ch = ceil(M / c)`` chunks need
   ``N = ceil(log2 n_ch)`` qubits.
2. The QNN: from |0...0>, ``depth`` blocks of [trainable RY on every qubit, CNOT ladder]; the
   basis-state probabilities, the first ``n_ch`` kept.
3. Post-processing: ``x_i = (beta * tanh(gamma * 2^(N-1) * p_i)) ** alpha``, minus the mean.
4. The mapping model, per chunk ``i``: ``[bits of i as +-1, x_i]`` -> an MLP of the given widths
   (no activations in the release) -> ``Linear(last width -> c)``; the chunks concatenated, cut
   to ``M``, minus the mean, then dealt out to the LoRA tensors in order.

The release draws the bit strings at random on every call (a quirk); ``index: fixed`` (the
default, as Quantum-Train does) uses chunk ``i``'s own bits, ``random`` reproduces the release.
The release's generated LoRA starts large (a random perturbation of the size of the adapted
weights); ``init_scale`` (0.01) shrinks the mapping model's output layer at initialisation so
that training starts near the base model, as LoRA's does; 1 reproduces the release.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch.nn.utils import parametrize

from qcompress.circuit import Circuit, CircuitBuilder, probabilities
from qcompress.interfaces import Backend


def qpa_circuit(n_qubits: int, depth: int) -> Circuit:
    """``depth`` blocks of [RY(w) on every qubit, CNOT (0,1), (1,2), ..., (N-2,N-1)] from
    |0...0>, read out as the probabilities of all ``2**N`` basis states."""
    b = CircuitBuilder(n_qubits)
    for _ in range(depth):
        for q in range(n_qubits):
            b.ry(q, b.new_weight())
        for q in range(n_qubits - 1):
            b.cnot(q, q + 1)
    return b.build([probabilities(range(n_qubits))], n_inputs=0)


def index_bits(indices: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Each index's ``n_bits`` binary digits (most significant first) as -1/+1."""
    shifts = torch.arange(n_bits - 1, -1, -1, device=indices.device)
    bits = (indices[:, None] >> shifts) & 1
    return bits.to(torch.float32) * 2 - 1


class QPAGenerator(torch.nn.Module):
    """Generates ``n_values`` numbers from a QNN and a mapping model (see the module doc)."""

    def __init__(
        self,
        n_values: int,
        backend: Backend,
        chunk_size: int = 2048,
        depth: int = 8,
        widths: tuple[int, ...] = (32, 64, 128, 128, 64, 32, 32),
        gamma: float = 0.1,
        beta: float = 0.60,
        alpha: float = 0.15,
        index: Literal["fixed", "random"] = "fixed",
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        self.n_values = n_values
        self.chunk_size = chunk_size
        self.n_chunks = math.ceil(n_values / chunk_size)
        self.n_qubits = max(1, math.ceil(math.log2(self.n_chunks)))
        self.circuit = qpa_circuit(self.n_qubits, depth)
        self.backend = backend
        self.gamma, self.beta, self.alpha = gamma, beta, alpha
        self.index = index
        self.qnn_weights = torch.nn.Parameter(
            torch.empty(self.circuit.n_weights).uniform_(-math.pi, math.pi)
        )
        sizes = [self.n_qubits + 1, *widths]
        self.mapping = torch.nn.Sequential(
            *(torch.nn.Linear(a, b) for a, b in itertools.pairwise(sizes)),
            torch.nn.Linear(sizes[-1], chunk_size),
        )
        # As released (init_scale 1) the generated LoRA starts as large as the weights it
        # adapts (MiniLM, rank 8: |dW| 32 against |W0| 37), wrecking the pretrained model
        # before training starts; LoRA starts at zero (B = 0). A small output layer starts QPA
        # next to the base model too, and Adam's steps do not depend on the scale.
        with torch.no_grad():
            self.mapping[-1].weight.mul_(init_scale)
            self.mapping[-1].bias.mul_(init_scale)
        self._cached: torch.Tensor | None = None
        self._caching = False

    def chunk_inputs(self) -> torch.Tensor:
        """``[n_ch, N + 1]``: each chunk's index bits and its post-processed probability."""
        device = self.qnn_weights.device
        no_inputs = torch.zeros(1, 0, device=device, dtype=self.qnn_weights.dtype)
        probs = self.backend.expectations(self.circuit, no_inputs, self.qnn_weights)[0]
        kept = probs[: self.n_chunks].to(self.qnn_weights.dtype)
        scaled = self.gamma * 2 ** (self.n_qubits - 1) * kept
        x = (self.beta * torch.tanh(scaled)).clamp_min(1e-12) ** self.alpha
        x = x - x.mean()
        if self.index == "fixed":
            indices = torch.arange(self.n_chunks, device=device)
        else:  # the release: random basis-state bit strings on every call
            indices = torch.randint(0, 2**self.n_qubits, (self.n_chunks,), device=device)
        return torch.cat([index_bits(indices, self.n_qubits).to(x.dtype), x[:, None]], dim=1)

    def forward(self) -> torch.Tensor:
        """The ``n_values`` generated numbers (cached inside :meth:`sharing`)."""
        if self._caching and self._cached is not None:
            return self._cached
        values = self.mapping(self.chunk_inputs()).reshape(-1)[: self.n_values]
        values = values - values.mean()
        if self._caching:
            self._cached = values
        return values

    @contextmanager
    def sharing(self) -> Iterator[None]:
        """Generate once for every tensor read inside the block (one forward pass)."""
        self._caching, self._cached = True, None
        try:
            yield
        finally:
            self._caching, self._cached = False, None


class GeneratedSlice(torch.nn.Module):
    """A parametrization: the tensor's values are ``generator()[start : start + numel]``."""

    def __init__(self, generator: QPAGenerator, start: int, shape: torch.Size) -> None:
        super().__init__()
        self.generator = [generator]  # a list: not registered as a submodule of every tensor
        self.start = start
        self.shape = shape

    def forward(self, _original: torch.Tensor) -> torch.Tensor:
        values = self.generator[0]()
        count = math.prod(self.shape)
        return values[self.start : self.start + count].reshape(self.shape)


def lora_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every LoRA A and B linear layer of a peft model, in module order (their ``weight`` is
    what LoRA trains)."""
    found = []
    for name, module in model.named_modules():
        parts = name.split(".")  # peft: ...<target>.lora_A.<adapter name>
        if len(parts) >= 2 and parts[-2] in ("lora_A", "lora_B"):
            found.append(module)
    return found


def attach_generator(model: torch.nn.Module, generator: QPAGenerator) -> int:
    """Make every LoRA weight of ``model`` a slice of the generator's output; the original
    LoRA tensors stop training. Returns the number of values generated (``M``)."""
    start = 0
    for layer in lora_layers(model):
        tensor = layer.weight.requires_grad_(False)
        parametrize.register_parametrization(
            layer, "weight", GeneratedSlice(generator, start, tensor.shape), unsafe=True
        )
        start += tensor.numel()
    if start != generator.n_values:
        raise ValueError(f"the generator makes {generator.n_values} values, the LoRA has {start}")
    return start


def count_lora_values(model: torch.nn.Module) -> int:
    return sum(layer.weight.numel() for layer in lora_layers(model))
