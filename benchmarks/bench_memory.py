"""Peak memory of the tools that need no model, on a 6000x4000 image, next to the image itself.

Run: python benchmarks/bench_memory.py [--size 6000 4000]

Each tool runs alone in a subprocess on generated files (an 8-bit JPEG photograph-sized image,
its Lab record, a second JPEG to compare it with, and the image as a 16-bit PNG in a wide-gamut
ICC profile, converted by its formulas), and its peak resident memory is read from
``ru_maxrss`` (as in bench_predict.py, whose memory part covers ``predict``). Printed: the peak
in MiB, its ratio to the decoded image (H x W x 3 bytes) and the run's seconds, and the same
for a bare ``import cv2, numpy`` process, the floor every tool starts from.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recolor_tools import colorprofile  # noqa: E402
from recolor_tools.metachunks import insert_metadata  # noqa: E402


def child_maxrss_mib(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd`` alone and return its peak RSS in MiB (ru_maxrss of waited-for children)."""
    # ru_maxrss of RUSAGE_CHILDREN is the max over all children so far: run each measurement in
    # a fresh intermediate Python so earlier children do not mask it.
    probe = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:], capture_output=True);"
        "sys.stderr.write(p.stderr.decode(errors='replace'));"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, cwd=ROOT
    )
    rc, kib = p.stdout.split()
    return int(kib) / 1024, subprocess.CompletedProcess(cmd, int(rc), "", p.stderr)


def write_photo(path: Path, w: int, h: int, seed: int) -> np.ndarray:
    """A photograph-sized 8-bit JPEG at ``path``, made in a few seconds: a smooth colour field
    (a cubic blow-up of 6 x 9 random colours) plus noise of 0-7, quality 92, a realistic file
    size. Returns its pixels (BGR) before encoding."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 9, 3)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.integers(0, 8, (h, w, 1), dtype=np.uint8)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return img


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=at_least(1), nargs=2, default=[6000, 4000], metavar=("W", "H"))
    args = ap.parse_args()
    w, h = args.size
    recolor = [sys.executable, "-m", "recolor_tools"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for name, seed in (("a.jpg", 0), ("b.jpg", 1)):
            write_photo(t / name, w, h, seed)
        # a 16-bit master in a wide-gamut matrix profile: the float colour-management path
        wide = [(0.7347, 0.2653), (0.1152, 0.8264), (0.1566, 0.0177)]
        img16 = cv2.imread(str(t / "a.jpg")).astype(np.uint16) * np.uint16(257)
        enc = cv2.imencode(".png", img16, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
        icc = colorprofile.matrix_profile(wide, 2.2, "Wide")
        (t / "w16.png").write_bytes(insert_metadata(enc, ".png", (h, w), icc=icc))
        del img16, enc
        image_mib = h * w * 3 / 2**20
        runs = {
            "import cv2, numpy": [sys.executable, "-c", "import cv2, numpy"],
            "to-lab": [*recolor, "to-lab", t / "a.jpg", "-o", t / "a.lab"],
            "to-lab --max-size": [
                *recolor,
                "to-lab",
                t / "a.jpg",
                "--max-size",
                "1024",
                "-o",
                t / "small.lab",
            ],  # fmt: skip
            "to-lab 16-bit + ICC": [*recolor, "to-lab", t / "w16.png", "-o", t / "w.lab"],
            "from-lab -> png": [*recolor, "from-lab", t / "a.lab", "-o", t / "a.png"],
            "from-lab -> jpg": [*recolor, "from-lab", t / "a.lab", "-o", t / "a2.jpg"],
            "quantize": [*recolor, "quantize", t / "a.lab", "-o", t / "a.targets"],
            "rebalance-stats": [*recolor, "rebalance-stats", t / "a.lab", "-o", t / "s.npz"],
            "compare": [*recolor, "compare", t / "a.jpg", t / "b.jpg"],
        }
        print(f"{w}x{h} 8-bit RGB: {image_mib:.0f} MiB decoded")
        print(f"{'command':20s} {'peak MiB':>9s} {'x image':>8s} {'seconds':>8s}")
        for name, cmd in runs.items():
            t0 = time.perf_counter()
            peak, p = child_maxrss_mib([str(c) for c in cmd])
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                print(f"{name}: failed ({p.returncode}): {p.stderr.strip()}")
                continue
            print(f"{name:20s} {peak:9.0f} {peak / image_mib:8.1f} {dt:8.1f}")


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
