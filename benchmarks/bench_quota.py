"""Threads under a CPU quota: recolor's tools in a cgroup that allows fewer CPUs than the
process's affinity mask counts (a container's ``--cpus``, a Kubernetes CPU limit).

torch, numba and OpenMP size their thread pools by the mask; the kernel then throttles the
threads for most of each period. recolor caps them at the quota
(:func:`recolor_tools.process.usable_cores`). Each command runs end to end, files to files, in
a fresh process placed in a cgroup with a quota of ``--cpus`` CPUs: as it runs now (its
threads at the quota) against the same command with ``usable_cores`` giving the mask's count
(the reference: the threads it ran before). Medians of ``--repeat`` runs, after one untimed
run of each, and their ratio.

Needs root and a cgroup hierarchy with the cpu controller that can be written (v1
``/sys/fs/cgroup/cpu``, or v2 with ``cpu`` in the root's ``cgroup.subtree_control``), and more
CPUs in the mask than the quota; says it skipped otherwise.

Usage::

    .venv/bin/python benchmarks/bench_quota.py [--cpus 1] [--repeat 3] [--images 24]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_cgroup(cpus: float) -> Path:
    """A new cgroup allowing ``cpus`` CPUs per period; its folder. None is left behind when a
    write is refused."""
    name = f"recolor-bench-{os.getpid()}"
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        group = v1 / name
        writes = {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(int(cpus * 100000))}
    elif "cpu" in (Path("/sys/fs/cgroup") / "cgroup.subtree_control").read_text().split():
        group = Path("/sys/fs/cgroup") / name
        writes = {"cpu.max": f"{int(cpus * 100000)} 100000"}
    else:
        raise OSError("no cgroup with the cpu controller to write to")
    group.mkdir()
    try:
        for file, value in writes.items():
            (group / file).write_text(value)
    except OSError:
        group.rmdir()  # (the caller's try/finally starts only once this returns)
        raise
    return group


def run_as(cores: int | None) -> list[str]:
    """A ``recolor`` command line; with ``cores``, one whose ``usable_cores`` gives that."""
    patch = f"process.usable_cores = lambda: {cores}; " if cores else ""
    code = (
        f"import runpy, sys; from recolor_tools import process; {patch}"
        "sys.argv = ['recolor', *sys.argv[1:]]; runpy.run_module('recolor_tools', "
        "run_name='__main__')"
    )
    return [sys.executable, "-c", code]


def timed(cmd: list[str], group: Path, env: dict) -> float:
    """Seconds that ``cmd`` took, run in ``group``."""

    def enter() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))

    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, preexec_fn=enter, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    import cv2
    import numpy as np

    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # (1 ms a 100 ms period, the least quota cgroups take)
    ap.add_argument("--cpus", type=at_least(0.01, float), default=1.0)
    ap.add_argument("--repeat", type=at_least(1), default=3)
    ap.add_argument("--images", type=at_least(1), default=24)
    args = ap.parse_args()
    mask = len(os.sched_getaffinity(0))
    if mask <= args.cpus:  # (said, not failed: `make bench` runs it anywhere)
        print(f"bench_quota: skipped, the affinity mask has {mask} CPUs, no more than --cpus")
        return
    try:
        group = make_cgroup(args.cpus)
    except OSError as e:
        print(f"bench_quota: skipped, it needs root and a writable cgroup cpu controller ({e})")
        return
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            for i in range(args.images):  # smooth colour fields, a little noise
                small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                img = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
                img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(f"{tmp}/im{i:03d}.jpg", img)
            jpgs = sorted(str(p) for p in Path(tmp).glob("*.jpg"))
            lab = f"{tmp}/all.lab"
            subprocess.run([*run_as(None), "to-lab", *jpgs, "-o", lab], check=True)
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            cases = {
                "predict (cls, 256x256 JPEGs)":
                    ["predict", "--head", "cls", *jpgs, "-o", f"{tmp}/out/", "-q"],
                "quantize (records to targets)": ["quantize", lab, "-o", f"{tmp}/t.target", "-q"],
            }  # fmt: skip
            print(f"cgroup quota {args.cpus:g} CPUs, affinity mask {mask} CPUs; "
                  f"{args.images} images, median of {args.repeat}")  # fmt: skip
            print(f"{'command':32} {'at the mask':>12} {'at the quota':>13} {'ratio':>6}")
            for what, tool in cases.items():
                at_mask, at_quota = [*run_as(mask), *tool], [*run_as(None), *tool]
                # untimed first: on an empty kernel cache the first quantize compiles numba's
                # kernels, which went to the side timed first (a 2.85x "gain" at --repeat 1)
                for cmd in (at_mask, at_quota):
                    timed(cmd, group, env)
                ref, now = [], []
                for _ in range(args.repeat):
                    ref.append(timed(at_mask, group, env))
                    now.append(timed(at_quota, group, env))
                r, n = statistics.median(ref), statistics.median(now)
                print(f"{what:32} {r:11.2f}s {n:12.2f}s {r / n:5.2f}x")
    finally:
        group.rmdir()


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
