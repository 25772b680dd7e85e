"""recolor train: a network from images (torch is imported inside)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import defaults
from ..errors import UsageError
from .common import (
    PATHS_GO_THERE,
    Debug,
    Precision,
    Quiet,
    Tool,
    app,
    check_precision,
    device_option,
)

_PosInt = Optional[int]  # noqa: UP045 - typer needs Optional at runtime on 3.11


# -- train's options --
TrainData = Annotated[
    Optional[list[str]],  # noqa: UP045 - None: not given (--resume takes the run's)
    typer.Argument(
        help="Training images: files, directories, globs, .txt lists (resumed: the run's).",
        show_default=False,
    ),
]
TrainHead = Annotated[
    Optional[defaults.Head],  # noqa: UP045 - None: not given (--resume takes the run's)
    typer.Option(
        "--head",
        help="cls (default): colour classes, rebalanced; reg: a/b regression (resumed: the run's).",
        show_default=False,
    ),
]
TrainVal = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--val",
        metavar="PATH",
        help="Validation images (repeatable); without it, no val metrics (resumed: the run's).",
    ),
]
TrainStats = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--stats",
        metavar="FILE",
        readable=False,
        help="Rebalancing stats (cls); default: computed from DATA.",
    ),
]
TrainClasses = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--classes",
        metavar="FILE",
        readable=False,
        help="Class set file, or a rebalance-stats file (its classes) (cls); default: the sRGB "
        "gamut grid.",
    ),
]
TrainGrid = Annotated[
    Optional[float],  # noqa: UP045 - None: not given, which --classes, --stats, --init need
    typer.Option(
        "--grid", metavar="STEP", min=1, help="Gamut class grid, a/b units (cls; default 8)."
    ),
]
TrainEpochs = Annotated[
    _PosInt, typer.Option("--epochs", metavar="N", min=1, help="Default 10; resumed: the run's.")
]
TrainSteps = Annotated[
    _PosInt,
    typer.Option("--steps", metavar="N", min=1, help="Instead of --epochs (resumed: the run's)."),
]
TrainBatchSize = Annotated[
    _PosInt,
    typer.Option(
        "--batch-size",
        "-b",
        metavar="N",
        min=1,
        help="Images per step and process (default 16; resumed: the run's).",
    ),
]
TrainLr = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--lr",
        metavar="LR",
        min=0,
        help="Adam learning rate; 0 keeps the network (only new layers learn) "
        "(default 1e-4; with --init, 3e-5 where --hints adds hint layers, 0 for --affinity "
        "alone).",
    ),
]
TrainSchedule = Annotated[
    Optional[defaults.Schedule],  # noqa: UP045 - None: not given (--resume keeps it)
    typer.Option(
        "--schedule",
        help="plateau (default): halve lr after 10 flat evaluations (not below 1e-5); "
        "cosine: to 1e-5 by the end (an lr below it stays).",
        show_default=False,
    ),
]
TrainSize = Annotated[
    _PosInt,
    typer.Option(
        "--size",
        metavar="PX",
        min=8,
        max=defaults.MAX_SIZE,
        help=f"Crop side, a multiple of 8 (default {defaults.TRAIN_SIZE}; resumed: the run's).",
    ),
]
TrainWidth = Annotated[
    _PosInt,
    typer.Option("--width", metavar="CHANNELS", min=1, help="Model base channels (default 32)."),
]
TrainDevice = device_option("Where to train (cuda:N: that GPU; under torchrun, cuda).")
TrainWorkers = Annotated[
    _PosInt,
    typer.Option(
        "--workers",
        "-j",
        metavar="N",
        min=0,
        max=defaults.MAX_WORKERS,
        help="Loader processes (0: inline; default: on a CPU 1 from 4 cores, else 0; on a GPU "
        "every core but one).",
    ),
]
TrainThreads = Annotated[
    _PosInt,
    typer.Option(
        "--threads",
        metavar="N",
        min=1,
        max=defaults.MAX_WORKERS,
        help="CPU threads (default: cores/processes).",
    ),
]
TrainSeed = Annotated[
    _PosInt,
    typer.Option(
        "--seed",
        metavar="N",
        help="Seeds init, order and crops, 0 to 2^32-1 (default 0; resumed: the run's).",
    ),
]
TrainEvalEvery = Annotated[
    _PosInt,
    typer.Option(
        "--eval-every",
        metavar="STEPS",
        min=1,
        help="Steps (default: each epoch; resumed: the run's).",
    ),
]
TrainCkptEvery = Annotated[
    _PosInt,
    typer.Option(
        "--ckpt-every",
        metavar="STEPS",
        min=1,
        help="Steps (default: --eval-every; resumed: the run's).",
    ),
]
TrainOut = Annotated[
    Path,
    typer.Option(
        "--out",
        "--output",
        "-o",
        metavar="DIR",
        readable=False,
        help="Directory for last.pt, metrics.jsonl, HEAD.pt.",
    ),
]
TrainResume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")]
TrainOverwrite = Annotated[
    bool,
    typer.Option("--overwrite", help="Start afresh in an OUT that holds a run (else refused)."),
]
TrainInit = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--init",
        metavar="CHECKPOINT",
        readable=False,
        help="Fine-tune: start from these weights (their architecture).",
    ),
]
TrainHints = Annotated[
    bool,
    typer.Option(
        "--hints",
        help="The model takes colour hints, simulated from the truth; with --init of a "
        "model without them, it starts as that model.",
    ),
]
TrainFreezeBn = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option(
        "--freeze-bn/--no-freeze-bn",
        help="Keep BatchNorm statistics (default: on where --hints or --affinity adds layers "
        "to --init's, and with --lr 0).",
        show_default=False,
    ),
]
TrainHintLr = Annotated[
    Optional[float],  # noqa: UP045 - None: not given (--resume keeps it)
    typer.Option(
        "--hint-lr",
        metavar="LR",  # (no min=0: its help said [x>=0], and 0 is refused, > 0)
        help="Learning rate of the hint and affinity layers, > 0 (default 1e-3).",
        show_default=False,
    ),
]
TrainAffinity = Annotated[
    _PosInt,
    typer.Option(
        "--affinity",
        metavar="CHANNELS",
        min=0,
        help="cls: learn the features that spread point hints (this many channels; twice "
        "the width starts from the decoder's own); with --init it trains them alone.",
    ),
]


@app.command("train", short_help="Train a model (colour classes or a/b regression).")
def train(
    data: TrainData = None,
    head: TrainHead = None,
    val: TrainVal = None,
    stats: TrainStats = None,
    classes: TrainClasses = None,
    grid: TrainGrid = None,
    epochs: TrainEpochs = None,
    steps: TrainSteps = None,
    batch_size: TrainBatchSize = None,
    lr: TrainLr = None,
    schedule: TrainSchedule = None,
    size: TrainSize = None,
    width: TrainWidth = None,
    device: TrainDevice = "auto",
    precision: Precision = "auto",
    workers: TrainWorkers = None,
    threads: TrainThreads = None,
    seed: TrainSeed = None,
    eval_every: TrainEvalEvery = None,
    ckpt_every: TrainCkptEvery = None,
    out: TrainOut = Path("runs/recolor"),
    resume: TrainResume = False,
    overwrite: TrainOverwrite = False,
    init: TrainInit = None,
    hints: TrainHints = False,
    hint_lr: TrainHintLr = None,
    freeze_bn: TrainFreezeBn = None,
    affinity: TrainAffinity = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Train a model; prints the path of the final weights (OUT/HEAD.pt) on stdout.

    Writes OUT/last.pt (for --resume), OUT/metrics.jsonl and OUT/HEAD.pt (and, for a cls run
    that computed its class statistics, OUT/rebalance-stats.npz).

    Several GPUs: torchrun --nproc_per_node N -m recolor_tools train ... (-b is per GPU).
    """
    # under torchrun, what is about the whole run is said once (every rank exits alike); a
    # skipped image by the rank that met it
    tool = Tool("train", quiet, debug, ranked=True)
    from ..shard import rank_and_size

    if rank_and_size()[1] > 1 and "MASTER_ADDR" not in os.environ:  # (said before torch loads)
        tool.usage("WORLD_SIZE above 1 without MASTER_ADDR: train's processes meet through "
                   "torchrun's rendezvous; launch them with torchrun", see_help=False)  # fmt: skip
    tool.text_stdout(PATHS_GO_THERE)  # the final weights' path: closed, refused before any work
    check_precision(tool, device, precision)
    if not data and not resume:  # (as typer said it when DATA was required)
        tool.usage("missing DATA, the training images (--resume takes the run's)")
    with tool.guard():
        from ..trainconfig import TrainConfig  # (no torch: option errors are said at once)

        try:  # TrainConfig checks the options: ValueError is a usage error
            cfg = TrainConfig(
                data=data or [], head=head, out=out, val=val or [], stats=stats, classes=classes,
                grid=grid, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr,
                schedule=schedule, size=size, width=width, device=device, workers=workers,
                threads=threads, seed=seed, eval_every=eval_every, ckpt_every=ckpt_every,
                resume=resume, overwrite=overwrite, init=init, precision=precision, quiet=quiet,
                hints=hints, hint_lr=hint_lr, freeze_bn=freeze_bn, affinity=affinity,
            )  # fmt: skip
        except ValueError as e:
            tool.usage(str(e))
        if hint_lr is not None and not (resume or hints or affinity):  # else ignored, unsaid
            from ..trainconfig import HINT_LR_ALONE

            tool.usage(HINT_LR_ALONE)
        try:
            cfg.check_out()
        except ValueError as e:
            from ..errors import RecolorError
            from ..runlock import out_held_elsewhere

            if out_held_elsewhere(cfg.out):  # the run it holds is that one's, not to resume
                raise RecolorError("another recolor train is writing into it", out) from None
            tool.usage(str(e))
        from ..train import train as run_training

        try:
            skipped = functools.partial(tool.fail, always=True)
            path = run_training(cfg, report=skipped)  # a skipped image: exit 1 at the end
        except UsageError as e:  # options the checkpoint to resume does not allow
            tool.usage(e.reason, see_help=e.see_help)
        if tool.echo:  # one line, also under torchrun
            from ..outputs import print_path

            print_path(tool.text_stdout(), path)
    tool.exit()
