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

JSON hint files hold ``{"points": [{"x": 120, "y": 340, "color": "#c0392b", "size": 3}, ...],
"palette": [{"color": "#e63946", "weight": 0.5}, ...]}``; either key may be absent.

References
----------
.. [1] R. Zhang, J.-Y. Zhu, P. Isola, X. Geng, A. S. Lin, T. Yu, A. A. Efros, "Real-Time
   User-Guided Image Colorization with Learned Deep Priors", SIGGRAPH 2017.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .color import rgb_to_lab
from .errors import RecolorError
from .imageio import decode_stored, read_bytes, read_rgb, resize_short_side

PALETTE_IMAGE_SIDE = 64
"""A palette image is shrunk to this shorter side first: its colour histogram barely changes
and the soft encoding then costs a few thousand pixels, not millions."""
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_EMPTY2 = np.zeros((0, 2), np.float32)


def parse_color(text: str) -> np.ndarray:
    """a/b of a hex sRGB colour ``#rrggbb`` or ``#rgb`` (the ``#`` optional), float32 (2,).

    Raises
    ------
    ValueError
        Not a hex colour.
    """
    m = _HEX.fullmatch(text.strip())
    if not m:
        raise ValueError(f"colour {text!r} is not #rrggbb or #rgb")
    h = m.group(1) if len(m.group(1)) == 6 else "".join(c * 2 for c in m.group(1))
    rgb = np.array([[[int(h[i : i + 2], 16) for i in (0, 2, 4)]]], np.float32) / 255
    return rgb_to_lab(rgb)[0, 0, 1:]


def _coord(text: str) -> tuple[float, bool]:
    """``"120"`` -> (120, False) pixels; ``"50%"`` -> (50, True) percent."""
    t = text.strip()
    pct = t.endswith("%")
    v = float(t[:-1] if pct else t)
    if not np.isfinite(v):
        raise ValueError(f"coordinate {text!r} is not a number")
    return v, pct


def resolve_points(
    xy: list[tuple], H: int, W: int, what: str = "hint point"
) -> list[tuple[int, int]]:
    """Pixel (x, y) of each coordinate pair in an (H, W) image (``what`` names a point in the
    error).

    Each coordinate is a number of pixels from the top-left, or a string (``"120"``,
    ``"50%"`` of the width or height); fractions are floored.

    Raises
    ------
    RecolorError
        A point outside the image.
    """
    out = []
    for x, y in xy:
        (vx, px), (vy, py) = (_coord(str(c)) for c in (x, y))
        ix = int(np.floor(vx * W / 100 if px else vx))
        iy = int(np.floor(vy * H / 100 if py else vy))
        if px and vx == 100:  # 100% is the last pixel, not one past it
            ix = W - 1
        if py and vy == 100:
            iy = H - 1
        if not (0 <= ix < W and 0 <= iy < H):
            raise RecolorError(f"{what} ({x}, {y}) is outside the {W}x{H} image")
        out.append((ix, iy))
    return out


@dataclass(frozen=True)
class Hints:
    """Points and a palette for one image.

    Attributes
    ----------
    xy : list of (x, y)
        Point positions as given (pixels or percent strings; see :func:`resolve_points`), or
        pixel ints once :meth:`resolve`-d.
    ab : (N, 2) float32
        a/b of each point.
    size : (N,) int
        Side in pixels of the square each point covers (odd sides centre on the point).
    palette_ab, palette_w : (M, 2) float32, (M,) float32
        Palette colours (a/b) and their weights (> 0).
    shape : (H, W) or None
        The image size the points were resolved for (or a hint layer was painted at).
    """

    xy: list = field(default_factory=list)
    ab: np.ndarray = field(default_factory=lambda: _EMPTY2)
    size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    palette_ab: np.ndarray = field(default_factory=lambda: _EMPTY2)
    palette_w: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    shape: tuple[int, int] | None = None

    @property
    def empty(self) -> bool:
        return len(self.xy) == 0 and len(self.palette_w) == 0

    def __add__(self, other: Hints) -> Hints:
        if self.shape and other.shape and self.shape != other.shape:
            raise RecolorError(f"hint layers of two sizes ({self.shape} and {other.shape})")
        return Hints(
            self.xy + other.xy,
            np.concatenate([self.ab, other.ab]),
            np.concatenate([self.size, other.size]),
            np.concatenate([self.palette_ab, other.palette_ab]),
            np.concatenate([self.palette_w, other.palette_w]),
            self.shape or other.shape,
        )

    def resolve(self, H: int, W: int) -> Hints:
        """These hints in pixels of an (H, W) image.

        Raises
        ------
        RecolorError
            A point outside the image, or a hint layer of another size.
        """
        if self.shape is not None and self.shape != (H, W):
            h, w = self.shape
            raise RecolorError(f"the hint layer is {w}x{h}, the image {W}x{H}")
        xy = np.asarray(self.xy).reshape(-1, 2)
        if xy.dtype.kind not in "iu":  # percent strings or fractions: one by one
            return replace(self, xy=resolve_points(self.xy, H, W), shape=(H, W))
        # pixels already (a painted layer: maybe a million points), checked at once
        bad = (xy[:, 0] < 0) | (xy[:, 0] >= W) | (xy[:, 1] < 0) | (xy[:, 1] >= H)
        if bad.any():
            resolve_points([tuple(xy[np.argmax(bad)])], H, W)  # raises, naming the point
        return replace(self, shape=(H, W))

    def squares(self) -> np.ndarray:
        """(N, 4) int [x0, y0, x1, y1) of each point's square, clipped to the image."""
        H, W = self.shape
        xy = np.asarray(self.xy, np.int64).reshape(-1, 2)
        lo = xy - ((self.size - 1) // 2)[:, None]
        hi = lo + self.size[:, None]
        return np.concatenate([np.maximum(lo, 0), np.minimum(hi, [W, H])], axis=1)

    def paste(self, ab: np.ndarray, row0: int) -> None:
        """Write each point's a/b over its square, in place, in rows [row0, row0 + len(ab)).

        This is what makes a hint hold at its own pixels whatever the model chose.
        """
        if not self.xy:
            return
        sq = self.squares()
        row1 = row0 + ab.shape[0]
        one = (self.size == 1) & (sq[:, 1] >= row0) & (sq[:, 1] < row1)
        ab[sq[one, 1] - row0, sq[one, 0]] = self.ab[one]  # a painted layer: many 1-px points
        for i in np.flatnonzero((self.size > 1) & (sq[:, 1] < row1) & (sq[:, 3] > row0)):
            x0, y0, x1, y1 = sq[i]
            ab[max(y0, row0) - row0 : min(y1, row1) - row0, x0:x1] = self.ab[i]

    def cells(
        self, hw: tuple[int, int], stride: int, grid: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The points gathered on the network's output grid.

        Full-resolution pixel (x, y) lies in working pixel ``(x + 0.5) w / W`` and so in output
        cell ``floor((x + 0.5) w / (W stride))``. Points in one cell become one hint: the mean
        of their a/b weighted by their area.

        Returns
        -------
        cell : (K,) int64
            Flat index ``row * grid[1] + col`` of each hinted cell.
        ab : (K, 2) float32
            Its mean hint a/b.
        """
        if not self.xy:
            return np.zeros(0, np.int64), _EMPTY2
        (H, W), (h, w) = self.shape, hw
        xy = np.asarray(self.xy, np.float64).reshape(-1, 2)
        cx = np.clip(((xy[:, 0] + 0.5) * w / (W * stride)).astype(np.int64), 0, grid[1] - 1)
        cy = np.clip(((xy[:, 1] + 0.5) * h / (H * stride)).astype(np.int64), 0, grid[0] - 1)
        cell, inv = np.unique(cy * grid[1] + cx, return_inverse=True)
        area = self.size.astype(np.float64) ** 2
        wsum = np.bincount(inv, area, len(cell))
        ab = np.stack([np.bincount(inv, area * self.ab[:, c], len(cell)) for c in (0, 1)], 1)
        return cell, (ab / wsum[:, None]).astype(np.float32)


def point(x: float | str, y: float | str, color: str, size: int = 1) -> Hints:
    """One point hint; see :class:`Hints`. Raises ValueError on a bad colour or size."""
    _coord(str(x)), _coord(str(y))  # noqa: B018 - validate now, resolve per image later
    if int(size) != size or size < 1:
        raise ValueError(f"hint size must be a positive integer, got {size!r}")
    return Hints([(x, y)], parse_color(color)[None], np.array([int(size)], np.int32))


def parse_hint(spec: str) -> Hints:
    """``X,Y=#RRGGBB`` (X and Y in pixels, or ``50%``) -> one point. Raises ValueError."""
    try:
        where, color = spec.split("=")
        x, y = where.split(",")
    except ValueError:
        raise ValueError(f"hint {spec!r} is not X,Y=#RRGGBB") from None
    return point(x, y, color)


def palette_from_list(text: str) -> Hints:
    """``'#e63946,#f1faee:0.5,#1d3557'`` (optional ``:weight``, default 1). Raises ValueError."""
    ab, w = [], []
    for item in filter(None, (t.strip() for t in text.split(","))):
        color, _, weight = item.partition(":")
        ab.append(parse_color(color))
        wt = float(weight) if weight else 1.0
        if not (np.isfinite(wt) and wt > 0):
            raise ValueError(f"palette weight {weight!r} is not a positive number")
        w.append(wt)
    if not ab:
        raise ValueError(f"palette {text!r} holds no colour")
    return Hints(palette_ab=np.array(ab, np.float32), palette_w=np.array(w, np.float32))


def palette_from_image(path: str | Path) -> Hints:
    """The colour distribution of an image (all its pixels, shrunk first; see
    :data:`PALETTE_IMAGE_SIDE`). Raises RecolorError if it cannot be read."""
    rgb = resize_short_side(read_rgb(path), PALETTE_IMAGE_SIDE, 1)
    ab = rgb_to_lab(rgb)[:, :, 1:].reshape(-1, 2)
    return Hints(palette_ab=ab, palette_w=np.ones(len(ab), np.float32))


def parse_palette(spec: str) -> Hints:
    """``--palette``: an image file if one exists at ``spec``, else a list of colours.

    Raises
    ------
    RecolorError
        An unreadable palette image, or text that is neither a file nor a colour list.
    """
    if Path(spec).exists():
        return palette_from_image(spec)
    if "#" not in spec:  # every listed colour starts with '#': this was meant as a file
        raise RecolorError("no such file (--palette takes an image or #rrggbb colours)", spec)
    try:
        return palette_from_list(spec)
    except ValueError as e:
        raise RecolorError(f"--palette is no image file and no colour list ({e})", spec) from None


def _from_json(data: bytes) -> Hints:
    doc = json.loads(data)
    if not isinstance(doc, dict) or set(doc) - {"points", "palette"}:
        raise ValueError('expected an object with "points" and/or "palette"')
    out = Hints()
    for p in doc.get("points") or []:
        out = out + point(p["x"], p["y"], p["color"], p.get("size", 1))
    pal = doc.get("palette") or []
    if pal:
        text = ",".join(f"{c['color']}:{c.get('weight', 1)}" for c in pal)
        out = out + palette_from_list(text)
    return out


def _from_layer(data: bytes, name: str) -> Hints:
    # imageio.read_rgb composites alpha on white; a hint layer needs the alpha itself.
    _, img = decode_stored(data, name)
    if img.ndim != 3 or img.shape[2] != 4:
        raise ValueError("a hint layer must be an image with an alpha channel")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    ys, xs = np.nonzero(img[:, :, 3])
    rgb = img[ys, xs, 2::-1].astype(np.float32)[None] / np.float32(scale)  # BGR -> RGB
    ab = rgb_to_lab(rgb)[0, :, 1:] if len(xs) else _EMPTY2
    xy = list(zip(xs.tolist(), ys.tolist(), strict=True))
    return Hints(xy, ab, np.ones(len(xs), np.int32), shape=img.shape[:2])


def read_hints(path: str | Path) -> Hints:
    """A hint file: JSON (``.json``) or a PNG hint layer (pixels with alpha > 0).

    Raises
    ------
    RecolorError
        Unreadable file, bad JSON, a colour that does not parse, an image without alpha.
    """
    data = read_bytes(path)
    try:
        if Path(path).suffix.lower() == ".json":
            return _from_json(data)
        return _from_layer(data, str(path))
    except (ValueError, KeyError, TypeError) as e:
        reason = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise RecolorError(f"bad hint file: {reason}", path) from None


HINT_EXTS = (".json", ".png")


def match_hint_files(
    hint_dir: str | Path, inputs: list[str], paths: list[str]
) -> tuple[dict[str, Path], list[RecolorError]]:
    """Pair each input file with its hint file in ``hint_dir``, as ``recolor compare`` pairs
    files: by the path below the directory, without extension.

    An input found in an input directory ``posters/`` as ``posters/a/b.jpg`` takes
    ``hint_dir/a/b.json`` or ``hint_dir/a/b.png``; an input named on its own, ``x/c.jpg``,
    takes ``hint_dir/c.*``.

    Returns
    -------
    pairs : dict
        Input path -> its hint file (inputs without one are absent: they are predicted
        automatically).
    problems : list of RecolorError
        A hint file for no input, or two hint files for one input.
    """
    hint_dir = Path(hint_dir)
    roots = [Path(a) for a in inputs if a != "-" and Path(a).is_dir()]

    def key(p: str) -> str:
        for r in roots:
            if Path(p).is_relative_to(r):
                return Path(p).relative_to(r).with_suffix("").as_posix()
        return Path(p).stem

    by_key = {key(p): p for p in paths if p != "-"}
    pairs: dict[str, Path] = {}
    problems: list[RecolorError] = []
    for f in sorted(hint_dir.rglob("*")):
        if not (f.is_file() and f.suffix.lower() in HINT_EXTS):
            continue
        k = f.relative_to(hint_dir).with_suffix("").as_posix()
        if k not in by_key:
            problems.append(RecolorError("hint file for no input", f))
        elif by_key[k] in pairs:
            problems.append(RecolorError(f"second hint file for {by_key[k]}", f))
        else:
            pairs[by_key[k]] = f
    return pairs, problems


class HintSource:
    """The hints of each input: those common to all, plus its own hint file, read when needed.

    Call it with an input path; it returns that input's :class:`Hints` (None without any).
    """

    def __init__(self, common: Hints, own: dict[str, Path] | None = None) -> None:
        self.common, self.own = common, own or {}

    def __call__(self, path: str) -> Hints | None:
        h = self.common
        if path in self.own:
            h = h + read_hints(self.own[path])
        return None if h.empty else h


def hint_source(
    points: list[str], hints: str | None, palette: str | None, inputs: list[str], paths: list[str]
) -> tuple[HintSource, list[RecolorError]]:
    """The :class:`HintSource` of ``recolor predict --hint ... --hints ... --palette ...``.

    Returns the source and the problems of a ``--hints`` directory (see
    :func:`match_hint_files`).

    Raises
    ------
    ValueError
        A ``--hint`` that does not parse (a usage error).
    RecolorError
        An unreadable or bad ``--hints`` file or ``--palette``.
    """
    common = Hints()
    for spec in points:
        common = common + parse_hint(spec)
    if palette is not None:
        common = common + parse_palette(palette)
    if hints is not None and Path(hints).is_dir():
        own, problems = match_hint_files(hints, inputs, paths)
        return HintSource(common, own), problems
    if hints is not None:
        common = common + read_hints(hints)
    return HintSource(common), []
