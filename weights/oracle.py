"""Where the cls weights lose the rebalanced AuC: hue, chroma magnitude or resolution.

Run (from the repository root; the model card's "Where the rebalanced AuC is lost")::

    python weights/oracle.py ../shared/data/posters/val --stats runs/stats.npz

For each image it predicts a/b at the network's output grid as ``recolor predict`` does, then
scores (full size, ``metrics.compare_pair``) that prediction against four others built on the
same grid and joined to the full-resolution L the same way:

- gray: a = b = 0;
- ceiling: the truth itself, area-averaged to the output grid (what the grid can hold);
- true hue: the predicted chroma magnitude sqrt(a² + b²) with the truth's hue angle;
- true magnitude: the predicted hue angle with the truth's chroma magnitude.

It prints the mean of each, then the spread over images of the rebalanced AuC that cls gains
on gray, by the truth's mean chroma.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if not __package__:  # run as a script from a checkout: its package and this folder's modules
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # (PEP 366; imported from
    __package__ = "weights"  # an installed copy, sys.path stays as it was)
from recolor_tools import metrics  # noqa: E402
from recolor_tools.color import rgb_to_lab, to_uint8  # noqa: E402
from recolor_tools.imageio import read_rgb, resize_to  # noqa: E402
from recolor_tools.inputs import expand_inputs  # noqa: E402
from recolor_tools.predict import Predicted, Predictor  # noqa: E402
from recolor_tools.rebalance import RebalanceStats  # noqa: E402


def truth_on_grid(rgb: np.ndarray, hw: tuple[int, int], grid: tuple[int, int], stride: int):
    """The truth's a/b at the working size (h, w), averaged over each output pixel's stride x
    stride block; the network's padding repeats the last rows and columns."""
    (h, w), (gh, gw) = hw, grid
    ab = rgb_to_lab(resize_to(rgb, h, w))[:, :, 1:]
    ab = np.pad(ab, ((0, gh * stride - h), (0, gw * stride - w), (0, 0)), "edge")
    return resize_to(ab, gh, gw)


def variants(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """The a/b grids to score, by method name."""
    mag_p, mag_t = np.hypot(*pred.transpose(2, 0, 1)), np.hypot(*truth.transpose(2, 0, 1))
    unit_p = pred / np.maximum(mag_p, 1e-6)[..., None]
    unit_t = truth / np.maximum(mag_t, 1e-6)[..., None]
    return {
        "cls": pred,
        "gray": np.zeros_like(pred),
        "ceiling": truth,
        "true hue": unit_t * mag_p[..., None],
        "true magnitude": unit_p * mag_t[..., None],
    }


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("truth", help="folder of colour images")
    ap.add_argument("--stats", type=Path, required=True, help="rebalance-stats .npz of train")
    ap.add_argument("--weights", type=Path, help="cls checkpoint (default: the shipped one)")
    ap.add_argument("--first", type=at_least(0), help="only the first N images in name order")
    args = ap.parse_args()

    stats = RebalanceStats.load(args.stats)
    predictor = Predictor.load(args.weights, "cls")
    files = expand_inputs([args.truth])[: args.first]
    if not files:
        ap.error("no images to evaluate")
    scores: dict[str, list[dict[str, float]]] = {}
    chroma: list[float] = []
    for f in files:
        rgb = read_rgb(f)
        item = predictor.prepare(rgb)
        pred = predictor.run([item])[0].ab
        truth = truth_on_grid(rgb, item.hw, pred.shape[:2], predictor.stride)
        truth_u8 = to_uint8(rgb)
        for name, ab in variants(pred, truth).items():
            out = predictor.compose(Predicted(item, ab.astype(np.float32)), np.uint8)
            scores.setdefault(name, []).append(metrics.compare_pair(out, truth_u8, stats))
        chroma.append(float(np.hypot(*rgb_to_lab(rgb)[:, :, 1:].transpose(2, 0, 1)).mean()))

    print(f"{len(files)} images of {args.truth}, full size")
    print(f"{'a/b on the output grid':16s} {'PSNR':>6s} {'AuC':>6s} {'rebal':>6s} {'colour':>6s}")
    for name, rs in scores.items():
        m = metrics.mean_metrics(rs)
        print(
            f"{name:16s} {m['psnr']:6.2f} {m['auc']:6.2f} {m['auc_rebal']:6.2f} "
            f"{m['colourfulness_pred']:6.1f}"
        )
    gain = np.array(
        [
            c["auc_rebal"] - g["auc_rebal"]
            for c, g in zip(scores["cls"], scores["gray"], strict=True)
        ]
    )
    pct = np.percentile(gain, [0, 5, 25, 50, 75, 95, 100])
    print("cls - gray, rebalanced AuC per image: min, 5, 25, 50, 75, 95 %, max:", pct.round(1))
    mean_chroma = np.array(chroma)
    for lo, hi in ((0, 15), (15, 25), (25, np.inf)):
        sel = (mean_chroma >= lo) & (mean_chroma < hi)
        if sel.any():
            n, g = sel.sum(), gain[sel].mean()
            print(f"  truth's mean chroma in [{lo}, {hi}): {n} images, {g:+.1f}")


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
