"""Archive-grade image I/O (issue 18): metadata and 16-bit depth.

ICC profiles are tested in test_colour_management.py, orientation and alpha in
test_orientation_alpha.py, TIFF layouts in test_tiff_variants.py; the generated inputs they
share are in archive_inputs.py.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from archive_inputs import (
    UTF8_TEXT,
    XMP,
    exif_bytes,
    float_tiff,
    iccp,
    lab_records,
    lightness,
    opened,
    oracle_srgb,
    png_with_chunks,
    save_pil,
    wide_gamut_icc,
)
from conftest import pipeline, run, smooth_image
from PIL import Image, ImageCms, ImageOps

from recolor_tools import color, colorprofile, records
from recolor_tools.exif import SOFTWARE
from recolor_tools.imagemeta import ImageMeta

# --- metadata -----------------------------------------------------------------------------------


def xmp_of(im: Image.Image) -> bytes | None:
    if im.format == "TIFF":
        return im.tag_v2.get(700)
    return im.info.get("xmp")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> tuple[Path, bytes, bytes]:
    """(folder, stream, small): scan.jpg (EXIF with Orientation 6, XMP) and bare.jpg (the XMP
    alone) in one to-lab stream, and adobe.jpg (Adobe RGB, Orientation 6) to-lab --max-size 15:
    what each output format's test writes."""
    d = tmp_path_factory.mktemp("tagged")
    src = save_pil(d / "scan.jpg", smooth_image(30, 20, 6), "JPEG", exif=exif_bytes(6), xmp=XMP)
    bare = save_pil(d / "bare.jpg", smooth_image(30, 20, 6), "JPEG", xmp=XMP)
    adobe = save_pil(d / "adobe.jpg", smooth_image(30, 20, 6), "JPEG", exif=exif_bytes(6),
                     icc_profile=wide_gamut_icc())  # fmt: skip
    stream = run(["to-lab", src, bare], check_rc=0).stdout
    small = run(["to-lab", "--max-size", "15", adobe], check_rc=0).stdout
    return d, stream, small


@pytest.mark.parametrize("out_ext", [".png", ".jpg", ".webp", ".tif"])
def test_metadata_carried_through_to_lab_and_from_lab_and_stripped(tmp_path: Path, tagged,
                                                                   out_ext):  # fmt: skip
    folder, stream, small = tagged
    run(["from-lab", "-f", out_ext, "-o", f"{tmp_path}/out/"], input=stream, check_rc=0)
    out = tmp_path / "out" / f"scan{out_ext}"
    im = opened(out.read_bytes())
    exif = im.getexif()
    assert im.size == (30, 20)  # turned upright once ...
    assert exif[274] == 1  # ... and marked so, for viewers not to turn it again
    assert exif[305] == SOFTWARE
    assert exif[315] == "Ann Archivist" and exif[33432] == "(c) 2026 Poster Archive"
    assert exif.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
    # text beyond ASCII kept byte for byte (Pillow wrote "?" for each other byte)
    for tags, tag, text in UTF8_TEXT:
        said = exif[tag] if tags is None else exif.get_ifd(tags)[tag]
        assert said.encode("latin-1").decode() == text  # (Pillow reads text as latin-1)
    # the interoperability IFD was carried as an offset into the source; an sRGB output said
    # Adobe RGB there and in ColorSpace, and the source's size
    assert exif.get_ifd(0xA005) == {1: "R98"}
    assert {k: exif.get_ifd(0x8769)[k] for k in (0xA001, 0xA002, 0xA003)} == {
        0xA001: 1, 0xA002: 30, 0xA003: 20}  # fmt: skip
    # kept in the source's profile, the source's colour space stays said
    kept = tmp_path / f"kept{out_ext}"
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
    im6 = opened((tmp_path / "out" / f"bare{out_ext}").read_bytes())
    assert im6.size == (30, 20) and b'tiff:Orientation="1"' in xmp_of(im6)
    bare = Image.open(folder / "bare.jpg")
    assert ImageOps.exif_transpose(bare).size == im6.size  # as a viewer shows both

    run(["from-lab", "--strip", "-f", out_ext, "-o", f"{tmp_path}/stripped/"], input=stream,
        check_rc=0)  # fmt: skip
    stripped = tmp_path / "stripped" / f"scan{out_ext}"
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
    small = tmp_path / "small.png"  # one that fits is carried, without a word (in the same run)
    small.write_bytes(png_with_chunks(smooth_image(16, 16, 3), iccp(wide_gamut_icc())))
    p = run(["to-lab", "scan.png", "small.png"], cwd=tmp_path, check_rc=0)
    assert p.stderr.decode() == (
        f"recolor to-lab: scan.png: ICC profile of {len(icc):,} bytes too large for a record "
        "header: left out\n"
    )
    rec, fits = lab_records(p.stdout)
    assert rec.name == "scan.png" and fits.name == "small.png"
    assert "icc" not in rec.source and rec.source["depth"] == 8
    assert "icc" in fits.source


def test_a_jpeg_output_drops_only_what_its_64kb_segments_cannot_hold(tmp_path: Path):
    """An EXIF over 64 KB (a long ImageDescription) was dropped from a JPEG whole, the
    Artist, Copyright and recolor's own Software with it, and an XMP over 64 KB too, without a
    word: now the largest tags go, said in one line; the PNG keeps all."""
    ex = Image.Exif()
    ex.load(exif_bytes())
    ex[270] = "a very long description " * 3000  # ImageDescription, 72,000 bytes
    xmp = XMP.replace(b'Orientation="6"', b'Orientation="1"')  # (upright: carried as it is)
    xmp = xmp.replace(b"</x:xmpmeta>", b"<!--" + b"x" * 70_000 + b"--></x:xmpmeta>")
    src = tmp_path / "scan.png"
    src.write_bytes(png_with_chunks(smooth_image(16, 16, 3), (b"eXIf", ex.tobytes()[6:]),
                                    (b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp)))  # fmt: skip
    stream = run(["to-lab", "scan.png"], cwd=tmp_path, check_rc=0).stdout
    p = run(["from-lab", "-o", "out.jpg"], cwd=tmp_path, input=stream, check_rc=0)
    assert p.stderr.decode() == (
        "recolor from-lab: out.jpg: too large for a JPEG's 64 KB segment, left out: XMP "
        f"({len(xmp):,} bytes), EXIF ImageDescription ({len(ex[270]):,} bytes) (png, tif and "
        "webp keep them)\n"
    )
    with opened((tmp_path / "out.jpg").read_bytes()) as im:
        kept = im.getexif()
        assert kept[315] == "Ann Archivist" and kept[305] == SOFTWARE and 270 not in kept
        assert kept.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
        assert xmp_of(im) is None
    p = run(["from-lab", "-o", "out.png"], cwd=tmp_path, input=stream, check_rc=0)
    assert p.stderr == b""
    with opened((tmp_path / "out.png").read_bytes()) as im:
        assert im.getexif()[270] == ex[270] and xmp_of(im) == xmp
    # a large GPS directory goes whole, weighed as a whole (its pointer counted 8 bytes, so
    # Software and Orientation went first)
    gps = Image.Exif()
    gps.load(exif_bytes())
    gps.get_ifd(0x8825)[0x1B] = b"ASCII\0\0\0" + b"y" * 70_000  # GPSProcessingMethod
    (tmp_path / "gps.png").write_bytes(
        png_with_chunks(smooth_image(16, 16, 3), (b"eXIf", gps.tobytes()[6:]))
    )
    stream = run(["to-lab", "gps.png"], cwd=tmp_path, check_rc=0).stdout
    p = run(["from-lab", "-o", "gps.jpg"], cwd=tmp_path, input=stream, check_rc=0)
    weight = sum(len(v) for v in gps.get_ifd(0x8825).values())  # (its text, its 70,008)
    assert f"left out: EXIF GPSInfo ({weight:,} bytes) (png" in p.stderr.decode()
    with opened((tmp_path / "gps.jpg").read_bytes()) as im:
        kept = im.getexif()
        assert kept[305] == SOFTWARE and kept[274] == 1 and kept[315] == "Ann Archivist"
        assert 0x8825 not in kept


FORMATS = {".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF", ".webp": "WEBP"}
"""Pillow's name of the format of each extension."""


def test_the_resolution_of_a_scan_is_kept(tmp_path: Path, tiny_cls):
    """A 600 dpi scan whose resolution was in JFIF's density or PNG's pHYs (not in EXIF) came
    back with none: 72 dpi to readers, and the print size lost."""
    rgb = smooth_image(20, 30, 4)
    scans = {"jfif.jpg": ("JPEG", 600), "phys.png": ("PNG", 300), "tags.tif": ("TIFF", 400)}
    for name, (fmt, dpi) in scans.items():
        save_pil(tmp_path / name, rgb, fmt, dpi=(dpi, dpi))
    lab = run(["to-lab", *(tmp_path / name for name in scans)], check_rc=0).stdout
    # predict writes each input in its extension's format, and reads it by its magic bytes (never
    # the extension): each scan under each output format's extension, all in one run
    exts = list(FORMATS)
    src = tmp_path / "src"
    src.mkdir()
    for name, ext in ((name, ext) for name in scans for ext in exts):
        (src / name).with_suffix(ext).write_bytes((tmp_path / name).read_bytes())
    pred = tmp_path / "pred"
    run(["predict", "-q", "-w", tiny_cls, "-o", f"{pred}/", *sorted(src.iterdir())],
        check_rc=0)  # fmt: skip
    for out_ext in exts:
        run(["from-lab", "-f", out_ext, "-o", f"{tmp_path}/out{out_ext}/"], input=lab, check_rc=0)
        for name, (_, dpi) in scans.items():
            stem = Path(name).stem
            im = opened((tmp_path / f"out{out_ext}" / f"{stem}{out_ext}").read_bytes())
            exif = im.getexif()
            assert float(exif[282]) == pytest.approx(dpi) and exif[296] == 2, (name, out_ext)
            if out_ext != ".webp":  # where its readers look: pHYs, JFIF density, TIFF tags
                assert im.info["dpi"] == pytest.approx((dpi, dpi), rel=1e-5), (name, out_ext)
            made = opened((pred / f"{stem}{out_ext}").read_bytes())
            assert made.format == FORMATS[out_ext], (name, out_ext)  # the format under test
            assert float(made.getexif()[282]) == pytest.approx(dpi), (name, out_ext)


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


def test_a_record_source_depth_other_than_8_or_16_is_that_records_error(tmp_path: Path):
    """FORMAT.md: depth 8 or 16. 12 was written as 16 bits and True as 8, unsaid; the other
    records are still written."""
    lab = color.rgb_to_lab(smooth_image(8, 8, seed=1).astype(np.float32) / 255)
    buf = io.BytesIO()
    for name, depth in (("a.png", 12), ("b.png", True), ("c.png", 16)):
        rec = records.lab_record(name, lab, (8, 8), source={"depth": depth})
        records.write_record(buf, rec)
    p = run(["from-lab", "-o", f"{tmp_path}/out/", "-q"], input=buf.getvalue())
    assert p.returncode == 1 and os.listdir(tmp_path / "out") == ["c.png"]
    assert p.stderr.decode().splitlines() == [
        f"recolor from-lab: {n}: corrupt source metadata in record header (depth {d}, not 8 or 16)"
        for n, d in (("a.png", 12), ("b.png", "true"))
    ]


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


def test_predict_keeps_depth_profile_and_metadata(tmp_path: Path, tiny_reg):
    weights = tiny_reg
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


def test_keep_profile_on_an_8_bit_source_rounds_once(tmp_path: Path, tiny_cls):
    """Composed at the source's depth, an 8-bit source's result was rounded to 8 bits, then
    converted to its profile and rounded again: a fifth of the samples one level off, errors up
    to a level. With --keep-profile it is composed at 16 bits first, as before."""
    from recolor_tools.predict import Predictor

    weights = tiny_cls
    src = tmp_path / "wide.png"
    src.write_bytes(png_with_chunks(smooth_image(60, 80, 5), iccp(wide_gamut_icc())))
    run(["predict", src, "-w", weights, "--keep-profile", "-o", tmp_path / "k.png"], check_rc=0)
    got = cv2.imread(str(tmp_path / "k.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert got.dtype == np.uint8  # the source's depth
    ((_, srgb, _),) = Predictor.load(weights, "cls").predict_files([str(src)], dtype=np.float32)
    want = colorprofile.from_srgb(wide_gamut_icc()).apply(srgb, 16) * 255  # rounded once
    assert np.abs(got - want).max() < 0.51


def test_a_float_tiff_keeps_its_profile_and_metadata(tmp_path: Path, tiny_reg):
    """Pillow opens no float RGB TIFF, and the header was read with Pillow alone: the pixels were
    taken for sRGB (L off by up to 7 against the same pixels in 16 bits), --keep-profile embedded
    sRGB, the EXIF was dropped, all unsaid. The TIFF's tags are now read as the file holds
    them."""
    rgb = gradient16(24, 300).astype(np.float64) / 65535
    icc = wide_gamut_icc()
    src = tmp_path / "f.tif"
    src.write_bytes(float_tiff(rgb.astype(np.float32), icc, "Ann Archivist"))
    (rec,) = lab_records(run(["to-lab", src], check_rc=0).stdout)
    meta = ImageMeta.from_json(rec.source)
    assert meta.icc == icc and b"Ann Archivist" in meta.exif
    want = oracle_srgb(rgb)
    inside = ((want > 0.002) & (want < 0.998)).all(axis=-1)
    err = np.abs(rec.lightness() - lightness(want))[inside]
    assert inside.mean() > 0.3 and np.percentile(err, 99) < 1.0, np.percentile(err, 99)
    out = tmp_path / "k.tif"
    run(["predict", src, "-w", tiny_reg, "--keep-profile", "-o", out], check_rc=0)
    kept = opened(out.read_bytes())
    assert kept.info["icc_profile"] == icc and kept.getexif()[315] == "Ann Archivist"


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


def test_depth_16_where_the_format_holds_8_bits(tmp_path: Path, tiny_cls):
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
    p = run(["predict", "--depth", "16", ramp, photo, "-o", f"{out}/", "-w", tiny_cls],
            check_rc=0)  # fmt: skip
    err = p.stderr.decode()
    assert err.count("\n") == 1 and "jpg holds 8 bits" in err and "--format png" in err, err
    assert cv2.imread(str(out / "ramp.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(out / "photo.jpg"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    stdout = ["-o", "-", "-w", tiny_cls]  # stdout: png
    p = run(["predict", "--depth", "16", ramp, *stdout], check_rc=0)
    assert p.stderr == b"" and cv2.imdecode(np.frombuffer(p.stdout, np.uint8), -1).itemsize == 2


def test_quality_sets_the_lossy_formats_and_leaves_the_others(tmp_path: Path, tiny_cls):
    """--quality (predict, from-lab): JPEG and WebP at that quality (JPEG 95 by default, WebP
    lossless); PNG as without it. The pixels differ only by the encoding."""
    photo = tmp_path / "photo.png"
    grain = np.random.default_rng(0).normal(0, 12, (64, 96, 1))  # detail that quality keeps
    assert cv2.imwrite(
        str(photo), np.clip(smooth_image(64, 96, 3) + grain, 0, 255).astype(np.uint8)
    )
    lab = run(["to-lab", photo], check_rc=0).stdout
    # predict writes each input in its extension's format and reads it by its magic bytes (never
    # the extension): the one PNG as photo.jpg, photo.webp and photo.png is one picture, written
    # in the three formats by one run (-b 1: each alone through the network, the same pass)
    exts = ("jpg", "webp", "png")
    for ext in exts[:2]:
        (tmp_path / f"photo.{ext}").write_bytes(photo.read_bytes())
    inputs = [tmp_path / f"photo.{ext}" for ext in exts]
    for tool in ("predict", "from-lab"):
        made, pixels = {}, {}
        for q in (None, "95", "20"):
            quality = ["--quality", q] if q else []
            if tool == "predict":
                out = tmp_path / f"predict-{q}"
                run(["predict", "-q", "-b", "1", "-w", tiny_cls, *inputs, "-o", f"{out}/",
                     *quality], check_rc=0)  # fmt: skip
                files = {ext: out / f"photo.{ext}" for ext in exts}
            else:
                files = {ext: tmp_path / f"{tool}-{q}.{ext}" for ext in exts}
                for f in files.values():
                    run([tool, "-o", f, *quality], input=lab, check_rc=0)
            for ext, f in files.items():
                made[ext, q] = f.read_bytes()
                pixels[ext, q] = cv2.imdecode(np.frombuffer(made[ext, q], np.uint8), 1).astype(int)
                assert opened(made[ext, q]).format == FORMATS[f".{ext}"], (tool, ext, q)
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


def test_a_turned_scans_resolution_turns_with_it(tmp_path: Path):
    """X and Y resolution are the stored axes': a 300 x 600 dpi scan with Orientation 6 came out
    turned and still 300 x 600 (a fax's 204 x 98 dpi would be read across)."""
    ex = Image.Exif()
    ex[274], ex[282], ex[283], ex[296] = 6, 300.0, 600.0, 2
    src = save_pil(tmp_path / "turned.jpg", smooth_image(20, 40, 2), "JPEG", exif=ex.tobytes())
    lab = run(["to-lab", src], check_rc=0).stdout
    for ext in (".png", ".jpg"):
        out = tmp_path / f"out{ext}"
        run(["from-lab", "-o", out], input=lab, check_rc=0)
        im = opened(out.read_bytes())
        assert im.size == (20, 40) and im.info["dpi"] == pytest.approx((600, 300), rel=1e-5)
