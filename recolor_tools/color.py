"""sRGB <-> CIELAB conversion, as OpenCV defines it for float input, computed exactly.

The conversions take and return float32 arrays of shape (H, W, 3) with channels last and
RGB order (not OpenCV's BGR); :func:`to_float`, :func:`to_uint8`, :func:`to_uint16` and
:func:`lab_to_rgb_as` move between float samples in [0, 1] and 8- or 16-bit ones.

Notes
-----
OpenCV's float conversion (``cv2.COLOR_RGB2Lab``) uses the sRGB transfer curve, the D65 white
point and the CIE 1976 formulas::

    L = 116 f(Y/Yn) - 16                 L in [0, 100]
    a = 500 (f(X/Xn) - f(Y/Yn))          a in about [-86, 98] for sRGB colours
    b = 200 (f(Y/Yn) - f(Z/Zn))          b in about [-108, 95] for sRGB colours

with f(t) = t^(1/3) above (6/29)^3 and a linear segment below. The a/b range of any Lab colour is
about [-128, 127]; recolor scales a/b by 1/128 where a network needs unit range.

The constants are OpenCV's (its sRGB -> XYZ matrix, D65 white ``(0.950456, 1, 1.088754)``,
0.008856, 7.787), but the formulas are evaluated as written, in float32 and in strips of rows
(:data:`STRIP_PIXELS`). OpenCV's float conversion interpolates the sRGB curve from a table (up
to 0.2 L units and under 1 a/b unit off the formula), which brought 16-bit images back from Lab
up to 150 of 65,535 off (mean 54) and 8-bit ones one step off in a few pixels in 10,000; here a
16-bit round trip is within 1 of 65,535 and an 8-bit one exact. L = 116 f(Y/Yn) - 16 is used
below the threshold too, where OpenCV writes 903.3 Y/Yn: the same to 1e-5 (116 x 7.787 =
903.29). Time per megapixel, one core: about 40 ms each way, against OpenCV's 17 ms to Lab and
5 ms back (a float32 power per sample, not a table), on the host these were first measured on;
on 2-core AMD EPYC hosts (2026-12-07, median of 7 on 1000 x 1000 random samples) 39 ms to Lab
(23 ms from 8-bit samples, :func:`samples_to_lab`) and 53 ms back with AVX-512, 130 (90) and
97 ms without, against OpenCV's 5 and 4 ms (its own threads).

References
----------
.. [1] CIE 15:2004, Colorimetry, 3rd edition.
.. [2] OpenCV, "Color conversions", cv::cvtColor documentation (RGB <-> CIE L*a*b*).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import check_count


def check_image(
    arr: npt.ArrayLike, what: str = "image", channels: int = 3, dtype: npt.DTypeLike = None
) -> np.ndarray:
    """``arr`` as an ndarray, checked to be one (H, W, ``channels``) image: the one validator
    of image arrays.

    Parameters
    ----------
    arr : array_like
    what : str
        The argument's name, for the message.
    channels : int
        Channels expected last (3 for RGB and Lab, 2 for a/b).
    dtype : numpy dtype, optional
        The dtype expected, if any.

    Raises
    ------
    ValueError
        Naming the shape and dtype it got, e.g. ``rgb must be an (H, W, 3) array, got float32
        (4, 4)``.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != channels or (dtype is not None and arr.dtype != dtype):
        kind = f"(H, W, {channels})" + ("" if dtype is None else f" {np.dtype(dtype)}")
        raise ValueError(f"{what} must be an {kind} array, got {arr.dtype} {arr.shape}")
    return arr


_SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
"""OpenCV's sRGB (linear) -> XYZ matrix; its row sums are the D65 white point."""
_TO_XYZN = (_SRGB_TO_XYZ / _SRGB_TO_XYZ.sum(1, keepdims=True)).T.astype(np.float32)
"""Linear RGB (row vectors) -> (X/Xn, Y/Yn, Z/Zn)."""
_FROM_XYZN = np.linalg.inv(_SRGB_TO_XYZ / _SRGB_TO_XYZ.sum(1, keepdims=True)).T.astype(np.float32)
_T, _K = np.float32(0.008856), np.float32(7.787)
"""(6/29)^3 and the slope of f's linear segment, as OpenCV rounds them."""
_F0 = np.float32(16 / 116)


def _srgb_curve(c: np.ndarray) -> np.ndarray:
    """Linear light of sRGB values c in [0, 1]: c / 12.92 up to 0.04045, else ((c + 0.055) /
    1.055)^2.4."""
    lin = ((np.maximum(c, 0) + np.float32(0.055)) * np.float32(1 / 1.055)) ** np.float32(2.4)
    np.copyto(lin, c * np.float32(1 / 12.92), where=c <= 0.04045)
    return lin


def _srgb_encode(lin: np.ndarray) -> np.ndarray:
    """sRGB values of linear light (clipped to [0, 1]): 12.92 lin up to 0.0031308, else 1.055
    lin^(1/2.4) - 0.055."""
    lin = np.clip(lin, 0.0, 1.0)
    c = np.float32(1.055) * lin ** np.float32(1 / 2.4) - np.float32(0.055)
    np.copyto(c, lin * np.float32(12.92), where=lin <= 0.0031308)
    return np.clip(c, 0.0, 1.0, out=c)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB in [0, 1] to CIELAB (D65): the module's formulas, with the sRGB curve
    ``lin = c / 12.92`` for c <= 0.04045, else ``((c + 0.055) / 1.055)^2.4``.

    Parameters
    ----------
    rgb : (H, W, 3) array_like, float in [0, 1]
        sRGB values, channels in R, G, B order. Values outside [0, 1] (colours outside sRGB,
        from a wider profile's conversion) follow the same formulas and are not clipped, so
        0-255 floats give L up to 9,342: scale them first (:func:`to_float`).

    Returns
    -------
    lab : (H, W, 3) float32
        L in [0, 100], a and b in about [-128, 127] for ``rgb`` in [0, 1].

    Raises
    ------
    ValueError
        Not an (H, W, 3) float array, or NaN or infinity in it.
    """
    rgb = check_image(rgb, "rgb")
    if not np.issubdtype(rgb.dtype, np.floating):  # 255 would be L = 9,342
        raise ValueError(f"rgb must be float in [0, 1] (to_float scales integers), got {rgb.dtype}")
    out = np.empty(rgb.shape, np.float32)
    for rows in row_strips(*rgb.shape[:2]):  # temporaries of a strip, not of a 24 MP scan
        strip = np.asarray(rgb[rows], np.float32)
        if not np.isfinite(strip).all():  # NaN in, NaN out: a record would refuse it later
            raise ValueError("rgb holds NaN or infinity (no colour)")
        out[rows] = _lab_of_linear(_srgb_curve(strip))
    return out


def _f(t: np.ndarray) -> np.ndarray:
    """CIE f: t^(1/3) above (6/29)^3, else 7.787 t + 16/116."""
    f = np.cbrt(t)
    np.copyto(f, _K * t + _F0, where=t <= _T)
    return f


def _lab_of_linear(lin: np.ndarray) -> np.ndarray:
    # L = 116 f(Y) - 16 also below the threshold: 116 (7.787 t + 16/116) - 16 is OpenCV's
    # 903.3 t to 1e-5 (116 x 7.787 = 903.29)
    f = _f(lin @ _TO_XYZN)
    lab = np.empty(lin.shape, np.float32)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


_LINEAR8 = _srgb_curve(np.arange(256, dtype=np.float32) * np.float32(1 / 255))
"""The sRGB curve at each 8-bit sample v / 255: what the power per sample gives, looked up."""


def samples_to_lab(rgb: np.ndarray) -> np.ndarray:
    """:func:`rgb_to_lab` of an image as read: ``rgb_to_lab(to_float(rgb))`` to the bit for
    uint8 / uint16 samples (v / 255, v / 65535), ``rgb_to_lab(rgb)`` for floats. uint8
    samples, most images, take the sRGB curve from :data:`_LINEAR8`, with no float copy: 0.6
    of the time (a fifth of to-lab's went to the power per sample)."""
    rgb = check_image(rgb, "rgb")
    if rgb.dtype != np.uint8:
        return rgb_to_lab(to_float(rgb) if rgb.dtype.kind == "u" else rgb)
    out = np.empty(rgb.shape, np.float32)
    for rows in row_strips(*rgb.shape[:2]):
        out[rows] = _lab_of_linear(_LINEAR8.take(rgb[rows]))
    return out


def rgb_to_l(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L alone, (H, W) float32: ``rgb_to_lab(to_float(rgb))[:, :, 0]`` to the bit, for
    predict's full-resolution L. ``rgb``: (H, W, 3) float in [0, 1], or uint8 / uint16 samples
    (v / 255, v / 65535); one strip (no strips of its own). uint8 samples, most inputs, take
    the sRGB curve from :data:`_LINEAR8` and f of Y alone: a quarter of the time."""
    rgb = check_image(rgb, "rgb")
    if rgb.dtype != np.uint8:
        return samples_to_lab(rgb)[:, :, 0]
    # the whole product, as _lab_of_linear takes it: its Y column alone rounds otherwise
    return 116 * _f((_LINEAR8.take(rgb) @ _TO_XYZN)[..., 1]) - 16


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Convert CIELAB (D65) to sRGB, clamping colours outside the sRGB gamut (the inverse of
    :func:`rgb_to_lab`; the sRGB curve ``c = 12.92 lin`` for lin <= 0.0031308, else
    ``1.055 lin^(1/2.4) - 0.055``).

    Parameters
    ----------
    lab : (H, W, 3) array_like, float (or integer: the values as they are)
        L in [0, 100], a and b in [-128, 127] (:data:`LAB_MIN`, :data:`LAB_MAX`); values outside
        are clipped into these ranges first. No sRGB colour lies outside them (sRGB spans L
        [0, 100], a about [-86, 98], b about [-108, 95]), so this changes only colours that are
        clamped anyway, and it makes every finite value a defined colour: L = 1e30 overflowed
        f^3 and came out as NaN, cast to arbitrary pixels. NaN has no colour (records refuse it:
        :func:`recolor_tools.records.check_finite`).

    Returns
    -------
    rgb : (H, W, 3) float32 in [0, 1]
        Out-of-gamut colours are clipped per channel to [0, 1] (never wrapped).

    Raises
    ------
    ValueError
        Not an (H, W, 3) array of real numbers, or NaN in it.
    """
    lab = check_image(lab, "lab")
    if lab.dtype.kind not in "fiu":  # complex lost its imaginary part with a warning
        raise ValueError(f"lab must be real L, a, b values, got {lab.dtype}")
    out = np.empty(lab.shape, np.float32)
    for rows in row_strips(*lab.shape[:2]):
        # np.clip makes the strip's own copy: the caller's array is never changed
        strip = np.clip(np.asarray(lab[rows], np.float32), LAB_MIN, LAB_MAX)
        if np.isnan(strip).any():  # (infinities are clipped: a colour; NaN came out NaN)
            raise ValueError("lab holds NaN (no colour)")
        out[rows] = _lab_to_rgb(strip)
    return out


LAB_MIN = np.array([0, -128, -128], np.float32)
"""Least L, a, b that :func:`lab_to_rgb` converts as they are (smaller values are clipped)."""
LAB_MAX = np.array([100, 127, 127], np.float32)
"""Greatest L, a, b that :func:`lab_to_rgb` converts as they are (larger values are clipped)."""


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    f = np.empty(lab.shape, np.float32)  # f(X/Xn), f(Y/Yn), f(Z/Zn)
    f[..., 1] = (lab[..., 0] + 16) * np.float32(1 / 116)
    f[..., 0] = f[..., 1] + lab[..., 1] * np.float32(1 / 500)
    f[..., 2] = f[..., 1] - lab[..., 2] * np.float32(1 / 200)
    t = f * f * f
    np.copyto(t, (f - _F0) * np.float32(1 / _K), where=f <= _K * _T + _F0)
    return _srgb_encode(t @ _FROM_XYZN)  # clipped: out-of-gamut colours per channel


STRIP_PIXELS = 1 << 20
"""Pixels converted at a time by :func:`rgb_to_lab`, :func:`lab_to_rgb` and :func:`lab_to_rgb_as`
(a few MB of float temporaries)."""


def row_strips(
    H: int, W: int, pixels: int | None = None, max_rows: int | None = None
) -> list[slice]:
    """Slices of rows of an (H, W) image, about ``pixels`` (default :data:`STRIP_PIXELS`) pixels
    each, at least one row and at most ``max_rows``, covering all H rows (the last slice stops at
    H): the unit in which whole-image work is done without whole-image temporaries."""
    check_count("pixels", pixels, optional=True)  # 0: range()'s own error
    check_count("max_rows", max_rows, optional=True)
    step = max(1, (STRIP_PIXELS if pixels is None else pixels) // max(W, 1))
    step = step if max_rows is None else min(step, max_rows)
    return [slice(r, min(r + step, H)) for r in range(0, H, step)]


def lab_to_rgb_as(lab: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """:func:`lab_to_rgb` rounded to ``dtype`` (uint8: :func:`to_uint8`, uint16:
    :func:`to_uint16`; a float type as it is; None or another type: ValueError), converted in
    strips of rows: a 6000x4000 image needs no float copy of the whole (275 MB per copy), and
    every pixel is what the whole-image functions give."""
    lab = check_image(lab, "lab")
    kind = rgb_dtype(dtype)
    H, W = lab.shape[:2]
    out = np.empty((H, W, 3), kind)
    rounded = {np.dtype(np.uint8): to_uint8, np.dtype(np.uint16): to_uint16}.get(kind)
    for rows in row_strips(H, W):
        rgb = lab_to_rgb(lab[rows])
        out[rows] = rgb if rounded is None else rounded(rgb)
    return out


def rgb_dtype(dtype: object) -> np.dtype:
    """``dtype`` as the numpy type of RGB samples: uint8, uint16 or a float type, else a
    ValueError naming it (None too: ``np.dtype(None)`` is float64, a "foo" numpy's TypeError)."""
    try:
        kind = None if dtype is None else np.dtype(dtype)
    except TypeError:
        kind = None
    if kind is None or kind not in (np.uint8, np.uint16) and kind.kind != "f":
        raise ValueError(f"dtype must be uint8, uint16 or a float type, got {dtype!r}")
    return kind


def to_float(img: np.ndarray) -> np.ndarray:
    """Integer samples as float32 in [0, 1]: uint8 / 255, uint16 / 65535; floats clipped to
    [0, 1], NaN left NaN (as :func:`numpy.clip` leaves it: the image readers refuse NaN
    samples, and :func:`rgb_to_lab` and :func:`to_uint8` refuse NaN). The inverse of
    :func:`to_uint8` and :func:`to_uint16` up to rounding.

    Raises
    ------
    ValueError
        Any other dtype: an int32 sample has no full scale to divide by (clipped as a float,
        every level above 0 would be white).
    """
    img = np.asarray(img)  # (a list had no dtype: AttributeError)
    if img.dtype.kind == "u" and img.dtype.itemsize in (1, 2):  # also big-endian (">u2")
        full = 255 if img.dtype.itemsize == 1 else 65535
        return img.astype(np.float32) * np.float32(1 / full)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"samples must be uint8, uint16 or a float type, got {img.dtype}")
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Round float RGB in [0, 1] to uint8 in [0, 255] (values outside are clipped; ValueError
    for samples that are not floats, or NaN)."""
    return _rounded(rgb, 255, np.uint8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    """Round float RGB in [0, 1] to uint16 in [0, 65535] (values outside are clipped; ValueError
    for samples that are not floats, or NaN)."""
    return _rounded(rgb, 65535, np.uint16)


def _rounded(rgb: np.ndarray, peak: int, dtype: type) -> np.ndarray:
    if not np.issubdtype(np.asarray(rgb).dtype, np.floating):  # uint8 128 became 255
        raise ValueError(f"rgb must be float in [0, 1], got {np.asarray(rgb).dtype}")
    # One float32 temporary, rounded and clipped in place (a 6000x4000 image: 275 MB, not 1 GB);
    # an array also for a number (np.multiply's scalar result could not be rounded in place)
    x = np.array(rgb, dtype=np.float32)
    x *= np.float32(peak)
    np.rint(x, out=x)
    np.clip(x, 0, peak, out=x)  # (infinities clipped; NaN stays, and its cast is "invalid")
    with np.errstate(invalid="raise"):  # NaN was cast to 0 (black) with numpy's warning
        try:
            return x.astype(dtype)
        except FloatingPointError:
            raise ValueError("rgb holds NaN") from None
