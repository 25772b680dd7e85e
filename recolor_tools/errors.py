"""Exit codes and the one error type for expected failures.

Every tool reports an expected failure as one line, ``recolor <tool>: <file>: <reason>``, and
goes on with its other inputs; anything else is a bug and shows a traceback only with --debug.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ExitCode(IntEnum):
    """Process exit status shared by all tools (as in httpie and most Unix tools)."""

    OK = 0
    FAILED = 1  # some inputs failed, the others were processed
    USAGE = 2  # bad command line
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # kill (128 + SIGTERM)
    HUNG_UP = 129  # the terminal closed (128 + SIGHUP)


class RecolorError(Exception):
    """An expected failure about one input: bad file, bad record, bad option value.

    Parameters
    ----------
    reason : str
        Short, lower-case description of the problem, without the file name.
    path : str or Path, optional
        The file the problem is about; the CLI prints it before the reason.
    """

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return f"{printable(self.path)}: {self.reason}" if self.path else self.reason


class UsageError(RecolorError):
    """Options that cannot work together, found only once a file they depend on was read (a
    checkpoint to resume): the CLI exits 2, as for any other usage error. ``see_help`` False:
    a mistake of the launch (torchrun's processes), of which ``-h`` says nothing."""

    def __init__(self, reason: str, path: str | Path | None = None, see_help: bool = True) -> None:
        super().__init__(reason, path)
        self.see_help = see_help


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Write errors that mean the device is full: reported as :class:`DiskFull`."""


class DiskFull(RecolorError):
    """An output could not be written for lack of space (ENOSPC, EDQUOT, EFBIG): nothing partial
    was left and nothing was renamed over the target. The CLI ends the run after reporting it,
    since every later output would fail the same way."""

    def __init__(self, path: str | Path | None = None, errno_: int = errno.ENOSPC) -> None:
        super().__init__(_NO_SPACE_SAID.get(errno_, "no space left on device"), path)


_NO_SPACE_SAID = {
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (over a file size limit: ulimit -f, or the file system's)",
}


class ReaderGone(DiskFull):
    """An output FIFO or socket whose reader has gone (EPIPE, ``-o fifo`` read by ``head``):
    every later write would fail alike, so the run ends after reporting it, as for a full disk.
    (A closed stdout pipe, ``| head``, ends quietly instead, as Unix tools do.)"""

    def __init__(self, path: str | Path | None = None) -> None:
        RecolorError.__init__(self, "broken pipe (its reader has gone)", path)


def write_failure(e: OSError, path: str | Path | None) -> RecolorError | None:
    """What an output's write error ``e`` means for the run: :class:`DiskFull` or
    :class:`ReaderGone` naming ``path`` (both end it), else None (that output's own error)."""
    if e.errno in NO_SPACE:
        return DiskFull(path, e.errno)
    if e.errno == errno.EPIPE:
        return ReaderGone(path)
    return None


class OutOfMemory(RecolorError):
    """One input needed more memory than the machine could give (a huge scan): reported, and
    the other inputs go on (those that fit)."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__("out of memory (too large for the memory free)", path)


def is_whole(v: object) -> bool:
    """Whether ``v`` is an integer of any type (Python's, numpy's), bool excepted: the one
    check of the API's whole-number arguments (True was taken for 1, np.int64 refused)."""
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_count(name: str, value: object, optional: bool = False, least: int | None = 1) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a whole number >= ``least`` (any,
    where ``least`` is None; or None, where ``optional``): the API's sizes and counts (0 gave
    an 8 x 8 grid or range()'s own error; "2" a comparison's TypeError naming no argument)."""
    if not (optional and value is None or is_whole(value) and (least is None or value >= least)):
        at = "" if least is None else f" >= {least}"
        raise ValueError(f"{name} must be a whole number{at}, got {value!r}")


def check_flag(name: str, value: object, optional: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is True or False (Python's or numpy's;
    or None, where ``optional``): the API's flags (a truthy string, "no", was taken for True)."""
    import numpy as np

    if not (isinstance(value, bool | np.bool_) or optional and value is None):
        raise ValueError(f"{name} must be True or False{' or None' if optional else ''}, "
                         f"got {value!r}")  # fmt: skip


def is_real(v: object) -> bool:
    """Whether ``v`` is a finite real number of any type (Python's, numpy's), bool excepted: the
    one check of the API's numeric arguments before they are compared ("8" and arrays failed
    inside numpy, naming no argument)."""
    import math
    import numbers

    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def at_least(
    low: float, kind: type = int, above: bool = False, step: int | None = None
) -> Callable[[str], float]:
    """An argparse ``type`` for the repository scripts' numeric options: ``kind(text)``, finite
    and at least ``low`` (more than ``low`` with ``above``; a multiple of ``step``, for sizes the
    network halves three times).

    Anything else is argparse's usage line naming the option and exit 2, not a traceback far
    into the run (``--runs 0``: the median of nothing) nor a slice (``--first -22``).
    """
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        finite = kind is int or math.isfinite(value)  # (isfinite of a 400-digit int overflows)
        if not (finite and (value > low if above else value >= low)):
            raise argparse.ArgumentTypeError(
                f"must be {'more than' if above else 'at least'} {low}, got {text}"
            )
        if step and value % step:  # (a default step of 1 refused 0.5 for a float option)
            raise argparse.ArgumentTypeError(f"must be a multiple of {step}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value" for what kind() refuses
    return parse


def run_script(main: Callable[[], object]) -> None:
    """Run a repository script's ``main`` (weights/, docs/, benchmarks/) as the tools run: a
    :class:`RecolorError` (a missing file, a folder without images, bad weights) is one line
    ``script: file: reason`` and exit 1, not a traceback; Ctrl-C is exit 130."""
    prog = os.path.basename(sys.argv[0])
    try:
        main()
    except RecolorError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise SystemExit(ExitCode.FAILED) from None
    except KeyboardInterrupt:
        raise SystemExit(ExitCode.INTERRUPTED) from None


_OOM_TEXT = (
    "can't allocate memory",
    "Insufficient memory",
    "out of memory",
    "std::bad_alloc",
    "Cannot allocate memory",
)
"""What torch's CPU and CUDA allocators, OpenCV's, C++'s ``new`` (torch's import under ``ulimit
-v``) and the system (ENOMEM: an mmap, a shared library's mapping) say when an
allocation fails. Not the loader's "failed to map segment from shared object": it is the same
for a library on a ``noexec`` mount."""

NO_THREAD = "can't start new thread"
"""CPython's RuntimeError where the system refuses a thread (``ulimit -u``, a container's pids
limit; threads count as processes there)."""


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure: MemoryError, or torch's or OpenCV's error for one
    (``torch.OutOfMemoryError`` on CUDA, a RuntimeError on the CPU, ``cv2.error``)."""
    return isinstance(e, MemoryError) or any(t in str(e) for t in _OOM_TEXT)


_tool = ""


def set_tool(name: str) -> None:
    """Name the running tool for :func:`warn` (the CLI calls this once per command)."""
    global _tool
    _tool = name


_held = threading.local()
"""``lines``: where :func:`warn` puts its lines in a thread running :func:`noting`."""


def to_stderr(line: str) -> None:
    """Print one line on stderr, above the progress bar where one is drawn: tqdm's ``write``
    clears and redraws it (printed plainly, an error began in the middle of the bar)."""
    bars = sys.modules.get("tqdm")
    if bars is not None and getattr(bars.tqdm, "_instances", None):
        bars.tqdm.write(line, file=sys.stderr)
    elif sys.stderr is not None:  # one write: ranks share stderr (print's two ran together
        sys.stderr.write(f"{line}\n")  # under PYTHONUNBUFFERED)
        sys.stderr.flush()


def warn(reason: str, path: str | Path | None = None) -> None:
    """Tell the user something about an input that is not a failure, in the tools' one-line form
    ``recolor <tool>: <file>: <reason>`` on stderr (e.g. a multi-page TIFF read at page 1)."""
    head = f"recolor {_tool}" if _tool else "recolor"
    where = f"{printable(str(path))}: " if path is not None else ""
    held = getattr(_held, "lines", None)
    if held is not None:
        held.append(f"{head}: {where}{reason}")
    else:
        to_stderr(f"{head}: {where}{reason}")


def noting(fn: Callable[..., T], *args: object) -> tuple[T | None, BaseException | None, list]:
    """``fn(*args)`` on a worker thread with :func:`warn`'s lines held back: ``(result, None,
    lines)`` or ``(None, exception, lines)``, for :func:`said` in the consumer's thread. Inputs
    read ahead on threads (predict -j, rebalance-stats -j) told their notes in the order the
    reads ended, which changed from run to run; held so, they come in input order, as from a
    serial run."""
    _held.lines = lines = []
    try:
        return fn(*args), None, lines
    except BaseException as e:
        return None, e, lines
    finally:
        _held.lines = None


def said(noted: tuple[T | None, BaseException | None, list]) -> T:
    """The result of :func:`noting`, its held lines told first; its exception raised."""
    result, error, lines = noted
    for line in lines:
        to_stderr(line)
    if error is not None:
        raise error
    return result


def printable(name: str | os.PathLike[str]) -> str:
    """``name`` with control characters escaped (``new\\nline.png``), so that an error line
    stays one line whatever the file is called, and backslashes doubled (``x\\\\y.png``), so
    that no two names read alike (a newline and a name holding backslash and n); an empty
    name is shown as ``''``. Every file name or option value in a stderr line goes through
    it, the reason's as well as the leading one (an output, a folder named in the reason)."""
    name = os.fspath(name)
    if not name:
        return "''"
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in name)
