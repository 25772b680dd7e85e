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

from . import __version__, defaults
from .errors import ExitCode, RecolorError

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

    def fail(self, err: RecolorError | str, path: str | Path | None = None) -> None:
        """Print ``recolor <tool>: <file>: <reason>`` on stderr and count the failure."""
        self.failures += 1
        if isinstance(err, RecolorError):
            path = err.path if err.path is not None else path
            err = err.reason
        where = f"{path}: " if path is not None else ""
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


def _is_dir_target(output: str | Path | None) -> bool:
    """An output names a directory when it exists as one or ends with a slash."""
    return output is not None and (Path(output).is_dir() or str(output).endswith(("/", os.sep)))


def _check_not_input(out: Path, inputs: list[str]) -> None:
    for i in inputs:
        if i != "-" and Path(i).exists() and out.exists() and os.path.samefile(i, out):
            raise RecolorError("refusing to overwrite an input", out)


class RecordSink:
    """Where a tool's records go: stdout, one stream file, or one file per record in a directory."""

    def __init__(self, tool: Tool, output: str | None, inputs: list[str], suffix: str) -> None:
        self.per_file = _is_dir_target(output)
        self.tool, self.inputs, self.suffix = tool, inputs, suffix
        self.output = None if output is None else Path(output)
        self._stack = contextlib.ExitStack()
        self._stream: BinaryIO | None = None

    def __enter__(self) -> RecordSink:
        if self.output is None:
            self._stream = self.tool.binary_stdout()
        elif self.per_file:
            self.output.mkdir(parents=True, exist_ok=True)
        else:
            from .imageio import atomic_open

            _check_not_input(self.output, self.inputs)
            self._stream = self._stack.enter_context(atomic_open(self.output))
        return self

    def write(self, rec) -> None:  # rec: records.Record
        from .imageio import atomic_open
        from .records import write_record

        if self._stream is not None:
            write_record(self._stream, rec)
            return
        out = self.output / (Path(rec.name).stem + self.suffix)
        _check_not_input(out, self.inputs)
        with atomic_open(out) as f:
            write_record(f, rec)

    def __exit__(self, *exc) -> None:
        if self._stream is not None and self.output is None:
            self._stream.flush()
        self._stack.__exit__(*exc)


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
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert images (jpg, png, tiff, webp, bmp) to Lab records."""
    from .imageio import expand_inputs
    from .records import image_record

    tool = Tool("to-lab", quiet, debug)
    paths = expand_inputs(tool.stdin_inputs(inputs))
    with RecordSink(tool, output, paths, ".lab") as sink:
        for path in tool.progress(paths, len(paths)):
            with tool.guard(path):
                sink.write(image_record(path, max_size, l_only))
    tool.exit()


@app.command("from-lab")
def from_lab(
    inputs: Inputs = None,
    output: Output = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Image format for stdout and directories.")
    ] = "png",
    depth: Annotated[
        int, typer.Option("--depth", help="Bits per sample: 8, or 16 (png, tiff).")
    ] = 8,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert Lab records to RGB images; out-of-gamut colours are clamped."""
    from .color import lab_to_rgb
    from .imageio import atomic_write, encode_image
    from .records import iter_lab_sources

    tool = Tool("from-lab", quiet, debug)
    if depth not in (8, 16):
        tool.usage("--depth must be 8 or 16")
    paths = tool.stdin_inputs(inputs)
    per_file = _is_dir_target(output)
    stream = tool.binary_stdout() if output is None else None
    output = None if output is None else Path(output)
    if per_file:
        output.mkdir(parents=True, exist_ok=True)
    written = 0
    for rec in tool.progress(iter_lab_sources(paths, tool.fail)):
        with tool.guard(rec.name):
            rgb = lab_to_rgb(rec.lab(gray_if_l_only=True))
            if per_file:
                out = output / (Path(rec.name).stem + "." + fmt.lstrip("."))
                _check_not_input(out, paths)
                atomic_write(out, encode_image(rgb, out.suffix, depth))
            elif written:
                raise RecolorError("a second record, but the output holds one image; use -o DIR/")
            elif stream is not None:
                stream.write(encode_image(rgb, "." + fmt.lstrip("."), depth))
                stream.flush()
            else:
                _check_not_input(output, paths)
                atomic_write(output, encode_image(rgb, output.suffix or ".png", depth))
            written += 1
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
    from .imageio import write_image
    from .records import iter_lab_sources

    tool = Tool("quantize", quiet, debug)
    paths = tool.stdin_inputs(inputs)
    cls, grid = _class_set(tool, classes, grid)
    shown: set = set()
    with RecordSink(tool, output, paths, ".target") as sink:
        for rec in tool.progress(iter_lab_sources(paths, tool.fail)):
            with tool.guard(rec.name):
                target = quant.encode_record(rec, cls, grid, k, sigma, hard)
                sink.write(target)
                tool.note(f"{rec.name}: {target.meta['classes_used']} of {len(cls)} classes")
                if preview is not None:
                    out = _preview_path(preview, rec.name, shown, paths)
                    write_image(out, quant.preview_rgb(rec.lab(), cls, target.arrays["idx"]))
    tool.exit()


def _preview_path(preview: str, name: str, shown: set, inputs: list[str]) -> Path:
    """--preview FILE for the first image, or DIR/<name>.png for each."""
    if _is_dir_target(preview):
        Path(preview).mkdir(parents=True, exist_ok=True)
        out = Path(preview) / (Path(name).stem + ".png")
    else:
        out = Path(preview)
    if out in shown:
        raise RecolorError(f"--preview {out} was already written; use --preview DIR/")
    _check_not_input(out, inputs)
    shown.add(out)
    return out


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
    from .imageio import atomic_write, read_rgb

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
        with tool.guard(output):
            atomic_write(output, (fmt or metrics.format_text)(results).encode())
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
    palette steer the colours (see README, "Guided recolouring").
    """
    from .imageio import expand_inputs

    tool = Tool("predict", quiet, debug)
    args = tool.stdin_inputs(inputs)
    paths = expand_inputs(args)
    if suggest is None:
        targets, out_dir = _image_targets(tool, paths, output, fmt)
    predictor = source = None
    problems: list[RecolorError] = []  # hint files for no input: reported, the inputs still done
    with tool.guard():
        from .hints import hint_source

        try:
            source, problems = hint_source(hint or [], hints, palette, args, paths)
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
    if out_dir is not None:
        with tool.guard(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
        if tool.failures:
            tool.exit()
    for problem in problems:
        tool.fail(problem)
    written: set[Path] = set()
    results = tool.progress(predictor.predict_files(paths, batch_size, source), len(paths))
    for (path, rgb), out in zip(results, targets, strict=True):
        with tool.guard(path):
            if isinstance(rgb, RecolorError):
                raise rgb
            _write_predicted(tool, rgb, out, paths, written)
    tool.exit()


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


def _image_targets(
    tool: Tool, paths: list[str], output: str | None, fmt: str | None
) -> tuple[list[Path | str], Path | None]:
    """Where each input's image goes (a Path, or the extension to write to stdout with), and the
    output directory to create, if any."""
    from .imageio import IMAGE_EXTS

    ext = None if fmt is None else "." + fmt.lower().lstrip(".")
    if ext is not None and ext not in IMAGE_EXTS:
        tool.usage(f"unknown --format {fmt!r} (use one of {', '.join(IMAGE_EXTS)})")
    if output == "-":
        if len(paths) != 1:
            tool.usage(f"-o - writes one image, but {len(paths)} inputs were given")
        tool.binary_stdout()  # refused on a terminal, before any work
        return [ext or ".png"], None
    out = Path(output or "recolored/")
    if not _is_dir_target(output or "recolored/") and out.suffix.lower() in IMAGE_EXTS:
        if len(paths) != 1:
            tool.usage(f"-o {output} names one file, but {len(paths)} inputs were given")
        return [out], None

    def name(p: str) -> str:
        stem, suffix = ("stdin", "") if p == "-" else (Path(p).stem, Path(p).suffix.lower())
        return stem + (ext or (suffix if suffix in IMAGE_EXTS else ".png"))

    return [out / name(p) for p in paths], out


def _write_predicted(tool: Tool, rgb, out: Path | str, inputs: list[str], written: set) -> None:
    from .imageio import encode_image, write_image

    if isinstance(out, str):  # stdout, in this format
        stream = tool.binary_stdout()
        stream.write(encode_image(rgb, out))
        stream.flush()
        return
    if out in written:
        raise RecolorError(f"{out} was already written for an earlier input of the same name")
    _check_not_input(out, inputs)
    write_image(out, rgb)
    written.add(out)
    print(out, flush=True)


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

    typer itself maps usage errors to 2, Ctrl-C to 130 and a closed stdout pipe to a quiet 1;
    what reaches here is a bug, reported in one line (with a traceback under --debug).
    """
    try:
        app(args=argv, prog_name="recolor")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.FAILED
    except Exception as e:
        if _DEBUG:
            traceback.print_exc()
        args = sys.argv[1:] if argv is None else argv
        name = next((a for a in args if not a.startswith("-")), "")
        print(
            f"recolor {name}: internal error: {type(e).__name__}: {e} (--debug shows a traceback)",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    return ExitCode.OK


def _silence_stdout() -> None:
    # The reader of our stdout has gone (`| head`): point stdout at /dev/null so the final flush
    # at interpreter exit does not raise again.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
