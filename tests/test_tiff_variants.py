"""Archive-grade image I/O (issue 18): the TIFFs OpenCV misreads or refuses: extra samples,
integer and CMYK samples, planar and tiled storage, WhiteIsZero gray."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
from archive_inputs import lab_records, lightness
from conftest import run, smooth_image
from PIL import Image

from recolor_tools import color, records


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
    extra_samples: int | None = None,
    compression: int = 1,
    sample_format: int | None = None,
) -> bytes:
    """An uncompressed little-endian RGB TIFF of ``rgb`` (uint8 or uint16): one strip, one
    plane per channel (PlanarConfiguration 2), or square tiles of side ``tile``; RGB or
    BlackIsZero gray unless ``photometric`` says; ``extra_samples``, ``compression`` (the tag
    only: the samples are stored plain) and ``sample_format`` their tags."""
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
    tags = [(256, 4, [w]), (257, 4, [h]), (258, 3, [bits] * c), (259, 3, [compression]),
            (262, 3, [photometric if photometric is not None else 2 if c == 3 else 1]),
            (277, 3, [c]), (278, 4, [h]),
            (284, 3, [2 if planar else 1]),
            (where[0], 4, offsets[:-1].tolist()),
            (where[1], 4, [len(b) for b in blocks])]  # fmt: skip
    if tile:
        tags += [(322, 4, [tile]), (323, 4, [tile])]
    tags += [(274, 3, [orientation])]
    if extra_samples is not None:
        tags += [(338, 3, [extra_samples])]
    if sample_format is not None:
        tags += [(339, 3, [sample_format] * c)]
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


def test_a_16_bit_gray_alpha_tiff_read_at_8_bits_says_so(tmp_path: Path):
    """OpenCV reads a gray+alpha TIFF through libtiff's 8-bit RGBA interface (Pillow not at
    all): 16 bits in came out 8 bits, unsaid. Said now; 16-bit gray keeps its 16."""
    gray = smooth_image(8, 12, 5)[:, :, :1].astype(np.uint16) * 257 + 3
    alpha = np.full_like(gray, 65535)
    (tmp_path / "ga16.tif").write_bytes(raw_tiff(np.dstack([gray, alpha]), extra_samples=2))
    (tmp_path / "g16.tif").write_bytes(raw_tiff(gray))
    p = run(["to-lab", "ga16.tif", "g16.tif"], cwd=tmp_path, check_rc=0)
    assert p.stderr.decode() == (
        "recolor to-lab: ga16.tif: 16-bit gray+alpha TIFF: read at 8 bits, as OpenCV reads it\n"
    )
    ga, g = lab_records(p.stdout)
    assert ga.source["depth"] == 8 and g.source["depth"] == 16
    np.testing.assert_allclose(ga.lightness(), g.lightness(), atol=0.5)


def test_valid_files_recolor_cannot_decode_are_named_not_called_corrupt(tmp_path: Path):
    """A half-float TIFF, a TIFF of a compression OpenCV's libtiff lacks (LERC) and a 12-bit
    JPEG were all "not a readable image (corrupt ... data)"; a Zstandard TIFF is read."""
    rgb = smooth_image(8, 12, 5)
    (tmp_path / "f16.tif").write_bytes(raw_tiff((rgb / 255).astype(np.float16), sample_format=3))
    (tmp_path / "lerc.tif").write_bytes(raw_tiff(rgb, compression=34887))
    ok, enc = cv2.imencode(".jpg", rgb)
    jpeg = bytearray(enc.tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 4] = 12  # the frame's sample precision
    (tmp_path / "j12.jpg").write_bytes(bytes(jpeg))
    p = run(["to-lab", "f16.tif", "lerc.tif", "j12.jpg"], cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.decode() == (
        "recolor to-lab: f16.tif: 16-bit float TIFF (recolor reads 32- and 64-bit float)\n"
        "recolor to-lab: lerc.tif: TIFF compression 34887 (LERC), which recolor's TIFF reader "
        "lacks\n"
        "recolor to-lab: j12.jpg: 12-bit JPEG (recolor reads 8-bit JPEG)\n"
    )


def test_a_tiff_of_more_samples_than_the_readers_take_is_one_line_naming_it(tmp_path: Path):
    """Pillow logged "More samples per pixel than can be decoded: 7" before it gave up, which
    Python's last-resort handler printed above the tool's line; and the layout was called
    corrupt."""
    gray5 = np.repeat(smooth_image(8, 12, 5)[:, :, :1], 5, axis=2)
    (tmp_path / "g5.tif").write_bytes(raw_tiff(gray5, photometric=1))
    rgb7 = bytearray(raw_tiff(smooth_image(8, 12, 6)))
    at = rgb7.index(struct.pack("<HHIH", 277, 3, 1, 3))  # SamplesPerPixel 3 -> 7
    rgb7[at + 8 : at + 10] = struct.pack("<H", 7)
    (tmp_path / "s7.tif").write_bytes(bytes(rgb7))
    for tool in ("to-lab", "predict"):
        p = run([tool, "g5.tif", "s7.tif", "-o", "out/"], cwd=tmp_path)
        assert p.returncode == 1 and p.stderr.decode() == "".join(
            f"recolor {tool}: {name}: TIFF of {n} samples a pixel, a layout recolor's TIFF "
            "readers lack\n"
            for name, n in (("g5.tif", 5), ("s7.tif", 7))
        )


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


def test_a_faint_pixel_of_a_tiff_hint_layer_keeps_its_colour(tmp_path: Path):
    """OpenCV gives an 8-bit TIFF's straight colours rounded premultiplied: divided back, the
    antialiased edge of a hint stroke (alpha 3) was pasted as #aa5555, not #c0392b."""
    from recolor_tools.hintfiles import read_hints
    from recolor_tools.hints import parse_color
    from recolor_tools.imageio import decode_rgb

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[1, :, :3] = (192, 57, 43)  # #c0392b
    rgba[1, :, 3] = (255, 128, 32, 8, 3, 1)
    path = tmp_path / "layer.tif"
    Image.fromarray(rgba, "RGBA").save(path)  # straight alpha: ExtraSamples 2
    kept = decode_rgb(path.read_bytes(), keep_alpha=True)
    np.testing.assert_array_equal(np.rint(kept * 255), rgba)
    np.testing.assert_allclose(read_hints(path).ab, [parse_color("#c0392b")] * 6, atol=1e-4)
