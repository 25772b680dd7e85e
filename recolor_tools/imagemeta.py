"""What an image file says about its pixels besides the pixels: depth, ICC profile, EXIF, XMP.

recolor decodes pixels with OpenCV, which ignores colour profiles and, outside JPEG, EXIF
orientation, and writes no metadata. This module fills the gap on both sides:

- on read (:func:`finish_decode`, called at the end of ``imageio.decode_rgb``): the header is
  parsed (PNG chunks here, other formats with Pillow's lazy ``Image.open``: no pixel is decoded
  twice), the EXIF orientation is applied on every format (libtiff already did it for TIFF;
  OpenCV is told not to for JPEG, whose orientation recolor parses itself), and an embedded ICC
  profile is converted to the sRGB working space (:mod:`recolor_tools.colorprofile`);
- on write (:func:`encode_output`): the image is encoded by OpenCV as before, then the sRGB
  profile (or, with ``keep_profile``, the source's own, the pixels converted back to it), the
  source's EXIF (orientation reset to 1, a Software tag naming recolor) and XMP are inserted into
  the encoded bytes, by :mod:`recolor_tools.metachunks`; the EXIF directories themselves are
  read and rewritten by :mod:`recolor_tools.exif`.

Pillow is imported only for files that hold a place for metadata (a PNG ``iCCP``/``eXIf``/``iTXt``
chunk, a JPEG APP1/APP2 segment, an extended WebP, any TIFF), found by walking the chunk headers:
its import and plugins cost about 40 ms of CPU per process.

References
----------
.. [1] JEITA CP-3451C, Exif 2.3 (tag 274 Orientation, values 1-8).
.. [2] Adobe, XMP Specification Part 3 (storage in PNG iTXt, JPEG APP1, TIFF tag 700, WebP).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import RecolorError, warn
from .exif import ORIENTATION, RESOLUTION, clean_exif, load_exif, software_exif, with_resolution
from .imagehead import jpeg_segments, png_chunks

_XMP_ORIENTATION = (  # compiled on first use (re caches them): start-up stays lean
    rb"(tiff:Orientation\s*=\s*[\"'])(\d)([\"'])",
    rb"(<tiff:Orientation>\s*)(\d)(\s*</tiff:Orientation>)",
)
_JSON_BUDGET = 900_000  # base64 bytes of metadata in a record header (records.py allows 1 MiB)
_TIFF = (b"II*\x00", b"MM\x00*")
_PNG = b"\x89PNG\r\n\x1a\n"
_ICC_TAG, _XMP_TAG = 34675, 700  # TIFF's InterColorProfile and XMP tags


@dataclass
class ImageMeta:
    """What a source image carried besides pixels, and what its outputs need to say the same.

    Attributes
    ----------
    depth : int
        Bits per sample of the source: 8, or 16 (16-bit and float files).
    icc : bytes or None
        The embedded ICC profile as found (the pixels were converted from it to sRGB).
    exif : bytes or None
        The source's EXIF as a TIFF structure (no ``Exif\\0\\0`` prefix): descriptive IFD0 tags
        and the Exif/GPS sub-IFDs, orientation reset to 1 (the pixels are already upright).
    xmp : bytes or None
        The source's XMP packet, ``tiff:Orientation`` reset to 1 (the pixels are upright).
    orientation : int
        The orientation found (1-8), already applied to the pixels: the EXIF one, or without
        it the XMP packet's ``tiff:Orientation`` (``from_xmp``), as Pillow and Adobe's tools
        read it.
    from_xmp : bool
        The orientation came from the XMP packet (which libtiff does not apply to a TIFF).
    size : (int, int) or None
        (height, width) of the upright image at full size, whether or not it was shrunk as it
        was read (``imageio.decode_rgb(max_size=)``); None until decoded.
    """

    depth: int = 8
    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    orientation: int = 1
    from_xmp: bool = False
    size: tuple[int, int] | None = field(default=None, compare=False)

    def to_json(self, path: str | Path | None = None) -> dict:
        """A JSON-ready dict (bytes as base64) for a record header; see FORMAT.md.

        A record header holds at most 1 MiB: blobs that would not fit in ``_JSON_BUDGET`` are
        left out, the XMP first, then the EXIF, then the profile (which the pixels depend on),
        each with a warning naming ``path`` (the image the record is made from).
        """
        out: dict = {"depth": self.depth}
        room = _JSON_BUDGET
        for key in ("icc", "exif", "xmp"):
            value = getattr(self, key)
            if value and 4 * ((len(value) + 2) // 3) <= room:
                out[key] = base64.b64encode(value).decode("ascii")
                room -= len(out[key])
            elif value:
                what = {"icc": "ICC profile", "exif": "EXIF", "xmp": "XMP"}[key]
                warn(f"{what} of {len(value):,} bytes too large for a record header: left out",
                     path)  # fmt: skip
        return out

    @classmethod
    def from_json(cls, data: dict | None) -> ImageMeta:
        """The inverse of :meth:`to_json`; None or ``{}`` (a version-1 record) is an 8-bit sRGB
        image without metadata."""
        data = data or {}
        try:
            blobs = {}
            for k in ("icc", "exif", "xmp"):
                if data.get(k):  # (an int was said as base64's own TypeError, "@@@" read as b"")
                    if not isinstance(data[k], str):
                        raise ValueError(f"{k} is not base64 text")
                    try:
                        blobs[k] = base64.b64decode(data[k], validate=True)
                    except ValueError:
                        raise ValueError(f"{k} is not base64 text") from None
            depth = data.get("depth", 8)
            if type(depth) is not int or depth not in (8, 16):  # (12 was written as 16)
                raise ValueError(f"depth {json.dumps(depth)}, not 8 or 16")
        except (ValueError, TypeError) as e:
            raise RecolorError(f"corrupt source metadata in record header ({e})") from None
        return cls(depth=depth, **blobs)


# --- read ---------------------------------------------------------------------------------------


def read_meta(data: bytes) -> ImageMeta:
    """Parse the header of an encoded image for its profile, EXIF, XMP and orientation.

    Only the header is read (a PNG's chunks and a TIFF's first directory walked here, other
    formats by Pillow's lazy ``Image.open``); a file Pillow cannot parse, or a BMP, has no
    metadata. ``depth`` is left at 8: the decoder knows it.
    """
    if not _may_carry(data):
        return ImageMeta()
    import io

    from PIL import Image

    # Only the header is read: no decompression bomb to fear here (the decoder has its bounds),
    # and an archive scan can exceed Pillow's default pixel limit.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        exif = Image.Exif()
        if data.startswith(_PNG):  # walked here: Pillow's lazy open stops at the first IDAT
            icc, raw, xmp = _png_meta(data)
            if raw:
                with contextlib.suppress(Exception):  # broken EXIF: none, the rest kept
                    exif = load_exif(raw)
        elif data.startswith(_TIFF):
            # The first directory's tags, as the file holds them: Pillow opens no float RGB
            # TIFF (OpenCV decodes it), and its profile, EXIF and XMP were dropped unsaid.
            exif = load_exif(data)
            icc, xmp = exif.get(_ICC_TAG), exif.get(_XMP_TAG)
        else:
            with Image.open(io.BytesIO(data)) as im:
                icc, xmp = im.info.get("icc_profile"), im.info.get("xmp")
                if im.format == "JPEG" and not icc and (gap := _jpeg_icc_gap(data)):
                    raise RecolorError(f"unreadable embedded ICC profile ({gap})")
                if im.info.get("exif"):
                    with contextlib.suppress(Exception):  # broken EXIF: none, the rest kept
                        exif = load_exif(im.info["exif"])
        with_resolution(exif, density(data))
        in_xmp = None if ORIENTATION in exif else _xmp_orientation(xmp)
        from_xmp = in_xmp is not None
        orientation = int(in_xmp if from_xmp else exif.get(ORIENTATION, 1) or 1)
        orientation = orientation if 1 <= orientation <= 8 else 1
        if orientation >= 5 and {RESOLUTION[0], RESOLUTION[1]} <= set(exif):
            # a quarter turn: the stored axes' resolutions swap with the axes
            x, y = exif[RESOLUTION[0]], exif[RESOLUTION[1]]
            exif[RESOLUTION[0]], exif[RESOLUTION[1]] = y, x
        return ImageMeta(
            icc=icc or None,
            exif=clean_exif(exif),
            xmp=_clean_xmp(xmp),
            orientation=orientation,
            from_xmp=from_xmp,
        )
    except RecolorError:
        raise
    except Exception:  # OpenCV decoded the pixels; a header Pillow rejects carries nothing
        return ImageMeta()
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _png_meta(data: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """ICC profile, EXIF and XMP of a PNG, wherever their chunks are (eXIf may follow IDAT); the
    EXIF of an older ImageMagick's or exiftool's text chunk where there is no eXIf."""
    icc = exif = xmp = legacy = None
    for kind, chunk in png_chunks(data):
        if kind not in (b"iCCP", b"eXIf", b"iTXt", b"tEXt", b"zTXt"):
            continue
        if kind in (b"tEXt", b"zTXt"):
            if _raw_exif(kind, chunk):
                legacy = _raw_profile(bytes(chunk[len(_RAW_EXIF) :]), kind == b"zTXt") or legacy
            continue
        body = bytes(chunk)
        if kind == b"iCCP":  # name, NUL, compression method 0, zlib stream
            try:
                icc = _inflate(body[body.index(b"\0") + 2 :])
            except OverflowError:
                raise RecolorError(f"embedded ICC profile inflates past {_INFLATED_MAX >> 20} MiB "
                                   "(no real profile is that large)") from None  # fmt: skip
            except (ValueError, zlib.error):  # a profile that cannot be used: the file's error
                raise RecolorError("unreadable embedded ICC profile (corrupt iCCP chunk)") from None
        elif kind == b"eXIf":
            exif = body
        elif kind == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\0"):
            # keyword NUL, compressed flag, method, language NUL, translated keyword NUL, text
            head = len(b"XML:com.adobe.xmp\0")
            try:
                compressed = body[head] == 1
                text = body[body.index(b"\0", body.index(b"\0", head + 2) + 1) + 1 :]
                xmp = _inflate(text) if compressed else text
            except (IndexError, ValueError, OverflowError, zlib.error):
                continue  # a broken XMP chunk is dropped, not the EXIF and profile with it
    return icc, exif if exif is not None else legacy, xmp


_RAW_EXIF = b"Raw profile type exif\0"
"""The keyword (and its NUL) of the text chunk where ImageMagick before the eXIf chunk (PNG 1.5,
2017) and exiftool put a PNG's EXIF; Pillow reads it too."""


def _raw_profile(body: bytes, compressed: bool) -> bytes | None:
    """The bytes of an ImageMagick raw profile: the text (a tEXt's, or a zTXt's after its method
    byte, inflated) is ``"\\n" name "\\n" length "\\n"`` then the bytes in hex, split in lines;
    None where it is not that (a broken chunk drops itself)."""
    try:
        text = _inflate(body[1:]) if compressed else body
        _, _, length, hexed = text.split(b"\n", 3)
        raw = bytes.fromhex(hexed.decode("ascii"))  # (whitespace between the pairs skipped)
        return raw if len(raw) == int(length) else None
    except (ValueError, OverflowError, zlib.error):
        return None


def _raw_exif(kind: bytes, chunk: memoryview) -> bool:
    """Whether a PNG chunk is the text chunk of :data:`_RAW_EXIF`."""
    return kind in (b"tEXt", b"zTXt") and chunk[: len(_RAW_EXIF)] == _RAW_EXIF


_INFLATED_MAX = 16 << 20
"""The most a compressed profile or XMP packet may inflate to: a 1 MB iCCP chunk of zeros took
2 GB (the largest real profiles, device links, are a few MB)."""


def _inflate(data: bytes) -> bytes:
    """A whole zlib stream's bytes: OverflowError where they would pass :data:`_INFLATED_MAX`,
    ValueError where the stream is cut short, zlib.error where it is none."""
    z = zlib.decompressobj()
    out = z.decompress(data, _INFLATED_MAX)
    if z.unconsumed_tail:
        raise OverflowError
    if not z.eof:
        raise ValueError("cut short")
    return out


def _may_carry(data: bytes) -> bool:
    """Whether the file has a place holding a profile, EXIF or XMP, by walking its chunk or
    marker headers (cheap): files without one skip Pillow's import and header parse."""
    if data.startswith(_PNG):
        return any(
            kind in (b"iCCP", b"eXIf", b"iTXt") or _raw_exif(kind, chunk)
            for kind, chunk in png_chunks(data)
        ) or bool(density(data))
    if data.startswith(b"\xff\xd8"):
        for marker, _ in jpeg_segments(data):
            if marker in (0xE1, 0xE2):  # APP1 (Exif, XMP), APP2 (ICC_PROFILE)
                return True
            if marker == 0xE0 and density(data):  # JFIF's APP0, with a resolution
                return True
        return False
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return data[12:16] == b"VP8X"  # only the extended format carries metadata
    return data.startswith(_TIFF)


def _jpeg_icc_gap(data: bytes) -> str | None:
    """What is wrong with a JPEG's ICC profile chunks (ICC.1:2010 B.4: APP2 ``ICC_PROFILE\\0``
    segments numbered 1 to their count), which Pillow drops without a word when their numbers
    do not add up (the colours would then be read as sRGB); None without any such chunk."""
    chunks = [bytes(p[12:14]) for m, p in jpeg_segments(data)
              if m == 0xE2 and p[:12] == b"ICC_PROFILE\0" and len(p) >= 14]  # fmt: skip
    if not chunks:
        return None
    count, have = chunks[0][1], {c[0] for c in chunks}
    gone = [n for n in range(1, count + 1) if n not in have]
    if gone:
        return f"chunk {gone[0]} of {count} missing"
    return f"{len(chunks)} chunk{'s' * (len(chunks) != 1)}, numbered for {count}"


def density(data: bytes) -> tuple[float, float] | None:
    """Pixels per inch (x, y) that a JPEG's JFIF APP0 or a PNG's pHYs chunk states; None for
    other files, and where the unit is none (an aspect ratio only) or a density is 0.

    JFIF 1.02: units 1 dots per inch, 2 dots per cm, X and Y density 16-bit; PNG pHYs: pixels
    per unit 32-bit, unit 1 the metre (1 inch = 0.0254 m).
    """
    if data.startswith(_PNG):
        for kind, chunk in png_chunks(data):
            if kind == b"pHYs" and len(chunk) >= 9:
                x, y, unit = struct.unpack(">IIB", chunk[:9])
                if unit != 1 or not (x and y):
                    return None
                # (to 1/100: 300 dpi is stored as 11,811 per metre, 299.9994 dpi)
                return round(x * 0.0254, 2), round(y * 0.0254, 2)
            if kind == b"IDAT":  # pHYs comes before the pixels
                return None
    elif data[:4] == b"\xff\xd8\xff\xe0" and data[6:11] == b"JFIF\0" and len(data) >= 18:
        unit, x, y = struct.unpack(">BHH", data[13:18])
        per_inch = {1: 1.0, 2: 2.54}.get(unit)
        return (x * per_inch, y * per_inch) if per_inch and x and y else None
    return None


def _xmp_orientation(xmp) -> int | None:
    """The ``tiff:Orientation`` of an XMP packet (1-8), None without one."""
    if not xmp:
        return None
    xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    for pattern in _XMP_ORIENTATION:
        found = re.search(pattern, xmp)
        if found and 1 <= int(found.group(2)) <= 8:
            return int(found.group(2))
    return None


def _clean_xmp(xmp) -> bytes | None:
    """The XMP packet to carry, its ``tiff:Orientation`` reset to 1: the pixels were turned by
    the orientation (the EXIF one, or without it the XMP's, which then was applied too)."""
    if not xmp:
        return None
    xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    for pattern in _XMP_ORIENTATION:
        xmp = re.sub(pattern, rb"\g<1>1\g<3>", xmp)
    return xmp


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for an EXIF orientation (1-8), as viewers show them.

    2 mirrors left-right, 3 turns 180 degrees, 4 mirrors top-bottom, 5 transposes, 6 turns 90
    degrees clockwise, 7 transposes across the other diagonal, 8 turns 90 degrees
    counter-clockwise; 1 (or anything else) leaves the image as is.
    """
    t = (1, 0, 2) if img.ndim == 3 else (1, 0)
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(t),
        6: lambda a: a[::-1].transpose(t),
        7: lambda a: a[::-1, ::-1].transpose(t),
        8: lambda a: a[:, ::-1].transpose(t),
    }
    op = ops.get(orientation)
    return img if op is None else np.ascontiguousarray(op(img))


def finish_decode(
    rgb: np.ndarray,
    data: bytes,
    *,
    depth: int,
    meta: ImageMeta | None = None,
    size: tuple[int, int] | None = None,
    found: ImageMeta | None = None,
) -> np.ndarray:
    """The last step of decoding: orientation and colour management; fills ``meta`` if given.

    Parameters
    ----------
    rgb : (H, W, 3) float32 in [0, 1]
        The decoded pixels, as stored (a fourth channel, alpha, is turned with them and left
        as it is).
    data : bytes
        The encoded file (its header is parsed, see :func:`read_meta`).
    depth : int
        Bits per sample the decoder found (8, or 16 for 16-bit and float).
    size : (int, int), optional
        (height, width) as decoded, before any shrinking: ``meta.size`` is it turned upright
        (default: ``rgb``'s).
    found : ImageMeta, optional
        :func:`read_meta` of ``data``, where the caller has it already.

    Returns
    -------
    (H', W', 3) float32 sRGB in [0, 1], upright (and the alpha channel, if given).

    Raises
    ------
    RecolorError
        An embedded profile littleCMS cannot use.
    """
    found = read_meta(data) if found is None else found
    found.depth = 16 if depth > 8 else 8
    size = tuple(rgb.shape[:2]) if size is None else tuple(size)
    found.size = size[::-1] if _applied(data, found) in (5, 6, 7, 8) else size  # (turned)
    rgb = in_srgb(upright(rgb, data, found), found)
    if meta is not None:
        meta.__dict__.update(found.__dict__)
    return rgb


def upright(img: np.ndarray, data: bytes, found: ImageMeta) -> np.ndarray:
    """``img`` (any samples and channels, as ``imageio.decode_stored`` gives them) turned by
    ``found.orientation`` (:func:`read_meta` of ``data``)."""
    return orient(img, _applied(data, found))


def _applied(data: bytes, found: ImageMeta) -> int:
    """The orientation :func:`upright` applies: ``found``'s, but 1 for a TIFF's own tag."""
    # OpenCV's TIFF decoder (libtiff) applies the TIFF Orientation tag whatever the flags say,
    # and no decoder reads XMP's; the JPEG decoder is told to leave EXIF's to us
    return 1 if data.startswith(_TIFF) and not found.from_xmp else found.orientation


def in_srgb(rgb: np.ndarray, found: ImageMeta) -> np.ndarray:
    """Float RGB in [0, 1] (..., H, W, 3 or 4: a fourth channel is left as it is) in the profile
    ``found.icc`` at ``found.depth`` bits, converted to sRGB; without a profile or with sRGB's,
    as it is (integer samples too: ``decode_rgb(stored=True)``)."""
    if not found.icc:
        return rgb
    from .colorprofile import to_srgb

    srgb = to_srgb(found.icc)
    if srgb.table is None:  # the identity
        return rgb
    colour = srgb.apply(rgb[..., :3], found.depth)
    return colour if rgb.shape[-1] == 3 else np.concatenate([colour, rgb[..., 3:]], -1)


# --- write --------------------------------------------------------------------------------------


def output_depth(depth: int | None, source: ImageMeta | None, ext: str) -> int:
    """Bits per sample of an output: ``depth`` if given, else the source's; 8 where the format
    holds no more (JPEG, WebP, BMP)."""
    from .imagehead import DEEP_EXTS

    depth = depth or (source.depth if source is not None else 8)
    return 16 if depth == 16 and ext.lower() in DEEP_EXTS else 8


def encode_output(
    rgb: np.ndarray,
    ext: str,
    source: ImageMeta | None = None,
    *,
    depth: int | None = None,
    keep_profile: bool = False,
    strip: bool = False,
    quality: int | None = None,
    name: str | Path | None = None,
) -> bytes:
    """Encode an sRGB result and say what it is: profile, and the source's EXIF and XMP.

    Parameters
    ----------
    rgb : (H, W, 3) float32 in [0, 1], uint8 or uint16
        sRGB pixels.
    ext : str
        Output format by extension (``.png``, ``.jpg``, ``.tif``, ``.webp``, ``.bmp``).
    source : ImageMeta, optional
        What the input carried.
    depth : int, optional
        8 or 16; default: the source's depth (:func:`output_depth`).
    keep_profile : bool
        Convert to the source's ICC profile (colours outside its gamut clamped) and embed it;
        without it, or for a source without an RGB profile, the output is sRGB and embeds
        sRGB's profile.
    strip : bool
        Carry no EXIF or XMP (the colour profile is still embedded).
    quality : int, optional
        JPEG/WebP quality (1-100).
    name : str or Path, optional
        The output, named in the warning when a JPEG cannot carry all of the EXIF or XMP
        (:func:`recolor_tools.metachunks.fit_jpeg`).

    Returns
    -------
    bytes
        The encoded file. BMP carries no metadata.
    """
    from .color import to_float
    from .colorprofile import from_srgb, srgb_profile
    from .imageio import encode_image
    from .metachunks import fit_jpeg, insert_metadata

    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    bits = output_depth(depth, source, ext)
    icc = srgb_profile()
    xf = None
    if keep_profile and source is not None and source.icc and ext != ".bmp":
        xf = from_srgb(source.icc)  # (BMP has no place for a profile: it stays sRGB)
    if xf is not None and xf.rgb:  # gray and CMYK profiles cannot describe an RGB output
        rgb = xf.apply(to_float(rgb), 16 if rgb.dtype == np.uint16 or bits == 16 else 8)
        icc = source.icc
    enc = encode_image(rgb, ext, bits, quality)
    exif = xmp = None
    if source is not None and not strip:
        exif, xmp = source.exif, source.xmp
    h, w = rgb.shape[:2]
    dpi = None
    if not strip:
        exif, dpi = software_exif(exif, (w, h), srgb=xf is None or not xf.rgb)
    if ext in (".jpg", ".jpeg"):  # one 64 KB segment each
        exif, xmp, dropped = fit_jpeg(exif, xmp)
        if dropped:
            warn(f"too large for a JPEG's 64 KB segment, left out: {', '.join(dropped)} (png, "
                 "tif and webp keep them)", name)  # fmt: skip
    return insert_metadata(enc, ext, (h, w), icc=icc, exif=exif, xmp=xmp, dpi=dpi)


def write_figure(path: str | Path, rgb: np.ndarray) -> None:
    """Write an sRGB figure recolor drew (``compare --montage``, ``rebalance-stats --plot``) to
    ``path`` atomically, format from its extension (png without one), embedding sRGB's profile
    and naming recolor as every image output does (:func:`encode_output` with no source)."""
    from .fileio import atomic_write

    atomic_write(path, encode_output(rgb, Path(path).suffix or ".png"))
