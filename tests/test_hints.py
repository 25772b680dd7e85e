"""Guided recolouring: the decode that mixes hints and palettes in, and their parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hint_helpers import SHIPPED

from recolor_tools import checkpoints, guide, hints, models, palettes, quant
from recolor_tools.errors import RecolorError

# --- the decode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [0.38, 1.0, 0.05])
def test_torch_decode_equals_the_numba_kernel(T):
    g = torch.Generator().manual_seed(3)
    classes = torch.from_numpy(quant.gamut_classes(8).copy())
    z = torch.randn(2, len(classes), 5, 7, generator=g) * 4
    got = models.decode(z, classes, T).permute(0, 2, 3, 1).numpy()
    want = quant.annealed_mean(z.numpy(), classes.numpy(), T, axis=1, logits=True)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    mode = models.decode(z, classes, 0).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(mode, quant.mode(z.numpy(), classes.numpy(), axis=1))
    tiny = models.decode(z, classes, 1e-300).permute(0, 2, 3, 1).numpy()  # z / T: inf, once NaN
    np.testing.assert_array_equal(tiny, mode)
    np.testing.assert_allclose(quant.annealed_mean(z.numpy(), classes.numpy(), 1e-30, axis=1,
                                                   logits=True), mode, atol=1e-4)  # fmt: skip
    with pytest.raises(ValueError, match="1e-30"):
        quant.annealed_mean(z.numpy(), classes.numpy(), 1e-31, axis=1, logits=True)
    reg = torch.rand(1, 2, 3, 4) * 2 - 1
    np.testing.assert_array_equal(models.decode(reg, None).numpy(), reg.numpy() * 128)


def test_point_hints_mix_into_the_distribution_where_they_reach():
    """At its own cell a hint's share is 1 (the cell decodes to the hint's colour, whatever the
    network said); a cell no hint reaches keeps its log-distribution bit for bit; two hints
    that reach a cell fully share it and leave none of the network's distribution; given the
    prior, a hint takes almost no share of a cell where the network is sure of another colour."""
    from recolor_tools import guide

    classes = torch.from_numpy(quant.gamut_classes(10).copy())
    logp = torch.log_softmax(torch.randn(1, len(classes), 2, 3) * 3, dim=1)
    feats = torch.zeros(1, 2, 2, 3)
    feats[0, 0, 0, :2] = 1  # cells 0 and 1 look alike; the rest are orthogonal to them
    feats[0, 1, 0, 2] = feats[0, 1, 1, :] = 1
    red = torch.tensor([[[60.0, 40.0]]])
    out = guide.point_mix(logp, feats, torch.tensor([[0]]), red, classes, gamma=4.0)
    ab = models.decode(out, classes)[0, :, 0, :2].T
    assert (ab - red[0]).norm(dim=1).max() < 3  # its cell and the look-alike one, forced
    torch.testing.assert_close(out[..., 0, 2:], logp[..., 0, 2:], rtol=0, atol=0)
    torch.testing.assert_close(out[..., 1, :], logp[..., 1, :], rtol=0, atol=0)
    two = torch.tensor([[[60.0, 40.0], [-40.0, 50.0]]])
    out = guide.point_mix(logp, feats, torch.tensor([[0, 1]]), two, classes, gamma=4.0)
    p = out[0, :, 0, 0].exp()
    q = guide.soft_histogram(two[0], torch.ones(2), classes)
    near = math.exp(-1 / (2 * guide.RADIUS**2 * (2**2 + 3**2)))  # the other hint, 1 cell away
    torch.testing.assert_close(p, (q[0] + near * q[1]) / (1 + near), rtol=0, atol=1e-6)
    assert torch.equal(guide.point_mix(logp, feats, torch.tensor([[0]]), red, classes, 0.0), logp)
    # With a prior: where the network is sure of another colour, the hint takes a smaller share.
    sure = logp.clone()
    sure[0, :, 0, 1] = -50
    sure[0, int(torch.cdist(torch.tensor([[-40.0, 50.0]]), classes).argmin()), 0, 1] = 0
    flat = torch.ones(len(classes))
    plain, damped = (
        guide.point_mix(sure, feats, torch.tensor([[0]]), red, classes, 1.0, prior)
        for prior in (None, flat)
    )
    on_red = guide.soft_histogram(red[0], torch.ones(1), classes)[0] > 0
    share = [o[0, on_red, 0, 1].exp().sum() for o in (plain, damped)]  # the hint's share there
    assert share[0] > 0.5 and share[1] < 0.01


def test_shipped_checkpoint_loads_with_its_classes():
    model, ckpt = checkpoints.load_checkpoint(SHIPPED, "cls")
    np.testing.assert_array_equal(model.classes.numpy(), ckpt["classes"].numpy())
    assert "classes" not in model.state_dict()  # kept beside the weights, as before
    x = torch.rand(1, 1, 32, 40) * 100
    with torch.inference_mode():
        out, _ = model(x)
        np.testing.assert_array_equal(model.head_out(model.features(x)).numpy(), out.numpy())


# --- parsing -------------------------------------------------------------------------------------


def test_soft_histogram_is_the_soft_encoding_of_the_training_targets():
    """guide.soft_histogram (torch, for hints and palettes) gives each value the classes and
    weights quant.soft_encode gives it, also where the 5th and 6th nearest centres are equally
    far (integer a/b on the 8-unit grid: topk broke those ties another way, 0.08 off)."""
    classes = quant.gamut_classes(8)
    a, b = np.meshgrid(np.arange(-40, 41, 2), np.arange(-40, 41, 2))
    ab = np.stack([a.ravel(), b.ravel()], 1).astype(np.float32)
    idx, w = quant.soft_encode(ab, classes)
    want = np.zeros((len(ab), len(classes)))
    np.put_along_axis(want, idx.astype(np.int64), w, axis=1)
    got = guide.soft_histogram(torch.from_numpy(ab), torch.ones(len(ab)), torch.tensor(classes))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_a_palette_is_encoded_once_for_all_the_images_it_steers(monkeypatch):
    """``predict --palette IMAGE`` steers every input with the same few thousand colours: their
    class histogram is encoded once (0.15-0.2 s each time), and a caller may change its copy."""
    calls = []
    encode = guide.soft_histogram
    monkeypatch.setattr(guide, "soft_histogram", lambda *a: calls.append(1) or encode(*a))
    classes = torch.tensor(quant.gamut_classes(8))
    rng = np.random.default_rng(0)
    ab = rng.uniform(-60, 60, (500, 2)).astype(np.float32)
    w = np.full(500, 1 / 500, np.float32)
    first = guide.histogram_of(ab, w, classes)
    first[:] = 0  # the caller's own copy
    again = guide.histogram_of(ab.copy(), w.copy(), classes)
    assert len(calls) == 1 and torch.isclose(again.sum(), torch.tensor(1.0))
    other = guide.histogram_of(ab[:100], w[:100] * 5, classes)  # another palette: its own
    assert len(calls) == 2 and not torch.equal(other, again)
    guide.histogram_of(ab, w, classes + 1)  # other classes (another model): encoded again
    assert len(calls) == 3


def test_colours_points_and_palettes_parse():
    np.testing.assert_allclose(hints.parse_color("#808080"), [0, 0], atol=0.01)
    np.testing.assert_allclose(hints.parse_color("f00"), hints.parse_color("#ff0000"))
    assert hints.parse_color("#ff0000")[0] > 50  # red: large positive a
    h = hints.parse_hint("10,50%=#00ff00")
    assert h.resolve(40, 30).xy.tolist() == [[10, 20]]
    assert hints.parse_hint("100%,100%=#00ff00").resolve(40, 30).xy.tolist() == [[29, 39]]
    # floor(p W / 100) exactly: (p / 100) W rounds 29% of 100 to 28.999... (28), one pixel low
    assert hints.resolve_points([("29%", "57%")], 100, 100) == [(29, 57)]
    # and of the decimal as written: 65.1 * 1000 / 100 is 650.99999999999994 in binary
    assert hints.resolve_points([("65.1%", "32.55%"), ("9.45%", "0.1%")], 4000, 1000) == [
        (651, 1302),
        (94, 4),
    ]
    # up to 100% is inside, also where its binary product rounds to one past the last pixel
    assert hints.resolve_points([("99.99999999999999%", "100%")], 10, 1000) == [(999, 9)]
    pal = palettes.palette_from_list("#e63946, #f1faee:0.5,#1d3557")
    np.testing.assert_allclose(pal.palette_w, [0.4, 0.2, 0.4])  # relative, summing to 1
    # --palette: the '#' optional, as in --hint (without any, it was taken for a missing file)
    bare = palettes.parse_palette("e63946,f1faee:0.5, 1d3557")
    np.testing.assert_array_equal(bare.palette_ab, pal.palette_ab)
    np.testing.assert_array_equal(bare.palette_w, pal.palette_w)
    with pytest.raises(RecolorError, match="no such file"):
        palettes.parse_palette("no/such/poster.jpg")
    for bad in ("10,20", "10=#fff", "a,b=#fff", "1,2=#ggg", "1,2=red"):
        with pytest.raises(ValueError):
            hints.parse_hint(bad)
    bad_lists = (
        "#fff:0",
        "#fff:-1",
        ",",
        "#12345",
        "#fff:nan",
        "#fff:1e-300",
        "#fff:1e39",
        "#f00:",
    )
    for bad in bad_lists:  # "#f00:": a weight left out by mistake, not 1
        with pytest.raises(ValueError):
            palettes.palette_from_list(bad)
    with pytest.raises(RecolorError, match="outside"):
        hints.parse_hint("30,0=#fff").resolve(40, 30)


def test_hints_refuse_nan_points_and_bad_strengths():
    """A NaN pixel coordinate became int64's minimum, and a strength of -1, NaN or inf gave the
    strength-0 output: the library refuses them, as the CLI does."""
    ab, size = np.zeros((1, 2), np.float32), np.ones(1, np.int32)
    with pytest.raises(ValueError, match="coordinate nan is not a number"):
        hints.Hints(np.array([[np.nan, 1.0]]), ab, size)
    for strength in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="hint strength must be a number from 0"):
            hints.Hints(strength=strength)
    assert hints.Hints(np.array([[2.5, 1.0]]), ab, size).resolve(4, 4).xy.tolist() == [[2, 1]]


def test_points_gather_per_output_cell_and_paste_their_squares():
    h = hints.point(0, 0, "#ff0000") + hints.point(1, 1, "#0000ff", size=3)
    h = h + hints.point(39, 19, "#00ff00")
    h = h.resolve(20, 40)
    cell, ab = h.cells((20, 40), 4, (5, 10))
    assert cell.tolist() == [0, 49]
    # blue's 3x3 square at (1, 1) covers red at (0, 0), given before it: blue alone there
    np.testing.assert_allclose(ab[0], hints.parse_color("#0000ff"), atol=1e-4)
    later = (hints.point(1, 1, "#0000ff", size=3) + hints.point(0, 0, "#ff0000")).resolve(20, 40)
    want = (hints.parse_color("#ff0000") + 8 * hints.parse_color("#0000ff")) / 9  # by pixels shown
    np.testing.assert_allclose(later.cells((20, 40), 4, (5, 10))[1][0], want, atol=1e-4)
    canvas = np.zeros((20, 40, 2), np.float32)
    h.paste(canvas[3:10], 3)  # a strip that holds none of them
    assert not canvas.any()
    h.paste(canvas, 0)
    assert (np.abs(canvas).sum(-1) > 0).sum() == 9 + 1  # blue's 3x3 covers red at (0, 0)
    np.testing.assert_array_equal(canvas[2, 2], hints.parse_color("#0000ff"))
    # given later, a one-pixel point inside a square wins there, in whole or in strips
    detail = (hints.point(5, 5, "#0000ff", size=3) + hints.point(5, 5, "#ff0000")).resolve(20, 40)
    for strips in ([(0, 20)], [(0, 5), (5, 6), (6, 20)]):
        canvas = np.zeros((20, 40, 2), np.float32)
        for a, b in strips:
            detail.paste(canvas[a:b], a)
        np.testing.assert_array_equal(canvas[5, 5], hints.parse_color("#ff0000"))
        np.testing.assert_array_equal(canvas[4, 4], hints.parse_color("#0000ff"))


def test_a_painted_layer_joins_points_given_in_percent():
    """A layer's integer pixels and a --hint in percent are one set of points, resolved
    together; pasted strip by strip, of two points on one pixel the later wins."""
    red, blue = hints.parse_color("#ff0000"), hints.parse_color("#0000ff")
    layer = hints.Hints(
        np.array([[3, 4], [0, 9], [3, 4]]), np.stack([red, red, blue]), np.ones(3, int)
    )
    h = (hints.Hints() + layer + hints.parse_hint("50%,100%=#00ff00")).resolve(10, 8)
    assert h.xy.dtype == np.int64 and h.xy.tolist() == [[3, 4], [0, 9], [3, 4], [4, 9]]
    strip = np.zeros((2, 8, 2), np.float32)  # rows 8 and 9
    h.paste(strip, 8)
    np.testing.assert_array_equal(strip[1, 0], red)
    np.testing.assert_allclose(strip[1, 4], hints.parse_color("#00ff00"))
    assert (np.abs(strip).sum(-1) > 0).sum() == 2
    canvas = np.zeros((10, 8, 2), np.float32)
    h.paste(canvas, 0)
    np.testing.assert_array_equal(canvas[4, 3], blue)  # the later of two points at (3, 4)
    strong = hints.Hints(strength=8.0) + h
    assert strong.strength == 8.0 and (strong + hints.Hints(strength=1.0)).strength == 1.0
    with pytest.raises(RecolorError, match=r"hint point \(8, 0\) is outside the 8x10 image"):
        hints.Hints(np.array([[1, 1], [8, 0]]), np.zeros((2, 2)), np.ones(2, int)).resolve(10, 8)
    with pytest.raises(RecolorError, match=r"hint point \(12.5%, 100.5\) is outside"):
        hints.Hints([("12.5%", "100.5")], np.zeros((1, 2)), np.ones(1, int)).resolve(10, 8)


def test_paste_is_the_points_painted_in_order_in_any_strip():
    """Each square searched the one-pixel points given after it (squares x points work: 65 s
    for 400,000 points of sizes 1 and 2); what it writes must stay the points painted one by
    one, in order, the later winning, over any strip of rows."""
    rng = np.random.default_rng(7)
    H, W, n = 23, 31, 400
    xy = np.stack([rng.integers(0, W, n), rng.integers(0, H, n)], axis=1)
    ab = rng.uniform(-100, 100, (n, 2)).astype(np.float32)
    size = rng.choice([1, 1, 1, 2, 3, 5], n).astype(np.int32)
    given = hints.Hints(xy.tolist(), ab, size).resolve(H, W)
    want, owner = np.zeros((H, W, 2), np.float32), np.full((H, W), -1)
    for i, ((x0, y0, x1, y1), colour) in enumerate(zip(given.squares(), ab, strict=True)):
        want[y0:y1, x0:x1], owner[y0:y1, x0:x1] = colour, i
    for rows in ((0, H), (0, 7), (7, 16), (16, H)):
        got = np.zeros((rows[1] - rows[0], W, 2), np.float32)
        given.paste(got, rows[0])
        np.testing.assert_array_equal(got, want[rows[0] : rows[1]])
    # on the output grid each point counts by the pixels it shows: a covered one not at all (a
    # --hint on a hint file's point mixed their colours everywhere the hint reached)
    shows = np.bincount(owner[owner >= 0], minlength=n)
    cell, got = given.cells((H, W), 4, (6, 8))
    flat = np.minimum(xy[:, 1] // 4, 5) * 8 + np.minimum(xy[:, 0] // 4, 7)
    for c, mean in zip(cell, got, strict=True):
        at = flat == c
        np.testing.assert_allclose(mean, shows[at] @ ab[at] / shows[at].sum(), atol=1e-3)
    assert set(cell) == set(flat[shows > 0])


def test_a_strip_shows_the_latest_square_that_reaches_it():
    """Each strip (a --suggest point's row, each of compose's strips) finds the squares larger
    than a pixel that reach its rows at once (a Python loop over every square, for each strip,
    spent 10 s with 1,000 --suggest points and 10,000 hint points of size 3; benchmarks, not a
    timed test): what it pastes is the points painted one by one, the later winning."""
    rng = np.random.default_rng(11)
    H, W, n = 400, 32, 4_000
    xy = np.stack([rng.integers(0, W, n), rng.integers(0, H, n)], axis=1)
    ab = rng.uniform(-100, 100, (n, 2)).astype(np.float32)
    given = hints.Hints(xy, ab, rng.choice([1, 2, 3, 5], n).astype(np.int32)).resolve(H, W)
    want = np.full((H, W, 2), np.nan, np.float32)
    x0, y0, x1, y1 = given.squares().T
    for i in range(n):
        want[y0[i] : y1[i], x0[i] : x1[i]] = ab[i]
    for y, h in ((0, 1), (1, 3), (177, 1), (H - 5, 5), (0, H)):
        rows = np.full((h, W, 2), np.nan, np.float32)
        given.paste(rows, y)
        np.testing.assert_array_equal(rows, want[y : y + h])


def test_points_count_by_the_pixels_they_show_in_an_image_of_several_strips():
    """Counted in strips of 4 M pixels, a strip without any point (a large image hinted in
    its upper part only) failed: IndexError, "internal error" for the whole predict."""
    H, W = 3000, 4096  # three strips of 1,024 rows
    red, green = hints.parse_color("#ff0000"), hints.parse_color("#00ff00")
    for given, want in (
        (hints.point(20, 10, "#ff0000") + hints.point(10, 10, "#00ff00"), (red + green) / 2),
        (hints.point(10, 10, "#00ff00", size=3) + hints.point(20, 10, "#ff0000"),
         (9 * green + red) / 10),
        (hints.point(10, 10, "#00ff00") + hints.point(20, 10, "#ff0000")
         + hints.point(10, 10, "#00ff00"), (red + green) / 2),  # the first green covered
    ):  # fmt: skip
        cell, ab = given.resolve(H, W).cells((H // 8, W // 8), 8, (H // 64, W // 64))
        assert cell.tolist() == [0]
        np.testing.assert_allclose(ab[0], want, atol=1e-4)


def test_a_size_written_as_digits_is_a_size_as_coordinates_are():
    """A hint file's "x": "50" and "weight": "0.5" were read, "size": "3" refused; then "3.0"
    was, though the number 3.0 was read."""
    for text in ("3", "3.0", " 3 ", "0.3e1"):
        assert hints.point("5", "6", "#f00", text).size.tolist() == [3]
    for bad in ("3.5", "x3", "", "-3", "1_0", "\u0663"):
        with pytest.raises(ValueError, match=f"hint size must be a whole number.*: {bad!r}$"):
            hints.point(5, 6, "#f00", bad)


def test_numpy_numbers_are_coordinates():
    """Coordinates from numpy arrays (np.int64, np.float64) are numbers: the hint files'
    JSON spellings (true, null) must not turn them into text like 'np.int64(5)'."""
    xs = np.array([5, 10])
    assert hints.point(xs[0], xs[1], "#ff0000").resolve(20, 20).xy.tolist() == [[5, 10]]
    values, percent = hints.parse_points([(np.int64(1), np.float64(2.5))])
    assert values.tolist() == [[1.0, 2.5]] and not percent.any()
    with pytest.raises(ValueError, match="coordinate true is not a number"):
        hints.point(True, 1, "#f00")


def test_a_palette_damps_every_colour_it_lacks_alike():
    """A palette lowered a colour it lacks by log(eps / (prior + eps)): a common one by 6, a rare
    one by 0.7, so one red raised the rare greens and purples it did not hold over the common
    greys, and painted them where the network saw no red (kodim05 in grey, `--palette
    '#ff0000'`: 95% of the coloured pixels far from red). Every lacking colour is lowered alike;
    the palette's own colours rise above them."""
    classes = torch.tensor(quant.gamut_classes(10), dtype=torch.float32)  # (read-only array)
    prior = torch.where(torch.arange(len(classes)) % 2 == 0, 1.0, 1e-4)  # common and rare
    red = np.array([[65.0, 55.0]], np.float32)  # about sRGB #ff0000's a/b
    shift = guide.palette_shift(red, np.ones(1, np.float32), classes, prior / prior.sum())
    lacks = guide.histogram_of(red, np.ones(1, np.float32), classes) == 0
    assert lacks.sum() > len(classes) // 2
    assert torch.allclose(shift[lacks], torch.tensor(math.log(guide.PRIOR_SHARE)), atol=1e-5)
    assert shift[~lacks].min() > shift[lacks].max()
