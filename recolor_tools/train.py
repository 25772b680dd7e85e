"""Train a :class:`~recolor_tools.models.Colorizer`: the library behind ``recolor train``.

:func:`train` reads top to bottom like nanoGPT's train.py (setup, data, model, optimiser,
loop with evaluation and checkpoints) but is a function of one :class:`TrainConfig`, so it can
be imported and tested.

Choices
-------
- Adam, lr 1e-4, and ``ReduceLROnPlateau`` (factor 0.5, patience 10 evaluations, floor 1e-5)
  stepped on the validation loss at each evaluation: the seed's optimiser. Without ``--val`` it
  steps on the mean training loss since the previous evaluation. ``schedule="cosine"`` decays
  from lr to 1e-5 over the run instead (a function of the step, so it needs a fixed total).
- An evaluation happens every ``eval_every`` steps (default: once per epoch) and at the end; the
  one at the end, when it is off the regular schedule, only reports (it does not step the
  scheduler), so that a run cut short and resumed takes the same path as an uninterrupted one.
- ``--resume`` restores the model, optimiser, scheduler, grad scaler, RNG states, epoch and
  position in the epoch from ``OUT/last.pt`` (the model's config, classes and rebalancing
  statistics come from there too, whatever the options say). With the same data, seed, batch
  size and number of processes it reaches the same weights as an uninterrupted run: the
  augmentation of an item depends only on seed, epoch and index (see :mod:`recolor_tools.data`).
- CUDA only: mixed precision (bf16 where supported, else fp16 with a GradScaler), cudnn
  autotuning, TF32 matmuls, channels-last tensors, pinned memory.
- Distributed: run under ``torchrun`` (env RANK, WORLD_SIZE, LOCAL_RANK); NCCL on CUDA, gloo on
  CPU; DistributedDataParallel; BatchNorm is synchronised across GPUs. ``batch_size`` is per
  process. Only rank 0 writes files and logs.

Files written to ``OUT``: ``last.pt`` (checkpoint with ``train_state``, every ``ckpt_every``
steps and at the end), ``metrics.jsonl`` (one JSON object per evaluation), ``{head}.pt`` (the
final weights without ``train_state``), and for the cls head without ``--stats``,
``rebalance-stats.npz`` (the statistics computed from the training data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import defaults, models
from .data import ColorDataset, EpochSampler, list_images, make_loader
from .errors import RecolorError

PLATEAU = {"factor": 0.5, "patience": 10, "min_lr": 1e-5}
"""ReduceLROnPlateau settings (the seed's)."""


@dataclass
class TrainConfig:
    """Arguments of :func:`train`; the ``recolor train`` options map one to one."""

    data: list[str]  # training images: files, directories, globs, .txt/.list files
    head: str = "cls"  # "reg" or "cls"
    out: Path = Path("runs/recolor")  # output directory (created)
    val: list[str] = field(default_factory=list)  # validation images; none: no val metrics
    stats: Path | None = None  # rebalance stats (cls); none: computed from the training data
    classes: Path | None = None  # class set file (cls); none: stats' classes or gamut grid
    grid: float = 8  # grid of the gamut classes when neither stats nor classes are given
    epochs: int | None = None  # run length in epochs ...
    steps: int | None = None  # ... or in optimiser steps (neither: 10 epochs)
    batch_size: int = 16  # per process
    lr: float = 1e-4
    schedule: str = "plateau"  # "plateau" or "cosine"
    size: int = defaults.TRAIN_SIZE  # training crop side, multiple of 8
    width: int | None = None  # ModelConfig.width; None: its default, or --init's
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    workers: int | None = None  # DataLoader workers per process; None: chosen from the cores
    threads: int | None = None  # CPU threads per process; None: the cores / local processes
    seed: int = 0
    eval_every: int | None = None  # steps; None: once per epoch
    ckpt_every: int | None = None  # steps; None: as eval_every
    resume: bool = False  # continue from out/last.pt
    init: Path | None = None  # start from these weights (fine-tune); fresh optimiser and schedule
    precision: str = "auto"  # "auto" (bf16/fp16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16"
    quiet: bool = False  # no progress bar or log lines

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("batch_size", "size"):
            if getattr(self, name) < 1:
                raise RecolorError(f"--{name.replace('_', '-')} must be positive")
        for name in ("width", "epochs", "steps", "eval_every", "ckpt_every", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RecolorError(f"--{name.replace('_', '-')} must be positive")
        if self.head not in models.HEADS:
            raise RecolorError(f"--head must be one of {', '.join(models.HEADS)}")
        if self.size % 8:
            raise RecolorError(f"--size must be a multiple of 8, got {self.size}")
        if self.epochs is not None and self.steps is not None:
            raise RecolorError("give --epochs or --steps, not both")
        if self.schedule not in ("plateau", "cosine"):
            raise RecolorError("--schedule must be plateau or cosine")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise RecolorError("--precision must be auto, fp32, bf16 or fp16")
        if self.lr <= 0:
            raise RecolorError("--lr must be positive")
        if self.init is not None and self.resume:
            raise RecolorError("give --init or --resume, not both")


# ---------------------------------------------------------------------------------------------
# setup helpers


@dataclass
class Dist:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group torchrun describes (env WORLD_SIZE > 1); otherwise single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    d = Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return d


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(device: torch.device, d: Dist) -> int:
    """DataLoader workers per process when not given.

    On a CPU the network dominates: decoding and encoding a 182x268 poster take about 2.5 ms,
    2-3% of a training step's time per image at size 128 (benchmarks/bench_train.py). One
    worker hides that when a core is spare (4 cores or more); on fewer cores a worker only
    competes with the compute threads, so data is loaded inline. A GPU needs the data side to
    keep up, so every core but one goes to workers: on an H100 at size 128, batch 64, the step
    takes an image every 0.22 ms (4,530 img/s, bf16) and a worker one every 1.6 ms, so seven
    workers just keep up; with 14 the shipped cls run logged 3,700-4,300 img/s end to end.
    """
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
    cores = max(1, available_cores() // local_world)
    if device.type == "cpu":
        return 1 if cores >= 4 else 0
    return max(1, cores - 1)


def precision_context(cfg: TrainConfig, device: torch.device):
    """(autocast context, dtype or None): mixed precision on CUDA only."""
    if device.type != "cuda" or cfg.precision == "fp32":
        if cfg.precision in ("bf16", "fp16") and device.type != "cuda":
            raise RecolorError(f"--precision {cfg.precision} needs CUDA")
        return contextlib.nullcontext(), None
    if cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16
    else:
        dtype = torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def classes_and_stats(cfg: TrainConfig, train_paths: list[str], d: Dist, warned: set[str]):
    """The cls head's class set and rebalancing statistics.

    Returns
    -------
    classes : (Q, 2) float32 or None
    grid : float or None
    stats : rebalance.RebalanceStats or None
        From ``--stats``; else computed from the training images (every rank computes the same,
        which avoids a long wait at a barrier) and saved by rank 0 as
        ``OUT/rebalance-stats.npz``. Unreadable images are reported once and skipped.
    """
    if cfg.head != "cls":
        return None, None, None
    from . import quant
    from .rebalance import RebalanceStats, compute_stats

    classes = grid = None
    if cfg.classes is not None:
        classes, grid = quant.load_classes(cfg.classes)
    if cfg.stats is not None:
        stats = RebalanceStats.load(cfg.stats)
        if classes is not None and not np.array_equal(classes, stats.classes):
            raise RecolorError("--classes and --stats hold different class sets", cfg.classes)
        return np.asarray(stats.classes, np.float32), float(stats.grid), stats
    if classes is None:
        classes, grid = quant.gamut_classes(cfg.grid), float(cfg.grid)
    log(cfg, d, f"computing rebalancing statistics of {len(train_paths)} images")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))

    def skipped(e: RecolorError) -> None:  # every rank sees every file here: rank 0 tells
        if d.main:
            _warn_unreadable([f"{e.path}: {e.reason}"], warned)
        else:
            warned.add(f"{e.path}: {e.reason}")

    workers = max(1, available_cores() // local_world)
    stats = compute_stats(train_paths, classes, grid, workers=workers, on_error=skipped)
    if d.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        stats.save(cfg.out / "rebalance-stats.npz")
    return np.asarray(classes, np.float32), float(grid), stats


def log(cfg: TrainConfig, d: Dist, text: str) -> None:
    """A line on stderr from rank 0, unless quiet."""
    if d.main and not cfg.quiet:
        print(f"recolor train: {text}", file=sys.stderr, flush=True)


def get_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states as tensors and primitives (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])


def param_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in state_dict order (replica-identity check)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(
    model: models.Colorizer,
    loader: torch.utils.data.DataLoader,
    classes: np.ndarray | None,
    device: torch.device,
    autocast,
    d: Dist,
) -> dict[str, float | None]:
    """Loss, AuC and PSNR on a validation loader (this rank's share; summed over ranks).

    a/b predictions (reg: output x 128; cls: annealed mean, T = 0.38) are upsampled bilinearly
    to the crop size and joined to the true L. ``val_auc`` is :func:`metrics.auc` on a/b (a
    fraction, thresholds 0..150); ``val_psnr`` is :func:`metrics.psnr` of the RGB images on
    0..255, both averaged over images.
    """
    import cv2

    from . import metrics
    from .color import lab_to_rgb

    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss x n, auc, psnr, n
    for batch in loader:
        L = batch["L"].to(device)
        targets = {k: v.to(device) for k, v in batch.items() if k not in ("L", "ab_full", "bad")}
        with autocast:
            out, loss = model(L, targets)
        cls_t = None if classes is None else torch.from_numpy(np.asarray(classes, np.float32))
        ab = models.decode(out, cls_t).permute(0, 2, 3, 1).cpu().numpy()  # (B, h, w, 2)
        Ls = batch["L"].numpy()[:, 0]  # (B, S, S)
        truth_ab = batch["ab_full"].numpy().transpose(0, 2, 3, 1)  # (B, S, S, 2)
        S = Ls.shape[-1]
        for i in range(len(Ls)):
            up = cv2.resize(ab[i], (S, S), interpolation=cv2.INTER_LINEAR)
            pred = np.dstack([Ls[i], up]).astype(np.float32)
            truth = np.dstack([Ls[i], truth_ab[i]]).astype(np.float32)
            sums[1] += metrics.auc(pred, truth)
            sums[2] += metrics.psnr(lab_to_rgb(pred) * 255.0, lab_to_rgb(truth) * 255.0)
        sums[0] += loss.item() * len(Ls)
        sums[3] += len(Ls)
    if d.world > 1:  # NCCL reduces CUDA tensors only
        sums = sums.to(device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    model.train()
    n = sums[3].item()
    if n == 0:
        return {"val_loss": None, "val_auc": None, "val_psnr": None}
    vals = (sums[:3] / n).tolist()
    return {
        "val_loss": vals[0],
        "val_auc": vals[1],
        "val_psnr": vals[2] if math.isfinite(vals[2]) else None,
    }


# ---------------------------------------------------------------------------------------------
# training


def train(cfg: TrainConfig) -> Path:
    """Train a model as ``cfg`` says; returns the path of the final weights, ``OUT/{head}.pt``.

    Raises
    ------
    RecolorError
        Unusable data, stats, classes or checkpoint, or bad options (one-line reason).
    """
    d = setup_distributed(cfg.device)
    try:
        return _train(cfg, d)
    finally:
        if d.world > 1:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: Dist) -> Path:
    # -- setup ----------------------------------------------------------------------------
    device = models.resolve_device(cfg.device, d.local_rank)
    autocast, amp_dtype = precision_context(cfg, device)
    if device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
        torch.set_num_threads(cfg.threads or max(1, available_cores() // local_world))
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    workers = default_workers(device, d) if cfg.workers is None else cfg.workers
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    last_path = cfg.out / "last.pt"
    resume_ckpt = None
    if cfg.resume:
        resume_ckpt = models.read_checkpoint(last_path, head=cfg.head)
        if "train_state" not in resume_ckpt:
            raise RecolorError("checkpoint has no training state to resume from", last_path)
    init_ckpt = None if cfg.init is None else models.read_checkpoint(cfg.init, head=cfg.head)

    # -- data -----------------------------------------------------------------------------
    warned: set[str] = set()  # unreadable images already reported
    train_paths = list_images(cfg.data)
    val_paths = list_images(cfg.val) if cfg.val else []
    # A resumed run keeps its classes and weights; a fine-tuned one keeps its classes (the
    # output layer is tied to them) and its rebalancing unless --stats gives new weights.
    carried = resume_ckpt if resume_ckpt is not None else init_ckpt
    if carried is not None and cfg.head == "cls" and (resume_ckpt is not None or not cfg.stats):
        if cfg.classes is not None and resume_ckpt is None:
            raise RecolorError("--init fixes the class set; give --stats, not --classes")
        classes = carried["classes"].numpy()
        grid = carried["grid"]
        reb = carried["rebalance"]
        class_weights = None if reb is None else reb["weights"].numpy()
        rebalance = reb
    else:
        classes, grid, stats = classes_and_stats(cfg, train_paths, d, warned)
        class_weights = None if stats is None else np.asarray(stats.weights, np.float32)
        rebalance = None if stats is None else _rebalance_entry(stats)
        init_classes = None if init_ckpt is None else init_ckpt["classes"]
        if init_classes is not None and not np.array_equal(classes, init_classes.numpy()):
            raise RecolorError("its class set differs from the --init checkpoint's", cfg.stats)
    common = dict(head=cfg.head, classes=classes, class_weights=class_weights, seed=cfg.seed)
    train_set = ColorDataset(train_paths, cfg.size, train=True, **common)
    sampler = EpochSampler(len(train_set), seed=cfg.seed, rank=d.rank, world=d.world)
    per_rank = len(sampler.indices())
    drop_last = per_rank >= cfg.batch_size  # fixed batch shapes, unless the data is tiny
    steps_per_epoch = max(1, per_rank // cfg.batch_size if drop_last else 1)
    total_steps = cfg.steps or (cfg.epochs or 10) * steps_per_epoch
    eval_every = cfg.eval_every or steps_per_epoch
    ckpt_every = cfg.ckpt_every or eval_every
    pin = device.type == "cuda"
    loader = make_loader(
        train_set,
        sampler,
        cfg.batch_size,
        workers,
        cfg.seed,
        drop_last=drop_last,
        persistent=True,
        pin_memory=pin,
    )
    val_loader = None
    if val_paths:
        val_set = ColorDataset(val_paths, cfg.size, train=False, **common)
        val_sampler = EpochSampler(
            len(val_set), shuffle=False, rank=d.rank, world=d.world, pad=False
        )
        val_loader = make_loader(
            val_set,
            val_sampler,
            cfg.batch_size,
            workers,
            cfg.seed,
            drop_last=False,
            persistent=False,
            pin_memory=pin,
        )
    data_info = {
        "n_train": len(train_paths),
        "n_val": len(val_paths),
        "size": cfg.size,
        "sources": [str(p) for p in cfg.data],
        "val_sources": [str(p) for p in cfg.val],
        "init": None if cfg.init is None else str(cfg.init),
    }

    # -- model and optimiser --------------------------------------------------------------
    if carried is not None:  # its architecture
        mcfg = models.ModelConfig(**carried["config"])
        if init_ckpt is not None and cfg.width not in (None, mcfg.width):
            raise RecolorError(f"the network has width {mcfg.width}; drop --width", cfg.init)
    else:
        q = 0 if classes is None else len(classes)
        width = cfg.width or models.ModelConfig.width
        mcfg = models.ModelConfig(head=cfg.head, num_classes=q, width=width)
    model = models.Colorizer(mcfg)
    if carried is not None:
        model.load_state_dict(carried["model"])
    if d.world > 1 and device.type == "cuda":  # BN statistics over the global batch
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            factor=PLATEAU["factor"],
            patience=PLATEAU["patience"],
            min_lr=PLATEAU["min_lr"],
        )
    else:
        floor = PLATEAU["min_lr"] / cfg.lr

        def cosine(step: int) -> float:
            progress = min(step, total_steps) / total_steps
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    step, epoch, pos, elapsed = 0, 0, 0, 0.0
    loss_acc = torch.zeros((), dtype=torch.float64, device=device)  # since the last evaluation
    loss_n = 0
    if resume_ckpt is not None:
        ts = resume_ckpt["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        set_rng_state(ts["rng"])
        step, epoch, pos, elapsed = resume_ckpt["step"], ts["epoch"], ts["pos"], ts["elapsed"]
        loss_acc.fill_(ts["loss_sum"])
        loss_n = ts["loss_n"]
        if ts["world"] != d.world or ts["batch_size"] != cfg.batch_size:
            log(cfg, d, "note: batch size or process count changed; resume is not exact")
    raw_model = model
    if d.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if d.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        metrics_path = cfg.out / "metrics.jsonl"
        _trim_metrics(metrics_path, step if resume_ckpt is not None else 0)
    log(
        cfg,
        d,
        f"{cfg.head} head, {models.param_count(raw_model):,} parameters, "
        f"{len(train_paths)} training / {len(val_paths)} validation images, "
        f"{total_steps} steps of {cfg.batch_size} x {d.world} on {device}, "
        f"{workers} loader workers",
    )

    def checkpoint(metrics: dict[str, Any]) -> dict[str, Any]:
        train_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": get_rng_state(),
            "epoch": epoch,
            "pos": pos,
            "loss_sum": loss_acc.item(),
            "loss_n": loss_n,
            "elapsed": elapsed + time.perf_counter() - t_start,
            "world": d.world,
            "batch_size": cfg.batch_size,
            "args": _primitive(dataclasses.asdict(cfg)),
        }
        return models.make_checkpoint(
            raw_model,
            classes=classes,
            grid=grid,
            rebalance=rebalance,
            data=data_info,
            metrics=metrics,
            step=step,
            train_state=train_state,
        )

    # -- loop -----------------------------------------------------------------------------
    bar = _progress(cfg, d, total_steps, step)
    t_start = t_interval = time.perf_counter()
    imgs_interval = 0
    last_metrics = {} if resume_ckpt is None else resume_ckpt["metrics"]

    def report(regular: bool) -> dict[str, Any]:
        """Evaluate and log one metrics line. A regular evaluation also steps the plateau
        scheduler and restarts the training-loss average; the off-schedule one at the end of a
        run does neither, so a run cut there and resumed goes on exactly as if it had not been."""
        nonlocal loss_n, imgs_interval, t_interval
        img_rate = imgs_interval / max(time.perf_counter() - t_interval, 1e-9)
        train_loss = _mean_over_ranks(loss_acc, loss_n, d)
        if d.world > 1:  # evaluate every replica with rank 0's BatchNorm statistics
            for b in raw_model.buffers():
                dist.broadcast(b, 0)
        val = {"val_loss": None, "val_auc": None, "val_psnr": None}
        if val_loader is not None:
            val = evaluate(raw_model, val_loader, classes, device, autocast, d)
        if regular:
            if cfg.schedule == "plateau":
                scheduler.step(train_loss if val["val_loss"] is None else val["val_loss"])
            loss_acc.zero_()
            loss_n = 0
        metrics = {
            "step": step,
            "epoch": epoch + pos / max(per_rank, 1),
            "train_loss": train_loss,
            **val,
            "lr": optimizer.param_groups[0]["lr"],
            "img_per_s": img_rate,
            "elapsed": elapsed + time.perf_counter() - t_start,
        }
        if d.main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(metrics) + "\n")
            if bar is not None:  # above the bar
                bar.write(f"recolor train: {_metrics_line(metrics, total_steps)}", sys.stderr)
            else:
                log(cfg, d, _metrics_line(metrics, total_steps))
        imgs_interval, t_interval = 0, time.perf_counter()
        return metrics

    model.train()
    while step < total_steps:
        sampler.set_epoch(epoch, pos)
        for batch in loader:
            _warn_unreadable(batch["bad"], warned)
            targets = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "bad"}
            L = targets.pop("L")  # (B, 1, S, S)
            if device.type == "cuda":
                L = L.contiguous(memory_format=torch.channels_last)
            with autocast:
                _, loss = model(L, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if cfg.schedule == "cosine":
                scheduler.step()
            step, pos = step + 1, pos + len(L)
            loss_acc += loss.detach()
            loss_n += 1
            imgs_interval += len(L) * d.world
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:  # .item() waits for the GPU: not every step
                    dt = max(time.perf_counter() - t_interval, 1e-9)
                    bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{imgs_interval / dt:.1f}")
            if step % eval_every == 0 or step == total_steps:
                last_metrics = report(regular=step % eval_every == 0)
            if d.main and (step % ckpt_every == 0 or step == total_steps):
                models.save_checkpoint(last_path, checkpoint(last_metrics))
            if step == total_steps:
                break
        else:  # the epoch ran out: the next one, from its start
            epoch, pos = epoch + 1, 0
    if bar is not None:
        bar.close()

    # -- final weights --------------------------------------------------------------------
    final = cfg.out / f"{cfg.head}.pt"
    if d.world > 1:
        for b in raw_model.buffers():
            dist.broadcast(b, 0)
    debug_dir = os.environ.get("RECOLOR_DEBUG_DDP_DIR")
    if debug_dir:  # each rank records its parameters' digest (tests check replicas agree)
        Path(debug_dir, f"rank{d.rank}.sha256").write_text(param_digest(raw_model) + "\n")
    if d.main:
        models.save_checkpoint(final, models.strip_checkpoint(checkpoint(last_metrics)))
        log(cfg, d, f"wrote {final}")
    if d.world > 1:
        dist.barrier()
    return final


# ---------------------------------------------------------------------------------------------
# small helpers


def _primitive(obj: Any) -> Any:
    """Paths -> str, recursively: a checkpoint holds only types torch.load(weights_only) takes."""
    if isinstance(obj, dict):
        return {k: _primitive(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_primitive(v) for v in obj]
    return str(obj) if isinstance(obj, Path) else obj


def _rebalance_entry(stats) -> dict[str, Any]:
    """The checkpoint's ``rebalance`` entry for a ``rebalance.RebalanceStats``."""
    return {
        "prior": torch.tensor(np.asarray(stats.prior, np.float32)),
        "weights": torch.tensor(np.asarray(stats.weights, np.float32)),
        "lam": float(stats.lam),
        "sigma": float(stats.sigma),
    }


def _mean_over_ranks(total: torch.Tensor, n: int, d: Dist) -> float:
    """Sum of ``total`` over ranks divided by the sum of ``n`` (the mean training loss)."""
    both = torch.stack([total.double(), torch.tensor(float(n), device=total.device).double()])
    if d.world > 1:
        dist.all_reduce(both)
    return (both[0] / both[1].clamp(min=1)).item()


def _warn_unreadable(bad: list[str], warned: set[str]) -> None:
    """One line per unreadable image skipped (``bad`` holds ``"path: reason"``) and process."""
    for b in bad:
        if b and b not in warned:
            warned.add(b)
            print(f"recolor train: {b} (skipped)", file=sys.stderr, flush=True)


def _trim_metrics(path: Path, keep_through: int) -> None:
    """Drop metric lines after step ``keep_through`` (all when 0): a resumed run rewrites them."""
    if keep_through == 0 or not path.exists():
        path.write_text("")
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if json.loads(line)["step"] <= keep_through:
                kept.append(line + "\n")
    path.write_text("".join(kept))


def _progress(cfg: TrainConfig, d: Dist, total: int, initial: int):
    """A tqdm bar on stderr for rank 0 when stderr is a terminal, else None."""
    if cfg.quiet or not d.main or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="train", file=sys.stderr)


def _metrics_line(m: dict[str, Any], total: int) -> str:
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    return (
        f"step {m['step']}/{total} epoch {m['epoch']:.2f} train_loss {m['train_loss']:.4f} "
        f"val_loss {fmt(m['val_loss'], '.4f')} val_auc {fmt(m['val_auc'], '.4f')} "
        f"val_psnr {fmt(m['val_psnr'], '.2f')} lr {m['lr']:.2e} img/s {m['img_per_s']:.1f}"
    )
