"""Hostile and awkward inputs, generated: image files, record streams, and the good images every
tool must still read. Used by test_hostile.py, test_imagehead.py and test_fuzz.py."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from conftest import smooth_image

from recolor_tools.records import lab_record, write_record


@dataclass(frozen=True)
class Case:
    """One hostile file: its name (also its id), a maker of its bytes, and a word the error
    line must hold."""

    name: str
    make: object  # () -> bytes, or (Path) -> None for things that are not plain files
    reason: str

    def named(self, path: Path) -> str:
        """What the error line names: the file, and for a bad value or a record over the
        limits the record inside it."""
        if "contains" in self.reason:
            return f"{path}: {self.name.replace('.lab', '-record.png')}"
        if "larger than" in self.reason:
            return f"{path}: x.png"  # _head's name
        return str(path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(w: int, h: int, idat: bytes | None = None, depth: int = 8, color: int = 0) -> bytes:
    """A PNG with this header; ``idat`` defaults to ``h`` rows of zeros (flat black), which
    deflate squeezes well, so a valid 180 Mpx image is a few hundred KB."""
    if idat is None:
        comp = zlib.compressobj(9)
        row = bytes(1 + (w * depth * (3 if color == 2 else 1) + 7) // 8)
        parts = [comp.compress(row) for _ in range(h)]
        idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def encoded(ext: str, rgb: np.ndarray | None = None) -> bytes:
    rgb = smooth_image(16, 20, 5) if rgb is None else rgb
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _jpeg_sof(w: int, h: int) -> bytes:
    """A JPEG whose frame header claims w x h (the rest is a small real JPEG's)."""
    data = bytearray(encoded(".jpg"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def _jpeg_cut_in_scan() -> bytes:
    """A JPEG cut halfway through its scan that still ends in EOI: libjpeg fills the rest with
    grey and says so only on fd 2 (it was read whole, exit 0)."""
    data = encoded(".jpg", np.random.default_rng(2).integers(0, 256, (64, 64, 3), np.uint8))
    scan = data.index(b"\xff\xda")
    return data[: (scan + len(data)) // 2] + b"\xff\xd9"


def _jpeg_cut_after_stray_bytes() -> bytes:
    """:func:`_jpeg_cut_in_scan` with stray bytes before a header segment: libjpeg says only a
    decode's first warning, theirs ("3 extraneous bytes before marker 0xc4"; good files have
    them), so the cut's went unheard (it was read whole, exit 0)."""
    data = _jpeg_cut_in_scan()
    at = data.index(b"\xff\xc4")
    return data[:at] + b"\x00\x01\x02" + data[at:]


def _bmp_size(w: int, h: int) -> bytes:
    data = bytearray(encoded(".bmp"))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def _tiff_no_size() -> bytes:
    # little-endian TIFF, one IFD with one entry (Compression = 1), no width or length
    return b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 259, 3, 1, 1) + bytes(4)


def _webp_vp8x(w: int, h: int) -> bytes:
    body = b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
    body += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


IMAGE_CASES = [
    Case("empty.png", lambda: b"", "empty"),
    Case("text.jpg", lambda: b"just some words, not a picture\n", "text"),
    Case("html.png", lambda: b"<!DOCTYPE html><html></html>", "HTML"),
    Case("gif-named.png", lambda: b"GIF89a" + bytes(40), "GIF"),
    Case("pxm-named.jpg", lambda: b"P6\n4 4\n255\n" + bytes(48), "PxM"),
    # colour PFM ("PF"; gray is "Pf") was "unknown format"
    Case("pfm-named.png", lambda: b"PF\n1 1\n-1.0\n" + bytes(12), "PFM"),
    Case("svg-named.png", lambda: b"<?xml version='1.0'?><svg/>", "SVG"),
    Case("jp2-named.jpg", lambda: b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(40), "JPEG 2000"),
    Case("exr-named.tif", lambda: b"v/1\x01" + bytes(40), "OpenEXR"),
    Case("record-named.png", lambda: b"RCLR" + bytes(40), "record"),
    Case("random.webp", lambda: np.random.default_rng(1).bytes(300), "unknown format"),
    Case("truncated-jpeg.jpg", lambda: _half(encoded(".jpg")), "truncated JPEG"),
    Case("cut-scan.jpg", _jpeg_cut_in_scan, "truncated JPEG (premature end of data segment)"),
    Case("cut-scan-strays.jpg", _jpeg_cut_after_stray_bytes, "truncated JPEG (premature end"),
    Case("truncated-png.png", lambda: _half(encoded(".png")), "truncated PNG"),
    Case("bomb.png", lambda: png_bytes(100_000, 100_000, zlib.compress(bytes(1000))), "bomb"),
    Case("huge-valid.png", lambda: png_bytes(13_400, 13_400), "too large"),
    Case("huge-sof.jpg", lambda: _jpeg_sof(65_535, 65_535), "too large"),
    Case("bomb-sof.jpg", lambda: _jpeg_sof(13_000, 13_000), "bomb"),  # (under the limit)
    Case("huge.bmp", lambda: _bmp_size(100_000, -100_000), "too large"),
    Case("huge-vp8x.webp", lambda: _webp_vp8x(16_384, 16_384), "too large"),
    Case("zero-width.bmp", lambda: _bmp_size(0, 10), "no size"),
    Case("no-ihdr.png", lambda: b"\x89PNG\r\n\x1a\n" + png_chunk(b"IEND", b""), "corrupt PNG"),
    Case("no-sof.jpg", lambda: b"\xff\xd8\xff\xd9", "corrupt JPEG"),
    Case("no-size.tif", _tiff_no_size, "corrupt TIFF"),
    Case("bad-chunk.webp", lambda: b"RIFF\x10\x00\x00\x00WEBPJUNK" + bytes(20), "corrupt WebP"),
    Case("bad-idat.png", lambda: png_bytes(8, 8, b"\x78\x9c" + bytes(30)), "corrupt PNG"),
    Case("garbage-scan.jpg", lambda: _jpeg_garbage_scan(), "JPEG"),
    Case("dir.png", lambda p: p.mkdir(), "is a directory"),
    Case("dangling.png", lambda p: p.symlink_to(p.parent / "nowhere"), "no such file"),
    Case("-dash ünï cödé.gif", lambda: b"GIF87a" + bytes(40), "GIF"),
    Case("new\nline.png", lambda: b"", "empty"),
    Case("fifo.png", lambda p: os.mkfifo(p), "text"),  # the test writes text into it
    Case("nan.tif", lambda: _float_tiff(np.float32, nan=True), "NaN"),
]
"""Files no tool may read as an image: each must give one line and no output."""


def _float_tiff(dtype, nan: bool = False) -> bytes:
    # a float TIFF, one NaN sample in it with ``nan`` (it escaped as an internal error)
    img = smooth_image(20, 30, 3).astype(dtype) / 255
    if nan:
        img[3, 4, 1] = np.nan
    ok, buf = cv2.imencode(".tif", img)
    assert ok
    return buf.tobytes()


def _jpeg_garbage_scan() -> bytes:
    # A real frame header, then the scan replaced by bytes libjpeg cannot decode.
    data = bytearray(encoded(".jpg"))
    i = data.index(b"\xff\xda")
    return bytes(data[: i + 2]) + b"\x00\x01\xff\xff" * 8 + b"\xff\xd9"


def good_images() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Awkward but valid images, each with the (H, W) a reader must give."""
    from PIL import Image

    rgb = smooth_image(20, 30, 7)
    pil = Image.fromarray(rgb)
    out: dict[str, tuple[bytes, tuple[int, int]]] = {}

    def save(name: str, img, shape=(20, 30), **kw) -> None:
        buf = io.BytesIO()
        img.save(buf, format=kw.pop("format", None) or Path(name).suffix[1:].upper(), **kw)
        out[name] = (buf.getvalue(), shape)

    out["one.png"] = (encoded(".png", rgb[:1, :1]), (1, 1))
    out["row.png"] = (encoded(".png", rgb[:1]), (1, 30))
    out["column.jpg"] = (encoded(".jpg", rgb[:, :1]), (20, 1))
    ok, g16 = cv2.imencode(".png", (np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    out["gray16.png"] = (g16.tobytes(), (20, 30))
    save("gray.png", pil.convert("L"))
    save("gray-alpha.png", pil.convert("LA"))
    save("rgba.png", pil.convert("RGBA"))
    save("palette.png", pil.convert("P"))
    save("cmyk.jpg", pil.convert("CMYK"), format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    save("exif-rotated.jpg", pil, (30, 20), format="JPEG", exif=exif)
    save("lossless.webp", pil, lossless=True)
    save("lossy.webp", pil)
    save("plain.bmp", pil)
    save("plain.tif", pil, format="TIFF")
    out["bmp-named.jpg"] = (out["plain.bmp"][0], (20, 30))  # trust the bytes
    out["float64.tif"] = (_float_tiff(np.float64), (20, 30))  # OpenCV converts float32 only
    return out


def multipage_tiff() -> bytes:
    """A two-page TIFF (20 x 30, then 10 x 30)."""
    from PIL import Image

    rgb = smooth_image(20, 30, 8)
    out = io.BytesIO()
    pages = [Image.fromarray(rgb[:10])]
    Image.fromarray(rgb).save(out, format="TIFF", save_all=True, append_images=pages)
    return out.getvalue()


def make(case: Case, directory: Path) -> Path:
    """Create ``case`` in ``directory``; returns its path."""
    path = directory / case.name
    if case.make.__code__.co_argcount:
        case.make(path)
    else:
        path.write_bytes(case.make())
    return path


# Record streams -------------------------------------------------------------------------------


def good_record(name: str = "r.png", h: int = 6, w: int = 5) -> bytes:
    lab = smooth_image(h, w, 3).astype(np.float32) / 2.55 - 20
    lab[..., 0] = np.abs(lab[..., 0])
    buf = io.BytesIO()
    write_record(buf, lab_record(name, lab, (h, w)))
    return buf.getvalue()


def with_header(
    head: dict | bytes, payload: bytes = b"", version: int = 1, n=None, flags: int = 0
) -> bytes:
    """A record built from FORMAT.md alone (struct, json, zlib; no recolor code)."""
    raw = head if isinstance(head, bytes) else json.dumps(head).encode()
    crc = zlib.crc32(payload, zlib.crc32(raw))
    n = len(raw) if n is None else n
    return struct.pack("<4sHHI", b"RCLR", version, flags, n) + raw + payload + \
        struct.pack("<I", crc)  # fmt: skip


def _head(shape, dtype="<f4", name="x.png", **extra) -> dict:
    return {"name": name, "size": [1, 1], "meta": {},
            "arrays": [{"name": "lab", "dtype": dtype, "shape": shape}], **extra}  # fmt: skip


def _bad_values(name: str, value: float, channel: int) -> bytes:
    """A Lab record named ``name`` with one ``value`` (NaN, inf) in ``channel`` (0 is L)."""
    lab = np.full((2, 3, 3), 50, np.float32)
    lab[1, 2, channel] = value
    buf = io.BytesIO()
    write_record(buf, lab_record(name, lab, (2, 3)))
    return buf.getvalue()


def _flip_crc(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


STREAM_CASES = [
    Case("bad-magic.lab", lambda: b"RCLX" + good_record()[4:], "bad magic"),
    Case("future.lab", lambda: good_record()[:4] + b"\x09\x00" + good_record()[6:], "newer"),
    Case("long-header.lab", lambda: struct.pack("<4sHHI", b"RCLR", 1, 0, 1 << 30), "header"),
    Case("header-past-end.lab", lambda: with_header(_head([1, 1, 3]), n=5000), "truncated"),
    Case("not-utf8.lab", lambda: with_header(b'{"name": "\xff\xfe"}'), "UTF-8"),
    Case("not-json.lab", lambda: with_header(b"{name: x"), "JSON"),
    Case("deep-json.lab", lambda: with_header(b"[" * 100_000 + b"]" * 100_000), "JSON"),
    Case("no-arrays.lab", lambda: with_header({"name": "x", "size": [1, 1]}), "malformed"),
    Case("bool-shape.lab", lambda: with_header(_head([True, 1, 3])), "malformed"),
    Case("negative-shape.lab", lambda: with_header(_head([-1, 1, 3])), "malformed"),
    Case("object-dtype.lab", lambda: with_header(_head([1, 1, 3], "|O")), "does not hold"),
    Case("insane-shape.lab", lambda: with_header(_head([10**6, 10**6, 3])), "larger than"),
    Case("shape-past-end.lab", lambda: with_header(_head([1000, 1000, 3])), "truncated"),
    Case("crc.lab", lambda: _flip_crc(good_record("c.png")), "checksum"),
    Case("cut-header.lab", lambda: good_record()[:20], "truncated"),
    Case("cut-payload.lab", lambda: good_record()[:-40], "truncated"),
    # A bad value fails its record only (the stream goes on): the line names the record.
    Case("nan-ab.lab", lambda: _bad_values("nan-ab-record.png", float("nan"), 1), "ab contains"),
    Case("inf-l.lab", lambda: _bad_values("inf-l-record.png", float("inf"), 0), "L contains"),
    Case("zero-records.lab", lambda: b"", "no records"),
]
"""Record streams no tool may turn into output."""
