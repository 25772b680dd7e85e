"""What the options that name files accept, checked before any input is read: ``-o`` as an
image file, a folder or a device, ``--format`` against the name, options that name one file,
``FLAG -`` (stdin), two options naming one file; and the encoders of image outputs."""

from __future__ import annotations

import functools
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import printable, warn

if TYPE_CHECKING:
    from .common import Tool


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


RECORD_FILES = (".lab", ".target")
"""The record streams' extensions (to-lab, quantize)."""
_RECOLOR_FILES = (*RECORD_FILES, ".npz", ".pt")
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
