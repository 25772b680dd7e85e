"""What every tool shares: the typer app, the common options, and :class:`Tool`, one run of
one tool (failures, exit status, progress, outputs)."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO, Optional

import typer
from typer.core import TyperGroup

from .. import __version__, defaults
from ..errors import (
    DiskFull,
    ExitCode,
    OutOfMemory,
    RecolorError,
    out_of_memory,
    printable,
    set_tool,
    to_stderr,
    warn,
)


class InternalEOF(Exception):
    """An EOFError that left a command: a bug, reported as any other internal error."""


class _Group(TyperGroup):
    def invoke(self, ctx):
        # click's main turns an EOFError into Abort, as for Ctrl-D at a prompt, and first prints
        # a blank line; recolor never prompts, so one that gets there is a bug (a cache file
        # left empty by a crash), to be one line like any other.
        try:
            return super().invoke(ctx)
        except EOFError as e:
            raise InternalEOF(f"EOFError: {e}") from e


app = typer.Typer(
    cls=_Group,
    name="recolor",
    help="Recolor images in CIELAB space: small tools that pass Lab records through pipes.",
    no_args_is_help=False,  # `recolor` alone: a usage error, one line on stderr, as each tool
    pretty_exceptions_enable=False,
    # click's plain help, not rich's boxes: at 80 columns rich gave each option's help a
    # 23-column strip, and its box characters got in the way of `-h | grep` and help2man
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


_DEBUG = bool(os.environ.get("RECOLOR_DEBUG"))


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]


Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]


Output = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional at runtime on 3.11
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Output file, or directory (existing, or ending in /).",
    ),
]


ImageOutput = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Image file (by its image extension), or directory (a name without one, existing, "
        "or ending in /).",
    ),
]


# -- archive I/O (issue 18): output depth, colour profile and metadata options --
def _depth(value: int | None) -> int | None:
    if value not in (None, 8, 16):
        raise typer.BadParameter(f"must be 8 or 16, got {value}")
    return value


DepthOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--depth",
        metavar="BITS",
        help="Bits per sample, 8 or 16 (png, tiff); default: the input's.",
        callback=_depth,
    ),
]
QualityOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--quality",
        metavar="Q",
        min=1,
        max=100,
        help="JPEG and WebP quality, 1-100 (default: JPEG 95, WebP lossless); JPEG keeps full "
        "chroma (4:4:4) from 90; png, tiff and bmp ignore it.",
        show_default=False,
    ),
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
        help="Files, directories, globs, .txt lists; '-' or nothing reads stdin.",
        show_default=False,
    ),
]


class Tool:
    """One run of one tool: reports failed inputs and decides the exit code."""

    def __init__(
        self, name: str, quiet: bool = False, debug: bool = False, ranked: bool = False
    ) -> None:
        """``ranked``: a tool that torchrun may launch several times (predict, train): what is
        about the whole run is said by rank 0 only until :attr:`echo` is set again."""
        global _DEBUG
        _DEBUG = _DEBUG or debug
        self.name = name
        self.quiet = quiet
        self.failures = 0
        self.echo = True  # False: failures and usage errors counted, not printed (torchrun ranks)
        self.ranked = ranked
        set_tool(name)
        if ranked:
            from ..shard import first_process, rank_and_size

            try:  # RANK and WORLD_SIZE set by hand, not by torchrun
                rank_and_size()
            except RecolorError as e:
                self.usage(e.reason, see_help=False)  # (-h says nothing of the environment)
            self.echo = first_process()
        from ..imagehead import max_pixels

        try:  # a bad limit is the whole run's mistake, not each input's
            max_pixels()
        except RecolorError as e:
            self.usage(e.reason, see_help=False)

    def fail(
        self, err: RecolorError | str, path: str | Path | None = None, always: bool = False
    ) -> None:
        """Print ``recolor <tool>: <file>: <reason>`` on stderr (where :attr:`echo`, or
        ``always``) and count the failure."""
        self.failures += 1
        if isinstance(err, RecolorError):
            path = err.path if err.path is not None else path
            err = err.reason
        where = f"{printable(str(path))}: " if path is not None else ""
        self._say(f"recolor {self.name}: {where}{err}", self.echo or always)

    def note(self, text: str) -> None:
        """A message for the user on stderr, unless --quiet."""
        if not self.quiet:
            to_stderr(text)

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
            from ..fileio import os_reason

            self.fail(os_reason(e), getattr(e, "filename", None) or path)
        except Exception as e:  # one input too large for the machine: the next may fit
            if path is None or not out_of_memory(e):
                raise  # a whole run's, main's one line
            self.fail(OutOfMemory(), path)

    def progress(
        self, items: Iterable, total: int | None = None, unit: str = "img", paths: bool = False
    ) -> Iterable:
        """Wrap ``items`` in a progress bar on stderr, only when stderr is a terminal. ``paths``:
        each item's written path is printed on stdout as it comes, which where stdout is a
        terminal too is the progress (a bar there was glued to the paths, and its last clear
        erased one)."""
        if self.quiet or not sys.stderr.isatty() or paths and self.text_stdout().isatty():
            return items
        from tqdm import tqdm

        return tqdm(items, total=total, unit=unit, desc=self.name, file=sys.stderr, leave=False)

    def usage(self, message: str, see_help: bool = True) -> None:
        """Stop with a usage error: one line on stderr (where :attr:`echo`), exit 2; it ends
        with where the usage is, as click's own usage errors do (``see_help``: not for the
        environment's variables, of which ``-h`` says nothing)."""
        where = f"recolor {self.name}"
        more = f" (see {where} -h)" if see_help else ""
        self._say(f"{where}: {message}{more}", self.echo)
        raise typer.Exit(ExitCode.USAGE)

    def _say(self, line: str, said: bool) -> None:
        """Print ``line`` on stderr where ``said``; a ranked tool records it either way, so that
        rank 0 says at the end what only another rank met (:func:`recolor_tools.shard.
        keep_line`)."""
        if said:
            to_stderr(line)
        if self.ranked:
            from ..shard import keep_line

            keep_line(line, said)

    def exit(self) -> None:
        """End the command with 0, or 1 when some inputs failed."""
        raise typer.Exit(ExitCode.FAILED if self.failures else ExitCode.OK)

    def finite(self, **flags: float) -> None:
        """A usage error for each option value that is NaN or infinite (typer's ranges let them
        through): ``finite(sigma=s)`` checks ``--sigma``."""
        for name, value in flags.items():
            if not math.isfinite(value):
                self.usage(f"--{name} must be a finite number, got {value}")

    def stdin_inputs(self, inputs: list[str] | None) -> list[str]:
        """Inputs for a tool that reads streams: nothing means stdin, unless it is a terminal."""
        if inputs:
            return inputs
        if sys.stdin.isatty():
            self.usage("no input given and stdin is a terminal")
        return ["-"]

    def binary_stdout(self) -> BinaryIO:
        """stdout for binary data; refused on a terminal, and when closed (exit 1)."""
        if self.text_stdout().isatty():
            self.usage("refusing to write binary data to a terminal; use -o or a pipe")
        return sys.stdout.buffer

    def text_stdout(self, advice: str = "use -o FILE"):
        """stdout; when it is closed (``>&-``), one line (ending in ``(advice)``) and exit 1,
        before any work where the tool asks first."""
        if sys.stdout is None:
            from ..process import CLOSED, STDOUT_NAME

            self.fail(f"{CLOSED} ({advice})", STDOUT_NAME)
            self.exit()
        return sys.stdout

    def no_image_named(self, output: str | None, writes: str, advice: str) -> None:
        """A usage error for ``-o x.png`` from a tool that ``writes`` no image (records, a
        report): named as one, the next tool reads it as a broken image. A folder or a device
        of that name is written to as ever."""
        from ..imagehead import IMAGE_EXTS, OTHER_IMAGE_EXTS

        own = file_suffix(output).lower()
        if output is None or own not in (*IMAGE_EXTS, *OTHER_IMAGE_EXTS):
            return
        if not os.path.isdir(output) and not written_in_place(output):
            a = "an" if own[1] in "aeiou" else "a"
            self.usage(f"-o {printable(output)}: {self.name} writes {writes}, not {a} "
                       f"{own[1:]} image ({advice})")  # fmt: skip

    def outputs(self, output: str | None, inputs: list[str], suffix, count: int = 0, **kw):
        """The output router of this run (see :mod:`recolor_tools.outputs`); ``count`` inputs
        known in advance that cannot all fit the output are a usage error (exit 2)."""
        from ..outputs import Outputs, OutputUsage

        if suffix in _RECORD_FILES:  # (the image tools refuse -o x.lab likewise)
            self.no_image_named(output, "records", f"name a {suffix} file or a folder")
        router = Outputs(output, inputs, suffix, self.binary_stdout, **kw)
        try:
            router.check_count(count)
        except OutputUsage as e:
            self.usage(e.reason)
        failures = self.failures
        with self._whole_run(), self.guard(router.file or router.directory):
            router.check_target()
        if self.failures > failures:
            self.exit()
        return router

    @contextlib.contextmanager
    def _whole_run(self) -> Iterator[None]:
        """What is said inside is about the whole run (its -o): said once under torchrun."""
        echo = self.echo
        if self.ranked:
            from ..shard import first_process

            self.echo = first_process()
        try:
            yield
        finally:
            self.echo = echo

    @contextlib.contextmanager
    def opened(self, router) -> Iterator:
        """Enter an output router; a failure to open or to finish its output (a full disk when
        a stream file is closed) is reported and ends the run."""
        where = router.file or router.directory
        entered = False
        with self._whole_run(), self.guard(where):
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


def image_encoder(rgb, dest: Path | None, ext: str, source=None, **options):
    """A function returning ``rgb`` encoded for ``dest`` (its extension; ``ext`` for stdout or
    none), with the profile and metadata of ``source`` (an ImageMeta; ``options`` as for
    :func:`recolor_tools.imagemeta.encode_output`)."""
    from ..imagemeta import encode_output
    from ..process import STDOUT_NAME

    name = STDOUT_NAME if dest is None else dest
    return functools.partial(encode_output, rgb, _output_ext(dest, ext), source, name=name,
                             **options)  # fmt: skip


def output_dtype(dest: Path | None, ext: str, source=None, depth=None, keep_profile=False):
    """The sample type to compute an output for ``dest`` in (as :func:`image_encoder` names its
    format): the file's own (uint8 or uint16, so it is rounded once and no float copy of the
    whole image is kept), or float32 where ``keep_profile`` converts it first."""
    import numpy as np

    from ..imagemeta import output_depth

    if keep_profile:
        return np.float32
    return np.uint16 if output_depth(depth, source, _output_ext(dest, ext)) == 16 else np.uint8


def format_ext(
    tool: Tool, fmt: str | None, output: str | None = None, flag: str = "-o"
) -> str | None:
    """``--format`` as an extension (``"PNG"`` -> ``".png"``; None stays None). A format recolor
    does not write, there or in the name of an ``output`` FILE, is a usage error, before any
    input is read."""
    from ..imagehead import IMAGE_EXTS

    known = ", ".join(IMAGE_EXTS)
    ext = None if fmt is None else "." + fmt.lower().lstrip(".")
    if ext is not None and ext not in IMAGE_EXTS:
        names = ", ".join(e.lstrip(".") for e in IMAGE_EXTS)  # as --format takes them
        tool.usage(f"unknown --format {fmt!r} (use one of {names})")
    own = "" if written_in_place(output) else file_suffix(output).lower()  # (a FIFO: any name)
    if own in _RECOLOR_FILES and not os.path.isdir(output):  # (to-lab -o x.png's mirror)
        tool.usage(f"{flag} {printable(output)}: {tool.name} writes an image there, not a "
                   f"{own} file")  # fmt: skip
    if own and own not in IMAGE_EXTS and not os.path.isdir(output):
        tool.usage(f"{flag} {printable(output)}: unknown image format {own!r} (use one of {known})")
    same = {".jpeg": ".jpg", ".tiff": ".tif"}
    if ext and own and same.get(ext, ext) != same.get(own, own) and not os.path.isdir(output):
        # one of the two would be lost
        tool.usage(f"--format {fmt} and {flag} {printable(output)} name two formats: give one")
    return ext


def image_output(output: str | None) -> str | None:
    """``-o`` of a tool whose outputs are images (predict, from-lab): a name without an image
    extension names a directory (``-o out``, ``-o results.v2``: ``out/``), as does one ending in
    ``/``; an existing device or FIFO (``/dev/null``, ``/dev/stdout``) is one file, written in
    place; a name with an image format's extension recolor does not write (``-o x.gif``) stays
    a file, for :func:`format_ext` to refuse."""
    from ..imagehead import IMAGE_EXTS, OTHER_IMAGE_EXTS

    if output in (None, "-") or output.endswith("/") or written_in_place(output):
        return output
    if Path(output).suffix.lower() in (*IMAGE_EXTS, *OTHER_IMAGE_EXTS, *_RECOLOR_FILES):
        return output
    return output + "/"


def written_in_place(output: str | None) -> bool:
    """Whether ``-o`` names an existing device or FIFO (``/dev/null``, ``/dev/stdout``): one
    file, written in place, whatever its name says."""
    from ..fileio import writes_in_place

    return (
        output not in (None, "-")
        and os.path.exists(output)
        and not os.path.isdir(output)
        and writes_in_place(output)
    )


_RECORD_FILES = (".lab", ".target")
"""The record streams' extensions (to-lab, quantize)."""
_RECOLOR_FILES = (*_RECORD_FILES, ".npz", ".pt")
"""recolor's own files' extensions: as ``-o`` of an image tool, a mistake (a usage error), not
the name of a folder."""


def file_suffix(output: str | None) -> str:
    """The extension of ``-o FILE`` as given (``.JPG``); "" for no ``-o``, stdout or ``DIR/``."""
    return "" if output in (None, "-") or output.endswith("/") else Path(output).suffix


def check_depth(tool: Tool, depth: int | None, exts: Iterable[str], chosen: bool) -> None:
    """``--depth 16`` where outputs hold 8 bits (jpg, webp, bmp): a usage error when the user
    chose that format (``--format``, ``-o FILE``), else one line, as inputs' formats decide."""
    from ..imagehead import DEEP_EXTS

    shallow = sorted({e.lower().lstrip(".") for e in exts if e.lower() not in DEEP_EXTS})
    if depth != 16 or not shallow:
        return
    holds = "holds" if len(shallow) == 1 else "hold"
    what = f"--depth 16: {', '.join(shallow)} {holds} 8 bits per sample (png and tiff hold 16)"
    if chosen:
        tool.usage(what)
    warn(f"{what}; those outputs are written with 8 (--format png for 16)")


def image_file(tool: Tool, path: str | None, flag: str) -> None:
    """An option that names one image FILE (``--montage``, ``--plot``): a directory (typer's
    Path would drop its "/" and write a file of that name) or a format recolor does not write
    is a usage error, before any input is read; so is ``-`` (stdout), as for quantize --preview."""
    if path == "-":
        tool.usage(f"{flag} needs a FILE, not stdout")
    one_file(tool, path, flag, "an image file")
    format_ext(tool, None, path, flag)


def one_file(tool: Tool, path: str | None, flag: str, what: str) -> None:
    """An option that names one FILE or ``-`` (``what``: "a stats file"): a directory, existing
    or ending in "/", is a usage error before any input is read. Such options are str, not
    Path: typer's Path drops the "/", and a file of the directory's name would be written."""
    from ..outputs import is_dir_target

    if path not in (None, "-") and is_dir_target(path):
        tool.usage(f"{flag} {printable(path)}: names {what}, not a directory")


def given(*paths: str | Path | None) -> list[str]:
    """The options among ``paths`` that were given (not None), as str: files a run reads."""
    return [str(p) for p in paths if p is not None]


def distinct_outputs(tool: Tool, files: dict[str, str | None]) -> dict[str, str]:
    """A usage error where two options name one output file (``{"-o": ..., "--plot": ...}``;
    one would be lost); returns those that name a file (not ``-`` nor a directory). Called by
    :func:`single_outputs`, and before any input is listed by a tool that lists first."""
    from ..fileio import writes_in_place
    from ..outputs import is_dir_target

    named = {f: p for f, p in files.items() if p not in (None, "-") and not is_dir_target(p)}
    seen: dict[object, str] = {}
    for flag, path in named.items():
        fifo = _fifo_id(path)  # (a FIFO read once would hang; one reached by a hard link too)
        if writes_in_place(path) and fifo is None:
            continue
        first = seen.setdefault(fifo or os.path.realpath(path), flag)
        if first != flag:
            tool.usage(f"{first} and {flag} name one file, {printable(path)}: give each its own")
    return named


def stdin_file(tool: Tool, flag: str, value: str | Path | None, inputs: list[str]) -> None:
    """``FLAG -``: the option's file on stdin (``rebalance-stats -o - | recolor compare P T
    --stats -``); a usage error where stdin is a terminal or an input."""
    if value is None or str(value) != "-":
        return
    if "-" in inputs:  # (no input named: stdin is the input; it said "not a terminal, and
        tool.usage(  # not an input" to `to-lab a | rebalance-stats -o - | quantize --classes -`)
            f"{flag} - reads its file from stdin, which an input reads too ('-', or no input "
            f"named): name the inputs, or give {flag} a file"
        )
    if sys.stdin.isatty():
        tool.usage(f"{flag} - reads its file from stdin, a terminal here: pipe it in")


def _fifo_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISFIFO(st.st_mode) else None


def single_outputs(
    tool: Tool, files: dict[str, str | None], reads: list[str], stdout: bool = False
) -> None:
    """Options that each name one output file (``{"-o": ..., "--plot": ...}``), before any work:
    two naming one file (one would be lost) are a usage error; one that is among the files the
    run ``reads`` (inputs, ``--stats``, ``--classes``) stops it, exit 1 (as ``-o`` an input), and
    so does one in a folder that is missing, or a stdout (``stdout``: the run writes it) that is
    one of them (``>> input``).
    ``-``, directories and devices written in place (``/dev/null``, for both; not a FIFO) are
    left out."""
    from ..fileio import writes_in_place
    from ..outputs import check_folder, check_not_input, check_stdout_not_input

    named = distinct_outputs(tool, files)
    failures = tool.failures
    for path in named.values():
        with tool.guard(path):
            check_not_input(Path(path), reads)
            if not writes_in_place(path):
                check_folder(Path(path))
    if stdout:
        with tool.guard():
            check_stdout_not_input(sys.stdout, reads)
    if tool.failures > failures:
        tool.exit()


def _output_ext(dest: Path | None, ext: str) -> str:
    """The format ``dest`` is written in: its extension; ``ext`` (--format, the input's) for
    stdout, a name without one, or a device or FIFO, written in place whatever its name says
    (``-o pipe.png`` with a jpg input: jpg)."""
    named = dest is not None and dest.suffix and not written_in_place(str(dest))
    return dest.suffix if named else ext


def image_writer(rgb, dest: Path | None, ext: str, source=None, **options):
    """A writer of ``rgb`` encoded for ``dest`` (see :func:`image_encoder`) to a binary file."""
    from ..fileio import write_all

    encode = image_encoder(rgb, dest, ext, source, **options)
    return lambda f: write_all(f, encode())


# -- options of the tools that run a network --
def device(value: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N; anything else is a usage error."""
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", value):
        return value
    raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N")


def device_option(help: str):
    option = typer.Option("--device", help=help, callback=device, metavar="auto|cpu|cuda[:N]")
    return Annotated[str, option]


def check_precision(tool: Tool, device: str, precision: str) -> None:
    """``--precision bf16|fp16`` with ``--device cpu`` is a usage error (exit 2): no machine
    runs it (on ``auto`` without a GPU it is the machine's, exit 1, as ``--device cuda``)."""
    if device == "cpu" and precision in ("bf16", "fp16"):
        tool.usage(f"--precision {precision} needs CUDA, and --device cpu asks for the CPU")


Precision = Annotated[
    defaults.Precision,
    typer.Option(  # (its choices as the metavar were cut mid-word at 80 columns)
        "--precision",
        metavar="MODE",
        help="auto: bf16/fp16 mixed precision on CUDA, else fp32; or fp32, bf16, fp16.",
    ),
]

PATHS_GO_THERE = "the paths written go there; > /dev/null drops them"
