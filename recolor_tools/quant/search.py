"""Search tables for the encoders: which classes can be nearest where, built once per class set
and k (in numpy, so that they cost no compilation).

- :class:`_Table`, a lookup table over the a/b plane: per small square cell, every class that
  can be among the k nearest to some point of the cell (a quarter of the centres' mean spacing:
  about 2k classes a cell on a regular grid), sorted so that a search can stop early; for k = 1
  also a finer grid (:func:`_one_class_cells`) naming the class of each sub-cell that lies
  inside one class's region, which answers most values of :func:`~.encode.hard_encode` with
  one 2-byte read.
- :class:`_Lattice`, for class sets on a square lattice (recolor's): per sub-cell of the unit
  cell, the k nearest lattice offsets in order, so that most values of
  :func:`~.encode.soft_encode` need no search and no sort.

Both were numba kernels until the tables' compilation (16.6 s for the parallel candidate table on
a fresh install, more than the whole warm ``recolor quantize``) was measured against their
numpy form: 0.1-0.2 s a process for the default classes, with nothing to compile.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# The lookup table costs (cells x Q) work to build; this bounds it to well under a second.
_MAX_TABLE_WORK = 40_000_000
# Beyond this k the table would list nearly every class per cell, so all classes are measured.
_MAX_TABLE_K = 64
# Cells a pass of the table's numpy build: (cells x Q) float64 arrays of a few MB.
_TABLE_PASS = 2048


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


# For k = 1, a finer grid (_FINE x _FINE sub-cells per table cell) records the class of each
# sub-cell that lies inside one class's region, so that most values are answered by one 2-byte
# read (the grid, ~0.5 MB for the gamut classes, stays in cache) without a distance.
_FINE = 4
_MARGIN = 0.1  # squared a/b units: covers float32 rounding of the corners and of the lookup


def _candidate_table(cls: np.ndarray, k: int, x0: float, y0: float, s: float, nx: int, ny: int):
    """Per lookup cell, the classes that can be among the k nearest to some point in it.

    For any point p of a cell every class c has dmin(c) <= |p - c|^2 <= dmax(c), so the k-th
    nearest squared distance at p is at most D, the k-th smallest dmax; a class with
    dmin(c) > D has k classes strictly nearer and is dropped. Cell ``i * ny + j`` spans
    [x0 + i s, x0 + (i + 1) s) x [y0 + j s, ...), widened by a margin that covers rounding in
    the lookup of a point on its border.

    Returns CSR arrays: ``start`` (ncell + 1,) int64, and per candidate ``cand`` (int16 class)
    and ``low`` (float64 dmin). Each cell's candidates are sorted by dmin, then distance to the
    cell centre, then class, so a search meets the nearest classes early and can stop at the
    first candidate whose dmin exceeds the k-th distance found so far.
    """
    c = cls.astype(np.float64)
    eps = 1e-6 * (1.0 + s)

    def bounds(lo: float, n: int, centre: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per cell row (or column) and class: the squared distance along this axis from the
        centre to the nearest and to the farthest point of the cell, and the cell's middle."""
        c0 = (lo + np.arange(n) * s - eps)[:, None]
        c1 = c0 + s + 2 * eps
        near = np.maximum(np.maximum(c0 - centre, 0.0), centre - c1)
        far = np.maximum(np.abs(centre - c0), np.abs(centre - c1))
        return near * near, far * far, 0.5 * (c0 + c1)[:, 0]

    # Distances to a rectangle add over the axes: (nx + ny) x Q work, then one addition a value.
    ex, fx, mx = bounds(x0, nx, c[:, 0])
    ey, fy, my = bounds(y0, ny, c[:, 1])
    cells, classes, dmins = [], [], []
    rows = max(1, _TABLE_PASS // ny)
    for i0 in range(0, nx, rows):
        i1 = min(nx, i0 + rows)
        dmax = fx[i0:i1, None, :] + fy[None, :, :]  # (rows, ny, Q)
        bound = np.partition(dmax, k - 1, axis=2)[:, :, k - 1 : k] * (1.0 + 1e-9) + 1e-9
        dmin = ex[i0:i1, None, :] + ey[None, :, :]
        i, j, cl = np.nonzero(dmin <= bound)
        cells.append((i + i0) * ny + j)
        classes.append(cl)
        dmins.append(dmin[i, j, cl])
    cell, cand, low = (np.concatenate(x) for x in (cells, classes, dmins))
    mid = (c[cand, 0] - mx[cell // ny]) ** 2 + (c[cand, 1] - my[cell % ny]) ** 2
    order = np.lexsort((cand, mid, low, cell))
    start = np.zeros(nx * ny + 1, np.int64)
    np.cumsum(np.bincount(cell, minlength=nx * ny), out=start[1:])
    return start, cand[order].astype(np.int16), np.ascontiguousarray(low[order])


def _one_class_cells(classes: np.ndarray, table: _Table, pair: _Table | None) -> np.ndarray:
    """Per sub-cell of ``table`` (k = 1), the class whose region contains it, or -1 (int16,
    row-major); ``pair`` is the k = 2 table of the same classes (None for a single class).

    Regions of nearest centres are convex, so a rectangle lies inside one iff its four corners
    do; each corner must be nearer to that class than to the second nearest by _MARGIN, so no
    point of the sub-cell (give or take rounding) is tied or nearer to another class. The two
    nearest of a corner are among the candidates of the k = 2 cell it lies in (on a border,
    either cell's list covers it).
    """
    nxf, nyf = table.nx * _FINE, table.ny * _FINE
    if pair is None:  # one class: its region is the plane
        return np.zeros(nxf * nyf, np.int16)
    s = 1.0 / (table.inv_s * _FINE)
    c = classes.astype(np.float64)
    count = np.diff(pair.start[:-1])  # the cells, not the list of every class after them
    width = int(count.max())
    near = np.empty((nxf + 1) * (nyf + 1), np.int64)
    for lo in range(0, near.size, 16 * _TABLE_PASS):
        corner = np.arange(lo, min(lo + 16 * _TABLE_PASS, near.size))
        a = table.x0 + s * (corner // (nyf + 1))
        b = table.y0 + s * (corner % (nyf + 1))
        ci = np.minimum(((a - pair.x0) * pair.inv_s).astype(np.int64), pair.nx - 1)
        cj = np.minimum(((b - pair.y0) * pair.inv_s).astype(np.int64), pair.ny - 1)
        cell = ci * pair.ny + cj
        slot = pair.start[cell, None] + np.arange(width)
        cand = pair.cand[np.minimum(slot, len(pair.cand) - 1)].astype(np.int64)
        d = (a[:, None] - c[cand, 0]) ** 2 + (b[:, None] - c[cand, 1]) ** 2
        d[np.arange(width) >= count[cell, None]] = np.inf
        two = np.argpartition(d, 1, axis=1)[:, :2]
        d2 = np.take_along_axis(d, two, 1)
        first = np.take_along_axis(cand, two, 1)[np.arange(len(d)), d2.argmin(1)]
        near[lo : lo + len(corner)] = np.where(np.abs(d2[:, 1] - d2[:, 0]) > _MARGIN, first, -1)
    near = near.reshape(nxf + 1, nyf + 1)
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
    """Lookup table of candidate classes for one class set and k.

    The a/b plane from (x0, y0) in ``nx`` x ``ny`` square cells of side 1 / inv_s; cell
    ``i * ny + j`` lists its candidates in ``cand[start[cell] : start[cell + 1]]`` (see
    :func:`_candidate_table`), and list ``nx * ny`` holds every class, for values outside.
    """

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
            start, cand, low = np.zeros(1, np.int64), np.zeros(0, np.int16), np.zeros(0)
        else:
            start, cand, low = _candidate_table(classes, k, self.x0, self.y0, s, self.nx, self.ny)
        # After the last cell, the list for values outside the table: every class in index
        # order, none skipped (a bound of 0), so one search loop serves both.
        self.start = np.append(start, start[-1] + q)
        self.cand = np.concatenate([cand, np.arange(q, dtype=np.int16)])
        self.low = np.concatenate([low, np.zeros(q)])
        self.cab = np.ascontiguousarray(classes[self.cand])
        self.one = np.zeros(0, np.int16)
        if k == 1 and self.nx:
            pair = _table(classes.tobytes(), 2) if q > 1 else None
            self.one = _one_class_cells(classes, self, pair)
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
