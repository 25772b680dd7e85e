"""Training data: image files -> (L, a/b target) crops, decoded and encoded in DataLoader workers.

Aspect handling. Posters are tall (typically 182x268). Each image is resized so that its
*shorter* side is ``size`` (training: ``size`` times a random scale in [1, 1.15]), then a
``size x size`` square is cut from it: at a random position with a random horizontal flip for
training, from the centre for validation. No padding is added, so the network never learns
artificial borders; the price is that one crop sees the middle ~68% of a poster's height
(training crops move over the whole height across epochs; validation always sees the middle).

Randomness. The crop, scale and flip of item ``i`` in epoch ``e`` come from
``numpy.random.default_rng([seed, e, i])``, so a batch depends only on the seed, the epoch and
the sampler's order: not on the number of workers, the worker that decodes it, or whether the
run was resumed in the middle of an epoch. :class:`EpochSampler` produces that order (a seeded
permutation per epoch, sharded over distributed ranks as ``DistributedSampler`` does, and able
to start part-way through an epoch).

Unreadable images are replaced by the next readable one (so batch shapes stay fixed); the
training loop prints one warning per bad file (the item's ``"bad"`` field names it).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing.queues
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import defaults
from .color import rgb_to_lab
from .errors import RecolorError, UsageError, printable, warn
from .fileio import folder_error
from .imageio import read_rgb, resize_short_side
from .inputs import expand_inputs
from .models import AB_SCALE

SCALE_JITTER = (1.0, 1.15)
"""Range of the random extra scale applied to the shorter side before a training crop."""
MAX_ASPECT = 4
"""An image longer than this many times its shorter side is cropped from a square of its
shorter side (anywhere along the long side in training, uniformly; the centre for validation),
not resized whole: a 2 x 4000 image resized whole for one 128 px crop took 393 MB and 2.4 s.
The square is resized at the scale the whole image would have been."""


def list_images(inputs: Sequence[str | Path], which: str = "training") -> list[str]:
    """Files named by ``inputs`` (files, directories, globs, .txt/.list files of paths), the
    ``which`` ("training", "validation") images.

    Missing or unreadable files are kept: the loader skips them with a warning.

    Raises
    ------
    RecolorError
        ``-`` (training cannot read stdin), a directory without images, or no inputs.
    """
    args = [str(i) for i in inputs]
    if "-" in args:
        raise UsageError(f"{which} data cannot come from stdin; give files or directories")
    paths = expand_inputs(args)
    for p in paths:
        if os.path.isdir(p):  # (as every tool says it)
            raise folder_error(p)
    if not paths:
        raise RecolorError(f"no {which} images given")
    return paths


def check_some_readable(paths: Sequence[str], which: str) -> None:
    """Raise :class:`RecolorError` naming the files (the first three) if none of ``paths`` can
    be read: before a run that would find it out at its first evaluation, an epoch later (one
    decode when the first file is good)."""
    reasons = []
    for p in paths:
        try:
            read_rgb(p)
            return
        except RecolorError as e:
            reasons.append(f"{printable(p)}: {e.reason}")
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    raise RecolorError(f"none of the {which} images is readable ({'; '.join(reasons[:3])}{more})")


class ColorDataset(Dataset):
    """Square crops of images as network inputs and targets.

    Parameters
    ----------
    paths : sequence of str
        Image files (any format :func:`recolor_tools.imageio.read_rgb` reads).
    size : int, default 128
        Crop side in pixels; a multiple of 8 (the network's input constraint).
    train : bool, default True
        Random scale, crop and flip (training) or centre crop (validation).
    head : {"reg", "cls"}
        Which targets to produce.
    classes : (Q, 2) float32, optional
        ab class centres (cls head).
    class_weights : (Q,) float32, optional
        Rebalancing weight per class (cls head); default 1.
    k, sigma : int, float
        Soft-encoding neighbours and Gaussian width (a/b units), as ``quant.soft_encode``.
    out_stride : int, default 4
        Targets are at ``size / out_stride``.
    seed : int
        Seeds the augmentation (see the module notes).
    hints : bool, default False
        Also simulate colour hints from the truth, for a model that takes them
        (:mod:`recolor_tools.hintinput`).

    Notes
    -----
    ``dataset[(epoch, i)]`` (or ``dataset[i]`` for epoch 0) returns a dict of tensors:

    - ``"L"``: (1, size, size) float32, lightness in [0, 100];
    - reg: ``"ab"``: (2, h, w) float32, a/b / 128 (h = w = size / out_stride, area-averaged);
    - cls: ``"idx"``: (k, h, w) int64 class indices, nearest first; ``"w"``: (k, h, w) float32
      soft weights summing to 1; ``"pw"``: (h, w) float32 rebalancing weight of the nearest class;
    - with ``hints``: ``"hint_ab"`` (2, size, size) float32 a/b, ``"hint_mask"`` (1, size, size)
      float32 in {0, 1}, and for cls ``"palette"`` (Q,) float32 class histogram or zeros;
    - validation only: ``"ab_full"``: (2, size, size) float32 a/b (full resolution, for metrics);
    - ``"bad"``: str, ``path: reason`` of each unreadable image replaced by this one, a line
      each, or ``""``.
    """

    def __init__(
        self,
        paths: Sequence[str],
        size: int = defaults.TRAIN_SIZE,
        *,
        train: bool = True,
        head: str = "cls",
        classes: np.ndarray | None = None,
        class_weights: np.ndarray | None = None,
        k: int = defaults.K,
        sigma: float = defaults.SIGMA,
        out_stride: int = 4,
        seed: int = 0,
        hints: bool = False,
    ) -> None:
        if size < 8 or size % 8 or size % out_stride:
            raise ValueError(f"size must be a positive multiple of 8, got {size}")
        if head == "cls" and classes is None:
            raise ValueError("the cls head needs classes")
        if not paths:
            raise ValueError("no images")
        self.paths = list(paths)
        self.size, self.train, self.head = size, train, head
        self.classes = None if classes is None else np.ascontiguousarray(classes, np.float32)
        self.class_weights = (
            None if class_weights is None else np.asarray(class_weights, np.float32)
        )
        self.k, self.sigma, self.out_stride, self.seed = k, sigma, out_stride, seed
        self.hints = hints
        self._bad: set[int] = set()  # per process: known-unreadable indices are not retried
        self._why = ""  # the first of them, "path: reason"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        found = []  # every unreadable image met here: one after another, the second went unsaid
        for j in range(len(self.paths)):  # the item itself, or the next readable one
            idx = (i + j) % len(self.paths)
            if idx in self._bad:
                continue
            try:
                rgb = read_rgb(self.paths[idx])
            except RecolorError as e:
                self._bad.add(idx)
                found.append(f"{printable(self.paths[idx])}: {e.reason}")
                self._why = self._why or found[0]
                continue
            item = self.encode(rgb, np.random.default_rng([self.seed, epoch, idx]))
            item["bad"] = "\n".join(found)  # (printable names hold no newline)
            return item
        which = "training" if self.train else "validation"
        raise RecolorError(f"none of the {which} images is readable ({self._why})")

    def crop(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The ``size x size`` RGB crop of one image (see the module notes), float32 [0, 1]."""
        s, (h, w) = self.size, rgb.shape[:2]
        short, long = min(h, w), max(h, w)
        if long > MAX_ASPECT * short:
            a = int(rng.integers(0, long - short + 1)) if self.train else (long - short) // 2
            rgb = rgb[a : a + short] if h > w else rgb[:, a : a + short]
        if not self.train:
            img = resize_short_side(rgb, s, s)
            y0, x0 = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
            return img[y0 : y0 + s, x0 : x0 + s]
        img = resize_short_side(rgb, s * rng.uniform(*SCALE_JITTER), s)
        y0 = int(rng.integers(0, img.shape[0] - s + 1))
        x0 = int(rng.integers(0, img.shape[1] - s + 1))
        img = img[y0 : y0 + s, x0 : x0 + s]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        return img

    def encode(self, rgb: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Crop, convert to Lab and build the targets of one image (see the class Notes)."""
        lab = rgb_to_lab(np.ascontiguousarray(self.crop(rgb, rng)))  # (S, S, 3)
        h = self.size // self.out_stride
        ab = cv2.resize(lab[:, :, 1:], (h, h), interpolation=cv2.INTER_AREA)  # (h, h, 2)
        item: dict[str, torch.Tensor] = {
            "L": torch.from_numpy(np.ascontiguousarray(lab[None, :, :, 0]))  # (1, S, S)
        }
        if self.head == "reg":
            item["ab"] = torch.from_numpy(ab.transpose(2, 0, 1) / np.float32(AB_SCALE))
        else:
            from . import quant  # (numba: a regression run starts without it)

            idx, w = quant.soft_encode(ab, self.classes, self.k, self.sigma)  # (h, h, k) each
            idx = idx.astype(np.int64)
            pw = (
                np.ones((h, h), np.float32)
                if self.class_weights is None
                else self.class_weights[idx[:, :, 0]]
            )
            item["idx"] = torch.from_numpy(np.ascontiguousarray(idx.transpose(2, 0, 1)))
            item["w"] = torch.from_numpy(np.ascontiguousarray(w.transpose(2, 0, 1)))
            item["pw"] = torch.from_numpy(pw)
        if self.hints:
            self.add_hints(item, lab[:, :, 1:], rng)
        if not self.train:
            item["ab_full"] = torch.from_numpy(
                np.ascontiguousarray(lab[:, :, 1:].transpose(2, 0, 1))
            )
        return item

    def add_hints(
        self, item: dict[str, torch.Tensor], ab: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Simulated hints of a crop with true a/b ``ab`` (S, S, 2), after its targets."""
        from .hintinput import simulate_palette, simulate_points

        for key, value in simulate_points(ab, rng).items():
            item[key] = torch.from_numpy(value)
        if self.head == "cls":
            q = len(self.classes)
            item["palette"] = torch.from_numpy(
                simulate_palette(item["idx"].numpy(), item["w"].numpy(), q, rng)
            )


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys for :class:`ColorDataset`: this rank's share of one epoch.

    Like ``torch.utils.data.DistributedSampler``: a permutation of ``range(n)`` from a
    ``torch.Generator`` seeded with ``seed + epoch`` (or the identity without shuffling), padded
    by repetition to a multiple of ``world`` when ``pad``, and ranks take every ``world``-th
    item from ``rank``. Unlike it, :meth:`set_epoch` can start part-way through (``start``
    items of this rank's share skipped), which is what an exact ``--resume`` needs.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world, self.pad = rank, world, pad
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order, skipping the first ``start`` items of this rank."""
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        """This rank's whole share of the current epoch, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.world > 1:
            total = math.ceil(self.n / self.world) * self.world
            order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices()[self.start :]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.start)


_LOADING_PID: int | None = None
"""The process that forked the loader workers (:func:`started`), as they inherit it."""


def worker_init(worker_id: int) -> None:
    """DataLoader worker setup: one thread per library (workers already run in parallel).

    The worker's numpy and Python RNGs are seeded from torch's per-worker seed (itself drawn from
    the DataLoader's seeded generator), so any randomness outside the per-item generator is
    reproducible too.
    """
    import random

    import numba

    from .process import as_worker

    as_worker(_LOADING_PID)  # a signal to the whole process group is the parent's to report
    multiprocessing.queues.Queue._on_queue_feeder_error = _batch_not_sent
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _batch_not_sent(queue, error: BaseException, obj: object) -> None:
    """In a worker, where its queue's feeder thread could not send a batch (the thread that
    hands the tensors' file descriptors over was refused: ``ulimit -u``, a container's pids
    limit; a batch that does not pickle): multiprocessing printed a traceback and went on, and
    the parent waited for that batch for good. Said in one line, and the worker ends, which the
    parent's DataLoader sees (:func:`recolor_tools.train.train` says so). Unsaid where the
    parent has gone (a signal to the group): its pipe broke, and the parent says what ended
    the run."""
    if not isinstance(error, (EOFError, ConnectionError)):
        warn(f"a loader worker could not hand a batch over ({type(error).__name__}: {error})")
    os._exit(1)


OPEN_FILES = 1024
"""Open files that DataLoader workers are given room for (Linux's usual soft limit)."""


def share_within_open_files() -> None:
    """Make room for workers to pass batches: torch sends each tensor of a batch as a file
    descriptor, and where ``dup`` fails (``ulimit -n 20``) its feeder threads print tracebacks
    and the batch never comes: the run hung for good. A soft limit under :data:`OPEN_FILES` is
    raised toward it, as far as the hard limit allows; where that is not far enough, tensors
    go through named shared memory instead (torch's ``file_system`` strategy, no descriptor
    held a tensor)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= OPEN_FILES:
        return
    room = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (room, hard))
        soft = room
    if soft < OPEN_FILES:
        torch.multiprocessing.set_sharing_strategy("file_system")


def started(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    """``iter(loader)``, its workers forked with SIGTERM, SIGINT and SIGHUP held until the
    iterator is whole (:func:`recolor_tools.process.signals_deferred`). Python runs a handler
    inside its own fork hooks, which only report what it raises: a signal to the group there
    was lost and the run went on training (or ended "internal error: ... DataLoader worker
    exited unexpectedly"); one raised inside the iterator's construction left it half-made.

    Workers that cannot start (no file descriptor for a pipe: ``ulimit -n``; no process:
    ``ulimit -u``, a pids limit) are a :class:`RecolorError` naming them; the half-made
    iterator's ``__del__``, which meets the attributes it never set, is not printed as
    "Exception ignored in ..." after the line."""
    from .process import signals_deferred

    global _LOADING_PID
    _LOADING_PID = os.getpid()  # (the workers' parent, as they are forked)
    try:
        with signals_deferred(), _term_blocked():
            return iter(loader)
    except OSError as e:
        if not loader.num_workers:
            raise
        failed = (e.strerror or str(e)).lower()
        hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
        try:  # the traceback's frames held the half-made iterator: it goes now, unsaid
            e.__traceback__ = None
        finally:
            sys.unraisablehook = hook
    n = loader.num_workers
    raise RecolorError(f"cannot start {n} loader worker{'s' * (n > 1)}: {failed} (the limits "
                       "on open files or processes: ulimit -n, ulimit -u); -j 0 loads in this "
                       "process")  # fmt: skip


@contextlib.contextmanager
def _term_blocked() -> Iterator[None]:
    """SIGTERM blocked in this thread, so that the workers forked within start with it blocked,
    and so does every thread they start: torch starts one before ``worker_init`` can block it
    (:func:`~recolor_tools.process.as_worker`), and a SIGTERM that thread took ran the
    worker's Python handler (put back in place of torch's by the soft-encoding's
    ``signals_deferred``), which in a fork ignores it, the parent's too: a cls run whose worker
    failed (/dev/shm full) then hung at exit, multiprocessing waiting for workers it had asked
    to end. A SIGTERM that comes meanwhile waits for the end of the block."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def make_loader(
    dataset: ColorDataset,
    sampler: EpochSampler,
    batch_size: int,
    workers: int,
    seed: int,
    *,
    drop_last: bool,
    persistent: bool,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``dataset`` in ``sampler``'s order; ``workers=0`` loads in-process.

    Workers are forked: ``quant`` sets numba's fork-safe threading layer, so that encoding in a
    worker works after numba kernels ran in this process (GNU OpenMP would abort the child).
    """
    if workers:
        # A forked child that touches OpenCV's thread pool, inherited from a parent that had
        # used it (resizing, rebalancing stats), can deadlock; with one thread there is no pool.
        cv2.setNumThreads(1)
        share_within_open_files()
        # one encoding here compiles (or loads) the numba kernels the workers call, which they
        # inherit: on an empty cache each of them compiled its own (-j 4 on 2 cores: 44 s, not 22)
        blank = np.zeros((dataset.size, dataset.size, 3), np.float32)
        dataset.encode(blank, np.random.default_rng())
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        worker_init_fn=worker_init if workers else None,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=persistent and workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )
