"""compare: score predictions against ground truth."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import printable
from .common import (
    Debug,
    Quiet,
    Tool,
    app,
)
from .pathopts import (
    distinct_outputs,
    given,
    image_file,
    one_file,
    single_outputs,
    stdin_file,
)


@app.command("compare", short_help="Score predictions against ground truth.")
def compare(
    pred: Annotated[
        Path,
        typer.Argument(
            metavar="PRED", readable=False, help="Predicted image, or a directory of them."
        ),
    ],
    truth: Annotated[
        Path,
        typer.Argument(
            metavar="TRUTH", readable=False, help="Ground truth image, or a directory of them."
        ),
    ],
    stats: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--stats",
            metavar="FILE",
            readable=False,
            help="rebalance-stats.npz ('-': stdin): adds the class-rebalanced AuC.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write one JSON object.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Write CSV, a last row 'mean' if a pair was scored.")
    ] = False,
    montage: Annotated[
        Optional[str],  # noqa: UP045 - a str: Path would drop the "/" of a directory
        typer.Option(
            "--montage",
            metavar="PATH",
            help="Also draw gray input | prediction | truth to this image.",
        ),
    ] = None,
    output: Annotated[
        Optional[str],  # noqa: UP045 - a str: Path would drop the "/" of a directory
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Write the report to this file, not stdout (.json, .csv: that one).",
        ),
    ] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Score predictions against ground truth: PSNR, SSIM, ab RMSE, AuC, colourfulness.

    Two directories are matched by path below each, without extension (a/b.png to a/b.jpg).

    PSNR and SSIM: on RGB. AuC: a/b error within 0..150, in percent. Mean: over the images.

    Identical images have infinite PSNR: inf in tables and CSV, null in JSON.
    """
    from .. import metrics, report
    from ..color import to_uint8
    from ..fileio import write_all
    from ..imagehead import max_pixels, side_limit
    from ..imageio import read_rgb
    from ..outputs import write_stdout

    tool = Tool("compare", quiet, debug)
    output = None if output == "-" else output  # stdout: text, a terminal's too (not "binary")
    if as_json and as_csv:
        tool.usage("--json and --csv exclude each other")
    as_json, as_csv = _report_format(tool, output, as_json, as_csv)
    image_file(tool, montage, "--montage")
    one_file(tool, output, "-o", "a report file")
    if output is None:
        tool.text_stdout()  # closed: refused before any work
    distinct_outputs(tool, {"--montage": montage, "-o": output})  # before the pairing's lines
    stdin_file(tool, "--stats", stats, [str(pred), str(truth)])
    rebal = _load_stats(tool, stats) if stats is not None else None
    pairs = _compare_pairs(tool, pred, truth, montage)
    inputs = [str(f) for _, p, t in pairs for f in (p, t)]
    reads = [*inputs, *given(stats)]
    single_outputs(tool, {"--montage": montage, "-o": output}, reads, stdout=output is None)
    tool.no_image_named(output, "a report", "--montage draws one")  # (after: an input's name)
    drawn = 0
    if montage is not None:  # said before the work, not after it (the height is known now)
        # a figure recolor reads back: 1,000 pairs made one of 298 Mpx (2 GB to draw)
        drawn = min(len(pairs), report.montage_rows(max_pixels()))
        tall = report.montage_height(drawn)
        # (a name without an extension is a png: write_figure's rule)
        if too_long := side_limit(Path(montage).suffix.lower() or ".png", tall):
            tool.usage(
                f"--montage {printable(montage)}: {drawn} rows make it {tall} px tall; {too_long}"
            )
        if drawn < len(pairs):
            tool.note(
                f"recolor compare: --montage {printable(montage)}: {drawn} of {len(pairs)} pairs "
                f"drawn, the first read (recolor reads at most {max_pixels():,} pixels: "
                "RECOLOR_MAX_PIXELS)"
            )
    results, rows = [], []
    for name, p, t in tool.progress(pairs, len(pairs)):
        pair: list = [None, None]
        for i, path in enumerate((p, t)):  # both read, so that two bad files are both named
            with tool.guard(path):
                image = to_uint8(read_rgb(path))
                if i:  # the truth's own problem, named by it
                    metrics.check_truth_size(image)
                pair[i] = image
        if any(image is None for image in pair):
            continue
        p_u8, t_u8 = pair
        with tool.guard(p):
            results.append((name, metrics.compare_pair(p_u8, t_u8, rebal)))
            if len(rows) < drawn:
                rows.append(report.montage_row(name, p_u8, t_u8))
    if rows:
        with tool.guard(montage):
            report.montage(rows, montage)
    fmt = report.format_json if as_json else report.format_csv if as_csv else None
    if fmt is None and not results:  # a table of no image is a header alone: the errors say it
        tool.exit()
    if output is not None:
        # a name that is no UTF-8 is its own bytes, as on stdout
        text = (fmt or report.format_text)(results).encode(errors="surrogateescape")
        router = tool.outputs(output, inputs, ".txt", many_per_file=False)
        with tool.opened(router) as out, tool.guard(output):
            out.write("report", lambda f: write_all(f, text))
        tool.exit()
    stream = tool.text_stdout()
    # (rich lays a table out at 2 ms a row: a longer one is printed plain, at once)
    rich = fmt is None and stream.isatty() and len(results) <= RICH_ROWS
    if rich and _print_rich_table(*report.report_cells(results)):
        tool.exit()
    text = (fmt or report.format_text)(results).encode(stream.encoding, stream.errors)
    with tool.guard():  # a full device: one line naming <stdout>; all of it or an error
        write_stdout(stream.buffer, lambda f: write_all(f, text))
    tool.exit()


def _stream_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file that can be read only once (stdin ``-``, a pipe, a FIFO, a
    device), None for a regular file, a folder or a name that does not stat."""
    try:
        st = os.fstat(0) if str(path) == "-" else os.stat(path)
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) else (st.st_dev, st.st_ino)


def _compare_pairs(
    tool: Tool, pred: Path, truth: Path, montage: str | None = None
) -> list[tuple[str, Path, Path]]:
    """(name, pred, truth) to compare: the two files, or two directories matched by name; in a
    directory, the ``montage`` this run writes (an earlier run's, with no partner) is not said
    to lack one."""
    from ..fileio import open_binary
    from ..inputs import expand_inputs, input_name, real_path
    from ..pairing import pair_by_stem

    if str(pred) == str(truth) == "-":  # the first read would leave the second nothing
        tool.usage("PRED and TRUTH cannot both be stdin")
    if (one := _stream_id(pred)) is not None and one == _stream_id(truth):  # the same, named
        if "-" in (str(pred), str(truth)):  # (/dev/stdin, or one FIFO twice)
            tool.usage("PRED and TRUTH cannot both be stdin")
        tool.usage(f"PRED and TRUTH are one stream, {printable(pred)}, read once: give two files")
    if os.path.isdir(pred) != os.path.isdir(truth):  # (a name too long is no folder)
        missing = [p for p in (pred, truth) if str(p) != "-" and not os.path.exists(p)]
        for p in missing:  # a mistyped name or a link to nothing: that, not a usage error
            tool.fail("no such file", p)
        if missing:
            tool.exit()
        tool.usage("PRED and TRUTH must both be files or both be directories")
    if not os.path.isdir(pred):  # named by the truth; stdin "stdin", as in every tool
        return [(Path(input_name(str(truth))).stem, pred, truth)]
    sides = (pred, truth)
    files = [expand_inputs([str(d)]) for d in sides]
    # folders it could not list, kept by expand_inputs for their reader to report, as every
    # tool does (a subfolder was paired as a file: "no ground truth of that name")
    unread = [[f for f in found if os.path.isdir(f)] for found in files]
    for d in (d for folders in unread for d in folders):
        with tool.guard(d):
            open_binary(d).close()
    if any(str(d) in folders for d, folders in zip(sides, unread, strict=True)):
        tool.exit()  # the other folder's files would each be reported as having no partner
    files = [[f for f in found if f not in skip] for found, skip in zip(files, unread, strict=True)]
    gone = [os.path.relpath(d, s) + os.sep for s, ds in zip(sides, unread, strict=True) for d in ds]
    pairs, problems = pair_by_stem(*files, pred, truth)
    mine = real_path(montage) if montage is not None else None
    for err in problems:
        # an earlier run's figure, with no partner: no line (one that pairs is an input, which
        # the montage must not overwrite: refused with the other outputs); nor a file whose
        # partner is in a folder said unreadable
        below = (os.path.relpath(err.path, side) for side in sides)
        if any(r.startswith(g) for r in below for g in gone):
            continue
        if mine is None or real_path(err.path) != mine:
            tool.fail(err)
    return pairs


RICH_ROWS = 200
"""The longest table on a terminal drawn by rich (0.4 s of layout); longer ones are plain."""

REPORT_SUFFIXES = {".json": "--json", ".csv": "--csv"}
"""``-o`` names whose extension says the report's format, as an image's says its format."""


def _report_format(
    tool: Tool, output: str | None, as_json: bool, as_csv: bool
) -> tuple[bool, bool]:
    """``(as_json, as_csv)``: as the flags say, else as ``-o``'s extension says (``-o r.json``
    wrote a text table); a flag that names the other format is a usage error."""
    said = REPORT_SUFFIXES.get(os.path.splitext(output or "")[1].lower())
    flag = "--json" if as_json else "--csv" if as_csv else None
    if said is None or flag == said:
        return as_json, as_csv
    if flag is not None:
        tool.usage(f"{flag} and -o {printable(output)} name two formats: give one")
    return said == "--json", said == "--csv"


def _load_stats(tool: Tool, path: Path):
    """The rebalancing stats for --stats; a bad file stops the command (exit 1)."""
    from ..rebalance import RebalanceStats

    with tool.guard(path):
        return RebalanceStats.load(path)
    tool.exit()


def _print_rich_table(head: list[str], rows: list[list[str]]) -> bool:
    """Print the report as a rich table where the terminal is wide enough; False where it is
    not (rich cut the cells to fit: two long names both "poster_1…", figures "41…"), for the
    plain table, which cuts nothing."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Two-line titles keep the table within 80 columns.
    table = Table(*(h.replace(" ", "\n", 1) for h in head), box=box.SIMPLE_HEAD)
    for col in table.columns[1:]:
        col.justify = "right"
    for name, *cells in rows[:-1]:
        table.add_row(escape(name), *cells)  # a name is text, not markup: "[red]x.png"
    if rows:  # the mean row, set apart
        table.add_section()
        table.add_row(*rows[-1], style="bold")
    console = Console(emoji=False, highlight=False)  # (":smile:" in a name was an emoji)
    natural = console.measure(table, options=console.options.update_width(1 << 16)).maximum
    if natural > console.width:
        return False
    console.print(table)
    return True
