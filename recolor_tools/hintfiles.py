"""Hint files: JSON points and palettes, PNG hint layers, directories of them matched to the
inputs, and the hints of each input of a ``recolor predict`` run (no torch).

A JSON hint file holds ``{"points": [{"x": 120, "y": 340, "color": "#c0392b", "size": 3}, ...],
"palette": [{"color": "#e63946", "weight": 0.5}, ...]}`` (either key may be absent; an empty
file is no hints); a PNG hint layer is an image with alpha whose every pixel with alpha > 0 is
a one-pixel hint of its own colour. :mod:`recolor_tools.hints` holds what the hints are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .color import rgb_to_lab, to_float
from .errors import RecolorError, printable
from .fileio import read_bytes
from .hints import Hints, check_strength, parse_hint, points
from .imageio import decode_stored
from .imagemeta import in_srgb, read_meta, upright
from .inputs import input_name, input_roots
from .palettes import palette, parse_palette


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object; a key given twice is refused (the last one would drop the first's hints
    without a word, as a typo would)."""
    doc = dict(pairs)
    if len(doc) < len(pairs):
        seen = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {key!r} given twice in one object")
    return doc


_JSON_DIGITS = 40
"""Most digits of a JSON integer in a hint file (a pixel, a size, a weight up to 1e30 written
out: none needs more)."""


def _json_int(text: str) -> int:
    """A JSON integer; one of thousands of digits is refused in plain words (Python's own
    refusal, past 4,300 digits, advises ``sys.set_int_max_str_digits``)."""
    digits = len(text.lstrip("-"))
    if digits > _JSON_DIGITS:
        raise ValueError(f"number {text[:20]}... ({digits} digits) is too large")
    return int(text)


def _json_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one beyond float's range (``1e999``) is refused
    as written, not as the infinity it would be read as."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is too large")
    return value


def _json_constant(text: str) -> float:
    """``NaN``, ``Infinity``, ``-Infinity``: Python's json reads them, JSON has none."""
    raise ValueError(f"{text} is not a JSON number")


def _from_json(data: bytes) -> Hints:
    if _blank(data):  # empty (touch a.json): no hints, as {}
        return Hints()
    try:
        doc = json.loads(data, object_pairs_hook=_no_repeated_keys, parse_int=_json_int,
                         parse_float=_json_float, parse_constant=_json_constant)  # fmt: skip
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError('expected an object with "points" and/or "palette"')
    extra = sorted(doc.keys() - {"points", "palette"})
    if extra:  # a typo ("point") would otherwise drop its hints without a word
        raise ValueError(f'unknown key {extra[0]!r} (a hint file holds "points" and/or "palette")')
    given = _objects(doc, "points", '"x", "y", "color" and an optional "size"')
    out = points([(p["x"], p["y"], p["color"], p.get("size", 1)) for p in given])
    pal = _objects(doc, "palette", '"color" and an optional "weight"')
    if pal:
        out = out + palette([(c["color"], c.get("weight", 1.0)) for c in pal])
    return out


def _blank(data: bytes) -> bool:
    """Whether a hint file holds white space alone, after a byte-order mark of any encoding
    that JSON reads (an editor's empty UTF-16 file was "Expecting value", UTF-8's no hints)."""
    try:
        text = data.decode(json.detect_encoding(data))
    except (UnicodeDecodeError, LookupError):
        return False
    return not text.lstrip("\ufeff").strip()


def _objects(doc: dict, key: str, holding: str) -> list[dict]:
    """``doc[key]``, checked to be a list of JSON objects with no keys but the quoted words of
    ``holding`` (absent or null: none)."""
    items = doc.get(key)
    items = [] if items is None else items
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f'"{key}" must be a list of objects with {holding}')
    known = set(holding.split('"')[1::2])
    for item in items:
        extra = sorted(item.keys() - known)
        if extra:  # "sise" or "colour" would otherwise drop what it says without a word
            raise ValueError(f'unknown key {extra[0]!r} in "{key}" (each holds {holding})')
    return items


def _from_layer(data: bytes, name: str) -> Hints:
    # Upright by its EXIF orientation and its colours in sRGB (an editor working in Adobe RGB
    # embeds that), as images are read; but only the hinted pixels are made float, and the
    # alpha is kept, not composited.
    head, img = decode_stored(data, name)
    if img.ndim != 3 or img.shape[2] != 4:
        raise ValueError("a hint layer must be an image with an alpha channel")
    found = read_meta(data)
    found.depth = 8 * img.itemsize
    img = upright(img, data, found)
    ys, xs = np.nonzero(img[:, :, 3] > 0)  # (a float layer's negative alpha is no hint)
    rgb = in_srgb(to_float(img[ys, xs, 2::-1])[None], found)  # BGR -> RGB
    ab = np.zeros((0, 2), np.float32)
    if len(xs):
        ab = np.ascontiguousarray(rgb_to_lab(rgb)[0, :, 1:])  # not L
    xy = np.stack([xs, ys], axis=1)
    return Hints(xy, ab, np.ones(len(xs), np.int32), shape=img.shape[:2])


def read_hints(path: str | Path) -> Hints:
    """A hint file: JSON or a hint layer image (pixels with alpha > 0), told apart by its bytes
    where they tell (an image's magic number; a JSON object's ``{``), else by its name (empty
    or blank is no hints, but an empty or unreadable ``.png`` is a broken layer).

    Raises
    ------
    RecolorError
        Unreadable file, bad JSON, a colour that does not parse, an image without alpha.
    """
    data = read_bytes(path, _check_hint_start)
    try:
        # stdin has no name to tell: what is no image is JSON, so that bad JSON is said to be that
        suffix = ".json" if str(path) == "-" else Path(path).suffix
        found = _from_json(data) if _looks_json(data, suffix) else _from_layer(data, str(path))
        layer = str(path) if found.shape else None  # named in errors about its size
        return dataclasses.replace(found, origin=str(path), layer=layer)  # and its points
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        reason = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise RecolorError(f"bad hint file: {reason}", path) from None


def _check_hint_start(start: bytes, path: str | Path) -> None:
    """Refuse hint data from stdin whose first bytes are neither an image's nor a JSON object's
    (`yes |` was read without end)."""
    from .imagehead import is_image

    if not (is_image(start) or start.lstrip(_JSON_SPACE).startswith(b"{")):
        raise RecolorError("bad hint file: neither a JSON object nor an image", path)


def _looks_json(data: bytes, suffix: str) -> bool:
    """Whether a named hint file is JSON: a JSON object by its first byte, an image by its magic
    number (also one of a format recolor does not read, which the layer reader names), and
    anything else (empty, blank, other text) JSON unless its name is an image's: an empty
    ``.png`` is a broken layer, an empty ``poster.hints`` or ``<(printf '')`` no hints (as
    stdin's)."""
    from .imagehead import IMAGE_EXTS, OTHER_IMAGE_EXTS, is_image, other_format

    if is_image(data):
        return False
    if data.lstrip(_JSON_SPACE).startswith(b"{"):
        return True
    texts = ("text", "text with NUL bytes", "unknown format")  # (JSON gone wrong: said as such)
    if data.strip(_JSON_SPACE) and other_format(data) not in texts:
        return False  # GIF, SVG, HEIF...: "not an image recolor reads (GIF)"
    return suffix.lower() not in (*IMAGE_EXTS, *OTHER_IMAGE_EXTS)


_JSON_SPACE = b"\xef\xbb\xbf \t\r\n"  # a UTF-8 byte-order mark and JSON's white space


HINT_EXTS = (".json", ".png")


def match_hint_files(
    hint_dir: str | Path, inputs: list[str], paths: list[str], palette: str | None = None
) -> tuple[dict[str, Path | _Ambiguous], list[RecolorError]]:
    """Pair each input file with its hint file in ``hint_dir``, as ``recolor compare`` pairs
    files: by the path below the directory, without extension.

    An input found in an input directory ``posters/`` as ``posters/a/b.jpg`` takes
    ``hint_dir/a/b.json`` or ``hint_dir/a/b.png``; an input named on its own, ``x/c.jpg``, takes
    ``hint_dir/c.*``, an image on stdin ``hint_dir/stdin.*``. Inputs of one name (``b.jpg`` and
    ``b.png``) all take its file. A file of ``hint_dir`` that is itself an input (``--hints``
    naming the input folder), or the ``palette`` image, is no hint file, nor is an image beside
    an input, or below its folder, that matches none (``predict in/a*.png --hints in/``:
    ``in/b.png`` and ``in/s/c.png`` are images not named, not layers), nor a JSON file there
    beside an image of its name (``in/b.json``, the hints of ``in/b.png``, not named). An input
    inside ``hint_dir`` (the hint folder above the input folder) takes the file beside it: ``predict
    in/s --hints in/`` pairs ``in/s/c.jpg`` with ``in/s/c.json``, and every image of ``in/`` that
    it does not name is one not named, its JSON file too (a JSON file beside no image is still a
    hint file for no input: a typo's).

    Returns
    -------
    pairs : dict
        Input path -> its hint file (inputs without one are absent: they are predicted
        automatically), or :class:`_Ambiguous` where two files match it (``a.json`` and
        ``a.png``: that input fails when its hints are read, the others go on).
    problems : list of RecolorError
        Hint files for no input.
    """
    hint_dir, roots = Path(hint_dir), input_roots(inputs)
    by_key: dict[str, list[str]] = {}
    top = os.path.realpath(hint_dir)
    for p in paths:
        name = input_name(p, roots)  # (stdin: "stdin", as its output is named)
        real = os.path.realpath(p) if "\0" not in p and p != "-" else ""
        if real.startswith(top + os.sep):  # (hint folder above the input folder) the JSON
            name = os.path.relpath(real, top)  # beside it: its path below the hint folder
        by_key.setdefault(Path(name).with_suffix("").as_posix(), []).append(p)
    pairs: dict[str, Path] = {}
    problems: list[RecolorError] = []
    # a hint folder that is an input folder (JSON beside the images): its images are inputs
    inputs_there = {os.path.realpath(p) for p in paths if p != "-" and "\0" not in p}
    beside = {os.path.dirname(p) for p in inputs_there}  # an image there is one not named
    if any(p.startswith(top + os.sep) for p in inputs_there):  # (the hint folder above the
        beside.add(top)  # input folder, `in/s --hints in/`: in/b.png is an image not named)
    if palette is not None and "\0" not in palette and os.path.isfile(palette):
        inputs_there.add(os.path.realpath(palette))  # (reported as a hint file for no input)
    stems: dict[Path, set[str]] = {}
    for f in _hint_files(hint_dir):
        if os.path.realpath(f) in inputs_there:
            continue
        k = f.relative_to(hint_dir).with_suffix("").as_posix()
        if k not in by_key:
            folders = f.relative_to(hint_dir).parents  # the file's folder, up to hint_dir ('.')
            if any(os.path.realpath(hint_dir / d) in beside for d in folders) and (
                f.suffix.lower() != ".json" or _image_beside(f, stems)
            ):  # `predict in/a*.png --hints in/`: in/b.png, in/s/c.png are no layers, and
                continue  # in/b.json is b.png's, not named (a typo's JSON matches no image)
            problems.append(RecolorError("hint file for no input", f))
        elif by_key[k][0] in pairs:  # (a.json and a.png): which one was meant is not known
            first = pairs[by_key[k][0]]
            first = first.files[0] if isinstance(first, _Ambiguous) else first
            pairs.update(dict.fromkeys(by_key[k], _Ambiguous((first, f))))
        else:
            pairs.update(dict.fromkeys(by_key[k], f))
    return pairs, problems


def _image_beside(f: Path, stems: dict[Path, set[str]]) -> bool:
    """Whether an image of ``f``'s name (another extension, in any case: ``b.Jpg``) is in
    ``f``'s folder; ``stems`` caches each folder's image names, read once."""
    from .imagehead import IMAGE_EXTS

    if f.parent not in stems:
        stems[f.parent] = set()
        with contextlib.suppress(OSError), os.scandir(f.parent) as entries:
            for e in entries:
                stem, ext = os.path.splitext(e.name)
                with contextlib.suppress(OSError):  # (a link loop: no image)
                    if ext.lower() in IMAGE_EXTS and e.is_file():
                        stems[f.parent].add(stem)
    return f.stem in stems[f.parent]


@dataclasses.dataclass(frozen=True)
class _Ambiguous:
    """Two hint files for one input: the input is refused (with one of them alone it would be
    written as if done, and ``--skip-existing`` would pass it over)."""

    files: tuple[Path, Path]

    def error(self) -> RecolorError:
        a, b = (printable(str(f)) for f in self.files)
        return RecolorError(f"two hint files, {a} and {b}: neither is used")


def _hint_files(hint_dir: Path) -> list[Path]:
    """The hint files of a ``--hints`` directory (JSON and PNG layers), sorted; broken links
    too, reported when read (they were passed over, their inputs coloured automatically)."""
    from .inputs import files_below

    return files_below(hint_dir, HINT_EXTS)


def files_read(palette: str | None, hints: str | None) -> list[str]:
    """The files ``--palette`` and ``--hints`` read (a palette image, a hint file, a hint
    directory's files; a colour list is no file), which no output may replace."""
    read = [palette] if palette not in (None, "-") else []
    if hints is not None and os.path.isdir(hints):
        return read + [str(f) for f in _hint_files(Path(hints))]
    return read + ([hints] if hints not in (None, "-") else [])


class HintSource:
    """The hints of each input: those common to all, plus its own hint file, read when needed.

    Call it with an input path; it returns that input's :class:`Hints` (None without any).
    ``common_file`` is the ``--hints`` file among the common hints, if one is.
    """

    def __init__(
        self,
        common: Hints,
        own: dict[str, Path | _Ambiguous] | None = None,
        common_file: str | None = None,
    ) -> None:
        self.common, self.own, self.common_file = common, own or {}, common_file
        self.check: Callable[[Hints], None] | None = None

    def check_with(self, check: Callable[[Hints], None]) -> None:
        """Refuse, from now on, the hints that ``check`` refuses (a model that cannot take
        them: ``Predictor.check_given``) as an error of the hint file that holds them. The
        options themselves were checked before: what fails is in a file. Raises the common
        ``--hints`` file's :class:`RecolorError` at once."""
        self.check = check
        self._checked(self.common, self.common_file)

    def _checked(self, h: Hints, path: str | Path | None) -> Hints:
        if self.check is not None and path is not None:
            try:
                self.check(h)
            except RecolorError as e:
                raise RecolorError(e.reason, path) from None
        return h

    def __call__(self, path: str) -> Hints | None:
        h, own = self.common, self.own.get(path)
        if isinstance(own, _Ambiguous):
            raise own.error()
        if own is not None:
            h = self._checked(read_hints(own) + h, own)  # --hint after: it wins an overlap
        # An empty layer is still checked against the image's size: a wrong file, not "none".
        return None if h.empty and h.shape is None else h


def hint_source(
    points: list[str],
    hints: str | None,
    palette: str | None,
    inputs: list[str],
    paths: list[str],
    strength: float | None = None,
    spread: str | None = None,
) -> tuple[HintSource, list[RecolorError]]:
    """The :class:`HintSource` of ``recolor predict --hint ... --hints ... --palette ...
    --hint-strength ... --hint-spread`` (None: not given; the spread is then ``"alike"``).

    Returns the source and the problems of a ``--hints`` directory (see
    :func:`match_hint_files`).

    Raises
    ------
    ValueError
        A ``--hint``, ``--palette`` colour list or ``--hint-strength`` that does not parse, an
        empty ``--hints``, or ``--hint-strength`` / ``--hint-spread`` without point hints
        (usage errors).
    RecolorError
        An unreadable or bad ``--hints`` file or ``--palette`` image.
    """
    check_strength(strength, "--hint-strength")
    if (strength is not None or spread is not None) and not points and hints is None:
        flag = "--hint-strength" if strength is not None else "--hint-spread"
        raise ValueError(f"{flag} acts on point hints: give --hint or --hints")  # not ignored
    common = Hints(strength=strength, spread=spread or "alike")
    for spec in points:
        try:
            common = common + parse_hint(spec)
        except ValueError as e:  # named as the option, as --suggest's and --palette's are
            why = str(e)
            said = f"--{why}" if why.startswith("hint ") else f"--hint {spec!r}: {why}"
            raise ValueError(said) from None
    if palette is not None:
        common = common + parse_palette(palette)
    if hints is not None and not hints.strip():  # Path("") would be the current directory
        raise ValueError("--hints is empty (it takes a hint file or a directory of them)")
    if hints is not None and os.path.isdir(hints):
        own, problems = match_hint_files(hints, inputs, paths, palette)
        return HintSource(common, own), problems
    if hints is not None:
        # the file's points first: a --hint given on top of a file wins where squares overlap
        return HintSource(read_hints(hints) + common, common_file=hints), []
    return HintSource(common), []
