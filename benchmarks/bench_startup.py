"""Start-up time of each recolor tool, next to a bare Python interpreter; with --cold, each
tool's first run on a fresh install next to its second run.

Run: python benchmarks/bench_startup.py [--runs 7]
     python benchmarks/bench_startup.py --cold [--runs 3] [--rebalance-images 20]

For each tool it times a whole process (median of --runs) and prints the time and its ratio to
``python -c pass``. The tools that need no model do real work on a small generated image
(to-lab, from-lab, compare); the others are timed on ``--help``, which shows the cost of
importing the CLI alone (torch is imported only when train or predict run a model).

``--cold`` times a fresh install's first runs, end to end from files to files as a user meets
them: ``to-lab | quantize`` of a 256 x 256 image and ``rebalance-stats`` over a few generated
images (both compile numba kernels on a first run), and ``predict`` of one image on the CPU
(which compiles none: its cold and warm runs should match). Each run of a round gets an empty kernel
cache of its own (a temporary ``NUMBA_CACHE_DIR``) for its first (cold) run, then runs again on
it (warm); the table shows, in wall-clock and in CPU seconds (user + system, all processes of
the command), the medians over --runs rounds of the cold and the warm run and of their
difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _time(cmd: list[str], runs: int, env: dict, stdin: bytes | None = None) -> float:
    """Median seconds of a whole process; it must succeed (a tool that fails at once would
    time as a fast start)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, input=stdin, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
        if p.returncode:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr.decode(errors='replace')}")
    return statistics.median(times)


def _shell(cmd: str, env: dict) -> tuple[float, float]:
    """Seconds a shell command line takes, wall and CPU (user + system of all its processes:
    on a shared machine the CPU time, mostly compilation, varies less); it must succeed."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    p = subprocess.run(cmd, shell=True, env=env, capture_output=True, check=False)
    if p.returncode:
        raise SystemExit(f"failed: {cmd}\n{p.stderr.decode(errors='replace')}")
    return time.perf_counter() - t0, cpu() - c0


def cold(runs: int, n_images: int) -> None:
    """Each kernel-compiling tool's first run on an empty kernel cache, and its second run."""
    import shlex

    with tempfile.TemporaryDirectory(prefix="recolor-cold-") as folder:  # removed after
        tmp = Path(folder)
        rng = np.random.default_rng(0)
        for i in range(n_images):
            small = rng.integers(0, 255, (6, 6, 3), np.uint8)
            cv2.imwrite(str(tmp / f"img{i}.png"), cv2.resize(small, (256, 256), cv2.INTER_CUBIC))
        recolor = " ".join(shlex.quote(x) for x in (sys.executable, "-m", "recolor_tools"))
        one = shlex.quote(str(tmp / "img0.png"))
        cases = [
            ("to-lab | quantize", f"{recolor} to-lab {one} | {recolor} quantize -o {tmp}/t.target"),
            (
                f"rebalance-stats ({n_images} images)",
                f"{recolor} rebalance-stats {tmp}/img*.png -o {tmp}/stats.npz",
            ),
            ("predict (cpu)", f"{recolor} predict {one} --device cpu -o {tmp}/out.png"),
        ]
        print(f"{'':34} {'wall s':^26} {'CPU s':^26}")
        print(f"{'command':34}" + f" {'cold':>8} {'warm':>8} {'cold-warm':>9}" * 2)
        for name, cmd in cases:
            rounds = []
            for r in range(runs):
                cache = tmp / f"cache-{name.split()[0]}-{r}"
                env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
                (cw, cc), (ww, wc) = _shell(cmd, env), _shell(cmd, env)
                rounds.append((cw, ww, cw - ww, cc, wc, cc - wc))
            med = [statistics.median(x[i] for x in rounds) for i in range(6)]
            print(f"{name:34}" + " {:8.2f} {:8.2f} {:9.2f}".format(*med[:3]), end="")
            print(" {:8.2f} {:8.2f} {:9.2f}".format(*med[3:]), flush=True)


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--runs", type=at_least(1), default=None, help="Rounds (default 7; 3 with --cold)."
    )
    ap.add_argument("--cold", action="store_true", help="First runs on an empty kernel cache.")
    ap.add_argument("--rebalance-images", type=at_least(1), default=20, help="Images for --cold.")
    args = ap.parse_args()
    if args.cold:
        cold(args.runs or 3, args.rebalance_images)
        return
    args.runs = args.runs or 7

    with tempfile.TemporaryDirectory(prefix="recolor-bench-") as folder:  # removed after
        tmp = Path(folder)
        img = tmp / "small.png"
        rng = np.random.default_rng(0)
        cv2.imwrite(str(img), cv2.resize(rng.integers(0, 255, (4, 4, 3), np.uint8), (128, 96)))
        recolor = [sys.executable, "-m", "recolor_tools"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's, as cold() runs it
        lab = subprocess.run(
            [*recolor, "to-lab", str(img)], env=env, capture_output=True, check=True
        ).stdout

        base = _time([sys.executable, "-c", "pass"], args.runs, env)
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
            t = _time(cmd, args.runs, env, stdin)
            print(f"{name:32} {t:9.3f} {t / base:17.1f}")


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
