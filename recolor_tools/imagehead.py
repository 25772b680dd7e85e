"""What an image file is, read from its first bytes, before any decoder sees it.

recolor trusts the magic bytes, never the extension, and reads only JPEG, PNG, TIFF, WebP and
BMP. Everything else (GIF, PxM, SVG, JPEG 2000, OpenEXR, HDR, HEIF/AVIF, text) is refused here,
so that OpenCV's other decoders are never reached. The width and height come from the format's
header (PNG IHDR, JPEG SOFn, TIFF first IFD, WebP VP8/VP8L/VP8X, BMP info header) and an image
over the pixel limit is refused before anything is allocated: a decompression bomb, whose header
claims far more pixels than its few bytes could hold, is refused by the same limit, and a PNG
whose header claims more than its length could hold at deflate's best ratio, by that rule.

The limit is :data:`DEFAULT_MAX_PIXELS` = 178,956,970 pixels (Pillow's error threshold, twice its
89.5 Mpx warning), changed with the environment variable ``RECOLOR_MAX_PIXELS``. ``to-lab`` of a
24 Mpx image peaks at 458 MiB as an 8-bit JPEG (about 20 bytes a pixel) and at 655 MiB as a
16-bit PNG with an ICC profile (about 29; ``benchmarks/bench_memory.py``), so the default admits
images that need some 5 GB each.

No OpenCV and no numpy here: this module is plain byte parsing.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .errors import RecolorError

DEFAULT_MAX_PIXELS = 178_956_970
"""Default pixel limit (Pillow's ``MAX_IMAGE_PIXELS`` error threshold, 2 x 89,478,485)."""

READ = ("JPEG", "PNG", "TIFF", "WebP", "BMP")
"""The formats recolor reads."""
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
"""File extensions recolor reads and writes as images (case-insensitive)."""

OTHER_IMAGE_EXTS = (".gif", ".jp2", ".j2k", ".jpx", ".jxl", ".heic", ".heif", ".avif", ".exr",
                    ".hdr", ".pnm", ".pbm", ".pgm", ".ppm", ".pfm", ".ico", ".psd", ".tga",
                    ".svg", ".dng", ".ras", ".sr")  # fmt: skip
"""Extensions of image formats recolor does not write: ``predict -o x.gif`` asks for one (a
usage error), while ``-o results.v2`` names a folder."""

DEEP_EXTS = (".png", ".tif", ".tiff")
"""The formats written with 16 bits per sample when asked; the others hold 8."""

MAX_SIDE = {".jpg": 65500, ".jpeg": 65500, ".webp": 16383, ".png": 1_000_000}
"""The longest side each format's encoder writes (libjpeg-turbo; libwebp; libpng's default
limit); BMP and TIFF hold more than recolor reads."""


def side_limit(ext: str, side: int) -> str | None:
    """Why a format (``ext``, with its dot) cannot hold an image ``side`` pixels long, or None."""
    if side <= MAX_SIDE.get(ext, side):
        return None
    return f"{ext[1:]} holds at most {MAX_SIDE[ext]} a side (tiff holds more)"


SNIFF_BYTES = 4096
"""What :func:`sniff_format` and :func:`other_format` look at, at most: the first bytes of a
stream decide, before the rest is read (``yes | recolor to-lab -`` grew to 24 GB)."""

# Formats recognised only to be refused by name: (magic prefix, name).
_REFUSED = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"RCLR", "a recolor record stream"),
)

_PNG_MAX_RATIO = 8 * 1032
"""Most pixels a byte of PNG can hold: deflate expands at most 1032-fold, and a 1-bit image packs
8 pixels in a byte; more than this is a header that lies (a decompression bomb)."""


@dataclass(frozen=True)
class ImageHead:
    """What the header says: format (one of :data:`READ`), width and height in pixels, and the
    number of pages or frames (a TIFF's pages, an animated PNG's or WebP's frames): 1, or 2
    meaning "more than one"; for a TIFF, its first ExtraSamples value (0 unspecified, 1 alpha
    premultiplied into the colours, 2 straight alpha), None without the tag; for a gray PNG
    with a tRNS chunk, the one gray value that is transparent, scaled to 8 bits below that depth
    (as the decoder scales the samples), None otherwise; for a TIFF, its
    PhotometricInterpretation (0 WhiteIsZero, 1 BlackIsZero, 2 RGB, 5 CMYK, ...; None without
    the tag), its SamplesPerPixel, first BitsPerSample, Compression and SampleFormat (3:
    float); for a JPEG, whether it is Huffman-coded (SOF0-7, not arithmetic), its
    sample precision (``bits``: 8, or 12 in an extended JPEG) and whether its scans code every
    coefficient to its last bit (``whole``: False for a progressive file cut between or inside
    its scans and given back its EOI, or, rarely, a legal scan script that stops early)."""

    format: str
    width: int
    height: int
    pages: int = 1
    extra_samples: int | None = None
    transparent_gray: int | None = None
    photometric: int | None = None
    bits: int = 8
    compression: int = 1
    sample_format: int = 1
    samples: int = 1
    huffman: bool = False
    whole: bool = True

    @property
    def white_is_zero(self) -> bool:
        """A TIFF whose largest sample is black (PhotometricInterpretation 0)."""
        return self.photometric == 0


def max_pixels() -> int:
    """The pixel limit: ``RECOLOR_MAX_PIXELS`` if set (a positive integer), else the default."""
    raw = os.environ.get("RECOLOR_MAX_PIXELS", "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise RecolorError(f"RECOLOR_MAX_PIXELS must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise RecolorError(f"RECOLOR_MAX_PIXELS must be a positive integer, not {raw!r}")
    return value


def sniff_format(data: bytes) -> str:
    """The format of an encoded image from its magic bytes: one of :data:`READ`.

    Raises
    ------
    RecolorError
        Empty data, or a format recolor does not read (named when known).
    """
    if not data:
        raise RecolorError("empty file")
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    raise RecolorError(f"not an image recolor reads ({other_format(data)})")


def is_image(data: bytes) -> bool:
    """True when ``data`` starts like one of the formats recolor reads."""
    try:
        sniff_format(data)
    except RecolorError:
        return False
    return True


def other_format(data: bytes) -> str:
    """A name for data that is none of :data:`READ`: "GIF", "PxM", "SVG/XML", "text", "zero
    bytes only", ..."""
    for magic, name in _REFUSED:
        if data.startswith(magic):
            return name
    if data[:1] == b"P" and data[1:2] in b"1234567fF" and data[2:3].isspace():
        return "PFM" if data[1:2] in b"Ff" else "PxM"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF or video"
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")):
        return "SVG/XML"
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    sample = data[:4096]
    if sample and not sample.strip(b"\0"):  # allocated, never written: a crash, a full disk
        return "zero bytes only"
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown format"
    controls = {c for c in text if c < " " and c not in "\t\n\r\f\v"}
    if controls == {"\0"}:  # `find -print0` output, a .txt list of paths none reads so
        return "text with NUL bytes"
    return "unknown format" if controls else "text"


def as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` (any bytes-like object: a memoryview, a uint8 array) as bytes; TypeError
    otherwise. A memoryview was refused as a truncated PNG, an array ended in UnboundLocalError."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        raise TypeError("encoded image data must be bytes, not str")
    return memoryview(data).cast("B").tobytes()


def read_head(data: bytes, name: str = "<data>") -> ImageHead:
    """Sniff the format and read width, height and pages from the header, checking the pixel
    limit and, for JPEG and PNG, that the file is complete.

    Parameters
    ----------
    data : bytes
        The whole encoded file.
    name : str
        Used in error messages.

    Raises
    ------
    RecolorError
        Not an image recolor reads, a corrupt or truncated header, a truncated JPEG (no EOI
        marker) or PNG (no IEND chunk), or more pixels than :func:`max_pixels`.
    """
    data = as_bytes(data)
    try:
        fmt = sniff_format(data)
        head = _PARSERS[fmt](data)
    except RecolorError as e:
        raise RecolorError(e.reason, name) from None
    except (struct.error, IndexError, ValueError):
        raise RecolorError(f"corrupt {fmt} header", name) from None
    if head.width < 1 or head.height < 1:
        raise RecolorError(f"{fmt} header gives no size ({head.width}x{head.height})", name)
    if fmt == "PNG" and head.width * head.height > _PNG_MAX_RATIO * len(data):
        raise RecolorError(
            f"decompression bomb: the header claims {head.width}x{head.height} pixels, more "
            f"than {len(data):,} bytes of PNG can hold",
            name,
        )
    limit = max_pixels()
    if head.width * head.height > limit:
        raise RecolorError(
            f"image too large: {head.width}x{head.height} = {head.width * head.height:,} "
            f"pixels, over the limit of {limit:,} (set RECOLOR_MAX_PIXELS to change it)",
            name,
        )
    # libjpeg decodes a truncated file to a grey-filled image with only a warning (a file cut
    # inside its scan that still ends in EOI: imageio.decode_stored hears it). The end is
    # found by walking the file, not in its last bytes: a whole image may have data after it
    # (a phone's motion photo: the video after the JPEG), which was called truncated.
    ends = _jpeg_ends(data) if fmt == "JPEG" else True
    if ends is None and b"\xff\xd9" not in data[-64:]:  # (or: a walk that a corrupt
        # segment length threw off, the marker still where files end it)
        raise RecolorError("truncated JPEG (no end-of-image marker)", name)
    if ends is False:  # (a warning, not a refusal: T.81 lets a script stop early)
        head = replace(head, whole=False)
    if fmt == "PNG" and not _png_ends(data):
        raise RecolorError("truncated PNG (no IEND chunk)", name)
    if head.huffman and head.width * head.height > _JPEG_MAX_RATIO * len(data):  # (whole)
        raise RecolorError(
            f"decompression bomb: the header claims {head.width}x{head.height} pixels, more "
            f"than {len(data):,} bytes of JPEG can hold",
            name,
        )
    return head


_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""The marker that ends a scan's entropy-coded data: 0xFF not followed by a stuffed 0x00, a
restart marker RSTn or another fill byte (ITU T.81, B.1.1.2 and F.1.2.3)."""


def jpeg_segments(data: bytes) -> Iterator[tuple[int, memoryview]]:
    """(marker, payload) of each segment of a JPEG after SOI, walked by their lengths (T.81
    B.1.1), up to the first scan (SOS); markers without a length (TEM, RSTn) with an empty
    payload. Fill bytes and stray ones between segments are skipped, as libjpeg and Pillow
    skip them. It stops at a length below 2 (a corrupt segment that cannot be walked)."""
    view = memoryview(data)
    for marker, _, start, end in _jpeg_walk(data, scans=False):
        if marker != 0xDA:
            yield marker, view[start:end]


def _jpeg_walk(data: bytes, scans: bool) -> Iterator[tuple[int, int, int, int]]:
    """The segments of :func:`jpeg_segments` as offsets: (marker, where its 0xFF is, payload
    start, payload end), the first SOS included; with ``scans`` it steps over each scan's data
    to the marker after it and goes on to EOI (included), else it stops after that SOS."""
    i = 2
    while i + 2 <= len(data):
        if data[i] != 0xFF or data[i + 1] == 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0x01, 0xD9) or 0xD0 <= marker <= 0xD7:
            yield marker, i, i + 2, i + 2
            if marker == 0xD9:
                return
            i += 2
            continue
        if i + 4 > len(data):
            return
        size = int.from_bytes(data[i + 2 : i + 4], "big")
        if size < 2:
            return
        yield marker, i, i + 4, i + 2 + size
        if marker == 0xDA and not scans:
            return
        i += 2 + size
        if marker == 0xDA:  # a scan: its data ends at the next marker
            found = _JPEG_SCAN_END.search(data, i)
            if found is None:
                return
            i = found.start()


def jpeg_without_stray_bytes(data: bytes) -> bytes:
    """The JPEG ``data`` without the stray bytes between its segments before the first scan,
    which libjpeg skips saying "Corrupt JPEG data: N extraneous bytes before marker" (many
    good files have them): it says only a decode's first warning, and a cut scan's went unsaid.
    ``data`` itself where the walk does not reach a scan."""
    kept = [data[:2]]
    for marker, at, _, end in _jpeg_walk(data, scans=False):
        if marker == 0xDA:
            return b"".join(kept) + data[at:]
        kept.append(data[at:end])
    return data


_PROGRESSIVE = (0xC2, 0xCA)  # SOF2, SOF10: Huffman, arithmetic (hierarchical: not decoded)
_ALL_64 = (1 << 64) - 1


def _jpeg_ends(data: bytes) -> bool | None:
    """Whether the JPEG reaches its end-of-image marker (EOI, 0xFFD9) with every component's
    64 coefficients coded to their last bit (successive approximation Al = 0) by its scans (a
    sequential scan codes all of its components'); None where the walk does not reach EOI. A
    progressive file cut between or inside its scans and ended with EOI (the usual "repair" of
    a partial download) is False: libjpeg decodes it with the coarser colours of the scans it
    has, and says nothing, or only on fd 2. So is a legal file whose scan script stops early
    (T.81 does not ask for every bit; the scripts of libjpeg, Pillow and mozjpeg send them)."""
    coded: dict[int, int] = {}  # component id: bit k set where coefficient k is whole
    progressive = False
    for marker, _, start, end in _jpeg_walk(data, scans=True):
        p = data[start:end] if marker in _SOF or marker == 0xDA else b""
        if len(p) > 5 and marker in _SOF:  # P, Y, X, Nf, then Nf x (Ci, HV, Tq)
            progressive = marker in _PROGRESSIVE
            coded = {c: 0 for c in p[6::3][: p[5]]}
        elif p and len(p) > 3 + 2 * p[0]:  # SOS: Ns, then Ns x (Cs, TdTa), Ss, Se, AhAl
            n = 1 + 2 * p[0]
            ss, se, al = (p[n], p[n + 1], p[n + 2] & 15) if progressive else (0, 63, 0)
            for c in p[1:n:2]:
                if c in coded and al == 0:
                    coded[c] |= ((1 << (se + 1)) - 1) ^ ((1 << ss) - 1)
        elif marker == 0xD9:
            return all(bits == _ALL_64 for bits in coded.values())
    return None


def png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(type, data) of each chunk of a PNG file, walked by their lengths up to IEND; CRCs
    unchecked (the decoder checks them)."""
    view, pos = memoryview(data), 8  # no copy of the pixel chunks
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", view[pos : pos + 8])
        yield kind, view[pos + 8 : pos + 8 + n]
        if kind == b"IEND":
            return
        pos += 12 + n


def _png_ends(data: bytes) -> bool:
    """Whether the PNG ``data`` reaches its IEND chunk."""
    return any(kind == b"IEND" for kind, _ in png_chunks(data))


_GRAY_DEPTHS = (1, 2, 4, 8, 16)


def _png(data: bytes) -> ImageHead:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR")
    w, h = struct.unpack(">II", data[16:24])
    depth, colour_type = data[24], data[25]
    frames, gray = 1, None
    # Both chunks come before the first IDAT; where the chunks end early the decoder reports it.
    for kind, chunk in png_chunks(data):
        if kind == b"acTL" and len(chunk) >= 4:  # an animated PNG: its frame count
            frames = struct.unpack(">I", chunk[:4])[0]
        elif kind == b"tRNS" and colour_type == 0 and len(chunk) >= 2 and depth in _GRAY_DEPTHS:
            gray = struct.unpack(">H", chunk[:2])[0]
            if depth < 8:  # libpng scales 1-, 2- and 4-bit gray to 8 bits: 1 -> 255 at 1 bit
                gray = gray * 255 // ((1 << depth) - 1)
        elif kind == b"IDAT":
            break
    return ImageHead("PNG", w, h, 2 if frames > 1 else 1, transparent_gray=gray)


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but not.
_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}


_JPEG_MAX_RATIO = 512
"""Most pixels a byte of Huffman-coded JPEG can hold: each 8 x 8 block of each component codes
its DC difference in a Huffman code of one bit or more (T.81 F.1.2.1, G.1.2.1), 64 pixels a
bit at best (gray). More is a header that lies: a 1 KB file claiming 13000 x 13000 was decoded
grey-filled, 4 GB of memory. Arithmetic coding (SOF9 and up) has no such floor."""


def _jpeg(data: bytes) -> ImageHead:
    for marker, payload in jpeg_segments(data):
        if marker in _SOF:
            h, w = struct.unpack(">HH", payload[1:5])
            if h == 0:
                raise RecolorError("JPEG height given after the scan (DNL) is not supported")
            return ImageHead("JPEG", w, h, bits=payload[0], huffman=marker < 0xC8)
    raise ValueError("no frame header")


def _tiff(data: bytes) -> ImageHead:
    e = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", data[4:8])
    (n,) = struct.unpack(e + "H", data[ifd : ifd + 2])
    size, extra, bits, planar, samples, photometric = {}, None, 8, 1, 1, None
    compression = sample_format = 1
    for k in range(n):
        tag, typ, count, value = struct.unpack(
            e + "HHI4s", data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        )
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            short = typ == 3
            size[tag] = struct.unpack(e + ("H" if short else "I"), value[: 2 if short else 4])[0]
        elif tag == 338 and typ == 3 and 1 <= count <= 2:  # ExtraSamples, held in the entry
            (extra,) = struct.unpack(e + "H", value[:2])
        elif tag in (258, 339) and typ == 3:  # BitsPerSample, SampleFormat: the first sample's
            at = 0 if count <= 2 else struct.unpack(e + "I", value)[0]
            held = value[:2] if count <= 2 else data[at : at + 2]
            if tag == 258:
                (bits,) = struct.unpack(e + "H", held)
            elif len(held) == 2:  # (only named in messages: one past the end is left at 1)
                (sample_format,) = struct.unpack(e + "H", held)
        elif tag == 284 and typ == 3:  # PlanarConfiguration: 2, each channel a plane
            (planar,) = struct.unpack(e + "H", value[:2])
        elif tag == 277 and typ == 3:  # SamplesPerPixel
            (samples,) = struct.unpack(e + "H", value[:2])
        elif tag == 262 and typ == 3:  # PhotometricInterpretation
            (photometric,) = struct.unpack(e + "H", value[:2])
        elif tag == 259 and typ == 3:  # Compression
            (compression,) = struct.unpack(e + "H", value[:2])
    # OpenCV reads stale memory there: garbage, another each run (one plane of gray is read
    # right: it is stored as contiguous gray is)
    if planar == 2 and bits > 8 and samples > 1:
        raise RecolorError(
            f"planar {bits}-bit TIFF (each channel stored apart), which OpenCV decodes "
            "wrongly: store it contiguous (tiffcp -p contig)"
        )
    end = ifd + 2 + 12 * n
    (next_ifd,) = struct.unpack(e + "I", data[end : end + 4]) if end + 4 <= len(data) else (0,)
    if 256 not in size or 257 not in size:
        raise ValueError("no size tags")
    pages = 2 if next_ifd else 1
    return ImageHead("TIFF", size[256], size[257], pages, extra_samples=extra,
                     photometric=photometric, bits=bits, compression=compression,
                     sample_format=sample_format, samples=samples)  # fmt: skip


def _webp(data: bytes) -> ImageHead:
    chunk, frames = data[12:16], 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        frames = 2 if data[20] & 0x02 else 1  # the animation flag
    elif chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = int.from_bytes(data[21:25], "little")
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        w, h = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
    else:
        raise ValueError("unknown WebP chunk")
    return ImageHead("WebP", w, h, frames)


def _bmp(data: bytes) -> ImageHead:
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", data[18:22])
    elif dib >= 40:
        w, h = struct.unpack("<ii", data[18:26])
    else:
        raise ValueError("unknown BMP header")
    return ImageHead("BMP", w, abs(h))  # negative height: rows stored top-down


_PARSERS = {"PNG": _png, "JPEG": _jpeg, "TIFF": _tiff, "WebP": _webp, "BMP": _bmp}
