"""Tetrahedral interpolation in a regular 3-D colour table (numba kernel).

Imported only when a 16-bit or float image with an ICC profile is read or written (numba costs
about 0.2 s to import), see :mod:`recolor_tools.colorprofile`.

Each cube of the table between nodes is cut into six tetrahedra along its main diagonal; a point
is interpolated from the four corners of the one holding it. With fractions fx, fy, fz in the
cube and fx >= fy >= fz, for example::

    out = c000 + fx (c100 - c000) + fy (c110 - c100) + fz (c111 - c110)

This is what littleCMS itself uses on RGB tables: four lookups instead of trilinear's eight, and
the gray axis R = G = B is interpolated from gray nodes only (no colour cast on neutrals).

References
----------
.. [1] J. M. Kasson, S. I. Nin, W. Plouffe, J. L. Hafner, "Performing color space conversions
   with three-dimensional linear interpolation", J. Electronic Imaging 4(3), 1995.
"""

from __future__ import annotations

import numpy as np

from .jit import njit


# Serial on purpose: images are read by threads (rebalance-stats -j) and forked loader processes
# (train), where numba's parallel layers may abort (workqueue) or hang after fork (GNU OpenMP).
@njit(nogil=True)
def tetrahedral(src: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """Interpolate ``table`` (N, N, N, C) float32 at ``src`` (P, 3) in [0, 1]; write ``out`` (P, C).

    Inputs outside [0, 1] are clamped to the table's edge.
    """
    n = table.shape[0] - 1
    for p in range(src.shape[0]):
        x = min(max(src[p, 0], 0.0), 1.0) * n
        y = min(max(src[p, 1], 0.0), 1.0) * n
        z = min(max(src[p, 2], 0.0), 1.0) * n
        i = min(int(x), n - 1)
        j = min(int(y), n - 1)
        k = min(int(z), n - 1)
        fx, fy, fz = x - i, y - j, z - k
        for c in range(table.shape[3]):
            c000 = table[i, j, k, c]
            c111 = table[i + 1, j + 1, k + 1, c]
            if fx >= fy:
                if fy >= fz:
                    v = c000 + fx * (table[i + 1, j, k, c] - c000)
                    v += fy * (table[i + 1, j + 1, k, c] - table[i + 1, j, k, c])
                    v += fz * (c111 - table[i + 1, j + 1, k, c])
                elif fx >= fz:
                    v = c000 + fx * (table[i + 1, j, k, c] - c000)
                    v += fz * (table[i + 1, j, k + 1, c] - table[i + 1, j, k, c])
                    v += fy * (c111 - table[i + 1, j, k + 1, c])
                else:
                    v = c000 + fz * (table[i, j, k + 1, c] - c000)
                    v += fx * (table[i + 1, j, k + 1, c] - table[i, j, k + 1, c])
                    v += fy * (c111 - table[i + 1, j, k + 1, c])
            elif fx >= fz:
                v = c000 + fy * (table[i, j + 1, k, c] - c000)
                v += fx * (table[i + 1, j + 1, k, c] - table[i, j + 1, k, c])
                v += fz * (c111 - table[i + 1, j + 1, k, c])
            elif fy >= fz:
                v = c000 + fy * (table[i, j + 1, k, c] - c000)
                v += fz * (table[i, j + 1, k + 1, c] - table[i, j + 1, k, c])
                v += fx * (c111 - table[i, j + 1, k + 1, c])
            else:
                v = c000 + fz * (table[i, j, k + 1, c] - c000)
                v += fy * (table[i, j + 1, k + 1, c] - table[i, j, k + 1, c])
                v += fx * (c111 - table[i, j + 1, k + 1, c])
            out[p, c] = v
