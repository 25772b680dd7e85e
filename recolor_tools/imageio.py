"""Decoding and encoding images: the one place where recolor turns image files into pixels.

Every tool reads with :func:`read_rgb` (or :func:`decode_rgb` on bytes) and writes with
:func:`write_image` (or :func:`encode_image` to bytes); the bytes themselves go through
:mod:`recolor_tools.fileio` (stdin, one-line OS errors, atomic replacement), the formats and
their extensions are :mod:`recolor_tools.imagehead`'s, and command-line inputs are listed by
:mod:`recolor_tools.inputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .color import check_image, to_float, to_uint8, to_uint16
from .errors import (
    OutOfMemory,
    RecolorError,
    check_count,
    check_flag,
    is_whole,
    out_of_memory,
    warn,
)
from .fileio import atomic_write, read_bytes
from .imagehead import (
    DEEP_EXTS,
    IMAGE_EXTS,
    ImageHead,
    as_bytes,
    jpeg_without_stray_bytes,
    read_head,
    side_limit,
    sniff_format,
)
from .process import FD2, c_stderr_of, usable_cores

if TYPE_CHECKING:
    from .imagemeta import ImageMeta

# OpenCV counts a CPU quota only where it is the root of what the process sees (a container's);
# one set on a cgroup below that (systemd's CPUQuota, a job's slice) it does not
if usable_cores() < cv2.getNumThreads():
    cv2.setNumThreads(usable_cores())


# The formats with alpha are decoded unchanged; JPEG as colour or gray, its EXIF orientation
# not applied: recolor applies the one it parses itself (imagemeta.upright), on every format.
# OpenCV's own EXIF parser missed orientations that Pillow's reads (a LONG Orientation, an IFD
# entry pointing past the block), and the image came out sideways, its metadata saying upright.
_DECODE_KEEP_ALPHA = cv2.IMREAD_UNCHANGED
_DECODE_JPEG = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION


def check_image_start(start: bytes, path: str | Path) -> None:
    """Raise the error the whole data would get if ``start``, its first bytes, is no image's
    start (:func:`~recolor_tools.imagehead.sniff_format` looks at :data:`SNIFF_BYTES` at most)."""
    try:
        sniff_format(start)
    except RecolorError as e:
        raise RecolorError(e.reason, path) from None


_PILLOW_TIFF = {"RGB": slice(None, None, -1), "RGBA": [2, 1, 0, 3], "L": None, "I;16": None}
"""Pillow's modes that :func:`_tiff_by_pillow` takes, and how to reorder them as OpenCV would."""


def _tiff_by_pillow(data: bytes) -> np.ndarray | None:
    """A TIFF that OpenCV cannot decode, by Pillow (libtiff), in OpenCV's channel order; None
    if Pillow cannot either, or gives a mode whose samples OpenCV would give otherwise.
    OpenCV 4.12 refuses uncompressed tiled 8-bit RGB ("Invalid tile byte count"), which
    scanners write. Pillow turns it by its orientation tag, as OpenCV's TIFF decoder does."""
    import io

    from PIL import Image

    # the pixel limit is recolor's, checked on the header already (Pillow's would warn)
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data)) as im:
            # (Pillow opens 16-bit RGB as 8-bit "RGB": the depth would be lost unsaid)
            deep = max(im.tag_v2.get(258) or (8,)) > 8
            if im.mode not in _PILLOW_TIFF or deep and im.mode != "I;16":
                return None
            img = np.asarray(im)
            order = _PILLOW_TIFF[im.mode]
    except Exception:  # Pillow's errors are many and untyped: OpenCV's verdict stands
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return np.ascontiguousarray(img if order is None else img[:, :, order])


_TIFF_CODECS = {1: "none", 2: "CCITT", 3: "CCITT", 4: "CCITT", 5: "LZW", 6: "old JPEG",
                7: "JPEG", 8: "Deflate", 32773: "PackBits", 32946: "Deflate", 34925: "LZMA",
                50000: "Zstandard", 50001: "WebP"}  # fmt: skip
"""The TIFF compressions OpenCV's libtiff decodes (a file of another that does not decode is
named for its compression, not called corrupt)."""
_OTHER_TIFF_CODECS = {34712: "JPEG 2000", 34887: "LERC", 50002: "JPEG XL", 34892: "lossy JPEG"}
"""Names of compressions it lacks, for the message."""


def _unread(head: ImageHead) -> str:
    """Why a file that neither decoder read was not read: a valid layout they lack, named, or
    corrupt data."""
    if head.format == "TIFF" and head.sample_format == 3 and head.bits not in (32, 64):
        return f"{head.bits}-bit float TIFF (recolor reads 32- and 64-bit float)"
    if head.format == "TIFF" and head.compression not in _TIFF_CODECS:
        what = _OTHER_TIFF_CODECS.get(head.compression, "")
        return (f"TIFF compression {head.compression}{f' ({what})' * bool(what)}, which "
                "recolor's TIFF reader lacks")  # fmt: skip
    if head.format == "TIFF" and head.samples > 4:  # (RGB with extras: OpenCV reads it)
        return (f"TIFF of {head.samples} samples a pixel, a layout recolor's TIFF readers "
                "lack")  # fmt: skip
    if head.format == "JPEG" and head.bits != 8:
        return f"{head.bits}-bit JPEG (recolor reads 8-bit JPEG)"
    return f"not a readable image (corrupt {head.format} data)"


_CUT_SCAN = "Corrupt JPEG data: premature end of data segment"
"""What libjpeg says, on file descriptor 2 alone, of a scan that ends before its image does (a
file cut short that still ends in its EOI marker), the rest of which it fills with grey."""


def _grey_end(img: np.ndarray | None) -> bool:
    """Whether a decoded JPEG's last pixel is the grey (128 in every channel: Y, Cb, Cr 128)
    that libjpeg fills a baseline scan cut short with, so that only such files, rarely others,
    are decoded again listening to fd 2 (:func:`~recolor_tools.process.c_stderr_of`, which
    runs that decode alone). A progressive file cut in a later scan keeps its earlier scans'
    coarser colours, is not grey: :func:`~recolor_tools.imagehead.read_head` finds its scans
    short of the last refinement (``ImageHead.whole``, a warning: a legal script may stop so),
    unless the cut is in the last scan (its refinement then missing in the part cut, unheard)."""
    return img is not None and img.size > 0 and bool(np.all(img[-1, -1] == 128))


def decode_stored(data: bytes, name: str = "<data>") -> tuple[ImageHead, np.ndarray]:
    """The header and the samples as the file stores them (OpenCV's BGR/BGRA/gray order, uint8
    or uint16, or float32 for a float TIFF; alpha kept, straight: a TIFF's premultiplied colours
    are divided by it, a gray PNG's tRNS made an alpha channel; a TIFF turned by its
    Orientation tag, which libtiff applies whatever the flags, the other formats as stored),
    after the checks of :func:`recolor_tools.imagehead.read_head` (format, pixel limit,
    truncation).

    Raises
    ------
    RecolorError
        A format recolor does not read, an image over the limit, corrupt data, integer samples
        other than 8 and 16 bits, or NaN or infinite float samples.
    """
    head = read_head(data, name)  # format from the magic bytes, size limit, truncation
    if head.pages > 1 and head.format == "TIFF":
        warn("multi-page TIFF: reading the first page only", name)
    elif head.pages > 1:
        warn(f"animated {head.format}: reading the first frame only", name)
    buf = np.frombuffer(data, np.uint8)
    try:
        if head.format == "JPEG":
            with FD2.shared():  # (a cut file's warning must not reach a listener's capture)
                img = cv2.imdecode(buf, _DECODE_JPEG)
            if _grey_end(img):  # perhaps a scan cut short (EOI still there): decoded again,
                # listening, without stray bytes whose warning would be the only one said
                clean = np.frombuffer(jpeg_without_stray_bytes(data), np.uint8)
                img, said = c_stderr_of(lambda: cv2.imdecode(clean, _DECODE_JPEG))
                if _CUT_SCAN in said:
                    raise RecolorError("truncated JPEG (premature end of data segment)", name)
            if not head.whole:  # (said once decoded: a cut that libjpeg heard is refused)
                warn("progressive JPEG whose scans stop before its last refinement (cut "
                     "short?): read as it is", name)  # fmt: skip
        else:
            img = cv2.imdecode(buf, _DECODE_KEEP_ALPHA)
    except cv2.error as e:  # OpenCV's assertion text means nothing to the user
        if out_of_memory(e):  # ("Insufficient memory": a valid image, not a corrupt one)
            raise OutOfMemory(name) from None
        img = None
    if (img is None or img.size == 0) and head.format == "TIFF":
        img = _tiff_by_pillow(data)
    if (img is None or img.size == 0) and head.photometric == 5 and head.bits != 8:
        # a valid file that neither decoder reads (OpenCV's TIFF reader converts 8-bit CMYK)
        raise RecolorError(f"{head.bits}-bit CMYK TIFF (recolor reads 8-bit CMYK)", name)
    if img is None or img.size == 0:
        raise RecolorError(_unread(head), name)
    if head.format == "TIFF" and head.bits == 16 and img.dtype == np.uint8:
        # OpenCV reads a gray+alpha TIFF through libtiff's 8-bit RGBA interface (Pillow not
        # at all): the depth is lost, and said
        what = "gray+alpha " * (head.photometric in (0, 1))
        warn(f"16-bit {what}TIFF: read at 8 bits, as OpenCV reads it", name)
    if img.dtype not in (np.uint8, np.uint16) and img.dtype.kind != "f":
        # a 32-bit integer TIFF has no agreed range: clipped as floats it came out white
        raise RecolorError(
            f"{img.dtype.itemsize * 8}-bit {'signed ' * (img.dtype.kind == 'i')}integer samples "
            "(recolor reads 8- and 16-bit images and float TIFFs)",
            name,
        )
    if head.white_is_zero and img.dtype == np.uint16:
        # libtiff's RGBA interface, which OpenCV reads 8-bit TIFFs through, turns WhiteIsZero
        # into gray; 16-bit samples come as stored (and from Pillow too): a negative
        img = img if img.flags.writeable else img.copy()  # Pillow's arrays are read-only
        colour = img if img.ndim == 2 else img[:, :, :3]
        np.subtract(np.uint16(65535), colour, out=colour)
    if img.ndim == 2 and head.transparent_gray is not None:
        # OpenCV drops a gray PNG's tRNS (its one transparent gray): made BGRA, as OpenCV
        # gives a gray+alpha PNG
        peak = np.iinfo(img.dtype).max
        alpha = np.where(img == head.transparent_gray, 0, peak).astype(img.dtype)
        img = cv2.merge([img, img, img, alpha])
    if img.ndim == 3 and img.shape[2] == 4 and head.format == "TIFF" and head.extra_samples == 0:
        img = np.ascontiguousarray(img[:, :, :3])  # TIFF 6.0: ExtraSamples 0 is "unspecified data"
    if img.ndim == 3 and img.shape[2] == 4 and _premultiplied(head, img.dtype):
        # Straight colours come back from OpenCV rounded premultiplied: at alpha 3 in steps of
        # 85, which a hint layer's faint stroke edge pastes unmixed (#c0392b as #aa5555).
        # Pillow reads them as stored; else (or where it differs) they are divided back.
        exact = _tiff_by_pillow(data) if head.extra_samples == 2 else None
        img = exact if exact is not None and exact.shape == img.shape else _unpremultiply(img)
    if img.dtype.kind == "f":  # a float TIFF
        if img.dtype != np.float32:  # float64: OpenCV's colour conversions take float32 only
            img = img.astype(np.float32)  # out of float32's range: inf, refused below
        if not np.isfinite(img).all():  # one NaN would spread through the whole prediction
            raise RecolorError("NaN or infinite samples in a float image", name)
    return head, img


def _premultiplied(head: ImageHead, dtype: np.dtype) -> bool:
    # OpenCV reads an 8-bit TIFF with alpha through libtiff's RGBA interface, which multiplies
    # straight alpha (ExtraSamples 2) into the colours and leaves premultiplied data (1) as it
    # is; other depths come as stored. Composited as straight alpha, half-transparent areas
    # came out dark (177 for 227).
    # Float samples are left as stored (their alpha has no integer full scale to divide by).
    extra = head.extra_samples if head.format == "TIFF" else None
    return dtype.kind == "u" and (extra == 1 or extra == 2 and dtype == np.uint8)


def _unpremultiply(img: np.ndarray) -> np.ndarray:
    """Straight colours ``c max / a`` from premultiplied ones ``c`` (BGRA integers, in place;
    0 where a = 0, as the colour there is)."""
    peak = np.iinfo(img.dtype).max
    alpha = np.maximum(img[:, :, 3:].astype(np.float32), 1)
    colour = img[:, :, :3].astype(np.float32) * (np.float32(peak) / alpha)
    img[:, :, :3] = np.clip(np.rint(colour), 0, peak)
    return img


def decode_rgb(
    data: bytes,
    name: str = "<data>",
    meta: ImageMeta | None = None,
    *,
    keep_alpha: bool = False,
    max_size: int | None = None,
    stored: bool = False,
) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, TIFF, WebP, BMP) to float32 sRGB in [0, 1].

    8-bit data is divided by 255, 16-bit by 65535; gray is repeated over three channels; an alpha
    channel is composited over white (posters are printed on white paper), or with
    ``keep_alpha`` kept as a fourth channel beside the colours as stored; the EXIF orientation
    is applied and an embedded ICC profile converted to sRGB (:mod:`recolor_tools.imagemeta`).

    Parameters
    ----------
    data : bytes
        The encoded file.
    name : str
        Used in error messages.
    meta : ImageMeta, optional
        Filled with what the file carried besides pixels (depth, profile, EXIF, XMP) and its
        full size.
    max_size : int, optional
        Shrink so that the longer side is at most this (:func:`resize_max`). Integer samples
        with no alpha and no profile but sRGB's are shrunk as stored, before the float copy
        (16-bit area averaging, 8-bit samples times 257: exact to 1/65535; a 12000 x 12000
        gray scan took 1.9 GB at 12 bytes a pixel of float RGB to become a 1024-pixel
        record); the others after decoding, where averaging the stored samples would give
        another image (:func:`_averages_as_stored`).
    stored : bool
        Return the samples as stored where they are the sRGB image (integers, no alpha, no
        profile but sRGB's): uint8 or uint16 (H, W, 3), a gray image as a read-only view of
        its one plane, so no float copy is made (a 12000 x 12000 gray scan is 144 MB so, 1.7
        GB as float RGB); the others as float32, as without it. Not with ``max_size``.

    Returns
    -------
    rgb : (H, W, 3) float32 in [0, 1]
        (H, W, 4) with ``keep_alpha`` for an image that has an alpha channel (the fourth);
        with ``stored``, uint8 or uint16 samples where the image allows.

    Raises
    ------
    RecolorError
        Empty, truncated or undecodable data, a format recolor does not read, or an image over
        the pixel limit (see :mod:`recolor_tools.imagehead`).
    """
    from .imagemeta import finish_decode, read_meta

    check_flag("keep_alpha", keep_alpha)
    check_flag("stored", stored)
    _check_max_size(max_size)  # compared below before resize_max sees it
    if stored and max_size:
        raise ValueError("decode_rgb: max_size or stored, not both (stored samples are as stored)")
    data = as_bytes(data)
    head, img = decode_stored(data, name)
    depth, shape = 8 * img.itemsize, img.shape[:2]
    found = read_meta(data)
    samples = stored and _averages_as_stored(img, found)  # kept as they are
    if max_size and max(shape) > max_size and _averages_as_stored(img, found):
        if img.dtype == np.uint8:  # shrunk while it is small integers
            img = np.multiply(img, np.uint16(257), dtype=np.uint16)  # (exact: v / 255)
        img = resize_max(img, max_size)
    # Reorder channels (BGR -> RGB, alpha composited on white) while the image is still small
    # integers: a 24 MP poster is 72 MB as uint8 but 288 MB per float32 copy.
    if img.ndim == 3 and img.shape[2] in (2, 4):  # colour or gray, and alpha
        alpha = to_float(img[:, :, -1:])
        colour = to_float(img[:, :, 2::-1] if img.shape[2] == 4 else img[:, :, :1])
        if not keep_alpha:
            colour = colour * alpha + (1.0 - alpha)
        rgb = colour if colour.shape[2] == 3 else np.repeat(colour, 3, axis=2)
        if keep_alpha:
            rgb = np.concatenate([rgb, alpha], 2)
    elif img.ndim == 2 and samples:  # one plane, turned upright before it is seen thrice
        rgb = img
    else:  # gray through a broadcast view, colour swapped in place (the stored samples are
        # ours): no integer RGB copy either way
        rgb = (np.broadcast_to(img[:, :, None], (*img.shape, 3)) if img.ndim == 2
               else cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img))  # fmt: skip
        rgb = rgb if samples else to_float(rgb)
    rgb = rgb if samples else np.ascontiguousarray(rgb, dtype=np.float32)
    del img  # freed before the colour management, which may copy the float image again
    # -- archive I/O (issue 18): EXIF orientation on every format, ICC profile -> sRGB --
    try:
        rgb = finish_decode(rgb, data, depth=depth, meta=meta, size=shape, found=found)
    except RecolorError as e:
        raise RecolorError(e.reason, name) from None
    if rgb.ndim == 2:  # (a turned broadcast view became a copy of all three: 3 bytes a pixel)
        return np.broadcast_to(rgb[:, :, None], (*rgb.shape, 3))
    return resize_max(rgb, max_size)  # (an image with alpha: after compositing, as before)


def _averages_as_stored(img: np.ndarray, found: ImageMeta) -> bool:
    """Whether ``img``, the samples as stored, may be shrunk before they become float sRGB and
    give the same image: integer samples (floats are clipped to [0, 1] first), no alpha (it is
    composited first), and no profile but sRGB (averaged before a profile's curves, 8 to 22 L
    units off)."""
    if img.dtype.kind != "u" or img.ndim == 3 and img.shape[2] != 3:
        return False
    if not found.icc:
        return True
    from .colorprofile import to_srgb

    try:
        return to_srgb(found.icc).table is None  # (an embedded sRGB profile: the identity)
    except RecolorError:  # unusable: said by the colour management, as before
        return False


def read_rgb(
    path: str | Path,
    meta: ImageMeta | None = None,
    *,
    keep_alpha: bool = False,
    max_size: int | None = None,
    stored: bool = False,
) -> np.ndarray:
    """Read an image file (``-`` is stdin) as float32 sRGB in [0, 1], shape (H, W, 3).

    See :func:`decode_rgb` for what is accepted, for ``meta``, ``keep_alpha``, ``max_size``
    and ``stored``; every failure is a :class:`RecolorError` that names the file.
    """
    data = read_bytes(path, check_image_start)
    return decode_rgb(data, str(path), meta, keep_alpha=keep_alpha, max_size=max_size,
                      stored=stored)  # fmt: skip


def resize_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize ``img`` to (h, w): area averaging when shrinking, bilinear when enlarging.

    Training crops, prediction inputs and ``--max-size`` all go through here, so the network
    sees images resampled the same way wherever they come from. An (H, W, 1) image stays
    (h, w, 1) (OpenCV drops the axis).

    Raises
    ------
    ValueError
        A side that is not a positive whole number.
    """
    if not all(is_whole(s) and s > 0 for s in (h, w)):
        raise ValueError(f"sides must be positive whole numbers, got {h!r} x {w!r}")
    H, W = img.shape[:2]
    if (h, w) == (H, W):
        return img
    interp = cv2.INTER_AREA if h * w < H * W else cv2.INTER_LINEAR
    out = cv2.resize(img, (int(w), int(h)), interpolation=interp)  # cv2 takes (W, H)
    return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out


def resize_max(img: np.ndarray, max_size: int | None) -> np.ndarray:
    """Shrink ``img`` so that its longer side is at most ``max_size`` pixels (area averaging).

    Images already small enough are returned unchanged; the aspect ratio is kept. None or 0:
    no limit; anything but a whole number >= 0 is a ValueError (-1 and True gave a 1 x 1
    image, "64" a comparison's TypeError, 64.5 was taken).
    """
    _check_max_size(max_size)
    h, w = img.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return img
    s = max_size / max(h, w)
    return resize_to(img, max(1, round(h * s)), max(1, round(w * s)))


def _check_max_size(max_size: object) -> None:
    check_count("max_size", max_size, optional=True, least=0)  # (0: no limit)


def resize_short_side(img: np.ndarray, short: float, min_side: int) -> np.ndarray:
    """Resize so the shorter side is ``short`` pixels, keeping the aspect ratio.

    Area averaging when shrinking, bilinear when enlarging. Both sides end at least
    ``min_side`` (rounding could otherwise leave ``short - 1``).
    """
    h, w = img.shape[:2]
    s = short / min(h, w)
    return resize_to(img, max(min_side, round(h * s)), max(min_side, round(w * s)))


_QUALITY_FLAG = {
    ".jpg": cv2.IMWRITE_JPEG_QUALITY,
    ".jpeg": cv2.IMWRITE_JPEG_QUALITY,
    ".webp": cv2.IMWRITE_WEBP_QUALITY,
}
"""OpenCV's quality parameter of each lossy format."""
FULL_CHROMA_QUALITY = 90
"""JPEG quality from which the chroma is kept at full resolution (4:4:4), as ImageMagick does:
recolor's product is the chroma, and 4:2:0 halves it each way, smearing a one-pixel hint and
colour edges (OpenCV's default quality is 95, so its outputs are 4:4:4 unless ``quality`` is
lower)."""
_ALPHA_EXTS = (".png", ".webp")
"""The formats :func:`encode_image` writes an alpha channel to (OpenCV's TIFF encoder leaves
out the ExtraSamples tag readers need; JPEG has none; BMP's is ignored by most readers)."""


def encode_image(
    rgb: np.ndarray, ext: str = ".png", depth: int = 8, quality: int | None = None
) -> bytes:
    """Encode RGB (float in [0, 1], uint8 or uint16) to a file format chosen by ``ext``.

    ``rgb`` is (H, W, 3), channels in R, G, B order, or (H, W, 4) with straight (not
    premultiplied) alpha fourth for the formats that carry alpha, PNG and WebP (the inverse of
    :func:`decode_rgb` with ``keep_alpha``). Float samples are clipped to [0, 1] and rounded
    (``round(255 x)``; ``round(65535 x)`` at 16 bits); uint8 is 0-255, uint16 0-65535.
    ``depth`` is 8 or 16: 16 writes 16-bit samples where the format allows it (PNG, TIFF; the
    others are written at 8); uint16 written at 8 bits is rounded, ``round(x / 257)``, as float
    would be, without a float copy. ``quality`` (an integer 1-100) applies to the lossy formats,
    JPEG and WebP; OpenCV's default (95) otherwise.

    Raises
    ------
    ValueError
        ``rgb`` not an (H, W, 3) or (H, W, 4) array of at least one pixel, of uint8, uint16 or
        float (NaN or infinity included), alpha for a format without it, or ``depth`` not 8
        or 16.
    RecolorError
        An unknown format, an image over the format's size limit, or ``quality`` not an integer
        in 1..100.
    """
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if ext not in IMAGE_EXTS:
        raise RecolorError(f"unknown image format {ext!r} (use one of {', '.join(IMAGE_EXTS)})")
    rgb = np.asarray(rgb)
    alpha = rgb.ndim == 3 and rgb.shape[2] == 4
    rgb = check_image(rgb, "rgb", 4 if alpha else 3)
    if not rgb.dtype.isnative:  # big-endian uint16 (from a file's own bytes): said ">u2"
        rgb = rgb.astype(rgb.dtype.newbyteorder("="))
    if not (rgb.dtype in (np.uint8, np.uint16) or rgb.dtype.kind == "f"):
        raise ValueError(f"rgb must be uint8, uint16 or float, got {rgb.dtype}")
    if rgb.size == 0:
        raise ValueError(f"rgb must hold at least one pixel, got shape {rgb.shape}")
    if rgb.dtype.kind == "f" and not (np.isfinite(rgb.min()) and np.isfinite(rgb.max())):
        raise ValueError("rgb holds NaN or infinity")
    if alpha and ext not in _ALPHA_EXTS:
        raise ValueError(f"{ext[1:]} holds no alpha channel: write RGBA as png or webp")
    if not is_whole(depth) or depth not in (8, 16):
        raise ValueError(f"depth must be 8 or 16, got {depth!r}")
    if quality is not None and (
        isinstance(quality, bool)
        or not isinstance(quality, (int, np.integer))
        or not 1 <= quality <= 100
    ):
        raise RecolorError(f"quality must be an integer in 1..100, got {quality!r}")
    h, w = rgb.shape[:2]
    if too_long := side_limit(ext, max(h, w)):  # the encoder's own message says no more
        raise RecolorError(f"{w}x{h} pixels: {too_long}")
    sixteen = depth == 16 and ext in DEEP_EXTS
    if rgb.dtype == np.uint8 and sixteen:  # was written with 8 bits, unsaid
        pix = rgb.astype(np.uint16) * np.uint16(257)
    elif rgb.dtype == np.uint8 or (rgb.dtype == np.uint16 and sixteen):
        pix = rgb
    elif rgb.dtype == np.uint16:  # a 6000x4000 result: 70 MB here, 1 GB of float temporaries
        pix = cv2.convertScaleAbs(rgb, alpha=1 / 257)
    elif sixteen:
        pix = to_uint16(rgb)
    else:
        pix = to_uint8(rgb)
    params = []
    if quality is not None and ext in _QUALITY_FLAG:
        params = [_QUALITY_FLAG[ext], int(quality)]
    if ext in (".jpg", ".jpeg") and (quality is None or quality >= FULL_CHROMA_QUALITY):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    # OpenCV's order is BGR(A): the colours reversed, alpha kept last, by one copy (indexing
    # with a list of channels made two: 200 MB more at the peak of predict on a 36 Mpx image)
    swap = cv2.COLOR_RGBA2BGRA if alpha else cv2.COLOR_RGB2BGR
    ok, enc = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(pix), swap), params)
    if not ok:
        raise RecolorError(f"could not encode {ext} image")
    return enc.tobytes()


def write_image(
    path: str | Path, rgb: np.ndarray, depth: int = 8, quality: int | None = None
) -> None:
    """Write RGB (float in [0, 1], uint8 or uint16; RGBA to PNG and WebP) to ``path``, format
    from its extension, atomically (``rgb``, ``depth``, ``quality`` and the errors as for
    :func:`encode_image`)."""
    atomic_write(path, encode_image(rgb, Path(path).suffix or ".png", depth, quality))
