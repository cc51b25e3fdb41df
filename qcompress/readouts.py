"""What a circuit reads out: Pauli-string expectations and basis-state probabilities, and how
backends that sample compute them from measured probabilities. Qubit 0 is the most significant
bit of a basis-state index (big-endian), as everywhere in qcompress."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from qcompress.errors import CircuitError

if TYPE_CHECKING:
    from qcompress.circuit import Circuit


@dataclass(frozen=True)
class PauliString:
    """Expectation of a Pauli product, e.g. ``{0: "Z"}`` for <Z_0> or ``{0: "X", 3: "Y"}``."""

    paulis: tuple[tuple[int, str], ...]

    width = 1

    def __str__(self) -> str:
        return "".join(f"{p}{q}" for q, p in self.paulis) or "I"


@dataclass(frozen=True)
class Probabilities:
    """Probabilities of the basis states of ``qubits`` (big-endian: the first qubit listed is
    the most significant bit): ``2 ** len(qubits)`` outputs."""

    qubits: tuple[int, ...]

    @property
    def width(self) -> int:
        return 2 ** len(self.qubits)

    def __str__(self) -> str:
        return f"P{list(self.qubits)}"


Readout = PauliString | Probabilities


def pauli(spec: dict[int, str] | str) -> PauliString:
    """A Pauli-string readout from ``{qubit: "X"|"Y"|"Z"}`` or a string like ``"ZIZ"``."""
    items = spec.items() if isinstance(spec, dict) else enumerate(spec)
    paulis = tuple(sorted((int(q), p.upper()) for q, p in items if p.upper() != "I"))
    for _, p in paulis:
        if p not in "XYZ":
            raise CircuitError(f"Pauli readout: unknown Pauli {p!r}; expected X, Y, Z or I.")
    return PauliString(paulis)


def z(qubit: int) -> PauliString:
    return PauliString(((qubit, "Z"),))


def probabilities(qubits: Iterable[int]) -> Probabilities:
    return Probabilities(tuple(qubits))


def needs_basis_change(readout: Readout) -> bool:
    """Whether a readout has X or Y factors: sampling it needs a basis change first."""
    return isinstance(readout, PauliString) and any(p != "Z" for _, p in readout.paulis)


def diagonal_readout(readout: Readout, n_qubits: int, probs: torch.Tensor) -> torch.Tensor:
    """One readout ``[B, width]`` from basis-state probabilities ``[B, 2**n]`` (big-endian),
    for backends that sample: a Pauli string counts as the Z string on its qubits (its basis
    change is the caller's, done before measuring)."""
    batch = probs.shape[0]
    if isinstance(readout, Probabilities):
        x = probs.reshape([batch] + [2] * n_qubits)
        drop = [1 + q for q in range(n_qubits) if q not in readout.qubits]
        x = x.sum(dim=drop) if drop else x
        order = sorted(readout.qubits)
        x = x.permute([0] + [1 + order.index(q) for q in readout.qubits])
        return x.reshape(batch, -1)
    index = torch.arange(2**n_qubits, device=probs.device)
    parity = torch.zeros_like(index)
    for q, _ in readout.paulis:
        parity ^= (index >> (n_qubits - 1 - q)) & 1
    return (probs * (1 - 2 * parity).to(probs.dtype)).sum(1, keepdim=True)


def diagonal_readouts(circuit: Circuit, probs: torch.Tensor) -> torch.Tensor:
    """Every readout of the circuit, ``[B, m]``, by :func:`diagonal_readout`."""
    return torch.cat([diagonal_readout(r, circuit.n_qubits, probs) for r in circuit.readouts], 1)
