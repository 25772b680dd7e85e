"""Class-rebalancing statistics: counting, smoothing, Zhang et al.'s weights, files, plots."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import smooth_image, write_rgb

from recolor_tools import quant, rebalance, statsreport
from recolor_tools.color import rgb_to_lab
from recolor_tools.errors import RecolorError

C8 = np.asarray(quant.gamut_classes(8))


def test_weights_satisfy_zhang_normalisation_and_favour_rare_classes():
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.5, len(C8)).astype(np.float64)
    counts[:50] = 0  # classes never seen
    w = rebalance.rebalance_weights(counts, C8, lam=0.5, sigma=5.0)
    prior = rebalance.smooth_prior(counts, C8, 5.0)
    assert w.dtype == np.float32 and w.shape == (len(C8),)
    assert (prior * w).sum() == pytest.approx(1.0, rel=1e-6)
    # w is a decreasing function of the smoothed prior: rarer -> larger.
    order = np.argsort(prior, kind="stable")
    assert (np.diff(w[order]) <= 1e-6 * w.max()).all()
    assert w[prior.argmin()] > w[prior.argmax()]
    # Formula, written out: w ∝ 1 / ((1 - λ) p~ + λ / Q).
    raw = 1.0 / (0.5 * prior + 0.5 / len(C8))
    np.testing.assert_allclose(w, raw / (prior * raw).sum(), rtol=1e-6)


def test_lambda_one_means_no_rebalancing():
    counts = np.arange(1, len(C8) + 1, dtype=np.float64)
    np.testing.assert_allclose(rebalance.rebalance_weights(counts, C8, lam=1.0), 1.0, rtol=1e-6)


def test_smoothing_spreads_mass_to_neighbours_and_keeps_it():
    counts = np.zeros(len(C8))
    q = int(np.argmin(np.abs(C8).sum(1)))  # the grey class (0, 0)
    counts[q] = 10
    p = rebalance.smooth_prior(counts, C8, sigma=5.0)
    assert p.sum() == pytest.approx(1.0)
    d = np.linalg.norm(C8 - C8[q], axis=1)
    assert p[q] == p.max() and (p[d == 8] > 0).all()
    # Every class at distance 8 gets the same share, exp(-64/50) of the centre's.
    np.testing.assert_allclose(p[d == 8] / p[q], np.exp(-64 / 50), rtol=1e-9)
    np.testing.assert_allclose(rebalance.smooth_prior(counts, C8, sigma=0), counts / 10)


def test_accumulator_counts_hard_classes_and_merges():
    rng = np.random.default_rng(1)
    a, b = (rng.normal(0, 30, (20, 30, 2)).astype(np.float32) for _ in range(2))
    acc = rebalance.PriorAccumulator(C8, 8)
    acc.add(a)
    other = rebalance.PriorAccumulator(C8, 8)
    other.add(b)
    acc.merge(other)
    want = np.bincount(
        np.concatenate([quant.hard_encode(a, C8).ravel(), quant.hard_encode(b, C8).ravel()]),
        minlength=len(C8),
    )
    np.testing.assert_array_equal(acc.counts, want)
    stats = acc.finish(lam=0.3, sigma=4.0)
    assert (stats.n_images, stats.n_pixels) == (2, 1200)
    assert stats.lam == 0.3 and stats.sigma == 4.0
    np.testing.assert_allclose(stats.weights, rebalance.rebalance_weights(want, C8, 0.3, 4.0))
    with pytest.raises(ValueError, match="different class sets"):
        acc.merge(rebalance.PriorAccumulator(C8[:10], 8))
    with pytest.raises(ValueError, match="no pixels"):
        rebalance.PriorAccumulator(C8, 8).finish()
    # counts made elsewhere: a scalar once added itself to every class, a negative one was
    # blamed on the prior's shape at finish(), floats and other lengths were numpy's errors
    huge = np.full(len(C8), 2**63, np.uint64)  # past int64: would wrap to negative counts
    for bad in (5, -np.ones(len(C8), np.int64), np.ones(len(C8)), np.ones(3, np.int64), huge):
        with pytest.raises(ValueError, match="counts must be"):
            acc.add_counts(bad)
    np.testing.assert_array_equal(acc.counts, want)
    acc.add_counts(np.ones(len(C8), np.uint64))  # whole numbers, as documented: numpy refused
    np.testing.assert_array_equal(acc.counts, want + 1)  # to add uint64 to int64 in place


def images(tmp_path, n=4):
    paths = []
    for i in range(n):
        rgb = smooth_image(24 + i, 32, seed=i)
        paths.append(write_rgb(tmp_path / f"im{i}.png", rgb))
    return paths


@pytest.mark.parametrize("batch", [1 << 20, 1])  # one batch for all; a batch per image
def test_compute_stats_over_files_matches_counting_in_memory(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(rebalance, "_BATCH_PIXELS", batch)
    paths = images(tmp_path, 5)
    acc = rebalance.PriorAccumulator(C8, 8)
    for p in paths:
        rgb = cv2.imread(str(p))[:, :, ::-1].astype(np.float32) / 255
        acc.add(rgb_to_lab(rgb)[..., 1:])
    for workers in (1, 2):
        stats = rebalance.compute_stats(paths, C8, 8, workers=workers)
        np.testing.assert_array_equal(stats.counts, acc.counts)
        assert stats.n_images == 5
    labs = [rgb_to_lab(cv2.imread(str(p))[:, :, ::-1].astype(np.float32) / 255) for p in paths]
    from_arrays = rebalance.compute_stats((lab[..., 1:] for lab in labs), C8, 8)
    np.testing.assert_array_equal(from_arrays.counts, acc.counts)


@pytest.mark.parametrize("batch", [1 << 20, 1])
def test_compute_stats_reports_bad_files_and_goes_on(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(rebalance, "_BATCH_PIXELS", batch)
    paths = images(tmp_path, 2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    errors = []
    stats = rebalance.compute_stats([paths[0], bad, paths[1]], C8, 8, on_error=errors.append)
    assert stats.n_images == 2
    np.testing.assert_array_equal(stats.counts, rebalance.compute_stats(paths, C8, 8).counts)
    assert len(errors) == 1 and errors[0].path == str(bad)
    with pytest.raises(RecolorError):
        rebalance.compute_stats([bad], C8, 8)


def test_stats_file_round_trip_and_weight_of(tmp_path):
    rng = np.random.default_rng(2)
    acc = rebalance.PriorAccumulator(C8, 8)
    acc.add(rng.normal(0, 20, (50, 50, 2)).astype(np.float32))
    stats = acc.finish()
    path = tmp_path / "stats.npz"
    stats.save(path)
    back = rebalance.RebalanceStats.load(path)
    for field in ("classes", "counts", "prior", "weights"):
        np.testing.assert_array_equal(getattr(back, field), getattr(stats, field))
    assert (back.grid, back.lam, back.sigma, back.n_images, back.n_pixels) == (
        8.0, 0.5, 5.0, 1, 2500
    )  # fmt: skip
    ab = np.array([[0.5, -1.0], [60, 60]], np.float32)
    np.testing.assert_array_equal(back.weight_of(ab), stats.weights[quant.hard_encode(ab, C8)])


def test_stats_file_of_wrong_version_or_garbage_is_rejected(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, format=np.array("recolor-rebalance"), version=np.array(7))
    with pytest.raises(RecolorError, match="version 7"):
        rebalance.RebalanceStats.load(path)
    quant.save_classes(path, C8, 8)  # a class file is not a stats file
    with pytest.raises(RecolorError, match="not a rebalance-stats file"):
        rebalance.RebalanceStats.load(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(RecolorError, match="not a rebalance-stats file"):
        rebalance.RebalanceStats.load(path)


def test_a_class_set_with_a_centre_twice_is_refused(tmp_path):
    """Ten copies of (0, 0) made a class set of ten, which split one colour's prior evenly."""
    from recolor_tools.fileio import write_npz

    path = tmp_path / "twice.npz"  # written by hand: save_classes refuses it too
    with open(path, "wb") as f:
        write_npz(f, format=np.array(quant.CLASSES_FORMAT), version=np.array(quant.CLASSES_VERSION),
                  classes=np.zeros((10, 2), np.float32), grid=np.array(8.0))  # fmt: skip
    with pytest.raises(RecolorError, match="classes holds a centre twice"):
        rebalance.load_class_set(path)
    assert len(quant.check_class_file(C8)) == len(C8)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("weights", np.nan, "weights not finite and positive"),
        ("weights", 0.0, "weights not finite and positive"),
        ("prior", np.nan, "a prior that is not a distribution"),
        ("prior", -1.0, "a prior that is not a distribution"),
        ("counts", -5, "counts that are not whole numbers >= 0"),
        ("counts", 2.5, "counts that are not whole numbers >= 0"),  # read as 2, unsaid
        ("sigma", np.nan, "a sigma that is no number >= 0"),
        ("lam", 2.0, "lambda outside"),
        ("grid", np.nan, "a grid that is no positive number"),  # "grid":NaN in targets' JSON
        ("grid", -8.0, "a grid that is no positive number"),
    ],
)
def test_stats_file_with_values_that_would_give_nan_is_rejected(tmp_path, field, value, match):
    """Once trained a model on NaN weights with exit 0 and blamed compare's inputs."""
    acc = rebalance.PriorAccumulator(C8, 8)
    acc.add(np.random.default_rng(3).normal(0, 20, (20, 20, 2)).astype(np.float32))
    path = tmp_path / "stats.npz"
    acc.finish().save(path)
    d = dict(np.load(path))
    d[field] = np.full(d[field].shape, value, type(value) if field == "counts" else d[field].dtype)
    np.savez(path, **d)
    with pytest.raises(RecolorError, match=match) as e:
        rebalance.RebalanceStats.load(path)
    assert str(e.value.path) == str(path)


def test_lambda_zero_with_an_unseen_class_is_refused_not_infinite():
    counts = np.zeros(len(C8))
    counts[0] = 1  # the far classes' smoothed prior underflows: weight 1 / 0
    with pytest.raises(ValueError, match="lambda 0 gives"):
        rebalance.rebalance_weights(counts, C8, lam=0.0, sigma=5.0)
    w = rebalance.rebalance_weights(counts, C8, lam=0.01, sigma=5.0)
    assert np.isfinite(w).all() and (w > 0).all()


@pytest.mark.parametrize("grid", [-1, 0, float("nan")])
def test_a_bad_grid_is_refused_not_saved_with_the_stats(grid):
    """It was saved and read back as the stats' grid (load_class_set then gave -1)."""
    with pytest.raises(ValueError, match="grid must be a positive number"):
        rebalance.PriorAccumulator(C8, grid)


def test_summary_and_plot(tmp_path):
    acc = rebalance.PriorAccumulator(C8, 8)
    acc.add(np.zeros((10, 10, 2), np.float32))
    acc.add(np.full((2, 5, 2), 40.0, np.float32))
    stats = acc.finish()
    text = statsreport.summary(stats)
    assert f"classes: {len(C8)} " in text
    assert "used by the data: 2" in text and "pixels: 110" in text
    out = tmp_path / "plot.png"
    statsreport.plot_stats(stats, out)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > img.shape[0] > 200
    # Two panels side by side, each with a colour map: many distinct colours.
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50


def test_a_plot_of_a_fine_class_set_stays_small():
    """Panels were (256 / grid + 1) x 2 px a side: a class file of grid 0.02 asked for two of
    25,602 px (GBs; out of memory, blamed on -o); the drawn squares stop at 512 a side, and a
    class still shows where it lies."""
    rng = np.random.default_rng(0)
    classes = quant.data_classes(rng.uniform(-60, 60, (2000, 2)).astype(np.float32), 0.02)

    def plot(c: np.ndarray, grid: float) -> np.ndarray:
        acc = rebalance.PriorAccumulator(c, grid)
        acc.add(np.full((4, 4, 2), 30.0, np.float32))
        return statsreport._plot_image(acc.finish())

    img, coarse = plot(classes, 0.02), plot(C8, 8)
    assert img.shape[0] <= 1200 and img.shape[1] <= 2 * 1200
    assert img.shape[0] > coarse.shape[0] // 2  # (a figure, not a speck)


@pytest.mark.parametrize("grid", [8, 10, 50, 0.02])
def test_plot_cells_are_centred_on_the_classes(grid):
    """The cells were spaced 256 / (n - 1): a grid that does not divide 256 was drawn off its
    axis labels (--grid 50's class a = 100 between 55 and 91)."""
    g, lo, n = statsreport.plot_cells(grid)
    hi = lo + (n - 1) * g
    assert lo - g / 2 <= -128 and hi + g / 2 >= 128 and n <= statsreport._PLOT_CELLS
    if g == grid:  # each class k * grid is a cell's centre
        for c in (k * grid for k in range(-int(128 // grid), int(128 // grid) + 1)):
            i = round((c - lo) / g)
            assert 0 <= i < n and abs(lo + i * g - c) < 1e-9, c


def test_a_single_class_is_drawn_in_the_top_colour():
    """One class seen: its log p was scaled to 0 (vmin == vmax), the darkest colour."""
    acc = rebalance.PriorAccumulator(C8, 8)
    acc.add(np.full((4, 4, 2), 40.0, np.float32))
    stats = acc.finish()
    stats.prior[:] = np.where(stats.counts > 0, 1.0, 0.0)  # (no smoothing: one value)
    img = statsreport._plot_image(stats, cell=4)
    top = cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    assert (img.reshape(-1, 3) == top).all(axis=1).any()


def test_a_record_too_large_to_count_is_one_error_and_the_others_count(monkeypatch):
    """A MemoryError while counting a record's a/b (not while reading it) ended the whole run
    with train's "out of memory (smaller sizes or batches need less)", no stats written."""
    from recolor_tools.errors import OutOfMemory

    ab = [np.zeros((8, 8, 2), np.float32), np.zeros((9, 9, 2), np.float32)]
    real = rebalance.PriorAccumulator.add

    def add(self, a):
        if a.shape[0] == 9:
            raise MemoryError
        return real(self, a)

    monkeypatch.setattr(rebalance.PriorAccumulator, "add", add)
    acc, said = rebalance.PriorAccumulator(quant.gamut_classes(10), 10), []
    acc.add_sources([ab[1], ab[0]], on_error=said.append)
    assert acc.n_images == 1 and [e.reason for e in said] == [OutOfMemory().reason]
    with pytest.raises(MemoryError):  # without on_error it stands, as the others do
        acc.add_sources([ab[1]])


def test_an_image_too_large_for_memory_is_one_error_and_the_others_count(tmp_path, monkeypatch):
    """Its MemoryError came back through the reading thread and ended the whole run (no stats,
    a line naming no file); stdin and records already went on without it."""
    from recolor_tools.errors import OutOfMemory

    paths = [write_rgb(tmp_path / f"{n}.png", smooth_image(16, 16, i)) for i, n in enumerate("abc")]
    real = rebalance._file_ab

    def huge(path):
        if path.endswith("b.png"):
            raise MemoryError
        return real(path)

    monkeypatch.setattr(rebalance, "_file_ab", huge)
    said: list = []
    stats = rebalance.compute_stats(paths, quant.gamut_classes(10), 10, on_error=said.append)
    assert stats.n_images == 2
    assert [(type(e), str(e.path)) for e in said] == [(OutOfMemory, str(paths[1]))]


def test_what_the_writers_take_the_readers_read_back(tmp_path):
    """A class set with a centre twice was saved (save_classes, RebalanceStats.save) into a file
    that its own loader refused; now the writers refuse it and write nothing. A grid that is no
    positive number was stored in a target record (NaN failed only when written)."""
    from recolor_tools.records import lab_record

    twice = np.array([[0, 0], [8, 0], [0, 0]], np.float32)
    with pytest.raises(ValueError, match="a centre twice"):
        quant.save_classes(tmp_path / "c.npz", twice, 8)
    with pytest.raises(ValueError, match="a centre twice"):
        rebalance.compute_stats([np.zeros((4, 4, 2), np.float32)], twice, 8)
    good = rebalance.compute_stats([np.zeros((4, 4, 2), np.float32)], twice[:2], 8)
    with pytest.raises(ValueError, match="a centre twice"):
        rebalance.RebalanceStats(**{**vars(good), "classes": twice}).save(tmp_path / "s.npz")
    assert list(tmp_path.iterdir()) == []
    good.save(tmp_path / "s.npz")  # the same stats without the copy are written and read back
    assert rebalance.RebalanceStats.load(tmp_path / "s.npz") == good

    rec = lab_record("a.png", np.zeros((2, 2, 3), np.float32), (2, 2))
    for grid in (-1, 0, "8", float("nan"), True):
        with pytest.raises(ValueError, match="grid must be a positive number"):
            quant.encode_record(rec, quant.gamut_classes(), grid)
    assert quant.encode_record(rec, quant.gamut_classes(), 8).meta["grid"] == 8.0


def test_sources_of_two_kinds_are_one_type_error_in_either_order(tmp_path):
    """A file name first and an array after made the array's text a missing file's name (and
    with on_error it was skipped); one bare array counted its rows as images."""
    path = write_rgb(tmp_path / "a.png", smooth_image(8, 8, 0))
    ab, classes = np.zeros((4, 4, 2), np.float32), quant.gamut_classes(10)
    for sources in ([ab, path], [path, ab], [str(path), ab]):
        with pytest.raises(TypeError, match="mix file names with records or arrays"):
            rebalance.compute_stats(sources, classes, 10, on_error=lambda e: None)
    with pytest.raises(TypeError, match="a list of one"):
        rebalance.compute_stats(ab, classes, 10)
    assert rebalance.compute_stats([ab], classes, 10).n_images == 1
