"""Guided recolouring through the real CLI: point hints, palettes, --suggest, and how far a
hint spreads (--hint-spread, --hint-strength).

Most CLI checks use a tiny random-weight cls model (form, fidelity, errors: what does not depend
on colour quality); the spread and --suggest checks use the shipped cls weights.
"""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch
from conftest import read_rgb_u8, run, smooth_image, write_rgb
from hint_helpers import SHIPPED, hex_of, hint_error, lab
from hint_helpers import image as image  # the fixtures, for pytest to find here
from hint_helpers import weights as weights

from recolor_tools import guide, hintfiles, hints, palettes, quant

POINTS = [(5, 7), (40, 30), (70, 50), (20, 55)]


@pytest.fixture(scope="module")
def auto(tmp_path_factory, weights):
    """hint_helpers.image (its own copy) and the tiny cls model's automatic output of it: one
    run for the three tests that compare with it. (src, rgb, output, its stdout)"""
    d = tmp_path_factory.mktemp("auto")
    rgb = smooth_image(60, 80, 11)
    src = write_rgb(d / "a.png", rgb)
    p = run(["predict", src, "--weights", weights["cls"], "-o", d / "auto.png"], check_rc=0)
    return src, rgb, d / "auto.png", p.stdout


def test_every_hint_form_holds_at_its_pixels(tmp_path, weights, auto):
    src, rgb, auto_png, stdout = auto
    w = ["--weights", weights["cls"]]
    assert stdout.decode() == f"{auto_png}\n"
    auto = read_rgb_u8(auto_png)
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


def test_saturation_scales_the_hinted_pixels_too(tmp_path, weights, auto):
    """The hinted squares were pasted after --saturation's scale: at 0 a gray image with a red
    dot at each hint, at 2 each hint a duller dot inside the region it had spread to."""
    src = auto[0]
    flags = [f"--hint={x},{y}=#8a6a6a" for x, y in POINTS]  # (doubled, within the gamut)
    for s in ("0", "2"):
        run(["predict", src, "-w", weights["cls"], *flags, "--saturation", s, "-o",
             tmp_path / f"s{s}.png"], check_rc=0)  # fmt: skip
    gray = lab(read_rgb_u8(tmp_path / "s0.png"))
    assert np.abs(gray[:, :, 1:]).max() < 1.0  # (8-bit rounding)
    run(["predict", src, "-w", weights["cls"], *flags, "-o", tmp_path / "s1.png"], check_rc=0)
    one, two = lab(read_rgb_u8(tmp_path / "s1.png")), lab(read_rgb_u8(tmp_path / "s2.png"))
    for x, y in POINTS:  # the hint's chroma doubled, where the gamut holds it
        assert np.hypot(*two[y, x, 1:]) > 1.5 * np.hypot(*one[y, x, 1:]), (x, y)


def test_a_one_pixel_hint_holds_in_jpeg_output(tmp_path, weights):
    """JPEG outputs keep the chroma at full resolution (4:4:4) from quality 90, as ImageMagick
    does: 4:2:0 averaged a one-pixel hint of a colour unlike its neighbours' with them (on the
    Kodak photographs, 10 such hints: 20.4 a/b units off the PNG output, median; 4:4:4 at the
    default quality 95: 4.4). Below 90, 4:2:0 as before."""
    from PIL import Image, JpegImagePlugin

    # hint_helpers.image as a JPEG (quality 100) and its decoded pixels as a PNG: one run of
    # both writes the PNG reference and the JPEG at the default quality (each its input's format)
    jpg = tmp_path / "a.jpg"
    bgr = np.ascontiguousarray(smooth_image(60, 80, 11)[:, :, ::-1])
    assert cv2.imwrite(str(jpg), bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    src = write_rgb(tmp_path / "a.png", read_rgb_u8(jpg))
    hues = ["#e01020", "#10c030", "#2040e0", "#f0d000"]  # unlike the image's own colours
    flags = [f"--hint={x},{y}={c}" for (x, y), c in zip(POINTS, hues, strict=True)]
    w = ["--weights", weights["cls"], *flags]
    run(["predict", src, jpg, *w, "-o", f"{tmp_path / 'out'}/"], check_rc=0)
    ref = read_rgb_u8(tmp_path / "out" / "a.png")
    errors = {}
    for quality, sampling in [(None, 0), ("90", 0), ("89", 2)]:  # PIL: 0 is 4:4:4, 2 is 4:2:0
        out = tmp_path / "out" / "a.jpg" if quality is None else tmp_path / f"q{quality}.jpg"
        if quality:
            run(["predict", src, *w, "-o", out, "--quality", quality], check_rc=0)
        with Image.open(out) as im:
            assert JpegImagePlugin.get_sampling(im) == sampling, quality
        errors[quality] = hint_error(read_rgb_u8(out), ref, POINTS)
    assert errors[None] < errors["89"] / 3 and errors["90"] < errors["89"] * 0.75, errors


def test_palettes_move_the_colours(tmp_path, weights, auto):
    src, rgb, auto_png, _ = auto
    w = ["--weights", weights["cls"]]
    auto = lab(read_rgb_u8(auto_png))[..., 1:].reshape(-1, 2).mean(0)
    ref = write_rgb(tmp_path / "ref.png", np.full((30, 30, 3), (40, 60, 220), np.uint8))
    blue = hints.parse_color("#283cdc")
    for spec, out in ((ref, tmp_path / "file.png"), ("#283cdc:2,#808080:0.5", tmp_path / "l.png")):
        run(["predict", src, *w, "--palette", spec, "-o", out], check_rc=0)
        mean = lab(read_rgb_u8(out))[..., 1:].reshape(-1, 2).mean(0)
        # the mean colour moves toward the palette's blue
        assert np.linalg.norm(mean - blue) < np.linalg.norm(auto - blue) - 5, spec
    # the palette image from stdin (`... | recolor predict a.png --palette -`): the same output
    # as from the file (file.png, above)
    run(["predict", src, *w, "--palette", "-", "-o", tmp_path / "stdin.png"],
        input=ref.read_bytes(), check_rc=0)  # fmt: skip
    assert (tmp_path / "stdin.png").read_bytes() == (tmp_path / "file.png").read_bytes()
    p = run(["predict", "-", *w, "--palette", "-", "-o", tmp_path / "x.png"], input=b"")
    assert p.returncode == 2 and b"--palette - reads its file from stdin" in p.stderr
    # stdin's file is a file the run reads: `-o ref.png < ref.png` replaced the palette
    before = ref.read_bytes()
    with open(ref, "rb") as stdin:
        p = run(["predict", src, *w, "--palette", "-", "-o", ref], stdin=stdin)
    assert p.returncode == 1 and b"refusing to overwrite an input" in p.stderr, p.stderr
    assert ref.read_bytes() == before


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
    pal, opaque = palettes.palette_from_image(cutout), palettes.palette_from_image(flat)
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
    both = palettes.palette_from_image(ref) + hintfiles.read_hints(tmp_path / "red.json")
    red = np.abs(both.palette_ab - hints.parse_color("#ff0000")).max(axis=1) < 0.5
    assert red.sum() == 1 and both.palette_w[red].sum() / both.palette_w.sum() == pytest.approx(0.5)
    listed = palettes.palette_from_list("#ff0000:1e30,#0000ff:1e30")  # float32 would overflow
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
    h = palettes.palette_from_image(thin)
    assert len(h.palette_w) == 1000 and np.allclose(h.palette_ab, blue, atol=0.5)
    assert len(palettes.palette_from_image(long).palette_w) == 16 * palettes.PALETTE_IMAGE_SIDE
    h = palettes.palette_from_image(small)
    assert len(h.palette_w) == 600 and np.abs(h.palette_ab).max() < 0.5  # black and white only


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
    # a point outside one image: one line naming it; the next image is still answered
    small = write_rgb(tmp_path / "small.png", rgb[:20, :30])
    p = run(["predict", small, src, "-w", SHIPPED, "--suggest", "40,30"], check_rc=1, cwd=tmp_path)
    assert p.stderr.decode().splitlines() == [
        f"recolor predict: {small}: --suggest point (40, 30) is outside the 30x20 image"
    ]
    assert len(p.stdout.decode().splitlines()) == 5
    rows = [ln.split("\t") for ln in p.stdout.decode().splitlines()]
    assert 2 <= len(rows) <= 5 and not list(tmp_path.glob("recolored*"))
    probs = [float(r[3]) for r in rows]
    assert all(r[0] == str(src) and r[1] == "40,30" for r in rows)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", r[2]) for r in rows)
    # distinct colours (not one colour's neighbouring classes) that hold the whole distribution
    assert probs == sorted(probs, reverse=True) and 0.97 <= sum(probs) <= 1.0
    shown = hints.parse_colors([r[2] for r in rows])
    assert min(np.hypot(*(a - b)) for i, a in enumerate(shown) for b in shown[:i]) > 10
    # a hint there (the pixel's own colour, so in gamut at its L) is the colour at its pixel,
    # as the output holds it (with --hint-strength 0 the model's own were shown), and the
    # likeliest beside it
    want = hex_of(rgb, 40, 30)
    hinted = run(["predict", src, "-w", SHIPPED, "--suggest", "40,30", "--suggest", "41,30",
                  "--hint", f"40,30={want}"], check_rc=0).stdout.decode().splitlines()  # fmt: skip
    assert hinted[0].split("\t")[1:] == ["40,30", want, "1.0000"]
    top = hinted[1].split("\t")
    assert top[1] == "41,30" and float(top[3]) > 0.3
    assert np.linalg.norm(hints.parse_color(top[2]) - hints.parse_color(want)) < 12
    # repeated: each point's five lines in the order given, as one point alone gives them
    corner = run(["predict", src, "-w", SHIPPED, "--suggest", "0,0"], check_rc=0).stdout
    both = run(["predict", src, "-w", SHIPPED, "--suggest", "0,0", "--suggest", "40,30"],
               check_rc=0).stdout  # fmt: skip
    assert both == corner + "".join("\t".join(r) + "\n" for r in rows).encode()


def test_hints_spread_and_strength_with_the_shipped_model(tmp_path):
    """How far point hints reach with the shipped cls weights, on four images (four tests once,
    12 predict runs; now six: several images to an -o folder, each image's own hint from a
    hint folder, -b 1: each image its own forward pass, as when run alone)."""
    # Two flat regions split by a sharp edge, with some texture; one blue hint on the left.
    rng = np.random.default_rng(0)
    gray = np.where(np.arange(160)[None, :] < 80, 90, 200).astype(np.float32)
    gray = np.repeat(gray, 120, axis=0) + rng.normal(0, 4, (120, 160))
    write_rgb(tmp_path / "two.png", np.clip(gray, 0, 255).astype(np.uint8))
    # Two look-alike squares on a darker ground, one blue hint in the left one.
    rng = np.random.default_rng(0)
    gray = np.full((120, 200), 60, np.float32)
    gray[20:100, 15:85] = gray[20:100, 115:185] = 190
    gray = np.clip(gray + rng.normal(0, 4, gray.shape), 0, 255).astype(np.uint8)
    write_rgb(tmp_path / "squares.png", gray)
    # A smoothly varying image, one blue hint in the middle.
    write_rgb(tmp_path / "smooth.png", smooth_image(120, 160, 5))
    # Upscaled noise: cells that no hint reaches round differently if decoded the wrong way.
    rng = np.random.default_rng(1)
    noise = (rng.random((12, 20, 3)) * 255).astype(np.uint8)
    cv2.imwrite(
        str(tmp_path / "b.png"), cv2.resize(noise, (200, 120), interpolation=cv2.INTER_CUBIC)
    )
    blue = "#1d4e89"
    want = hints.parse_color(blue)

    def predict(run_name, names, *opts, hinted=None):
        """One predict run of tmp_path/NAME.png, ... (-b 1) to the folder tmp_path/RUN_NAME;
        ``hinted``: {name: (x, y, colour)}, one point hint each, from a hint folder (--hints)."""
        out = tmp_path / run_name
        if hinted:
            hdir = tmp_path / f"{run_name}-hints"
            hdir.mkdir()
            for name, (x, y, c) in hinted.items():
                points = [{"x": x, "y": y, "color": c}]
                (hdir / f"{name}.json").write_text(json.dumps({"points": points}))
            opts = ("--hints", hdir, *opts)
        run(["predict", *(tmp_path / f"{n}.png" for n in names), "-w", SHIPPED, "-b", "1",
             *opts, "-o", f"{out}/"], check_rc=0)  # fmt: skip
        return {n: read_rgb_u8(out / f"{n}.png") for n in names}

    auto = predict("auto", ["two", "squares", "smooth", "b"])
    # alike is the default spread, given (as the squares' check had it): passed as though unsaid
    alike = predict("alike", ["two", "squares", "smooth"], "--hint-spread", "alike",
                    hinted={"two": (40, 60, blue), "squares": (50, 60, blue),
                            "smooth": (80, 60, blue)})  # fmt: skip
    s0 = predict("s0", ["smooth", "b"], "--hint-strength", "0",
                 hinted={"smooth": (80, 60, blue), "b": (30, 30, "#00ff00")})  # fmt: skip
    strength = {None: alike["smooth"], "0": s0["smooth"]}
    for value in ("0.5", "8"):
        (strength[value],) = predict(f"s{value}", ["smooth"], "--hint", f"80,60={blue}",
                                     "--hint-strength", value).values()  # fmt: skip
    (region,) = predict("region", ["squares"], "--hint", f"50,60={blue}",
                        "--hint-spread", "region").values()  # fmt: skip

    # a hint spreads over its region (two.png): far from the hint's own pixel, most of the
    # region follows
    d_auto, d_hint = (
        np.linalg.norm(lab(x[10:110, 10:70])[..., 1:] - want, axis=-1).mean()
        for x in (auto["two"], alike["two"])
    )
    assert d_hint < 0.5 * d_auto

    # --hint-spread region stops at edges and alike crosses them (squares.png): both spreads
    # fill the left square; alike also reaches the right one (it looks the same), region
    # leaves it as the automatic output has it (no path inside one region joins them).
    auto_ab = lab(auto["squares"])[:, :, 1:]
    left, right = np.s_[25:95, 20:80], np.s_[25:95, 120:180]
    for spread, out in (("alike", alike["squares"]), ("region", region)):
        got = lab(out)[:, :, 1:]
        to_hint = {k: np.linalg.norm(got[s] - want, axis=-1).mean() for k, s in
                   (("left", left), ("right", right))}  # fmt: skip
        d_auto = np.linalg.norm(auto_ab[left] - want, axis=-1).mean()
        assert to_hint["left"] < 0.2 * d_auto, spread
        moved = np.linalg.norm(got[right] - auto_ab[right], axis=-1).mean()
        if spread == "alike":
            assert to_hint["right"] < 0.5 * d_auto
        else:
            assert moved < 1.0, moved

    # --hint-strength sets how far a hint reaches (smooth.png): 0 holds a hint to its own pixel
    # (the rest is the automatic output, bit for bit); more reaches more of a smoothly varying
    # image than the default, less reaches less.
    reach = {}
    for value, out in strength.items():
        d = np.linalg.norm(lab(out)[:, :, 1:] - want, axis=-1)
        reach[value] = (d < 10).mean()
    s0_smooth, auto_smooth = s0["smooth"].copy(), auto["smooth"]
    assert not np.array_equal(s0_smooth[60, 80], auto_smooth[60, 80])  # the hinted pixel holds
    s0_smooth[60, 80] = auto_smooth[60, 80]
    assert np.array_equal(s0_smooth, auto_smooth)
    assert reach["0"] < reach["0.5"] < reach[None] < reach["8"]

    # --hint-strength 0 leaves every other pixel as the automatic output (b.png): cells that no
    # hint reaches must decode from the logits themselves: their log-softmax is the same
    # distribution but rounds differently, one 8-bit level off here and there.
    differ = np.argwhere((s0["b"] != auto["b"]).any(axis=2)).tolist()
    assert differ == [[30, 30]]

    src = tmp_path / "smooth.png"
    for value in ("nan", "1e300"):  # 1e300: inf in float32, NaN shares: once the automatic output
        bad = run(["predict", src, "-w", SHIPPED, "--hint", "1,1=#fff", "--hint-strength", value])
        assert bad.returncode == 2 and "--hint-strength" in bad.stderr.decode()
    for opts in (
        ["--hint-strength", "4"],
        ["--palette", "#f00", "--hint-spread", "region"],
        ["--hint-spread", "alike"],  # the default, given: passed as though unsaid
    ):
        bad = run(["predict", src, "-w", SHIPPED, *opts, "-o", tmp_path / "x.png"])
        flag = opts[-2]
        assert (bad.returncode, bad.stderr.decode()) == (2, (  # was ignored without a word
            f"recolor predict: {flag} acts on point hints: give --hint or --hints "
            "(see recolor predict -h)\n"
        ))  # fmt: skip
        assert not (tmp_path / "x.png").exists()


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
    seeds = torch.nn.functional.one_hot(label).T.double()
    got = guide.region_shares(feats, light, cells, seeds, tau=0.2, sigma=4.0, sink=0.01)

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

    # seeds other than one-hot give that combination of the one-hot walks (steer walks once
    # per class where a painted layer has more colours than classes)
    mixed = torch.rand(3, 2, generator=g, dtype=torch.float64)
    both = guide.region_shares(feats, light, cells, mixed @ seeds, tau=0.2, sigma=4.0, sink=0.01)
    np.testing.assert_allclose(both.numpy(), (mixed.float() @ got).numpy(), atol=1e-5)

    wall = torch.zeros(2, 4, 9)
    wall[0] = 1.0
    wall[:, :, 4] = torch.tensor([0.0, 1.0])[:, None]  # the middle column: orthogonal features
    shares = guide.region_shares(wall, torch.zeros(4, 9), torch.tensor([0]), torch.ones(1, 1))
    left, right = shares[0].reshape(4, 9)[:, :4], shares[0].reshape(4, 9)[:, 5:]
    assert left.min() > 0.5 and right.max() < 1e-3


@pytest.mark.parametrize(
    ("args", "rc", "match"),
    [
        # named as the option they came in, as --suggest and --palette values are
        (["--hint", "5,5=#nothex"], 2, "--hint '5,5=#nothex': colour '#nothex' is not #rrggbb"),
        (["--hint", "a,5=#fff"], 2, "--hint 'a,5=#fff': coordinate 'a' is not a number"),
        (["--hint", "5,5"], 2, "--hint '5,5' is not X,Y=#RRGGBB"),
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
        ("1,2,3", "not X,Y"),  # (it said "coordinate '2,3' is not a number")
        ("7", "not X,Y"),
    ],
)
def test_bad_suggest_points_are_usage_errors(tmp_path, where, match):
    """Checked before any image is read and any model loaded (neither the input nor the
    weights exist; a missing weights file hid the usage error, exit 1): exit 2, one line."""
    p = run(["predict", tmp_path / "none.jpg", "-w", tmp_path / "none.pt", "--suggest", where])
    assert p.returncode == 2 and p.stdout == b""
    assert (
        p.stderr.decode()
        == f"recolor predict: --suggest {where!r}: {match} (see recolor predict -h)\n"
    )


def test_suggest_needs_the_cls_head_a_usage_error(weights, image):
    src, _ = image
    p = run(["predict", src, src, "-w", weights["reg"], "--suggest", "1,1"])  # said per image
    assert p.returncode == 2 and p.stdout == b"", p.stderr
    assert p.stderr.decode() == (
        "recolor predict: --suggest needs the cls head (reg has no class distribution): use a "
        "cls checkpoint (-w) (see recolor predict -h)\n"
    )  # (it said "use --head cls", which then refused -w's reg checkpoint)


def test_suggest_refuses_what_shapes_a_written_image(weights, image):
    """They were ignored, unsaid (-o was refused): --saturation 2 printed unscaled colours."""
    src, _ = image
    base = ["predict", src, "-w", weights["cls"], "--suggest", "1,1"]
    p = run([*base, "--saturation", "2", "-f", "png", "-T", "0.1", "--strip"])
    assert (p.returncode, p.stdout) == (2, b"")
    assert p.stderr.decode() == (
        "recolor predict: --suggest prints colours and writes no image: drop -f/--format, "
        "--strip, --saturation, -T/--temperature (see recolor predict -h)\n"
    )
    assert run([*base, "--saturation", "1"], check_rc=0).stdout.count(b"\t1,1\t") >= 1


def test_temperature_for_the_reg_head_a_usage_error(weights, auto, tmp_path):
    """-T was ignored by a reg model, unsaid (other cls-only options are refused); the
    default temperature is still no error, and an explicit -T to cls gives what it says."""
    src, _, auto_png, _ = auto
    p = run(["predict", src, "-w", weights["reg"], "-T", "0.1", "-o", tmp_path / "r.png"])
    assert p.returncode == 2 and not (tmp_path / "r.png").exists()
    assert p.stderr.decode() == (
        "recolor predict: -T/--temperature is the cls head's annealed mean; the reg head "
        "predicts a/b directly: drop it or use a cls checkpoint (-w) (see recolor predict -h)\n"
    )
    run(["predict", src, "-w", weights["reg"], "-o", tmp_path / "r.png"], check_rc=0)
    # a rerun with every output there loads no model, but -T is checked as hints are
    p = run(["predict", src, "-w", weights["reg"], "-T", "0.1", "-o", tmp_path / "r.png",
             "--skip-existing"])  # fmt: skip
    assert p.returncode == 2 and "-T/--temperature is the cls head's" in p.stderr.decode()
    out = {None: auto_png.read_bytes()}  # -T unsaid: the automatic output
    for t in ("0.38", "0"):
        dest = tmp_path / f"c{t}.png"
        run(["predict", src, "-w", weights["cls"], "-T", t, "-o", dest], check_rc=0)
        out[t] = dest.read_bytes()
    assert out[None] == out["0.38"] != out["0"]  # the default is 0.38


def test_a_faint_palette_image_keeps_its_colours(tmp_path):
    """A float layer whose alpha is everywhere below 1e-6 was un-premultiplied by at least 1e-6,
    so its colours came out a tenth as bright (grey): the colour is its own at any opacity."""
    bgra = np.zeros((8, 8, 4), np.float32)
    bgra[..., 0] = 1.0  # blue
    bgra[..., 3] = 1e-7
    path = tmp_path / "faint.tif"
    assert cv2.imwrite(str(path), bgra)
    h = palettes.palette_from_image(path)
    assert np.allclose(h.palette_ab, hints.parse_color("#0000ff"), atol=0.5)
    assert np.isclose(h.palette_w.sum(), 1)
    # parse_palette takes a Path as palette_from_image does (AttributeError: no .strip())
    assert palettes.parse_palette(path) == h
