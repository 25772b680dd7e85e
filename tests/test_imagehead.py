"""Reading awkward but valid images, the header parser and the pixel limit."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from conftest import read_rgb_u8, run, smooth_image, write_rgb
from corpus import good_images, multipage_tiff, png_bytes

from recolor_tools.errors import RecolorError
from recolor_tools.imagehead import DEFAULT_MAX_PIXELS, max_pixels, read_head, sniff_format
from recolor_tools.imageio import decode_rgb
from recolor_tools.records import iter_records


@pytest.fixture(scope="module")
def good() -> dict:
    return good_images()


def test_every_awkward_image_is_read_with_its_size(good, tmp_path):
    for name, (data, _) in good.items():
        (tmp_path / name).write_bytes(data)
    p = run(["to-lab", *(tmp_path / n for n in good)], check_rc=0)
    assert p.stderr == b""
    recs = {r.name: r for r in iter_records(io.BytesIO(p.stdout))}
    assert {n: recs[n].arrays["lab"].shape[:2] for n in good} == {
        n: s for n, (_, s) in good.items()
    }
    # a gray source stays gray (a = b = 0), a colour one does not
    assert abs(recs["gray16.png"].arrays["lab"][..., 1:]).max() < 0.5
    assert abs(recs["cmyk.jpg"].arrays["lab"][..., 1:]).max() > 5
    # predict too: every one recoloured at its own size, in its own format
    inputs = [tmp_path / n for n in good]
    p = run(["predict", "-q", "-o", f"{tmp_path}/out/", "--size", "32", *inputs])
    assert p.returncode == 0, p.stderr
    for name, (_, shape) in good.items():
        assert read_rgb_u8(tmp_path / "out" / name).shape[:2] == shape, name


def test_header_size_agrees_with_the_decoder(good):
    for name, (data, (h, w)) in good.items():
        head = read_head(data, name)
        decoded = decode_rgb(data, name).shape[:2]
        if name == "exif-rotated.jpg":  # the header holds the stored size, before rotation
            assert (head.width, head.height) == decoded and decoded == (h, w)
        else:
            assert (head.height, head.width) == decoded == (h, w), name
        assert sniff_format(data) == head.format


def test_multipage_tiff_reads_the_first_page_and_says_so_once(tmp_path):
    path = tmp_path / "pages.tif"
    path.write_bytes(multipage_tiff())
    p = run(["to-lab", "-o", tmp_path / "p.lab", path], check_rc=0)
    assert p.stderr.decode().splitlines() == [
        f"recolor to-lab: {path}: multi-page TIFF: reading the first page only"
    ]
    (rec,) = iter_records(io.BytesIO((tmp_path / "p.lab").read_bytes()))
    assert rec.arrays["lab"].shape == (20, 30, 3)


@pytest.mark.parametrize("fmt", ["PNG", "WebP"])
def test_an_animation_reads_its_first_frame_and_says_so_once(tmp_path, fmt):
    from PIL import Image

    frames = [Image.fromarray(smooth_image(20, 30, seed)) for seed in (1, 2, 3)]
    ext = {"PNG": ".png", "WebP": ".webp"}[fmt]
    anim, still = tmp_path / f"anim{ext}", tmp_path / f"still{ext}"
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    frames[0].save(still, lossless=True)
    assert read_head(anim.read_bytes()).pages == 2 and read_head(still.read_bytes()).pages == 1
    p = run(["to-lab", "-o", f"{tmp_path}/out/", anim, still], check_rc=0)
    assert p.stderr.decode().splitlines() == [
        f"recolor to-lab: {anim}: animated {fmt}: reading the first frame only"
    ]
    first, only = (next(iter_records(io.BytesIO((tmp_path / "out" / n).read_bytes())))
                   for n in ("anim.lab", "still.lab"))  # fmt: skip
    assert abs(first.arrays["lab"] - only.arrays["lab"]).max() < 1e-4


def test_a_bad_pixel_limit_is_one_usage_line(tmp_path, monkeypatch):
    srcs = [write_rgb(tmp_path / f"{i}.png", smooth_image(20, 30, i)) for i in range(3)]
    monkeypatch.setenv("RECOLOR_MAX_PIXELS", "abc")
    for tool in ("to-lab", "compare", "predict"):  # said once per input before, exit 1
        p = run([tool, *srcs[: 2 if tool == "compare" else 3]])
        assert p.returncode == 2 and p.stdout == b"", p.stderr
        assert p.stderr.decode() == (
            f"recolor {tool}: RECOLOR_MAX_PIXELS must be a positive integer, not 'abc'\n"
        )


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    src = write_rgb(tmp_path / "a.png", smooth_image(20, 30, 1))
    monkeypatch.setenv("RECOLOR_MAX_PIXELS", "599")  # run() passes the environment on
    p = run(["to-lab", src])
    assert p.returncode == 1 and p.stderr.decode().splitlines() == [
        f"recolor to-lab: {src}: image too large: 30x20 = 600 pixels, over the limit of 599 "
        "(set RECOLOR_MAX_PIXELS to change it)"
    ]
    monkeypatch.setenv("RECOLOR_MAX_PIXELS", "600")
    lab = run(["to-lab", src], check_rc=0).stdout
    monkeypatch.setenv("RECOLOR_MAX_PIXELS", "599")  # the record is refused from its header,
    for where, args, stdin in ((f"{src}.lab: ", [f"{src}.lab"], None), ("", [], lab)):
        (tmp_path / "a.png.lab").write_bytes(lab)  # named by its file and name; from stdin,
        p = run(["from-lab", *args, "-o", tmp_path / "b.png"], input=stdin)  # by its name
        assert p.returncode == 1 and p.stderr.decode() == (
            f"recolor from-lab: {where}a.png: record array 'lab' of shape (20, 30, 3) is larger "
            "than any image recolor reads (RECOLOR_MAX_PIXELS = 599)\n"
        )
    # a valid image just over the default is refused, and passes once the limit is raised
    big = png_bytes(13_400, 13_400)
    monkeypatch.delenv("RECOLOR_MAX_PIXELS", raising=False)
    assert max_pixels() == DEFAULT_MAX_PIXELS == 178_956_970
    with pytest.raises(RecolorError, match="too large"):
        read_head(big)
    monkeypatch.setenv("RECOLOR_MAX_PIXELS", "200_000_000")
    assert read_head(big).width == 13_400
    for bad in ("0", "-5", "lots"):
        monkeypatch.setenv("RECOLOR_MAX_PIXELS", bad)
        with pytest.raises(RecolorError, match="RECOLOR_MAX_PIXELS"):
            max_pixels()


def test_a_png_whose_header_lies_is_a_bomb_whatever_the_limit(monkeypatch):
    import zlib

    monkeypatch.setenv("RECOLOR_MAX_PIXELS", str(10**12))
    with pytest.raises(RecolorError, match="decompression bomb"):
        read_head(png_bytes(100_000, 100_000, zlib.compress(bytes(1000))))
    assert read_head(png_bytes(2000, 2000)).height == 2000  # flat, but honest


def test_a_jpeg_whose_header_lies_is_a_bomb_and_a_flat_one_is_honest(tmp_path):
    """A 1 KB JPEG whose frame header claims 13000 x 13000 was decoded grey-filled without a
    word: 4 GB of memory and a 2 GB record (from-lab and compare ran past a minute)."""
    import struct

    import cv2
    import numpy as np

    ok, enc = cv2.imencode(".jpg", np.full((16, 16, 3), (0, 0, 255), np.uint8))
    lie = bytearray(enc.tobytes())
    at = lie.index(b"\xff\xc0")
    lie[at + 5 : at + 9] = struct.pack(">HH", 13000, 13000)
    (tmp_path / "lie.jpg").write_bytes(bytes(lie))
    ok, flat = cv2.imencode(".jpg", np.full((3000, 3000), 128, np.uint8))  # all DC, no AC
    assert read_head(flat.tobytes()).width == 3000
    p = run(["to-lab", "lie.jpg", "-o", "x.lab"], cwd=tmp_path)
    assert (p.returncode, p.stderr.decode()) == (1, "recolor to-lab: lie.jpg: decompression "
        f"bomb: the header claims 13000x13000 pixels, more than {len(lie):,} bytes of JPEG can "
        "hold\n")  # fmt: skip
    assert not (tmp_path / "x.lab").exists()
    ok, photo = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (600, 600, 3),
                                                                      np.uint8))  # fmt: skip
    (tmp_path / "cut.jpg").write_bytes(photo.tobytes()[:600])  # cut, not lying: said so
    p = run(["to-lab", "cut.jpg", "-o", "x.lab"], cwd=tmp_path)
    assert p.stderr.decode() == "recolor to-lab: cut.jpg: truncated JPEG (no end-of-image marker)\n"


def _extra_samples(tiff: bytes, value: int) -> bytes:
    """``tiff`` (little-endian, one IFD) with its ExtraSamples entry set to ``value``."""
    import struct

    data = bytearray(tiff)
    (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(n):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == 338:
            data[entry + 8 : entry + 10] = struct.pack("<H", value)
            return bytes(data)
    raise AssertionError("no ExtraSamples tag")


def test_tiff_alpha_is_composited_as_the_file_says(tmp_path):
    """OpenCV multiplies a straight alpha (ExtraSamples 2) into an 8-bit TIFF's colours, so a
    half-transparent 200 came out 177 on white, not 227; premultiplied data (1) is divided back."""
    import numpy as np
    from PIL import Image

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., :3] = (200, 120, 40)
    rgba[..., 3] = 128
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="TIFF")  # straight alpha: ExtraSamples 2
    straight = buf.getvalue()
    pre = rgba.copy()
    pre[..., :3] = np.rint(rgba[..., :3] * (128 / 255))
    buf = io.BytesIO()
    Image.fromarray(pre, "RGBA").save(buf, format="TIFF")
    premultiplied = _extra_samples(buf.getvalue(), 1)
    want = rgba[..., :3] / 255 * (128 / 255) + (1 - 128 / 255)  # over white
    for data in (straight, premultiplied):
        np.testing.assert_allclose(decode_rgb(data, "a.tif"), want, atol=1.5 / 255)
        kept = decode_rgb(data, "a.tif", keep_alpha=True)
        np.testing.assert_allclose(kept[..., :3], rgba[..., :3] / 255, atol=2.5 / 255)
    (tmp_path / "a.tif").write_bytes(straight)
    write_rgb(tmp_path / "a.png", rgba)
    lab = [next(iter_records(io.BytesIO(run(["to-lab", tmp_path / n], check_rc=0).stdout))).lab()
           for n in ("a.tif", "a.png")]  # fmt: skip
    np.testing.assert_allclose(lab[0], lab[1], atol=0.5)
    assert [read_head(d).extra_samples for d in (straight, premultiplied)] == [2, 1]


def test_what_an_unreadable_file_holds_is_named(tmp_path):
    """A file of NUL bytes (allocated, never written: a crash, a full disk) was called "text",
    as was UTF-8 with control characters; text is text."""
    files = {"zeros.png": b"\0" * 4096, "ctrl.png": b"ab\x01\x02cd" * 10,
             "notes.png": "caf\u00e9 au lait\n".encode()}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    p = run(["to-lab", *files, "-o", "all.lab"], cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.decode().splitlines() == [
        f"recolor to-lab: {name}: not an image recolor reads ({what})"
        for name, what in zip(files, ("zero bytes only", "unknown format", "text"), strict=True)
    ]


def test_a_whole_image_with_data_after_it_is_read_and_a_cut_one_is_not(tmp_path):
    """The end marker was looked for in the last 64 bytes of a JPEG (4,096 of a PNG): a whole
    image followed by more (a phone's motion photo: the video after the JPEG; padding) was
    "truncated JPEG (no end-of-image marker)". Now the file is walked to its end marker: such
    files are read as their image, and files cut short, within a scan or between the scans of
    a progressive JPEG, are still refused."""
    import cv2
    import numpy as np

    img = smooth_image(40, 56, 3)
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    files = {
        "j.jpg": cv2.imencode(".jpg", bgr)[1].tobytes(),
        "p.jpg": cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        "n.png": cv2.imencode(".png", bgr)[1].tobytes(),
    }
    trailer = b"\x00" * 5000 + b"\xff\xd8\xff" + np.random.default_rng(0).bytes(3000)
    for name, data in files.items():
        (tmp_path / f"tail-{name}").write_bytes(data + trailer)
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) * 3 // 4])
        whole = decode_rgb(data)
        assert np.array_equal(decode_rgb(data + trailer), whole), name
    p = run(["to-lab", *sorted(tmp_path.glob("tail-*")), "-o", f"{tmp_path}/lab/"])
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert len(list((tmp_path / "lab").iterdir())) == 3
    p = run(["to-lab", *sorted(tmp_path.glob("cut-*")), "-o", f"{tmp_path}/cut/"])
    assert p.returncode == 1
    assert sorted(p.stderr.decode().splitlines()) == [
        f"recolor to-lab: {tmp_path}/cut-j.jpg: truncated JPEG (no end-of-image marker)",
        f"recolor to-lab: {tmp_path}/cut-n.png: truncated PNG (no IEND chunk)",
        f"recolor to-lab: {tmp_path}/cut-p.jpg: truncated JPEG (no end-of-image marker)",
    ]


def test_a_jpeg_given_back_its_end_marker_after_a_cut_is_refused_or_said(tmp_path):
    """A partial download "repaired" with an EOI marker appended was read, exit 0, with
    nothing said, where libjpeg's warning on fd 2 went unheard: a progressive file cut between
    or inside its scans (coarser colours, no grey end to listen for) is now read with a
    warning (T.81 lets a legal script stop early as well: the one without its last scan is
    read with the same warning), and a cut baseline one whose header held stray bytes (their
    warning is the only one libjpeg says) is refused: the listening decode drops them. Whole
    files (stray bytes and a grey end, EXIF and ICC, data after EOI) are read unsaid."""
    import cv2
    import numpy as np
    from PIL import Image, ImageCms

    rgb = np.random.default_rng(4).integers(0, 256, (48, 64, 3), np.uint8)
    rgb[-16:, -16:] = 128  # a grey end: a whole file decoded again listening
    prog = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    scans = [m.start() for m in re.finditer(b"\xff\xda", prog)]
    eoi = b"\xff\xd9"
    tables = [prog.rindex(b"\xff\xc4", 0, a) for a in scans]  # (each scan's table before it)
    short = {f"cut-{k}.jpg": prog[:at] + eoi for k, at in enumerate(tables[1:], 1)}
    datas = [(a, prog.index(b"\xff\xc4", a)) for a in scans[:-1]]
    short |= {f"cut-{k}-in.jpg": prog[: (a + b) // 2] + eoi
              for k, (a, b) in enumerate(datas) if b - a > 64}  # fmt: skip
    base = cv2.imencode(".jpg", rgb)[1].tobytes()
    at = base.index(b"\xff\xdb")
    strays = base[:at] + b"\x00\x01\x02" + base[at:]
    cut = {"cut-strays.jpg": strays[: (base.index(b"\xff\xda") + len(strays)) // 2] + eoi}
    buf = io.BytesIO()
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "camera"
    Image.fromarray(rgb).save(buf, "JPEG", progressive=True, exif=exif, icc_profile=profile)
    whole = {"prog.jpg": prog, "strays.jpg": strays, "pil.jpg": buf.getvalue(),
             "tail.jpg": prog + b"\x00" * 99 + b"\xff\xd8\xff\xda" + bytes(9)}  # fmt: skip
    for name, data in {**short, **cut, **whole}.items():
        (tmp_path / name).write_bytes(data)
    p = run(["to-lab", *short, *cut, *whole, "-o", "lab/"], cwd=tmp_path)
    assert p.returncode == 1
    lines = dict(line.split(": ", 2)[1:] for line in p.stderr.decode().splitlines())
    said = (
        "progressive JPEG whose scans stop before its last refinement (cut short?): read as it is"
    )
    refused = "truncated JPEG (premature end of data segment)"
    assert list(lines) == [*short, *cut] and lines["cut-strays.jpg"] == refused
    # between scans libjpeg says nothing; inside one, where it fills the rest grey, it is heard
    assert all(lines[n] == said for n in short if "-in" not in n)
    assert {lines[n] for n in short if "-in" in n} <= {said, refused}
    read = [n for n in {**short, **whole} if lines.get(n) != refused]
    assert sorted(f.name for f in (tmp_path / "lab").iterdir()) == sorted(
        Path(n).with_suffix(".lab").name for n in read
    )
