"""Where a training run is, and what ``recolor train --resume`` brings back of it.

:class:`TrainState` is what the loop of :func:`recolor_tools.train.train` changes (step, epoch,
position in the epoch, the running loss); with the RNG states (:func:`get_rng_state`) and the
optimiser's it makes a checkpoint's ``train_state``, which :func:`restore` loads again.
:func:`trim_metrics` drops the metric lines a resumed run writes anew. Everything saved is a
primitive or a tensor (:func:`primitive`): checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .distributed import Dist
from .errors import RecolorError, is_real, is_whole
from .trainconfig import TrainConfig
from .trainoptim import Optimiser
from .trainsetup import log


@dataclass
class TrainState:
    """Where a run is: what the loop changes, and ``--resume`` restores besides the model,
    optimiser and RNGs (see :meth:`state_dict`)."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0  # the epoch being trained
    pos: int = 0  # items of this rank's share of the epoch already trained on
    elapsed: float = 0.0  # seconds trained by the processes before this one
    # The training loss summed since the last regular evaluation, and its count. A tensor on the
    # training device: adding to it does not wait for the GPU as .item() would.
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    loss_n: int = 0
    # Not saved: when this process started, and the images since the last log line (img/s).
    started: float = field(default_factory=time.perf_counter)
    interval_imgs: int = 0
    interval_start: float = field(default_factory=time.perf_counter)
    # Not saved: OUT/last.pt is unreadable (the run resumed from last.prev.pt), so the next save
    # replaces it and keeps last.prev.pt, not the broken file in its place.
    last_broken: bool = False

    def seconds(self) -> float:
        """Training time in seconds, over this process and the ones it resumed."""
        return self.elapsed + time.perf_counter() - self.started

    def img_rate(self) -> float:
        """Images per second (all ranks) since the last call of :meth:`restart_interval`."""
        return self.interval_imgs / max(time.perf_counter() - self.interval_start, 1e-9)

    def restart_interval(self) -> None:
        self.interval_imgs, self.interval_start = 0, time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        """Primitives only (a checkpoint loads with ``weights_only=True``)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "pos": self.pos,
            "elapsed": self.seconds(),
            "loss_sum": self.loss_sum.item(),  # a float64: exact
            "loss_n": self.loss_n,
        }

    def load_state_dict(self, state: dict[str, Any], rank: int = 0) -> None:
        """``rank``: whose running loss to take from ``loss_sums`` (each rank's, where the
        checkpoint has them; else ``loss_sum``, rank 0's)."""
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
        self.elapsed, self.started = state["elapsed"], time.perf_counter()
        sums = state.get("loss_sums", [])  # (version 1 and torchrun with fewer: rank 0's)
        self.loss_sum.fill_(sums[rank] if rank < len(sums) else state["loss_sum"])
        self.loss_n = state["loss_n"]


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


READ_FROM = "read from"
"""The key of a resumed checkpoint's dict that :func:`recolor_tools.trainsetup.read_start` puts
the file's path under (in memory only), for :func:`restore`'s errors to name it."""

SAVED = ("optimizer", "scheduler", "rng", "epoch", "pos", "loss_sum", "loss_n", "elapsed",
         "world", "batch_size")  # fmt: skip
"""What a checkpoint's ``train_state`` holds for ``--resume`` (version 1's too; its step is the
checkpoint's own)."""

_COUNTS = {"step": 0, "epoch": 0, "pos": 0, "loss_n": 0, "batch_size": 1, "world": 1}
"""The whole numbers of a saved training state, and the least each may be."""


def continued(ts: dict[str, Any], step: object, world: int, path: Path) -> dict[str, Any]:
    """A checkpoint's training state ``ts`` (holding :data:`SAVED`; ``step``: the checkpoint's,
    where version 1 kept it outside), checked, and as a launch of ``world`` processes goes on
    from it: ``pos``, the items of one process's share of the epoch already trained, becomes
    the same items of the whole epoch shared by ``world`` (``pos * world_then // world``: on
    more processes each skipped as many as one had trained, and items went untrained).

    Raises RecolorError naming ``path`` where a count (:data:`_COUNTS`) is no whole number at
    least its floor, or the seconds or running loss no finite number from 0. Only a checkpoint
    edited by hand gets there (the zip's CRC-32 stops random damage), where ``step: -5`` trained
    unsaid past the steps asked.
    """
    ts = {"step": step, **ts}
    for key, least in _COUNTS.items():
        if not (is_whole(ts[key]) and ts[key] >= least):
            raise RecolorError(f"broken checkpoint: its training state's {key} is "
                               f"{ts[key]!r}, not a whole number from {least}", path)  # fmt: skip
    for key in ("elapsed", "loss_sum"):
        if not (is_real(ts[key]) and ts[key] >= 0):
            raise RecolorError(f"broken checkpoint: its training state's {key} is "
                               f"{ts[key]!r}, not a finite number from 0", path)  # fmt: skip
    return {**ts, "pos": ts["pos"] * ts["world"] // world}


def restore(
    cfg: TrainConfig, d: Dist, opt: Optimiser, state: TrainState, resumed: dict[str, Any]
) -> dict[str, Any]:
    """Load ``--resume``'s optimiser, RNG and loop state; returns its last metrics. A state that
    does not load into this run (an optimiser's of other layers, RNG states of other types: a
    checkpoint edited by hand) is a RecolorError naming the file, not an internal error."""
    ts = resumed["train_state"]
    try:
        opt.load_state_dict(ts)
        set_rng_state(ts["rng"])
        state.load_state_dict(ts, d.rank)
        state.last_broken = resumed.get(READ_FROM) not in (None, cfg.out / "last.pt")
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [""])[0]  # (torch's errors run to lines)
        why = f"{type(e).__name__}: {first}"
        raise RecolorError(f"broken checkpoint: its training state does not load ({why})",
                           resumed.get(READ_FROM)) from None  # fmt: skip
    # what the command line may change (given again with another value): said, since the run
    # then goes on with another order or other crops than it would have
    args = ts.get("args", {})
    changed = [
        f"{flag} {now} (the run's: {was})"
        for flag, was, now in (
            ("-b", ts["batch_size"], cfg.batch_size),
            ("processes", ts["world"], d.world),
            ("--seed", args.get("seed", cfg.seed), cfg.seed),
            ("--size", args.get("size", cfg.size), cfg.size),
        )
        if was != now
    ]
    if changed:
        log(cfg, d, f"note: {', '.join(changed)}; resume is not exact (give the run's values "
                    "to continue it as it was)")  # fmt: skip
    return resumed["metrics"]


def primitive(obj: Any) -> Any:
    """Paths -> str, recursively: a checkpoint holds only types torch.load(weights_only) takes."""
    if isinstance(obj, dict):
        return {k: primitive(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [primitive(v) for v in obj]
    return str(obj) if isinstance(obj, Path) else obj


def trim_metrics(path: Path, keep_through: int) -> None:
    """Drop metric lines after step ``keep_through`` (all when 0): a resumed run rewrites them.
    The file is rewritten atomically, and removed when no line is left (it was left empty by a
    run killed before its first evaluation; the first line creates it)."""
    from .fileio import atomic_write

    if path.exists() and not path.is_file():  # a FIFO or device: written in place, never
        return  # replaced (a reader waiting on the FIFO was left with a deleted one)
    kept = []
    if keep_through and path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if json.loads(line)["step"] <= keep_through:
                    kept.append(line + "\n")
    if kept:
        atomic_write(path, "".join(kept).encode())
    else:
        path.unlink(missing_ok=True)
