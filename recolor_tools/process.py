"""How a recolor process ends: signals, a stdout that is closed or full, C libraries' chatter.

- SIGTERM unwinds like Ctrl-C (exit 143 instead of 130), so every atomic write removes its
  temporary file (:func:`exit_on_sigterm`).
- A stdout whose reader has gone (``| head``) or whose device is full is pointed at /dev/null, so
  the final flush at interpreter exit cannot print a second error (:func:`silence_stdout`,
  :func:`flush_stdout`).
- A standard stream closed at start (``>&-``, ``2>&-``) is given /dev/null's descriptor, so no
  file the run opens takes its number and the C libraries' chatter cannot land in an output;
  a closed stderr is written to /dev/null (the exit status alone tells), a closed stdout stays
  ``None`` for the tools to refuse writing to (:func:`fill_closed_stdio`).
- A stderr that cannot be written (a log pipe whose reader has gone, a terminal hung up, a full
  device) drops the lines: a diagnostic never ends the run it reports on (:class:`LossyStream`).
- What C libraries print straight to file descriptor 2 (libpng's "libpng error: IDAT: invalid
  stored block lengths" on a corrupt file, "libpng warning: iCCP: ..." on many good ones) is
  dropped, since each failure is already one line of recolor's (:func:`quiet_c_stderr`).
- What a C library says only there (libjpeg: "premature end of data segment", a file cut inside
  its scan whose missing part it fills with grey) is read back from it (:func:`c_stderr_of`).
- What the C heap holds freed is given back to the system between prediction batches of new
  shapes (:func:`return_freed_memory`).
- The memory and the cores this process may use, as its cgroups limit them (a container's):
  :func:`memory_free`, :func:`usable_cores`.

No torch, no OpenCV.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .errors import ExitCode

STDOUT_NAME = "<stdout>"
"""How stdout is named in error messages."""

CLOSED = "is closed, nothing can be written to it"
"""Why a closed stdout (``>&-``) stops a tool that writes there."""


class LossyStream:
    """A text stream (stderr) that drops what it cannot write: the first failed line of a log
    pipe whose reader had gone ended the run, its outputs unwritten (EPIPE, EIO of a hung-up
    terminal, ENOSPC). Everything else is the wrapped stream's."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):  # ValueError: closed
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def lossy_stderr() -> Iterator[None]:
    """Within the block, the process's own ``sys.stderr`` is a :class:`LossyStream`; a stderr
    captured in-process is left as it is."""
    own = sys.stderr is sys.__stderr__ or sys.__stderr__ is None  # (None: closed at start)
    if not own or sys.stderr is None:
        yield
        return
    previous, sys.stderr = sys.stderr, LossyStream(sys.stderr)
    try:
        yield
    finally:
        sys.stderr = previous


_HANDLED_IN: int | None = None
"""The process that set :func:`_terminate` (:func:`exit_on_sigterm`); its forks inherit it."""


def _terminate(signum: int, frame) -> None:
    if os.getpid() != _HANDLED_IN:
        return  # a fork (a DataLoader worker before :func:`as_worker`): the parent's to act on
    # A worker that the group's SIGTERM reached before it could ignore it dies of it (torch's
    # own handler, set first in each worker); torch's SIGCHLD handler here then raised "worker
    # ... is killed by signal" from the unwinding, a traceback after 143. A handler that does
    # nothing, not SIG_DFL: a SIGCHLD already caught and not yet handled (both pending, SIGTERM
    # first) then printed "OSError: Signal 17 ignored due to race condition" (SIG_IGN would
    # reap the children that multiprocessing waits for).
    signal.signal(signal.SIGCHLD, _child_ended)
    raise SystemExit(128 + signum)


def _child_ended(signum: int, frame) -> None:
    """SIGCHLD once the process is ending (:func:`_terminate`): nothing to do."""


def as_worker(parent: int | None = None) -> None:
    """In a DataLoader worker: SIGHUP and SIGINT are ignored, and SIGTERM too unless the parent
    sent it, for the parent to act on (it gets them too when they go to the process group:
    docker stop, systemd, Slurm, Ctrl-C) and to end its workers as at the end of a run; the
    parent's own SIGTERM (torch's ``terminate()`` of a worker that did not stop, also at the
    interpreter's exit) ends the worker at once, as torch's handler does; a worker whose parent
    is gone ends with it (the kernel's SIGKILL, :func:`_ends_with`; torch's watchdog, slower,
    missed a parent killed as the worker started).

    A worker that died of a group SIGTERM (torch's handler) made the parent end "internal error:
    RuntimeError: DataLoader worker ... is killed by signal"; one ended by an exception raised
    from a handler could hold the lock of the DataLoader's stop event, so that its parent hung
    for good in ``_shutdown_workers``; one that ignored its parent's SIGTERM too kept a run
    whose worker had failed from exiting. Where Python cannot tell the sender
    (``signal.sigwaitinfo``: not on macOS), torch's handler stays.

    ``parent``, the process that forked this one (its pid taken before the fork), is also
    the one whose end ends this process (:func:`_ends_with`)."""
    parent = os.getppid() if parent is None else parent
    _ends_with(parent)
    for signum in (signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.excepthook = _quiet_when_the_parent_left
    if hasattr(signal, "sigwaitinfo"):
        # held from the fork (data.started), so in every thread, torch's too; again here for
        # a loader forked otherwise; taken by the thread below, which sees who sent it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            threading.Thread(target=_end_when_the_parent_asks, args=(parent,), daemon=True).start()
        except RuntimeError:  # no thread (a pids limit): any SIGTERM ends it, as it must end
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # when the parent asks (the workers
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # fork with it held)


def _ends_with(parent: int) -> None:
    """The kernel sends this process SIGKILL when ``parent`` ends (Linux's
    ``prctl(PR_SET_PDEATHSIG)``), and where it has ended already this process ends now. A
    worker whose parent was killed (``kill -9``, the OOM killer) while it started lived on for
    good: torch's watchdog takes the parent to be whatever ``getppid()`` gives when the worker
    first looks, by then init."""
    prctl = getattr(_libc(), "prctl", None)  # (Linux only)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)


def _end_when_the_parent_asks(parent: int) -> None:
    while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
        pass
    os._exit(0)


def _quiet_when_the_parent_left(kind: type[BaseException], error: BaseException, tb) -> None:
    # A worker hands each batch's tensors to its parent as file descriptors, served by a
    # thread (multiprocessing.resource_sharer) that reports its failures to sys.excepthook;
    # when the parent ended mid-hand-over (a signal to the group), its EOFError,
    # ConnectionResetError or BrokenPipeError came with a traceback after the run's own exit
    # (one run in six). The parent, which got no batch, says what went wrong.
    if not issubclass(kind, (EOFError, OSError)):
        sys.__excepthook__(kind, error, tb)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` and SIGHUP (a closed terminal, an
    ssh session gone) ``SystemExit(129)``, so that temporary files are removed as on Ctrl-C
    (main thread only; the handlers before are restored after). A SIGHUP that was ignored
    (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _HANDLED_IN
    _HANDLED_IN = os.getpid()
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _terminate)}
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, _terminate)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def die_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM, SIGINT and SIGHUP end the process at once, as their default
    actions do (a shell reports 143, 130, 129, the tools' own statuses): for a wait inside C++,
    torch.distributed's rendezvous and barriers, where Python's handlers would run only once
    it returns (ranks that never came kept a hand-launched rank alive for good; SIGTERM and
    Ctrl-C did nothing). Only around waits where nothing of the run is half-written. Main
    thread only; a signal that was ignored stays ignored; the handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:  # (set inside: a handler that runs between two of them finds them restored)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, signal.SIG_DFL)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block, SIGTERM, SIGINT and SIGHUP are noted, and sent again at its end to the
    handlers before: for numba's compiling, which calls back into Python through ctypes, and
    ctypes swallows an exception raised there (a handler's SystemExit or KeyboardInterrupt:
    a traceback, and the run went on to exit 0). Main thread only; a signal that was ignored
    stays ignored; the handlers are restored after. Not in a fork of the process that set the
    handlers (a loader worker, whose signals :func:`as_worker` handles): there it put Python's
    handler back in place of torch's, which ignored the parent's SIGTERM (a hang at exit)."""
    forked = _HANDLED_IN not in (None, os.getpid())
    if forked or threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = {}
    try:  # (set inside: a handler that runs between two of them finds them restored)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, lambda n, _: got.append(n))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if got:
            signal.raise_signal(got[0])


def fill_closed_stdio() -> None:
    """Give each of file descriptors 0-2 that is closed /dev/null, and a closed ``sys.stderr``
    (or ``sys.stdin``) a stream on it; a closed ``sys.stdout`` stays ``None``."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_RDWR)
                if devnull != fd:  # the lowest free number: fd itself, unless a lower one is
                    os.dup2(devnull, fd)
                    os.close(devnull)
    # print(file=None) writes to stdout: every diagnostic would land in the record stream.
    if sys.stderr is None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the process's own
    if sys.stdin is None:  # reads as empty, as a closed stdin does to a C program
        with contextlib.suppress(OSError, ValueError):
            sys.stdin = open(0, closefd=False)  # noqa: SIM115


def stdout_waits_for_room() -> None:
    """Put :class:`~recolor_tools.pollio.RoomWaiting` under ``sys.stdout`` where it is a pipe
    or a socket, as buffered as it was (PYTHONUNBUFFERED: not at all)."""
    import stat

    own = sys.stdout
    if own is None or own is not sys.__stdout__:  # closed, or a caller's (a test's capture)
        return
    try:
        fd = own.fileno()
        if not (stat.S_ISFIFO(mode := os.fstat(fd).st_mode) or stat.S_ISSOCK(mode)):
            return
        own.flush()
        unbuffered = isinstance(own.buffer, io.RawIOBase)
        how = {"encoding": own.encoding, "errors": own.errors, "line_buffering": own.line_buffering}
    except (AttributeError, OSError, ValueError):
        return
    from .pollio import RoomWaiting

    raw = RoomWaiting(fd)
    binary = raw if unbuffered else io.BufferedWriter(raw)
    sys.stdout = io.TextIOWrapper(binary, write_through=unbuffered, **how)


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone or its device is full."""
    if sys.stdout is None:
        return
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def flush_stdout(prefix: str) -> int:
    """Flush the text written to stdout; a full device is one line ``<prefix>: <stdout>: ...``
    and exit status 1, not a traceback at interpreter exit. A closed pipe is re-raised."""
    if sys.stdout is None:  # closed: nothing was written to it
        return ExitCode.OK
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        silence_stdout()
        reason = (e.strerror or str(e)).lower()
        print(f"{prefix}: {STDOUT_NAME}: {reason}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def memory_free() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, or less where a
    cgroup (v2 or v1: a container's, a job's) caps the memory below it; None where neither can
    be read (not Linux)."""
    free = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            line = next(line for line in f if line.startswith("MemAvailable:"))
        free = int(line.split()[1]) * 1024
    left = _cgroup_memory_left()
    return left if free is None else free if left is None else min(free, left)


def _cgroup_memory_left() -> int | None:
    """The least of the memory cgroups' limits less their working set, along this process's
    cgroup and those above it; None (no limit, or none to read). The working set is the usage
    less the inactive file cache, which the kernel reclaims before it fails an allocation (as
    ``docker stats`` counts it): a container that had just read 750 MB of files under a 1 GiB
    limit was refused every image."""
    left = []
    for v2, where in _cgroup_dirs("memory"):
        files = ("memory.max", "memory.current") if v2 else ("memory.limit_in_bytes",
                                                              "memory.usage_in_bytes")  # fmt: skip
        with contextlib.suppress(OSError, ValueError):
            cap, used = (Path(where, name).read_text().strip() for name in files)
            if cap != "max":
                left.append(int(cap) - int(used) + _inactive_file(where, v2))
    return min(left, default=None)


def _inactive_file(where: str, v2: bool) -> int:
    """Bytes of inactive file cache that a memory cgroup's usage counts (its ``memory.stat``:
    ``inactive_file``, v1 ``total_inactive_file``); 0 where it cannot be read."""
    key = "inactive_file" if v2 else "total_inactive_file"
    with contextlib.suppress(OSError, ValueError):
        for line in Path(where, "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


CGROUPS = "/sys/fs/cgroup"
"""Where the cgroup hierarchies are mounted: v2's, or v1's one folder per controller."""

OWN_CGROUP = "/proc/self/cgroup"
"""This process's cgroups: ``hierarchy:controllers:path`` lines (v2: ``0::path``)."""


def _cgroup_dirs(controller: str) -> Iterator[tuple[bool, str]]:
    """(v2, folder) of this process's cgroup for ``controller`` (``memory``, ``cpu``) and of
    each one above it up to the root, from :data:`OWN_CGROUP`; nothing where it cannot be read.
    A limit holds for everything below it: a container's is often set on its parent (or is
    the root of what the container sees, where its own path, the host's, is not mounted)."""
    try:
        with open(OWN_CGROUP, errors="surrogateescape") as f:  # (a path is bytes)
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return
    for _, controllers, path in (e for e in entries if len(e) == 3):
        if controllers == "":  # v2: one hierarchy
            v2, root = True, CGROUPS
        elif controller in controllers.split(","):
            v2, root = False, f"{CGROUPS}/{controller}"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for n in range(len(parts), -1, -1):
            yield v2, os.path.join(root, *parts[:n])


@functools.cache
def usable_cores() -> int:
    """CPUs this process can keep busy: its affinity mask (``taskset``, a cpuset), capped by
    the CPU quota of its cgroup or one above it (a container's ``--cpus``, a Kubernetes CPU
    limit, systemd's ``CPUQuota``: v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``), rounded down (as Uber's automaxprocs: a thread more than the
    quota gets the lockstep group throttled); at least 1.

    torch, numba and OpenMP count the mask alone, so under a quota of 2 CPUs on a 64-core host
    they started 32-64 threads that the kernel then throttled for most of each period
    (benchmarks/bench_quota.py).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    for v2, where in _cgroup_dirs("cpu"):
        with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
            if v2:
                quota, period = Path(where, "cpu.max").read_text().split()
            else:
                quota, period = (Path(where, f"cpu.cfs_{name}_us").read_text().strip()
                                 for name in ("quota", "period"))  # fmt: skip
            if quota not in ("max", "-1"):
                cores = min(cores, int(quota) // int(period))
    return max(1, cores)


def return_freed_memory() -> None:
    """Give the memory that the C heap holds freed back to the system (glibc's
    ``malloc_trim(0)``; nothing where there is none, as on macOS or musl).

    glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), so after
    the first image a network pass's activations come from the heap, and each pass at a new
    working shape leaves holes that the next does not fit: ``recolor predict`` over 480 images
    of as many widths (160 high) peaked at 1.7-3.7 GiB, growing with each image; given back
    after each batch with a new shape, at 0.95 GiB, for 3-10% more time (the next pass faults
    its pages in again; benchmarks/bench_predict.py, memory part). Every few batches instead
    (32 new shapes) bounded nothing: the holes are touched again in between.
    """
    trim = getattr(_libc(), "malloc_trim", None)  # (glibc only)
    if trim is not None:
        trim(0)


@functools.cache
def _libc():
    """The C library this process runs with (ctypes), or None where it cannot be had."""
    import ctypes  # (here: 1.5 ms of every tool's start, for the few that call into it)

    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # (TypeError: Windows takes no None)
        return None


@contextlib.contextmanager
def quiet_c_stderr(keep: bool = False) -> Iterator[None]:
    """Within the block, file descriptor 2 goes to /dev/null while ``sys.stderr`` keeps writing
    to the real stderr (through a duplicate of it). ``keep`` (--debug), or a ``sys.stderr``
    that is not the process's own (captured in-process), changes nothing."""
    if keep or not isinstance(sys.stderr, LossyStream):  # (the own one is, in main)
        yield
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        yield
        return
    old = sys.stderr
    sys.stderr = LossyStream(io.TextIOWrapper(
        io.FileIO(real, "w", closefd=False), encoding=old.encoding, errors=old.errors,
        line_buffering=True,
    ))  # fmt: skip
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        sys.stderr = old
        os.dup2(real, 2)
        os.close(real)


T = TypeVar("T")


class _Fd2Lock:
    """Who may write on file descriptor 2 while :func:`c_stderr_of` listens: calls that may
    print there (``shared``) run together, one that listens (``exclusive``) alone, so that no
    other's words land in its capture. A listener waiting goes before new sharers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharing = self._waiting = 0
        self._listening = False

    # Counted and let go in one try: a signal's exception (the main thread's handlers raise)
    # between taking a count and the try that gives it back left it held, and every JPEG
    # decode after it waited for good.
    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        counted = False
        try:
            with self._cond:
                self._cond.wait_for(lambda: not (self._listening or self._waiting))
                self._sharing += 1
                counted = True
            yield
        finally:
            if counted:
                with self._cond:
                    self._sharing -= 1
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        listening = False
        try:
            with self._cond:
                self._waiting += 1
                try:
                    self._cond.wait_for(lambda: not (self._listening or self._sharing))
                finally:
                    self._waiting -= 1
                    self._cond.notify_all()
                self._listening = listening = True
            yield
        finally:
            if listening:
                with self._cond:
                    self._listening = False
                    self._cond.notify_all()


FD2 = _Fd2Lock()
"""Held shared by C calls whose words on fd 2 a listener must not hear (JPEG decodes)."""
_saved_fd2: int | None = None  # the process's fd 2 while c_stderr_of holds it on a memfd


def _after_fork_in_child() -> None:
    FD2.__init__()  # (held by another thread at the fork, it would be held for ever; in
    # place: imageio holds the object)
    if _saved_fd2 is not None:  # forked while another thread listened: the child's own back
        with contextlib.suppress(OSError):
            os.dup2(_saved_fd2, 2)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def c_stderr_of(call: Callable[[], T]) -> tuple[T, str]:
    """``call()``'s result and what C code wrote on file descriptor 2 meanwhile (a memfd),
    which is then passed on to where fd 2 goes (/dev/null under :func:`quiet_c_stderr`).

    fd 2 is the process's: the call runs alone (:data:`FD2` exclusive; calls that may print
    there hold it shared), though what other C code (not holding it) or Python wrote
    meanwhile is in the text too. In the main thread, SIGINT, SIGTERM and SIGHUP wait for the
    call's end (:func:`signals_deferred`: a handler raising between taking fd 2 and giving it
    back left it on the memfd). Where no memfd can be had (not Linux), the text is empty.
    """
    global _saved_fd2
    with signals_deferred(), FD2.exclusive():
        try:
            sink = os.memfd_create("recolor-fd2")
        except (AttributeError, OSError):
            return call(), ""
        try:
            _saved_fd2 = os.dup(2)
            os.dup2(sink, 2)
            try:
                result = call()
            finally:
                os.dup2(_saved_fd2, 2)
                os.close(_saved_fd2)
                _saved_fd2 = None
            said = os.pread(sink, os.fstat(sink).st_size, 0)
        finally:
            os.close(sink)
        with contextlib.suppress(OSError):  # (under the lock: not into another's memfd)
            os.write(2, said)
    return result, said.decode("utf-8", "replace")
