"""The torch backend's fused CPU kernel: a whole compiled plan run on a chunk of the batch while
that chunk stays in cache.

The torch-op kernel (:mod:`torch_kernels`) makes one pass over the whole batch's state per
stage, through a torch call each: at the QD-LLM size (11 qubits, batch 64, a 1 MiB state) its
time went to per-call overhead and to streaming the state through memory ~20 times. Here one
compiled function runs every stage on a chunk of ``C`` samples (``[2**n, C]``, real and
imaginary planes apart so the inner loop over samples is one SIMD vector), from the product
start state to the readout, so the state is read from cache, not memory. Gradients are the
adjoint method, on the same chunk: the final state the forward pass kept is undone stage by
stage while the cotangent is carried back. Memory: a few chunk states per thread, and the
batch's final states between a forward pass and its backward.

Everything the plan needs arrives as flat arrays (``ops`` rows, gate chains, phase tables,
permutations, a dense readout matrix); :mod:`cpu_program` builds them. Matrices of gates whose
angles are shared by the batch (weights, constants) are built once per call; those that depend
on the sample are built per sample. Small 2x2 arithmetic is done in complex128.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

# ops rows: (opcode, a, b, c, d)
ONE = 0  # 2x2 shared by the batch on qubit bit a, slot b
ONE_SAMPLE = 1  # per-sample 2x2 on qubit bit a, slot b
CTRL = 2  # per-sample 2x2 on target bit a where control bit c is set, slot b
PHASE = 3  # shared phase vector a
DIAG = 4  # per-sample diagonal gate: kind a (0 rz, 1 rzz, 2 crz), bits b, c, angle column d
PERM = 5  # permutation a: new[i] = old[perm[i]], with phase vectors b after it, c before it
#            (-1: none) multiplied in the same pass as their product d (-1: none)

# gate codes in chains
RX, RY, RZ, U3, H, X = 0, 1, 2, 3, 4, 5

# kinds of a slot's 2x2: complex; real (RY, H, X chains); a rotation (RY chains only)
COMPLEX, REAL, ROTATION = 0, 1, 2

_JIT = {"cache": True, "nogil": True, "fastmath": True, "error_model": "numpy"}
# The batch entry points spread chunks over numba's threads (OpenMP where it is there): one
# call from Python, measured 25% faster at batch 64 than a Python thread pool, whose threads
# wait for the GIL between chunks.
_PARALLEL = {**_JIT, "parallel": True}
_SQRT_HALF = 1.0 / math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------
# 2x2 gate matrices and their derivatives (complex128 tuples m00, m01, m10, m11)


@njit(**_JIT)
def gate_matrix(code, t, p, lam):
    c = math.cos(t / 2)
    s = math.sin(t / 2)
    if code == RX:
        return complex(c, 0), complex(0, -s), complex(0, -s), complex(c, 0)
    if code == RY:
        return complex(c, 0), complex(-s, 0), complex(s, 0), complex(c, 0)
    if code == RZ:
        return complex(c, -s), 0j, 0j, complex(c, s)
    if code == U3:
        ep = complex(math.cos(p), math.sin(p))
        el = complex(math.cos(lam), math.sin(lam))
        return complex(c, 0), -el * s, ep * s, ep * el * c
    if code == H:
        h = complex(_SQRT_HALF, 0)
        return h, h, h, -h
    return 0j, complex(1, 0), complex(1, 0), 0j  # X


@njit(**_JIT)
def gate_derivative(code, k, t, p, lam):
    """d matrix / d angle ``k`` of the gate."""
    c = math.cos(t / 2)
    s = math.sin(t / 2)
    if code == RX:
        return complex(-s / 2, 0), complex(0, -c / 2), complex(0, -c / 2), complex(-s / 2, 0)
    if code == RY:
        return complex(-s / 2, 0), complex(-c / 2, 0), complex(c / 2, 0), complex(-s / 2, 0)
    if code == RZ:
        return complex(-s / 2, -c / 2), 0j, 0j, complex(-s / 2, c / 2)
    ep = complex(math.cos(p), math.sin(p))
    el = complex(math.cos(lam), math.sin(lam))
    if k == 0:
        return complex(-s / 2, 0), -el * (c / 2), ep * (c / 2), -ep * el * (s / 2)
    if k == 1:
        return 0j, 0j, 1j * ep * s, 1j * ep * el * c
    return 0j, -1j * el * s, 0j, 1j * ep * el * c


@njit(**_JIT)
def _mul(a, b):
    return (a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3])


_EYE = (1 + 0j, 0j, 0j, 1 + 0j)


@njit(**_JIT)
def _gate(codes, cols, g, row):
    a = cols[g]
    t = row[a[0]] if a[0] >= 0 else 0.0
    p = row[a[1]] if a[1] >= 0 else 0.0
    lam = row[a[2]] if a[2] >= 0 else 0.0
    return codes[g], t, p, lam


@njit(**_JIT)
def chain_matrix(codes, cols, first, last, row):
    """Product of the chain's gates ``first .. last-1`` (later gates act after earlier)."""
    m = _EYE
    for g in range(first, last):
        code, t, p, lam = _gate(codes, cols, g, row)
        m = _mul(gate_matrix(code, t, p, lam), m)
    return m


@njit(**_JIT)
def chain_gradient(codes, cols, first, last, row, gm, grad_row):
    """Adds d loss / d angle of every gate in the chain to ``grad_row``, given ``gm``, the
    cotangent of the chain's product (d/dRe + i d/dIm). The derivative in gate g's angle is
    ``after_g dM_g before_g``; the products before and after each gate come from one sweep
    each way (recomputing them per gate cost a sine per gate pair, 40 µs a chunk in QD-LLM's
    seven-gate start chain)."""
    count = last - first
    if count == 1:  # most chains (an angle encoding): no products to build
        code, t, p, lam = _gate(codes, cols, first, row)
        for k in range(3 if code == U3 else (1 if code <= RZ else 0)):
            d = gate_derivative(code, k, t, p, lam)
            total = 0.0
            for e in range(4):
                total += (gm[e].conjugate() * d[e]).real
            grad_row[cols[first][k]] += total
        return
    ms = np.empty((count, 4), dtype=np.complex128)
    for g in range(count):
        code, t, p, lam = _gate(codes, cols, first + g, row)
        m = gate_matrix(code, t, p, lam)
        for e in range(4):
            ms[g, e] = m[e]
    after = np.empty((count, 4), dtype=np.complex128)
    acc = _EYE
    for g in range(count - 1, -1, -1):  # after_g = M_last-1 .. M_g+1
        for e in range(4):
            after[g, e] = acc[e]
        acc = _mul(acc, (ms[g, 0], ms[g, 1], ms[g, 2], ms[g, 3]))
    before = _EYE  # M_g-1 .. M_first
    for g in range(count):
        code, t, p, lam = _gate(codes, cols, first + g, row)
        a = (after[g, 0], after[g, 1], after[g, 2], after[g, 3])
        n_angles = 3 if code == U3 else (1 if code <= RZ else 0)
        for k in range(n_angles):
            d = _mul(a, _mul(gate_derivative(code, k, t, p, lam), before))
            total = 0.0
            for e in range(4):
                total += (gm[e].conjugate() * d[e]).real
            grad_row[cols[first + g][k]] += total
        before = _mul((ms[g, 0], ms[g, 1], ms[g, 2], ms[g, 3]), before)


@njit(**_JIT)
def shared_matrices(row, codes, cols, slot_start, per_sample, shared):
    """``shared[slot, 8]``: re/im of the 2x2 of every slot whose angles the batch shares."""
    for s in range(per_sample.shape[0]):
        if per_sample[s]:
            continue
        m = chain_matrix(codes, cols, slot_start[s], slot_start[s + 1], row)
        for e in range(4):
            shared[s, 2 * e] = m[e].real
            shared[s, 2 * e + 1] = m[e].imag


@njit(**_JIT)
def shared_gradients(row, codes, cols, slot_start, per_sample, gshared, grad_row):
    """Angle gradients of the shared slots from their matrices' summed cotangents."""
    for s in range(per_sample.shape[0]):
        if per_sample[s]:
            continue
        g = gshared[s]
        gm = (complex(g[0], g[1]), complex(g[2], g[3]), complex(g[4], g[5]), complex(g[6], g[7]))
        chain_gradient(codes, cols, slot_start[s], slot_start[s + 1], row, gm, grad_row)


@njit(**_JIT)
def phase_vectors(row, start, gates, phases):
    """``phases[v] = (cos, sin)`` of phase vector v: its constant part ``start[v]`` (cos,
    sin) times, per gate g (``gates[v, g]``: kind, bits and angle column, as in a DIAG op;
    column -1: none), ``exp(i coef_g(j) angle_g)`` with coef = +-1/2 or 0 at basis state j
    (:func:`_diag_coefficient`). One sine and cosine per gate rather than per basis state;
    the products in float64, so that the loop vectorises (and rounds once)."""
    dim = start.shape[2]
    acc_r, acc_i = np.empty(dim), np.empty(dim)
    for v in range(start.shape[0]):
        acc_r[:] = start[v, 0]
        acc_i[:] = start[v, 1]
        for g in range(gates.shape[1]):
            kind, b0, b1, col = gates[v, g, 0], gates[v, g, 1], gates[v, g, 2], gates[v, g, 3]
            if col < 0:
                continue
            c = math.cos(row[col] / 2)
            s = math.sin(row[col] / 2)
            controlled = 1.0 if kind == 2 else 0.0
            for j in range(dim):
                sign = _sign(controlled, j, b0, b1)
                f_r = 1.0 + abs(sign) * (c - 1.0)
                f_i = sign * s
                x_r, x_i = acc_r[j], acc_i[j]
                acc_r[j] = x_r * f_r - x_i * f_i
                acc_i[j] = x_r * f_i + x_i * f_r
        for j in range(dim):
            phases[v, 0, j] = acc_r[j]
            phases[v, 1, j] = acc_i[j]


@njit(**_JIT)
def permutation_phases(ops, perms, phases):
    """For each permutation that took in phase vectors, their product as the permutation
    applies it: ``phases[d, :, i] = exp(i phi_after[i]) exp(i phi_before[perm[i]])``."""
    one, zero = np.ones(1, dtype=phases.dtype)[0], np.zeros(1, dtype=phases.dtype)[0]
    for k in range(ops.shape[0]):
        if ops[k, 0] != PERM or ops[k, 4] < 0:
            continue
        perm, after, before, d = perms[ops[k, 1]], ops[k, 2], ops[k, 3], ops[k, 4]
        for i in range(perm.shape[0]):
            cr, ci = one, zero
            if after >= 0:
                cr, ci = phases[after, 0, i], phases[after, 1, i]
            if before >= 0:
                br, bi = phases[before, 0, perm[i]], phases[before, 1, perm[i]]
                cr, ci = cr * br - ci * bi, cr * bi + ci * br
            phases[d, 0, i], phases[d, 1, i] = cr, ci


# ---------------------------------------------------------------------------------------------
# Stages on a chunk: re/im are [2**n * C] (row-major [2**n, C])


# Loops index views and 2-D reshapes with range variables only: an index like ``base + k``
# might be negative as far as numba knows, and the wrap-around check it then adds stops
# vectorisation (measured 7x slower on a one-qubit pass).


@njit(**_JIT)
def _halves(x, base, run):
    """The rows of a block with the qubit's bit clear, then those with it set."""
    return x[base : base + run], x[base + run : base + 2 * run]


@njit(**_JIT)
def _one_shared(re, im, dim, cw, tbit, m, real):
    """A 2x2 shared by the chunk (``m``: re/im of m00, m01, m10, m11) on the qubit of bit
    ``tbit``: in each block, the rows with the bit clear are contiguous, then those with it
    set, so the inner loop runs over ``tbit * cw`` values."""
    a_r, a_i, b_r, b_i, c_r, c_i, d_r, d_i = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
    run = tbit * cw
    for base in range(0, dim * cw, 2 * run):
        (r0, r1), (i0, i1) = _halves(re, base, run), _halves(im, base, run)
        if real:
            for k in range(run):
                x0r, x0i, x1r, x1i = r0[k], i0[k], r1[k], i1[k]
                r0[k] = a_r * x0r + b_r * x1r
                i0[k] = a_r * x0i + b_r * x1i
                r1[k] = c_r * x0r + d_r * x1r
                i1[k] = c_r * x0i + d_r * x1i
        else:
            for k in range(run):
                x0r, x0i, x1r, x1i = r0[k], i0[k], r1[k], i1[k]
                r0[k] = a_r * x0r - a_i * x0i + b_r * x1r - b_i * x1i
                i0[k] = a_r * x0i + a_i * x0r + b_r * x1i + b_i * x1r
                r1[k] = c_r * x0r - c_i * x0i + d_r * x1r - d_i * x1i
                i1[k] = c_r * x0i + c_i * x0r + d_r * x1i + d_i * x1r


@njit(**_JIT)
def _one_per_sample(re, im, dim, cw, tbit, cbit, mc):
    """A 2x2 per sample (``mc`` is ``[8, cw]``: re/im of m00, m01, m10, m11) on bit ``tbit``,
    on the rows whose control bit ``cbit`` is set (``cbit`` 0: every row)."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    for i0 in range(dim):
        if i0 & tbit or (i0 & cbit) != cbit:
            continue
        i1 = i0 | tbit
        for c in range(cw):
            x0r, x0i, x1r, x1i = r2[i0, c], i2[i0, c], r2[i1, c], i2[i1, c]
            r2[i0, c] = mc[0, c] * x0r - mc[1, c] * x0i + mc[2, c] * x1r - mc[3, c] * x1i
            i2[i0, c] = mc[0, c] * x0i + mc[1, c] * x0r + mc[2, c] * x1i + mc[3, c] * x1r
            r2[i1, c] = mc[4, c] * x0r - mc[5, c] * x0i + mc[6, c] * x1r - mc[7, c] * x1i
            i2[i1, c] = mc[4, c] * x0i + mc[5, c] * x0r + mc[6, c] * x1i + mc[7, c] * x1r


# The multiply of a row by a phase is written out in each loop that does it (here, the
# permutations, the diagonal gates): a shared helper over row views, even inlined, measured
# 6-17% slower.
@njit(**_JIT)
def _phase(re, im, dim, cw, pr, pi):
    """Multiply row ``i`` by ``exp(i phi_i)`` (``pr, pi`` = cos, sin of phi)."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    for i in range(dim):
        cr, ci = pr[i], pi[i]
        for c in range(cw):
            xr, xi = r2[i, c], i2[i, c]
            r2[i, c] = cr * xr - ci * xi
            i2[i, c] = cr * xi + ci * xr


@njit(**_JIT)
def _diag_coefficient(kind, i, b0, b1):
    """A diagonal gate (kind 0: RZ on bit b0; 1: RZZ on b0, b1; 2: CRZ, control b0, target
    b1) multiplies basis state ``i`` by ``exp(i coef angle)``; coef = sign / 2."""
    return 0.5 * _sign(1.0 if kind == 2 else 0.0, i, b0, b1)


@njit(**_JIT)
def _sign(controlled, i, b0, b1):
    """The sign of :func:`_diag_coefficient`, the kind given as ``controlled`` (1.0 for CRZ,
    else 0.0): -z0 (RZ), -z0 z1 (RZZ), -set0 z1 (CRZ), with z = +-1 a bit's Z eigenvalue
    (b1 = 0 for RZ, so z1 = 1). Without a branch, a loop over i that calls it vectorises."""
    set0 = 1.0 if i & b0 else 0.0
    z1 = -1.0 if i & b1 else 1.0
    return -((1.0 - controlled) * (1.0 - 2.0 * set0) + controlled * set0) * z1


@njit(**_JIT)
def _diag_sample(re, im, dim, cw, kind, b0, b1, half, sign):
    """A per-sample diagonal gate; ``half`` is ``[2, cw]``: cos, sin of each angle / 2 (every
    coefficient is 0 or +-1/2, so no other sines are needed)."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    for i in range(dim):
        coef = _diag_coefficient(kind, i, b0, b1)
        if coef == 0.0:
            continue
        forward = (coef > 0) == (sign > 0)
        for c in range(cw):
            cr = half[0, c]
            ci = half[1, c] if forward else -half[1, c]
            xr, xi = r2[i, c], i2[i, c]
            r2[i, c] = cr * xr - ci * xi
            i2[i, c] = cr * xi + ci * xr


@njit(**_JIT)
def _half_angles(rows, col, half):
    for c in range(rows.shape[0]):
        half[0, c] = math.cos(rows[c, col] / 2)
        half[1, c] = math.sin(rows[c, col] / 2)


@njit(**_JIT)
def _permute(src_re, src_im, dst_re, dst_im, dim, cw, perm, phases, d):
    """``new[i] = exp(i phi_d[i]) old[perm[i]]``, or a plain permutation where ``d`` is -1:
    a permutation and the phase vectors on either side of it in one pass (a pass over a
    chunk costs about as much as its arithmetic)."""
    sr, si = src_re.reshape(dim, cw), src_im.reshape(dim, cw)
    dr, di = dst_re.reshape(dim, cw), dst_im.reshape(dim, cw)
    if d < 0:
        for i in range(dim):
            s = perm[i]
            for c in range(cw):
                dr[i, c] = sr[s, c]
                di[i, c] = si[s, c]
        return
    pr, pi = phases[d, 0], phases[d, 1]
    for i in range(dim):
        s = perm[i]
        cr, ci = pr[i], pi[i]
        for c in range(cw):
            xr, xi = sr[s, c], si[s, c]
            dr[i, c] = cr * xr - ci * xi
            di[i, c] = cr * xi + ci * xr


@njit(**_JIT)
def _unpermute(src_re, src_im, dst_re, dst_im, dim, cw, perm, phases, d):
    """Undo :func:`_permute`: ``old[perm[i]] = conj(exp(i phi_d[i])) new[i]``."""
    sr, si = src_re.reshape(dim, cw), src_im.reshape(dim, cw)
    dr, di = dst_re.reshape(dim, cw), dst_im.reshape(dim, cw)
    one, zero = np.ones(1, dtype=src_re.dtype)[0], np.zeros(1, dtype=src_re.dtype)[0]
    for i in range(dim):
        s = perm[i]
        cr, ci = (phases[d, 0, i], phases[d, 1, i]) if d >= 0 else (one, zero)
        for c in range(cw):
            xr, xi = sr[i, c], si[i, c]
            dr[s, c] = cr * xr + ci * xi
            di[s, c] = cr * xi - ci * xr


@njit(**_JIT)
def _undo_permute(re, im, lr, li, dst_re, dst_im, dim, cw, perm, phases, after, before, d,
                  gphases):
    """Undo :func:`_permute` on the state (into ``dst``) and add the gradients of the phase
    vectors it took in: ``q_i = sum_c -Im(conj(lambda_i) psi_i)`` at the output is
    ``d loss / d phi_after[i]`` and ``d loss / d phi_before[perm[i]]`` (a phase leaves
    conj(lambda) psi unchanged; the permutation moves it)."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    s2, t2 = lr.reshape(dim, cw), li.reshape(dim, cw)
    dr, di = dst_re.reshape(dim, cw), dst_im.reshape(dim, cw)
    one, zero = np.ones(1, dtype=re.dtype)[0], np.zeros(1, dtype=re.dtype)[0]
    for i in range(dim):
        s = perm[i]
        cr, ci = (phases[d, 0, i], phases[d, 1, i]) if d >= 0 else (one, zero)
        acc = zero
        for c in range(cw):
            xr, xi = r2[i, c], i2[i, c]
            acc += t2[i, c] * xr - s2[i, c] * xi
            dr[s, c] = cr * xr + ci * xi
            di[s, c] = cr * xi - ci * xr
        if after >= 0:
            gphases[after, i] += acc
        if before >= 0:
            gphases[before, s] += acc


# ---------------------------------------------------------------------------------------------
# One chunk, forwards


@njit(**_JIT)
def _sample_matrices(rows, codes, cols, slot_start, per_sample, mats):
    """Per-sample matrices ``mats[slot, 8, c]`` of the slots that depend on the sample."""
    for s in range(per_sample.shape[0]):
        if not per_sample[s]:
            continue
        for c in range(rows.shape[0]):
            m = chain_matrix(codes, cols, slot_start[s], slot_start[s + 1], rows[c])
            for e in range(4):
                mats[s, 2 * e, c] = m[e].real
                mats[s, 2 * e + 1, c] = m[e].imag


@njit(**_JIT)
def _start_vectors(prefix, mats, n, cw, v):
    """``v[q, 4, c]``: re/im of (v0, v1), qubit q's start vector for sample c (the first
    column of its prefix chain; |0> without one), in the state's precision."""
    for q in range(n):
        s = prefix[q]
        for c in range(cw):
            if s < 0:
                v[q, 0, c], v[q, 1, c], v[q, 2, c], v[q, 3, c] = 1.0, 0.0, 0.0, 0.0
            else:
                v[q, 0, c], v[q, 1, c] = mats[s, 0, c], mats[s, 1, c]
                v[q, 2, c], v[q, 3, c] = mats[s, 4, c], mats[s, 5, c]


@njit(**_JIT)
def _prepend(t_r, t_i, size, cw, v, q, out_r, out_i):
    """Rows ``[0, 2 size)`` of ``out`` = v_q (x) the first ``size`` rows of ``t``: qubit q
    becomes the most significant bit. ``out`` must not overlap ``t``: LLVM checks for overlap
    at run time and falls back to scalar code when it finds any (measured 4x slower)."""
    for r in range(size):
        for c in range(cw):
            xr, xi = t_r[r, c], t_i[r, c]
            out_r[r + size, c] = xr * v[q, 2, c] - xi * v[q, 3, c]
            out_i[r + size, c] = xr * v[q, 3, c] + xi * v[q, 2, c]
            out_r[r, c] = xr * v[q, 0, c] - xi * v[q, 1, c]
            out_i[r, c] = xr * v[q, 1, c] + xi * v[q, 0, c]


@njit(**_JIT)
def _start_state(re, im, spare_r, spare_i, n, cw, prefix, mats, v):
    """The product state of each qubit's prefix chain applied to |0>, built from the last
    qubit up, each step doubling the rows, between the state and a spare buffer."""
    dim = 1 << n
    _start_vectors(prefix, mats, n, cw, v)
    # n steps alternate buffers: start where the last step writes into the state
    a_r, a_i = (spare_r, spare_i) if n % 2 else (re, im)
    b_r, b_i = (re, im) if n % 2 else (spare_r, spare_i)
    a_r2, a_i2 = a_r.reshape(dim, cw), a_i.reshape(dim, cw)
    for c in range(cw):
        a_r2[0, c] = 1.0
        a_i2[0, c] = 0.0
    size = 1
    for q in range(n - 1, -1, -1):
        _prepend(a_r.reshape(dim, cw), a_i.reshape(dim, cw), size, cw, v, q,
                 b_r.reshape(dim, cw), b_i.reshape(dim, cw))
        a_r, b_r = b_r, a_r
        a_i, b_i = b_i, a_i
        size *= 2


@njit(**_JIT)
def _stage_end(ops, k, step):
    """Where the run of shared 2x2s that starts at op ``k`` ends (``step`` 1: forwards, -1:
    backwards): it stops at any other op and at a qubit seen already, so its gates commute."""
    seen = 0
    while 0 <= k < ops.shape[0] and ops[k, 0] == ONE and not seen & ops[k, 1]:
        seen |= ops[k, 1]
        k += step
    return k


@njit(**_JIT)
def _tiles(dim, cw, tile):
    """How a stage is cut into tiles of about ``tile`` values a plane: ``rows`` (a power of
    two, at most the state) per low tile of ``size = rows * cw`` values; the high sweep's
    ``[high, size]`` view (``high = dim // rows``) in column groups of ``width``, whole
    cache lines at least."""
    rows = 1
    while rows < dim and 2 * rows * cw <= tile:
        rows *= 2
    size = rows * cw
    high = dim // rows
    return rows, size, high, min(size, max(16, tile // high))


@njit(**_JIT)
def _copy(src, dst):
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@njit(**_JIT)
def _gather(planes, buffers, high, size, col, width, back):
    """Copy columns ``[col, col + width)`` of each plane's ``[high, size]`` view into the
    start of its buffer (``back``: from the buffer into the plane). Row by row through
    :func:`_copy`: numba's slice assignment took 7x as long."""
    for p in range(len(planes)):
        view = planes[p].reshape(high, size)
        buf = buffers[p][: high * width].reshape(high, width)
        for j in range(high):
            if back:
                _copy(buf[j], view[j, col : col + width])
            else:
                _copy(view[j, col : col + width], buf[j])


@njit(**_JIT)
def _apply_one(re, im, dim, cw, tbit, slot, shared, kinds):
    """The shared 2x2 of ``slot`` on bit ``tbit`` (real arithmetic where it is real)."""
    _one_shared(re, im, dim, cw, tbit, shared[slot], kinds[slot] != COMPLEX)


@njit(**_JIT)
def _one_stage(re, im, dim, cw, ops, first, last, shared, kinds, tile):
    """The shared 2x2s ``ops[first:last]`` (on distinct qubits: they commute) in two sweeps
    over cache-sized tiles instead of a pass over the chunk each: the gates on bits below a
    tile's rows on each run of rows, then the others on tiles gathered from the
    ``[dim // rows, rows * cw]`` view (a gate on bit b >= rows is one on bit b // rows there,
    with the low rows as more columns). A state that does not fit in cache then streams
    from memory twice a stage, not once a qubit."""
    rows, size, high, width = _tiles(dim, cw, tile)
    for base in range(0, dim * cw, size):
        end = base + size
        for k in range(first, last):
            if ops[k, 1] < rows:
                _apply_one(re[base:end], im[base:end], rows, cw, ops[k, 1], ops[k, 2], shared,
                           kinds)
    if high == 1:
        return
    bufs = np.empty((2, high * width), dtype=re.dtype)
    for col in range(0, size, width):
        w = min(width, size - col)
        part = high * w
        _gather((re, im), (bufs[0], bufs[1]), high, size, col, w, False)
        for k in range(first, last):
            if ops[k, 1] >= rows:
                _apply_one(bufs[0, :part], bufs[1, :part], high, w, ops[k, 1] // rows,
                           ops[k, 2], shared, kinds)
        _gather((re, im), (bufs[0], bufs[1]), high, size, col, w, True)


@njit(**_JIT)
def _run_ops(re, im, re2, im2, dim, cw, ops, shared, kinds, mats, phases, perms, rows, tmp,
             tile):
    """Apply every op; returns how many permutations ran (each swaps the buffer pairs).
    ``tile`` > 0: runs of shared 2x2s go tile by tile (:func:`_one_stage`)."""
    swaps = 0
    k = 0
    while k < ops.shape[0]:
        op = ops[k, 0]
        if op == ONE and tile > 0:
            end = _stage_end(ops, k, 1)
            _one_stage(re, im, dim, cw, ops, k, end, shared, kinds, tile)
            k = end
            continue
        if op == ONE:
            _apply_one(re, im, dim, cw, ops[k, 1], ops[k, 2], shared, kinds)
        elif op == ONE_SAMPLE:
            _one_per_sample(re, im, dim, cw, ops[k, 1], 0, mats[ops[k, 2]])
        elif op == CTRL:
            _one_per_sample(re, im, dim, cw, ops[k, 1], ops[k, 3], mats[ops[k, 2]])
        elif op == PHASE:
            _phase(re, im, dim, cw, phases[ops[k, 1], 0], phases[ops[k, 1], 1])
        elif op == DIAG:
            _half_angles(rows, ops[k, 4], tmp)
            _diag_sample(re, im, dim, cw, ops[k, 1], ops[k, 2], ops[k, 3], tmp, 1.0)
        else:
            _permute(re, im, re2, im2, dim, cw, perms[ops[k, 1]], phases, ops[k, 4])
            re, re2 = re2, re
            im, im2 = im2, im
            swaps += 1
        k += 1
    return swaps


@njit(**_JIT)
def _readout(re, im, dim, cw, readout, probs, out):
    """``out[c, r] = sum_i readout[r, i] |psi[i, c]|**2``; ``probs`` is a ``[2**n * C]``
    buffer. The sum is a BLAS matrix product: a hand loop over rows of C values spends
    more on each row's setup than on its arithmetic."""
    for k in range(dim * cw):
        probs[k] = re[k] * re[k] + im[k] * im[k]
    out[:, :] = np.dot(readout, probs.reshape(dim, cw)).T


@njit(**_JIT)
def forward_chunk(rows, n, ops, codes, cols, slot_start, per_sample, prefix, shared, kinds,
                  phases, perms, readout, tile, ws, mats, vectors, tmp, out, saved):
    """Outputs ``out[C, m]`` for the angle rows of one chunk; ``ws`` is ``[5, 2**n * C]``.
    The final state goes to ``saved`` (``[2, 2**n * C]``) unless it is empty; the
    per-sample matrices are left in ``mats`` (for the backward, when the caller keeps them)."""
    cw = rows.shape[0]
    dim = 1 << n
    size = dim * cw
    keep = saved.shape[1] > 0
    # each permutation swaps the two buffer pairs: with an even count the state ends where it
    # started, so start it in ``saved`` and skip copying it there at the end
    perm_count = 0
    for k in range(ops.shape[0]):
        perm_count += ops[k, 0] == PERM
    in_saved = keep and perm_count % 2 == 0
    re, im = (saved[0, :size], saved[1, :size]) if in_saved else (ws[0, :size], ws[1, :size])
    re2, im2 = ws[2, :size], ws[3, :size]
    _sample_matrices(rows, codes, cols, slot_start, per_sample, mats)
    _start_state(re, im, re2, im2, n, cw, prefix, mats, vectors)
    swaps = _run_ops(re, im, re2, im2, dim, cw, ops, shared, kinds, mats, phases, perms, rows,
                     tmp, tile)
    final_r, final_i = (re, im) if swaps % 2 == 0 else (re2, im2)
    _readout(final_r, final_i, dim, cw, readout, ws[4, :size], out)
    if keep and not in_saved:
        saved[0, :size] = final_r
        saved[1, :size] = final_i


# ---------------------------------------------------------------------------------------------
# One chunk, backwards (adjoint method)


@njit(**_JIT)
def _undo_one_shared(re, im, lr, li, dim, cw, tbit, m, gm):
    """Undo a shared 2x2 on the state and the cotangent; ``gm[8]`` += its cotangent
    ``sum lambda_out psi_in^H`` (re/im of the 4 entries)."""
    # entries of M^H: (M^H)00 = conj m00, (M^H)01 = conj m10, ...
    a_r, a_i, b_r, b_i = m[0], -m[1], m[4], -m[5]
    c_r, c_i, d_r, d_i = m[2], -m[3], m[6], -m[7]
    run = tbit * cw
    # sums in the state's precision: mixed with float64 they would not vectorise
    zero = np.zeros(1, dtype=re.dtype)[0]
    g0r = g0i = g1r = g1i = g2r = g2i = g3r = g3i = zero
    for base in range(0, dim * cw, 2 * run):
        (r0, r1), (i0, i1) = _halves(re, base, run), _halves(im, base, run)
        (s0, s1), (t0, t1) = _halves(lr, base, run), _halves(li, base, run)
        for k in range(run):
            x0r, x0i, x1r, x1i = r0[k], i0[k], r1[k], i1[k]
            y0r = a_r * x0r - a_i * x0i + b_r * x1r - b_i * x1i
            y0i = a_r * x0i + a_i * x0r + b_r * x1i + b_i * x1r
            y1r = c_r * x0r - c_i * x0i + d_r * x1r - d_i * x1i
            y1i = c_r * x0i + c_i * x0r + d_r * x1i + d_i * x1r
            r0[k], i0[k], r1[k], i1[k] = y0r, y0i, y1r, y1i
            l0r, l0i, l1r, l1i = s0[k], t0[k], s1[k], t1[k]
            # lambda_out[j] * conj(psi_in[k])
            g0r += l0r * y0r + l0i * y0i
            g0i += l0i * y0r - l0r * y0i
            g1r += l0r * y1r + l0i * y1i
            g1i += l0i * y1r - l0r * y1i
            g2r += l1r * y0r + l1i * y0i
            g2i += l1i * y0r - l1r * y0i
            g3r += l1r * y1r + l1i * y1i
            g3i += l1i * y1r - l1r * y1i
            s0[k] = a_r * l0r - a_i * l0i + b_r * l1r - b_i * l1i
            t0[k] = a_r * l0i + a_i * l0r + b_r * l1i + b_i * l1r
            s1[k] = c_r * l0r - c_i * l0i + d_r * l1r - d_i * l1i
            t1[k] = c_r * l0i + c_i * l0r + d_r * l1i + d_i * l1r
    gm[0] += g0r
    gm[1] += g0i
    gm[2] += g1r
    gm[3] += g1i
    gm[4] += g2r
    gm[5] += g2i
    gm[6] += g3r
    gm[7] += g3i


@njit(**_JIT)
def _undo_one_real(re, im, lr, li, dim, cw, tbit, m, gm):
    """:func:`_undo_one_shared` for a real matrix (RY, H, X chains): every derivative of it
    is real too, so only the real part of its cotangent is needed."""
    a, b, c_, d = m[0], m[4], m[2], m[6]  # M^T: (M^T)00 = m00, (M^T)01 = m10, ...
    run = tbit * cw
    zero = np.zeros(1, dtype=re.dtype)[0]
    g0 = g1 = g2 = g3 = zero
    for base in range(0, dim * cw, 2 * run):
        (r0, r1), (i0, i1) = _halves(re, base, run), _halves(im, base, run)
        (s0, s1), (t0, t1) = _halves(lr, base, run), _halves(li, base, run)
        for k in range(run):
            x0r, x0i, x1r, x1i = r0[k], i0[k], r1[k], i1[k]
            y0r = a * x0r + b * x1r
            y0i = a * x0i + b * x1i
            y1r = c_ * x0r + d * x1r
            y1i = c_ * x0i + d * x1i
            r0[k], i0[k], r1[k], i1[k] = y0r, y0i, y1r, y1i
            l0r, l0i, l1r, l1i = s0[k], t0[k], s1[k], t1[k]
            g0 += l0r * y0r + l0i * y0i
            g1 += l0r * y1r + l0i * y1i
            g2 += l1r * y0r + l1i * y0i
            g3 += l1r * y1r + l1i * y1i
            s0[k] = a * l0r + b * l1r
            t0[k] = a * l0i + b * l1i
            s1[k] = c_ * l0r + d * l1r
            t1[k] = c_ * l0i + d * l1i
    gm[0] += g0
    gm[2] += g1
    gm[4] += g2
    gm[6] += g3


@njit(**_JIT)
def _undo_rotation(re, im, lr, li, dim, cw, tbit, m, gm):
    """:func:`_undo_one_real` for a chain of RY rotations, R(phi) with phi the sum of their
    angles: dR/dphi psi_in = G psi_out / 2 (G = [[0, -1], [1, 0]]), so the one number the
    gradient needs, D = d loss / d phi = sum (lambda_1 . psi_0 - lambda_0 . psi_1) / 2 over
    the output state and cotangent, takes 2 multiply-adds an amplitude where the general
    2x2 cotangent takes 4. It is stored as the 2x2 cotangent D [[m01, -m00], [m11, -m10]],
    which gives every RY of the chain the gradient D through :func:`chain_gradient`."""
    a, b, c_, d = m[0], m[4], m[2], m[6]  # M^T
    run = tbit * cw
    zero = np.zeros(1, dtype=re.dtype)[0]
    acc = zero
    for base in range(0, dim * cw, 2 * run):
        (r0, r1), (i0, i1) = _halves(re, base, run), _halves(im, base, run)
        (s0, s1), (t0, t1) = _halves(lr, base, run), _halves(li, base, run)
        for k in range(run):
            x0r, x0i, x1r, x1i = r0[k], i0[k], r1[k], i1[k]
            l0r, l0i, l1r, l1i = s0[k], t0[k], s1[k], t1[k]
            acc += l1r * x0r + l1i * x0i - l0r * x1r - l0i * x1i
            r0[k] = a * x0r + b * x1r
            i0[k] = a * x0i + b * x1i
            r1[k] = c_ * x0r + d * x1r
            i1[k] = c_ * x0i + d * x1i
            s0[k] = a * l0r + b * l1r
            t0[k] = a * l0i + b * l1i
            s1[k] = c_ * l0r + d * l1r
            t1[k] = c_ * l0i + d * l1i
    half = acc / 2
    gm[0] += half * m[2]
    gm[2] -= half * m[0]
    gm[4] += half * m[6]
    gm[6] -= half * m[4]


@njit(**_JIT)
def _undo_one(re, im, lr, li, dim, cw, tbit, slot, shared, kinds, gshared):
    """Undo the shared 2x2 of ``slot`` on bit ``tbit``, by the kind of its matrix."""
    if kinds[slot] == ROTATION:
        _undo_rotation(re, im, lr, li, dim, cw, tbit, shared[slot], gshared[slot])
    elif kinds[slot] == REAL:
        _undo_one_real(re, im, lr, li, dim, cw, tbit, shared[slot], gshared[slot])
    else:
        _undo_one_shared(re, im, lr, li, dim, cw, tbit, shared[slot], gshared[slot])


@njit(**_JIT)
def _undo_stage(re, im, lr, li, dim, cw, ops, first, last, shared, kinds, gshared, tile):
    """:func:`_one_stage` backwards on the state and the cotangent: the high sweep, then the
    low one, each undoing its gates in reverse order (the gradient sums add up over tiles)."""
    rows, size, high, width = _tiles(dim, cw, tile)
    if high > 1:
        bufs = np.empty((4, high * width), dtype=re.dtype)
        for col in range(0, size, width):
            w = min(width, size - col)
            planes, buffers = (re, im, lr, li), (bufs[0], bufs[1], bufs[2], bufs[3])
            _gather(planes, buffers, high, size, col, w, False)
            part = high * w
            for k in range(last - 1, first - 1, -1):
                if ops[k, 1] >= rows:
                    _undo_one(bufs[0, :part], bufs[1, :part], bufs[2, :part], bufs[3, :part],
                              high, w, ops[k, 1] // rows, ops[k, 2], shared, kinds, gshared)
            _gather(planes, buffers, high, size, col, w, True)
    for base in range(0, dim * cw, size):
        end = base + size
        for k in range(last - 1, first - 1, -1):
            if ops[k, 1] < rows:
                _undo_one(re[base:end], im[base:end], lr[base:end], li[base:end], rows, cw,
                          ops[k, 1], ops[k, 2], shared, kinds, gshared)


@njit(**_JIT)
def _undo_one_per_sample(re, im, lr, li, dim, cw, tbit, cbit, mc, gmc):
    """As :func:`_undo_one_shared` with a matrix per sample (``mc``, ``gmc``: ``[8, cw]``)."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    s2, t2 = lr.reshape(dim, cw), li.reshape(dim, cw)
    for j0 in range(dim):
        if j0 & tbit or (j0 & cbit) != cbit:
            continue
        j1 = j0 | tbit
        for c in range(cw):
            a_r, a_i = mc[0, c], -mc[1, c]
            b_r, b_i = mc[4, c], -mc[5, c]
            c_r, c_i = mc[2, c], -mc[3, c]
            d_r, d_i = mc[6, c], -mc[7, c]
            x0r, x0i, x1r, x1i = r2[j0, c], i2[j0, c], r2[j1, c], i2[j1, c]
            y0r = a_r * x0r - a_i * x0i + b_r * x1r - b_i * x1i
            y0i = a_r * x0i + a_i * x0r + b_r * x1i + b_i * x1r
            y1r = c_r * x0r - c_i * x0i + d_r * x1r - d_i * x1i
            y1i = c_r * x0i + c_i * x0r + d_r * x1i + d_i * x1r
            r2[j0, c], i2[j0, c], r2[j1, c], i2[j1, c] = y0r, y0i, y1r, y1i
            l0r, l0i, l1r, l1i = s2[j0, c], t2[j0, c], s2[j1, c], t2[j1, c]
            gmc[0, c] += l0r * y0r + l0i * y0i
            gmc[1, c] += l0i * y0r - l0r * y0i
            gmc[2, c] += l0r * y1r + l0i * y1i
            gmc[3, c] += l0i * y1r - l0r * y1i
            gmc[4, c] += l1r * y0r + l1i * y0i
            gmc[5, c] += l1i * y0r - l1r * y0i
            gmc[6, c] += l1r * y1r + l1i * y1i
            gmc[7, c] += l1i * y1r - l1r * y1i
            s2[j0, c] = a_r * l0r - a_i * l0i + b_r * l1r - b_i * l1i
            t2[j0, c] = a_r * l0i + a_i * l0r + b_r * l1i + b_i * l1r
            s2[j1, c] = c_r * l0r - c_i * l0i + d_r * l1r - d_i * l1i
            t2[j1, c] = c_r * l0i + c_i * l0r + d_r * l1i + d_i * l1r


@njit(**_JIT)
def _undo_phase(re, im, lr, li, dim, cw, pr, pi, gphi):
    """Undo a shared phase vector on the state and the cotangent, in one pass, and add
    ``gphi[i] += sum_c d loss / d phi_i = -Im(conj(lambda) psi)`` (the same before and after
    the undo: a phase multiplies both)."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    s2, t2 = lr.reshape(dim, cw), li.reshape(dim, cw)
    zero = np.zeros(1, dtype=re.dtype)[0]  # a float32 sum vectorises; a float64 one did not
    for i in range(dim):
        cr, ci = pr[i], pi[i]
        acc = zero
        for c in range(cw):
            xr, xi, yr, yi = r2[i, c], i2[i, c], s2[i, c], t2[i, c]
            acc += yi * xr - yr * xi
            r2[i, c] = cr * xr + ci * xi
            i2[i, c] = cr * xi - ci * xr
            s2[i, c] = cr * yr + ci * yi
            t2[i, c] = cr * yi - ci * yr
        gphi[i] += acc


@njit(**_JIT)
def _diag_gradient(re, im, lr, li, dim, cw, kind, b0, b1, grad, col):
    """Per-sample angle gradient of a diagonal gate: sum_i coef_i * d loss / d phi_i."""
    r2, i2 = re.reshape(dim, cw), im.reshape(dim, cw)
    s2, t2 = lr.reshape(dim, cw), li.reshape(dim, cw)
    for i in range(dim):
        coef = _diag_coefficient(kind, i, b0, b1)
        if coef == 0.0:
            continue
        for c in range(cw):
            grad[c, col] += coef * (t2[i, c] * r2[i, c] - s2[i, c] * i2[i, c])


@njit(**_JIT)
def _readout_cotangent(re, im, lr, li, dim, cw, readout_t, grad_out):
    """lambda = d loss / d psi of the readout: ``2 psi_i sum_r grad_out[c, r] readout[r, i]``
    (``readout_t`` is the readout table transposed, ``[2**n, outputs]``)."""
    weights = np.dot(readout_t, np.ascontiguousarray(grad_out.T)).reshape(dim * cw)
    for k in range(dim * cw):
        w = weights[k] + weights[k]
        lr[k] = w * re[k]
        li[k] = w * im[k]


@njit(**_JIT)
def _start_gradient(lr, li, free_r, free_i, n, cw, prefix, mats, gmats, v, scratch_r, scratch_i):
    """Cotangents of each prefix chain's first column v_q, by reverse mode through
    :func:`_start_state`'s build (T_q = v_q (x) T_{q+1}, T_0 the start state): for q = 0, 1, ..
    ``d v_q[b] = sum_t lambda[b size + t] conj(T_{q+1}[t])`` and then
    ``lambda[t] <- lambda[t] conj(v_q[0]) + lambda[t + size] conj(v_q[1])``, written to
    the ``free`` buffers and back in turn. The scratch buffers hold the partial products
    T_{n-1} .. T_1, T_q at rows ``[2**(n-q) - 2, 2**(n-q+1) - 2)`` (T_n = 1 is implicit)."""
    dim = 1 << n
    s2, t2 = lr.reshape(dim, cw), li.reshape(dim, cw)
    n2, m2 = free_r.reshape(dim, cw), free_i.reshape(dim, cw)
    part_r, part_i = scratch_r.reshape(dim, cw), scratch_i.reshape(dim, cw)
    _start_vectors(prefix, mats, n, cw, v)
    # T_{n-1} = v_{n-1} at rows [0, 2); T_q from T_{q+1}
    for c in range(cw):
        for e in range(2):
            part_r[e, c], part_i[e, c] = v[n - 1, 2 * e, c], v[n - 1, 2 * e + 1, c]
    size = 2
    for q in range(n - 2, 0, -1):
        src = size - 2
        _prepend(part_r[src:], part_i[src:], size, cw, v, q, part_r[src + size :],
                 part_i[src + size :])
        size *= 2
    acc = np.zeros((4, cw), dtype=lr.dtype)
    size = dim // 2
    for q in range(n):
        s = prefix[q]
        if s >= 0:
            if q == n - 1:  # T_n = 1
                for c in range(cw):
                    acc[0, c], acc[1, c] = s2[0, c], t2[0, c]
                    acc[2, c], acc[3, c] = s2[1, c], t2[1, c]
            else:
                _split_dot(s2, t2, part_r[size - 2 :], part_i[size - 2 :], size, cw, acc)
            for c in range(cw):
                gmats[s, 0, c] += acc[0, c]
                gmats[s, 1, c] += acc[1, c]
                gmats[s, 4, c] += acc[2, c]
                gmats[s, 5, c] += acc[3, c]
        _contract_first(s2, t2, size, cw, v, q, n2, m2)
        s2, n2 = n2, s2
        t2, m2 = m2, t2
        size //= 2


@njit(**_JIT)
def _split_dot(l_r, l_i, t_r, t_i, size, cw, acc):
    """``acc[(b, re/im), c] = sum_t lambda[b size + t, c] conj(T[t, c])``."""
    acc[:, :] = 0.0
    for t in range(size):
        for c in range(cw):
            pr, pi = t_r[t, c], t_i[t, c]
            a_r, a_i = l_r[t, c], l_i[t, c]
            b_r, b_i = l_r[t + size, c], l_i[t + size, c]
            acc[0, c] += a_r * pr + a_i * pi
            acc[1, c] += a_i * pr - a_r * pi
            acc[2, c] += b_r * pr + b_i * pi
            acc[3, c] += b_i * pr - b_r * pi


@njit(**_JIT)
def _contract_first(l_r, l_i, size, cw, v, q, out_r, out_i):
    """``out[t] = lambda[t] conj(v_q[0]) + lambda[t + size] conj(v_q[1])`` for t < size."""
    for t in range(size):
        for c in range(cw):
            a_r, a_i = l_r[t, c], l_i[t, c]
            b_r, b_i = l_r[t + size, c], l_i[t + size, c]
            out_r[t, c] = a_r * v[q, 0, c] + a_i * v[q, 1, c] + b_r * v[q, 2, c] + b_i * v[q, 3, c]
            out_i[t, c] = a_i * v[q, 0, c] - a_r * v[q, 1, c] + b_i * v[q, 2, c] - b_r * v[q, 3, c]


@njit(**_JIT)
def backward_chunk(rows, grad_out, saved, n, ops, codes, cols, slot_start, per_sample, prefix,
                   shared, kinds, phases, perms, readout_t, tile, ws, mats, vectors, gmats, tmp,
                   gshared, gphases, grad_rows):
    """Adds to ``gshared[slot, 8]`` (shared matrices' cotangents), ``gphases[vector, 2**n]``
    and ``grad_rows[C, n_angles]`` (per-sample angles) the gradients of one chunk, from its
    final state ``saved`` and per-sample matrices ``mats`` as its forward pass left them
    (both read only). ``ws`` is ``[6, 2**n * C]``."""
    cw = rows.shape[0]
    dim = 1 << n
    size = dim * cw
    re, im = ws[0, :size], ws[1, :size]
    re[:] = saved[0, :size]
    im[:] = saved[1, :size]
    spare_r, spare_i = ws[2, :size], ws[3, :size]
    lr, li = ws[4, :size], ws[5, :size]
    _readout_cotangent(re, im, lr, li, dim, cw, readout_t, grad_out)
    gmats[:, :, :cw] = 0.0
    k = ops.shape[0] - 1
    while k >= 0:
        op = ops[k, 0]
        if op == ONE and tile > 0:
            end = _stage_end(ops, k, -1)
            _undo_stage(re, im, lr, li, dim, cw, ops, end + 1, k + 1, shared, kinds, gshared,
                        tile)
            k = end
            continue
        if op == ONE:
            _undo_one(re, im, lr, li, dim, cw, ops[k, 1], ops[k, 2], shared, kinds, gshared)
        elif op == ONE_SAMPLE:
            _undo_one_per_sample(re, im, lr, li, dim, cw, ops[k, 1], 0, mats[ops[k, 2]],
                                 gmats[ops[k, 2]])
        elif op == CTRL:
            _undo_one_per_sample(re, im, lr, li, dim, cw, ops[k, 1], ops[k, 3],
                                 mats[ops[k, 2]], gmats[ops[k, 2]])
        elif op == PHASE:
            v = ops[k, 1]
            _undo_phase(re, im, lr, li, dim, cw, phases[v, 0], phases[v, 1], gphases[v])
        elif op == DIAG:
            _diag_gradient(re, im, lr, li, dim, cw, ops[k, 1], ops[k, 2], ops[k, 3], grad_rows,
                           ops[k, 4])
            _half_angles(rows, ops[k, 4], tmp)
            _diag_sample(re, im, dim, cw, ops[k, 1], ops[k, 2], ops[k, 3], tmp, -1.0)
            _diag_sample(lr, li, dim, cw, ops[k, 1], ops[k, 2], ops[k, 3], tmp, -1.0)
        else:
            perm, d = perms[ops[k, 1]], ops[k, 4]
            _undo_permute(re, im, lr, li, spare_r, spare_i, dim, cw, perm, phases, ops[k, 2],
                          ops[k, 3], d, gphases)
            # the state is in the spare planes, the cotangent goes into the state's old ones
            _unpermute(lr, li, re, im, dim, cw, perm, phases, d)
            re, im, lr, li, spare_r, spare_i = spare_r, spare_i, re, im, lr, li
        k -= 1
    _start_gradient(lr, li, re, im, n, cw, prefix, mats, gmats, vectors, spare_r, spare_i)
    # per-sample chains: their matrices' cotangents to angle gradients
    for s in range(per_sample.shape[0]):
        if not per_sample[s]:
            continue
        for c in range(cw):
            gm = (complex(gmats[s, 0, c], gmats[s, 1, c]), complex(gmats[s, 2, c], gmats[s, 3, c]),
                  complex(gmats[s, 4, c], gmats[s, 5, c]), complex(gmats[s, 6, c], gmats[s, 7, c]))
            chain_gradient(codes, cols, slot_start[s], slot_start[s + 1], rows[c], gm,
                           grad_rows[c])


# ---------------------------------------------------------------------------------------------
# The batch: chunks spread over threads. ``plan`` is the program's arrays (ops, codes, cols,
# slot_start, per_sample, prefix, kinds, perms, readout, readout_t) and its tile size; ``ws`` the
# per-thread buffers (states, mats, vectors, tmp, gmats, gshared, gphases), thread first.


@njit(**_JIT)
def _forward_job(j, t, angles, width, n, plan, shared, phases, ws, out, saved, saved_mats):
    """Chunk ``j`` of the batch forwards, in thread ``t``'s buffers."""
    ops, codes, cols, slot_start, per_sample, prefix, kinds, perms, readout, _, tile = plan
    states, mats, vectors, tmp = ws[0], ws[1], ws[2], ws[3]
    start = j * width
    stop = min(start + width, angles.shape[0])
    chunk_mats = saved_mats[j] if saved.shape[2] > 0 else mats[t]
    forward_chunk(angles[start:stop], n, ops, codes, cols, slot_start, per_sample, prefix,
                  shared, kinds, phases, perms, readout, tile, states[t], chunk_mats, vectors[t],
                  tmp[t], out[start:stop], saved[j])


@njit(**_JIT)
def _backward_job(j, t, angles, grad_out, saved, saved_mats, width, n, plan, shared, phases, ws,
                  grad):
    """Chunk ``j`` of the batch backwards, in thread ``t``'s buffers."""
    ops, codes, cols, slot_start, per_sample, prefix, kinds, perms, _, readout_t, tile = plan
    states, _, vectors, tmp, gmats, gshared, gphases = ws
    start = j * width
    stop = min(start + width, angles.shape[0])
    backward_chunk(angles[start:stop], grad_out[start:stop], saved[j], n, ops, codes, cols,
                   slot_start, per_sample, prefix, shared, kinds, phases, perms,
                   readout_t, tile, states[t], saved_mats[j], vectors[t], gmats[t], tmp[t],
                   gshared[t], gphases[t], grad[start:stop])


@njit(**_PARALLEL)
def forward_batch(angles, width, n, plan, shared, phases, ws, out, saved, saved_mats):
    """Readouts ``out[B, m]``; unless ``saved`` is empty, each chunk's final state to
    ``saved[chunk]`` and its per-sample matrices to ``saved_mats[chunk]``."""
    for j in prange((angles.shape[0] + width - 1) // width):
        _forward_job(j, numba.get_thread_id(), angles, width, n, plan, shared, phases, ws, out,
                     saved, saved_mats)


@njit(**_JIT)
def forward_serial(angles, width, n, plan, shared, phases, ws, out, saved, saved_mats):
    """:func:`forward_batch` on the calling thread alone: no parallel region to open, which
    costs 30-70 µs where OpenMP threads sleep between regions (``OMP_WAIT_POLICY=PASSIVE``)."""
    for j in range((angles.shape[0] + width - 1) // width):
        _forward_job(j, 0, angles, width, n, plan, shared, phases, ws, out, saved, saved_mats)


@njit(**_PARALLEL)
def backward_batch(angles, grad_out, saved, saved_mats, width, n, plan, shared, phases, ws,
                   grad):
    """Per-sample angle gradients into ``grad[B, n_angles]``; the shared slots' and phase
    vectors' cotangents summed per thread into ``ws`` (gshared, gphases)."""
    ws[5][:] = 0.0
    ws[6][:] = 0.0
    for j in prange((angles.shape[0] + width - 1) // width):
        _backward_job(j, numba.get_thread_id(), angles, grad_out, saved, saved_mats, width, n,
                      plan, shared, phases, ws, grad)


@njit(**_JIT)
def backward_serial(angles, grad_out, saved, saved_mats, width, n, plan, shared, phases, ws,
                    grad):
    """:func:`backward_batch` on the calling thread alone (see :func:`forward_serial`)."""
    ws[5][:] = 0.0
    ws[6][:] = 0.0
    for j in range((angles.shape[0] + width - 1) // width):
        _backward_job(j, 0, angles, grad_out, saved, saved_mats, width, n, plan, shared, phases,
                      ws, grad)


@njit(**_JIT)
def shared_angle_gradients(row, codes, cols, slot_start, per_sample, gshared, phase_gates,
                           gphases, threads, grad_row):
    """The gradients of the angles shared by the batch, into ``grad_row``: the shared
    matrices' cotangents and the phase vectors' ``d loss / d phi``, summed over the threads'
    partial sums (``gshared[thread]``, ``gphases[thread]``), through each gate's chain rule
    (a phase gate moves phi_j by ``coef_g(j) angle``, :func:`phase_vectors`)."""
    total = gshared[0].copy()
    for t in range(1, threads):
        total += gshared[t]
    shared_gradients(row, codes, cols, slot_start, per_sample, total, grad_row)
    for v in range(phase_gates.shape[0]):
        for g in range(phase_gates.shape[1]):
            kind, b0, b1 = phase_gates[v, g, 0], phase_gates[v, g, 1], phase_gates[v, g, 2]
            col = phase_gates[v, g, 3]
            if col < 0:
                continue
            acc = 0.0
            controlled = 1.0 if kind == 2 else 0.0
            for t in range(threads):
                for j in range(gphases.shape[2]):
                    acc += _sign(controlled, j, b0, b1) * gphases[t, v, j]
            grad_row[col] += 0.5 * acc
