"""The Lab record stream: recolor's interchange format between tools.

A stream is any number of records back to back, so it can be a file, a pipe or stdin
(no seeking is ever needed). Version 1 of one record, all integers little-endian::

    offset  size  field
    0       4     magic b"RCLR"
    4       2     format version (uint16) = 1
    6       2     flags (uint16), reserved, 0
    8       4     header length n (uint32)
    12      n     header: UTF-8 JSON object
                    {"name": source file name, "size": [H0, W0] original size in pixels,
                     "meta": {...tool-specific...},
                     "source": {"depth": 8 or 16, "icc", "exif", "xmp": base64}, optional:
                       an addition readers of version 1 ignore, so the version stays 1,
                     "file": [device, inode] of the image it was made from, optional (the
                       same),
                     "arrays": [{"name": str, "dtype": numpy dtype str, "shape": [...]}, ...]}
    12+n    ...   the arrays' raw bytes, C order, in header order
    end     4     CRC-32 (zlib) of the header and array bytes (uint32)

Arrays by kind of record:

- Lab image (``to-lab``): ``lab`` float32 (H, W, 3): L in [0, 100], a/b in about [-128, 127]
  (OpenCV float convention); or, with ``--l-only``, ``L`` float32 (H, W, 1).
- Soft-encoded target (``quantize``): ``idx`` int16 (H, W, k) class indices, nearest first, and
  ``w`` float32 (H, W, k) weights summing to 1; with ``--hard``, ``idx`` int16 (H, W, 1).

An array may have a 0 among its dimensions (no values); the tools refuse an image array that is
not a non-empty (H, W, C) image as that record's error (:meth:`Record.lab`).

float32 data is stored bit for bit, so values round-trip exactly. A 182x268 poster is a
585,312-byte Lab record plus about 180 bytes of header, framing and checksum (195,104 bytes with
``--l-only``). Garbage (bad magic), truncation (short read, bad CRC) and a newer version fail
with a clear :class:`RecolorError`.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import BinaryIO

import numpy as np

from .errors import RecolorError, check_flag, is_whole

MAGIC = b"RCLR"
LAB_EXT = ".lab"
"""Extension of a file of Lab records (what to-lab writes; what the record tools take from a
folder)."""
VERSION = 1
_PREFIX = struct.Struct("<4sHHI")
_CRC = struct.Struct("<I")
_MAX_HEADER = 1 << 20
_DTYPES = {"<f4", "<f2", "<i2", "<i4", "<i8", "|u1", "<u2", "|i1"}


def values_equal(a: object, b: object) -> bool:
    """``a == b`` for values that hold arrays: arrays equal in dtype (either byte order),
    shape and values (NaN equal to NaN), dicts key by key; anything else by ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        # byte order is storage, not value: a big-endian array is written little-endian
        same_type = a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=")
        return (
            same_type
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def fields_equal(a: object, b: object) -> bool:
    """The ``==`` of a dataclass whose fields hold arrays (numpy's "truth value of an array is
    ambiguous" else): same class, and :func:`values_equal` on each compared field."""
    if type(a) is not type(b):
        return NotImplemented
    return all(values_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a) if f.compare)


@dataclass(eq=False)
class Record:
    """One image's data in the stream.

    Two records are equal (``==``) when their name, size, meta, source and arrays are: the
    same array names, each of the same dtype, shape and values (NaN equal to NaN); ``origin``
    is not compared.

    Attributes
    ----------
    name : str
        The source file's name: its path below the input directory it was found in
        (``1942/a.jpg``), else its base name; used to name outputs.
    size : (int, int)
        Original (height, width) of the source image before any resizing.
    arrays : dict of str to ndarray
        Named arrays; see the module docstring for the names each tool uses.
    meta : dict
        Small JSON-serialisable extras (e.g. the class set's grid).
    source : dict or None
        What the source image carried besides pixels, so that ``from-lab`` writes it back:
        ``imagemeta.ImageMeta.to_json()`` (depth, base64 ICC profile, EXIF, XMP); None in
        records written before recolor carried it and in records not made from an image.
    origin : str or None
        Where :func:`iter_lab_sources` found this record, as a tool's error about it names it:
        the image file it was made from (``y/a.png``), or the stream file and the record's name
        (``l.lab: a.png``), so that an error never blames the image the record was made from
        for the record file the user gave; None for stdin and for records not from a file
        (named by their name, :attr:`where`). Not written to streams.
    file : (int, int) or None
        (device, inode) of the image file ``to-lab`` made this record from, so that no output
        made from the record (``from-lab -o .``) replaces that image; None for stdin and for
        records made otherwise. Not compared.
    """

    name: str
    size: tuple[int, int]
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    source: dict | None = None
    origin: str | None = field(default=None, compare=False, repr=False)
    file: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.name, tuple(self.size), self.meta, self.source) == (
            other.name, tuple(other.size), other.meta, other.source
        ) and values_equal(self.arrays, other.arrays)  # fmt: skip

    __hash__ = None  # mutable, compared by value

    @property
    def where(self) -> str:
        """What an error about this record names: :attr:`origin`, else :attr:`name`."""
        return self.origin or self.name

    def lab(self, gray_if_l_only: bool = False) -> np.ndarray:
        """The (H, W, 3) Lab image, H and W >= 1, or raise if this is not a full Lab record.

        With ``gray_if_l_only``, an L-only record gives its L with a = b = 0 (a gray image).

        Raises
        ------
        RecolorError
            Naming :attr:`where`: no ``lab`` array (nor ``L`` with ``gray_if_l_only``), or one
            that is not a non-empty image (:meth:`image`). Every tool takes its Lab data here,
            so each refuses such a record alike, as that record's error.
        """
        if gray_if_l_only and "lab" not in self.arrays and "L" in self.arrays:
            light = self.image("L")
            lab = np.zeros((*light.shape[:2], 3), np.float32)
            lab[:, :, :1] = light
            return lab
        if "lab" not in self.arrays:
            why = "record holds no Lab image (an L-only or target record?)"
            raise RecolorError(why, self.where)
        return self.image("lab")

    def lightness(self) -> np.ndarray:
        """The (H, W) L channel of a Lab or L-only record (checked as :meth:`lab` checks)."""
        for key in ("lab", "L"):
            if key in self.arrays:
                return self.image(key)[:, :, 0]
        raise RecolorError("record holds no lightness", self.where)

    def image(self, key: str) -> np.ndarray:
        """Array ``key`` checked to be an image: (H, W, C) with H, W >= 1 and C the array's
        channels in the format (``lab`` 3, ``L`` 1).

        The format carries arrays of any shape, empty ones too (a hand-made or foreign record
        may hold them), so the image tools check the shape here, in one place, before indexing.

        Raises
        ------
        RecolorError
            Naming :attr:`where` and the shape, e.g. ``record array 'lab' has shape (4,), not
            (H, W, 3)`` or ``record array 'lab' is an empty image (0 x 5 pixels)``.
        """
        arr, channels = self.arrays[key], _CHANNELS[key]
        if arr.ndim != 3 or arr.shape[2] != channels:
            raise RecolorError(
                f"record array {key!r} has shape {arr.shape}, not (H, W, {channels})", self.where
            )
        if not arr.size:
            raise RecolorError(
                f"record array {key!r} is an empty image ({arr.shape[1]}x{arr.shape[0]} pixels)",
                self.where,
            )
        return arr


_CHANNELS = {"lab": 3, "L": 1}
"""Channels of the image arrays of Lab records (see the module docstring)."""


def lab_record(
    name: str,
    lab: np.ndarray,
    size: tuple[int, int],
    l_only: bool = False,
    source: dict | None = None,
) -> Record:
    """Make the record of a Lab image of original ``size`` (height, width in pixels, before any
    resizing); ``source`` as :attr:`Record.source`.

    ``lab`` is (H, W, 3), L in [0, 100] and a/b in about [-128, 127], stored as float32 (array
    ``lab``; with ``l_only`` its L alone, ``L`` (H, W, 1)). A C-contiguous float32 ``lab`` is
    held as it is, not copied (a scan's Lab image is large): change it and the record changes.

    Raises
    ------
    ValueError
        ``lab`` not an (H, W, 3) array of real numbers, ``size`` not two integers >= 0, or
        ``l_only`` not True or False.
    """
    from .color import check_image

    check_flag("l_only", l_only)  # "no" dropped a/b
    lab = check_image(lab, "lab", 3)
    if lab.dtype.kind not in "fiu":
        raise ValueError(f"lab must hold real numbers, got {lab.dtype}")
    lab = np.ascontiguousarray(lab, dtype=np.float32)
    arrays = {"L": lab[:, :, :1].copy()} if l_only else {"lab": lab}
    return Record(name, _check_size(size), arrays, {"kind": "lab"}, source)


def _check_size(size) -> tuple[int, int]:
    """``size`` as (height, width): two integers in [0, 2**31), or ValueError."""
    try:
        dims = tuple(size)
    except TypeError:
        dims = ()
    if len(dims) != 2 or not all(is_whole(v) and 0 <= v < 1 << 31 for v in dims):
        raise ValueError(f"record size must be (height, width), two integers >= 0, got {size!r}")
    return int(dims[0]), int(dims[1])


def write_record(stream: BinaryIO, rec: Record) -> None:
    """Append one record to a binary stream (file, pipe or ``sys.stdout.buffer``).

    Everything is checked before a byte is written, so that what is written
    :func:`iter_records` reads back: big-endian arrays are stored little-endian.

    Raises
    ------
    ValueError
        Naming the field the format cannot carry: a ``name`` that is not a string, a ``size``
        that is not two integers >= 0, ``meta`` not a dict or ``source`` not a dict or None
        (either not JSON-serialisable), more than 16 arrays, an array name that is not a
        string, an array of a dtype other than float32, float16, int8, int16, int32, int64,
        uint8 or uint16 (float64 is not converted: say ``astype(np.float32)``), of other than
        1 to 4 dimensions, H x W over the pixel limit or over 256 values a pixel, or a header
        over 1 MiB.
    """
    from .imagehead import max_pixels

    if not isinstance(rec.name, str):
        raise ValueError(f"record name must be a string, got {type(rec.name).__name__}")
    size = _check_size(rec.size)
    if not isinstance(rec.meta, dict):
        raise ValueError(f"record meta must be a dict, got {type(rec.meta).__name__}")
    if rec.source is not None and not isinstance(rec.source, dict):
        raise ValueError(f"record source must be a dict or None, got {type(rec.source).__name__}")
    if rec.file is not None and not _is_dev_ino(rec.file):  # (written, then refused on reading)
        raise ValueError(
            f"record file must be (device, inode), two integers >= 0, got {rec.file!r}"
        )
    if len(rec.arrays) > _MAX_ARRAYS:
        raise ValueError(f"a record holds at most {_MAX_ARRAYS} arrays, got {len(rec.arrays)}")
    limit = max_pixels()
    arrays = {}
    for k, v in rec.arrays.items():
        if not isinstance(k, str):
            raise ValueError(f"record array names must be strings, got {k!r}")
        v = np.asarray(v)
        if v.dtype.str not in _DTYPES and v.dtype.kind in "fiu":
            v = v.astype(v.dtype.newbyteorder("<"))  # big-endian: stored little-endian
        if v.dtype.str not in _DTYPES:
            raise ValueError(
                f"record array {k!r} is {v.dtype}: the format holds float32, float16, int8, "
                "int16, int32, int64, uint8 and uint16"
            )
        problem = _shape_problem(k, v.shape, limit)
        if problem:
            raise ValueError(problem)
        arrays[k] = np.ascontiguousarray(v)
    head = {
        "name": rec.name,
        "size": list(size),
        "meta": rec.meta,
        "arrays": [
            {"name": k, "dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()
        ],
    }
    if rec.source is not None:  # ({} came back None)
        head["source"] = rec.source
    if rec.file is not None:
        head["file"] = [int(v) for v in rec.file]  # (numpy's were said as meta's fault)
    try:
        # allow_nan=False: a NaN or infinity is written NaN / Infinity, which no strict JSON
        # reader (jq, JSON.parse) takes
        text = json.dumps(head, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:  # only meta and source can hold other values
        raise ValueError(f"record meta or source is not JSON-serialisable ({e})") from None
    back = json.loads(text)  # what a reader gets: {1: 2} came back {"1": 2}, a tuple a list
    for name in ("meta", "source"):
        if name in back and back[name] != head[name]:
            raise ValueError(f"record {name} does not read back as given (JSON: keys are "
                             "strings, tuples lists)")  # fmt: skip
    try:
        header = text.encode()
    except UnicodeEncodeError:  # a name from a file name that is not UTF-8: \udcXX escapes
        header = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()
    if len(header) > _MAX_HEADER:
        raise ValueError(
            f"record header of {len(header):,} bytes is over {_MAX_HEADER:,} (meta or source)"
        )
    crc = zlib.crc32(header)
    stream.write(_PREFIX.pack(MAGIC, VERSION, 0, len(header)))
    stream.write(header)
    for v in arrays.values():
        buf = _bytes_of(v)
        crc = zlib.crc32(buf, crc)
        stream.write(buf)
    stream.write(_CRC.pack(crc))


def _read_exact(stream: BinaryIO, n: int, source: str, what: str) -> bytes:
    data = stream.read(n)
    if len(data) == n:
        return data
    chunks = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            raise RecolorError(f"truncated record stream (end of data inside {what})", source)
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def _bytes_of(arr: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, as a writable view of its memory. Through a flat uint8
    view, as ``memoryview(arr).cast("B")`` refuses an array with a 0 in its shape."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def _read_into(stream: BinaryIO, arr: np.ndarray, source: str) -> None:
    view = _bytes_of(arr)
    got = 0
    readinto = getattr(stream, "readinto", None)
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:])
        else:
            chunk = stream.read(len(view) - got)
            n = len(chunk)
            view[got : got + n] = chunk
        if not n:
            raise RecolorError("truncated record stream (end of data inside an array)", source)
        got += n


_MAX_ARRAYS = 16
MAX_CHANNELS = 256
"""Most values a pixel may hold per array (channels, or k classes of a soft target)."""


def _parse_header(raw: bytes, source: str) -> dict:
    """The header's JSON, checked against limits before any array is allocated: known dtypes,
    at most :data:`_MAX_ARRAYS` arrays of 1 to 4 dimensions, H x W within the pixel limit of
    :mod:`recolor_tools.imagehead` and at most :data:`MAX_CHANNELS` values per pixel."""
    from .imagehead import max_pixels

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecolorError("corrupt record header (not UTF-8)", source) from None
    try:
        head = json.loads(text, parse_constant=_no_constant)  # NaN, Infinity: no JSON
    except (ValueError, RecursionError):
        raise RecolorError("corrupt record header (not JSON)", source) from None
    try:
        arrays, size, name = head["arrays"], head["size"], head["name"]
        if not (isinstance(name, str) and isinstance(arrays, list)):
            raise ValueError
        where = _where(source, name)
        if len(arrays) > _MAX_ARRAYS:  # a record over a limit: named, and the limit said
            raise RecolorError(f"record holds {len(arrays)} arrays, over the format's "
                               f"{_MAX_ARRAYS}", where)  # fmt: skip
        if not isinstance(head.get("meta", {}), dict | None):  # (false or [] slipped by `or`)
            raise ValueError
        head["size"] = tuple(_dims(size, 2))
        limit = max_pixels()
        for a in arrays:
            shape = _dims(a["shape"], len(a["shape"]))
            if not isinstance(a["name"], str):
                raise ValueError
            if a["dtype"] not in _DTYPES:
                dtype = str(a["dtype"])[:20]
                raise RecolorError(f"record array {a['name']!r} is of dtype {dtype!r}, which "
                                   "the format does not hold (FORMAT.md)", where)  # fmt: skip
            problem = _shape_problem(a["name"], shape, limit)
            if problem:
                raise RecolorError(problem, where)
            a["shape"] = shape
        if not isinstance(head.get("source", {}), dict | None):
            raise ValueError
        if "file" in head:
            if not (isinstance(head["file"], list) and _is_dev_ino(head["file"])):
                raise ValueError
            head["file"] = tuple(head["file"])
        return head
    except (ValueError, KeyError, TypeError, IndexError):
        raise RecolorError("corrupt record header (fields missing or malformed)", source) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is no JSON")


def _where(source: str, name: str) -> str:
    """How an error names a record: ``file: name``, or the name alone for stdin."""
    return name if source == "-" else f"{source}: {name}"


def check_name(rec: Record) -> None:
    """Raise :class:`RecolorError` when ``rec``'s name can name no output file: a NUL, or a
    lone surrogate other than the \\udc80-\\udcff that stand for a file name's bytes that are
    not UTF-8 (said as Python's "embedded null byte" or a codec's error before)."""
    if "\0" in rec.name:
        raise RecolorError("its name holds a NUL character")
    try:
        os.fsencode(rec.name)
    except UnicodeEncodeError:
        raise RecolorError("its name holds a character no file name can hold (a lone "
                           "surrogate)") from None  # fmt: skip


def _is_dev_ino(v: object) -> bool:
    """Whether ``v`` is a (device, inode) pair: two whole numbers, 64-bit unsigned."""
    try:
        return len(v) == 2 and all(is_whole(n) and 0 <= n < 1 << 64 for n in v)
    except TypeError:
        return False


def _shape_problem(name: str, shape: Sequence[int], limit: int) -> str | None:
    """Why the format holds no array of ``shape`` (the writer's and the reader's limits), or
    None: 1 to 4 dimensions, each under 2**31, H x W (H for 1-D) at most ``limit`` pixels and
    the product of the rest at most :data:`MAX_CHANNELS` values a pixel."""
    what = f"record array {name!r} of shape {tuple(shape)}"
    if not 1 <= len(shape) <= 4:
        return f"{what} has {len(shape)} dimensions (the format holds 1 to 4)"
    if any(n >= 1 << 31 for n in shape):  # (an empty array can: a 0 beside it)
        return f"{what} has a side of 2**31 or more"
    if math.prod(shape[2:]) > MAX_CHANNELS:  # (it was said as the pixel limit)
        return f"{what} holds over {MAX_CHANNELS} values a pixel"
    if shape[0] * (shape[1] if len(shape) > 1 else 1) > limit:
        return f"{what} is larger than any image recolor reads (RECOLOR_MAX_PIXELS = {limit:,})"
    return None


def _dims(values, n: int) -> list[int]:
    """``n`` non-negative JSON integers (not bools, not floats), or ValueError."""
    if not isinstance(values, list) or len(values) != n:
        raise ValueError
    if not all(type(v) is int and 0 <= v < 1 << 31 for v in values):
        raise ValueError
    return values


def _check_available(stream: BinaryIO, n: int, where: str) -> None:
    """Refuse a header whose arrays need more bytes than a regular file has left, before the
    arrays are allocated (a pipe cannot tell: truncation is found while reading)."""
    try:
        st = os.fstat(stream.fileno())
        if not stat.S_ISREG(st.st_mode):
            return
        left = st.st_size - stream.tell()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return
    if n + _CRC.size > left:
        said = (  # (the arrays whole and the checksum cut was said as arrays short)
            "end of data inside a record checksum" if n <= left
            else f"the header promises {n:,} bytes of arrays, {left:,} are left"
        )  # fmt: skip
        raise RecolorError(f"truncated record stream ({said})", where)


def check_finite(rec: Record) -> None:
    """Raise :class:`RecolorError` (naming :attr:`Record.where`) when a float array of ``rec``
    holds NaN or infinity; a Lab image's L and a/b are named apart: ``ab contains 2 NaN or
    infinite values``."""
    for key, arr in rec.arrays.items():
        if arr.dtype.kind != "f":
            continue
        parts = {"L": arr[..., :1], "ab": arr[..., 1:]} if key == "lab" else {key: arr}
        for what, part in parts.items():
            bad = part.size - int(np.count_nonzero(np.isfinite(part)))
            if bad:
                values = "value" + "s" * (bad != 1)
                raise RecolorError(f"{what} contains {bad} NaN or infinite {values}", rec.where)


def iter_records(stream: BinaryIO, source: str = "<stdin>", start: bytes = b"") -> Iterator[Record]:
    """Read records from a binary stream until it ends.

    Parameters
    ----------
    stream : binary file object
        Need not be seekable.
    source : str
        Name used in error messages (the file name, or ``-`` for stdin).
    start : bytes
        The stream's first bytes, already read from it (to tell a stream from an image): at
        most 12, a record prefix (ValueError else; 13 read the whole stream, then failed).

    Yields
    ------
    Record

    Raises
    ------
    RecolorError
        Bad magic (not a record stream), a newer format version, a corrupt header (not UTF-8,
        not JSON, fields missing, arrays larger than the pixel limit allows), truncation (also
        found before allocating, in a regular file shorter than its header promises), a CRC
        mismatch, or trailing data after the last record. An empty stream yields nothing. The
        values are not looked at: see :func:`check_finite`.
    """
    if len(start) > _PREFIX.size:
        raise ValueError(f"start holds at most {_PREFIX.size} bytes, got {len(start)}")
    count = 0
    while True:
        first = start + stream.read(_PREFIX.size - len(start))
        start = b""
        if not first:
            return
        if first[:4] != MAGIC[: len(first[:4])]:  # on what was read, however short
            if count:
                raise RecolorError(f"trailing data after record {count} (bad magic)", source)
            raise RecolorError("not a recolor record stream (bad magic)", source)
        if len(first) < _PREFIX.size:
            first += _read_exact(stream, _PREFIX.size - len(first), source, "a record prefix")
        magic, version, _flags, n = _PREFIX.unpack(first)
        if magic != MAGIC:
            raise RecolorError("not a recolor record stream (bad magic)", source)
        if version > VERSION:
            raise RecolorError(
                f"record format version {version} is newer than this recolor reads ({VERSION}); "
                "upgrade recolor",
                source,
            )
        if version < 1 or n > _MAX_HEADER:
            raise RecolorError(
                "corrupt record prefix"
                + (f" (header of {n:,} bytes, over {_MAX_HEADER:,})" if n > _MAX_HEADER else ""),
                source,
            )
        raw = _read_exact(stream, n, source, "a record header")
        head = _parse_header(raw, source)
        _check_available(
            stream,
            sum(math.prod(a["shape"]) * np.dtype(a["dtype"]).itemsize for a in head["arrays"]),
            _where(source, head["name"]),  # the record that does not fit, named as it names
        )
        crc = zlib.crc32(raw)
        arrays = {}
        for a in head["arrays"]:
            arr = np.empty(a["shape"], np.dtype(a["dtype"]))
            _read_into(stream, arr, source)
            crc = zlib.crc32(_bytes_of(arr), crc)
            arrays[a["name"]] = arr
        (want,) = _CRC.unpack(_read_exact(stream, _CRC.size, source, "a record checksum"))
        if want != crc:
            raise RecolorError("corrupt record (checksum mismatch)", source)
        count += 1
        meta = dict(head.get("meta") or {})
        yield Record(
            str(head["name"]), head["size"], arrays, meta, head.get("source"), file=head.get("file")
        )


def is_record_stream(prefix: bytes) -> bool:
    """True when ``prefix`` (the first bytes of a file) starts a record stream."""
    return prefix[:4] == MAGIC
