"""``qiskit``: runs a circuit with qiskit, exactly (``Statevector``) or with shots on qiskit-aer,
optionally with noise: depolarizing and readout errors, qiskit's ``GenericBackendV2`` (a noisy
fake device with a coupling map), or an IBM fake backend from qiskit-ibm-runtime.

Gradients by parameter shift. ``method: machine-learning`` goes through qiskit-machine-learning's
``EstimatorQNN`` and its TorchConnector autograd function instead, to compare with that tool.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from qcompress.circuit import Circuit, PauliString, diagonal_readout, needs_basis_change
from qcompress.errors import QcompressError
from qcompress.export import qiskit_observable, to_qiskit, to_qiskit_angles
from qcompress.gradients import exact_training_advice, parameter_shift
from qcompress.hookspecs import hookimpl
from qcompress.interfaces import Backend, BackendInfo, PluginConfig

NOISE_HELP = "'none', 'depolarizing', 'generic' or 'fake:<IBM fake backend class>'"


class QiskitConfig(PluginConfig):
    shots: int | None = Field(None, ge=1, le=10_000_000, description="None: exact expectations")
    noise: str = Field("none", description=NOISE_HELP)
    depolarizing: float = Field(1e-3, ge=0, le=1, description="one-qubit gate error")
    depolarizing_2q: float = Field(1e-2, ge=0, le=1, description="two-qubit gate error")
    readout_error: float = Field(0.0, ge=0, le=0.5, description="bit-flip at measurement")
    method: Literal["estimator", "machine-learning"] = "estimator"
    optimization_level: int = Field(
        0, ge=0, le=3, description="qiskit transpiler level; 0 runs the circuit as written"
    )
    seed: int = Field(default=0, ge=0, le=4_294_967_295)

    @field_validator("noise")
    @classmethod
    def _known_noise(cls, value: str) -> str:
        if value in ("none", "depolarizing", "generic") or re.fullmatch(r"fake:\w+", value):
            return value
        raise ValueError(f"unknown noise {value!r}; expected {NOISE_HELP}")

    @model_validator(mode="after")
    def _noise_needs_shots(self):
        if self.noise != "none" and self.shots is None:
            raise ValueError("a noise model needs shots (set shots, e.g. 1024)")
        if self.method == "machine-learning" and (self.shots or self.noise != "none"):
            raise ValueError("method 'machine-learning' runs exact EstimatorQNN; drop shots/noise")
        return self


INSTALL = "pip install 'qcompress[quantum]'"


class QiskitBackend(Backend):
    Config = QiskitConfig
    description = "qiskit Statevector (exact) or qiskit-aer (shots, noise); parameter shift"

    @classmethod
    def requirements(cls, config: QiskitConfig) -> dict[str, str]:
        needed = {"qiskit": INSTALL}
        if config.shots is not None:
            needed["qiskit_aer"] = INSTALL
        if config.noise.startswith("fake:"):
            needed["qiskit_ibm_runtime"] = INSTALL
        if config.method == "machine-learning":
            needed["qiskit_machine_learning"] = INSTALL
        return needed

    def __init__(self, config: QiskitConfig | None = None) -> None:
        super().__init__(config or QiskitConfig())
        try:
            import qiskit  # noqa: F401
        except ImportError as exc:
            raise QcompressError(
                "backend qiskit needs qiskit: pip install 'qcompress[quantum]'"
            ) from exc
        self._compiled: dict[str, tuple] = {}
        self._rng = np.random.default_rng(self.config.seed)

    # -- the Backend contract ---------------------------------------------------------------

    def expectations(self, circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor):
        if self.config.method == "machine-learning":
            self.check_supported(circuit)
            circuit.check(inputs, weights)
            return self._machine_learning(circuit, inputs, weights)
        return super().expectations(circuit, inputs, weights)

    @classmethod
    def training_warnings(cls, config: QiskitConfig) -> list[str]:
        if config.shots is None:
            return [exact_training_advice("qiskit")]
        return []

    def run(self, circuit: Circuit, angles: torch.Tensor) -> torch.Tensor:
        exact = self.config.shots is None
        return parameter_shift(self._evaluate, circuit, angles, exact=exact)

    def info(self) -> BackendInfo:
        c = self.config
        noise = None
        if c.noise == "depolarizing":
            noise = (f"depolarizing(1q={c.depolarizing}, 2q={c.depolarizing_2q}, "
                     f"readout={c.readout_error})")
        elif c.noise != "none":
            noise = c.noise
        return BackendInfo(
            name="qiskit" if c.method == "estimator" else "qiskit-machine-learning",
            device="cpu",
            exact=c.shots is None,
            shots=c.shots,
            noise=noise,
            gradient="parameter-shift",
            dtype="complex128",
        )

    # -- evaluation -------------------------------------------------------------------------

    def _evaluate(self, circuit: Circuit, angles: torch.Tensor) -> torch.Tensor:
        rows = angles.detach().cpu().double().numpy()
        if self.config.shots is None:
            values = self._exact(circuit, rows)
        else:
            values = self._sampled(circuit, rows)
        return torch.as_tensor(values, dtype=angles.dtype, device=angles.device)

    def _exact(self, circuit: Circuit, rows: np.ndarray) -> np.ndarray:
        from qiskit.quantum_info import Statevector

        qc, params = self._parametrised(circuit)
        out = []
        for row in rows:
            state = Statevector(qc.assign_parameters(dict(zip(params, row, strict=True))))
            values = []
            for r in circuit.readouts:
                if isinstance(r, PauliString):
                    op = qiskit_observable(r, circuit.n_qubits)
                    values.append(state.expectation_value(op).real)
                else:  # qiskit's probabilities over qargs are little-endian: reverse the order
                    values += list(state.probabilities(list(reversed(r.qubits))))
            out.append(values)
        return np.asarray(out)

    def _parametrised(self, circuit: Circuit):
        if circuit.fingerprint not in self._compiled:
            self._compiled[circuit.fingerprint] = to_qiskit_angles(circuit)
        return self._compiled[circuit.fingerprint]

    def _sampled(self, circuit: Circuit, rows: np.ndarray) -> np.ndarray:
        """One measured circuit per basis (Z, plus one per X/Y Pauli readout), per row."""
        qc, params = self._parametrised(circuit)
        values: dict[int, np.ndarray] = {}
        z_only = [i for i, r in enumerate(circuit.readouts) if not needs_basis_change(r)]
        if z_only:
            probs = torch.as_tensor(self._sample_probabilities(qc, params, rows,
                                                               circuit.n_qubits))
            for i in z_only:
                values[i] = _readout(circuit, i, probs)
        for i, r in enumerate(circuit.readouts):
            if i in values:
                continue
            rotated = qc.copy()
            for q, p in r.paulis:  # measure X as H, Y as S^dagger then H
                if p == "Y":
                    rotated.sdg(q)
                if p in "XY":
                    rotated.h(q)
            probs = self._sample_probabilities(rotated, params, rows, circuit.n_qubits)
            values[i] = _readout(circuit, i, torch.as_tensor(probs))
        return np.concatenate([values[i] for i in range(len(circuit.readouts))], axis=1)

    def _sample_probabilities(self, qc, params, rows, n_qubits) -> np.ndarray:
        from qiskit import transpile

        measured = qc.copy()
        measured.measure_all()
        simulator, target = self._simulator
        compiled = transpile(measured, target or simulator, seed_transpiler=self.config.seed,
                             optimization_level=self.config.optimization_level)
        bound = [compiled.assign_parameters(dict(zip(params, row, strict=True)))
                 for row in rows]
        seed = int(self._rng.integers(2**31))
        result = simulator.run(bound, shots=self.config.shots, seed_simulator=seed).result()
        probs = np.zeros((len(rows), 2**n_qubits))
        for i in range(len(rows)):
            for bits, count in result.get_counts(i).items():
                # qiskit prints clbit 0 last; reversed, qubit 0 is the most significant bit
                probs[i, int(bits.replace(" ", "")[::-1], 2)] += count
        return probs / self.config.shots

    @cached_property
    def _simulator(self):
        """(AerSimulator, transpilation target or None)."""
        try:
            from qiskit_aer import AerSimulator
            from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error
        except ImportError as exc:
            raise QcompressError(
                "backend qiskit with shots needs qiskit-aer: pip install 'qcompress[quantum]'"
            ) from exc
        c = self.config
        if c.noise == "none":
            return AerSimulator(seed_simulator=c.seed), None
        if c.noise == "depolarizing":
            model = NoiseModel()
            model.add_all_qubit_quantum_error(
                depolarizing_error(c.depolarizing, 1), ["rx", "ry", "rz", "u", "h", "x"]
            )
            model.add_all_qubit_quantum_error(
                depolarizing_error(c.depolarizing_2q, 2), ["cx", "cz", "rzz", "crx", "cry", "crz"]
            )
            if c.readout_error:
                e = c.readout_error
                model.add_all_qubit_readout_error(ReadoutError([[1 - e, e], [e, 1 - e]]))
            return AerSimulator(noise_model=model, seed_simulator=c.seed), None
        device = self._fake_device()
        return AerSimulator.from_backend(device, seed_simulator=c.seed), device

    def _fake_device(self):
        name = self.config.noise
        if name == "generic":
            from qiskit.providers.fake_provider import GenericBackendV2

            # A noisy 27-qubit fake device with a heavy-hex-like coupling map and errors.
            return GenericBackendV2(num_qubits=27, seed=self.config.seed, noise_info=True)
        class_name = name.split(":", 1)[1]
        try:
            from qiskit_ibm_runtime import fake_provider
        except ImportError as exc:
            raise QcompressError(
                f"noise {name!r} needs qiskit-ibm-runtime (pip install 'qcompress[quantum]'); "
                "noise 'generic' uses qiskit's own GenericBackendV2"
            ) from exc
        if not hasattr(fake_provider, class_name):
            raise QcompressError(f"noise {name!r}: qiskit-ibm-runtime has no {class_name}")
        return getattr(fake_provider, class_name)()

    # -- qiskit-machine-learning -------------------------------------------------------------

    def _machine_learning(self, circuit: Circuit, inputs: torch.Tensor, weights: torch.Tensor):
        from qiskit_machine_learning.connectors.torch_connector import _TorchNNFunction

        qnn = self._qnn(circuit)
        out = _TorchNNFunction.apply(inputs.double(), weights.double(), qnn, False)
        return out.to(inputs.dtype if inputs.dtype.is_floating_point else torch.float64)

    def _qnn(self, circuit: Circuit):
        key = "qnn:" + circuit.fingerprint
        if key not in self._compiled:
            from qiskit_machine_learning.neural_networks import EstimatorQNN

            if not all(isinstance(r, PauliString) for r in circuit.readouts):
                raise QcompressError("method 'machine-learning' supports Pauli readouts only")
            qc, x, w = to_qiskit(circuit)
            self._compiled[key] = EstimatorQNN(
                circuit=qc,
                observables=[qiskit_observable(r, circuit.n_qubits) for r in circuit.readouts],
                input_params=list(x),
                weight_params=list(w),
                input_gradients=True,
            )
        return self._compiled[key]


def _readout(circuit: Circuit, i: int, probs: torch.Tensor) -> np.ndarray:
    """Readout ``i`` from sampled basis probabilities (rotated to Z beforehand)."""
    return diagonal_readout(circuit.readouts[i], circuit.n_qubits, probs).numpy()


@hookimpl
def register_backends(register):
    register("qiskit", QiskitBackend)
