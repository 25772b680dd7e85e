"""Image-quality and colourfulness metrics for ``recolor compare``.

All functions take numpy arrays; none imports torch. RGB images use the 0..255 convention (uint8,
or float with the same scale); Lab images use the OpenCV float convention (L in [0, 100], a/b in
about [-128, 127]), as produced by :func:`recolor_tools.color.rgb_to_lab`.

References
----------
.. [1] Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
       visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004.
.. [2] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016, section 3.1
       ("Raw accuracy (AuC)" and its class-rebalanced variant).
.. [3] D. Hasler, S. Süsstrunk, "Measuring colourfulness in natural images", Proc. SPIE 5007,
       Human Vision and Electronic Imaging VIII, 2003.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from recolor_tools import color
from recolor_tools.color import check_image, rgb_to_lab, row_strips
from recolor_tools.errors import RecolorError, is_whole
from recolor_tools.imageio import resize_to

if TYPE_CHECKING:
    from recolor_tools.rebalance import RebalanceStats

PEAK = 255.0
"""Peak signal value of the 0..255 RGB convention used by :func:`psnr` and :func:`ssim`."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

STRIP_PIXELS = color.STRIP_PIXELS
"""Pixels per strip of rows in which :func:`psnr`, :func:`ssim`, :func:`colourfulness` and
:func:`compare_pair` work (bounds their memory, whatever the image size); the colour
conversions' (:data:`recolor_tools.color.STRIP_PIXELS`), set apart here for the tests."""

AUC_T_MAX = 150
"""Largest ab-error threshold of the AuC sweep, as in Zhang et al. [2]."""
AB_TOLERANCE = 1e-3
"""a/b error (units) that the AuC takes as none: float32 CIELAB gives a neutral gray |a|, |b| up
to 3e-5 (22 of the 256 gray levels), which missed the threshold t = 0, so two gray images scored
150/151 instead of 1."""

PRIOR_FLOOR = 1e-12
"""Least prior a class counts with in the rebalanced AuC. A prior smoothed from a narrow palette
holds a Gaussian's far tail, down to denormals (2.5e-323): their inverse overflowed, and the
AuC of two identical images came out NaN. Below a pixel in a trillion a prior says nothing."""

METRIC_KEYS = (
    "psnr",
    "ssim",
    "ab_rmse",
    "auc",
    "auc_rebal",
    "colourfulness_pred",
    "colourfulness_truth",
    "colourfulness_diff",
)
"""Keys of :func:`compare_pair`'s result, in display order (``auc_rebal`` only with stats)."""


def _check_pair(pred: np.ndarray, truth: np.ndarray, channels: int) -> None:
    """Two (H, W, ``channels``) images of the same shape, or ValueError."""
    check_image(pred, "prediction", channels)
    check_image(truth, "truth", channels)
    if np.shape(pred) != np.shape(truth):
        raise ValueError(
            f"prediction and truth must have the same shape, got {np.shape(pred)} and "
            f"{np.shape(truth)}"
        )
    if not np.size(pred):  # 0 pixels: an MSE of 0 / 0
        raise ValueError(f"prediction and truth hold no pixel, shape {np.shape(pred)}")


def _check_255(*images: tuple[str, np.ndarray]) -> None:
    """ValueError unless each ``(name, image)`` holds uint8 or finite float samples (the 0..255
    scale): uint16 scored -0.05 dB for two images 1/255 apart, a colourfulness of 36,000; NaN
    scored NaN."""
    for what, img in images:
        kind = np.asarray(img).dtype
        if kind != np.uint8 and not np.issubdtype(kind, np.floating):
            raise ValueError(f"{what} must be uint8 or float on the 0..255 scale, got {kind}")
        if kind != np.uint8 and not np.isfinite(img).all():  # a NaN score, unsaid
            raise ValueError(f"{what} holds NaN or infinity")


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two RGB images, in dB.

    Parameters
    ----------
    pred, truth : (H, W, 3) array_like
        RGB images on the 0..255 scale (uint8, or float with the same scale).

    Returns
    -------
    float
        ``10 * log10(255**2 / MSE)``, the MSE taken over all pixels and channels. ``inf`` for
        identical images (MSE = 0); unlike ``cv2.PSNR``, which caps that case at about 361 dB.

    Raises
    ------
    ValueError
        If the shapes differ or are not (H, W, 3), or the samples are not uint8 or float.

    Notes
    -----
    A constant difference ``d`` on every value gives ``20 * log10(255 / d)``.
    """
    _check_pair(pred, truth, 3)
    _check_255(("prediction", pred), ("truth", truth))
    a, b = np.asarray(pred), np.asarray(truth)
    sse = sum(  # float64 copies of a strip, not of the image
        cv2.norm(a[rows].astype(np.float64), b[rows].astype(np.float64), cv2.NORM_L2SQR)
        for rows in row_strips(*a.shape[:2], STRIP_PIXELS)
    )
    mse = sse / a.size
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(PEAK**2 / mse)


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean structural similarity (SSIM) of two RGB images.

    Parameters
    ----------
    pred, truth : (H, W, 3) array_like
        RGB images on the 0..255 scale (uint8, or float with the same scale), both sides at least
        11 pixels.

    Returns
    -------
    float
        Mean SSIM in [-1, 1]; 1 only for identical images.

    Raises
    ------
    ValueError
        If the shapes differ, are not (H, W, 3), the samples are not uint8 or float, or a side
        is shorter than the 11-pixel window.

    Notes
    -----
    Wang et al. [1], per channel, with local statistics weighted by an 11x11 Gaussian window of
    sigma 1.5 (``cv2.GaussianBlur``)::

        SSIM = (2 mu_x mu_y + C1) (2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2))

    with C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255, and population (not sample) covariances. The
    map is averaged over the pixels whose whole window lies inside the image (a 5-pixel border is
    dropped, as with the "valid" filtering of the reference MATLAB code), then over the three
    channels. Borders are mirrored with the edge pixel repeated (``cv2.BORDER_REFLECT``; the
    dropped border makes the choice moot), which matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)``.
    """
    _check_pair(pred, truth, 3)
    _check_255(("prediction", pred), ("truth", truth))
    pred, truth = np.asarray(pred), np.asarray(truth)
    if min(pred.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")
    c1 = (SSIM_K1 * PEAK) ** 2
    c2 = (SSIM_K2 * PEAK) ** 2
    k, pad = (SSIM_WINDOW, SSIM_WINDOW), SSIM_WINDOW // 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, k, SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    # In strips of rows, each read with the pad rows around it: a kept row's window lies inside
    # the strip, so the map is the whole image's, without ten float64 copies of the image (6 GB
    # for a 6000x4000 pair).
    H, W = pred.shape[:2]
    step = max(1, STRIP_PIXELS // W)
    total = 0.0
    for a in range(pad, H - pad, step):
        b = min(a + step, H - pad)
        x = np.asarray(pred[a - pad : b + pad], dtype=np.float64)
        y = np.asarray(truth[a - pad : b + pad], dtype=np.float64)
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x * mu_x
        var_y = blur(y * y) - mu_y * mu_y
        cov = blur(x * y) - mu_x * mu_y
        s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
            (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
        )
        total += float(s[pad:-pad, pad:-pad].sum())
    return total / ((H - 2 * pad) * (W - 2 * pad) * 3)


def ab_error(pred_lab: np.ndarray, truth_lab: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean a/b error ``sqrt(da^2 + db^2)``.

    Parameters
    ----------
    pred_lab, truth_lab : (H, W, 3) array_like
        Lab images (OpenCV float convention); L is ignored.

    Returns
    -------
    (H, W) float64 ndarray
        Error in a/b units, >= 0.

    Raises
    ------
    ValueError
        Shapes that are not one (H, W, 3) shape; samples that are not finite real numbers.
    """
    _check_pair(pred_lab, truth_lab, 3)
    pred_lab, truth_lab = np.asarray(pred_lab), np.asarray(truth_lab)
    for what, lab in (("prediction", pred_lab), ("truth", truth_lab)):  # NaN: an RMSE of NaN
        if lab.dtype.kind not in "iuf" or not np.isfinite(lab[..., 1:]).all():
            raise ValueError(f"{what} must hold real numbers, a and b finite ({lab.dtype})")
    e = np.zeros(pred_lab.shape[:2])
    for c in (1, 2):  # per channel, in place: float64 planes, not copies of whole images
        d = pred_lab[..., c].astype(np.float64)
        d -= truth_lab[..., c]
        d *= d
        e += d
    return np.sqrt(e, out=e)


def ab_rmse(pred_lab: np.ndarray, truth_lab: np.ndarray) -> float:
    """Root mean square of the Euclidean a/b error (:func:`ab_error`; same arguments).

    Returns
    -------
    float
        ``sqrt(mean(da^2 + db^2))`` in a/b units, >= 0. A constant shift ``(da, db)`` gives
        ``hypot(da, db)``.
    """
    e = ab_error(pred_lab, truth_lab)
    return float(np.sqrt(np.mean(e * e)))


def auc(
    pred_lab: np.ndarray,
    truth_lab: np.ndarray,
    weights: np.ndarray | None = None,
    t_max: int = AUC_T_MAX,
) -> float:
    """Area under the cumulative ab-error curve ("raw accuracy AuC"), as a fraction.

    Parameters
    ----------
    pred_lab, truth_lab : (H, W, 3) array_like
        Lab images (OpenCV float convention); L is ignored.
    weights : (H, W) array_like, optional
        Non-negative per-pixel weights; their scale does not matter. With
        :func:`rebalanced_pixel_weights` this is the class-rebalanced AuC of Zhang et al. [2].
        Default: every pixel counts equally.
    t_max : int
        Largest threshold of the sweep.

    Returns
    -------
    float
        AuC in [0, 1] (multiply by 100 for the percentages of [2]).

    Raises
    ------
    ValueError
        If the shapes differ, or the weights have the wrong shape, a negative or NaN entry, or
        sum to zero.

    Notes
    -----
    With e the per-pixel a/b error (:func:`ab_error`) and w the weights::

        acc(t) = sum(w * [e <= t + tol]) / sum(w)
        AuC    = mean(acc(t) for t in 0, 1, ..., t_max)

    i.e. the mean over the ``t_max + 1`` integer thresholds; tol is :data:`AB_TOLERANCE`
    (1e-3 a/b units, float rounding). For a constant error e this is the share of integer t in
    [0, t_max] with t >= e - tol.
    """
    return auc_of_errors(ab_error(pred_lab, truth_lab), weights, t_max)


def auc_of_errors(
    e: np.ndarray, weights: np.ndarray | None = None, t_max: int = AUC_T_MAX
) -> float:
    """:func:`auc` of per-pixel a/b errors ``e`` (:func:`ab_error`, (H, W) >= 0) that are
    already computed: the same curve, the same errors raised for bad ``weights``."""
    return auc_of_histogram(error_histogram(e, weights, t_max))


T_MAX_LIMIT = 100_000
"""The largest ``t_max``: a/b errors of Lab colours stay under 400 (1e9 took 55 s and GBs)."""


def error_histogram(
    e: np.ndarray, weights: np.ndarray | None = None, t_max: int = AUC_T_MAX
) -> np.ndarray:
    """(t_max + 2,) float64: the summed weights of the errors ``e`` by ``ceil(e - AB_TOLERANCE)``,
    the last bin holding those above ``t_max``. Histograms of parts of an image add up to the
    image's."""
    e = np.asarray(e, dtype=np.float64)  # (a list: AttributeError)
    w = np.ones_like(e) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != e.shape:
        raise ValueError(f"weights must have shape {e.shape}, got {w.shape}")
    if not np.all((w >= 0) & (w < np.inf)):
        raise ValueError("weights must be non-negative finite numbers")
    if not (is_whole(t_max) and 0 <= t_max <= T_MAX_LIMIT):  # (True was taken for 1)
        raise ValueError(f"t_max must be a whole number in [0, {T_MAX_LIMIT}], got {t_max!r}")
    if not np.all(e >= 0):  # NaN too: a Lab image with NaN in it
        raise ValueError("a/b errors must be non-negative numbers (NaN in a Lab image?)")
    # A pixel counts at every integer t >= ceil(e - tol): the running sum of this histogram gives
    # acc(t) for all thresholds at once. Errors above t_max land in the overflow bin.
    first = np.clip(np.ceil(e - AB_TOLERANCE), 0, t_max + 1).astype(np.int64).ravel()
    return np.bincount(first, weights=w.ravel(), minlength=t_max + 2)


def auc_of_histogram(hist: np.ndarray) -> float:
    """The AuC (a fraction, see :func:`auc`) of an :func:`error_histogram`."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 1 or len(hist) < 2:  # ([] was an IndexError)
        raise ValueError(f"hist must be an error_histogram, (t_max + 2,), got {hist.shape}")
    running = np.cumsum(hist)
    total = running[-1]  # summed in the same order as the running sum: acc is exactly 1 at most
    if not 0 < total < np.inf:  # (inf / inf: NaN)
        raise ValueError("weights must sum to a positive finite number")
    return float((running[:-1] / total).mean())


def rebalanced_pixel_weights(truth_ab: np.ndarray, stats: RebalanceStats) -> np.ndarray:
    """Per-pixel weights for the class-rebalanced AuC: inverse prior of the true colour class.

    Parameters
    ----------
    truth_ab : (H, W, 2) array_like
        Ground-truth a/b values (OpenCV float Lab convention).
    stats : recolor_tools.rebalance.RebalanceStats
        Colour classes (``.classes``, (Q, 2)) and their smoothed prior (``.prior``, (Q,)).

    Returns
    -------
    (H, W) float64 ndarray
        ``1 / p(q)``, q the class nearest to each pixel's a/b (``quant.hard_encode``). Classes
        with zero prior are given the smallest positive prior, and none counts as less than
        :data:`PRIOR_FLOOR`, so weights and their sums stay finite. The scale is arbitrary (AuC
        divides by the weight sum).

    Notes
    -----
    Zhang et al. [2] re-weight each pixel "inversely by color class probability" so that rare
    colours count as much as common ones (greys and browns dominate natural images).
    """
    from recolor_tools.quant import hard_encode

    ab = np.ascontiguousarray(truth_ab, dtype=np.float32)
    check_image(ab, "truth_ab", channels=2)
    prior = np.asarray(stats.prior, dtype=np.float64)
    positive = prior[prior > 0]
    if positive.size == 0:
        raise ValueError("the colour-class prior has no positive entry")
    prior = np.maximum(prior, max(positive.min(), PRIOR_FLOOR))
    idx = hard_encode(ab.reshape(-1, 2), np.asarray(stats.classes, dtype=np.float32))
    return (1.0 / prior[np.asarray(idx, dtype=np.int64)]).reshape(ab.shape[:2])


def colourfulness(rgb: np.ndarray) -> float:
    """Colourfulness of an RGB image (Hasler and Süsstrunk [3]).

    Parameters
    ----------
    rgb : (H, W, 3) array_like
        RGB image on the 0..255 scale.

    Returns
    -------
    float
        ``M = sqrt(s_rg^2 + s_yb^2) + 0.3 * sqrt(m_rg^2 + m_yb^2)`` >= 0, where ``rg = R - G``,
        ``yb = (R + G) / 2 - B`` and m, s are their mean and population standard deviation over
        the image. 0 for grey images; the paper calls about 15 "slightly", 33 "moderately",
        45 "averagely", 59 "quite", 82 "highly" and 109 "extremely" colourful.

    Raises
    ------
    ValueError
        Not an (H, W, 3) image of uint8 or float samples, or no pixel.
    """
    x = np.asarray(rgb)
    check_image(x, "rgb")
    _check_255(("rgb", x))
    if not x.size:  # moments of no pixel: 0 / 0
        raise ValueError(f"rgb holds no pixel, shape {x.shape}")
    # Strip by strip: float32 holds rg and yb of 0..255 integers exactly, meanStdDev sums in
    # float64, and the strips' moments add up (n m and n (s^2 + m^2)) to the image's.
    first, second = np.zeros(2), np.zeros(2)
    for rows in row_strips(*x.shape[:2], STRIP_PIXELS):
        part = x[rows] if x.dtype == np.float64 else x[rows].astype(np.float32)
        opp = cv2.transform(part, np.array([[1, -1, 0], [0.5, 0.5, -1]]))  # rg, yb
        m, sd = (v.ravel() for v in cv2.meanStdDev(opp))
        n = opp.shape[0] * opp.shape[1]
        first += n * m
        second += n * (sd * sd + m * m)
    mean = first / (x.shape[0] * x.shape[1])
    std = np.sqrt(np.maximum(second / (x.shape[0] * x.shape[1]) - mean * mean, 0.0))
    return float(np.hypot(*std) + 0.3 * np.hypot(*mean))


def same_shape(size: tuple[int, int], of: tuple[int, int]) -> bool:
    """Whether an image of ``size`` (h, w) can be a shrunk or enlarged copy of one of ``of``:
    some scale s gives both sides when rounded the same way, to nearest, down or up (other
    tools floor), a side of at least 1 px (``imageio.resize_max``'s clamp); or, from
    :data:`SSIM_WINDOW` px a side, one side scaled to the other's within a pixel (a copy resized
    twice, rounded twice: 575 x 1725 -> 333 x 1000 -> 99 x 300).

    Each side ``p`` of the copy confines s to an interval (rounded to nearest: ``(p - 1/2) /
    t <= s < (p + 1/2) / t``); the two sides' intervals must meet. Within a pixel at any size
    (the test before) passed a 2 x 1 copy of a square: at 1-3 px a pixel is any ratio.
    """
    (ph, pw), (th, tw) = size, of
    if min(ph, pw) >= SSIM_WINDOW and (abs(tw * ph / th - pw) <= 1 or abs(th * pw / tw - ph) <= 1):
        return True
    for lo, hi in ((-0.5, 0.5), (0.0, 1.0), (-1.0, 0.0)):  # nearest, down, up
        (a, b), (c, d) = (((p + lo) / t if p > 1 else 0.0, (p + hi) / t)
                          for p, t in zip(size, of, strict=True))  # fmt: skip
        if max(a, c) < min(b, d):
            return True
    return False


def check_truth_size(truth: np.ndarray) -> None:
    """Raise RecolorError if ``truth`` (H, W, ...) is smaller than the SSIM window, 11 pixels a
    side (a smaller prediction is resized to the truth, so only the truth's size matters)."""
    if min(truth.shape[:2]) < SSIM_WINDOW:
        h, w = truth.shape[:2]
        raise RecolorError(
            f"the truth ({w}x{h}) is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )


def compare_pair(
    pred_rgb_u8: np.ndarray, truth_rgb_u8: np.ndarray, stats: RebalanceStats | None = None
) -> dict[str, float]:
    """All metrics of one predicted image against its ground truth.

    Parameters
    ----------
    pred_rgb_u8, truth_rgb_u8 : (H, W, 3) uint8 ndarray
        Prediction and ground truth, RGB. A prediction of another size but the same aspect ratio
        (:func:`same_shape`) is first resized to the truth's size (``cv2.INTER_AREA`` when
        shrinking, ``cv2.INTER_LINEAR`` when enlarging).
    stats : recolor_tools.rebalance.RebalanceStats, optional
        Colour classes and prior; adds ``auc_rebal``.

    Returns
    -------
    dict
        ``psnr`` (dB, RGB, ``inf`` when identical), ``ssim`` (RGB), ``ab_rmse`` (a/b units),
        ``auc`` and ``auc_rebal`` (percent, 0..100, as reported by Zhang et al. [2]),
        ``colourfulness_pred``, ``colourfulness_truth`` and ``colourfulness_diff`` (pred minus
        truth). Keys follow :data:`METRIC_KEYS`.

    Raises
    ------
    RecolorError
        If the truth is smaller than the SSIM window (11 pixels a side), or the two differ in
        aspect ratio (a prediction of another picture), or the prediction holds no pixel; the
        caller adds the path.
    """
    for name, img in (("prediction", pred_rgb_u8), ("truth", truth_rgb_u8)):
        check_image(img, name, dtype=np.uint8)
    if not pred_rgb_u8.size:  # resized to the truth, it ended in OpenCV's assertion
        raise RecolorError("the prediction holds no pixel")
    check_truth_size(truth_rgb_u8)
    (ph, pw), (th, tw) = pred_rgb_u8.shape[:2], truth_rgb_u8.shape[:2]
    if not same_shape((ph, pw), (th, tw)):
        raise RecolorError(f"the prediction is {pw}x{ph} and the truth {tw}x{th}: not the same "
                           "shape of picture")  # fmt: skip
    pred = resize_to(pred_rgb_u8, *truth_rgb_u8.shape[:2])
    truth = truth_rgb_u8
    # The a/b measures strip by strip (two Lab images and the errors of a 6000x4000 pair would
    # be 1.3 GB): squared errors and error histograms add up over the strips.
    squares, plain = 0.0, np.zeros(AUC_T_MAX + 2)
    rebal = np.zeros(AUC_T_MAX + 2) if stats is not None else None
    for rows in row_strips(*truth.shape[:2], STRIP_PIXELS):
        pred_lab = rgb_to_lab(pred[rows].astype(np.float32) / 255.0)
        truth_lab = rgb_to_lab(truth[rows].astype(np.float32) / 255.0)
        e = ab_error(pred_lab, truth_lab)
        squares += float(np.dot(e.ravel(), e.ravel()))
        plain += error_histogram(e)
        if rebal is not None:
            rebal += error_histogram(e, rebalanced_pixel_weights(truth_lab[..., 1:], stats))
    out = {
        "psnr": psnr(pred, truth),
        "ssim": ssim(pred, truth),
        "ab_rmse": math.sqrt(squares / (truth.shape[0] * truth.shape[1])),
        "auc": 100.0 * auc_of_histogram(plain),
    }
    if rebal is not None:
        out["auc_rebal"] = 100.0 * auc_of_histogram(rebal)
    c_pred, c_truth = colourfulness(pred), colourfulness(truth)
    out.update(
        colourfulness_pred=c_pred, colourfulness_truth=c_truth, colourfulness_diff=c_pred - c_truth
    )
    return out


def mean_metrics(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of :func:`compare_pair` results (each image counts once).

    Keys missing from any result are left out. The mean PSNR is ``inf`` as soon as one pair is
    identical.
    """
    if not results:
        return {}
    keys = [k for k in METRIC_KEYS if all(k in r for r in results)]
    return {k: float(np.mean([r[k] for r in results])) for k in keys}
