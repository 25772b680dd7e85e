"""Reading and writing the bytes of files: ``-`` for stdin, OS errors as one-line
:class:`~recolor_tools.errors.RecolorError`, and atomic replacement of outputs.

Every tool writes through :func:`atomic_open` / :func:`atomic_write`, so that a killed run never
leaves a half-written file (data goes to a temporary file beside the target, then
``os.replace``). No numpy and no OpenCV here: records, class sets and checkpoints use it too.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import RecolorError, write_failure
from .imagehead import SNIFF_BYTES
from .pollio import Waiting


def os_reason(err: OSError) -> str:
    """A short, lower-case reason for an OS error, as the tools print it: the library's own
    words where they are more than the errno's and name no file (tempfile's "No usable
    temporary directory found in [...]" was "no such file", naming nothing)."""
    words = err.strerror or ""
    if err.filename is None and words and err.errno and words != os.strerror(err.errno):
        return words[:1].lower() + words[1:]
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    return (err.strerror or str(err)).lower()


_stdin: BinaryIO | None = None


def check_regular(path: str | Path) -> None:
    """Raise :class:`RecolorError` unless ``path`` is a regular file (or a link to one): "no
    such file", "is a directory" or "not a regular file" (a FIFO would wait for a writer). For
    files that are read whole and by name only (weights: ``-`` is a file of that name)."""
    p = Path(path)
    if not p.is_file():
        why = "no such file" if not p.exists() else "is a directory" if p.is_dir() else None
        raise RecolorError(why or "not a regular file", path)


def stdin_binary() -> BinaryIO:
    """Stdin for binary reading, through ``pollio.Waiting`` when it is the process's own file
    descriptor 0 and no regular file (a regular file stays seekable: a record's header is
    checked against what it has left; a test's captured stdin is read as it is)."""
    global _stdin
    stream = sys.stdin.buffer
    try:
        waits = stream.fileno() == 0 and not stat.S_ISREG(os.fstat(0).st_mode)
    except (OSError, ValueError, AttributeError):
        waits = False
    if not waits:
        return stream
    if _stdin is None or _stdin.closed:
        _stdin = io.BufferedReader(Waiting(0))
    return _stdin


def open_binary(path: str | Path) -> BinaryIO:
    """Open a file for binary reading (``-`` is stdin; a pipe, FIFO or device read through
    ``pollio.Waiting``); OS errors become :class:`RecolorError`. An int is refused (TypeError):
    ``open`` takes it for a file descriptor, which the caller's close would close."""
    if isinstance(path, int):
        raise TypeError(f"path must be a str or Path, not {type(path).__name__}")
    if str(path) == "-":
        return stdin_binary()
    if str(path) == "":  # Path("") would open the current directory
        raise RecolorError("no such file", path)
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory", str(path))
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
        if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return f
        return io.BufferedReader(Waiting(f.fileno(), owner=f))
    except OSError as e:
        raise _read_error(e, path) from None
    except ValueError:  # a NUL in a name from a list: no file has it
        raise RecolorError("embedded null byte", path) from None


def read_bytes(
    path: str | Path, check_start: Callable[[bytes, str | Path], None] | None = None
) -> bytes:
    """Read a whole file (``-`` is stdin), turning OS errors into one-line :class:`RecolorError`.

    Stdin, a pipe or a device is read a MiB at a time (:func:`read_rest`); ``check_start(start,
    path)`` (e.g. :func:`check_image_start`) may refuse its first :data:`SNIFF_BYTES` before
    the rest is read.
    """
    stream = open_binary(path)
    try:
        if str(path) != "-" and not isinstance(stream.raw, Waiting):  # a regular file
            return stream.read()
        start = stream.read(SNIFF_BYTES) if check_start else b""
        if check_start and len(start) == SNIFF_BYTES:  # (shorter: all there is, read as it is)
            check_start(start, path)
        return read_rest(stream, start)
    except OSError as e:
        raise _read_error(e, path) from None
    finally:
        if str(path) != "-":
            stream.close()


def write_all(f: BinaryIO, data: bytes) -> None:
    """``f.write(data)``, all of it or an error: Python's buffered write to a pipe whose reader
    has gone returns the short count of its first write (64 KiB) and raises nothing, so a run
    that wrote one image to ``| head -c 10`` ended 0; the next write raises BrokenPipeError."""
    view = memoryview(data)
    while view:
        view = view[f.write(view) :]


def folder_named(path: Path, real: Path | None = None) -> Path:
    """The folder that a file written at ``path`` goes in, as the user named it, unless a link
    led elsewhere (``ro``, not ``/tmp/x/ro``; the link's target where ``path`` is a link);
    ``real``: ``path``'s realpath, where the caller has it."""
    if path.name not in ("", ".", "..") and not os.path.islink(path):
        # not a link: the folder named is where it goes, without realpath's walk of every
        # folder above it (each output resolved again and again: a tree 300 deep mirrored
        # to -o took 17 times as long as a flat one)
        return path.parent
    folder = (real or Path(os.path.realpath(path))).parent
    return path.parent if os.path.realpath(path.parent) == str(folder) else folder


def write_npz(f: BinaryIO, **arrays: object) -> None:
    """``np.savez(f, **arrays)``, built in memory first: zipfile seeks back to fill in each
    member's header, and in a file opened for appending (``>> f.npz``, ``-o /dev/stdout``) the
    writes land at the end instead (a broken npz, exit 0)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_all(f, buf.getbuffer())


def read_rest(stream: BinaryIO, start: bytes = b"") -> bytes:
    """``start`` and the rest of ``stream``, read a MiB at a time: one ``read()`` of a pipe that
    never ends (``yes |``) ran no signal handler, so Ctrl-C and SIGTERM went unheard while the
    memory grew."""
    chunks = [start]
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_error(err: OSError, path: str | Path) -> RecolorError:
    if isinstance(err, IsADirectoryError):
        return folder_error(path)
    return RecolorError(os_reason(err), path)


def folder_error(path: str | Path) -> RecolorError:
    """What every tool says of a folder among its inputs: :func:`~recolor_tools.inputs.
    expand_inputs` passes one on where it found no input in it (or could not look)."""
    try:
        os.listdir(path)
    except PermissionError:
        return RecolorError("permission denied", path)
    except OSError:
        pass
    return RecolorError("is a directory, and no input was found in it", path)


def writes_in_place(path: str | Path) -> bool:
    """True when ``path`` must be written in place rather than replaced by a rename.

    That is every existing target that is not a regular file (a character or block device, a
    FIFO, a socket: renaming over ``/dev/null`` as root would replace the device with a file), and
    every name under ``/dev`` or ``/proc`` (``/dev/stdout`` may lead to a regular file the shell
    opened: replacing it would lose what the shell appends) but ``/dev/shm``, a folder of
    ordinary files in memory.
    """
    where = os.path.abspath(path)
    system = where.startswith(("/dev/", "/proc/")) and not where.startswith("/dev/shm/")
    return system or is_special(path)


def is_special(path: str | Path) -> bool:
    """True for an existing path that is neither a regular file nor a folder: a character or
    block device, a FIFO, a socket (reading it may block for good; writing must not rename over
    it). False for a missing or unreachable path."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a NUL in the name (from a list)
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears whole or not at all.

    Data goes to a hidden temporary file in the directory of the file ``path`` leads to (a
    symbolic link is followed, not replaced), which replaces it with ``os.replace`` only when the
    block ends without an exception; the temporary file is removed on any error, Ctrl-C,
    SIGTERM or SIGHUP (also one that comes as it is created). A target for which
    :func:`writes_in_place` is true is opened for appending in place and never created,
    truncated or renamed over. The new file gets the permissions of the file it replaces as the
    block begins (a private 0600 output stays private, also where the block moves the old file
    away: ``last.pt`` -> ``last.prev.pt``), and its owner and group where the writer may give
    them; a new one ``0666 & ~umask`` and the writer's.

    Raises
    ------
    RecolorError
        The directory is missing or not writable (or was removed while writing: named as the
        folder), the in-place target cannot be opened, or the target cannot be replaced (a
        folder): named as ``path``, never the temporary file.
    DiskFull
        The device is full (``ENOSPC``), or the target is a FIFO whose reader has gone
        (:class:`~recolor_tools.errors.ReaderGone`); the target is left as it was.
    """
    path = Path(path)
    if writes_in_place(path):
        yield from _in_place(path)
        return
    real = Path(os.path.realpath(path))
    # The name's first 128 bytes: a 250-byte name is good (NAME_MAX is 255), its temporary one
    # (".NAME.XXXXXXXX.tmp") would not be.
    stem = os.fsdecode(os.fsencode(real.name)[:128])
    folder = folder_named(path, real)
    mode, owner = _mode_of(real)
    tmp = ""
    try:
        # named before it is made (mkstemp's name is known only once it returns: Ctrl-C or
        # SIGTERM there left an empty temporary file), so that an interrupt removes it
        while True:
            tmp = os.path.join(real.parent, f".{stem}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileExistsError:  # another's, never ours to remove
                tmp = ""
        f = os.fdopen(fd, "wb")
    except FileNotFoundError:
        raise RecolorError("no such directory", folder) from None
    except OSError as e:  # a full disk (bytes, or inodes: at the creation) ends the run
        raise write_failure(e, path) or RecolorError(os_reason(e), folder) from None
    except BaseException:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    try:
        yield f
        f.flush()  # the last buffered bytes: a full disk shows here at the latest
        # on the descriptor, not the name: a user who swapped the temporary file for a link
        # (root writing into their folder) was given the link's target
        _chown(f.fileno(), owner)  # (before the mode: a chown clears the set-id bits)
        os.fchmod(f.fileno(), mode)
        f.close()
        os.replace(tmp, real)
    except BaseException as e:
        with contextlib.suppress(OSError):
            f.close()  # flushing may fail again; the descriptor is closed all the same
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and (ends := write_failure(e, path)):
            raise ends from None
        if isinstance(e, FileNotFoundError) and not real.parent.is_dir():
            raise RecolorError("the folder was removed while writing", folder) from None
        if isinstance(e, OSError) and e.filename == tmp:  # the rename onto a folder: name it
            raise RecolorError(os_reason(e), path) from None
        raise


def _in_place(path: Path) -> Iterator[BinaryIO]:
    try:
        # O_APPEND, no O_CREAT, no O_TRUNC: a device or FIFO is written as it is, and a file
        # reached through /dev/stdout keeps what the shell wrote before us.
        f = open(os.open(path, os.O_WRONLY | os.O_APPEND), "wb")  # noqa: SIM115
    except OSError as e:
        raise RecolorError(os_reason(e), path) from None
    try:
        yield f
        f.close()
    except BaseException as e:
        with contextlib.suppress(OSError):
            f.close()
        if isinstance(e, OSError) and (ends := write_failure(e, path)):
            raise ends from None
        raise


def _mode_of(path: Path) -> tuple[int, tuple[int, int] | None]:
    """The permissions a new version of ``path`` gets, and its owner and group: those of the
    file it replaces (a private 0600 output stays private, a user's file written by root in a
    container stays the user's, as with ``>`` or ``sed -i``), else ``0666 & ~umask`` and the
    process's (None)."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    return 0o666 & ~_umask(), None


def _chown(fd: int, owner: tuple[int, int] | None) -> None:
    """Give the file open as ``fd`` the ``owner`` (uid, gid) it can, as ``sed -i`` does: both
    where allowed (root), else the group alone (one of the user's own), else neither, without
    a word."""
    if owner is None:
        return
    for uid, gid in (owner, (-1, owner[1])):
        with contextlib.suppress(OSError):
            os.fchown(fd, uid, gid)
            return


def _umask() -> int:
    """The process's umask, from /proc where Linux shows it: setting it to read it is
    process-wide, so a thread creating a file meanwhile (the write-back threads) got 0666."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def append_whole(path: str | Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created with ``0666 & ~umask`` if missing) whole or not at
    all: a write that fails or is interrupted (a full disk, Ctrl-C) is cut back to the old end
    of a regular file, so a log of JSON lines never holds half a line.

    Raises
    ------
    RecolorError
        The file cannot be opened or written, named as ``path``; :class:`DiskFull` where the
        device is full (see :func:`atomic_open`).
    """
    fd = end = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # (a FIFO cannot be cut back)
            end = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException as e:
        if end is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
        if isinstance(e, OSError):
            raise write_failure(e, path) or RecolorError(os_reason(e), path) from None
        raise
    finally:
        if fd is not None:
            os.close(fd)
