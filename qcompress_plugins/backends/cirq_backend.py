"""``cirq``: runs a circuit with cirq, exactly (``Simulator``, state vector) or with shots,
optionally with depolarizing noise on every gate and bit-flip readout error. Gradients by
parameter shift.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from qcompress.circuit import Circuit, diagonal_readout, needs_basis_change
from qcompress.errors import QcompressError
from qcompress.export import cirq_operations
from qcompress.gradients import exact_training_advice, parameter_shift
from qcompress.hookspecs import hookimpl
from qcompress.interfaces import Backend, BackendInfo, PluginConfig


class CirqConfig(PluginConfig):
    shots: int | None = Field(None, ge=1, le=10_000_000, description="None: exact expectations")
    depolarizing: float = Field(0.0, ge=0, le=1, description="depolarizing error per gate")
    readout_error: float = Field(0.0, ge=0, le=0.5, description="bit-flip at measurement")
    seed: int = Field(default=0, ge=0, le=4_294_967_295)

    @model_validator(mode="after")
    def _noise_needs_shots(self):
        if (self.depolarizing or self.readout_error) and self.shots is None:
            raise ValueError("noise (depolarizing, readout_error) needs shots, e.g. 1024")
        return self


class CirqBackend(Backend):
    Config = CirqConfig
    description = "cirq Simulator: exact or shots, depolarizing noise; parameter shift"

    @classmethod
    def requirements(cls, config: CirqConfig) -> dict[str, str]:
        return {"cirq": "pip install 'qcompress[quantum]'"}

    def __init__(self, config: CirqConfig | None = None) -> None:
        super().__init__(config or CirqConfig())
        try:
            import cirq
        except ImportError as exc:
            raise QcompressError(
                "backend cirq needs cirq: pip install 'qcompress[quantum]'"
            ) from exc
        self._cirq = cirq
        self._rng = np.random.default_rng(self.config.seed)

    @classmethod
    def training_warnings(cls, config: CirqConfig) -> list[str]:
        if config.shots is None:
            return [exact_training_advice("cirq")]
        return []

    def run(self, circuit: Circuit, angles: torch.Tensor) -> torch.Tensor:
        return parameter_shift(self._evaluate, circuit, angles, exact=self.config.shots is None)

    def info(self) -> BackendInfo:
        c = self.config
        noise = None
        if c.depolarizing or c.readout_error:
            noise = f"depolarizing({c.depolarizing}, readout={c.readout_error})"
        return BackendInfo(name="cirq", device="cpu", exact=c.shots is None, shots=c.shots,
                           noise=noise, gradient="parameter-shift", dtype="complex64")

    # -- evaluation -------------------------------------------------------------------------

    def _bound(self, circuit: Circuit, row: np.ndarray):
        qubits = self._cirq.LineQubit.range(circuit.n_qubits)
        ops, k = [], 0
        for gate in circuit.gates:
            values = [float(v) for v in row[k : k + len(gate.angles)]]
            k += len(gate.angles)
            ops += cirq_operations(gate, values, qubits)
        return self._cirq.Circuit(ops), qubits

    def _evaluate(self, circuit: Circuit, angles: torch.Tensor) -> torch.Tensor:
        rows = angles.detach().cpu().double().numpy()
        values = np.stack([self._one(circuit, row) for row in rows])
        return torch.as_tensor(values, dtype=angles.dtype, device=angles.device)

    def _one(self, circuit: Circuit, row: np.ndarray) -> np.ndarray:
        cirq = self._cirq
        program, qubits = self._bound(circuit, row)
        # cirq needs every qubit in the circuit to report all of them
        program.append(cirq.I.on_each(*qubits))
        if self.config.shots is None:
            state = cirq.Simulator(dtype=np.complex128).simulate(program).final_state_vector
            probs = np.abs(state) ** 2
            values = []
            for r in circuit.readouts:
                if needs_basis_change(r):
                    pauli = cirq.PauliString({qubits[q]: getattr(cirq, p) for q, p in r.paulis})
                    qmap = {q: i for i, q in enumerate(qubits)}
                    values.append(pauli.expectation_from_state_vector(state, qmap).real)
                else:
                    probs_row = torch.as_tensor(probs)[None]
                    values += diagonal_readout(r, circuit.n_qubits, probs_row)[0].tolist()
            return np.asarray(values)
        return self._sampled(circuit, program, qubits)

    def _sampled(self, circuit: Circuit, program, qubits) -> np.ndarray:
        """One sampled basis for all Z readouts, and one per X/Y Pauli readout."""
        cirq = self._cirq
        values: dict[int, list[float]] = {}
        z_only = [i for i, r in enumerate(circuit.readouts) if not needs_basis_change(r)]
        if z_only:
            probs = self._sample(program, qubits, circuit.n_qubits)
            for i in z_only:
                values[i] = diagonal_readout(circuit.readouts[i], circuit.n_qubits,
                                             torch.as_tensor(probs)[None])[0].tolist()
        for i, r in enumerate(circuit.readouts):
            if i in values:
                continue
            rotated = program.copy()
            for q, p in r.paulis:  # measure X as H, Y as S^dagger then H
                if p == "Y":
                    rotated.append((cirq.S**-1).on(qubits[q]))
                if p in "XY":
                    rotated.append(cirq.H.on(qubits[q]))
            probs = self._sample(rotated, qubits, circuit.n_qubits)
            values[i] = diagonal_readout(r, circuit.n_qubits,
                                         torch.as_tensor(probs)[None])[0].tolist()
        return np.asarray([v for i in range(len(circuit.readouts)) for v in values[i]])

    def _sample(self, program, qubits, n_qubits: int) -> np.ndarray:
        cirq = self._cirq
        c = self.config
        noisy = bool(c.depolarizing or c.readout_error)
        if c.depolarizing:
            program = program.with_noise(cirq.depolarize(c.depolarizing))
        if c.readout_error:
            program = program + cirq.Circuit(cirq.bit_flip(c.readout_error).on_each(*qubits))
        program = program + cirq.Circuit(cirq.measure(*qubits, key="m"))
        seed = int(self._rng.integers(2**31))
        simulator = cirq.DensityMatrixSimulator(seed=seed) if noisy else cirq.Simulator(seed=seed)
        bits = simulator.run(program, repetitions=c.shots).measurements["m"]  # [shots, n]
        index = bits.astype(np.int64) @ (1 << np.arange(n_qubits - 1, -1, -1))
        return np.bincount(index, minlength=2**n_qubits) / c.shots


@hookimpl
def register_backends(register):
    register("cirq", CirqBackend)
