"""The Python API refuses arguments it would misread, with a ValueError (or TypeError) that names
them, where it used to return a wrong result without a word: NaN or black images from unchecked
hints, 16-bit images scored on the 8-bit scale, floats on the 0..255 scale recoloured white.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import deep_tree, smooth_image, tiny_checkpoint

from recolor_tools import color, imageio, inputs, metrics, predict, workgrid
from recolor_tools.errors import RecolorError
from recolor_tools.hints import Hints, parse_points


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> predict.Predictor:
    path = tiny_checkpoint(tmp_path_factory.mktemp("weights") / "cls.pt", "cls")
    return predict.Predictor.load(path, "cls")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"palette_ab": [[10, 20]], "palette_w": [0]}, "palette_w must be positive"),
        ({"palette_ab": [[10, 20]], "palette_w": [-1]}, "palette_w must be positive"),
        ({"palette_ab": [[10, 20], [5, 5]], "palette_w": [1]}, "one row per colour"),
        ({"palette_ab": [[np.inf, 20]], "palette_w": [1]}, "palette_ab holds NaN"),
        ({"xy": [[5, 5]], "ab": [[np.nan, 20]], "size": [1]}, "ab holds NaN"),
        ({"xy": [[5, 5]], "ab": [[1, 2]], "size": [0]}, "size must be 1 or more"),
        ({"xy": [[5, 5]], "ab": [[1, 2]], "size": [1.5]}, "size must be whole"),
        ({"xy": [[5, 5]], "ab": [[1, 2, 3]], "size": [1]}, "ab must be a (N, 2) array"),
        # a/b finite in float64 but not in float32: stored as infinity
        ({"xy": [[5, 5]], "ab": [[1e39, 2]], "size": [1]}, "ab holds a value beyond float32's"),
        # xy given with percent (as resolve gives them) was not checked: NaN became -2**63
        (
            {
                "xy": np.array([[np.nan, 2.0]]),
                "ab": [[1, 2]],
                "size": [1],
                "percent": np.zeros((1, 2), bool),
            },
            "xy holds NaN or infinity",
        ),
        (
            {
                "xy": np.array([[1, 2, 3]]),
                "ab": [[1, 2]],
                "size": [1],
                "percent": np.zeros((1, 2), bool),
            },
            "xy must be a (N, 2) array",
        ),
        (
            {"xy": np.array([[1, 2]]), "ab": [[1, 2]], "size": [1], "percent": np.zeros((1, 2))},
            "percent must be an (N, 2) bool array like xy",
        ),
    ],
)
def test_hints_refuse_values_that_broke_the_output(fields, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        Hints(**fields)


def test_hints_of_lists_are_arrays_of_the_documented_dtypes(predictor):
    """Lists were kept as lists (AttributeError when used); a zero palette weight made every
    output pixel NaN."""
    h = Hints(xy=[[5, 5]], ab=[[10, 20]], size=[3], palette_ab=[[0, 40]], palette_w=[2])
    assert (h.ab.dtype, h.size.dtype, h.palette_ab.dtype, h.palette_w.dtype) == (
        np.float32, np.int32, np.float32, np.float32,
    )  # fmt: skip
    out = predictor.recolorize(smooth_image(24, 32, seed=1), hints=h)
    assert np.isfinite(out).all() and out.shape == (24, 32, 3)


def test_points_are_pairs_not_reshaped_rows_or_characters():
    """An (N, 3) array became 3N/2 points; the text "12" the point (1, 2)."""
    with pytest.raises(ValueError, match=r"\(N, 2\) array, got \(2, 3\)"):
        parse_points(np.array([[1, 2, 3], [4, 5, 6]]))
    with pytest.raises(ValueError, match="not the text '12'"):
        parse_points("12")
    values, _ = parse_points(np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(values, [[1, 2], [3, 4]])


def test_rgb_metrics_refuse_samples_off_the_8_bit_scale():
    """uint16 was read on the 0..255 scale: two images 1/255 apart scored -0.05 dB."""
    a = smooth_image(16, 16, seed=2).astype(np.uint16) * np.uint16(257)
    b = a + np.uint16(257)
    for call in (lambda: metrics.psnr(a, b), lambda: metrics.ssim(a, b)):
        with pytest.raises(ValueError, match="uint8 or float on the 0..255 scale, got uint16"):
            call()
    with pytest.raises(ValueError, match="got bool"):
        metrics.colourfulness(a > 30000)
    nan = smooth_image(16, 16, seed=2).astype(np.float32)
    nan[3, 4, 1] = np.nan
    for call in (lambda: metrics.psnr(nan, nan), lambda: metrics.colourfulness(nan)):
        with pytest.raises(ValueError, match="holds NaN or infinity"):  # scored NaN
            call()
    u8 = smooth_image(16, 16, seed=2)
    assert metrics.psnr(u8, u8.astype(np.float32) + 1) == pytest.approx(20 * np.log10(255))


def test_to_uint8_refuses_integer_samples():
    """uint8 128 came back as 255 (taken for a float in [0, 1] and clipped)."""
    with pytest.raises(ValueError, match="float in \\[0, 1\\], got uint8"):
        color.to_uint8(np.array([0, 128, 255], np.uint8))
    with pytest.raises(ValueError, match="got int64"):
        color.to_uint16(np.array([1]))


def test_float_images_on_the_255_scale_are_refused_not_whitened(predictor):
    u8 = smooth_image(24, 32, seed=3)
    with pytest.raises(ValueError, match=r"float rgb must be in \[0, 1\].*pass uint8"):
        predictor.recolorize(u8.astype(np.float32))
    # a hair outside [0, 1] (a caller's rounding) is no error
    nudged = u8 * np.float32(1.0005 / 255) - np.float32(0.0002)
    assert np.isfinite(predictor.recolorize(nudged)).all()


def test_compose_refuses_the_saturations_that_settings_refuse(predictor):
    """A NaN saturation gave a black image, -1 every hue's opposite."""
    pred = predictor.run([predictor.prepare(smooth_image(24, 32, seed=4))])[0]
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="saturation must be from 0"):
            predict.compose(pred, predictor.stride, bad)
    assert np.isfinite(predict.compose(pred, predictor.stride, 0.5)).all()


def test_decode_rgb_reads_any_bytes_like_object():
    """A memoryview was "truncated PNG (no IEND chunk)", a uint8 array an UnboundLocalError."""
    img = smooth_image(12, 20, seed=5)
    png = cv2.imencode(".png", img[:, :, ::-1])[1]
    want = imageio.decode_rgb(png.tobytes())
    for data in (png, memoryview(png.tobytes()), bytearray(png.tobytes())):
        np.testing.assert_array_equal(imageio.decode_rgb(data), want)
    np.testing.assert_array_equal(np.rint(want * 255), img)
    with pytest.raises(TypeError, match="bytes, not str"):
        imageio.decode_rgb("not bytes")


def test_encode_image_depth_16_of_uint8_writes_16_bits():
    img = smooth_image(12, 20, seed=6)
    data = imageio.encode_image(img, ".png", depth=16)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, img.astype(np.uint16) * 257)


def test_compare_pair_of_an_empty_prediction_is_one_error():
    truth = smooth_image(16, 16, seed=7)
    with pytest.raises(Exception, match="the prediction holds no pixel"):
        metrics.compare_pair(np.zeros((0, 0, 3), np.uint8), truth)


def test_suggest_at_no_point_is_no_suggestion(predictor):
    assert predictor.suggest_points(smooth_image(24, 32, seed=8), []) == []


def test_resizing_refuses_sizes_it_misread_and_keeps_a_channel_axis():
    img = smooth_image(12, 20, seed=9)
    with pytest.raises(ValueError, match="max_size must be a whole number >= 0"):
        imageio.resize_max(img, -5)  # a 1 x 1 image
    assert imageio.resize_max(img, 0) is img
    with pytest.raises(ValueError, match="positive whole numbers"):
        imageio.resize_to(img, 0, 5)  # cv2.error
    with pytest.raises(ValueError, match="positive whole numbers"):
        imageio.resize_to(img, 6.5, 10)
    assert imageio.resize_to(img[:, :, :1], 6, 10).shape == (6, 10, 1)  # was (6, 10)


def test_class_indices_and_distributions_are_checked():
    from recolor_tools import guide, quant

    classes = quant.gamut_classes(10)
    lab = color.rgb_to_lab(smooth_image(4, 4, seed=10).astype(np.float32) / 255)
    with pytest.raises(ValueError, match="class indices from 0"):
        quant.preview_rgb(lab, classes, np.full((4, 4), -1))  # took the last class
    with pytest.raises(ValueError, match="class indices from 0"):
        quant.preview_rgb(lab, classes, np.zeros((4, 4)))  # floats
    p = np.full(len(classes), 1 / len(classes))
    assert len(guide.colour_modes(p, classes)[0]) > 0
    for bad in (np.full(len(classes), np.nan), -p, p[:-1]):
        with pytest.raises(ValueError, match="probabilities"):
            guide.colour_modes(bad, classes)  # no colour at all, unsaid


def test_counts_and_inputs_of_the_wrong_kind_are_refused():
    from recolor_tools import quant
    from recolor_tools.rebalance import PriorAccumulator

    acc = PriorAccumulator(quant.gamut_classes(10), 10.0)
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError, match="n_images must be a whole number"):
            acc.add_counts(np.zeros(len(acc.classes), np.int64), n)
    with pytest.raises(TypeError, match="not one path"):
        inputs.expand_inputs("abc")  # ['a', 'b', 'c']
    with pytest.raises(ValueError, match="got int64"):  # a list: AttributeError
        color.to_float([[[0, 255, 0]]])
    np.testing.assert_array_equal(color.to_float([[[0.0, 1.5, 0.5]]]), [[[0, 1, 0.5]]])
    errors = [[0.0, 200.0]]  # one pixel right at every threshold, one never
    assert metrics.auc_of_errors(errors) == metrics.auc_of_errors(np.array(errors)) == 0.5
    with pytest.raises(ValueError, match="error_histogram"):
        metrics.auc_of_histogram([])


def test_a_path_of_the_wrong_kind_is_a_type_error(predictor, tmp_path):
    """read_rgb(3) read file descriptor 3 and closed it (read_rgb(0): stdin, closed);
    predict_files("a.jpg") took each letter for a file; hints="5,5=#f00" was an
    AttributeError deep inside."""
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(TypeError, match="not int"):
            imageio.read_rgb(fd)
        os.fstat(fd)  # still open
    finally:
        os.close(fd)
    with pytest.raises(TypeError, match="not one path"):
        predictor.predict_files("a.jpg")
    rgb = smooth_image(16, 16, 1) / np.float32(255)
    for hints in ("5,5=#f00", {}, [None]):
        with pytest.raises(TypeError, match="hints must be a Hints"):
            predictor.recolorize(rgb, hints=hints)
    # arguments, not inputs: ValueError (they were RecolorError, which `except ValueError`
    # missed)
    from recolor_tools import models

    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        models.resolve_device("bogus")
    with pytest.raises(ValueError, match="unknown precision 'bogus'"):
        models.amp_dtype("bogus", models.resolve_device("cpu"))


def test_mode_keeps_the_order_of_float64_scores():
    """mode() cast float64 scores to float32: a lead of 1e-12 became a tie (the lower class
    won) and finite logits of 1e300 became +inf (refused)."""
    from recolor_tools import quant

    classes = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, -20.0]])
    np.testing.assert_array_equal(quant.mode(np.array([0.5, 0.5 + 1e-12, 0.0]), classes), [10, 10])
    np.testing.assert_array_equal(quant.mode(np.array([0.0, -1e300, 1e300]), classes), [20, -20])
    # float32 and integer scores as before; float32 output whatever the scores' type
    assert quant.mode(np.array([1, 3, 2]), classes).tolist() == [10, 10]
    assert quant.mode(np.array([0.1, 0.2, 0.7]), classes).dtype == np.float32


def test_smooth_prior_of_counts_at_any_scale():
    """Counts near the float64 limit summed to inf, and the prior came out all zeros."""
    from recolor_tools import quant
    from recolor_tools.rebalance import smooth_prior

    classes = quant.gamut_classes()[:5]
    p = np.array([1.0, 2.0, 0.0, 3.0, 4.0])
    for sigma in (0, 5.0):
        expect = smooth_prior(p, classes, sigma)
        np.testing.assert_allclose(
            smooth_prior(p / 4 * 1.7e308, classes, sigma), expect, rtol=1e-12
        )
        np.testing.assert_allclose(smooth_prior(p * 1e-310, classes, sigma), expect, rtol=1e-6)


def test_big_endian_uint16_is_uint16(predictor):
    """'>u2' samples were refused: "must be uint8, uint16 or a float type, got >u2"."""
    u16 = smooth_image(16, 24, seed=4).astype(np.uint16) * 257
    big = u16.astype(">u2")
    np.testing.assert_array_equal(color.to_float(big), color.to_float(u16))
    np.testing.assert_array_equal(predictor.recolorize(big), predictor.recolorize(u16))


def test_decode_and_lab_to_rgb_refuse_what_has_no_meaning():
    """models.decode took T = -1 for the mode and NaN for all-NaN a/b; lab_to_rgb took complex
    Lab, its imaginary part dropped with a warning."""
    import torch

    from recolor_tools import models

    z, classes = torch.randn(1, 5, 2, 3), torch.randn(5, 2) * 40
    for t in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be >= 0"):
            models.decode(z, classes, t)
    assert models.decode(z, classes, 0.0).shape == (1, 2, 2, 3)
    lab = np.full((2, 2, 3), 50.0)
    for dtype in (complex, bool):
        with pytest.raises(ValueError, match="lab must be real L, a, b values"):
            color.lab_to_rgb(lab.astype(dtype))
    np.testing.assert_array_equal(color.lab_to_rgb(lab.astype(np.int16)), color.lab_to_rgb(lab))


def test_the_api_refuses_values_it_answered_with_garbage():
    """Silently wrong before: NaN Lab came out NaN (black as uint8), NaN RGB gave NaN Lab; a/b
    errors of NaN or complex Lab were NaN or 0; complex class scores lost their imaginary part;
    data_classes wrapped values far beyond a fine grid round to centres of the wrong sign, and a
    grid of 0.5 made a class set (89,869) that every other function refuses; preview_rgb
    broadcast class indices of another shape."""
    from recolor_tools import quant
    from recolor_tools.hints import parse_colors

    nan = np.full((2, 2, 3), np.nan, np.float32)
    for fn in (color.lab_to_rgb, lambda x: color.lab_to_rgb_as(x, np.uint8)):
        with pytest.raises(ValueError, match="lab holds NaN"):
            fn(nan)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="rgb holds NaN or infinity"):
            color.rgb_to_lab(np.full((2, 2, 3), bad, np.float32))
    lab = np.zeros((2, 2, 3))
    for bad in (nan, lab + 5j):
        with pytest.raises(ValueError, match="real numbers, a and b finite"):
            metrics.ab_rmse(bad, lab)
    assert metrics.ab_rmse(lab + [0, 3, 4], lab) == 5
    classes = quant.gamut_classes()
    scores = np.zeros((1, len(classes)), complex)
    scores[0, 0] = 1j
    with pytest.raises(ValueError, match="real numeric array"):
        quant.annealed_mean(scores, classes, T=1.0)
    with pytest.raises(ValueError, match="2\\*\\*31 cells"):
        quant.data_classes(np.array([[1e19, 0.0]]), 8)
    with pytest.raises(ValueError, match="grid 0.5 gives 89869 classes, more than 32767"):
        quant.gamut_classes(0.5)
    assert len(quant.data_classes(np.array([[100.0, -100.0]]), 1e-3)) == 1
    # a number is rounded as an array of one is (np.multiply's scalar could not be rounded)
    assert color.to_uint8(0.5) == 128 and color.to_uint16(np.float32(1.0)) == 65535
    with pytest.raises(ValueError, match="not the text '#ff0000'"):
        parse_colors("#ff0000")  # iterated: the colours "#", "f", ...
    # a preview's class indices of another shape were broadcast over the image
    with pytest.raises(ValueError, match="idx must be .* of lab's \\(2, 2\\), got \\(2,\\)"):
        quant.preview_rgb(lab.astype(np.float32), classes, np.array([0, 394]))
    assert quant.preview_rgb(lab + 50, classes, np.zeros((2, 2, 3), int)).shape == (2, 2, 3)


def test_numeric_arguments_of_another_type_are_named():
    """A string or an array for a number failed inside numpy ("ufunc 'isfinite' not
    supported", "truth value of an array is ambiguous", "'<=' not supported"), naming no
    argument; True was taken for k = 1."""
    from recolor_tools import quant, rebalance
    from recolor_tools.hints import check_strength

    classes = quant.gamut_classes()
    ab, p = np.zeros((4, 2), np.float32), np.ones((1, len(classes)), np.float32)
    for call, says in (
        (lambda: quant.gamut_classes("8"), "grid must be a positive number, got '8'"),
        (lambda: quant.soft_encode(ab, classes, sigma=None), "sigma must be a number"),
        (lambda: quant.soft_encode(ab, classes, k=True), "k must be an integer"),
        (lambda: quant.annealed_mean(p, classes, T="1"), "temperature T must be a number"),
        (lambda: quant.annealed_mean(p, classes, T=np.ones(2)), "temperature T must be a number"),
        (lambda: quant.mode(p, classes, axis=1.0), "axis 1.0 is out of range"),
        (lambda: quant.data_classes(ab, 8, min_count="2"), "min_count must be a whole number"),
        (lambda: rebalance.smooth_prior(p[0], classes, sigma="5"), "sigma must be 0 or a number"),
        (lambda: rebalance.rebalance_weights(p[0], classes, lam=None), "lam must be in"),
        (lambda: check_strength("1"), "hint strength must be a number"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            call()
    # hint tuples of another length were unpacked ("not enough values to unpack")
    from recolor_tools.hints import points
    from recolor_tools.palettes import palette

    for call, says in (
        (lambda: parse_points([1, 2]), "points must be (x, y) tuples, got 1"),
        (lambda: points([(1, 2, "#f00")]), "points must be (x, y, colour, size) tuples"),
        (lambda: palette([("#fff",)]), "palette must be (colour, weight) tuples"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            call()
    # numpy's numbers are numbers
    assert quant.annealed_mean(p, classes, T=np.float32(0.38)).shape == (1, 2)
    assert quant.soft_encode(ab, classes, k=np.int64(3))[0].shape == (4, 3)


def test_sizes_and_counts_below_one_are_refused():
    """working_shape at size 0 or -8 answered an 8 x 8 grid; row_strips with max_rows 0 failed
    with range()'s "arg 3 must not be zero"; lightness of nested lists with "'list' object has
    no attribute 'shape'"."""
    for call, says in (
        (lambda: workgrid.working_shape(100, 100, 0), "size must be a whole number >= 1, got 0"),
        (lambda: workgrid.working_shape(100, 100, -8), "size must be a whole number >= 1, got -8"),
        (lambda: workgrid.working_shape(9, 9, 16, 0.5), "max_side must be a whole number"),
        (lambda: color.row_strips(4, 4, max_rows=0), "max_rows must be a whole number >= 1"),
        (lambda: color.row_strips(4, 4, pixels=-1), "pixels must be a whole number >= 1"),
        (lambda: workgrid.lightness([[0.5, 0.5, 0.5]]), "rgb must be an (H, W, 3) array"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            call()
    assert workgrid.working_shape(100, 200, 16) == (16, 32)
    # a whole float, which Settings takes, is an int from there on (prepare() refused 64.0)
    settings = predict.Settings(size=64.0, max_side=512.0)
    assert (settings.size, settings.max_side) == (64, 512) and type(settings.size) is int
    assert color.row_strips(5, 4, max_rows=2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    gray = np.full((1, 1, 3), 0.5)
    assert workgrid.lightness(gray.tolist()) == workgrid.lightness(gray.astype(np.float32))


def test_input_names_below_the_first_folder_that_holds_them(tmp_path, monkeypatch):
    """input_name looked each input up in every input folder in turn (4,000 folders in a list:
    71 s, all but 3 of them naming); the lookup by folder must name as before: below the first
    folder given that holds the input, else by its base name."""
    monkeypatch.chdir(tmp_path)
    for d in ("a/b", "c"):
        (tmp_path / d).mkdir(parents=True)
    outer, inner = inputs.input_roots(["a", "a/b"]), inputs.input_roots(["a/b", "a"])
    assert inputs.input_name("a/b/x.png", outer) == "b/x.png"
    assert inputs.input_name("a/b/x.png", inner) == "x.png"
    assert inputs.input_name("./a/b/x.png", ["a"]) == "b/x.png"  # a plain list, too
    assert (
        inputs.input_name("c/y.png", outer) == "y.png" and inputs.input_name("-", outer) == "stdin"
    )


def test_a_deep_or_unreadable_folder_below_an_input_folder(tmp_path, monkeypatch):
    """rglob recursed (a tree 1,000 folders deep: RecursionError, the whole run lost) and passed
    over a subfolder it could not read without a word (exit 0, its images missing)."""
    from recolor_tools.fileio import read_bytes

    with deep_tree(tmp_path / "in", 1000) as deep:
        (deep / "x.png").write_bytes(b"")
        locked = tmp_path / "in" / "locked"
        locked.mkdir()
        real_scandir, real_listdir = os.scandir, os.listdir

        def refuse(path, real):  # root reads every folder: the kernel's EACCES by hand
            if str(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", lambda p=".": refuse(p, real_scandir))
        monkeypatch.setattr(os, "listdir", lambda p=".": refuse(p, real_listdir))
        found = inputs.expand_inputs([str(tmp_path / "in")])
        assert found == sorted([str(deep / "x.png"), str(locked)])
        with pytest.raises(RecolorError, match="permission denied"):
            read_bytes(str(locked))
        monkeypatch.undo()


def test_glob_matches_as_glob_does_without_links(tmp_path, monkeypatch):
    """inputs.glob_matches walks ``**`` itself (glob followed links to folders into loops);
    where there is no link it must match what glob.glob(recursive=True) matches."""
    import glob

    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "d/b.png", "d/e/c.jpg", "d/.h/x.png", ".top/y.png", "d/e/f/g.png",
                 "h [1]/k.png"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    # (a folder "h [1]" is a name below **, not a pattern; doubled slashes are one)
    patterns = ["**/*.png", "d/**/*.png", "d/**", "*/**/*.jpg", "d/**/e/*", "d/*/*", "**",
                f"{tmp_path}/**/*.png", "d/**/**/*.png", "nothing/**/*.png", "d/**//*",
                "d//**//*.png", "h*/**/*.png"]  # fmt: skip
    for pattern in patterns:
        want = sorted(set(glob.glob(pattern, recursive=True)))  # glob repeats "d/**/**" finds
        if pattern.endswith("/**") or pattern == "**":  # glob lists the tree; a folder is searched
            want = [pattern[:-3] or "."]
        assert inputs.glob_matches(pattern) == want, pattern
    # a list file a glob matches is read as the shell's expansion would have it read, and the
    # folders it names are the roots outputs are named below (two same.png stay apart)
    (tmp_path / "L").mkdir()
    (tmp_path / "L" / "one.txt").write_text("../d\n")
    assert inputs.input_roots(["L/*.txt"]) == inputs.input_roots(["L/one.txt"]) == [Path("L/../d")]


def _refused(call, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        call()


def test_bools_and_texts_are_not_taken_for_numbers(predictor):
    """True was taken for 1 and "0.5" for 0.5 (or a truthy "no" for True): each argument is
    refused by name instead."""
    from recolor_tools import quant, rebalance

    cls = quant.gamut_classes(8)
    lab = np.zeros((2, 2, 3))
    _refused(lambda: metrics.auc(lab, lab, t_max=True), "t_max must be a whole number")
    _refused(lambda: quant.annealed_mean(np.ones((2, len(cls))), cls, logits="no"), "logits")
    _refused(lambda: quant.mode(np.ones((2, len(cls))), cls, logits="no"), "logits")
    for t in (True, "0.5"):
        _refused(lambda t=t: predict.Settings(64, None, t, 1.0), "temperature must be")
    _refused(lambda: predict.Settings(64, None, 0.5, "1"), "saturation must be")
    for grid in (True, "8"):
        _refused(lambda grid=grid: rebalance.PriorAccumulator(cls, grid), "grid must be")
    rgb = np.zeros((2, 2, 3), np.uint8)
    _refused(lambda: imageio.encode_image(rgb, ".png", depth=16.0), "depth must be 8 or 16")
    _refused(lambda: predictor.suggest(np.zeros((16, 16, 3), np.float32), 1, 1, k=True), "k must")
    # what is right still goes: a whole float size, numpy numbers, an int temperature
    s = predict.Settings(64.0, None, np.int64(1), np.float32(1.5))
    assert (s.size, s.temperature, s.saturation) == (64, 1.0, 1.5)
    assert type(s.temperature) is float and type(s.saturation) is float


def test_sizes_workers_and_flags_of_another_type_are_named(predictor, tmp_path):
    """max_size=True gave a 1 x 1 image, 64.5 was taken and "64" failed in a comparison naming
    no argument, as workers and io_workers of "2" or None did (io_workers only once the
    generator was read); a truthy "no" was taken for hard, l_only and keep_alpha;
    recolorize(rgb, None) gave float64 RGB."""
    from recolor_tools import quant, rebalance, records

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), smooth_image(12, 20, seed=11))
    data, img = path.read_bytes(), smooth_image(12, 20, seed=11)
    cls = quant.gamut_classes(10)
    lab = np.zeros((2, 2, 3), np.float32)
    rec = records.lab_record("a", lab, (2, 2))
    rgb = img / np.float32(255)
    for call, says in (
        (lambda: imageio.read_rgb(path, max_size=True), "max_size must be a whole number >= 0"),
        (lambda: imageio.read_rgb(path, max_size="64"), "got '64'"),
        (lambda: imageio.decode_rgb(data, max_size=6.5), "max_size must be a whole number"),
        (lambda: imageio.resize_max(img, 6.5), "max_size must be a whole number"),
        (lambda: imageio.read_rgb(path, keep_alpha="no"), "keep_alpha must be True or False"),
        (lambda: imageio.decode_rgb(data, stored="no"), "stored must be True or False"),
        (lambda: records.lab_record("a", lab, (2, 2), l_only="no"), "l_only must be True or"),
        (lambda: quant.encode_record(rec, cls, 10, hard="no"), "hard must be True or False"),
        (lambda: rebalance.compute_stats([path], cls, 10, workers="2"), "workers must be a"),
        (lambda: rebalance.compute_stats([path], cls, 10, workers=None), "workers must be a"),
        (lambda: rebalance.PriorAccumulator(cls, 10).add_files([path], 1.5), "workers must"),
        (lambda: predictor.predict_files([str(path)], io_workers="2"), "io_workers must be a"),
        (lambda: predictor.predict_files([str(path)], io_workers=None), "io_workers must be"),
        (lambda: predictor.recolorize(rgb, None), "dtype must be uint8, uint16 or a float"),
        (lambda: predictor.predict_files([str(path)], batch_size="2"), "batch_size must be"),
        (lambda: predictor.predict_files([str(path)], dtype="foo"), "dtype must be uint8"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            call()
    # what is right still goes: numpy's numbers and bools, 0 or None for no limit, -j 0
    assert imageio.read_rgb(path, max_size=np.int64(10)).shape == (6, 10, 3)
    assert imageio.read_rgb(path, max_size=0).shape == (12, 20, 3)
    assert records.lab_record("a", lab, (2, 2), l_only=np.bool_(True)).arrays.keys() == {"L"}
    assert rebalance.compute_stats([path], cls, 10, workers=0).n_images == 1
    assert [p for p, _, _ in predictor.predict_files([str(path)], io_workers=0)] == [str(path)]


def test_counts_that_would_wrap_past_int64_are_refused():
    from recolor_tools import quant, rebalance

    acc = rebalance.PriorAccumulator(quant.gamut_classes(8), 8)
    c = np.zeros(len(acc.classes), np.int64)
    c[3] = 2**62
    acc.add_counts(c)
    c[3] -= 1
    acc.add_counts(c)  # up to the top is fine
    c[3] = 1
    with pytest.raises(ValueError, match="totals would pass"):
        acc.add_counts(c)
    assert acc.counts[3] == 2**63 - 1  # nothing was added


def test_rgb_with_nan_is_refused_not_written_black():
    rgb = np.full((2, 2, 3), 0.5, np.float32)
    rgb[1, 1, 2] = np.nan
    for to in (color.to_uint8, color.to_uint16):
        with pytest.raises(ValueError, match="NaN"):
            to(rgb)
    assert (color.to_uint8(rgb[:1]) == 128).all()


def test_big_endian_uint16_is_encoded_as_its_values():
    rgb = np.full((2, 3, 3), 1000, ">u2")
    back = cv2.imdecode(np.frombuffer(imageio.encode_image(rgb, ".png", 16), np.uint8), -1)
    assert back.dtype == np.uint16 and (back == 1000).all()


def test_hints_and_stats_compare_by_value():
    """``==`` raised numpy's "truth value of an array is ambiguous"."""
    from recolor_tools import quant, rebalance

    a = Hints(xy=[[1, 2]], ab=[[3, 4]], size=[1], palette_ab=[[5, 6]], palette_w=[1])
    assert a == Hints(xy=[[1, 2]], ab=[[3, 4]], size=[1], palette_ab=[[5, 6]], palette_w=[1])
    assert a != Hints(xy=[[1, 3]], ab=[[3, 4]], size=[1], palette_ab=[[5, 6]], palette_w=[1])
    assert a != Hints(xy=[[1, 2]], ab=[[3, 4]], size=[1]) and a != "a"

    def stats(n: float) -> rebalance.RebalanceStats:
        acc = rebalance.PriorAccumulator(quant.gamut_classes(8), 8)
        acc.add(np.full((4, 4, 2), n, np.float32))
        return acc.finish()

    assert stats(0) == stats(0) and stats(0) != stats(40)
