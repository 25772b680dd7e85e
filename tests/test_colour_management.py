"""Archive-grade image I/O (issue 18): ICC profiles, converted to sRGB and back, against
littleCMS and against the formulas evaluated here in float64."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from archive_inputs import (
    D50,
    WIDE,
    iccp,
    lab_records,
    lightness,
    opened,
    oracle_srgb,
    png_with_chunks,
    wide_gamut_icc,
)
from conftest import pipeline, run, smooth_image
from PIL import Image, ImageCms

from recolor_tools import color, colorprofile


def field(h: int, w: int, seed: int, lo: float = 0.15, hi: float = 0.85) -> np.ndarray:
    """A smooth float RGB field in [lo, hi], moderately saturated."""
    return lo + (hi - lo) * smooth_image(h, w, seed).astype(np.float64) / 255


@pytest.mark.parametrize("bits", [8, 16])
def test_wide_gamut_profile_keeps_lightness_within_one_unit(tmp_path: Path, bits: int):
    src = field(60, 80, seed=4)
    icc = wide_gamut_icc()
    scale = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    stored = np.rint(src * scale).astype(dtype)
    path = tmp_path / f"wide{bits}.png"
    path.write_bytes(png_with_chunks(stored, iccp(icc)))
    (rec,) = lab_records(run(["to-lab", path], check_rc=0).stdout)
    want = oracle_srgb(stored / scale)
    inside = ((want > 0.002) & (want < 0.998)).all(axis=-1)  # no clamp needed
    assert inside.mean() > 0.5
    err = np.abs(rec.lightness() - lightness(want))[inside]
    assert np.percentile(err, 99) < 1.0, np.percentile(err, 99)
    # ... where reading the same pixels as sRGB, as before, misses by several units
    naive = np.abs(lightness(stored / scale) - lightness(want))[inside]
    assert np.percentile(naive, 99) > 1.5
    assert rec.source["depth"] == bits and rec.source["icc"]


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("gamma, stored_gamma", [(1.8, 461 / 256), (1.0, 1.0)])
def test_gray_profile_gives_the_lightness_its_curve_defines(
    tmp_path: Path, gamma: float, stored_gamma: float, bits: int
):
    # gamma 1.0, linear light: steepest in the shadows, where littleCMS's optimised 8-bit
    # gray transform was up to 4.5 L units off (codes 6, 12, 19 for 12.7, 21.7, 28.2)
    scale = 255 if bits == 8 else 65535
    ramp = np.rint(np.tile(np.linspace(0, scale, 400), (4, 1))).astype(f"uint{bits}")
    path = tmp_path / "gray.png"
    path.write_bytes(png_with_chunks(ramp, iccp(colorprofile.gray_profile(gamma))))
    (rec,) = lab_records(run(["to-lab", path], check_rc=0).stdout)
    y = (ramp / scale) ** stored_gamma  # the curve as stored (u8Fixed8), relative luminance
    want = np.where(y > (6 / 29) ** 3, 116 * np.cbrt(y) - 16, y * (29 / 3) ** 3)
    assert np.abs(rec.lightness() - want).max() < 1.0, np.abs(rec.lightness() - want).max()
    assert np.abs(rec.lab()[..., 1:]).max() < 1.0  # still gray
    naive = np.abs(lightness(np.repeat(ramp[..., None] / scale, 3, 2)) - want)
    assert np.percentile(naive, 99) > 3


def test_sampled_table_matches_littlecms_on_8bit_data():
    icc = wide_gamut_icc()
    u8 = np.rint(field(64, 96, seed=7, lo=0.1, hi=0.9) * 255).astype(np.uint8)
    prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    xf = ImageCms.buildTransform(prof, ImageCms.createProfile("sRGB"), "RGB", "RGB", 1)
    exact = np.asarray(xf.apply(Image.fromarray(u8))).astype(int)
    t = colorprofile.to_srgb(icc)
    table = np.rint(t.apply(u8 / np.float32(255), depth=16) * 255).astype(int)
    inside = ((exact > 0) & (exact < 255)).all(axis=-1)
    diff = np.abs(table - exact)[inside]
    # 8-bit rounding of the nodes: one code; cells across the gamut boundary: a few more
    assert np.percentile(diff, 99) <= 1 and (diff <= 1).mean() > 0.98, (diff <= 1).mean()
    np.testing.assert_array_equal(np.rint(t.apply(u8 / np.float32(255), 8) * 255), exact)


def test_srgb_profile_is_the_identity_and_bad_profiles_fail_in_one_line(tmp_path: Path):
    assert colorprofile.to_srgb(colorprofile.srgb_profile()).table is None
    img = smooth_image(20, 30, 2)
    tagged = tmp_path / "srgb.png"
    tagged.write_bytes(png_with_chunks(img, iccp(colorprofile.srgb_profile())))
    broken = tmp_path / "broken.png"
    bad_curves = wide_gamut_icc().replace(b"curv", b"junk")  # a sound header, unusable tags
    broken.write_bytes(png_with_chunks(img, iccp(bad_curves)))
    p = run(["to-lab", broken, tagged])
    assert p.returncode == 1
    err = p.stderr.decode().strip()
    assert err.startswith(f"recolor to-lab: {broken}: ") and "ICC profile" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    (rec,) = lab_records(p.stdout)  # the good input still went through, unchanged
    want = color.rgb_to_lab(img.astype(np.float32) / 255)
    np.testing.assert_allclose(rec.lab(), want, atol=1e-4)


def test_keep_profile_converts_back_and_embeds_the_source_profile(tmp_path: Path):
    icc = wide_gamut_icc()
    stored = np.rint(field(40, 50, seed=9) * 65535).astype(np.uint16)
    path = tmp_path / "wide.png"
    path.write_bytes(png_with_chunks(stored, iccp(icc)))
    lab = run(["to-lab", path], check_rc=0).stdout
    kept = run(["from-lab", "--keep-profile", "-f", "tif"], input=lab, check_rc=0)
    assert opened(kept.stdout).info["icc_profile"] == icc
    pixels = cv2.imdecode(np.frombuffer(kept.stdout, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint16  # the source's depth, by default
    want = oracle_srgb(stored / 65535)
    inside = ((want > 0.002) & (want < 0.998)).all(axis=-1)
    back = pixels[:, :, ::-1] / 65535  # in the source's space again: near the stored values
    assert np.percentile(np.abs(back - stored / 65535)[inside], 99) < 2 / 255
    (rec,) = lab_records(lab)
    stages = pipeline(["from-lab", "--keep-profile"], ["to-lab"], input=lab)
    (again,) = lab_records(stages[1].stdout)
    err = np.abs(again.lightness() - rec.lightness())[inside]
    assert np.percentile(err, 99) < 1.0


def test_a_16_bit_master_with_a_matrix_profile_comes_back_to_the_code(tmp_path: Path):
    """The profile's transform was littleCMS's sampled at 8-bit nodes: a 16-bit master read and
    written back (--keep-profile) came back up to 197 codes of 65,535 off (mean 38) where its
    colours are inside sRGB. Now its matrix and curves are evaluated in float: the same codes."""
    stored = np.rint(field(60, 80, seed=4) * 65535).astype(np.uint16)
    path = tmp_path / "wide16.png"
    path.write_bytes(png_with_chunks(stored, iccp(wide_gamut_icc())))
    stages = pipeline(["to-lab", path], ["from-lab", "--keep-profile", "-o", tmp_path / "b.png"])
    assert stages[-1].returncode == 0
    back = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    want = oracle_srgb(stored / 65535)
    inside = ((want > 0.002) & (want < 0.998)).all(axis=-1)  # (outside: clipped to sRGB)
    assert back.dtype == np.uint16 and inside.mean() > 0.5
    assert np.abs(back.astype(int) - stored)[inside].max() <= 1
    # and into sRGB, against the formulas evaluated here in float64 with the exact primaries:
    # the profile stores its colorants to 1/65536 (s15Fixed16), a few codes in the shadows
    got = colorprofile.to_srgb(wide_gamut_icc()).apply(stored / 65535, depth=16)
    err = np.abs(got - want)[inside] * 65535
    assert err.max() < 24 and np.percentile(err, 99) < 5, (err.max(), np.percentile(err, 99))


def _with_curve(primaries, curve: bytes) -> bytes:
    """A matrix profile of these primaries whose three tone curves are the tag ``curve``."""
    P = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    M = P * np.linalg.solve(P, D50)
    rgb = (b"r", b"g", b"b")
    tags = [(c + b"XYZ", b"XYZ \0\0\0\0" + colorprofile._s15(M[:, i])) for i, c in enumerate(rgb)]
    return colorprofile._icc_v2(b"RGB ", "odd", tags + [(c + b"TRC", curve) for c in rgb])


def test_the_float_transform_follows_littlecms_and_its_curves():
    """The matrix/TRC formulas agree with littleCMS on 8-bit data (gamma, table and parametric
    curves, both ways; gray), and a profile with lookup tables is left to littleCMS's table."""
    from recolor_tools import iccshaper

    srgb = ImageCms.createProfile("sRGB")
    u8 = np.random.default_rng(3).integers(0, 256, (64, 96, 3), np.uint8)
    tabled = colorprofile.matrix_profile(WIDE, 1.8, table=1024)
    for icc in (wide_gamut_icc(), tabled, colorprofile.srgb_profile()):  # sRGB: para curves
        prof = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        for to_srgb in (True, False):
            src, dst = (prof, srgb) if to_srgb else (srgb, prof)
            exact = np.asarray(
                ImageCms.buildTransform(src, dst, "RGB", "RGB", 1).apply(Image.fromarray(u8))
            ).astype(int)
            formula = iccshaper.shaper(icc, to_srgb, colorprofile.srgb_profile())
            diff = np.abs(np.rint(formula(u8 / 255) * 255).astype(int) - exact)
            assert diff.max() <= 2 and (diff == 0).mean() > 0.98, (diff.max(), (diff == 0).mean())
    gray = colorprofile.gray_profile(1.8)
    xg = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(gray)), srgb, "L", "RGB", 1)
    levels = np.arange(256, dtype=np.uint8)
    exact = np.asarray(xg.apply(Image.fromarray(levels[None])))[0, :, 1].astype(int)
    formula = iccshaper.shaper(gray, True, colorprofile.srgb_profile())
    assert np.abs(np.rint(formula(levels / 255) * 255) - exact).max() <= 1
    assert iccshaper.shaper(gray, False, colorprofile.srgb_profile()) is None  # RGB out: none

    # profiles littleCMS reads and the formulas would misread (curve parameters that overflow
    # or divide by zero, a curve ICC.1 clips, a gray profile whose connection space is Lab: L*,
    # not Y) were NaN, internal errors or other colours: the sampled table serves them
    def para(ftype: int, *p: float) -> bytes:
        return b"para\0\0\0\0" + struct.pack(">HH", ftype, 0) + colorprofile._s15(p)

    for curve in (para(1, 200, 2, 0), para(3, 100, 30000, 0, 0, 30000), para(2, 2.2, 0, 0, 0)):
        t = colorprofile.to_srgb(_with_curve(WIDE, curve))
        got = t.apply(u8 / np.float32(255), depth=16)
        assert t.formula is None and np.isfinite(got).all()
    lab_gray = gray[:20] + b"Lab " + gray[24:]
    assert colorprofile.to_srgb(lab_gray).formula is None
    # a profile with an A2B0 table: littleCMS would use the table, so the formulas are not used
    with_lut = colorprofile._icc_v2(b"RGB ", "LUT", [(b"A2B0", b"mft2\0\0\0\0")])
    assert iccshaper.shaper(with_lut, True, colorprofile.srgb_profile()) is None
    assert colorprofile.to_srgb(wide_gamut_icc()).formula is not None
