"""Guidance: steer the cls head's class distribution with hints and a palette (the network
that predicts it is left as it is; at most a small learned layer decides where hints spread).

The cls head predicts, per output cell x, a distribution p(c | x) over the Q colour classes.
Guidance changes it, before the annealed mean decodes it
(:func:`recolor_tools.models.decode`):

- a palette, as a change of prior (the model's prior is the training set's class frequency):
  ``log p'(c|x) = log p(c|x) + alpha (log((1 - lam) h(c) + lam prior(c)) - log prior(c))``,
  with ``h`` the soft-encoded class histogram of the palette colours (weighted, summing to 1),
  ``prior`` the checkpoint's class prior, :data:`ALPHA` = 1, :data:`PRIOR_SHARE` ``lam`` =
  0.01: the palette's distribution with a hundredth of the training prior mixed in, so that
  every colour it lacks is damped alike (by log 0.01);
- each point hint i, at output cell x_i with colour q_i (soft-encoded over the classes), is
  mixed in: ``p'(c|x) = (1 - sum_i m_i(x)) p(c|x) + sum_i m_i(x) q_i(c)`` with
  ``m_i(x) = gamma sim_i(x)^pow G_i(x) min(1, odds_i(x))^0.5``, divided by their sum where
  that passes 1 (hints that fully reach a cell share it and leave nothing of the network's
  guess).
  ``odds_i(x) = sum_c q_i(c) p(c|x) / sum_c q_i(c) prior(c)``: a hint reaches less where the
  network finds its colour less likely than the training set does (:data:`ODDS_POWER`; p is
  the distribution after the palette's change, which comes first).
  ``sim_i(x)`` is the cosine similarity of the affinity features at x and at x_i (the
  decoder's 1/4-resolution features, through a learned 1x1 layer where the model has one:
  ``recolor train --affinity``, trained by :func:`affinity_loss`), clamped at 0, and
  ``G_i(x) = exp(-d^2 / (2 (RADIUS D)^2))`` of the distance d between x and x_i (D the
  diagonal of the output grid, its padding included: at most 2 cells), not raised to the power;
  :data:`GAMMA` = 2, :data:`POWER` = 4, :data:`RADIUS` = 0.35. A hint spreads to what the
  network sees as the same kind of region nearby and fades across edges; the cells that no
  hint reaches keep p exactly (``predict`` gives the hint's own pixels its colour exactly).
  With ``predict --hint-spread region`` the shares are instead ``m_j(x) = (gamma / GAMMA)
  u_j(x)``, u_j the probability that a random walk from x reaches a hint of colour j before
  another colour or a sink (:func:`region_shares`): a hint fills the region it is in and
  stops at edges, for hints on objects in photographs, where the look-alike spread paints a
  hint's colour into a sky or a river.

Issue 15's calibration (shipped cls, first 100 of a held-out set of old posters, full size, beta
1, power 8) measured: the truth's 8-colour palette +3.45 dB PSNR and +7.8 rebalanced AuC; 10
truth points +3.43 dB and +6.1; 2 points +0.98 dB. weights/README.md, "Guided recolouring", has
the table on the validation posters.

Soft encoding is the training target's: the k = 5 nearest classes with Gaussian weights of width
sigma = 5 a/b units (as :func:`recolor_tools.quant.soft_encode`, written here in torch so that
prediction compiles no numba kernel).

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016.
.. [2] R. Zhang et al., "Real-Time User-Guided Image Colorization with Learned Deep Priors",
   SIGGRAPH 2017 (hints as a/b at points; the evaluation protocol).
.. [3] L. Grady, "Random Walks for Image Segmentation", IEEE TPAMI 28(11), 2006 (and
   "Multilabel random walker image segmentation using prior models", CVPR 2005: the sink).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from . import defaults
from .errors import is_whole
from .models import decode

if TYPE_CHECKING:
    from .predict import Prepared

ALPHA = 1.0
"""Strength of the palette's change of prior (1: replace the training prior by the palette)."""
PRIOR_SHARE = 1e-2
"""The share of the training prior mixed into a palette's histogram before the change of prior:
every class the palette lacks is damped alike, by log(PRIOR_SHARE) = -4.6, not forbidden.

Until 2026-12-07 the histogram and the prior each had a floor added, ``log(h + eps) - log(prior
+ eps)`` with eps 1e-4: a class the palette lacks was damped by log(eps / (prior + eps)), -6.2
for a common colour but -0.7 for a rare one, so a palette raised the rare colours it did not
hold over the common ones (x250 in odds): one red, `--palette '#ff0000'` on a gray kodim05,
gave green and purple where the network did not see red (95% of the coloured pixels over 60
degrees of hue from red; now 52%, the network's own greens; '#ffcc00': 37% -> 5%; on kodim23
65% -> 26%). Posters 201-300 (weights/evaluate_hints.py ... --skip 200 --first 100 --points
--colourful 0), gain over automatic, PSNR / rebalanced AuC: the truth's 8-colour palette, eps
1e-4 +3.53 / +7.3, PRIOR_SHARE 1e-3 +3.62 / +7.5, 1e-2 +3.62 / +7.5, 3e-2 +3.60 / +7.5;
another poster's palette -1.36 / -5.7, -1.42 / -6.4, -1.40 / -6.2, -1.36 / -6.0 (its hues
are followed further). The eps grid before (first 100 posters, truth's palette): 1e-2 +1.81 /
+3.8; 1e-3 +2.50 / +6.6; 1e-4 +2.60 / +7.7; 1e-5 +2.72 / +8.0. ALPHA 1.5 / 2 with eps 1e-3:
+2.32 / +7.2 and +2.04 / +7.4 (more rebalanced AuC, less PSNR)."""
GAMMA = 2.0
"""Strength of a point hint: its share of a cell is ``GAMMA sim^POWER G`` (times the odds term,
at most 1), unless the hints say another (``predict --hint-strength``,
:attr:`recolor_tools.hints.Hints.strength`).

A mixture, not the product of experts used before (``log p + beta sim^pow (log q - mean log
q)``, beta 2, power 4; the figures of RADIUS were measured with it): where the network was sure
of another colour, the product settled between the two. All 800 validation posters
(weights/evaluate_hints.py, the same draws), gain over automatic, PSNR / rebalanced AuC: 2
points +1.53 dB / +2.9 (product), +1.86 / +3.3 (mixture, gamma 4, power 5), +1.77 / +3.5
(gamma 4, power 4, the odds term), +1.51 / +3.3 (these settings); 10 points +4.30 / +6.8,
+4.54 / +7.2, +4.54 / +7.5, +4.36 / +7.4.

Chosen on the first 200, 10 points. Without the odds term, on one set of draws (the product:
+4.07 / +7.5), gamma / power 1 / 3 +4.67 / +8.0; 2 / 4 +4.67 / +8.1; 4 / 4 +4.70 / +8.1; 4 / 5
+4.63 / +8.2; 4 / 6 +4.51 / +8.2; 10 / 6 +4.60 / +8.2; 30 / 8 +4.52 / +8.2; 0.3 / 4 +2.98 /
+5.8. With it, on evaluate_hints.py's draws (4 / 5 without it: +4.63 / +8.8; 2 points +1.89 /
+4.2): ODDS_POWER 0.25 +4.58 / +9.1; 0.5 +4.42 / +9.2 (4 / 5), +4.57 / +9.2 (4 / 4; 2 points
+1.87 / +4.4), +4.57 / +9.2 (10 / 5), +4.60 / +9.1 (10 / 4), +4.62 / +9.1 (4 / 3); 1 +4.11 to
+4.34 / +9.3 (4 / 4, 10 / 4, 10 / 5: colour for PSNR). Retraining the affinity layer for the
mixture (1,500 steps, ``make affinity-weights``) moved nothing (+4.59 / +8.8 against
+4.63 / +8.8), so the layer trained for the product is kept; nor did adding the product's
shift at beta 0.5 or 1 to the mixture (+4.64 / +8.8), or sharpening the hints' shares toward
the strongest one (+4.53 / +8.9). The odds uncapped up to 4 (a hint reaching further where the
network agrees; 4 / 4) +4.48 / +9.4, taken against the image's mean distribution instead of the
prior +4.64 / +9.1, ODDS_POWER 0.75 or 1 uncapped (up to 4 or 10) with gamma 4 or 8 +3.90 to
+4.30 / +9.5: the same trade of PSNR for colour.

Mixing the annealed distributions (``softmax(log p / T)`` and ``q^(1/T)``, so that a share is a
share of the decoded mean) leaks less but spreads less colour: 10 points, 4 / 4 / 0.5 +4.33 /
+8.6, 8 / 4 / 0.5 +4.60 / +8.7 (against +4.38 / +9.1 for these settings on those draws).

The default is 2, not 4: on the README's photographs (docs/guided_montage.py) a hint on a red
cap reddens part of the sky at 2 and half of it at 3 and 4 (weights/README.md has 2, 4 and 8
on the posters). Why a small share leaks: the hint's q is concentrated on a few classes
while p is often broad, and the annealed mean (``p^(1/0.38)``) lets a 20% share of q outweigh
the rest. A broader q (the hint colour soft-encoded over 12 classes with sigma 10 instead of 5
and 5) at gamma 4 leaks about as gamma 2 does on those photographs and gains little on posters
201-400: 2 / 10 points +2.13 dB / +4.0 and +5.33 / +7.6, against +1.93 / +3.8 and +5.10 / +7.6
(gamma 2) and +2.29 / +4.2 and +5.34 / +7.6 (gamma 4, sigma 5).

Before, for the product, on the first 40 validation posters, 10 truth points: beta 1 / power 8
(the issue's calibration) +2.40 dB / +5.5; 2 / 8 +2.86 / +7.1; 1 / 4 +3.22 / +7.5; 2 / 4
+3.25 / +7.7; 3 / 4 +3.19 / +7.6; 2 / 2 +3.00 / +6.3; 3 / 16 +2.30 / +5.8."""
POWER = 4.0
"""Power of the feature similarity: higher keeps a hint to more similar regions (see GAMMA)."""
ODDS_POWER = 0.5
"""How much a hint's share of a cell shrinks where the network finds the hint's colour less
likely than the training set does: ``m_i(x)`` is multiplied by ``min(1, odds)^ODDS_POWER``,
``odds = sum_c q_i(c) p(c|x) / sum_c q_i(c) prior(c)`` (0: not at all). See GAMMA."""
REGION_TAU = 0.1
"""Scale of the feature edge of :func:`region_shares`: a neighbour whose features' cosine is 0.1
lower is reached e times less.

Chosen for hints on objects in photographs: the Kodak 24 (weights/evaluate_hints.py
``--spread region``), gain over automatic (PSNR / rebalanced AuC) with 2, 10 random truth points
and 4 at the most colourful places, for tau / sink / sigma: 0.1 / 3e-3 / 3 (these) +1.24 /
+2.4, +4.53 / +7.3, +0.84 / +6.2; 0.05 / 3e-3 / 5 +1.40 / +2.5, +5.09 / +7.4, +0.71 / +6.2;
0.1 / 1e-2 / 3 +0.59 / +1.2, +2.80 / +5.5, +0.85 / +5.6; 0.1 / 2e-3 / 4 +1.83 / +3.3, +5.57 /
+8.0, +0.44 / +5.9; 0.1 / 1e-3 / 3 +1.92 / +3.5, +5.39 / +8.1, +0.22 / +5.5; 0.05 / 1e-3 / 4
+2.07 / +3.5, +5.64 / +8.1, +0.18 / +5.5; 0.03 / 1e-3 / 5 +1.90 / +3.2, +5.40 / +7.7, +0.25 /
+5.5 (the default spread: +2.30 / +3.5, +6.16 / +8.1, -1.27 / +2.7). The sink trades reach for
leaks; these keep the four object hints best. The default spread's odds term on these shares
(``min(1, odds)^0.5``, ^1) lost on every row: 10 points +3.39 / +6.5 and +2.49 / +5.8, 4
colourful +0.82 / +5.5 and +0.76 / +5.1; a region is held by its edges, not by the network's
opinion of the colour."""
REGION_SIGMA = 3.0
"""Lightness edge of :func:`region_shares`, in L units (0-100), between neighbouring cells."""
REGION_SINK = 3e-3
"""Weight of each cell's tie to the network's own guess in :func:`region_shares`: how soon a
walk through one even region gives up (a walk takes about 1 / sqrt(sink) ~ 18 cells' steps)."""
REGION_ITERATIONS = 2000
"""Most conjugate-gradient steps of :func:`region_shares` (a few hundred reach 1e-5)."""
TRAIN_POINTS = 20
"""Most points drawn per crop by :func:`affinity_loss` (uniformly 1 to this many)."""
RADIUS = 0.35
"""Width of the Gaussian of the distance that multiplies a point hint's similarity, as a
fraction of the output grid's diagonal. Without it a hint leaks to every region whose features
look alike (a red fender turned a whole background red on the Kodak examples). With the
product rule (see GAMMA), beta 2 and power 4, first 40 validation posters, 2 / 10 truth points
(PSNR, rebalanced AuC gains): no distance term +1.30 dB / +3.9 and +3.25 / +7.7; radius 0.2
+0.98 / +3.5 and +3.26 / +7.5; 0.35 +1.29 / +4.0 and +3.49 / +8.2.

Tried on the first 100 validation posters with 10 truth points (+3.25 dB / +6.1 with the
product rule; a one-off sweep that ran the network once per poster and drew its points apart from
weights/evaluate_hints.py, whose figures differ by a few tenths), not adopted: the hint colours
also as a palette (strength 0.25 to 1): +3.27 / +6.1 at best; a lightness term
exp(-dL^2 / (2 s^2)) on the similarity (s = 5, 10, 20 L units): +2.73 / +5.4 to +3.22 / +6.2;
eps 1e-3 or 1e-6 for the hint colours; beta 1.5 / 3, radius 0.25 / 0.5, power 3 / 6; a lower
temperature (0.3, 0.25, 0.2) for hinted images: all within 0.3 of these. With the mixture, a
geodesic distance in place of the straight one (the least sum of ``1 - cos`` of neighbouring
cells' features along a path over the grid, exact by alternating row and column min-plus sweeps;
``exp(-G / tau)``), posters 201-400, 2 / 10 points (these settings +1.93 dB / +3.8 and +5.10 /
+7.6): gamma 8, tau 1 +2.34 / +4.3 and +5.30 / +7.8; gamma 16 +2.57 / +4.4 and +5.41 / +7.7;
gamma 4 +2.06 / +4.0 and +5.07 / +7.7; but on the README's photographs it carries the hints'
red across the whole river and sky (nothing holds a hint near its point). Both terms (the
radius and tau 1): gamma 2 +1.44 / +3.2 and +4.38 / +7.3, gamma 4 +1.83 / +3.7 and +4.89 / +7.6,
gamma 8 with tau 0.5 +1.78 / +3.7 and +4.69 / +7.5: less leak, and no gain. With the truth's own
colour similarity in place of the features (an oracle, ``evaluate_hints.py --oracle``), all 800
posters, 10 points, gain +5.74 dB / +7.3 at this beta and +6.73 / +8.7 with the hint's colour
forced wherever the truth matches it (beta 30), against +4.30 / +6.8 for the shipped features
(+4.36 / +7.4 with the mixture, gamma 2; weights/README.md, "Why 10 points stop short of
+8").

Also with the mixture, posters 201-400 (evaluate_hints.py's draws, seed 0; these settings +1.72
dB / +3.1 and +4.96 / +7.4), not adopted: the similarity centred on each hint's median cosine
over the image (``(cos - median) / (1 - median)``, to stop the leaks on photographs) at gamma 2,
4, 8: +0.93 / +2.1 and +3.67 / +6.5, +1.16 / +2.4 and +4.21 / +6.9, +1.38 / +2.7 and +4.56 /
+7.1 (it cuts the reach that posters need); a lower temperature for hinted images (0.3, 0.25):
+1.53 / +3.0 and +4.89 / +7.3, +1.39 / +2.9 and +4.82 / +7.3; the hint colours also as a palette
(ALPHA 0.25, 0.5): +2.36 / +3.7 and +5.34 / +7.3, +2.79 / +3.7 and +5.43 / +7.1, a large PSNR
gain with few points because random truth points sample the poster's own colours, but a user's
one red hint on a title would redden the whole image."""


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
    # exact differences (not cdist's matrix-product shortcut) and a stable sort: equidistant
    # classes go to the lower index, as in soft_encode (topk broke such ties another way)
    a, c = ab.double(), classes.double()
    d2 = (a[:, :1] - c[:, 0]) ** 2 + (a[:, 1:] - c[:, 1]) ** 2  # (N, Q)
    k = min(k, classes.shape[0])
    dk, idx = (t[:, :k] for t in d2.sort(dim=1, stable=True))
    w = torch.softmax(-(dk - dk[:, :1]) / (2 * sigma**2), dim=1) * weights.double()[:, None]
    out = torch.zeros_like(d2).scatter_(1, idx, w)
    return out.to(classes.dtype)


_LAST_PALETTE: dict[tuple, torch.Tensor] = {}
""":func:`histogram_of`'s last answer, by its inputs' bytes: ``predict --palette IMAGE`` steers
every input with the same few thousand colours, 0.15-0.2 s to encode each time."""


def histogram_of(ab: np.ndarray, w: np.ndarray, classes: torch.Tensor) -> torch.Tensor:
    """(Q,) the soft-encoded class histogram of the colours ``ab`` ((N, 2), a/b units) weighted
    by ``w`` ((N,), > 0, not all 0), normalised to sum 1; ``classes``' dtype and device: a
    palette as the model and the steering take it (:func:`soft_histogram`)."""
    ab, w = np.ascontiguousarray(ab, np.float32), np.ascontiguousarray(w, np.float32)
    device = classes.device
    key = (ab.tobytes(), w.tobytes(), classes.cpu().numpy().tobytes(), classes.dtype, device)
    if key not in _LAST_PALETTE:
        ab_t, w_t = torch.from_numpy(ab).to(device), torch.from_numpy(w).to(device)
        h = soft_histogram(ab_t, w_t, classes).sum(0)
        _LAST_PALETTE.clear()
        _LAST_PALETTE[key] = h / h.sum()
    return _LAST_PALETTE[key].clone()


def palette_shift(
    hints_ab: np.ndarray, hints_w: np.ndarray, classes: torch.Tensor, prior: torch.Tensor | None
) -> torch.Tensor:
    """(Q,) ``log((1 - lam) h + lam prior) - log(prior)`` of a palette, lam
    :data:`PRIOR_SHARE` (see the module docstring): the palette's classes raised by how much
    rarer they are in training, every other class lowered by log(lam).

    Without a prior (a checkpoint that stores none) the uniform one is used.
    """
    h = histogram_of(hints_ab, hints_w, classes)
    if prior is None:
        prior = torch.full_like(h, 1.0 / len(h))
    prior = prior.to(h.device, h.dtype).clamp_min(1e-12)  # (a class never seen: no 0 / 0)
    prior = prior / prior.sum()
    return torch.log((1 - PRIOR_SHARE) * h + PRIOR_SHARE * prior) - torch.log(prior)


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
        The features compared between cells: the decoder's (:meth:`Colorizer.features`) through
        :meth:`Colorizer.affinity_features`.
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
    # The logits are log p up to a constant per cell, all that decoding needs; their
    # log-softmax would round differently, so cells no hint reaches (all of them at strength
    # 0) would not decode to the automatic output bit for bit.
    logp = z.float()  # (Q, h', w')
    gh, gw = logp.shape[1:]
    if len(hints.palette_w):
        shift = palette_shift(hints.palette_ab, hints.palette_w, classes, prior)
        logp = logp + ALPHA * shift[:, None, None]
    cell, ab = hints.cells(item.hw, stride, (gh, gw))
    if not len(cell):
        return logp
    gamma = GAMMA if hints.strength is None else hints.strength
    if hints.spread == "region":
        light = cell_lightness(item.work, (gh, gw), stride).to(feats.device)
        seeds, q = walk_seeds(ab, classes)
        m = region_shares(feats.float(), light, torch.from_numpy(cell), seeds)
        return mix(logp[None], (gamma / GAMMA * m)[None], q[None])[0]
    idx = torch.from_numpy(cell).to(feats.device)[None]
    ab_t = torch.from_numpy(ab)[None]
    return point_mix(logp[None], feats.float()[None], idx, ab_t, classes, gamma, prior)[0]


def point_mix(
    logp: torch.Tensor,
    feats: torch.Tensor,
    cells: torch.Tensor,
    ab: torch.Tensor,
    classes: torch.Tensor,
    gamma: float | None = None,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, Q, h', w') the log-distribution ``logp`` with K point hints per image mixed in (the
    module docstring's mixture).

    ``feats`` (B, C, h', w') are the features compared between cells
    (:meth:`Colorizer.affinity_features`), ``cells`` (B, K) the hints' flat cell indices, ``ab``
    (B, K, 2) their colours, ``gamma`` their strength (default :data:`GAMMA`), ``prior`` (Q,) the
    class prior that the network's odds for a hint's colour are taken against (None: shares
    are not damped by those odds). Cells that no hint reaches keep ``logp`` as it is, bit for
    bit.
    """
    (B, C, gh, gw), K = feats.shape, cells.shape[1]
    f = F.normalize(feats.reshape(B, C, -1), dim=1)  # (B, C, h'w')
    at = f.gather(2, cells[:, None, :].expand(B, C, K))  # (B, C, K)
    sim = (at.transpose(1, 2) @ f).clamp_min(0) ** POWER  # (B, K, h'w')
    if RADIUS:
        n = torch.arange(gh * gw, device=f.device)
        d2 = (n // gw - cells[..., None] // gw) ** 2 + (n % gw - cells[..., None] % gw) ** 2
        sim = sim * torch.exp(-d2 / (2 * RADIUS**2 * (gh**2 + gw**2)))
    ones = torch.ones(B * K, device=f.device)
    q = soft_histogram(ab.reshape(-1, 2).to(f.device), ones, classes).reshape(B, K, -1).float()
    m = (GAMMA if gamma is None else gamma) * sim
    p = torch.softmax(logp.reshape(B, -1, gh * gw), dim=1)  # (B, Q, h'w')
    if prior is not None:
        prior = prior.to(p.device, p.dtype)
        odds = (q @ p) / (q @ (prior / prior.sum()))[..., None]  # (B, K, h'w')
        m = m * odds.clamp_max(1) ** ODDS_POWER
    return mix(logp, m, q, p)


def mix(
    logp: torch.Tensor, m: torch.Tensor, q: torch.Tensor, p: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, Q, h', w') ``log((1 - sum_i m_i) p + sum_i m_i q_i)``: K hint colours ``q`` (B, K,
    Q) mixed into ``p = softmax(logp)`` (B, Q, h'w'; computed here unless the caller has it)
    with shares ``m`` (B, K, h'w' ; >= 0), divided by their sum where that passes 1. Cells with
    no share keep ``logp`` bit for bit."""
    B, _, gh, gw = logp.shape
    if p is None:
        p = torch.softmax(logp.reshape(B, -1, gh * gw), dim=1)
    m = m / m.sum(1, keepdim=True).clamp_min(1)  # shares of the hints, summing to at most 1
    mixed = (1 - m.sum(1, keepdim=True)) * p + q.transpose(1, 2) @ m
    mixed = torch.log(mixed.clamp_min(1e-30)).reshape(logp.shape)
    return torch.where((m.sum(1) > 0).reshape(B, 1, gh, gw), mixed, logp)


def cell_lightness(work: np.ndarray, grid: tuple[int, int], stride: int) -> torch.Tensor:
    """(h', w') the working lightness (0-100) averaged over each output cell of ``grid``."""
    gh, gw = grid
    light = torch.from_numpy(work[: gh * stride, : gw * stride])
    return F.avg_pool2d(light[None, None], stride)[0, 0]


def walk_seeds(
    ab: np.ndarray, classes: torch.Tensor, by_class: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The walks :func:`region_shares` takes for hinted cells of colours ``ab`` (K, 2): their
    ``seeds`` (n, K) float64 and each walk's class distribution ``q`` (n, Q) float32, for
    :func:`mix`.

    One walk per distinct colour (one-hot seeds, q its soft encoding); or, ``by_class`` (None:
    where there are more colours than classes they touch, as a painted gradient has: nearly a
    colour a cell), one per class they touch, seeded with each cell's colour's weight of it and
    q that class alone: the walks are linear in their seeds and mix needs only
    ``sum_j u_j q_j``, so both give one mixture, and a walk costs its share of the cells."""
    colours, label = np.unique(ab, axis=0, return_inverse=True)
    colours = torch.from_numpy(colours).to(classes.device)
    q = soft_histogram(colours, torch.ones(len(colours), device=colours.device), classes)
    q, label = q.float(), torch.from_numpy(label.reshape(-1)).to(q.device)
    touched = q.sum(0).nonzero()[:, 0]
    if by_class if by_class is not None else len(touched) < len(colours):
        return q[label][:, touched].T.double(), torch.eye(len(classes), device=q.device)[touched]
    return F.one_hot(label, len(colours)).T.double(), q


def region_shares(
    feats: torch.Tensor,
    light: torch.Tensor,
    cells: torch.Tensor,
    seeds: torch.Tensor,
    tau: float | None = None,
    sigma: float | None = None,
    sink: float | None = None,
) -> torch.Tensor:
    """(n, h'w') shares of n hint colours that spread through regions: ``predict --hint-spread
    region`` (a random walker with a sink; Grady 2006 [3]_). ``seeds`` (n, K): each colour's
    value at the hinted ``cells``, 1 at its own and 0 at the others' (one-hot); any other
    values give the same combination of the one-hot solutions (the walk is linear in them).

    The output grid is a graph: 4-neighbour cells x, y joined by ``w = exp(-(1 - cos(f_x,
    f_y)) / tau) exp(-(L_x - L_y)^2 / (2 sigma^2))`` (f the affinity features ``feats`` (C, h',
    w'), L the working lightness per cell ``light`` (h', w'), 0-100), and every cell tied with
    weight ``sink`` to an absorbing node that stands for the network's own guess. The hinted
    ``cells`` (K,) are held at their ``seeds``. Colour j's share of a
    cell is the probability that a walk from it, stepping along edges by weight, reaches a cell
    of colour j before the sink or another colour: ``(D + sink - W) u_j = 0`` off the hinted
    cells (D the degrees), u_j = 1 at colour j's cells and 0 at the others' (Dirichlet, as Levin
    et al. 2004 hold their scribbles). Solved by conjugate gradients, preconditioned by the
    diagonal, all colours at once (float64; the grid of a 160-pixel working size has about 2,000
    cells). A hint fills the region it is in and stops at edges: a look-alike region that
    does not touch it gets next to nothing (each edge of unlike features, cosine 0, passes
    e^-10 of a walk; :data:`REGION_TAU`, :data:`REGION_SIGMA`, :data:`REGION_SINK`).
    """
    tau = REGION_TAU if tau is None else tau
    sigma = REGION_SIGMA if sigma is None else sigma
    sink = REGION_SINK if sink is None else sink
    f = F.normalize(feats.double(), dim=0)
    L = light.double()
    gh, gw = L.shape
    wx = torch.exp(-(1 - (f[:, :, 1:] * f[:, :, :-1]).sum(0)) / tau
                   - (L[:, 1:] - L[:, :-1]) ** 2 / (2 * sigma**2))  # fmt: skip
    wy = torch.exp(-(1 - (f[:, 1:] * f[:, :-1]).sum(0)) / tau
                   - (L[1:] - L[:-1]) ** 2 / (2 * sigma**2))  # fmt: skip

    def neighbours(v: torch.Tensor) -> torch.Tensor:  # W v, v (n, h', w')
        out = torch.zeros_like(v)
        out[:, :, 1:] += wx * v[:, :, :-1]
        out[:, :, :-1] += wx * v[:, :, 1:]
        out[:, 1:] += wy * v[:, :-1]
        out[:, :-1] += wy * v[:, 1:]
        return out

    n = len(seeds)
    free = torch.ones(gh * gw, dtype=torch.bool, device=L.device)
    free[cells] = False
    free = free.reshape(1, gh, gw)
    seeded = torch.zeros(n, gh * gw, dtype=L.dtype, device=L.device)
    seeded[:, cells.to(L.device)] = seeds.to(L.device, L.dtype)
    seeded = seeded.reshape(n, gh, gw)
    diag = neighbours(torch.ones_like(L)[None])[0] + sink

    def A(v: torch.Tensor) -> torch.Tensor:  # the system on the free cells (0 elsewhere)
        return (diag * v - neighbours(v)) * free

    b = neighbours(seeded) * free
    x = torch.zeros_like(b)
    r = b.clone()
    z = r / diag
    d = z.clone()
    rz = (r * z).sum((1, 2))
    tol = 1e-10 * (b * b).sum((1, 2)).clamp_min(1e-300)
    for _ in range(REGION_ITERATIONS):
        if bool(((r * r).sum((1, 2)) <= tol).all()):
            break
        Ad = A(d)
        step = rz / (d * Ad).sum((1, 2)).clamp_min(1e-300)
        x += step[:, None, None] * d
        r -= step[:, None, None] * Ad
        z = r / diag
        rz, rz_old = (r * z).sum((1, 2)), rz
        d = z + (rz / rz_old.clamp_min(1e-300))[:, None, None] * d
    return (x + seeded).clamp(0, 1).reshape(n, -1).float()


def affinity_loss(
    z: torch.Tensor, feats: torch.Tensor, targets: dict[str, torch.Tensor], classes: torch.Tensor
) -> torch.Tensor:
    """The loss that teaches a model's affinity features (``recolor train --affinity``).

    For each batch, K (1 to :data:`TRAIN_POINTS`) cells of each crop are drawn at random and
    hinted with the truth's colour there; the logits ``z`` (B, Q, h', w') are steered by them as
    :func:`point_mix` does with ``feats`` (B, D, h', w'), without the odds term (a model holds
    no prior), and decoded by the annealed mean (T = 0.38). The loss is, averaged over the
    crops, the mean a/b distance to the truth (capped at 150, as the AuC's thresholds), once
    weighted by the rebalancing weights ``pw`` and once plain: so it is about 150 (1 - AuC /
    100) for the rebalanced and the raw AuC together (Zhang et al. 2016's AuC counts the pixels
    within each of the 151 integer thresholds 0..150: ``1 - AuC = min(ceil(e), 151) / 151``
    up to ``metrics.AB_TOLERANCE``
    per pixel, a step function of the capped distance ``e``), and it has a gradient.

    The truth's a/b per cell is the mean of its soft encoding (``targets["idx"]``,
    ``targets["w"]``, as :class:`Colorizer`'s Notes). Nothing reaches ``z``: only the features
    learn, so the automatic prediction is untouched.
    """
    B, Q, gh, gw = z.shape
    truth = (targets["w"].float()[..., None] * classes[targets["idx"].long()]).sum(1)  # (B,h,w,2)
    truth = truth.reshape(B, -1, 2)
    pw = targets.get("pw")
    pw = torch.ones(B, gh * gw, device=z.device) if pw is None else pw.float().reshape(B, -1)
    k = int(torch.randint(1, TRAIN_POINTS + 1, ()))
    cells = torch.randint(0, gh * gw, (B, k), device=z.device)
    hint_ab = truth.gather(1, cells[..., None].expand(B, k, 2))
    steered = F.log_softmax(z.detach().float(), dim=1)
    steered = point_mix(steered, feats.float(), cells, hint_ab, classes)
    pred = decode(steered, classes).reshape(B, 2, -1).transpose(1, 2)  # (B, h'w', 2)
    err = (pred - truth).norm(dim=2).clamp_max(150)  # (B, h'w')
    return ((pw * err).sum(1) / pw.sum(1) + err.mean(1)).mean()


SUGGEST_SEPARATION = 20.0
"""Least a/b distance between the seeds of :func:`colour_modes` (two and a half classes of the
default 8-unit grid apart), so that five suggestions are five colours, not one colour's
neighbouring shades."""
SUGGEST_FLOOR = 0.005
"""Least mass of a colour that :func:`colour_modes` returns (half a percent: a colour the model
all but excludes is no suggestion)."""


def colour_modes(p: np.ndarray, classes: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The k main colours of a class distribution: ((k', 2) a/b, (k',) masses), heaviest first.

    A k-means of the class centres (Q, 2) weighted by ``p`` (Q,): each cluster's colour is the
    p-weighted mean a/b of its classes, its mass the sum of their probabilities (every class
    belongs to one cluster). Zhang et al. 2017's interface suggests colours the same way [2]_,
    by k-means over samples drawn from the distribution (ideepcolor's ``get_ab_reccs``); here
    the weights stand for the samples, and the seeds are the likeliest classes at least
    :data:`SUGGEST_SEPARATION` a/b units apart, so the result is deterministic. Clusters with
    less than :data:`SUGGEST_FLOOR` of the mass are dropped (k' <= k: a sure cell has one
    colour).
    """
    if not (is_whole(k) and k >= 0):  # -1 once gave every colour, True one
        raise ValueError(f"k must be a whole number >= 0, got {k!r}")
    p = np.asarray(p, np.float64)
    ab = np.asarray(classes, np.float64)
    if p.shape != ab.shape[:1] or not (np.isfinite(p).all() and (p >= 0).all()):
        # NaN or negative gave no colour at all, unsaid; another length failed in a matmul
        raise ValueError(f"p must be {len(ab)} probabilities (finite, >= 0), got {p.shape}")
    seeds: list[int] = []
    for c in np.argsort(-p, kind="stable"):
        if len(seeds) == k or p[c] <= 0:
            break
        if all(np.hypot(*(ab[c] - ab[s])) >= SUGGEST_SEPARATION for s in seeds):
            seeds.append(int(c))
    if not seeds:  # k = 0, or no mass at all
        return np.zeros((0, 2)), np.zeros(0)
    centres = ab[seeds]
    for _ in range(10):  # Lloyd's steps; a few settle 394 weighted points
        near = np.argmin(((ab[:, None] - centres[None]) ** 2).sum(2), axis=1)
        member = (near[:, None] == np.arange(len(centres))).astype(np.float64)  # (Q, k)
        mass = p @ member
        sums = member.T @ (p[:, None] * ab)
        centres = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], centres)
    keep = np.argsort(-mass, kind="stable")[: np.count_nonzero(mass >= SUGGEST_FLOOR)]
    return centres[keep], mass[keep]


def cell_probabilities(
    z: torch.Tensor, item: Prepared, stride: int, y: int | np.ndarray, x: int | np.ndarray
) -> np.ndarray:
    """(Q,) float64 class distribution (T = 1) of the network output ``z`` ((Q, h', w'), the
    item's, steered as ``predict`` steers it) at the output cell holding full-resolution pixel
    (x, y); (N, Q) for arrays of N pixels."""
    (H, W), (h, w) = item.L.shape, item.hw
    ys, xs = np.broadcast_arrays(np.atleast_1d(y), np.atleast_1d(x))
    cy = np.minimum(((ys + 0.5) * h / (H * stride)).astype(np.int64), z.shape[1] - 1)
    cx = np.minimum(((xs + 0.5) * w / (W * stride)).astype(np.int64), z.shape[2] - 1)
    with torch.inference_mode():
        p = torch.softmax(z[:, torch.from_numpy(cy), torch.from_numpy(cx)].double(), dim=0)
    return p.T.cpu().numpy() if np.ndim(y) or np.ndim(x) else p[:, 0].cpu().numpy()
