"""QTHA: quantum tensor hybrid adaptation (Kong et al. 2025, arXiv 2503.12790; docs/methods.md §3).

The authors released no code; this is a documented *reconstruction* of their description. Each
adapted linear layer ``W0`` (frozen) becomes ``h = W0 x + s * dW(x)`` with ``s = alpha / rank``:

1. **Tensor branch**: ``z = D x``, a down-projection to ``rank`` whose weight is a matrix
   product operator (MPO): ``d_in`` and ``rank`` are each factored over ``cores`` cores, joined
   by bonds of dimension ``bond``.
2. **Quantum branch**: the first ``qubits`` entries of ``z`` are angle-encoded (RY) on
   ``qubits`` qubits, then ``layers`` layers of [trainable RY and RZ on every qubit, CNOT ring];
   ``q_i = <Z_i>``.
3. **Fusion**: ``f = F [z, q] + b``, a linear map ``rank + qubits -> rank``.
4. **Up-projection**: ``dW(x) = U f``, ``U`` an MPO ``rank -> d_out``, initialised to zero (its
   last core), so training starts from the base model as LoRA does.

Choices the paper leaves open, made here: raw ``z`` as angles (no squashing), RY encoding, the
fusion initialised as PyTorch initialises a ``Linear``, the same dropout on ``x`` as LoRA. The
quantum branch runs on every token, so the adapter cannot be merged into ``W0``: the adapted
model keeps it at inference, and its parameters are counted there.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

import torch

from qcompress.circuit import Circuit, CircuitBuilder, feature, z
from qcompress.interfaces import Backend


def factorize(n: int, parts: int) -> list[int]:
    """``n`` as ``parts`` integer factors, as balanced as its prime factors allow (largest
    first), e.g. ``factorize(384, 3) == [8, 8, 6]``, ``factorize(8, 3) == [2, 2, 2]``."""
    primes, rest, p = [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors = [1] * parts
    for prime in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= prime
    return sorted(factors, reverse=True)


class MPOLinear(torch.nn.Module):
    """A bias-free ``Linear(d_in -> d_out)`` whose weight is a matrix product operator: cores
    ``G_k [bond_{k-1}, out_k, in_k, bond_k]`` with ``prod(out_k) = d_out`` and
    ``prod(in_k) = d_in`` (outer bonds 1). The weight is contracted once per forward pass: it is
    small (``d_out x d_in`` with a low-rank side), and one ``F.linear`` then does the work."""

    def __init__(self, d_in: int, d_out: int, cores: int, bond: int, zero: bool = False) -> None:
        super().__init__()
        if cores > len(string.ascii_letters) // 3:
            raise ValueError(f"at most {len(string.ascii_letters) // 3} cores, got {cores}")
        self.d_in, self.d_out = d_in, d_out
        self.in_factors = factorize(d_in, cores)
        self.out_factors = factorize(d_out, cores)
        bonds = [1, *([bond] * (cores - 1)), 1]
        # Entries N(0, s^2) give weight entries of variance s^(2K) * bond^(K-1); choose s so
        # that this is 1/d_in (PyTorch's Linear scale).
        scale = (1.0 / (d_in * bond ** (cores - 1))) ** (1.0 / (2 * cores))
        self.cores = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(bonds[k], o, i, bonds[k + 1]) * scale)
            for k, (o, i) in enumerate(zip(self.out_factors, self.in_factors, strict=True))
        )
        if zero:
            torch.nn.init.zeros_(self.cores[-1])
        self._equation = self._contraction(cores)

    @staticmethod
    def _contraction(cores: int) -> str:
        """``einsum`` equation joining the cores into ``[out_1..out_K, in_1..in_K]``."""
        letters = iter(string.ascii_letters)
        bonds = [next(letters) for _ in range(cores + 1)]
        outs = [next(letters) for _ in range(cores)]
        ins = [next(letters) for _ in range(cores)]
        operands = [bonds[k] + outs[k] + ins[k] + bonds[k + 1] for k in range(cores)]
        return ",".join(operands) + "->" + bonds[0] + "".join(outs) + "".join(ins) + bonds[-1]

    def weight(self) -> torch.Tensor:
        return torch.einsum(self._equation, *self.cores).reshape(self.d_out, self.d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight())


def qtha_circuit(n_qubits: int, layers: int) -> Circuit:
    """RY(z_i) encoding, then ``layers`` x [RY(w), RZ(w) on every qubit, CNOT ring]; <Z_i>."""
    b = CircuitBuilder(n_qubits)
    for q in range(n_qubits):
        b.ry(q, feature(q))
    for _ in range(layers):
        for q in range(n_qubits):
            b.ry(q, b.new_weight())
            b.rz(q, b.new_weight())
        ring = [(q, (q + 1) % n_qubits) for q in range(n_qubits)] if n_qubits > 2 else []
        for control, target in ring or ([(0, 1)] if n_qubits == 2 else []):
            b.cnot(control, target)
    return b.build([z(q) for q in range(n_qubits)])


class QTHAAdapter(torch.nn.Module):
    """``dW(x)`` of one layer: MPO down, quantum branch, fusion, MPO up (see the module doc)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        backend: Backend,
        rank: int,
        qubits: int,
        layers: int,
        cores: int,
        bond: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 1 <= qubits <= rank:
            raise ValueError(f"qubits must be between 1 and rank ({rank}), got {qubits}")
        self.qubits = qubits
        self.dropout = torch.nn.Dropout(dropout)
        self.down = MPOLinear(d_in, rank, cores, bond)
        self.circuit = qtha_circuit(qubits, layers)
        self.backend = backend
        self.circuit_weights = torch.nn.Parameter(
            torch.empty(self.circuit.n_weights).uniform_(-math.pi, math.pi)
        )
        self.fusion = torch.nn.Linear(rank + qubits, rank)
        self.up = MPOLinear(rank, d_out, cores, bond, zero=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.down(self.dropout(x))
        rows = low.reshape(-1, low.shape[-1])
        quantum = self.backend.expectations(
            self.circuit, rows[:, : self.qubits], self.circuit_weights
        )
        quantum = quantum.to(low.dtype).reshape(*low.shape[:-1], self.qubits)
        return self.up(self.fusion(torch.cat([low, quantum], dim=-1)))


class QTHALinear(torch.nn.Module):
    """A frozen linear layer plus its QTHA adapter: ``base(x) + scale * adapter(x)``."""

    def __init__(self, base: torch.nn.Module, adapter: QTHAAdapter, scale: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.adapter = adapter
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.adapter(x)


def linear_shape(module: torch.nn.Module) -> tuple[int, int] | None:
    """``(d_in, d_out)`` of a linear layer: ``torch.nn.Linear`` or GPT-2's ``Conv1D`` (which
    stores its weight transposed); ``None`` for anything else."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return module.weight.shape[0], module.nf
    return None


def is_target(name: str, targets: Sequence[str]) -> bool:
    """Whether a module's name is a target or ends with ``.<target>`` (peft's rule)."""
    return any(name == t or name.endswith(f".{t}") for t in targets)


def matching_modules(
    model: torch.nn.Module, targets: Sequence[str]
) -> list[tuple[str, torch.nn.Module]]:
    """Linear layers whose name is a target or ends with ``.<target>`` (peft's rule)."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if is_target(name, targets) and linear_shape(module) is not None
    ]


def attach_qtha(
    model: torch.nn.Module, targets: Sequence[str], alpha: float, **adapter_settings: Any
) -> list[QTHALinear]:
    """Replace every target linear layer of ``model`` by a :class:`QTHALinear` scaled by
    ``alpha / rank``; ``adapter_settings`` are :class:`QTHAAdapter`'s (backend, rank, qubits,
    layers, cores, bond, dropout). Returns the new layers."""
    found = matching_modules(model, targets)
    if not found:
        raise ValueError(f"no linear layer of {type(model).__name__} matches {list(targets)}")
    wrapped = []
    for name, module in found:
        d_in, d_out = linear_shape(module)  # type: ignore[misc]
        adapter = QTHAAdapter(d_in, d_out, **adapter_settings)
        layer = QTHALinear(module, adapter, alpha / adapter_settings["rank"])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
        wrapped.append(layer)
    return wrapped


def lora_equivalent(model: torch.nn.Module, targets: Sequence[str], rank: int) -> int:
    """What LoRA of the same rank on the same layers would train: ``rank * (d_in + d_out)``
    per layer."""
    return sum(rank * sum(linear_shape(m)) for _, m in matching_modules(model, targets))  # type: ignore[arg-type]
