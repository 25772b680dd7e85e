"""Training-free guidance: steer the cls head's class distribution with hints and a palette.

The cls head predicts, per output cell x, a distribution p(c | x) over the Q colour classes.
Guidance adds to its log-distribution, before the annealed mean decodes it
(:func:`recolor_tools.models.decode`):

- a palette, as a change of prior (the model's prior is the training set's class frequency):
  ``log p'(c|x) = log p(c|x) + alpha (log(h(c) + eps) - log(prior(c) + eps))``, with ``h`` the
  soft-encoded class histogram of the palette colours (weighted, summing to 1), ``prior`` the
  checkpoint's class prior, :data:`ALPHA` = 1, :data:`PALETTE_EPS` = 1e-3;
- each point hint i, at output cell x_i with colour q_i (soft-encoded over the classes):
  ``+ beta sim_i(x)^pow (log(q_i(c) + eps) - mean_c log(q_i(c) + eps))``, with ``sim_i(x)`` the
  cosine similarity of the decoder's 1/4-resolution features at x and at x_i, clamped at 0,
  :data:`BETA` = 1, :data:`POWER` = 8, :data:`HINT_EPS` = 1e-4. The hint spreads to what the
  network sees as the same kind of region, and fades across edges.

Measured on the shipped cls model (issue 15's calibration, first 100 of a held-out set of old
posters, full size): the truth's 8-colour palette +3.45 dB PSNR and +7.8 rebalanced AuC; 10
truth points +3.43 dB and +6.1; 2 points +0.98 dB. weights/README.md has the table on the
validation posters. Soft encoding is the training target's: the k = 5 nearest classes with
Gaussian weights of width sigma = 5 a/b units (:func:`recolor_tools.quant.soft_encode`, written
here in torch so that prediction compiles no numba kernel).

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016.
.. [2] R. Zhang et al., "Real-Time User-Guided Image Colorization with Learned Deep Priors",
   SIGGRAPH 2017 (hints as a/b at points; the evaluation protocol).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from . import defaults

if TYPE_CHECKING:
    from .models import Colorizer
    from .predict import Prepared

ALPHA = 1.0
"""Strength of the palette's change of prior (1: replace the training prior by the palette)."""
PALETTE_EPS = 1e-3
"""Floor of the palette histogram and the prior: classes the palette lacks are damped by at
most log(1e-3) = -6.9, not forbidden."""
BETA = 1.0
"""Strength of a point hint at its own cell (sim = 1)."""
POWER = 8.0
"""Power of the feature similarity: higher keeps a hint to more similar regions."""
HINT_EPS = 1e-4
"""Floor of a hint colour's soft encoding before the log."""


def soft_histogram(
    ab: torch.Tensor,
    weights: torch.Tensor,
    classes: torch.Tensor,
    k: int = defaults.K,
    sigma: float = defaults.SIGMA,
) -> torch.Tensor:
    """Soft encodings of a/b values, weighted: (N, 2), (N,) -> (N, Q) rows summing to the weight.

    Each value spreads over its k nearest class centres with weights ``exp(-d^2 / (2 sigma^2))``
    normalised to 1 (Zhang et al. 2016, Sec. 2.1; as :func:`recolor_tools.quant.soft_encode`).
    """
    d2 = torch.cdist(ab.double(), classes.double()) ** 2  # (N, Q)
    k = min(k, classes.shape[0])
    dk, idx = d2.topk(k, dim=1, largest=False)
    w = torch.softmax(-(dk - dk[:, :1]) / (2 * sigma**2), dim=1) * weights.double()[:, None]
    out = torch.zeros_like(d2).scatter_(1, idx, w)
    return out.to(classes.dtype)


def palette_shift(
    hints_ab: np.ndarray, hints_w: np.ndarray, classes: torch.Tensor, prior: torch.Tensor | None
) -> torch.Tensor:
    """(Q,) ``alpha (log(h + eps) - log(prior + eps))`` of a palette (see the module docstring).

    Without a prior (a checkpoint that stores none) the uniform one is used.
    """
    ab = torch.from_numpy(np.ascontiguousarray(hints_ab, np.float32)).to(classes.device)
    w = torch.from_numpy(np.ascontiguousarray(hints_w, np.float32)).to(classes.device)
    h = soft_histogram(ab, w, classes).sum(0)
    h = h / h.sum()
    if prior is None:
        prior = torch.full_like(h, 1.0 / len(h))
    prior = prior.to(h.device, h.dtype)
    prior = prior / prior.sum()
    return ALPHA * (torch.log(h + PALETTE_EPS) - torch.log(prior + PALETTE_EPS))


def steer(
    z: torch.Tensor,
    feats: torch.Tensor,
    item: Prepared,
    classes: torch.Tensor,
    prior: torch.Tensor | None,
    stride: int = 4,
) -> torch.Tensor:
    """The guided log-distribution of one image.

    Parameters
    ----------
    z : (Q, h', w') tensor
        The cls head's logits.
    feats : (C, h', w') tensor
        The decoder's features (:meth:`Colorizer.features`).
    item : Prepared
        With resolved ``hints`` (:class:`recolor_tools.hints.Hints`).
    classes : (Q, 2) tensor
        Class centres (a/b).
    prior : (Q,) tensor or None
        The checkpoint's class prior (``ckpt["rebalance"]["prior"]``).

    Returns
    -------
    (Q, h', w') float32 tensor
        ``log p'(c|x)`` up to a constant per cell (decode takes any log-distribution).
    """
    hints = item.hints
    logp = F.log_softmax(z.float(), dim=0)  # (Q, h', w')
    Q, gh, gw = logp.shape
    if len(hints.palette_w):
        logp = (
            logp + palette_shift(hints.palette_ab, hints.palette_w, classes, prior)[:, None, None]
        )
    cell, ab = hints.cells(item.hw, stride, (gh, gw))
    if len(cell):
        f = F.normalize(feats.float().reshape(feats.shape[0], -1), dim=0)  # (C, h'w')
        idx = torch.from_numpy(cell).to(f.device)
        sim = (f[:, idx].T @ f).clamp_min(0) ** POWER  # (K, h'w')
        q = soft_histogram(torch.from_numpy(ab).to(f.device), torch.ones(len(ab)), classes)
        lq = torch.log(q + HINT_EPS)
        lq = lq - lq.mean(dim=1, keepdim=True)  # (K, Q)
        logp = logp + BETA * (lq.T @ sim).reshape(Q, gh, gw)
    return logp


def class_probabilities(
    model: Colorizer, item: Prepared, prior: torch.Tensor | None, y: int, x: int
) -> np.ndarray:
    """(Q,) float64 class distribution (T = 1, steered by ``item.hints`` if any) at the output
    cell holding full-resolution pixel (x, y)."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        feats = model.features(torch.from_numpy(item.work[None, None]).to(device))[0]
        z = model.head_out(feats[None])[0]
        if item.hints is not None:
            z = steer(z, feats, item, model.classes, prior, model.config.out_stride)
    (H, W), (h, w), s = item.L.shape, item.hw, model.config.out_stride
    cy = min(int((y + 0.5) * h / (H * s)), z.shape[1] - 1)
    cx = min(int((x + 0.5) * w / (W * s)), z.shape[2] - 1)
    return torch.softmax(z[:, cy, cx].double(), dim=0).cpu().numpy()
