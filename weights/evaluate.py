"""Evaluate the shipped weights on a validation folder and write the model card's table.

Run (from the repository root; ``make weights`` does it after training):

    python weights/evaluate.py ../shared/data/posters/val --stats runs/stats.npz \
        --work runs/eval --card weights/README.md

For each method it writes full-size predictions with the real tools, then scores them with
``recolor compare --json --stats`` twice: at full size, and at the network's working resolution
(prediction and truth both shrunk so their shorter side is ``--size``, by default the size
``recolor predict`` works at with cls.pt). Methods:

- gray: a = b = 0 (``recolor to-lab --l-only | recolor from-lab``);
- mean colour: every pixel gets the training set's mean a/b (from the class prior in --stats);
- reg, and cls at several temperatures (``recolor predict``).

The table replaces the text between ``<!-- eval:start -->`` and ``<!-- eval:end -->`` in --card.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a script from a checkout: its package and this folder's modules
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # (PEP 366; imported from
    __package__ = "weights"  # an installed copy, sys.path stays as it was)
from recolor_tools.errors import RecolorError  # noqa: E402
from recolor_tools.fileio import folder_error  # noqa: E402
from recolor_tools.imagehead import IMAGE_EXTS  # noqa: E402
from recolor_tools.imageio import read_rgb, resize_short_side, write_image  # noqa: E402

from .card import has_section, write_section  # noqa: E402

RECOLOR = [sys.executable, "-m", "recolor_tools"]
COLUMNS = [
    ("psnr", "PSNR dB", 2),
    ("ssim", "SSIM", 3),
    ("auc", "AuC %", 1),
    ("auc_rebal", "rebal. AuC %", 1),
    ("colourfulness_pred", "colourful.", 1),
    ("colourfulness_diff", "Δ colourful.", 1),
]


CARD_MARKS = ("<!-- eval:start -->", "<!-- eval:end -->")
"""Where the table goes in the model card."""


def sh(*args: str | Path, stdin: bytes | None = None) -> bytes:
    """Run a recolor tool; its stdout. A failure ends the script with the tool's own lines
    (a CalledProcessError traceback hid them)."""
    p = subprocess.run([*map(str, args)], input=stdin, capture_output=True)
    if p.returncode:
        sys.stderr.buffer.write(p.stderr)
        raise SystemExit(p.returncode)
    return p.stdout


def mean_colour_baseline(truth: list[Path], stats: Path, out: Path) -> None:
    from recolor_tools.color import lab_to_rgb, rgb_to_lab
    from recolor_tools.rebalance import RebalanceStats

    st = RebalanceStats.load(stats)
    p = st.counts / st.counts.sum()
    ab = (p[:, None] * st.classes).sum(0)
    out.mkdir(parents=True, exist_ok=True)
    for f in truth:
        lab = rgb_to_lab(read_rgb(f))
        lab[..., 1:] = ab
        write_image(out / (f.stem + ".png"), lab_to_rgb(lab))


def shrink_dir(src: Path, dst: Path, short: int) -> None:
    """PNG copies of ``src``'s PNGs with the shorter side ``short``, resized as predict does."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.png")):
        write_image(dst / f.name, resize_short_side(read_rgb(f), short, 1))


def score(pred: Path, truth: Path, stats: Path) -> dict:
    return json.loads(sh(*RECOLOR, "compare", pred, truth, "--stats", stats, "--json", "-q"))[
        "mean"
    ]


def table(rows: list[tuple[str, dict]]) -> str:
    head = "| method | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows:
        cells = []
        for key, _, nd in COLUMNS:
            v = m.get(key)
            cells.append("–" if v is None else f"{v:.{nd}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("val", type=Path, help="folder of colour images (the truth)")
    ap.add_argument("--stats", type=Path, required=True, help="rebalance-stats .npz of train")
    ap.add_argument("--weights", type=Path, default=Path("weights"),
                    help="folder holding cls.pt and reg.pt")  # fmt: skip
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work folder, new or empty (default: a new temporary one, named)",
    )
    ap.add_argument("--card", type=Path, default=None, help="model card to write the table into")
    ap.add_argument(
        "--size", type=at_least(32), default=None, help="default: predict's, for cls.pt"
    )
    ap.add_argument(
        "--temperatures",
        default="0.38,0.2,1.0",
        help="one cls row per temperature, comma-separated",
    )
    ap.add_argument("--limit", type=at_least(0), default=0, help="only the first N images (0: all)")
    args = ap.parse_args()

    if args.size is None:
        from recolor_tools.checkpoints import read_checkpoint
        from recolor_tools.predict import default_size

        args.size = default_size(read_checkpoint(args.weights / "cls.pt"))
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        # its truth/, gray/ and predictions would be scored with the new ones
        ap.error(f"--work {args.work} is not empty (an earlier run's images would be scored)")
    if args.card is not None and not has_section(args.card, *CARD_MARKS):  # (skipped, unsaid)
        ap.error(f"--card {args.card}: no readable {CARD_MARKS[0]} ... {CARD_MARKS[1]} section")
    if not args.val.is_dir():  # (FileNotFoundError's traceback, after the work folder line)
        raise RecolorError("no such directory" if not args.val.exists() else "not a directory",
                           args.val)  # fmt: skip
    work = args.work or Path(tempfile.mkdtemp(prefix="recolor-eval-"))
    print(f"work folder: {work}", file=sys.stderr)
    # every format recolor reads (subset.py writes WebP); one folder deep, as its copies are
    truth_files = sorted(f for f in args.val.iterdir() if f.suffix.lower() in IMAGE_EXTS)
    if not truth_files:
        raise folder_error(args.val)  # (as every tool says it)
    stems = [f.stem for f in truth_files]
    if len(set(stems)) < len(stems):  # copied as STEM.png below: one would replace the other
        twice = next(s for s in stems if stems.count(s) > 1)
        raise RecolorError(f"two images named {twice} (another extension each)", args.val)
    if args.limit:
        truth_files = truth_files[: args.limit]
    truth = work / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    for f in truth_files:  # PNG copies: one decoder for truth and predictions alike
        write_image(truth / (f.stem + ".png"), read_rgb(f))

    methods: list[tuple[str, Path]] = []
    gray = work / "gray"
    lab = sh(*RECOLOR, "to-lab", "--l-only", "-q", truth)
    sh(*RECOLOR, "from-lab", "-o", f"{gray}/", "-q", stdin=lab)
    methods.append(("gray (a = b = 0)", gray))
    mean = work / "mean"
    mean_colour_baseline(sorted(truth.iterdir()), args.stats, mean)
    methods.append(("training mean colour", mean))
    if (args.weights / "reg.pt").exists():
        out = work / "reg"
        sh(*RECOLOR, "predict", "--head", "reg", "--weights", args.weights / "reg.pt",
           "-o", f"{out}/", "--format", "png", "-q", truth)  # fmt: skip
        methods.append(("reg", out))
    if (args.weights / "cls.pt").exists():
        for t in args.temperatures.split(","):
            out = work / f"cls-T{t}"
            sh(*RECOLOR, "predict", "--head", "cls", "--weights", args.weights / "cls.pt",
               "--temperature", t, "-o", f"{out}/", "--format", "png", "-q", truth)  # fmt: skip
            methods.append((f"cls, T = {t}", out))

    full = [(name, score(d, truth, args.stats)) for name, d in methods]
    small_truth = work / "small" / "truth"
    shrink_dir(truth, small_truth, args.size)
    small = []
    for name, d in methods:
        shrink_dir(d, work / "small" / d.name, args.size)
        small.append((name, score(work / "small" / d.name, small_truth, args.stats)))

    text = (
        f"Validation: {len(truth_files)} images of `{args.val}`; compared with `recolor compare`"
        f" (`--stats` {args.stats.name}).\n\n"
        f"At full size:\n\n{table(full)}\n\n"
        f"At the working resolution (shorter side {args.size} px):\n\n{table(small)}\n"
    )
    print(text)
    (work / "eval.json").write_text(json.dumps({"full": full, "working": small}, indent=1))
    if args.card:
        write_section(args.card, *CARD_MARKS, f"{text}\n")


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
