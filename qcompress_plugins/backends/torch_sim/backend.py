"""``torch``: the default backend, a fused, batched statevector simulator.

Exact expectations; gradients by the adjoint method (default: a few states of memory at any
depth), by plain autograd, or by parameter shift (to cost a training run as hardware would).
CPU or CUDA: the device follows the inputs.

Two kernels run the same compiled plan (:mod:`torch_plan`): on the CPU, a compiled kernel that
keeps a chunk of the batch in cache through the whole circuit (:mod:`cpu_program`, numba); on
CUDA, for backprop gradients, and for circuits the CPU kernel does not take (non-diagonal
readouts), torch operations on the whole batch (:mod:`torch_kernels`).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from pydantic import Field, model_validator

from qcompress.circuit import Circuit, CircuitError
from qcompress.errors import PluginError
from qcompress.gradients import ExactParameterShiftWarning, parameter_shift
from qcompress.hookspecs import hookimpl
from qcompress.interfaces import Backend, BackendInfo, PluginConfig
from qcompress_plugins.backends.torch_sim.kernels import AdjointRun, Program
from qcompress_plugins.backends.torch_sim.plan import Fusions, compile_plan

try:  # numba is a dependency; guarded so that a platform it does not reach keeps torch ops
    from qcompress_plugins.backends.torch_sim import cpu_program
except ImportError as error:  # pragma: no cover - numba installs wherever qcompress is tested
    cpu_program = None
    CPU_KERNEL_MISSING = f"the CPU kernel needs numba, which did not import: {error}"

PARAMETER_SHIFT_ADVICE = (
    "gradient 'parameter-shift' on an exact simulator costs 2-4 circuit evaluations per "
    "angle; 'adjoint' gives the same gradient"
)

FusionName = Literal["product_state", "reorder", "diagonal", "permutation", "one_qubit",
                     "absorb_readout"]


class TorchConfig(PluginConfig):
    dtype: Literal["complex64", "complex128"] = "complex64"
    gradient: Literal["adjoint", "backprop", "parameter-shift"] = "adjoint"
    block_qubits: int = Field(4, ge=1, le=8, description="qubits per fused one-qubit block")
    disable_fusions: list[FusionName] = Field(
        default_factory=list, description="fusions to switch off (to measure what each buys)"
    )
    kernel: Literal["auto", "cpu", "torch"] = Field(
        "auto",
        description="cpu: the compiled CPU kernel; torch: torch operations (CPU or CUDA); "
        "auto: cpu where it applies (CPU tensors, adjoint gradients, diagonal readouts)",
    )

    @model_validator(mode="after")
    def _kernel_supports_gradient(self) -> TorchConfig:
        if self.kernel == "cpu" and self.gradient == "backprop":
            raise ValueError("kernel 'cpu' computes gradients by the adjoint method; "
                             "use gradient 'adjoint' or kernel 'torch' for backprop")
        return self


class TorchBackend(Backend):
    Config = TorchConfig
    description = "fused batched statevector in PyTorch (CPU/CUDA), adjoint or backprop grads"

    def __init__(self, config: TorchConfig | None = None) -> None:
        super().__init__(config or TorchConfig())
        self.fusions = Fusions(
            **{name: False for name in self.config.disable_fusions},
            block_qubits=self.config.block_qubits,
        )
        self.cdtype = getattr(torch, self.config.dtype)
        self.rdtype = torch.float64 if self.cdtype == torch.complex128 else torch.float32
        self._programs: dict[tuple, Program] = {}
        self._cpu_programs: dict[tuple, object] = {}
        self._cpu_unsupported: dict[str, str | None] = {}  # per circuit, not per call
        self._shared_columns: dict[str, list[int]] = {}
        self._device = "cpu"
        if self.config.kernel == "cpu" and cpu_program is None:
            raise PluginError(f"backend torch, kernel 'cpu': {CPU_KERNEL_MISSING}")
        use_cpu = self.config.kernel != "torch" and cpu_program is not None
        self._kernel = "cpu" if use_cpu else "torch"
        if use_cpu and (self.config.kernel == "cpu" or not torch.cuda.is_available()):
            # compile (or load from numba's disk cache) now, not inside a timed training run;
            # on a CUDA machine, only once a CPU tensor arrives
            cpu_program.warm_up(self.rdtype)
        if self.config.gradient == "parameter-shift":
            warnings.warn(
                f"backend torch: {PARAMETER_SHIFT_ADVICE}",
                ExactParameterShiftWarning,
                stacklevel=2,
            )

    @classmethod
    def training_warnings(cls, config: TorchConfig) -> list[str]:
        if config.gradient == "parameter-shift":
            return [PARAMETER_SHIFT_ADVICE]
        return []

    def program(self, circuit: Circuit, device: torch.device, per_sample_weights: bool = False):
        # the fingerprint digests the whole circuit: hashing the circuit itself cost 0.2 ms
        key = (circuit.fingerprint, str(device), per_sample_weights)
        if key not in self._programs:
            plan = compile_plan(circuit, self.fusions)
            self._programs[key] = Program(plan, device, self.cdtype, self.fusions.block_qubits,
                                          per_sample_weights)
        return self._programs[key]

    def _weights_vary(self, circuit: Circuit, angles: torch.Tensor) -> bool:
        """Whether non-input angle columns differ between rows (a general angle matrix)."""
        if circuit.fingerprint not in self._shared_columns:  # once per circuit, not per call
            self._shared_columns[circuit.fingerprint] = [
                i for i, a in enumerate(a for g in circuit.gates for a in g.angles)
                if a.source != "input"
            ]
        shared = self._shared_columns[circuit.fingerprint]
        if angles.shape[0] == 1 or not shared:
            return False
        block = angles.detach()
        if block.device.type == "cpu" and block.dtype in (torch.float32, torch.float64):
            block = block.numpy()  # a few µs where the same torch ops took ~60
        block = block[:, shared]
        return not bool((block == block[:1]).all())

    def expectations(self, circuit: Circuit, inputs: torch.Tensor,
                     weights: torch.Tensor) -> torch.Tensor:
        # the CPU kernel binds the angles itself; every other path binds them with torch ops
        if (self.config.gradient == "parameter-shift" or weights.device != inputs.device
                or not self._cpu_kernel_applies(circuit, inputs, self.config.gradient)):
            return super().expectations(circuit, inputs, weights)
        self.check_supported(circuit)
        circuit.check(inputs, weights)
        self._device, self._kernel = str(inputs.device), "cpu"
        program = self.cpu_kernel_program(circuit, per_sample_weights=False)
        if torch.is_grad_enabled() and (inputs.requires_grad or weights.requires_grad):
            return cpu_program.CpuExpectations.apply(program, inputs, weights)
        angles = program.bind(inputs.detach().numpy(), weights.detach().numpy())
        return torch.from_numpy(program.forward(angles)[0])

    def run(self, circuit: Circuit, angles: torch.Tensor) -> torch.Tensor:
        self._device = str(angles.device)
        if self.config.gradient == "parameter-shift":
            return parameter_shift(self._evaluate, circuit, angles, exact=True)
        return self._evaluate(circuit, angles, self.config.gradient)

    def _cpu_kernel_applies(self, circuit: Circuit, angles: torch.Tensor, mode: str) -> bool:
        if self.config.kernel == "torch" or cpu_program is None:
            return False
        reasons = []
        if angles.device.type != "cpu":
            reasons.append(f"the inputs are on {angles.device}")
        if mode == "backprop":
            reasons.append("gradient 'backprop' records every stage")
        if circuit.fingerprint not in self._cpu_unsupported:
            self._cpu_unsupported[circuit.fingerprint] = cpu_program.unsupported(circuit)
        unsupported = self._cpu_unsupported[circuit.fingerprint]
        if unsupported:
            reasons.append(unsupported)
        if reasons and self.config.kernel == "cpu":
            raise CircuitError(f"torch backend, kernel 'cpu': cannot run this circuit: "
                               f"{'; '.join(reasons)} (kernel 'auto' would use torch ops)")
        return not reasons

    def cpu_kernel_program(self, circuit: Circuit, per_sample_weights: bool):
        """The circuit compiled for the CPU kernel (once per circuit)."""
        key = (circuit.fingerprint, per_sample_weights)
        if key not in self._cpu_programs:
            cpu_program.warm_up(self.rdtype)  # a no-op once compiled
            plan = compile_plan(circuit, self.fusions)
            self._cpu_programs[key] = cpu_program.CpuProgram(
                plan, self.rdtype, per_sample_weights)
        return self._cpu_programs[key]

    def _evaluate(self, circuit: Circuit, angles: torch.Tensor, mode: str = "none"):
        per_sample_weights = self._weights_vary(circuit, angles)
        if self._cpu_kernel_applies(circuit, angles, mode):
            self._kernel = "cpu"
            program = self.cpu_kernel_program(circuit, per_sample_weights)
            angles = angles.to(self.rdtype)
            if torch.is_grad_enabled() and angles.requires_grad:
                return cpu_program.CpuRun.apply(program, angles)
            return torch.from_numpy(program.forward(angles.detach().numpy())[0])
        self._kernel = "torch"
        program = self.program(circuit, angles.device, per_sample_weights)
        angles = angles.to(self.rdtype)
        matrices = program.slot_matrices(angles)
        psi0 = program.start_state(angles, matrices)
        operands = program.operands(angles, matrices)
        recording = torch.is_grad_enabled() and angles.requires_grad
        if mode == "adjoint" and recording:
            psi = AdjointRun.apply(program, psi0, *operands)
        else:
            psi = program.forward(psi0, operands)
        return program.readout(psi)

    def info(self) -> BackendInfo:
        return BackendInfo(
            name="torch",
            device=self._device,
            exact=True,
            shots=None,
            noise=None,
            gradient=self.config.gradient,
            dtype=self.config.dtype,
            kernel=self._kernel,
        )


@hookimpl
def register_backends(register):
    register("torch", TorchBackend)
