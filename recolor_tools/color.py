"""sRGB <-> CIELAB conversion, as OpenCV defines it for float input.

All functions take and return float32 arrays of shape (..., H, W, 3) with channels last and RGB
order (not OpenCV's BGR).

Notes
-----
OpenCV's float conversion (``cv2.COLOR_RGB2Lab``) uses the sRGB transfer curve, the D65 white
point and the CIE 1976 formulas::

    L = 116 f(Y/Yn) - 16                 L in [0, 100]
    a = 500 (f(X/Xn) - f(Y/Yn))          a in about [-86, 98] for sRGB colours
    b = 200 (f(Y/Yn) - f(Z/Zn))          b in about [-108, 95] for sRGB colours

with f(t) = t^(1/3) above (6/29)^3 and a linear segment below. The a/b range of any Lab colour is
about [-128, 127]; recolor scales a/b by 1/128 where a network needs unit range.

References
----------
.. [1] CIE 15:2004, Colorimetry, 3rd edition.
.. [2] OpenCV, "Color conversions", cv::cvtColor documentation (RGB <-> CIE L*a*b*).
"""

from __future__ import annotations

import cv2
import numpy as np


def _check_rgb(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (H, W, 3), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB in [0, 1] to CIELAB (D65).

    Parameters
    ----------
    rgb : (H, W, 3) array_like, float in [0, 1]
        sRGB values, channels in R, G, B order.

    Returns
    -------
    lab : (H, W, 3) float32
        L in [0, 100], a and b in about [-128, 127].
    """
    return cv2.cvtColor(_check_rgb(rgb, "rgb"), cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Convert CIELAB (D65) to sRGB, clamping colours outside the sRGB gamut.

    Parameters
    ----------
    lab : (H, W, 3) array_like, float
        L in [0, 100], a and b in about [-128, 127].

    Returns
    -------
    rgb : (H, W, 3) float32 in [0, 1]
        Out-of-gamut colours are clipped per channel to [0, 1] (never wrapped).
    """
    rgb = cv2.cvtColor(_check_rgb(lab, "lab"), cv2.COLOR_Lab2RGB)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Round float RGB in [0, 1] to uint8 in [0, 255] (values outside are clipped)."""
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    """Round float RGB in [0, 1] to uint16 in [0, 65535] (values outside are clipped)."""
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 65535.0), 0, 65535).astype(np.uint16)
