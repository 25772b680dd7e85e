"""Archive-grade image I/O (issue 18): ICC profiles, 16-bit depth, EXIF orientation, metadata.

Every image is generated here, including a wide-gamut ICC v2 matrix/TRC profile written byte by
byte, so the tests need no file from outside the repository.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, pipeline, run, smooth_image
from PIL import Image, ImageCms, ImageOps, TiffImagePlugin

from recolor_tools import color, colorprofile, records
from recolor_tools.imagemeta import SOFTWARE, ImageMeta

D50 = np.array([0.9642, 1.0, 0.8249])
WIDE = [(0.7347, 0.2653), (0.1152, 0.8264), (0.1566, 0.0177)]  # Adobe "Wide Gamut RGB"
GAMMA = 563 / 256  # 2.2 as the profile's u8Fixed8 curve stores it
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'tiff:Orientation="6"><dc:rights>Archive rights 2026</dc:rights>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)


# --- generated inputs ---------------------------------------------------------------------------


def primaries_matrix(xy) -> np.ndarray:
    """RGB -> XYZ (D50) of a matrix profile with these primaries and white D50."""
    P = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in xy]).T
    return P * np.linalg.solve(P, D50)


def wide_gamut_icc() -> bytes:
    return colorprofile.matrix_profile(WIDE, GAMMA, "Test wide-gamut RGB")


def oracle_srgb(rgb: np.ndarray, xy=WIDE) -> np.ndarray:
    """Profile RGB -> sRGB in float64, unclamped: the profile's matrix and curve, then the inverse
    of littleCMS's D50-adapted sRGB colorants and the sRGB curve (IEC 61966-2-1)."""
    p = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).profile
    srgb50 = np.array([p.red_colorant[0], p.green_colorant[0], p.blue_colorant[0]]).T
    lin = np.asarray(rgb, np.float64) ** GAMMA @ (np.linalg.solve(srgb50, primaries_matrix(xy))).T
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.abs(lin) ** (1 / 2.4) - 0.055)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return color.rgb_to_lab(np.clip(rgb, 0, 1).astype(np.float32))[..., 0]


def field(h: int, w: int, seed: int, lo: float = 0.15, hi: float = 0.85) -> np.ndarray:
    """A smooth float RGB field in [lo, hi], moderately saturated."""
    return lo + (hi - lo) * smooth_image(h, w, seed).astype(np.float64) / 255


def png_with_chunks(pixels: np.ndarray, *chunks: tuple[bytes, bytes]) -> bytes:
    """An OpenCV PNG (RGB or gray, 8 or 16 bits) with extra chunks written here by hand, right
    after IHDR."""
    bgr = pixels[:, :, ::-1] if pixels.ndim == 3 else pixels
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(bgr))
    assert ok
    enc = enc.tobytes()
    extra = b"".join(
        struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks
    )
    return enc[:33] + extra + enc[33:]


def iccp(icc: bytes) -> tuple[bytes, bytes]:
    return b"iCCP", b"Wide\0\0" + zlib.compress(icc)


def exif_bytes(orientation: int = 1) -> bytes:
    ex = Image.Exif()
    ex[274] = orientation
    ex[315] = "Ann Archivist"
    ex[33432] = "(c) 2026 Poster Archive"
    ex.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    ex.get_ifd(0x8769)[0xA005] = {1: "R03"}  # Interoperability IFD: "Adobe RGB" per DCF
    ex.get_ifd(0x8769)[0xA001] = 0xFFFF  # ColorSpace: Uncalibrated (Adobe RGB, per DCF)
    ex.get_ifd(0x8769)[0xA002] = 999  # PixelXDimension, PixelYDimension: sizes to be made
    ex.get_ifd(0x8769)[0xA003] = 888  # the output's
    return ex.tobytes()


def lab_records(data: bytes) -> list[records.Record]:
    return list(records.iter_records(io.BytesIO(data)))


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()  # PNG eXIf/iTXt may follow the pixels
    return im


# --- colour management --------------------------------------------------------------------------


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


def test_gray_profile_gives_the_lightness_its_curve_defines(tmp_path: Path):
    ramp = np.rint(np.tile(np.linspace(0, 65535, 400), (4, 1))).astype(np.uint16)
    path = tmp_path / "gray.png"
    path.write_bytes(png_with_chunks(ramp, iccp(colorprofile.gray_profile(1.8))))
    (rec,) = lab_records(run(["to-lab", path], check_rc=0).stdout)
    y = (ramp / 65535.0) ** (461 / 256)  # the curve as stored (u8Fixed8), relative luminance
    want = np.where(y > (6 / 29) ** 3, 116 * np.cbrt(y) - 16, y * (29 / 3) ** 3)
    assert np.percentile(np.abs(rec.lightness() - want), 99) < 1.0
    assert np.abs(rec.lab()[..., 1:]).max() < 1.0  # still gray
    naive = np.abs(lightness(np.repeat(ramp[..., None] / 65535.0, 3, 2)) - want)
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


# --- orientation --------------------------------------------------------------------------------

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif"}


def save_pil(path: Path, rgb: np.ndarray, fmt: str, **kw) -> Path:
    extra = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rgb).save(path, fmt, **extra, **kw)
    return path


def test_exif_orientation_1_to_8_on_every_format(tmp_path: Path):
    stored = smooth_image(24, 36, seed=5)  # no symmetry: every wrong turn or mirror shows
    paths = [
        save_pil(tmp_path / f"o{o}{ext}", stored, fmt, exif=exif_bytes(o))
        for fmt, ext in FORMATS.items()
        for o in range(1, 9)
    ]
    recs = lab_records(run(["to-lab", *paths], check_rc=0).stdout)
    assert len(recs) == len(paths)
    for path, rec in zip(paths, recs, strict=True):
        with Image.open(path) as im:  # Pillow's own reading of the tag, as viewers show it
            want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.float32) / 255
        assert rec.lab().shape == want.shape, path.name
        err = np.abs(rec.lightness() - lightness(want)).mean()
        assert err < 1.0, (path.name, err)  # JPEG: two decoders' rounding only
        if rec.lab().shape == stored.shape and path.stem != "o1":
            ignored = np.abs(lightness(stored / np.float32(255)) - lightness(want)).mean()
            assert ignored > 5 * max(err, 0.2), path.name


def test_orientations_only_recolors_parser_reads_are_applied_not_just_reset(tmp_path: Path):
    """A JPEG's Orientation stored as a big-endian LONG (OpenCV's parser reads SHORT only) and a
    TIFF's XMP tiff:Orientation with no TIFF tag (libtiff reads no XMP; Pillow's getexif copies
    it into the EXIF, which made it look applied): both came out as stored, sideways, their
    metadata reset to say upright."""
    stored = smooth_image(20, 30, seed=9)
    jpeg = save_pil(tmp_path / "long.jpg", stored, "JPEG")
    ifd = struct.pack(">HHHII", 1, 274, 4, 1, 6) + bytes(4)  # one entry: Orientation, LONG 6
    exif = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[:2] + struct.pack(">BBH", 0xFF, 0xE1, len(exif) + 2) + exif + data[2:])
    tiff = tmp_path / "xmp.tif"
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[700] = XMP  # its tiff:Orientation is 6
    Image.fromarray(stored).save(tiff, tiffinfo=info)
    for path in (jpeg, tiff):
        with Image.open(path) as im:
            assert im.getexif().get(274) == 6, path.name  # Pillow reads a 6 in both
            want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.float32) / 255
        assert want.shape[:2] == (30, 20)
        out = tmp_path / f"out-{path.name}.png"
        run(["from-lab", "-o", out], input=run(["to-lab", path], check_rc=0).stdout, check_rc=0)
        im = opened(out.read_bytes())
        assert im.size == (20, 30) and im.getexif()[274] == 1, path.name
        got = np.asarray(im.convert("RGB"), np.float32) / 255
        assert np.abs(lightness(got) - lightness(want)).mean() < 1.0, path.name


def test_alpha_kept_beside_the_colours_turns_and_converts_with_them(tmp_path: Path):
    """decode_rgb(keep_alpha=True) (palette images): the alpha channel is turned upright with
    the colours, which alone go through the profile; without it, composited on white."""
    from recolor_tools.imageio import decode_rgb

    stored = smooth_image(24, 36, seed=5)
    alpha = np.linspace(0, 255, 24 * 36).reshape(24, 36).astype(np.uint8)
    rgba = np.concatenate([stored, alpha[:, :, None]], 2)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", exif=exif_bytes(6), icc_profile=wide_gamut_icc())
    got = decode_rgb(buf.getvalue(), keep_alpha=True)
    turn = lambda x: np.ascontiguousarray(np.rot90(x, -1))  # noqa: E731 - 6: clockwise
    assert got.shape == (36, 24, 4)
    np.testing.assert_allclose(got[:, :, 3], turn(alpha) / np.float32(255), atol=1e-6)
    want = oracle_srgb(turn(stored) / np.float32(255))
    assert np.abs(lightness(got[:, :, :3]) - lightness(want)).max() < 1.0
    flat = decode_rgb(buf.getvalue())
    assert flat.shape == (36, 24, 3) and flat[0, -1].min() > 0.99  # alpha 0 there: white


def gray_png_with_trns(samples: np.ndarray, depth: int, transparent: int) -> bytes:
    """A gray PNG (colour type 0) of ``depth`` bits whose tRNS chunk makes one value clear."""
    from corpus import png_chunk

    h, w = samples.shape
    if depth == 16:
        rows = [samples[y].astype(">u2").tobytes() for y in range(h)]
    else:  # packed, most significant bits first
        bits = np.unpackbits(samples.astype(np.uint8)[:, :, None], axis=2)[:, :, 8 - depth :]
        rows = [np.packbits(bits[y].ravel()).tobytes() for y in range(h)]
    raw = b"".join(b"\0" + r for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
        + png_chunk(b"tRNS", struct.pack(">H", transparent))
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("depth", [1, 4, 8, 16])
def test_a_gray_pngs_transparent_value_is_alpha(tmp_path: Path, depth: int):
    """A gray PNG's tRNS chunk (one gray value clear), which OpenCV drops: its pixels are
    transparent, so composited on white by every tool, and kept as alpha where alpha counts."""
    from recolor_tools.imageio import decode_rgb

    top = (1 << depth) - 1
    samples = np.array([[0, top, 0, top], [top, 0, 0, top]]) if depth == 1 else (
        np.array([[0, top // 3, top, 1], [top // 3, 0, 2, top]]))  # fmt: skip
    data = gray_png_with_trns(samples, depth, transparent=0)
    got = decode_rgb(data, keep_alpha=True)
    clear = samples == 0
    assert got.shape == (2, 4, 4)
    np.testing.assert_array_equal(got[:, :, 3], np.where(clear, 0.0, 1.0))
    np.testing.assert_allclose(got[:, :, 0], samples / top, atol=1e-6)  # the gray as stored
    src = tmp_path / "gray.png"
    src.write_bytes(data)
    lab, back = pipeline(["to-lab", src], ["from-lab", "-", "-o", "-"])
    assert lab.returncode == back.returncode == 0, lab.stderr + back.stderr
    rgb = np.asarray(Image.open(io.BytesIO(back.stdout)).convert("RGB"))
    assert (rgb[clear] == 255).all()  # transparent black: white paper, as RGBA is composited
    assert (rgb[samples == top] == 255).all() and (rgb[~clear & (samples < top)] < 255).all()
    from recolor_tools.hintfiles import read_hints  # as a hint layer: the opaque pixels, gray

    layer = read_hints(src)
    ys, xs = np.nonzero(~clear)
    assert sorted(map(tuple, layer.xy.tolist())) == sorted(zip(xs, ys, strict=True))
    assert np.abs(layer.ab).max() < 1e-3


def test_a_hint_layer_is_read_upright_and_in_srgb(tmp_path: Path):
    """A hint layer painted in a wide-gamut working space, with an EXIF orientation, gives its
    hints where the upright image has them and in the colours its profile means."""
    from recolor_tools.color import rgb_to_lab
    from recolor_tools.hintfiles import read_hints

    H, W, (r, c) = 10, 16, (3, 2)
    layer = np.zeros((H, W, 4), np.uint8)
    layer[r, c] = (170, 90, 80, 255)
    path = tmp_path / "a.hints.png"
    Image.fromarray(layer, "RGBA").save(path, exif=exif_bytes(6), icc_profile=wide_gamut_icc())
    got = read_hints(path)
    assert got.shape == (W, H)  # turned a quarter clockwise, as the image would be
    np.testing.assert_array_equal(got.xy, [[H - 1 - r, c]])  # (x, y) upright
    want = rgb_to_lab(oracle_srgb(layer[None, None, r, c, :3] / np.float32(255)))[0, 0, 1:]
    assert np.abs(got.ab[0] - want).max() < 1.0, (got.ab, want)
    plain = rgb_to_lab(layer[None, None, r, c, :3] / np.float32(255))[0, 0, 1:]
    assert np.abs(plain - want).max() > 5  # the profile matters for this colour


def test_png_exif_after_the_pixels_is_found(tmp_path: Path):
    stored = smooth_image(24, 36, seed=5)
    enc = png_with_chunks(stored)
    exif = exif_bytes(6)[6:]
    chunk = (
        struct.pack(">I", len(exif))
        + b"eXIf"
        + exif
        + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    )
    path = tmp_path / "late.png"
    path.write_bytes(enc[:-12] + chunk + enc[-12:])  # just before IEND, after IDAT
    (rec,) = lab_records(run(["to-lab", path], check_rc=0).stdout)
    want = np.ascontiguousarray(np.rot90(stored, -1)) / np.float32(255)  # 6: turn clockwise
    assert np.abs(rec.lightness() - lightness(want)).max() < 0.01


def test_one_broken_chunk_drops_itself_not_the_orientation_and_a_corrupt_profile_is_an_error(
    tmp_path: Path,
):
    """A malformed XMP chunk threw away the EXIF orientation and tags with it (one blanket
    except for the whole header), and so did a profile chunk that is no zlib stream, silently;
    now the bad XMP alone is dropped, and the unusable profile is the file's one-line error."""
    stored = smooth_image(20, 30, seed=2)
    broken_xmp = (b"iTXt", b"XML:com.adobe.xmp\0\0\0junk")  # no language / keyword NULs
    good = tmp_path / "xmp.png"
    good.write_bytes(png_with_chunks(stored, (b"eXIf", exif_bytes(6)[6:]), broken_xmp))
    out = tmp_path / "out.png"
    run(["predict", good, "-w", ROOT / "weights" / "reg.pt", "-o", out, "--device", "cpu"],
        check_rc=0)  # fmt: skip
    im = opened(out.read_bytes())
    assert im.size == (20, 30) and im.getexif().get(315) == "Ann Archivist"  # upright, kept
    bad = tmp_path / "icc.png"
    bad.write_bytes(
        png_with_chunks(stored, (b"iCCP", b"Wide\0\0notzlib"), (b"eXIf", exif_bytes(6)[6:]))
    )
    p = run(["to-lab", bad, good, "-o", tmp_path / "all.lab"])
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor to-lab: {bad}: unreadable embedded ICC profile (corrupt iCCP chunk)\n"
    )
    (rec,) = records.iter_records(io.BytesIO((tmp_path / "all.lab").read_bytes()))
    assert rec.size == (30, 20)  # the good one, turned upright


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")  # Pillow's, reading the test's own file
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a_broken_exif_block_drops_itself_not_the_profile(tmp_path: Path, fmt: str):
    """An EXIF block Pillow cannot parse threw away the JPEG's or WebP's ICC profile and XMP
    with it (the colours then read as sRGB, silently), and one it can half parse printed
    Pillow's two-line "Corrupt EXIF data" warning; now the EXIF alone is dropped, quietly."""
    stored = smooth_image(16, 24, seed=4)
    icc = wide_gamut_icc()
    # (the XMP's orientation counts, no EXIF one being there: the same without the EXIF)
    want = run(["to-lab", save_pil(tmp_path / "good", stored, fmt, icc_profile=icc, xmp=XMP)],
               check_rc=0).stdout  # fmt: skip
    cut = b"Exif\0\0II*\0"  # ends after the byte order
    half = cut + b"\xff\xff\xff\x7f" + b"\0" * 20  # an IFD offset beyond the block
    for name, exif in {"cut": cut, "half": half, "junk": b"Exif\0\0garbage!"}.items():
        src = save_pil(tmp_path / name, stored, fmt, icc_profile=icc, exif=exif, xmp=XMP)
        assert Image.open(src).info["exif"].endswith(exif[6:])
        p = run(["to-lab", src], check_rc=0)
        assert p.stderr == b"", name
        (rec,) = lab_records(p.stdout)
        meta = ImageMeta.from_json(rec.source)
        assert meta.icc == icc and b"Archive rights" in meta.xmp, name
        np.testing.assert_array_equal(rec.lab(), lab_records(want)[0].lab())


def test_keep_profile_to_bmp_stays_srgb(tmp_path: Path):
    """BMP has no place for a profile: --keep-profile converted the pixels to the source's
    space all the same, and every reader took them for sRGB (21.8 dB off)."""
    src = tmp_path / "wide.png"
    src.write_bytes(png_with_chunks(smooth_image(16, 24, seed=5), iccp(wide_gamut_icc())))
    lab = run(["to-lab", src], check_rc=0).stdout
    for args in (["--keep-profile"], []):
        run(["from-lab", *args, "-o", tmp_path / f"out{len(args)}.bmp"], input=lab, check_rc=0)
    kept, plain = (cv2.imread(str(tmp_path / f"out{n}.bmp")) for n in (1, 0))
    np.testing.assert_array_equal(kept, plain)


def test_a_tiff_extra_sample_of_unspecified_meaning_is_no_alpha(tmp_path: Path):
    """TIFF 6.0: ExtraSamples 0 is "unspecified data"; it was composited as straight alpha."""
    rgba = np.dstack([smooth_image(16, 24, seed=6), np.full((16, 24), 40, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "TIFF")  # uncompressed, ExtraSamples (338) = 2
    data = bytearray(buf.getvalue())
    (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    for i in range(n):
        at = ifd + 2 + 12 * i
        if struct.unpack("<H", data[at : at + 2])[0] == 338:
            data[at + 8 : at + 10] = struct.pack("<H", 0)
    src = tmp_path / "extra.tif"
    src.write_bytes(bytes(data))
    assert Image.open(src).tag_v2[338] == (0,)
    out = tmp_path / "out.png"
    run(["from-lab", "-o", out], input=run(["to-lab", src], check_rc=0).stdout, check_rc=0)
    np.testing.assert_array_equal(cv2.imread(str(out))[:, :, ::-1], rgba[:, :, :3])


def test_integer_tiff_samples_other_than_8_and_16_bits_are_refused(tmp_path: Path):
    """A 32-bit integer TIFF decoded as int32 and was clipped as floats to a white image, exit 0;
    now one line naming the file. A float TIFF is still read."""
    i32 = tmp_path / "i32.tif"
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 1000).astype(np.int32), "I").save(i32)
    f32 = tmp_path / "f32.tif"
    Image.fromarray(np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64), "F").save(f32)
    p = run(["to-lab", i32, f32, "-o", tmp_path / "all.lab"])
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor to-lab: {i32}: 32-bit signed integer samples (recolor reads 8- and 16-bit "
        "images and float TIFFs)\n"
    )
    (rec,) = records.iter_records(io.BytesIO((tmp_path / "all.lab").read_bytes()))
    assert rec.size == (48, 64) and 0 <= rec.lightness().min() < rec.lightness().max() <= 100


def raw_tiff(
    rgb: np.ndarray,
    planar: bool = False,
    tile: int | None = None,
    orientation: int = 1,
    photometric: int | None = None,
) -> bytes:
    """An uncompressed little-endian RGB TIFF of ``rgb`` (uint8 or uint16): one strip, one
    plane per channel (PlanarConfiguration 2), or square tiles of side ``tile``; RGB or
    BlackIsZero gray unless ``photometric`` says."""
    h, w, c = rgb.shape  # 3 samples, or 1 (gray)
    if planar:
        blocks = [np.ascontiguousarray(rgb[:, :, i]).tobytes() for i in range(c)]
    elif tile:
        padded = np.zeros((-(-h // tile) * tile, -(-w // tile) * tile, c), rgb.dtype)
        padded[:h, :w] = rgb
        blocks = [padded[y : y + tile, x : x + tile].tobytes()
                  for y in range(0, h, tile) for x in range(0, w, tile)]  # fmt: skip
    else:
        blocks = [rgb.tobytes()]
    offsets = np.cumsum([8] + [len(b) for b in blocks])
    ifd = int(offsets[-1])
    bits = 8 * rgb.dtype.itemsize
    where = (324, 325) if tile else (273, 279)  # TileOffsets/ByteCounts, or the strips'
    tags = [(256, 4, [w]), (257, 4, [h]), (258, 3, [bits] * c), (259, 3, [1]),
            (262, 3, [photometric if photometric is not None else 2 if c == 3 else 1]),
            (277, 3, [c]), (278, 4, [h]),
            (284, 3, [2 if planar else 1]),
            (where[0], 4, offsets[:-1].tolist()),
            (where[1], 4, [len(b) for b in blocks])]  # fmt: skip
    if tile:
        tags += [(322, 4, [tile]), (323, 4, [tile])]
    tags += [(274, 3, [orientation])]
    tags.sort()
    extra_at, extra, entries = ifd + 2 + 12 * len(tags) + 4, b"", b""
    for tag, typ, values in tags:
        raw = b"".join(struct.pack("<H" if typ == 3 else "<I", v) for v in values)
        if len(raw) > 4:
            raw, extra = struct.pack("<I", extra_at + len(extra)), extra + raw
        entries += struct.pack("<HHI", tag, typ, len(values)) + raw.ljust(4, b"\0")
    head = b"II*\0" + struct.pack("<I", ifd)
    return head + b"".join(blocks) + struct.pack("<H", len(tags)) + entries + bytes(4) + extra


def test_a_16_bit_cmyk_tiff_is_named_not_called_corrupt(tmp_path: Path):
    """A valid 16-bit CMYK TIFF was "not a readable image (corrupt TIFF data)"; 8-bit CMYK is
    read (OpenCV converts it)."""
    cmyk = smooth_image(8, 12, 5)[:, :, [0, 1, 2, 0]]
    (tmp_path / "c16.tif").write_bytes(raw_tiff(cmyk.astype(np.uint16) * 257, photometric=5))
    (tmp_path / "c8.tif").write_bytes(raw_tiff(cmyk, photometric=5))
    p = run(["to-lab", "c16.tif", "c8.tif", "-o", "all.lab"], cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.decode() == (
        "recolor to-lab: c16.tif: 16-bit CMYK TIFF (recolor reads 8-bit CMYK)\n"
    )
    assert [r.name for r in lab_records((tmp_path / "all.lab").read_bytes())] == ["c8.tif"]


def test_tiffs_that_opencv_misreads_are_read_by_pillow_or_refused(tmp_path: Path):
    """A planar 16-bit TIFF came back as garbage, another each run (OpenCV reads stale memory),
    exit 0; it is refused now. An uncompressed tiled 8-bit one, which scanners write, was
    "corrupt TIFF data" (OpenCV refuses its tiles); Pillow reads it now."""
    rgb8 = smooth_image(40, 56, seed=7)
    rgb16 = rgb8.astype(np.uint16) * 257 + 3
    cases = {"strip16.tif": raw_tiff(rgb16), "planar8.tif": raw_tiff(rgb8, planar=True),
             "tiled8.tif": raw_tiff(rgb8, tile=16), "tiled16.tif": raw_tiff(rgb16, tile=16),
             "tiled8_turned.tif": raw_tiff(rgb8, tile=16, orientation=6),
             # one plane of gray is stored as contiguous gray is: OpenCV reads it right
             "planar16gray.tif": raw_tiff(rgb16[:, :, 1:2], planar=True),
             "planar16.tif": raw_tiff(rgb16, planar=True)}  # fmt: skip
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        if name in ("planar8.tif", "tiled8.tif"):  # written as Pillow (libtiff) reads it
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), rgb8)
    p = run(["to-lab", *cases, "-o", "all.lab"], cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.decode() == (
        "recolor to-lab: planar16.tif: planar 16-bit TIFF (each channel stored apart), which "
        "OpenCV decodes wrongly: store it contiguous (tiffcp -p contig)\n"
    )
    recs = list(records.iter_records(io.BytesIO((tmp_path / "all.lab").read_bytes())))
    assert [r.name for r in recs] == ["strip16.tif", "planar8.tif", "tiled8.tif", "tiled16.tif",
                                      "tiled8_turned.tif", "planar16gray.tif"]  # fmt: skip
    for rec in recs:
        want = rgb16 / 65535 if "16" in rec.name else rgb8 / 255
        if "gray" in rec.name:
            want = np.repeat(want[:, :, 1:2], 3, axis=2)
        if "turned" in rec.name:  # orientation 6: turned 90 degrees clockwise, as OpenCV does
            want = np.rot90(want, -1)
        got = color.lab_to_rgb(rec.lab())
        assert np.abs(got - want).max() < 1e-3, rec.name


def test_a_16_bit_white_is_zero_tiff_is_no_negative(tmp_path: Path):
    """PhotometricInterpretation 0 (the largest sample black): 8-bit came right (libtiff's RGBA
    interface), 16-bit came as stored, a negative, exit 0."""
    gray8 = smooth_image(12, 16, seed=3)[:, :, :1]
    for name, stored in {"w8.tif": 255 - gray8, "w16.tif": 65535 - gray8.astype(np.uint16) * 257,
                         "b16.tif": gray8.astype(np.uint16) * 257}.items():  # fmt: skip
        (tmp_path / name).write_bytes(raw_tiff(stored, photometric=0 if name[0] == "w" else 1))
    recs = lab_records(run(["to-lab", "w8.tif", "w16.tif", "b16.tif"], cwd=tmp_path).stdout)
    want = lightness(np.repeat(gray8, 3, axis=2) / np.float32(255))
    for rec in recs:
        assert np.abs(rec.lightness() - want).max() < 0.01, rec.name


# --- metadata -----------------------------------------------------------------------------------


def xmp_of(im: Image.Image) -> bytes | None:
    if im.format == "TIFF":
        return im.tag_v2.get(700)
    return im.info.get("xmp")


@pytest.mark.parametrize("out_ext", [".png", ".jpg", ".webp", ".tif"])
def test_metadata_carried_through_to_lab_and_from_lab_and_stripped(tmp_path: Path, out_ext):
    src = save_pil(
        tmp_path / "scan.jpg", smooth_image(30, 20, 6), "JPEG", exif=exif_bytes(6), xmp=XMP
    )
    lab = run(["to-lab", src], check_rc=0).stdout
    out = tmp_path / f"out{out_ext}"
    run(["from-lab", "-o", out], input=lab, check_rc=0)
    im = opened(out.read_bytes())
    exif = im.getexif()
    assert im.size == (30, 20)  # turned upright once ...
    assert exif[274] == 1  # ... and marked so, for viewers not to turn it again
    assert exif[305] == SOFTWARE
    assert exif[315] == "Ann Archivist" and exif[33432] == "(c) 2026 Poster Archive"
    assert exif.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
    # the interoperability IFD was carried as an offset into the source; an sRGB output said
    # Adobe RGB there and in ColorSpace, and the source's size
    assert exif.get_ifd(0xA005) == {1: "R98"}
    assert {k: exif.get_ifd(0x8769)[k] for k in (0xA001, 0xA002, 0xA003)} == {
        0xA001: 1, 0xA002: 30, 0xA003: 20}  # fmt: skip
    # kept in the source's profile, the source's colour space stays said
    kept = tmp_path / f"kept{out_ext}"
    adobe = tmp_path / "adobe.jpg"
    save_pil(adobe, smooth_image(30, 20, 6), "JPEG", exif=exif_bytes(6),
             icc_profile=wide_gamut_icc())  # fmt: skip
    small = run(["to-lab", "--max-size", "15", adobe], check_rc=0).stdout
    run(["from-lab", "--keep-profile", "-o", kept], input=small, check_rc=0)
    ex = opened(kept.read_bytes()).getexif()
    assert ex.get_ifd(0xA005) == {1: "R03"}
    assert {k: ex.get_ifd(0x8769)[k] for k in (0xA001, 0xA002, 0xA003)} == {
        0xA001: 0xFFFF, 0xA002: 15, 0xA003: 10}  # fmt: skip
    xmp = xmp_of(im)
    assert b"Archive rights 2026" in xmp and b'tiff:Orientation="1"' in xmp
    assert im.info["icc_profile"] == colorprofile.srgb_profile()
    # no EXIF orientation: the XMP's counts, as in Pillow and Adobe's tools (its 6 was reset
    # to 1 with the pixels left as stored: viewers turned the source and not the output)
    bare = save_pil(tmp_path / "bare.jpg", smooth_image(30, 20, 6), "JPEG", xmp=XMP)
    out6 = tmp_path / f"xmp6{out_ext}"
    run(["from-lab", "-o", out6], input=run(["to-lab", bare], check_rc=0).stdout, check_rc=0)
    im6 = opened(out6.read_bytes())
    assert im6.size == (30, 20) and b'tiff:Orientation="1"' in xmp_of(im6)
    assert ImageOps.exif_transpose(Image.open(bare)).size == im6.size  # as a viewer shows both

    stripped = tmp_path / f"stripped{out_ext}"
    run(["from-lab", "--strip", "-o", stripped], input=lab, check_rc=0)
    im = opened(stripped.read_bytes())
    assert not im.getexif().get(315) and not im.getexif().get(305)
    assert not xmp_of(im)
    assert im.info["icc_profile"] == colorprofile.srgb_profile()  # still says it is sRGB
    a = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(a, cv2.imread(str(stripped), cv2.IMREAD_UNCHANGED))


def padded_profile(icc: bytes, extra: int) -> bytes:
    """``icc`` with one more, private tag of ``extra`` bytes (ICC.1 allows them; littleCMS
    ignores it): a valid profile as large as asked."""
    n = struct.unpack(">I", icc[128:132])[0]
    table, data = icc[132 : 132 + 12 * n], icc[132 + 12 * n :]
    moved = b""  # each tag's data 12 bytes on, past the one more entry of the tag table
    for sig, offset, size in struct.iter_unpack(">4sII", table):
        moved += sig + struct.pack(">II", offset + 12, size)
    body = b"zzzz" + bytes(4 + extra)
    entry = b"zzzz" + struct.pack(">II", 132 + 12 * (n + 1) + len(data), len(body))
    out = icc[:128] + struct.pack(">I", n + 1) + moved + entry + data + body
    return struct.pack(">I", len(out)) + out[4:]


def test_a_profile_too_large_for_a_record_header_is_left_out_with_a_warning(tmp_path: Path):
    """A 700 kB profile (above the header's 900,000 base64 bytes) was dropped from the record
    without a word, and from-lab --keep-profile then wrote sRGB."""
    icc = padded_profile(wide_gamut_icc(), 700_000)
    ImageCms.ImageCmsProfile(io.BytesIO(icc))  # a profile littleCMS reads
    src = tmp_path / "scan.png"
    src.write_bytes(png_with_chunks(smooth_image(16, 16, 3), iccp(icc)))
    p = run(["to-lab", "scan.png"], cwd=tmp_path, check_rc=0)
    assert p.stderr.decode() == (
        f"recolor to-lab: scan.png: ICC profile of {len(icc):,} bytes too large for a record "
        "header: left out\n"
    )
    (rec,) = lab_records(p.stdout)
    assert "icc" not in rec.source and rec.source["depth"] == 8
    small = tmp_path / "small.png"  # one that fits is carried, without a word
    small.write_bytes(png_with_chunks(smooth_image(16, 16, 3), iccp(wide_gamut_icc())))
    p = run(["to-lab", "small.png"], cwd=tmp_path, check_rc=0)
    assert p.stderr == b"" and "icc" in lab_records(p.stdout)[0].source


@pytest.mark.parametrize("out_ext", [".png", ".jpg", ".tif", ".webp"])
def test_the_resolution_of_a_scan_is_kept(tmp_path: Path, out_ext: str):
    """A 600 dpi scan whose resolution was in JFIF's density or PNG's pHYs (not in EXIF) came
    back with none: 72 dpi to readers, and the print size lost."""
    rgb = smooth_image(20, 30, 4)
    for name, fmt, dpi in (("scan.jpg", "JPEG", 600), ("scan.png", "PNG", 300),
                           ("scan.tif", "TIFF", 400)):  # fmt: skip
        save_pil(tmp_path / name, rgb, fmt, dpi=(dpi, dpi))
        out = tmp_path / f"{name}{out_ext}"
        lab = run(["to-lab", tmp_path / name], check_rc=0).stdout
        run(["from-lab", "-o", out], input=lab, check_rc=0)
        im = opened(out.read_bytes())
        exif = im.getexif()
        assert float(exif[282]) == pytest.approx(dpi) and exif[296] == 2, name
        if out_ext != ".webp":  # where its readers look: pHYs, JFIF density, TIFF tags
            assert im.info["dpi"] == pytest.approx((dpi, dpi), rel=1e-5), name
        pred = tmp_path / f"pred-{name}{out_ext}"
        run(["predict", "-q", tmp_path / name, "-o", pred], check_rc=0)
        assert float(opened(pred.read_bytes()).getexif()[282]) == pytest.approx(dpi)


def test_source_metadata_round_trips_in_record_headers_and_old_records_still_read():
    src = ImageMeta(depth=16, icc=wide_gamut_icc(), exif=exif_bytes(1)[6:], xmp=XMP)
    rec = records.lab_record("a.tif", np.zeros((2, 3, 3), np.float32), (2, 3), source=src.to_json())
    buf = io.BytesIO()
    records.write_record(buf, rec)
    (back,) = lab_records(buf.getvalue())
    assert ImageMeta.from_json(back.source) == src
    old = records.lab_record("b.png", np.zeros((2, 3, 3), np.float32), (2, 3))  # no source
    buf = io.BytesIO()
    records.write_record(buf, old)
    assert buf.getvalue()[4:6] == struct.pack("<H", 1) and b"source" not in buf.getvalue()
    (back,) = lab_records(buf.getvalue())
    assert back.source is None and ImageMeta.from_json(back.source) == ImageMeta()


def test_a_record_with_exif_that_is_no_tiff_is_still_written(tmp_path: Path):
    """A record's EXIF is whatever its header holds: one that is no TIFF data ended the whole
    run with "internal error: SyntaxError"; it is dropped as a broken block in a file is."""
    lab = color.rgb_to_lab(smooth_image(8, 8, seed=1).astype(np.float32) / 255)
    buf = io.BytesIO()
    for name, exif in (("c.png", "aGVsbG8="), ("g.png", None)):  # base64 of b"hello"
        source = {"depth": 8, **({"exif": exif} if exif else {})}
        records.write_record(buf, records.lab_record(name, lab, (8, 8), source=source))
    p = run(["from-lab", "-o", f"{tmp_path}/out/"], input=buf.getvalue(), check_rc=0)
    assert sorted(os.listdir(tmp_path / "out")) == ["c.png", "g.png"] and p.stderr == b""
    assert opened((tmp_path / "out" / "c.png").read_bytes()).getexif()[305] == SOFTWARE


# --- depth --------------------------------------------------------------------------------------


def gradient16(h: int = 16, w: int = 1200) -> np.ndarray:
    """A 16-bit colour ramp: far more than 256 distinct levels per channel."""
    ramp = np.linspace(0.05, 0.95, w)
    rgb = np.stack([ramp, ramp[::-1] * 0.5 + 0.25, np.full(w, 0.4)], axis=-1)
    return np.rint(np.broadcast_to(rgb, (h, w, 3)) * 65535).astype(np.uint16)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_in_16bit_out_through_records(tmp_path: Path, ext: str):
    src = tmp_path / f"ramp{ext}"
    assert cv2.imwrite(str(src), gradient16()[:, :, ::-1])
    lab = run(["to-lab", src], check_rc=0).stdout
    for args, bits in (([], 16), (["--depth", "8"], 8)):
        out = tmp_path / f"out{bits}{ext}"
        run(["from-lab", *args, "-o", out], input=lab, check_rc=0)
        pixels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert pixels.dtype == (np.uint16 if bits == 16 else np.uint8)
        levels = len(np.unique(pixels[0, :, 2]))  # red: the full ramp
        assert levels > 256 if bits == 16 else levels <= 256


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_16bit_results_encode_as_their_float_values_would(ext: str):
    """predict composes 16-bit results; written at 8 bits they round as the same values in
    float would (every one of the 65,536 levels), and 16-bit PNG keeps them exactly."""
    from recolor_tools.color import to_uint8
    from recolor_tools.imageio import encode_image

    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1).repeat(3, axis=2)
    unit = levels.astype(np.float32) / np.float32(65535)
    for depth in (8, 16):
        got = encode_image(levels, ext, depth, quality=100)
        assert got == encode_image(unit, ext, depth, quality=100), depth
    if ext == ".png":
        png8 = cv2.imdecode(np.frombuffer(encode_image(levels, ext, 8), np.uint8), -1)
        np.testing.assert_array_equal(png8[:, :, ::-1], to_uint8(unit))
        png16 = cv2.imdecode(np.frombuffer(encode_image(levels, ext, 16), np.uint8), -1)
        np.testing.assert_array_equal(png16[:, :, ::-1], levels)


def test_predict_keeps_depth_profile_and_metadata(tmp_path: Path):
    weights = Path(__file__).resolve().parent.parent / "weights" / "reg.pt"
    src = tmp_path / "master.png"
    ramp = gradient16(24, 600)
    src.write_bytes(png_with_chunks(ramp, iccp(wide_gamut_icc()), (b"eXIf", exif_bytes(1)[6:])))
    out = tmp_path / "out"
    run(["predict", src, "-w", weights, "-o", f"{out}/"], check_rc=0)
    opts = ["--keep-profile", "--strip", "--depth", "8"]
    run(["predict", src, "-w", weights, "-o", tmp_path / "k.tif", *opts], check_rc=0)
    full = cv2.imread(str(out / "master.png"), cv2.IMREAD_UNCHANGED)
    assert full.dtype == np.uint16 and len(np.unique(full[0, :, :].sum(-1))) > 256
    im = opened((out / "master.png").read_bytes())
    assert im.info["icc_profile"] == colorprofile.srgb_profile()
    assert im.getexif()[315] == "Ann Archivist" and im.getexif()[305] == SOFTWARE
    kept = opened((tmp_path / "k.tif").read_bytes())
    assert cv2.imread(str(tmp_path / "k.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert kept.info["icc_profile"] == wide_gamut_icc() and not kept.getexif().get(315)


def test_metadata_read_from_png_webp_and_tiff_sources(tmp_path: Path):
    img = smooth_image(20, 30, 8)
    srcs = [
        save_pil(tmp_path / f"s{ext[1:]}{ext}", img, fmt, exif=exif_bytes(3), **extra)
        for fmt, ext, extra in (
            ("PNG", ".png", {}),
            ("WEBP", ".webp", {"xmp": XMP}),
            ("TIFF", ".tif", {}),
        )
    ]
    out = tmp_path / "out"
    pipeline(["to-lab", *srcs], ["from-lab", "-o", f"{out}/"])
    for src in srcs:
        im = opened((out / f"{src.stem}.png").read_bytes())
        exif = im.getexif()
        assert exif[315] == "Ann Archivist" and exif[274] == 1, src.name
        assert exif.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05", src.name
        assert not set(exif) & {256, 257, 273, 279}, src.name  # the source's strips stay behind
        assert (b"Archive rights" in (xmp_of(im) or b"")) == (src.suffix == ".webp")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_decoded_samples_are_the_stored_ones_scaled(tmp_path: Path, dtype):
    # decode_rgb swaps colour channels in place and reads gray through a view (one integer copy
    # of a poster, not two): the floats must still be exactly stored / max, in RGB order.
    from recolor_tools.imageio import read_rgb

    top = np.iinfo(dtype).max
    rgb = np.random.default_rng(3).integers(0, top + 1, (17, 23, 3)).astype(dtype)
    cv2.imwrite(str(tmp_path / "c.png"), np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV: BGR
    cv2.imwrite(str(tmp_path / "g.png"), rgb[:, :, 1])
    want = rgb.astype(np.float32) * np.float32(1 / top)
    got = read_rgb(tmp_path / "c.png")
    assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, want)
    gray = read_rgb(tmp_path / "g.png")
    assert gray.flags.c_contiguous and gray.flags.writeable
    assert np.array_equal(gray, np.repeat(want[:, :, 1:2], 3, axis=2))


def test_depth_16_where_the_format_holds_8_bits(tmp_path: Path):
    """--depth 16 with a format of 8 bits per sample: a usage error when the user chose it (-o
    FILE, --format), before any input is read; one line when the inputs' formats decide."""
    ramp = tmp_path / "ramp.png"
    assert cv2.imwrite(str(ramp), gradient16()[:, :, ::-1])
    photo = tmp_path / "photo.jpg"
    assert cv2.imwrite(str(photo), smooth_image(32, 48, 3)[:, :, ::-1])
    lab = run(["to-lab", ramp], check_rc=0).stdout
    for tool, args in (
        ("from-lab", ["-o", tmp_path / "a.jpg"]),
        ("from-lab", ["--format", "webp", "-o", f"{tmp_path}/x/"]),
        ("predict", [ramp, "-o", tmp_path / "b.bmp"]),
        ("predict", [ramp, "-f", "jpg", "-o", f"{tmp_path}/y/"]),
    ):
        p = run([tool, "--depth", "16", *args], input=lab if tool == "from-lab" else None)
        err = p.stderr.decode()
        assert p.returncode == 2 and err.count("\n") == 1, err
        assert "--depth 16" in err and "holds 8 bits" in err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["photo.jpg", "ramp.png"]
    out = tmp_path / "out"
    p = run(["predict", "--depth", "16", ramp, photo, "-o", f"{out}/"], check_rc=0)
    err = p.stderr.decode()
    assert err.count("\n") == 1 and "jpg holds 8 bits" in err and "--format png" in err, err
    assert cv2.imread(str(out / "ramp.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(out / "photo.jpg"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    p = run(["predict", "--depth", "16", ramp, "-o", "-"], check_rc=0)  # stdout: png
    assert p.stderr == b"" and cv2.imdecode(np.frombuffer(p.stdout, np.uint8), -1).itemsize == 2


def test_quality_sets_the_lossy_formats_and_leaves_the_others(tmp_path: Path):
    """--quality (predict, from-lab): JPEG and WebP at that quality (JPEG 95 by default, WebP
    lossless); PNG as without it. The pixels differ only by the encoding."""
    photo = tmp_path / "photo.png"
    grain = np.random.default_rng(0).normal(0, 12, (64, 96, 1))  # detail that quality keeps
    assert cv2.imwrite(
        str(photo), np.clip(smooth_image(64, 96, 3) + grain, 0, 255).astype(np.uint8)
    )
    lab = run(["to-lab", photo], check_rc=0).stdout
    made, pixels = {}, {}
    for tool in ("predict", "from-lab"):
        for ext in ("jpg", "webp", "png"):
            for q in (None, "95", "20"):
                out = tmp_path / f"{tool}-{q}.{ext}"
                args = [tool, *([photo] if tool == "predict" else []), "-o", out]
                run([*args, *(["--quality", q] if q else [])], input=lab, check_rc=0)
                made[ext, q] = out.read_bytes()
                pixels[ext, q] = cv2.imdecode(np.frombuffer(made[ext, q], np.uint8), 1).astype(int)
        assert made["jpg", None] == made["jpg", "95"], tool
        np.testing.assert_array_equal(pixels["webp", None], pixels["png", None])  # lossless
        assert made["png", "20"] == made["png", None] == made["png", "95"]
        for ext in ("jpg", "webp"):
            assert len(made[ext, "20"]) < len(made[ext, "95"]) / 2, (tool, ext)
            assert 0 < np.abs(pixels[ext, "20"] - pixels["png", None]).mean() < 20  # the picture
    p = run(["from-lab", "--quality", "0", "-o", tmp_path / "x.jpg"], input=lab)
    assert p.returncode == 2 and b"--quality" in p.stderr and not (tmp_path / "x.jpg").exists()


@pytest.mark.parametrize("ext", [".png", ".webp"])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "uint16"])
def test_encode_image_writes_rgba_in_rgba_order(ext: str, dtype: str):
    """RGBA input keeps R, G, B, A in place (it once came back blue, the colours reversed with
    the alpha), at 8 and 16 bits."""
    from recolor_tools.imageio import decode_rgb, encode_image

    rgba = np.zeros((4, 5, 4), np.float32)
    rgba[..., 0], rgba[..., 1], rgba[..., 3] = 1.0, 0.2, 0.6
    peak = {"float32": 1, "uint8": 255, "uint16": 65535}[dtype]
    img = rgba if dtype == "float32" else np.rint(rgba * peak).astype(dtype)
    for depth in (8, 16):
        got = decode_rgb(encode_image(img, ext, depth), keep_alpha=True)
        np.testing.assert_allclose(got, rgba, atol=1 / 255)


@pytest.mark.parametrize(
    ("img", "ext", "kwargs", "match"),
    [
        (np.ones((2, 2, 4), np.float32), ".jpg", {}, "jpg holds no alpha"),
        (np.ones((2, 2, 4), np.float32), ".tif", {}, "tif holds no alpha"),
        (np.array([[[100, 50, 0]]], np.int32), ".png", {}, "uint8, uint16 or float, got int32"),
        (np.ones((2, 2, 3), bool), ".png", {}, "got bool"),
        (np.ones((2, 2), np.float32), ".png", {}, r"\(H, W, 3\) array, got float32 \(2, 2\)"),
        (np.ones((2, 2, 2), np.uint8), ".png", {}, r"\(H, W, 3\) array"),
        (np.ones((0, 0, 3), np.float32), ".png", {}, "at least one pixel"),
        (np.full((2, 2, 3), np.nan, np.float32), ".png", {}, "NaN or infinity"),
        (np.ones((2, 2, 3), np.float32), ".png", {"depth": 12}, "depth must be 8 or 16, got 12"),
    ],
)
def test_encode_image_refuses_what_it_cannot_write(img, ext, kwargs, match):
    """Bad arrays and depths are one ValueError naming the problem, not an IndexError, an
    OpenCV assertion or a silently wrong file (int32 was read as float, depth 12 written at 8)."""
    from recolor_tools.imageio import encode_image

    with pytest.raises(ValueError, match=match):
        encode_image(img, ext, **kwargs)


@pytest.mark.parametrize("quality", [0, 101, 50.5, "50", True])
def test_encode_image_quality_must_be_an_integer_in_1_to_100(quality):
    from recolor_tools.errors import RecolorError
    from recolor_tools.imageio import encode_image

    with pytest.raises(RecolorError, match="quality must be an integer in 1..100"):
        encode_image(np.ones((2, 2, 3), np.float32), ".jpg", quality=quality)
    assert encode_image(np.ones((2, 2, 3), np.float32), ".jpg", quality=np.int64(50))
