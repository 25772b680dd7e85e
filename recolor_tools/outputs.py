"""Where a tool's output goes: stdout, one file, or one file per input in a directory.

Every tool that writes files routes them through :class:`Outputs`, so each rule is written once:

- ``-o -`` (or no ``-o`` when the tool has no default) is stdout; an existing directory or a
  name ending in ``/`` is a directory, created if missing; anything else is one file.
- In a directory, each output is named after its input (:func:`recolor_tools.inputs.input_name`:
  the path below the input directory it was found in, ``a/c.png``, else the base name) or its
  record's header: ``DIR/a/c<suffix>``, so the outputs mirror the inputs' tree. A name that could
  leave the directory (``../../c.png``, ``/etc/c.png``) keeps its base name only.
- Two inputs that map to one output, and an output that is one of the inputs (also through a
  symbolic or hard link), are refused, each with one message.
- ``-o FILE/`` when FILE is a regular file, and a directory that cannot be created, are refused.
- Writes go through :func:`recolor_tools.fileio.atomic_open`: regular files atomically (temporary
  file, then rename), existing devices, FIFOs and sockets in place, never renamed over. A record
  stream file that no record was written to (every input failed) is not created.
- A full disk (``ENOSPC``) is :class:`~recolor_tools.errors.DiskFull`, which ends the run, and
  so is an output FIFO whose reader has gone (:class:`~recolor_tools.errors.ReaderGone`).
- ``skip_existing``: :meth:`Outputs.skip` says an input's output is already there.

No torch and no OpenCV are imported here.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from .errors import (
    NO_SPACE,
    DiskFull,
    RecolorError,
    UsageError,
    printable,
    warn,
    write_failure,
)
from .process import STDOUT_NAME, silence_stdout

SOURCE_REFUSED = "refusing to overwrite the image the record was made from"


class OutputUsage(UsageError):
    """A command line whose outputs cannot work (the CLI exits 2)."""


class _NothingWritten(Exception):
    """Ends a record stream file's :func:`~recolor_tools.fileio.atomic_open` that holds no
    record: its temporary file is removed, as on any error, and nothing is renamed."""


def is_dir_target(output: str | Path | None) -> bool:
    """An output names a directory when it exists as one or ends with a slash."""
    return output is not None and (os.path.isdir(output) or str(output).endswith(("/", os.sep)))


def safe_name(name: str) -> str:
    """What an output named ``name`` may be called inside an output directory: ``name`` itself
    where it is a relative path that stays inside (``a/b/x.png``, ``./x.png`` as ``x.png``), else
    its base name.

    ``../../x.png``, ``a/../x.png`` and ``/etc/x.png`` all give ``x.png``; names that have no
    base name left (``..``, ``/``, empty) give ``unnamed``. A backslash is a character of a
    Linux name like any other (``x\\y.png`` is one file, not ``y.png`` in ``x``).
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not name.startswith("/") and ".." not in parts and parts:
        return "/".join(parts)
    base = parts[-1] if parts else ""
    return "unnamed" if base in ("", "..") else base


def file_ids(paths: Sequence[str]) -> set[tuple[int, int]]:
    """(device, inode) of each existing path (``-`` and missing ones left out): the identity
    that symbolic and hard links share."""
    ids = set()
    for p in paths:
        with contextlib.suppress(OSError, ValueError):
            if p != "-":
                st = os.stat(p)
                ids.add((st.st_dev, st.st_ino))
    return ids


def input_ids(inputs: Sequence[str]) -> set[tuple[int, int]]:
    """:func:`file_ids` of ``inputs``, with ``-`` the file stdin reads when it is a regular
    file (``recolor to-lab < a.png >> a.png``; a pipe or terminal is no file to protect)."""
    ids = file_ids(inputs)
    if "-" in inputs and (stdin := regular_file_id(0)) is not None:
        ids.add(stdin)
    return ids


def check_not_input(out: Path, inputs: Sequence[str] | set[tuple[int, int]]) -> None:
    """Refuse to write ``out`` when it is one of ``inputs`` (paths, or their :func:`file_ids`):
    the same file, also through a symbolic or hard link."""
    try:
        st = os.stat(out)
    except (OSError, ValueError):
        return  # a new file cannot be an input
    ids = inputs if isinstance(inputs, set) else input_ids(inputs)
    if (st.st_dev, st.st_ino) in ids:
        raise RecolorError("refusing to overwrite an input", out)


def check_stdout_not_input(stream: IO, inputs: Sequence[str]) -> None:
    """Refuse a stdout that is one of ``inputs`` (``recolor to-lab a.png >> a.png``: the shell
    opened it for appending, and the record would have been added to the image), as ``cat``
    does ("input file is output"); a stdout that is no regular file is none."""
    if (own := regular_file_id(stream)) is not None:  # (a captured stream has no descriptor)
        for p in inputs:
            if own in input_ids([p]):
                raise RecolorError("refusing to overwrite an input (it is stdout too)", p)


def regular_file_id(stream: IO | int) -> tuple[int, int] | None:
    """(device, inode) of the regular file ``stream`` (or file descriptor) reads or writes
    (``>> a.png``, ``< a.png``), or None (a pipe, a terminal, a captured stream)."""
    try:
        st = os.fstat(stream if isinstance(stream, int) else stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def check_not_source(out: Path, sources: set[tuple[int, int]]) -> None:
    """Refuse to write ``out`` when it is the image one of the records was made from (their
    :attr:`~recolor_tools.records.Record.file`, (device, inode))."""
    if sources and sources & file_ids([str(out)]):
        raise RecolorError(SOURCE_REFUSED, out)


def check_folder(file: Path) -> None:
    """Raise :class:`RecolorError` naming the folder of an output ``file`` as given when it is
    missing or no folder: said before the work (it was said after it, with the real path)."""
    folder = file.parent
    if not os.path.isdir(os.path.realpath(folder)):
        raise RecolorError("not a directory" if os.path.lexists(folder) else "no such directory",
                           folder)  # fmt: skip


def check_dir(path: Path) -> None:
    """Raise :class:`RecolorError` when the output directory ``path`` cannot be made: it, or
    the nearest of its parents that exists, is no directory. Nothing is created."""
    if path.exists() and not path.is_dir():
        raise RecolorError("exists and is not a directory", path)
    above = next((p for p in path.parents if p.exists()), None)  # a file where a folder goes:
    if above is not None and not above.is_dir():  # named, as train and -o FILE name it
        raise RecolorError("not a directory", above)


def make_dir(path: Path) -> None:
    """Create an output directory (and its parents), or raise one clear :class:`RecolorError`."""
    if path.is_dir():  # (called for each output in a tree: not a stat of every folder above)
        return
    check_dir(path)
    try:
        # the missing folders top down, in a loop: mkdir(parents=True) recurses once a level,
        # and a tree 1,000 deep mirrored from an input folder ended in a RecursionError
        for folder in reversed([f for f in (path, *path.parents) if not f.exists()]):
            folder.mkdir(exist_ok=True)
    except OSError as e:
        from .fileio import os_reason

        raise RecolorError(f"cannot create the output directory ({os_reason(e)})", path) from None


def _written_before(out: Path) -> bool:
    """True when ``out`` is a regular file that is not empty."""
    try:
        st = os.stat(out)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


class Outputs:
    """The outputs of one run of one tool.

    Parameters
    ----------
    output : str or None
        ``-o`` as given: ``-``, a file, or a directory (existing, or ending in ``/``).
    inputs : sequence of str
        The input paths, never to be overwritten.
    suffix : str or callable
        Extension of each output in a directory (``".lab"``), or a function of the input name
        giving it (predict keeps each input's format).
    stdout : callable
        Returns the binary stdout (the CLI's refuses a terminal); called on first use.
    many_per_file : bool
        True for record streams (a file or stdout holds any number); False for images (one).
    default : str, optional
        The output when ``output`` is None (predict: ``recolored/``); None means stdout.
    skip_existing : bool
        :meth:`skip` returns True for an input whose output file exists.
    keep : sequence of str
        Other files the run reads (a palette image, hint files, class statistics), never to be
        overwritten either.
    hold : bool
        An image file (``-o FILE``) made from a record stream: it replaces the file only when
        the run ends, and not at all if a record of the stream was made from that file (a later
        record may be: ``to-lab b.png a.png | from-lab -o a.png`` wrote b over a).
    """

    def __init__(
        self,
        output: str | None,
        inputs: Sequence[str],
        suffix: str | Callable[[str], str],
        stdout: Callable[[], BinaryIO],
        *,
        many_per_file: bool,
        default: str | None = None,
        skip_existing: bool = False,
        flag: str = "-o",
        keep: Sequence[str] = (),
        hold: bool = False,
    ) -> None:
        output = output if output is not None else default
        self.inputs = list(inputs)
        self.keep = list(keep)
        self.suffix = suffix
        self.many_per_file = many_per_file
        self.skip_existing = skip_existing
        self.flag = flag
        self._stdout = stdout
        self.to_stdout = output is None or output == "-"
        self.directory = None if self.to_stdout or not is_dir_target(output) else Path(output)
        self.file = None if self.to_stdout or self.directory else Path(output)
        self.hold = hold and self.file is not None and not many_per_file
        self._written: set[Path] = set()
        self._skipped: set[Path] = set()  # outputs of inputs skipped as done (skip_existing)
        self._input_ids: set[tuple[int, int]] | None = None
        self._stream_id: tuple[int, int] | None = None  # what a stream file replaces
        self._stdout_id: tuple[int, int] | None = None  # a regular file stdout appends to
        self._refused = False  # a record's own image: the stream file is not renamed over it
        self._count = 0
        self._stack = contextlib.ExitStack()
        self._stream: BinaryIO | None = None

    def check_count(self, n: int) -> None:
        """Refuse ``n`` inputs known in advance when the output holds one image."""
        if n > 1 and not self.many_per_file and self.directory is None:
            where = "-" if self.to_stdout else printable(self.file)
            raise OutputUsage(f"{self.flag} {where} holds one image, but {n} inputs were given")

    def check_target(self) -> None:
        """Raise :class:`RecolorError` for an output that the run could not write, before its
        work (predict's model takes seconds to load): a file that is an input or whose folder
        is missing, a directory where a file is. Nothing is created; :meth:`__enter__` checks
        again."""
        if self.directory is not None:
            check_dir(self.directory)
        elif self.file is not None:
            check_not_input(self.file, [*self.inputs, *self.keep])
            if not self.many_per_file:
                check_folder(self.file)

    def __enter__(self) -> Outputs:
        if self.to_stdout:
            stream = self._stdout()  # refused on a terminal before any work
            check_stdout_not_input(stream, [*self.inputs, *self.keep])
            self._stdout_id = regular_file_id(stream)
        elif self.directory is not None:
            make_dir(self.directory)
        elif self.many_per_file:
            from .fileio import atomic_open

            check_not_input(self.file, [*self.inputs, *self.keep])
            self._stream_id = next(iter(file_ids([str(self.file)])), None)
            self._stream = self._stack.enter_context(atomic_open(self.file))
        else:  # refused before any work, not after the first input's
            self.check_target()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.hold and self._refused:  # the held image is a source's
            exc = (_NothingWritten, _NothingWritten(), None)
        if exc[0] is None and self._stream is not None and (self._refused or not self._count):
            # Not one record written (every input failed): the stream file's temporary file is
            # dropped, not renamed into an empty output that --skip-existing would then skip;
            # nor over the image a record was made from.
            exc = (_NothingWritten, _NothingWritten(), None)
        self._stack.__exit__(*exc)

    def without_own(self, paths: list[str], roots: Sequence[Path]) -> list[str]:
        """``paths`` less those in this run's output directory when an input directory (of
        ``roots``) holds it, and no longer inputs here: a rerun of ``recolor predict -o out/ .``
        must not take the first run's outputs for inputs (they would go to ``out/out/``)."""
        if self.directory is None:
            return paths
        from .inputs import leave_out

        kept = leave_out(paths, roots, self.directory)
        self.inputs, self._input_ids = kept, None
        return kept

    def path(self, name: str) -> Path | None:
        """The file the input (or record) ``name`` goes to; None for stdout."""
        if self.directory is None:
            return self.file
        rel = Path(safe_name(name))
        suffix = self.suffix(rel.name) if callable(self.suffix) else self.suffix
        return self.directory / rel.with_name(rel.stem + suffix)

    def skip(self, name: str) -> bool:
        """With ``skip_existing``: True when ``name``'s output file already exists (and is not
        empty: recolor never leaves an empty output, so a 0-byte one is someone else's, a
        ``touch`` or a ``>`` that failed, and was skipped as done), and no
        input skipped before this one has it (a second input of that output is not skipped:
        :meth:`write` refuses it, as it does without ``skip_existing``). A stream file
        (``to-lab -o all.lab``) that exists holds every input's record: all are skipped."""
        if not self.skip_existing:
            return False
        out = self.path(name)
        if not (out is not None and _written_before(out)):
            return False
        if self.many_per_file and self.directory is None:  # it was written whole (atomically)
            if not self._skipped:  # said once: inputs added since are skipped too
                self._skipped.add(out)
                warn("exists: every input skipped (--skip-existing), also any added since it "
                     "was written; -o DIR/ skips input by input", out)  # fmt: skip
            return True
        if out in self._written or out in self._skipped:
            return False
        self._skipped.add(out)
        return True

    def clashes(self, inputs: Sequence[str], names: Sequence[str]) -> dict[int, RecolorError]:
        """The positions in ``inputs`` (named ``names``) whose output file is an earlier
        input's too, with the error to say. Under torchrun each process writes its share of the
        inputs and sees only its own writes (two inputs of one output in two shares were both
        written), so the whole list is looked at before it is split; one process refuses them
        as it writes (:meth:`write`: only once the first was written)."""
        first: dict[Path, str] = {}
        found = {}
        for i, (path, name) in enumerate(zip(inputs, names, strict=True)):
            out = self.path(name)
            if out is not None and out in first:
                found[i] = RecolorError(f"output {printable(out)} is also that of an earlier "
                                        f"input, {printable(first[out])}")  # fmt: skip
            first.setdefault(out, path)
        return found

    def check(self, name: str, source: tuple[int, int] | None = None) -> Path | None:
        """Raise what :meth:`write` would refuse ``name``'s output for, writing nothing, so a
        tool with two outputs per input (quantize --preview) can refuse both before either is
        written; returns the file it goes to, or None. ``source``: the (device, inode) of the
        image a record was made from (:attr:`recolor_tools.records.Record.file`), refused too.

        Raises
        ------
        RecolorError
            As :meth:`write`: already written in this run, or one of the inputs.
        """
        if self._stream is not None:
            return None
        out = self.path(name)
        if out is None and source and source == self._stdout_id:  # `>> a.png`: appended to it
            self._refused = True
            raise RecolorError(SOURCE_REFUSED + " (it is stdout)")
        if out is None and self.many_per_file:
            return None
        if out is not None and source:  # before "already written": a held image must not land
            try:
                check_not_source(out, {source})
            except RecolorError:
                self._refused = True  # (acted on for a held image only: see __exit__)
                raise
        if self._count and (out is None or out in self._written) or out in self._skipped:
            where = STDOUT_NAME if out is None else printable(out)
            hint = "" if self.directory else f"; use {self.flag} DIR/"
            # no path: the caller's guard names the input (y/a.png), not its name here (a.png)
            if out in self._skipped:  # (this run wrote nothing there)
                raise RecolorError(f"output {where} exists, kept for an earlier input "
                                   f"(--skip-existing){hint}")  # fmt: skip
            raise RecolorError(f"output {where} was already written for an earlier input{hint}")
        if out is not None:
            if self._input_ids is None:  # stat the inputs once, not once per output
                self._input_ids = input_ids([*self.inputs, *self.keep])
            try:
                check_not_input(out, self._input_ids)
            except RecolorError:
                if out.name == Path(name).name:  # its own file (in place): named as it is
                    raise
                # another input (a.jpg's output a.png): the caller's guard names this one,
                # else both lines named a.png and a.jpg went unsaid
                raise RecolorError(
                    f"output {printable(out)} is another input: refusing to overwrite it"
                ) from None
            _check_writable(out)
        return out

    def write(
        self, name: str, write: Callable[[BinaryIO], None], source: tuple[int, int] | None = None
    ) -> Path | None:
        """Write ``name``'s output with ``write(stream)``; returns the file written, or None.
        ``source`` as for :meth:`check`.

        Raises
        ------
        RecolorError
            The output was already written in this run (without a path: the caller names the
            input), or is one of the inputs.
        DiskFull
            The disk (or stdout) is full; nothing was renamed over the target.
        """
        if self._stream is not None:  # one record stream file holds them all
            if source is not None and source == self._stream_id:
                self._refused = True
                raise RecolorError(SOURCE_REFUSED, self.file)
            try:
                write(self._stream)
            except OSError as e:
                if ends := write_failure(e, self.file):
                    raise ends from None
                raise
            self._count += 1
            return None
        out = self.check(name, source)
        if out is None:
            self._write_stdout(write)
            if self.many_per_file:  # stdout holds any number: nothing to count
                return None
        else:
            from .fileio import atomic_open, writes_in_place

            if out.parent != self.directory and self.directory is not None:
                make_dir(out.parent)  # a subfolder of the inputs' tree
            if self.hold and not writes_in_place(out):  # renamed when the run ends
                with contextlib.ExitStack() as held:
                    write(held.enter_context(atomic_open(out)))
                    # written whole: kept open to the end; an error above (an image the
                    # format cannot hold) dropped the temporary file, not renamed it later
                    self._stack.enter_context(held.pop_all())
            else:
                with atomic_open(out) as f:
                    write(f)
            self._written.add(out)
        self._count += 1
        return out

    def _write_stdout(self, write: Callable[[BinaryIO], None]) -> None:
        write_stdout(self._stdout(), write)


def _check_writable(out: Path) -> None:
    """Raise what writing ``out`` would end in, found before anything is written (quantize
    wrote an input's target, then found that its preview could not be): a folder in its
    place, or a folder that takes no new file (a temporary one is made there first). A full
    disk is found only by writing."""
    from .fileio import folder_named, writes_in_place

    if writes_in_place(out):
        return
    if out.is_dir():
        raise RecolorError("is a directory", out)
    folder = folder_named(out)  # atomic_open's: a link is followed
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
        # (access() says no to a read-only mount too: its reason, as writing would give it)
        read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        raise RecolorError("read-only file system" if read_only else "permission denied", folder)


def print_path(stream: IO, path: str | Path) -> None:
    """``path`` and a newline on the text stream ``stdout``, in one write (:func:`write_stdout`):
    under PYTHONUNBUFFERED ``print`` wrote the two apart, and the paths of torchrun's ranks,
    which share the pipe, ran together (``a.pngb.png``)."""
    write_stdout(stream, lambda f: f.write(f"{path}\n"))


def write_stdout(stream: IO, write: Callable[[IO], object]) -> None:
    """``write(stream)`` to stdout (``stream``: its binary buffer or the text stream) and flush
    it. A full device is :class:`DiskFull` naming ``<stdout>``, and stdout is pointed at
    /dev/null so that the flush at exit prints no second error.

    Raises
    ------
    DiskFull
        stdout's device is full.
    """
    try:
        write(stream)
        stream.flush()
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        silence_stdout()
        raise DiskFull(STDOUT_NAME, e.errno) from None
