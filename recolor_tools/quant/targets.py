"""Target records for ``recolor quantize``: a Lab record's soft (or hard) encoding, and a preview
of an image drawn in its class colours."""

from __future__ import annotations

import numpy as np

from .. import defaults
from ..errors import check_flag
from ..records import Record
from .classes import check_classes, check_grid
from .encode import hard_encode, soft_encode


def encode_record(rec: Record, classes: np.ndarray, grid: float, k: int = defaults.K,
                  sigma: float = defaults.SIGMA, hard: bool = False) -> Record:  # fmt: skip
    """The soft-encoded target record of a Lab record.

    Parameters
    ----------
    rec : recolor_tools.records.Record
        A Lab record (array ``lab``, (H, W, 3) float32).
    classes : (Q, 2) array_like
        Class centres; ``grid`` their spacing (stored in the record's meta).
    k, sigma : int, float
        As in :func:`soft_encode`.
    hard : bool
        Store only the nearest class.

    Returns
    -------
    records.Record
        Same name and size; arrays ``idx`` int16 (H, W, k) and ``w`` float32 (H, W, k), or with
        ``hard`` only ``idx`` (H, W, 1); meta ``kind`` ("target"), ``grid``, ``q``, ``k``,
        ``sigma`` and ``classes_used`` (distinct nearest classes in the image).

    Raises
    ------
    ValueError
        ``grid`` is not a positive number, or ``hard`` not True or False.
    RecolorError
        ``rec`` holds no non-empty (H, W, 3) ``lab`` array (:meth:`Record.lab
        <recolor_tools.records.Record.lab>`, which names the record's file and name).
    """
    grid = float(check_grid(grid))  # stored in the record: NaN failed only when written
    check_flag("hard", hard)  # "no" made a hard target
    ab = rec.lab()[:, :, 1:]
    if hard:
        idx = hard_encode(ab, classes)[:, :, None]
        arrays = {"idx": idx}
    else:
        idx, w = soft_encode(ab, classes, k, sigma)
        arrays = {"idx": idx, "w": w}
    meta = {
        "kind": "target", "grid": grid, "q": int(len(classes)), "k": int(idx.shape[2]),
        "sigma": None if hard else float(sigma),
        "classes_used": int(np.unique(idx[:, :, 0]).size),
    }  # fmt: skip
    return Record(rec.name, rec.size, arrays, meta)


def preview_rgb(lab: np.ndarray, classes: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """An image's colours replaced by their nearest class centre, its L kept.

    Parameters
    ----------
    lab : (H, W, 3) float32
        The Lab image: L in [0, 100], a/b about [-128, 127].
    classes : (Q, 2) array_like
        Class centres, a/b units.
    idx : (H, W) or (H, W, k) int
        Class indices, nearest first (as from :func:`soft_encode` or :func:`hard_encode`).

    Returns
    -------
    (H, W, 3) float32 RGB in [0, 1]
        Shows what the quantisation keeps of the colours (out-of-gamut results are clipped).
    """
    from ..color import check_image, lab_to_rgb

    lab = check_image(lab, "lab")
    idx = np.asarray(idx)
    if idx.ndim == 3:
        idx = idx[:, :, 0]
    if idx.shape != lab.shape[:2]:  # (2,) was broadcast over every row, unsaid
        raise ValueError(f"idx must be (H, W) or (H, W, k) of lab's {lab.shape[:2]}, got "
                         f"{np.shape(idx)}")  # fmt: skip
    centres = check_classes(classes)
    # -1 took the last class without a word, 2.0 failed deep in numpy
    if idx.dtype.kind not in "iu" or idx.size and not 0 <= idx.min() <= idx.max() < len(centres):
        raise ValueError(f"idx must be class indices from 0 to {len(centres) - 1}")
    out = np.array(lab, dtype=np.float32, copy=True)
    out[:, :, 1:] = centres[idx]
    return lab_to_rgb(out)
