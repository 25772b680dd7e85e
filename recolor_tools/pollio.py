"""Pipes, FIFOs and devices read and written in waits of a quarter second (poll()), so that a
signal's handler runs between them: :class:`Waiting` for inputs (stdin, ``<(cmd)``),
:class:`RoomWaiting` for stdout. Standard library only: stdout is wrapped at every start
(:func:`recolor_tools.process.stdout_waits_for_room`), ``-h`` included.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
from typing import BinaryIO


class Polled(io.RawIOBase):
    """A pipe, FIFO or device waited for with poll(), a quarter second at a time: a call
    blocked in the kernel is woken by a signal only when the kernel hands the signal to this
    thread; with other threads about (numpy's OpenBLAS pool, OpenCV's) SIGTERM or Ctrl-C often
    went to one of them. Back in Python between waits, the signal's handler runs."""

    def __init__(self, fd: int, event: int) -> None:
        super().__init__()
        self._fd, self._event = fd, event

    def fileno(self) -> int:
        return self._fd

    def _wait(self) -> bool:
        """Whether the descriptor is ready within a quarter second (a poll object per wait:
        one shared by two threads raises "concurrent poll() invocation")."""
        poll = select.poll()  # (not select(): it refuses descriptors of 1024 and up)
        poll.register(self._fd, self._event)
        return bool(poll.poll(250))


class Waiting(Polled):
    """A pipe, FIFO or device read from (stdin, ``<(cmd)``), each read after waiting for it
    (to-lab fed 0.7 s and then left waiting on a stalled writer: 10 runs of 12 never ended
    on SIGTERM)."""

    def __init__(self, fd: int, owner: BinaryIO | None = None) -> None:
        super().__init__(fd, select.POLLIN)
        self._owner = owner  # the file to close with it (not stdin)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while True:
            if self._wait():
                with contextlib.suppress(BlockingIOError):  # set non-blocking by its writer
                    return os.readv(self._fd, [buffer])

    def close(self) -> None:
        if self._owner is not None:
            self._owner.close()
        super().close()


class RoomWaiting(Polled):
    """stdout's bottom layer where it is a pipe or socket: each write writes all it is given,
    waiting for room where the pipe is full and non-blocking (O_NONBLOCK belongs to the open
    pipe end, so another process that holds the same end can set it: a command beside
    recolor in `{ a; recolor to-lab ...; } | b`). Python's own layer then returned a short
    count or None unbuffered (PYTHONUNBUFFERED=1, as many containers set it), and to-lab wrote
    a third of its records, exit 0; buffered, each input failed "could not complete without
    blocking"."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, select.POLLOUT)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:])
            except BlockingIOError:
                self._wait()
        return done
