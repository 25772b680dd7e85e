"""Shrink a poster folder into a small training subset that fits a GPU machine's upload limit.

Run (from the repository root)::

    python weights/subset.py ../shared/data/posters/train runs/posters/train --keep 2 --of 3
    python weights/subset.py ../shared/data/posters/val runs/posters/val200 --first 200

Each kept image is resized (``imageio.resize_short_side``: area averaging) so that its
shorter side is ``--short`` pixels (128: the training size, so a random crop still has the tall
poster's full width) and written as WebP at ``--quality``. The loss is computed at 1/4 of the
crop, so WebP's chroma subsampling and quality 70 lose little of the target; about 4.8 KB per
poster. ``--keep K --of N [--start S]`` keeps the files whose index in name order, modulo N, lies
in [S, S + K): ``--keep 1 --of 2 --start 0`` and ``--start 1`` split a folder into halves that
can travel to a GPU machine in two uploads.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if not __package__:  # run as a script from a checkout: its package and this folder's modules
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # (PEP 366; imported from
    __package__ = "weights"  # an installed copy, sys.path stays as it was)
from recolor_tools.errors import RecolorError  # noqa: E402
from recolor_tools.imageio import read_rgb, resize_short_side, write_image  # noqa: E402
from recolor_tools.inputs import expand_inputs  # noqa: E402


def shrink(src: Path, dst: Path, short: int, quality: int) -> int:
    write_image(dst, resize_short_side(read_rgb(src), short, short), quality=quality)
    return dst.stat().st_size


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="folder of images (searched below)")
    ap.add_argument("dst", type=Path, help="folder for the WebP copies (not inside src)")
    ap.add_argument("--short", type=at_least(1), default=128, help="shorter side of the copies, px")
    ap.add_argument("--quality", type=int, default=70, help="WebP quality, 1-100")
    ap.add_argument("--keep", type=at_least(1), default=1, help="keep K files of every --of")
    ap.add_argument("--of", type=at_least(1), default=1, help="(see --keep)")
    ap.add_argument("--start", type=at_least(0), default=0, help="from this one of every --of")
    ap.add_argument("--first", type=at_least(0), default=None, help="only the first N files")
    args = ap.parse_args()
    if not 1 <= args.quality <= 100:
        ap.error("--quality must be 1 to 100")
    if args.src.resolve() == args.dst.resolve() or args.src.resolve() in args.dst.resolve().parents:
        ap.error("dst must not be src or inside it: the subset would be read back as posters")
    if args.start >= args.of:  # (nothing kept, an empty dst)
        ap.error("--start must be below --of")
    # the images the tools read (a README or .DS_Store beside them aborted the run)
    files = sorted(Path(p) for p in expand_inputs([str(args.src)]))
    kept = [p for i, p in enumerate(files) if 0 <= i % args.of - args.start < args.keep]
    files = kept[: args.first]
    names = [p.stem for p in files]
    if len(set(names)) < len(names):  # a/x.jpg and b/x.jpg: one x.webp, the count wrong
        twice = sorted({n for n in names if names.count(n) > 1})
        ap.error(f"files of one name in two folders would share an output: {twice[:3]}")
    if args.dst.exists() and not args.dst.is_dir():  # (FileExistsError's traceback)
        raise RecolorError("exists and is not a directory", args.dst)
    args.dst.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor() as pool:
        sizes = list(
            pool.map(
                lambda p: shrink(p, args.dst / (p.stem + ".webp"), args.short, args.quality),
                files,
            )
        )
    print(f"{len(sizes)} images, {sum(sizes) / 1e6:.1f} MB, in {args.dst}")


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
