"""Train a :class:`~recolor_tools.models.Colorizer`: the library behind ``recolor train``.

:func:`train` reads top to bottom like nanoGPT's train.py, in named steps. Building the run
(:mod:`recolor_tools.trainsetup`): read the checkpoints it starts from (:func:`read_start`),
set up the process (:func:`setup_process`: device, threads, seeds), decide the class set and
rebalancing (:func:`resolve_classes`), build the loaders (:func:`build_loaders`), the model and
the optimiser (:func:`build_model`; :func:`build_optimiser`, :mod:`recolor_tools.trainoptim`),
OUT held (:mod:`recolor_tools.runlock`). Then, here, the loop over
:func:`train_step`, :func:`evaluate_and_log` and :func:`save_last`. What the loop changes is one
:class:`~recolor_tools.trainstate.TrainState` (with what ``--resume`` restores:
:mod:`recolor_tools.trainstate`); what it was built with is one :class:`Run`. ``_train`` is those
three parts in order: ``_build``, ``_loop``, ``_finish``. It is a function of one
:class:`TrainConfig`, so it can be imported and tested.

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
  statistics come from there too; ``--stats``, ``--classes`` or ``--grid`` with it are usage
  errors). With the same data, seed, batch
  size and number of processes it reaches the same weights as an uninterrupted run: the
  augmentation of an item depends only on seed, epoch and index (see :mod:`recolor_tools.data`).
  A ``last.pt`` that cannot be read (cut short) is replaced by ``last.prev.pt``, the checkpoint
  before it, with a warning on stderr.
- CUDA only: mixed precision (bf16 where supported, else fp16 with a GradScaler), cudnn
  autotuning, TF32 matmuls, channels-last tensors, pinned memory.
- Distributed: run under ``torchrun`` (see :mod:`recolor_tools.distributed`);
  DistributedDataParallel; BatchNorm is synchronised across GPUs. ``batch_size`` is per
  process. Only rank 0 writes files and logs.

Files written to ``OUT``: ``last.pt`` (checkpoint with ``train_state``, every ``ckpt_every``
steps and at the end; the one before it is kept as ``last.prev.pt``), ``metrics.jsonl`` (one
JSON object per evaluation), ``{head}.pt`` (the final weights without ``train_state``), and for
the cls head without ``--stats``, ``rebalance-stats.npz`` (the statistics computed from the
training data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import checkpoints, models
from .data import check_some_readable, list_images, started
from .distributed import (
    Dist,
    all_or_none,
    broadcast_buffers,
    check_same_classes,
    check_same_run,
    each_rank,
    mean_over_ranks,
    param_digest,
    setup_distributed,
)
from .errors import RecolorError, UsageError, printable
from .fileio import append_whole
from .runlock import hold_out
from .trainconfig import CHECKPOINT_FILES, TrainConfig, resolve_defaults
from .trainoptim import Optimiser, build_optimiser, new_modules
from .trainsetup import (
    ClassSetup,
    DataStats,
    Device,
    Loaders,
    Unreadable,
    build_loaders,
    build_model,
    last_step,
    log,
    read_start,
    resolve_classes,
    setup_process,
    takes_hints,
)
from .trainstate import TrainState, get_rng_state, primitive, restore, trim_metrics

__all__ = ["TrainConfig", "TrainState", "param_digest", "resolve_classes", "train"]


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(
    model: models.Colorizer,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    d: Dist,
    on_bad: Callable[[list[str]], None] | None = None,
) -> dict[str, float | None]:
    """Loss, AuC and PSNR on a validation loader (this rank's share; summed over ranks).

    An unreadable validation image is replaced by the next readable one, as in training, and
    passed to ``on_bad`` (``"path: reason"``; an :class:`Unreadable`) to be told.

    a/b predictions (reg: output x 128; cls: annealed mean, T = 0.38) are upsampled bilinearly
    to the crop size and joined to the true L. ``val_auc`` is :func:`metrics.auc` on a/b (a
    fraction, thresholds 0..150); ``val_psnr`` is :func:`metrics.psnr` of the RGB images on
    0..255, both averaged over images.
    """
    # Its own random draws (the affinity loss's points; the loader's seed), the same at every
    # evaluation, so that validating leaves the training run's draws as they were.
    gpus = []
    if device.type == "cuda":
        gpus = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(0)
        sums = _evaluate_sums(model, loader, device, autocast, on_bad)
    if d.world > 1:  # NCCL reduces CUDA tensors only
        sums = sums.to(device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    n = sums[3].item()
    if n == 0:
        return {"val_loss": None, "val_auc": None, "val_psnr": None}
    vals = (sums[:3] / n).tolist()
    return {
        "val_loss": vals[0],
        "val_auc": vals[1] if math.isfinite(vals[1]) else None,
        "val_psnr": vals[2] if math.isfinite(vals[2]) else None,
    }


def _evaluate_sums(
    model: models.Colorizer,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    autocast,
    on_bad: Callable[[list[str]], None] | None,
) -> torch.Tensor:
    """(4,) float64: loss x images, AuC and PSNR summed over images, images (see evaluate)."""
    import cv2

    from . import metrics
    from .color import lab_to_rgb

    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss x n, auc, psnr, n
    for batch in started(loader):
        if on_bad is not None:
            on_bad(batch["bad"])
        L = batch["L"].to(device)
        targets = {k: v.to(device) for k, v in batch.items() if k not in ("L", "ab_full", "bad")}
        with autocast:
            out, loss = model(L, targets)
        ab = model.decode(out).permute(0, 2, 3, 1).cpu().numpy()  # (B, h, w, 2)
        Ls = batch["L"].numpy()[:, 0]  # (B, S, S)
        truth_ab = batch["ab_full"].numpy().transpose(0, 2, 3, 1)  # (B, S, S, 2)
        S = Ls.shape[-1]
        for i in range(len(Ls)):
            if not np.isfinite(ab[i]).all():  # diverged: logged as null, save_last says why
                sums[1:3] += math.nan
                continue
            up = cv2.resize(ab[i], (S, S), interpolation=cv2.INTER_LINEAR)
            pred = np.dstack([Ls[i], up]).astype(np.float32)
            truth = np.dstack([Ls[i], truth_ab[i]]).astype(np.float32)
            sums[1] += metrics.auc(pred, truth)
            sums[2] += metrics.psnr(lab_to_rgb(pred) * 255.0, lab_to_rgb(truth) * 255.0)
        sums[0] += loss.item() * len(Ls)
        sums[3] += len(Ls)
    model.train()
    return sums


# ---------------------------------------------------------------------------------------------
# the loop's steps


@dataclass(frozen=True)
class Run:
    """What a run was built with; the loop's steps read it and change only a :class:`TrainState`."""

    cfg: TrainConfig
    d: Dist
    dev: Device
    cs: ClassSetup
    loaders: Loaders
    raw: models.Colorizer  # the model itself
    model: torch.nn.Module  # what the step calls: ``raw``, or ``raw`` in DDP
    opt: Optimiser
    total_steps: int
    eval_every: int
    ckpt_every: int
    data_info: dict[str, Any]  # the checkpoint's "data" entry
    bar: Any  # a tqdm bar on rank 0 at a terminal, else None
    unreadable: Unreadable  # tells each skipped image once, training or validation


def train_step(run: Run, state: TrainState, batch: dict[str, Any]) -> torch.Tensor:
    """One optimiser step on one batch; returns the loss (a tensor: .item() waits for the GPU)."""
    dev = run.dev
    targets = {k: v.to(dev.device, non_blocking=True) for k, v in batch.items() if k != "bad"}
    L = targets.pop("L")  # (B, 1, S, S)
    hints = models.pop_hints(targets)  # simulated from the truth, for a model that takes them
    if dev.device.type == "cuda":
        L = L.contiguous(memory_format=torch.channels_last)
    with dev.autocast:
        _, loss = run.model(L, targets, hints)
    opt = run.opt
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    if run.cfg.schedule == "cosine":
        opt.scheduler.step()
    state.step, state.pos = state.step + 1, state.pos + len(L)
    state.loss_sum += loss.detach()
    state.loss_n += 1
    state.interval_imgs += len(L) * run.d.world
    return loss


def _epoch_items(run: Run) -> int:
    """Images a pass takes on this rank: the whole batches (the last, incomplete one is
    dropped, so an epoch of 6 images in batches of 4 ended at "epoch 0.67"), or all of them
    where they make less than one batch."""
    lo = run.loaders
    return max(1, min(lo.per_rank, lo.steps_per_epoch * run.cfg.batch_size))


def evaluate_and_log(run: Run, state: TrainState, regular: bool) -> dict[str, Any]:
    """Evaluate, append one line to ``OUT/metrics.jsonl`` and log it; returns the metrics.

    A regular evaluation also steps the plateau scheduler and restarts the training-loss
    average; the off-schedule one at the end of a run does neither, so a run cut there and
    resumed goes on exactly as if it had not been.
    """
    cfg, d = run.cfg, run.d
    img_rate = state.img_rate()
    train_loss = mean_over_ranks(state.loss_sum, state.loss_n, d)
    broadcast_buffers(run.raw, d)  # evaluate every replica with rank 0's BatchNorm statistics
    val = {"val_loss": None, "val_auc": None, "val_psnr": None}
    if run.loaders.val is not None:
        val = evaluate(run.raw, run.loaders.val, run.dev.device, run.dev.autocast, d,
                       run.unreadable)  # fmt: skip
    if regular:
        if cfg.schedule == "plateau":
            run.opt.scheduler.step(train_loss if val["val_loss"] is None else val["val_loss"])
        state.loss_sum.zero_()
        state.loss_n = 0
    metrics = {
        "step": state.step,
        "epoch": state.epoch + state.pos / _epoch_items(run),
        "train_loss": train_loss,
        **val,
        "lr": run.opt.lr,  # the network's; 0 where it is kept (the log showed --hint-lr)
        **({} if run.opt.hint_lr is None else {"hint_lr": run.opt.hint_lr}),
        "img_per_s": img_rate,
        "elapsed": state.seconds(),
    }
    if d.main:
        # NaN is no JSON (jq refuses it): null
        line = {k: v if not isinstance(v, float) or math.isfinite(v) else None
                for k, v in metrics.items()}  # fmt: skip
        append_whole(cfg.out / "metrics.jsonl", (json.dumps(line, allow_nan=False) + "\n").encode())
        if run.bar is not None:  # above the bar
            run.bar.write(f"recolor train: {_metrics_line(metrics, run.total_steps)}", sys.stderr)
        else:
            log(cfg, d, _metrics_line(metrics, run.total_steps))
    state.restart_interval()
    return metrics


def checkpoint(
    run: Run, state: TrainState, metrics: dict[str, Any], loss_sums: list[float] | None = None
) -> dict[str, Any]:
    """The checkpoint of the run now: model, classes, and ``train_state`` for ``--resume``
    (``loss_sums``: every rank's running loss, which rank 0's ``state`` alone lacks)."""
    train_state = {
        **run.opt.state_dict(),
        "rng": get_rng_state(),
        **state.state_dict(),
        "loss_sums": loss_sums or [state.loss_sum.item()],
        "world": run.d.world,
        "batch_size": run.cfg.batch_size,
        "args": primitive(dataclasses.asdict(run.cfg)),
    }
    cs = run.cs
    return checkpoints.make_checkpoint(
        run.raw, classes=cs.classes, grid=cs.grid, rebalance=cs.rebalance, k=cs.k,
        sigma=cs.sigma, data=run.data_info, metrics=metrics, step=state.step,
        train_state=train_state,
    )  # fmt: skip


def save_last(run: Run, state: TrainState, metrics: dict[str, Any]) -> None:
    """Write ``OUT/last.pt`` (rank 0), keeping the one before as ``OUT/last.prev.pt`` (unless
    it is the unreadable file a resume passed over: ``last.prev.pt`` is then kept).

    Raises RecolorError, on every rank, if the weights are no longer finite (a run that
    diverged): its weights would load nowhere, and the last good ``last.pt`` is kept.
    """
    # the buffers too: BatchNorm's running variance overflowed where the weights held
    values = [v for v in run.raw.state_dict().values() if v.is_floating_point()]
    if not all(bool(torch.isfinite(v).all()) for v in values):
        raise RecolorError(
            f"training diverged by step {state.step}: NaN or infinite weights (try a lower "
            "--lr); nothing written from it"
        )
    sums = each_rank(state.loss_sum, run.d)  # a resumed rank goes on from its own
    if run.d.main:
        ckpt = checkpoint(run, state, metrics, sums)
        keep = not state.last_broken  # (a broken last.pt is no previous checkpoint)
        checkpoints.save_checkpoint(run.cfg.out / "last.pt", ckpt, keep_previous=keep)
    state.last_broken = False


# ---------------------------------------------------------------------------------------------
# training


def _remove_old_run(cfg: TrainConfig) -> None:
    """``--overwrite``: remove the old run's checkpoints and statistics from OUT (a run that
    computes its own writes them anew right after: :meth:`DataStats.save`), unless the
    statistics are this run's ``--stats`` (read, never removed)."""
    stale = [cfg.out / n for n in CHECKPOINT_FILES]
    stale += [cfg.out / "rebalance-stats.npz"] * (not cfg.stats_in_out())
    for path in stale:
        path.unlink(missing_ok=True)


def train(cfg: TrainConfig, report: Callable[[str], None] | None = None) -> Path:
    """Train a model as ``cfg`` says; returns the path of the final weights, ``OUT/{head}.pt``.

    An unreadable training image is skipped (another takes its place in the batch) and told
    once per process through ``report("path: reason (skipped)")``, by default a line on stderr
    (``recolor train`` counts them as failed inputs: it exits 1 after writing the weights).

    Raises
    ------
    RecolorError
        Unusable data, stats, classes or checkpoint, or bad options (one-line reason).
    """
    d = setup_distributed(cfg.device)
    try:
        with contextlib.ExitStack() as held:
            return _train(cfg, d, report, held)
    except RecolorError as e:
        if "Original Traceback" not in e.reason:
            raise
        # raised in a loader worker: torch raises it again with the traceback as its text
        raise RecolorError(e.reason.rstrip().rsplit("RecolorError: ", 1)[-1]) from None
    except RuntimeError as e:  # gloo's "Connection closed by peer", NCCL's DistBackendError
        if d.world > 1 and (isinstance(e, dist.DistError) or "by peer" in str(e)):
            raise RecolorError("another process of the launch stopped (killed, or its machine "
                               "lost): continue the run with --resume") from None  # fmt: skip
        if "shared memory" in str(e):  # /dev/shm full: a worker's "unable to allocate shared
            # memory(shm) for file ...", or one "killed by signal: Bus error"
            raise RecolorError(_no_shared_memory()) from None
        if str(e).startswith("DataLoader worker") and "killed by signal" in str(e):  # the OOM
            # killer's SIGKILL, most often (a container's memory limit)
            why = str(e).split("killed by signal: ", 1)[-1].split(".")[0]
            raise RecolorError(f"a loader worker was killed ({why}; where by the system for "
                               "want of memory, fewer -j or a smaller -b need less, -j 0 loads "
                               "in this process)") from None  # fmt: skip
        if str(e).startswith("DataLoader worker") and "exited unexpectedly" in str(e):
            raise RecolorError("a loader worker ended unexpectedly (-j 0 loads in this "
                               "process)") from None  # fmt: skip
        raise
    finally:
        if d.world > 1:
            dist.destroy_process_group()


def _no_shared_memory() -> str:
    """What to say where the loader workers' batches did not fit in /dev/shm, whose size
    Docker sets to 64 MiB unless told (each worker holds two batches there)."""
    try:
        st = os.statvfs("/dev/shm")
        kib = st.f_blocks * st.f_frsize // 1024
        size = f"/dev/shm holds {f'{kib // 1024:,} MiB' if kib >= 1024 else f'{kib} KiB'}; "
    except OSError:
        size = ""
    return (f"the loader workers ran out of shared memory ({size}a container's --shm-size sets "
            "it; fewer -j or a smaller -b need less, -j 0 none)")  # fmt: skip


def _train(
    cfg: TrainConfig, d: Dist, report: Callable[[str], None] | None, held: contextlib.ExitStack
) -> Path:
    run, state, last_metrics = _build(cfg, d, report, held)
    last_metrics = _loop(run, state, last_metrics)
    return _finish(run, state, last_metrics)


def _build(
    cfg: TrainConfig, d: Dist, report: Callable[[str], None] | None, held: contextlib.ExitStack
) -> tuple[Run, TrainState, dict[str, Any]]:
    """The run as ``cfg`` asks (the steps of :mod:`recolor_tools.trainsetup`), where it starts
    (:class:`TrainState`, restored for ``--resume``) and the metrics it has so far."""
    # what each rank reads on its own machine (OUT, checkpoints, folders, --stats): an error
    # there is every rank's, said by rank 0 (all_or_none)
    with all_or_none(d):
        held.enter_context(hold_out(cfg, d))  # OUT held for the whole run (rank 0)
        resumed, init = read_start(cfg, d)
        carried = resumed if resumed is not None else init
        cfg = resolve_defaults(cfg, resumed, init)
        dev = setup_process(cfg, d)  # (seeds: the resumed run's --seed is known now)

        # -- data -------------------------------------------------------------------------
        unreadable = Unreadable(report)  # each unreadable image told once
        train_paths = list_images(cfg.data)
        val_paths = list_images(cfg.val, "validation") if cfg.val else []
        check_some_readable(train_paths, "training")  # before --overwrite removes the old run
        if val_paths:
            check_some_readable(val_paths, "validation")
        if d.main:
            cfg.check_not_read([*train_paths, *val_paths])
    check_same_run((train_paths, val_paths), cfg.run_wide(resumed), d)
    per_rank = -(-len(train_paths) // d.world)  # each process's share (EpochSampler pads)
    if cfg.size <= 16 and min(cfg.batch_size, per_rank) < 2:
        # the global branch sees a 1 x 1 map: BatchNorm then has one value per channel
        each = " and process" * (d.world > 1)
        raise UsageError(f"a batch of one image at --size {cfg.size} cannot be trained (its "
                         f"global features are one value): give 2 images or more a batch{each},"
                         " or --size 24 or more")  # fmt: skip
    with all_or_none(d):  # a --stats or --classes file missing on one machine
        data_stats = DataStats(cfg, d, train_paths, unreadable)
        cs = resolve_classes(cfg, resumed, init, data_stats)
        loaders = build_loaders(
            cfg, d, dev, (train_paths, val_paths), cs, takes_hints(cfg, carried)
        )
        total_steps = last_step(cfg, loaders, resumed)
        eval_every = cfg.eval_every or loaders.steps_per_epoch
        data_info = {
            "n_train": len(train_paths),
            "n_val": len(val_paths),
            "size": cfg.size,
            "sources": [str(p) for p in cfg.data],
            "val_sources": [str(p) for p in cfg.val],
            # where the weights came from, also for a resumed fine-tune (whose --init is not given)
            "init": str(cfg.init) if cfg.init else (resumed or {}).get("data", {}).get("init"),
        }

        # -- model and optimiser ----------------------------------------------------------
        raw = build_model(cfg, d, dev, cs, carried)
        new_layers = new_modules(raw, resumed, init, ("affinity",) * bool(cfg.affinity))
        opt = build_optimiser(cfg, raw, total_steps, dev.amp_dtype, new_layers)
        state = TrainState(loss_sum=torch.zeros((), dtype=torch.float64, device=dev.device))
        last_metrics = {} if resumed is None else restore(cfg, d, opt, state, resumed)
        if state.step > total_steps:  # (it reported "N steps" and did none, unsaid)
            log(cfg, d, f"note: the run is at step {state.step}, past the {total_steps} asked: "
                        "nothing to train; its weights are written as they are")  # fmt: skip
    check_same_classes(cs.classes, cs.weights, d)  # --stats files that differ between machines
    model = raw
    if d.world > 1:
        device_ids = [dev.device.index] if dev.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(raw, device_ids=device_ids)
    if d.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        trim_metrics(cfg.out / "metrics.jsonl", state.step)
        if cfg.overwrite:  # the old run goes now: a new one cut short left it for --resume
            _remove_old_run(cfg)
        data_stats.save()  # not before: an --overwrite that failed would have replaced them
    log(
        cfg, d,
        f"{cfg.head} head{' with hints' if raw.config.hints else ''}, "
        f"{_parameters(raw)}, "
        f"{len(train_paths)} training / {len(val_paths)} validation images, "
        f"{_count(total_steps, 'step')} of {min(cfg.batch_size, loaders.per_rank)} x {d.world} "
        f"on {dev.device}, "
        f"{_count(dev.workers, 'loader worker')}",
    )  # fmt: skip
    run = Run(
        cfg, d, dev, cs, loaders, raw, model, opt, total_steps, eval_every,
        cfg.ckpt_every or eval_every, data_info, _progress(cfg, d, total_steps, state.step),
        unreadable,
    )  # fmt: skip
    return run, state, last_metrics


def _loop(run: Run, state: TrainState, last_metrics: dict[str, Any]) -> dict[str, Any]:
    """Train from ``state`` to the run's last step: evaluate, log and save on the way; returns
    the last evaluation's metrics."""
    loaders, total_steps = run.loaders, run.total_steps
    state.started = state.interval_start = time.perf_counter()
    run.model.train()
    while state.step < total_steps:
        loaders.sampler.set_epoch(state.epoch, state.pos)
        for batch in started(loaders.train):
            run.unreadable(batch["bad"])
            loss = train_step(run, state, batch)
            _show_progress(run, state, loss)
            if state.step % run.eval_every == 0 or state.step == total_steps:
                last_metrics = evaluate_and_log(run, state, state.step % run.eval_every == 0)
            if state.step % run.ckpt_every == 0 or state.step == total_steps:
                saving = time.perf_counter()
                save_last(run, state, last_metrics)
                # the logged img/s is the training's: a checkpoint's write (seconds, on a slow
                # disk) fell into the next interval's rate
                state.interval_start += time.perf_counter() - saving
            if state.step == total_steps:
                break
        else:  # the epoch ran out: the next one, from its start
            state.epoch, state.pos = state.epoch + 1, 0
    if run.bar is not None:
        run.bar.close()
    return last_metrics


def _finish(run: Run, state: TrainState, last_metrics: dict[str, Any]) -> Path:
    """Write the final weights, ``OUT/{head}.pt`` (rank 0), once every replica holds rank 0's
    BatchNorm statistics; returns their path."""
    cfg, d, raw = run.cfg, run.d, run.raw
    final = cfg.out / f"{cfg.head}.pt"
    broadcast_buffers(raw, d)
    debug_dir = os.environ.get("RECOLOR_DEBUG_DDP_DIR")
    if debug_dir:  # each rank records its parameters' digest (tests check replicas agree)
        Path(debug_dir, f"rank{d.rank}.sha256").write_text(param_digest(raw) + "\n")
    if d.main:
        checkpoints.save_checkpoint(
            final, checkpoints.strip_checkpoint(checkpoint(run, state, last_metrics))
        )
        log(cfg, d, f"wrote {printable(final)}")
    if d.world > 1:
        dist.barrier()
    return final


# ---------------------------------------------------------------------------------------------
# small helpers


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"  # "1 step", "2 steps"


def _parameters(model: models.Colorizer) -> str:
    """ "N parameters", or "N of M parameters trained" where the network is kept (lr 0)."""
    trained, every = models.param_count(model), sum(p.numel() for p in model.parameters())
    return f"{trained:,} parameters" + f" trained of {every:,}" * (trained < every)


def _progress(cfg: TrainConfig, d: Dist, total: int, initial: int):
    """A tqdm bar on stderr for rank 0 when stderr is a terminal, else None."""
    if cfg.quiet or not d.main or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="train", file=sys.stderr)


def _show_progress(run: Run, state: TrainState, loss: torch.Tensor) -> None:
    """Advance the progress bar, if any; show the loss and img/s every 10 steps."""
    if run.bar is None:
        return
    run.bar.update(1)
    if state.step % 10 == 0:  # .item() waits for the GPU: not every step
        run.bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{state.img_rate():.1f}")


def _metrics_line(m: dict[str, Any], total: int) -> str:
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    return (
        f"step {m['step']}/{total} epoch {m['epoch']:.2f} train_loss {m['train_loss']:.4f} "
        f"val_loss {fmt(m['val_loss'], '.4f')} val_auc {fmt(m['val_auc'], '.4f')} "
        f"val_psnr {fmt(m['val_psnr'], '.2f')} lr {m['lr']:.2e} img/s {m['img_per_s']:.1f}"
    )
