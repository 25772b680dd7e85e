"""The options of a training run (:class:`TrainConfig`), checked once, and the defaults a run
decides from where it starts (:func:`resolve_defaults`: a resumed run keeps its own).

:mod:`recolor_tools.trainsetup` builds the run from them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import defaults
from .errors import RecolorError, UsageError, printable

LR = 1e-4
"""Adam's learning rate (the seed's)."""
FINETUNE_LR = 3e-5
"""Fine-tuning a model into one that takes hints (``--init`` of a model without them,
``--hints``): the old weights move at FINETUNE_LR, the new zero-initialised hint layers at
``defaults.HINT_LR``, and BatchNorm keeps its statistics. Issue 15's calibration on the shipped
cls model: all weights at 1e-4 with BatchNorm training gave +0.00 dB in 40 minutes and moved
the automatic prediction; these settings gave +0.18 dB with 10 points in 20 minutes and kept it."""


CHOICES = {
    "head": defaults.HEADS,
    "schedule": defaults.SCHEDULES,
    "precision": defaults.PRECISIONS,
}
"""The options of :class:`TrainConfig` that take one of a few names."""


CHECKPOINT_FILES = ("last.pt", "last.prev.pt", "cls.pt", "reg.pt")
"""The checkpoints a run writes in OUT (``--overwrite`` removes them as training starts)."""
OUT_FILES = (*CHECKPOINT_FILES, "metrics.jsonl")
"""What a run writes in OUT (and ``rebalance-stats.npz`` where it computes the statistics)."""
KEPT_ON_RESUME = {"lr": LR, "schedule": "plateau", "hint_lr": defaults.HINT_LR, "width": None}
"""What a resumed run keeps, with the defaults of a fresh run (None: the model's): the options
it was started with (its network's width), which its optimiser, schedule and model follow."""
RESUMED_UNLESS_GIVEN = {"batch_size": 16, "size": defaults.TRAIN_SIZE, "seed": 0, "steps": None,
                        "epochs": None, "eval_every": None, "ckpt_every": None}  # fmt: skip
"""What a resumed run takes from the run unless given again, with the defaults of a fresh run:
``--resume`` alone continues a run as it was started (to its ``--steps``). Given again they
win (``--steps`` or ``--epochs`` extend it; a note names ``-b``, ``--seed`` and ``--size`` that
differ from the run's, which change the order and crops from then on)."""
HINT_LR_ALONE = (
    "--hint-lr sets the rate of the layers that --hints and --affinity add: give one of them"
)
"""The usage error of ``--hint-lr`` for a run that has no such layers (fresh or resumed)."""
RUN_WIDE = ("head", "grid", "epochs", "steps", "batch_size", "lr", "schedule", "size", "width",
            "seed", "eval_every", "ckpt_every", "resume", "precision", "hints", "hint_lr",
            "freeze_bn", "affinity")  # fmt: skip
"""The options every process of a torchrun launch must be given alike (resolved: the resumed
run's where not given); the others are each machine's (OUT, files, device, loaders, threads)."""


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

    data: list[str] = field(default_factory=list)  # training images: files, directories,
    # globs, .txt/.list files; resumed and none given: the run's
    head: str | None = None  # "reg" or "cls"; None: cls, or the resumed run's
    out: Path = Path("runs/recolor")  # output directory (created)
    val: list[str] = field(default_factory=list)  # validation images; none: no val metrics
    # (resumed and none given: the run's)
    stats: Path | None = None  # rebalance stats (cls); none: computed from the training data
    classes: Path | None = None  # class set file (cls); none: stats' classes or gamut grid
    grid: float | None = None  # gamut class grid when no class set is given (defaults.GRID)
    epochs: int | None = None  # run length in epochs ...
    steps: int | None = None  # ... or in optimiser steps (neither: 10 epochs)
    batch_size: int | None = None  # per process; None: 16, or the resumed run's
    lr: float | None = None  # Adam; None: 1e-4; with --init, FINETUNE_LR (hints) or 0 (affinity)
    # (resolve_defaults)
    schedule: str | None = None  # "plateau" or "cosine"; None: plateau, or the resumed run's
    size: int | None = None  # training crop side, multiple of 8; None: TRAIN_SIZE, or the run's
    width: int | None = None  # ModelConfig.width; None: its default, or --init's
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    workers: int | None = None  # DataLoader workers per process; None: chosen from the cores
    threads: int | None = None  # CPU threads per process; None: the cores / local processes
    seed: int | None = None  # None: 0, or the resumed run's
    eval_every: int | None = None  # steps; None: once per epoch
    ckpt_every: int | None = None  # steps; None: as eval_every
    resume: bool = False  # continue from out/last.pt
    overwrite: bool = False  # start afresh in an out that holds a run
    init: Path | None = None  # start from these weights (fine-tune); fresh optimiser and schedule
    precision: str = "auto"  # "auto" (bf16/fp16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16"
    quiet: bool = False  # no progress bar or log lines
    hints: bool = False  # the model takes colour hints (simulated from the truth in training)
    hint_lr: float | None = None  # of the new layers (models.NEW_MODULES); None: HINT_LR, or the
    # resumed run's (both with --init: resolve_defaults)
    freeze_bn: bool | None = None  # BatchNorm keeps its statistics; None: when fine-tuning hints
    affinity: int | None = None  # ModelConfig.affinity; None: 0, or --init's / the resumed one's

    def __post_init__(self) -> None:
        named_file = Path(self.out).suffix.lower() == ".pt" and not Path(self.out).is_dir()
        if str(self.out) == "-" or named_file:  # (a run folder of that name stays usable)
            raise ValueError(f"-o {printable(self.out)}: a run writes a folder (last.pt, "
                             "metrics.jsonl, HEAD.pt), not stdout or one file: name a "
                             "folder")  # fmt: skip
        self.out = Path(self.out)
        if not self.resume:  # resumed: the run's own (resolve_defaults)
            self.head = self.head or "cls"
            self.schedule = self.schedule or KEPT_ON_RESUME["schedule"]
            for name, default in RESUMED_UNLESS_GIVEN.items():
                if getattr(self, name) is None:
                    setattr(self, name, default)
        if not self.resume and self.init is None:  # (else resolve_defaults, from the run's
            self.lr = LR if self.lr is None else self.lr  # or the --init weights)
            self.hint_lr = KEPT_ON_RESUME["hint_lr"] if self.hint_lr is None else self.hint_lr
        if self.epochs is not None and self.steps is not None:
            raise ValueError("--epochs and --steps exclude each other")
        if self.init is not None and self.resume:
            raise ValueError("--init and --resume exclude each other")
        brought = {"--classes": self.classes, "--stats": self.stats, "--init": self.init}
        for flag in ("--classes", "--stats"):  # read by every process, and their file's id
            if brought[flag] is not None and str(brought[flag]) == "-":  # kept safe from OUT
                raise ValueError(f"{flag} -: train reads it by name; give a file")
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
            raise ValueError("--resume and --overwrite exclude each other")
        for name, allowed in CHOICES.items():  # (None: the resumed run's, or the default)
            if getattr(self, name) not in ((None, *allowed) if name != "precision" else allowed):
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
        if self.workers is not None and not 0 <= self.workers <= defaults.MAX_WORKERS:
            raise ValueError(f"--workers must be from 0 to {defaults.MAX_WORKERS}")
        if self.threads is not None and self.threads > defaults.MAX_WORKERS:
            raise ValueError(f"--threads must be at most {defaults.MAX_WORKERS}")
        if self.seed is not None and not 0 <= self.seed < 2**32:  # numpy's, torch's: 32-bit
            raise ValueError(f"--seed must be from 0 to {2**32 - 1}, got {self.seed}")
        # (2^31 reached OpenCV's resize, after the class statistics: an internal error)
        if self.size is not None and (self.size % 8 or self.size > defaults.MAX_SIZE):
            raise ValueError(f"--size must be a multiple of 8 up to {defaults.MAX_SIZE}, got "
                             f"{self.size}")  # fmt: skip
        if self.hint_lr is not None and not self.hint_lr > 0:
            raise ValueError("--hint-lr must be positive")
        lr_ok = self.lr is None or self.lr > 0
        if not (lr_ok or self.lr == 0 and (self.hints or self.affinity or self.resume)):
            raise ValueError("--lr must be positive (0, the network kept, needs new layers to "
                             "train: --hints or --affinity)")  # fmt: skip
        if self.affinity is not None and self.affinity < 0:
            raise ValueError("--affinity must be 0 or more")
        if self.affinity and self.head == "reg":  # caught before torch starts, as usage
            raise ValueError("--affinity features steer the cls head only (--head cls)")

    def run_wide(self, resumed: dict | None) -> dict[str, object]:
        """``{flag: value}`` of :data:`RUN_WIDE` (resolved) and the step a resumed run starts
        from: what every process of a launch must share."""
        wide: dict[str, object] = {f"--{k.replace('_', '-')}": getattr(self, k) for k in RUN_WIDE}
        wide["--resume (the step of OUT/last.pt)"] = (resumed or {}).get("step")
        return wide

    def check_out(self) -> None:
        """Raise :class:`RecolorError` if OUT, or the folder it would be made in, is a file;
        ValueError (a usage error) if it holds a run (``last.pt``) that neither ``resume`` nor
        ``overwrite`` asks for: starting afresh would replace hours of training."""
        # a file where OUT or a folder above it goes: the file system's answer, said as every
        # tool's output folders (exit 1), not a usage error
        if self.out.exists() and not self.out.is_dir():  # found after the stats, before
            raise RecolorError("exists and is not a directory", self.out)
        above = next((p for p in self.out.parents if p.exists()), None)  # named as given
        if above is not None and not self.out.exists() and not above.is_dir():
            raise RecolorError("not a directory", above)
        # (lexists: a linked last.pt left dangling by a kill between save's two renames too)
        held = [n for n in ("last.pt", "last.prev.pt") if os.path.lexists(self.out / n)]
        if held and not (self.resume or self.overwrite):
            raise ValueError(f"{printable(self.out)} holds a run ({held[0]}): --resume continues "
                             "it, --overwrite starts afresh")  # fmt: skip
        # the files a run writes (or removes, --overwrite) in OUT are none of its inputs
        written = {os.path.realpath(self.out / n) for n in self.written()}
        read = {"init": self.init, "classes": self.classes}
        for name, given in read.items():
            if given is not None and os.path.realpath(given) in written:
                raise ValueError(f"--{name} {printable(given)}: this run writes that file in "
                                 f"{printable(self.out)} "
                                 "(copy it elsewhere first)")  # fmt: skip
        for n in self.written():  # found at the end of the run, after hours of training
            if (self.out / n).is_dir():
                raise RecolorError(
                    "is a directory (this run writes or removes a file there)", self.out / n
                )

    def written(self) -> tuple[str, ...]:
        """The names of the files a run writes (or removes, --overwrite) in OUT: the statistics
        where it computes them (a fresh cls run without --stats or --init) or --overwrite
        removes the old run's (unless they are this run's --stats). A reg or --init run into
        an OUT whose rebalance-stats.npz was a folder was refused ("this run writes a file
        there"), and an --overwrite --stats run met it after removing the old run."""
        computes = (self.stats is None and self.init is None and not self.resume
                    and self.head != "reg")  # fmt: skip
        removes = self.overwrite and not self.stats_in_out()
        return OUT_FILES + ("rebalance-stats.npz",) * (computes or removes)

    def stats_in_out(self) -> bool:
        """Whether ``--stats`` is OUT's own rebalance-stats.npz (read, so never removed)."""
        own = self.out / "rebalance-stats.npz"
        return self.stats is not None and os.path.realpath(self.stats) == os.path.realpath(own)

    def check_not_read(self, images: list[str]) -> None:
        """Raise :class:`RecolorError` where a file this run writes in OUT is, through a link
        (symbolic or hard), one it reads: a training or validation image, ``--stats``,
        ``--init`` or ``--classes`` (``OUT/cls.pt`` linked to an image: the weights were
        written into the image)."""
        from .outputs import check_not_input, file_ids

        given = (self.stats, self.init, self.classes)
        read = file_ids([*images, *(str(p) for p in given if p is not None)])
        for n in self.written():
            check_not_input(self.out / n, read)


def resolve_defaults(
    cfg: TrainConfig, resumed: dict | None, init: dict | None = None
) -> TrainConfig:
    """``cfg`` with the options of :data:`KEPT_ON_RESUME`, :data:`RESUMED_UNLESS_GIVEN` and
    ``freeze_bn`` decided; resumed, also the head (read_start checked one given), and the
    training and validation images when none are given.

    Resumed: as the run was started (a run started with ``--init`` chose its defaults from it,
    which ``--resume`` does not repeat: an ``--init --affinity`` run, lr 0, resumed at 1e-4
    with an optimiser of another shape); one given again with another value, or ``--hints`` /
    ``--affinity`` the run had not, is a :class:`UsageError` (the saved optimiser and schedule
    would silently overrule it, or not fit: start another run with ``--init``). Fresh: the
    defaults; from ``init`` (the ``--init`` checkpoint; None: one without hint or affinity
    layers), a fine-tune's: ``lr`` FINETUNE_LR where it adds hint layers, 0 where it adds (or
    trains again) affinity features only, else LR; ``--hint-lr`` where it adds neither (a hint
    model's hint layers are its network's) is a :class:`UsageError`. ``freeze_bn`` as given,
    else as the resumed run had it, else on for a fine-tune that adds layers and for ``--lr 0``,
    off otherwise; ``--lr 0`` with ``--no-freeze-bn`` is a :class:`UsageError`.
    """
    args = {} if resumed is None else resumed["train_state"].get("args", {})
    model_cfg = {} if resumed is None else resumed.get("config", {})
    if resumed is not None:  # the head, data and validation images the run was started with
        data = resumed.get("data", {})
        try:  # (the run's head checks the options again: --affinity on a reg run)
            cfg = dataclasses.replace(
                cfg, head=resumed.get("head", cfg.head),
                data=cfg.data or list(data.get("sources", [])),
                val=cfg.val or list(data.get("val_sources", [])),
            )  # fmt: skip
        except ValueError as e:  # a usage error, as with that --head given (it was exit 1)
            raise UsageError(str(e)) from None
    if cfg.steps is not None or cfg.epochs is not None:  # a new length: not the run's
        args = {k: v for k, v in args.items() if k not in ("steps", "epochs")}
    for name, default in RESUMED_UNLESS_GIVEN.items():
        if getattr(cfg, name) is None:
            cfg = dataclasses.replace(cfg, **{name: args.get(name, default)})
    new_layers = bool(model_cfg.get("hints") or model_cfg.get("affinity"))
    if resumed is not None and cfg.hint_lr is not None and not new_layers:
        raise UsageError(HINT_LR_ALONE)  # as for a fresh run (it was accepted, unsaid)
    adds = None  # a fine-tune: whether it adds layers to the --init weights
    if resumed is None and cfg.init is not None:
        adds_hints = cfg.hints and not (init or {}).get("config", {}).get("hints", False)
        adds = adds_hints or bool(cfg.affinity)
        if cfg.hint_lr is not None and not adds:  # (it trained nothing, unsaid)
            raise UsageError(HINT_LR_ALONE if not cfg.hints else f"--hint-lr: the --init weights "
                             f"{printable(cfg.init)} take hints already; their hint layers "
                             "train at --lr with the network")  # fmt: skip
        if cfg.lr is None:  # (--affinity alone keeps the network)
            cfg = dataclasses.replace(cfg, lr=FINETUNE_LR if adds_hints else 0.0 if adds else LR)
    for name, default in KEPT_ON_RESUME.items():
        kept = default if resumed is None else args.get(name, default)
        if name == "width" and resumed is not None:  # the network's, also when not given
            kept = model_cfg.get("width")
        given = getattr(cfg, name)
        if given is None:
            cfg = dataclasses.replace(cfg, **{name: kept})
        elif resumed is None or kept is None or given == kept:
            continue
        else:
            kept_on_resume(name, given, kept)
    if resumed is not None:
        if cfg.hints and not model_cfg.get("hints", False):
            kept_on_resume("hints", True, False)
        if cfg.affinity is not None and cfg.affinity != model_cfg.get("affinity", 0):
            kept_on_resume("affinity", cfg.affinity, model_cfg.get("affinity", 0))
    if cfg.lr == 0 and cfg.freeze_bn is False:  # given: --lr 0's promise would not hold
        raise UsageError("--lr 0 (given, or --init with --affinity's default) and "
                         "--no-freeze-bn exclude each other (BatchNorm's statistics would change "
                         "the network that --lr 0 keeps)")  # fmt: skip
    if cfg.freeze_bn is not None:
        return cfg
    # (--lr 0 keeps the network, BatchNorm's statistics too)
    frozen = bool(args.get("freeze_bn")) if resumed is not None else bool(adds) or cfg.lr == 0
    return dataclasses.replace(cfg, freeze_bn=frozen)


def kept_on_resume(name: str, given: object, kept: object) -> None:
    """Raise the :class:`UsageError` of an option given to ``--resume`` with another value than
    the run's (``kept``)."""

    def show(v) -> str:
        return f"{v:g}" if isinstance(v, float) else "none" if v is False else str(v)

    given = "" if given is True else f" {show(given)}"
    raise UsageError(f"--{name.replace('_', '-')}{given} and --resume: the run has {show(kept)} "
                     "(a resumed run keeps its settings; start another with --init)")  # fmt: skip
