"""Building a training run, step by step, from its options
(:class:`~recolor_tools.trainconfig.TrainConfig`): the process's device and precision, the
checkpoints it starts from, the class set and rebalancing (decided in one place,
:func:`resolve_classes`), the loaders and the model; its optimiser is
:mod:`recolor_tools.trainoptim`'s, the lock of OUT :mod:`recolor_tools.runlock`'s.

:func:`recolor_tools.train.train` calls these in order; each is a plain function of the options
and of what the steps before it built, so each can be tested on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import checkpoints, defaults, models
from .data import ColorDataset, EpochSampler, make_loader
from .distributed import Dist, default_workers
from .errors import RecolorError, UsageError, printable, to_stderr, warn
from .trainconfig import TrainConfig, kept_on_resume

if TYPE_CHECKING:  # (imported where needed: numba's kernels come with it)
    from .rebalance import RebalanceStats


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
    def of_stats(cls, stats: RebalanceStats) -> ClassSetup:
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
    compute: Callable[[np.ndarray, float], RebalanceStats] | None = None,
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
    if (cfg.head or (resumed or {}).get("head", "cls")) != "cls":  # (None: the resumed run's)
        return ClassSetup()
    if resumed is not None:
        return ClassSetup.of_checkpoint(resumed)
    if init is not None and cfg.stats is None:
        if cfg.classes is not None:
            raise UsageError("--init fixes the class set; give --stats, not --classes")
        return ClassSetup.of_checkpoint(init)
    from . import quant
    from .rebalance import RebalanceStats, load_class_set

    classes = grid = None
    if cfg.classes is not None:
        classes, grid = load_class_set(cfg.classes)
        _check_enough(classes, f"--classes {printable(cfg.classes)}")
    if cfg.stats is not None:
        stats = RebalanceStats.load(cfg.stats)
        _check_enough(stats.classes, f"--stats {printable(cfg.stats)}")
        if classes is not None and not np.array_equal(classes, stats.classes):
            raise RecolorError("--classes and --stats hold different class sets", cfg.classes)
    else:
        if classes is None:
            grid = defaults.GRID if cfg.grid is None else float(cfg.grid)
            classes = quant.gamut_classes(grid)
            _check_enough(classes, f"--grid {grid:g}")
        stats = compute(classes, grid)
    setup = ClassSetup.of_stats(stats)
    if init is None:
        return setup
    if not np.array_equal(setup.classes, init["classes"].numpy()):
        raise RecolorError("its class set differs from the --init checkpoint's", cfg.stats)
    return dataclasses.replace(setup, **init["encoding"])  # the targets it was trained on


def _check_enough(classes: np.ndarray, given: str) -> None:
    """A usage error, before any work, for a class set smaller than the soft-encoding's K
    nearest (it was found at the first batch: "k must be an integer in [1, Q=2], got 5", with
    a loader worker's traceback, and the statistics already computed and written)."""
    if len(classes) < defaults.K:
        raise UsageError(f"{given} gives {len(classes)} colour classes; the soft-encoding takes "
                         f"the {defaults.K} nearest, so it needs {defaults.K} or more")  # fmt: skip


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
    cores = d.cores  # under torchrun, this process's share of the machine's
    if workers > cores:  # said once, in the tools' form, not torch's warning
        warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
        if d.main:
            warn(f"--workers {workers} is more than the {cores} core{'s' * (cores > 1)} this "
                 "process may use (slower, and more memory)")  # fmt: skip
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    return Device(device, autocast, amp_dtype, workers)


def precision_context(
    cfg: TrainConfig, device: torch.device
) -> tuple[contextlib.AbstractContextManager, torch.dtype | None]:
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
        cfg.check_out()  # the CLI has said it (a run in OUT: a usage error)
    except ValueError as e:
        raise RecolorError(str(e)) from None
    resumed = None
    if cfg.resume:
        path = cfg.out / "last.pt"
        if not path.exists() and not checkpoints.previous_path(path).exists():
            raise UsageError(
                f"--resume: {printable(cfg.out)} holds no run to continue (no last.pt)"
            )
        try:
            resumed = checkpoints.read_checkpoint(path)
        except RecolorError as e:
            prev = checkpoints.previous_path(path)
            try:
                resumed, path = checkpoints.read_checkpoint(prev), prev
            except RecolorError:
                raise e from None  # about last.pt: the file the user knows
            if d.main:  # a warning, shown even with --quiet
                to_stderr(f"recolor train: {e}; resuming from {printable(prev)}")
        run_head = resumed.get("head")
        if cfg.head is not None and run_head in ("cls", "reg") and run_head != cfg.head:
            kept_on_resume("head", cfg.head, run_head)  # given again: usage, as --width is
        checkpoints.check_head(resumed, cfg.head, path)
        if "train_state" not in resumed:
            raise RecolorError("checkpoint has no training state to resume from", path)
        from .trainstate import READ_FROM, SAVED, continued

        ts = resumed["train_state"]
        lacks = [k for k in SAVED if not isinstance(ts, dict) or k not in ts]
        if lacks:  # (it said "the optimiser's" whichever was missing)
            raise RecolorError(f"broken checkpoint: its training state has no {lacks[0]!r}", path)
        resumed["train_state"] = continued(ts, resumed.get("step"), d.world, path)
        checkpoints.model_of(resumed, path)  # weights that fit and are finite, before any work
        resumed[READ_FROM] = path
    init = None if cfg.init is None else checkpoints.read_checkpoint(cfg.init)
    if init is not None:  # the other head's checkpoint said with advice, as predict says it
        advice = f"; use --head {init.get('head')} or other --init weights"
        checkpoints.check_head(init, cfg.head, cfg.init, advice)
        checkpoints.model_of(init, cfg.init)
    return resumed, init


class DataStats:
    """``compute`` for :func:`resolve_classes` (call it): rebalancing statistics of the
    training images, and :meth:`save`, which writes them as ``OUT/rebalance-stats.npz``.

    Every rank computes the same (which avoids a long wait at a barrier); rank 0 reports
    unreadable images once, and saves them when training starts, after ``--overwrite`` has
    removed the old run (saved at once, a run that failed in between left the old checkpoints
    beside another run's statistics).
    """

    def __init__(self, cfg: TrainConfig, d: Dist, paths: list[str], unreadable: Unreadable):
        self.cfg, self.d, self.paths, self.unreadable = cfg, d, paths, unreadable
        self.computed = None

    def __call__(self, classes: np.ndarray, grid: float):
        from .rebalance import compute_stats

        def skipped(e: RecolorError) -> None:  # every rank sees every file: rank 0 tells
            self.unreadable([str(e)], tell=self.d.main)  # "path: reason", escaped

        log(self.cfg, self.d, f"computing rebalancing statistics of {len(self.paths)} images")
        self.computed = compute_stats(
            self.paths, classes, grid, workers=self.d.cores, on_error=skipped
        )
        return self.computed

    def save(self) -> None:
        """Write the statistics computed (if any) into OUT (rank 0)."""
        if self.computed is not None and self.d.main:
            self.cfg.out.mkdir(parents=True, exist_ok=True)
            self.computed.save(self.cfg.out / "rebalance-stats.npz")


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
            drop_last=False, persistent=True, pin_memory=pin,
        )  # fmt: skip
    steps_per_epoch = max(1, per_rank // cfg.batch_size if drop_last else 1)
    return Loaders(loader, sampler, val_loader, per_rank, steps_per_epoch)


def last_step(cfg: TrainConfig, loaders: Loaders, resumed: dict | None) -> int:
    """The step the run ends at: ``--steps``, or the end of epoch ``--epochs`` (default 10) in
    this launch's steps per epoch, counted on from where a resumed run is. A resume on other
    processes or with another ``-b`` takes other steps per epoch: the whole length counted in
    them ended a run short of its epochs (or at once, "nothing to train"), or past them."""
    if cfg.steps:
        return cfg.steps
    epochs, per_epoch = cfg.epochs or 10, loaders.steps_per_epoch
    if resumed is None:
        return epochs * per_epoch
    ts = resumed["train_state"]  # (its pos in this launch's shares: trainstate.continued)
    step, epoch, pos = ts["step"], ts["epoch"], ts["pos"]
    if epoch >= epochs:  # at its end, or past it: nothing to train
        return min(step, epochs * per_epoch)
    left = max(0, loaders.per_rank - pos)  # of this epoch, whole batches (one, short, if less)
    this_epoch = left // cfg.batch_size if loaders.per_rank >= cfg.batch_size else int(left > 0)
    return step + this_epoch + (epochs - epoch - 1) * per_epoch


def build_model(
    cfg: TrainConfig, d: Dist, dev: Device, cs: ClassSetup, carried: dict | None
) -> models.Colorizer:
    """A fresh model, or the architecture and weights of ``carried`` (the checkpoint resumed or
    fine-tuned from), on the device (channels-last on CUDA, BatchNorm synchronised over GPUs)."""
    if carried is not None:
        mcfg = models.ModelConfig(**carried["config"])
        if cfg.init is not None and cfg.width not in (None, mcfg.width):
            raise UsageError(
                f"--init {printable(cfg.init)}: the network has width {mcfg.width}; drop --width"
            )
    else:
        q = 0 if cs.classes is None else len(cs.classes)
        width = cfg.width or models.ModelConfig.width
        mcfg = models.ModelConfig(head=cfg.head, num_classes=q, width=width)
    old = mcfg
    affinity = mcfg.affinity if cfg.affinity is None or cfg.resume else cfg.affinity
    if carried is not None and mcfg.affinity not in (0, affinity):
        raise UsageError(f"--init {printable(cfg.init)}: the network has {mcfg.affinity} affinity "
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


def log(cfg: TrainConfig, d: Dist, text: str) -> None:
    """A line on stderr from rank 0, unless quiet."""
    if d.main and not cfg.quiet:
        to_stderr(f"recolor train: {text}")


class Unreadable:
    """The unreadable images a run skipped, each told once per process: ``report("path:
    reason (skipped)")`` (default: that line on stderr, after ``recolor train:``)."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.seen: set[str] = set()
        self.report = report or (lambda line: to_stderr(f"recolor train: {line}"))

    def __call__(self, bad: Iterable[str], tell: bool = True) -> None:
        """Note each ``"path: reason"`` of ``bad`` (an item's lines; empty strings: none); tell
        the new ones."""
        for b in (line for item in bad for line in item.splitlines()):
            if b not in self.seen:
                self.seen.add(b)
                if tell:
                    self.report(f"{b} (skipped)")
