"""Matrix/TRC ICC profiles evaluated in floating point, for 16-bit and float samples.

littleCMS (through Pillow's ``ImageCms``) transforms 8-bit samples only; its table, sampled at
8-bit nodes, carries that rounding (0.5/255) into 16-bit images, most in the shadows. Most
profiles that scans and editors embed (Adobe RGB, ProPhoto, Display P3, ColorMatch, gray gamma
profiles) are matrix/TRC ("shaper") profiles, whose transform is three tone curves and a 3 x 3
matrix to the profile connection space (ICC.1:2010, sections 8.3 and 10.5-10.6, 10.15-10.18):

    XYZ_D50 = M @ (TRC_r(R), TRC_g(G), TRC_b(B))     (each value in [0, 1])

so a profile to sRGB is ``TRC_srgb^-1(clip(M_srgb^-1 @ M @ TRC(rgb), 0, 1))``, evaluated here in
float32/float64: exact to well within a 16-bit step. It is littleCMS's own path for such
profiles (relative colorimetric: the colorants are already D50-relative; black-point
compensation off), and sRGB's side is read from littleCMS's built-in sRGB profile, so the two
agree to littleCMS's rounding on 8-bit data. A gray profile's ``kTRC`` gives the luminance Y,
whose sRGB neutral is ``TRC_srgb^-1(Y)`` on each channel.

Profiles with lookup tables (``A2B0``, ``B2A0`` and friends: a scanner's measured profile, most
CMYK) are not evaluated here: :func:`shaper` returns None and the caller samples littleCMS. The
caller also keeps the formulas only where they give littleCMS's values at its table's nodes
(``colorprofile._formula``): a profile they misread falls back to the table, never to NaN.

References
----------
.. [1] ICC.1:2010-12 (profile version 4.3.0.0), sections 7.2-7.3 (header, tag table), 10.5
   (curveType), 10.18 (parametricCurveType), 10.31 (XYZType), F.3 (matrix/TRC model).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

Curve = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
"""(forward: encoded -> linear, inverse: linear -> encoded), both on arrays in [0, 1]."""

_LUT_TAGS = (b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2", b"D2B0", b"B2D0")
_PARA_COUNT = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}  # parameters of each parametric function type


def shaper(icc: bytes, to_srgb: bool, srgb: bytes) -> Callable[[np.ndarray], np.ndarray] | None:
    """The float transform between ``icc`` and sRGB (``srgb``: littleCMS's sRGB profile), or
    None where ``icc`` is no matrix/TRC RGB or gray profile (or one this reader does not know).

    The returned function takes float RGB in [0, 1], shape (..., 3), and returns float32 in
    [0, 1] (colours outside the destination's gamut clipped, as littleCMS clips them).
    """
    try:
        dst = _rgb(_tags(srgb))
        tags = _tags(icc)
        if any(t in tags for t in _LUT_TAGS) or icc[20:24] != b"XYZ ":  # (PCS Lab: L*, not Y)
            return None
        if icc[16:20] == b"GRAY" and to_srgb and b"kTRC" in tags:
            (fwd, _), (_, out) = _curve(tags[b"kTRC"]), dst[0][1]
            return lambda rgb: _by_blocks(lambda x: out(fwd(x)), rgb)
        if icc[16:20] != b"RGB ":
            return None
        src = _rgb(tags)
    except (KeyError, ValueError, ArithmeticError, struct.error):
        return None
    (cin, m_in), (cout, m_out) = (src, dst) if to_srgb else (dst, src)
    try:
        matrix = np.linalg.solve(m_out, m_in).T  # row vectors: lin_out = lin_in @ matrix
    except np.linalg.LinAlgError:  # colorants that span no space
        return None
    if not np.isfinite(matrix).all():
        return None

    matrix = matrix.astype(np.float32)  # float32 throughout: 6e-8 relative, a 16-bit step 1.5e-5

    def apply(x: np.ndarray) -> np.ndarray:
        lin = np.stack([cin[c][0](x[..., c]) for c in range(3)], axis=-1) @ matrix
        np.clip(lin, 0.0, 1.0, out=lin)
        return np.stack([cout[c][1](lin[..., c]) for c in range(3)], axis=-1)

    return lambda rgb: _by_blocks(apply, rgb)


BLOCK = 1 << 18
"""Samples per block of :func:`_by_blocks`: the formulas' float32 temporaries stay a few MB (a
24 Mpx master converted whole took 450 MB more than the table's path)."""


def _by_blocks(fn: Callable[[np.ndarray], np.ndarray], a: np.ndarray) -> np.ndarray:
    """``fn`` (elementwise along the first axis) of ``a`` as float32, a block of rows of the
    first axis at a time, into one float32 output."""
    a = np.asarray(a)
    if a.ndim == 0:
        return np.asarray(fn(a.astype(np.float32)), np.float32)
    out = np.empty(a.shape, np.float32)
    step = max(1, BLOCK // max(1, a[0].size))
    for lo in range(0, a.shape[0], step):
        out[lo : lo + step] = fn(a[lo : lo + step].astype(np.float32))
    return out


def _tags(icc: bytes) -> dict[bytes, bytes]:
    """The tag table of a profile: signature -> the tag's bytes (ICC.1 7.3)."""
    (n,) = struct.unpack_from(">I", icc, 128)
    out = {}
    for i in range(n):
        sig, offset, size = struct.unpack_from(">4sII", icc, 132 + 12 * i)
        if offset + size > len(icc):
            raise ValueError("tag beyond the profile's end")
        out[sig] = icc[offset : offset + size]
    return out


def _rgb(tags: dict[bytes, bytes]) -> tuple[tuple[Curve, Curve, Curve], np.ndarray]:
    """The three curves and the colorant matrix (columns: rXYZ, gXYZ, bXYZ) of an RGB profile."""
    curves = tuple(_curve(tags[c + b"TRC"]) for c in (b"r", b"g", b"b"))
    matrix = np.array([_xyz(tags[c + b"XYZ"]) for c in (b"r", b"g", b"b")]).T
    return curves, matrix  # type: ignore[return-value]


def _xyz(tag: bytes) -> tuple[float, float, float]:
    """An XYZType tag's first value: three s15Fixed16Numbers (ICC.1 10.31)."""
    if tag[:4] != b"XYZ ":
        raise ValueError("not an XYZType")
    return tuple(v / 65536 for v in struct.unpack_from(">3i", tag, 8))  # type: ignore[return-value]


def _curve(tag: bytes) -> Curve:
    """A ``curv`` (identity, a u8Fixed8 gamma, or a table of uint16 values over [0, 1],
    interpolated linearly as littleCMS does) or a ``para`` tag (ICC.1 10.5, 10.18)."""
    kind = tag[:4]
    if kind == b"curv":
        (n,) = struct.unpack_from(">I", tag, 8)
        if n == 0:
            return (lambda x: np.asarray(x)), (lambda y: np.asarray(y))
        if n == 1:
            (g,) = struct.unpack_from(">H", tag, 12)
            return _para(0, (g / 256,))
        table = np.array(struct.unpack_from(f">{n}H", tag, 12), np.float32) / 65535
        if np.any(np.diff(table) < 0):  # not monotonic: no inverse to take
            raise ValueError("a tone curve that is not monotonic")
        xs = np.linspace(0.0, 1.0, n, dtype=np.float32)
        return (lambda x: np.interp(x, xs, table).astype(np.float32)), (
            lambda y: np.interp(y, table, xs).astype(np.float32)
        )
    if kind == b"para":
        (ftype,) = struct.unpack_from(">H", tag, 8)
        if ftype not in _PARA_COUNT:
            raise ValueError(f"parametric curve type {ftype}")
        params = struct.unpack_from(f">{_PARA_COUNT[ftype]}i", tag, 12)
        return _para(ftype, tuple(p / 65536 for p in params))
    raise ValueError("not a tone curve")


def _para(ftype: int, p: tuple[float, ...]) -> Curve:
    """A parametricCurveType function (ICC.1 table 68), as type 4: ``Y = (aX + b)^g + e`` for
    ``X >= d``, else ``cX + f``; the inverse by its formula, ``X = ((Y - e)^(1/g) - b) / a``
    above the break, ``(Y - f) / c`` below (types 1 and 2, flat below theirs: ``X = d``)."""
    if not (p[0] > 0 and (ftype == 0 or p[1] > 0)):
        raise ValueError("a parametric curve that does not rise")
    g, a, b, c, d, e, f = {
        0: lambda g: (g, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        1: lambda g, a, b: (g, a, b, 0.0, -b / a, 0.0, 0.0),
        2: lambda g, a, b, c: (g, a, b, 0.0, -b / a, c, c),
        3: lambda g, a, b, c, d: (g, a, b, c, d, 0.0, 0.0),
        4: lambda *p: p,
    }[ftype](*p)
    at_d = max(a * d + b, 0.0) ** g + e  # Y at the break, from above (OverflowError: refused)

    # (the arrays' float type is kept: Python floats do not widen float32 in NumPy 2)
    def forward(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0)
        with np.errstate(over="ignore"):  # clipped to [0, 1] below, as ICC.1 10.18 asks
            y = np.where(x >= d, np.maximum(a * x + b, 0.0) ** g + e, c * x + f)
        return np.clip(y, 0.0, 1.0)

    def inverse(y: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            above = (np.maximum(y - e, 0.0) ** (1 / g) - b) / a
        below = (y - f) / c if c > 0 else np.full_like(y, d)
        return np.clip(np.where(y >= at_d, above, below), 0.0, 1.0)

    return forward, inverse
