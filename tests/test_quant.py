"""Colour classes: class sets, exact k-nearest soft encoding, annealed-mean decoding, class files.

The encoders are checked against a brute-force reference (every squared distance in float64,
stable sort), which must agree exactly, ties included; the decoder against the plain numpy
formula of Zhang et al. (softmax(log p / T) then the expectation of the centres).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recolor_tools import quant
from recolor_tools.errors import RecolorError

C8 = np.asarray(quant.gamut_classes(8))


def brute_knn(ab, classes, k, sigma=5.0):
    """Reference: all squared distances in float64, stable sort, Gaussian weights."""
    x = np.asarray(ab, np.float32).reshape(-1, 2).astype(np.float64)
    c = np.asarray(classes, np.float32).astype(np.float64)
    d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    dk = np.take_along_axis(d, idx, axis=1)
    w = np.exp(-(dk - dk[:, :1]) / (2 * sigma**2))  # shifted: same after normalising
    return idx, w / w.sum(1, keepdims=True)


def assert_exact(ab, classes, k, sigma=5.0):
    idx, w = quant.soft_encode(ab, classes, k=k, sigma=sigma)
    ref_idx, ref_w = brute_knn(ab, classes, k, sigma)
    assert idx.dtype == np.int16 and w.dtype == np.float32
    assert idx.shape == (*np.shape(ab)[:-1], k) == w.shape
    np.testing.assert_array_equal(idx.reshape(-1, k), ref_idx)
    np.testing.assert_allclose(w.reshape(-1, k), ref_w, rtol=2e-6, atol=1e-7)
    hard = quant.hard_encode(ab, classes)
    assert hard.dtype == np.int16 and hard.shape == np.shape(ab)[:-1]
    np.testing.assert_array_equal(hard.reshape(-1), ref_idx[:, 0])


@pytest.fixture(params=["threads", "serial"])
def kernel(request, monkeypatch):
    """Run a test with each kernel: the threaded one (large calls) and its serial copy (small
    calls); both have the memo and the lattice path."""
    monkeypatch.setattr(quant.encode, "_SERIAL_MAX", 0 if request.param == "threads" else 1 << 40)
    return request.param


# --- class sets -------------------------------------------------------------------------------


def srgb_ab() -> np.ndarray:
    """a/b of every colour on the surface of the 8-bit RGB cube (the gamut's a/b shadow)."""
    v = np.arange(256, dtype=np.float32) / 255
    u, w = (x.ravel() for x in np.meshgrid(v, v))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            cols = [u, w]
            cols.insert(axis, np.full_like(u, value))
            faces.append(np.stack(cols, 1))
    rgb = np.concatenate(faces)[:, None, :]
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[:, 0, 1:]


@pytest.mark.parametrize(("grid", "lo", "hi"), [(8, 380, 410), (10, 240, 320)])
def test_gamut_class_counts(grid, lo, hi):
    classes = quant.gamut_classes(grid)
    assert classes.dtype == np.float32 and classes.shape[1] == 2
    assert lo <= len(classes) <= hi
    assert len(np.unique(classes, axis=0)) == len(classes)
    np.testing.assert_array_equal(classes % grid, 0)  # centres on the grid
    # Sorted by a, then b.
    order = np.lexsort((classes[:, 1], classes[:, 0]))
    np.testing.assert_array_equal(order, np.arange(len(classes)))


@pytest.mark.parametrize("grid", [8, 10])
def test_gamut_classes_cover_srgb_and_nothing_else(grid):
    classes = quant.gamut_classes(grid).astype(np.float64)
    ab = srgb_ab().astype(np.float64)
    # Every sRGB colour lies in the cell (half-width grid/2 per coordinate) of some class ...
    idx = quant.hard_encode(ab, classes)
    assert np.abs(ab - classes[idx]).max() <= grid / 2 + 1e-9
    # ... and every class is the cell of some sRGB colour (given the above, a colour's nearest
    # centre is its own cell's centre).
    assert np.unique(idx).size == len(classes)


def test_gamut_classes_are_memoised_and_read_only():
    a = quant.gamut_classes(8)
    assert a is quant.gamut_classes(8)
    with pytest.raises(ValueError):
        a[0, 0] = 1.0


def test_a_class_set_from_a_file_runs_the_default_sets_compiled_kernels():
    """A writable class set (read from --classes, --stats or a checkpoint) and the default,
    read-only one were two types to numba: every kernel compiled twice (4.4 s the second)."""
    from recolor_tools.quant import encode

    ab = np.random.default_rng(0).uniform(-60, 60, (300, 2)).astype(np.float32)
    own = C8.copy()
    assert own.flags.writeable
    for classes in (C8, own):
        quant.soft_encode(ab, classes)
        quant.hard_encode(ab, classes)
    assert own.flags.writeable  # the caller's array keeps its flags
    for kernel, at in ((encode._knn_kernel, 2), (encode._nearest_kernel, 1)):
        assert kernel.signatures and not any(sig[at].mutable for sig in kernel.signatures)


def test_data_classes():
    ab = np.array([[1, 2], [3.9, -3.9], [4, 0], [-4, 0], [12, 12], [12.5, 12]], np.float32)
    got = quant.data_classes(ab, grid=8)
    # Half-way values go to the lower centre: 4 -> 0, -4 -> -8, 12 -> 8, 12.5 -> 16.
    assert got.tolist() == [[-8.0, 0.0], [0.0, 0.0], [8.0, 8.0], [16.0, 8.0]]
    assert quant.data_classes(ab, grid=8, min_count=2).tolist() == [[0.0, 0.0]]


def test_data_classes_agree_with_hard_encode_on_the_full_grid():
    rng = np.random.default_rng(3)
    ab = np.round(rng.uniform(-60, 60, (2000, 2)) * 2).astype(np.float32) / 2  # many halves
    grid = np.stack(np.meshgrid(np.arange(-64, 65, 8), np.arange(-64, 65, 8), indexing="ij"), -1)
    full = grid.reshape(-1, 2).astype(np.float32)
    nearest = full[quant.hard_encode(ab, full)]
    np.testing.assert_array_equal(np.unique(nearest, axis=0), quant.data_classes(ab, 8))


# --- exact nearest classes --------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_soft_encode_matches_brute_force_random(k, kernel):
    rng = np.random.default_rng(k)
    ab = rng.normal(0, 40, (3000, 2)).astype(np.float32)
    assert_exact(ab, C8, k)


def test_soft_encode_with_repeated_values(kernel):
    """Repeats (as in 8-bit images) reuse an earlier answer: 20,000 draws of 300 values, far
    more values than chunks so that the memo table sees collisions, and -0.0 beside 0.0."""
    rng = np.random.default_rng(7)
    values = rng.normal(0, 50, (300, 2)).astype(np.float32)
    values[:2] = [[0.0, 5.0], [-0.0, 5.0]]
    ab = values[rng.integers(0, len(values), 20_000)]
    for k in (1, 5):
        assert_exact(ab, C8, k)


def test_soft_encode_on_ties_and_cell_borders(kernel):
    # Centres, half-way points and quarter points of the grid: exact ties everywhere.
    v = np.arange(-120, 121, 2, dtype=np.float32)
    ab = np.stack(np.meshgrid(v, v), -1).reshape(-1, 2)
    for k in (1, 4, 5, 9):
        assert_exact(ab, C8, k)


@pytest.mark.parametrize("k", [1, 5])
def test_soft_encode_on_lookup_table_borders(k):
    table = quant.search._Table(C8, k)
    fine = quant.search._FINE if k == 1 else 1  # k = 1 also looks values up on a finer grid
    i = np.arange(0, table.nx * fine + 1)
    edges = table.x0 + i / (table.inv_s * fine)
    rng = np.random.default_rng(1)
    a = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    b = rng.uniform(-100, 100, a.size)
    assert_exact(np.stack([a, b], 1).astype(np.float32), C8, k)
    assert_exact(np.stack([b, a], 1).astype(np.float32), C8, k)


@pytest.mark.parametrize("k", [2, 5, 8, 16])
def test_lattice_path_on_sub_cell_borders(k, kernel):
    """Points on, just beside and inside the lattice path's sub-cells, all over the gamut."""
    lattice = quant.search._Lattice(C8, k)
    assert lattice.ncu > 0
    rng = np.random.default_rng(k)
    n = 3000
    cell = rng.integers(0, [lattice.ncu, lattice.ncv], (n, 2))
    sub = rng.integers(0, quant.search._SUB + 1, (n, 2)) / quant.search._SUB
    on = (np.array([lattice.lx0, lattice.ly0]) + (cell + sub) / lattice.inv_g).astype(np.float32)
    inside = on + rng.uniform(0, 1 / quant.search._SUB, (n, 2)).astype(np.float32) / lattice.inv_g
    pts = np.concatenate([on, np.nextafter(on, np.inf), np.nextafter(on, -np.inf), inside])
    for sigma in (5.0, 2.0, 40.0):
        assert_exact(pts, C8, k, sigma)


def test_lattice_path_on_a_shifted_lattice_with_holes(kernel):
    """Any square lattice takes the path (spacing 6, origin off zero, six points missing,
    classes in random order), exactly at every sigma, small ones (weights of e^-100 and
    less beside the nearest's 1) included."""
    rng = np.random.default_rng(11)
    i, j = np.meshgrid(np.arange(-9, 10), np.arange(-9, 10), indexing="ij")
    classes = np.stack([3.5 + 6.0 * i.ravel(), -2.0 + 6.0 * j.ravel()], 1).astype(np.float32)
    classes = classes[rng.permutation(len(classes))[6:]]
    assert quant.search._Lattice(classes, 5).inner.mean() > 0.3
    ab = rng.uniform(-60, 60, (4000, 2)).astype(np.float32)
    # Quarter steps of the lattice: exact ties, to be broken by class index, not by position.
    qa, qb = np.meshgrid(3.5 + 1.5 * np.arange(-30, 31), -2.0 + 1.5 * np.arange(-30, 31))
    ab = np.concatenate([ab, np.stack([qa.ravel(), qb.ravel()], 1).astype(np.float32)])
    for k in (2, 5, 7):
        for sigma in (0.5, 5.0, 30.0):
            assert_exact(ab, classes, k, sigma)


def test_lattice_path_covers_most_of_the_gamut():
    """For the default classes and k = 5 the tables are built, and they answer most a/b values:
    nearly all sub-cells have a fixed answer, and the cells around the gamut's centre qualify."""
    lattice = quant.search._Lattice(C8, 5)
    assert lattice.args(1 / (2 * 5.0**2))[8] is lattice.pat  # the path is on
    assert (lattice.pat >= 0).mean() > 0.9
    assert lattice.inner.mean() > 0.3
    assert quant.search._Lattice(C8, 1).ncu == 0  # k = 1 has its own table
    assert quant.search._Lattice(C8, 1).args(0.02)[8] is None  # and the path is compiled out
    off_grid = np.random.default_rng(0).uniform(-50, 50, (40, 2)).astype(np.float32)
    assert quant.search._Lattice(off_grid, 5).ncu == 0


def test_one_class_sub_cells_hold_their_class_everywhere():
    """Where the k = 1 fine grid names a class, brute force agrees at the sub-cell's corners,
    centre and random points inside it; most sub-cells are named."""
    table = quant.search._Table(C8, 1)
    nyf = table.ny * quant.search._FINE
    s = 1.0 / (table.inv_s * quant.search._FINE)
    named = np.flatnonzero(table.one >= 0)
    assert named.size > 0.85 * table.one.size
    rng = np.random.default_rng(3)
    cells = rng.choice(named, 4000, replace=False)
    u = np.concatenate([[[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]], rng.uniform(0, 1, (3, 2))])
    x = table.x0 + s * (cells[:, None] // nyf + u[None, :, 0])
    y = table.y0 + s * (cells[:, None] % nyf + u[None, :, 1])
    pts = np.stack([x, y], -1).reshape(-1, 2)
    ref, _ = brute_knn(pts, C8, 1)
    np.testing.assert_array_equal(ref[:, 0], np.repeat(table.one[cells], len(u)))


def test_soft_encode_at_the_gamut_edge_and_far_outside(kernel):
    rng = np.random.default_rng(2)
    edge = srgb_ab()[::97]
    far = np.concatenate(
        [
            rng.normal(0, 1, (200, 2)) * 1e3,
            rng.normal(0, 1, (50, 2)) * 1e30,
            [[1e38, -1e38], [-3e38, 0], [0, 129], [-129, -129], [127.9, 127.9]],
        ]
    ).astype(np.float32)
    for k in (1, 5):
        assert_exact(edge, C8, k)
        assert_exact(far, C8, k)
    _, w = quant.soft_encode(far, C8)
    assert np.isfinite(w).all()


def test_soft_encode_k_equals_q():
    rng = np.random.default_rng(4)
    ab = rng.normal(0, 50, (40, 2)).astype(np.float32)
    assert_exact(ab, C8, len(C8))
    small = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    assert_exact(ab, small, 3)


def test_soft_encode_on_classes_off_any_grid(kernel):
    rng = np.random.default_rng(5)
    classes = rng.uniform(-100, 100, (57, 2)).astype(np.float32)
    classes[1] = classes[0]  # a duplicate centre: ties between them go to index 0
    ab = np.concatenate([rng.uniform(-130, 130, (2000, 2)), classes[:10]]).astype(np.float32)
    for k in (1, 3, 7):
        assert_exact(ab, classes, k)


def test_repeated_values_reuse_is_exact():
    ab = np.repeat(np.array([[3.0, 4.0], [4.0, 4.0], [4.0, 4.0001]], np.float32), 50, axis=0)
    assert_exact(ab, C8, 5)


# The same 40 cases every run (CI must not pass or fail by draw); the fuzz tests vary with
# RECOLOR_FUZZ_EXAMPLES, not with the seed.
@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    pts=st.lists(
        st.tuples(
            st.floats(-140, 140, width=32) | st.sampled_from([0.0, 4.0, -4.0, 8.0, 12.0]),
            st.floats(-140, 140, width=32) | st.sampled_from([0.0, 4.0, -4.0, 8.0, 12.0]),
        ),
        min_size=1,
        max_size=50,
    ),
    k=st.integers(1, 12),
    sigma=st.floats(0.5, 20),
)
def test_soft_encode_property(pts, k, sigma):
    assert_exact(np.array(pts, np.float32), C8, k, sigma)


def test_soft_encode_shapes_and_weights():
    rng = np.random.default_rng(6)
    ab = rng.normal(0, 30, (4, 5, 6, 2)).astype(np.float32)
    idx, w = quant.soft_encode(ab, C8, k=3)
    assert idx.shape == w.shape == (4, 5, 6, 3)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    assert (np.diff(w, axis=-1) <= 0).all()  # nearest first, so weights do not grow
    empty_idx, empty_w = quant.soft_encode(np.zeros((0, 2), np.float32), C8)
    assert empty_idx.shape == empty_w.shape == (0, 5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_soft_encode_rejects_nan_and_inf(bad):
    ab = np.zeros((3, 3, 2), np.float32)
    ab[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        quant.soft_encode(ab, C8)
    with pytest.raises(ValueError, match="NaN or infinite"):
        quant.hard_encode(ab, C8)


def test_nan_and_inf_found_anywhere_by_either_kernel(kernel):
    """The kernels themselves find non-finite values (soft_encode does not scan for them first):
    in a or b, repeated (a repeat is answered from the memo), with another NaN's bits, among
    many finite values, in any chunk; the message counts them all."""
    rng = np.random.default_rng(5)
    neg_nan = np.array([0xFFC00001], np.uint32).view(np.float32)[0]
    n = 20_000 if kernel == "threads" else 3_000
    for bad in (np.float32(np.nan), neg_nan, np.float32(np.inf), np.float32(-np.inf)):
        for where in (0, n // 2, n - 1):
            ab = rng.integers(-40, 40, (n, 2)).astype(np.float32)  # repeats: memo hits
            ab[where, where % 2] = bad
            ab[n // 3] = ab[where]  # the same bits again
            for fn in (quant.soft_encode, quant.hard_encode):
                with pytest.raises(ValueError, match="ab contains 2 NaN or infinite values"):
                    fn(ab, C8)


@pytest.mark.parametrize(
    ("ab", "classes", "kw", "match"),
    [
        (np.zeros((3, 3)), C8, {}, r"\(\.\.\., 2\)"),
        (np.zeros((3, 2)), np.zeros((3, 3)), {}, "classes"),
        (np.zeros((3, 2)), C8, {"k": 0}, "k must be"),
        (np.zeros((3, 2)), C8[:3], {"k": 4}, "k must be"),
        (np.zeros((3, 2)), C8, {"sigma": 0.0}, "sigma"),
    ],
)
def test_soft_encode_rejects_bad_arguments(ab, classes, kw, match):
    with pytest.raises(ValueError, match=match):
        quant.soft_encode(ab, classes, **kw)


# --- decoding ---------------------------------------------------------------------------------


def numpy_annealed_mean(p, classes, T, axis=-1):
    """Zhang et al.'s formula, in float64: softmax(log p / T) @ centres."""
    p = np.moveaxis(np.asarray(p, np.float64), axis, -1)
    with np.errstate(divide="ignore"):
        s = np.log(p) / T
    s -= s.max(-1, keepdims=True)
    e = np.exp(s)
    return (e / e.sum(-1, keepdims=True)) @ np.asarray(classes, np.float64)


def peaky_scores(shape, classes, seed=0):
    """Network-like class probabilities: a bump around a random colour per pixel, plus noise."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 30, (*shape, 2))
    d2 = ((centre[..., None, :] - classes) ** 2).sum(-1)
    logits = -d2 / (2 * 10.0**2) + rng.normal(0, 0.5, d2.shape)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("T", [1.0, 0.38, 0.1])
def test_annealed_mean_matches_numpy_formula(T):
    p = peaky_scores((6, 7), C8)
    got = quant.annealed_mean(p, C8, T)
    assert got.dtype == np.float32 and got.shape == (6, 7, 2)
    np.testing.assert_allclose(got, numpy_annealed_mean(p, C8, T), atol=2e-4, rtol=0)


def test_annealed_mean_of_flat_scores_and_zero_probabilities():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, (50, len(C8))).astype(np.float32)
    p[:, ::3] = 0.0  # impossible classes
    np.testing.assert_allclose(
        quant.annealed_mean(p, C8), numpy_annealed_mean(p, C8, 0.38), atol=2e-4
    )


def test_annealed_mean_logits_and_class_axis():
    p = peaky_scores((2, 5, 6), C8, seed=2)  # (B, H, W, Q)
    want = numpy_annealed_mean(p, C8, 0.38)
    with np.errstate(divide="ignore"):
        z = np.log(p) + 3.0  # logits up to a constant
    bq = np.ascontiguousarray(np.moveaxis(z, -1, 1))  # (B, Q, H, W) like a network
    np.testing.assert_allclose(quant.annealed_mean(bq, C8, axis=1, logits=True), want, atol=2e-4)
    np.testing.assert_allclose(quant.annealed_mean(z, C8, logits=True), want, atol=2e-4)
    np.testing.assert_allclose(
        quant.annealed_mean(np.moveaxis(p, -1, 1), C8, axis=1), want, atol=2e-4
    )
    # A class axis longer than one block of the kernel, and pixels not a multiple of it.
    wide = np.moveaxis(peaky_scores((3, 150), C8, seed=3), -1, 1)
    np.testing.assert_allclose(
        quant.annealed_mean(wide, C8, axis=1),
        numpy_annealed_mean(wide, C8, 0.38, axis=1),
        atol=2e-4,
    )


def test_annealed_mean_over_several_blocks_of_pixels():
    # 900 pixels: the kernels' blocks of 256 pixels, the last one partly filled, both layouts.
    p = peaky_scores((3, 300), C8, seed=6)
    p[0, :, ::4] = 0.0
    want = numpy_annealed_mean(p, C8, 0.38)
    with np.errstate(divide="ignore"):
        z = np.log(p)
    for axis in (-1, 1):
        for scores, logits in ((p, False), (z, True)):
            x = np.ascontiguousarray(np.moveaxis(scores, -1, axis))
            got = quant.annealed_mean(x, C8, axis=axis, logits=logits)
            np.testing.assert_allclose(got, want, atol=2e-4)


def test_annealed_mean_classes_last_on_edge_values():
    # With the classes last, the largest score comes from integer order keys of the float bits:
    # NaNs of either sign, infinities, -0.0 and subnormals must be judged as the float tests do.
    p = peaky_scores((8,), C8, seed=8)
    p[0, ::2] = -0.0  # allowed, as 0
    p[1, 1::2] = 1e-40  # subnormal: weight (1e-40 / p_max)^(1/T), nothing
    p[2, :] = 0.0
    p[2, 9] = 1e-40  # a subnormal largest: its class
    want = numpy_annealed_mean(np.abs(p), C8, 0.38)
    want[2] = C8[9]
    for axis in (-1, 1):
        x = np.ascontiguousarray(np.moveaxis(p, -1, axis))
        np.testing.assert_allclose(quant.annealed_mean(x, C8, axis=axis), want, atol=2e-4)
    neg_nan = np.array([0xFFC00000], np.uint32).view(np.float32)[0]
    for logits in (False, True):
        for bad in (neg_nan, np.float32(np.nan), np.float32(np.inf)):
            x = p[3:].copy()
            x[2, 100] = bad
            with pytest.raises(ValueError, match="1 pixel"):
                quant.annealed_mean(x, C8, logits=logits)
    z = np.full((3, len(C8)), -np.inf, np.float32)
    z[0, 5] = -1e30  # the only finite logit
    z[1, :7] = np.arange(7)
    z[2] = 0.0
    got = quant.annealed_mean(z, C8, logits=True)
    np.testing.assert_allclose(got[0], C8[5])
    np.testing.assert_allclose(got[1], numpy_annealed_mean(np.exp(z[1]), C8, 0.38), atol=2e-4)
    np.testing.assert_allclose(got[2], C8.astype(np.float64).mean(0), atol=2e-4)


def test_annealed_mean_of_many_classes_and_one():
    # More classes than one float32 sum of the classes-last kernel holds, off any grid.
    rng = np.random.default_rng(9)
    cls = rng.uniform(-110, 110, (1500, 2)).astype(np.float32)
    p = peaky_scores((2, 37), cls, seed=9)
    want = numpy_annealed_mean(p, cls, 0.38)
    for axis in (-1, 1):
        x = np.ascontiguousarray(np.moveaxis(p, -1, axis))
        np.testing.assert_allclose(quant.annealed_mean(x, cls, axis=axis), want, atol=2e-4)
    one = np.array([[3.0, -4.0]], np.float32)
    got = quant.annealed_mean(np.full((5, 1), 0.25, np.float32), one)
    np.testing.assert_array_equal(got, np.repeat(one, 5, 0))


def test_annealed_mean_of_probabilities_leaves_the_input_alone():
    # Probabilities are turned into logs inside the kernels; the caller's array (or a float64
    # or list input converted to float32) must be left as it was.
    p = peaky_scores((5, 7), C8, seed=7)
    p[:, :, ::5] = 0.0
    want = numpy_annealed_mean(p, C8, 0.38)
    for scores, axis in ((p, -1), (np.moveaxis(p, -1, 1).copy(), 1)):
        for x in (scores, scores.astype(np.float64), scores.tolist()):
            before = np.array(x, copy=True)
            got = quant.annealed_mean(x, C8, axis=axis)
            np.testing.assert_allclose(got, want, atol=2e-4)
            np.testing.assert_array_equal(np.asarray(x), before)


def test_annealed_mean_at_t1_is_the_plain_mean():
    p = peaky_scores((10,), C8, seed=4)
    want = (p / p.sum(-1, keepdims=True)).astype(np.float64) @ C8.astype(np.float64)
    np.testing.assert_allclose(quant.annealed_mean(p, C8, T=1.0), want, atol=2e-4)


def test_annealed_mean_tends_to_the_mode():
    p = peaky_scores((20, 3), C8, seed=5)
    mode = quant.mode(p, C8)
    np.testing.assert_array_equal(mode, C8[np.argmax(p, -1)])
    top2 = np.sort(p, -1)[..., -2:]
    clear = top2[..., 0] < 0.9 * top2[..., 1]  # no near-tie: 0.9^(1/T) vanishes
    assert clear.sum() > 40
    np.testing.assert_allclose(quant.annealed_mean(p, C8, T=1e-3)[clear], mode[clear], atol=1e-4)
    z = np.moveaxis(np.log(np.maximum(p, 1e-30)), -1, 0)
    np.testing.assert_array_equal(quant.mode(z, C8, axis=0), mode)
    # Down to T_MODE, in both layouts: with the classes last, a rounding of the largest
    # probability's exponent, times 1/T, gave the plain mean or garbage from T = 1e-8 down.
    mid = np.ascontiguousarray(np.moveaxis(p, -1, 1))  # (20, Q, 3)
    for T in (1e-6, 1e-10, 1e-20, 1e-30):
        last = quant.annealed_mean(p, C8, T=T)
        np.testing.assert_allclose(last[clear], mode[clear], atol=1e-4, err_msg=f"T={T}")
        np.testing.assert_allclose(last, quant.annealed_mean(mid, C8, T=T, axis=1), atol=1e-4)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_annealed_mean_rejects_nan_and_inf(bad):
    p = peaky_scores((4,), C8)
    p[2, 7] = bad
    with pytest.raises(ValueError, match="1 pixel"):
        quant.annealed_mean(p, C8)
    with pytest.raises(ValueError, match="1 pixel"):
        quant.annealed_mean(np.moveaxis(p, -1, 0), C8, axis=0, logits=True)
    with pytest.raises(ValueError, match="NaN"):
        quant.mode(p, C8)


def test_annealed_mean_rejects_bad_probabilities():
    p = peaky_scores((3,), C8)
    p[1] = 0.0
    with pytest.raises(ValueError, match="all zero"):
        quant.annealed_mean(p, C8)
    p[1, 0] = -0.1
    with pytest.raises(ValueError, match="negative"):
        quant.annealed_mean(p, C8)
    with pytest.raises(ValueError, match="negative"):
        quant.annealed_mean(p.T[None], C8, axis=1)  # (B, Q, H*W) layout
    z = np.full((2, len(C8)), -np.inf, np.float32)
    with pytest.raises(ValueError, match="2 pixel"):
        quant.annealed_mean(z, C8, logits=True)


@pytest.mark.parametrize(
    ("shape", "kw", "match"),
    [((4, 10), {}, "classes on axis"), ((4, len(C8)), {"axis": 2}, "out of range")],
)
def test_annealed_mean_rejects_bad_shapes(shape, kw, match):
    with pytest.raises(ValueError, match=match):
        quant.annealed_mean(np.ones(shape, np.float32), C8, **kw)
    with pytest.raises(ValueError, match="temperature"):
        quant.annealed_mean(np.ones((2, len(C8))), C8, T=0.0)


def test_polynomial_exp2_and_log2_against_numpy():
    import numba

    @numba.njit
    def exp2(y):
        f = np.empty_like(y)
        bits = np.empty(y.size, np.int32)
        quant.decode._exp2_split(y, np.zeros_like(y), np.float32(1.0), f, bits)
        scale = bits.view(np.float32)
        return np.array([quant.decode._exp2_poly(f[j]) * scale[j] for j in range(y.size)])

    y = np.linspace(-64, 0, 100001).astype(np.float32)
    np.testing.assert_allclose(exp2(y), np.exp2(y.astype(np.float64)), rtol=3e-7, atol=0)
    assert (exp2(np.array([-70, -1e30, -np.inf], np.float32)) == np.float32(2.0**-64)).all()

    @numba.njit
    def log2(x):
        out = np.empty_like(x)
        mbits = np.empty(x.size, np.int32)
        quant.decode._log2_row(x, x.view(np.int32), mbits, mbits.view(np.float32), out)
        return out

    x = np.concatenate([np.geomspace(1e-37, 1e37, 100001), [0.5, 1, 2, np.sqrt(2)]])
    x = x.astype(np.float32)
    np.testing.assert_allclose(log2(x), np.log2(x.astype(np.float64)), rtol=1e-7, atol=3e-7)
    # Every float32 mantissa: the polynomial's bound on [1, 2).
    m = (np.arange(1 << 23, dtype=np.int32) | np.int32(0x3F800000)).view(np.float32)
    np.testing.assert_allclose(log2(m), np.log2(m.astype(np.float64)), rtol=0, atol=1.3e-7)
    assert log2(np.zeros(3, np.float32)).tolist() == [-np.inf] * 3


def test_polynomial_exp_of_the_weights_against_numpy():
    """The soft-encoding weights' exp (float64, no libm): relative error < 3e-10 on [-693, 0],
    the same at integer multiples of ln 2, 2^-1000 below (0 to float32)."""
    import numba

    @numba.njit
    def exp(x):
        return np.array([quant.encode._exp_neg(v) for v in x])

    x = -np.concatenate([np.linspace(0, 50, 200001), np.geomspace(1e-12, 693, 10001)])
    np.testing.assert_allclose(exp(x), np.exp(x), rtol=3e-10, atol=0)
    n = np.arange(0, 60)
    np.testing.assert_allclose(exp(-n * np.log(2.0)), 2.0**-n, rtol=3e-10, atol=0)
    assert exp(np.array([0.0]))[0] == pytest.approx(1.0, rel=3e-10)
    np.testing.assert_allclose(
        exp(np.array([-694.0, -1e5, -1e300, -np.inf])), 2.0**-1000, rtol=3e-10
    )


# --- class files ------------------------------------------------------------------------------


def test_class_file_round_trip(tmp_path):
    path = tmp_path / "classes.npz"
    quant.save_classes(path, C8, 8)
    classes, grid = quant.load_classes(path)
    np.testing.assert_array_equal(classes, C8)
    assert grid == 8.0 and classes.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["classes.npz"]  # no temp file left


def test_class_file_of_wrong_version_or_kind_is_rejected(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, format=np.array("recolor-classes"), version=np.array(2), classes=C8, grid=8.0)
    with pytest.raises(RecolorError, match="version 2") as e:
        quant.load_classes(path)
    assert e.value.path == str(path)  # as newer checkpoints and records are said:
    assert e.value.reason.endswith("newer than this recolor reads (1); upgrade recolor")
    np.savez(path, format=np.array("something-else"), version=np.array(1), classes=C8, grid=8.0)
    with pytest.raises(RecolorError, match="format tag"):
        quant.load_classes(path)
    np.savez(path, format=np.array("recolor-classes"), version=np.array(1), classes=C8)
    with pytest.raises(RecolorError, match="lacks grid"):
        quant.load_classes(path)
    np.savez(
        path, format=np.array("recolor-classes"), version=np.array(1), classes=C8[:, :1], grid=8
    )
    with pytest.raises(RecolorError, match="invalid class set"):
        quant.load_classes(path)


def test_class_file_garbage_and_pickles_are_rejected(tmp_path):
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(RecolorError, match="not a class-set file"):
        quant.load_classes(garbage)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, format=np.array("recolor-classes"), version=np.array(1),
             classes=np.array([object()], dtype=object), grid=8.0)  # fmt: skip
    with pytest.raises(RecolorError):
        quant.load_classes(pickled)
    with pytest.raises(RecolorError, match="no such file"):
        quant.load_classes(tmp_path / "missing.npz")


def test_class_file_members_are_checked_before_they_are_read(tmp_path):
    """A member whose npy header numpy's tokenizer chokes on was "internal error: TokenError"
    naming no file; every member was loaded, wanted or not, whatever size it declared (a zip
    of 400 KB expanded to 400 MB)."""
    import io
    import struct
    import zipfile

    def npz(path, **members):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for k, v in members.items():
                if isinstance(v, bytes):
                    z.writestr(f"{k}.npy", v)
                else:
                    b = io.BytesIO()
                    np.save(b, v)
                    z.writestr(f"{k}.npy", b.getvalue())
        return path

    good = {"format": np.array("recolor-classes"), "version": np.array(1), "grid": np.array(8.0)}
    bad_header = b"\x93NUMPY\x01\x00" + struct.pack("<H", 10) + b"{'descr': "
    huge = np.lib.format.header_data_from_array_1_0(np.zeros((1, 2)))
    huge["shape"] = (10**9, 2)  # 16 GB declared, 8 bytes given
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, huge)
    for classes in (bad_header, b.getvalue() + bytes(8)):
        path = npz(tmp_path / "c.npz", **good, classes=classes)
        with pytest.raises(RecolorError, match="not a class-set file") as e:
            quant.load_classes(path)
        assert e.value.path == str(path)
    # a member the file has no use for is not read at all (here it could not be)
    path = npz(tmp_path / "c.npz", **good, classes=C8, extra=bad_header)
    cs, grid = quant.load_classes(path)
    np.testing.assert_array_equal(cs, C8)


@pytest.mark.parametrize(
    ("fill", "logits", "match"),
    [
        (-np.inf, True, "all -inf|NaN or infinite logits"),
        (-np.inf, None, "all -inf|must not be negative"),
        (-1.0, False, "must not be negative"),
        (0.0, False, "all zero"),
    ],
)
def test_mode_refuses_what_annealed_mean_refuses(fill, logits, match):
    """A pixel with no possible class (all -inf logits), negative probabilities or all-zero
    probabilities: mode once gave class 0 where annealed_mean raised."""
    z = peaky_scores((3, 4), C8)
    z[1, 2] = fill
    with pytest.raises(ValueError, match=match):
        quant.mode(np.moveaxis(z, -1, 0), C8, axis=0, logits=logits)
    with pytest.raises(ValueError, match=match):
        quant.annealed_mean(z, C8, logits=bool(logits))
    ok = peaky_scores((3, 4), C8)  # valid scores still decode, with either flag
    for flag in (None, True, False):
        np.testing.assert_array_equal(quant.mode(ok, C8, logits=flag), C8[np.argmax(ok, -1)])


def test_mode_takes_masked_and_negative_logits():
    z = np.log(peaky_scores((5,), C8, seed=2) + np.float32(1e-30))
    z[:, ::3] = -np.inf  # masked classes, as annealed_mean(logits=True) allows
    want = C8[np.argmax(z, -1)]
    np.testing.assert_array_equal(quant.mode(z, C8, logits=True), want)
    np.testing.assert_array_equal(quant.mode(z, C8), want)


def test_half_way_values_go_to_the_lower_centre_as_documented():
    """gamut_classes' cells are (c - g/2, c + g/2]: binning and hard_encode both send a value
    half-way between two centres to the lower one."""
    from recolor_tools.quant.classes import _bin

    np.testing.assert_array_equal(
        _bin(np.array([[4.0, -4.0], [12.0, 3.999]]), 8), [[0, -1], [1, 0]]
    )
    two = np.array([[0.0, 0.0], [8.0, 0.0]], np.float32)
    assert quant.hard_encode(np.array([[4.0, 0.0]]), two)[0] == 0
    assert "(c - grid/2, c + grid/2]" in quant.gamut_classes.__doc__


def test_hard_encode_rounds_float64_input_to_float32_as_documented():
    """Documented: ab is rounded to float32 before the float64 distances, so a float64 value
    just above half-way (4 + 1e-12) goes where its float32 rounding (4.0) does."""
    two = np.array([[0.0, 0.0], [8.0, 0.0]], np.float32)
    ab = np.array([[4.0 + 1e-12, 0.0], [4.0 + 1e-3, 0.0]])
    np.testing.assert_array_equal(quant.hard_encode(ab, two), [0, 1])
    np.testing.assert_array_equal(
        quant.hard_encode(ab, two), quant.hard_encode(ab.astype(np.float32), two)
    )
    assert "rounded to float32" in quant.hard_encode.__doc__
