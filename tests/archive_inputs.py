"""Generated inputs for the archive-grade image I/O tests (issue 18): a wide-gamut ICC v2
matrix/TRC profile, PNGs with chunks written by hand, EXIF and XMP blocks, and the sRGB
oracle the profiles are checked against.

Every image is generated here or in the tests, including the profile, written byte by byte,
so the tests need no file from outside the repository.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

from recolor_tools import color, colorprofile, records

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


UTF8_TEXT = (
    (None, 270, "Affiche « Les Enfants du paradis », 1945"),  # ImageDescription
    (0x8769, 0xA430, "Zoë Müller"),  # CameraOwnerName, in the Exif IFD
    (0x8825, 18, "Système géodésique"),  # GPSMapDatum, in the GPS IFD
)
"""EXIF text tags (directory, tag, text) in UTF-8, as cameras and editors write them."""


def exif_bytes(orientation: int = 1) -> bytes:
    ex = Image.Exif()
    ex[274] = orientation
    ex[315] = "Ann Archivist"
    ex[33432] = "(c) 2026 Poster Archive"
    for i, (tags, tag, text) in enumerate(UTF8_TEXT):  # placeholders as long, then the text
        (ex if tags is None else ex.get_ifd(tags))[tag] = "QXZ"[i] * len(text.encode())
    ex.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    ex.get_ifd(0x8769)[0xA005] = {1: "R03"}  # Interoperability IFD: "Adobe RGB" per DCF
    ex.get_ifd(0x8769)[0xA001] = 0xFFFF  # ColorSpace: Uncalibrated (Adobe RGB, per DCF)
    ex.get_ifd(0x8769)[0xA002] = 999  # PixelXDimension, PixelYDimension: sizes to be made
    ex.get_ifd(0x8769)[0xA003] = 888  # the output's
    raw = ex.tobytes()  # (Pillow writes text as ASCII, "?" for other bytes: the UTF-8 after)
    for i, (_, _, text) in enumerate(UTF8_TEXT):
        raw = raw.replace(b"QXZ"[i : i + 1] * len(text.encode()), text.encode())
    return raw


def float_tiff(rgb: np.ndarray, icc: bytes, artist: str) -> bytes:
    """A float32 RGB TIFF (one strip, little-endian) with an ICC profile and an Artist tag,
    written byte by byte: neither Pillow nor OpenCV writes one with both."""
    h, w, _ = rgb.shape
    pixels = np.ascontiguousarray(rgb, "<f4").tobytes()
    text = artist.encode() + b"\0"
    tags = [(256, 4, [w]), (257, 4, [h]), (258, 3, [32] * 3), (259, 3, [1]), (262, 3, [2]),
            (273, 4, [8]), (277, 3, [3]), (278, 4, [h]), (279, 4, [len(pixels)]),
            (284, 3, [1]), (315, 2, text), (339, 3, [3] * 3), (34675, 7, icc)]  # fmt: skip
    ifd = 8 + len(pixels)
    after = ifd + 2 + 12 * len(tags) + 4  # where values longer than 4 bytes go
    entries, extra = b"", b""
    for tag, kind, values in tags:
        raw = bytes(values) if kind in (2, 7) else b"".join(
            struct.pack("<H" if kind == 3 else "<I", v) for v in values)  # fmt: skip
        if len(raw) > 4:
            extra += b"\0" * (len(extra) % 2)
            raw, extra = struct.pack("<I", after + len(extra)), extra + raw
        entries += struct.pack("<HHI", tag, kind, len(values)) + raw.ljust(4, b"\0")
    head = b"II*\0" + struct.pack("<I", ifd)
    return head + pixels + struct.pack("<H", len(tags)) + entries + bytes(4) + extra


def lab_records(data: bytes) -> list[records.Record]:
    return list(records.iter_records(io.BytesIO(data)))


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()  # PNG eXIf/iTXt may follow the pixels
    return im


def save_pil(path: Path, rgb: np.ndarray, fmt: str, **kw) -> Path:
    extra = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rgb).save(path, fmt, **extra, **kw)
    return path
