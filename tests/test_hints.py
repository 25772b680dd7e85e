"""Guided recolouring: hints and palettes through the real CLI, their parsing, and the decode.

Most CLI checks use a tiny random-weight cls model (form, fidelity, errors: what does not depend
on colour quality); one uses the shipped cls weights to see a hint spread over its region.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, read_rgb_u8, run, smooth_image, tiny_checkpoint, write_rgb

from recolor_tools import checkpoints, guide, hintfiles, hints, models, quant
from recolor_tools.errors import RecolorError

SHIPPED = ROOT / "weights" / "cls.pt"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {head: tiny_checkpoint(d / f"{head}.pt", head, prior=True) for head in ("cls", "reg")}


def lab(rgb_u8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb_u8.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def hex_of(rgb_u8: np.ndarray, x: int, y: int) -> str:
    return "#" + bytes(rgb_u8[y, x].tolist()).hex()


def hint_error(out: np.ndarray, truth: np.ndarray, xy: list[tuple[int, int]]) -> float:
    """Median a/b distance between output and truth at the hinted pixels (the hints are the
    truth's own colours there, so this is the distance to the hint)."""
    a, b = lab(out), lab(truth)
    return float(np.median([np.linalg.norm(a[y, x, 1:] - b[y, x, 1:]) for x, y in xy]))


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
    pal = hints.palette_from_list("#e63946, #f1faee:0.5,#1d3557")
    np.testing.assert_allclose(pal.palette_w, [0.4, 0.2, 0.4])  # relative, summing to 1
    for bad in ("10,20", "10=#fff", "a,b=#fff", "1,2=#ggg", "1,2=red"):
        with pytest.raises(ValueError):
            hints.parse_hint(bad)
    for bad in ("#fff:0", "#fff:-1", ",", "#12345", "#fff:nan", "#fff:1e-300", "#fff:1e39"):
        with pytest.raises(ValueError):
            hints.palette_from_list(bad)
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
    # red (area 1) and blue (area 9) share cell 0: their area-weighted mean
    want = (hints.parse_color("#ff0000") + 9 * hints.parse_color("#0000ff")) / 10
    np.testing.assert_allclose(ab[0], want, atol=1e-4)
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


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def image(tmp_path) -> tuple[Path, np.ndarray]:
    rgb = smooth_image(60, 80, 11)
    return write_rgb(tmp_path / "a.png", rgb), rgb


POINTS = [(5, 7), (40, 30), (70, 50), (20, 55)]


def test_every_hint_form_holds_at_its_pixels(tmp_path, weights, image):
    src, rgb = image
    w = ["--weights", weights["cls"]]
    auto = run(["predict", src, *w, "-o", tmp_path / "auto.png"], check_rc=0)
    assert auto.stdout.decode() == f"{tmp_path / 'auto.png'}\n"
    auto = read_rgb_u8(tmp_path / "auto.png")
    flags = [f"--hint={x},{y}={hex_of(rgb, x, y)}" for x, y in POINTS[:3]]
    flags.append(f"--hint={100 * POINTS[3][0] / 80}%,{100 * POINTS[3][1] / 60}%="
                 f"{hex_of(rgb, *POINTS[3])}")  # fmt: skip
    doc = {"points": [{"x": x, "y": y, "color": hex_of(rgb, x, y)} for x, y in POINTS]}
    (tmp_path / "h.json").write_text(json.dumps(doc))
    layer = np.zeros((60, 80, 4), np.uint8)
    for x, y in POINTS:
        layer[y, x] = [*rgb[y, x], 255]
    write_rgb(tmp_path / "h.png", layer)
    for name, args in {
        "flag": flags,
        "json": ["--hints", tmp_path / "h.json"],
        "layer": ["--hints", tmp_path / "h.png"],
    }.items():
        out = tmp_path / f"{name}.png"
        run(["predict", src, *w, *args, "-o", out], check_rc=0)
        got = read_rgb_u8(out)
        assert got.shape == rgb.shape
        assert hint_error(got, rgb, POINTS) < 6, name
        assert hint_error(got, rgb, POINTS) < hint_error(auto, rgb, POINTS), name
    for name in ("json", "layer"):  # `--hints -`: from stdin, JSON or a layer by its bytes
        h = tmp_path / f"h.{'png' if name == 'layer' else 'json'}"
        run(["predict", src, *w, "--hints", "-", "-o", tmp_path / "stdin.png"],
            input=h.read_bytes(), check_rc=0)  # fmt: skip
        assert (tmp_path / "stdin.png").read_bytes() == (tmp_path / f"{name}.png").read_bytes()
    p = run(["predict", "-", *w, "--hints", "-", "-o", tmp_path / "x.png"], input=b"")
    assert p.returncode == 2 and b"--hints - reads a hint file from stdin" in p.stderr
    p = run(["predict", src, *w, "--hints", "-", "-o", tmp_path / "x.png"], input=b"null\n")
    assert p.returncode == 1 and p.stderr.decode() == (  # JSON, not "an image (text)"
        'recolor predict: -: bad hint file: expected an object with "points" and/or "palette"\n'
    )


def test_a_one_pixel_hint_holds_in_jpeg_output(tmp_path, weights, image):
    """JPEG outputs keep the chroma at full resolution (4:4:4) from quality 90, as ImageMagick
    does: 4:2:0 averaged a one-pixel hint of a colour unlike its neighbours' with them (on the
    Kodak photographs, 10 such hints: 20.4 a/b units off the PNG output, median; 4:4:4 at the
    default quality 95: 4.4). Below 90, 4:2:0 as before."""
    src, rgb = image
    from PIL import Image, JpegImagePlugin

    hues = ["#e01020", "#10c030", "#2040e0", "#f0d000"]  # unlike the image's own colours
    flags = [f"--hint={x},{y}={c}" for (x, y), c in zip(POINTS, hues, strict=True)]
    w = ["--weights", weights["cls"], *flags]
    run(["predict", src, *w, "-o", tmp_path / "ref.png"], check_rc=0)
    ref = read_rgb_u8(tmp_path / "ref.png")
    errors = {}
    for quality, sampling in [(None, 0), ("90", 0), ("89", 2)]:  # PIL: 0 is 4:4:4, 2 is 4:2:0
        out = tmp_path / f"q{quality}.jpg"
        run(["predict", src, *w, "-o", out, *(["--quality", quality] if quality else [])],
            check_rc=0)  # fmt: skip
        with Image.open(out) as im:
            assert JpegImagePlugin.get_sampling(im) == sampling, quality
        errors[quality] = hint_error(read_rgb_u8(out), ref, POINTS)
    assert errors[None] < errors["89"] / 3 and errors["90"] < errors["89"] * 0.75, errors


def test_palettes_move_the_colours(tmp_path, weights, image):
    src, rgb = image
    w = ["--weights", weights["cls"]]
    run(["predict", src, *w, "-o", tmp_path / "auto.png"], check_rc=0)
    auto = lab(read_rgb_u8(tmp_path / "auto.png"))[..., 1:].reshape(-1, 2).mean(0)
    ref = write_rgb(tmp_path / "ref.png", np.full((30, 30, 3), (40, 60, 220), np.uint8))
    blue = hints.parse_color("#283cdc")
    for spec in (ref, "#283cdc:2,#808080:0.5"):
        out = tmp_path / "pal.png"
        run(["predict", src, *w, "--palette", spec, "-o", out], check_rc=0)
        mean = lab(read_rgb_u8(out))[..., 1:].reshape(-1, 2).mean(0)
        # the mean colour moves toward the palette's blue
        assert np.linalg.norm(mean - blue) < np.linalg.norm(auto - blue) - 5, spec
    # the palette image from stdin (`... | recolor predict a.png --palette -`): the same output
    run(["predict", src, *w, "--palette", ref, "-o", tmp_path / "file.png"], check_rc=0)
    run(["predict", src, *w, "--palette", "-", "-o", tmp_path / "stdin.png"],
        input=ref.read_bytes(), check_rc=0)  # fmt: skip
    assert (tmp_path / "stdin.png").read_bytes() == (tmp_path / "file.png").read_bytes()
    p = run(["predict", "-", *w, "--palette", "-", "-o", tmp_path / "x.png"], input=b"")
    assert p.returncode == 2 and b"--palette - reads an image from stdin" in p.stderr


def test_a_palette_image_counts_its_pixels_by_opacity(tmp_path, weights, image):
    """A cut-out's transparent part is no colour of the scheme: composited on white, half this
    image's palette was white, pulling the result toward gray."""
    src, _ = image
    bgra = np.zeros((40, 60, 4), np.uint8)
    bgra[:, :30] = (220, 60, 40, 255)  # opaque blue on the left
    bgra[:, 30:] = (255, 255, 255, 0)  # transparent white on the right
    bgra[:, 29, 3] = 128  # a soft edge
    cutout, flat = tmp_path / "cutout.png", tmp_path / "flat.png"
    assert cv2.imwrite(str(cutout), bgra)
    a = bgra[:, :, 3:].astype(np.float32) / 255
    assert cv2.imwrite(str(flat), np.rint(bgra[:, :, :3] * a + 255 * (1 - a)).astype(np.uint8))
    pal, opaque = hints.palette_from_image(cutout), hints.palette_from_image(flat)
    blue = hints.parse_color("#283cdc")
    assert len(pal.palette_w) == pytest.approx(0.5 * len(opaque.palette_w), rel=0.05)
    assert pal.palette_w.min() == pytest.approx(0.5 * pal.palette_w.max(), rel=0.05)  # the edge
    assert np.abs(pal.palette_ab - blue).max() < 1.5  # the edge is blue at half weight
    w = ["--weights", weights["cls"]]
    chroma = {}
    for ref in (cutout, flat):
        out = tmp_path / f"out-{ref.stem}.png"
        run(["predict", src, *w, "--palette", ref, "-o", out], check_rc=0)
        ab = lab(read_rgb_u8(out))[..., 1:].reshape(-1, 2).mean(0)
        chroma[ref.stem] = np.linalg.norm(ab - blue)
    assert chroma["cutout"] < chroma["flat"] - 3, chroma
    bgra[:, :, 3] = 0
    assert cv2.imwrite(str(cutout), bgra)
    p = run(["predict", src, *w, "--palette", cutout, "-o", tmp_path / "x.png"])
    assert p.returncode == 1 and p.stderr.decode().endswith(
        "cutout.png: the palette image is transparent all over\n"
    )


def test_palettes_from_several_sources_count_alike(tmp_path):
    """--palette IMAGE with a hint file's palette: the image's 600 pixels outweighed a listed
    colour 600 to 1; each palette's weights now sum to 1."""
    ref = write_rgb(tmp_path / "blue.png", np.full((20, 30, 3), (0, 0, 255), np.uint8))
    (tmp_path / "red.json").write_text('{"palette": [{"color": "#ff0000", "weight": 3}]}')
    both = hints.palette_from_image(ref) + hintfiles.read_hints(tmp_path / "red.json")
    red = np.abs(both.palette_ab - hints.parse_color("#ff0000")).max(axis=1) < 0.5
    assert red.sum() == 1 and both.palette_w[red].sum() / both.palette_w.sum() == pytest.approx(0.5)
    listed = hints.palette_from_list("#ff0000:1e30,#0000ff:1e30")  # float32 would overflow
    np.testing.assert_allclose(listed.palette_w, [0.5, 0.5])


def test_a_palette_image_is_shrunk_never_enlarged(tmp_path):
    """A thin palette image (1 x 1000) was enlarged to 64 pixels across, 64 x 64,000 pixels, and
    took 24 GB to soft-encode; a small one gave interpolated colours it does not hold."""
    thin = write_rgb(tmp_path / "thin.png", np.full((1000, 1, 3), (0, 0, 255), np.uint8))
    long = write_rgb(tmp_path / "long.png", np.full((3, 5000, 3), (255, 0, 0), np.uint8))
    small = np.zeros((20, 30, 3), np.uint8)
    small[:, 15:] = 255
    small = write_rgb(tmp_path / "small.png", small)
    blue = hints.parse_color("#0000ff")
    h = hints.palette_from_image(thin)
    assert len(h.palette_w) == 1000 and np.allclose(h.palette_ab, blue, atol=0.5)
    assert len(hints.palette_from_image(long).palette_w) == 16 * hints.PALETTE_IMAGE_SIDE
    h = hints.palette_from_image(small)
    assert len(h.palette_w) == 600 and np.abs(h.palette_ab).max() < 0.5  # black and white only


def test_a_hint_file_is_for_every_input_of_its_name(tmp_path, weights):
    """posters/x.png and posters/x.jpg both take hints/x.json (the second was left automatic
    without a word)."""
    posters, hdir = tmp_path / "posters", tmp_path / "hints"
    posters.mkdir(), hdir.mkdir()
    for ext in ("png", "jpg"):
        write_rgb(posters / f"x.{ext}", smooth_image(40, 50, 7))
    (hdir / "x.json").write_text(json.dumps({"points": [{"x": 8, "y": 8, "color": "#1d4e89",
                                                         "size": 9}]}))  # fmt: skip
    out = tmp_path / "out"
    run(["predict", posters, "-w", weights["cls"], "--hints", hdir, "-o", out], check_rc=0)
    want = hints.parse_color("#1d4e89")
    for ext in ("png", "jpg"):
        assert np.linalg.norm(lab(read_rgb_u8(out / f"x.{ext}"))[8, 8, 1:] - want) < 6, ext


def test_hint_directory_matches_inputs_by_path(tmp_path, weights):
    posters, hdir = tmp_path / "posters", tmp_path / "hints"
    rgbs = {}
    for rel in ("a", "sub/b", "c"):
        (posters / rel).parent.mkdir(parents=True, exist_ok=True)
        rgbs[rel] = smooth_image(40, 50, len(rel) + ord(rel[-1]))
        write_rgb(posters / f"{rel}.png", rgbs[rel])
    (hdir / "sub").mkdir(parents=True)
    (hdir / "a.json").write_text(json.dumps({"points": [{"x": 3, "y": 4, "color": "#fff"}]}))
    pts = [{"x": 10, "y": 20, "color": hex_of(rgbs["sub/b"], 10, 20), "size": 5}]
    (hdir / "sub" / "b.json").write_text(json.dumps({"points": pts}))
    out = tmp_path / "out"
    run(["predict", posters, "--weights", weights["cls"], "--hints", hdir, "-o", out], check_rc=0)
    got = read_rgb_u8(out / "sub" / "b.png")  # the output mirrors the inputs' tree, as hints
    square = [(x, y) for x in range(8, 13) for y in range(18, 23)]
    assert hint_error(got, rgbs["sub/b"], square) < 6
    assert np.abs(lab(read_rgb_u8(out / "a.png"))[4, 3, 1:]).max() < 3  # white: a = b = 0
    # a hint file for no input: one line naming it, the inputs still done
    (hdir / "zzz.json").write_text("{}")
    p = run(["predict", posters, "--weights", weights["cls"], "--hints", hdir, "-o", out])
    assert p.returncode == 1 and len(p.stdout.splitlines()) == 3
    assert p.stderr.decode().splitlines() == [
        f"recolor predict: {hdir / 'zzz.json'}: hint file for no input"
    ]


def test_suggest_and_skip_existing_still_check_the_hints(tmp_path, weights, image):
    """--suggest reported no hint file for no input (exit 0), and with every output there
    already, --skip-existing passed hints that do not parse or that the model cannot take."""
    src, _ = image
    hdir = tmp_path / "hints"
    hdir.mkdir()
    (hdir / "typo.json").write_text('{"points": [{"x": 5, "y": 5, "color": "#ff0000"}]}')
    cls = ["--weights", weights["cls"]]
    p = run(["predict", src, *cls, "--hints", hdir, "--suggest", "5,5"])
    assert p.returncode == 1 and p.stdout.count(b"\t5,5\t") >= 1  # the suggestions still come
    assert p.stderr.decode() == f"recolor predict: {hdir / 'typo.json'}: hint file for no input\n"
    out = tmp_path / "out"
    run(["predict", src, *cls, "-o", f"{out}/"], check_rc=0)
    done = [src, "-o", f"{out}/", "--skip-existing"]
    assert run(["predict", *done, *cls]).returncode == 0  # nothing to do, nothing said
    p = run(["predict", *done, *cls, "--hint", "nonsense"])
    assert p.returncode == 2 and "'nonsense' is not X,Y=#RRGGBB" in p.stderr.decode()
    p = run(["predict", *done, "--weights", weights["reg"], "--hint", "1,1=#fff"])
    assert p.returncode == 2 and "need the cls head" in p.stderr.decode()
    p = run(["predict", *done, *cls, "--hints", hdir])
    assert (p.returncode, p.stdout) == (1, b"") and "typo.json: hint file for no input" in str(
        p.stderr
    )


def test_empty_hints_are_bit_identical_to_none(tmp_path, weights, image):
    src, rgb = image
    posters, hdir = tmp_path / "posters", tmp_path / "hints"
    posters.mkdir(), hdir.mkdir()
    for name in ("empty", "none", "clear", "blank", "bom"):
        write_rgb(posters / f"{name}.png", rgb)
    (hdir / "empty.json").write_text("{}")
    (hdir / "blank.json").write_text(" \n")  # a file made and never written
    (hdir / "bom.json").write_bytes(b"\xef\xbb\xbf\n")  # an editor's empty UTF-8 file
    (hdir / "none.json").write_text('{"points": [], "palette": []}')
    write_rgb(hdir / "clear.png", np.zeros((60, 80, 4), np.uint8))
    run(["predict", src, "-w", weights["cls"], "-o", tmp_path / "auto.png"], check_rc=0)
    out = tmp_path / "out"
    run(["predict", posters, "-w", weights["cls"], "--hints", hdir, "-o", out], check_rc=0)
    want = (tmp_path / "auto.png").read_bytes()
    for name in ("empty", "none", "clear", "blank", "bom"):
        assert (out / f"{name}.png").read_bytes() == want, name


def test_colour_modes_splits_a_distribution_into_its_colours():
    classes = quant.gamut_classes(10).astype(np.float64)  # the 10-unit grid of a/b in gamut
    # two colours: 0.6 over three neighbouring classes, 0.4 over two others far away
    near = lambda a, b: int(np.argmin(np.hypot(*(classes - (a, b)).T)))  # noqa: E731
    red = [near(50, 30), near(60, 30), near(50, 40)]
    blue = [near(0, -50), near(10, -50)]
    p = np.zeros(len(classes))
    p[red] = [0.3, 0.2, 0.1]
    p[blue] = [0.25, 0.15]
    ab, mass = guide.colour_modes(p, classes)
    np.testing.assert_allclose(mass, [0.6, 0.4])
    np.testing.assert_allclose(ab[0], (p[red] @ classes[red]) / 0.6)
    np.testing.assert_allclose(ab[1], (p[blue] @ classes[blue]) / 0.4)
    # a broad distribution gives k distinct colours that account for all of it
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(len(classes)))
    ab, mass = guide.colour_modes(p, classes, k=5)
    assert len(ab) == 5 and list(mass) == sorted(mass, reverse=True)
    assert mass.sum() == pytest.approx(1)
    assert min(np.hypot(*(ab[i] - ab[j])) for i in range(5) for j in range(i)) > 20
    # a sure cell is one colour; the classes it all but excludes are no suggestion
    p = np.full(len(classes), 1e-6)
    p[red[0]] = 1 - p.sum() + 1e-6
    ab, mass = guide.colour_modes(p, classes)
    assert len(ab) == 1 and np.hypot(*(ab[0] - classes[red[0]])) < 1
    assert [len(x) for x in guide.colour_modes(p, classes, k=0)] == [0, 0]


def test_suggest_prints_the_main_colours(tmp_path, image):
    src, rgb = image
    p = run(["predict", src, "-w", SHIPPED, "--suggest", "40,30"], check_rc=0, cwd=tmp_path)
    rows = [ln.split("\t") for ln in p.stdout.decode().splitlines()]
    assert 2 <= len(rows) <= 5 and not list(tmp_path.glob("recolored*"))
    probs = [float(r[3]) for r in rows]
    assert all(r[0] == str(src) and r[1] == "40,30" for r in rows)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", r[2]) for r in rows)
    # distinct colours (not one colour's neighbouring classes) that hold the whole distribution
    assert probs == sorted(probs, reverse=True) and 0.97 <= sum(probs) <= 1.0001
    shown = hints.parse_colors([r[2] for r in rows])
    assert min(np.hypot(*(a - b)) for i, a in enumerate(shown) for b in shown[:i]) > 10
    # a hint there (the pixel's own colour, so in gamut at its L) becomes the likeliest colour
    want = hex_of(rgb, 40, 30)
    hinted = run(["predict", src, "-w", SHIPPED, "--suggest", "40,30", "--hint", f"40,30={want}"],
                 check_rc=0)  # fmt: skip
    top = hinted.stdout.decode().splitlines()[0].split("\t")
    assert np.linalg.norm(hints.parse_color(top[2]) - hints.parse_color(want)) < 12
    assert float(top[3]) > 0.3
    # a point outside one image: one line naming it; the next image is still answered
    small = write_rgb(tmp_path / "small.png", rgb[:20, :30])
    p = run(["predict", small, src, "-w", SHIPPED, "--suggest", "40,30"], check_rc=1)
    assert p.stderr.decode().splitlines() == [
        f"recolor predict: {small}: --suggest point (40, 30) is outside the 30x20 image"
    ]
    assert len(p.stdout.decode().splitlines()) == 5
    # repeated: each point's five lines in the order given, as one point alone gives them
    corner = run(["predict", src, "-w", SHIPPED, "--suggest", "0,0"], check_rc=0).stdout
    both = run(["predict", src, "-w", SHIPPED, "--suggest", "0,0", "--suggest", "40,30"],
               check_rc=0).stdout  # fmt: skip
    assert both == corner + "".join("\t".join(r) + "\n" for r in rows).encode()


def test_a_hint_spreads_over_its_region_with_the_shipped_model(tmp_path):
    # Two flat regions split by a sharp edge, with some texture; one blue hint on the left.
    rng = np.random.default_rng(0)
    gray = np.where(np.arange(160)[None, :] < 80, 90, 200).astype(np.float32)
    gray = np.repeat(gray, 120, axis=0) + rng.normal(0, 4, (120, 160))
    src = write_rgb(tmp_path / "two.png", np.clip(gray, 0, 255).astype(np.uint8))
    run(["predict", src, "-w", SHIPPED, "-o", tmp_path / "auto.png"], check_rc=0)
    run(["predict", src, "-w", SHIPPED, "--hint", "40,60=#1d4e89", "-o", tmp_path / "h.png"],
        check_rc=0)  # fmt: skip
    want = hints.parse_color("#1d4e89")
    auto, hinted = (
        lab(read_rgb_u8(tmp_path / f))[10:110, 10:70, 1:] for f in ("auto.png", "h.png")
    )
    d_auto = np.linalg.norm(auto - want, axis=-1).mean()
    d_hint = np.linalg.norm(hinted - want, axis=-1).mean()
    assert d_hint < 0.5 * d_auto  # far from the hint's own pixel, most of the region follows


def test_hint_spread_region_stops_at_edges_and_alike_crosses_them(tmp_path):
    """Two look-alike squares on a darker ground, one blue hint in the left one: both spreads
    fill the left square; alike also reaches the right one (it looks the same), region leaves
    it as the automatic output has it (no path inside one region joins them)."""
    rng = np.random.default_rng(0)
    gray = np.full((120, 200), 60, np.float32)
    gray[20:100, 15:85] = gray[20:100, 115:185] = 190
    gray = np.clip(gray + rng.normal(0, 4, gray.shape), 0, 255).astype(np.uint8)
    src = write_rgb(tmp_path / "squares.png", gray)
    run(["predict", src, "-w", SHIPPED, "-o", tmp_path / "auto.png"], check_rc=0)
    auto = lab(read_rgb_u8(tmp_path / "auto.png"))[:, :, 1:]
    want = hints.parse_color("#1d4e89")
    left, right = np.s_[25:95, 20:80], np.s_[25:95, 120:180]
    for spread in ("alike", "region"):
        out = tmp_path / f"{spread}.png"
        run(["predict", src, "-w", SHIPPED, "--hint", "50,60=#1d4e89", "--hint-spread", spread,
             "-o", out], check_rc=0)  # fmt: skip
        got = lab(read_rgb_u8(out))[:, :, 1:]
        to_hint = {k: np.linalg.norm(got[s] - want, axis=-1).mean() for k, s in
                   (("left", left), ("right", right))}  # fmt: skip
        d_auto = np.linalg.norm(auto[left] - want, axis=-1).mean()
        assert to_hint["left"] < 0.2 * d_auto, spread
        moved = np.linalg.norm(got[right] - auto[right], axis=-1).mean()
        if spread == "alike":
            assert to_hint["right"] < 0.5 * d_auto
        else:
            assert moved < 1.0, moved


def test_region_shares_solve_the_random_walker_with_a_sink():
    """guide.region_shares against a dense solve of its equations on a small grid (random
    features and lightness): (D + sink - W) u = 0 off the hinted cells, u = 1 at a colour's own
    cells, 0 at the other colours'. Two hints of one colour count as one; a column of
    unlike features cuts the grid in two."""
    g = torch.Generator().manual_seed(1)
    C, gh, gw = 4, 5, 7
    feats = torch.rand(C, gh, gw, generator=g) + 0.5
    light = torch.rand(gh, gw, generator=g) * 10
    cells, label = torch.tensor([3, 30, 17]), torch.tensor([0, 1, 0])
    got = guide.region_shares(feats, light, cells, label, tau=0.2, sigma=4.0, sink=0.01)

    f = torch.nn.functional.normalize(feats.double(), dim=0).reshape(C, -1)
    L = light.double().reshape(-1)
    W = torch.zeros(gh * gw, gh * gw, dtype=torch.float64)
    for i in range(gh * gw):
        for j in (i + 1, i + gw):
            if j < gh * gw and (j == i + gw or j % gw):
                cos = f[:, i] @ f[:, j]
                W[i, j] = W[j, i] = torch.exp(-(1 - cos) / 0.2 - (L[i] - L[j]) ** 2 / 32)
    A = torch.diag(W.sum(1) + 0.01) - W
    free = torch.ones(gh * gw, dtype=torch.bool)
    free[cells] = False
    seeded = torch.zeros(2, gh * gw, dtype=torch.float64)
    seeded[label, cells] = 1
    want = seeded.clone()
    want[:, free] = torch.linalg.solve(A[free][:, free], W[free][:, ~free] @ seeded[:, ~free].T).T
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    assert (got.sum(0) <= 1 + 1e-6).all() and (got[:, free.nonzero()[:, 0]] > 0).all()

    wall = torch.zeros(2, 4, 9)
    wall[0] = 1.0
    wall[:, :, 4] = torch.tensor([0.0, 1.0])[:, None]  # the middle column: orthogonal features
    shares = guide.region_shares(wall, torch.zeros(4, 9), torch.tensor([0]), torch.tensor([0]))
    left, right = shares[0].reshape(4, 9)[:, :4], shares[0].reshape(4, 9)[:, 5:]
    assert left.min() > 0.5 and right.max() < 1e-3


def test_hint_strength_sets_how_far_a_hint_reaches(tmp_path):
    """--hint-strength 0 holds a hint to its own pixel (the rest is the automatic output, bit for
    bit); more reaches more of a smoothly varying image than the default, less reaches less."""
    src = write_rgb(tmp_path / "smooth.png", smooth_image(120, 160, 5))
    run(["predict", src, "-w", SHIPPED, "-o", tmp_path / "auto.png"], check_rc=0)
    reach = {}
    for strength in (None, "0", "0.5", "8"):
        out = tmp_path / f"s{strength}.png"
        opts = [] if strength is None else ["--hint-strength", strength]
        run(["predict", src, "-w", SHIPPED, "--hint", "80,60=#1d4e89", *opts, "-o", out],
            check_rc=0)  # fmt: skip
        d = np.linalg.norm(lab(read_rgb_u8(out))[:, :, 1:] - hints.parse_color("#1d4e89"), axis=-1)
        reach[strength] = (d < 10).mean()
    s0, auto = read_rgb_u8(tmp_path / "s0.png"), read_rgb_u8(tmp_path / "auto.png")
    assert not np.array_equal(s0[60, 80], auto[60, 80])  # the hinted pixel holds the hint
    s0[60, 80] = auto[60, 80]
    assert np.array_equal(s0, auto)
    assert reach["0"] < reach["0.5"] < reach[None] < reach["8"]
    for value in ("nan", "1e300"):  # 1e300: inf in float32, NaN shares: once the automatic output
        bad = run(["predict", src, "-w", SHIPPED, "--hint", "1,1=#fff", "--hint-strength", value])
        assert bad.returncode == 2 and "--hint-strength" in bad.stderr.decode()
    for opts in (["--hint-strength", "4"], ["--palette", "#f00", "--hint-spread", "region"]):
        bad = run(["predict", src, "-w", SHIPPED, *opts, "-o", tmp_path / "x.png"])
        flag = opts[-2]
        assert (bad.returncode, bad.stderr.decode()) == (2, (  # was ignored without a word
            f"recolor predict: {flag} acts on point hints: give --hint or --hints\n"
        ))  # fmt: skip
        assert not (tmp_path / "x.png").exists()


def test_hint_strength_0_leaves_every_other_pixel_as_the_automatic_output(tmp_path):
    # Cells that no hint reaches must decode from the logits themselves: their log-softmax is
    # the same distribution but rounds differently, one 8-bit level off here and there.
    rng = np.random.default_rng(1)
    noise = (rng.random((12, 20, 3)) * 255).astype(np.uint8)
    src = tmp_path / "b.png"
    cv2.imwrite(str(src), cv2.resize(noise, (200, 120), interpolation=cv2.INTER_CUBIC))
    run(["predict", src, "-w", SHIPPED, "-o", tmp_path / "auto.png"], check_rc=0)
    opts = ["--hint", "30,30=#00ff00", "--hint-strength", "0"]
    run(["predict", src, "-w", SHIPPED, *opts, "-o", tmp_path / "s0.png"], check_rc=0)
    s0, auto = read_rgb_u8(tmp_path / "s0.png"), read_rgb_u8(tmp_path / "auto.png")
    differ = np.argwhere((s0 != auto).any(axis=2)).tolist()
    assert differ == [[30, 30]]


def test_bad_hint_files_give_one_line_each_and_the_rest_is_done(tmp_path, weights):
    posters, hdir = tmp_path / "posters", tmp_path / "hints"
    posters.mkdir(), hdir.mkdir()
    names = ("good", "outside", "far", "bad_json", "no_alpha", "small_layer", "clear_small",
             "huge", "heavy", "link")  # fmt: skip
    for name in names:
        write_rgb(posters / f"{name}.png", smooth_image(60, 80, 1))
    doc = {"points": [{"x": 1, "y": 1, "color": "blue"}]}
    (hdir / "bad_json.json").write_text(json.dumps(doc))
    (hdir / "outside.json").write_text(json.dumps({"points": [{"x": 80, "y": 1, "color": "#f00"}]}))
    # 1e308 pixels times the width overflowed: numpy's warning on stderr before the line
    (hdir / "far.json").write_text('{"points": [{"x": 1e308, "y": 1, "color": "#f00"}]}')
    write_rgb(hdir / "no_alpha.png", smooth_image(60, 80, 1))
    write_rgb(hdir / "small_layer.png", np.full((8, 8, 4), 200, np.uint8))
    # a layer of another size is the wrong file even when nothing is painted on it
    write_rgb(hdir / "clear_small.png", np.zeros((8, 8, 4), np.uint8))
    (hdir / "good.json").write_text(json.dumps({"points": [{"x": 1, "y": 1, "color": "#f00"}]}))
    # a 400-digit integer: "internal error: OverflowError", and no input done
    huge = {"points": [{"x": 1, "y": 1, "color": "#f00", "size": 10**400}]}
    (hdir / "huge.json").write_text(json.dumps(huge))
    heavy = {"palette": [{"color": "#f00", "weight": 10**400}]}
    (hdir / "heavy.json").write_text(json.dumps(heavy))
    (hdir / "link.json").symlink_to(tmp_path / "nowhere.json")  # was passed over, no word
    out = tmp_path / "out"
    p = run(["predict", posters, "-w", weights["cls"], "--hints", hdir, "-o", out])
    assert p.returncode == 1 and p.stdout.decode() == f"{out / 'good.png'}\n"
    assert sorted(p.stderr.decode().splitlines()) == sorted([
        f"recolor predict: {hdir / 'bad_json.json'}: bad hint file: colour 'blue' is not "
        "#rrggbb or #rgb",
        f"recolor predict: {hdir / 'no_alpha.png'}: bad hint file: a hint layer must be an "
        "image with an alpha channel",
        # the input, and the hint file the bad points came from (it said only the input)
        f"recolor predict: {posters / 'clear_small.png'}: the hint layer of "
        f"{hdir / 'clear_small.png'} is 8x8, the image 80x60",
        f"recolor predict: {posters / 'far.png'}: hint point (1e+308, 1) of {hdir / 'far.json'} "
        "is outside the 80x60 image",
        f"recolor predict: {posters / 'outside.png'}: hint point (80, 1) of "
        f"{hdir / 'outside.json'} is outside the 80x60 image",
        f"recolor predict: {posters / 'small_layer.png'}: the hint layer of "
        f"{hdir / 'small_layer.png'} is 8x8, the image 80x60",
        f"recolor predict: {hdir / 'heavy.json'}: bad hint file: palette weight 1{'0' * 400} is "
        "not a number from 1e-30 to 1e+30",
        f"recolor predict: {hdir / 'huge.json'}: bad hint file: hint size must be a whole number "
        f"of pixels, 1 to {2**31 - 1}: 1{'0' * 400}",
        f"recolor predict: {hdir / 'link.json'}: no such file",
    ])  # fmt: skip


def test_a_layer_of_another_size_is_named_beside_point_hints(tmp_path, weights, image):
    """With --hint as well, "the hint layer is 8x8, ..." named no file (the points came from
    two places); the layer is named whatever else gives points."""
    src, _ = image
    layer = write_rgb(tmp_path / "small.png", np.full((8, 8, 4), 200, np.uint8))
    p = run(["predict", src, "-w", weights["cls"], "--hints", layer, "--hint", "1,1=#f00",
             "-o", tmp_path / "out.png"])  # fmt: skip
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor predict: {src}: the hint layer of {layer} is 8x8, the image 80x60\n"
    )


@pytest.mark.parametrize(
    ("args", "rc", "match"),
    [
        (["--hint", "5,5=#nothex"], 2, "colour '#nothex' is not #rrggbb or #rgb"),
        (["--hint", "a,5=#fff"], 2, "coordinate 'a' is not a number"),
        (["--palette", "{broken}"], 1, "{broken}: "),
        (["--palette", "#fff,,#zz"], 2, "--palette '#fff,,#zz' is no image file and no colour"),
        (["--palette", "#ff0000:0"], 2, "--palette '#ff0000:0' is no image file and no colour"),
        (["--palette", "missing.jpg"], 1, "missing.jpg: no such file (--palette takes"),
        (["--head", "reg", "--hint", "1,1=#fff"], 2, "colour hints and palettes need the cls"),
        (["--suggest", "1,1"], 2, "--suggest prints colours and writes no image: drop -o"),
        (["--hint-spread", "far"], 2, "Invalid value for '--hint-spread': 'far' is not one of"),
    ],
)
def test_bad_hint_options_give_one_line(tmp_path, weights, image, args, rc, match):
    src, _ = image
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    args = [a.format(broken=broken) for a in args]
    w = weights["reg"] if "reg" in args else weights["cls"]
    p = run(["predict", src, "-w", w, *args, "-o", tmp_path / "out.png"])
    lines = p.stderr.decode().splitlines()
    assert p.returncode == rc and len(lines) == 1, lines
    assert lines[0].startswith("recolor predict: " + match.format(broken=broken)), lines
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("nan,1", "coordinate 'nan' is not a number"),
        (",", "coordinate '' is not a number"),
        ("1,2,3", "coordinate '2,3' is not a number"),
        ("7", "not X,Y"),
    ],
)
def test_bad_suggest_points_are_usage_errors(tmp_path, where, match):
    """Checked before any image is read and any model loaded (neither the input nor the
    weights exist; a missing weights file hid the usage error, exit 1): exit 2, one line."""
    p = run(["predict", tmp_path / "none.jpg", "-w", tmp_path / "none.pt", "--suggest", where])
    assert p.returncode == 2 and p.stdout == b""
    assert p.stderr.decode() == f"recolor predict: --suggest {where!r}: {match}\n"


def test_a_hint_layer_is_read_with_the_image_checks(tmp_path):
    # A hint layer is an image from the user: it passes the format and pixel-limit checks of
    # every image read (a decompression bomb is refused before decoding), named in one line.
    import zlib

    from corpus import png_bytes

    (tmp_path / "bomb.png").write_bytes(png_bytes(100_000, 100_000, zlib.compress(bytes(1000))))
    with pytest.raises(RecolorError, match="bomb|pixel") as e:
        hintfiles.read_hints(tmp_path / "bomb.png")
    assert e.value.path == str(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ('{"points": {"x": 1}}', '"points" must be a list of objects with "x", "y", "color"'),
        ('{"points": [[1, 2, "#f00"]]}', '"points" must be a list of objects with "x", "y"'),
        ('{"points": ""}', '"points" must be a list of objects'),  # not "no points"
        ('{"points": false}', '"points" must be a list of objects'),
        ('{"palette": "#fff"}', '"palette" must be a list of objects with "color" and an'),
        ('{"points": [], "point": []}', "unknown key 'point' (a hint file holds \"points\""),
        ('{"points": [{"x": 1, "y": 1, "colour": "#f00"}]}', "unknown key 'colour' in \"points\""),
        ('{"points": [{"x": 1, "y": 1, "color": "#f00", "sise": 9}]}', "unknown key 'sise'"),
        ('{"points": [{"x": 1, "color": "#f00"}]}', "missing key 'y'"),
        ('{"palette": [{"color": "#f00", "wieght": 9}]}', "unknown key 'wieght' in \"palette\""),
        ('{"palette": [{"color": "#e63946,#1d3557"}]}', "colour '#e63946,#1d3557' is not"),
        ('{"palette": [{"color": "#e63946:5"}]}', "colour '#e63946:5' is not #rrggbb"),
        ('{"palette": [{"color": "#e63946", "weight": "x"}]}', "palette weight 'x' is not a"),
        ('{"palette": [{"color": "#e63946", "weight": true}]}', "palette weight True is not a"),
        ("[]", 'expected an object with "points" and/or "palette"'),
        # the second "points" dropped the first's hints without a word
        ('{"points": [{"x": 1, "y": 1, "color": "#f00"}], "points": []}',
         "key 'points' given twice in one object"),
        ('{"points": [{"x": 1, "y": 1, "x": 2, "color": "#f00"}]}', "key 'x' given twice"),
    ],
)  # fmt: skip
def test_a_malformed_hint_file_says_what_is_wrong(tmp_path, doc, reason):
    # Python's own words ("string indices must be integers") once stood for a wrong shape.
    (tmp_path / "h.json").write_text(doc)
    with pytest.raises(RecolorError) as e:
        hintfiles.read_hints(tmp_path / "h.json")
    assert e.value.reason.startswith(f"bad hint file: {reason}"), e.value.reason


def test_a_hint_folder_inside_the_input_folder_holds_no_inputs(tmp_path, weights):
    """posters/hints/b.png is b.png's hint layer, not an image to recolour (and output)."""
    posters = tmp_path / "posters"
    (posters / "hints").mkdir(parents=True)
    rgb = smooth_image(40, 50, 3)
    write_rgb(posters / "b.png", rgb)
    layer = np.zeros((40, 50, 4), np.uint8)
    layer[10:15, 10:15] = (40, 60, 220, 255)  # RGBA: a blue square
    write_rgb(posters / "hints" / "b.png", layer)
    out = tmp_path / "out"
    p = run(["predict", posters, "-w", weights["cls"], "--hints", posters / "hints", "-o", out],
            check_rc=0)  # fmt: skip
    assert p.stdout.decode().splitlines() == [str(out / "b.png")]
    square = [(x, y) for x in range(10, 15) for y in range(10, 15)]
    blue = np.broadcast_to(np.array([40, 60, 220], np.uint8), rgb.shape)
    assert hint_error(read_rgb_u8(out / "b.png"), blue, square) < 6


def test_a_palette_image_or_hint_layer_in_the_input_folder_is_no_input(tmp_path, weights):
    """`recolor predict . --palette ref.png` recoloured ref.png too (and took the palette's
    pixels for a hint layer of another size); named on the command line, it is an input."""
    posters = tmp_path / "posters"
    posters.mkdir()
    write_rgb(posters / "b.png", smooth_image(40, 50, 3))
    write_rgb(posters / "ref.png", smooth_image(40, 50, 4))  # a layer fits every input
    layer = np.zeros((40, 50, 4), np.uint8)
    layer[10:15, 10:15] = (40, 60, 220, 255)
    write_rgb(posters / "b.hints.png", layer)
    out = tmp_path / "out"
    args = ["predict", posters, "-w", weights["cls"], "-o", out, "-q"]
    for given in (["--palette", posters / "ref.png"], ["--hints", posters / "b.hints.png"]):
        p = run([*args, *given], check_rc=0)
        written = {Path(x).name for x in p.stdout.decode().splitlines()}
        assert written == {"b.png", "ref.png" if given[0] == "--hints" else "b.hints.png"}
    alone = ["predict", posters / "ref.png", "-w", weights["cls"], "-o", tmp_path / "own", "-q"]
    p = run([*alone, "--palette", posters / "ref.png"], check_rc=0)
    assert p.stdout.decode() == f"{tmp_path / 'own' / 'ref.png'}\n"


def test_suggest_needs_the_cls_head_a_usage_error(weights, image):
    src, _ = image
    p = run(["predict", src, src, "-w", weights["reg"], "--suggest", "1,1"])  # said per image
    assert p.returncode == 2 and p.stdout == b"", p.stderr
    assert p.stderr.decode() == (
        "recolor predict: --suggest needs the cls head (reg has no class distribution)\n"
    )


def test_a_hint_folder_that_is_the_input_folder(tmp_path, weights):
    """JSON hint files beside the images: a PNG image there was dropped from the inputs and
    reported as "hint file for no input" (it was taken for a layer); its images are inputs and
    its JSON files their hints, PNG photographs included."""
    folder = tmp_path / "posters"
    folder.mkdir()
    write_rgb(folder / "a.jpg", smooth_image())
    write_rgb(folder / "b.png", smooth_image(seed=1))
    write_rgb(folder / "c.png", smooth_image(seed=2))
    for name in ("a", "b"):
        (folder / f"{name}.json").write_text('{"points": [{"x": 5, "y": 5, "color": "#f00"}]}')
    w = ["-w", weights["cls"]]
    out = tmp_path / "out"
    p = run(["predict", folder, "--hints", folder, *w, "-o", f"{out}/"])
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["a.jpg", "b.png", "c.png"]
    # b.png took its hint, c.png none: as run one by one
    for name, hinted in (("b", True), ("c", False)):
        alone = tmp_path / f"{name}-alone.png"
        extra = ["--hints", folder / f"{name}.json"] if hinted else []
        run(["predict", folder / f"{name}.png", *extra, *w, "-o", alone], check_rc=0)
        assert (out / f"{name}.png").read_bytes() == alone.read_bytes()


def test_a_hint_file_is_json_or_a_layer_by_its_bytes(tmp_path, weights):
    """A JSON hint file named .txt was "not an image", a layer named .json "bad hint file:
    'utf-8' codec can't decode": told apart by their bytes, as stdin always was."""
    write_rgb(tmp_path / "a.png", smooth_image())
    doc = '{"points": [{"x": 5, "y": 5, "color": "#ff0000"}]}'
    (tmp_path / "h.json").write_text(doc)
    (tmp_path / "h.txt").write_text(doc)
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[5, 5] = (0, 0, 255, 255)  # red, BGRA
    cv2.imwrite(str(tmp_path / "layer.png"), layer)
    (tmp_path / "layer.json").write_bytes(cv2.imencode(".png", layer)[1].tobytes())
    out = {}
    for name in ("h.json", "h.txt", "layer.png", "layer.json"):
        o = tmp_path / f"out-{name}.png"
        p = run(["predict", tmp_path / "a.png", "--hints", tmp_path / name, "-w",
                 weights["cls"], "-o", o])  # fmt: skip
        assert p.returncode == 0, p.stderr
        out[name] = o.read_bytes()
    assert out["h.json"] == out["h.txt"] == out["layer.png"] == out["layer.json"]
    # bytes that tell neither (empty, a format recolor does not read): the name says which
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "anim.png").write_bytes(b"GIF89a" + bytes(40))
    (tmp_path / "empty.json").write_bytes(b"")
    for name, says in (("empty.png", "empty file"), ("anim.png", "not an image recolor reads")):
        p = run(["predict", tmp_path / "a.png", "--hints", tmp_path / name, "-w",
                 weights["cls"], "-o", tmp_path / "x.png"])  # fmt: skip
        assert p.returncode == 1 and p.stderr.decode().startswith(
            f"recolor predict: {tmp_path / name}: {says}"
        ), p.stderr
    run(["predict", tmp_path / "a.png", "--hints", tmp_path / "empty.json", "-w",
         weights["cls"], "-o", tmp_path / "e.png"], check_rc=0)  # fmt: skip
