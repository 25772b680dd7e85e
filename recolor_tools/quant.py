"""Colour classes on the a/b plane: class sets, soft/hard encoding and annealed-mean decoding.

Colorization as classification (Zhang et al. [1]) quantises the a/b plane of CIELAB into Q
classes, trains a network to predict a distribution over them per pixel, and decodes that
distribution back to one a/b value. This module holds the numerical part of that scheme:

- a *class set* is a (Q, 2) float32 array of a/b class centres (OpenCV float Lab convention,
  a/b in about [-128, 127]); recolor's centres lie on a square grid (multiples of ``grid``):
  :func:`gamut_classes` (cells the sRGB gamut reaches) and :func:`data_classes` (cells some
  data occupies), stored with :func:`save_classes` / :func:`load_classes`;
- :func:`soft_encode` (k nearest centres with Gaussian weights: the training target) and
  :func:`hard_encode` (nearest centre);
- :func:`annealed_mean` and :func:`mode` (distribution -> a/b).

The nearest-centre search is exact: it returns the same classes, in the same order, as
computing every distance and sorting stably (ties go to the lower class index). Speed comes from
three things. A memo: a value seen earlier in the same chunk of pixels copies that answer (the
a/b of 8-bit images repeats: 86% of the Kodak photographs' pixels, 53% of the posters'). The
square lattice recolor's centres lie on: there the k nearest centres, in order, follow from
where in its lattice cell a value lies, with no distance sorted (see ``_Lattice``). Elsewhere, a
lookup table over the a/b plane that lists, per small square cell, every class that can be among
the k nearest to some point of that cell; only those are measured. The kernel takes pixels in
blocks, in passes (memo lookups, the two searches for the values not found, their weights with
a vectorised polynomial exp, the memo's copies), so that each loop stays short; the threads take
chunks of pixels from a shared counter as they finish, so a core that another process slows
does not hold the call up. Small calls (up to 4,096 values: a training crop's targets) run a
serial copy of the kernel. The kernels are
numba functions compiled on first use and cached on disk; they run over pixels in parallel,
release the GIL, and use a fork-safe numba threading layer (see below), so they work in forked
workers (torch DataLoader, multiprocessing) and, one call at a time, from several threads.

Speed (``benchmarks/bench_quant.py --repeat 9``, 2 threads on a shared 2-core EPYC VM whose
speed varies by up to 2x from minute to minute; ratios are medians of rounds that time every
method once, warm, each reference at its faster thread count): soft encoding of the a/b of real
8-bit images (the 24 Kodak photographs, 6 M pixels) 51-61 Mpixel/s, 87-121x scikit-learn's ball
tree (rounds 58-168) and 99-116x torch ``cdist`` + ``topk``; on smooth synthetic float images,
where no value repeats, 23 Mpixel/s, 46x and 44x. Training targets (one call per 32 x 32 crop,
one thread, as in a DataLoader worker): 92-140 us a call, 20-28x a call of either reference.
Annealed mean 950-1130 Mvalue/s: 12-15x the plain numpy formula on (B, Q, H, W) logits and
10.4-13x on (B, H, W, Q) probabilities (decoded pixel by pixel along the classes). Hard
encoding (k = 1) has a kernel of its own that answers most values from a grid of one-class
cells: 160-200 Mpixel/s on poster pixels, 1.34-1.44x the k-nearest kernel it used before;
``recolor rebalance-stats`` over the 14,034 training posters takes 28 s.

This module does not import torch: pass network output as a numpy array (``tensor.numpy()``).

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016,
       arXiv:1603.08511. Section 2.1 (quantisation, soft encoding) and 2.3 (annealed mean).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from pathlib import Path
from types import FunctionType

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import defaults
from .errors import RecolorError

# numba picks GNU OpenMP for parallel kernels when it can, and a process forked after that
# (a multiprocessing pool, torch DataLoader workers) is killed at once. "forksafe" picks TBB if
# installed, else numba's own workqueue, which is fork-safe but must not be entered by two
# threads at once: _KERNEL_LOCK serialises the (internally parallel) kernel calls.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "forksafe"
_KERNEL_LOCK = threading.RLock()  # re-entered: building a k = 1 table runs a k = 2 search

MAX_CLASSES = 32767
"""Largest class set: class indices are stored as int16."""

CLASSES_FORMAT = "recolor-classes"
CLASSES_VERSION = 1

# The lookup table costs (cells x Q) work to build; this bounds it to well under a second.
_MAX_TABLE_WORK = 40_000_000
# Beyond this k the table would list nearly every class per cell, so all classes are measured.
_MAX_TABLE_K = 64


# --- validation -------------------------------------------------------------------------------


def _check_ab(ab: np.ndarray, what: str = "ab", finite: bool = True) -> np.ndarray:
    """The one validator of a/b input: (..., 2) finite values, returned as C-contiguous float32
    (``finite=False`` leaves the test for NaN and infinities to the caller)."""
    arr = np.asarray(ab)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise ValueError(f"{what} must have shape (..., 2), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} must be a real number array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if finite and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{what} contains {bad} NaN or infinite value(s)")
    return arr


def _check_classes(classes: np.ndarray) -> np.ndarray:
    """Validate a class set: (Q, 2), 1 <= Q <= 32767, finite; C-contiguous float32."""
    arr = _check_ab(classes, "classes")
    if arr.ndim != 2 or not 1 <= arr.shape[0] <= MAX_CLASSES:
        raise ValueError(
            f"classes must have shape (Q, 2) with 1 <= Q <= {MAX_CLASSES}, got {arr.shape}"
        )
    return arr


def _check_k(k: int, q: int) -> int:
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= q:
        raise ValueError(f"k must be an integer in [1, Q={q}], got {k!r}")
    return int(k)


# --- class sets -------------------------------------------------------------------------------


def _bin(ab: np.ndarray, grid: float) -> np.ndarray:
    """Index of the nearest multiple of ``grid`` per coordinate, halves going to the lower one.

    ``ceil(x / grid - 1/2)`` rather than ``round`` so that a point half-way between two centres
    belongs to the lower one, the same choice :func:`hard_encode` makes (centres sort by a,
    then b).
    """
    return np.ceil(np.asarray(ab, dtype=np.float64) / grid - 0.5).astype(np.int64)


def _unique_centres(cells: np.ndarray, grid: float) -> np.ndarray:
    cells = np.unique(cells.reshape(-1, 2), axis=0)  # sorted by a, then b
    return np.ascontiguousarray(cells * grid, dtype=np.float32)


def _check_grid(grid: float) -> float:
    if not np.isfinite(grid) or grid <= 0:
        raise ValueError(f"grid must be a positive number, got {grid!r}")
    return grid


@functools.lru_cache(maxsize=8)
def _gamut_classes(grid: float) -> np.ndarray:
    import cv2

    # The a/b shadow of the sRGB solid is the shadow of its surface, so the six faces of the
    # 8-bit RGB cube (6 x 256^2 colours) reach every cell that the whole cube does.
    v = np.arange(256, dtype=np.float32) / 255.0
    u, w = (x.ravel() for x in np.meshgrid(v, v, indexing="ij"))
    faces = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        for value in (0.0, 1.0):
            face = np.empty((u.size, 3), np.float32)
            face[:, axis] = value
            face[:, others[0]], face[:, others[1]] = u, w
            faces.append(face)
    rgb = np.concatenate(faces)[:, None, :]
    ab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[:, 0, 1:]  # = color.rgb_to_lab, without (H,W) shape
    centres = _unique_centres(_bin(ab, grid), grid)
    centres.flags.writeable = False
    return centres


def gamut_classes(grid: float = 8) -> np.ndarray:
    """The class set of grid cells that the sRGB gamut reaches.

    Parameters
    ----------
    grid : float, default 8
        Spacing of the class centres in a/b units; centres are the multiples of ``grid``.

    Returns
    -------
    classes : (Q, 2) float32, read-only
        Centres ``(a, b)`` of every square cell ``[c - grid/2, c + grid/2)`` (per coordinate)
        that holds the a/b of at least one 8-bit sRGB colour (any L), sorted by a, then b.
        Q = 395 for grid 8 (the seed's setting; its posters occupy 394 of them) and 262 for
        grid 10. Zhang et al. [1] report 313 at grid 10 with their own gamut test; the count
        depends on how the gamut is sampled and binned.

    Notes
    -----
    Colours are the six faces of the 8-bit RGB cube, converted with OpenCV's float
    ``COLOR_RGB2Lab`` (D65), each binned to its nearest centre (a half-way value goes to the
    lower centre). The result is memoised.
    """
    return _gamut_classes(float(_check_grid(grid)))


def data_classes(ab: np.ndarray, grid: float = 8, min_count: int = 1) -> np.ndarray:
    """The class set of grid cells that the given a/b data occupies.

    Parameters
    ----------
    ab : (..., 2) array_like
        a/b values (OpenCV float Lab), e.g. ``lab[..., 1:]`` of many images stacked.
    grid : float, default 8
        Spacing of the class centres.
    min_count : int, default 1
        Keep cells holding at least this many values.

    Returns
    -------
    classes : (Q, 2) float32
        Centres (multiples of ``grid``) of the occupied cells, sorted by a, then b; Q may be 0.
    """
    grid = _check_grid(grid)
    cells = _bin(_check_ab(ab).reshape(-1, 2), grid)
    uniq, counts = np.unique(cells, axis=0, return_counts=True)
    return np.ascontiguousarray(uniq[counts >= min_count] * grid, dtype=np.float32).reshape(-1, 2)


def save_classes(path: str | Path, classes: np.ndarray, grid: float) -> None:
    """Write a class set to ``path`` (npz; written atomically).

    The file holds ``format`` = ``"recolor-classes"``, ``version`` = 1, ``classes`` (Q, 2)
    float32 and ``grid`` (float64 scalar).
    """
    from .imageio import atomic_open

    classes = _check_classes(classes)
    with atomic_open(path) as f:
        np.savez(
            f,
            format=np.array(CLASSES_FORMAT),
            version=np.array(CLASSES_VERSION),
            classes=classes,
            grid=np.array(float(_check_grid(grid))),
        )


def read_npz(path: str | Path, fmt: str, version: int, keys: tuple[str, ...]) -> dict:
    """Load a small recolor npz file, checking its format tag and version.

    Shared by the class and rebalancing files. Raises :class:`RecolorError` naming ``path``
    for a missing, unreadable, foreign, newer or incomplete file; never unpickles.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            data = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise RecolorError("no such file", path) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise RecolorError(f"not a {fmt} file", path) from None
    if not isinstance(data, dict) or str(data.get("format", "")) != fmt:
        raise RecolorError(f"not a {fmt} file (format tag missing or wrong)", path)
    try:
        got = int(data["version"])
    except (KeyError, TypeError, ValueError):
        raise RecolorError(f"{fmt} file without a valid version", path) from None
    if got != version:
        raise RecolorError(f"{fmt} file version {got}, this recolor reads version {version}", path)
    missing = [k for k in keys if k not in data]
    if missing:
        raise RecolorError(f"{fmt} file lacks {', '.join(missing)}", path)
    return data


def load_classes(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a class set written by :func:`save_classes`.

    Returns
    -------
    classes : (Q, 2) float32
    grid : float

    Raises
    ------
    RecolorError
        Missing file, not an npz, wrong format tag or version, or invalid contents.
    """
    data = read_npz(path, CLASSES_FORMAT, CLASSES_VERSION, ("classes", "grid"))
    try:
        return _check_classes(data["classes"]), _check_grid(float(data["grid"]))
    except (ValueError, TypeError) as e:
        raise RecolorError(f"invalid class set: {e}", path) from None


# --- nearest centres --------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _cell_rect(cell, x0, y0, s, ny):
    """Cell ``cell`` of the lookup table as (ax0, bx0, ax1, bx1), widened by a margin that covers
    rounding in the lookup of a point on its border."""
    eps = 1e-6 * (1.0 + s)
    a0 = x0 + (cell // ny) * s - eps
    b0 = y0 + (cell % ny) * s - eps
    return a0, b0, a0 + s + 2 * eps, b0 + s + 2 * eps


@numba.njit(cache=True, inline="always")
def _rect_dist(ca, cb, a0, b0, a1, b1):
    """Smallest and largest squared distance from centre (ca, cb) to the rectangle."""
    ex = max(a0 - ca, 0.0, ca - a1)
    ey = max(b0 - cb, 0.0, cb - b1)
    fx = max(abs(ca - a0), abs(ca - a1))
    fy = max(abs(cb - b0), abs(cb - b1))
    return ex * ex + ey * ey, fx * fx + fy * fy


@numba.njit(cache=True, parallel=True, nogil=True)
def _candidate_table(cls, k, x0, y0, s, nx, ny):
    """Per lookup cell, the classes that can be among the k nearest to some point in it.

    For any point p of a cell every class c has dmin(c) <= |p - c|^2 <= dmax(c), so the k-th
    nearest squared distance at p is at most D, the k-th smallest dmax; a class with
    dmin(c) > D has k classes strictly nearer and is dropped.

    Returns CSR arrays: ``start`` (ncell + 1,) int64, and per candidate ``cand`` (int16 class)
    and ``low`` (float64 dmin). Each cell's candidates are sorted by dmin, then distance to the
    cell centre, then class, so a search meets the nearest classes early and can stop at the
    first candidate whose dmin exceeds the k-th distance found so far.
    """
    q = cls.shape[0]
    ncell = nx * ny
    keep = np.zeros((ncell, q), np.bool_)
    counts = np.zeros(ncell + 1, np.int64)
    for cell in numba.prange(ncell):
        a0, b0, a1, b1 = _cell_rect(cell, x0, y0, s, ny)
        dmax = np.empty(q)
        for c in range(q):
            dmax[c] = _rect_dist(cls[c, 0], cls[c, 1], a0, b0, a1, b1)[1]
        bound = np.partition(dmax, k - 1)[k - 1] * (1.0 + 1e-9) + 1e-9
        for c in range(q):
            keep[cell, c] = _rect_dist(cls[c, 0], cls[c, 1], a0, b0, a1, b1)[0] <= bound
        counts[cell + 1] = keep[cell].sum()
    start = np.cumsum(counts)
    cand = np.empty(start[-1], np.int16)
    low = np.empty(start[-1])
    for cell in numba.prange(ncell):
        a0, b0, a1, b1 = _cell_rect(cell, x0, y0, s, ny)
        ids = np.nonzero(keep[cell])[0]
        dmin = np.empty(ids.size)
        dmid = np.empty(ids.size)
        for i in range(ids.size):
            ca, cb = np.float64(cls[ids[i], 0]), np.float64(cls[ids[i], 1])
            dmin[i] = _rect_dist(ca, cb, a0, b0, a1, b1)[0]
            dmid[i] = (ca - 0.5 * (a0 + a1)) ** 2 + (cb - 0.5 * (b0 + b1)) ** 2
        # Two stable sorts give the order (dmin, dmid, class).
        o1 = np.argsort(dmid, kind="mergesort")
        order = o1[np.argsort(dmin[o1], kind="mergesort")]
        for i in range(ids.size):
            cand[start[cell] + i] = ids[order[i]]
            low[start[cell] + i] = dmin[order[i]]
    return start, cand, low


@numba.njit(cache=True, inline="always")
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


# Class sets on a square lattice (recolor's: centres at multiples of the grid) have a faster
# path. Where every lattice point near a lattice cell is a class, the k nearest centres of a point
# in the cell, and their order, depend only on where in the cell the point lies: a table over
# _SUB x _SUB sub-cells of the unit cell gives, for each sub-cell in which neither the set nor the
# order changes, the k offsets from the cell in order (the other sub-cells, 5% for k = 5, and
# points near the gamut's edge take the candidate search). Such a point needs no sort and no
# search: k table reads, k distances to known offsets, and the weights.
_SUB = 256
_WIN = 4  # at most offsets -_WIN + 1 .. _WIN from a cell (the layout of the kernel's arrays)
_LAT_MARGIN = 1e-6  # squared lattice units: covers float64 rounding of the point's position
_LAT_MAX_K = 16

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


def _bitcast(name: str, src: types.Type, dst: types.Type, doc: str):
    """A numba intrinsic ``name(x)``: the ``dst`` with the IEEE bits of ``x``, a ``src`` (numba
    has no bit cast of scalars)."""
    kind = types.Integer if isinstance(src, types.Integer) else types.Float

    def typer(typingctx, x):
        if not isinstance(x, kind):
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(dst))

        return dst(src), codegen

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


_as_float64 = _bitcast(
    "_as_float64", types.int64, types.float64, "The float64 whose bits are an int64."
)
_float64_bits = _bitcast(
    "_float64_bits", types.float64, types.int64, "The bits of a float64, as int64."
)


@numba.njit(cache=True, inline="always")
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
# The threads take chunks from a shared counter as they finish (numba's default thread pool
# would split the range evenly in advance): when another process holds one of the two cores,
# 8 chunks a thread gave 1.22-1.26x the even split on the Kodak pixels; on idle cores the same.
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


# Loops over the k classes of one pixel are written once, in small inline functions, and called
# twice: with k and with the literal _K = 5, the default, which LLVM unrolls (a loop of run-time
# length 5 measured ~1.6x slower for the memo's copies and ~3x for the normalisation). For k = 5
# the copies are fixed-size memcpys (_copy_k): 1.06x the unrolled loop at 1 thread, 1.12x at 2
# (whole kernel, Kodak pixels).
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


@intrinsic
def _fetch_add(typingctx, x, v):
    """``x[0] += v`` as one atomic step, in a numba kernel; returns x[0] before (x a 1-D int64
    array)."""
    if not (isinstance(x, types.Array) and x.ndim == 1 and x.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        add = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", arr.data, add, "monotonic")

    return types.int64(x, v), codegen


@numba.njit(cache=True, inline="always")
def _copy_row(oi, ow, s, p, k, want_w):
    """Row s of oi (and of ow) into row p."""
    for j in range(k):
        oi[p, j] = oi[s, j]
    if want_w:
        for j in range(k):
            ow[p, j] = ow[s, j]


@numba.njit(cache=True, inline="always")
def _lattice_row(lat, poff, pou, pov, kappa, pid, base, fu, fv, k, oi, p, ex, t):
    """For a point at (fu, fv) in the cell at ``base`` in lat, the classes of its pattern pid
    into row p of oi and the exponents -kappa |(fu, fv) - offset|^2 into column t of ex."""
    for j in range(k):
        oi[p, j] = lat[base + poff[pid, j]]
        du = fu - pou[pid, j]
        dv = fv - pov[pid, j]
        ex[j, t] = -(du * du + dv * dv) * kappa


@numba.njit(cache=True, inline="always")
def _normalise(ex, total, t, k, ow, p):
    """Row p of ow: the k weights in column t of ex (the first is exp(0) = 1) over their sum."""
    inv = 1.0 / total[t]
    ow[p, 0] = inv
    for j in range(1, k):
        ow[p, j] = ex[j, t] * inv


@numba.njit(cache=True, parallel=True, nogil=True)
def _knn_kernel(
    ab, keys, cls, k, x0, y0, inv_s, nx, ny, start, cand, cab, low,
    lx0, ly0, inv_g, ncu, ncv, lnb, lat, inner, pat, poff, pou, pov, kappa,
    inv2s2, nwork, nchunk, bits, oi, ow,
):  # fmt: skip
    """k nearest class centres of each a/b point, and their Gaussian weights (k >= 2; see
    :func:`_nearest_kernel` for k = 1).

    ab (N, 2) f32, keys (N,) u64 the same values' bits (a and b in one word), cls (Q, 2) f32, oi
    (N, k) i16, ow (N, k) f32, or (0, k) for no weights; ``cab`` holds the candidates' centres,
    ``cls[cand]``, to save an indirection; ``lx0`` .. ``kappa`` the lattice tables
    (:class:`_Lattice`; ``pat`` None compiles that path out). Squared distances are
    (a - ca)^2 + (b - cb)^2 in float64. A point outside the table (every point when nx = 0) is
    compared with every class. The ``nwork`` threads take the ``nchunk`` chunks of the pixels
    from a shared counter. A point whose bits equal an earlier point's in its chunk copies that
    answer (exact: same input, same output); the memo has 2^bits entries, bits >= 1.

    Returns the number of NaN or infinite values met (their rows hold no answer); each such
    value is counted once per chunk at least, so 0 means every value was finite.
    """
    n = ab.shape[0]
    q = cls.shape[0]
    want_w = ow.shape[0] == n
    shift = np.uint64(64 - bits)
    mult = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: 2^64 / golden ratio
    bad = np.zeros(nwork, np.int64)
    taken = np.zeros(1, np.int64)
    for worker in numba.prange(nwork):
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
            chunk = _fetch_add(taken, 1)
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
                        bad[worker] += 1
                        for j in range(k):
                            oi[p, j] = 0
                            ex[j, t] = 0.0
                        continue
                    fi = (a - x0) * inv_s
                    fj = (b - y0) * inv_s
                    m = 0
                    if 0.0 <= fi < nx and 0.0 <= fj < ny:
                        cell = int(fi) * ny + int(fj)
                        for c in range(start[cell], start[cell + 1]):
                            if m == k and low[c] > bd[k - 1]:
                                break  # this and all later candidates are farther than the k-th
                            da = a - cab[c, 0]
                            db = b - cab[c, 1]
                            m = _insert(bd, bi, m, k, da * da + db * db, np.int64(cand[c]))
                    else:
                        for c in range(q):
                            da = a - cls[c, 0]
                            db = b - cls[c, 1]
                            m = _insert(bd, bi, m, k, da * da + db * db, c)
                    for j in range(k):
                        oi[p, j] = bi[j]
                    if want_w:
                        for j in range(k):
                            ex[j, t] = -bd[j] * inv2s2
                # 4. Weights of the misses: exp(x_j - x_0) / sum, shifted by the nearest class's
                # exponent so that far values do not underflow to 0/0 (the shift cancels).
                if want_w:
                    total[:nm] = 1.0
                    for j in range(1, k):
                        for t in range(nm):
                            e = _exp_neg(ex[j, t] - ex[0, t])
                            ex[j, t] = e
                            total[t] += e
                    for t in range(nm):
                        if k == _K:
                            _normalise(ex, total, t, _K, ow, miss[t])
                        else:
                            _normalise(ex, total, t, k, ow, miss[t])
                # 5. Copies for the hits, from the compact list: a test of src == p here, taken at
                # random for 13% of the Kodak pixels, cost the kernel 10% in mispredictions.
                if k == _K and want_w:
                    for h in range(nh):
                        _copy_k(oi, src[h], dst[h])
                        _copy_k(ow, src[h], dst[h])
                else:
                    for h in range(nh):
                        _copy_row(oi, ow, src[h], dst[h], k, want_w)
    return bad.sum()


def _serial_copy(kernel, name: str):
    """``kernel`` compiled without threads, under its own name: numba's on-disk cache tells
    compilations apart by name and types, not by the ``parallel`` flag (numba issue #6845)."""
    fn = kernel.py_func
    copy = FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return numba.njit(cache=True, nogil=True)(copy)


# Starting the threads of a parallel kernel costs ~40 us, more than encoding a training crop's
# targets (32 x 32 values): calls up to _SERIAL_MAX values run the serial copy.
_SERIAL_MAX = 1 << 12


@numba.njit(cache=True, parallel=True, nogil=True)
def _nearest_kernel(ab, cls, x0, y0, inv_s, nx, ny, start, cand, cab, low, one, nwork, nchunk, out):
    """The nearest class centre of each a/b point into ``out`` (N,) i16 (k = 1 of
    :func:`_knn_kernel`, whose arguments these are, with ``one``: per sub-cell of the finer grid
    the class whose region holds it, or -1; see :func:`_one_class_cells`). Ties go to the lower
    class index. Returns the number of NaN or infinite values met."""
    n = ab.shape[0]
    q = cls.shape[0]
    bad = np.zeros(nwork, np.int64)
    taken = np.zeros(1, np.int64)
    for worker in numba.prange(nwork):
        while True:
            chunk = _fetch_add(taken, 1)
            if chunk >= nchunk:
                break
            for p in range(chunk * n // nchunk, (chunk + 1) * n // nchunk):
                a = np.float64(ab[p, 0])
                b = np.float64(ab[p, 1])
                fi = (a - x0) * inv_s
                fj = (b - y0) * inv_s
                best = 0
                dbest = np.inf
                if 0.0 <= fi < nx and 0.0 <= fj < ny:  # NaN fails and goes on to the test below
                    sub = one[int(fi * _FINE) * (ny * _FINE) + int(fj * _FINE)]
                    if sub >= 0:
                        out[p] = sub  # the value lies in one class's region: no distances
                        continue
                    cell = int(fi) * ny + int(fj)
                    for c in range(start[cell], start[cell + 1]):
                        if low[c] > dbest:
                            break  # this and all later candidates are farther than the nearest
                        da = a - cab[c, 0]
                        db = b - cab[c, 1]
                        d = da * da + db * db
                        if d < dbest or (d == dbest and cand[c] < best):
                            dbest = d
                            best = cand[c]
                elif abs(a) < np.inf and abs(b) < np.inf:
                    for c in range(q):
                        da = a - cls[c, 0]
                        db = b - cls[c, 1]
                        d = da * da + db * db
                        if d < dbest:  # classes in index order: the first of equals stays
                            dbest = d
                            best = c
                else:
                    bad[worker] += 1
                out[p] = best
    return bad.sum()


_knn_serial = _serial_copy(_knn_kernel, "_knn_serial")
_nearest_serial = _serial_copy(_nearest_kernel, "_nearest_serial")


# For k = 1, a finer grid (_FINE x _FINE sub-cells per table cell) records the class of each
# sub-cell that lies inside one class's region, so that most values are answered by one 2-byte
# read (the grid, ~0.5 MB for the gamut classes, stays in cache) without a distance.
_FINE = 4
_MARGIN = 0.1  # squared a/b units: covers float32 rounding of the corners and of the lookup


def _one_class_cells(classes: np.ndarray, table: _Table) -> np.ndarray:
    """Per sub-cell, the class whose region contains it, or -1 (int16, row-major).

    Regions of nearest centres are convex, so a rectangle lies inside one iff its four corners
    do; each corner must be nearer to that class than to the second nearest by _MARGIN, so no
    point of the sub-cell (give or take rounding) is tied or nearer to another class.
    """
    nxf, nyf = table.nx * _FINE, table.ny * _FINE
    s = 1.0 / (table.inv_s * _FINE)
    ca = table.x0 + s * np.arange(nxf + 1)
    cb = table.y0 + s * np.arange(nyf + 1)
    corners = np.stack(np.meshgrid(ca, cb, indexing="ij"), -1).reshape(-1, 2)
    idx, _ = _knn(corners.astype(np.float32), classes, 2, None)
    d = ((corners[:, None, :] - classes[idx].astype(np.float64)) ** 2).sum(-1)
    near = np.where(d[:, 1] - d[:, 0] > _MARGIN, idx[:, 0], -1).reshape(nxf + 1, nyf + 1)
    c00, c10, c01, c11 = near[:-1, :-1], near[1:, :-1], near[:-1, 1:], near[1:, 1:]
    same = (c00 >= 0) & (c00 == c10) & (c00 == c01) & (c00 == c11)
    return np.ascontiguousarray(np.where(same, c00, -1).astype(np.int16).ravel())


class _Lattice:
    """Fast-path tables for a class set on a square lattice (see above); ``ncu = 0`` if none.

    A point (a, b) lies in cell (int(u), int(v)), u = (a - lx0) / g, v = (b - ly0) / g, of the
    lattice of spacing g whose corner (lx0, ly0) is the classes' lower-left bound. ``inner``
    marks the cells whose neighbourhood holds every lattice point a pattern can name; ``pat`` is
    the pattern of each sub-cell (or -1); per pattern, ``poff`` (P, k) int64 its classes'
    positions in ``lat`` relative to the cell's and ``pou``, ``pov`` (P, k) float64 their lattice
    offsets (du, dv) from the cell, nearest first;
    ``lat`` the class at each lattice point, padded by _WIN, rows of length ``lnb``.

    Correctness: for a pair of lattice points s, o the difference |p - s|^2 - |p - o|^2 is
    affine in p, so if every corner of a sub-cell has the same k nearest points in the same
    order, each by a margin, every point of the sub-cell has them too. The lattice points of a
    window of half-width w are compared; one outside it is >= w from the cell, farther than the
    (k + 1)-th nearest (checked; w grows from 2 to _WIN until it holds).
    """

    def __init__(self, classes: np.ndarray, k: int) -> None:
        self.ncu = self.ncv = self.lnb = 0
        self.lx0 = self.ly0 = self.inv_g = self.g2 = 0.0
        self.lat = self.pat = np.zeros(1, np.int16)
        self.inner = np.zeros(1, np.bool_)
        self.poff = np.zeros((1, k), np.int64)
        self.pou = self.pov = np.zeros((1, k))
        c = classes.astype(np.float64)
        steps = np.concatenate([np.diff(np.unique(c[:, 0])), np.diff(np.unique(c[:, 1]))])
        if not 2 <= k <= min(_LAT_MAX_K, len(c)) or steps.size == 0:
            return
        g = float(steps.min())
        x0, y0 = c.min(axis=0)
        i = np.rint((c[:, 0] - x0) / g).astype(np.int64)
        j = np.rint((c[:, 1] - y0) / g).astype(np.int64)
        na, nb = int(i.max()) + 1, int(j.max()) + 1
        on_lattice = np.allclose(x0 + i * g, c[:, 0], rtol=0, atol=1e-9 * g) and np.allclose(
            y0 + j * g, c[:, 1], rtol=0, atol=1e-9 * g
        )
        if not on_lattice or na * nb > 1 << 20 or np.unique(i * nb + j).size < len(c):
            return  # off a lattice, too sparse a lattice, or duplicate centres
        patterns = self._patterns(k)
        if patterns is None:
            return
        self.pat, offsets = patterns
        lat = np.full((na + 2 * _WIN, nb + 2 * _WIN), -1, np.int16)
        lat[i + _WIN, j + _WIN] = np.arange(len(c))
        inner = np.ones((na - 1, nb - 1), bool)
        used = np.unique(np.stack([offsets[0].ravel(), offsets[1].ravel()], 1), axis=0)
        for du, dv in used.tolist():
            inner &= lat[_WIN + du : _WIN + du + na - 1, _WIN + dv : _WIN + dv + nb - 1] >= 0
        self.lat, self.inner = lat.ravel(), np.ascontiguousarray(inner.ravel())
        self.lx0, self.ly0, self.inv_g, self.g2 = float(x0), float(y0), 1.0 / g, g * g
        self.ncu, self.ncv, self.lnb = na - 1, nb - 1, nb + 2 * _WIN
        self.poff = np.ascontiguousarray(offsets[0] * self.lnb + offsets[1], np.int64)
        self.pou, self.pov = (np.ascontiguousarray(o, np.float64) for o in offsets)

    @staticmethod
    def _patterns(k: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
        """Per sub-cell of the unit cell, its pattern (int16, -1 if none), and the patterns'
        lattice offsets (du, dv), each (P, k) int64, nearest first."""
        t = np.arange(_SUB + 1) / _SUB
        corner = np.stack(np.meshgrid(t, t, indexing="ij"), -1)  # (_SUB + 1, _SUB + 1, 2)
        for win in range(2, _WIN + 1):  # the smallest window that holds the k + 1 nearest
            if (2 * win) ** 2 <= k:
                continue
            o = np.arange(-win + 1, win + 1)
            ou, ov = (x.ravel() for x in np.meshgrid(o, o, indexing="ij"))
            d = (corner[..., :1] - ou) ** 2 + (corner[..., 1:] - ov) ** 2
            near = np.argpartition(d, k, axis=-1)[..., : k + 1]  # the k + 1 nearest, unordered
            dn = np.take_along_axis(d, near, -1)
            order = np.take_along_axis(near, np.lexsort((near, dn), axis=-1), -1)
            dk = np.take_along_axis(d, order, -1)
            if dk[..., k].max() < win**2:  # lattice points outside are >= win from the cell
                break
        else:
            return None
        ok = (np.diff(dk, axis=-1) > _LAT_MARGIN).all(-1)  # k + 1 distinct, ordered distances
        first = order[:-1, :-1, :k]
        fixed = np.ones((_SUB, _SUB), bool)
        for s in np.s_[:-1, :-1], np.s_[1:, :-1], np.s_[:-1, 1:], np.s_[1:, 1:]:
            fixed &= ok[s] & (order[s][..., :k] == first).all(-1)
        rows = first[fixed]
        # np.unique over runs of equal rows first: neighbouring sub-cells share their pattern.
        starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]).any(1)])
        uniq, which = np.unique(rows[starts], axis=0, return_inverse=True)
        pat = np.full((_SUB, _SUB), -1, np.int16)
        pat[fixed] = np.repeat(which.ravel(), np.diff(np.r_[starts, len(rows)]))
        return pat.ravel(), (ou[uniq], ov[uniq])

    def args(self, inv2s2: float) -> tuple:
        """The kernel's lattice arguments; ``pat`` is None (the path compiled out) where there
        are no tables."""
        kappa = self.g2 * inv2s2
        pat = self.pat if self.ncu else None
        return (
            *(self.lx0, self.ly0, self.inv_g, self.ncu, self.ncv, self.lnb),
            *(self.lat, self.inner, pat, self.poff, self.pou, self.pov, kappa),
        )


class _Table:
    """Lookup table of candidate classes for one class set and k."""

    def __init__(self, classes: np.ndarray, k: int) -> None:
        q = classes.shape[0]
        lo = np.minimum(classes.min(axis=0).astype(np.float64), -128.0)
        hi = np.maximum(classes.max(axis=0).astype(np.float64), 128.0)
        span = np.ptp(classes, axis=0).astype(np.float64)
        spacing = math.sqrt(max(span[0] * span[1], span.max() ** 2 / q, 1.0) / q)
        # A quarter of the mean centre spacing keeps the lists short (about 2k classes per
        # cell on a regular grid); the work bound keeps building quick for large Q.
        s = max(spacing / 4, math.sqrt(float(np.prod(hi - lo)) * q / _MAX_TABLE_WORK))
        self.x0, self.y0 = float(lo[0] - s), float(lo[1] - s)
        self.nx = int(math.ceil((hi[0] - lo[0]) / s)) + 2
        self.ny = int(math.ceil((hi[1] - lo[1]) / s)) + 2
        self.inv_s = 1.0 / s
        if k > _MAX_TABLE_K:
            self.nx = self.ny = 0
            self.start, self.cand, self.low = (
                np.zeros(1, np.int64),
                np.zeros(0, np.int16),
                np.zeros(0),
            )
        else:
            self.start, self.cand, self.low = _candidate_table(
                classes, k, self.x0, self.y0, s, self.nx, self.ny
            )
        self.cab = np.ascontiguousarray(classes[self.cand])
        self.one = _one_class_cells(classes, self) if k == 1 and self.nx else np.zeros(0, np.int16)
        self.classes, self.k = classes, k

    @functools.cached_property
    def lattice(self) -> _Lattice:
        """Built on the first call with this class set and k (~80 ms for k = 5)."""
        return _Lattice(self.classes, self.k)

    def args(self) -> tuple:
        return (
            *(self.x0, self.y0, self.inv_s, self.nx, self.ny),
            *(self.start, self.cand, self.cab, self.low),
        )


@functools.lru_cache(maxsize=16)
def _table(key: bytes, k: int) -> _Table:
    return _Table(np.frombuffer(key, np.float32).reshape(-1, 2), k)


def _knn(ab: np.ndarray, classes: np.ndarray, k: int, sigma: float | None):
    ab = _check_ab(ab, finite=False)  # the kernel finds NaN and infinities (a pass fewer)
    cls = _check_classes(classes)
    k = _check_k(k, cls.shape[0])
    flat = ab.reshape(-1, 2)
    idx = np.empty((flat.shape[0], k), np.int16)
    w = np.empty((flat.shape[0] if sigma is not None else 0, k), np.float32)
    inv2s2 = 0.0 if sigma is None else 1.0 / (2.0 * sigma * sigma)
    bad = 0
    if flat.shape[0]:
        with _KERNEL_LOCK:
            table = _table(cls.tobytes(), k)
            keys = flat.view(np.uint64)[:, 0]
            serial = len(flat) <= _SERIAL_MAX
            nwork = 1 if serial else numba.get_num_threads()
            nchunk = min(_CHUNKS_PER_THREAD * nwork, max(1, len(flat) // _CHUNK_MIN))
            # A table about twice the chunk, up to 2^_MEMO_BITS: small calls clear little.
            bits = min(_MEMO_BITS, (2 * len(flat) // nchunk).bit_length())
            if k == 1:  # the table answers most values at once: no memo, no lattice
                kernel = _nearest_serial if serial else _nearest_kernel
                bad = kernel(flat, cls, *table.args(), table.one, nwork, nchunk, idx[:, 0])
                w[:] = 1.0  # exp(0) / exp(0)
            else:
                kernel = _knn_serial if serial else _knn_kernel
                lattice = table.lattice.args(inv2s2)
                bad = kernel(
                    flat, keys, cls, k, *table.args(), *lattice, inv2s2, nwork, nchunk, bits,
                    idx, w,
                )  # fmt: skip
        if bad:  # the kernel met a NaN or an infinity; count them all for the message
            _check_ab(ab)
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
        Bad shapes, NaN or infinite values, k out of range, sigma not positive.

    Notes
    -----
    Exact: same classes and order as computing all Q squared distances
    ``(a - a_c)^2 + (b - b_c)^2`` in float64 and sorting them stably. Values far outside the
    class set are exact too (they are compared with every class). The weights are computed
    with the distances shifted by the nearest one, which cancels in the normalisation, so a
    far value gets weight 1 on its nearest class rather than 0/0.
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    return _knn(ab, classes, k, float(sigma))


def hard_encode(ab: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of the nearest class centre of each a/b value.

    Parameters
    ----------
    ab : (..., 2) array_like, finite
        a/b values (OpenCV float Lab).
    classes : (Q, 2) array_like
        Class centres.

    Returns
    -------
    idx : (...) int16
        ``argmin_c (a - a_c)^2 + (b - b_c)^2`` (float64 distances); ties go to the lower index.
        Same as ``soft_encode(ab, classes, k=1)[0][..., 0]``.
    """
    idx, _ = _knn(ab, classes, 1, None)
    return idx[..., 0]


# --- decoding ---------------------------------------------------------------------------------


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


_as_float32 = _bitcast(
    "_as_float32", types.int32, types.float32, "The float32 whose bits are an int32."
)


@numba.njit(cache=True, inline="always")
def _mantissa(bits):
    """The mantissa m in [1, 2) of the float32 with IEEE bits ``bits``."""
    return _as_float32((bits & _MANT_MASK) | _ONE_BITS)


@numba.njit(cache=True, inline="always")
def _exp2_parts(y):
    """``2^y = 2^f 2^n`` for y <= 1: (f in [0, 1), the IEEE bits of 2^n as int32), with
    n = floor(max(y, -64))."""
    v = max(y, _EXP2_LO)
    n = np.floor(v)
    return v - n, (np.int32(n) + _EXP_BIAS) << 23


@numba.njit(cache=True, inline="always")
def _exp2_split(x, top, k, f, bits):
    """First half of ``2^y``, y = (x - top) k <= 0, for float32 rows x and top (the first of two
    loops; the int32 row ``bits`` is read back as float32 through a view, which in the blocked
    kernel measured faster than one loop with the scalar cast ``_as_float32``): ``y = n + f`` with
    n = floor(max(y, -64)), f in [0, 1) into ``f``, and the IEEE bits of 2^n into ``bits``."""
    for j in range(f.size):
        f[j], bits[j] = _exp2_parts((x[j] - top[j]) * k)


@numba.njit(cache=True, inline="always")
def _exp2_poly(f):
    """``2^f`` for f in [0, 1], float32, relative error < 2e-7 (with rounding)."""
    return _F1 + f * (_E0 + f * (_E1 + f * (_E2 + f * (_E3 + f * (_E4 + f * _E5)))))


@numba.njit(cache=True, inline="always")
def _log2_bits(x, xb, m):
    """log2 x (-inf for x = 0) from x >= 0, its bits xb and its mantissa m in [1, 2): the
    exponent plus ``_LOG2_P`` at m - 3/2."""
    return _shifted_log2(x, xb, m, _LOG2_P)


@numba.njit(cache=True, inline="always")
def _shifted_log2(x, xb, m, lp):
    """``log2 x + d`` (-inf for x = 0) for x >= 0 with bits xb and mantissa m, where ``lp`` is
    ``_LOG2_P`` with d added to its constant term: the shift by log2 p_max in the annealed
    mean's exponent costs nothing per value. (Scaling every coefficient by 1/T as well, to save
    the multiply, was slower: nine coefficients no longer compile-time constants.)"""
    t = m - _F1HALF
    pt = lp[3] + t * (lp[2] + t * (lp[1] + t * lp[0]))
    pt = lp[8] + t * (lp[7] + t * (lp[6] + t * (lp[5] + t * (lp[4] + t * pt))))
    return np.float32((xb >> 23) - _EXP_BIAS) + pt if x > 0 else _FNEG_INF


@numba.njit(cache=True, inline="always")
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
@numba.njit(cache=True, fastmath=False)
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


@numba.njit(cache=True, nogil=True, fastmath=_DECODE_FASTMATH, error_model="numpy")
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


@numba.njit(cache=True, nogil=True, fastmath=_DECODE_FASTMATH, error_model="numpy")
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


@numba.njit(cache=True, inline="always")
def _order_key(b):
    """An int32 that orders like the float32 with bits b, NaNs beyond +-inf (its own inverse)."""
    return np.int32(b ^ ((b >> _SIGN_SHIFT) & _ABS_MASK))  # int32 lanes, twice as many as int64


@numba.njit(cache=True, fastmath=False)
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


@numba.njit(cache=True, nogil=True, fastmath=_DECODE_FASTMATH, error_model="numpy")
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
    # The exponent y = (log2 p - log2 p_max) k, log2 p_max folded into the polynomial, or
    # z k - z_max k, one multiply-add.
    ltop = _log2_bits(top, top_bits, _mantissa(top_bits))
    lp = (_G0, _G1, _G2, _G3, _G4, _G5, _G6, _G7, _G8 - ltop)
    shift = -top * k
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
            if probs:
                y = _shifted_log2(xc[c], xbc[c], _mantissa(xbc[c]), lp) * k
            else:
                y = xc[c] * k + shift
            f, nbits = _exp2_parts(y)
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


@numba.njit(cache=True, parallel=True, nogil=True)
def _anneal_last(z, ca, cb, k, probs, out):
    """Annealed mean of scores z (N, Q) float32, classes contiguous -> out (N, 2) float32.

    Pixel by pixel (:func:`_pixel_mean`), in tasks of 256 pixels; arguments as for
    :func:`_anneal_mid`. Returns the numbers of invalid pixels (output NaN) and of negative
    probabilities.
    """
    n = z.shape[0]
    zb = z.view(np.int32)
    ntask = (n + _DECODE_BLOCK - 1) // _DECODE_BLOCK
    bad = np.zeros(ntask, np.int64)
    neg = np.zeros(ntask, np.int64)
    for task in numba.prange(ntask):
        for p in range(task * _DECODE_BLOCK, min(n, (task + 1) * _DECODE_BLOCK)):
            b, g = _pixel_mean(z[p], zb[p], ca, cb, k, probs, out[p])
            bad[task] += b
            neg[task] += g
    return bad.sum(), neg.sum()


@numba.njit(cache=True, parallel=True, nogil=True)
def _anneal_mid(z, ca, cb, k, probs, out):
    """Annealed mean over axis 1 of scores z (M, Q, P) float32 -> out (M, P, 2) float32.

    For network output (B, Q, H*W), in tasks of 256 pixels x Q classes (:func:`_mid_block`;
    shorter rows cost more loop overhead, the block, 400 KB at Q = 395, still fits the L2
    cache). ``probs``: z holds probabilities (else logits); k is 1 / T for probabilities and
    log2(e) / T for logits (the kernels work in base 2); ca, cb: (Q,) float32 class centres.
    Returns the numbers of invalid pixels (output NaN) and of negative probabilities.
    """
    m, q, npix = z.shape
    nblk = (npix + _DECODE_BLOCK - 1) // _DECODE_BLOCK
    bad = np.zeros(m * nblk, np.int64)
    neg = np.zeros(m * nblk, np.int64)
    for task in numba.prange(m * nblk):
        i = task // nblk
        lo = (task % nblk) * _DECODE_BLOCK
        w = min(npix, lo + _DECODE_BLOCK) - lo
        bad[task], neg[task] = _mid_block(z, i, lo, w, ca, cb, k, probs, out[i, lo : lo + w])
    return bad.sum(), neg.sum()


def _check_scores(scores: np.ndarray, classes: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """Validate class scores against a class set; return them as float32 and the class axis."""
    x = np.asarray(scores)
    if x.ndim < 1 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(
            f"scores must be a numeric array with a class axis, got {x.dtype} {x.shape}"
        )
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for scores of shape {x.shape}")
    axis %= x.ndim
    if x.shape[axis] != classes.shape[0]:
        raise ValueError(
            f"scores have {x.shape[axis]} classes on axis {axis}, "
            f"the class set has {classes.shape[0]}"
        )
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
        ``axis=1``. Computed in float32 (float64 input is converted).
    classes : (Q, 2) array_like
        Class centres (a, b).
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
        Wrong shapes, T not positive, NaN or +inf scores, negative probabilities, or a pixel
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
    (for logits of moderate size: float32 logits of magnitude L carry an error of about
    L * 6e-8 / T in the exponent). Scores with the classes last are decoded pixel by pixel
    along the contiguous classes; other layouts in blocks of 256 pixels x Q classes, without a
    transposed copy of the whole array.
    """
    if not (np.isfinite(T) and T > 0):
        raise ValueError(f"temperature T must be a positive number, got {T!r}")
    cls = _check_classes(classes)
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
        with _KERNEL_LOCK:
            if post == 1:
                bad, neg = _anneal_last(
                    z.reshape(pre, -1), ca, cb, k, not logits, out.reshape(-1, 2)
                )
            else:
                bad, neg = _anneal_mid(z, ca, cb, k, not logits, out)
        if neg:
            raise ValueError("probabilities must not be negative")
        if bad:
            what = "logits (or all -inf)" if logits else "probabilities (or all zero)"
            raise ValueError(f"scores of {bad} pixel(s) hold NaN or infinite {what}")
    return out.reshape(*x.shape[:axis], *x.shape[axis + 1 :], 2)


def mode(scores: np.ndarray, classes: np.ndarray, axis: int = -1) -> np.ndarray:
    """The centre of the most likely class per pixel (the T -> 0 limit of the annealed mean).

    Parameters
    ----------
    scores : array_like
        Probabilities or logits (the argmax is the same); class axis ``axis``.
    classes : (Q, 2) array_like
        Class centres.

    Returns
    -------
    ab : float32, shape of ``scores`` without ``axis``, plus a trailing 2
        ``classes[argmax_q scores]``; ties go to the lower class index.
    """
    cls = _check_classes(classes)
    x, axis = _check_scores(scores, cls, axis)
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("scores contain NaN or +inf values")
    return cls[np.argmax(x, axis=axis)]


# --- records (for ``recolor quantize``) -------------------------------------------------------


def encode_record(rec, classes: np.ndarray, grid: float, k: int = defaults.K,
                  sigma: float = defaults.SIGMA, hard: bool = False):  # fmt: skip
    """The soft-encoded target record of a Lab record.

    Parameters
    ----------
    rec : recolor_tools.records.Record
        A Lab record (array ``lab``, (H, W, 3) float32).
    classes : (Q, 2) array_like
        Class centres; ``grid`` their spacing (stored in the record's meta).
    k, sigma : int, float
        As in :func:`soft_encode`.
    hard : bool
        Store only the nearest class.

    Returns
    -------
    records.Record
        Same name and size; arrays ``idx`` int16 (H, W, k) and ``w`` float32 (H, W, k), or with
        ``hard`` only ``idx`` (H, W, 1); meta ``kind`` ("target"), ``grid``, ``q``, ``k``,
        ``sigma`` and ``classes_used`` (distinct nearest classes in the image).
    """
    from .records import Record

    ab = rec.lab()[:, :, 1:]
    if hard:
        idx = hard_encode(ab, classes)[:, :, None]
        arrays = {"idx": idx}
    else:
        idx, w = soft_encode(ab, classes, k, sigma)
        arrays = {"idx": idx, "w": w}
    meta = {
        "kind": "target", "grid": float(grid), "q": int(len(classes)), "k": int(idx.shape[2]),
        "sigma": None if hard else float(sigma),
        "classes_used": int(np.unique(idx[:, :, 0]).size),
    }  # fmt: skip
    return Record(rec.name, rec.size, arrays, meta)


def preview_rgb(lab: np.ndarray, classes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """An image's colours replaced by their nearest class centre, its L kept.

    Parameters
    ----------
    lab : (H, W, 3) float32
        The Lab image.
    classes : (Q, 2) array_like
        Class centres.
    idx : (H, W) or (H, W, k) int
        Class indices, nearest first (as from :func:`soft_encode` or :func:`hard_encode`).

    Returns
    -------
    (H, W, 3) float32 RGB in [0, 1]
        Shows what the quantisation keeps of the colours (out-of-gamut results are clipped).
    """
    from .color import lab_to_rgb

    idx = np.asarray(idx)
    if idx.ndim == 3:
        idx = idx[:, :, 0]
    out = np.array(lab, dtype=np.float32, copy=True)
    out[:, :, 1:] = np.asarray(classes, np.float32)[idx]
    return lab_to_rgb(out)
