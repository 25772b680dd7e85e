"""Command-line inputs to files: folders searched, globs expanded, ``.txt`` / ``.list`` files
read, and the name each input's outputs take (its path below the input folder that holds it).

No numpy and no OpenCV here: listing inputs costs no decoder.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .imagehead import IMAGE_EXTS


class Roots(list):
    """:func:`input_roots`' folders, with the index :func:`input_name` looks them up in (once
    for a run, not once per input: 4,000 folders in a list took 71 s, all but 3 in the names);
    and :attr:`named`, the files named on their own (on the command line, in a list, matched
    by a glob), which :func:`leave_out` never leaves out."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.named: set[str] = set()

    @functools.cached_property
    def first(self) -> dict[Path, int]:
        """The position of each folder's first mention."""
        return _first_positions(self)


def _first_positions(roots: Sequence[str | Path]) -> dict[Path, int]:
    first: dict[Path, int] = {}
    for i, r in enumerate(roots):
        first.setdefault(Path(r), i)
    return first


def input_roots(args: Sequence[str]) -> Roots:
    """The input directories among command-line inputs and the folders named in their
    ``.txt`` / ``.list`` files (what :func:`input_name` names below)."""
    roots = Roots()
    for a in args:
        if a in ("-", ""):
            continue
        if _is_pattern(a):  # each match as if the shell had expanded it (a folder, a list)
            matched = input_roots(glob_matches(a))
            roots += matched
            roots.named |= matched.named
            continue
        listed = _list_entries(Path(a))
        for e in listed if listed is not None else [a]:
            if os.path.isdir(e):
                roots.append(Path(e))
            else:
                roots.named.add(e)
    return roots


def _is_pattern(arg: str) -> bool:
    """A glob the shell left alone (quoted): not a file that exists under that name."""
    return any(c in arg for c in "*?[") and not os.path.lexists(arg)


def glob_matches(pattern: str) -> list[str]:
    """What ``pattern`` matches, sorted, as ``glob.glob(pattern, recursive=True)`` would
    (``**`` any number of folders; names starting with ``.`` not matched by a wildcard), except
    that ``**`` does not go through links to folders: ``glob`` followed them, so a link to a
    parent folder made the run walk ever longer paths of the same folders (memory growing,
    no end in sight)."""
    import glob

    parts = pattern.split(os.sep)
    if "**" not in parts:
        return sorted(glob.glob(pattern))
    i = parts.index("**")
    # (empty parts are doubled slashes: "d/**//*" is "d/**/*", not "/*")
    head, tail = os.sep.join(parts[:i]), os.sep.join(p for p in parts[i + 1 :] if p)
    if not head and pattern.startswith(os.sep):
        head = os.sep
    bases = (glob.glob(head) if glob.has_magic(head) else [head]) if head else [""]
    found: list[str] = []
    for base in bases:
        if not os.path.isdir(base or os.curdir):
            continue
        if not tail:  # "dir/**": the folder, which is searched whole
            found.append(base or os.curdir)
            continue
        for folder in _folders_below(base):  # a folder named "a [2019]" is no pattern
            found += glob_matches(os.path.join(glob.escape(folder), tail))
    return sorted(dict.fromkeys(found))


def _folders_below(base: str) -> list[str]:
    """``base`` and every folder below it that ``**`` stands for: not hidden, not a link; one
    that cannot be read is passed over, as ``glob`` passes over it."""
    folders, todo = [], [base]
    while todo:
        here = todo.pop()
        folders.append(here)
        try:
            with os.scandir(here or os.curdir) as entries:
                todo += [
                    os.path.join(here, e.name)
                    for e in entries
                    if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
                ]
        except OSError:
            continue
    return folders


def _list_entries(p: Path) -> list[str] | None:
    """The paths a ``.txt`` / ``.list`` file names, one per line (relative ones to its folder;
    blank lines and ``#`` comments skipped); None where ``p`` is no list: another extension, no
    regular file, or bytes that are no text (a NUL byte, as grep and git tell binary files: a
    JPEG named x.txt is the image its bytes are, not ten lines of "no such file")."""
    if p.suffix.lower() not in (".txt", ".list") or not os.path.isfile(p):
        return None
    data = p.read_bytes()
    if b"\0" in data:
        return None
    entries = []
    # As bytes: `find ... > list.txt` writes names as they are, UTF-8 or not. Split at "\n"
    # only: splitlines also splits at \r, \f, \x1c-\x1e, U+2028..., which a name may hold.
    for line in os.fsdecode(data).split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            entry = line if Path(line).is_absolute() else str(p.parent / line)
            entries.append("./-" if entry == "-" else entry)  # a file named -, not stdin
    return entries


def input_name(path: str, roots: Sequence[str | Path] = ()) -> str:
    """The name an input's outputs and partners are named after: its path below the first of
    ``roots`` (:func:`input_roots`) that holds it, as ``a/b.jpg``, so that outputs mirror an
    input directory's tree and two ``b.jpg`` in two subfolders stay apart; else its base name
    (a file named on its own); ``-`` is ``stdin``."""
    if path == "-":
        return "stdin"
    p = Path(path)
    first = roots.first if isinstance(roots, Roots) else _first_positions(roots)
    held = [first[q] for q in (p, *p.parents) if q in first]  # the folders that hold it
    if held:
        return p.relative_to(roots[min(held)]).as_posix()
    return p.name


def leave_out(paths: list[str], roots: Sequence[str | Path], folder: str | Path) -> list[str]:
    """``paths`` less those in ``folder`` when an input directory of ``roots`` holds it: an
    output or hint folder kept inside the input folder holds no inputs (``recolor predict . -o
    out/ --hints hints/`` run twice). A file named on its own (:attr:`Roots.named`) stays: an
    input, done or said (it was left out without a word)."""
    d = real_path(folder)
    if not any(d != r and d.is_relative_to(r) for r in map(real_path, roots)):
        return paths
    key = same_file_key()  # (the walk's spelling of a named file may be the one kept)
    named = {key(p) for p in roots.named} if isinstance(roots, Roots) else set()
    return [p for p in paths if p == "-" or key(p) in named or not real_path(p).is_relative_to(d)]


def real_path(path: str | Path) -> Path:
    """``path`` with its links followed; a link loop stays as it is (``Path.resolve`` raised
    RuntimeError: an internal error for a whole run, where the loop is one input's line)."""
    return Path(os.path.realpath(path))


def _listed(e: os.DirEntry, f: Path) -> bool:
    """Whether a folder's entry is listed (:func:`files_below`): a regular file, or a link
    that its reader will report (broken, or a loop: ``is_file`` raised ELOOP, which ended the
    whole run)."""
    try:
        return e.is_file() or e.is_symlink() and not f.exists()
    except OSError:
        return True


def files_below(folder: Path, exts: Sequence[str]) -> list[Path]:
    """The files below ``folder`` (recursively, sorted) whose extension is in ``exts``: regular
    files, and broken or looping links so that whoever reads them reports them; not FIFOs or
    devices, which could block the run waiting for a writer (name one to read it). A folder below
    that cannot be read is listed too, for its reader to report (``rglob`` passed over it unsaid);
    links to folders are not followed. A loop, not a recursion: ``rglob`` ended the run with a
    RecursionError in a tree 1,000 folders deep."""
    found, todo = [], [Path(folder)]
    while todo:
        here = todo.pop()
        try:
            with os.scandir(here) as entries:
                entries = list(entries)
        except OSError:
            found.append(here)
            continue
        for e in entries:
            f = Path(e.path)
            if e.is_dir(follow_symlinks=False):
                todo.append(f)
            elif f.suffix.lower() in exts and _listed(e, f):
                found.append(f)
    return sorted(found)


def expand_inputs(args: list[str], exts: tuple[str, ...] = IMAGE_EXTS) -> list[str]:
    """Turn command-line inputs into a list of files, each once.

    ``-`` stays as is (stdin); a directory is searched recursively for files whose extension is
    in ``exts`` (sorted; broken links among them, so that they are reported, but no FIFO or
    device); a pattern with ``*``, ``?`` or ``[`` that the shell left alone is expanded
    (:func:`glob_matches`), each match taken as if named here; a text file with extension
    ``.txt`` or ``.list`` is read as one path per line (a folder among them searched as above).
    Anything else is kept, so that a missing file is reported by whoever opens it. A file
    reached again (named and found in a named folder, named twice, its folder reached again
    through a link: :func:`same_file_key`) is left out there: its second output would be its
    first's. One path given as a string is a TypeError (it was
    taken for a list of one-letter names).
    """
    check_path_list(args, "args")
    key = same_file_key()
    seen: set[tuple] = set()
    out: list[str] = []
    for path in _expand(args, exts):
        # '-' and '' each time, reported or read where they stand
        if path in ("-", ""):
            out.append(path)
        elif (k := key(path)) not in seen:
            seen.add(k)
            out.append(path)
    return out


def check_path_list(paths: object, name: str) -> None:
    """TypeError for one path given where a list of them is taken (a string was taken for a
    list of one-letter names)."""
    if isinstance(paths, str | bytes | os.PathLike):
        raise TypeError(f"{name} must be a list of paths, not one path: [{paths!r}]")


def same_file_key() -> Callable[[str], tuple]:
    """A function from a path to a key that two spellings of one name share (``x``, ``./x``,
    ``d//x``, the absolute one, ``lnk/x`` where ``lnk`` leads to the folder of ``x``): its folder's
    device and inode, once per folder (``posters/ lnk/``, ``lnk`` a link to ``posters``, gave
    each file twice, under one output name), and its own name as written: a link to a file is
    another name, as ``find`` lists it, and a list of 100,000 files costs no stat of each. A
    folder that cannot be reached is its path with links followed. One ``stat``, not ``realpath``'s
    ``lstat`` of every component: 20,000 folders three deep, 0.06 s against 0.71."""
    try:
        here = os.getcwd()
    except OSError:  # a removed working folder: relative names compared as written
        here = ""
    folders: dict[str, object] = {}

    def key(path: str) -> tuple:
        folder, name = os.path.split(os.path.join(here, path))
        if folder not in folders:
            try:  # (no working folder: a relative one as written)
                st = os.stat(folder) if os.path.isabs(folder) else None
                folders[folder] = (st.st_dev, st.st_ino) if st else folder
            except (OSError, ValueError):  # missing, a loop, a NUL: its links followed
                folders[folder] = os.path.realpath(folder)  # (lnk/../x is not x)
        return folders[folder], name

    return key


def _expand(args: list[str], exts: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for arg in args:
        p = Path(arg)
        if arg in ("-", ""):  # stdin; an empty name is no file (Path("") is the current folder)
            out.append(arg)
        elif os.path.isdir(p):  # os.path's: a name too long is no folder, not an error
            found = [str(f) for f in files_below(p, exts)]
            out.extend(found or [arg])  # an empty directory is reported by whoever opens it
        elif _is_pattern(arg):  # each match as if the shell had expanded it: folders searched
            out.extend(_expand(glob_matches(arg), exts) or [arg])
        elif (listed := _list_entries(p)) is not None:
            for entry in listed:
                # a folder listed is searched as one given on the command line
                out.extend(_expand([entry], exts) if os.path.isdir(entry) else [entry])
        else:
            out.append(arg)
    return out
