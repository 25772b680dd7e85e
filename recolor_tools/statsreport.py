"""What ``rebalance-stats`` shows of its statistics: a few lines of text (:func:`summary`) and
``--plot``'s figure of the prior and the weights over the a/b plane (:func:`plot_stats`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .rebalance import RebalanceStats


def summary(stats: RebalanceStats) -> str:
    """A few lines about the stats: Q, images, pixels, classes used, weight range."""
    used = int((stats.counts > 0).sum())
    q = len(stats.classes)
    return (
        f"classes: {q} (grid {stats.grid:g}), used by the data: {used}\n"
        f"images: {stats.n_images}, pixels: {stats.n_pixels}\n"
        f"weights (lambda {stats.lam:g}, sigma {stats.sigma:g}): "
        f"min {stats.weights.min():.3f}, max {stats.weights.max():.3f}, "
        f"most common class a={stats.classes[stats.counts.argmax()][0]:g} "
        f"b={stats.classes[stats.counts.argmax()][1]:g} "
        f"({100.0 * stats.counts.max() / max(stats.n_pixels, 1):.1f}% of pixels)\n"
    )


def plot_stats(stats: RebalanceStats, path: str | Path, cell: int = 0) -> None:
    """Draw log p(a, b) and the weights over the a/b plane, side by side, to an image file.

    Each class is a square of ``cell`` pixels (default: 256 / (range / grid)) at its centre's
    place (at most 512 squares a side: a finer grid's classes share them), a right, b up,
    coloured with a colour map (OpenCV's viridis over four decades of p; black: no class; dark
    grey: class never seen); axes and scales are drawn with ``cv2.putText``. Written with
    :func:`recolor_tools.imagemeta.write_figure` (format from the extension, sRGB's profile).
    """
    import cv2

    from .imagemeta import write_figure

    img = _plot_image(stats, cell)
    write_figure(path, cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


_PLOT_CELLS = 512


def plot_cells(grid: float) -> tuple[float, float, int]:
    """``(spacing, centre of the first cell, cells a side)`` of ``--plot``'s panels for a class
    grid: one cell a class, centred on the grid's multiples, covering a/b from -128 to 128 (a
    spacing of 256 / (n - 1) drew a grid that does not divide 256 off its labels: ``--grid
    50``'s class a = 100 at 55-91); at most :data:`_PLOT_CELLS` a side (a class file's grid may
    be as fine as it likes: 0.02 made panels 25,602 px a side, GBs), finer classes sharing."""
    g = max(grid if grid > 0 else 1.0, 256.0 / (_PLOT_CELLS - 2))  # (the ends may add one each)
    lo = g * np.floor(-128.0 / g)
    return g, float(lo), int(round((g * np.ceil(128.0 / g) - lo) / g)) + 1


def _plot_image(stats: RebalanceStats, cell: int = 0) -> np.ndarray:
    import cv2

    grid, lo, n = plot_cells(stats.grid)
    hi = lo + (n - 1) * grid
    cell = cell or max(2, 400 // n)
    with np.errstate(divide="ignore"):
        logp = np.log10(stats.prior)
    seen = stats.counts > 0
    panels = []
    for title, vals, shown in (
        ("log10 p(a,b), smoothed (grey: unseen)", logp, seen & np.isfinite(logp)),
        (f"weights (lambda {stats.lam:g})", stats.weights.astype(np.float64), np.ones_like(seen)),
    ):
        panel = np.zeros((n * cell, n * cell, 3), np.uint8)
        vmin, vmax = (vals[shown].min(), vals[shown].max()) if shown.any() else (0.0, 1.0)
        if vals is logp:
            vmin = max(vmin, vmax - 4.0)  # four decades; rarer classes share the darkest colour
        # (one value only, a single class seen: the top colour, not the bottom one)
        span = vmax - vmin
        unit = np.clip((vals - vmin) / span, 0, 1) if span > 1e-12 else np.ones_like(vals)
        scaled = np.round(255 * unit)
        colours = cv2.applyColorMap(scaled.astype(np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)[:, 0]
        ij = np.round((np.asarray(stats.classes, np.float64) - lo) / grid).astype(int)
        for q, (i, j) in enumerate(ij):
            if 0 <= i < n and 0 <= j < n:
                y = (n - 1 - j) * cell  # b grows upwards
                panel[y : y + cell, i * cell : (i + 1) * cell] = (
                    colours[q] if shown[q] else (60, 60, 60)
                )
        panels.append(_frame(panel, title, vmin, vmax, lo - grid / 2, hi + grid / 2))  # edges
    gap = np.full((panels[0].shape[0], 16, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1]])


def _frame(panel: np.ndarray, title: str, vmin: float, vmax: float, lo: float, hi: float):
    """Add a title, axis labels and a colour bar with its range around a panel."""
    import cv2

    h, w = panel.shape[:2]
    top, left, bottom, right = 30, 44, 60, 10
    out = np.full((h + top + bottom, w + left + right, 3), 255, np.uint8)
    out[top : top + h, left : left + w] = panel
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    cv2.putText(out, title, (left, 20), font, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(out, f"{lo:g}", (left, top + h + 14), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(out, f"a {hi:g}", (left + w - 44, top + h + 14), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(out, f"b {hi:g}", (2, top + 10), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(out, f"{lo:g}", (2, top + h), font, 0.4, black, 1, cv2.LINE_AA)
    bar = cv2.applyColorMap(np.linspace(0, 255, w).astype(np.uint8)[None, :], cv2.COLORMAP_VIRIDIS)
    out[top + h + 22 : top + h + 34, left : left + w] = np.repeat(bar, 12, axis=0)
    for text, x in ((f"{vmin:.3g}", left), (f"{vmax:.3g}", left + w - 50)):
        cv2.putText(out, text, (x, top + h + 52), font, 0.4, black, 1, cv2.LINE_AA)
    return out
