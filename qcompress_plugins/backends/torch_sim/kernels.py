"""Runs a compiled :class:`~torch_plan.Plan` on a batched statevector.

The state is stored batch-last, ``[2**n, B]`` (viewed as ``[2, ..., 2, B]``, qubit 0 first):
then a permutation copies whole rows of B amplitudes, and a matrix on any run of neighbouring
qubits is one batched matmul whose inner dimension includes the batch (measured: batch-first
made permutations 9x and last-qubit blocks up to 20x slower). Every stage is one pass over the
state: a phase vector, a row permutation, or a small matrix on a few neighbouring qubits.
Stage *operands* (phase vectors, matrices) are built from the bound angles with ordinary torch
ops, so autograd carries gradients from operands back to inputs and weights.

Two gradient modes:

- ``backprop``: autograd records every stage (one saved state per stage).
- ``adjoint``: a custom autograd function runs the stages without recording and, on the way
  back, undoes them one by one (every stage is unitary) while carrying the cotangent; memory
  stays at a few states whatever the depth. This is the adjoint method of Jones & Gacon (2020).
  It runs in state-sized buffers kept between calls (:class:`Workspace`), and ``|psi|**2``
  has its backward written out (:class:`SquaredMagnitude`): fresh tensors and autograd's
  complex bookkeeping had cost more than the stages.
"""

from __future__ import annotations

import math
import threading

import torch

from qcompress.circuit import Gate
from qcompress_plugins.backends.torch_sim.plan import (
    REAL_GATES,
    Plan,
    Stage,
    basis_bits,
    cz_phase,
    permutation_index,
    phase_per_angle,
    readout_tables,
)

# ---------------------------------------------------------------------------------------------
# Gate matrices from angle tensors (any leading shape)


def one_qubit_matrices(name: str, angles: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """``[..., 2, 2]`` matrices of a one-qubit gate; ``angles`` is ``[..., n_angles]``."""
    shape = angles.shape[:-1]
    if name in ("h", "x"):
        value = [[1, 1], [1, -1]] if name == "h" else [[0, 1], [1, 0]]
        m = torch.tensor(value, dtype=cdtype, device=angles.device)
        m = m / math.sqrt(2) if name == "h" else m
        return m.expand(*shape, 2, 2)
    half = angles[..., 0] / 2
    c, s = torch.cos(half), torch.sin(half)
    if name == "ry":
        return torch.stack([c, -s, s, c], -1).reshape(*shape, 2, 2).to(cdtype)
    if name == "rx":
        c, s = c.to(cdtype), s.to(cdtype)
        return torch.stack([c, -1j * s, -1j * s, c], -1).reshape(*shape, 2, 2)
    if name == "rz":
        zero = torch.zeros_like(half)
        return torch.stack(
            [torch.polar(torch.ones_like(half), -half), torch.complex(zero, zero),
             torch.complex(zero, zero), torch.polar(torch.ones_like(half), half)], -1
        ).reshape(*shape, 2, 2).to(cdtype)
    if name == "u3":
        phi, lam = angles[..., 1], angles[..., 2]
        one = torch.ones_like(half)
        e_phi, e_lam = torch.polar(one, phi), torch.polar(one, lam)
        c, s = c.to(cdtype), s.to(cdtype)
        return torch.stack([c, -e_lam * s, e_phi * s, e_phi * e_lam * c], -1).reshape(
            *shape, 2, 2
        ).to(cdtype)
    raise ValueError(f"not a one-qubit gate: {name}")


def controlled_matrices(name: str, angles: torch.Tensor, cdtype: torch.dtype) -> torch.Tensor:
    """``[..., 4, 4]`` matrices of CRX/CRY (control is the first qubit, the high bit)."""
    target = one_qubit_matrices(name[1:], angles, cdtype)
    out = torch.zeros(*target.shape[:-2], 4, 4, dtype=cdtype, device=angles.device)
    out[..., 0, 0] = 1
    out[..., 1, 1] = 1
    out[..., 2:, 2:] = target
    return out


def kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product of (batched) square matrices ``[R, p, p] x [R, q, q]``."""
    r = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    p, q = a.shape[-1], b.shape[-1]
    return (a[..., :, None, :, None] * b[..., None, :, None, :]).reshape(*r, p * q, p * q)



# ---------------------------------------------------------------------------------------------
# Applying one stage to a batch-last state, forwards and (for the adjoint method) backwards


def _view(psi: torch.Tensor, first: int, k: int, n: int, real: bool) -> torch.Tensor:
    """``[left, d, right]`` view of the state around qubits ``first .. first+k-1``."""
    left = 2**first
    if real:
        return torch.view_as_real(psi).reshape(left, 2**k, -1)
    return psi.reshape(left, 2**k, -1)


def _unview(x: torch.Tensor, like: torch.Tensor, real: bool) -> torch.Tensor:
    if real:
        return torch.view_as_complex(x.reshape(*like.shape, 2))
    return x.reshape(like.shape)


def apply_block(psi: torch.Tensor, m: torch.Tensor, first: int, k: int, n: int, real: bool,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``m`` (``[1|B, d, d]``, d = 2**k) to qubits ``first .. first+k-1``, into ``out``
    (a state-shaped buffer) when given."""
    if m.shape[0] == 1:
        # A strided matrix (a .real or transposed view) sends matmul down a path 30x slower.
        m0 = m[0].resolve_conj().contiguous()
        x = _view(psi, first, k, n, real)
        m0 = m0.expand(x.shape[0], -1, -1)  # bmm, not matmul: matmul's broadcasting adds 5 ops
        if out is None:
            return _unview(torch.bmm(m0, x), psi, real)
        torch.bmm(m0, x, out=_view(out, first, k, n, real))
        return out
    # one matrix per sample (data re-uploading): the batch is the last axis
    batch = psi.shape[1]
    x = psi.reshape(2**first, 2**k, -1, batch)
    m = m.to(psi.dtype)
    return torch.einsum("bac,lcrb->larb", m, x).reshape(psi.shape)


def block_gradient(g_out, psi_in, m, first, k, n, real):
    """d loss / d m for ``out = m @ psi_in`` (torch's convention: ``g @ psi^H``)."""
    if m.shape[0] == 1:
        g = _view(g_out, first, k, n, real)
        p = _view(psi_in, first, k, n, real)
        p = p if real else p.conj()
        return torch.bmm(g, p.transpose(1, 2)).sum(0, keepdim=True)
    batch = psi_in.shape[1]
    g = g_out.reshape(2**first, 2**k, -1, batch)
    p = psi_in.reshape(2**first, 2**k, -1, batch).conj()
    grad = torch.einsum("larb,lcrb->bac", g, p)
    return grad.real if real else grad


def apply_two_qubit(psi: torch.Tensor, m: torch.Tensor, a: int, b: int, n: int) -> torch.Tensor:
    batch = psi.shape[1]
    x = psi.reshape([2] * n + [batch]).movedim((a, b), (0, 1))
    moved = x.shape
    x = x.reshape(4, -1, batch)
    out = torch.einsum("ij,jrb->irb", m[0], x) if m.shape[0] == 1 else torch.einsum(
        "bij,jrb->irb", m, x
    )
    return out.reshape(moved).movedim((0, 1), (a, b)).reshape(psi.shape)


def two_qubit_gradient(g_out, psi_in, m, a, b, n):
    batch = psi_in.shape[1]

    def moved(t):
        return t.reshape([2] * n + [batch]).movedim((a, b), (0, 1)).reshape(4, -1, batch)

    if m.shape[0] == 1:
        return torch.einsum("irb,jrb->ij", moved(g_out), moved(psi_in).conj())[None]
    return torch.einsum("irb,jrb->bij", moved(g_out), moved(psi_in).conj())


# ---------------------------------------------------------------------------------------------
# A plan made executable on one device and dtype

FUSABLE_ROTATIONS = {"rx", "ry", "rz"}  # R(a) R(b) = R(a + b) about one axis


class Chain:
    """The one-qubit gates on one qubit, in order, as matrix *slots*; consecutive rotations
    about the same axis share one slot whose angle is the sum of theirs."""

    def __init__(self) -> None:
        self.slots: list[tuple[str, list[list[int]]]] = []  # (gate, angle columns per angle)

    def add(self, gate: Gate, columns: list[int]) -> None:
        if self.slots and gate.name in FUSABLE_ROTATIONS and self.slots[-1][0] == gate.name:
            self.slots[-1][1][0].extend(columns)
        else:
            self.slots.append((gate.name, [[c] for c in columns]))


class Workspace:
    """Reusable state-sized buffers, so that running a circuit allocates no state per stage.

    Measured on the QD-LLM circuit at batch 64: a fresh 1 MiB tensor per stage costs more
    than the stage itself, since the allocator hands freed pages back to the OS and every new
    state faults them in again (forward+backward 27 ms with fresh tensors, 11 ms without).
    Buffers are per thread, so concurrent calls on one backend do not share them.
    """

    KEEP = 2  # shapes kept (a training batch and a smaller last one); older ones are freed

    def __init__(self) -> None:
        self._buffers: dict[tuple, list[torch.Tensor]] = {}

    def buffers(self, like: torch.Tensor, count: int) -> list[torch.Tensor]:
        key = (threading.get_ident(), tuple(like.shape), like.dtype, like.device)
        if key not in self._buffers and len(self._buffers) >= self.KEEP:
            del self._buffers[next(iter(self._buffers))]
        pool = self._buffers.setdefault(key, [])
        while len(pool) < count:
            pool.append(torch.empty_like(like, memory_format=torch.contiguous_format))
        return pool[:count]


def _owned(buffers: list[torch.Tensor], current: torch.Tensor) -> bool:
    return any(b.data_ptr() == current.data_ptr() for b in buffers)


def _other(buffers: list[torch.Tensor], current: torch.Tensor) -> torch.Tensor:
    """The first buffer that is not ``current`` (to write a stage's output into)."""
    return next(b for b in buffers if b.data_ptr() != current.data_ptr())


class Program:
    """A plan with its index tensors on a device: builds operands, runs and undoes stages."""

    def __init__(self, plan: Plan, device: torch.device, cdtype: torch.dtype, block_qubits: int,
                 per_sample_weights: bool = False):
        self.plan = plan
        self.n = plan.circuit.n_qubits
        self.device = device
        self.cdtype = cdtype
        self.rdtype = torch.float64 if cdtype == torch.complex128 else torch.float32
        circuit = plan.circuit
        # Columns that differ between samples. Weight and constant columns are shared by the
        # batch, so their matrices are built once, unless the caller varies them per row (as
        # parameter shift does when it stacks shifted copies of a batch).
        self.input_columns = [per_sample_weights or a.source == "input"
                              for g in circuit.gates for a in g.angles]
        self.n_angles = len(self.input_columns)
        self.slots: list[tuple[str, list[list[int]]]] = []
        self.prefix = [self._chain(plan.prefix[q]) for q in range(self.n)]
        bits = basis_bits(self.n, device).to(self.rdtype)
        self.steps = [self._prepare(stage, bits, block_qubits) for stage in plan.stages]
        self._prepare_slot_groups()
        self.readouts = readout_tables(circuit, device)
        self.workspace = Workspace()
        z_rows = [t for kind, t in self.readouts if kind == "z"]
        self.z_matrix = torch.stack(z_rows, 1).to(self.rdtype) if z_rows else None
        self.readout_permutation = (
            torch.as_tensor(plan.readout_permutation, device=device)
            if plan.readout_permutation is not None
            else None
        )
        if self.readout_permutation is not None and len(z_rows) == len(self.readouts):
            # Only Z readouts: permute their sign table once instead of the probabilities at
            # every call, since sum_j p[perm[j]] z[j] = sum_i p[i] z[perm^-1[i]].
            self.z_matrix = self.z_matrix[torch.argsort(self.readout_permutation)]
            self.readout_permutation = None
        self.z_rows = self.z_matrix.T.contiguous() if self.z_matrix is not None else None

    # -- preparation ------------------------------------------------------------------------

    def _columns(self, pos: int, gate: Gate) -> list[int]:
        start = self.plan.angle_offsets[pos]
        return list(range(start, start + len(gate.angles)))

    def _chain(self, positions: list[int]) -> list[int]:
        """Slot numbers of the one-qubit gates at ``positions`` (on one qubit, in order)."""
        chain = Chain()
        for pos in positions:
            gate = self.plan.circuit.gates[pos]
            chain.add(gate, self._columns(pos, gate))
        first = len(self.slots)
        self.slots += chain.slots
        return list(range(first, len(self.slots)))

    def _prepare(self, stage: Stage, bits: torch.Tensor, block_qubits: int) -> dict:
        if stage.kind == "permutation":
            perm = permutation_index(self.n, [g for _, g in stage.gates])
            index = torch.as_tensor(perm, device=self.device)
            return {"kind": "permutation", "index": index, "inverse": torch.argsort(index)}
        if stage.kind == "diagonal":
            return self._prepare_diagonal(stage, bits)
        if stage.kind == "two-qubit":
            ((pos, gate),) = stage.gates
            return {"kind": "two-qubit", "gate": gate, "columns": self._columns(pos, gate)}
        # one-qubit: each qubit's gates as a chain of slots, qubits grouped into blocks
        per_qubit: dict[int, list[int]] = {}
        for pos, g in stage.gates:
            per_qubit.setdefault(g.qubits[0], []).append(pos)
        blocks, qubits = [], sorted(per_qubit)
        while qubits:
            first = qubits[0]
            members = [q for q in qubits if q < first + block_qubits]
            qubits = qubits[len(members) :]
            span = range(first, members[-1] + 1)
            real = all(self.plan.circuit.gates[p].name in REAL_GATES
                       for q in members for p in per_qubit[q])
            chains = [self._chain(per_qubit.get(q, [])) for q in span]
            blocks.append({"first": first, "k": len(span), "real": real, "chains": chains})
        return {"kind": "one-qubit", "blocks": blocks}

    def _prepare_diagonal(self, stage: Stage, bits: torch.Tensor) -> dict:
        columns, rows = [], []
        constant = torch.zeros(2**self.n, 1, dtype=self.rdtype, device=self.device)
        for pos, g in stage.gates:
            if g.name == "cz":
                constant = constant + cz_phase(g, bits)[:, None]
                continue
            rows.append(phase_per_angle(g, bits))
            columns += self._columns(pos, g)
        coefficients = torch.stack(rows, 1) if rows else None  # [2**n, G]
        return {"kind": "diagonal", "columns": columns, "coefficients": coefficients,
                "constant": constant, "batched": any(self.input_columns[c] for c in columns)}

    def _prepare_slot_groups(self) -> None:
        """Group matrix slots by (gate, depends on the input) so that each group's matrices
        are computed by a handful of vectorised ops; record where each slot lands."""
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, (name, cols) in enumerate(self.slots):
            batched = any(self.input_columns[c] for angle in cols for c in angle)
            groups.setdefault((name, batched), []).append(i)
        self.groups = []
        position: dict[int, tuple[bool, int]] = {}
        counts = {False: 0, True: 0}
        for (name, batched), members in groups.items():
            n_args = len(self.slots[members[0]][1])
            # angles [R, n_angles] @ sums [n_angles, len(members) * n_args]
            sums = torch.zeros(self.n_angles, len(members) * n_args, dtype=self.rdtype)
            for j, slot in enumerate(members):
                for a, cols in enumerate(self.slots[slot][1]):
                    for c in cols:
                        sums[c, j * n_args + a] += 1
            self.groups.append((name, batched, len(members), n_args, sums.to(self.device)))
            for slot in members:
                position[slot] = (batched, counts[batched])
                counts[batched] += 1
        self.slot_position = position
        self.identity_slot = counts[False]  # appended after the shared matrices
        self._prepare_block_groups()

    def _prepare_block_groups(self) -> None:
        """Group the one-qubit blocks of every stage by (size, real, depends on the input), so
        that each group's matrices are built by one gather, one chain product and one
        Kronecker sweep rather than one of each per block (fewer, larger ops: at batch 1 the
        per-op cost is what a call spends)."""
        groups: dict[tuple[int, bool, bool], list[tuple[int, dict]]] = {}
        for position, step in enumerate(self._stage_operands()):
            if step["kind"] == "block":
                batched = any(self.slot_position[s][0] for c in step["chains"] for s in c)
                groups.setdefault((step["k"], step["real"], batched), []).append(
                    (position, step))
        self.block_groups = [
            (k, real, [pos for pos, _ in members], [c for _, b in members for c in b["chains"]])
            for (k, real, _), members in groups.items()
        ]

    # -- operands ---------------------------------------------------------------------------

    def slot_matrices(self, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All one-qubit matrices: shared ``[1, S+1, 2, 2]`` (last: identity) and per-sample
        ``[B, S', 2, 2]`` (or None)."""
        shared, per_sample = [], []
        for name, batched, count, n_args, sums in self.groups:
            theta = (angles if batched else angles[:1]) @ sums
            theta = theta.reshape(theta.shape[0], count, n_args)
            (per_sample if batched else shared).append(
                one_qubit_matrices(name, theta, self.cdtype)
            )
        eye = torch.eye(2, dtype=self.cdtype, device=self.device).expand(1, 1, 2, 2)
        shared_all = torch.cat([*[m.expand(1, -1, 2, 2) for m in shared], eye], 1)
        return shared_all, (torch.cat(per_sample, 1) if per_sample else None)

    def _gather(self, matrices, slots: list[list[int]]) -> tuple[torch.Tensor, int]:
        """Matrices ``[R, rows, L, 2, 2]`` for chains of slots, padded with the identity."""
        shared, per_sample = matrices
        length = max((len(c) for c in slots), default=0)
        any_batched = any(self.slot_position[s][0] for c in slots for s in c)
        if any_batched:
            batch = per_sample.shape[0]
            pool = torch.cat([shared.expand(batch, -1, 2, 2), per_sample], 1)
            offset = shared.shape[1]
        else:
            pool, offset = shared, 0
        index = [
            [(self.slot_position[s][1] + (offset if self.slot_position[s][0] else 0))
             for s in chain] + [self.identity_slot] * (length - len(chain))
            for chain in slots
        ]
        index_t = torch.tensor(index, dtype=torch.long, device=self.device).reshape(-1)
        return pool[:, index_t].reshape(pool.shape[0], len(slots), length, 2, 2), length

    def operands(self, angles: torch.Tensor, matrices) -> list[torch.Tensor | None]:
        """Each stage's operand, in the order ``forward`` takes them (one per block)."""
        ops: list[torch.Tensor | None] = []
        for step in self._stage_operands():
            kind = step["kind"]
            if kind in ("permutation", "block"):
                ops.append(None)  # blocks are built together below
            elif kind == "diagonal":
                phase = step["constant"]
                if step["coefficients"] is not None:
                    rows = angles if step["batched"] else angles[:1]
                    phase = phase + step["coefficients"] @ rows[:, step["columns"]].T
                ops.append(phase)  # [2**n, 1|B]
            else:  # two-qubit
                cols = step["columns"]
                rows = angles if any(self.input_columns[c] for c in cols) else angles[:1]
                ops.append(controlled_matrices(step["gate"].name, rows[:, cols], self.cdtype))
        for k, real, positions, chains in self.block_groups:
            blocks = self._block_matrices(matrices, chains, k, real)
            for j, position in enumerate(positions):
                ops[position] = blocks[:, j]
        return ops

    def _block_matrices(self, matrices, chains: list[list[int]], k: int, real: bool):
        """``[R, blocks, 2**k, 2**k]``: per block, the Kronecker product of its qubits' chain
        products (``chains`` lists the k chains of each block in turn)."""
        chain_matrices, length = self._gather(matrices, chains)
        m = chain_matrices[:, :, 0]
        for t in range(1, length):
            m = chain_matrices[:, :, t] @ m  # later gates act after earlier ones
        m = m.reshape(m.shape[0], -1, k, 2, 2)
        total = m[:, :, 0]
        for q in range(1, k):
            total = kron(total, m[:, :, q])
        return total.real.contiguous() if real else total

    def start_state(self, angles: torch.Tensor, matrices) -> torch.Tensor:
        """The product state of each qubit's leading one-qubit gates, ``[2**n, B]``."""
        chain_matrices, length = self._gather(matrices, self.prefix)
        v = torch.zeros(chain_matrices.shape[0], self.n, 2, dtype=self.cdtype,
                        device=self.device)
        v[:, :, 0] = 1
        for t in range(length):
            v = (chain_matrices[:, :, t] @ v[..., None])[..., 0]
        v = v.permute(1, 2, 0).contiguous()  # [n, 2, R]; contiguous, or each kron copies
        state = v[0]
        for q in range(1, self.n):
            state = (state[:, None, :] * v[q][None, :, :]).reshape(-1, v.shape[2])
        return state.expand(-1, angles.shape[0]).contiguous()

    # -- running ----------------------------------------------------------------------------

    def forward(self, psi: torch.Tensor, operands: list) -> torch.Tensor:
        """The final state, a fresh tensor; ``psi`` is left as it was. Stages run in two
        reused buffers (diagonal stages in place)."""
        recording = torch.is_grad_enabled() and (
            psi.requires_grad or any(op is not None and op.requires_grad for op in operands)
        )
        # autograd (backprop mode) needs every stage's output kept: no buffers then
        pair = [] if recording else self.workspace.buffers(psi, 2)
        for step, operand in zip(self._stage_operands(), operands, strict=True):
            psi = self._apply(step, operand, psi, pair)
        return psi.clone() if _owned(pair, psi) else psi

    def _stage_operands(self):
        """Each step, once per operand it takes (a one-qubit stage: once per block)."""
        for step in self.steps:
            if step["kind"] == "one-qubit":
                yield from ({"kind": "block", **block} for block in step["blocks"])
            else:
                yield step

    def _apply(self, step: dict, operand, psi: torch.Tensor, pair: list[torch.Tensor]):
        """One stage on ``psi``, written into a buffer of ``pair`` (in place where it can)."""
        kind, owned = step["kind"], _owned(pair, psi)
        out = _other(pair, psi) if pair else None  # no pair: fresh tensors, as autograd needs
        if kind == "permutation":
            return torch.index_select(psi, 0, step["index"], out=out)
        if kind == "diagonal":
            phase = torch.polar(torch.ones_like(operand), operand)
            return psi.mul_(phase) if owned else torch.mul(psi, phase, out=out)
        if kind == "two-qubit":
            a, b = step["gate"].qubits
            return apply_two_qubit(psi, operand, a, b, self.n)
        return apply_block(psi, operand, step["first"], step["k"], self.n, step["real"], out=out)

    def backward(self, psi: torch.Tensor, grad: torch.Tensor, operands: list):
        """Undo the stages from the last, carrying the cotangent; returns the cotangent of
        the start state (a fresh tensor) and the gradient of every operand. ``psi`` and
        ``grad`` are left as they were."""
        buffers = self.workspace.buffers(psi, 4)
        psi_pair, grad_pair, scratch = buffers[:2], buffers[2:], None
        grads: list[torch.Tensor | None] = [None] * len(operands)
        steps = list(self._stage_operands())
        for i in range(len(steps) - 1, -1, -1):
            step, operand = steps[i], operands[i]
            kind = step["kind"]
            if kind == "diagonal":
                # d loss / d phase = -Im(conj(grad) * psi), taken before undoing the phase
                if scratch is None:
                    scratch = self.workspace.buffers(psi, 5)[4]
                g = torch.mul(grad.conj(), psi, out=scratch).imag
                grads[i] = -(g.sum(1, keepdim=True) if operand.shape[1] == 1 else g.clone())
                psi = self._apply(step, -operand, psi, psi_pair)
                grad = self._apply(step, -operand, grad, grad_pair)
            elif kind == "permutation":
                undo = {**step, "index": step["inverse"]}
                psi = self._apply(undo, None, psi, psi_pair)
                grad = self._apply(undo, None, grad, grad_pair)
            else:
                mh = operand.conj().transpose(-1, -2)
                psi = self._apply(step, mh, psi, psi_pair)
                if kind == "two-qubit":
                    a, b = step["gate"].qubits
                    grads[i] = two_qubit_gradient(grad, psi, operand, a, b, self.n)
                else:
                    grads[i] = block_gradient(grad, psi, operand, step["first"], step["k"],
                                              self.n, step["real"])
                grad = self._apply(step, mh, grad, grad_pair)
        grad = grad.clone() if _owned(grad_pair, grad) else grad
        return grad, grads

    def readout(self, psi: torch.Tensor) -> torch.Tensor:
        """``[B, m]`` readouts of a final state ``[2**n, B]``."""
        probs = SquaredMagnitude.apply(psi)
        if self.readout_permutation is not None:
            probs = probs.index_select(0, self.readout_permutation)
        # [m, 2**n] @ [2**n, B]: both operands row-major (probs.T @ z measured 2x slower)
        z_values = (self.z_rows @ probs).T if self.z_matrix is not None else None
        outputs, zi = [], 0
        for kind, table in self.readouts:
            if kind == "z":
                outputs.append(z_values[:, zi : zi + 1])
                zi += 1
            elif kind == "pauli":
                source, coeff = table
                flipped = psi.index_select(0, source) * coeff.to(psi.dtype)[:, None]
                outputs.append((psi.conj() * flipped).sum(0).real[:, None])
            else:
                outputs.append(self._marginal(probs, table))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)

    def _marginal(self, probs: torch.Tensor, qubits: tuple[int, ...]) -> torch.Tensor:
        batch = probs.shape[1]
        x = probs.reshape([2] * self.n + [batch])
        drop = [q for q in range(self.n) if q not in qubits]
        x = x.sum(dim=drop) if drop else x
        # summing keeps the remaining axes in qubit order; reorder to the readout's order
        order = sorted(qubits)
        x = x.permute([order.index(q) for q in qubits] + [len(qubits)])
        return x.reshape(-1, batch).T


class SquaredMagnitude(torch.autograd.Function):
    """``|psi|**2`` with its backward written out (``2 psi grad``): autograd through ``.real``
    and ``.imag`` builds and fills two complex zero tensors (readout fwd+bwd at batch 64
    measured 1.4 ms that way, 0.4 ms this way)."""

    @staticmethod
    def forward(ctx, psi: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(psi)
        return psi.real.square() + psi.imag.square()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (psi,) = ctx.saved_tensors
        return psi * (2 * grad)


def _detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


class AdjointRun(torch.autograd.Function):
    """Runs the stages without recording them; gradients by the adjoint method."""

    @staticmethod
    def forward(ctx, program: Program, psi0: torch.Tensor, *operands):
        # Detached: an operand that requires grad sends matmul down a folding path that copies
        # the state twice (measured 4.5x slower), even with grad mode off.
        operands = tuple(_detached(op) for op in operands)
        with torch.no_grad():
            out = program.forward(psi0.detach(), list(operands))
        ctx.program = program
        ctx.save_for_backward(out, *operands)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out, *operands = ctx.saved_tensors
        operands = [_detached(op) for op in operands]
        with torch.no_grad():
            grad_psi0, grads = ctx.program.backward(out, grad_out, operands)
        return (None, grad_psi0, *grads)
