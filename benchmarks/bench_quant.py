"""Speed of the colour-class kernels against the usual ways of doing the same.

1. Soft encoding (the 5 nearest of the 395 gamut classes at grid 8, Gaussian weights,
   sigma 5) of a few million a/b pixels with :func:`recolor_tools.quant.soft_encode`, against

   a. scikit-learn ``NearestNeighbors(algorithm="ball_tree")`` plus the weights in numpy (what
      Zhang et al.'s code does), target: recolor >= 100x faster;
   b. ``torch.cdist`` + ``topk`` plus the weights in torch, target: >= 20x;
   c. a plain copy of an array the size of the output (idx int16 + w float32, 30 bytes per
      pixel), the floor that any encoder writing its output must pay.

   Then the small calls of training: the targets of 300 crops (32 x 32 a/b values each, shrunk
   with INTER_AREA from 128 px crops of the same images, as ``data.py`` does), one call each on
   one thread as in a DataLoader worker: recolor and both references per call (scikit-learn's
   tree fitted once). No target; it shows what a training step pays.

2. Annealed-mean decoding (T = 0.38) of network-like output, (B, Q, H, W) logits and
   (B, H, W, Q) probabilities, with :func:`recolor_tools.quant.annealed_mean` against the plain
   numpy formula (softmax(log p / T), then the expectation of the centres), target: >= 10x.

Pixels are a/b values of smooth random colour images (made here; no file is needed), or of the
images given on the command line. The two differ: a/b of 8-bit images repeats (87% of the Kodak
photographs' pixels find their value in soft_encode's memo), float images made here never do.
Run both, e.g. ``python benchmarks/bench_quant.py ../shared/data/kodak24`` for real images.
recolor runs on ``--threads`` (default 2); each reference runs with 1 thread and with
``--threads``, and the targets are judged against its faster setting (scikit-learn's ball tree
measured 1.4-1.9x slower with 2 jobs than with 1 on this 2-core machine). The references run on
evenly spaced subsets of the same pixels (they are slow; their rate does not depend on the
count). Soft encoding and the annealed mean are timed in rounds, every method once a round,
and each ratio is the median of the rounds' ratios: on a shared machine a slow spell then slows
both sides of a ratio rather than one. Each timed run follows an untimed run of the same method
(see ``paired_rounds``).

Usage::

    .venv/bin/python benchmarks/bench_quant.py [IMAGES...] [--pixels N] [--threads T]
        [--repeat R] [--sklearn-pixels N] [--torch-pixels N]

scikit-learn is a benchmark-only extra (``pip install scikit-learn``; ``make bench``); without
it that comparison is skipped. torch is imported here only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recolor_tools import quant  # noqa: E402

K, SIGMA, T = 5, 5.0, 0.38


def smooth_images(n_pixels: int, side: int = 512, seed: int = 0) -> np.ndarray:
    """a/b of random smooth colour images (bicubic blow-ups of 6x6 random colours), (N, 2)."""
    import cv2

    from recolor_tools.color import rgb_to_lab

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(max(1, -(-n_pixels // (side * side)))):
        small = rng.uniform(0, 1, (6, 6, 3)).astype(np.float32)
        rgb = np.clip(cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC), 0, 1)
        out.append(rgb_to_lab(rgb)[..., 1:].reshape(-1, 2))
    return np.ascontiguousarray(np.concatenate(out)[:n_pixels])


def image_pixels(paths: list[str]) -> np.ndarray:
    from recolor_tools.color import rgb_to_lab
    from recolor_tools.imageio import read_rgb
    from recolor_tools.inputs import expand_inputs

    return np.ascontiguousarray(
        np.concatenate(
            [rgb_to_lab(read_rgb(p))[..., 1:].reshape(-1, 2) for p in expand_inputs(paths)]
        )
    )


def crop_targets(paths: list[str], n: int = 300, size: int = 128, h: int = 32) -> list:
    """a/b training targets as ``data.PosterCrops`` makes them: (h, h, 2) INTER_AREA shrinks of
    ``size`` crops of the images (or of smooth made images), float values that rarely repeat.
    An image smaller than ``size`` gives crops of its shorter side."""
    import cv2

    from recolor_tools.color import rgb_to_lab
    from recolor_tools.imageio import read_rgb
    from recolor_tools.inputs import expand_inputs

    rng = np.random.default_rng(2)
    if paths:
        images = [read_rgb(p) for p in expand_inputs(paths)]
    else:
        images = [
            smooth_images(size * size, size, seed).reshape(size, size, 2) for seed in range(8)
        ]
    out = []
    for i in range(n):
        img = images[i % len(images)]
        side = min(size, *img.shape[:2])  # (a 64 px image: "high <= 0", a traceback)
        y, x = (int(rng.integers(0, d - side + 1)) for d in img.shape[:2])
        crop = img[y : y + side, x : x + side]
        ab = rgb_to_lab(crop)[..., 1:] if crop.shape[-1] == 3 else crop
        out.append(np.ascontiguousarray(cv2.resize(ab, (h, h), interpolation=cv2.INTER_AREA)))
    return out


def paired_rounds(methods: dict, rounds: int) -> dict[str, np.ndarray]:
    """Pixels per second of each ``name: (fn, pixels)``, one timed run of every method per
    round, as arrays over the rounds. Each timed run comes right after an untimed run of the
    same method: the first call after another library's work is slower for reasons of the
    machine's (here soft_encode took 224-333 ms right after scikit-learn's 2-job query and
    120-166 ms on the next call, in the same rounds), so every method is timed warm."""
    rates = {name: np.empty(rounds) for name in methods}
    for r in range(rounds):
        for name, (fn, pixels) in methods.items():
            fn()
            t = time.perf_counter()
            fn()
            rates[name][r] = pixels / (time.perf_counter() - t)
    return rates


def sklearn_encode(ab: np.ndarray, classes: np.ndarray, threads: int):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=K, algorithm="ball_tree", n_jobs=threads).fit(classes)
    d, idx = nn.kneighbors(ab)
    w = np.exp(-(d**2) / (2 * SIGMA**2))
    return idx.astype(np.int16), (w / w.sum(1, keepdims=True)).astype(np.float32)


# torch's reference works through 4,096 values at a time, its fastest chunk here: the (chunk, Q)
# distance matrix stays in cache (1.4 Mpixel/s on 2 threads, 0.7 on one, measured 2026-12-04).
def torch_encode(ab: np.ndarray, classes: np.ndarray, chunk: int = 1 << 12, threads: int = 0):
    import torch

    if threads:
        torch.set_num_threads(threads)
    c = torch.from_numpy(np.array(classes))
    idx_out = torch.empty((len(ab), K), dtype=torch.int16)
    w_out = torch.empty((len(ab), K), dtype=torch.float32)
    x = torch.from_numpy(ab)
    for lo in range(0, len(ab), chunk):
        d, i = torch.topk(torch.cdist(x[lo : lo + chunk], c), K, dim=1, largest=False)
        w = torch.exp(-(d**2) / (2 * SIGMA**2))
        idx_out[lo : lo + chunk] = i
        w_out[lo : lo + chunk] = w / w.sum(1, keepdim=True)
    return idx_out.numpy(), w_out.numpy()


def numpy_annealed_mean(scores: np.ndarray, classes: np.ndarray, axis: int, logits: bool):
    """The formula as usually written in numpy (float32 throughout)."""
    s = scores / T if logits else np.log(scores) / T
    s -= s.max(axis=axis, keepdims=True)
    e = np.exp(s)
    e /= e.sum(axis=axis, keepdims=True)
    return np.tensordot(e, classes, axes=([axis], [0]))


def network_logits(b: int, h: int, w: int, classes: np.ndarray, seed: int = 1) -> np.ndarray:
    """(B, Q, H, W) float32 logits peaked around a smooth a/b field, like a trained network."""
    rng = np.random.default_rng(seed)
    ab = smooth_images(b * h * w, side=h, seed=seed).reshape(b, h, w, 2)
    d2 = ((ab[..., None, :] - classes) ** 2).sum(-1)  # (B, H, W, Q)
    z = -d2 / (2 * 12.0**2) + rng.normal(0, 0.5, d2.shape)
    return np.ascontiguousarray(np.moveaxis(z.astype(np.float32), -1, 1))


def main() -> None:
    from recolor_tools.errors import at_least

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*", help="Images to take a/b pixels from (default: made).")
    ap.add_argument(
        "--pixels",
        type=at_least(1),
        default=4_000_000,
        help="a/b pixels to make and encode (with IMAGES: every pixel of theirs).",
    )
    ap.add_argument(
        "--sklearn-pixels", type=at_least(1), default=200_000, help="Subset for sklearn."
    )
    ap.add_argument("--torch-pixels", type=at_least(1), default=200_000, help="Subset for torch.")
    ap.add_argument("--threads", type=at_least(1), default=2, help="Threads for every method.")
    ap.add_argument(
        "--repeat",
        type=at_least(1),
        default=5,
        help="Paired rounds of every timing; each ratio is the median of the rounds' ratios.",
    )
    args = ap.parse_args()

    import numba
    import torch

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.threads)
    classes = np.asarray(quant.gamut_classes(8))
    bench_soft_encode(args, classes)
    bench_training_calls(args, classes)
    bench_annealed_mean(args, classes)


def bench_soft_encode(args, classes: np.ndarray) -> None:
    """1. Soft encoding of many pixels in one call, against the references and the memory copy
    (the module docstring's targets)."""
    ab = image_pixels(args.images) if args.images else smooth_images(args.pixels)
    n = len(ab)
    print(f"soft encoding: {n:,} a/b pixels, Q={len(classes)}, k={K}, sigma={SIGMA}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs")  # fmt: skip

    # Subsets for the slow references, spread over all the images rather than the first one.
    sub_sk = np.ascontiguousarray(ab[:: max(1, n // args.sklearn_pixels)][: args.sklearn_pixels])
    sub_torch = np.ascontiguousarray(ab[:: max(1, n // args.torch_pixels)][: args.torch_pixels])
    idx, w = quant.soft_encode(ab, classes, K, SIGMA)
    out_i, out_w = np.empty_like(idx), np.empty_like(w)
    methods = {
        "recolor soft_encode": (lambda: quant.soft_encode(ab, classes, K, SIGMA), n),
        "memory copy, fresh output": (lambda: (idx.copy(), w.copy()), n),
        "memory copy, reused output": (
            lambda: (np.copyto(out_i, idx), np.copyto(out_w, w)),
            n,
        ),
    }
    # Each reference runs with 1 thread and with --threads, and is judged at its faster setting:
    # scikit-learn's ball tree measured slower with 2 jobs than with 1 on this 2-core machine.
    counts = sorted({1, args.threads})
    for t in counts:
        methods[f"torch cdist+topk, {t} thr"] = (
            lambda t=t: torch_encode(sub_torch, classes, threads=t),
            len(sub_torch),
        )
    t_idx, _ = torch_encode(sub_torch, classes)
    agree = (t_idx == quant.soft_encode(sub_torch, classes, K, SIGMA)[0]).all(1).mean()
    agree_sk = wdiff = None
    try:
        s_idx, s_w = sklearn_encode(sub_sk, classes, args.threads)
        r_idx, r_w = quant.soft_encode(sub_sk, classes, K, SIGMA)
        agree_sk, wdiff = (s_idx == r_idx).all(1).mean(), np.abs(s_w - r_w).max()
        for t in counts:
            methods[f"sklearn ball tree, {t} thr"] = (
                lambda t=t: sklearn_encode(sub_sk, classes, t),
                len(sub_sk),
            )
    except ImportError:
        print("  sklearn reference skipped: no scikit-learn here (`make bench` installs it)")
    rates = paired_rounds(methods, args.repeat)
    ours = rates["recolor soft_encode"]
    print(f"  {args.repeat} rounds, each method once a round; rates are medians, ratios the "
          "median of the rounds' ratios (so a slow spell hits both sides of a ratio)")  # fmt: skip
    for name, r in rates.items():
        ratio = np.median(ours / r)
        print(f"  {name:28s} {np.median(r) / 1e6:9.2f} Mpixel/s   recolor is {ratio:7.2f}x")
    print(f"  same classes as torch: {100 * agree:.3f}% of pixels "
          "(others: ties or torch's float32 rounding)")  # fmt: skip
    if agree_sk is not None:
        print(f"  same classes as sklearn: {100 * agree_sk:.3f}%, max weight diff {wdiff:.1e}")
    checks = [("sklearn ball tree", 100), ("torch cdist+topk", 20)]
    for ref, target in checks:
        variants = [name for name in rates if name.startswith(ref)]
        if variants:  # the reference at its fastest setting
            name = min(variants, key=lambda v: np.median(ours / rates[v]))
            ratio = ours / rates[name]
            med = np.median(ratio)
            each = ", ".join(f"{x:.0f}" for x in ratio)
            verdict = "met" if med >= target else "NOT met"
            print(f"  target vs {name}: >= {target}x: {verdict} (median {med:.1f}x; rounds {each})")


def bench_training_calls(args, classes: np.ndarray) -> None:
    """1. (continued) One small call per training crop, on one thread, as a DataLoader worker
    makes them."""
    import numba

    crops = crop_targets(args.images)
    numba.set_num_threads(1)
    side = crops[0].shape[0]
    print(f"\nsoft encoding of training targets: {len(crops)} calls of {side}x{side} a/b "
          "values (crops shrunk with INTER_AREA, as data.py does), 1 thread")  # fmt: skip

    def ours_calls():
        for c in crops:
            quant.soft_encode(c, classes, K, SIGMA)

    per_call = {
        "recolor soft_encode": ours_calls,
        "torch cdist+topk": lambda: [
            torch_encode(c.reshape(-1, 2), classes, threads=1) for c in crops
        ],
    }
    try:
        from sklearn.neighbors import NearestNeighbors

        tree = NearestNeighbors(n_neighbors=K, algorithm="ball_tree", n_jobs=1).fit(classes)

        def sk_calls():
            for c in crops:
                d, i = tree.kneighbors(c.reshape(-1, 2))
                w = np.exp(-(d**2) / (2 * SIGMA**2))
                i.astype(np.int16), (w / w.sum(1, keepdims=True)).astype(np.float32)

        per_call["sklearn ball tree (fitted once)"] = sk_calls
    except ImportError:
        pass

    call_rates = paired_rounds({m: (fn, len(crops)) for m, fn in per_call.items()}, args.repeat)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    ours = call_rates["recolor soft_encode"]
    for name, r in call_rates.items():
        print(f"  {name:32s} {1e6 / np.median(r):9.1f} us a call   recolor is "
              f"{np.median(ours / r):7.2f}x")  # fmt: skip


def bench_annealed_mean(args, classes: np.ndarray) -> None:
    """2. Annealed-mean decoding against the plain numpy formula."""
    b, h, wd = 4, 128, 128
    z = network_logits(b, h, wd, classes)
    p_last = np.moveaxis(z, 1, -1)
    p_last = np.exp(p_last - p_last.max(-1, keepdims=True))
    p_last = np.ascontiguousarray(p_last / p_last.sum(-1, keepdims=True))
    print(f"\nannealed mean, T={T}: {b}x{len(classes)}x{h}x{wd} scores ({z.size:,} values)")
    for label, x, axis, logits in (
        ("(B,Q,H,W) logits", z, 1, True),
        ("(B,H,W,Q) probabilities", p_last, -1, False),
    ):
        kw = {"axis": axis, "logits": logits}
        with np.errstate(divide="ignore"):  # paired, as the soft encoding's: a slow spell of
            ref = numpy_annealed_mean(x, classes, axis, logits)  # a shared machine hits both
            rates = paired_rounds({
                "recolor": (lambda x=x, kw=kw: quant.annealed_mean(x, classes, T, **kw), x.size),
                "numpy": (lambda x=x, kw=kw: numpy_annealed_mean(x, classes, **kw), x.size),
            }, args.repeat)  # fmt: skip
        err = np.abs(quant.annealed_mean(x, classes, T, **kw) - ref).max()
        ratio = float(np.median(rates["recolor"] / rates["numpy"]))
        verdict = "met" if ratio >= 10 else "NOT met"
        ours, theirs = (float(np.median(rates[k])) / 1e6 for k in ("recolor", "numpy"))
        print(f"  {label:26s} recolor {ours:8.1f} Mvalue/s, numpy {theirs:7.1f} Mvalue/s: "
              f"{ratio:5.1f}x, median of {args.repeat} paired rounds (>= 10x {verdict}); "
              f"max |diff| {err:.1e}")  # fmt: skip


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
