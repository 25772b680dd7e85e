"""Metrics of recolor compare, checked against hand-computed values and outside references."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from recolor_tools import metrics, report
from recolor_tools.color import rgb_to_lab
from recolor_tools.errors import RecolorError


def const_rgb(h: int, w: int, rgb, dtype=np.uint8) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, dtype=dtype), (h, w, 3)).copy()


def pattern_pair() -> tuple[np.ndarray, np.ndarray]:
    """A smooth test pattern and a copy with deterministic +-20 'noise' (no RNG involved)."""
    i, j, c = np.meshgrid(np.arange(48), np.arange(64), np.arange(3), indexing="ij")
    x = np.rint(128 + 100 * np.sin(i / 5 + c) * np.cos(j / 7)).astype(np.uint8)
    y = np.clip(x.astype(int) + (i * 31 + j * 17 + c * 7) % 41 - 20, 0, 255).astype(np.uint8)
    return x, y


def lab_pair(shift_ab=(0.0, 0.0), shape=(20, 30)) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued truth Lab and a prediction whose a/b is shifted by ``shift_ab``."""
    rng = np.random.default_rng(3)
    truth = np.empty((*shape, 3), np.float64)
    truth[..., 0] = rng.integers(0, 101, shape)
    truth[..., 1:] = rng.integers(-60, 61, (*shape, 2))
    pred = truth.copy()
    pred[..., 1:] += shift_ab
    pred[..., 0] = 100 - truth[..., 0]  # L must not matter
    return pred, truth


def step_auc(e: float, t_max: int = 150) -> float:
    """AuC of a constant error e: share of the integer thresholds 0..t_max that are >= e."""
    return sum(1 for t in range(t_max + 1) if t >= e) / (t_max + 1)


# --- PSNR -------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 5, 50, 255])
def test_psnr_constant_difference(d):
    truth = const_rgb(10, 12, (0, 0, 0))
    pred = const_rgb(10, 12, (d, d, d))
    assert metrics.psnr(pred, truth) == pytest.approx(20 * math.log10(255 / d), abs=1e-12)


def test_psnr_half_the_pixels_off():
    truth = const_rgb(10, 12, (100, 100, 100))
    pred = truth.copy()
    pred[:5] += 10  # MSE = 10^2 / 2
    assert metrics.psnr(pred, truth) == pytest.approx(10 * math.log10(255**2 * 2 / 100), abs=1e-12)


def test_psnr_identical_is_inf_and_float_input_matches_uint8():
    x, y = pattern_pair()
    assert metrics.psnr(x, x) == math.inf
    assert metrics.psnr(x.astype(np.float32), y.astype(np.float64)) == metrics.psnr(x, y)


def test_psnr_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


# --- SSIM -------------------------------------------------------------------------------------


def test_ssim_identical_is_one():
    x, _ = pattern_pair()
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("a", "b"), [(100, 120), (10, 250), (0, 1)])
def test_ssim_of_constant_images(a, b):
    # No variance: SSIM reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1).
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = metrics.ssim(const_rgb(16, 20, (a, a, a)), const_rgb(16, 20, (b, b, b)))
    assert got == pytest.approx(expected, abs=1e-9)


def test_ssim_decreases_with_noise_and_is_symmetric():
    x, _ = pattern_pair()
    rng = np.random.default_rng(0)
    noise = rng.normal(size=x.shape)
    values = [
        metrics.ssim(np.clip(x + s * noise, 0, 255).astype(np.uint8), x) for s in (2, 10, 30, 80)
    ]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[0] < 1.0
    y = np.clip(x + 10 * noise, 0, 255).astype(np.uint8)
    assert metrics.ssim(x, y) == pytest.approx(metrics.ssim(y, x), abs=1e-12)


def test_ssim_matches_skimage_reference():
    # skimage 0.26 structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=255, channel_axis=-1) on pattern_pair().
    x, y = pattern_pair()
    assert metrics.ssim(x, y) == pytest.approx(0.7983863620842521, abs=1e-9)


def test_ssim_rejects_images_smaller_than_window():
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))


# --- ab error and AuC -------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [(0.0, 0.0), (3.0, 4.0), (-7.5, 0.0), (10.0, -24.0)])
def test_ab_rmse_of_constant_shift(shift):
    pred, truth = lab_pair(shift)
    assert metrics.ab_rmse(pred, truth) == pytest.approx(math.hypot(*shift), abs=1e-12)


def test_ab_rmse_mixed_errors():
    pred, truth = lab_pair()
    pred[:10, :, 1] += 10.0  # half the pixels off by 10: RMS = sqrt(100 / 2)
    assert metrics.ab_rmse(pred, truth) == pytest.approx(math.sqrt(50), abs=1e-12)


@pytest.mark.parametrize("e", [0.0, 0.5, 5.0, 37.25, 149.5, 150.0, 150.5, 200.0])
def test_auc_of_constant_error_is_step_area(e):
    pred, truth = lab_pair((e, 0.0))
    assert metrics.auc(pred, truth) == pytest.approx(step_auc(e), abs=1e-12)


def test_auc_constant_error_hand_values():
    # e = 5: thresholds 5..150 count, 146 of 151; e = 3-4-5 triangle too.
    assert metrics.auc(*lab_pair((5.0, 0.0))) == pytest.approx(146 / 151, abs=1e-12)
    assert metrics.auc(*lab_pair((3.0, 4.0))) == pytest.approx(146 / 151, abs=1e-12)
    assert metrics.auc(*lab_pair((0.0, 0.0))) == 1.0
    assert metrics.auc(*lab_pair((151.0, 0.0))) == 0.0


def test_auc_of_two_grays_is_one():
    """Every gray level against every other: no colour error at all (float32 Lab gives some
    gray levels a/b of 3e-5, which scored 150/151)."""
    levels = np.arange(256, dtype=np.float32).reshape(16, 16, 1).repeat(3, 2) / 255
    pred, truth = rgb_to_lab(levels), rgb_to_lab(levels[::-1, ::-1])
    assert metrics.auc(pred, truth) == 1.0


def test_auc_t_max():
    assert metrics.auc(*lab_pair((5.0, 0.0)), t_max=9) == pytest.approx(5 / 10, abs=1e-12)


def test_auc_matches_plain_threshold_sweep():
    rng = np.random.default_rng(5)
    pred, truth = lab_pair()
    pred[..., 1:] += rng.normal(0, 40, pred[..., 1:].shape)
    w = rng.uniform(0, 3, truth.shape[:2])
    e = np.hypot(*(pred[..., 1:] - truth[..., 1:]).transpose(2, 0, 1))
    ok = [e <= t + metrics.AB_TOLERANCE for t in range(151)]
    plain = np.mean([np.mean(hit) for hit in ok])
    weighted = np.mean([np.sum(w * hit) / w.sum() for hit in ok])
    assert metrics.auc(pred, truth) == pytest.approx(plain, abs=1e-12)
    assert metrics.auc(pred, truth, weights=w) == pytest.approx(weighted, abs=1e-12)


def test_auc_weights_mix_the_two_halves():
    pred, truth = lab_pair()
    pred[:10, :, 1] += 20.0  # top half error 20, bottom half error 0
    w = np.ones(truth.shape[:2])
    w[:10] = 3.0
    expected = (3 * step_auc(20) + 1 * step_auc(0)) / 4
    assert metrics.auc(pred, truth, weights=w) == pytest.approx(expected, abs=1e-12)
    w[10:] = 0.0  # only the top half counts
    assert metrics.auc(pred, truth, weights=w) == pytest.approx(step_auc(20), abs=1e-12)


def test_auc_rejects_bad_weights():
    pred, truth = lab_pair()
    with pytest.raises(ValueError, match="shape"):
        metrics.auc(pred, truth, weights=np.ones((3, 3)))
    with pytest.raises(ValueError, match="positive"):
        metrics.auc(pred, truth, weights=np.zeros(truth.shape[:2]))
    w = np.ones(truth.shape[:2])
    w[0, 0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        metrics.auc(pred, truth, weights=w)
    w[0, 0] = np.inf  # once a NaN AuC
    with pytest.raises(ValueError, match="non-negative finite"):
        metrics.auc(pred, truth, weights=w)
    for t_max in (-1, 10**9, 2**62):  # 1e9 took 55 s and gigabytes; 2**62 numpy's own error
        with pytest.raises(ValueError, match=r"t_max must be a whole number in \[0, 100000\]"):
            metrics.auc(pred, truth, t_max=t_max)
    nan = pred.copy()
    nan[0, 0, 1] = np.nan  # once numpy's "'list' argument must have no negative elements"
    with pytest.raises(ValueError, match="must hold real numbers, a and b finite"):
        metrics.auc(nan, truth)


def test_metrics_take_lists_and_refuse_empty_images():
    """ssim took no list (AttributeError), though its docstring says array_like; psnr of 0
    pixels was a ZeroDivisionError."""
    a = np.random.default_rng(0).integers(0, 256, (12, 12, 3)).astype(np.float64)
    assert metrics.ssim(a.tolist(), a.tolist()) == pytest.approx(1.0)
    empty = np.zeros((0, 0, 3))
    for f in (metrics.psnr, metrics.auc):
        with pytest.raises(ValueError, match="hold no pixel"):
            f(empty, empty)


# --- class-rebalanced weights -----------------------------------------------------------------


def toy_stats(prior=(0.8, 0.15, 0.05)) -> SimpleNamespace:
    """Three colour classes (grey, reddish, yellowish) and a prior: a stand-in RebalanceStats."""
    classes = np.array([[0, 0], [48, 0], [0, 48]], np.float32)
    return SimpleNamespace(classes=classes, prior=np.array(prior, np.float64))


def test_rebalanced_weights_are_inverse_prior_of_nearest_class():
    pytest.importorskip("recolor_tools.quant")
    ab = np.array([[[1, -2], [45, 3]], [[2, 50], [-1, 1]]], np.float32)  # grey, red, yellow, grey
    w = metrics.rebalanced_pixel_weights(ab, toy_stats())
    np.testing.assert_allclose(w, [[1 / 0.8, 1 / 0.15], [1 / 0.05, 1 / 0.8]], rtol=1e-12)
    assert w[1, 0] > w[0, 1] > w[0, 0]  # the rarer the colour, the larger its weight


def test_rebalanced_weights_stay_finite_for_zero_prior():
    pytest.importorskip("recolor_tools.quant")
    ab = np.array([[[0, 48], [48, 0]]], np.float32)
    w = metrics.rebalanced_pixel_weights(ab, toy_stats(prior=(0.9, 0.1, 0.0)))
    np.testing.assert_allclose(w, [[1 / 0.1, 1 / 0.1]], rtol=1e-12)


def test_rebalanced_auc_counts_rare_colours_more():
    pytest.importorskip("recolor_tools.quant")
    pred, truth = lab_pair(shape=(10, 10))
    truth[..., 1:] = 0.0
    truth[0, :, 1] = 48.0  # one row of the rare 'red' class, the rest grey
    pred[..., 1:] = truth[..., 1:]
    pred[0, :, 1] = 0.0  # the rare row is predicted grey: error 48
    w = metrics.rebalanced_pixel_weights(truth[..., 1:], toy_stats())
    plain = metrics.auc(pred, truth)
    rebal = metrics.auc(pred, truth, weights=w)
    assert plain == pytest.approx(0.9 + 0.1 * step_auc(48), abs=1e-12)
    # Weights: 10 red pixels at 1/0.15, 90 grey pixels at 1/0.8.
    share = (10 / 0.15) / (10 / 0.15 + 90 / 0.8)
    assert rebal == pytest.approx((1 - share) + share * step_auc(48), abs=1e-12)
    assert rebal < plain


# --- colourfulness ----------------------------------------------------------------------------


def test_colourfulness_of_grey_is_zero():
    assert metrics.colourfulness(const_rgb(5, 5, (90, 90, 90))) == pytest.approx(0.0, abs=1e-12)


def test_colourfulness_of_no_pixel_is_refused():
    # the moments of no pixel were 0 / 0: NaN with RuntimeWarnings, where the docs promise >= 0
    with pytest.raises(ValueError, match="no pixel"):
        metrics.colourfulness(np.zeros((0, 4, 3), np.uint8))


def test_colourfulness_of_constant_colour():
    # rg = 200 - 100 = 100, yb = (200 + 100) / 2 - 50 = 100, no spread.
    got = metrics.colourfulness(const_rgb(5, 7, (200, 100, 50)))
    assert got == pytest.approx(0.3 * math.sqrt(100**2 + 100**2), abs=1e-9)


def test_colourfulness_of_red_blue_halves():
    img = const_rgb(4, 6, (255, 0, 0))
    img[:, 3:] = (0, 0, 255)
    # rg: 255 and 0 -> mean 127.5, std 127.5; yb: 127.5 and -255 -> mean -63.75, std 191.25.
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert metrics.colourfulness(img) == pytest.approx(expected, abs=1e-9)


# --- compare_pair, mean, gray, montage --------------------------------------------------------


def test_compare_pair_identical():
    x, _ = pattern_pair()
    r = metrics.compare_pair(x, x)
    assert set(r) == set(metrics.METRIC_KEYS) - {"auc_rebal"}
    assert r["psnr"] == math.inf
    assert r["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert r["ab_rmse"] == 0.0
    assert r["auc"] == 100.0
    assert r["colourfulness_diff"] == 0.0
    assert r["colourfulness_pred"] == pytest.approx(metrics.colourfulness(x), abs=1e-12)


def test_compare_pair_known_colour_shift():
    truth = const_rgb(16, 16, (128, 128, 128))
    pred = const_rgb(16, 16, (180, 110, 100))
    lab_t = rgb_to_lab(truth / np.float32(255))
    lab_p = rgb_to_lab(pred / np.float32(255))
    e = float(np.hypot(*(lab_p[0, 0, 1:] - lab_t[0, 0, 1:])))
    r = metrics.compare_pair(pred, truth)
    assert r["ab_rmse"] == pytest.approx(e, rel=1e-5)
    assert r["auc"] == pytest.approx(100 * step_auc(e), abs=1e-9)
    assert r["colourfulness_truth"] == pytest.approx(0.0, abs=1e-12)
    assert r["colourfulness_diff"] == pytest.approx(metrics.colourfulness(pred), abs=1e-12)


def test_compare_pair_resizes_prediction_to_truth():
    truth = const_rgb(20, 30, (30, 140, 200))
    pred = const_rgb(40, 60, (30, 140, 200))  # same picture, twice the size
    r = metrics.compare_pair(pred, truth)
    assert r["psnr"] == math.inf and r["ab_rmse"] == 0.0
    r = metrics.compare_pair(const_rgb(10, 15, (30, 140, 200)), truth)
    assert r["psnr"] == math.inf
    # sides rounded by a resize (31 for 30 at this height: floor(30 s) for s in [1.033, 1.05))
    # are the same picture ...
    assert metrics.compare_pair(const_rgb(20, 31, (30, 140, 200)), truth)["psnr"] == math.inf
    assert metrics.compare_pair(const_rgb(39, 59, (30, 140, 200)), truth)["psnr"] == math.inf
    # (from 11 px a side, within a pixel: resized twice, rounded twice)
    assert metrics.compare_pair(const_rgb(41, 60, (30, 140, 200)), truth)["psnr"] == math.inf
    assert metrics.compare_pair(const_rgb(1, 1, (30, 140, 200)), truth)["psnr"] == math.inf
    # a wide picture shrunk to 16 px wide: its height 2.496 rounds to 2, which is 3 px of width
    wide = const_rgb(78, 500, (30, 140, 200))
    assert metrics.compare_pair(const_rgb(2, 16, (30, 140, 200)), wide)["psnr"] == math.inf


@pytest.mark.parametrize(
    ("h", "w"), [(20, 32), (30, 30), (60, 40), (22, 30), (1, 3), (1, 4), (3, 2)]
)
def test_compare_pair_refuses_another_shape_of_picture(h, w):
    # ... while another aspect ratio is a prediction of another picture: once stretched to fit
    # and scored without a word. Within a pixel of one side at any size (the test before)
    # passed tiny copies of any shape (1 x 3 and 1 x 4, h x w, of this 20 x 30 truth).
    truth = const_rgb(20, 30, (30, 140, 200))
    with pytest.raises(RecolorError, match=f"the prediction is {w}x{h} and the truth 30x20"):
        metrics.compare_pair(const_rgb(h, w, (30, 140, 200)), truth)


def test_compare_pair_with_stats_adds_rebalanced_auc():
    pytest.importorskip("recolor_tools.quant")
    x, _ = pattern_pair()
    r = metrics.compare_pair(x, x, stats=toy_stats())
    assert r["auc_rebal"] == 100.0


def test_compare_pair_in_strips_is_the_whole_image(monkeypatch):
    # compare works in strips of rows (a 6000x4000 pair would need 1.3 GB of Lab and errors):
    # strips of 7 rows, the last one short, give the whole image's figures, and the a/b ones
    # are those of the whole-image functions.
    rng = np.random.default_rng(5)
    truth = cv2.resize(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), (40, 33))
    pred = np.clip(truth.astype(int) + rng.integers(-60, 60, truth.shape), 0, 255).astype(np.uint8)
    stats = toy_stats()
    whole = metrics.compare_pair(pred, truth, stats)
    monkeypatch.setattr(metrics, "STRIP_PIXELS", 40 * 7)
    strips = metrics.compare_pair(pred, truth, stats)
    assert strips.keys() == whole.keys()
    for key, value in whole.items():
        assert strips[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    lab_p, lab_t = rgb_to_lab(pred / 255.0), rgb_to_lab(truth / 255.0)
    w = metrics.rebalanced_pixel_weights(lab_t[..., 1:], stats)
    assert strips["ab_rmse"] == pytest.approx(metrics.ab_rmse(lab_p, lab_t), rel=1e-6)
    assert strips["auc"] == pytest.approx(100 * metrics.auc(lab_p, lab_t), rel=1e-6)
    assert strips["auc_rebal"] == pytest.approx(100 * metrics.auc(lab_p, lab_t, w), rel=1e-6)
    assert strips["colourfulness_pred"] == pytest.approx(metrics.colourfulness(pred), rel=1e-12)
    assert 0 < strips["auc_rebal"] < 100 and strips["ab_rmse"] > 0


def test_compare_pair_rejects_tiny_image():
    with pytest.raises(RecolorError, match="SSIM window"):
        metrics.compare_pair(const_rgb(8, 40, (1, 2, 3)), const_rgb(8, 40, (1, 2, 3)))


def test_mean_metrics_per_key():
    rows = [{"psnr": 10.0, "ssim": 0.5, "auc": 90.0}, {"psnr": 30.0, "ssim": 1.0}]
    assert metrics.mean_metrics(rows) == {"psnr": 20.0, "ssim": 0.75}
    assert metrics.mean_metrics([]) == {}


def test_lightness_gray_keeps_l_and_drops_colour():
    x, _ = pattern_pair()
    g = report.lightness_gray(x)
    assert g.dtype == np.uint8 and g.shape == x.shape
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 0], g[..., 2])
    lab_x = rgb_to_lab(x / np.float32(255))
    lab_g = rgb_to_lab(g / np.float32(255))
    # uint8 rounding moves L by at most about half a grey level (~0.2 L units).
    assert np.max(np.abs(lab_g[..., 0] - lab_x[..., 0])) < 0.5


def test_montage_layout_and_file(tmp_path):
    red, blue = (255, 0, 0), (0, 0, 255)
    rows = [
        ("first", const_rgb(40, 30, (90, 90, 90)), const_rgb(40, 30, red), const_rgb(40, 30, blue)),
        (
            "second",
            const_rgb(20, 40, 0.5, np.float32),
            const_rgb(20, 40, red),
            const_rgb(20, 40, blue),
        ),
    ]
    out = tmp_path / "m.png"
    fig = report.montage(rows, out, height=80)
    back = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, fig)
    # Cells are 80 pixels high: 60 and 160 wide. Red appears only in the prediction cells.
    red_pixels = np.all(fig == red, axis=-1).sum()
    assert red_pixels == 80 * 60 + 80 * 160
    assert fig.shape[1] >= 3 * 160 and fig.shape[0] >= 2 * 80
    assert fig.shape[0] < 2 * 80 + 200 and fig.shape[1] < 3 * 160 + 100
    # Column titles and row names are drawn in black.
    assert np.all(fig == (0, 0, 0), axis=-1).any()


def test_montage_titles_keep_their_size_over_thin_images(tmp_path):
    """A column as narrow as a tall thin image shrank its title to a few pixels."""

    def title_ink(img: np.ndarray) -> tuple[int, int]:  # (rows, columns) holding the titles' ink
        fig = report.montage([("n", img, img, img)], tmp_path / "m.png", height=256)
        ink = (fig[: fig.shape[0] - 256] < 128).all(axis=-1)[: report._strip_height(256 / 400)]
        return int(ink.any(axis=1).sum()), int(ink.any(axis=0).sum())

    thin, wide = title_ink(const_rgb(400, 8, (200, 40, 40))), title_ink(const_rgb(256, 256, 0))
    assert thin == wide and thin[0] > 8


def test_montage_rejects_no_rows(tmp_path):
    with pytest.raises(ValueError, match="at least one row"):
        report.montage([], tmp_path / "m.png")


def test_metrics_does_not_import_torch():
    code = "import sys, recolor_tools.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
