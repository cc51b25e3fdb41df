"""The two floors a run of a circuit cannot go below on the machine measured, written down.

**Memory traffic.** State-sized transfers S that any statevector run of the QD-LLM circuit
with L layers makes: forward writes the start state, reads and writes the state once per layer
(a layer entangles every qubit, so no two layers fuse without a 2^n x 2^n matrix) and reads it
once for the readout: (2L + 2) S. The adjoint backward must at least read and write the state
and its cotangent once per layer: 4 L S. A state copy moves 2 S, so the floor in copy-times is
(2L + 2) / 2 forward and (6L + 2) / 2 forward+backward; the copy is timed in the same run.

**Arithmetic.** The real multiply-adds (FMAs) the CPU kernel's algorithm needs per sample,
counted from its compiled program (a complex product is 4 FMAs), over the machine's FMA rate
measured in the same run (:func:`fma_rate_kernel`: independent multiply-adds on data in L1).
This is a floor for this algorithm, not for every algorithm: it already applies each one-qubit
stage as one 2x2 per qubit, builds the start state as a product, and folds the last
permutation into the readout.

The binding floor is the larger of the two (a roofline). For the QD-LLM circuit on a CPU the
arithmetic one is the larger: each layer's ten rotations cost 40 FMAs per amplitude, while a
state transfer moves 8 bytes per amplitude.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qcompress_plugins.backends.torch_sim import cpu_kernel as k
from qcompress_plugins.backends.torch_sim.cpu_program import CpuProgram

LAYERS = 2
FLOOR_COPIES = {"forward": (2 * LAYERS + 2) / 2, "forward+backward": (6 * LAYERS + 2) / 2}

# FMAs per amplitude of each op, forward and adjoint backward (undo the state, undo the
# cotangent, the gradient's sums), by the kind of its 2x2: complex, real, a rotation
_FORWARD = {k.ONE: (8, 4, 4), k.ONE_SAMPLE: (8,) * 3, k.CTRL: (4,) * 3, k.PHASE: (4,) * 3,
            k.DIAG: (4,) * 3, k.PERM: (0,) * 3}
_BACKWARD = {k.ONE: (32, 12, 10), k.ONE_SAMPLE: (32,) * 3, k.CTRL: (16,) * 3,
             k.PHASE: (10,) * 3, k.DIAG: (10,) * 3, k.PERM: (0,) * 3}


def fma_per_sample(program: CpuProgram, mode: str) -> int:
    """Real multiply-adds per sample of the CPU kernel's algorithm, ``mode`` "forward" or
    "forward+backward"."""
    dim, outputs = program.dim, program.n_outputs
    total = 8 * dim + (2 + outputs) * dim  # start state (a product), |psi|^2 and the readout
    for row in program.ops:
        op = row[0]
        kind = program.kinds[row[2]] if op == k.ONE else k.COMPLEX
        if op == k.PERM and row[4] >= 0:
            op = k.PHASE  # the permutation multiplies its phases in as it moves the state
        total += _FORWARD[op][kind] * dim
        if mode == "forward+backward":
            total += _BACKWARD[op][kind] * dim
    if mode == "forward+backward":
        total += (2 + outputs) * dim + 20 * dim  # readout cotangent, start-state gradient
    return total


FMA_PER_VISIT = 8


@njit(parallel=True, fastmath=True, cache=True)
def fma_rate_kernel(data: np.ndarray, reps: int) -> None:
    """``reps * FMA_PER_VISIT`` multiply-adds on each value of ``data[thread, 256]``: the
    values are independent (so the loop runs at the FMA units' rate, not their latency), stay
    in L1, and take eight multiply-adds per load and store."""
    m, c = np.float32(0.999), np.float32(0.001)
    for t in prange(data.shape[0]):
        row = data[t]
        for _ in range(reps):
            for i in range(row.shape[0]):
                v = row[i]
                v = v * m + c
                v = v * m + c
                v = v * m + c
                v = v * m + c
                v = v * m + c
                v = v * m + c
                v = v * m + c
                v = v * m + c
                row[i] = v
