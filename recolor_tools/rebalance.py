"""Colour-class statistics of a data set and class-rebalancing weights.

Natural images (and posters) are dominated by low-saturation a/b values, so a network trained
with a plain classification loss learns to predict greys and browns. Zhang et al. [1] (Sec.
2.2) re-weight the loss of each pixel by a factor w of its true class that favours rare
colours. This module counts the class of every pixel over many images (:class:`PriorAccumulator`,
:func:`compute_stats`), turns the counts into a smoothed prior and weights
(:func:`rebalance_weights`), and stores them (:class:`RebalanceStats`, an npz file that
``recolor rebalance-stats`` writes and ``train`` / ``compare --stats`` read).

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016,
       arXiv:1603.08511.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import defaults, quant
from .errors import (
    OutOfMemory,
    RecolorError,
    check_count,
    is_real,
    is_whole,
    noting,
    out_of_memory,
    said,
)
from .records import fields_equal

STATS_FORMAT = "recolor-rebalance"
STATS_VERSION = 1


def smooth_prior(p: np.ndarray, classes: np.ndarray, sigma: float = defaults.SIGMA) -> np.ndarray:
    """Smooth a class distribution with a Gaussian over the a/b plane.

    Parameters
    ----------
    p : (Q,) array_like, >= 0
        Class frequencies (any scale).
    classes : (Q, 2) array_like
        Class centres.
    sigma : float, default 5.0
        Kernel width in a/b units, 0 or at least ``defaults.SIGMA_MIN``; 0 returns ``p`` normalised.

    Returns
    -------
    (Q,) float64, sums to 1
        ``p~_q = sum_j p_j K_qj / sum_i K_ij`` with ``K_qj = exp(-|c_q - c_j|^2 / (2 sigma^2))``:
        every class spreads its mass over its neighbours (itself included) and no mass is lost
        at the gamut's edge.
    """
    p = np.asarray(p, dtype=np.float64)
    cls = quant.check_classes(classes).astype(np.float64)
    if p.shape != (cls.shape[0],) or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"p must be (Q,) = ({cls.shape[0]},) finite and >= 0, got {p.shape}")
    if not p.max(initial=0) > 0:
        raise ValueError("p has no positive entry")
    p = p / p.max()  # any scale: counts near 1e308 summed to inf, then to a prior of zeros
    if not (is_real(sigma) and (sigma == 0 or sigma >= defaults.SIGMA_MIN)):
        raise ValueError(f"sigma must be 0 or a number >= {defaults.SIGMA_MIN}, got {sigma!r}")
    if sigma > 0:
        out = np.zeros_like(p)
        for lo in range(0, len(cls), 1024):  # blocks of K: Q may be large
            d2 = ((cls[lo : lo + 1024, None, :] - cls[None, :, :]) ** 2).sum(-1)
            k = np.exp(-d2 / (2.0 * sigma * sigma))  # (block, Q), symmetric in full
            out += (p[lo : lo + 1024] / k.sum(1)) @ k
        p = out
    return p / p.sum()


def rebalance_weights(
    p: np.ndarray, classes: np.ndarray, lam: float = defaults.LAMBDA, sigma: float = defaults.SIGMA
) -> np.ndarray:
    """Class-rebalancing weights of Zhang et al. [1], Eq. 4.

    Parameters
    ----------
    p : (Q,) array_like, >= 0
        Empirical class distribution (counts are fine).
    classes : (Q, 2) array_like
        Class centres.
    lam : float in [0, 1], default 0.5
        Mix with the uniform distribution: 0 is pure inverse frequency, 1 no rebalancing.
    sigma : float, default 5.0
        Width of the Gaussian that smooths ``p`` (see :func:`smooth_prior`).

    Returns
    -------
    w : (Q,) float32
        ``w_q ∝ ((1 - lam) p~_q + lam / Q)^-1``, scaled so that ``sum_q p~_q w_q = 1`` (the
        expected weight of a pixel under the smoothed prior p~ is 1, so the loss keeps its
        scale; under the unsmoothed counts it is a little less: 0.90 on the training posters).
        Rare classes get large weights, up to ``1 / lam`` times the weight of a class of
        frequency ``1 / Q``.
    """
    if not (is_real(lam) and 0.0 <= lam <= 1.0):
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    ps = smooth_prior(p, classes, sigma)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # checked just below
        w = 1.0 / ((1.0 - lam) * ps + lam / len(ps))
        w = w / (ps * w).sum()
    if not (np.isfinite(w) & (w < np.finfo(np.float32).max)).all():  # lam = 0, a class unseen
        raise ValueError(f"lambda {lam:g} gives a colour class never seen (smoothed prior about "
                         "0) an unbounded weight (the weight is 1 / prior); use a larger "
                         "--lambda")  # fmt: skip
    return w.astype(np.float32)


@dataclass(eq=False)
class RebalanceStats:
    """Colour-class counts of a data set, their smoothed prior and rebalancing weights.

    Attributes
    ----------
    classes : (Q, 2) float32
        Class centres (a, b).
    grid : float
        Spacing of the class grid the centres lie on.
    counts : (Q,) int64
        Pixels whose nearest centre is each class (:func:`recolor_tools.quant.hard_encode`).
    prior : (Q,) float64
        ``counts`` normalised and smoothed (:func:`smooth_prior`), sums to 1.
    weights : (Q,) float32
        :func:`rebalance_weights` of the counts; ``sum(prior * weights) == 1``.
    lam, sigma : float
        Parameters the weights were made with.
    n_images, n_pixels : int
        How much data was counted.
    """

    classes: np.ndarray
    grid: float
    counts: np.ndarray
    prior: np.ndarray
    weights: np.ndarray
    lam: float
    sigma: float
    n_images: int
    n_pixels: int

    __eq__ = fields_equal  # field by field, arrays by value

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (npz, format tag ``recolor-rebalance``, version 1; atomic)."""
        from .fileio import atomic_open

        with atomic_open(path) as f:
            self.write(f)

    def write(self, f: BinaryIO) -> None:
        """Write the file :meth:`save` writes to a binary stream (a pipe too: stdout)."""
        from .fileio import write_npz

        quant.check_class_file(self.classes)  # what load reads back (ValueError: a centre twice)
        write_npz(
            f,
            format=np.array(STATS_FORMAT),
            version=np.array(STATS_VERSION),
            classes=np.asarray(self.classes, np.float32),
            grid=np.array(float(self.grid)),
            counts=np.asarray(self.counts, np.int64),
            prior=np.asarray(self.prior, np.float64),
            weights=np.asarray(self.weights, np.float32),
            lam=np.array(float(self.lam)),
            sigma=np.array(float(self.sigma)),
            n_images=np.array(int(self.n_images)),
            n_pixels=np.array(int(self.n_pixels)),
        )

    @classmethod
    def load(cls, path: str | Path, raw: bytes | None = None) -> RebalanceStats:
        """Read a file written by :meth:`save` (``raw``: its bytes, read already).

        Raises
        ------
        RecolorError
            Missing file, not an npz, wrong format tag or version, or inconsistent contents.
        """
        keys = ("classes", "grid", "counts", "prior", "weights", "lam", "sigma")
        d = quant.read_npz(path, STATS_FORMAT, STATS_VERSION, (*keys, "n_images", "n_pixels"), raw)
        try:
            stats = cls(
                classes=quant.check_class_file(d["classes"]),
                grid=float(d["grid"]),
                counts=np.asarray(d["counts"], np.int64),
                prior=np.asarray(d["prior"], np.float64),
                weights=np.asarray(d["weights"], np.float32),
                lam=float(d["lam"]),
                sigma=float(d["sigma"]),
                n_images=int(d["n_images"]),
                n_pixels=int(d["n_pixels"]),
            )
        except (ValueError, TypeError) as e:
            raise RecolorError(f"invalid rebalancing stats: {e}", path) from None
        q = len(stats.classes)
        if any(a.shape != (q,) for a in (stats.counts, stats.prior, stats.weights)):
            raise RecolorError(f"invalid rebalancing stats: arrays do not match Q = {q}", path)
        p, w = stats.prior, stats.weights  # else NaN losses in train, NaN scores in compare
        counts = np.asarray(d["counts"])
        for bad, what in (
            (counts.dtype.kind not in "iu" or (stats.counts < 0).any(), "counts that are not "
             "whole numbers >= 0"),
            (not (np.isfinite(stats.sigma) and stats.sigma >= 0), "a sigma that is no number "
             ">= 0"),
            (not (np.isfinite(p).all() and (p >= 0).all() and p.sum() > 0), "a prior that is not "
             "a distribution"),
            (not (np.isfinite(w).all() and (w > 0).all()), "weights not finite and positive"),
            (not 0 <= stats.lam <= 1, "lambda outside [0, 1]"),
            (not (np.isfinite(stats.grid) and stats.grid > 0), "a grid that is no positive number"),
        ):  # fmt: skip
            if bad:
                raise RecolorError(f"invalid rebalancing stats: {what}", path)
        return stats

    def weight_of(self, ab: np.ndarray) -> np.ndarray:
        """Rebalancing weight of each a/b value: ``weights[hard_encode(ab)]``, shape (...)."""
        return self.weights[quant.hard_encode(ab, self.classes)]


class PriorAccumulator:
    """Counts pixels per colour class, image by image, in constant memory.

    Parameters
    ----------
    classes : (Q, 2) array_like
        Class centres.
    grid : float
        Grid spacing, stored with the result.

    Examples
    --------
    >>> acc = PriorAccumulator(quant.gamut_classes(8), 8)
    >>> acc.add(np.zeros((4, 4, 2), np.float32))
    >>> acc.finish().n_pixels
    16
    """

    def __init__(self, classes: np.ndarray, grid: float) -> None:
        # no centre twice: the statistics are saved, and a set that splits one colour's prior
        # between copies is no class set load_classes or RebalanceStats.load reads back
        self.classes = quant.check_class_file(classes)
        self.grid = float(quant.check_grid(grid))  # saved with the stats, read back
        self.counts = np.zeros(len(self.classes), np.int64)
        self.n_images = 0

    def add(self, ab: np.ndarray) -> None:
        """Count one image's a/b values, (..., 2) (e.g. ``lab[..., 1:]``)."""
        self.add_counts(class_counts(ab, self.classes))

    def add_counts(self, counts: np.ndarray, n_images: int = 1) -> None:
        """Add per-class counts made elsewhere: (Q,) whole numbers >= 0, and the number of
        images they came from, a whole number >= 0 (ValueError else)."""
        if not (is_whole(n_images) and n_images >= 0):
            raise ValueError(f"n_images must be a whole number >= 0, got {n_images!r}")
        c = np.asarray(counts)
        top = np.iinfo(self.counts.dtype).max
        whole = c.dtype.kind in "iu" and c.shape == self.counts.shape
        if not whole or (c < 0).any() or (c > top).any():
            raise ValueError(
                f"counts must be {self.counts.shape} whole numbers from 0 to {top}, got "
                f"{c.dtype} {c.shape}"
            )
        if (c > top - self.counts).any():  # int64 wrapped to negative counts, unsaid
            raise ValueError(f"counts: the totals would pass {top}")
        self.counts += c.astype(self.counts.dtype)  # uint64 does not add to int64 in place
        self.n_images += n_images

    def add_files(
        self,
        paths: Iterable[str | Path],
        workers: int = 2,
        on_error: Callable[[RecolorError], None] | None = None,
    ) -> None:
        """Count image files, read by ``workers`` threads (see :func:`compute_stats`).

        An unreadable file raises its :class:`RecolorError`, or with ``on_error`` is passed to
        it and skipped.
        """
        check_count("workers", workers, least=None)  # ("2" failed in max(), naming no argument)
        for counts, n_images, err in _count_files(iter(paths), self.classes, workers):
            if err is None:
                self.add_counts(counts, n_images)
            elif on_error is None:
                raise err
            else:
                on_error(err)

    def add_sources(
        self,
        sources: Iterable,
        workers: int = 2,
        on_error: Callable[[RecolorError], None] | None = None,
    ) -> None:
        """Count image files, Lab records or a/b arrays, all of one kind (see
        :func:`compute_stats`).

        A :class:`RecolorError` (an unreadable file, a record without a/b), ValueError (a/b
        that are not finite) or MemoryError (a record too large to count) raises, or with
        ``on_error`` is passed to it as a RecolorError naming the file or record, and the
        source is skipped.
        """
        if isinstance(sources, np.ndarray) or hasattr(sources, "lab"):  # its rows were images
            raise TypeError("sources must be an iterable of files, records or arrays (one "
                            "image: a list of one)")  # fmt: skip
        check_count("workers", workers, least=None)  # (0 or less: one at a time)
        it = iter(sources)
        first = next(it, None)
        if first is None:
            return
        it = itertools.chain([first], it)
        if isinstance(first, (str, Path)):
            self.add_files(map(_name_of, it), workers, on_error)
            return
        for src in it:
            try:
                self.add(_ab_of(src))
            except (RecolorError, ValueError, MemoryError) as e:  # ValueError: NaN or a bad
                if on_error is None:  # shape in the a/b; memory: that record alone (a huge scan)
                    raise
                e = OutOfMemory() if isinstance(e, MemoryError) else e
                path = getattr(e, "path", None) or getattr(src, "name", None)
                on_error(RecolorError(getattr(e, "reason", str(e)), path))

    def merge(self, other: PriorAccumulator) -> None:
        """Add another accumulator's counts (same class set)."""
        if other.classes.shape != self.classes.shape or (other.classes != self.classes).any():
            raise ValueError("cannot merge counts over different class sets")
        self.add_counts(other.counts, other.n_images)

    def finish(self, lam: float = defaults.LAMBDA, sigma: float = defaults.SIGMA) -> RebalanceStats:
        """The statistics of everything added so far.

        Raises
        ------
        ValueError
            Nothing was counted.
        """
        if not self.counts.sum():
            raise ValueError("no pixels were counted")
        return RebalanceStats(
            classes=self.classes,
            grid=self.grid,
            counts=self.counts.copy(),
            prior=smooth_prior(self.counts, self.classes, sigma),
            weights=rebalance_weights(self.counts, self.classes, lam, sigma),
            lam=float(lam),
            sigma=float(sigma),
            n_images=self.n_images,
            n_pixels=int(self.counts.sum()),
        )


def load_class_set(path: str | Path) -> tuple[np.ndarray, float]:
    """(classes (Q, 2) float32, grid) of ``--classes FILE``: a class-set file
    (:func:`recolor_tools.quant.save_classes`) or a rebalance-stats file, whose classes they are
    (no tool writes a class-set file; the statistics name the classes they were counted over, so
    targets quantized over them match their weights).

    Raises
    ------
    RecolorError
        Neither kind of file, or an invalid one.
    """
    raw = quant.read_npz_bytes(path)  # once: a pipe (`--classes <(...)`) is read once
    try:
        return quant.load_classes(path, raw)
    except quant.WrongFormat:
        pass
    try:
        stats = RebalanceStats.load(path, raw)
    except quant.WrongFormat:
        raise RecolorError("not a class-set or rebalance-stats file", path) from None
    return stats.classes, stats.grid


def class_counts(ab: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Number of a/b values (..., 2) whose nearest centre is each class: (Q,) int64."""
    idx = quant.hard_encode(ab, classes).ravel()
    return np.bincount(idx.astype(np.intp), minlength=len(classes)).astype(np.int64)


# --- many images ------------------------------------------------------------------------------


def _file_ab(path: str) -> np.ndarray:
    """a/b of one image file, (H * W, 2) float32."""
    from .color import samples_to_lab
    from .imageio import read_rgb

    lab = samples_to_lab(read_rgb(path, stored=True))  # (8-bit samples: no float copy)
    return np.ascontiguousarray(lab[..., 1:]).reshape(-1, 2)


def compute_stats(
    sources: Iterable,
    classes: np.ndarray,
    grid: float,
    *,
    lam: float = defaults.LAMBDA,
    sigma: float = defaults.SIGMA,
    workers: int = 2,
    on_error: Callable[[RecolorError], None] | None = None,
) -> RebalanceStats:
    """Class statistics of many images, streamed.

    Parameters
    ----------
    sources : iterable of str, Path, records.Record or (..., 2) arrays
        Image files (read by ``workers`` threads), Lab records (their ``lab`` array) or a/b
        arrays; all of one kind.
    classes : (Q, 2) array_like
        Class centres; ``grid`` their spacing.
    lam, sigma : float
        See :func:`rebalance_weights`.
    workers : int, default 2
        Threads reading image files.
    on_error : callable, optional
        Called with the :class:`RecolorError` of an unreadable file (or a record without a/b),
        which is then skipped; by default the error is raised.

    Returns
    -------
    RebalanceStats

    Raises
    ------
    TypeError
        ``sources`` of two kinds, or one array or record that is not in an iterable.
    ValueError
        ``classes`` not a class set (:func:`quant.check_class_file`: no centre twice either).

    Notes
    -----
    Memory stays constant: each image is reduced to Q counts as soon as it is read. Files are
    decoded by ``workers`` threads (OpenCV and the numba kernels release the GIL).
    """
    acc = PriorAccumulator(classes, grid)
    acc.add_sources(sources, workers, on_error)
    return acc.finish(lam, sigma)


_MIXED = "sources mix file names with records or arrays"


def _ab_of(src) -> np.ndarray:
    if isinstance(src, (str, Path)):
        raise TypeError(_MIXED)
    return src.lab()[..., 1:] if hasattr(src, "lab") else src


def _name_of(src) -> str | Path:
    if not isinstance(src, (str, Path)):  # str() of an array was taken for a missing file
        raise TypeError(_MIXED)
    return src


# Images are counted in batches of about this many pixels: one kernel call per batch uses both
# cores while the reader threads decode, instead of a short call per image (10-13% faster).
_BATCH_PIXELS = 1 << 20


def _count_files(paths: Iterator, classes: np.ndarray, workers: int) -> Iterator:
    """(counts, n_images, None) per batch of files, (None, 0, RecolorError) per unreadable one.

    ``workers`` threads read ahead a bounded number of files (constant memory). Threads, not
    processes: decoding (OpenCV) and the numba kernels release the GIL, and a forked process
    inherits OpenCV's thread pool in a state that can hang it.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, workers)  # (-j 0, as predict's: one at a time)

    def one(path: str) -> tuple:
        try:
            return _file_ab(path), None
        except RecolorError as e:
            return None, e
        except Exception as e:  # one image too large for the memory free: the others go on
            if not out_of_memory(e):
                raise
            return None, OutOfMemory(path)

    batch: list[np.ndarray] = []
    pixels = 0

    def flush() -> tuple:
        nonlocal batch, pixels
        counts = class_counts(np.concatenate(batch), classes), len(batch), None
        batch, pixels = [], 0
        return counts

    def take(future) -> Iterator:
        nonlocal pixels
        ab, err = said(future.result())
        if err is not None:
            yield None, 0, err
            return
        batch.append(ab)
        pixels += len(ab)
        if pixels >= _BATCH_PIXELS:
            yield flush()

    paths = (str(p) for p in paths)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        window: collections.deque = collections.deque()
        for path in paths:
            window.append(pool.submit(noting, one, path))  # notes said in input order
            if len(window) >= 4 * workers:  # bounded read-ahead: constant memory
                yield from take(window.popleft())
        while window:
            yield from take(window.popleft())
    if batch:
        yield flush()
