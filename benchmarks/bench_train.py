"""Training throughput, and how much of a step is spent waiting for data.

Measurements, on synthetic 182x268 JPEG "posters" (smooth random colour fields with noise and
hard-edged blocks, so decoding costs what a real poster's does):

1. data: decoding + crop + Lab + targets (cls: soft encoding with rebalancing weights) of one
   item, in-process (ms per image), and its ratio to a bare ``cv2.imread`` of the same files;
2. compute: forward + backward + Adam step on a preloaded batch (img/s; on CUDA with the same
   mixed precision and channels-last layout as ``train``);
3. pipeline: the training loop over a DataLoader with W workers (W = 0 loads in the training
   process): img/s and the share of wall time spent waiting for the next batch;
4. end to end: :func:`recolor_tools.train.train` itself, the img/s it logs for its second
   evaluation interval (so start-up and worker spawning are excluded).

3 and 4 are printed as ratios to 2, the ceiling that a loader which never kept the model
waiting would reach, measured again right after each of them and taken as the mean of the
measurements on either side (a ceiling measured once, first, gave ratios of 1.5 on a machine
whose load changed during the run).

Usage::

    .venv/bin/python benchmarks/bench_train.py [--size 128] [--batch-size 16] [--steps 20]
        [--workers 0 1 2] [--threads N] [--device auto|cpu|cuda] [--head cls|reg]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recolor_tools import models, quant  # noqa: E402
from recolor_tools.data import ColorDataset, EpochSampler, make_loader  # noqa: E402
from recolor_tools.train import TrainConfig, train  # noqa: E402


def make_posters(directory: Path, n: int, seed: int = 0) -> list[str]:
    """n poster-sized (268 high, 182 wide) JPEGs with colour gradients, blocks and noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        field = cv2.resize(rng.uniform(0, 255, (4, 3, 3)).astype(np.float32), (182, 268))
        for _ in range(6):  # hard-edged blocks: text and figures
            y, x = rng.integers(0, 240), rng.integers(0, 160)
            field[y : y + rng.integers(8, 60), x : x + rng.integers(8, 60)] = rng.uniform(0, 255, 3)
        field += rng.normal(0, 8, field.shape)
        path = directory / f"poster{i:03d}.jpg"
        cv2.imwrite(
            str(path), np.clip(field, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        paths.append(str(path))
    return paths


def dataset(paths: list[str], head: str, size: int) -> ColorDataset:
    classes = quant.gamut_classes(8) if head == "cls" else None
    weights = None if classes is None else np.ones(len(classes), np.float32)
    return ColorDataset(paths, size, head=head, classes=classes, class_weights=weights)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def setup_model(head: str, device: torch.device):
    q = len(quant.gamut_classes(8)) if head == "cls" else 0
    model = models.Colorizer(models.ModelConfig(head=head, num_classes=q)).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        autocast = torch.autocast("cuda", dtype=dtype)
    else:
        autocast = contextlib.nullcontext()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4), autocast


def step(model, opt, autocast, batch: dict, device: torch.device) -> None:
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "bad"}
    L = batch.pop("L")
    if device.type == "cuda":
        L = L.contiguous(memory_format=torch.channels_last)
    with autocast:
        _, loss = model(L, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_data(ds: ColorDataset, paths: list[str]) -> tuple[float, float]:
    """(seconds per item, seconds per bare ``cv2.imread`` of the same files: the reference)."""
    ds[(0, 0)]  # numba compilation / cache load
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[(0, i)]
    t1 = time.perf_counter()
    for path in paths:
        cv2.imread(path)
    return (t1 - t0) / len(ds), (time.perf_counter() - t1) / len(paths)


def bench_compute(ds: ColorDataset, args, device: torch.device) -> float:
    batch = torch.utils.data.default_collate([ds[(0, i)] for i in range(args.batch_size)])
    model, opt, autocast = setup_model(args.head, device)
    for _ in range(3):
        step(model, opt, autocast, batch, device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(model, opt, autocast, batch, device)
    sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def bench_pipeline(ds: ColorDataset, args, workers: int, device: torch.device):
    """(img/s, share of wall time waiting for batches) of the loop over a DataLoader."""
    sampler = EpochSampler(len(ds))
    loader = make_loader(
        ds, sampler, args.batch_size, workers, 0, drop_last=True, persistent=True,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    model, opt, autocast = setup_model(args.head, device)
    warmup, done, wait, epoch = 3, 0, 0.0, 0
    t_start = None
    while done < args.steps + warmup:
        sampler.set_epoch(epoch)
        it = iter(loader)
        while done < args.steps + warmup:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            if done == warmup:  # start the clock once workers run and kernels are warm
                sync(device)
                t_start, wait = t0, 0.0
            wait += time.perf_counter() - t0
            step(model, opt, autocast, batch, device)
            done += 1
        epoch += 1
    sync(device)
    total = time.perf_counter() - t_start
    return args.steps * args.batch_size / total, wait / total


def bench_train(paths: list[str], args, workers: int, out: Path) -> float:
    cfg = TrainConfig(
        data=paths, head=args.head, out=out, size=args.size, batch_size=args.batch_size,
        steps=2 * args.steps, eval_every=args.steps, workers=workers, threads=args.threads,
        device=args.device, quiet=True,
    )  # fmt: skip
    train(cfg)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["img_per_s"]


def main() -> None:
    from recolor_tools.errors import at_least

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=at_least(8, step=8), default=128)
    p.add_argument("--batch-size", type=at_least(1), default=16)
    p.add_argument("--steps", type=at_least(1), default=20, help="timed steps per measurement")
    p.add_argument("--workers", type=at_least(0), nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=at_least(1), default=None, help="torch CPU threads")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--head", default="cls", choices=["cls", "reg"])
    p.add_argument(
        "--images", type=at_least(1), default=None,
        help="synthetic posters (default: 4 batches per worker, so that an epoch boundary, where "
        "the loader drains, does not dominate the timing)",
    )  # fmt: skip
    p.add_argument("--no-train", action="store_true", help="skip the end-to-end train() run")
    args = p.parse_args()
    if args.images is not None and args.images < args.batch_size:  # no full batch: no step
        p.error(f"--images {args.images} holds no batch of {args.batch_size}")
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else
        "cpu" if args.device == "auto" else args.device
    )  # fmt: skip
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here (use --device cpu or auto)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} torch threads"
    print(f"device: {name}; head {args.head}, size {args.size}, batch {args.batch_size}")
    config = models.ModelConfig(head=args.head, num_classes=395 if args.head == "cls" else 0)
    n_params = models.param_count(models.Colorizer(config))
    print(
        f"model: {n_params:,} parameters, {models.flops(config, args.size, args.size) / 1e9:.2f} "
        f"GMAC per {args.size}x{args.size} image ({models.flops(config) / 1e9:.2f} at 256x256)"
    )
    n_images = args.images or max(64, 4 * args.batch_size * max(1, *args.workers))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_posters(Path(tmp), n_images)
        ds = dataset(paths, args.head, args.size)
        per_img, imread = bench_data(ds, paths)
        print(
            f"data (decode, crop, Lab, targets): {per_img * 1e3:.2f} ms/img in-process, "
            f"{per_img / imread:.1f}x a bare cv2.imread of the same JPEG ({imread * 1e3:.2f} ms)"
        )
        compute = bench_compute(ds, args, device)
        print(f"compute only (fwd+bwd+Adam, the ceiling below): {compute:.1f} img/s")
        print(f"  -> data would be {per_img * compute:.0%} of step time without prefetching")

        def ceiling() -> float:
            """The compute-only rate around the run just measured (before it and now)."""
            nonlocal compute
            before, compute = compute, bench_compute(ds, args, device)
            return (before + compute) / 2

        for w in args.workers:
            rate, wait = bench_pipeline(ds, args, w, device)
            print(
                f"pipeline, {w} workers: {rate:.1f} img/s = {rate / ceiling():.2f}x compute "
                f"only, waiting for data {wait:.0%} of time"
            )
        if not args.no_train:
            for w in args.workers:
                rate = bench_train(paths, args, w, Path(tmp) / f"run{w}")
                print(f"train() end to end, {w} workers: {rate:.1f} img/s = "
                      f"{rate / ceiling():.2f}x compute only")  # fmt: skip


if __name__ == "__main__":
    from recolor_tools.errors import run_script

    run_script(main)
