"""What ``recolor compare`` shows besides the numbers' computation: the montage figure and the
text, CSV and JSON reports of :func:`recolor_tools.metrics.compare_pair` results (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from recolor_tools.color import lab_to_rgb, rgb_to_l, to_uint8
from recolor_tools.errors import printable
from recolor_tools.imageio import resize_to
from recolor_tools.imagemeta import write_figure
from recolor_tools.metrics import METRIC_KEYS, mean_metrics


def lightness_gray(rgb_u8: np.ndarray) -> np.ndarray:
    """The L channel of an RGB image rendered as grey: Lab (L, 0, 0) back to RGB.

    Parameters
    ----------
    rgb_u8 : (H, W, 3) uint8 ndarray

    Returns
    -------
    (H, W, 3) uint8 ndarray
        Grey RGB image of the same lightness: what a colouriser sees as its input.
    """
    lab = np.zeros(rgb_u8.shape, np.float32)
    lab[..., 0] = rgb_to_l(rgb_u8)
    return to_uint8(lab_to_rgb(lab))


def montage_row(
    name: str, pred_rgb_u8: np.ndarray, truth_rgb_u8: np.ndarray, height: int = 256
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """One :func:`montage` row: (name, truth's L as grey, prediction, truth), shrunk to ``height``.

    The prediction is resized to the truth's size first (as in
    :func:`recolor_tools.metrics.compare_pair`); shrinking here keeps a long list of rows small
    in memory.
    """
    h, w = truth_rgb_u8.shape[:2]
    size = (height, max(1, round(w * height / h))) if h > height else (h, w)
    truth = resize_to(truth_rgb_u8, *size)
    return name, lightness_gray(truth), resize_to(pred_rgb_u8, *size), truth


MONTAGE_TITLES = ("input (L)", "prediction", "ground truth")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK = (0, 0, 0)


MAX_CELL_RATIO = 4
"""A montage cell is at most this many times as wide as ``height`` (an 11 x 2000 strip was
enlarged to 256 x 46,545 px, a figure of 46 Mpx for one pair)."""


def _thickness(scale: float) -> int:
    """The stroke of the montage's texts at font ``scale``."""
    return max(1, round(scale * 2))


def _strip_height(scale: float) -> int:
    """Height of a :func:`_text_strip` of font ``scale``."""
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, _thickness(scale))
    return th + base + 2 * max(4, th // 2)


def _text_strip(texts: Sequence[str], widths: Sequence[int], scale: float) -> np.ndarray:
    """A white strip holding one black text centred over each of the given column widths."""
    thick = _thickness(scale)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thick)
    strip_h = _strip_height(scale)
    cells = []
    for text, w in zip(texts, widths, strict=True):
        # Hershey fonts draw ASCII alone, and OpenCV crashes on a str it cannot encode as
        # UTF-8 (a file name that is not UTF-8): the rest becomes "?".
        text = text.encode("ascii", "replace").decode()
        cell = np.full((strip_h, w, 3), 255, np.uint8)
        # Shrink long texts so they fit their column instead of running into the next one.
        s = scale
        tw = cv2.getTextSize(text, _FONT, s, thick)[0][0]
        if tw > w - 4:
            s *= (w - 4) / tw
            tw = cv2.getTextSize(text, _FONT, s, thick)[0][0]
        org = (max(2, (w - tw) // 2), strip_h - base - max(4, th // 2))
        cv2.putText(cell, text, org, _FONT, s, _BLACK, thick, cv2.LINE_AA)
        cells.append(cell)
    return cv2.hconcat(cells)


def _layout(height: int) -> tuple[int, float]:
    """(gap in pixels, title font scale) of a montage whose cells are ``height`` high."""
    return max(4, height // 32), max(0.4, height / 400)


def montage_height(n_rows: int, height: int = 256) -> int:
    """The height in pixels of a :func:`montage` of ``n_rows`` rows (known before the images
    are read: its format's limit can be checked before the work)."""
    gap, scale = _layout(height)
    return _strip_height(scale) + n_rows * (_strip_height(0.8 * scale) + height + gap)


def montage_rows(pixels: int, height: int = 256) -> int:
    """The most rows (one at least) of a :func:`montage` of at most ``pixels`` pixels whatever
    its images, each cell at its widest: ``MAX_CELL_RATIO * height``, a figure ``3 (4 height +
    2 gap)`` px wide (known before the images are read)."""
    gap, _ = _layout(height)
    tall = pixels // (3 * (MAX_CELL_RATIO * height + 2 * gap))
    top, row = montage_height(0, height), montage_height(1, height) - montage_height(0, height)
    return max(1, (tall - top) // row)


def montage(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    height: int = 256,
) -> np.ndarray:
    """Write a side-by-side figure: grey input | prediction | ground truth, one row per image.

    Parameters
    ----------
    rows : sequence of (name, gray_rgb, pred_rgb, truth_rgb)
        The row's caption and its three (H, W, 3) RGB images, uint8 or float in [0, 1]; the three
        may differ in size.
    path : str or Path
        Output image; format from the extension, written atomically.
    height : int
        Height in pixels of every image cell (widths follow each image's aspect ratio, up to
        :data:`MAX_CELL_RATIO` times ``height``: a wider image is shrunk to that width and
        centred in its cell).

    Returns
    -------
    (H, W, 3) uint8 ndarray
        The figure as written (:func:`montage_height` high). Column titles on top; each row has
        its name above it; images are centred on white in columns as wide as their widest
        image (or their title), with a ``gap``-pixel margin.
    """
    if not rows:
        raise ValueError("montage needs at least one row")
    gap, scale = _layout(height)

    def size(img: np.ndarray) -> tuple[int, int]:  # (h, w) of the image in its cell
        h, w = img.shape[:2]
        f = min(height / h, MAX_CELL_RATIO * height / w)
        return max(1, min(height, round(h * f))), max(1, round(w * f))

    # a column is at least as wide as its title: a tall thin image's title was shrunk to specks
    titles = [cv2.getTextSize(t, _FONT, scale, _thickness(scale))[0][0] + 4 for t in MONTAGE_TITLES]
    widths = [max(max(size(r[1 + j])[1] for r in rows), titles[j]) + 2 * gap for j in range(3)]
    name_h = _strip_height(0.8 * scale)
    # drawn in place, row by row: one figure in memory, not the cells, strips and a copy
    figure = np.full((montage_height(len(rows), height), sum(widths), 3), 255, np.uint8)
    top = _strip_height(scale)
    figure[:top] = _text_strip(MONTAGE_TITLES, widths, scale)
    for name, *images in rows:
        figure[top : top + name_h] = _text_strip([name], [sum(widths)], 0.8 * scale)
        top += name_h
        left = 0
        for img, w in zip(images, widths, strict=True):
            img = img if img.dtype == np.uint8 else to_uint8(img)
            h_, w_ = size(img)
            cell = resize_to(img, h_, w_)
            y, x = top + (height - h_) // 2, left + (w - w_) // 2
            figure[y : y + h_, x : x + w_] = cell
            left += w
        top += height + gap
    write_figure(path, figure)
    return figure


# --- formatting reports (the numbers; the CLI renders them) ---------------------------------------


REPORT_COLUMNS = (
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("ab_rmse", "ab RMSE", "{:.2f}"),
    ("auc", "AuC %", "{:.2f}"),
    ("auc_rebal", "AuC rebal %", "{:.2f}"),
    ("colourfulness_pred", "colourful pred", "{:.1f}"),
    ("colourfulness_truth", "colourful truth", "{:.1f}"),
    ("colourfulness_diff", "colourful diff", "{:+.1f}"),
)
"""(key, column title, format) of each reported metric, in display order."""
OPTIONAL_KEYS = frozenset({"auc_rebal"})
"""Metrics that only some runs compute (``auc_rebal`` needs ``--stats``)."""


def _reported(key: str, results: Sequence[tuple[str, dict[str, float]]]) -> bool:
    """Whether a report has a column for ``key``: every result has it, and an optional metric
    needs at least one result to have it (a report of no images shows the usual columns)."""
    return all(key in r for _, r in results) and (bool(results) or key not in OPTIONAL_KEYS)


def report_cells(
    results: Sequence[tuple[str, dict[str, float]]],
) -> tuple[list[str], list[list[str]]]:
    """Column titles and rounded cells of a report: one row per image, then a ``mean`` row.

    Parameters
    ----------
    results : sequence of (name, metrics)
        Names and :func:`recolor_tools.metrics.compare_pair` results; ``auc_rebal`` is shown
        only if every result has it. The mean row (:func:`recolor_tools.metrics.mean_metrics`)
        is added when there is at least one result.
    """
    mean = mean_metrics([r for _, r in results])
    cols = [c for c in REPORT_COLUMNS if _reported(c[0], results)]
    # a name's control characters escaped, so that its row stays one line
    rows = [[printable(_image_name(name))] + [fmt.format(r[k]) for k, _, fmt in cols]
            for name, r in results]  # fmt: skip
    if results:
        rows.append(["mean"] + [fmt.format(mean[k]) for k, _, fmt in cols])
    return ["image"] + [title for _, title, _ in cols], rows


def _image_name(name: str) -> str:
    """An image's name in a table or CSV row: ``./mean`` for one named ``mean``, which the
    mean row's name is (the same relative path, told apart from it)."""
    return "./mean" if name == "mean" else name


def format_text(results: Sequence[tuple[str, dict[str, float]]]) -> str:
    """The report as a plain table: space-aligned columns, one line per image, then ``mean``."""
    from rich.cells import cell_len  # terminal columns: 日本 takes 4 (ljust counts 2)

    head, rows = report_cells(results)
    table = [head, *rows]
    widths = [max(cell_len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for r in table:
        cells = [r[0] + " " * (widths[0] - cell_len(r[0]))]
        cells += [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_csv(results: Sequence[tuple[str, dict[str, float]]]) -> str:
    """The report as CSV: a header (``name`` and metric keys), one row per image, a ``mean`` row.

    Values are written at full precision; an infinite PSNR (identical images) is ``inf``, which
    ``float()`` reads back.
    """
    import csv
    import io

    keys = [k for k in METRIC_KEYS if _reported(k, results)]
    mean = mean_metrics([r for _, r in results])
    named = [(_image_name(name), r) for name, r in results]
    rows = [[name, *(repr(float(r[k])) for k in keys)]
            for name, r in [*named, *([("mean", mean)] if results else [])]]  # fmt: skip
    lines = []
    for row in [["name", *keys], *rows]:
        # written to end "\r\n", for csv to quote a name's lone "\r" too (with "\n" it was
        # written bare, and a reader split that row in two); the line then ends "\n" as before
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(row)
        lines.append(buf.getvalue()[:-2] + "\n")
    return "".join(lines)


def format_json(results: Sequence[tuple[str, dict[str, float]]]) -> str:
    """The report as one JSON object: ``{"images": [{"name": ..., <metrics>}], "mean": {...}}``.

    ``mean`` is null when there are no images. Strict JSON has no infinity, so an infinite PSNR
    (identical images) is written as null.
    """
    import json

    def finite(d: dict[str, float]) -> dict[str, float | None]:
        return {k: (v if math.isfinite(v) else None) for k, v in d.items()}

    doc = {
        "images": [{"name": name, **finite(r)} for name, r in results],
        "mean": finite(mean_metrics([r for _, r in results])) if results else None,
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"
