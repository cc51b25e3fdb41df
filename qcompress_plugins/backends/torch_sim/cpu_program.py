"""A compiled :class:`~torch_plan.Plan` turned into the flat arrays the fused CPU kernel
(:mod:`cpu_kernel`) runs, and the calls that run it over a batch, chunk by chunk, on threads.

The plan's stages map to kernel ops one for one, so the fusions measured on the torch-op
kernel mean the same here: a one-qubit stage is one op per qubit (the qubit's gates multiplied
into one 2x2), a diagonal stage one phase vector (gates whose angles depend on the sample are
applied one by one instead: a phase vector per sample would cost a sine per amplitude), a
permutation stage one index map, and trailing permutations fold into the readout matrix.

Supported: every gate; readouts that are diagonal (Z strings, probabilities) and at most
:data:`MAX_READOUT_VALUES` table entries. Other circuits run on the torch-op kernel.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numba
import numpy as np
import torch

from qcompress.circuit import Circuit, CircuitBuilder, Probabilities, feature, probabilities, z
from qcompress_plugins.backends.torch_sim import cpu_kernel as k
from qcompress_plugins.backends.torch_sim.plan import (
    REAL_GATES,
    Plan,
    basis_bits,
    compile_plan,
    cz_phase,
    permutation_index,
    readout_tables,
)

# samples per chunk: rows of 32 floats run the per-row loops at full SIMD width (measured
# faster than 16 at 11 qubits, though a chunk's buffers then overflow a 1 MiB L2) ...
CHUNK = 32
# ... up to this many amplitudes a chunk state (4 MiB in complex64, 14 qubits); beyond it a
# chunk takes half as many samples. Batch 64, forward+backward, 32 against 16 samples: the
# same at 12-14 qubits, 1.4x slower at 15 (70 / 50 ms) and 16 (187 / 122 ms), 1.1x at 20
# (memory-bound there: 8 and 4 samples ran within 10% of 16).
MAX_CHUNK_AMPLITUDES = 2**19
# Runs of one-qubit gates go tile by tile (values of a plane per tile: 128 KiB in float32, a
# backward's four planes in a 1 MiB L2) where a chunk state has more amplitudes than this: the
# two threads' chunks then overflow a 32 MiB L3, and a pass per gate streams from memory.
# Batch 32 on 2 threads, forward+backward, untiled / tiled: 15 qubits 21.4 / 23.2 ms,
# 16 qubits 56 / 44 ms, 17 qubits 154 / 87 ms, 20 qubits 2.05 / 1.19 s.
TILE_VALUES = 2**15
TILE_FROM_AMPLITUDES = 2**19
CACHE_LINE = 64
# readout rows x basis states of the dense readout table (2**25: 128 MiB in float32, e.g. a
# Z readout on each of 20 qubits)
MAX_READOUT_VALUES = 2**25
GATE_CODES = {"rx": k.RX, "ry": k.RY, "rz": k.RZ, "u3": k.U3, "h": k.H, "x": k.X}
DIAG_KINDS = {"rz": 0, "rzz": 1, "crz": 2}


def unsupported(circuit: Circuit) -> str | None:
    """Why the CPU kernel cannot run ``circuit`` (None when it can)."""
    for r in circuit.readouts:
        if not isinstance(r, Probabilities) and any(p != "Z" for _, p in r.paulis):
            return f"readout {r} is not diagonal"
    if circuit.n_outputs * 2**circuit.n_qubits > MAX_READOUT_VALUES:
        return f"{circuit.n_outputs} readout values over {2**circuit.n_qubits} basis states"
    return None


class CpuProgram:
    """The plan as kernel arrays, for one real dtype (torch.float32: complex64 states)."""

    def __init__(self, plan: Plan, dtype: torch.dtype, per_sample_weights: bool = False,
                 phases_into_permutations: bool = True, tile: int | None = None) -> None:
        circuit = plan.circuit
        self.n = circuit.n_qubits
        self.dim = 2**self.n
        self.dtype = np.dtype("float64" if dtype == torch.float64 else "float32")
        self.chunk = CHUNK if self.dim * CHUNK <= MAX_CHUNK_AMPLITUDES else CHUNK // 2
        if tile is None:
            tile = TILE_VALUES if self.dim * self.chunk > TILE_FROM_AMPLITUDES else 0
        self.tile = tile  # values of a plane per tile of a one-qubit stage; 0: no tiles
        self.n_outputs = circuit.n_outputs
        self.varies = [per_sample_weights or a.source == "input"
                       for g in circuit.gates for a in g.angles]
        self.n_angles = len(self.varies)
        self._offsets = plan.angle_offsets
        self._circuit = circuit
        self._codes: list[int] = []
        self._cols: list[list[int]] = []
        self._slot_start = [0]
        self._per_sample: list[bool] = []
        self._kinds: list[int] = []
        # the start state reads its chains' matrices per sample, whatever their angles
        prefix = [self._slot(positions, per_sample=True) if positions else -1
                  for positions in plan.prefix]
        self._phase_constants: list[np.ndarray] = []
        self._phase_terms: list[list[tuple[int, int, int, int]]] = []  # kind, bits, column
        perms: list[np.ndarray] = []
        ops: list[tuple[int, ...]] = []
        self._bits: torch.Tensor | None = None  # built for the first CZ only
        for stage in plan.stages:
            if stage.kind == "permutation":
                perms.append(permutation_index(self.n, [g for _, g in stage.gates]))
                ops.append((k.PERM, len(perms) - 1, -1, -1, -1))
            elif stage.kind == "diagonal":
                ops += self._diagonal_ops(stage.gates)
            elif stage.kind == "two-qubit":
                ((pos, gate),) = stage.gates
                slot = self._slot([pos], controlled=True)
                control, target = gate.qubits
                ops.append((k.CTRL, self._bit(target), slot, self._bit(control), 0))
            else:
                per_qubit: dict[int, list[int]] = {}
                for pos, g in stage.gates:
                    per_qubit.setdefault(g.qubits[0], []).append(pos)
                for q, positions in sorted(per_qubit.items()):
                    slot = self._slot(positions)
                    op = k.ONE_SAMPLE if self._per_sample[slot] else k.ONE
                    ops.append((op, self._bit(q), slot, 0, 0))
        if phases_into_permutations:
            ops = _phases_into_permutations(ops, first_product=max(len(self._phase_constants), 1))
        self.ops = np.array(ops, dtype=np.int64).reshape(len(ops), 5)
        self.codes = np.array(self._codes, dtype=np.int64)
        self.cols = np.array(self._cols, dtype=np.int64).reshape(len(self._codes), 3)
        self.slot_start = np.array(self._slot_start, dtype=np.int64)
        self.per_sample = np.array(self._per_sample, dtype=np.bool_)
        self.kinds = np.array(self._kinds, dtype=np.int64)
        self.prefix = np.array(prefix, dtype=np.int64)
        self.n_slots = len(self._per_sample)
        self.perms = np.array(perms, dtype=np.int64).reshape(len(perms), self.dim)
        self._phase_tables()
        self._bits = None  # the CZ phases are in the tables now
        # the phase vectors, then the products that permutations apply
        products = self.ops[self.ops[:, 0] == k.PERM, 4]
        self.n_phase_vectors = max([self.phase_constants.shape[0], *(products + 1)])
        self._shared_columns = [c for c, varies in enumerate(self.varies) if not varies]
        self.readout = self._readout_table(circuit, plan.readout_permutation)
        self.readout_t = np.ascontiguousarray(self.readout.T)
        self._binding(circuit)
        self._local = threading.local()

    # -- building ---------------------------------------------------------------------------

    def _bit(self, qubit: int) -> int:
        return 1 << (self.n - 1 - qubit)

    def _slot(self, positions: list[int], controlled: bool = False,
              per_sample: bool = False) -> int:
        """A chain of one-qubit gates (the target rotation of a controlled gate) as a slot;
        its matrix is built per sample when its angles vary or ``per_sample`` is set."""
        names = []
        for pos in positions:
            gate = self._circuit.gates[pos]
            name = gate.name[1:] if controlled else gate.name
            names.append(name)
            columns = list(range(self._offsets[pos], self._offsets[pos] + len(gate.angles)))
            self._codes.append(GATE_CODES[name])
            self._cols.append(columns + [-1] * (3 - len(columns)))
        columns = [c for row in self._cols[self._slot_start[-1]:] for c in row if c >= 0]
        self._slot_start.append(len(self._codes))
        # controlled slots always run per sample (their op applies a per-sample matrix)
        self._per_sample.append(per_sample or controlled or any(self.varies[c] for c in columns))
        if controlled or any(name not in REAL_GATES for name in names):
            self._kinds.append(k.COMPLEX)
        else:
            self._kinds.append(k.ROTATION if set(names) == {"ry"} else k.REAL)
        return len(self._per_sample) - 1

    def _basis_bits(self) -> torch.Tensor:
        """:func:`basis_bits` in float64, built once and only for circuits with a CZ (the
        one diagonal gate whose phase still comes from a table): 160 MiB at 20 qubits."""
        if self._bits is None:
            self._bits = basis_bits(self.n, torch.device("cpu")).to(torch.float64)
        return self._bits

    def _diagonal_ops(self, gates) -> list[tuple[int, ...]]:
        """Gates with shared angles (and CZ) as one phase vector; per-sample ones one by one."""
        constant = np.zeros(self.dim)
        terms, ops = [], []
        for pos, g in gates:
            if g.name == "cz":
                constant += cz_phase(g, self._basis_bits()).numpy()
                continue
            column = self._offsets[pos]
            q = g.qubits
            gate = (DIAG_KINDS[g.name], self._bit(q[0]), self._bit(q[1]) if len(q) > 1 else 0)
            if self.varies[column]:
                ops.append((k.DIAG, *gate, column))
            else:
                terms.append((*gate, column))
        if terms or constant.any():
            self._phase_constants.append(constant)
            self._phase_terms.append(terms)
            ops.insert(0, (k.PHASE, len(self._phase_constants) - 1, 0, 0, 0))
        return ops

    def _phase_tables(self) -> None:
        """Phase vectors as the kernel builds them: constant phases (CZ's), then per gate its
        kind, bits and angle column (``phase_gates[vector, gate]``: the kernel works out its
        sign at each basis state from the bits, as for a per-sample diagonal gate; a table of
        signs took 1.4 GiB at 20 qubits, read every time the weights change)."""
        count = max(len(self._phase_constants), 1)
        width = max(max((len(t) for t in self._phase_terms), default=0), 1)
        self.phase_constants = np.zeros((count, self.dim))
        self.phase_gates = np.zeros((count, width, 4), dtype=np.int64)
        self.phase_gates[:, :, 3] = -1  # no gate
        for v, (constant, terms) in enumerate(
            zip(self._phase_constants, self._phase_terms, strict=True)
        ):
            self.phase_constants[v] = constant
            if terms:
                self.phase_gates[v, : len(terms)] = terms
        # the constant parts' cos and sin, once: per call they cost a sine per basis state
        self.phase_start = np.stack([np.cos(self.phase_constants), np.sin(self.phase_constants)],
                                    axis=1)

    def _readout_table(self, circuit: Circuit, permutation: np.ndarray | None) -> np.ndarray:
        """``[outputs, 2**n]``: readout values are this matrix times the probabilities."""
        rows = []
        basis = np.arange(self.dim)
        for kind, table in readout_tables(circuit, torch.device("cpu")):
            if kind == "probabilities":  # one row per basis state of the listed qubits
                index = np.zeros(self.dim, dtype=np.int64)
                for q in table:
                    index = 2 * index + ((basis & self._bit(q)) != 0)
                rows.append(np.eye(2 ** len(table))[index].T)
            else:  # a Z string's signs (``unsupported`` has refused other Pauli strings)
                rows.append(table.numpy()[None, :])
        table = np.concatenate(rows, 0)
        if permutation is not None:
            # sum_j R[r, j] p[perm[j]] = sum_i R[r, perm^-1[i]] p[i]
            table = table[:, np.argsort(permutation)]
        return np.ascontiguousarray(table, dtype=self.dtype)

    def _binding(self, circuit: Circuit) -> None:
        """The circuit's angle binding (:meth:`Circuit.angle_table`) as numpy arrays, and the
        derivatives of the angles in the inputs and in the weights (each angle reads one
        source, so one entry per row)."""
        index, scale, offset = (t.numpy() for t in circuit.angle_table(torch.device("cpu")))
        self._source_index, self._source_scale, self._source_offset = index, scale, offset
        self.n_inputs, self.n_weights = circuit.n_inputs, circuit.n_weights
        by_source = np.zeros((self.n_angles, self.n_inputs + self.n_weights + 1))
        by_source[np.arange(self.n_angles), index] = scale
        self._angles_by_input = by_source[:, : self.n_inputs]
        self._angles_by_weight = by_source[:, self.n_inputs : self.n_inputs + self.n_weights]

    # -- per call ---------------------------------------------------------------------------

    def bind(self, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Angles ``[B, n_angles]`` for inputs ``[B, n_inputs]`` and weights
        ``[n_weights]``: what :meth:`Circuit.angles` computes, in the same precision, without
        torch's per-operation overhead."""
        dtype = np.result_type(inputs.dtype, weights.dtype)
        if dtype.kind != "f":
            dtype = np.dtype(str(torch.get_default_dtype()).removeprefix("torch."))
        sources = np.empty((inputs.shape[0], self.n_inputs + self.n_weights + 1), dtype=dtype)
        sources[:, : self.n_inputs] = inputs
        sources[:, self.n_inputs : -1] = weights
        sources[:, -1] = 1
        angles = sources[:, self._source_index] * self._source_scale.astype(dtype)
        angles += self._source_offset.astype(dtype)
        return angles.astype(self.dtype, copy=False)

    def unbind(self, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d loss / d inputs ``[B, n_inputs]`` and d loss / d weights ``[n_weights]`` from
        d loss / d angles (as :meth:`backward` gives them)."""
        return grad @ self._angles_by_input, grad.sum(0) @ self._angles_by_weight

    def _shared(self, angles: np.ndarray):
        """Matrices of the shared slots and the phase vectors, from the first row; the last
        ones are reused while the shared angles stay the same (a backward after its forward,
        evaluation batches under fixed weights)."""
        row = angles[0].astype(np.float64)
        key = row[self._shared_columns].tobytes()
        cached = getattr(self._local, "shared", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        shared = np.zeros((max(self.n_slots, 1), 8), dtype=self.dtype)
        k.shared_matrices(row, self.codes, self.cols, self.slot_start, self.per_sample, shared)
        phases = np.empty((self.n_phase_vectors, 2, self.dim), dtype=self.dtype)
        k.phase_vectors(row, self.phase_start, self.phase_gates, phases)
        k.permutation_phases(self.ops, self.perms, phases)
        self._local.shared = (key, shared, phases)
        return shared, phases

    def _workspace(self, threads: int) -> tuple[np.ndarray, ...]:
        """Buffers of the calling thread, one set per numba thread: chunk states, per-sample
        matrices and start vectors, and gradient sums (kept between calls)."""
        ws = getattr(self._local, "ws", None)
        if ws is None or ws[0].shape[0] < threads:
            slots = max(self.n_slots, 1)
            ws = (
                aligned_empty((threads, 6, self.dim * self.chunk), self.dtype),  # states
                np.zeros((threads, slots, 8, self.chunk), dtype=self.dtype),  # mats
                np.zeros((threads, self.n, 4, self.chunk), dtype=self.dtype),  # vectors
                np.zeros((threads, 2, self.chunk), dtype=self.dtype),  # tmp
                np.zeros((threads, slots, 8, self.chunk)),  # gmats
                np.zeros((threads, slots, 8)),  # gshared
                np.zeros((threads, self.phase_constants.shape[0], self.dim)),  # gphases
            )
            self._local.ws = ws
        return ws

    def _plan(self) -> tuple[np.ndarray, ...]:
        return (self.ops, self.codes, self.cols, self.slot_start, self.per_sample, self.prefix,
                self.kinds, self.perms, self.readout, self.readout_t, self.tile)

    @staticmethod
    def _threads(work: int, threads: int | None) -> int:
        """Threads for ``work`` chunks or samples: torch's count unless given, at most one
        per unit of work."""
        wanted = torch.get_num_threads() if threads is None else threads
        return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS, work))

    def forward(self, angles: np.ndarray, keep_states: bool = False, threads: int | None = None):
        """Readouts ``[B, outputs]`` for bound angles ``[B, n_angles]``, and with
        ``keep_states`` what :meth:`backward` needs (each chunk's final state and per-sample
        matrices; otherwise None). Each thread gets a chunk of at most ``self.chunk`` samples."""
        angles = np.ascontiguousarray(angles, dtype=self.dtype)
        batch = angles.shape[0]
        threads = self._threads(batch, threads)
        width = min(self.chunk, -(-batch // threads))
        shared, phases = self._shared(angles)
        out = np.empty((batch, self.n_outputs), dtype=self.dtype)
        chunks = -(-batch // width)
        states = aligned_empty((chunks, 2, self.dim * width if keep_states else 0), self.dtype)
        mats = np.empty((chunks if keep_states else 0, max(self.n_slots, 1), 8, width),
                        dtype=self.dtype)
        args = (angles, width, self.n, self._plan(), shared, phases, self._workspace(threads),
                out, states, mats)
        if threads == 1:
            k.forward_serial(*args)
        else:
            with _launch(threads):
                k.forward_batch(*args)
        return out, ((states, mats) if keep_states else None)

    def backward(self, angles: np.ndarray, kept: tuple[np.ndarray, np.ndarray],
                 grad_out: np.ndarray, threads: int | None = None):
        """d loss / d angles ``[B, n_angles]`` given what :meth:`forward` kept and
        d loss / d readouts ``[B, outputs]``. Angles shared by the batch get their whole
        gradient in the first row (as they were read from it)."""
        angles = np.ascontiguousarray(angles, dtype=self.dtype)
        grad_out = np.ascontiguousarray(grad_out, dtype=self.dtype)
        states, mats = kept
        width = mats.shape[3]  # the forward's chunks, whatever the thread count is now
        threads = self._threads(states.shape[0], threads)
        shared, phases = self._shared(angles)
        grad = np.zeros((angles.shape[0], self.n_angles), dtype=np.float64)
        ws = self._workspace(threads)
        args = (angles, grad_out, states, mats, width, self.n, self._plan(), shared, phases, ws,
                grad)
        if threads == 1:
            k.backward_serial(*args)
        else:
            with _launch(threads):
                k.backward_batch(*args)
        k.shared_angle_gradients(angles[0].astype(np.float64), self.codes, self.cols,
                                 self.slot_start, self.per_sample, ws[5], self.phase_gates,
                                 ws[6], threads, grad[0])
        return grad


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty`` starting on a cache line. numpy aligns to 16 or 32 bytes; the kernel's
    vectors are 64 bytes on CPUs with AVX-512, and a state that starts mid-line splits every
    load in two: the same QD-LLM chunk ran 25-30% slower from a 32-byte-aligned buffer."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start : start + size].view(dtype).reshape(shape)


def _phases_into_permutations(ops: list[tuple[int, ...]],
                              first_product: int) -> list[tuple[int, ...]]:
    """A shared phase vector right before or after a permutation joins it: the kernel applies
    the three as one permutation and one phase vector, their product (numbered from
    ``first_product`` on), in one pass over the chunk instead of three (the QD-LLM layer's
    RZs, CNOTs and the next layer's RZZs)."""
    fused: list[tuple[int, ...]] = []
    for op in ops:
        if op[0] == k.PERM and fused and fused[-1][0] == k.PHASE:
            op = (k.PERM, op[1], op[2], fused.pop()[1], -1)
        elif op[0] == k.PHASE and fused and fused[-1][0] == k.PERM and fused[-1][2] < 0:
            permutation = fused.pop()
            op = (k.PERM, permutation[1], op[1], permutation[3], -1)
        fused.append(op)
    products = iter(range(first_product, first_product + len(fused)))
    return [(op, a, after, before, next(products) if max(after, before) >= 0 else -1)
            if op == k.PERM else (op, a, after, before, d)
            for op, a, after, before, d in fused]


_WORKQUEUE_LOCK = threading.Lock()


@contextmanager
def _launch(threads: int):
    """numba's thread count for this call, with BLAS on one thread meanwhile; calls one at a
    time under numba's fallback threading layer (workqueue), which must not be entered by two
    threads at once (OpenMP and TBB may). torch's thread count is left as it was: numba's
    first OpenMP launch in a process resets the OpenMP thread count, which torch reads as its
    own (a process on ``torch.set_num_threads(1)`` found torch on every core afterwards)."""
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(threads)
    serial = _layer() == "workqueue"
    if serial:
        _WORKQUEUE_LOCK.acquire()
    try:
        with _SERIAL_BLAS:
            yield
    finally:
        if serial:
            _WORKQUEUE_LOCK.release()
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


class _SerialBlas:
    """BLAS libraries held to one thread while any parallel kernel call runs. Each chunk's
    readout is a matrix product (``np.dot``: scipy's BLAS), made inside numba's threads: a
    threaded OpenBLAS called there starts threads of its own on the cores the kernel already
    fills, and warns that it "may hang" (it did from 14 qubits on, where a chunk's product
    is large enough to be split). Re-entrant across Python threads: the first call in sets
    the libraries to one thread, the last one out restores them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: list[tuple[object, int]] = []
        self._libraries: list | None = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = [(lib, lib.get_num_threads()) for lib in self._blas()]
                for lib, _ in self._saved:
                    lib.set_num_threads(1)
            self._depth += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, count in self._saved:
                    lib.set_num_threads(count)

    def _blas(self) -> list:
        if self._libraries is None:  # once the kernel has loaded the BLAS it calls
            import scipy.linalg.cython_blas  # noqa: F401  (what numba's np.dot calls)
            from threadpoolctl import ThreadpoolController

            self._libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        return self._libraries


_SERIAL_BLAS = _SerialBlas()


def _layer() -> str | None:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet: warm_up runs the first
        return None


class CpuRun(torch.autograd.Function):
    """Readouts from bound angles through the fused kernel; gradients by its adjoint pass."""

    @staticmethod
    def forward(ctx, program: CpuProgram, angles: torch.Tensor) -> torch.Tensor:
        out, kept = program.forward(angles.detach().numpy(), keep_states=True)
        ctx.program = program
        ctx.kept = kept
        ctx.save_for_backward(angles)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (angles,) = ctx.saved_tensors
        grad = ctx.program.backward(angles.detach().numpy(), ctx.kept,
                                    grad_out.detach().numpy())
        return None, torch.from_numpy(grad).to(angles.dtype)


class CpuExpectations(torch.autograd.Function):
    """Readouts from inputs and weights: :class:`CpuRun` with the angles bound in numpy, so
    a training step makes no torch operation of its own (they cost about 0.3 ms a step)."""

    @staticmethod
    def forward(ctx, program: CpuProgram, inputs: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
        angles = program.bind(inputs.detach().numpy(), weights.detach().numpy())
        out, kept = program.forward(angles, keep_states=True)
        ctx.program, ctx.angles, ctx.kept = program, angles, kept
        ctx.dtypes = inputs.dtype, weights.dtype
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad = ctx.program.backward(ctx.angles, ctx.kept, grad_out.detach().numpy())
        by_input, by_weight = ctx.program.unbind(grad)
        return (None, torch.from_numpy(by_input).to(ctx.dtypes[0]),
                torch.from_numpy(by_weight).to(ctx.dtypes[1]))


_WARM: set[torch.dtype] = set()


def warm_up(dtype: torch.dtype) -> None:
    """Compile the kernel for ``dtype`` (float32 or float64) once per process, on a small
    circuit with every kind of op and both entry points (serial and threaded): numba compiles
    on first call (about a minute, then loaded from
    its disk cache in about a second), which must not land inside a timed run."""
    if dtype in _WARM:
        return
    b = CircuitBuilder(2)
    b.rx(0, feature(0))
    b.ry(1, b.new_weight())
    b.cnot(0, 1)
    b.rzz(0, 1, b.new_weight())
    b.rz(1, feature(1))
    b.add("crx", (0, 1), [b.new_weight()])
    b.ry(0, b.new_weight())
    circuit = b.build([z(0), probabilities([0, 1])])
    program = CpuProgram(compile_plan(circuit), dtype)
    angles = circuit.angles(torch.zeros(2, 2), torch.zeros(circuit.n_weights)).numpy()
    for threads in (1, 2):  # the serial and the parallel entry points
        out, kept = program.forward(angles, keep_states=True, threads=threads)
        program.backward(angles, kept, np.ones_like(out), threads=threads)
        program.forward(angles, threads=threads)
    _WARM.add(dtype)
