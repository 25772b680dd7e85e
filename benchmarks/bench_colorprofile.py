"""Cost of colour management on read: decoding with an embedded ICC profile against without.

Run: python benchmarks/bench_colorprofile.py [--mp 3] [--runs 5]

A smooth generated image of --mp megapixels is encoded as 8- and 16-bit PNG, once plain and once
tagged with a wide-gamut matrix profile (``colorprofile.matrix_profile``). Each is decoded by
``imageio.decode_rgb`` (median of --runs, after one warm-up that builds and caches the profile's
transform); the script prints seconds per megapixel and the ratio to the plain decode (and
their difference, the colour management's own cost), and the one-off cost of building a
profile's transform (littleCMS on the 86^3-node grid). Then the two 16-bit paths alone, timed
on the same samples: the matrix/TRC formulas (this profile's) and the sampled table (a profile
with lookup tables), and the accuracy of each against littleCMS itself (the 8-bit path) on the
8-bit image, over the samples littleCMS does not clamp to 0 or 255. Last, the 8-bit image
as read to Lab: ``rgb_to_lab(to_float(x))`` against the table of the sRGB curve that to-lab
(``color.samples_to_lab``) and predict's lightness (``color.rgb_to_l``) take, bit-identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recolor_tools import color, colorprofile  # noqa: E402
from recolor_tools.imageio import decode_rgb  # noqa: E402
from recolor_tools.metachunks import insert_metadata  # noqa: E402

WIDE = [(0.7347, 0.2653), (0.1152, 0.8264), (0.1566, 0.0177)]


def _median_time(fn, runs: int) -> float:
    fn()  # warm-up: caches, numba compilation
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--mp",
        type=at_least(0.01, float),
        default=3.0,
        help="Megapixels of the test image (at least 0.01).",
    )
    ap.add_argument("--runs", type=at_least(1), default=5)
    args = ap.parse_args()

    w = int(round((args.mp * 1e6 * 1.5) ** 0.5))
    h = int(round(args.mp * 1e6 / w))
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.random((4, 6, 3), np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 1)
    icc = colorprofile.matrix_profile(WIDE, 2.2, "Benchmark wide-gamut RGB")
    t0 = time.perf_counter()
    colorprofile.to_srgb(icc)
    build = time.perf_counter() - t0
    mp = h * w / 1e6
    print(f"image {w}x{h} ({mp:.1f} MP); building the profile's transform once: {build:.3f} s")
    print(f"{'decode':28} {'s/MP':>8} {'x plain':>8}")
    for bits, dtype, scale in ((8, np.uint8, 255), (16, np.uint16, 65535)):
        pix = np.rint(img * scale).astype(dtype)[:, :, ::-1]
        ok, enc = cv2.imencode(".png", np.ascontiguousarray(pix))
        assert ok
        plain = enc.tobytes()
        tagged = insert_metadata(plain, ".png", (h, w), icc=icc)
        base = _median_time(lambda data=plain: decode_rgb(data), args.runs)
        managed = _median_time(lambda data=tagged: decode_rgb(data), args.runs)
        print(f"{f'{bits}-bit PNG, no profile':28} {base / mp:8.3f} {1.0:8.2f}")
        print(f"{f'{bits}-bit PNG, wide-gamut ICC':28} {managed / mp:8.3f} {managed / base:8.2f}")
        print(f"{'  -> colour management':28} {(managed - base) / mp:8.3f}")
    xf = colorprofile.to_srgb(icc)
    tabled = dataclasses.replace(xf, source=None)  # as a profile with lookup tables goes
    rgb16 = np.rint(img * 65535) / np.float32(65535)
    formula_s = _median_time(lambda: xf.apply(rgb16, depth=16), args.runs)
    table_s = _median_time(lambda: tabled.apply(rgb16, depth=16), args.runs)
    print(f"16-bit samples: matrix/TRC formulas {formula_s / mp:.3f} s/MP, sampled table "
          f"{table_s / mp:.3f} s/MP (formulas / table {formula_s / table_s:.2f}x)")  # fmt: skip
    rgb8 = np.rint(img * 255) / np.float32(255)
    for name, t in (("formulas", xf), ("table", tabled)):
        _accuracy(name, rgb8, t)
    _lab_of_samples(np.rint(img * 255).astype(np.uint8), mp, args.runs)


def _lab_of_samples(u8: np.ndarray, mp: float, runs: int) -> None:
    """An 8-bit image as read, to Lab: the public path (a float copy, the sRGB curve's power
    per sample) against the table of the curve that to-lab (samples_to_lab) and predict's
    lightness (rgb_to_l) take; each checked bit-identical to it."""
    full = color.rgb_to_lab(color.to_float(u8))
    assert np.array_equal(color.samples_to_lab(u8), full)
    assert np.array_equal(color.rgb_to_l(u8), full[:, :, 0])
    ref = _median_time(lambda: color.rgb_to_lab(color.to_float(u8)), runs)
    table = _median_time(lambda: color.samples_to_lab(u8), runs)
    light = _median_time(lambda: color.rgb_to_l(u8), runs)
    print(f"8-bit samples to Lab: rgb_to_lab(to_float) {ref / mp:.3f} s/MP, samples_to_lab "
          f"{table / mp:.3f} ({ref / table:.2f}x), L alone rgb_to_l {light / mp:.3f} "
          f"({ref / light:.2f}x); bit-identical")  # fmt: skip


def _accuracy(name: str, rgb8: np.ndarray, xf: colorprofile.Transform) -> None:
    exact = np.rint(xf.apply(rgb8, depth=8) * 255).astype(int)
    got = np.rint(xf.apply(rgb8, depth=16) * 255).astype(int)
    inside = ((exact > 0) & (exact < 255)).all(axis=-1)
    diff = np.abs(got - exact).max(axis=-1)[inside]
    print(
        f"{name} vs littleCMS, 8-bit data ({inside.mean():.0%} of pixels unclamped): "
        f"{(diff == 0).mean():.1%} equal, {(diff <= 1).mean():.2%} within 1 code, "
        f"p99 {np.percentile(diff, 99):.0f}, max {diff.max()} codes"
    )


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
