"""Building a training run, step by step: the options (:class:`TrainConfig`), the process's
device and precision, the checkpoints it starts from, the class set and rebalancing (decided in
one place, :func:`resolve_classes`), the loaders, the model and the optimiser.

:func:`recolor_tools.train.train` calls these in order; each is a plain function of the options
and of what the steps before it built, so each can be tested on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoints, defaults, models
from .data import ColorDataset, EpochSampler, make_loader
from .distributed import Dist, available_cores, default_workers
from .errors import RecolorError, UsageError, warn

PLATEAU = {"factor": 0.5, "patience": 10, "min_lr": 1e-5}
"""ReduceLROnPlateau settings (the seed's)."""
LR = 1e-4
"""Adam's learning rate (the seed's)."""
FINETUNE_LR = 3e-5
"""Fine-tuning a model into one that takes hints (``--init`` of a model without them,
``--hints``): the old weights move at FINETUNE_LR, the new zero-initialised hint layers at
``defaults.HINT_LR``, and BatchNorm keeps its statistics. Issue 15's calibration on the shipped
cls model: all weights at 1e-4 with BatchNorm training gave +0.00 dB in 40 minutes and moved
the automatic prediction; these settings gave +0.18 dB with 10 points in 20 minutes and kept it."""


CHOICES = {
    "head": models.HEADS,
    "schedule": ("plateau", "cosine"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
}
"""The options of :class:`TrainConfig` that take one of a few names."""


KEPT_ON_RESUME = {"lr": LR, "schedule": "plateau", "hint_lr": defaults.HINT_LR, "width": None}
"""What a resumed run keeps, with the defaults of a fresh run (None: the model's): the options
it was started with (its network's width), which its optimiser, schedule and model follow."""


@dataclass
class TrainConfig:
    """Arguments of :func:`train`; the ``recolor train`` options map one to one.

    The options are checked here, once (the CLI adds only typer's type and range checks).

    Raises
    ------
    ValueError
        Options that cannot go together, a choice outside its list, or a value that training
        cannot use (not positive, not finite, size not a multiple of 8): a usage error.
    """

    data: list[str]  # training images: files, directories, globs, .txt/.list files
    head: str = "cls"  # "reg" or "cls"
    out: Path = Path("runs/recolor")  # output directory (created)
    val: list[str] = field(default_factory=list)  # validation images; none: no val metrics
    stats: Path | None = None  # rebalance stats (cls); none: computed from the training data
    classes: Path | None = None  # class set file (cls); none: stats' classes or gamut grid
    grid: float | None = None  # gamut class grid when no class set is given (defaults.GRID)
    epochs: int | None = None  # run length in epochs ...
    steps: int | None = None  # ... or in optimiser steps (neither: 10 epochs)
    batch_size: int = 16  # per process
    lr: float | None = None  # Adam; None: 1e-4; with --init, FINETUNE_LR (hints) or 0 (affinity)
    schedule: str | None = None  # "plateau" or "cosine"; None: plateau, or the resumed run's
    size: int = defaults.TRAIN_SIZE  # training crop side, multiple of 8
    width: int | None = None  # ModelConfig.width; None: its default, or --init's
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    workers: int | None = None  # DataLoader workers per process; None: chosen from the cores
    threads: int | None = None  # CPU threads per process; None: the cores / local processes
    seed: int = 0
    eval_every: int | None = None  # steps; None: once per epoch
    ckpt_every: int | None = None  # steps; None: as eval_every
    resume: bool = False  # continue from out/last.pt
    overwrite: bool = False  # start afresh in an out that holds a run
    init: Path | None = None  # start from these weights (fine-tune); fresh optimiser and schedule
    precision: str = "auto"  # "auto" (bf16/fp16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16"
    quiet: bool = False  # no progress bar or log lines
    hints: bool = False  # the model takes colour hints (simulated from the truth in training)
    hint_lr: float | None = None  # of the new layers (models.NEW_MODULES); None: HINT_LR, or the
    # resumed run's
    freeze_bn: bool | None = None  # BatchNorm keeps its statistics; None: when fine-tuning hints
    affinity: int | None = None  # ModelConfig.affinity; None: 0, or --init's / the resumed one's

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if not self.resume:  # resumed: the run's own (resolve_defaults)
            self.schedule = self.schedule or KEPT_ON_RESUME["schedule"]
            self.hint_lr = KEPT_ON_RESUME["hint_lr"] if self.hint_lr is None else self.hint_lr
        if self.lr is None and not self.resume:  # resumed: the run's own (resolve_defaults)
            self.lr = LR
            if self.init is not None and self.hints:
                self.lr = FINETUNE_LR
            elif self.init is not None and self.affinity:  # adds affinity features only: the
                self.lr = 0.0  # network is kept
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give --epochs or --steps, not both")
        if self.init is not None and self.resume:
            raise ValueError("give --init or --resume, not both")
        brought = {"--classes": self.classes, "--stats": self.stats, "--init": self.init}
        brought["--resume"] = self.resume or None
        given = [flag for flag, v in brought.items() if v is not None]
        if self.grid is not None and given:  # it would be ignored without a word
            raise ValueError(f"--grid and {given[0]} exclude each other ({given[0]} brings the "
                             "class set)")  # fmt: skip
        if self.resume and given[:-1]:  # a resumed run keeps its classes and rebalancing
            raise ValueError(f"{given[0]} and --resume exclude each other (the run keeps its "
                             "class set and rebalancing)")  # fmt: skip
        if self.head == "reg" and (self.stats, self.classes, self.grid) != (None, None, None):
            flag = "--stats" if self.stats else "--classes" if self.classes else "--grid"
            raise ValueError(f"{flag} sets the colour classes of --head cls; the reg head has "
                             "none")  # fmt: skip
        if self.overwrite and self.resume:
            raise ValueError("give --resume or --overwrite, not both")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in ((None, *allowed) if name == "schedule" else allowed):
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}")
        for name in ("lr", "hint_lr", "grid"):  # typer's ranges let NaN and inf through
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        optional = ("width", "epochs", "steps", "eval_every", "ckpt_every", "threads")
        for name in ("batch_size", "size", *optional):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.workers is not None and self.workers < 0:
            raise ValueError("--workers must be 0 or more")
        if not 0 <= self.seed < 2**32:  # numpy's and torch's seeds are 32-bit unsigned
            raise ValueError(f"--seed must be from 0 to {2**32 - 1}, got {self.seed}")
        if self.size % 8:
            raise ValueError(f"--size must be a multiple of 8, got {self.size}")
        if self.hint_lr is not None and not self.hint_lr > 0:
            raise ValueError("--hint-lr must be positive")
        lr_ok = self.lr is None or self.lr > 0
        if not (lr_ok or self.lr == 0 and (self.hints or self.affinity or self.resume)):
            raise ValueError("--lr must be positive (0, the network kept, needs new layers to "
                             "train: --hints or --affinity)")  # fmt: skip
        if self.affinity is not None and self.affinity < 0:
            raise ValueError("--affinity must be 0 or more")
        if self.affinity and self.head != "cls":  # caught before torch starts, as usage
            raise ValueError("--affinity features steer the cls head only (--head cls)")

    def check_out(self) -> None:
        """Raise ValueError if OUT is no directory, or holds a run (``last.pt``) that neither
        ``resume`` nor ``overwrite`` asks for: starting afresh would replace hours of
        training."""
        if self.out.exists() and not self.out.is_dir():  # found after the stats, before
            raise ValueError(f"--out {self.out}: exists and is not a directory")
        above = next((p for p in self.out.absolute().parents if p.exists()), None)
        if above is not None and not self.out.exists() and not above.is_dir():
            raise ValueError(f"--out {self.out}: {above} is not a directory")
        held = [n for n in ("last.pt", "last.prev.pt") if (self.out / n).exists()]
        if held and not (self.resume or self.overwrite):
            raise ValueError(f"{self.out} holds a run ({held[0]}): --resume continues it, "
                             "--overwrite starts afresh")  # fmt: skip


@dataclass(frozen=True)
class ClassSetup:
    """The cls head's colour classes, rebalancing and soft-encoding (all None for reg).

    ``rebalance`` is the checkpoint's entry (see :func:`recolor_tools.checkpoints.make_checkpoint`):
    ``{"weights": (Q,) float32 tensor, "lam", "sigma"}``.
    """

    classes: np.ndarray | None = None  # (Q, 2) float32 a/b centres
    grid: float | None = None  # their spacing, a/b units
    rebalance: dict[str, Any] | None = None
    k: int = defaults.K  # nearest classes per pixel in the soft-encoded target
    sigma: float = defaults.SIGMA  # a/b units

    @property
    def weights(self) -> np.ndarray | None:
        """(Q,) float32 rebalancing weight of each class, or None (no rebalancing)."""
        return None if self.rebalance is None else self.rebalance["weights"].numpy()

    @classmethod
    def of_checkpoint(cls, ckpt: dict[str, Any]) -> ClassSetup:
        """What a (:func:`~recolor_tools.checkpoints.read_checkpoint`) checkpoint trained with."""
        enc = ckpt["encoding"]
        return cls(ckpt["classes"].numpy(), ckpt["grid"], ckpt["rebalance"], **enc)

    @classmethod
    def of_stats(cls, stats) -> ClassSetup:
        """From a :class:`recolor_tools.rebalance.RebalanceStats`, with the default encoding."""
        entry = {
            "weights": torch.tensor(np.asarray(stats.weights, np.float32)),
            "lam": float(stats.lam),
            "sigma": float(stats.sigma),
        }
        return cls(np.asarray(stats.classes, np.float32), float(stats.grid), entry)


def resolve_classes(
    cfg: TrainConfig,
    resumed: dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    compute=None,
) -> ClassSetup:
    """Where the class set and rebalancing come from: the one place that decides.

    - reg head: none.
    - ``--resume``: the checkpoint's (``--stats``, ``--classes`` and ``--grid`` with it are
      refused by :class:`TrainConfig`).
    - ``--init`` without ``--stats``: the checkpoint's (its output layer is tied to the classes);
      ``--classes`` is refused. With ``--stats``: the stats' weights, whose class set must be
      the checkpoint's (the soft-encoding stays the checkpoint's).
    - fresh: ``--stats``; else ``compute(classes, grid) -> RebalanceStats`` over the training
      data, for the classes of ``--classes`` or the sRGB gamut grid ``cfg.grid``.

    Parameters
    ----------
    cfg : TrainConfig
    resumed, init : dict, optional
        The checkpoints ``--resume`` and ``--init`` read (:func:`read_start`).
    compute : callable, optional
        Needed only in the fresh case without ``--stats``.

    Raises
    ------
    RecolorError
        ``--classes`` with ``--init``, or class sets that disagree (``--classes`` and
        ``--stats``, ``--stats`` and ``--init``).
    """
    if cfg.head != "cls":
        return ClassSetup()
    if resumed is not None:
        return ClassSetup.of_checkpoint(resumed)
    if init is not None and cfg.stats is None:
        if cfg.classes is not None:
            raise RecolorError("--init fixes the class set; give --stats, not --classes")
        return ClassSetup.of_checkpoint(init)
    from . import quant
    from .rebalance import RebalanceStats, load_class_set

    classes = grid = None
    if cfg.classes is not None:
        classes, grid = load_class_set(cfg.classes)
    if cfg.stats is not None:
        stats = RebalanceStats.load(cfg.stats)
        if classes is not None and not np.array_equal(classes, stats.classes):
            raise RecolorError("--classes and --stats hold different class sets", cfg.classes)
    else:
        if classes is None:
            grid = defaults.GRID if cfg.grid is None else float(cfg.grid)
            classes = quant.gamut_classes(grid)
        stats = compute(classes, grid)
    setup = ClassSetup.of_stats(stats)
    if init is None:
        return setup
    if not np.array_equal(setup.classes, init["classes"].numpy()):
        raise RecolorError("its class set differs from the --init checkpoint's", cfg.stats)
    return dataclasses.replace(setup, **init["encoding"])  # the targets it was trained on


# ---------------------------------------------------------------------------------------------
# setup


@dataclass(frozen=True)
class Device:
    """Where and how this process computes."""

    device: torch.device
    autocast: Any  # a context manager: autocast on CUDA, or nothing
    amp_dtype: torch.dtype | None  # the autocast dtype, None for fp32
    workers: int  # DataLoader workers


def setup_process(cfg: TrainConfig, d: Dist) -> Device:
    """Pick the device and precision, set threads and CUDA flags, seed every RNG."""
    if d.world > 1 and cfg.device.startswith("cuda:"):  # every rank on one GPU breaks DDP
        raise RecolorError(f"--device {cfg.device} names one GPU; under torchrun each process "
                           "takes its own: --device cuda")  # fmt: skip
    device = models.resolve_device(cfg.device, d.local_rank)
    autocast, amp_dtype = precision_context(cfg, device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or d.cores)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    workers = default_workers(device, d) if cfg.workers is None else cfg.workers
    cores = available_cores()
    if workers > cores:  # said once, in the tools' form, not torch's warning
        warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
        if d.main:
            warn(f"--workers {workers} is more than the {cores} cores this process may use "
                 "(slower, and more memory)")  # fmt: skip
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    return Device(device, autocast, amp_dtype, workers)


def precision_context(cfg: TrainConfig, device: torch.device):
    """(autocast context, dtype or None): mixed precision on CUDA only (see
    :func:`recolor_tools.models.amp_dtype`)."""
    dtype = models.amp_dtype(cfg.precision, device)
    if dtype is None:
        return contextlib.nullcontext(), None
    return torch.autocast("cuda", dtype=dtype), dtype


def read_start(cfg: TrainConfig, d: Dist) -> tuple[dict | None, dict | None]:
    """The checkpoints the run starts from: (``--resume``'s, ``--init``'s), each or None; a
    RecolorError where OUT holds a run that is neither resumed nor overwritten.

    ``--resume`` reads ``OUT/last.pt``; when that cannot be read (cut short, or missing after a
    kill between the two renames of :func:`recolor_tools.checkpoints.save_checkpoint`) and
    ``OUT/last.prev.pt`` can, that one, with a warning. A checkpoint of the other head is an
    error either way.
    """
    try:
        cfg.check_out()  # the CLI has said it as a usage error
    except ValueError as e:
        raise RecolorError(str(e)) from None
    resumed = None
    if cfg.resume:
        path = cfg.out / "last.pt"
        if not path.exists() and not checkpoints.previous_path(path).exists():
            raise UsageError(f"--resume: {cfg.out} holds no run to continue (no last.pt)")
        try:
            resumed = checkpoints.read_checkpoint(path)
        except RecolorError as e:
            prev = checkpoints.previous_path(path)
            try:
                resumed, path = checkpoints.read_checkpoint(prev), prev
            except RecolorError:
                raise e from None  # about last.pt: the file the user knows
            if d.main:  # a warning, shown even with --quiet
                print(f"recolor train: {e}; resuming from {prev}", file=sys.stderr, flush=True)
        checkpoints.check_head(resumed, cfg.head, path)
        if "train_state" not in resumed:
            raise RecolorError("checkpoint has no training state to resume from", path)
    init = None if cfg.init is None else checkpoints.read_checkpoint(cfg.init, head=cfg.head)
    return resumed, init


def stats_of_data(cfg: TrainConfig, d: Dist, paths: list[str], unreadable: Unreadable):
    """``compute`` for :func:`resolve_classes`: rebalancing statistics of the training images.

    Every rank computes the same (which avoids a long wait at a barrier); rank 0 reports
    unreadable images once and saves the statistics as ``OUT/rebalance-stats.npz``.
    """
    from .rebalance import compute_stats

    def skipped(e: RecolorError) -> None:  # every rank sees every file here: rank 0 tells
        unreadable([str(e)], tell=d.main)  # "path: reason", the path's control characters escaped

    def compute(classes: np.ndarray, grid: float):
        log(cfg, d, f"computing rebalancing statistics of {len(paths)} images")
        stats = compute_stats(paths, classes, grid, workers=d.cores, on_error=skipped)
        if d.main:
            cfg.out.mkdir(parents=True, exist_ok=True)
            stats.save(cfg.out / "rebalance-stats.npz")
        return stats

    return compute


@dataclass(frozen=True)
class Loaders:
    """The training and validation loaders, and the run length they imply."""

    train: torch.utils.data.DataLoader
    sampler: EpochSampler  # the training order; set_epoch(epoch, pos) before each pass
    val: torch.utils.data.DataLoader | None
    per_rank: int  # training items per epoch on this rank
    steps_per_epoch: int


def build_loaders(
    cfg: TrainConfig,
    d: Dist,
    dev: Device,
    paths: tuple[list[str], list[str]],
    cs: ClassSetup,
    hints: bool = False,
) -> Loaders:
    """Loaders over the (training, validation) ``paths``; batches of fixed shape when the data
    holds at least one batch per rank. With ``hints``, training crops carry simulated hints
    (validation measures the automatic prediction)."""
    train_paths, val_paths = paths
    common = dict(
        head=cfg.head, classes=cs.classes, class_weights=cs.weights, k=cs.k, sigma=cs.sigma,
        seed=cfg.seed,
    )  # fmt: skip
    pin = dev.device.type == "cuda"
    train_set = ColorDataset(train_paths, cfg.size, train=True, hints=hints, **common)
    sampler = EpochSampler(len(train_set), seed=cfg.seed, rank=d.rank, world=d.world)
    per_rank = len(sampler.indices())
    drop_last = per_rank >= cfg.batch_size
    loader = make_loader(
        train_set, sampler, cfg.batch_size, dev.workers, cfg.seed,
        drop_last=drop_last, persistent=True, pin_memory=pin,
    )  # fmt: skip
    val_loader = None
    if val_paths:
        val_set = ColorDataset(val_paths, cfg.size, train=False, **common)
        val_sampler = EpochSampler(
            len(val_set), shuffle=False, rank=d.rank, world=d.world, pad=False
        )
        val_loader = make_loader(
            val_set, val_sampler, cfg.batch_size, dev.workers, cfg.seed,
            drop_last=False, persistent=False, pin_memory=pin,
        )  # fmt: skip
    steps_per_epoch = max(1, per_rank // cfg.batch_size if drop_last else 1)
    return Loaders(loader, sampler, val_loader, per_rank, steps_per_epoch)


def build_model(
    cfg: TrainConfig, d: Dist, dev: Device, cs: ClassSetup, carried: dict | None
) -> models.Colorizer:
    """A fresh model, or the architecture and weights of ``carried`` (the checkpoint resumed or
    fine-tuned from), on the device (channels-last on CUDA, BatchNorm synchronised over GPUs)."""
    if carried is not None:
        mcfg = models.ModelConfig(**carried["config"])
        if cfg.init is not None and cfg.width not in (None, mcfg.width):
            raise UsageError(f"--init {cfg.init}: the network has width {mcfg.width}; drop --width")
    else:
        q = 0 if cs.classes is None else len(cs.classes)
        width = cfg.width or models.ModelConfig.width
        mcfg = models.ModelConfig(head=cfg.head, num_classes=q, width=width)
    old = mcfg
    affinity = mcfg.affinity if cfg.affinity is None or cfg.resume else cfg.affinity
    if carried is not None and mcfg.affinity not in (0, affinity):
        raise UsageError(f"--init {cfg.init}: the network has {mcfg.affinity} affinity "
                         "channels: drop --affinity")  # fmt: skip
    try:
        mcfg = dataclasses.replace(mcfg, hints=takes_hints(cfg, carried), affinity=affinity)
    except ValueError as e:
        raise RecolorError(str(e)) from None
    model = models.Colorizer(mcfg)
    if carried is not None:  # --init of a model without the new layers: they start as built
        load = load_expanded if mcfg != old else models.Colorizer.load_state_dict
        load(model, carried["model"])
    if cs.classes is not None:  # the model decodes its own output (models.Colorizer.decode)
        model.classes.copy_(torch.from_numpy(np.array(cs.classes, np.float32)))
    model.frozen_bn = bool(cfg.freeze_bn)
    if d.world > 1 and dev.device.type == "cuda":  # BN statistics over the global batch
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dev.device)
    if dev.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def load_expanded(model: models.Colorizer, state: dict[str, torch.Tensor]) -> None:
    """Load the weights of a model without hint or affinity layers into ``model``, which has
    them.

    The new layers (:data:`~recolor_tools.models.NEW_MODULES`) keep their initial values (the
    hint layers zeros, affinity features of the decoder's width the identity), so ``model``
    computes exactly what the model of ``state`` did, with or without hints: the start of a
    fine-tune (``recolor train --init weights/cls.pt --hints`` or ``--affinity 128``).

    Raises
    ------
    RuntimeError
        ``state`` lacks anything else, or holds what ``model`` has no place for.
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    other = [k for k in missing if k.split(".")[0] not in models.NEW_MODULES]
    if other or unexpected:
        raise RuntimeError(f"weights do not fit: missing {other}, unexpected {unexpected}")


def takes_hints(cfg: TrainConfig, carried: dict | None) -> bool:
    """Whether the run's model takes hints: a resumed one's config says; else ``--hints``, or
    the ``--init`` model's."""
    saved = carried is not None and bool(carried["config"].get("hints", False))
    return saved if cfg.resume else cfg.hints or saved


def resolve_defaults(cfg: TrainConfig, resumed: dict | None) -> TrainConfig:
    """``cfg`` with the options of :data:`KEPT_ON_RESUME` and ``freeze_bn`` decided.

    Resumed: as the run was started (a run started with ``--init`` chose its defaults from it,
    which ``--resume`` does not repeat: an ``--init --affinity`` run, lr 0, resumed at 1e-4
    with an optimiser of another shape); one given again with another value, or ``--hints`` /
    ``--affinity`` the run had not, is a :class:`UsageError` (the saved optimiser and schedule
    would silently overrule it, or not fit: start another run with ``--init``). Fresh: the
    defaults. ``freeze_bn`` as given, else as the resumed run had it, else on for a fine-tune
    that adds layers (``--init`` with ``--hints`` or ``--affinity``), off otherwise.
    """
    args = {} if resumed is None else resumed["train_state"].get("args", {})
    model_cfg = {} if resumed is None else resumed.get("config", {})
    new_layers = bool(model_cfg.get("hints") or model_cfg.get("affinity"))
    for name, default in KEPT_ON_RESUME.items():
        kept = default if resumed is None else args.get(name, default)
        if name == "width" and resumed is not None:  # the network's, also when not given
            kept = model_cfg.get("width")
        given = getattr(cfg, name)
        if given is None:
            cfg = dataclasses.replace(cfg, **{name: kept})
        elif resumed is None or kept is None or given == kept:
            continue
        elif name != "hint_lr" or new_layers:  # without new layers --hint-lr has no effect
            _kept_on_resume(name, given, kept)
    if resumed is not None:
        if cfg.hints and not model_cfg.get("hints", False):
            _kept_on_resume("hints", True, False)
        if cfg.affinity is not None and cfg.affinity != model_cfg.get("affinity", 0):
            _kept_on_resume("affinity", cfg.affinity, model_cfg.get("affinity", 0))
    if cfg.freeze_bn is not None:
        return cfg
    if resumed is not None:
        frozen = bool(args.get("freeze_bn"))
    else:
        frozen = bool(cfg.hints or cfg.affinity) and cfg.init is not None
    return dataclasses.replace(cfg, freeze_bn=frozen)


def _kept_on_resume(name: str, given, kept) -> None:
    def show(v) -> str:
        return f"{v:g}" if isinstance(v, float) else "none" if v is False else str(v)

    given = "" if given is True else f" {show(given)}"
    raise UsageError(f"--{name.replace('_', '-')}{given} and --resume: the run has {show(kept)} "
                     "(a resumed run keeps its settings; start another with --init)")  # fmt: skip


@dataclass(frozen=True)
class Optimiser:
    """Adam, its learning-rate schedule and the fp16 grad scaler; saved and restored as one."""

    optimizer: torch.optim.Optimizer
    scheduler: Any  # ReduceLROnPlateau or LambdaLR
    scaler: torch.amp.GradScaler

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def build_optimiser(
    cfg: TrainConfig, model: torch.nn.Module, total_steps: int, amp_dtype: torch.dtype | None
) -> Optimiser:
    """Adam with the plateau or cosine schedule (see the module's Choices); the new layers
    (hint and affinity), if any, in a second group at ``cfg.hint_lr``. At ``lr`` 0 the rest of
    the network is not trained at all (no gradients: a fine-tune that adds layers to a network
    it keeps costs a forward pass and the new layers' backward)."""
    new = model.new_parameters()
    ids = {id(p) for p in new}
    old = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": old, "lr": cfg.lr}]
    if not cfg.lr:  # the network is kept: no gradients through it
        groups = []
        for p in old:
            p.requires_grad_(False)
    if new:
        groups.append({"params": new, "lr": cfg.hint_lr})
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **PLATEAU)
    else:
        floor = PLATEAU["min_lr"] / (cfg.lr or cfg.hint_lr)

        def cosine(step: int) -> float:  # lr from cfg.lr down to min_lr over the run
            progress = min(step, total_steps) / total_steps
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return Optimiser(optimizer, scheduler, scaler)


def log(cfg: TrainConfig, d: Dist, text: str) -> None:
    """A line on stderr from rank 0, unless quiet."""
    if d.main and not cfg.quiet:
        print(f"recolor train: {text}", file=sys.stderr, flush=True)


class Unreadable:
    """The unreadable images a run skipped, each told once per process: ``report("path:
    reason (skipped)")`` (default: that line on stderr, after ``recolor train:``)."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.seen: set[str] = set()
        self.report = report or (
            lambda line: print(f"recolor train: {line}", file=sys.stderr, flush=True)
        )

    def __call__(self, bad: Iterable[str], tell: bool = True) -> None:
        """Note each ``"path: reason"`` of ``bad`` (empty strings: none); tell the new ones."""
        for b in bad:
            if b and b not in self.seen:
                self.seen.add(b)
                if tell:
                    self.report(f"{b} (skipped)")
