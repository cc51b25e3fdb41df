"""``qdllm``: the QD-LLM quantum student (Li et al. 2025; docs/methods.md §1), on any backend.

Frozen encoder features -> trainable ``Linear(d -> qubits)`` -> per-sample min-max rescale to
``[0, angle_range]`` -> RX angle encoding -> the two-layer ansatz of ``qdllm_circuit`` ->
<Z_i> on every qubit -> trainable ``Linear(qubits -> classes)``.

The encoder is the pretrained, not fine-tuned, MiniLM by default (the paper freezes a pretrained
BERT), so the student learns the task only through the teacher and the labels; ``encoder:
teacher`` uses the fine-tuned teacher's own encoder instead. Features come from the run's cache,
so training the circuit never reruns the encoder.

Training runs on ``backend`` (the exact torch simulator by default). ``emulate`` lists backends
that re-run the *trained* circuit as hardware would (shots, noise): each becomes a variant of the
cell, scored on a fixed, seeded subset of the evaluation rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import torch
from pydantic import Field

from qcompress import hookimpl
from qcompress.circuit import Circuit
from qcompress.export import to_qasm
from qcompress.features import FrozenEncoderConfig, FrozenFeatureStudent
from qcompress.interfaces import (
    Backend,
    BackendInfo,
    BackendSpec,
    ParameterCounts,
    RunContext,
    Split,
    TaskData,
    Variant,
    count_parameters,
)
from qcompress_plugins.kinds import CLASSIFICATION
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit

EMULATION_SEED = 0  # the same evaluation rows for every cell and every emulated backend


class QDLLMConfig(FrozenEncoderConfig):
    encoder: str = Field(
        default="minilm",
        description="'minilm' (the packaged MiniLM-L6), 'teacher' (the prepared teacher's own "
        "encoder), a hub id or a path",
    )
    qubits: int = Field(default=11, ge=3, le=24)
    layers: int = Field(default=2, ge=1, le=64)
    angle_range: float = Field(
        default=10.0, gt=0, le=1_000,
        description="features are min-max rescaled to [0, angle_range]",
    )
    backend: BackendSpec = Field(
        default_factory=lambda: BackendSpec(name="torch"), description="trains the circuit"
    )
    emulate: list[BackendSpec] = Field(
        default_factory=list, description="backends that re-run the trained circuit (shots, noise)"
    )
    emulate_rows: int = Field(
        default=256, ge=1, le=100_000_000,
        description="evaluation rows (a fixed seeded subset) each emulation runs",
    )


def trainable_parameters(features: int, classes: int, qubits: int = 11, layers: int = 2) -> int:
    """Trainable parameters of a qdllm student: ``Linear(features -> qubits)``, the circuit's
    weights, ``Linear(qubits -> classes)``. 8,627 for the paper's 768-d features and 2 classes."""
    circuit = qdllm_circuit(qubits, layers)
    return (features + 1) * qubits + circuit.n_weights + (qubits + 1) * classes


def min_max_angles(projected: torch.Tensor, angle_range: float) -> torch.Tensor:
    """Per-sample min-max rescale of ``[B, qubits]`` to ``[0, angle_range]`` (a constant row,
    which has no spread, maps to 0)."""
    low = projected.min(dim=-1, keepdim=True).values
    spread = projected.max(dim=-1, keepdim=True).values - low
    return (projected - low) / spread.clamp_min(1e-12) * angle_range


class QDLLMNet(torch.nn.Module):
    """The trainable part of the student: projection, circuit weights, readout layer. The
    backend is not a module: the same trained net runs on any backend."""

    def __init__(
        self,
        features: int,
        circuit: Circuit,
        classes: int,
        backend: Backend,
        angle_range: float,
    ) -> None:
        super().__init__()
        self.circuit = circuit
        self.backend = backend
        self.angle_range = angle_range
        self.project = torch.nn.Linear(features, circuit.n_inputs)
        # Uniform over a full turn, as variational circuits are usually initialised.
        initial = torch.empty(circuit.n_weights).uniform_(-math.pi, math.pi)
        self.weights = torch.nn.Parameter(initial)
        self.readout = torch.nn.Linear(circuit.n_outputs, classes)

    def angles(self, features: torch.Tensor) -> torch.Tensor:
        return min_max_angles(self.project(features), self.angle_range)

    def forward(self, features: torch.Tensor, backend: Backend | None = None) -> torch.Tensor:
        expectations = (backend or self.backend).expectations(
            self.circuit, self.angles(features), self.weights
        )
        # Sampling backends answer on the CPU in float64: back to the readout's device and dtype.
        return self.readout(expectations.to(self.readout.weight))


class QDLLMStudent(FrozenFeatureStudent):
    Config = QDLLMConfig
    task_kinds = frozenset({CLASSIFICATION})
    description = "QD-LLM: frozen encoder -> Linear -> 11-qubit variational circuit -> Linear"

    def __init__(self, config: QDLLMConfig, task: TaskData, context: RunContext) -> None:
        super().__init__(config, task, context)
        self.circuit = qdllm_circuit(config.qubits, config.layers)
        self.backend = context.backend(config.backend)
        self.head: QDLLMNet | None = None

    def build_head(self, in_features: int) -> QDLLMNet:
        config: QDLLMConfig = self.config
        return QDLLMNet(
            in_features, self.circuit, self.task.num_classes, self.backend, config.angle_range
        )

    def training_label(self) -> str:
        return f"qdllm({self.circuit.n_qubits} qubits, {self.backend.info().name})"

    # -- hardware emulation ---------------------------------------------------------------

    def variants(self, split: Split, batch_size: int) -> list[Variant]:
        config: QDLLMConfig = self.config
        if not config.emulate:
            return []
        generator = torch.Generator().manual_seed(EMULATION_SEED)
        rows = torch.randperm(len(split), generator=generator)[: config.emulate_rows]
        rows = rows.sort().values
        features = self.features(split)[rows].to(self.context.device)
        found = []
        for spec in config.emulate:
            backend = self.context.backend(spec)
            info = backend.info()
            start = time.perf_counter()
            with torch.inference_mode(), self.context.progress.task(
                f"emulating on {info.name} ({len(rows)} texts)", total=1
            ) as step:
                logits = self.head(features, backend).float().cpu()
                step()
            found.append(
                Variant(
                    label=emulation_label(info),
                    logits=logits,
                    rows=rows,
                    details={
                        "backend": asdict(info),
                        "settings": spec.settings(),
                        "evaluate_s": round(time.perf_counter() - start, 3),
                    },
                )
            )
        return found

    # -- accounting -----------------------------------------------------------------------

    def parameter_counts(self) -> ParameterCounts:
        assert self.head is not None
        projection = count_parameters(self.head.project)
        circuit = self.head.weights.numel()
        readout = count_parameters(self.head.readout)
        encoder = self.encoder_parameters()
        trainable = projection + circuit + readout
        return ParameterCounts(
            trainable=trainable,
            inference_total=trainable + encoder,
            details={
                "projection": projection,
                "circuit": circuit,
                "readout": readout,
                "encoder": encoder,
            },
        )

    def describe(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            **super().describe(),
            "backend": asdict(self.backend.info()),
            "circuit": {
                **self.circuit.describe(),
                # Weights whose gates cannot reach any readout (exactly zero gradient); the
                # released ansatz has 33 (its last layer's RZ rotations).
                "inert_weights": len(self.circuit.inert_weights()),
                # One amplitude per basis state, complex64: what simulating it holds per text.
                "statevector_kib_per_text": 2**self.circuit.n_qubits * 8 / 1024,
            },
        }
        if self.head is not None:
            weights = self.head.weights.detach().cpu().double()
            # The trained circuit for every text (inputs free), and as one hardware job would
            # run it: OpenQASM 2 bound to the first evaluation text, as the authors exported it.
            details["openqasm3"] = to_qasm(self.circuit, None, weights, version=3)
            with torch.inference_mode():
                first = self.features(self.task.eval)[:1].to(self.context.device)
                inputs = self.head.angles(first)[0].cpu().double()
            details["openqasm2_first_eval_text"] = to_qasm(self.circuit, inputs, weights)
        return details


def emulation_label(info: BackendInfo) -> str:
    """``qiskit shots=1024 noise=depolarizing(...)``: what a table row needs to tell runs apart."""
    shots = "exact" if info.exact else f"shots={info.shots}"
    return f"{info.name} {shots} noise={info.noise or 'none'}"


@hookimpl
def register_students(register):
    register("qdllm", QDLLMStudent)
