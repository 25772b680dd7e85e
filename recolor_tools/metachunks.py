"""Insert an ICC profile, EXIF and XMP into an image that OpenCV encoded.

OpenCV writes pixels only; Pillow writes metadata but not 16-bit RGB. So recolor keeps OpenCV's
encoder and adds the metadata to its bytes, in each format's own container:

=======  ==========================================================================================
PNG      ``pHYs``, ``iCCP`` (zlib), ``eXIf``, ``iTXt`` keyword ``XML:com.adobe.xmp``, right after
         ``IHDR``
JPEG     ``APP1 Exif``, ``APP1`` XMP, ``APP2 ICC_PROFILE`` (split in 65,519-byte chunks), after
         ``SOI`` and OpenCV's ``APP0 JFIF`` (its density set to the resolution)
WebP     the simple ``VP8``/``VP8L`` file becomes an extended one: ``VP8X`` (flags, canvas size),
         ``ICCP``, the image chunk, ``EXIF``, ``XMP``
TIFF     a new first IFD, appended: OpenCV's entries plus ICCProfile (34675), XMP (700) and the
         EXIF's descriptive IFD0 tags and Exif/GPS sub-IFDs (serialised by Pillow)
BMP      nothing (the format has no place for them)
=======  ==========================================================================================

A JPEG segment holds 64 KB: :func:`fit_jpeg` drops an EXIF's largest tags until it fits (a long
ImageDescription, a MakerNote), and an XMP packet larger than that (no extended XMP); the
caller says what was left out.

References
----------
.. [1] PNG Specification, 3rd edition (W3C, 2025): iCCP, eXIf, iTXt.
.. [2] JEITA CP-3451C (Exif 2.3) section 4.5.4; ICC.1:2010 annex B.4 (JPEG APP2 ICC_PROFILE).
.. [3] Google, "WebP Container Specification" (extended format, VP8X).
.. [4] Adobe, TIFF Revision 6.0 (IFD layout); XMP Specification Part 3.
"""

from __future__ import annotations

import struct
import zlib

_JPEG_SEGMENT = 65533  # payload bytes in one JPEG marker segment (65535 with the length field)
_ICC_CHUNK = _JPEG_SEGMENT - 14  # less "ICC_PROFILE\0", sequence number and count
_XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"
Dpi = tuple[float, float] | None
"""A resolution in pixels per inch (x, y), or none."""


def insert_metadata(
    enc: bytes,
    ext: str,
    size: tuple[int, int],
    *,
    icc: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    dpi: Dpi = None,
) -> bytes:
    """Add the given profile, EXIF (TIFF bytes, no ``Exif\\0\\0``) and XMP to encoded bytes.

    ``size`` is the image's (height, width) (WebP's canvas). ``dpi``, the resolution the EXIF
    states in pixels per inch, also goes where PNG and JPEG readers look for it (pHYs, JFIF
    density); TIFF and WebP readers read it from the EXIF. Formats without a place for them
    (BMP) are returned unchanged.
    """
    ext = ext.lower()
    if ext == ".png":
        return _png(enc, icc, exif, xmp, dpi)
    if ext in (".jpg", ".jpeg"):
        return _jpeg(enc, icc, exif, xmp, dpi)
    if ext == ".webp":
        return _webp(enc, size, icc, exif, xmp)
    if ext in (".tif", ".tiff"):
        return _tiff(enc, icc, exif, xmp)
    return enc


# --- PNG ----------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(enc: bytes, icc: bytes | None, exif: bytes | None, xmp: bytes | None, dpi: Dpi) -> bytes:
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length/type, IHDR data, CRC
    if enc[12:16] != b"IHDR":
        raise ValueError("not a PNG stream from OpenCV")
    chunks = b""
    if dpi:  # pixels per metre, unit 1
        per_metre = [min(2**31 - 1, max(1, round(d / 0.0254))) for d in dpi]
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1))
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b"eXIf", exif)
    if xmp:
        chunks += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    return enc[:ihdr_end] + chunks + enc[ihdr_end:]


# --- JPEG ---------------------------------------------------------------------------------------


JPEG_EXIF_ROOM = _JPEG_SEGMENT - 6
"""EXIF bytes (TIFF layout) one JPEG APP1 segment holds, after ``Exif\\0\\0``."""
JPEG_XMP_ROOM = _JPEG_SEGMENT - len(_XMP_NS)
"""XMP bytes one JPEG APP1 segment holds, after its namespace."""


def fit_jpeg(exif: bytes | None, xmp: bytes | None) -> tuple[bytes | None, bytes | None, list[str]]:
    """The EXIF and XMP a JPEG can carry (one segment each), and what was left out to fit.

    An EXIF over :data:`JPEG_EXIF_ROOM` loses its largest tags (IFD0 and the Exif IFD), one at
    a time, until it fits (Software and Orientation are small and stay); one that still does
    not fit, or that Pillow cannot write back, is dropped whole. An XMP over
    :data:`JPEG_XMP_ROOM` is dropped. The list names what went (``EXIF ImageDescription``,
    ``XMP``), with sizes, for a warning.
    """
    dropped = []
    if xmp and len(xmp) > JPEG_XMP_ROOM:
        dropped.append(f"XMP ({len(xmp):,} bytes)")
        xmp = None
    if exif and len(exif) > JPEG_EXIF_ROOM:
        exif, gone = _slim_exif(exif)
        dropped += gone
    return exif, xmp, dropped


_KEPT = (0x0131, 0x0112)
"""Software (naming recolor) and Orientation (1): small, and never dropped to fit."""
_POINTERS = (0x8825, 0xA005)
"""The GPS and Interoperability directories: each weighed, and dropped, whole."""


def _slim_exif(exif: bytes) -> tuple[bytes | None, list[str]]:
    from PIL import ExifTags

    from .exif import load_exif

    def size(v: object) -> int:
        return len(v) if isinstance(v, bytes | str) else 8 * len(v) if isinstance(v, tuple) else 8

    whole = f"EXIF ({len(exif):,} bytes)"
    try:
        ex = load_exif(b"Exif\x00\x00" + exif)
        sub = ex.get_ifd(0x8769) if 0x8769 in ex else {}  # (a MakerNote's place; asked for
        # when absent, Pillow would write an empty one)

        def weight(tag: int, value: object) -> int:
            inner = ex.get_ifd(tag).values() if tag in _POINTERS else [value]
            return sum(size(v) for v in inner)

        gone = []
        while len(exif) > JPEG_EXIF_ROOM:
            tags = [(weight(t, v), t, d) for d in (ex, sub) for t, v in d.items()
                    if t != 0x8769 and t not in _KEPT]  # fmt: skip
            if not tags:
                return None, [whole]
            n, tag, where = max(tags, key=lambda x: x[0])
            del where[tag]
            gone.append(f"EXIF {ExifTags.TAGS.get(tag, hex(tag))} ({n:,} bytes)")
            exif = ex.tobytes()[6:]
        return exif, gone
    except Exception:  # a tag Pillow cannot read or write back
        return None, [whole]


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _jpeg(enc: bytes, icc: bytes | None, exif: bytes | None, xmp: bytes | None, dpi: Dpi) -> bytes:
    if enc[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream from OpenCV")
    at = 2
    if enc[2:4] == b"\xff\xe0":  # keep JFIF's APP0 first, where JFIF readers look for it
        at = 4 + struct.unpack(">H", enc[4:6])[0]
        if dpi and enc[6:11] == b"JFIF\0":  # its density: units 1 (dots per inch), X, Y
            density = [min(65535, max(1, round(d))) for d in dpi]
            enc = enc[:13] + struct.pack(">BHH", 1, *density) + enc[18:]
    segs = b""
    if exif and len(exif) + 6 <= _JPEG_SEGMENT:
        segs += _jpeg_segment(0xE1, b"Exif\x00\x00" + exif)
    if xmp and len(xmp) + len(_XMP_NS) <= _JPEG_SEGMENT:
        segs += _jpeg_segment(0xE1, _XMP_NS + xmp)
    if icc:
        parts = [icc[i : i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
        if len(parts) < 256:
            for n, part in enumerate(parts, 1):
                segs += _jpeg_segment(0xE2, b"ICC_PROFILE\x00" + bytes([n, len(parts)]) + part)
    return enc[:at] + segs + enc[at:]


# --- WebP ---------------------------------------------------------------------------------------


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)


def _webp(
    enc: bytes, size: tuple[int, int], icc: bytes | None, exif: bytes | None, xmp: bytes | None
) -> bytes:
    if enc[:4] != b"RIFF" or enc[8:12] != b"WEBP":
        raise ValueError("not a WebP stream from OpenCV")
    image, alpha = b"", False
    pos = 12
    while pos + 8 <= len(enc):  # keep the image chunks, drop any metadata OpenCV wrote
        kind, n = enc[pos : pos + 4], struct.unpack("<I", enc[pos + 4 : pos + 8])[0]
        if kind in (b"VP8 ", b"VP8L", b"ALPH"):
            image += enc[pos : pos + 8 + n + (n & 1)]
            alpha = alpha or kind == b"ALPH"
        pos += 8 + n + (n & 1)
    h, w = size
    flags = (0x20 if icc else 0) | (0x10 if alpha else 0) | (0x08 if exif else 0)
    flags |= 0x04 if xmp else 0
    canvas = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    vp8x = struct.pack("<B3x", flags) + canvas
    body = _riff_chunk(b"VP8X", vp8x)
    body += _riff_chunk(b"ICCP", icc) if icc else b""
    body += image
    body += _riff_chunk(b"EXIF", exif) if exif else b""
    body += _riff_chunk(b"XMP ", xmp) if xmp else b""
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# --- TIFF ---------------------------------------------------------------------------------------


def _tiff(enc: bytes, icc: bytes | None, exif: bytes | None, xmp: bytes | None) -> bytes:
    """Append a new first IFD holding OpenCV's entries and the metadata tags.

    OpenCV's entries are copied as they are (their value offsets point into the unchanged start
    of the file); the new tags are serialised by Pillow as if their IFD started 12 bytes per
    copied entry later, so their value offsets are right once both lists are merged.
    """
    from PIL import TiffImagePlugin

    from .exif import SUB_IFDS, load_exif, sub_ifds

    if not (icc or exif or xmp):
        return enc
    order = "<" if enc[:2] == b"II" else ">"
    if enc[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ValueError("not a TIFF stream from OpenCV")
    (first,) = struct.unpack(order + "I", enc[4:8])
    (n_old,) = struct.unpack(order + "H", enc[first : first + 2])
    old = {}
    for i in range(n_old):
        entry = enc[first + 2 + 12 * i : first + 14 + 12 * i]
        old[struct.unpack(order + "H", entry[:2])[0]] = entry

    extra = TiffImagePlugin.ImageFileDirectory_v2(ifh=enc[:8])
    if exif:
        ex = load_exif(exif)
        subs = sub_ifds(ex)
        for tag, value in ex.items():
            if tag not in SUB_IFDS:
                extra[tag] = value
        for tag, sub in subs.items():
            extra.tagtype[tag] = TiffImagePlugin.TiffTags.LONG
            extra[tag] = sub
    if icc:
        extra[34675] = icc
    if xmp:
        extra[700] = xmp
    for tag in list(extra.keys()):
        old.pop(tag, None)  # the metadata's value wins (Software, resolution)

    start = len(enc) + (len(enc) & 1)  # IFDs begin on a word boundary
    new = extra.tobytes(start + 12 * len(old))
    n_new = struct.unpack(order + "H", new[:2])[0]
    entries = [new[2 + 12 * i : 14 + 12 * i] for i in range(n_new)] + list(old.values())
    entries.sort(key=lambda e: struct.unpack(order + "H", e[:2])[0])
    ifd = struct.pack(order + "H", len(entries)) + b"".join(entries) + b"\x00" * 4
    aux = new[2 + 12 * n_new + 4 :]
    out = enc[:4] + struct.pack(order + "I", start) + enc[8:] + b"\x00" * (start - len(enc))
    return out + ifd + aux
