"""One training run per OUT folder: :func:`hold_out` holds OUT for the run (an exclusive
``flock`` of the folder), :func:`out_held_elsewhere` tells whether another run holds it.

No torch: the train command asks it to word a usage error before torch loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RecolorError
from .fileio import os_reason

if TYPE_CHECKING:  # (distributed imports torch)
    from .distributed import Dist
    from .trainconfig import TrainConfig


@contextlib.contextmanager
def hold_out(cfg: TrainConfig, d: Dist) -> Iterator[None]:
    """Hold OUT for the run: a second ``recolor train`` into the same folder while this one
    runs is refused (two runs mixed their metrics.jsonl lines and checkpoints, both exit 0).

    Rank 0 creates OUT and takes an exclusive ``flock`` of the folder itself (no lock file to
    leave behind; the kernel lets it go with the process, a kill included); an OUT it created
    (and the folders above it) is removed again if the run leaves it empty (a usage error
    found later). A filesystem without locks runs unlocked.

    Raises
    ------
    RecolorError
        OUT is held by another run, is no directory, cannot be created, or takes no file (a
        read-only mount).
    """
    if not d.main:
        yield
        return
    if out_held_elsewhere(cfg.out):  # said before "holds a run": that run is this one
        raise RecolorError("another recolor train is writing into it", cfg.out)
    try:
        cfg.check_out()
    except ValueError as e:
        raise RecolorError(str(e)) from None
    created = [p for p in (cfg.out, *cfg.out.parents) if not p.exists()]  # deepest first
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(cfg.out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise RecolorError(f"cannot create or open it ({os_reason(e)})", cfg.out) from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecolorError("another recolor train is writing into it", cfg.out) from None
        except OSError:  # no locks there (some network filesystems)
            pass
        held = True
        _check_writable(cfg.out)
        yield
    finally:
        os.close(fd)
        # the holder's only: two runs started together both found OUT missing, and the one
        # refused removed the other's OUT, which then trained in a folder no lock held
        with contextlib.suppress(OSError):
            for p in created if held else ():
                p.rmdir()  # only if empty: a run's files stop it


def _check_writable(out: Path) -> None:
    """Raise :class:`RecolorError` unless a file can be made in ``out``: a read-only mount was
    found at the run's first write, after a cls run had counted its class statistics."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".recolor-train-", dir=out)
    except OSError as e:
        raise RecolorError(f"cannot write there ({os_reason(e)})", out) from None
    os.close(fd)
    os.unlink(name)


def out_held_elsewhere(out: Path) -> bool:
    """Whether another ``recolor train`` holds OUT (:func:`hold_out`'s lock): a second run
    into a folder the first has written ``last.pt`` in was told to ``--resume`` it (exit 2)."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # missing, or no folder: check_out says so
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # let go at once, with the descriptor
    except BlockingIOError:
        return True
    except OSError:  # no locks there
        pass
    finally:
        os.close(fd)
    return False
