"""Colour management: embedded ICC profiles to and from recolor's sRGB working space.

Every tool works in sRGB (``color.rgb_to_lab``). An image that embeds an ICC profile (Adobe RGB,
ColorMatch, a scanner's profile) is converted to sRGB on read, and an output may be converted back
to its input's profile (``--keep-profile``). The transforms are littleCMS's, through Pillow's
``ImageCms`` (relative colorimetric intent, black-point compensation off), or, for 16-bit and
float samples in a matrix/TRC profile, the same formulas littleCMS evaluates for such profiles.

``ImageCms`` works on 8-bit samples only, while recolor reads 16-bit masters and computes in float.
So samples that came from an 8-bit file go through littleCMS itself (exact), and 16-bit or float
ones through the profile's own formulas where it is a matrix/TRC profile (Adobe RGB, ProPhoto,
Display P3, gray gamma profiles: :mod:`recolor_tools.iccshaper`, in float, within a 16-bit step of
the true value; on 8-bit data, from the profile to sRGB 99% of samples equal to littleCMS's, none
more than one code off; from sRGB to the profile, ``--keep-profile``'s way, 98.5-98.8% equal and at
most 3 codes off, in the darkest colours, where a pure gamma curve is steepest and littleCMS's 8-bit
result is the one off: float64 agrees with the formulas). A profile with lookup tables (``A2B0``: a
scanner's measured profile) goes through its transform sampled once on a regular grid of GRID x GRID
x GRID RGB nodes and applied as a 3-D lookup table with tetrahedral interpolation
(:mod:`recolor_tools.quant.lut3d`, as littleCMS does on its own tables), in float32. ``GRID - 1 =
85`` divides 255, so every node is an exact 8-bit input whose value is littleCMS's (rounded to 8
bits: 0.5/255, at most about 0.2 L units).
Measured against ImageCms on 8-bit data of the wide-gamut profile of tests/archive_inputs.py
(smooth image, colours inside sRGB): 99.2% of samples within one code value, p99 1, max 9 codes,
the large errors only in table cells that straddle the sRGB gamut boundary (littleCMS's clamped
nodes bend the interpolation there); L within 0.2 units at p99.

A gray (``GRAY``) profile is sampled as a 256-entry curve instead, through littleCMS's
unoptimised pipeline (its optimised 8-bit one is off by up to 13 codes in a linear curve's
shadows). A profile of another colour
space (a CMYK JPEG's: OpenCV has already turned its samples into RGB, without the profile) is
not applied, and the image is read as before. Tables are cached per profile bytes (a few per
process), and a profile whose table is the identity to within one 8-bit step (an embedded sRGB
profile) costs nothing per pixel.

References
----------
.. [1] ICC.1:2010 (profile version 4.3) and ICC.1:2001-04 (version 2), International Color
   Consortium.
.. [2] M. Maria, littleCMS 2 API and tutorial, https://www.littlecms.com/.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import RecolorError
from .iccshaper import shaper

GRID = 86
"""Nodes per axis of the 3-D tables; 85 steps of 3/255, so each node is an exact 8-bit value
(52 nodes, steps of 5/255, left twice as many samples more than one code value off)."""
_IDENTITY_TOL = 1.01 / 255  # a table this close to its grid is an sRGB profile's: skip it
_INTENT = 1  # ImageCms.Intent.RELATIVE_COLORIMETRIC: media white to media white, no gamut squeeze


@dataclass(frozen=True)
class Transform:
    """A profile transform, ready for 8-bit (exact) or 16-bit and float (sampled) samples.

    Attributes
    ----------
    table : ndarray or None
        float32 (GRID, GRID, GRID, 3) for RGB profiles, (256,) for gray ones (gray in, gray
        out); None when the transform is the identity (nothing to do).
    gray : bool
        The profile describes gray images.
    rgb : bool
        The profile describes RGB data, so an RGB output may embed it (``--keep-profile``).
    exact : object or None
        littleCMS's own transform (``ImageCms.ImageCmsTransform``, RGB to RGB), used on 8-bit
        samples.
    source : (bytes, bool) or None
        The profile and direction (to sRGB or not) whose matrix/TRC formulas may serve 16-bit
        and float samples (:attr:`formula`); None: the table serves them.
    """

    table: np.ndarray | None
    gray: bool = False
    rgb: bool = True
    exact: object = None
    source: tuple[bytes, bool] | None = None

    @property
    def formula(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The matrix/TRC transform in float (:func:`recolor_tools.iccshaper.shaper`), used on
        16-bit and float samples in place of ``table``; None for a profile with lookup tables
        or one the formulas misread. Built and checked on first use (about 0.09 s, which a
        tagged 8-bit JPEG never needs), then cached per profile."""
        return None if self.source is None else _formula(*self.source)

    def apply(self, rgb: np.ndarray, depth: int = 16) -> np.ndarray:
        """Apply to float RGB in [0, 1], shape (H, W, 3); returns float32 in [0, 1].

        ``depth=8`` rounds the samples to 8 bits and runs littleCMS itself (the samples came
        from an 8-bit file, so nothing is lost); otherwise the profile's formulas are evaluated,
        or, for a profile with lookup tables, the sampled table is interpolated.
        """
        if self.table is None:
            return np.asarray(rgb, np.float32)
        if depth != 8 and self.formula is not None:
            return self.formula(rgb)
        if self.gray:
            x = np.linspace(0.0, 1.0, 256, dtype=np.float32)
            return np.interp(rgb, x, self.table).astype(np.float32)
        if depth == 8 and self.exact is not None:
            from PIL import Image

            from .color import to_uint8

            out = np.asarray(self.exact.apply(Image.fromarray(to_uint8(rgb))))
            return np.multiply(out, np.float32(1 / 255), dtype=np.float32)
        return apply_lut(rgb, self.table)


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """The bytes of littleCMS's built-in sRGB profile, embedded in every sRGB output.

    littleCMS stamps the creation time into the header (bytes 24-35); it is fixed here so that
    the same input gives the same output bytes. The profile ID (bytes 84-99) is left zero
    ("not computed"), as littleCMS writes it.
    """
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return icc[:24] + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + icc[36:]


def _open(icc: bytes):
    from PIL import ImageCms

    try:
        return ImageCms.ImageCmsProfile(_bytes_io(icc))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        raise RecolorError(f"unreadable embedded ICC profile ({e})") from None


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)


def to_srgb(icc: bytes) -> Transform:
    """The transform from an embedded profile to sRGB (cached per profile bytes).

    Raises
    ------
    RecolorError
        A profile littleCMS cannot read or use.
    """
    return _transform(bytes(icc), True)


def from_srgb(icc: bytes) -> Transform:
    """The transform from sRGB back to ``icc``'s space; colours outside its gamut are clamped."""
    return _transform(bytes(icc), False)


@functools.lru_cache(maxsize=8)
def _transform(icc: bytes, to_srgb: bool) -> Transform:
    from PIL import Image, ImageCms

    prof = _open(icc)
    space = (prof.profile.xcolor_space or "").strip()
    if space not in ("RGB", "GRAY"):
        return Transform(None, rgb=False)
    gray = space == "GRAY"
    if gray and not to_srgb:
        return Transform(None, gray=True, rgb=False)  # an RGB output cannot embed it
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    src, dst = (prof, srgb) if to_srgb else (srgb, prof)
    try:
        if gray:  # gray in, the G of sRGB's neutral out (R = G = B)
            # not optimised: littleCMS's optimised 8-bit gray pipeline misses a linear (gamma
            # 1.0) curve's shadows by up to 13 codes (input 2: 12 for 21.7); 256 samples cost
            # nothing unoptimised, and are then its exact values, rounded
            no_optimise = 0x0100  # cmsFLAGS_NOOPTIMIZE (ImageCms.Flags only from Pillow 10.3)
            xf = ImageCms.buildTransform(src, dst, "L", "RGB", _INTENT, flags=no_optimise)
            ramp = np.arange(256, dtype=np.uint8)
            out = np.asarray(xf.apply(Image.fromarray(ramp[None, :])), np.uint8)[0, :, 1]
            table = out.astype(np.float32) / 255
            identity = np.abs(table - ramp / 255).max() <= _IDENTITY_TOL
            source = (icc, to_srgb)
            return Transform(None if identity else table, gray=True, rgb=False, source=source)
        xf = ImageCms.buildTransform(src, dst, "RGB", "RGB", _INTENT)
        grid = _grid()
        flat = Image.fromarray(np.ascontiguousarray(grid.reshape(GRID, GRID * GRID, 3)))
        out = np.asarray(xf.apply(flat), np.uint8).reshape(GRID, GRID, GRID, 3)
    except ImageCms.PyCMSError as e:
        raise RecolorError(f"cannot use the embedded ICC profile ({e})") from None
    table = out.astype(np.float32) / 255
    if np.abs(table - grid / np.float32(255)).max() <= _IDENTITY_TOL:
        return Transform(None)
    return Transform(np.ascontiguousarray(table), exact=xf, source=(icc, to_srgb))


def _grid() -> np.ndarray:
    """The (GRID, GRID, GRID, 3) uint8 RGB nodes the table samples littleCMS at."""
    nodes = np.rint(np.linspace(0, 255, GRID)).astype(np.uint8)
    return np.stack(np.meshgrid(nodes, nodes, nodes, indexing="ij"), axis=-1)


_FORMULA_TOL = 2.5 / 255
"""How far the float formulas may be from littleCMS's 8-bit outputs at the table's nodes (they
differ by rounding: at most 2 codes measured, most of them equal)."""


@functools.lru_cache(maxsize=8)
def _formula(icc: bytes, to_srgb: bool) -> Callable[[np.ndarray], np.ndarray] | None:
    """The formulas of ``icc`` (:func:`recolor_tools.iccshaper.shaper`) if they give
    littleCMS's values (the table of :func:`_transform`, at its nodes) to within
    :data:`_FORMULA_TOL`, else None (the sampled table is used): a profile that the formulas
    misread (odd curve parameters, a connection space they do not handle) cannot give other
    colours than littleCMS's, nor NaN."""
    formula = shaper(icc, to_srgb, srgb_profile())
    if formula is None:
        return None
    table = _transform(icc, to_srgb).table
    # RGB: the GRID^3 nodes; gray: the 256 levels
    nodes = (_grid() if table.ndim > 1 else np.arange(256)) / np.float32(255)
    with np.errstate(all="ignore"):
        got = formula(nodes)
    return formula if np.all(np.abs(got - table) <= _FORMULA_TOL) else None


def apply_lut(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Interpolate a regular 3-D table (tetrahedral, :func:`recolor_tools.quant.lut3d.tetrahedral`).

    Parameters
    ----------
    rgb : (..., 3) float array
        Inputs in [0, 1] (values outside are clamped to the table's edge).
    table : (N, N, N, 3) float32
        ``table[i, j, k]`` is the output at input ``(i, j, k) / (N - 1)``.

    Returns
    -------
    (..., 3) float32
    """
    from .quant.lut3d import tetrahedral

    shape = np.shape(rgb)
    src = np.ascontiguousarray(rgb, np.float32).reshape(-1, 3)
    out = np.empty_like(src)
    tetrahedral(src, np.ascontiguousarray(table, np.float32), out)
    return out.reshape(shape)


def matrix_profile(
    primaries: np.ndarray, gamma: float, description: str = "RGB", table: int = 0
) -> bytes:
    """A minimal ICC v2 display profile for an RGB space given by primaries and one gamma.

    The colorants are the primaries' XYZ scaled so that RGB = (1, 1, 1) is the D50 white (no
    chromatic adaptation: the primaries are taken as already D50-relative), the tone curves one
    ``curv`` gamma each (stored as u8Fixed8, so 2.2 becomes 563/256). For tests, benchmarks
    and tagging images with a known space; littleCMS reads it like any matrix/TRC profile.

    Parameters
    ----------
    primaries : three (x, y) chromaticities
        Red, green and blue.
    gamma : float
        Exponent of the tone curves (linear = encoded ** gamma).
    description : str
        The profile's ``desc`` (ASCII).
    table : int, default 0
        Store each curve as a table of this many uint16 values (as measured profiles do)
        instead of one gamma; 0: the gamma.
    """
    P = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    M = P * np.linalg.solve(P, np.array(_D50))
    tags = [(c + b"XYZ", b"XYZ \0\0\0\0" + _s15(M[:, i])) for i, c in enumerate(_RGB)]
    tags += [(c + b"TRC", _curv(gamma, table)) for c in _RGB]
    return _icc_v2(b"RGB ", description, tags)


def gray_profile(gamma: float, description: str = "Gray") -> bytes:
    """A minimal ICC v2 gray display profile: D50 white and one gamma curve (``kTRC``)."""
    return _icc_v2(b"GRAY", description, [(b"kTRC", _curv(gamma))])


_D50 = (0.9642, 1.0, 0.8249)  # the ICC profile connection space's white, XYZ
_RGB = (b"r", b"g", b"b")


def _s15(values) -> bytes:
    """s15Fixed16Number, big-endian (ICC.1 section 4.6)."""
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _curv(gamma: float, table: int = 0) -> bytes:
    """A ``curv`` tag: one entry, a pure gamma (u8Fixed8Number), or ``table`` uint16 values."""
    if not table:
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    values = np.rint(np.linspace(0.0, 1.0, table) ** gamma * 65535).astype(">u2")
    return b"curv\0\0\0\0" + struct.pack(">I", table) + values.tobytes()


def _icc_v2(space: bytes, description: str, tags: list[tuple[bytes, bytes]]) -> bytes:
    """Header, tag table and tag data of a version-2 display profile (PCS XYZ, D50 white)."""
    text = description.encode("ascii") + b"\0"
    tags = [  # textDescriptionType: ASCII, then empty Unicode and ScriptCode parts (78 bytes)
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 78),
        (b"cprt", b"text\0\0\0\0No copyright\0"),
        (b"wtpt", b"XYZ \0\0\0\0" + _s15(_D50)),
        *tags,
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    head = struct.pack(
        ">I4sI4s4s4s", offset + len(data), b"none", 0x02100000, b"mntr", space, b"XYZ "
    )
    head += struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 28 + _s15(_D50)
    return head + b"\0" * 48 + struct.pack(">I", len(tags)) + table + data
