"""Pairing predictions with ground truths by file name, for ``recolor compare``.

Two folders of images are matched by each file's path below its folder, without extension, so
``out/sub/a.png`` pairs with ``truth/sub/a.jpg``. The files themselves are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recolor_tools.errors import RecolorError, printable
from recolor_tools.inputs import real_path


def pair_by_stem(
    pred_files: Sequence[str | Path],
    truth_files: Sequence[str | Path],
    pred_root: str | Path,
    truth_root: str | Path,
) -> tuple[list[tuple[str, Path, Path]], list[RecolorError]]:
    """Match predictions to ground truths by their path below the root, without extension.

    Parameters
    ----------
    pred_files, truth_files : sequences of paths
        Image files found below ``pred_root`` and ``truth_root`` (e.g. by
        ``inputs.expand_inputs``); ``a.jpg`` matches ``a.png``, ``sub/a.png`` matches
        ``sub/a.tif``.
    pred_root, truth_root : path
        The two directories.

    Returns
    -------
    pairs : list of (name, pred_path, truth_path)
        Sorted by name (the relative path without extension).
    problems : list of RecolorError
        One per file without a partner, or whose name is taken by another file of its directory
        (``a.png`` after ``a.jpg``: the first in the sorted listing is paired, the others are
        reported and left out of ``pairs``).

    Notes
    -----
    When one root lies inside the other (``recolor predict -o out/ .`` then ``recolor compare
    out/ .``), the files below the inner root belong to its side only: the outer root's listing
    holds them too, but they are the other side's files, not partners to report as missing.
    """
    problems: list[RecolorError] = []
    pred_root, truth_root = Path(pred_root), Path(truth_root)
    pred_files = _outside(pred_files, pred_root, truth_root)
    truth_files = _outside(truth_files, truth_root, pred_root)

    def index(files: Sequence[str | Path], root: str | Path) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for f in map(Path, files):
            key = f.relative_to(root).with_suffix("").as_posix()
            if key in out:
                problems.append(RecolorError(f"same name as {printable(out[key])}", f))
            else:
                out[key] = f
        return out

    preds, truths = index(pred_files, pred_root), index(truth_files, truth_root)
    for key in sorted(preds.keys() - truths.keys()):
        problems.append(
            RecolorError(f"no ground truth of that name in {printable(truth_root)}", preds[key])
        )
    for key in sorted(truths.keys() - preds.keys()):
        problems.append(
            RecolorError(f"no prediction of that name in {printable(pred_root)}", truths[key])
        )
    pairs = [(k, preds[k], truths[k]) for k in sorted(preds.keys() & truths.keys())]
    return pairs, problems


def _outside(files: Sequence[str | Path], root: Path, nested: Path) -> Sequence[str | Path]:
    """``files`` found below ``root``, less those below ``nested`` if it is a folder inside it."""
    root, nested = real_path(root), real_path(nested)
    if nested == root or not nested.is_relative_to(root):
        return files
    return [f for f in files if not real_path(f).is_relative_to(nested)]
