"""The ``recolor`` command: thin typer wrappers that parse, call one library function, report.

Conventions shared by every tool (see README): inputs are files, directories, globs or ``-``;
binary output goes to ``-o FILE|DIR`` or to stdout when it is not a terminal; one line per failed
input on stderr; exit 0 ok, 1 some inputs failed, 2 usage, 130 Ctrl-C. Heavy modules (numba,
torch) are imported inside the commands that need them, so the others start fast."""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import re
import sys
import traceback
import warnings

import click

from .. import process
from ..errors import NO_THREAD, ExitCode, out_of_memory
from . import common

# Importing the command modules registers their commands, in the order help lists them.
from . import lab, score, predict, train  # noqa: F401, I001  # isort: skip
from .common import app  # noqa: F401 - the typer app, for tests and completion


def main(argv: list[str] | None = None) -> int:
    """Run the ``recolor`` command and return its exit status.

    A usage error (an unknown flag, a value out of range, an empty argument) is one line, exit 2;
    Ctrl-C ends with 130 and SIGTERM with 143 (both unwind, so temporary files are removed); a
    closed stdout pipe ends quietly with 1. What else reaches here is a bug, reported in one line
    (with a traceback under --debug).
    """
    process.fill_closed_stdio()
    process.stdout_waits_for_room()
    with process.lossy_stderr():  # a line it cannot write never ends the run
        return _main(argv)


RANKED = ("predict", "train")
"""The tools that share their work out under torchrun (``Tool(ranked=True)``)."""

_THREADED = ("rebalance-stats", "predict", "train")
"""The tools that take -j."""


def _names_else_replaced(e: UnicodeError) -> tuple[str | bytes, int]:
    """stdout's errors: a file name's undecodable bytes as they were (surrogateescape); any
    other character the encoding lacks as "?" (help's … and ∝ under an ASCII or Latin-1
    locale: an internal error after half the help)."""
    try:
        return codecs.lookup_error("surrogateescape")(e)
    except UnicodeError:
        return codecs.lookup_error("replace")(e)


_NAMES = "recolor-names"
codecs.register_error(_NAMES, _names_else_replaced)


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = _tool_name(args)
    where = f"recolor {name}".rstrip()
    # A file name is bytes, not always UTF-8 (b"caf\xe9.jpg"); printed paths must be that name
    # for the next tool in a pipe, whatever the locale's strictness, in the encoding names
    # are decoded with (PYTHONIOENCODING=ascii: a written image was reported as failed).
    with contextlib.suppress(AttributeError, ValueError, LookupError):  # captured, not a file
        sys.stdout.reconfigure(encoding=sys.getfilesystemencoding(), errors=_NAMES)
    if not (common._DEBUG or "--debug" in args):
        # Pillow warns of a corrupt EXIF block in two lines of its own; the block is dropped
        # alone (README), as what C libraries print is (quiet_c_stderr below)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        # numpy's "overflow encountered in cast" and the like, two lines each before the one
        # line that says what was wrong with the input (--debug shows them)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        # Pillow logs some errors before raising them ("More samples per pixel than can be
        # decoded: 7"), which Python's last-resort handler printed above the tool's line
        logging.getLogger("PIL").addHandler(logging.NullHandler())
    try:
        os.getcwd()
    except FileNotFoundError:  # torch's libraries then fail to load, and exit 2 unsaid
        print(f"{where}: the current directory no longer exists", file=sys.stderr)
        return ExitCode.FAILED
    # under torchrun, a usage error of a tool it launches many times is every rank's: said by
    # rank 0 only (a to-lab in a job script that sets RANK is the only one doing its work)
    from ..shard import first_process, keep_line

    said = name not in RANKED or first_process()

    def usage(line: str) -> None:
        """Print a usage line where ``said``; a ranked tool keeps it either way, for a rank that
        met it alone to say when rank 0 does not come (:func:`recolor_tools.shard.last_word`)."""
        if said:
            print(line, file=sys.stderr)
        if name in RANKED:
            keep_line(line, said)

    if sys.stdout is None and (not args or any(a in ("-h", "--help", "--version") for a in args)):
        # the help (a bare `recolor` shows it) and the version go to stdout: closed (`>&-`),
        # they were lost with exit 0
        print(f"{where}: {process.STDOUT_NAME}: {process.CLOSED}", file=sys.stderr)
        return ExitCode.FAILED
    if any(a == "" or a.startswith("--") and a.endswith("=") for a in args):
        # `recolor predict "$unset"`: Path("") is the current directory, which every tool would
        # take for a folder of inputs (or an output) without a word.
        usage(f"{where}: an empty argument names no file, folder or value (see {where} -h)")
        return ExitCode.USAGE
    try:
        with process.exit_on_sigterm():
            try:
                with process.quiet_c_stderr(keep=common._DEBUG or "--debug" in args):
                    rv = app(args=argv, prog_name="recolor", standalone_mode=False)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except click.ClickException as e:  # a bad flag or value: one line, as tool.usage
                # (an option's missing value is said before the tool's context exists)
                command = e.ctx.command_path if getattr(e, "ctx", None) else where
                # (Click 8.2+ suggests a near command name, and typer adds the same again, or,
                # with two near names, its own list in parentheses: the first is kept)
                message = re.sub(r"( Did you mean [^?]*\?)\1+", r"\1", e.format_message())
                if message.count("Did you mean") > 1:
                    message = re.sub(r" \(Did you mean one of: [^?]*\?\)", "", message)
                # ("'abc' is not a valid integer range": Click names the type, not the value)
                message = re.sub(r"(not a valid (integer|float)) range", r"\1", message)
                message = message.rstrip(".")
                if message:  # none after the help that a bare `recolor` shows
                    usage(f"{command}: {message} (see {command} -h)")
                code = e.exit_code
            else:
                code = rv if isinstance(rv, int) else ExitCode.OK  # typer.Exit's code
            return max(code, process.flush_stdout(f"recolor {name}"))
    except click.exceptions.Abort:
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        process.silence_stdout()
        return ExitCode.FAILED
    except Exception as e:
        if common._DEBUG:
            traceback.print_exc()
        if out_of_memory(e):  # a size the machine cannot hold: the user's to change
            what = "out of memory (smaller sizes or batches need less)"
        elif isinstance(e, RuntimeError) and str(e) == NO_THREAD:  # a limit of the user's
            what = (
                f"{NO_THREAD}: the system refused a thread (its limit on processes and threads, "
                "ulimit -u or a container's pids limit, or the memory for its stack"
                f"{'; fewer -j need fewer' if name in _THREADED else ''})"
            )
        elif isinstance(e, ModuleNotFoundError) and e.name and "." not in e.name:
            # torch, imported by predict and train alone: an install without it is no bug
            what = f"{e.name} is not installed for {sys.executable} (see README, Quick start)"
        else:
            kind = "" if isinstance(e, common.InternalEOF) else f"{type(e).__name__}: "
            what = f"internal error: {kind}{e} (--debug shows a traceback)"
        print(f"recolor {name}: {what}", file=sys.stderr)
        return ExitCode.FAILED


def run() -> None:
    """Console-script entry point. A process of a torchrun launch (a process group made) ends
    at once when it has said all: gloo's threads now and then aborted the interpreter's
    teardown after a usage error's line ("terminate called without an active exception",
    exit 134 for 2)."""
    code = main()
    if _launched():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # (a closed pipe: said already)
                stream.flush()
        if _tool_name(sys.argv[1:]) in RANKED:
            from ..shard import last_word

            last_word(code)  # rank 0's lines said before torchrun stops it for another's end
        if "torch.distributed" in sys.modules:
            os._exit(code)
    sys.exit(code)


def _tool_name(args: list[str]) -> str:
    """The tool an argument list runs: its first word that is no option ("" for none)."""
    return next((a for a in args if not a.startswith("-")), "")


def _launched() -> bool:
    """Whether this process is one of several of a launch (:func:`shard.rank_and_size`)."""
    from ..errors import RecolorError
    from ..shard import rank_and_size

    try:
        return rank_and_size()[1] > 1
    except RecolorError:  # (values set wrong by hand: said already, as a usage error)
        return False
