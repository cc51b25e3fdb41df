"""A :class:`~qcompress.circuit.Circuit` in other tools' terms: a qiskit ``QuantumCircuit`` with
parameter vectors, a cirq ``Circuit`` with sympy symbols, and OpenQASM 2 / 3 text with bound
values (for hardware, or for any tool that reads QASM).

qiskit and cirq are optional (``pip install qcompress[quantum]``); they are imported when an
exporter that needs them is called. The QASM writers need neither.

Qubit ``i`` of a qcompress circuit is qubit ``i`` in qiskit, cirq (``LineQubit(i)``) and QASM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from qcompress.circuit import Angle, Circuit, CircuitError, Gate, PauliString

QASM_NAMES = {"cnot": "cx"}
QISKIT_METHODS = {"cnot": "cx", "u3": "u"}  # qiskit 2 spells U3 as U


def _require(module: str, extra: str = "quantum") -> Any:
    try:
        return __import__(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CircuitError(
            f"this needs {module}, which is not installed; pip install 'qcompress[{extra}]'"
        ) from exc


# ---------------------------------------------------------------------------------------------
# qiskit


def to_qiskit(circuit: Circuit, *, measure: bool = False):
    """``(QuantumCircuit, inputs ParameterVector "x", weights ParameterVector "w")``; each
    angle is ``scale * parameter + offset``."""
    _require("qiskit")
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    x = ParameterVector("x", circuit.n_inputs)
    w = ParameterVector("w", circuit.n_weights)

    def value(a: Angle):
        if a.source == "constant":
            return a.offset
        p = x[a.at] if a.source == "input" else w[a.at]
        expr = p if a.scale == 1.0 else a.scale * p
        return expr if a.offset == 0.0 else expr + a.offset

    qc = QuantumCircuit(circuit.n_qubits)
    for gate in circuit.gates:
        name = QISKIT_METHODS.get(gate.name, gate.name)
        getattr(qc, name)(*[value(a) for a in gate.angles], *gate.qubits)
    if measure:
        qc.measure_all()
    return qc, x, w


def to_qiskit_angles(circuit: Circuit):
    """``(QuantumCircuit, ParameterVector "a")`` with one parameter per angle occurrence
    (the columns of :meth:`Circuit.angles`): what parameter shift needs to shift one gate."""
    _require("qiskit")
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    a = ParameterVector("a", circuit.n_angles)
    qc, k = QuantumCircuit(circuit.n_qubits), 0
    for gate in circuit.gates:
        name = QISKIT_METHODS.get(gate.name, gate.name)
        getattr(qc, name)(*[a[k + i] for i in range(len(gate.angles))], *gate.qubits)
        k += len(gate.angles)
    return qc, a


def to_qiskit_bound(circuit: Circuit, inputs: Sequence[float], weights: Sequence[float]):
    """A qiskit ``QuantumCircuit`` with every angle bound, for one sample."""
    _require("qiskit")
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(circuit.n_qubits)
    for gate in circuit.bind(inputs, weights):
        name = QISKIT_METHODS.get(gate.name, gate.name)
        getattr(qc, name)(*[a.offset for a in gate.angles], *gate.qubits)
    return qc


def qiskit_observable(readout: PauliString, n_qubits: int):
    """A ``SparsePauliOp`` for a Pauli-string readout (qiskit labels are little-endian)."""
    from qiskit.quantum_info import SparsePauliOp

    label = ["I"] * n_qubits
    for q, p in readout.paulis:
        label[n_qubits - 1 - q] = p
    return SparsePauliOp("".join(label))


# ---------------------------------------------------------------------------------------------
# cirq


def to_cirq(circuit: Circuit):
    """``(cirq.Circuit, qubits, input symbols, weight symbols)`` with sympy expressions as
    angles. Gate conventions match qiskit's up to global phases (U3), which no readout sees."""
    cirq = _require("cirq")
    import sympy

    qubits = cirq.LineQubit.range(circuit.n_qubits)
    x = sympy.symbols(f"x0:{circuit.n_inputs}") if circuit.n_inputs else ()
    w = sympy.symbols(f"w0:{circuit.n_weights}") if circuit.n_weights else ()

    def value(a: Angle):
        if a.source == "constant":
            return a.offset
        p = x[a.at] if a.source == "input" else w[a.at]
        return a.scale * p + a.offset

    ops = []
    for gate in circuit.gates:
        ops += cirq_operations(gate, [value(a) for a in gate.angles], qubits)
    return cirq.Circuit(ops), qubits, x, w


def cirq_operations(gate: Gate, angles: list, qubits: list) -> list:
    """The cirq operations of one gate, given its angle values (numbers or sympy)."""
    import cirq

    q = [qubits[i] for i in gate.qubits]
    name = gate.name
    if name == "rx":
        return [cirq.rx(angles[0]).on(*q)]
    if name == "ry":
        return [cirq.ry(angles[0]).on(*q)]
    if name == "rz":
        return [cirq.rz(angles[0]).on(*q)]
    if name == "u3":
        # U3(t, p, l) = e^{i(p+l)/2} RZ(p) RY(t) RZ(l): the global phase changes no
        # expectation or probability, so it is left out.
        t, p, lam = angles
        return [cirq.rz(lam).on(*q), cirq.ry(t).on(*q), cirq.rz(p).on(*q)]
    if name == "h":
        return [cirq.H.on(*q)]
    if name == "x":
        return [cirq.X.on(*q)]
    if name == "cnot":
        return [cirq.CNOT.on(*q)]
    if name == "cz":
        return [cirq.CZ.on(*q)]
    if name == "rzz":
        return [cirq.ZZPowGate(exponent=angles[0] / math.pi, global_shift=-0.5).on(*q)]
    if name in ("crx", "cry", "crz"):
        rot = {"crx": cirq.rx, "cry": cirq.ry, "crz": cirq.rz}[name](angles[0])
        return [rot.controlled().on(*q)]
    raise CircuitError(f"gate {gate}: no cirq translation for {name!r}")


# ---------------------------------------------------------------------------------------------
# OpenQASM


def _qasm_angle(angle: Angle) -> str:
    """A constant, or ``scale*x<i> + offset`` for an input left free (OpenQASM 3 inputs)."""
    if angle.source == "constant":
        return repr(float(angle.offset))
    if angle.source == "weight":
        raise CircuitError("OpenQASM export needs the weights bound")
    text = f"x{angle.index}" if angle.scale == 1.0 else f"{angle.scale!r}*x{angle.index}"
    return text if angle.offset == 0.0 else f"{text} + {angle.offset!r}"


def _qasm_gate(gate: Gate) -> str:
    name = QASM_NAMES.get(gate.name, gate.name)
    args = f"({', '.join(_qasm_angle(a) for a in gate.angles)})" if gate.angles else ""
    qubits = ", ".join(f"q[{i}]" for i in gate.qubits)
    return f"{name}{args} {qubits};"


# Gates missing from the standard include files (the original qelib1.inc of OpenQASM 2 has
# none of these three; stdgates.inc of OpenQASM 3 lacks rzz), defined as qiskit defines them.
_DEFINITIONS = {
    "rzz": "gate rzz(theta) a, b { cx a, b; rz(theta) b; cx a, b; }",
    "crx": "gate crx(theta) a, b { u1(pi/2) b; cx a, b; u3(-theta/2, 0, 0) b; cx a, b; "
           "u3(theta/2, -pi/2, 0) b; }",
    "cry": "gate cry(theta) a, b { ry(theta/2) b; cx a, b; ry(-theta/2) b; cx a, b; }",
}
_MISSING = {2: ("rzz", "crx", "cry"), 3: ("rzz",)}


def to_qasm(
    circuit: Circuit,
    inputs: Sequence[float] | None,
    weights: Sequence[float],
    *,
    version: int = 2,
    measure: bool = True,
) -> str:
    """OpenQASM 2 or 3 text of the circuit with its weights bound. With ``inputs``, every
    angle is bound for that one sample; with ``inputs=None`` (OpenQASM 3 only) the inputs stay
    free as ``input float[64] x0; ...`` declarations, so one file serves every sample (qiskit's
    ``qasm3.loads`` reads them as parameters). With ``measure``, every qubit is measured in the
    Z basis (Pauli readouts other than Z need a basis change that the reader adds)."""
    if version not in (2, 3):
        raise CircuitError(f"OpenQASM version must be 2 or 3, got {version}")
    if inputs is None and version == 2:
        raise CircuitError("OpenQASM 2 has no inputs: bind them, or export OpenQASM 3")
    if inputs is None:
        gates = list(circuit.bind_weights(weights).gates)
        declarations = [f"input float[64] x{i};" for i in range(circuit.n_inputs)]
    else:
        gates, declarations = circuit.bind(inputs, weights), []
    n = circuit.n_qubits
    used = {g.name for g in gates}
    definitions = [_DEFINITIONS[name] for name in _MISSING[version] if name in used]
    if version == 2:
        lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', *definitions, f"qreg q[{n}];"]
        if measure:
            lines.append(f"creg c[{n}];")
    else:
        lines = ["OPENQASM 3.0;", 'include "stdgates.inc";', *definitions, *declarations,
                 f"qubit[{n}] q;"]
        if measure:
            lines.append(f"bit[{n}] c;")
    lines += [_qasm_gate(g) for g in gates]
    if measure:
        lines.append("measure q -> c;" if version == 2 else "c = measure q;")
    return "\n".join(lines) + "\n"
