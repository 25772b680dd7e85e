"""Archive-grade image I/O (issue 18): EXIF and XMP orientation, alpha and transparency, and
broken metadata blocks that drop themselves, not the rest."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from archive_inputs import (
    XMP,
    exif_bytes,
    iccp,
    lab_records,
    lightness,
    opened,
    oracle_srgb,
    png_with_chunks,
    save_pil,
    wide_gamut_icc,
)
from conftest import ROOT, pipeline, run, smooth_image
from PIL import Image, ImageOps, TiffImagePlugin

from recolor_tools import colorprofile, records
from recolor_tools.imagemeta import ImageMeta

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif"}


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
    metadata reset to say upright. Then (recolor's parse applied to every JPEG) one with fill
    bytes before a marker (T.81 B.1.1.2), whose walk stopped there: orientation 1."""
    stored = smooth_image(20, 30, seed=9)
    jpeg = save_pil(tmp_path / "long.jpg", stored, "JPEG")
    ifd = struct.pack(">HHHII", 1, 274, 4, 1, 6) + bytes(4)  # one entry: Orientation, LONG 6
    exif = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[:2] + struct.pack(">BBH", 0xFF, 0xE1, len(exif) + 2) + exif + data[2:])
    fill = tmp_path / "fill.jpg"
    plain = save_pil(tmp_path / "plain6.jpg", stored, "JPEG", exif=exif_bytes(6)).read_bytes()
    fill.write_bytes(plain[:2] + b"\xff\xff" + plain[2:])
    tiff = tmp_path / "xmp.tif"
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[700] = XMP  # its tiff:Orientation is 6
    Image.fromarray(stored).save(tiff, tiffinfo=info)
    for path in (jpeg, fill, tiff):
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


def raw_profile(kind: bytes, exif: bytes) -> tuple[bytes, bytes]:
    """ImageMagick's "Raw profile type exif" text chunk (tEXt or zTXt) holding ``exif``."""
    hexed = exif.hex()
    text = (
        f"\nexif\n{len(exif):8d}\n".encode()
        + "\n".join(hexed[i : i + 72] for i in range(0, len(hexed), 72)).encode()
    )
    body = zlib.compress(text) if kind == b"zTXt" else text
    return kind, b"Raw profile type exif\0" + b"\0" * (kind == b"zTXt") + body


def test_png_exif_in_imagemagicks_raw_profile_text_chunk_is_read(tmp_path: Path):
    """A PNG whose EXIF is in the text chunk older ImageMagick and exiftool write (before PNG
    1.5's eXIf) came out sideways, its EXIF lost; Pillow and ImageMagick read it there."""
    stored = smooth_image(24, 36, seed=5)
    paths = []
    for kind, exif in ((b"zTXt", exif_bytes(6)), (b"tEXt", exif_bytes(8)[6:])):
        paths.append(tmp_path / f"{kind.decode()}.png")  # with and without "Exif\0\0"
        paths[-1].write_bytes(png_with_chunks(stored, raw_profile(kind, exif)))
    broken = tmp_path / "broken.png"  # its length line says more bytes than the hex holds
    kind, body = raw_profile(b"tEXt", exif_bytes(6))
    broken.write_bytes(png_with_chunks(stored, (kind, body.replace(b"exif\n ", b"exif\n9"))))
    for path in paths:
        stream = run(["to-lab", path], check_rc=0).stdout
        (rec,) = lab_records(stream)
        with Image.open(path) as im:  # Pillow's own reading, as viewers show it
            want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.float32) / 255
        assert want.shape[:2] == stored.shape[1::-1], path.name  # Pillow turned it
        assert np.abs(rec.lightness() - lightness(want)).max() < 0.01, path.name
        out = opened(run(["from-lab"], input=stream, check_rc=0).stdout)
        assert out.getexif()[315] == "Ann Archivist", path.name  # carried, as from eXIf
    (rec,) = lab_records(run(["to-lab", broken], check_rc=0).stdout)
    assert rec.lab().shape == stored.shape  # a broken chunk drops itself: as stored


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


def test_compressed_metadata_that_inflates_past_16_mib_is_not_inflated(tmp_path):
    """A PNG's iCCP or XMP chunk of zeros inflated whole: 1 MB of file took 2 GB. A profile
    past 16 MiB is refused (one line), an XMP packet dropped, memory bounded."""
    import os
    import subprocess
    import sys

    zeros = zlib.compressobj(9)
    bomb = b"".join(zeros.compress(bytes(1 << 20)) for _ in range(200)) + zeros.flush()  # 200 MiB
    stored = smooth_image(8, 8, seed=3)
    (tmp_path / "icc.png").write_bytes(png_with_chunks(stored, (b"iCCP", b"x\0\0" + bomb)))
    xmp = (b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" + bomb)
    (tmp_path / "xmp.png").write_bytes(png_with_chunks(stored, xmp))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    refused = "recolor to-lab: icc.png: embedded ICC profile inflates past 16 MiB (no real " \
              "profile is that large)\n"  # fmt: skip
    # the tool's own peak (VmHWM: ru_maxrss counts the forking test process's pages too)
    peak = (
        "import sys; from recolor_tools.cli import main; code = main(sys.argv[2:]); "
        "open(sys.argv[1], 'w').write(open('/proc/self/status').read()); sys.exit(code)"
    )
    for name, rc, said in (("icc.png", 1, refused), ("xmp.png", 0, "")):
        tool = [sys.executable, "-c", peak, "status", "to-lab", name, "-o", "x.lab"]
        p = subprocess.run(tool, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
        assert (p.returncode, p.stderr.decode()) == (rc, said)
        (hwm,) = [s for s in (tmp_path / "status").read_text().splitlines() if "VmHWM" in s]
        assert int(hwm.split()[1]) < 200 * 1024, hwm  # kB: less than the bomb


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


def test_a_jpeg_profile_with_a_chunk_missing_is_an_error_not_srgb(tmp_path: Path):
    """A JPEG's ICC profile comes in numbered APP2 chunks; with one of them missing Pillow drops
    the whole profile without a word, and the colours were read as sRGB. It is the file's
    one-line error, as a corrupt PNG profile is; the profile whole in two chunks still reads."""
    stored = smooth_image(20, 30, seed=3)
    icc = colorprofile.matrix_profile(np.array([(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)]), 2.2)
    enc = cv2.imencode(".jpg", stored[:, :, ::-1])[1].tobytes()

    def app2(n: int, part: bytes, count: int = 2) -> bytes:
        payload = b"ICC_PROFILE\0" + bytes([n, count]) + part
        return b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload

    half = len(icc) // 2
    whole, broken = tmp_path / "whole.jpg", tmp_path / "broken.jpg"
    extra, zero = tmp_path / "extra.jpg", tmp_path / "zero.jpg"  # other numberings Pillow drops
    whole.write_bytes(enc[:2] + app2(1, icc[:half]) + app2(2, icc[half:]) + enc[2:])
    broken.write_bytes(enc[:2] + app2(1, icc[:half]) + enc[2:])
    extra.write_bytes(enc[:2] + app2(1, icc[:half]) + app2(2, icc[half:]) + app2(3, b"x") + enc[2:])
    zero.write_bytes(enc[:2] + app2(1, icc, count=0) + enc[2:])
    p = run(["to-lab", broken, extra, zero, whole, "-o", tmp_path / "all.lab"])
    assert p.returncode == 1 and p.stderr.decode().splitlines() == [
        f"recolor to-lab: {broken}: unreadable embedded ICC profile (chunk 2 of 2 missing)",
        f"recolor to-lab: {extra}: unreadable embedded ICC profile (3 chunks, numbered for 2)",
        f"recolor to-lab: {zero}: unreadable embedded ICC profile (1 chunk, numbered for 0)",
    ]
    (rec,) = records.iter_records(io.BytesIO((tmp_path / "all.lab").read_bytes()))
    assert rec.source is not None and rec.source["icc"]  # the whole one read with its profile


@pytest.mark.filterwarnings("ignore:Tag data larger")  # Pillow's, reading the EXIF of a TIFF
@pytest.mark.parametrize("gray", [False, True])
def test_max_size_shrinks_as_it_reads_and_keeps_the_upright_full_size(tmp_path: Path, gray):
    """to-lab --max-size shrank the float RGB copy of the whole image (12 bytes a pixel: a
    12000 x 12000 gray scan took 1.9 GB for a 1024-pixel record). It shrinks the samples as
    read now: the same record, the full size turned as the pixels are, on every format."""
    import tracemalloc

    from recolor_tools.imageio import decode_rgb, resize_max

    stored = smooth_image(90, 60, seed=3)
    stored = np.repeat(stored[:, :, :1], 3, 2) if gray else stored
    for fmt, ext in FORMATS.items():
        for o in (1, 6, 8):
            data = save_pil(tmp_path / f"o{o}{ext}", stored, fmt, exif=exif_bytes(o)).read_bytes()
            meta = ImageMeta()
            got = decode_rgb(data, "x", meta, max_size=30)
            want = resize_max(decode_rgb(data, "x"), 30)
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"o{o}{ext}")
            assert meta.size == ((60, 90) if o in (6, 8) else (90, 60)), (o, ext)
    # where averaging the stored samples would give another image, shrunk after as before: a
    # profile's curves (8 to 22 L units off), floats out of [0, 1] (clipped first)
    wide = png_with_chunks(stored, iccp(wide_gamut_icc()))
    hdr = stored.astype(np.float32) / 64 - 1  # -1 to 3
    ok, tif = cv2.imencode(".tif", hdr)
    for data in (wide, tif.tobytes()):
        want = resize_max(decode_rgb(data, "x"), 7)
        np.testing.assert_array_equal(decode_rgb(data, "x", max_size=7), want)
    (rec,) = lab_records(run(["to-lab", "--max-size", "30", tmp_path / "o6.jpg"]).stdout)
    assert rec.size == (60, 90) and rec.lab().shape[:2] == (20, 30)
    # no float copy of the whole image: a 1200 x 1600 PNG is 23 MB as float RGB (the samples
    # as decoded, 5.8 MB, and their 16-bit copy, 11.5, are less)
    ok, enc = cv2.imencode(".png", cv2.resize(stored, (1200, 1600)))
    tracemalloc.start()
    decode_rgb(enc.tobytes(), "big", max_size=100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1200 * 1600 * 12, peak


@pytest.mark.parametrize("gray", [False, True])
def test_samples_as_stored_are_the_image_and_prediction_makes_no_float_copy(
    tmp_path, monkeypatch, gray
):
    """predict read every image as float RGB (12 bytes a pixel), then composed it at 16 bits
    whatever its depth (6 more) and copied it twice to encode it: 930 MB for a 36 Mpx PNG, 720
    now. ``decode_rgb(stored=True)`` gives the samples where they are the image (integers, no
    alpha, no profile but sRGB's; gray as a view of its one plane), turned upright, and
    :func:`predict.prepare` takes them a strip at a time."""
    import tracemalloc

    from recolor_tools import color
    from recolor_tools.color import to_float
    from recolor_tools.imageio import decode_rgb
    from recolor_tools.predict import Settings, prepare

    stored = smooth_image(90, 60, seed=4)
    stored = np.repeat(stored[:, :, :1], 3, 2) if gray else stored
    for fmt, ext in FORMATS.items():
        for o in (1, 6):
            data = save_pil(tmp_path / f"o{o}{ext}", stored, fmt, exif=exif_bytes(o)).read_bytes()
            meta, want = ImageMeta(), decode_rgb(data, "x")
            got = decode_rgb(data, "x", meta, stored=True)
            assert got.dtype == np.uint8 and got.shape == want.shape, (o, ext)
            np.testing.assert_array_equal(to_float(got), want, err_msg=f"o{o}{ext}")
            assert meta.size == got.shape[:2]  # upright
    # a gray JPEG (one plane) turned upright is still one plane, seen three times
    plane = save_pil(tmp_path / "l6.jpg", stored[:, :, 0], "JPEG", exif=exif_bytes(6)).read_bytes()
    got = decode_rgb(plane, "x", stored=True)
    assert got.strides[2] == 0 and got.shape == (60, 90, 3)
    np.testing.assert_array_equal(to_float(got), decode_rgb(plane, "x"))
    sixteen = cv2.imencode(".png", stored.astype(np.uint16) * 257 + 3)[1].tobytes()
    assert decode_rgb(sixteen, "x", stored=True).dtype == np.uint16
    np.testing.assert_array_equal(to_float(decode_rgb(sixteen, "x", stored=True)),
                                  decode_rgb(sixteen, "x"))  # fmt: skip
    # where the samples are not the image, floats as without it: alpha, another profile
    rgba = cv2.imencode(".png", np.dstack([stored, np.full(stored.shape[:2], 128, np.uint8)]))[1]
    wide = png_with_chunks(stored, iccp(wide_gamut_icc()))
    for data in (rgba.tobytes(), wide):
        np.testing.assert_array_equal(decode_rgb(data, "x", stored=True), decode_rgb(data, "x"))
    with pytest.raises(ValueError, match="max_size or stored"):
        decode_rgb(sixteen, "x", stored=True, max_size=10)

    # prepare: the same L, the working image exact to 1/65535 (shrunk as 16-bit integers)
    big = cv2.resize(stored, (1200, 1600))
    data = cv2.imencode(".png", big[:, :, 0] if gray else big)[1].tobytes()
    samples = decode_rgb(data, "big", stored=True)
    assert (samples.strides[2] == 0) == gray  # a gray image: one plane, seen three times
    settings = Settings(size=160)
    a, b = prepare(samples, settings), prepare(to_float(samples), settings)
    np.testing.assert_array_equal(a.L, b.L)
    np.testing.assert_allclose(a.work, b.work, atol=2e-3)  # L units: 1/65535 of the samples
    # read and prepared in the memory of the samples (1 or 3 bytes a pixel) and L (4), or of the
    # samples and their 16-bit copy to shrink (2 or 6): no float RGB (12; strips of 64 k
    # pixels, so that their few MB of temporaries do not hide it)
    monkeypatch.setattr(color, "STRIP_PIXELS", 1 << 16)
    tracemalloc.start()
    prepare(decode_rgb(data, "big", stored=True), settings)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1200 * 1600 * 12, peak
