"""The hint inputs of a model that takes hints: simulated from the truth in training, rasterised
from the user's hints in prediction. Both give what :func:`recolor_tools.models.network_input`
reads: ``hint_ab`` (2, H, W) a/b, ``hint_mask`` (1, H, W) in {0, 1}, ``palette`` (Q,) class
histogram (all zeros: no palette).

Training (Zhang et al. 2017, Sec. 3.3, with a palette added): per crop of side S,

- the number of points is 0 with probability :data:`P_NO_POINTS` (so that the automatic
  prediction keeps being trained), else geometric with p = :data:`P_POINT` (mean 8; Zhang
  et al.'s p = 1/8); overall mean 6;
- each point lies, with probability 1/2, around the centre (Gaussian, mean S/2, standard
  deviation S/4, clipped to the crop), else anywhere (uniform);
- it covers a square of side 1-9 px (uniform; clipped inside the crop) holding the mean a/b of
  the truth there;
- the palette is the truth's own soft-encoded class histogram at the output resolution (the
  cls targets, summed), given with probability :data:`P_PALETTE` and all zeros otherwise.

The draws come from the item's own generator (:mod:`recolor_tools.data`), so they are fixed by
the run's seed, epoch and item: a resumed run sees the same hints.

References
----------
.. [1] R. Zhang, J.-Y. Zhu, P. Isola, X. Geng, A. S. Lin, T. Yu, A. A. Efros, "Real-Time
   User-Guided Image Colorization with Learned Deep Priors", SIGGRAPH 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .predict import Prepared

P_NO_POINTS = 0.25
"""Share of training crops with no hint point."""
P_POINT = 1 / 8
"""Parameter of the geometric number of points (mean 1 / p = 8) when there are some."""
P_PALETTE = 0.5
"""Share of training crops given their own palette."""
PATCH_SIDES = (1, 9)
"""Smallest and largest side of a simulated hint square, in pixels of the crop."""
STEER_LEARNED = True
"""Whether a hint model's output is also steered by :mod:`recolor_tools.guide`.

Measured on the first 100 validation posters at full size, 10 simulated truth points (6x6
patches), with the shipped cls weights fine-tuned with hints on a CPU (300 steps of 16 crops,
the fine-tune defaults): the learned input alone +0.25 dB PSNR over the same model's automatic
prediction, steered as well +2.14 dB (steering the shipped model: +2.52 dB). So both, until a
longer fine-tune makes the learned input the stronger."""
AFFINITY_FROM_AUTOMATIC = True
"""Whether steering a hint model compares the features of a second pass without the hints
(the image as the automatic model sees it) rather than those of the pass with them.

The hints change the features where they are (``hint4`` adds to the decoder's output at the
hinted cells), so compared there a hint finds fewer cells like it. Posters 201-250 of the
validation set, the shipped cls weights fine-tuned with ``--hints`` on 2 CPU cores (600 steps
of 32 crops, its own affinity layer trained on; weights/README.md, "Guided recolouring"), 2 / 10
truth points: through a pass without hints 21.30 / 24.63 dB, through the hint-fed features
20.92 / 23.95 dB (automatic 19.42). A model trained from scratch with ``--hints --affinity``
learns its affinity layer on hint-fed features: measure both (``weights/evaluate_hints.py
--hint-model-steer``)."""


def simulate_points(ab: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random hint points taken from the truth (see the module docstring).

    Parameters
    ----------
    ab : (S, S, 2) float32
        The crop's true a/b.
    rng : numpy Generator
        The item's generator.

    Returns
    -------
    dict
        ``hint_ab`` (2, S, S) float32 (0 outside hints), ``hint_mask`` (1, S, S) float32.
    """
    H, W = ab.shape[:2]
    hint = np.zeros((2, H, W), np.float32)
    mask = np.zeros((1, H, W), np.float32)
    n = 0 if rng.random() < P_NO_POINTS else int(rng.geometric(P_POINT))
    for _ in range(n):
        side = int(rng.integers(PATCH_SIDES[0], PATCH_SIDES[1] + 1))
        side = min(side, H, W)
        if rng.random() < 0.5:
            cy, cx = rng.normal((H / 2, W / 2), (H / 4, W / 4))
        else:
            cy, cx = rng.uniform((0, 0), (H, W))
        y0 = int(np.clip(int(cy) - (side - 1) // 2, 0, H - side))
        x0 = int(np.clip(int(cx) - (side - 1) // 2, 0, W - side))
        ys, xs = slice(y0, y0 + side), slice(x0, x0 + side)
        hint[:, ys, xs] = ab[ys, xs].reshape(-1, 2).mean(axis=0)[:, None, None]
        mask[:, ys, xs] = 1
    return {"hint_ab": hint, "hint_mask": mask}


def simulate_palette(
    idx: np.ndarray, w: np.ndarray, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """(Q,) float32: the crop's class histogram (soft targets ``idx``, ``w`` of any shape summed
    and normalised to 1) with probability :data:`P_PALETTE`, else zeros."""
    if rng.random() >= P_PALETTE:
        return np.zeros(num_classes, np.float32)
    hist = np.bincount(idx.ravel(), w.ravel().astype(np.float64), num_classes)
    return (hist / hist.sum()).astype(np.float32)


def rasterise(item: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """An item's resolved hint points on its padded working grid.

    Every working pixel that a point's full-resolution square touches is hinted (mask 1, as
    the simulated squares in training), with the mean a/b of the points touching it weighted
    by the pixels at which each shows (:attr:`Hints.showing`: a ``--hint`` over a hint file's
    point replaces it, as in the steering and the output, not mixed with it); the padding is
    never hinted.

    Returns
    -------
    hint_ab : (2, hp, wp) float32
    hint_mask : (1, hp, wp) float32
    """
    hp, wp = item.work.shape
    acc = np.zeros((3, hp, wp), np.float64)  # shown * a, shown * b, shown
    hints = item.hints
    if hints is not None and len(hints.xy):
        (H, W), (h, w) = item.L.shape, item.hw
        sq = hints.squares().astype(np.float64)  # (N, 4) [x0, y0, x1, y1)
        jx0 = np.floor(sq[:, 0] * w / W).astype(np.int64)
        jy0 = np.floor(sq[:, 1] * h / H).astype(np.int64)
        jx1 = np.maximum(jx0 + 1, np.ceil(sq[:, 2] * w / W).astype(np.int64))
        jy1 = np.maximum(jy0 + 1, np.ceil(sq[:, 3] * h / H).astype(np.int64))
        jx1, jy1 = np.minimum(jx1, w), np.minimum(jy1, h)
        shown = hints.showing.astype(np.float64)
        vals = np.concatenate([hints.ab * shown[:, None], shown[:, None]], axis=1).T  # (3, N)
        one = (jx1 - jx0 == 1) & (jy1 - jy0 == 1)  # a painted layer: many one-cell points
        for c in range(3):
            np.add.at(acc[c], (jy0[one], jx0[one]), vals[c, one])
        for i in np.flatnonzero(~one):
            acc[:, jy0[i] : jy1[i], jx0[i] : jx1[i]] += vals[:, i, None, None]
    mask = acc[2:] > 0
    ab = np.where(mask, acc[:2] / np.where(mask, acc[2:], 1), 0)
    return ab.astype(np.float32), mask.astype(np.float32)


def palette_histogram(item: Prepared, classes: torch.Tensor) -> torch.Tensor:
    """(Q,) float32: the soft-encoded class histogram of the item's palette, or zeros."""
    from .guide import histogram_of

    hints = item.hints
    if hints is None or not len(hints.palette_w):
        return torch.zeros(len(classes), dtype=torch.float32, device=classes.device)
    return histogram_of(hints.palette_ab, hints.palette_w, classes).float()


def batch_hints(
    items: Sequence[Prepared], classes: torch.Tensor | None, device: torch.device
) -> dict[str, torch.Tensor]:
    """The hints dict (:func:`recolor_tools.models.network_input`) of items of one shape."""
    maps = [rasterise(it) for it in items]
    out = {
        "hint_ab": torch.from_numpy(np.stack([m[0] for m in maps])).to(device),
        "hint_mask": torch.from_numpy(np.stack([m[1] for m in maps])).to(device),
    }
    if classes is not None and len(classes):
        out["palette"] = torch.stack([palette_histogram(it, classes) for it in items]).to(device)
    return out
