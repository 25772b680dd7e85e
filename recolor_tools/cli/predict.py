"""recolor predict: the network recolours images, steered by hints and palettes (torch is
imported inside)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from .. import defaults
from ..errors import RecolorError, printable
from . import common, pathopts
from .common import (
    PATHS_GO_THERE,
    Debug,
    Inputs,
    Precision,
    Quiet,
    Tool,
    app,
    check_precision,
    device_option,
)

SUGGEST_PRINTS = "--suggest prints its colours there; redirect it to a file"
"""Advice when stdout is closed and --suggest (which takes no -o) would print there."""

# -- predict's options --
PredictHead = Annotated[
    Optional[defaults.Head],  # noqa: UP045
    typer.Option(
        "--head",
        help="cls: colour classes (vivid); reg: regression (muted). "
        "Default: the --weights checkpoint's head, else cls.",
        show_default=False,
    ),
]
PredictWeights = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--weights",
        "-w",
        metavar="CHECKPOINT",
        readable=False,
        help="Checkpoint (default: the shipped weights for --head).",
    ),
]
PredictOutput = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Directory (default recolored/); a file with an image extension for one input; "
        "'-' for stdout.",
        show_default=False,
    ),
]
PredictTemperature = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--temperature",
        "-T",
        metavar="T",
        min=0.0,
        help=f"Annealed mean (cls; default {defaults.TEMPERATURE}): lower is more vivid, 0 the "
        "mode.",
        show_default=False,
    ),
]
PredictSaturation = Annotated[
    float,
    typer.Option(
        "--saturation",
        metavar="FACTOR",
        min=0.0,
        max=defaults.MAX_SATURATION,
        help="Scale predicted a/b: 0 gray, >1 more.",
    ),
]
PredictBatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "-b",
        metavar="N",
        min=1,
        help="Images read at a time; those of one working size share a forward pass.",
    ),
]
PredictThreads = Annotated[
    Optional[int],  # noqa: UP045 - None: torch's default (the cores)
    typer.Option(
        "--threads",
        metavar="N",
        min=1,
        max=defaults.MAX_WORKERS,
        help="CPU threads of the network (default: the cores, or a container's CPU limit).",
    ),
]
PredictIoWorkers = Annotated[
    int,
    typer.Option(
        "--workers",
        "-j",
        "--io-workers",
        metavar="N",
        min=0,
        max=defaults.MAX_WORKERS,
        help="Threads that read the next batch, compose and encode results while the network "
        "runs; one more writes them in order (0: all in turn, in one thread).",
    ),
]
PredictDevice = device_option("Where the network runs (cuda:N: that GPU).")
PredictSize = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--size",
        metavar="PX",
        min=8,
        max=defaults.MAX_SIZE,
        help="Working shorter side in pixels (default: 1.25 x the training size).",
    ),
]
PredictFmt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--format",
        "-f",
        metavar="FORMAT",
        help="Output format: png, jpg, ... (default: the input's extension; png for stdin and "
        "-o -).",
    ),
]


def _unshown(flag: str, metavar: str, help: str, many: bool = False):
    """An optional text option (repeatable with ``many``) whose help shows no default."""
    kind = Optional[list[str]] if many else Optional[str]  # noqa: UP045
    return Annotated[kind, typer.Option(flag, metavar=metavar, help=help, show_default=False)]


PredictHint = _unshown(
    "--hint", "X,Y=#RRGGBB", "The colour at pixel X,Y (or 50%,20%); repeatable.", True
)
PredictHints = _unshown(
    "--hints",
    "FILE|DIR",
    "Hint file (JSON points/palette, or PNG layer: alpha > 0 pixels are hints; '-': stdin), "
    "or a directory of them matched to the inputs by path without extension.",
)
PredictPalette = _unshown(
    "--palette",
    "IMAGE|COLOURS",
    "Colour scheme to follow: an image ('-': stdin), or colours, comma-separated: #hex or "
    "#hex:weight (# optional).",
)
PredictHintStrength = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--hint-strength",
        metavar="G",
        help="How far point hints spread into look-alike regions, 0 to 1e6 (default 2; more "
        "suits flat posters, 0.5-1 a few hints on objects, above all in photographs; 0 holds "
        "them to their own pixels).",
        show_default=False,
    ),
]
PredictHintSpread = Annotated[
    Optional[Literal["alike", "region"]],  # noqa: UP045
    typer.Option(
        "--hint-spread",
        help="alike: point hints reach look-alike regions nearby, across edges (posters: a "
        "title's letters); region: each fills the region it is in and stops at edges "
        "(objects in photographs). Default alike.",
        show_default=False,
    ),
]
PredictSuggest = _unshown(
    "--suggest",
    "X,Y",
    "Print the model's main colours there (up to 5: hex, probability); repeatable; write nothing.",
    many=True,
)


@app.command("predict", short_help="Recolour images (hints and palettes steer the colours).")
def predict(
    inputs: Inputs = None,
    head: PredictHead = None,
    weights: PredictWeights = None,
    output: PredictOutput = None,
    temperature: PredictTemperature = None,
    saturation: PredictSaturation = 1.0,
    batch_size: PredictBatchSize = 8,
    io_workers: PredictIoWorkers = 2,
    threads: PredictThreads = None,
    device: PredictDevice = "auto",
    precision: Precision = "auto",
    size: PredictSize = None,
    fmt: PredictFmt = None,
    depth: common.DepthOpt = None,
    quality: common.QualityOpt = None,
    keep_profile: common.KeepProfile = False,
    strip: common.Strip = False,
    skip_existing: common.SkipExisting = False,
    hint: PredictHint = None,
    hints: PredictHints = None,
    palette: PredictPalette = None,
    hint_strength: PredictHintStrength = None,
    hint_spread: PredictHintSpread = None,
    suggest: PredictSuggest = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Recolour images: predict a/b from each image's lightness, keep its L and size.

    Writes recolored/<name> (or -o) and prints each written path on stdout. Hints and a
    palette steer the colours (see README, "Guided recolouring"). Outputs are sRGB and embed its
    profile (--keep-profile: the input's), keep the input's EXIF and XMP (--strip drops them)
    and its depth (16-bit png/tiff stay 16-bit).
    """
    from .. import shard

    # under torchrun, what is about the whole run (usage, weights) is said once; an input's
    # failure by the rank that meets it (echo again once the model is loaded)
    tool = Tool("predict", quiet, debug, ranked=True)
    with shard.together():  # under torchrun, no rank's exit cuts the others short
        # closed: refused before any work; -o - writes the image there, --suggest its colours
        tool.text_stdout(
            SUGGEST_PRINTS if suggest else "use -o FILE" if output == "-" else PATHS_GO_THERE
        )
        check_precision(tool, device, precision)
        tool.finite(temperature=temperature or 0.0, saturation=saturation)  # (None: not given)
        args, everything, roots, guides = _predict_inputs(tool, inputs, hints, palette)
        pathopts.single_outputs(tool, {}, [*everything, *guides], stdout=True)  # paths: >> input
        router, ext, paths, refused = None, None, everything, []
        if suggest:  # what shapes a written image only was ignored, unsaid (-o refused)
            given = {"-o": output is not None, "-f/--format": fmt is not None,
                     "--depth": depth is not None, "--quality": quality is not None,
                     "--keep-profile": keep_profile, "--strip": strip,
                     "--skip-existing": skip_existing, "--saturation": saturation != 1,
                     "-T/--temperature": temperature is not None}  # fmt: skip
            if drop := [flag for flag, on in given.items() if on]:
                tool.usage(f"--suggest prints colours and writes no image: drop {', '.join(drop)}")
        points = _suggest_points(tool, suggest or [])  # before any work, as other options
        if not suggest:
            router, ext, paths, refused = _predict_outputs(
                tool, everything, output, fmt, skip_existing, roots, depth, guides
            )
            _outside_hints(tool, router, output, hints)
        predictor = source = None
        # Hint files for no input: reported, the inputs still done.
        problems: list[RecolorError] = []
        guided = bool(hint or hints or palette)
        with tool.guard():
            from ..hintfiles import hint_source

            try:
                source, problems = hint_source(
                    hint or [], hints, palette, args, everything, hint_strength, hint_spread
                )
            except ValueError as e:
                tool.usage(str(e))
            # All outputs there already (--skip-existing): no model to load, unless hints or
            # -T must be checked against it (a rerun must not pass what the first run refused).
            if not (paths or suggest or guided or temperature is not None):
                _nothing_to_do(tool, weights, refused)
            steered = hint_strength is not None or hint_spread is not None
            asks = (guided, bool(palette), steered, bool(suggest), temperature is not None)
            loaded = _load_predictor(
                tool, weights, head, asks, threads, size=size, saturation=saturation,
                temperature=defaults.TEMPERATURE if temperature is None else temperature,
                device=device, precision=precision,
            )  # fmt: skip
            source.check_with(loaded.check_given)  # what a hint file holds: that file's error
            predictor = loaded
        if predictor is None or source is None:
            tool.exit()
        tool.echo = True
        _refuse(tool, refused)
        first_rank = shard.first_process()  # says what is about the whole list, once
        if first_rank:
            for problem in problems:
                tool.fail(problem)
        if suggest:
            if first_rank:
                _print_suggestions(tool, predictor, paths, points, source)
            tool.exit()
        if not paths:  # all done already
            tool.exit()
        options = {"depth": depth, "quality": quality, "keep_profile": keep_profile, "strip": strip}
        batching = (batch_size, io_workers)
        _predict_all(tool, predictor, router, paths, roots, batching, source, ext, options)
        tool.exit()


def _load_predictor(
    tool: Tool,
    weights: Path | None,
    head: str | None,
    asks: tuple[bool, ...],
    threads: int | None = None,
    **settings,
):
    """The model of ``weights`` (``Predictor.load`` with ``settings``) on ``threads`` CPU
    threads (as train's --threads; by default torch's, the cores, or fewer where the cgroup's
    CPU quota allows fewer); what ``asks`` of it (hints, a palette, steering options,
    --suggest, -T) and it cannot follow is a usage error, the user's to change."""
    import torch

    from ..predict import Predictor
    from ..process import usable_cores

    threads = threads or min(torch.get_num_threads(), usable_cores())  # (a container's quota)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    guided, palette, steered, suggest, tempered = asks
    loaded = Predictor.load(weights, head, "; use --head {head} or other weights", **settings)
    fix = "--head cls" if weights is None else "a cls checkpoint (-w)"  # (--head cls: refused)
    try:
        loaded.check_hints(guided, palette=palette, steered=steered, fix=fix)
        if suggest:
            loaded.check_suggest(fix)
    except RecolorError as e:
        tool.usage(e.reason)
    if tempered and loaded.model.config.head != "cls":  # it was ignored, unsaid
        tool.usage("-T/--temperature is the cls head's annealed mean; the reg head predicts a/b "
                   f"directly: drop it or use {fix}")  # fmt: skip
    return loaded


def _outside_hints(tool: Tool, router, output: str | None, hints: str | None) -> None:
    """A usage error for an output (folder or file) in the ``--hints`` folder: a rerun would
    read the outputs as hint files (a PNG output is a hint layer's format)."""
    target = router.directory or (router.file and router.file.parent)
    if target is None or hints is None or not os.path.isdir(hints):
        return
    folder, there = os.path.realpath(target), os.path.realpath(hints)
    if os.path.commonpath([folder, there]) == there:
        given = (
            printable(output)
            if output is not None
            else f"{printable(router.directory)}/ (the default)"
        )
        tool.usage(f"-o {given}: inside the --hints folder, where outputs would be read as hint "
                   "files")  # fmt: skip


def _nothing_to_do(tool: Tool, weights: Path | None, refused: list) -> None:
    """End a run whose outputs are all there: no model loaded, but a missing ``--weights`` file
    is still named, and the refused inputs said."""
    if weights is not None:  # checked as loading them would check them, short of loading
        from ..fileio import check_regular, os_reason

        check_regular(weights)
        try:
            open(weights, "rb").close()  # noqa: SIM115 - readable?
        except OSError as e:
            raise RecolorError(os_reason(e), weights) from None
    _refuse(tool, refused)
    tool.exit()


def _refuse(tool: Tool, refused: list[tuple[str, RecolorError]]) -> None:
    """Say why this rank's inputs whose output is another's too are not done (once the run is
    sure to go on: after usage errors and the model's loading)."""
    for path, clash in refused:
        tool.fail(clash, path, always=True)


def _predict_inputs(tool: Tool, inputs, hints: str | None, palette: str | None):
    """(args, inputs, input roots, files the guidance reads) of a predict run: the command
    line's inputs expanded, less the hint layers and palette image found among them."""
    from ..hintfiles import files_read
    from ..inputs import expand_inputs, input_roots, leave_out

    args = tool.stdin_inputs(inputs)
    # an input found below an input folder keeps its path there: out/a/b.jpg
    everything, roots = expand_inputs(args), input_roots(args)
    if hints is not None and hints.strip() and os.path.isdir(hints):
        everything = leave_out(everything, roots, hints)  # hint layers are no inputs
    guides = files_read(palette, hints)  # never written over, nor stdin's file that one
    guides += ["-"] * (palette == "-" or hints == "-")  # reads (`-o pal.png < pal.png`)
    # nor a palette image or hint file found in an input folder (named, it is one); a hint
    # folder's files are gone already where it lies inside an input folder, and where it is
    # one (or above one), its images are inputs and its JSON files their hints
    hint_dir = hints is not None and os.path.isdir(hints)
    own = {os.path.realpath(g) for g in files_read(palette, None if hint_dir else hints)}
    if own:  # (a NUL in a name from a list: realpath's ValueError; that input's own line later)
        named = set(args)  # a set: 20,000 names tested against a list took 4 s
        everything = [p for p in everything
                      if p in named or "\0" in p or os.path.realpath(p) not in own]  # fmt: skip
    pathopts.stdin_file(tool, "--palette", palette, args)
    if hints == "-" and ("-" in args or palette == "-" or sys.stdin.isatty()):
        tool.usage("--hints - reads a hint file from stdin: not a terminal, not an input, "
                   "and not --palette -")  # fmt: skip
    from ..shard import rank_and_size

    for flag, value in (("--hints", hints), ("--palette", palette)):
        if value == "-" and rank_and_size()[1] > 1:  # one rank got it, the others nothing
            tool.usage(f"{flag} - under torchrun: every process needs it, and stdin is read "
                       "once; give a file")  # fmt: skip
    return args, everything, roots, guides


def _predict_outputs(
    tool: Tool,
    paths: list[str],
    output,
    fmt,
    skip_existing: bool,
    roots,
    depth: int | None,
    keep: list[str],
):
    """(router, --format's extension or None, this process's inputs still to do, its inputs
    refused with the error to say, once the run is sure to go on) for predict; ``keep``: the
    files guidance reads (palette, hints), never written over either."""
    from .. import shard
    from ..imagehead import IMAGE_EXTS
    from ..inputs import input_name

    in_place = pathopts.written_in_place(output)
    output = pathopts.image_output(output)  # -o out, -o results.v2: out/, results.v2/
    ext = pathopts.format_ext(tool, fmt, output)  # (a device or FIFO's name chooses nothing)

    def suffix(name: str) -> str:  # the input's format (and spelling: .JPG) unless --format
        own = Path(name).suffix
        return ext or (own if own.lower() in IMAGE_EXTS else ".png")

    if depth == 16:  # one format the user chose (-o FILE, stdout, --format), or the inputs'
        chosen = ext is not None or output is not None and not output.endswith("/")
        chosen = chosen and not (in_place and ext is None)  # in place: the input's format
        exts = (
            [pathopts.file_suffix(output) or ext or ".png"]
            if chosen
            else [suffix(input_name(p, roots)) for p in paths]
        )
        if not chosen and not shard.first_process():
            exts = []  # under torchrun, the note about the whole list comes once
        pathopts.check_depth(tool, depth, exts, chosen)
    router = tool.outputs(
        output, paths, suffix, count=len(paths), many_per_file=False, default="recolored/",
        skip_existing=skip_existing, keep=keep,
    )  # fmt: skip
    if router.to_stdout:
        tool.binary_stdout()  # refused on a terminal, before any work
    # the whole list, before the shares: each rank guards every input (with its share alone,
    # one wrote another rank's input a.png with a.jpg's output)
    paths = router.without_own(paths, roots)
    clashes = {}
    if shard.rank_and_size()[1] > 1:  # one process refuses them as it writes (Outputs.write)
        clashes = router.clashes(paths, [input_name(p, roots) for p in paths])
    # under torchrun: this rank's share of the whole list
    mine = list(zip(*shard.this_rank(range(len(paths)), paths), strict=True))
    refused = [(p, clashes[i]) for i, p in mine if i in clashes]
    paths = [p for i, p in mine if i not in clashes]
    paths = [p for p in paths if not router.skip(input_name(p, roots))]
    return router, ext, paths, refused


def _predict_all(tool: Tool, predictor, router, paths, roots, batching, hints, ext, options):
    """Recolour ``paths`` (``batching``: batch size, I/O threads) and write each through
    ``router``, named by its path below the input folders ``roots``, with its source's profile,
    depth and metadata; print each written path."""
    import numpy as np

    from ..inputs import input_name
    from ..predict import BATCH_PIXELS
    from ..writeback import Writeback

    # the encoder rounds to the depth; None: each source's own (output_depth's default), but
    # 16 bits where --keep-profile converts afterwards (8-bit samples would be rounded twice)
    depth = options["depth"] or (16 if options["keep_profile"] else None)
    dtype = None if depth is None else np.uint8 if depth == 8 else np.uint16
    batch_size, io_workers = batching
    # Encoded on io_workers threads and written, in order, by one writer thread; stdout (one
    # image) is written in turn. About one batch's outputs wait there, to bound memory.
    writers = 0 if router.to_stdout else io_workers
    with tool.opened(router) as out, Writeback(writers, batch_size, BATCH_PIXELS) as writes:
        found = predictor.predict_files(paths, batch_size, hints, dtype, io_workers)
        for path, rgb, source in tool.progress(found, len(paths), paths=not router.to_stdout):
            name = input_name(path, roots)
            dest = out.path(name)
            if isinstance(rgb, RecolorError):
                writes.submit(None, functools.partial(_write_one, tool, out, path, rgb, None, None))
                continue
            own = ".png" if dest is None else out.suffix(name)  # stdout: png; in place: input's
            encode = pathopts.image_encoder(rgb, dest, ext or own, source, **options)
            write = functools.partial(_write_one, tool, out, path, None, name, dest)
            writes.submit(encode, write, weight=rgb.shape[0] * rgb.shape[1])


def _write_one(tool: Tool, out, path: str, error, name, dest, encoded) -> None:
    """Write one output (``encoded()``: its bytes) and print its path, unless it is a device or
    FIFO (``-o /dev/stdout``: the path would follow the image); or report ``error``, the input's
    failure. On the writer thread of :class:`Writeback`, in input order."""
    from ..fileio import write_all, writes_in_place
    from ..outputs import print_path

    with tool.guard(path):  # a full stdout: DiskFull naming <stdout>, not the input
        if error is not None:
            raise error
        written = out.write(name, lambda f: write_all(f, encoded()))
        if written is not None and not writes_in_place(dest):
            print_path(tool.text_stdout(), dest)


def _suggest_points(tool: Tool, where: list[str]) -> list[tuple[str, str]]:
    """``--suggest X,Y`` values as (x, y) pairs; one that does not parse is a usage error."""
    from ..hints import parse_points

    points = []
    for w in where:
        xy = w.split(",")  # ('1,1,1' said "coordinate '1,1' is not a number")
        try:
            if len(xy) != 2:
                raise ValueError("not X,Y")
            parse_points([(xy[0], xy[1])])
        except ValueError as e:
            tool.usage(f"--suggest {w!r}: {e}")
        points.append((xy[0], xy[1]))
    return points


def _print_suggestions(tool: Tool, predictor, paths: list[str], points: list, source) -> None:
    """``--suggest X,Y`` (repeatable): one line ``PATH<TAB>X,Y<TAB>#rrggbb<TAB>probability`` per
    colour, for each point in the order given; the network runs once per image."""
    import math

    from ..imageio import read_rgb
    from ..outputs import write_stdout

    for path in paths:
        with tool.guard(path):
            found = predictor.suggest_points(read_rgb(path), points, hints=source(path))
            text = "".join(  # rounded down: shares rounded each to the nearest summed to 1.0001
                f"{path}\t{x},{y}\t{hexc}\t{math.floor(p * 1e4) / 1e4:.4f}\n"
                for (x, y), colours in zip(points, found, strict=True)
                for hexc, p in colours
            )
            write_stdout(tool.text_stdout(), lambda f, text=text: f.write(text))
