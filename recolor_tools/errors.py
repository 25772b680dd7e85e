"""Exit codes and the one error type for expected failures.

Every tool reports an expected failure as one line, ``recolor <tool>: <file>: <reason>``, and
goes on with its other inputs; anything else is a bug and shows a traceback only with --debug.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit status shared by all tools (as in httpie and most Unix tools)."""

    OK = 0
    FAILED = 1  # some inputs failed, the others were processed
    USAGE = 2  # bad command line
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


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
        return f"{self.path}: {self.reason}" if self.path else self.reason
