"""Reading and writing images, and atomic file output.

This is the one place where recolor touches image files: every tool reads with :func:`read_rgb`
and writes with :func:`write_image` or :func:`atomic_write`, so that a killed run never leaves a
half-written file (data goes to a temporary file beside the target, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import RecolorError, warn, write_failure
from .imagehead import SNIFF_BYTES, ImageHead, as_bytes, max_pixels, read_head, sniff_format

# OpenCV's own limit (2**30 pixels) would otherwise cap a raised RECOLOR_MAX_PIXELS; ours is
# checked on the header before OpenCV sees the data.
with contextlib.suppress(RecolorError):
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(max(1 << 30, max_pixels())))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .color import check_image, to_float, to_uint8, to_uint16  # noqa: E402

if TYPE_CHECKING:
    from .imagemeta import ImageMeta

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


# JPEG carries EXIF orientation; OpenCV honours it unless IMREAD_UNCHANGED is given, which we
# need for alpha. So JPEG is decoded with ANYCOLOR|ANYDEPTH, the formats with alpha unchanged.
_DECODE_KEEP_ALPHA = cv2.IMREAD_UNCHANGED
_DECODE_ORIENTED = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH


def os_reason(err: OSError) -> str:
    """A short, lower-case reason for an OS error, as the tools print it."""
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    return (err.strerror or str(err)).lower()


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file for binary reading (``-`` is stdin); OS errors become :class:`RecolorError`."""
    if str(path) == "-":
        return sys.stdin.buffer
    if str(path) == "":  # Path("") would open the current directory
        raise RecolorError("no such file", path)
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory", str(path))
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise _read_error(e, path) from None
    except ValueError:  # a NUL in a name from a list: no file has it
        raise RecolorError("embedded null byte", path) from None


def read_bytes(
    path: str | Path, check_start: Callable[[bytes, str | Path], None] | None = None
) -> bytes:
    """Read a whole file (``-`` is stdin), turning OS errors into one-line :class:`RecolorError`.

    Stdin is read a MiB at a time (:func:`read_rest`); ``check_start(start, path)`` (e.g.
    :func:`check_image_start`) may refuse its first :data:`SNIFF_BYTES` before the rest is read.
    """
    if str(path) == "-":
        stream = sys.stdin.buffer
        start = stream.read(SNIFF_BYTES) if check_start else b""
        if check_start and len(start) == SNIFF_BYTES:  # (shorter: all there is, read as it is)
            check_start(start, path)
        return read_rest(stream, start)
    if str(path) == "":  # Path("") would read the current directory
        raise RecolorError("no such file", path)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise _read_error(e, path) from None
    except ValueError:  # a NUL in a name from a list: no file has it
        raise RecolorError("embedded null byte", path) from None


def check_image_start(start: bytes, path: str | Path) -> None:
    """Raise the error the whole data would get if ``start``, its first bytes, is no image's
    start (:func:`~recolor_tools.imagehead.sniff_format` looks at :data:`SNIFF_BYTES` at most)."""
    try:
        sniff_format(start)
    except RecolorError as e:
        raise RecolorError(e.reason, path) from None


def read_rest(stream: BinaryIO, start: bytes = b"") -> bytes:
    """``start`` and the rest of ``stream``, read a MiB at a time: one ``read()`` of a pipe that
    never ends (``yes |``) ran no signal handler, so Ctrl-C and SIGTERM went unheard while the
    memory grew."""
    chunks = [start]
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_error(err: OSError, path: str | Path) -> RecolorError:
    # expand_inputs passes on a folder where it found no input, for its reader to report
    if isinstance(err, IsADirectoryError):
        return RecolorError("is a directory, and no input was found in it", path)
    return RecolorError(os_reason(err), path)


def decoder_oriented(head: ImageHead) -> bool:
    """Whether :func:`decode_stored` gives this image upright already: OpenCV applies a JPEG's
    EXIF orientation (the flags it is decoded with); the rest are turned by
    :func:`recolor_tools.imagemeta.upright`."""
    return head.format == "JPEG"


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


def decode_stored(data: bytes, name: str = "<data>") -> tuple[ImageHead, np.ndarray]:
    """The header and the samples as the file stores them (OpenCV's BGR/BGRA/gray order, uint8
    or uint16, or float32 for a float TIFF; alpha kept, straight: a TIFF's premultiplied colours
    are divided by it, a gray PNG's tRNS made an alpha channel; JPEG with its EXIF orientation
    applied),
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
        img = cv2.imdecode(buf, _DECODE_ORIENTED if decoder_oriented(head) else _DECODE_KEEP_ALPHA)
    except cv2.error:  # OpenCV's assertion text means nothing to the user
        img = None
    if (img is None or img.size == 0) and head.format == "TIFF":
        img = _tiff_by_pillow(data)
    if img is None or img.size == 0:
        raise RecolorError(f"not a readable image (corrupt {head.format} data)", name)
    if img.dtype not in (np.uint8, np.uint16) and img.dtype.kind != "f":
        # a 32-bit integer TIFF has no agreed range: clipped as floats it came out white
        raise RecolorError(
            f"{img.dtype.itemsize * 8}-bit {'signed ' * (img.dtype.kind == 'i')}integer samples "
            "(recolor reads 8- and 16-bit images and float TIFFs)",
            name,
        )
    if img.ndim == 2 and head.transparent_gray is not None:
        # OpenCV drops a gray PNG's tRNS (its one transparent gray): made BGRA, as OpenCV
        # gives a gray+alpha PNG
        peak = np.iinfo(img.dtype).max
        alpha = np.where(img == head.transparent_gray, 0, peak).astype(img.dtype)
        img = cv2.merge([img, img, img, alpha])
    if img.ndim == 3 and img.shape[2] == 4 and head.format == "TIFF" and head.extra_samples == 0:
        img = np.ascontiguousarray(img[:, :, :3])  # TIFF 6.0: ExtraSamples 0 is "unspecified data"
    if img.ndim == 3 and img.shape[2] == 4 and _premultiplied(head, img.dtype):
        img = _unpremultiply(img)
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
    data: bytes, name: str = "<data>", meta: ImageMeta | None = None, *, keep_alpha: bool = False
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
        Filled with what the file carried besides pixels (depth, profile, EXIF, XMP).

    Returns
    -------
    rgb : (H, W, 3) float32 in [0, 1]
        (H, W, 4) with ``keep_alpha`` for an image that has an alpha channel (the fourth).

    Raises
    ------
    RecolorError
        Empty, truncated or undecodable data, a format recolor does not read, or an image over
        the pixel limit (see :mod:`recolor_tools.imagehead`).
    """
    data = as_bytes(data)
    head, img = decode_stored(data, name)
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
    elif img.ndim == 2:  # gray: read through a broadcast view, so no integer RGB copy is made
        rgb = to_float(np.broadcast_to(img[:, :, None], (*img.shape, 3)))
    else:  # swapped in place (the stored samples are ours): no second integer copy either
        rgb = to_float(cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img))
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    depth = 8 * img.itemsize
    del img  # freed before the colour management, which may copy the float image again
    # -- archive I/O (issue 18): EXIF orientation on every format, ICC profile -> sRGB --
    from .imagemeta import finish_decode

    try:
        oriented = decoder_oriented(head)
        return finish_decode(rgb, data, depth=depth, oriented=oriented, meta=meta)
    except RecolorError as e:
        raise RecolorError(e.reason, name) from None


def read_rgb(
    path: str | Path, meta: ImageMeta | None = None, *, keep_alpha: bool = False
) -> np.ndarray:
    """Read an image file (``-`` is stdin) as float32 sRGB in [0, 1], shape (H, W, 3).

    See :func:`decode_rgb` for what is accepted, for ``meta`` and for ``keep_alpha``; every
    failure is a :class:`RecolorError` that names the file.
    """
    return decode_rgb(read_bytes(path, check_image_start), str(path), meta, keep_alpha=keep_alpha)


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
    if not all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in (h, w)
    ):
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
    no limit; a negative size is a ValueError (it gave a 1 x 1 image).
    """
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be 0 (no limit) or more, got {max_size}")
    h, w = img.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return img
    s = max_size / max(h, w)
    return resize_to(img, max(1, round(h * s)), max(1, round(w * s)))


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
    if not (rgb.dtype in (np.uint8, np.uint16) or rgb.dtype.kind == "f"):
        raise ValueError(f"rgb must be uint8, uint16 or float, got {rgb.dtype}")
    if rgb.size == 0:
        raise ValueError(f"rgb must hold at least one pixel, got shape {rgb.shape}")
    if rgb.dtype.kind == "f" and not (np.isfinite(rgb.min()) and np.isfinite(rgb.max())):
        raise ValueError("rgb holds NaN or infinity")
    if alpha and ext not in _ALPHA_EXTS:
        raise ValueError(f"{ext[1:]} holds no alpha channel: write RGBA as png or webp")
    if isinstance(depth, bool) or depth not in (8, 16):
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
    # OpenCV's order is BGR(A): the colours reversed, alpha kept last.
    order = [2, 1, 0, 3] if alpha else [2, 1, 0]
    ok, enc = cv2.imencode(ext, np.ascontiguousarray(pix[:, :, order]), params)
    if not ok:
        raise RecolorError(f"could not encode {ext} image")
    return enc.tobytes()


def writes_in_place(path: str | Path) -> bool:
    """True when ``path`` must be written in place rather than replaced by a rename.

    That is every existing target that is not a regular file (a character or block device, a
    FIFO, a socket: renaming over ``/dev/null`` as root would replace the device with a file), and
    every name under ``/dev`` or ``/proc`` (``/dev/stdout`` may lead to a regular file the shell
    opened: replacing it would lose what the shell appends) but ``/dev/shm``, a folder of
    ordinary files in memory.
    """
    where = os.path.abspath(path)
    system = where.startswith(("/dev/", "/proc/")) and not where.startswith("/dev/shm/")
    return system or is_special(path)


def is_special(path: str | Path) -> bool:
    """True for an existing path that is neither a regular file nor a folder: a character or
    block device, a FIFO, a socket (reading it may block for good; writing must not rename over
    it). False for a missing or unreachable path."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a NUL in the name (from a list)
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears whole or not at all.

    Data goes to a hidden temporary file in the directory of the file ``path`` leads to (a
    symbolic link is followed, not replaced), which replaces it with ``os.replace`` only when the
    block ends without an exception; the temporary file is removed on any error, Ctrl-C or
    SIGTERM. A target for which :func:`writes_in_place` is true is opened for appending in place
    and never created, truncated or renamed over. The new file gets the permissions of the file
    it replaces as the block begins (a private 0600 output stays private, also where the block
    moves the old file away: ``last.pt`` -> ``last.prev.pt``), else ``0666 & ~umask``.

    Raises
    ------
    RecolorError
        The directory is missing or not writable (or was removed while writing: named as the
        folder), the in-place target cannot be opened, or the target cannot be replaced (a
        folder): named as ``path``, never the temporary file.
    DiskFull
        The device is full (``ENOSPC``), or the target is a FIFO whose reader has gone
        (:class:`~recolor_tools.errors.ReaderGone`); the target is left as it was.
    """
    path = Path(path)
    if writes_in_place(path):
        yield from _in_place(path)
        return
    real = Path(os.path.realpath(path))
    # The name's first 128 bytes: a 250-byte name is good (NAME_MAX is 255), its temporary one
    # (".NAME.XXXXXXXX.tmp") would not be.
    stem = os.fsdecode(os.fsencode(real.name)[:128])
    # the folder as the user named it, unless a link led elsewhere (/tmp/x/ro, not ro)
    folder = path.parent if os.path.realpath(path.parent) == str(real.parent) else real.parent
    mode = _mode_of(real)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=real.parent)
    except FileNotFoundError:
        raise RecolorError("no such directory", folder) from None
    except OSError as e:
        raise RecolorError(os_reason(e), folder) from None
    f = os.fdopen(fd, "wb")
    try:
        yield f
        f.close()  # the last buffered bytes: a full disk shows here at the latest
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException as e:
        with contextlib.suppress(OSError):
            f.close()  # flushing may fail again; the descriptor is closed all the same
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and (ends := write_failure(e, path)):
            raise ends from None
        if isinstance(e, FileNotFoundError) and not real.parent.is_dir():
            raise RecolorError("the folder was removed while writing", folder) from None
        if isinstance(e, OSError) and e.filename == tmp:  # the rename onto a folder: name it
            raise RecolorError(os_reason(e), path) from None
        raise


def _in_place(path: Path) -> Iterator[BinaryIO]:
    try:
        # O_APPEND, no O_CREAT, no O_TRUNC: a device or FIFO is written as it is, and a file
        # reached through /dev/stdout keeps what the shell wrote before us.
        f = open(os.open(path, os.O_WRONLY | os.O_APPEND), "wb")  # noqa: SIM115
    except OSError as e:
        raise RecolorError(os_reason(e), path) from None
    try:
        yield f
        f.close()
    except BaseException as e:
        with contextlib.suppress(OSError):
            f.close()
        if isinstance(e, OSError) and (ends := write_failure(e, path)):
            raise ends from None
        raise


def _mode_of(path: Path) -> int:
    """The permissions a new version of ``path`` gets: those of the file it replaces (a private
    0600 output stays private, as with ``>`` or ``sed -i``), else ``0666 & ~umask``."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, from /proc where Linux shows it: setting it to read it is
    process-wide, so a thread creating a file meanwhile (the write-back threads) got 0666."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def write_image(
    path: str | Path, rgb: np.ndarray, depth: int = 8, quality: int | None = None
) -> None:
    """Write RGB (float in [0, 1], uint8 or uint16; RGBA to PNG and WebP) to ``path``, format
    from its extension, atomically (``rgb``, ``depth``, ``quality`` and the errors as for
    :func:`encode_image`)."""
    atomic_write(path, encode_image(rgb, Path(path).suffix or ".png", depth, quality))


def input_roots(args: Sequence[str]) -> list[Path]:
    """The input directories among command-line inputs and the folders named in their
    ``.txt`` / ``.list`` files (what :func:`input_name` names below)."""
    roots = []
    for a in args:
        if a in ("-", ""):
            continue
        named = _list_entries(Path(a)) if _is_list(Path(a)) else [a]
        roots += [Path(e) for e in named if os.path.isdir(e)]
    return roots


def _is_list(p: Path) -> bool:
    return p.suffix.lower() in (".txt", ".list") and os.path.isfile(p)


def _list_entries(p: Path) -> list[str]:
    """The paths a ``.txt`` / ``.list`` file names, one per line (relative ones to its folder;
    blank lines and ``#`` comments skipped)."""
    entries = []
    # As bytes: `find ... > list.txt` writes names as they are, UTF-8 or not.
    for line in os.fsdecode(p.read_bytes()).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line if Path(line).is_absolute() else str(p.parent / line))
    return entries


def input_name(path: str, roots: Sequence[str | Path] = ()) -> str:
    """The name an input's outputs and partners are named after: its path below the first of
    ``roots`` (:func:`input_roots`) that holds it, as ``a/b.jpg``, so that outputs mirror an
    input directory's tree and two ``b.jpg`` in two subfolders stay apart; else its base name
    (a file named on its own); ``-`` is ``stdin``."""
    if path == "-":
        return "stdin"
    for r in map(Path, roots):
        if Path(path).is_relative_to(r):
            return Path(path).relative_to(r).as_posix()
    return Path(path).name


def leave_out(paths: list[str], roots: Sequence[str | Path], folder: str | Path) -> list[str]:
    """``paths`` less those in ``folder`` when an input directory of ``roots`` holds it: an
    output or hint folder kept inside the input folder holds no inputs (``recolor predict . -o
    out/ --hints hints/`` run twice)."""
    d = Path(folder).resolve()
    if not any(d != r and d.is_relative_to(r) for r in (Path(r).resolve() for r in roots)):
        return paths
    return [p for p in paths if p == "-" or not Path(p).resolve().is_relative_to(d)]


def files_below(folder: Path, exts: Sequence[str]) -> list[Path]:
    """The files below ``folder`` (recursively, sorted) whose extension is in ``exts``: regular
    files, and broken links so that whoever reads them reports them; not FIFOs or devices,
    which could block the run waiting for a writer (name one to read it)."""
    return [f for f in sorted(folder.rglob("*")) if f.suffix.lower() in exts
            and (f.is_file() or f.is_symlink() and not f.exists())]  # fmt: skip


def expand_inputs(args: list[str], exts: tuple[str, ...] = IMAGE_EXTS) -> list[str]:
    """Turn command-line inputs into a list of files.

    ``-`` stays as is (stdin); a directory is searched recursively for files whose extension is
    in ``exts`` (sorted; broken links among them, so that they are reported, but no FIFO or
    device); a pattern with ``*``, ``?`` or ``[`` that the shell left alone is
    expanded; a text file with extension ``.txt`` or ``.list`` is read as one path per line (a
    folder among them searched as above).
    Anything else is kept, so that a missing file is reported by whoever opens it. One path
    given as a string is a TypeError (it was taken for a list of one-letter names).
    """
    import glob

    if isinstance(args, str | bytes | os.PathLike):
        raise TypeError(f"args must be a list of paths, not one path: [{args!r}]")

    out: list[str] = []
    for arg in args:
        p = Path(arg)
        if arg in ("-", ""):  # stdin; an empty name is no file (Path("") is the current folder)
            out.append(arg)
        elif os.path.isdir(p):  # os.path's: a name too long is no folder, not an error
            found = [str(f) for f in files_below(p, exts)]
            out.extend(found or [arg])  # an empty directory is reported by whoever opens it
        elif not os.path.lexists(p) and any(c in arg for c in "*?["):
            out.extend(sorted(glob.glob(arg, recursive=True)) or [arg])
        elif _is_list(p):
            for entry in _list_entries(p):
                # a folder listed is searched as one given on the command line
                out.extend(expand_inputs([entry], exts) if os.path.isdir(entry) else [entry])
        else:
            out.append(arg)
    return out
