"""Shared test helpers: run the real CLI in a subprocess, and make test images."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
RECOLOR = [sys.executable, "-m", "recolor_tools"]


@contextlib.contextmanager
def deep_tree(root: Path, depth: int, *also: Path) -> Iterator[Path]:
    """``root/d/d/.../d``, ``depth`` folders deep, made one level at a time; removed after, with
    the trees ``also`` (outputs mirroring it), without recursion: pathlib's mkdir(parents=True)
    and shutil.rmtree recurse once a level, and pytest's own clean-up would fail on them."""
    deep = root
    deep.mkdir()
    for _ in range(depth):
        deep = deep / "d"
        deep.mkdir()
    try:
        yield deep
    finally:
        for tree in (t for t in (root, *also) if t.is_dir()):
            folders, todo = [], [tree]
            while todo:
                folders.append(todo.pop())
                for e in os.scandir(folders[-1]):
                    (todo.append(Path(e.path)) if e.is_dir(follow_symlinks=False)
                     else os.unlink(e.path))  # fmt: skip
            for folder in reversed(folders):
                folder.rmdir()


def run(args, input: bytes | None = None, cwd=None, check_rc: int | None = None, env=None, **kw):
    """Run ``recolor ARGS`` as a subprocess (``env``: variables added to this one's); returns
    CompletedProcess with bytes stdout/stderr."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run(
        [*RECOLOR, *map(str, args)],
        input=input,
        stdin=None if input is not None else kw.pop("stdin", subprocess.DEVNULL),
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=600,
        **kw,
    )
    if check_rc is not None:
        assert p.returncode == check_rc, p.stderr.decode(errors="replace")
    return p


# What libstdc++ prints when std::terminate ends a process with no exception in flight (most
# often a C++ thread object destroyed unjoined): a torchrun rank aborting inside torch's C++ code
# (SIGABRT). The CI saw it once in some thirty runs of the suite (the DDP test's rank 1), never
# in 200 launches on the development machine; where in torch it comes from is not known yet.
CPP_ABORT = "terminate called without an active exception"


def torchrun(args, fresh: tuple[Path, ...] = (), env=None, nproc: int = 2, script=None):
    """Run ``recolor ARGS`` as ``nproc`` CPU processes under torchrun (``--standalone``); a
    ``script`` in place of ``-m recolor_tools`` gets ARGS.

    A launch that fails only because a rank aborted with :data:`CPP_ABORT` is run once more,
    after removing ``fresh`` (its outputs), and the first attempt's stderr is given as a
    warning: PYTHONFAULTHANDLER makes the aborting rank print its Python stack there, for
    whoever finds out where it comes from. Any other failure, or the abort twice, stands.
    """
    env = {
        **os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1",
        **(env or {}),
    }  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    entry = [str(script)] if script else ["-m", "recolor_tools"]
    launch += ["--nproc_per_node", str(nproc), *entry, *map(str, args)]
    (p,) = _again_after_an_abort(
        lambda: [subprocess.run(launch, capture_output=True, env=env, timeout=600, check=False)],
        fresh,
    )
    return p


def _again_after_an_abort(launch, fresh: tuple[Path, ...]) -> list[subprocess.CompletedProcess]:
    """``launch()``'s processes, launched once more (``fresh`` emptied first) where one failed
    only because it aborted with :data:`CPP_ABORT`; the first attempt's stderr is a warning."""
    done = launch()
    err = "".join(p.stderr.decode(errors="replace") for p in done)
    if any(p.returncode for p in done) and CPP_ABORT in err:
        note = f"a rank aborted in C++, launched again; its stderr:\n{err}"
        warnings.warn(note, stacklevel=3)
        for f in fresh:
            shutil.rmtree(f, ignore_errors=True)
            f.mkdir(parents=True)
        done = launch()
    return done


def ranks_by_hand(
    *per_rank: list, fresh: tuple[Path, ...] = ()
) -> list[subprocess.CompletedProcess]:
    """Run ``recolor ARGS`` once per rank, each with its own ARGS, as the processes of one launch
    (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT set by hand, as a job script on each machine of
    a cluster would): what torchrun cannot give, other arguments to each rank. A launch where a
    rank aborted in C++ is run again, as :func:`torchrun`'s."""
    return _again_after_an_abort(lambda: _ranks(per_rank), fresh)


def _ranks(per_rank) -> list[subprocess.CompletedProcess]:
    import socket

    with socket.socket() as s:  # a free port for rank 0's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1",
           "WORLD_SIZE": str(len(per_rank)), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}  # fmt: skip
    procs = [
        subprocess.Popen(
            [*RECOLOR, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, "RANK": str(r)},
        )
        for r, args in enumerate(per_rank)
    ]
    try:
        done = [(p, *p.communicate(timeout=300)) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, o, e in done]


def drain_pty(master: int, slave: int) -> bytes:
    """What a finished process wrote to a pseudo-terminal (``pty.openpty()``'s two ends, both
    closed here)."""
    import contextlib

    os.close(slave)
    out = b""
    with contextlib.suppress(OSError):  # reading a drained pty raises EIO on Linux
        while chunk := os.read(master, 65536):
            out += chunk
    os.close(master)
    return out


def pipeline(*commands: list, input: bytes | None = None) -> list[subprocess.CompletedProcess]:
    """Run ``recolor A | recolor B | ...`` through real OS pipes; returns each stage's result.
    Every stage is started before ``input`` is fed (by a thread), each one's stderr goes to a
    file, and the last one's stdout is read while the others run: read one pipe at a time, a
    stage blocked on a full pipe waited for good on a reader that waited for it. A stage that
    has not ended after 10 minutes is killed (the test fails, the run goes on)."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    procs, errs = [], []
    with contextlib.ExitStack() as files:
        try:
            for args in commands:
                errs.append(files.enter_context(tempfile.TemporaryFile()))
                first = subprocess.PIPE if input is not None else subprocess.DEVNULL
                p = subprocess.Popen([*RECOLOR, *map(str, args)],
                                     stdin=procs[-1].stdout if procs else first,
                                     stdout=subprocess.PIPE, stderr=errs[-1], env=env)  # fmt: skip
                if procs:
                    procs[-1].stdout.close()  # the producer sees SIGPIPE if the consumer exits
                procs.append(p)
            if input is not None and len(procs) > 1:
                threading.Thread(target=_feed, args=(procs[0].stdin, input), daemon=True).start()
            out, _ = procs[-1].communicate(input if len(procs) == 1 else None, timeout=600)
            for p in procs:
                p.wait(timeout=600)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        said = [os.pread(err.fileno(), os.fstat(err.fileno()).st_size, 0) for err in errs]
    outs = [b""] * (len(procs) - 1) + [out]
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e)
            for p, o, e in zip(procs, outs, said, strict=True)]  # fmt: skip


def _feed(stream, data: bytes) -> None:
    try:
        with contextlib.suppress(BrokenPipeError):  # (the stage may end before reading it all)
            stream.write(data)
    finally:
        with contextlib.suppress(OSError):
            stream.close()


@contextlib.contextmanager
def fifo_read_whole(path: Path) -> Iterator[list[bytes]]:
    """A FIFO at ``path`` (made if missing) read whole by a thread while the block runs; what it
    read is the list's item after the block (see :func:`_fifo_end`)."""
    got: list[bytes] = []
    with _fifo_end(path, lambda: got.append(path.read_bytes()), os.O_WRONLY):
        yield got


@contextlib.contextmanager
def fifo_write_whole(path: Path, data: bytes) -> Iterator[None]:
    """A FIFO at ``path`` (made if missing) that a thread writes ``data`` into, then closes,
    while the block runs (a process substitution's ``<(cmd)``; see :func:`_fifo_end`)."""

    def write() -> None:
        with contextlib.suppress(BrokenPipeError):  # (let go: its reader was the test's)
            path.write_bytes(data)

    with _fifo_end(path, write, os.O_RDONLY):
        yield


@contextlib.contextmanager
def _fifo_end(path: Path, use, other: int) -> Iterator[None]:
    """``use()`` on a daemon thread while the block runs; after it, the thread is let go by
    non-blocking opens of the other end (``other``) until it ends, at most 60 s: a run that
    failed never opened the FIFO, and a blocking open for that, after the thread had closed
    its end, waited for good."""
    if not path.exists():
        os.mkfifo(path)
    thread = threading.Thread(target=use, daemon=True)
    thread.start()
    try:
        yield
    finally:
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:  # (it may not have opened it)
            with contextlib.suppress(OSError):  # ENXIO: no reader waits (it has read its end)
                os.close(os.open(path, other | os.O_NONBLOCK))
            thread.join(0.05)


def sigint_default() -> None:
    """``preexec_fn`` of a child that must see Ctrl-C (or a hang-up): a run of the tests started
    in the background by a shell (``make test &``) has SIGINT ignored, one under ``nohup``
    SIGHUP, and children inherit that (recolor keeps an ignored SIGHUP ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def smooth_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, colourful uint8 RGB test image (random low-frequency colour field)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(3, 4, 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or gray, or RGBA) array with OpenCV, converting channel order."""
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        rgb = rgb[:, :, ::-1]
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[:, :, [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb)), path
    return path


def image_folder(folder: Path, n: int) -> Path:
    """``folder`` made with ``n`` small colour images ``0.png`` ... (40 x 48, each its own)."""
    folder.mkdir()
    for i in range(n):
        write_rgb(folder / f"{i}.png", smooth_image(40, 48, i))
    return folder


def read_rgb_u8(path_or_bytes) -> np.ndarray:
    """Read an image file or encoded bytes back as uint8 RGB."""
    if isinstance(path_or_bytes, bytes | bytearray):
        bgr = cv2.imdecode(np.frombuffer(path_or_bytes, np.uint8), cv2.IMREAD_COLOR)
    else:
        bgr = cv2.imread(str(path_or_bytes), cv2.IMREAD_COLOR)
    assert bgr is not None
    return bgr[:, :, ::-1].copy()


def disk_full(monkeypatch) -> None:
    """Make every atomic write's temporary file fail with ENOSPC (a full disk), in-process."""
    import errno
    import io

    import recolor_tools.fileio as fileio

    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, *a, **kw):
        real_fdopen(fd, *a, **kw).close()
        return io.BufferedWriter(Full())

    monkeypatch.setattr(fileio.os, "fdopen", fdopen)


# 25 ab classes on a grid of spacing 20: small, and all well inside the sRGB gamut near mid L.
CLASSES = np.stack(np.meshgrid(np.arange(-40, 41, 20), np.arange(-40, 41, 20)), -1)
CLASSES = CLASSES.reshape(-1, 2).astype(np.float32)


def tiny_checkpoint(
    path: Path, head: str, seed: int = 0, size: int = 48, prior: bool = False
) -> Path:
    """Save a width-8 random-weight model of ``head`` over :data:`CLASSES` (``prior``: with a
    made-up rebalancing prior, which palettes need) trained, says its record, at ``size``."""
    import torch

    from recolor_tools import checkpoints, models

    torch.manual_seed(seed)
    q = len(CLASSES) if head == "cls" else 0
    model = models.Colorizer(models.ModelConfig(head=head, num_classes=q, width=8)).eval()
    rebalance = None
    if prior and head == "cls":
        p = torch.linspace(1, 2, q)
        rebalance = {"prior": p / p.sum()}
    ckpt = checkpoints.make_checkpoint(
        model,
        classes=CLASSES if head == "cls" else None,
        grid=20,
        rebalance=rebalance,
        data={"size": size},
    )
    checkpoints.save_checkpoint(path, ckpt)
    return path


# Made once per test process, for predict runs that check how inputs, names, metadata and
# outputs are handled, not the shipped model's colours (whose weights cost up to a second more
# a run).
@pytest.fixture(scope="session")
def tiny_cls(tmp_path_factory) -> Path:
    """:func:`tiny_checkpoint` of the cls head, with a prior (palettes and --suggest take it)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "cls.pt", "cls", prior=True)


@pytest.fixture(scope="session")
def tiny_reg(tmp_path_factory) -> Path:
    """:func:`tiny_checkpoint` of the reg head."""
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "reg.pt", "reg")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three small colour images with different sizes and formats."""
    return [
        write_rgb(tmp_path / "a.png", smooth_image(48, 64, 1)),
        write_rgb(tmp_path / "b.png", smooth_image(40, 30, 2)),
        write_rgb(tmp_path / "c.bmp", smooth_image(33, 57, 3)),
    ]


def val_images(data: Path) -> list[np.ndarray]:
    """Three smooth colour images ``im0.png`` .. ``im2.png`` of different shapes in the new
    folder ``data`` (a validation set for weights/ scripts); returns their RGB."""
    data.mkdir()
    rgbs = [smooth_image(h, w, seed=i) for i, (h, w) in enumerate([(72, 96), (90, 60), (64, 64)])]
    for i, rgb in enumerate(rgbs):
        write_rgb(data / f"im{i}.png", rgb)
    return rgbs


def stats_of(path: Path, *rgbs: np.ndarray) -> Path:
    """Rebalance statistics of ``rgbs`` (uint8 RGB) at ``path``, made in-process as
    ``rebalance-stats`` makes them (what a script is given to read, not what is tested:
    rebalance-stats has its own tests)."""
    from recolor_tools import defaults, quant
    from recolor_tools.color import rgb_to_lab
    from recolor_tools.rebalance import PriorAccumulator

    acc = PriorAccumulator(quant.gamut_classes(defaults.GRID), defaults.GRID)
    for rgb in rgbs:
        acc.add(rgb_to_lab(rgb / np.float32(255))[..., 1:])
    acc.finish().save(path)
    return path


# What a test that launches several processes calls (torchrun, ranks set by hand).
_LAUNCHES = ("torchrun(", "ranks_by_hand(", "torch.distributed.run")


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests that launch several processes ``distributed``: ``make test`` runs them
    after the others, one at a time. Beside another test on a loaded machine one rank may start
    late, and torchrun stops every rank once one has ended with an error: a rank that ended
    first on a usage error that rank 0 says (every rank meets it) took rank 0 with it, at times
    before its line (once in three runs of the suite with -n 2; never seen alone)."""
    for item in items:
        try:
            source = inspect.getsource(item.function)
        except (AttributeError, OSError, TypeError):
            continue
        if any(call in source for call in _LAUNCHES):
            item.add_marker(pytest.mark.distributed)
