"""A backend-neutral description of a parametrised quantum circuit.

Every quantum method in qcompress builds one :class:`Circuit` and hands it to a backend. A circuit
is a list of gates on ``n_qubits`` qubits, then a list of readouts. Each gate angle is a constant,
an input feature or a trainable weight, with an optional ``scale * source + offset``.

Conventions (shared by every backend, exporter and test):

- gates follow qiskit's definitions: ``RX(t) = exp(-i t X / 2)``, ``RZZ(t) = exp(-i t Z⊗Z / 2)``,
  ``U3(t, p, l) = [[cos(t/2), -e^{il} sin(t/2)], [e^{ip} sin(t/2), e^{i(p+l)} cos(t/2)]]``;
- basis-state indices are big-endian: qubit 0 is the most significant bit, as in the state
  tensor ``[B, 2, ..., 2]`` whose axis 1 is qubit 0 (qiskit's own indices are little-endian;
  its backend converts).

A backend evaluates a circuit on *bound angles*: one value per angle occurrence, computed by
:meth:`Circuit.angles` from the inputs and weights. That is what lets the parameter-shift rule
(:mod:`qcompress.gradients`) shift one gate at a time, even where weights are shared.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from qcompress.errors import CircuitError
from qcompress.readouts import (  # re-exported: circuits are built with their readouts
    PauliString,
    Probabilities,
    Readout,
    diagonal_readout,
    diagonal_readouts,
    needs_basis_change,
    pauli,
    probabilities,
    z,
)

__all__ = [
    "GATES",
    "Angle",
    "Circuit",
    "CircuitBuilder",
    "CircuitError",
    "Gate",
    "GateSpec",
    "PauliString",
    "Probabilities",
    "Readout",
    "constant",
    "diagonal_readout",
    "diagonal_readouts",
    "feature",
    "needs_basis_change",
    "pauli",
    "probabilities",
    "weight",
    "z",
]


@dataclass(frozen=True)
class GateSpec:
    """What a gate is: how many qubits and angles it takes, and its structure."""

    qubits: int
    angles: int
    kind: Literal["one-qubit", "diagonal", "permutation", "two-qubit"]
    # The parameter-shift rule that differentiates each of its angles: "two-term" for Pauli
    # rotations (generator eigenvalues +-1/2), "four-term" for controlled rotations (0, +-1/2).
    shift_rule: Literal["two-term", "four-term"] | None = None


GATES: dict[str, GateSpec] = {
    "rx": GateSpec(1, 1, "one-qubit", "two-term"),
    "ry": GateSpec(1, 1, "one-qubit", "two-term"),
    "rz": GateSpec(1, 1, "diagonal", "two-term"),
    "u3": GateSpec(1, 3, "one-qubit", "two-term"),
    "h": GateSpec(1, 0, "one-qubit"),
    "x": GateSpec(1, 0, "permutation"),
    "cnot": GateSpec(2, 0, "permutation"),
    "cz": GateSpec(2, 0, "diagonal"),
    "rzz": GateSpec(2, 1, "diagonal", "two-term"),
    "crx": GateSpec(2, 1, "two-qubit", "four-term"),
    "cry": GateSpec(2, 1, "two-qubit", "four-term"),
    "crz": GateSpec(2, 1, "diagonal", "four-term"),
}


@dataclass(frozen=True)
class Angle:
    """One gate angle: ``scale * source + offset``, the source being a constant (``index`` is
    None, the constant is ``offset``), input feature ``index`` or trainable weight ``index``."""

    source: Literal["constant", "input", "weight"]
    index: int | None = None
    scale: float = 1.0
    offset: float = 0.0

    @property
    def at(self) -> int:
        """The input or weight index (a constant has none)."""
        if self.index is None:
            raise CircuitError(f"angle {self}: a constant has no index")
        return self.index

    def __str__(self) -> str:
        if self.source == "constant":
            return f"{self.offset:g}"
        name = f"{'x' if self.source == 'input' else 'w'}[{self.index}]"
        scaled = name if self.scale == 1.0 else f"{self.scale:g}*{name}"
        return scaled if self.offset == 0.0 else f"{scaled}+{self.offset:g}"


def constant(value: float) -> Angle:
    return Angle("constant", None, 0.0, float(value))


def _all_finite(values: torch.Tensor) -> bool:
    # numpy for CPU floats: a few µs where torch's isfinite/all/any took ~20, and on a
    # 2-core machine delayed the compiled kernel that runs next by ~40 µs more (measured)
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(values.detach().numpy()).all())
    return bool(torch.isfinite(values).all())


def feature(index: int, scale: float = 1.0, offset: float = 0.0) -> Angle:
    """Input feature ``index`` of each sample (angle encoding)."""
    return Angle("input", index, float(scale), float(offset))


def weight(index: int, scale: float = 1.0, offset: float = 0.0) -> Angle:
    """Trainable weight ``index`` of the circuit."""
    return Angle("weight", index, float(scale), float(offset))


@dataclass(frozen=True)
class Gate:
    name: str
    qubits: tuple[int, ...]
    angles: tuple[Angle, ...] = ()

    @property
    def spec(self) -> GateSpec:
        return GATES[self.name]

    def __str__(self) -> str:
        args = f"({', '.join(map(str, self.angles))})" if self.angles else ""
        return f"{self.name}{args} q{list(self.qubits)}"


@dataclass(frozen=True)
class Circuit:
    """A validated circuit. Build one with :class:`CircuitBuilder`."""

    n_qubits: int
    gates: tuple[Gate, ...]
    readouts: tuple[Readout, ...]
    n_inputs: int
    n_weights: int
    _fingerprint: str = field(default="", compare=False, repr=False)
    # (device, dtype) -> (index, scale, offset): built once, not per forward pass
    _tables: dict = field(default_factory=dict, compare=False, repr=False)

    # -- shape -----------------------------------------------------------------------------

    @property
    def n_outputs(self) -> int:
        return sum(r.width for r in self.readouts)

    @property
    def n_angles(self) -> int:
        """Angle occurrences: the columns of :meth:`angles`."""
        return sum(len(g.angles) for g in self.gates)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def depth(self) -> int:
        """Circuit depth: the longest chain of gates that share a qubit."""
        level = [0] * self.n_qubits
        for gate in self.gates:
            top = max(level[q] for q in gate.qubits) + 1
            for q in gate.qubits:
                level[q] = top
        return max(level, default=0)

    def count(self, *, qubits: int) -> int:
        """Number of gates acting on exactly ``qubits`` qubits."""
        return sum(1 for g in self.gates if len(g.qubits) == qubits)

    def describe(self) -> dict[str, int]:
        return {
            "qubits": self.n_qubits,
            "circuit_parameters": self.n_weights,
            "inputs": self.n_inputs,
            "gates": len(self.gates),
            "two_qubit_gates": self.count(qubits=2),
            "depth": self.depth(),
            "outputs": self.n_outputs,
        }

    # -- binding ---------------------------------------------------------------------------

    def angles(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Bound angles ``[B, n_angles]``, one column per angle occurrence in gate order;
        differentiable in inputs and weights."""
        self.check(inputs, weights)
        table = self.angle_table(inputs.device)
        batch = inputs.shape[0]
        dtype = torch.promote_types(inputs.dtype, weights.dtype)
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
        # One source row per sample: [inputs | weights | 1], then a sparse affine map.
        sources = torch.cat(
            [
                inputs.to(dtype),
                weights.to(dtype).unsqueeze(0).expand(batch, -1),
                torch.ones(batch, 1, dtype=dtype, device=inputs.device),
            ],
            dim=1,
        )
        index, scale, offset = table
        return sources[:, index] * scale.to(dtype) + offset.to(dtype)

    def angle_table(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """How :meth:`angles` binds: per angle occurrence, its source column in
        ``[inputs | weights | 1]`` (long), scale and offset (float64); the angle is
        ``source * scale + offset``. Backends that bind angles themselves read it."""
        if str(device) not in self._tables:
            self._tables[str(device)] = self._build_angle_table(device)
        return self._tables[str(device)]

    def _build_angle_table(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        ones_column = self.n_inputs + self.n_weights
        index, scale, offset = [], [], []
        for gate in self.gates:
            for angle in gate.angles:
                if angle.source == "input":
                    index.append(angle.at)
                elif angle.source == "weight":
                    index.append(self.n_inputs + angle.at)
                else:
                    index.append(ones_column)
                scale.append(angle.scale)
                offset.append(angle.offset)
        return (
            torch.tensor(index, dtype=torch.long, device=device),
            torch.tensor(scale, dtype=torch.float64, device=device),
            torch.tensor(offset, dtype=torch.float64, device=device),
        )

    def check(self, inputs: torch.Tensor, weights: torch.Tensor) -> None:
        """Clear errors for inputs a backend cannot run: wrong widths, NaN or infinite angles
        (naming the first gate that would receive one)."""
        if inputs.dim() != 2 or inputs.shape[1] != self.n_inputs:
            raise CircuitError(
                f"circuit inputs: expected a [batch, {self.n_inputs}] tensor, "
                f"got shape {list(inputs.shape)}"
            )
        if weights.dim() != 1 or weights.shape[0] != self.n_weights:
            raise CircuitError(
                f"circuit weights: expected a vector of {self.n_weights} values, "
                f"got shape {list(weights.shape)}"
            )
        if _all_finite(inputs) and _all_finite(weights):
            return
        bad_inputs = ~torch.isfinite(inputs).all(dim=0)
        bad_weights = ~torch.isfinite(weights)
        for gate in self.gates:
            for angle in gate.angles:
                if (angle.source == "input" and bad_inputs[angle.index]) or (
                    angle.source == "weight" and bad_weights[angle.index]
                ):
                    where = "input feature" if angle.source == "input" else "weight"
                    raise CircuitError(
                        f"gate {gate}: {where} {angle.index} is NaN or infinite; "
                        "angles must be finite numbers"
                    )
        raise CircuitError("circuit inputs or weights contain NaN or infinite values")

    def bind(self, inputs: Sequence[float], weights: Sequence[float]) -> list[Gate]:
        """The gates with every angle replaced by its constant value for one sample."""
        row = self.angles(
            torch.as_tensor([list(inputs)], dtype=torch.float64).reshape(1, self.n_inputs),
            torch.as_tensor(list(weights), dtype=torch.float64),
        )[0].tolist()
        bound, k = [], 0
        for gate in self.gates:
            values = row[k : k + len(gate.angles)]
            k += len(gate.angles)
            bound.append(Gate(gate.name, gate.qubits, tuple(constant(v) for v in values)))
        return bound

    def bind_weights(self, weights: Sequence[float]) -> Circuit:
        """The same circuit with its weights fixed (a trained circuit): weight angles become
        constants, input angles stay inputs."""
        values = torch.as_tensor(list(weights), dtype=torch.float64).reshape(-1).tolist()
        if len(values) != self.n_weights:
            raise CircuitError(f"expected {self.n_weights} weights, got {len(values)}")
        builder = CircuitBuilder(self.n_qubits)
        for gate in self.gates:
            angles = [
                constant(a.scale * values[a.at] + a.offset) if a.source == "weight" else a
                for a in gate.angles
            ]
            builder.add(gate.name, gate.qubits, angles)
        return builder.build(self.readouts, self.n_inputs)

    def inert_weights(self) -> list[int]:
        """Weights that cannot change any readout, whatever their value.

        A diagonal gate (RZ, RZZ, CRZ) only changes phases of basis states. Moved towards the
        readout it stays diagonal: it commutes with other diagonal gates and with any gate on
        other qubits, and a permutation gate (CNOT, X) that shares a qubit with it turns it
        into another diagonal gate on the union of their qubits. If it reaches the readouts
        that way and every readout is diagonal (Z strings, probabilities), its phases never
        show: the weight's gradient is exactly zero. Any other gate on its qubits stops it.
        A weight is inert when every gate it appears in is."""
        if any(needs_basis_change(r) for r in self.readouts):
            return []
        inert: set[int] = set()
        live: set[int] = set()
        for position, gate in enumerate(self.gates):
            weights = {angle.at for angle in gate.angles if angle.source == "weight"}
            if not weights:
                continue
            if GATES[gate.name].kind == "diagonal" and self._phase_reaches_readout(position):
                inert |= weights
            else:
                live |= weights
        return sorted(inert - live)

    def _phase_reaches_readout(self, position: int) -> bool:
        """Whether the diagonal gate at ``position`` stays diagonal up to the readouts."""
        support = set(self.gates[position].qubits)
        for gate in self.gates[position + 1 :]:
            kind = GATES[gate.name].kind
            if kind == "diagonal" or support.isdisjoint(gate.qubits):
                continue
            if kind != "permutation":
                return False
            support |= set(gate.qubits)
        return True

    def __str__(self) -> str:
        lines = [f"Circuit({self.n_qubits} qubits, {self.n_inputs} inputs, "
                 f"{self.n_weights} weights)"]
        lines += [f"  {g}" for g in self.gates]
        lines.append(f"  readout: {', '.join(map(str, self.readouts))}")
        return "\n".join(lines)


class CircuitBuilder:
    """Builds a :class:`Circuit` gate by gate, checking each gate as it is added.

    >>> b = CircuitBuilder(2)
    >>> b.rx(0, feature(0)).ry(1, b.new_weight()).cnot(0, 1)
    >>> circuit = b.build([z(0), z(1)])
    """

    def __init__(self, n_qubits: int) -> None:
        if not isinstance(n_qubits, int) or n_qubits < 1:
            raise CircuitError(f"a circuit needs at least one qubit, got {n_qubits!r}")
        self.n_qubits = n_qubits
        self.gates: list[Gate] = []
        self._weights = 0

    def new_weight(self, scale: float = 1.0, offset: float = 0.0) -> Angle:
        """A fresh trainable weight (the next index)."""
        self._weights += 1
        return weight(self._weights - 1, scale, offset)

    def add(self, name: str, qubits: Sequence[int], angles: Sequence[Angle | float] = ()) -> None:
        spec = GATES.get(name)
        if spec is None:
            raise CircuitError(f"unknown gate {name!r}; known gates: {', '.join(GATES)}")
        where = f"gate {name} on qubits {list(qubits)}"
        if len(qubits) != spec.qubits:
            raise CircuitError(f"{where}: expected {spec.qubits} qubit(s), got {len(qubits)}")
        for q in qubits:
            if not isinstance(q, int) or not 0 <= q < self.n_qubits:
                raise CircuitError(
                    f"{where}: qubit {q!r} is out of range; this circuit has qubits "
                    f"0..{self.n_qubits - 1}"
                )
        if len(set(qubits)) != len(qubits):
            raise CircuitError(f"{where}: a gate's qubits must be distinct")
        if len(angles) != spec.angles:
            raise CircuitError(f"{where}: expected {spec.angles} angle(s), got {len(angles)}")
        resolved = tuple(a if isinstance(a, Angle) else constant(a) for a in angles)
        for a in resolved:
            if not all(map(math.isfinite, (a.scale, a.offset))):
                raise CircuitError(f"{where}: angle {a} is NaN or infinite")
            if a.source != "constant" and (not isinstance(a.index, int) or a.index < 0):
                raise CircuitError(f"{where}: angle {a} needs a non-negative {a.source} index")
            if a.source == "weight":
                self._weights = max(self._weights, a.at + 1)
        self.gates.append(Gate(name, tuple(qubits), resolved))

    # One method per gate, so circuits read like circuits.
    def rx(self, q: int, a: Angle | float) -> CircuitBuilder:
        self.add("rx", [q], [a])
        return self

    def ry(self, q: int, a: Angle | float) -> CircuitBuilder:
        self.add("ry", [q], [a])
        return self

    def rz(self, q: int, a: Angle | float) -> CircuitBuilder:
        self.add("rz", [q], [a])
        return self

    def u3(self, q: int, theta: Angle | float, phi: Angle | float, lam: Angle | float):
        self.add("u3", [q], [theta, phi, lam])
        return self

    def h(self, q: int) -> CircuitBuilder:
        self.add("h", [q])
        return self

    def x(self, q: int) -> CircuitBuilder:
        self.add("x", [q])
        return self

    def cnot(self, control: int, target: int) -> CircuitBuilder:
        self.add("cnot", [control, target])
        return self

    def cz(self, a: int, b: int) -> CircuitBuilder:
        self.add("cz", [a, b])
        return self

    def rzz(self, a: int, b: int, angle: Angle | float) -> CircuitBuilder:
        self.add("rzz", [a, b], [angle])
        return self

    def crx(self, control: int, target: int, angle: Angle | float) -> CircuitBuilder:
        self.add("crx", [control, target], [angle])
        return self

    def cry(self, control: int, target: int, angle: Angle | float) -> CircuitBuilder:
        self.add("cry", [control, target], [angle])
        return self

    def crz(self, control: int, target: int, angle: Angle | float) -> CircuitBuilder:
        self.add("crz", [control, target], [angle])
        return self

    def build(self, readouts: Iterable[Readout], n_inputs: int | None = None) -> Circuit:
        """The finished circuit. ``n_inputs`` defaults to one past the highest feature used."""
        readouts = tuple(readouts)
        if not readouts:
            raise CircuitError("a circuit needs at least one readout")
        for r in readouts:
            qubits = [q for q, _ in r.paulis] if isinstance(r, PauliString) else list(r.qubits)
            bad = [q for q in qubits if not 0 <= q < self.n_qubits]
            if bad or len(set(qubits)) != len(qubits):
                raise CircuitError(
                    f"readout {r}: qubits must be distinct and in 0..{self.n_qubits - 1}"
                )
        used = [a.at for g in self.gates for a in g.angles if a.source == "input"]
        needed = max(used, default=-1) + 1
        if n_inputs is None:
            n_inputs = needed
        elif n_inputs < needed:
            raise CircuitError(f"n_inputs={n_inputs}, but the gates read feature {needed - 1}")
        gates = tuple(self.gates)
        digest = hashlib.sha256(
            repr((self.n_qubits, gates, readouts, n_inputs, self._weights)).encode()
        ).hexdigest()[:16]
        return Circuit(self.n_qubits, gates, readouts, n_inputs, self._weights, digest)
