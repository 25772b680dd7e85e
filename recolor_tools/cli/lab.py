"""The tools that pass Lab records: to-lab, from-lab, quantize, rebalance-stats."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import defaults
from ..errors import RecolorError, printable
from .common import (
    Debug,
    DepthOpt,
    ImageOutput,
    Inputs,
    KeepProfile,
    Output,
    QualityOpt,
    Quiet,
    SkipExisting,
    Strip,
    Tool,
    app,
)
from .pathopts import (
    check_depth,
    file_suffix,
    format_ext,
    given,
    image_encoder,
    image_file,
    image_output,
    image_writer,
    one_file,
    output_dtype,
    single_outputs,
    stdin_file,
)


@app.command("to-lab", short_help="Convert images to Lab records.")
def to_lab(
    inputs: Inputs = None,
    output: Output = None,
    max_size: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--max-size", metavar="PX", min=1, help="Shrink so the longer side is at most this."
        ),
    ] = None,
    l_only: Annotated[bool, typer.Option("--l-only", help="Keep only the L channel.")] = False,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert images (jpg, png, tiff, webp, bmp) to Lab records."""
    # OpenCV's import, which ulimit -v can crash or end with OpenBLAS's exit(), comes before
    # the record stream's temporary file is made
    from .. import imageio  # noqa: F401
    from ..inputs import expand_inputs, input_name, input_roots
    from ..labsources import image_record
    from ..records import LAB_EXT, write_record

    tool = Tool("to-lab", quiet, debug)
    args = tool.stdin_inputs(inputs)
    paths, roots = expand_inputs(args), input_roots(args)
    router = tool.outputs(output, paths, LAB_EXT, many_per_file=True, skip_existing=skip_existing)
    paths = router.without_own(paths, roots)  # -o out/ inside an input folder: run again
    with tool.opened(router) as out:
        for path in tool.progress(paths, len(paths)):
            name = input_name(path, roots)  # a/b.jpg below an input folder: a/b.lab
            if out.skip(name):
                continue
            with tool.guard(path):
                rec = image_record(path, max_size, l_only, name)
                out.write(rec.name, lambda f, rec=rec: write_record(f, rec))
    tool.exit()


@app.command("from-lab", short_help="Convert Lab records to RGB images.")
def from_lab(
    inputs: Inputs = None,
    output: ImageOutput = None,
    depth: DepthOpt = None,
    quality: QualityOpt = None,
    keep_profile: KeepProfile = False,
    strip: Strip = False,
    fmt: Annotated[
        Optional[str],  # noqa: UP045 - None: not given (-o FILE's extension decides)
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="Image format for stdout and directories (png).",
        ),
    ] = None,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Convert Lab records to RGB images; out-of-gamut colours are clamped.

    Images are sRGB and embed its profile, with the source's EXIF and XMP (from to-lab's
    records), at the source's depth.
    """
    from ..color import lab_to_rgb_as
    from ..imagemeta import ImageMeta
    from ..inputs import expand_inputs, input_roots
    from ..labsources import iter_lab_sources
    from ..records import LAB_EXT, check_name

    tool = Tool("from-lab", quiet, debug)
    options = {"depth": depth, "quality": quality, "keep_profile": keep_profile, "strip": strip}
    args = tool.stdin_inputs(inputs)
    paths, roots = expand_inputs(args, (LAB_EXT,)), input_roots(args)  # a folder: its .lab
    output = image_output(output)  # -o out, -o results.v2: out/, results.v2/ (as predict)
    ext = format_ext(tool, fmt, output) or ".png"
    check_depth(tool, depth, [file_suffix(output) or ext or ".png"], chosen=True)
    router = tool.outputs(
        output, paths, ext, many_per_file=False, skip_existing=skip_existing, hold=True
    )
    paths = router.without_own(paths, roots)
    with tool.opened(router) as out:
        for rec in tool.progress(iter_lab_sources(paths, tool.fail, roots)):
            with tool.guard(rec.where):  # an image: its path; a record: its file and name
                if out.directory is not None:  # files named after it
                    check_name(rec)
                if out.skip(rec.name):
                    continue
                src, dest = ImageMeta.from_json(rec.source), out.path(rec.name)
                dtype = output_dtype(dest, ext, src, depth, keep_profile)
                rgb = lab_to_rgb_as(rec.lab(gray_if_l_only=True), dtype)
                out.write(rec.name, image_writer(rgb, dest, ext, src, **options), rec.file)
    tool.exit()


ClassesOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--classes",
        metavar="FILE",
        readable=False,
        help="Class set file, or a rebalance-stats file (its classes; '-': stdin); default: the "
        "sRGB gamut grid.",
    ),
]


GridOpt = Annotated[
    Optional[float],  # noqa: UP045 - None: not given, which --classes needs to know
    typer.Option("--grid", metavar="STEP", min=1, help="Gamut class grid, a/b units (default 8)."),
]


# One flag, two Gaussians (the README's): quantize's soft-encoding kernel, rebalance-stats'
# smoothing of the prior; the default width is the same, each help says which it sets.
EncodeSigma = Annotated[
    Optional[float],  # noqa: UP045 - None: not given (--hard refuses it)
    typer.Option(
        "--sigma",
        metavar="SIGMA",  # (no typer range: it showed x>=0, and 0.01 is the least; checked below)
        help=f"Width of the soft-encoding Gaussian, a/b units (default {defaults.SIGMA:g}; at "
        "least 0.01).",
        show_default=False,
    ),
]
SmoothSigma = Annotated[
    float,
    typer.Option(
        "--sigma",
        metavar="SIGMA",
        min=0,
        help="Width of the Gaussian that smooths the prior, a/b units (0: none; else at least "
        "0.01).",
    ),
]


def _class_set(tool: Tool, classes: Path | None, grid: float | None):
    """(classes, grid) from --classes (a class-set or rebalance-stats file) or --grid (default
    8); both is a usage error, a bad file stops the command (exit 1)."""
    from .. import quant
    from ..rebalance import load_class_set

    if classes is not None and grid is not None:  # it would be ignored without a word
        tool.usage(f"--grid {grid:g} and --classes exclude each other (the file holds its grid)")
    if classes is None:
        grid = defaults.GRID if grid is None else grid
        tool.finite(grid=grid)
        return quant.gamut_classes(grid), float(grid)
    with tool.guard(classes):
        return load_class_set(classes)
    tool.exit()


@app.command("quantize", short_help="Soft-encode Lab over colour classes: training targets.")
def quantize(
    inputs: Inputs = None,
    output: Output = None,
    classes: ClassesOpt = None,
    grid: GridOpt = None,
    k: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "-k",
            metavar="K",
            min=1,
            help=f"Nearest classes per pixel (default {defaults.K}; at most 256).",
            show_default=False,
        ),
    ] = None,
    sigma: EncodeSigma = None,
    hard: Annotated[bool, typer.Option("--hard", help="Only the nearest class (k = 1).")] = False,
    preview: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--preview",
            metavar="PATH",
            help="Also draw each image in class colours: an image FILE, or a DIR (a name "
            "without an image extension, or ending in /).",
        ),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Soft-encode Lab records (or images) over colour classes: training-target records.

    Each record gets arrays idx (int16, H x W x k, nearest class first) and w (float32, the
    Gaussian weights, summing to 1); --hard writes only idx (H x W x 1). The number of classes
    each image uses goes to stderr.
    """
    from .. import quant
    from ..imagehead import IMAGE_EXTS
    from ..inputs import expand_inputs, input_roots
    from ..labsources import iter_lab_sources
    from ..records import LAB_EXT, MAX_CHANNELS, check_name, write_record

    tool = Tool("quantize", quiet, debug)
    args = tool.stdin_inputs(inputs)
    paths, roots = expand_inputs(args, (LAB_EXT, *IMAGE_EXTS)), input_roots(args)
    if preview == "-":
        tool.usage("--preview needs a FILE or DIR/, not stdout")
    preview = image_output(preview)  # --preview shown: shown/ (as predict's -o; a PNG before)
    folder = preview is not None and preview.endswith("/")  # (one file: single_outputs says)
    if folder and output and os.path.normpath(preview) == os.path.normpath(output):
        # (--preview's folder, -o's file of that name)
        tool.usage(f"-o {printable(output)} and --preview {printable(preview)} name one path")
    format_ext(tool, None, preview, "--preview")
    if hard and k not in (None, 1):  # it would be ignored without a word
        tool.usage(f"-k {k} and --hard exclude each other (--hard keeps the nearest class only)")
    if hard and sigma is not None:  # the same
        tool.usage("--sigma and --hard exclude each other (--hard weighs no neighbours)")
    given_k, k = k, defaults.K if k is None else k
    sigma = defaults.SIGMA if sigma is None else sigma
    tool.finite(sigma=sigma)
    if not hard and sigma < defaults.SIGMA_MIN:
        tool.usage(f"--sigma must be at least {defaults.SIGMA_MIN}")
    stdin_file(tool, "--classes", classes, paths)
    cls, grid = _class_set(tool, classes, grid)
    if not hard and k > len(cls):
        default = " (the default)" if given_k is None else ""
        tool.usage(f"-k {k}{default} is more than the {len(cls)} classes; give a smaller -k")
    if not hard and k > MAX_CHANNELS:  # every input would fail alike
        tool.usage(f"-k {k}: a target record holds at most {MAX_CHANNELS} classes a pixel")
    router = tool.outputs(output, paths, ".target", many_per_file=True, keep=given(classes))
    # (after: -o a.png is a usage error, an input or not)
    single_outputs(tool, {"-o": output, "--preview": preview}, [*paths, *given(classes)])
    shown = (
        None
        if preview is None
        else tool.outputs(
            preview,
            paths,
            ".png",
            many_per_file=False,
            flag="--preview",
            keep=given(classes),
            hold=True,
        )
    )
    paths = router.without_own(paths, roots)  # outputs in a folder of the inputs: no inputs
    if shown is not None:  # on a rerun, nor are previews
        paths = shown.without_own(paths, roots)
    with tool.opened(router) as out, contextlib.ExitStack() as stack:
        if shown is not None:
            stack.enter_context(tool.opened(shown))
        for rec in tool.progress(iter_lab_sources(paths, tool.fail, roots)):
            with tool.guard(rec.where):
                if out.directory is not None or shown is not None:  # files named after it
                    check_name(rec)
                target = quant.encode_record(rec, cls, grid, k, sigma, hard)
                # All that can fail comes before the first write: an input that fails leaves
                # neither its target nor its preview behind.
                if shown is not None:
                    rgb = quant.preview_rgb(rec.lab(), cls, target.arrays["idx"])
                    png = image_encoder(rgb, shown.path(rec.name), ".png")()
                    shown.check(rec.name, rec.file)
                out.check(rec.name, rec.file)
                out.write(rec.name, lambda f, t=target: write_record(f, t), rec.file)
                if shown is not None:
                    shown.write(rec.name, lambda f, png=png: f.write(png), rec.file)
                used = target.meta["classes_used"]
                tool.note(f"recolor quantize: {printable(rec.name)}: {used} of {len(cls)} classes")
    tool.exit()


@app.command("rebalance-stats", short_help="Count colour classes; write class-rebalancing stats.")
def rebalance_stats(
    inputs: Inputs = None,
    output: Annotated[
        Optional[str],  # noqa: UP045 - a str: Path would drop the "/" of a directory
        typer.Option(
            "--output", "-o", metavar="PATH", help="Stats file (npz) to write; - for stdout."
        ),
    ] = None,
    lam: Annotated[
        float,
        typer.Option(
            "--lambda", metavar="LAMBDA", min=0, max=1, help="Mix with uniform (Zhang: 0.5)."
        ),
    ] = defaults.LAMBDA,
    sigma: SmoothSigma = defaults.SIGMA,
    classes: ClassesOpt = None,
    grid: GridOpt = None,
    plot: Annotated[
        Optional[str],  # noqa: UP045 - a str: Path would drop the "/" of a directory
        typer.Option(
            "--plot", metavar="PATH", help="Also draw log p(a,b) and the weights to this image."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-j",
            metavar="N",
            min=0,
            max=defaults.MAX_WORKERS,
            help="Threads reading image files (0 or 1: one at a time).",
        ),
    ] = 2,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Count colour classes over images or Lab records; write class-rebalancing stats.

    The stats (counts, smoothed prior, weights w ∝ ((1-λ)p + λ/Q)^-1 with Σ p·w = 1) go to -o
    FILE and a summary to stderr (not with -q). Without -o nothing is written and the summary,
    the output then, goes to stdout (-q too).
    Files whose bytes are an image are read by --workers threads; the others (and stdin, pipes)
    as record streams or images, one at a time.
    """
    from ..fileio import atomic_open
    from ..imagehead import IMAGE_EXTS
    from ..inputs import expand_inputs
    from ..labsources import iter_lab_sources
    from ..rebalance import PriorAccumulator
    from ..records import LAB_EXT
    from ..statsreport import plot_stats, summary

    tool = Tool("rebalance-stats", quiet, debug)
    tool.finite(sigma=sigma, **{"lambda": lam})
    if 0 < sigma < defaults.SIGMA_MIN:
        tool.usage(f"--sigma must be 0 (no smoothing) or at least {defaults.SIGMA_MIN}")
    image_file(tool, plot, "--plot")
    one_file(tool, output, "-o", "a stats file")
    to_stdout = output == "-"
    if to_stdout:
        tool.binary_stdout()  # refused on a terminal, before any work
    elif output is None:
        tool.text_stdout()  # the summary's; closed: refused before any work
    paths = expand_inputs(tool.stdin_inputs(inputs), (LAB_EXT, *IMAGE_EXTS))
    from ..outputs import SOURCE_REFUSED, check_not_source, regular_file_id, write_stdout

    # checked before the counting, not after it
    reads = [*paths, *given(classes)]
    single_outputs(tool, {"-o": output, "--plot": plot}, reads, stdout=output in (None, "-"))
    tool.no_image_named(output, "statistics", "--plot draws them")  # (after: an input's name)
    stdin_file(tool, "--classes", classes, paths)
    acc = PriorAccumulator(*_class_set(tool, classes, grid))
    images = _image_files(paths)
    acc.add_sources(tool.progress(images, len(images)), workers, on_error=tool.fail)
    images = set(images)
    records = iter_lab_sources([p for p in paths if p not in images], tool.fail)
    sources: set[tuple[int, int]] = set()  # the images the records were made from
    acc.add_sources(tool.progress(_noting_sources(records, sources)), on_error=tool.fail)
    if not acc.n_images and tool.failures:
        tool.exit()  # every input failed and was reported: nothing to count
    try:
        stats = acc.finish(lam, sigma)
    except ValueError as e:  # the statistics' own (a lambda too small), not the output file's
        tool.fail(str(e))
        tool.exit()
    with tool.guard(output):
        for target in (output, plot):
            if target not in (None, "-"):
                check_not_source(Path(target), sources)
        if output in (None, "-") and regular_file_id(sys.stdout) in sources:  # `>> a.png`
            raise RecolorError(f"{SOURCE_REFUSED} (it is stdout)")
        with contextlib.ExitStack() as held:  # a plot that fails leaves -o unwritten too, as
            if output is not None and not to_stdout:  # quantize's --preview leaves its -o
                stats.write(held.enter_context(atomic_open(output)))
            if plot is not None:
                plot_stats(stats, plot)
            if to_stdout:  # (after the plot: what is sent cannot be taken back)
                write_stdout(tool.binary_stdout(), stats.write)
        if output is None:
            write_stdout(tool.text_stdout(), lambda f: f.write(summary(stats)))
        else:
            tool.note(summary(stats).rstrip())
    tool.exit()


def _noting_sources(records, sources: set[tuple[int, int]]):
    """``records`` as they come, adding each one's source image (device, inode) to ``sources``."""
    for rec in records:
        if rec.file is not None:
            sources.add(rec.file)
        yield rec


def _image_files(paths: list[str]) -> list[str]:
    """The regular files of ``paths`` whose first bytes are an image's, told apart from record
    streams as :func:`~recolor_tools.labsources.iter_lab_sources` does, by the bytes and not the
    name. Stdin, pipes and devices are left out: what a peek here read would be lost to the
    record reader, which takes images too."""
    from ..imagehead import is_image

    found = []
    for p in paths:
        with contextlib.suppress(OSError, ValueError):  # unreadable: the record reader says why
            if p != "-" and os.path.isfile(p):
                with open(p, "rb") as f:
                    if is_image(f.read(16)):
                        found.append(p)
    return found
