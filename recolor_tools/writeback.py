"""Ordered write-back: encode results on worker threads, write and report them in order on one.

recolor predict hands each finished image to a :class:`Writeback`. ``work`` (the costly part:
PNG deflate, JPEG DCT and entropy coding, 16-bit and ICC conversion, mostly in OpenCV and numpy
without the GIL) runs on a pool of threads; ``then`` (the atomic write and the report of the
output: its path on stdout, or one error line) runs on ONE writer thread, in the order of
submission. So the caller (the network's thread) waits for encoding only when a batch of
outputs is already waiting, and what a user sees is the serial path's, line for line.

- One writer thread, not one per output: the output router's bookkeeping (outputs written so
  far, duplicate names refused) is not thread safe, and stdout and stderr lines must keep the
  input order; writing encoded bytes is cheap next to encoding them.
- Prompt: an output is written as soon as it is encoded and those before it are written, not
  when the next one is submitted (the caller may block for good on an input such as a pipe).
- Bounded: at most ``depth`` submissions (and about ``budget`` of their ``weight``, e.g. pixels)
  wait to be encoded or written; :meth:`Writeback.submit` blocks until there is room.
- Errors: ``then`` handles its own per-output errors. An exception that escapes it (the run
  must stop: a full disk, a closed stdout) stops the writer: what is queued is dropped, and the
  exception is raised in the caller by the next :meth:`~Writeback.submit` or on leaving the
  ``with`` block.
- Ctrl-C or SIGTERM (raised in the caller, the main thread): leaving the block with an
  exception drops the queued outputs and waits for the write in progress, so every output is
  whole and no temporary file is left behind.

With 0 workers, nothing runs in the background: ``then`` runs at once in the caller, with
``work`` as its result (encoding while writing, in turn). No torch, no OpenCV.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def _nothing() -> None:
    return None


class Writeback:
    """Run ``work`` on ``workers`` threads and ``then`` on one writer thread, in order.

    Parameters
    ----------
    workers : int
        Encoding threads; 0 runs everything in the calling thread, in turn.
    depth : int
        Submissions at most waiting (encoding, encoded, or being written), at least 1.
    budget : float
        Their total ``weight`` at most, unless only one waits (one always fits).
    name : str
        Prefix of the threads' names.
    """

    def __init__(
        self, workers: int, depth: int, budget: float = float("inf"), name: str = "recolor-write"
    ) -> None:
        self.depth = max(1, depth)
        self.budget = budget
        self.name = name
        self._pool = ThreadPoolExecutor(workers, f"{name}-encode") if workers > 0 else None
        self._jobs: deque[tuple[Future | None, Callable, float]] = deque()
        self._current: tuple[Future | None, Callable, float] | None = None  # being written
        self._weight = 0.0
        self._cond = threading.Condition()
        self._closed = False  # no more submissions: the writer ends once the queue is empty
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Writeback:
        if self._pool is not None:
            self._thread = threading.Thread(target=self._write_all, name=self.name)
            self._thread.start()
        return self

    def submit(
        self,
        work: Callable[[], Any] | None,
        then: Callable[[Callable[[], Any]], None],
        weight: float = 0.0,
    ) -> None:
        """Start ``work()`` (None: nothing to do) and queue ``then(result)``, where ``result()``
        returns what ``work`` returned or raises what it raised (None for no work).

        Blocks while the queue is full; raises the exception that stopped the writer.
        """
        if self._pool is None:
            then(work or _nothing)
            return
        self._raise()
        with self._cond:
            while self._error is None and not self._fits(weight):
                self._cond.wait()
            self._raise()
            job = self._pool.submit(work) if work is not None else None
            self._jobs.append((job, then, weight))
            self._weight += weight
            self._cond.notify_all()

    def _fits(self, weight: float) -> bool:
        waiting = len(self._jobs) + (self._current is not None)
        if not waiting:
            return True
        return waiting < self.depth and self._weight + weight <= self.budget

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _write_all(self) -> None:
        """The writer thread: ``then`` of each job, oldest first, until closed and empty."""
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                self._current = self._jobs.popleft()  # its weight counts until it is written
            job, then, weight = self._current
            try:
                then(job.result if job is not None else _nothing)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                with self._cond:
                    self._error = e
                    self._drop()
            finally:
                with self._cond:
                    self._current = None
                    self._weight -= weight
                    self._cond.notify_all()

    def _drop(self, current: bool = False) -> None:
        """Forget the queued jobs (under the lock); ``current``: also the one being written,
        when its work has not started (its ``result()`` then raises ``CancelledError``)."""
        jobs = [*self._jobs, self._current] if current and self._current else [*self._jobs]
        for job, _, _ in jobs:
            if job is not None:
                job.cancel()
        self._weight -= sum(w for _, _, w in self._jobs)
        self._jobs.clear()

    def __exit__(self, kind, value, tb) -> None:
        if self._pool is None:
            return
        try:
            self._close(dropping=kind is not None)
        except BaseException:  # Ctrl-C while the last outputs were written: stop there too
            self._close(dropping=True)
            raise
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if kind is None:
            self._raise()

    def _close(self, dropping: bool) -> None:
        """No more submissions; ``dropping``: forget what waits, finish only what is begun."""
        with self._cond:
            if dropping:
                self._drop(current=True)
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
