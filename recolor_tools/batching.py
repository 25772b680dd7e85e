"""Drive files through a :class:`~recolor_tools.predict.Predictor`: batches under a memory
budget, reading and composing on threads, and one failure per input that does not stop the rest.

Files are read ``batch_size`` at a time (fewer when together they exceed
:data:`~recolor_tools.predict.BATCH_PIXELS` full-resolution pixels), those of one working shape
share forward passes, and each result is composed at full resolution and handed out in input
order. An input fails alone, as a :class:`~recolor_tools.errors.RecolorError` in its place: an
unreadable file, bad hints, or an image too large for the memory free
(:class:`~recolor_tools.errors.OutOfMemory`, wherever it runs out: reading, the network, where
its batch is run again one image at a time, or composing).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .errors import OutOfMemory, RecolorError, noting, out_of_memory, said
from .fileio import is_special
from .hints import Hints
from .imageio import read_rgb
from .imagemeta import ImageMeta
from .predict import BATCH_PIXELS, Predicted, Predictor, Prepared
from .process import return_freed_memory

Found = tuple[str, np.ndarray | RecolorError, ImageMeta | None]
"""``(path, RGB or the input's error, what the file carried besides pixels)``."""


def predict_files(
    predictor: Predictor,
    paths: Iterable[str],
    batch_size: int = 8,
    hints: Callable[[str], Hints | None] | None = None,
    dtype: type | None = np.uint8,
    io_workers: int = 0,
) -> Iterator[Found]:
    """:meth:`Predictor.predict_files <recolor_tools.predict.Predictor.predict_files>`."""
    if io_workers <= 0:
        items = ((p, _prepared(predictor, p, hints)) for p in paths)
        yield from _batches(predictor, items, batch_size, dtype, None)
        return
    with (
        ThreadPoolExecutor(io_workers, thread_name_prefix="recolor-read") as readers,
        ThreadPoolExecutor(io_workers, thread_name_prefix="recolor-compose") as composers,
    ):
        try:
            items = _ahead(lambda p: _prepared(predictor, p, hints), paths, readers, batch_size)
            yield from _batches(predictor, items, batch_size, dtype, composers)
        finally:  # closed early (an error downstream): drop the queued work
            readers.shutdown(wait=True, cancel_futures=True)
            composers.shutdown(wait=True, cancel_futures=True)


def _fits(fn: Callable, *args: Any) -> Any:
    """``fn(*args)``, or :class:`OutOfMemory` where it ran out of memory (other errors go on up).
    Returned out of the except clause, whose traceback still holds ``fn``'s arrays."""
    try:
        return fn(*args)
    except Exception as e:
        if not out_of_memory(e):
            raise
    return OutOfMemory()


def _prepared(predictor: Predictor, path: str, hints: Callable | None) -> Prepared | RecolorError:
    """Step 1 for one file; a RecolorError is returned, not raised, so the rest go on."""

    def read() -> Prepared:
        meta = ImageMeta()
        # the samples as stored where they are the image: no float copy (prepare works in strips)
        rgb = read_rgb(path, meta, stored=True)
        item = predictor.prepare(rgb, hints(path) if hints else None)
        return dataclasses.replace(item, meta=meta)

    try:
        return _fits(read)
    except RecolorError as e:
        return e


def _run_each(
    predictor: Predictor, items: list[Prepared], batch_size: int
) -> list[Predicted | RecolorError]:
    """``predictor.run``; a batch that runs out of memory is run again one image at a time, and
    an image that does not fit alone is :class:`OutOfMemory` while the others go on."""
    out = _fits(predictor.run, items, batch_size)
    if not isinstance(out, OutOfMemory):
        return out
    if len(items) == 1:
        return [out]
    return [r for it in items for r in _run_each(predictor, [it], 1)]


def _batches(
    predictor: Predictor,
    items: Iterable[tuple[str, Prepared | RecolorError]],
    batch_size: int,
    dtype: type | None,
    composers: ThreadPoolExecutor | None,
) -> Iterator[Found]:
    """The batching loop of :func:`predict_files` over prepared ``(path, item)`` pairs;
    composed in the calling thread, or on ``composers``."""

    def compose(it: Predicted) -> np.ndarray | OutOfMemory:
        meta = it.prepared.meta
        # None: the source's depth (an 8-bit one composed to uint16 took 6 bytes a pixel, and
        # the encoder a third copy to round it to 8 bits)
        as_type = dtype or (np.uint16 if meta is not None and meta.depth == 16 else np.uint8)
        return _fits(predictor.compose, it, as_type)

    pending: list[tuple[str, Prepared | RecolorError]] = []
    pixels, shapes = 0, set()
    for entry in itertools.chain(items, [None]):
        if entry is not None:
            pending.append(entry)
            if isinstance(entry[1], Prepared):
                pixels += entry[1].L.size
            if len(pending) < batch_size and pixels < BATCH_PIXELS:
                continue
        ready = [it for _, it in pending if isinstance(it, Prepared)]
        preds = iter(_run_each(predictor, ready, batch_size))
        shapes, seen = {it.work.shape for it in ready}, shapes
        if not shapes <= seen:  # a new working shape's holes in the heap: given back
            return_freed_memory()
        done = [(p, it if isinstance(it, RecolorError) else next(preds)) for p, it in pending]
        pending, ready, preds = [], [], None
        if composers is not None:  # composed in the background, handed out in order
            bg = composers.submit
            done = [(p, it if isinstance(it, Exception)
                     else (bg(compose, it), it.prepared.meta))
                    for p, it in done]  # fmt: skip
        done.reverse()
        while done:  # popped, so each full-resolution L is freed once written
            p, it = done.pop()
            if isinstance(it, RecolorError):
                yield p, it, None
            elif isinstance(it, tuple):
                yield p, it[0].result(), it[1]
            else:
                yield p, compose(it), it.prepared.meta
        pixels = 0


def _ahead(
    fn: Callable[[str], Any], paths: Iterable[str], pool: ThreadPoolExecutor, depth: int
) -> Iterator[tuple[str, Any]]:
    """``(path, fn(path))`` in order, with ``fn`` running on ``pool`` up to ``depth`` paths ahead
    of the consumer (so while it works on one batch, the next one is being read).

    An input that may block for good (stdin ``-``, a FIFO, a device: not a regular file) is read
    in the consumer's thread at its turn: a signal reaches only the main thread, and a worker
    blocked on a pipe would hold Ctrl-C and SIGTERM until the pipe ended.
    """
    todo = iter(paths)

    def start(path: str) -> tuple[str, Future | None]:
        return path, None if _may_block(path) else pool.submit(noting, fn, path)

    queue: deque[tuple[str, Future | None]] = deque(
        start(p) for p in itertools.islice(todo, max(1, depth))
    )
    while queue:
        path, future = queue.popleft()
        result = fn(path) if future is None else said(future.result())  # notes in input order
        for nxt in itertools.islice(todo, 1):
            queue.append(start(nxt))
        yield path, result


def _may_block(path: str) -> bool:
    """True for stdin and for a device, FIFO or socket (:func:`fileio.is_special`)."""
    return path == "-" or is_special(path)
