"""Start-up time of each recolor tool, next to a bare Python interpreter.

Run: python benchmarks/bench_startup.py [--runs 7]

For each tool it times a whole process (median of --runs) and prints the time and its ratio to
``python -c pass``. The tools that need no model do real work on a small generated image
(to-lab, from-lab, compare); the others are timed on ``--help``, which shows the cost of
importing the CLI alone (torch is imported only when train or predict run a model).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def _time(cmd: list[str], runs: int, stdin: bytes | None = None) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, input=stdin, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="recolor-bench-"))
    img = tmp / "small.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(img), cv2.resize(rng.integers(0, 255, (4, 4, 3), np.uint8), (128, 96)))
    recolor = [sys.executable, "-m", "recolor_tools"]
    lab = subprocess.run([*recolor, "to-lab", str(img)], capture_output=True, check=True).stdout

    base = _time([sys.executable, "-c", "pass"], args.runs)
    cases = [
        ("to-lab small.png", [*recolor, "to-lab", str(img)], None),
        ("from-lab (stdin)", [*recolor, "from-lab"], lab),
        ("compare small.png small.png", [*recolor, "compare", str(img), str(img)], None),
        ("import torch (reference)", [sys.executable, "-c", "import torch"], None),
    ]
    cases += [
        (f"{tool} --help", [*recolor, tool, "--help"], None)
        for tool in ("quantize", "rebalance-stats", "train", "predict")
    ]
    print(f"{'command':32} {'median s':>9} {'x python -c pass':>17}")
    print(f"{'python -c pass':32} {base:9.3f} {1.0:17.1f}")
    for name, cmd, stdin in cases:
        t = _time(cmd, args.runs, stdin)
        print(f"{name:32} {t:9.3f} {t / base:17.1f}")


if __name__ == "__main__":
    main()
