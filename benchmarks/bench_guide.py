"""Region spread with a painted layer of many colours: one walk per class against one per colour.

``predict --hint-spread region`` spreads each hint colour by a random walk over the output grid
(:func:`recolor_tools.guide.region_shares`, conjugate gradients, every walk a row of one
solve). A painted gradient gives nearly every hinted cell its own colour, so one walk per colour
costs colours x cells a step; the walks are linear in their seeds, and the mixture needs only
their sum weighted by the colours' class distributions, so ``guide.steer`` walks once per class
the colours touch where those are fewer. This times both on the shipped cls model's features of
a generated 400 x 300 image with a gradient layer (a hole left unpainted), at the default working
size and at ``--size 320``, in this process, and prints the ratio and the largest difference of
the mixed class distributions. On 2 shared cores (one thread), at 160: 1,848 colours and 211
classes over 2,160 cells, 4.1-4.7 s against 0.28-0.42 s (11-15x in two runs at a load of 2; the
ratio swings with the machine's load, 15-32x at a load of 3.5-5.5), the distributions within
3.7e-6; at 320 (measured once): 7,182 colours, 213 classes, 8,640 cells, 384 s against 5.0 s
(77x), within 1.3e-5. Most of its 7 minutes are the per-colour walks at 320 (``--sizes 160``
for a quick run).

Usage::

    .venv/bin/python benchmarks/bench_guide.py [--repeat R] [--sizes 160 320]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recolor_tools import guide  # noqa: E402
from recolor_tools.hintfiles import read_hints  # noqa: E402
from recolor_tools.predict import Predictor  # noqa: E402


def walks(pred: Predictor, rgb: np.ndarray, layer: Path) -> dict:
    """The inputs of region_shares and mix for the image and its layer, both ways."""
    item = pred.prepare(rgb, read_hints(layer))
    model, stride = pred.model, pred.model.config.out_stride
    with torch.inference_mode():
        x = torch.from_numpy(item.work[None, None])
        feats = model.features(x)
        z, f = model.head_out(feats)[0].float(), model.affinity_features(feats)[0].float()
    grid = tuple(z.shape[1:])
    cell, ab = item.hints.cells(item.hw, stride, grid)
    ways = {name: guide.walk_seeds(ab, model.classes, by_class)
            for name, by_class in (("per colour", False), ("per class", True))}  # fmt: skip
    return {"z": z, "f": f, "light": guide.cell_lightness(item.work, grid, stride),
            "cell": torch.from_numpy(cell), "ways": ways, "colours": len(ways["per colour"][0]),
            "classes": len(ways["per class"][0]), "cells": grid[0] * grid[1]}  # fmt: skip


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=at_least(1), default=1)
    ap.add_argument("--sizes", type=at_least(8), nargs="+", default=[160, 320])
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.random((300, 400, 3)).astype(np.float32), (0, 0), 8)
    y, x = np.mgrid[0:300, 0:400]
    layer = np.dstack([x * 255 // 399, y * 255 // 299, np.full((300, 400), 128),
                       np.full((300, 400), 255)]).astype(np.uint8)  # fmt: skip
    layer[100:200, 100:300, 3] = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "layer.png"
        cv2.imwrite(str(tmp), layer[:, :, [2, 1, 0, 3]])
        for size in args.sizes:
            pred = Predictor.load(size=size)
            w = walks(pred, rgb, tmp)
            times, mixed = {}, {}
            for name, (seeds, q) in w["ways"].items():
                best = float("inf")
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    m = guide.region_shares(w["f"], w["light"], w["cell"], seeds)
                    out = guide.mix(w["z"][None], m[None], q[None])[0]
                    best = min(best, time.perf_counter() - t)
                times[name], mixed[name] = best, torch.softmax(out, 0)
            diff = float((mixed["per class"] - mixed["per colour"]).abs().max())
            print(f"size {size}: {w['colours']} colours, {w['classes']} classes, {w['cells']} "
                  f"cells: per colour {times['per colour']:.2f} s, per class "
                  f"{times['per class']:.2f} s, {times['per colour'] / times['per class']:.1f}x; "
                  f"largest difference of the distributions {diff:.1e}")  # fmt: skip


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
