"""Make docs/guided.jpg: the bundled Kodak examples, automatic | a few hints | another's palette.

Run from the repository root: ``python docs/guided_montage.py [OUT]`` (shipped cls weights,
CPU, a few seconds; OUT defaults to docs/guided.jpg). The hints are the truth's own colours
(5 x 5 means) at its four most colourful places (``evaluate_hints.colourful_points``), spread
as ``--hint-spread region`` spreads them (hints on objects in photographs), drawn as dots ringed
in white; the palette is the 8-colour k-means palette of the next example.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "weights"))
from evaluate_hints import colourful_points, palette_of  # noqa: E402

from recolor_tools.hints import Hints  # noqa: E402
from recolor_tools.imageio import read_rgb, write_image  # noqa: E402
from recolor_tools.predict import Predictor  # noqa: E402


def dots(img_u8: np.ndarray, rgb: np.ndarray, hints: Hints) -> np.ndarray:
    out = img_u8.copy()
    for x, y in hints.xy.tolist():
        colour = tuple(int(c) for c in (rgb[y, x] * 255).round())
        cv2.circle(out, (x, y), 6, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, (x, y), 4, colour, -1, cv2.LINE_AA)
    return out


def main(out: Path = ROOT / "docs" / "guided.jpg") -> None:
    predictor = Predictor.load(None, "cls")
    files = sorted((ROOT / "examples").glob("*.jpg"))
    rows = []
    for i, f in enumerate(files):
        rgb = read_rgb(f)
        h = replace(colourful_points(rgb), spread="region")
        other = read_rgb(files[(i + 1) % len(files)])
        auto = predictor.recolorize(rgb, np.uint8)
        hinted = dots(predictor.recolorize(rgb, np.uint8, hints=h), rgb, h)
        pal = predictor.recolorize(rgb, np.uint8, hints=palette_of(other))
        thumb = cv2.resize((other * 255).round().astype(np.uint8), (64, 64), cv2.INTER_AREA)
        pal[-68:-2, -68:-2] = 255
        pal[-67:-3, -67:-3] = thumb  # the palette's source, inset
        gap = np.full((rgb.shape[0], 6, 3), 255, np.uint8)
        rows.append(np.hstack([auto, gap, hinted, gap, pal]))
    grid = np.vstack([np.vstack([r, np.full((6, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    write_image(out, grid[:-6], quality=80)


if __name__ == "__main__":
    import argparse

    from recolor_tools.errors import run_script

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "guided.jpg")
    run_script(lambda: main(ap.parse_args().out))
