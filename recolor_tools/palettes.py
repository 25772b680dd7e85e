"""Palettes: the colour scheme an image should follow, as weighted a/b colours (no torch).

A palette is a colour list with optional weights (``'#e63946,#f1faee:0.5,#1d3557'``) or every
pixel of a reference image, each weighted by its opacity; either way it becomes a
:class:`~recolor_tools.hints.Hints` holding a/b colours (CIELAB chroma, about [-128, 127]) and
weights that sum to 1. :mod:`recolor_tools.guide` turns it into a change of the model's prior.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .color import rgb_to_lab
from .errors import RecolorError
from .hints import Hints, parse_colors, parse_number, shown, sized_tuples
from .imageio import read_rgb, resize_to

PALETTE_IMAGE_SIDE = 64
"""A palette image is shrunk to this shorter side first (and its longer side to at most 16
times that; never enlarged): its colour histogram barely changes and the soft encoding then
costs a few thousand pixels, not millions. Enlarged, a 1 x 1000 image became 64 x 64,000
pixels and took 24 GB."""
_W_MIN, _W_MAX = 1e-30, 1e30
"""Range of a palette weight (float32, and summed over a few thousand colours)."""


def palette_from_list(text: str) -> Hints:
    """``'#e63946,#f1faee:0.5,#1d3557'`` (optional ``:weight``, default 1). Raises ValueError."""
    items = [t.partition(":") for t in filter(None, (t.strip() for t in text.split(",")))]
    if not items:
        raise ValueError(f"palette {text!r} holds no colour")
    return palette([(color, weight if sep else 1.0) for color, sep, weight in items])


def palette(colours: Sequence[tuple[str, float | str]]) -> Hints:
    """A palette of ``(colour, weight)`` pairs: hex colours (:func:`parse_color`), weights from
    :data:`_W_MIN` to :data:`_W_MAX` (numbers, or their text), held divided by their sum. Raises
    ValueError.

    Every palette's weights sum to 1 (:func:`palette_from_image`'s too), so palettes from
    several sources (``--palette`` and a hint file's ``"palette"``) count alike when added: an
    image's 4,000 pixels would otherwise outweigh a listed colour 4,000 to 1.
    """
    colours, w = sized_tuples(colours, "palette", "colour, weight"), []
    for _, weight in colours:
        try:
            wt = parse_number(weight.strip()) if isinstance(weight, str) else float(weight)
        except (TypeError, ValueError, OverflowError):  # a 400-digit JSON integer overflows
            wt = np.nan
        wt = np.nan if isinstance(weight, bool) else wt
        if not _W_MIN <= wt <= _W_MAX:  # held as float32: 1e-300 would be 0, 1e39 infinite
            raise ValueError(
                f"palette weight {shown(weight)} is not a number from {_W_MIN:g} to {_W_MAX:g}"
            )
        w.append(wt)
    ab = parse_colors([color for color, _ in colours])
    w = np.array(w, np.float64)  # summed in float64: weights reach 1e30
    # a share below float32's range (1e-30 beside 1e30) is kept as its least positive value
    share = np.maximum(w / w.sum(), np.finfo(np.float32).tiny)
    return Hints(palette_ab=ab, palette_w=share.astype(np.float32))


def palette_from_image(path: str | Path) -> Hints:
    """The colour distribution of an image (all its pixels, shrunk first; see
    :data:`PALETTE_IMAGE_SIDE`), each pixel weighted by its opacity (the weights sum to 1, as
    :func:`palette`'s do): the transparent part of a
    logo or a cut-out is no colour of the scheme (composited on white, it was). Raises
    RecolorError if it cannot be read or is transparent all over."""
    img = read_rgb(path, keep_alpha=True)
    if img.shape[2] == 4:  # premultiplied: shrinking lends transparent pixels no colour
        img[:, :, :3] *= img[:, :, 3:]
    h, w = img.shape[:2]
    scale = min(1.0, PALETTE_IMAGE_SIDE / min(h, w), 16 * PALETTE_IMAGE_SIDE / max(h, w))
    img = resize_to(img, max(1, round(h * scale)), max(1, round(w * scale)))
    if img.shape[2] == 3:  # opaque: weight 1 each (added once shrunk, not to the full image)
        img = np.concatenate([img, np.ones_like(img[:, :, :1])], 2)
    w = img[:, :, 3].reshape(-1)
    if not w.any():
        raise RecolorError("the palette image is transparent all over", path)
    # un-premultiplied where there is any alpha (a floor of 1e-6 darkened a float layer's
    # faint pixels: alpha 1e-7 gave a tenth of their colour)
    a = img[:, :, 3:]
    rgb = np.clip(np.divide(img[:, :, :3], a, out=np.zeros_like(img[:, :, :3]), where=a > 0), 0, 1)
    ab = rgb_to_lab(rgb)[:, :, 1:].reshape(-1, 2)
    keep = w > 0
    return Hints(
        palette_ab=ab[keep], palette_w=(w[keep] / w.sum(dtype=np.float64)).astype(np.float32)
    )


def parse_palette(spec: str | os.PathLike) -> Hints:
    """``--palette``: an image file if one exists at ``spec`` (``-``: an image on stdin), else
    a list of colours (``#`` optional, as in ``--hint``: ``ff0000,00ff00:0.5``); text with no
    ``#`` that is no colour list is taken for a missing file.

    Raises
    ------
    RecolorError
        A palette image that is missing or cannot be read (an input's problem, exit 1).
    ValueError
        Text that is no colour list (the option's, as a bad ``--hint`` colour: a usage error).
    """
    spec = os.fspath(spec)  # a Path is an image's (it had no .strip())
    if not spec.strip():  # Path("") is the current directory
        raise ValueError("--palette is empty (it takes an image or #rrggbb colours)")
    if os.path.isdir(spec):  # read as one, it was "no input was found in it"
        raise RecolorError("is a directory (--palette takes an image or #rrggbb colours)", spec)
    if spec == "-" or os.path.exists(spec):  # (a long list is no file name: False)
        return palette_from_image(spec)
    try:  # colours, the '#' optional as in --hint
        return palette_from_list(spec)
    except ValueError as e:
        if "#" not in spec:  # no colour written as one: meant as a file
            raise RecolorError("no such file (--palette takes an image or #rrggbb colours)",
                               spec) from None  # fmt: skip
        raise ValueError(f"--palette {spec!r} is no image file and no colour list ({e})") from None
