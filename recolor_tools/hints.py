"""Colour hints and palettes: what the user says about the colours, parsed and placed (no torch).

Two kinds of guidance steer a prediction (:mod:`recolor_tools.guide` does the steering):

- *points*: "the colour at (x, y) is this", each covering a square of ``size`` pixels centred on
  (x, y) (default 1). Given on the command line (``--hint 120,340=#c0392b``, x and y in pixels
  from the top-left, or ``50%,20%`` of the width and height), in a JSON file, or as a PNG hint
  layer in which every pixel with alpha > 0 is a one-pixel hint of its own colour;
- a *palette*: a colour distribution the image should follow, from a list of colours with
  optional weights (``'#e63946,#f1faee:0.5'``) or from all the pixels of a reference image.

Only the a/b (CIELAB chroma, about [-128, 127]) of a hint colour is used: the image keeps its
own lightness L in [0, 100], as in Zhang et al. 2017, whose hints are a/b too.

Palettes are parsed by :mod:`recolor_tools.palettes`; hint files (JSON, PNG layers,
directories of them) are read by :mod:`recolor_tools.hintfiles`.

References
----------
.. [1] R. Zhang, J.-Y. Zhu, P. Isola, X. Geng, A. S. Lin, T. Yu, A. A. Efros, "Real-Time
   User-Guided Image Colorization with Learned Deep Priors", SIGGRAPH 2017.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt

from .color import rgb_to_lab
from .errors import RecolorError, is_real, printable
from .records import fields_equal

_MAX_SQUARE = int(np.iinfo(np.int32).max)
"""Largest side of a hint's square, in pixels (it is stored as int32; the image clips it)."""
MAX_STRENGTH = 1e6
"""Largest ``--hint-strength``: a reached cell is the hint's long before, and gamma * similarity
in float32 overflows near 3e38 (inf / inf: NaN shares, which left cells automatic)."""


def check_strength(strength: float | None, what: str = "hint strength") -> None:
    """ValueError unless ``strength`` (named ``what``) is None or a number from 0 to
    :data:`MAX_STRENGTH` (NaN fails too)."""
    if strength is not None and not (is_real(strength) and 0 <= strength <= MAX_STRENGTH):
        raise ValueError(f"{what} must be a number from 0 to {MAX_STRENGTH:g}, got {strength!r}")


SPREADS = ("alike", "region")
"""Where point hints spread (:attr:`Hints.spread`; ``predict --hint-spread``)."""
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_EMPTY2 = np.zeros((0, 2), np.float32)


def parse_color(text: str) -> np.ndarray:
    """a/b of a hex sRGB colour ``#rrggbb`` or ``#rgb`` (the ``#`` optional), float32 (2,).

    Raises
    ------
    ValueError
        Not a hex colour.
    """
    return parse_colors([text])[0]


def parse_colors(texts: Sequence[str]) -> np.ndarray:
    """(N, 2) float32 a/b of N hex colours (:func:`parse_color`), converted in one call."""
    if isinstance(texts, str | bytes):  # iterated, "#ff0000" was the colours "#", "f", ...
        raise ValueError(f"colours must be a sequence of colours, not the text {texts!r}")
    rgb = np.array([_hex_rgb(t) for t in texts], np.float32).reshape(1, -1, 3) / 255
    return np.ascontiguousarray(rgb_to_lab(rgb)[0, :, 1:]) if len(texts) else _EMPTY2.copy()


def _hex_rgb(text: str) -> list[int]:
    m = _HEX.fullmatch(text.strip()) if isinstance(text, str) else None  # JSON: any type
    if not m:
        raise ValueError(f"colour {shown(text)} is not #rrggbb or #rgb")
    h = m.group(1) if len(m.group(1)) == 6 else "".join(c * 2 for c in m.group(1))
    return [int(h[i : i + 2], 16) for i in (0, 2, 4)]


def shown(value: object) -> str:
    """A value as a hint file spells it: JSON's ``true`` and ``null``, not Python's; text
    quoted; numbers (numpy's too: ``5``, not ``np.int64(5)``) as they read."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):  # one line: a 400-digit text was echoed whole
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, dict | list):  # JSON's {"a": 1}, not Python's {'a': 1}; one line
        try:
            text = json.dumps(value, default=str)
        except RecursionError:  # nested as deep as json.loads could read: its opening says it
            return ("[" if isinstance(value, list) else "{") * 40 + "..."
        return text if len(text) <= 40 else text[:40] + "..."
    return str(value)


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""Decimal notation, as JSON writes numbers (Python's ``float`` also takes ``1_0``, other
scripts' digits and ``inf``)."""


def parse_number(text: str) -> float:
    """``text`` in :data:`_NUMBER`'s notation as a float, else NaN."""
    return float(text) if _NUMBER.fullmatch(text) else np.nan


def _coord(value: object) -> tuple[float, bool]:
    """``"120"`` or 120 -> (120, False) pixels; ``"50%"`` -> (50, True) percent."""
    if type(value) is int or type(value) is float:  # JSON's numbers: no text to read
        pct = False
        try:
            v = float(value) if math.isfinite(value) else np.nan  # (a float inf: not a number)
        except OverflowError:  # an integer of hundreds of digits
            v = np.inf
    else:
        t = (value if isinstance(value, str) else shown(value)).strip()
        pct = t.endswith("%")
        v = parse_number(t[:-1].rstrip() if pct else t)
    if not np.isfinite(v):
        why = "is out of range" if np.isinf(v) else "is not a number"
        raise ValueError(f"coordinate {shown(value)} {why}")
    return v, pct


def parse_points(xy: npt.ArrayLike | Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Points as given -> ``(values, percent)``, two (N, 2) arrays: the coordinates (int64 when
    all are whole pixels, else float64) and whether each is a percentage (of the width for x,
    the height for y) rather than pixels.

    ``xy`` is an (N, 2) array of pixels, or pairs of numbers or strings (``"120"``, ``"50%"``).

    Raises
    ------
    ValueError
        A coordinate that is not a number.
    """
    if isinstance(xy, str | bytes):  # iterated, "12" was the point (1, 2)
        raise ValueError(f"points must be pairs of coordinates, not the text {xy!r}")
    if isinstance(xy, np.ndarray) and xy.dtype.kind in "iuf":  # pixels (a painted layer)
        if xy.size and (xy.ndim != 2 or xy.shape[1] != 2):  # (N, 3) was read as pairs
            raise ValueError(f"points must be an (N, 2) array, got {xy.shape}")
        values = xy.reshape(-1, 2).astype(np.int64 if xy.dtype.kind in "iu" else np.float64)
        if values.dtype.kind == "f" and not np.isfinite(values).all():  # NaN: int64's minimum
            raise ValueError(f"coordinate {values[~np.isfinite(values)][0]} is not a number")
        return values, np.zeros(values.shape, bool)
    parsed = [_coord(c) for pair in sized_tuples(xy, "points", "x, y") for c in pair]
    values = np.array([v for v, _ in parsed], np.float64).reshape(-1, 2)
    percent = np.array([pc for _, pc in parsed], bool).reshape(-1, 2)
    whole = np.all(values == np.floor(values)) and np.all(np.abs(values) < 2**53)
    if not percent.any() and whole:  # whole pixels (that int64 holds): keep them so
        values = values.astype(np.int64)
    return values, percent


def to_pixels(
    values: np.ndarray,
    percent: np.ndarray,
    H: int,
    W: int,
    what: str = "hint point",
    of: str = "",
) -> np.ndarray:
    """(N, 2) int64 pixel (x, y) of points (:func:`parse_points`) in an (H, W) image.

    Percentages are of the width (x) and height (y), ``100%`` the last pixel; fractions are
    floored, of the value as written (``65.1%`` of 1000 px is pixel 651, though 65.1 * 1000 /
    100 is 650.99999999999994 in binary floating point).

    Raises
    ------
    RecolorError
        A point outside the image (``what`` names it in the message).
    """
    if values.dtype.kind in "iu":  # pixels already (a painted layer: maybe millions)
        bad = ((values < 0) | (values >= [W, H])).any(axis=1)
        if not bad.any():
            return values.astype(np.int64, copy=False)
        values = values.astype(np.float64)
    size = np.array([W, H], np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 px: outside, said below
        # a percentage rounded to 1e-9 px first: the binary error of a decimal's product
        px = np.where(percent, np.floor(np.round(values * size / 100, 9)), np.floor(values))
    # up to 100% is inside: not one past the last pixel (99.99999999999999% rounds to it too)
    px = np.where(percent & (values <= 100), np.minimum(px, size - 1), px)
    bad = ((px < 0) | (px >= size)).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        x, y = (_given(values[i, c], percent[i, c]) for c in (0, 1))
        raise RecolorError(f"{what} ({x}, {y}){of} is outside the {W}x{H} image")
    return px.astype(np.int64)


def resolve_points(
    xy: list[tuple], H: int, W: int, what: str = "hint point"
) -> list[tuple[int, int]]:
    """Pixel (x, y) of each coordinate pair in an (H, W) image (see :func:`to_pixels`)."""
    return [(int(x), int(y)) for x, y in to_pixels(*parse_points(xy), H, W, what)]


def _given(v: float, percent: bool) -> str:
    """A coordinate for a message: ``120``, ``12.5``, ``50%`` or ``1e+20`` (``52.0`` prints as
    ``52``)."""
    text = str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else str(float(v))
    return text + "%" * bool(percent)


_FIELDS = (
    ("ab", (2,), np.float32),
    ("size", (), np.int32),
    ("palette_ab", (2,), np.float32),
    ("palette_w", (), np.float32),
)
"""The array fields of :class:`Hints` checked on construction: their row shapes and dtypes."""


def _field(name: str, value: npt.ArrayLike, row: tuple[int, ...], dtype: type | None) -> np.ndarray:
    """``value`` as a finite ``dtype`` (None: its own) array of rows of shape ``row`` (no copy if
    it is one); ValueError naming the field ``name`` otherwise."""
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape((0, *row))
    if arr.ndim != 1 + len(row) or arr.shape[1:] != row or arr.dtype.kind not in "iuf":
        want = f"(N, {row[0]})" if row else "(N,)"
        raise ValueError(f"Hints: {name} must be a {want} array of numbers, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"Hints: {name} holds NaN or infinity")
    if dtype is None:
        return arr
    if np.dtype(dtype).kind == "i" and arr.dtype != dtype and not _whole(arr):
        raise ValueError(f"Hints: {name} must be whole numbers of pixels")
    with np.errstate(over="ignore"):  # said below, in the field's words
        out = arr.astype(dtype, copy=False)
    if not np.isfinite(out).all():  # 1e39 is finite, and float32's infinity
        raise ValueError(f"Hints: {name} holds a value beyond float32's range")
    return out


def _whole(arr: np.ndarray) -> bool:
    """True when every value of ``arr`` is a whole number that int32 holds."""
    return bool((arr == np.round(arr)).all() and (np.abs(arr) <= np.iinfo(np.int32).max).all())


def _origin(a: Hints, b: Hints) -> str | None:
    """The file the points of ``a + b`` came from: the one side's that holds points (or, where
    neither does, a layer's size); None where both hold points."""
    if len(a.xy) and len(b.xy):
        return None
    return b.origin if len(b.xy) or (not len(a.xy) and b.shape) else a.origin


@dataclass(frozen=True, eq=False)
class Hints:
    """Points and a palette for one image.

    Attributes
    ----------
    xy : (N, 2) ndarray
        Point positions as given (pixels, or percentages where ``percent`` says so; pairs of
        numbers or strings such as ``"50%"`` are parsed on construction, see
        :func:`parse_points`; int64 when all are whole pixels, else float64), int64 pixels
        once :meth:`resolve`-d.
    ab : (N, 2) float32
        a/b of each point.
    size : (N,) int
        Side in pixels of the square each point covers (odd sides centre on the point).
    palette_ab, palette_w : (M, 2) float32, (M,) float32
        Palette colours (a/b) and their weights (> 0).
    shape : (H, W) or None
        The image size the points were resolved for (or a hint layer was painted at).
    percent : (N, 2) bool ndarray
        Which coordinates of ``xy`` are percentages (none once resolved).
    strength : float or None
        How strongly and how far the points spread (``predict --hint-strength``; the gamma of
        :mod:`recolor_tools.guide`); None: :data:`recolor_tools.guide.GAMMA`.
    spread : str
        Where the points spread (``predict --hint-spread``, :data:`SPREADS`): ``"alike"`` to the
        regions that look like theirs nearby, across edges; ``"region"`` through the region
        each is in, stopping at edges (:func:`recolor_tools.guide.region_shares`).
    origin : str or None
        The hint file the points (or the layer) came from, named in the errors about them
        (:func:`recolor_tools.hintfiles.read_hints`); None for points from the command line,
        or from there and a file together.
    layer : str or None
        The hint layer file ``shape`` came from (named when it is not the image's size, also
        beside points from elsewhere).

    Points are arrays, not lists of pairs: a painted layer can hold millions.
    """

    xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    ab: np.ndarray = field(default_factory=lambda: _EMPTY2)
    size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    palette_ab: np.ndarray = field(default_factory=lambda: _EMPTY2)
    palette_w: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    shape: tuple[int, int] | None = None
    percent: np.ndarray | None = None
    strength: float | None = None
    spread: str = "alike"
    origin: str | None = None
    layer: str | None = None

    __eq__ = fields_equal  # field by field, arrays by value

    def __post_init__(self) -> None:
        if self.spread not in SPREADS:
            raise ValueError(f"hint spread {self.spread!r} is not one of {', '.join(SPREADS)}")
        check_strength(self.strength)
        if self.percent is None:  # frozen: the normalised fields are set once, here
            xy, percent = parse_points(self.xy)
            object.__setattr__(self, "xy", xy)
            object.__setattr__(self, "percent", percent)
        else:  # given parsed (resolve, +): checked as parse_points checks (a NaN became -2**63)
            object.__setattr__(self, "xy", _field("xy", self.xy, (2,), None))
            percent = np.asarray(self.percent)
            if percent.shape != self.xy.shape or percent.dtype != bool:
                raise ValueError(f"Hints: percent must be an (N, 2) bool array like xy, got "
                                 f"{percent.dtype} {percent.shape}")  # fmt: skip
        if not (len(self.xy) == len(self.percent) == len(self.ab) == len(self.size)):
            raise ValueError("Hints: xy, percent, ab and size must have one row per point")
        # checked here, not where they are used: a zero palette weight made every output pixel
        # NaN (black), a NaN a/b a NaN pixel, a size of 0 dropped its point unsaid
        for name, shape, dtype in _FIELDS:
            object.__setattr__(self, name, _field(name, getattr(self, name), shape, dtype))
        if len(self.size) and not (self.size >= 1).all():
            raise ValueError(f"Hints: size must be 1 or more pixels, got {self.size.min()}")
        if len(self.palette_w) != len(self.palette_ab):
            raise ValueError("Hints: palette_ab and palette_w must have one row per colour")
        if len(self.palette_w) and not (self.palette_w > 0).all():
            raise ValueError("Hints: palette_w must be positive")

    @property
    def empty(self) -> bool:
        return len(self.xy) == 0 and len(self.palette_w) == 0

    def __add__(self, other: Hints) -> Hints:
        if self.shape and other.shape and self.shape != other.shape:
            raise RecolorError(f"hint layers of two sizes ({self.shape} and {other.shape})")
        if not len(other.xy):  # no copy of a layer's millions of points
            points = self
        elif not len(self.xy):
            points = other
        else:
            points = Hints(
                np.concatenate([self.xy, other.xy]),
                np.concatenate([self.ab, other.ab]),
                np.concatenate([self.size, other.size]),
                percent=np.concatenate([self.percent, other.percent]),
            )
        return replace(
            points,
            palette_ab=np.concatenate([self.palette_ab, other.palette_ab]),
            palette_w=np.concatenate([self.palette_w, other.palette_w]),
            shape=self.shape or other.shape,
            strength=self.strength if other.strength is None else other.strength,
            spread=self.spread if other.spread == "alike" else other.spread,
            origin=_origin(self, other),
            layer=self.layer or other.layer,
        )

    def resolve(self, H: int, W: int) -> Hints:
        """These hints in pixels of an (H, W) image.

        Raises
        ------
        RecolorError
            A point outside the image, or a hint layer of another size.
        """
        of = "" if self.origin is None else f" of {printable(self.origin)}"  # which file
        if self.shape is not None and self.shape != (H, W):
            h, w = self.shape
            layer = self.layer or self.origin
            of_layer = "" if layer is None else f" of {printable(layer)}"
            raise RecolorError(f"the hint layer{of_layer} is {w}x{h}, the image {W}x{H}")
        xy = to_pixels(self.xy, self.percent, H, W, of=of)
        return replace(self, xy=xy, percent=np.zeros(xy.shape, bool), shape=(H, W))

    def squares(self, which: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(N, 4) int [x0, y0, x1, y1) of each point's square (or of the points ``which``
        picks), clipped to the image (resolved hints)."""
        H, W = self.shape
        size = self.size[which]
        lo = self.xy[which].astype(np.int64) - ((size - 1) // 2)[:, None]
        hi = lo + size[:, None]
        return np.concatenate([np.maximum(lo, 0), np.minimum(hi, [W, H])], axis=1)

    def paste(self, ab: np.ndarray, row0: int) -> None:
        """Write each point's a/b over its square, in place, in rows [row0, row0 + len(ab)).

        This is what makes a hint hold at its own pixels whatever the model chose. Where squares
        overlap, the point given later wins (a detail inside a larger square holds).
        """
        if not len(self.xy):
            return
        one, latest = self._strip(row0, row0 + ab.shape[0])
        if latest is None:  # a painted layer's pixels (in order: later wins)
            ab[self.xy[one, 1] - row0, self.xy[one, 0]] = self.ab[one]
            return
        hit = latest >= 0
        ab[hit] = self.ab[latest[hit]]

    def _strip(self, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The one-pixel points in rows [row0, row1) (in the order given), and where a larger
        square reaches those rows, which point each of their pixels shows: the latest that
        covers it (the largest index; -1 none), else None."""
        order, rows, big, big_sq = self._by_row
        one = order[np.searchsorted(rows, row0) : np.searchsorted(rows, row1)]
        # the squares that reach these rows, found at once (a loop over every square, for each
        # strip, took 10 ms a call with 10,000 squares: --suggest at 1,000 points, 10 s)
        reach = np.flatnonzero((big_sq[:, 1] < row1) & (big_sq[:, 3] > row0))
        here = list(zip(big[reach].tolist(), big_sq[reach].tolist(), strict=True))
        if not here:
            return one, None
        # (Each square used to search the one-pixel points after it: squares x points work,
        # 65 s for 400,000 points of sizes 1 and 2.)
        latest = np.full((row1 - row0, self.shape[1]), -1, np.int64)
        np.maximum.at(latest, (self.xy[one, 1] - row0, self.xy[one, 0]), one)
        for i, (x0, y0, x1, y1) in here:
            block = latest[max(y0, row0) - row0 : min(y1, row1) - row0, x0:x1]
            np.maximum(block, i, out=block)
        return one, latest

    @cached_property
    def showing(self) -> np.ndarray:
        """(N,) int64: the pixels at which each point shows in :meth:`paste` (a point that a
        later one covers shows nowhere), counted in strips of about 4 M pixels."""
        (H, W), shown = self.shape, np.zeros(len(self.xy), np.int64)
        flat = self.xy[:, 1] * W + self.xy[:, 0]
        if (self.size == 1).all() and (flat[1:] > flat[:-1]).all():  # a layer's pixels, in order
            return shown + 1
        step = max(1, (1 << 22) // W)
        for row0 in range(0, H, step):
            one, latest = self._strip(row0, min(H, row0 + step))
            if latest is None and len(one):  # of the one-pixel points on a pixel, the last
                flat = self.xy[one, 1] * W + self.xy[one, 0]
                order = np.argsort(flat, kind="stable")  # timsort: a layer's pixels come sorted
                flat = flat[order]
                shown[one[order[np.append(flat[1:] != flat[:-1], True)]]] += 1
            elif latest is not None:
                shown += np.bincount(latest[latest >= 0], minlength=len(shown))
        return shown

    @cached_property
    def _by_row(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The one-pixel points in order of their row (stable: a later point still wins), those
        rows, the larger squares' indices and squares: so that each strip :meth:`paste` writes
        finds its points without scanning them all (a painted layer: millions)."""
        one = np.flatnonzero(self.size == 1)
        order = one[np.argsort(self.xy[one, 1], kind="stable")]
        big = np.flatnonzero(self.size > 1)
        return order, self.xy[order, 1], big, self.squares(big)

    def cells(
        self, hw: tuple[int, int], stride: int, grid: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The points gathered on the network's output grid.

        Full-resolution pixel (x, y) lies in working pixel ``(x + 0.5) w / W`` and so in output
        cell ``floor((x + 0.5) w / (W stride))``. Points in one cell become one hint: the mean
        of their a/b weighted by the pixels at which each shows (:meth:`paste`: a point given
        later covers an earlier one where they overlap, so a ``--hint`` on a hint file's point
        replaces it rather than mixing with it).

        Returns
        -------
        cell : (K,) int64
            Flat index ``row * grid[1] + col`` of each hinted cell.
        ab : (K, 2) float32
            Its mean hint a/b.
        """
        if not len(self.xy):
            return np.zeros(0, np.int64), _EMPTY2
        (H, W), (h, w) = self.shape, hw
        xy = self.xy.astype(np.float64)
        cx = np.clip(((xy[:, 0] + 0.5) * w / (W * stride)).astype(np.int64), 0, grid[1] - 1)
        cy = np.clip(((xy[:, 1] + 0.5) * h / (H * stride)).astype(np.int64), 0, grid[0] - 1)
        flat, n = cy * grid[1] + cx, grid[0] * grid[1]
        area = self.showing.astype(np.float64)
        wsum = np.bincount(flat, area, n)
        cell = np.flatnonzero(wsum)
        ab = np.stack([np.bincount(flat, area * self.ab[:, c], n)[cell] for c in (0, 1)], 1)
        return cell, (ab / wsum[cell, None]).astype(np.float32)


def point(x: float | str, y: float | str, color: str, size: int = 1) -> Hints:
    """One point hint; see :class:`Hints`. Raises ValueError on a bad colour or size."""
    return points([(x, y, color, size)])


def points(specs: Sequence[tuple[float | str, float | str, str, int]]) -> Hints:
    """Point hints ``(x, y, colour, size)`` (:func:`point`), built at once: a hint file of
    200,000 points took 38 s point by point (each joined to the others), 6 s so."""
    specs = sized_tuples(specs, "points", "x, y, colour, size")
    xy, percent = parse_points([(x, y) for x, y, _, _ in specs])  # now; resolved per image later
    sizes = []
    for _, _, _, given in specs:
        # a size written as text ("3", "3.0"), as coordinates and weights may be (in JSON's
        # notation; one of thousands of digits is left as text, refused below)
        size = parse_number(given.strip()) if isinstance(given, str) and len(given) <= 40 else given
        number = isinstance(size, int | float | np.integer) and not isinstance(size, bool)
        # the range first: float() of a 400-digit JSON integer overflows
        if not (number and 1 <= size <= _MAX_SQUARE and float(size).is_integer()):
            raise ValueError(f"hint size must be a whole number of pixels, 1 to {_MAX_SQUARE}: "
                             f"{shown(given)}")  # fmt: skip
        sizes.append(int(size))
    if not specs:
        return Hints()
    sizes = np.array(sizes, np.int32)
    return Hints(xy, parse_colors([color for _, _, color, _ in specs]), sizes, percent=percent)


def parse_hint(spec: str) -> Hints:
    """``X,Y=#RRGGBB`` (X and Y in pixels, or ``50%``) -> one point. Raises ValueError."""
    try:
        where, color = spec.split("=")
        x, y = where.split(",")
    except ValueError:
        raise ValueError(f"hint {spec!r} is not X,Y=#RRGGBB") from None
    return point(x, y, color)


def sized_tuples(items: Iterable, what: str, fields: str) -> list:
    """``items`` as a list, each a sequence of as many values as ``fields`` names (not a text),
    else a ValueError naming ``what`` (they were unpacked: "not enough values to unpack"). A
    list: an iterator checked here would reach its user empty."""
    items, n = list(items), fields.count(",") + 1
    for item in items:
        sized = isinstance(item, Sequence | np.ndarray) and not isinstance(item, str | bytes)
        if not (sized and len(item) == n):
            raise ValueError(f"{what} must be ({fields}) tuples, got {shown(item)}")
    return items
