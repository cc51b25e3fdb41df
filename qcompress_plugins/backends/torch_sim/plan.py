"""Compiles a :class:`~qcompress.circuit.Circuit` into a short list of fused stages.

Speed on a statevector comes from touching the state as few times as possible. The plan:

1. **Product state.** One-qubit gates that act on a qubit before any two-qubit gate touches it
   (angle encoding, and more) are applied to that qubit's |0>; the start state is the Kronecker
   product of the resulting 2-vectors, built in one sweep instead of one pass per gate.
2. **Reordering.** Gates move earlier past gates they commute with (disjoint qubits, or both
   diagonal), so gates of one kind gather into one stage.
3. **Stages.** Diagonal gates (RZ, RZZ, CZ, CRZ) become one phase vector; CNOTs one index
   permutation; the one-qubit gates on each qubit multiply into one 2x2, and neighbouring
   qubits' 2x2s into Kronecker blocks of up to ``block_qubits`` qubits (one matmul each).
4. **Readout absorption.** When every readout is diagonal (<Z...>, probabilities), trailing
   permutations are folded into the readout and trailing diagonal stages dropped: neither
   changes a basis-state probability.

Each fusion can be switched off (:class:`Fusions`), which is how ``benchmarks/`` measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from qcompress.circuit import Circuit, Gate, PauliString, Probabilities


@dataclass(frozen=True)
class Fusions:
    product_state: bool = True
    reorder: bool = True
    diagonal: bool = True
    permutation: bool = True
    one_qubit: bool = True
    block_qubits: int = 4
    absorb_readout: bool = True


@dataclass
class Stage:
    kind: str  # "diagonal" | "permutation" | "one-qubit" | "two-qubit"
    gates: list[tuple[int, Gate]] = field(default_factory=list)  # (gate position, gate)


@dataclass
class Plan:
    circuit: Circuit
    # Per qubit, the gates (positions) applied to |0> to build the product start state.
    prefix: list[list[int]]
    stages: list[Stage]
    # Trailing permutation absorbed into the readout (index map), or None.
    readout_permutation: np.ndarray | None
    angle_offsets: list[int]  # first angle column of each gate


# one-qubit gates whose 2x2 is real: a chain of only these multiplies into a real matrix,
# which both kernels apply with half the arithmetic of a complex one
REAL_GATES = frozenset({"ry", "h", "x"})


def _stage_kind(gate: Gate) -> str:
    # X is a permutation, but as a 2x2 it multiplies into its qubit's one-qubit stage.
    return "one-qubit" if gate.name == "x" else gate.spec.kind


def _commute(a: Gate, b: Gate) -> bool:
    if not set(a.qubits) & set(b.qubits):
        return True
    return a.spec.kind == "diagonal" and b.spec.kind == "diagonal"


def _merges(kind: str, fusions: Fusions) -> bool:
    return {
        "diagonal": fusions.diagonal,
        "permutation": fusions.permutation,
        "one-qubit": fusions.one_qubit,
        "two-qubit": False,
    }[kind]


def compile_plan(circuit: Circuit, fusions: Fusions = Fusions()) -> Plan:
    gates = list(enumerate(circuit.gates))
    offsets, k = [], 0
    for _, g in gates:
        offsets.append(k)
        k += len(g.angles)

    prefix: list[list[int]] = [[] for _ in range(circuit.n_qubits)]
    rest: list[tuple[int, Gate]] = []
    entangled: set[int] = set()
    for pos, g in gates:
        if fusions.product_state and len(g.qubits) == 1 and g.qubits[0] not in entangled:
            prefix[g.qubits[0]].append(pos)
        else:
            entangled.update(g.qubits)
            rest.append((pos, g))

    stages: list[Stage] = []
    for pos, g in rest:
        kind = _stage_kind(g)
        if not _merges(kind, fusions):
            stages.append(Stage(kind, [(pos, g)]))
            continue
        target, insert_at = None, len(stages)
        for i in range(len(stages) - 1, -1, -1):
            stage = stages[i]
            commutes = all(_commute(g, other) for _, other in stage.gates)
            if stage.kind == kind and _merges(kind, fusions):
                target = i
            if not commutes or not fusions.reorder:
                insert_at = i + 1
                break
            insert_at = i
        if target is not None:
            stages[target].gates.append((pos, g))
        else:
            stages.insert(insert_at, Stage(kind, [(pos, g)]))

    readout_permutation = None
    diagonal_readouts = all(
        isinstance(r, Probabilities) or all(p == "Z" for _, p in r.paulis)
        for r in circuit.readouts
    )
    if fusions.absorb_readout and diagonal_readouts:
        index = np.arange(2**circuit.n_qubits)
        while stages and stages[-1].kind in ("diagonal", "permutation"):
            stage = stages.pop()
            if stage.kind == "permutation":
                # State after = state[:, perm]; compose with what comes later (applied last).
                perm = permutation_index(circuit.n_qubits, [g for _, g in stage.gates])
                index = perm[index]
        identity = bool((index == np.arange(index.size)).all())
        readout_permutation = None if identity else index
    return Plan(circuit, prefix, stages, readout_permutation, offsets)


def _bit(n_qubits: int, qubit: int) -> int:
    # Big-endian: qubit 0 is the most significant bit of a basis index.
    return 1 << (n_qubits - 1 - qubit)


def permutation_index(n_qubits: int, gates: list[Gate]) -> np.ndarray:
    """``perm`` such that the state after the CNOTs is ``state[:, perm]``."""
    basis = np.arange(2**n_qubits)
    index = basis
    for g in gates:  # applied in order: compose each gate's source map
        control, target = _bit(n_qubits, g.qubits[0]), _bit(n_qubits, g.qubits[1])
        index = index[np.where(basis & control, basis ^ target, basis)]
    return index


def basis_bits(n_qubits: int, device: torch.device) -> torch.Tensor:
    """``[2**n, n]`` 0/1 matrix: bit of each qubit in each basis index."""
    idx = torch.arange(2**n_qubits, device=device)
    shifts = torch.arange(n_qubits - 1, -1, -1, device=device)
    return (idx[:, None] >> shifts[None, :]) & 1


def phase_per_angle(gate: Gate, bits: torch.Tensor) -> torch.Tensor:
    """``[2**n]``: a diagonal rotation (RZ, RZZ, CRZ) multiplies basis state i by
    ``exp(i * angle * phase_per_angle[i])``; ``bits`` is :func:`basis_bits`."""
    q = gate.qubits

    def z(qubit: int) -> torch.Tensor:  # one column: all of them cost seconds at 20 qubits
        return 1 - 2 * bits[:, qubit]

    if gate.name == "rz":
        return -0.5 * z(q[0])
    if gate.name == "rzz":
        return -0.5 * z(q[0]) * z(q[1])
    if gate.name == "crz":
        return -0.5 * bits[:, q[0]] * z(q[1])
    raise ValueError(f"not a diagonal rotation: {gate.name}")


def cz_phase(gate: Gate, bits: torch.Tensor) -> torch.Tensor:
    """``[2**n]``: the phase CZ gives each basis state (pi where both qubits are 1)."""
    return math.pi * bits[:, gate.qubits[0]] * bits[:, gate.qubits[1]]


def z_signs(n_qubits: int, device: torch.device) -> torch.Tensor:
    """``[2**n, n]`` matrix of +1/-1: the Z eigenvalue of each qubit in each basis state."""
    return 1 - 2 * basis_bits(n_qubits, device)


def readout_tables(circuit: Circuit, device: torch.device) -> list:
    """Per readout, what the executor needs: for Z strings the +-1 sign vector, for other
    Pauli strings (flip index, coefficient), for probabilities the qubits."""
    signs = z_signs(circuit.n_qubits, device)
    tables = []
    n = circuit.n_qubits
    for r in circuit.readouts:
        if isinstance(r, Probabilities):
            tables.append(("probabilities", r.qubits))
        elif all(p == "Z" for _, p in r.paulis):
            vec = torch.ones(2**n, dtype=torch.long, device=device)
            for q, _ in r.paulis:
                vec = vec * signs[:, q]
            tables.append(("z", vec))
        else:
            tables.append(("pauli", _pauli_action(n, r, device)))
    return tables


def _pauli_action(n: int, r: PauliString, device: torch.device):
    """(source index, coefficient) with (P psi)[j] = coeff[j] * psi[source[j]]."""
    flip = 0
    for q, p in r.paulis:
        if p in "XY":
            flip |= _bit(n, q)
    source = torch.arange(2**n, device=device) ^ flip
    bits = basis_bits(n, device)
    coeff = torch.ones(2**n, dtype=torch.complex128, device=device)
    for q, p in r.paulis:
        b = bits[source, q]  # bit of the qubit in the basis state P acts on
        if p == "Z":
            coeff = coeff * (1 - 2 * b)
        elif p == "Y":  # Y|0> = i|1>, Y|1> = -i|0>
            coeff = coeff * torch.where(b == 0, 1j, -1j)
    return source, coeff
