"""Soft and hard encoding: the k nearest class centres of a/b values with their Gaussian weights
(:func:`soft_encode`, the training target of Zhang et al. [1], Sec. 2.1), and the nearest one
(:func:`hard_encode`).

The search is exact: it returns the same classes, in the same order, as computing every distance
and sorting stably (ties go to the lower class index). Speed comes from three things. A memo: a
value seen earlier in the same chunk of pixels copies that answer (the a/b of 8-bit images
repeats: 86% of the Kodak photographs' pixels, 53% of the posters'). The square lattice
recolor's centres lie on: there the k nearest centres, in order, follow from where in its
lattice cell a value lies, with no distance sorted (:class:`.search._Lattice`). Elsewhere, a
lookup table over the a/b plane lists per small cell every class that can be among the k nearest
(:class:`.search._Table`); only those are measured. The kernel takes pixels in blocks, in passes
(memo lookups, the two searches for the values not found, their weights with a polynomial exp,
the memo's copies), so that each loop stays short. k = 1 has a kernel of its own that answers
most values from a grid of one-class cells (1.34-1.44x the k-nearest kernel on poster pixels).

The kernels are serial and release the GIL; a large call runs one copy per thread
(:func:`.jit.run_workers`), a small one (up to 4,096 values: a training crop's targets) runs on
the calling thread, so each kernel compiles once. Each compiles on the first call that needs it
and is cached on disk (:mod:`.jit`).

Each specialisation was measured for its compile time (CPU seconds of the first call, empty
cache) against its speed (same-process A/B rounds on the Kodak pixels, smooth float images and
training crops); the two kept, for the default k = 5, are described at ``_K``.

Speed (``benchmarks/bench_quant.py --repeat 9``, 2 threads on a shared 2-core EPYC VM whose speed
varies by up to 2x from minute to minute; measured on the earlier numba ``parallel=True``
kernels, which the serial ones run by the thread pool matched within noise, 0.93-1.12x, in
same-process rounds): soft encoding of the a/b of the 24 Kodak photographs
(6 M pixels) 51-61 Mpixel/s, 99-116x torch ``cdist`` + ``topk``; on smooth synthetic float
images, where no value repeats, 23 Mpixel/s, 44x. Training targets (one call per 32 x 32 crop,
one thread, as in a DataLoader worker): 92-140 us a call, 20-28x torch. Hard encoding 160-200
Mpixel/s on poster pixels; ``recolor rebalance-stats`` over the 14,034 training posters takes
28 s.

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016,
       arXiv:1603.08511.
"""

from __future__ import annotations

import math

import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from .. import defaults
from ..errors import is_real, is_whole
from .classes import check_ab, check_classes
from .jit import bitcast, fetch_add, njit, run_workers, threads
from .search import _FINE, _SUB, _WIN, _table


def _check_k(k: int, q: int) -> int:
    if not (is_whole(k) and 1 <= k <= q):  # (True was k = 1)
        raise ValueError(f"k must be an integer in [1, Q={q}], got {k!r}")
    return int(k)


@njit(inline="always")
def _insert(bd, bi, n, k, d, c):
    """Insert class c at squared distance d into the k best so far, (bd, bi) of length n.

    Order is by (distance, class index), so equal distances keep the lower index first whatever
    order the candidates come in. Returns the new length.
    """
    if n == k and (d > bd[k - 1] or (d == bd[k - 1] and c > bi[k - 1])):
        return n
    j = n if n < k else k - 1
    while j > 0 and (bd[j - 1] > d or (bd[j - 1] == d and bi[j - 1] > c)):
        bd[j] = bd[j - 1]
        bi[j] = bi[j - 1]
        j -= 1
    bd[j] = d
    bi[j] = c
    return n + 1 if n < k else n


# exp(x) for x <= 0 without a libm call (a call costs ~5 ns and does not vectorise): x =
# (n + f) ln 2 with n = floor, e^x = 2^n sqrt(2) e^y, y = (f - 1/2) ln 2 in [-0.347, 0.347], e^y
# by its Taylor polynomial of degree 8 (remainder < 1.2e-10 relative); 2^n from its bits, with
# n read off n + 1.5 * 2^52 (a float64 -> int64 conversion has no AVX2 instruction). Over a row
# this runs ~3.5x faster than math.exp.
_LN2 = math.log(2.0)
_LOG2E = 1.0 / _LN2
_SQRT2 = math.sqrt(2.0)
_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7, _T8 = (1.0 / math.factorial(i) for i in range(9))
_EXP_FLOOR = -1000.0  # 2^-1000: exp(x) below it is 0 to float32 next to the nearest's 1
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2^52: the low bits of n + this are the integer n


_as_float64 = bitcast(
    "_as_float64", types.int64, types.float64, "The float64 whose bits are an int64."
)
_float64_bits = bitcast(
    "_float64_bits", types.float64, types.int64, "The bits of a float64, as int64."
)


@njit(inline="always")
def _exp_neg(x):
    """``exp(x)`` for x <= 0 in float64, relative error < 3e-10; 2^-1000 (9.3e-302) for
    x < -693, where the true value is below float64's normal range."""
    t = max(x * _LOG2E, _EXP_FLOOR)
    n = np.floor(t)
    y = (t - n - 0.5) * _LN2
    e = _T5 + y * (_T6 + y * (_T7 + y * _T8))
    e = _T0 + y * (_T1 + y * (_T2 + y * (_T3 + y * (_T4 + y * e))))
    return e * _SQRT2 * _as_float64((_float64_bits(n + _ROUND_MAGIC) + 1023) << 52)


# Values seen in a chunk are remembered in a direct-mapped table of up to 2^_MEMO_BITS entries
# (512 KiB with the keys, a core's L2 here): a/b from 8-bit images repeats, and with 4 chunks
# per thread (now 8, see below) 86% of the Kodak photographs' pixels and 53% of the posters'
# found their value there (88% and 56% with 2^16 entries, which measured 5-8% slower on both).
# Data without repeats pays a few percent for the lookups.
_MEMO_BITS = 15
_CHUNK_MIN = 512
# The threads take chunks from a shared counter as they finish (rather than an even split in
# advance): when another process holds one of the two cores, 8 chunks a thread gave 1.22-1.26x
# the even split on the Kodak pixels; on idle cores the same.
_CHUNKS_PER_THREAD = 8
# Pixels are taken in blocks of _KNN_BLOCK, in passes: memo lookups for the block, the lattice
# path for the values not found (the misses), the candidate search for the misses it leaves, the
# misses' weights, and last the copies for the values found. Apart, each loop is short and
# uniform, and the weights' exp runs over all the block's misses at once rather than k - 1
# dependent libm calls a pixel. With the exp and the unrolled loops below, this measured 1.45-
# 1.5x the single loop it replaced on the Kodak pixels (2 threads), 1.17x on training targets.
# (Until the decoding's block size got a name of its own, its 256 was the one in use here, not
# the 2,048 written; 1,024 measured 1.02-1.07x 256, 2,048 1.03x, 512 0.98-1.05x.)
# Measured and not kept (kernel A/B on the Kodak pixels): answers stored in 64-byte memo records
# (one cache line a hit) instead of copied from the first pixel's row, copying at lookup time
# when that row is ready, the memo's key and pixel in one 16-byte record, the memo pointing at
# the latest pixel: 0.9-1.0x; the whole chunk's body instantiated for k = 5 (every test of k
# and want_w hoisted): 1.0-1.035x for 19 s more compilation; a 2-way set-associative memo (12%
# fewer misses, but its lookups 1.8x slower: 0.8-0.86x); memo updates without a branch
# (unconditional stores, or deferred to a pass over the misses with a test against the previous
# pixel): 0.69-0.94x, the branch's speculation runs ahead of the memo's loads; int32 memo entries
# 0.96-1.0x; exponents as affine functions of the position in the cell 0.95-0.98x; float32 exp
# for the weights 0.96x; an exact search over a few lattice points in the sub-cells where the
# order changes (instead of the candidate search) 1.01-1.02x, not worth its tables.
_KNN_BLOCK = 1024


# Two loops over the k classes of one pixel have a copy for the literal _K = 5, the default: the
# lattice path's (_lattice_row called with _K, which LLVM unrolls: 1.3x the whole kernel on
# smooth float images, where most values take that path; 1.0x on the Kodak pixels) and the
# memo's copies (_copy_k, one fixed-size memcpy: without it the kernel ran 0.63x on the Kodak
# pixels, where 86% of the values are copies). Compiling the kernel takes about 3.3-3.8 s of CPU
# with both, 2.8-3.3 s with neither. The normalisation had a copy too until it measured 1.0x
# (1.03x without it) for 0.3-0.5 s of compilation; inline="always" stays on the helpers: as
# plain calls they compile 0.5-1 s faster, but the kernel then ran 0.42x.
_K = 5


@intrinsic
def _copy_k(typingctx, x, s, p):
    """Row s of x, a C-contiguous 2-D array of _K columns or more, into row p: the first _K
    values as one fixed-size memcpy that LLVM turns into a few wide moves (10 bytes of int16:
    8 + 2; 20 of float32: 16 + 4). Element-wise, LLVM keeps _K loads and _K stores, as it
    cannot rule out that the rows overlap."""
    if not (isinstance(x, types.Array) and x.ndim == 2 and x.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        xty, sty, pty = signature.args
        arr = context.make_array(xty)(context, builder, args[0])
        row = builder.extract_value(arr.strides, 0)
        data = builder.bitcast(arr.data, cgutils.voidptr_t)
        src, dst = (
            builder.gep(data, [builder.mul(context.cast(builder, v, t, types.intp), row)])
            for v, t in ((args[1], sty), (args[2], pty))
        )
        size = _K * context.get_abi_sizeof(context.get_data_type(xty.dtype))
        cgutils.raw_memcpy(builder, dst, src, context.get_constant(types.intp, size), 1)
        return context.get_dummy_value()

    return types.none(x, s, p), codegen


@njit(inline="always")
def _copy_row(oi, ow, s, p, k):
    """Row s of oi and of ow into row p."""
    for j in range(k):
        oi[p, j] = oi[s, j]
        ow[p, j] = ow[s, j]


@njit(inline="always")
def _lattice_row(lat, poff, pou, pov, kappa, pid, base, fu, fv, k, oi, p, ex, t):
    """For a point at (fu, fv) in the cell at ``base`` in lat, the classes of its pattern pid
    into row p of oi and the exponents -kappa |(fu, fv) - offset|^2 into column t of ex."""
    for j in range(k):
        oi[p, j] = lat[base + poff[pid, j]]
        du = fu - pou[pid, j]
        dv = fv - pov[pid, j]
        ex[j, t] = -(du * du + dv * dv) * kappa


@njit(inline="always")
def _normalise(ex, total, t, k, ow, p):
    """Row p of ow: the k weights in column t of ex (the first is exp(0) = 1) over their sum."""
    inv = 1.0 / total[t]
    ow[p, 0] = inv
    for j in range(1, k):
        ow[p, j] = ex[j, t] * inv


# One body of ~140 lines on purpose: its passes over a block share scratch arrays, and the
# helpers it does have (_copy_row, _lattice_row, _normalise) are inlined by numba; called as
# plain functions the kernel ran 0.42x (see above), so it is not split further.
@njit(nogil=True)
def _knn_kernel(
    ab, keys, cls, k, x0, y0, inv_s, nx, ny, start, cand, cab, low,
    lx0, ly0, inv_g, ncu, ncv, lnb, lat, inner, pat, poff, pou, pov, kappa,
    inv2s2, nchunk, bits, taken, oi, ow,
):  # fmt: skip
    """k nearest class centres of each a/b point, and their Gaussian weights (k >= 2; see
    :func:`_nearest_kernel` for k = 1).

    ab (N, 2) f32, keys (N,) u64 the same values' bits (a and b in one word), cls (Q, 2) f32, oi
    (N, k) i16, ow (N, k) f32; ``start`` .. ``low`` the candidate lists (:class:`.search._Table`;
    ``cab`` holds the candidates' centres, ``cls[cand]``, to save an indirection), ``lx0`` ..
    ``kappa`` the lattice tables (:class:`.search._Lattice`; ``pat`` None compiles that path
    out). Squared distances are (a - ca)^2 + (b - cb)^2 in float64. A point outside the table
    (every point when nx = 0) takes the list after the last cell's, which holds every class.
    Each copy of the kernel running on the call takes chunks of the pixels (``nchunk`` in all)
    from the shared counter ``taken`` (int64 (1,)) until none is left. A point whose bits equal
    an earlier point's in its chunk copies that answer (exact: same input, same output); the
    memo has 2^bits entries, bits >= 1.

    Returns the number of NaN or infinite values this copy met (their rows hold no answer);
    each such value is counted once per chunk at least, so 0 from every copy means every value
    was finite.
    """
    n = ab.shape[0]
    shift = np.uint64(64 - bits)
    mult = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: 2^64 / golden ratio
    bad = 0
    bd = np.empty(k)
    bi = np.empty(k, np.int64)
    memo = np.empty(1 << bits, np.int64)
    memo_key = np.empty(1 << bits, np.uint64)
    src = np.empty(_KNN_BLOCK, np.int64)  # hits: the first pixel of their value
    dst = np.empty(_KNN_BLOCK, np.int64)  # hits: the pixel
    miss = np.empty(_KNN_BLOCK, np.int64)
    rest = np.empty(_KNN_BLOCK, np.int64)
    # Per miss, the exponents -d_j^2 / 2 sigma^2 of its k classes, then their exp.
    ex = np.empty((k, _KNN_BLOCK))
    total = np.empty(_KNN_BLOCK)
    while True:
        chunk = fetch_add(taken, 1)
        if chunk >= nchunk:
            break
        memo[:] = -1  # kept over a thread's chunks it measured 0.92x: copies from afar
        for b0 in range(chunk * n // nchunk, (chunk + 1) * n // nchunk, _KNN_BLOCK):
            b1 = min(b0 + _KNN_BLOCK, (chunk + 1) * n // nchunk)
            # 1. Lookups: the misses into ``miss``, the hits into ``dst`` with the first pixel
            # of their value in ``src`` (both lists written every time, advanced by the
            # outcome: no branch on it).
            nm = 0
            nh = 0
            for p in range(b0, b1):
                key = keys[p]
                slot = (key * mult) >> shift
                m = memo[slot]
                hit = m >= 0 and memo_key[slot] == key
                if not hit:
                    memo[slot] = p
                    memo_key[slot] = key
                src[nh] = m
                dst[nh] = p
                nh += hit
                miss[nm] = p
                nm += not hit
            # 2. The lattice path for the misses it answers (classes into oi, exponents into
            # ex); the others, in ``rest``, take the search in step 3.
            nr = 0
            for t in range(nm):
                p = miss[t]
                if pat is not None:  # pruned at compile time when there are no lattice tables
                    # NaN fails every comparison and goes on to step 3 like an infinity.
                    u = (np.float64(ab[p, 0]) - lx0) * inv_g
                    v = (np.float64(ab[p, 1]) - ly0) * inv_g
                    if 0.0 <= u < ncu and 0.0 <= v < ncv and inner[int(u) * ncv + int(v)]:
                        fu = u - int(u)
                        fv = v - int(v)
                        pid = pat[int(fu * _SUB) * _SUB + int(fv * _SUB)]
                        if pid >= 0:
                            # The pattern gives the classes in order, as offsets into ``lat``
                            # from the cell, and their lattice offsets for the distances.
                            base = (int(u) + _WIN) * lnb + int(v) + _WIN
                            if k == _K:
                                _lattice_row(
                                    lat, poff, pou, pov, kappa, pid, base, fu, fv, _K,
                                    oi, p, ex, t,
                                )  # fmt: skip
                            else:
                                _lattice_row(
                                    lat, poff, pou, pov, kappa, pid, base, fu, fv, k,
                                    oi, p, ex, t,
                                )  # fmt: skip
                            continue
                rest[nr] = t
                nr += 1
            # 3. The candidate search, for the rest.
            for i in range(nr):
                t = rest[i]
                p = miss[t]
                a = np.float64(ab[p, 0])
                b = np.float64(ab[p, 1])
                if not (abs(a) < np.inf and abs(b) < np.inf):
                    bad += 1
                    for j in range(k):
                        oi[p, j] = 0
                        ex[j, t] = 0.0
                    continue
                fi = (a - x0) * inv_s
                fj = (b - y0) * inv_s
                cell = nx * ny  # outside the table: the list of every class
                if 0.0 <= fi < nx and 0.0 <= fj < ny:
                    cell = int(fi) * ny + int(fj)
                m = 0
                for c in range(start[cell], start[cell + 1]):
                    if m == k and low[c] > bd[k - 1]:
                        break  # this and all later candidates are farther than the k-th
                    da = a - cab[c, 0]
                    db = b - cab[c, 1]
                    m = _insert(bd, bi, m, k, da * da + db * db, np.int64(cand[c]))
                for j in range(k):
                    oi[p, j] = bi[j]
                    ex[j, t] = -bd[j] * inv2s2
            # 4. Weights of the misses: exp(x_j - x_0) / sum, shifted by the nearest class's
            # exponent so that far values do not underflow to 0/0 (the shift cancels).
            total[:nm] = 1.0
            for j in range(1, k):
                for t in range(nm):
                    e = _exp_neg(ex[j, t] - ex[0, t])
                    ex[j, t] = e
                    total[t] += e
            for t in range(nm):
                _normalise(ex, total, t, k, ow, miss[t])
            # 5. Copies for the hits, from the compact list: a test of src == p here, taken at
            # random for 13% of the Kodak pixels, cost the kernel 10% in mispredictions.
            if k == _K:
                for h in range(nh):
                    _copy_k(oi, src[h], dst[h])
                    _copy_k(ow, src[h], dst[h])
            else:
                for h in range(nh):
                    _copy_row(oi, ow, src[h], dst[h], k)
    return bad


# Handing work to the thread pool costs tens of us, more than encoding a training crop's targets
# (32 x 32 values): calls up to _SERIAL_MAX values run on the calling thread alone.
_SERIAL_MAX = 1 << 12


@njit(nogil=True)
def _nearest_kernel(ab, cls, x0, y0, inv_s, nx, ny, start, cand, cab, low, one, nchunk, taken, out):
    """The nearest class centre of each a/b point into ``out`` (N,) i16 (k = 1 of
    :func:`_knn_kernel`, whose arguments these are, with ``one``: per sub-cell of the finer grid
    the class whose region holds it, or -1; see :func:`.search._one_class_cells`). Ties go to
    the lower class index. Returns the number of NaN or infinite values this copy met."""
    n = ab.shape[0]
    bad = 0
    while True:
        chunk = fetch_add(taken, 1)
        if chunk >= nchunk:
            break
        for p in range(chunk * n // nchunk, (chunk + 1) * n // nchunk):
            a = np.float64(ab[p, 0])
            b = np.float64(ab[p, 1])
            fi = (a - x0) * inv_s
            fj = (b - y0) * inv_s
            if 0.0 <= fi < nx and 0.0 <= fj < ny:  # NaN fails and goes on to the test below
                sub = one[int(fi * _FINE) * (ny * _FINE) + int(fj * _FINE)]
                if sub >= 0:
                    out[p] = sub  # the value lies in one class's region: no distances
                    continue
                cell = int(fi) * ny + int(fj)
            elif abs(a) < np.inf and abs(b) < np.inf:
                cell = nx * ny  # outside the table: the list of every class
            else:
                bad += 1
                out[p] = 0
                continue
            best = 0
            dbest = np.inf
            for c in range(start[cell], start[cell + 1]):
                if low[c] > dbest:
                    break  # this and all later candidates are farther than the nearest
                da = a - cab[c, 0]
                db = b - cab[c, 1]
                d = da * da + db * db
                if d < dbest or (d == dbest and cand[c] < best):
                    dbest = d
                    best = cand[c]
            out[p] = best
    return bad


def _knn(ab: np.ndarray, classes: np.ndarray, k: int, sigma: float | None):
    ab = check_ab(ab, finite=False)  # the kernel finds NaN and infinities (a pass fewer)
    cls = check_classes(classes)
    k = _check_k(k, cls.shape[0])
    flat = ab.reshape(-1, 2)
    idx = np.empty((flat.shape[0], k), np.int16)
    w = np.empty((flat.shape[0] if sigma is not None else 0, k), np.float32)  # none: k = 1
    inv2s2 = 0.0 if sigma is None else 1.0 / (2.0 * sigma * sigma)
    bad = 0
    if flat.shape[0]:
        table = _table(cls.tobytes(), k)
        nwork = 1 if len(flat) <= _SERIAL_MAX else threads()
        nchunk = min(_CHUNKS_PER_THREAD * nwork, max(1, len(flat) // _CHUNK_MIN))
        taken = np.zeros(1, np.int64)  # chunks handed out so far
        if k == 1:  # the table answers most values at once: no memo, no lattice
            args = (flat, cls, *table.args(), table.one, nchunk, taken, idx[:, 0])
            bad = sum(run_workers(lambda: _nearest_kernel(*args), nwork))
            w[:] = 1.0  # exp(0) / exp(0)
        else:
            keys = flat.view(np.uint64)[:, 0]
            # A memo about twice the chunk, up to 2^_MEMO_BITS: small calls clear little.
            bits = min(_MEMO_BITS, (2 * len(flat) // nchunk).bit_length())
            lattice = table.lattice.args(inv2s2)
            args = (
                flat, keys, cls, k, *table.args(), *lattice, inv2s2, nchunk, bits, taken, idx, w
            )  # fmt: skip
            bad = sum(run_workers(lambda: _knn_kernel(*args), nwork))
        if bad:  # the kernel met a NaN or an infinity; count them all for the message
            check_ab(ab)
    shape = (*ab.shape[:-1], k)
    return idx.reshape(shape), w.reshape(shape) if sigma is not None else None


def soft_encode(
    ab: np.ndarray, classes: np.ndarray, k: int = defaults.K, sigma: float = defaults.SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-encode a/b values over the k nearest class centres (Zhang et al. [1], Sec. 2.1).

    Parameters
    ----------
    ab : (..., 2) array_like, finite
        a/b values (OpenCV float Lab, about [-128, 127]); any leading shape, e.g. (H, W, 2).
    classes : (Q, 2) array_like
        Class centres, Q <= 32767 (any positions; recolor's lie on a grid).
    k : int, default 5
        Neighbours per value, 1 <= k <= Q (the seed and [1] use 5).
    sigma : float, default 5.0
        Gaussian width in a/b units.

    Returns
    -------
    idx : (..., k) int16
        Indices of the k nearest centres, nearest first; equal distances in increasing index.
    w : (..., k) float32
        ``w_j = exp(-d_j^2 / (2 sigma^2)) / sum_i exp(-d_i^2 / (2 sigma^2))``, d_j the
        Euclidean a/b distance to centre ``idx_j``; they sum to 1 (up to float32 rounding).

    Raises
    ------
    ValueError
        Bad shapes, NaN or infinite values, k out of range, sigma below
        :data:`~recolor_tools.defaults.SIGMA_MIN` (0.01: narrower is the hard encoding).

    Notes
    -----
    Exact: same classes and order as computing all Q squared distances
    ``(a - a_c)^2 + (b - b_c)^2`` in float64, of ``ab`` and ``classes`` rounded to float32
    first, and sorting them stably. Values far outside the
    class set are exact too (they are compared with every class). The weights are computed
    with the distances shifted by the nearest one, which cancels in the normalisation, so a
    far value gets weight 1 on its nearest class rather than 0/0.
    """
    if not (is_real(sigma) and sigma >= defaults.SIGMA_MIN):
        raise ValueError(f"sigma must be a number >= {defaults.SIGMA_MIN}, got {sigma!r}")
    return _knn(ab, classes, k, float(sigma))


def hard_encode(ab: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of the nearest class centre of each a/b value.

    Parameters
    ----------
    ab : (..., 2) array_like, finite
        a/b values (OpenCV float Lab, about [-128, 127]).
    classes : (Q, 2) array_like
        Class centres, a/b units.

    Returns
    -------
    idx : (...) int16
        ``argmin_c (a - a_c)^2 + (b - b_c)^2`` over ``ab`` and ``classes`` rounded to float32
        first (as every recolor a/b is), the squared distances of those float32 values
        computed in float64; ties go to the lower index. float64 input is thus encoded as
        its float32 rounding: a value within float32 rounding of half-way between two centres
        may go to the other one than float64 distances would choose. Same as
        ``soft_encode(ab, classes, k=1)[0][..., 0]``.

    Raises
    ------
    ValueError
        Bad shapes, NaN or infinite values.
    """
    idx, _ = _knn(ab, classes, 1, None)
    return idx[..., 0]
