"""The working grid and the full-resolution image: what predict does at each pixel (no torch).

The network sees an image resized so that its shorter side is ``size`` (:func:`working_shape`)
and answers a/b at 1/4 of that grid; the output keeps the input's own lightness L in [0, 100]
at full resolution (:func:`lightness`) and takes the a/b (CIELAB chroma, about [-128, 127])
brought back up bilinearly (:func:`upsample_ab`). Whole-image work runs in strips of rows
(:func:`recolor_tools.color.row_strips`), and integer samples become float a strip at a time,
so a large scan needs no float RGB copy of the whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from .color import check_image, rgb_to_l, row_strips, to_float
from .errors import check_count
from .imageio import resize_to

MAX_ASPECT = 8
"""The working longer side is at most ``MAX_ASPECT * size``: a panorama costs no more than this."""
_REMAP_MAX = 16384  # cv2.remap needs both sides of its maps below 32767 (SHRT_MAX)


def working_shape(H: int, W: int, size: int, max_side: int | None = None) -> tuple[int, int]:
    """The (h, w) the network sees for an (H, W) image.

    The shorter side becomes ``size`` (images are enlarged or shrunk: the model was trained on
    images of one scale, see :func:`recolor_tools.predict.default_size`), the longer side is
    capped at ``max_side`` (default ``MAX_ASPECT * size``), the aspect ratio is kept, and
    neither side is below 8.
    """
    if H < 1 or W < 1:
        raise ValueError(f"image must not be empty, got {W}x{H}")
    check_count("size", size)  # 0 and -8 gave 8 x 8
    check_count("max_side", max_side, optional=True)
    max_side = max_side or MAX_ASPECT * size
    s = min(size / min(H, W), max_side / max(H, W))
    return max(8, round(H * s)), max(8, round(W * s))


def strips(H: int, W: int) -> Iterator[tuple[int, int]]:
    """Row ranges [a, b) of :func:`recolor_tools.color.row_strips`, at most ``_REMAP_MAX`` rows
    (the maps of :func:`upsample_ab`'s ``cv2.remap``)."""
    for rows in row_strips(H, W, max_rows=_REMAP_MAX):
        yield rows.start, rows.stop


def lightness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L of an sRGB image, computed in strips (no full-size Lab or float temporary).

    Parameters
    ----------
    rgb : (H, W, 3) float32 in [0, 1], or uint8 / uint16 samples (scaled by 1/255, 1/65535)

    Returns
    -------
    L : (H, W) float32 in [0, 100]
    """
    rgb = check_image(rgb, "rgb")  # (a list had no .shape)
    H, W = rgb.shape[:2]
    L = np.empty((H, W), np.float32)
    for a, b in strips(H, W):
        L[a:b] = rgb_to_l(rgb[a:b])
    return L


def is_samples(rgb: object) -> bool:
    """Whether ``rgb`` holds uint8 or uint16 samples (either byte order), not floats."""
    return isinstance(rgb, np.ndarray) and rgb.dtype.kind == "u" and rgb.dtype.itemsize in (1, 2)


def working_rgb(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    """``rgb`` resampled to (h, w) as float32 in [0, 1] (:func:`resize_to`, as in training).

    Integer samples are shrunk as 16-bit integers (8-bit ones times 257: v / 255 = 257 v /
    65535), exact to 1/65535, and a gray image's one plane alone: no float copy of the whole
    image (12 bytes a pixel, the most of predict's peak memory on a large scan).
    """
    if not is_samples(rgb):
        return resize_to(np.asarray(rgb, np.float32), h, w)
    if h * w >= rgb.shape[0] * rgb.shape[1]:  # enlarged: a small image
        return resize_to(to_float(rgb), h, w)
    gray = rgb.strides[2] == 0  # (decode_rgb's view of a gray plane)
    plane = rgb[:, :, 0] if gray else rgb
    if plane.dtype.itemsize == 1:
        plane = np.multiply(plane, np.uint16(257), dtype=np.uint16)
    small = to_float(resize_to(plane, h, w))
    return np.repeat(small[:, :, None], 3, axis=2) if gray else small


def upsample_ab(
    ab: np.ndarray, hw: tuple[int, int], stride: int, shape: tuple[int, int], rows: tuple[int, int]
) -> np.ndarray:
    """Bilinear a/b for rows [a, b) of the full-resolution image.

    Output pixel j of the network covers working pixels [stride j, stride (j + 1)), so with
    half-pixel centres (the convention of ``cv2.resize`` and of area-averaged training targets)
    full-resolution pixel y lies at output coordinate ``(y + 0.5) h / (stride H) - 0.5``. Mapping
    through this, rather than cropping and resizing, keeps a working size that is not a multiple
    of ``stride`` exactly aligned. Borders replicate, as in ``cv2.resize``; ``cv2.remap``
    interpolates at 1/32 pixel of the output grid.

    Parameters
    ----------
    ab : (h', w', 2) float32
        Network output, padding included.
    hw : (int, int)
        Working size (h, w) before padding, which spans the whole image.
    stride : int
        Network output stride (4).
    shape : (int, int)
        Full-resolution (H, W).
    rows : (int, int)
        Full-resolution rows [a, b) wanted.

    Returns
    -------
    (b - a, W, 2) float32
    """
    (h, w), (H, W), (a, b) = hw, shape, rows
    ys = ((np.arange(a, b) + 0.5) * (h / (stride * H)) - 0.5).astype(np.float32)
    xs = ((np.arange(W) + 0.5) * (w / (stride * W)) - 0.5).astype(np.float32)
    out = np.empty((b - a, W, 2), np.float32)
    for c0 in range(0, W, _REMAP_MAX):
        c1 = min(c0 + _REMAP_MAX, W)
        mx = np.tile(xs[c0:c1], (b - a, 1))  # (b-a, c1-c0)
        my = np.repeat(ys[:, None], c1 - c0, axis=1)  # (b-a, c1-c0)
        out[:, c0:c1] = cv2.remap(ab, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


# -- the three steps, as plain functions --------------------------------------------------------
