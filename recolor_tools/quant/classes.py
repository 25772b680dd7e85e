"""Class sets: validation of a/b input and of class sets, the gamut and data class sets, and
their files.

A *class set* is a (Q, 2) float32 array of a/b class centres (OpenCV float Lab convention, a/b
in about [-128, 127]); recolor's centres lie on a square grid (multiples of ``grid``):
:func:`gamut_classes` (cells the sRGB gamut reaches) and :func:`data_classes` (cells some data
occupies), stored with :func:`save_classes` / :func:`load_classes`. :func:`check_classes` is the
one validator of a class set, :func:`read_npz` the reader of recolor's small npz files.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from ..errors import RecolorError, check_count, is_real

MAX_CLASSES = 32767
"""Largest class set: class indices are stored as int16."""

CLASSES_FORMAT = "recolor-classes"
CLASSES_VERSION = 1


# --- validation -------------------------------------------------------------------------------


def check_ab(ab: np.ndarray, what: str = "ab", finite: bool = True) -> np.ndarray:
    """The one validator of a/b input: (..., 2) finite values, returned as C-contiguous float32
    (``finite=False`` leaves the test for NaN and infinities to the caller)."""
    arr = np.asarray(ab)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise ValueError(f"{what} must have shape (..., 2), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} must be a real number array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if finite and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{what} contains {bad} NaN or infinite value{'s' * (bad != 1)}")
    return arr


def check_classes(classes: np.ndarray) -> np.ndarray:
    """A valid class set as a read-only, C-contiguous float32 view: (Q, 2), 1 <= Q <= 32767,
    finite values. Read-only whatever it came from, since numba compiles a kernel once for each
    kind of array: the default set's (cached, read-only) and a file's (writable) compiled
    every kernel twice, 4.4 s the second time.

    Raises ValueError naming what is wrong (shape, dtype, Q out of range, NaN or infinity).
    """
    arr = check_ab(classes, "classes")
    if arr.ndim != 2 or not 1 <= arr.shape[0] <= MAX_CLASSES:
        raise ValueError(
            f"classes must have shape (Q, 2) with 1 <= Q <= {MAX_CLASSES}, got {arr.shape}"
        )
    view = arr.view()  # (the caller's own array keeps its flags)
    view.flags.writeable = False
    return view


def check_class_file(classes: np.ndarray) -> np.ndarray:
    """:func:`check_classes` of a class set read from a file, which also holds no centre twice
    (ten copies of (0, 0) made ten classes that split one colour's prior; the kernels break such
    ties to the lower index, so an array given to them may hold them)."""
    arr = check_classes(classes)
    if len(np.unique(arr, axis=0)) < len(arr):
        raise ValueError("classes holds a centre twice")
    return arr


# --- class sets -------------------------------------------------------------------------------


def _bin(ab: np.ndarray, grid: float) -> np.ndarray:
    """Index of the nearest multiple of ``grid`` per coordinate, halves going to the lower one.

    ``ceil(x / grid - 1/2)`` rather than ``round`` so that a point half-way between two centres
    belongs to the lower one, the same choice :func:`hard_encode` makes (centres sort by a,
    then b).
    """
    x = np.asarray(ab, dtype=np.float64) / grid
    if x.size and np.abs(x).max() >= 2**31:  # int64 wrapped round: centres of the wrong sign
        raise ValueError(f"a/b values {np.abs(x).max() * grid:g} from 0 are more than 2**31 "
                         f"cells of grid {grid:g} away")  # fmt: skip
    return np.ceil(x - 0.5).astype(np.int64)


def _centres(cells: np.ndarray, grid: float, min_count: int = 1) -> np.ndarray:
    """(Q, 2) float32 centres of the cells holding at least ``min_count`` of ``cells``, sorted
    by a, then b; more than :data:`MAX_CLASSES` is a ValueError (no function takes them)."""
    # Each (a, b) cell as one complex number: numpy sorts complex numbers by the real part, then
    # the imaginary, so the order is the same, and a plain sort is some 14x faster than
    # np.unique(axis=0)'s sort of row records (0.7 s of every quantize run's start went there).
    # Cells are integers below 2**31 (_bin), exact in float64.
    pairs = np.ascontiguousarray(cells.reshape(-1, 2), dtype=np.float64).view(np.complex128)
    uniq, counts = np.unique(pairs.ravel(), return_counts=True)
    uniq = np.stack([uniq.real, uniq.imag], axis=1)[counts >= min_count]
    if len(uniq) > MAX_CLASSES:
        raise ValueError(f"grid {grid:g} gives {len(uniq)} classes, more than {MAX_CLASSES}: "
                         "use a coarser grid")  # fmt: skip
    return np.ascontiguousarray(uniq * grid, dtype=np.float32).reshape(-1, 2)


def check_grid(grid: float) -> float:
    """``grid``, the side of a class cell in a/b units, where it is a positive finite number
    (a bool is none: True was saved as 1.0), else a ValueError."""
    if not is_real(grid) or grid <= 0:
        raise ValueError(f"grid must be a positive number, got {grid!r}")
    return grid


@functools.lru_cache(maxsize=8)
def _gamut_classes(grid: float) -> np.ndarray:
    import cv2

    # The a/b shadow of the sRGB solid is the shadow of its surface, so the six faces of the
    # 8-bit RGB cube (6 x 256^2 colours) reach every cell that the whole cube does.
    v = np.arange(256, dtype=np.float32) / 255.0
    u, w = (x.ravel() for x in np.meshgrid(v, v, indexing="ij"))
    faces = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        for value in (0.0, 1.0):
            face = np.empty((u.size, 3), np.float32)
            face[:, axis] = value
            face[:, others[0]], face[:, others[1]] = u, w
            faces.append(face)
    rgb = np.concatenate(faces)[:, None, :]
    # OpenCV's own conversion (color.rgb_to_lab's, up to its table's 0.4 a/b units): the class
    # sets stay those that every shipped and trained model holds
    ab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[:, 0, 1:]
    centres = _centres(_bin(ab, grid), grid)
    centres.flags.writeable = False
    return centres


def gamut_classes(grid: float = 8) -> np.ndarray:
    """The class set of grid cells that the sRGB gamut reaches.

    Parameters
    ----------
    grid : float, default 8
        Spacing of the class centres in a/b units; centres are the multiples of ``grid``.

    Returns
    -------
    classes : (Q, 2) float32, read-only
        Centres ``(a, b)`` of every square cell ``(c - grid/2, c + grid/2]`` (per coordinate:
        a half-way value belongs to the lower centre, as in :func:`hard_encode`) that holds the
        a/b of at least one 8-bit sRGB colour (any L; as OpenCV's conversion gives it), sorted
        by a, then b. Q = 395 for grid 8 (the seed's setting; its posters occupy 394 of them)
        and 262 for grid 10 (one cell there, (20, -80), holds an 8-bit colour only by OpenCV's
        table rounding, 0.2 b units; colours between the 8-bit codes do reach it). Zhang et
        al. [1] report 313 at grid 10 with their own gamut test; the count depends on how the
        gamut is sampled and binned.

    Notes
    -----
    Colours are the six faces of the 8-bit RGB cube, converted with OpenCV's float
    ``COLOR_RGB2Lab`` (D65), each binned to its nearest centre (a half-way value goes to the
    lower centre). The result is memoised.
    """
    return _gamut_classes(float(check_grid(grid)))


def data_classes(ab: np.ndarray, grid: float = 8, min_count: int = 1) -> np.ndarray:
    """The class set of grid cells that the given a/b data occupies.

    Parameters
    ----------
    ab : (..., 2) array_like
        a/b values (OpenCV float Lab, about [-128, 127]), e.g. ``lab[..., 1:]`` of many
        images stacked.
    grid : float, default 8
        Spacing of the class centres, a/b units.
    min_count : int, default 1
        Keep cells holding at least this many values.

    Returns
    -------
    classes : (Q, 2) float32
        Centres (multiples of ``grid``) of the occupied cells, sorted by a, then b; Q may be 0.
    """
    grid = check_grid(grid)
    check_count("min_count", min_count)
    return _centres(_bin(check_ab(ab).reshape(-1, 2), grid), grid, min_count)


def save_classes(path: str | Path, classes: np.ndarray, grid: float) -> None:
    """Write a class set to ``path`` (npz; written atomically).

    The file holds ``format`` = ``"recolor-classes"``, ``version`` = 1, ``classes`` (Q, 2)
    float32 and ``grid`` (float64 scalar). Raises ValueError as :func:`check_class_file` (a
    centre twice too) or for a grid that is no positive number.
    """
    from ..fileio import atomic_open, write_npz

    classes = check_class_file(classes)  # what load_classes reads back
    with atomic_open(path) as f:
        write_npz(
            f,
            format=np.array(CLASSES_FORMAT),
            version=np.array(CLASSES_VERSION),
            classes=classes,
            grid=np.array(float(check_grid(grid))),
        )


class WrongFormat(RecolorError):
    """A file that is not the kind of recolor npz file asked for (not an npz, or another tag)."""


def read_npz_bytes(path: str | Path) -> bytes:
    """The bytes of an npz file named as an option (``--stats``, ``--classes``; ``-`` is
    stdin, where the tool allows it). Read whole first: np.load seeks, which a pipe (``--stats
    <(...)``) cannot; and a folder or an unreadable file gets its own reason, not "not a ...
    file"."""
    from ..fileio import read_bytes

    if os.path.isdir(path):
        raise RecolorError("is a directory", path)
    return read_bytes(path)


def read_npz(
    path: str | Path, fmt: str, version: int, keys: tuple[str, ...], raw: bytes | None = None
) -> dict:
    """Load a small recolor npz file, checking its format tag and version.

    Shared by the class and rebalancing files. Raises :class:`RecolorError` naming ``path``
    for a missing, unreadable, foreign (:class:`WrongFormat`), newer or incomplete file; never
    unpickles. ``raw``: the file's bytes, read already (a pipe cannot be read twice).
    """
    import io
    import tokenize
    import zipfile
    import zlib

    if raw is None:
        raw = read_npz_bytes(path)
    kind = _KINDS.get(fmt, fmt)  # as the user knows the file: by the tool that writes it
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:  # (a .npy, one array, is no archive)
            data = {k: _npz_member(z, f"{k}.npy") for k in ("format", "version", *keys)
                    if f"{k}.npy" in z.NameToInfo}  # fmt: skip
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError,
            tokenize.TokenError, NotImplementedError, RuntimeError):  # fmt: skip
        # (numpy's header parser raises the tokenizer's errors; zipfile an encrypted member's
        # RuntimeError and an unknown compression's NotImplementedError)
        raise WrongFormat(f"not a {kind} file", path) from None
    if str(data.get("format", "")) != fmt:
        raise WrongFormat(f"not a {kind} file (format tag missing or wrong)", path)
    try:
        got = int(data["version"])
    except (KeyError, TypeError, ValueError):
        raise RecolorError(f"{kind} file without a valid version", path) from None
    if got > version:  # said as checkpoints and records say it
        raise RecolorError(
            f"{kind} file version {got} is newer than this recolor reads ({version}); upgrade "
            "recolor",
            path,
        )
    if got != version:
        raise RecolorError(f"{kind} file version {got}, this recolor reads version {version}", path)
    missing = [k for k in keys if k not in data]
    if missing:
        raise RecolorError(f"{kind} file lacks {', '.join(missing)}", path)
    return data


_NPZ_MEMBER_BYTES = 16 << 20
"""The most an array of a class or stats file may hold: its largest, a centre per class, is
0.5 MB at :data:`MAX_CLASSES`. A member declaring more is refused before it is read (a zip of
400 KB expanded to 400 MB, and every member was loaded, wanted or not)."""


def _npz_member(z, name: str) -> np.ndarray:
    """Array ``name`` of the open npz archive ``z``, its declared size checked first."""
    from numpy.lib import format as npy

    with z.open(name) as f:
        major, _ = npy.read_magic(f)
        header = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
        shape, _, dtype = header(f)
    if dtype.hasobject or math.prod(shape) * dtype.itemsize > _NPZ_MEMBER_BYTES:
        raise ValueError(name)
    with z.open(name) as f:
        return npy.read_array(f, allow_pickle=False)


_KINDS = {CLASSES_FORMAT: "class-set", "recolor-rebalance": "rebalance-stats"}
"""The names :func:`read_npz`'s errors give the files of each format tag."""


def load_classes(path: str | Path, raw: bytes | None = None) -> tuple[np.ndarray, float]:
    """Read a class set written by :func:`save_classes` (``raw``: its bytes, read already).

    Returns
    -------
    classes : (Q, 2) float32
    grid : float

    Raises
    ------
    RecolorError
        Missing file, not an npz, wrong format tag or version, or invalid contents.
    """
    data = read_npz(path, CLASSES_FORMAT, CLASSES_VERSION, ("classes", "grid"), raw)
    try:
        return check_class_file(data["classes"]), check_grid(float(data["grid"]))
    except (ValueError, TypeError) as e:
        raise RecolorError(f"invalid class set: {e}", path) from None
