"""The ``recolor`` command: thin typer wrappers that parse, call one library function, report.

Conventions shared by every tool (see README): inputs are files, directories, globs or ``-``;
binary output goes to ``-o FILE|DIR`` or to stdout when it is not a terminal; one line per failed
input on stderr; exit 0 ok, 1 some inputs failed, 2 usage, 130 Ctrl-C. Heavy modules (numba,
torch) are imported inside the commands that need them, so the others start fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO, Literal, Optional

import typer

from . import __version__, defaults, process
from .errors import DiskFull, ExitCode, RecolorError, printable, set_tool

app = typer.Typer(
    name="recolor",
    help="Recolor images in CIELAB space: small tools that pass Lab records through pipes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_DEBUG = bool(os.environ.get("RECOLOR_DEBUG"))

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
Output = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional at runtime on 3.11
    typer.Option("--output", "-o", help="Output file, or directory (existing, or ending in /)."),
]
# -- archive I/O (issue 18): output depth, colour profile and metadata options --
DepthOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--depth", help="Bits per sample, 8 or 16 (png, tiff); default: the input's."),
]
KeepProfile = Annotated[
    bool,
    typer.Option("--keep-profile", help="Convert back to the input's ICC profile (default: sRGB)."),
]
Strip = Annotated[bool, typer.Option("--strip", help="Drop the input's EXIF and XMP.")]
SkipExisting = Annotated[
    bool,
    typer.Option("--skip-existing", help="Skip inputs whose output file exists (for reruns)."),
]
Inputs = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(
        help="Files, directories, globs; '-' or nothing reads stdin.", show_default=False
    ),
]


class Tool:
    """One run of one tool: reports failed inputs and decides the exit code."""

    def __init__(self, name: str, quiet: bool = False, debug: bool = False) -> None:
        global _DEBUG
        _DEBUG = _DEBUG or debug
        self.name = name
        self.quiet = quiet
        self.failures = 0
        set_tool(name)

    def fail(self, err: RecolorError | str, path: str | Path | None = None) -> None:
        """Print ``recolor <tool>: <file>: <reason>`` on stderr and count the failure."""
        self.failures += 1
        if isinstance(err, RecolorError):
            path = err.path if err.path is not None else path
            err = err.reason
        where = f"{printable(str(path))}: " if path is not None else ""
        print(f"recolor {self.name}: {where}{err}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A message for the user on stderr, unless --quiet."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def guard(self, path: str | Path | None = None) -> Iterator[None]:
        """Report an expected failure of one input and go on with the next."""
        try:
            yield
        except DiskFull as e:  # every later output would fail alike: stop here
            self.fail(e, path)
            self.exit()
        except RecolorError as e:
            self.fail(e, path)
        except ValueError as e:  # public numeric APIs reject bad values with ValueError
            self.fail(str(e), path)
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            from .imageio import os_reason

            self.fail(os_reason(e), getattr(e, "filename", None) or path)

    def progress(self, items: Iterable, total: int | None = None, unit: str = "img") -> Iterable:
        """Wrap ``items`` in a progress bar on stderr, only when stderr is a terminal."""
        if self.quiet or not sys.stderr.isatty():
            return items
        from tqdm import tqdm

        return tqdm(items, total=total, unit=unit, desc=self.name, file=sys.stderr, leave=False)

    def usage(self, message: str) -> None:
        """Stop with a usage error: one line on stderr, exit 2."""
        print(f"recolor {self.name}: {message}", file=sys.stderr, flush=True)
        raise typer.Exit(ExitCode.USAGE)

    def exit(self) -> None:
        """End the command with 0, or 1 when some inputs failed."""
        raise typer.Exit(ExitCode.FAILED if self.failures else ExitCode.OK)

    def stdin_inputs(self, inputs: list[str] | None) -> list[str]:
        """Inputs for a tool that reads streams: nothing means stdin, unless it is a terminal."""
        if inputs:
            return inputs
        if sys.stdin.isatty():
            self.usage("no input given and stdin is a terminal")
        return ["-"]

    def binary_stdout(self) -> BinaryIO:
        """stdout for binary data; refused on a terminal."""
        if sys.stdout.isatty():
            self.usage("refusing to write binary data to a terminal; use -o or a pipe")
        return sys.stdout.buffer

    def outputs(self, output: str | None, inputs: list[str], suffix, count: int = 0, **kw):
        """The output router of this run (see :mod:`recolor_tools.outputs`); ``count`` inputs
        known in advance that cannot all fit the output are a usage error (exit 2)."""
        from .outputs import Outputs, OutputUsage

        router = Outputs(output, inputs, suffix, self.binary_stdout, **kw)
        try:
            router.check_count(count)
        except OutputUsage as e:
            self.usage(e.reason)
        return router

    @contextlib.contextmanager
    def opened(self, router) -> Iterator:
        """Enter an output router; a failure to open or to finish its output (a full disk when
        a stream file is closed) is reported and ends the run."""
        where = router.file or router.directory
        entered = False
        with self.guard(where):
            router.__enter__()
            entered = True
        if not entered:
            self.exit()
        try:
            yield router
        except BaseException:
            router.__exit__(*sys.exc_info())
            raise
        with self.guard(where):
            router.__exit__(None, None, None)


def _version(value: bool) -> None:
    if value:
        print(f"recolor {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Recolor images in CIELAB space."""


@app.command("to-lab")
def to_lab(
    inputs: Inputs = None,
    output: Output = None,
    max_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-size", min=1, help="Shrink so the longer side is at most this."),
    ] = None,
    l_only: Annotated[bool, typer.Option("--l-only", help="Keep only the L channel.")] = False,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert images (jpg, png, tiff, webp, bmp) to Lab records."""
    from .imageio import expand_inputs
    from .records import image_record, write_record

    tool = Tool("to-lab", quiet, debug)
    paths = expand_inputs(tool.stdin_inputs(inputs))
    router = tool.outputs(output, paths, ".lab", many_per_file=True, skip_existing=skip_existing)
    with tool.opened(router) as out:
        for path in tool.progress(paths, len(paths)):
            if out.skip(_input_name(path)):
                continue
            with tool.guard(path):
                rec = image_record(path, max_size, l_only)
                out.write(rec.name, lambda f, rec=rec: write_record(f, rec))
    tool.exit()


def _input_name(path: str) -> str:
    """The name an input file's outputs are named after (``-`` is ``stdin``)."""
    return "stdin" if path == "-" else Path(path).name


def _image_writer(rgb, dest: Path | None, ext: str, source=None, **options):
    """A writer of ``rgb`` encoded for ``dest`` (its extension; ``ext`` for stdout or none), with
    the profile and metadata of ``source`` (an ImageMeta; ``options`` as for
    :func:`recolor_tools.imagemeta.encode_output`)."""
    from .imagemeta import encode_output

    ext = dest.suffix if dest is not None and dest.suffix else ext
    return lambda f: f.write(encode_output(rgb, ext, source, **options))


@app.command("from-lab")
def from_lab(
    inputs: Inputs = None,
    output: Output = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Image format for stdout and directories.")
    ] = "png",
    depth: DepthOpt = None,
    keep_profile: KeepProfile = False,
    strip: Strip = False,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert Lab records to RGB images; out-of-gamut colours are clamped.

    Images are sRGB and embed its profile, with the source's EXIF and XMP (from to-lab's
    records), at the source's depth.
    """
    from .color import lab_to_rgb
    from .imagemeta import ImageMeta
    from .records import iter_lab_sources

    tool = Tool("from-lab", quiet, debug)
    if depth not in (None, 8, 16):
        tool.usage("--depth must be 8 or 16")
    options = {"depth": depth, "keep_profile": keep_profile, "strip": strip}
    paths = tool.stdin_inputs(inputs)
    ext = "." + fmt.lower().lstrip(".")
    router = tool.outputs(output, paths, ext, many_per_file=False, skip_existing=skip_existing)
    with tool.opened(router) as out:
        for rec in tool.progress(iter_lab_sources(paths, tool.fail)):
            if out.skip(rec.name):
                continue
            with tool.guard(rec.name):
                rgb = lab_to_rgb(rec.lab(gray_if_l_only=True))
                src = ImageMeta.from_json(rec.source)
                out.write(rec.name, _image_writer(rgb, out.path(rec.name), ext, src, **options))
    tool.exit()


ClassesOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--classes", help="Class set file (npz); default: the sRGB gamut grid."),
]
GridOpt = Annotated[float, typer.Option("--grid", min=1, help="Gamut class grid (a/b units).")]
SigmaOpt = Annotated[float, typer.Option("--sigma", min=0, help="Gaussian width, a/b units.")]


def _class_set(tool: Tool, classes: Path | None, grid: float):
    """(classes, grid) from --classes or --grid; a bad class file stops the command (exit 1)."""
    from . import quant

    if classes is None:
        return quant.gamut_classes(grid), float(grid)
    with tool.guard(classes):
        return quant.load_classes(classes)
    tool.exit()


@app.command("quantize")
def quantize(
    inputs: Inputs = None,
    output: Output = None,
    classes: ClassesOpt = None,
    grid: GridOpt = 8,
    k: Annotated[int, typer.Option("-k", min=1, help="Nearest classes per pixel.")] = defaults.K,
    sigma: SigmaOpt = defaults.SIGMA,
    hard: Annotated[bool, typer.Option("--hard", help="Only the nearest class (k = 1).")] = False,
    preview: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--preview", help="Also draw each image in class colours: FILE or DIR/."),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Soft-encode Lab records (or images) over colour classes: training-target records.

    Each record gets arrays idx (int16, H x W x k, nearest class first) and w (float32, the
    Gaussian weights, summing to 1); --hard writes only idx (H x W x 1). The number of classes
    each image uses goes to stderr.
    """
    from . import quant
    from .records import iter_lab_sources, write_record

    tool = Tool("quantize", quiet, debug)
    paths = tool.stdin_inputs(inputs)
    if preview == "-":
        tool.usage("--preview needs a FILE or DIR/, not stdout")
    cls, grid = _class_set(tool, classes, grid)
    router = tool.outputs(output, paths, ".target", many_per_file=True)
    shown = (
        None
        if preview is None
        else tool.outputs(preview, paths, ".png", many_per_file=False, flag="--preview")
    )
    with tool.opened(router) as out, contextlib.ExitStack() as stack:
        if shown is not None:
            stack.enter_context(tool.opened(shown))
        for rec in tool.progress(iter_lab_sources(paths, tool.fail)):
            with tool.guard(rec.name):
                target = quant.encode_record(rec, cls, grid, k, sigma, hard)
                out.write(rec.name, lambda f, t=target: write_record(f, t))
                tool.note(f"{rec.name}: {target.meta['classes_used']} of {len(cls)} classes")
                if shown is not None:
                    rgb = quant.preview_rgb(rec.lab(), cls, target.arrays["idx"])
                    shown.write(rec.name, _image_writer(rgb, shown.path(rec.name), ".png"))
    tool.exit()


@app.command("rebalance-stats")
def rebalance_stats(
    inputs: Inputs = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Stats file (npz) to write."),
    ] = None,
    lam: Annotated[
        float, typer.Option("--lambda", min=0, max=1, help="Mix with uniform (Zhang: 0.5).")
    ] = defaults.LAMBDA,
    sigma: SigmaOpt = defaults.SIGMA,
    classes: ClassesOpt = None,
    grid: GridOpt = 8,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Threads reading image files.")
    ] = 2,
    plot: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--plot", help="Also draw log p(a,b) and the weights to this image."),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Count colour classes over images or Lab records; write class-rebalancing stats.

    The stats (counts, smoothed prior, weights w ∝ ((1-λ)p + λ/Q)^-1 with Σ p·w = 1) go to -o
    FILE and a summary to stderr. Without -o nothing is written and the summary goes to stdout.
    Image files are read by --workers threads; anything else is read as a record stream.
    """
    from .imageio import IMAGE_EXTS, expand_inputs
    from .rebalance import PriorAccumulator, plot_stats, summary
    from .records import iter_lab_sources

    tool = Tool("rebalance-stats", quiet, debug)
    paths = expand_inputs(tool.stdin_inputs(inputs))
    acc = PriorAccumulator(*_class_set(tool, classes, grid))
    images = [p for p in paths if p != "-" and Path(p).suffix.lower() in IMAGE_EXTS]
    acc.add_sources(tool.progress(images, len(images)), workers, on_error=tool.fail)
    records = iter_lab_sources([p for p in paths if p not in images], tool.fail)
    acc.add_sources(tool.progress(records), on_error=tool.fail)
    if not acc.n_images and tool.failures:
        tool.exit()  # every input failed and was reported: nothing to count
    with tool.guard(output):
        stats = acc.finish(lam, sigma)
        if output is not None:
            from .outputs import check_not_input

            check_not_input(output, paths)
            stats.save(output)
        if plot is not None:
            plot_stats(stats, plot)
        if output is None:
            sys.stdout.write(summary(stats))
        else:
            tool.note(summary(stats).rstrip())
    tool.exit()


@app.command("compare")
def compare(
    pred: Annotated[
        Path, typer.Argument(metavar="PRED", help="Predicted image, or a directory of them.")
    ],
    truth: Annotated[
        Path, typer.Argument(metavar="TRUTH", help="Ground truth image, or a directory of them.")
    ],
    stats: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--stats", help="rebalance-stats.npz: adds the class-rebalanced AuC."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write one JSON object.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Write CSV, a last row 'mean'.")] = False,
    montage: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--montage", help="Also draw gray input | prediction | truth to this image."),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Write the report to this file, not stdout."),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score predictions against ground truth: PSNR, SSIM, ab RMSE, AuC, colourfulness.

    Two directories are matched by file name without extension.

    PSNR and SSIM: on RGB. AuC: a/b error within 0..150, in percent. Mean: over the images.

    Identical images have infinite PSNR: inf in tables and CSV, null in JSON.
    """
    from . import metrics
    from .color import to_uint8
    from .imageio import read_rgb

    tool = Tool("compare", quiet, debug)
    if as_json and as_csv:
        tool.usage("--json and --csv exclude each other")
    rebal = _load_stats(tool, stats) if stats is not None else None
    pairs = _compare_pairs(tool, pred, truth)
    results, rows = [], []
    for name, p, t in tool.progress(pairs, len(pairs)):
        with tool.guard(p):
            p_u8, t_u8 = to_uint8(read_rgb(p)), to_uint8(read_rgb(t))
            results.append((name, metrics.compare_pair(p_u8, t_u8, rebal)))
            if montage is not None:
                rows.append(metrics.montage_row(name, p_u8, t_u8))
    if rows:
        with tool.guard(montage):
            metrics.montage(rows, montage)
    fmt = metrics.format_json if as_json else metrics.format_csv if as_csv else None
    if output is not None:
        report = (fmt or metrics.format_text)(results).encode()
        inputs = [str(f) for _, p, t in pairs for f in (p, t)]
        router = tool.outputs(str(output), inputs, ".txt", many_per_file=False)
        with tool.opened(router) as out, tool.guard(output):
            out.write("report", lambda f: f.write(report))
    elif fmt is None and sys.stdout.isatty():
        _print_rich_table(*metrics.report_cells(results))
    else:
        sys.stdout.write((fmt or metrics.format_text)(results))
    tool.exit()


def _compare_pairs(tool: Tool, pred: Path, truth: Path) -> list[tuple[str, Path, Path]]:
    """(name, pred, truth) to compare: the two files, or two directories matched by name."""
    from .imageio import expand_inputs
    from .pairing import pair_by_stem

    if pred.is_dir() != truth.is_dir():
        tool.usage("PRED and TRUTH must both be files or both be directories")
    if not pred.is_dir():
        return [(truth.stem, pred, truth)]
    files = [expand_inputs([str(d)]) for d in (pred, truth)]
    pairs, problems = pair_by_stem(*files, pred, truth)
    for err in problems:
        tool.fail(err)
    return pairs


def _load_stats(tool: Tool, path: Path):
    """The rebalancing stats for --stats; a bad file stops the command (exit 1)."""
    from .rebalance import RebalanceStats

    with tool.guard(path):
        return RebalanceStats.load(path)
    tool.exit()


def _print_rich_table(head: list[str], rows: list[list[str]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Two-line titles keep the table within 80 columns.
    table = Table(*(h.replace(" ", "\n", 1) for h in head), box=box.SIMPLE_HEAD)
    for col in table.columns[1:]:
        col.justify = "right"
    for row in rows[:-1]:
        table.add_row(*row)
    if rows:  # the mean row, set apart
        table.add_section()
        table.add_row(*rows[-1], style="bold")
    Console().print(table)


@app.command("predict")
def predict(
    inputs: Inputs = None,
    head: Annotated[
        Optional[Literal["cls", "reg"]],  # noqa: UP045
        typer.Option(
            "--head",
            help="cls: colour classes (vivid); reg: regression (muted). "
            "Default: the --weights checkpoint's head, else cls.",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--weights", "-w", help="Checkpoint (default: the shipped weights for --head)."
        ),
    ] = None,
    output: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--output",
            "-o",
            help="Directory (default recolored/); a file with an image extension for one input; "
            "'-' for stdout.",
            show_default=False,
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature",
            "-T",
            min=0.0,
            help="Annealed mean (cls): lower is more vivid, 0 the mode.",
        ),
    ] = defaults.TEMPERATURE,
    saturation: Annotated[
        float, typer.Option("--saturation", min=0.0, help="Scale predicted a/b: 0 gray, >1 more.")
    ] = 1.0,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            "-b",
            min=1,
            help="Images read at a time; those of one working size share a forward pass.",
        ),
    ] = 8,
    device: Annotated[
        Literal["auto", "cpu", "cuda"], typer.Option("--device", help="Where the network runs.")
    ] = "auto",
    size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--size",
            min=8,
            help="Working shorter side in pixels (default: 1.25 x the training size).",
        ),
    ] = None,
    fmt: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--format", "-f", help="Output format: png, jpg, ... (default: the input's)."),
    ] = None,
    depth: DepthOpt = None,
    keep_profile: KeepProfile = False,
    strip: Strip = False,
    skip_existing: SkipExisting = False,
    hint: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--hint",
            help="X,Y=#RRGGBB: the colour at pixel X,Y (or 50%,20%); repeatable. cls only.",
            show_default=False,
        ),
    ] = None,
    hints: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--hints",
            help="Hint file (JSON points/palette, or PNG layer: alpha > 0 pixels are hints), "
            "or a directory of them matched to the inputs by path without extension.",
            show_default=False,
        ),
    ] = None,
    palette: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--palette",
            help="Colour scheme to follow: an image, or '#hex,#hex:weight,...'.",
            show_default=False,
        ),
    ] = None,
    suggest: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--suggest",
            help="X,Y: print the model's 5 likeliest colours there (hex, probability); "
            "write nothing.",
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Recolour images: predict a/b from each image's lightness, keep its L and size.

    Writes recolored/<name> (or -o) and prints each written path on stdout. Hints and a
    palette steer the colours (see README, "Guided recolouring"). Outputs are sRGB and embed its
    profile (--keep-profile: the input's), keep the input's EXIF and XMP (--strip drops them)
    and its depth (16-bit png/tiff stay 16-bit).
    """
    from .imageio import expand_inputs

    tool = Tool("predict", quiet, debug)
    if depth not in (None, 8, 16):
        tool.usage("--depth must be 8 or 16")
    args = tool.stdin_inputs(inputs)
    everything = expand_inputs(args)
    router, ext, paths = None, None, everything
    if suggest is None:
        router, ext, paths = _predict_outputs(tool, everything, output, fmt, skip_existing)
    predictor = source = None
    problems: list[RecolorError] = []  # hint files for no input: reported, the inputs still done
    with tool.guard():
        from .hints import hint_source

        try:
            source, problems = hint_source(hint or [], hints, palette, args, everything)
        except ValueError as e:
            tool.usage(str(e))
        from .predict import Predictor

        loaded = Predictor.load(
            weights, head, size=size, temperature=temperature, saturation=saturation, device=device
        )
        loaded.check_hints(bool(hint or hints or palette))
        predictor = loaded
    if predictor is None or source is None:
        tool.exit()
    if suggest is not None:
        _print_suggestions(tool, predictor, paths, suggest, source)
        tool.exit()
    for problem in problems:
        tool.fail(problem)
    options = {"depth": depth, "keep_profile": keep_profile, "strip": strip}
    _predict_all(tool, predictor, router, paths, batch_size, source, ext, options)
    tool.exit()


def _predict_outputs(tool: Tool, paths: list[str], output, fmt, skip_existing: bool):
    """(router, --format's extension or None, this process's inputs still to do) for predict."""
    from . import shard
    from .imageio import IMAGE_EXTS

    ext = None if fmt is None else "." + fmt.lower().lstrip(".")
    if ext is not None and ext not in IMAGE_EXTS:
        tool.usage(f"unknown --format {fmt!r} (use one of {', '.join(IMAGE_EXTS)})")
    if output not in (None, "-") and Path(output).suffix.lower() not in IMAGE_EXTS:
        output = output.rstrip("/") + "/"  # without an image extension, -o names a directory

    def suffix(name: str) -> str:  # the input's format unless --format
        own = Path(name).suffix.lower()
        return ext or (own if own in IMAGE_EXTS else ".png")

    router = tool.outputs(
        output, paths, suffix, count=len(paths), many_per_file=False, default="recolored/",
        skip_existing=skip_existing,
    )  # fmt: skip
    if router.to_stdout:
        tool.binary_stdout()  # refused on a terminal, before any work
    (paths,) = shard.this_rank(paths)  # under torchrun: this rank's share of the whole list
    paths = [p for p in paths if not router.skip(_input_name(p))]
    if not paths:
        tool.exit()  # all done already: no model to load
    return router, ext, paths


def _predict_all(tool: Tool, predictor, router, paths, batch_size, hints, ext, options) -> None:
    """Recolour ``paths`` and write each through ``router`` with its source's profile, depth and
    metadata; print each written path."""
    import numpy as np

    from .imageio import read_rgb
    from .imagemeta import ImageMeta

    sources: dict[str, list[ImageMeta]] = {}  # per path, in reading order (a path may repeat)

    def read(path: str):
        meta = ImageMeta()
        sources.setdefault(path, []).append(meta)
        return read_rgb(path, meta)

    dtype = np.uint8 if options["depth"] == 8 else np.uint16  # the encoder rounds to the depth
    with tool.opened(router) as out:
        found = predictor.predict_files(paths, batch_size, hints, read=read, dtype=dtype)
        for path, rgb in tool.progress(found, len(paths)):
            source = sources[path].pop(0) if sources.get(path) else None
            with tool.guard(path):
                if isinstance(rgb, RecolorError):
                    raise rgb
                name = _input_name(path)
                dest = out.path(name)
                writer = _image_writer(rgb, dest, ext or ".png", source, **options)
                if out.write(name, writer) is not None:
                    print(dest, flush=True)


def _print_suggestions(tool: Tool, predictor, paths: list[str], where: str, source) -> None:
    """``--suggest X,Y``: one line ``PATH<TAB>X,Y<TAB>#rrggbb<TAB>probability`` per colour."""
    from .imageio import read_rgb

    x, sep, y = where.partition(",")
    if not sep:
        tool.usage(f"--suggest {where!r} is not X,Y")
    for path in paths:
        with tool.guard(path):
            for hexc, p in predictor.suggest(read_rgb(path), x, y, hints=source(path)):
                print(f"{path}\t{x},{y}\t{hexc}\t{p:.4f}", flush=True)


_PosInt = Optional[int]  # noqa: UP045 - typer needs Optional at runtime on 3.11


@app.command("train")
def train(
    data: Annotated[
        list[str], typer.Argument(help="Training images: files, directories, globs, .txt lists.")
    ],
    head: Annotated[
        Literal["cls", "reg"],
        typer.Option("--head", help="cls: colour classes, rebalanced; reg: a/b regression."),
    ] = "cls",
    val: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--val", help="Validation images (repeatable); none: no val metrics."),
    ] = None,
    stats: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--stats", help="Rebalancing stats (cls); default: computed from DATA."),
    ] = None,
    classes: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--classes", help="Class set file (cls); default: the sRGB gamut grid."),
    ] = None,
    grid: Annotated[float, typer.Option("--grid", min=1, help="Gamut class grid (cls).")] = 8,
    epochs: Annotated[_PosInt, typer.Option("--epochs", min=1, help="Default 10.")] = None,
    steps: Annotated[_PosInt, typer.Option("--steps", min=1, help="Instead of --epochs.")] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Images per step and process.")
    ] = 16,
    lr: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            "--lr", min=0, help="Adam learning rate [default: 1e-4; 3e-5 with --hints --init]."
        ),
    ] = None,
    schedule: Annotated[
        Literal["plateau", "cosine"],
        typer.Option("--schedule", help="plateau: halve lr after 10 flat evaluations."),
    ] = "plateau",
    size: Annotated[
        int, typer.Option("--size", min=8, help="Crop side (multiple of 8).")
    ] = defaults.TRAIN_SIZE,
    width: Annotated[
        _PosInt, typer.Option("--width", min=1, help="Model base channels (default 32).")
    ] = None,
    device: Annotated[
        Literal["auto", "cpu", "cuda"], typer.Option("--device", help="Where to train.")
    ] = "auto",
    precision: Annotated[
        Literal["auto", "fp32", "bf16", "fp16"],
        typer.Option("--precision", help="auto: bf16/fp16 mixed precision on CUDA, else fp32."),
    ] = "auto",
    workers: Annotated[
        _PosInt, typer.Option("--workers", "-j", min=0, help="Loader processes (0: inline).")
    ] = None,
    threads: Annotated[
        _PosInt, typer.Option("--threads", min=1, help="CPU threads (default: cores/processes).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds init, order and crops.")] = 0,
    eval_every: Annotated[
        _PosInt, typer.Option("--eval-every", min=1, help="Steps (default: each epoch).")
    ] = None,
    ckpt_every: Annotated[
        _PosInt, typer.Option("--ckpt-every", min=1, help="Steps (default: --eval-every).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for last.pt, metrics.jsonl, HEAD.pt.")
    ] = Path("runs/recolor"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    init: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--init", help="Fine-tune: start from these weights (their architecture)."),
    ] = None,
    hints: Annotated[
        bool,
        typer.Option(
            "--hints",
            help="The model takes colour hints, simulated from the truth; with --init of a "
            "model without them, it starts as that model.",
        ),
    ] = False,
    hint_lr: Annotated[
        float, typer.Option("--hint-lr", min=0, help="Learning rate of the hint layers.")
    ] = defaults.HINT_LR,
    freeze_bn: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option(
            "--freeze-bn/--no-freeze-bn",
            help="Keep BatchNorm statistics [default: on with --hints --init].",
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Train a model; prints the path of the final weights (OUT/HEAD.pt) on stdout.

    Writes OUT/last.pt (for --resume), OUT/metrics.jsonl and OUT/HEAD.pt.

    Several GPUs: torchrun --nproc_per_node N -m recolor_tools train ... (-b is per GPU).
    """
    tool = Tool("train", quiet, debug)
    with tool.guard():
        from .train import TrainConfig
        from .train import train as run_training

        try:  # TrainConfig checks the options: ValueError is a usage error
            cfg = TrainConfig(
                data=data, head=head, out=out, val=val or [], stats=stats, classes=classes,
                grid=grid, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr,
                schedule=schedule, size=size, width=width, device=device, workers=workers,
                threads=threads, seed=seed, eval_every=eval_every, ckpt_every=ckpt_every,
                resume=resume, init=init, precision=precision, quiet=quiet, hints=hints,
                hint_lr=hint_lr, freeze_bn=freeze_bn,
            )  # fmt: skip
        except ValueError as e:
            tool.usage(str(e))
        path = run_training(cfg)
        if os.environ.get("RANK", "0") == "0":  # one line, also under torchrun
            print(path, flush=True)
    tool.exit()


def main(argv: list[str] | None = None) -> int:
    """Run the ``recolor`` command and return its exit status.

    typer itself maps usage errors to 2 and Ctrl-C to 130; SIGTERM ends with 143 (both unwind,
    so temporary files are removed); a closed stdout pipe ends quietly with 1. What else reaches
    here is a bug, reported in one line (with a traceback under --debug).
    """
    args = sys.argv[1:] if argv is None else argv
    name = next((a for a in args if not a.startswith("-")), "")
    try:
        with process.exit_on_sigterm():
            try:
                with process.quiet_c_stderr(keep=_DEBUG or "--debug" in args):
                    app(args=argv, prog_name="recolor")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            else:
                code = ExitCode.OK
            return max(code, process.flush_stdout(f"recolor {name}"))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        process.silence_stdout()
        return ExitCode.FAILED
    except Exception as e:
        if _DEBUG:
            traceback.print_exc()
        print(
            f"recolor {name}: internal error: {type(e).__name__}: {e} (--debug shows a traceback)",
            file=sys.stderr,
        )
        return ExitCode.FAILED


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
