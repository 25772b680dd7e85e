"""Guided recolouring with the shipped cls weights: hints and palettes simulated from the truth.

Run (from the repository root; the model card's "Guided recolouring" table, all the validation
posters, as ``make affinity-weights`` runs it)::

    python weights/evaluate_hints.py ../shared/data/posters/val --stats runs/stats.npz \
        --card weights/README.md

For each image (full size, as ``recolor predict`` works), the network runs once; then each
guidance is applied to its class distribution (:func:`recolor_tools.guide.steer`) and scored
with ``metrics.compare_pair`` against the truth:

- n points (n = 0, 1, 2, 5, 10, 20, 50) as Zhang et al. 2017 measured theirs (their Fig. 6):
  positions uniform over the image, each hint the mean a/b of the truth over the 5 x 5 patch
  around it (covering that patch); the sets are nested (the 10 points hold the 5);
- n colourful points (``--colourful``, default 4): the truth's most colourful places, as a
  user hints the objects whose colour matters (README's ``docs/guided.jpg``); unlike random
  points they leave the image's large plain areas unhinted, so they show how far hints leak;
- the truth's own palette: 8-colour k-means of its a/b, weighted by cluster size;
- another poster's palette: the same for a random other image of the folder.

"fidelity" is the median a/b distance, at the hinted pixels, between the output and the hint
(the median over images of each image's median).
``--skip 200`` leaves out the first 200 images, on which the settings were chosen
(``--gamma``, ``--power``, ``--alpha`` try others); ``--seed`` draws other points and other
palette posters.

``--oracle SIGMA`` measures what the hints' propagation could give at best: each point's
similarity is taken from the truth's own colours (the cosine of the soft encodings, width SIGMA
a/b units, of the truth's a/b on the output grid) instead of the decoder's features.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np
import torch

if not __package__:  # run as a script from a checkout: its package and this folder's modules
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # (PEP 366; imported from
    __package__ = "weights"  # an installed copy, sys.path stays as it was)
from recolor_tools import guide, hintinput, metrics  # noqa: E402
from recolor_tools.color import rgb_to_lab, to_uint8  # noqa: E402
from recolor_tools.hints import SPREADS, Hints  # noqa: E402
from recolor_tools.imageio import read_rgb, resize_short_side  # noqa: E402
from recolor_tools.inputs import expand_inputs  # noqa: E402
from recolor_tools.predict import Predicted, Predictor  # noqa: E402
from recolor_tools.rebalance import RebalanceStats  # noqa: E402

from .card import has_section, write_section  # noqa: E402
from .oracle import truth_on_grid  # noqa: E402

POINTS = (1, 2, 5, 10, 20, 50)
PATCH = 5
assert PATCH % 2, "odd: the mean is taken over the square Hints.squares pastes, centred on x, y"
COLUMNS = [
    ("psnr", "PSNR dB", 2),
    ("auc", "AuC %", 1),
    ("auc_rebal", "rebal. AuC %", 1),
    ("colourfulness_pred", "colourful.", 1),
    ("fidelity", "fidelity ab", 1),
]


CARD_MARKS = ("<!-- hints:start -->", "<!-- hints:end -->")
"""Where the table goes in the model card."""


def simulate_points(ab: np.ndarray, n: int, rng: np.random.Generator) -> Hints:
    """n hints at uniform positions, each the truth's mean a/b over its PATCH x PATCH square."""
    H, W = ab.shape[:2]
    xs, ys = rng.integers(0, W, n), rng.integers(0, H, n)
    r = (PATCH - 1) // 2
    cols = [ab[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1].reshape(-1, 2).mean(0)
            for x, y in zip(xs, ys, strict=True)]  # fmt: skip
    xy = list(zip(xs.tolist(), ys.tolist(), strict=True))
    return Hints(xy, np.array(cols, np.float32).reshape(-1, 2), np.full(n, PATCH, np.int32))


def colourful_points(rgb: np.ndarray, n: int = 4) -> Hints:
    """n hints where the truth is most colourful, as a user hints the objects whose colour
    matters: the image cut into 3 x 3 cells (8 px in from their edges, less on an image under
    96 px), the most chromatic pixel
    of each (the truth's a/b blurred over PATCH x PATCH), the n most chromatic of those nine,
    each the truth's mean a/b over its PATCH x PATCH square."""
    H, W = rgb.shape[:2]
    ab = cv2.blur(rgb_to_lab(rgb)[:, :, 1:], (PATCH, PATCH))
    chroma = np.hypot(ab[..., 0], ab[..., 1])
    found = []
    my, mx = min(8, H // 12), min(8, W // 12)  # (8 px left no cell of an image under 51 px)
    for i in range(3):
        for j in range(3):
            ys = slice(i * H // 3 + my, (i + 1) * H // 3 - my)
            xs = slice(j * W // 3 + mx, (j + 1) * W // 3 - mx)
            if not chroma[ys, xs].size:  # (an image under 3 px a side)
                continue
            y, x = np.unravel_index(np.argmax(chroma[ys, xs]), chroma[ys, xs].shape)
            found.append((chroma[ys, xs][y, x], x + xs.start, y + ys.start))
    found.sort(reverse=True)
    xy = [(int(x), int(y)) for _, x, y in found[:n]]
    cols = np.array([ab[y, x] for x, y in xy], np.float32).reshape(-1, 2)
    return Hints(xy, cols, np.full(len(xy), PATCH, np.int32))


def palette_of(rgb: np.ndarray, k: int = 8) -> Hints:
    """The k-means palette (k colours of a/b, weighted by cluster size) of an image."""
    ab = rgb_to_lab(resize_short_side(rgb, 64, 1))[:, :, 1:].reshape(-1, 2)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
    cv2.setRNGSeed(0)
    _, label, centres = cv2.kmeans(ab, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    w = np.bincount(label.ravel(), minlength=k).astype(np.float32)
    return Hints(palette_ab=centres.astype(np.float32), palette_w=w)


def fidelity(out: np.ndarray, hints: Hints) -> float | None:
    if not len(hints.xy):
        return None
    lab = rgb_to_lab(out.astype(np.float32) / 255)
    xy = np.asarray(hints.xy)
    return float(np.median(np.linalg.norm(lab[xy[:, 1], xy[:, 0], 1:] - hints.ab, axis=1)))


def truth_features(rgb: np.ndarray, item, grid: tuple[int, int], classes, sigma: float, s: int):
    """(Q, h', w') soft encodings of the truth's a/b on the output grid (the oracle's features;
    the grid as :func:`weights.oracle.truth_on_grid` builds it)."""
    ab = torch.from_numpy(truth_on_grid(rgb, item.hw, grid, s).reshape(-1, 2))
    q = guide.soft_histogram(ab, torch.ones(len(ab)), classes, sigma=sigma)
    return q.T.reshape(-1, *grid).float()


def evaluate_image(
    predictor: Predictor, rgb: np.ndarray, guidance: dict, stats, oracle: float | None = None
) -> dict:
    """Scores of one image under each guidance (None: automatic), the network run once (and
    once more for each guidance when the model takes hints as input: ``recolor train --hints``;
    the steering then applies as ``hintinput.STEER_LEARNED`` and ``AFFINITY_FROM_AUTOMATIC``
    say, as in ``recolor predict``)."""
    model, (H, W) = predictor.model, rgb.shape[:2]
    item0 = predictor.prepare(rgb)
    with torch.inference_mode():
        feats = model.features(torch.from_numpy(item0.work[None, None]))
        z = model.head_out(feats)
        feats = model.affinity_features(feats)  # what spreads a point hint
        if oracle:
            grid, s = z.shape[2:], model.config.out_stride
            feats = truth_features(rgb, item0, grid, model.classes, oracle, s)[None]
        truth = to_uint8(rgb)
        scores = {}
        for name, h in guidance.items():
            item = item0 if h is None else dataclasses.replace(item0, hints=h.resolve(H, W))
            if h is not None and model.config.hints and not oracle:
                (pred,) = predictor.run([item])  # the hints are the network's input too
            else:
                zz = z if h is None else guide.steer(z[0], feats[0], item, model.classes,
                                                     predictor.prior)[None]  # fmt: skip
                ab = model.decode(zz, predictor.settings.temperature)[0].permute(1, 2, 0)
                pred = Predicted(item, ab.numpy())
            out = predictor.compose(pred, np.uint8)
            m = metrics.compare_pair(out, truth, stats)
            m["fidelity"] = None if h is None else fidelity(out, item.hints)
            scores[name] = m
    return scores


def table(rows: dict[str, dict]) -> str:
    auto = rows["automatic"]
    head = "| guidance | " + " | ".join(c[1] for c in COLUMNS) + " | Δ PSNR | Δ rebal. |"
    lines = [head, "|---" * (len(COLUMNS) + 3) + "|"]
    for name, m in rows.items():
        cells = ["–" if m.get(k) is None else f"{m[k]:.{nd}f}" for k, _, nd in COLUMNS]
        cells += [f"{m['psnr'] - auto['psnr']:+.2f}", f"{m['auc_rebal'] - auto['auc_rebal']:+.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> tuple[argparse.Namespace, Callable[[str], NoReturn]]:
    """The command line, checked, and the parser's usage error for what only the work finds;
    the guide's and hintinput's settings set from it."""
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("truth", help="folder of colour images")
    ap.add_argument("--stats", type=Path, required=True, help="rebalance-stats .npz of train")
    ap.add_argument("--weights", type=Path, help="cls checkpoint (default: the shipped one)")
    ap.add_argument("--skip", type=at_least(0), default=0, help="leave out the first N images")
    ap.add_argument("--first", type=at_least(0), help="then only N images in name order")
    ap.add_argument(
        "--points",
        type=at_least(1),
        nargs="*",
        default=list(POINTS),
        help="numbers of random truth points, one row each (none: no such rows)",
    )
    ap.add_argument(
        "--gamma", type=at_least(0, float), default=guide.GAMMA, help="predict --hint-strength"
    )
    ap.add_argument(
        "--power", type=at_least(0, float), default=guide.POWER, help="of the similarity"
    )
    ap.add_argument(
        "--alpha", type=at_least(0, float), default=guide.ALPHA, help="of a palette's shift"
    )
    ap.add_argument(
        "--radius",
        type=at_least(0, float),
        default=guide.RADIUS,
        help="of the distance term, a share of the grid's diagonal",
    )
    ap.add_argument("--seed", type=int, default=0, help="of the simulated hints' draws")
    ap.add_argument("--spread", choices=SPREADS, default="alike", help="predict --hint-spread")
    ap.add_argument(
        "--oracle",
        type=at_least(0, float, above=True),
        metavar="SIGMA",
        help="similarity from the truth",
    )
    ap.add_argument("--colourful", type=int, default=4, metavar="N",
                    help="N hints at the truth's most colourful places (0: none)")  # fmt: skip
    ap.add_argument("--no-palettes", action="store_true", help="no palette rows")
    ap.add_argument("--hint-model-steer", choices=("automatic", "guided", "none"),
                    default="automatic", help="a model that takes hints: steered through the "
                    "features of a pass without them, of the pass with them, or not at all "
                    "(hintinput.AFFINITY_FROM_AUTOMATIC, STEER_LEARNED)")  # fmt: skip
    ap.add_argument("--card", type=Path, help="model card to write the table into")
    ap.add_argument("--dump", type=Path, help="append each image's scores here (JSON lines)")
    ap.add_argument("--from-dump", type=Path, nargs="*", help="only tabulate these dumps")
    args = ap.parse_args()
    if not 0 <= args.colourful <= 9:  # 3 x 3 cells at most
        ap.error("--colourful must be 0 to 9")
    if args.from_dump == []:  # (empty: the whole evaluation ran instead)
        ap.error("--from-dump needs the dump files")
    if args.card and not has_section(args.card, *CARD_MARKS):  # said before the work, not after
        ap.error(f"--card {args.card}: no readable {CARD_MARKS[0]} ... {CARD_MARKS[1]} section")
    guide.GAMMA, guide.POWER, guide.ALPHA = args.gamma, args.power, args.alpha
    guide.RADIUS = args.radius
    hintinput.STEER_LEARNED = args.hint_model_steer != "none"
    hintinput.AFFINITY_FROM_AUTOMATIC = args.hint_model_steer == "automatic"
    return args, ap.error


def guidance_for(rgb: np.ndarray, f: Path, every: list[Path], points: Hints, args,
                 rng: np.random.Generator) -> dict[str, Hints | None]:  # fmt: skip
    """Each row's guidance for one image: none, the first n of its random ``points``, its
    colourful points, its own palette and another image's (drawn from ``every``)."""
    guidance: dict[str, Hints | None] = {"automatic": None}
    for n in args.points:
        guidance[f"{n} point{'s' * (n > 1)}"] = dataclasses.replace(
            points, xy=points.xy[:n], ab=points.ab[:n], size=points.size[:n],
            percent=points.percent[:n],
        )  # fmt: skip
    if args.colourful:
        guidance[f"{args.colourful} colourful points"] = colourful_points(rgb, args.colourful)
    if not args.no_palettes:
        guidance["own 8-colour palette"] = palette_of(rgb)
        j = int(rng.integers(len(every)))  # (one draw as before: the points' draws stand)
        if every[j] == f:  # its own palette was "another poster's" one time in len(every)
            j = (j + 1) % len(every)
        if every[j] != f:  # (a folder of one image has no other)
            guidance["another poster's palette"] = palette_of(read_rgb(every[j]))
    return {k: h if h is None else dataclasses.replace(h, spread=args.spread)
            for k, h in guidance.items()}  # fmt: skip


def main() -> None:
    args, ap_error = parse_args()
    if args.from_dump:
        rows = read_dumps(args.from_dump)
        n = len(rows["automatic"])
        report(rows, f"{n} images of {args.truth} (from {len(args.from_dump)} dumps)", args.card)
        return

    stats = RebalanceStats.load(args.stats)
    predictor = Predictor.load(args.weights, "cls")
    every = expand_inputs([args.truth])
    files = every[args.skip :][: args.first]
    if not files:
        first = f", --first {args.first}" if args.first is not None else ""
        ap_error(f"no images to evaluate ({len(every)} in {args.truth}, --skip {args.skip}"
                 f"{first})")  # fmt: skip
    if args.dump:  # opened now, not after the first image's work (a traceback then)
        try:
            args.dump.open("a").close()
        except OSError as e:
            from recolor_tools.errors import RecolorError
            from recolor_tools.fileio import os_reason

            raise RecolorError(f"--dump: {os_reason(e)}", args.dump) from None
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[dict]] = {}
    steer = args.hint_model_steer if predictor.model.config.hints else None
    if steer is not None and args.oracle:  # (the hints never reached the network, unsaid)
        ap_error("--oracle steers the automatic distribution with the truth's colours: it does "
                 "not run a hint model with its hints (--hint-model-steer)")  # fmt: skip
    for f in files:
        rgb = read_rgb(f)
        pts = simulate_points(rgb_to_lab(rgb)[:, :, 1:], max(args.points, default=0), rng)
        guidance = guidance_for(rgb, f, every, pts, args, rng)
        scores = evaluate_image(predictor, rgb, guidance, stats, args.oracle)
        for name, m in scores.items():
            rows.setdefault(name, []).append(m)
        if args.dump:
            line = {"file": str(f), "scores": scores, "steer": steer}
            with args.dump.open("a") as fh:
                print(json.dumps(line), file=fh, flush=True)
    what = f"{len(files)} images of {args.truth} (skipping the first {args.skip})"
    what += f", --hint-spread {args.spread}" * (args.spread != "alike")
    what += f", a hint model steered: {steer}" * (steer is not None)
    report(rows, what, args.card)


DUMP_KEYS = {*metrics.METRIC_KEYS, "fidelity"} - {"auc_rebal"}
"""What each guidance's scores in a --dump line hold (the rebalanced AuC where --stats gave it)."""


def read_dumps(paths: list[Path]) -> dict[str, list[dict]]:
    """Each guidance's per-image scores from ``--dump`` files (JSON lines, one per image)."""
    from recolor_tools.errors import RecolorError
    from recolor_tools.fileio import os_reason

    rows: dict[str, list[dict]] = {}
    steers = set()  # a hint model's --hint-model-steer: one table holds one
    for path in paths:
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise RecolorError(os_reason(e), path) from None
        except UnicodeDecodeError:
            raise RecolorError("not a --dump file (not UTF-8 text)", path) from None
        for i, line in enumerate(lines, 1):
            try:
                doc = json.loads(line)
                scores = doc["scores"]
                steers.add(doc.get("steer"))
                for name, m in scores.items():
                    if not m.keys() >= DUMP_KEYS:
                        raise KeyError(name)
                    rows.setdefault(name, []).append(m)
            except (ValueError, TypeError, KeyError, AttributeError):
                raise RecolorError(f"line {i} is not a --dump line", path) from None
    if "automatic" not in rows:
        raise RecolorError("no image's scores in the dumps", paths[0])
    if len(steers) > 1:
        ways = ", ".join(sorted(map(str, steers)))
        raise RecolorError(f"dumps of a hint model steered in other ways ({ways}): tabulate "
                           "each alone", paths[0])  # fmt: skip
    return rows


def report(rows: dict[str, list[dict]], what: str, card: Path | None) -> None:
    """Print the table of mean scores (and write it into ``card``)."""
    means = {}
    for name, ms in rows.items():
        means[name] = metrics.mean_metrics(ms)
        fid = [m["fidelity"] for m in ms if m["fidelity"] is not None]
        means[name]["fidelity"] = float(np.median(fid)) if fid else None
    text = (
        f"{what}, full size; gamma {guide.GAMMA}, power {guide.POWER}, radius {guide.RADIUS}, "
        f"alpha {guide.ALPHA}\n\n"
        f"{table(means)}\n"
    )
    print(text)
    if card:
        write_section(card, *CARD_MARKS, text)


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
