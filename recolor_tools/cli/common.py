"""What every tool shares: the typer app, the common options, and :class:`Tool`, one run of
one tool (failures, exit status, progress, outputs)."""

from __future__ import annotations

import contextlib
import math
import os
import re
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
)
from .pathopts import RECORD_FILES, file_suffix, written_in_place


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

        if suffix in RECORD_FILES:  # (the image tools refuse -o x.lab likewise)
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
