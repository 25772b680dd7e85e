"""Decoding: class scores to a/b, by the annealed mean (:func:`annealed_mean`, Zhang et al. [1],
Sec. 2.3) or the most likely class (:func:`mode`).

The decoding kernels work in float32 and base 2 with branch-free polynomial exp2 and log2 on the
IEEE bits, so that LLVM vectorises their loops across 8 or 16 values (a scalar libm exp or log
call costs 6-8 ns a value and blocks that): 950-1130 Mvalue/s, 12-15x the plain numpy formula
on (B, Q, H, W) logits and 10.4-13x on (B, H, W, Q) probabilities on the host first measured;
on a 2-core AMD EPYC without AVX-512 (half the vector width) 540-550 and 410-435 Mvalue/s,
9.5-10x and 5.2-5.4x (``benchmarks/bench_quant.py --pixels 300000 --repeat 5``, 2 threads,
three runs, nothing else running). Like the encoders, the kernels are serial, release the
GIL and run one copy per thread on large calls (:func:`.jit.run_workers`).

This module does not import torch: pass network output as a numpy array (``tensor.numpy()``).

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016,
       arXiv:1603.08511.
"""

from __future__ import annotations

import math

import numpy as np
from numba.core import types

from .. import defaults
from ..errors import check_flag, is_real, is_whole
from .classes import check_classes
from .jit import bitcast, fetch_add, njit, run_workers, threads

# The decoding kernels work in float32 and base 2 so that LLVM vectorises their loops across
# 8 or 16 values (a scalar libm exp or log call costs 6-8 ns a value and blocks that). numba
# types a Python float literal as float64, which would turn float32 arithmetic into float64:
# every constant of these loops is a float32 (or int32) global, read as a compile-time constant.
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_FNEG_INF = np.float32(-np.inf)
_FPOS_INF = np.float32(np.inf)
# 2^y for y below this counts as 2^-64 (5e-20): relative to the largest term (2^0) such terms
# move the result by less than Q * 5e-20 * max|c|, and it keeps 2^n a normal float32.
_EXP2_LO = np.float32(-64.0)
# 2^f = 1 + f * P(f) on [0, 1), P of degree 5 fitted for relative error (< 1e-7 evaluated in
# float32). On [0, 1) rather than [-1/2, 1/2]: n = floor(y), one addition fewer than rounding.
_E5 = np.float32(2.1420501302214825e-4)
_E4 = np.float32(1.251177364504974e-3)
_E3 = np.float32(9.672222219668037e-3)
_E2 = np.float32(5.548596678711292e-2)
_E1 = np.float32(2.40229399191401e-1)
_E0 = np.float32(6.931470162262638e-1)
# log2 m = P(m - 3/2) for m in [1, 2): a degree-8 Chebyshev fit, highest power first (absolute
# error < 1.3e-7 evaluated in float32; the test below checks every mantissa). On the whole octave,
# with no reduction to [1/sqrt2, sqrt2): a select and a multiply fewer per value, and no
# division (a vectorised float32 division costs as much as the rest of the logarithm).
_LOG2_P = tuple(
    np.float32(v)
    for v in (
        -8.874718065240336e-3, 1.4778755424503019e-2, -2.0685845591851944e-2,
        3.746292451580698e-2, -7.128301260513407e-2, 1.4252637152274533e-1,
        -3.205976658681916e-1, 9.617959716674649e-1, 5.849624944953492e-1,
    )
)  # fmt: skip
_G0, _G1, _G2, _G3, _G4, _G5, _G6, _G7, _G8 = _LOG2_P
_F1HALF = np.float32(1.5)
_EXP_BIAS = np.int32(127)
_MANT_MASK = np.int32(0x007FFFFF)
_ONE_BITS = np.int32(0x3F800000)  # the bits of 1.0f
_ABS_MASK = np.int32(0x7FFFFFFF)
_SIGN_SHIFT = np.int32(31)
_INF_BITS = np.int32(0x7F800000)  # the bits of +inf, and its order key
_NEG_INF_KEY = np.int32(-0x7F800001)  # the order key of -inf (see _order_key)
_IMIN = np.int32(-(2**31))
_IMAX = np.int32(2**31 - 1)


_as_float32 = bitcast(
    "_as_float32", types.int32, types.float32, "The float32 whose bits are an int32."
)


@njit(inline="always")
def _mantissa(bits):
    """The mantissa m in [1, 2) of the float32 with IEEE bits ``bits``."""
    return _as_float32((bits & _MANT_MASK) | _ONE_BITS)


@njit(inline="always")
def _exp2_parts(y):
    """``2^y = 2^f 2^n`` for y <= 0: (f in [0, 1), the IEEE bits of 2^n as int32), with
    n = floor(max(y, -64)). A y above 0 is taken as 0: the exponents are scores less the
    largest, times 1/T, and a probability within rounding of the largest can come out above
    it through the log2 polynomial, which 1/T = 1e10 made 2^1000 (garbage exponent bits)."""
    v = min(max(y, _EXP2_LO), _F0)
    n = np.floor(v)
    return v - n, (np.int32(n) + _EXP_BIAS) << 23


@njit(inline="always")
def _exp2_split(x, top, k, f, bits):
    """First half of ``2^y``, y = (x - top) k <= 0, for float32 rows x and top (the first of two
    loops; the int32 row ``bits`` is read back as float32 through a view, which in the blocked
    kernel measured faster than one loop with the scalar cast ``_as_float32``): ``y = n + f`` with
    n = floor(max(y, -64)), f in [0, 1) into ``f``, and the IEEE bits of 2^n into ``bits``."""
    for j in range(f.size):
        f[j], bits[j] = _exp2_parts((x[j] - top[j]) * k)


@njit(inline="always")
def _exp2_poly(f):
    """``2^f`` for f in [0, 1], float32, relative error < 2e-7 (with rounding)."""
    return _F1 + f * (_E0 + f * (_E1 + f * (_E2 + f * (_E3 + f * (_E4 + f * _E5)))))


@njit(inline="always")
def _log2_bits(x, xb, m):
    """log2 x (-inf for x = 0) from x >= 0, its bits xb and its mantissa m in [1, 2): the
    exponent plus ``_LOG2_P`` at m - 3/2."""
    t = m - _F1HALF
    pt = _G3 + t * (_G2 + t * (_G1 + t * _G0))
    pt = _G8 + t * (_G7 + t * (_G6 + t * (_G5 + t * (_G4 + t * pt))))
    return np.float32((xb >> 23) - _EXP_BIAS) + pt if x > 0 else _FNEG_INF


@njit(inline="always")
def _log2_row(x, xbits, mbits, mant, out):
    """``out = log2(x)`` for the first ``out.size`` values of a float32 row x >= 0 (-inf where
    x = 0), absolute error < 3e-7.

    ``xbits`` is x viewed as int32, ``mbits``/``mant`` an int32 scratch row and its float32 view.
    x = m 2^e with m in [1, 2) from the IEEE bits, and log2 m from a polynomial (``_LOG2_P``).
    Float32 subnormals (x < 1.2e-38) come out as about -127: such probabilities only count
    next to a largest one below about 1e-19 (see ``_EXP2_LO``).
    """
    for j in range(out.size):
        mbits[j] = (xbits[j] & _MANT_MASK) | _ONE_BITS
    for j in range(out.size):
        out[j] = _log2_bits(x[j], xbits[j], mant[j])


# fastmath=False: a callee without its own setting inherits the caller's fast math (numba
# 0.5x+), under which the float tests of a scan over NaN were seen to pass it as valid.
@njit(fastmath=False)
def _valid(top, total, vals, probs):
    """Whether one pixel's scores are valid: no NaN or +inf and, for probabilities, a positive
    largest one (logits: one above -inf). ``top`` and ``total`` are the largest and the float32
    sum of ``vals``; only a non-finite sum (a NaN, an infinity, or an overflow) costs a scan.
    Compiled without fast math, which may drop NaN tests."""
    if not (top > 0 if probs else top > -np.inf):
        return False
    if np.isfinite(total):
        return True
    for v in vals:  # noqa: SIM110 (a generator inside numba code)
        if v != v or v == np.inf:
            return False
    return True


# 'reassoc' lets numba vectorise the sums (in another order, within rounding), 'contract' fuses
# multiply-adds, 'arcp' and 'afn' allow cheaper division; no 'nnan'/'ninf', so the NaN and
# infinity tests stay as written.
_DECODE_FASTMATH = {"reassoc", "nsz", "contract", "arcp", "afn"}


# With the classes on a middle axis, decoding works on blocks of pixels x Q classes in a
# contiguous (Q, width) buffer: per class row its loops run across the block's pixels, which
# vectorises without reductions (numba would not vectorise a float max over a pixel's classes
# without 'nnan', which the NaN tests forbid). With the classes last, :func:`_pixel_mean` runs
# along them, its max an integer one over order keys.
_DECODE_BLOCK = 256
_CHUNK = 16
_LAST_SUM = 512
# Scores up to this many values are decoded on the calling thread alone (a training batch's
# validation logits are far more: 4 x 395 x 32 x 32 = 1.6 M).
_SERIAL_MAX = 1 << 16


@njit(nogil=True, fastmath=_DECODE_FASTMATH, error_model="numpy")
def _decode_block(blkbits, w, top, low, total, ca, cb, k, probs, out):
    """Annealed mean of the first w columns of a block (Q, width) -> out (w, 2); returns the
    numbers of invalid pixels (output NaN) and of pixels with a negative probability.

    ``blkbits`` is the block as int32 (its float32 view holds the scores), ``top``, ``low`` and
    ``total`` (w,) float32 the largest and smallest score and the sum per pixel; see
    :func:`_anneal_mid` for the other arguments.
    """
    q = blkbits.shape[0]
    blk = blkbits.view(np.float32)
    ok = np.empty(w, np.bool_)
    bad = neg = 0
    for p in range(w):
        ok[p] = _valid(top[p], total[p], blk[:, p], probs)
        neg += probs and low[p] < 0
        if not ok[p]:
            bad += 1
            top[p] = 1.0  # any finite value: the pixel's output is NaN
    f = np.empty(w, np.float32)
    bits = np.empty(w, np.int32)
    scale = bits.view(np.float32)
    f2 = np.empty(w, np.float32)
    bits2 = np.empty(w, np.int32)
    scale2 = bits2.view(np.float32)
    mbits = np.empty(w, np.int32)
    mant = mbits.view(np.float32)
    lg = np.empty(w, np.float32)  # log2 of a row of probabilities
    if probs:
        top_log = np.empty(w, np.float32)
        _log2_row(top, top.view(np.int32), mbits, mant, top_log)
        top = top_log
    sw = np.zeros(w)
    sa = np.zeros(w)
    sb = np.zeros(w)
    # Sums over up to _CHUNK classes in float32 (fewer memory writes per value than float64),
    # each added to the float64 sums: float32 sums over all Q classes could be off by Q * 6e-8.
    aw = np.empty(w, np.float32)
    aa = np.empty(w, np.float32)
    ab = np.empty(w, np.float32)
    for c0 in range(0, q, _CHUNK):
        aw[:] = 0.0
        aa[:] = 0.0
        ab[:] = 0.0
        c1 = min(q, c0 + _CHUNK)
        # Two classes a pass: half the loads and stores of the sums per value.
        for c in range(c0, c1 - 1, 2):
            if probs:
                _log2_row(blk[c], blkbits[c], mbits, mant, lg)
                _exp2_split(lg, top, k, f, bits)
                _log2_row(blk[c + 1], blkbits[c + 1], mbits, mant, lg)
                _exp2_split(lg, top, k, f2, bits2)
            else:
                _exp2_split(blk[c], top, k, f, bits)
                _exp2_split(blk[c + 1], top, k, f2, bits2)
            ca0, cb0, ca1, cb1 = ca[c], cb[c], ca[c + 1], cb[c + 1]
            for p in range(w):
                e0 = _exp2_poly(f[p]) * scale[p]
                e1 = _exp2_poly(f2[p]) * scale2[p]
                aw[p] += e0 + e1
                aa[p] += e0 * ca0 + e1 * ca1
                ab[p] += e0 * cb0 + e1 * cb1
        if (c1 - c0) % 2:
            c = c1 - 1
            if probs:
                _log2_row(blk[c], blkbits[c], mbits, mant, lg)
                _exp2_split(lg, top, k, f, bits)
            else:
                _exp2_split(blk[c], top, k, f, bits)
            cac = ca[c]
            cbc = cb[c]
            for p in range(w):
                e = _exp2_poly(f[p]) * scale[p]
                aw[p] += e
                aa[p] += e * cac
                ab[p] += e * cbc
        for p in range(w):
            sw[p] += aw[p]
            sa[p] += aa[p]
            sb[p] += ab[p]
    for p in range(w):
        if ok[p]:
            out[p, 0] = sa[p] / sw[p]
            out[p, 1] = sb[p] / sw[p]
        else:
            out[p, 0] = out[p, 1] = np.nan
    return bad, neg


@njit(nogil=True, fastmath=_DECODE_FASTMATH, error_model="numpy")
def _mid_block(z, i, lo, w, ca, cb, k, probs, out):
    """One task of :func:`_anneal_mid`: scores ``z[i, :, lo : lo + w]`` -> out (w, 2).

    Copies the block to a contiguous buffer first (rows of z lie H*W*4 bytes apart, often a
    power of two, and reading them twice in place thrashes the cache), with the largest score
    and the sum per pixel on the way.
    """
    q = z.shape[1]
    blkbits = np.empty((q, w), np.int32)
    blk = blkbits.view(np.float32)
    top = np.full(w, _FNEG_INF)
    low = np.full(w, _FPOS_INF)
    total = np.zeros(w, np.float32)
    for c in range(q):
        # A sliced row (not z[i, c, lo + p]) so that numba knows the index is not negative: its
        # wrap-around test would keep the loop from vectorising (2.8x slower).
        row = z[i, c, lo : lo + w]
        dst = blk[c]
        if probs:  # the smallest probability too (a loop of its own measured 0.96x)
            for p in range(w):
                v = row[p]
                dst[p] = v
                top[p] = v if v > top[p] else top[p]
                low[p] = v if v < low[p] else low[p]
                total[p] += v
        else:  # logits have no sign to check; without ``low`` decoding ran 1.32-1.35x faster
            for p in range(w):
                v = row[p]
                dst[p] = v
                top[p] = v if v > top[p] else top[p]
                total[p] += v
    return _decode_block(blkbits, w, top, low, total, ca, cb, k, probs, out)


@njit(inline="always")
def _order_key(b):
    """An int32 that orders like the float32 with bits b, NaNs beyond +-inf (its own inverse)."""
    return np.int32(b ^ ((b >> _SIGN_SHIFT) & _ABS_MASK))  # int32 lanes, twice as many as int64


@njit(fastmath=False)
def _pixel_checks(x, probs):
    """(valid, negative) for one pixel's scores x (Q,), by float tests (see :func:`_valid`):
    the slow path of :func:`_pixel_mean`, compiled without fast math."""
    top = _FNEG_INF
    low = _FPOS_INF
    total = np.float32(0.0)
    for v in x:
        top = v if v > top else top
        low = v if v < low else low
        total += v
    return _valid(top, total, x, probs), probs and low < 0


@njit(nogil=True, fastmath=_DECODE_FASTMATH, error_model="numpy")
def _pixel_mean(x, xb, ca, cb, k, probs, out):
    """Annealed mean of one pixel's scores x (Q,) float32 -> out (2,); returns (invalid,
    negative probability) as 0 or 1 (output NaN if either). ``xb`` is x viewed as int32.

    Both loops run along the contiguous classes and vectorise: the largest and smallest score
    come from integer order keys of the bits, which also show a NaN or an infinity (then the
    float tests of :func:`_pixel_checks` decide); weights and sums follow in one loop, the sums
    float32 reductions.
    """
    q = x.size
    hi = _IMIN
    lo = _IMAX
    for c in range(q):
        key = xb[c] if probs else _order_key(xb[c])  # bits of p >= 0 order as p does
        hi = max(hi, key)
        lo = min(lo, key)
    least = np.int32(0) if probs else _NEG_INF_KEY  # no sign bit; no NaN below -inf
    if not (lo >= least and least < hi < _INF_BITS):
        ok, neg = _pixel_checks(x, probs)
        if not ok or neg:
            out[0] = out[1] = np.nan
            return int(not ok), int(neg)
    top_bits = hi if probs else _order_key(hi)
    top = _as_float32(top_bits)
    # The exponent y = (log2 p - log2 p_max) k or (z - z_max) k, the difference taken before
    # the multiply, as in _decode_block: the largest score's is then exactly 0. Folded into the
    # polynomial's constant (or z k - z_max k) it was off by a rounding, times 1/T: at T = 1e-10
    # every pixel decoded to the plain mean of the classes, or to garbage.
    ltop = _log2_bits(top, top_bits, _mantissa(top_bits)) if probs else top
    # float32 sums over up to _LAST_SUM classes, in vector lanes (a few dozen terms each), then
    # float64: a float32 sum of many thousand classes would lose digits.
    sw = sa = sb = 0.0
    for c0 in range(0, q, _LAST_SUM):
        xc = x[c0 : c0 + _LAST_SUM]
        xbc = xb[c0 : c0 + _LAST_SUM]
        cac = ca[c0 : c0 + _LAST_SUM]
        cbc = cb[c0 : c0 + _LAST_SUM]
        tw = ta = tb = _F0
        for c in range(xc.size):
            lx = _log2_bits(xc[c], xbc[c], _mantissa(xbc[c])) if probs else xc[c]
            f, nbits = _exp2_parts((lx - ltop) * k)
            e = _exp2_poly(f) * _as_float32(nbits)
            tw += e
            ta += e * cac[c]
            tb += e * cbc[c]
        sw += tw
        sa += ta
        sb += tb
    out[0] = sa / sw
    out[1] = sb / sw
    return 0, 0


@njit(nogil=True)
def _anneal_last(z, ca, cb, k, probs, taken, out):
    """Annealed mean of scores z (N, Q) float32, classes contiguous -> out (N, 2) float32.

    Pixel by pixel (:func:`_pixel_mean`), in tasks of 256 pixels taken from the shared counter
    ``taken`` until none is left; other arguments as for :func:`_anneal_mid`. Returns the
    numbers of invalid pixels (output NaN) and of negative probabilities this copy met.
    """
    n = z.shape[0]
    zb = z.view(np.int32)
    ntask = (n + _DECODE_BLOCK - 1) // _DECODE_BLOCK
    bad = neg = 0
    while True:
        task = fetch_add(taken, 1)
        if task >= ntask:
            break
        for p in range(task * _DECODE_BLOCK, min(n, (task + 1) * _DECODE_BLOCK)):
            b, g = _pixel_mean(z[p], zb[p], ca, cb, k, probs, out[p])
            bad += b
            neg += g
    return bad, neg


@njit(nogil=True)
def _anneal_mid(z, ca, cb, k, probs, taken, out):
    """Annealed mean over axis 1 of scores z (M, Q, P) float32 -> out (M, P, 2) float32.

    For network output (B, Q, H*W), in tasks of 256 pixels x Q classes (:func:`_mid_block`;
    shorter rows cost more loop overhead, the block, 400 KB at Q = 395, still fits the L2
    cache), taken from the shared counter ``taken`` until none is left. ``probs``: z holds
    probabilities (else logits); k is 1 / T for probabilities and log2(e) / T for logits (the
    kernels work in base 2); ca, cb: (Q,) float32 class centres. Returns the numbers of invalid
    pixels (output NaN) and of negative probabilities this copy met.
    """
    m, q, npix = z.shape
    nblk = (npix + _DECODE_BLOCK - 1) // _DECODE_BLOCK
    bad = neg = 0
    while True:
        task = fetch_add(taken, 1)
        if task >= m * nblk:
            break
        i = task // nblk
        lo = (task % nblk) * _DECODE_BLOCK
        w = min(npix, lo + _DECODE_BLOCK) - lo
        b, g = _mid_block(z, i, lo, w, ca, cb, k, probs, out[i, lo : lo + w])
        bad += b
        neg += g
    return bad, neg


def _check_scores(
    scores: np.ndarray, classes: np.ndarray, axis: int, exact: bool = False
) -> tuple[np.ndarray, int]:
    """Validate class scores against a class set; return them as float32 (``exact``: floats
    as they are, so that float64 scores keep their order) and the class axis."""
    x = np.asarray(scores)
    if x.ndim < 1 or x.dtype.kind not in "iuf":  # (complex lost its imaginary part, unsaid)
        raise ValueError(
            f"scores must be a real numeric array with a class axis, got {x.dtype} {x.shape}"
        )
    if not (is_whole(axis) and -x.ndim <= axis < x.ndim):
        raise ValueError(f"axis {axis} is out of range for scores of shape {x.shape}")
    axis %= x.ndim
    if x.shape[axis] != classes.shape[0]:
        raise ValueError(
            f"scores have {x.shape[axis]} classes on axis {axis}, "
            f"the class set has {classes.shape[0]}"
        )
    if exact and x.dtype.kind == "f":
        return x, axis
    return np.ascontiguousarray(x, dtype=np.float32), axis


def annealed_mean(
    scores: np.ndarray,
    classes: np.ndarray,
    T: float = defaults.TEMPERATURE,
    *,
    axis: int = -1,
    logits: bool = False,
) -> np.ndarray:
    """Decode class distributions to a/b with the annealed mean (Zhang et al. [1], Sec. 2.3).

    Parameters
    ----------
    scores : array_like, float
        Per-pixel class probabilities ``p`` (>= 0, finite, need not sum to 1, at least one
        positive per pixel), or logits ``z`` when ``logits=True`` (no NaN or +inf; -inf masks
        a class); the class axis (length Q) is ``axis``, e.g. (H, W, Q) or (B, Q, H, W) with
        ``axis=1``. Computed in float32 (float64 input is converted): probabilities below
        1.2e-38 (float32 subnormals) count as about 2^-127, so scale a pixel whose largest
        probability is that small (softmax output never is).
    classes : (Q, 2) array_like
        Class centres (a, b), a/b units.
    T : float, default 0.38
        Temperature, > 0. T = 1 is the plain mean; T -> 0 tends to :func:`mode`. [1] and the
        seed use 0.38.
    axis : int, default -1
        Position of the class axis in ``scores``.
    logits : bool, default False
        Scores are logits rather than probabilities.

    Returns
    -------
    ab : float32, shape of ``scores`` without ``axis``, plus a trailing 2
        ``sum_q f_q(T) c_q`` with ``f(T) = softmax(log p / T)`` (or ``softmax(z / T)``).

    Raises
    ------
    ValueError
        Wrong shapes, T below :data:`~recolor_tools.defaults.T_MODE` (1e-30: use :func:`mode`),
        NaN or +inf scores, negative probabilities, or a pixel
        without a positive probability (finite logit).

    Notes
    -----
    Computed stably in base 2 and float32: weights ``2^((z_q - z_max) log2(e) / T)`` for
    logits, ``2^((log2 p_q - log2 p_max) / T)`` for probabilities (``softmax(log p / T)`` is
    ``p^(1/T)`` normalised), summed in float32 (over 16 classes at a time, or in a few dozen
    vector lanes when the classes are the last axis) and those sums in float64. The exponential
    and the logarithm are branch-free polynomials on the IEEE bits (relative error < 2e-7,
    absolute < 3e-7 for log2) so that the loops vectorise. Weights
    below ``2^-64`` (5e-20) of the largest, masked classes (-inf logits) and zero probabilities
    included, count as ``2^-64``: together they move the result by less than
    ``Q * 5e-20 * max|c|``. The result matches the float64 formula to about 3e-5 a/b units
    at T = 0.38 (for logits of moderate size: float32 logits of magnitude L carry an error of
    about L * 6e-8 / T in the exponent; for probabilities the log2's 3e-7 is divided by T too:
    near-tied far-apart classes measured 3.6e-4 at T = 0.01, 3.8e-3 at T = 1e-3; probabilities
    that do not sum to 1 lose a little more, the float32 log2 of a tiny or huge p being coarser:
    4e-4 at T = 0.38 for p scaled by 2^-100 or 1e-30). Scores with
    the classes last are decoded pixel by pixel along the contiguous classes; other layouts in
    blocks of 256 pixels x Q classes, without a transposed copy of the whole array.
    """
    if not (is_real(T) and T >= defaults.T_MODE):  # 1 / T overflows float32: use mode()
        raise ValueError(f"temperature T must be a number >= {defaults.T_MODE}, got {T!r}")
    check_flag("logits", logits)  # "no" decoded probabilities as logits
    cls = check_classes(classes)
    x, axis = _check_scores(scores, cls, axis)
    pre = int(np.prod(x.shape[:axis], dtype=np.int64))
    post = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    out = np.empty((pre, post, 2), np.float32)
    ca, cb = (np.ascontiguousarray(cls[:, i], np.float32) for i in (0, 1))
    if out.size:
        # The kernels work in base 2: softmax(z / T) weights are 2^((z - z_max) log2(e) / T),
        # softmax(log p / T) ones 2^((log2 p - log2 p_max) / T).
        k = np.float32((1.0 / math.log(2.0) if logits else 1.0) / T)
        z = x.reshape(pre, -1, post)
        taken = np.zeros(1, np.int64)  # tasks handed out so far
        if post == 1:
            z, res, kernel = z.reshape(pre, -1), out.reshape(-1, 2), _anneal_last
        else:
            res, kernel = out, _anneal_mid
        nwork = 1 if z.size <= _SERIAL_MAX else threads()
        counts = run_workers(lambda: kernel(z, ca, cb, k, not logits, taken, res), nwork)
        bad, neg = np.sum(counts, axis=0)
        if neg:
            raise ValueError("probabilities must not be negative")
        if bad:
            what = "logits (or all -inf)" if logits else "probabilities (or all zero)"
            raise ValueError(f"scores of {bad} pixel(s) hold NaN or infinite {what}")
    return out.reshape(*x.shape[:axis], *x.shape[axis + 1 :], 2)


def mode(
    scores: np.ndarray, classes: np.ndarray, axis: int = -1, *, logits: bool | None = None
) -> np.ndarray:
    """The centre of the most likely class per pixel (the T -> 0 limit of the annealed mean).

    Parameters
    ----------
    scores : array_like
        Probabilities or logits (the argmax is the same); class axis ``axis``. What
        :func:`annealed_mean` refuses is refused here too: NaN or +inf anywhere, and a pixel
        whose scores are all -inf (no class: masked logits, or negative probabilities).
    classes : (Q, 2) array_like
        Class centres (a, b), a/b units.
    axis : int, default -1
        Position of the class axis in ``scores``.
    logits : bool, optional
        What the scores are, as for :func:`annealed_mean`: False (probabilities) also refuses
        negative values and a pixel without a positive probability (all zero), as
        :func:`annealed_mean` does; True or None (either, the default) accepts any finite
        values.

    Returns
    -------
    ab : float32, shape of ``scores`` without ``axis``, plus a trailing 2
        ``classes[argmax_q scores]``; ties go to the lower class index.

    Raises
    ------
    ValueError
        Wrong shapes, or scores :func:`annealed_mean` would refuse (above).
    """
    check_flag("logits", logits, optional=True)
    cls = check_classes(classes)
    x, axis = _check_scores(scores, cls, axis, exact=True)  # (float32: ties, 1e300 -> inf)
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("scores contain NaN or +inf values")
    if logits is False and (x < 0).any():
        raise ValueError("probabilities must not be negative")
    best = np.argmax(x, axis=axis)
    if x.size:
        top = np.take_along_axis(x, np.expand_dims(best, axis), axis)
        if (n := int(np.count_nonzero(top == -np.inf))) > 0:
            raise ValueError(f"scores of {n} pixel(s) are all -inf (no class)")
        if logits is False and (n := int(np.count_nonzero(top == 0))) > 0:
            raise ValueError(f"scores of {n} pixel(s) hold no positive probability (all zero)")
    return cls[best]
