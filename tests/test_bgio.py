"""recolor predict's background I/O (--io-workers): the serial path's outputs, byte for byte.

Reading the next batch, composing finished images, encoding and writing them on threads must
change nothing a user can see: the files written, the paths printed and their order, one error
line for a bad file while the others go on, a full disk and signals ending the run as before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    RECOLOR,
    ROOT,
    disk_full,
    read_rgb_u8,
    run,
    sigint_default,
    smooth_image,
    tiny_checkpoint,
    write_rgb,
)

from recolor_tools import batching, predict
from recolor_tools.errors import RecolorError
from recolor_tools.writeback import Writeback

SIZES = [(40, 56), (64, 48), (33, 71), (48, 48), (90, 30), (56, 40), (40, 56)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "cls.pt", "cls")


def _inputs(tmp_path: Path, bad_at: int) -> list[Path]:
    """Generated PNG and JPEG images of several working shapes; a broken file at ``bad_at``."""
    paths = []
    for i, (h, w) in enumerate(SIZES):
        ext = ".jpg" if i % 2 else ".png"
        paths.append(write_rgb(tmp_path / f"in{i}{ext}", smooth_image(h, w, seed=i)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths.insert(bad_at, bad)
    return paths


def test_cli_background_io_is_byte_identical(tmp_path, weights):
    paths = _inputs(tmp_path, bad_at=3)
    outs = {}
    for n in (0, 2, 3):
        out = tmp_path / f"out{n}"
        args = ["predict", *paths, "-w", weights, "-b", "2", "--io-workers", str(n), "-o", out]
        p = run([*args, "--device", "cpu"], cwd=tmp_path, check_rc=1)
        err = p.stderr.decode().splitlines()
        assert len(err) == 1 and err[0].startswith(f"recolor predict: {paths[3]}: ")
        printed = [Path(line).relative_to(out) for line in p.stdout.decode().splitlines()]
        good = [q for i, q in enumerate(paths) if i != 3]
        assert [q.stem for q in printed] == [q.stem for q in good]  # input order
        outs[n] = {q: (out / q).read_bytes() for q in printed}
    assert len(outs[0]) == len(SIZES)
    assert outs[2] == outs[0] and outs[3] == outs[0]


def test_api_background_io_same_results_and_order(tmp_path, weights, monkeypatch):
    # A pixel budget of about two images: batches end on pixels as well as on count.
    monkeypatch.setattr(predict, "BATCH_PIXELS", 2 * 48 * 64)
    paths = [str(p) for p in _inputs(tmp_path, bad_at=0)] + [str(tmp_path / "missing.png")]
    predictor = predict.Predictor.load(weights, "cls")
    runs = {n: list(predictor.predict_files(paths, 3, io_workers=n)) for n in (0, 1, 4)}
    for n, got in runs.items():
        assert [p for p, _, _ in got] == paths, n
        kinds = [isinstance(r, RecolorError) for _, r, _ in got]
        assert kinds == [True] + [False] * len(SIZES) + [True], n
        depths = [m.depth if m else None for _, _, m in got]  # each file's own metadata
        assert depths == [None] + [8] * len(SIZES) + [None], n
        for (_, a, _), (_, b, _) in zip(runs[0], got, strict=True):
            if not isinstance(a, RecolorError):
                assert a.dtype == b.dtype and np.array_equal(a, b), n


def test_api_dtype_none_composes_each_file_at_its_own_depth(tmp_path, weights):
    """predict composed every result at 16 bits when --depth was not given (6 bytes a pixel,
    and a third copy in the encoder to round an 8-bit source's back): ``dtype=None`` composes
    each at its source's depth, the values those of an explicit dtype."""
    eight = write_rgb(tmp_path / "a.png", smooth_image(40, 56, 1))
    sixteen = tmp_path / "b.png"
    cv2.imwrite(str(sixteen), smooth_image(40, 56, 2).astype(np.uint16) * 257 + 5)
    predictor = predict.Predictor.load(weights, "cls")
    paths = [str(eight), str(sixteen)]
    for n in (0, 2):
        got = [r for _, r, _ in predictor.predict_files(paths, 2, dtype=None, io_workers=n)]
        assert [r.dtype for r in got] == [np.uint8, np.uint16], n
        for i, r in enumerate(got):  # in the same batch: oneDNN's float sums differ by batch
            want = [w for _, w, _ in predictor.predict_files(paths, 2, dtype=r.dtype)][i]
            np.testing.assert_array_equal(r, want)


def test_api_background_io_stops_early(tmp_path, weights):
    """Closing the generator after one result returns (no reader left blocked on the pool)."""
    paths = [str(p) for p in _inputs(tmp_path, bad_at=len(SIZES))]
    predictor = predict.Predictor.load(weights, "cls")
    found = predictor.predict_files(paths, 2, io_workers=2)
    path, rgb, meta = next(found)
    found.close()
    assert path == paths[0] and rgb.shape[:2] == SIZES[0] and meta.depth == 8


# -- encoding and writing in the background (recolor_tools.writeback) --------------------------


def test_writeback_keeps_order_and_bound():
    """Encodes finishing in any order are written in submission order, with at most ``depth``
    submissions waiting at any time."""
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.01, 40)
    written: list[int] = []
    submitted = 0

    def work(i: int) -> int:
        time.sleep(delays[i])  # shuffles the order in which the encodes finish
        return i

    with Writeback(4, depth=5) as writes:
        for i in range(40):
            writes.submit(lambda i=i: work(i), lambda result: written.append(result()))
            submitted += 1
            assert submitted - len(written) <= 5
    assert written == list(range(40))


def test_writeback_budget_and_errors_of_work():
    """A heavy job waits for the queue to empty; an exception of ``work`` reaches ``then``."""
    seen: list = []

    def then(result):
        try:
            seen.append(result())
        except ValueError as e:
            seen.append(str(e))

    def bad():
        raise ValueError("bad input")

    with Writeback(2, depth=10, budget=10) as writes:
        writes.submit(lambda: "a", then, weight=6)
        writes.submit(bad, then, weight=6)  # over the budget: waits until "a" is written
        assert seen[0] == "a"
        writes.submit(None, then)
    assert seen == ["a", "bad input", None]


def test_writeback_writes_while_the_caller_waits():
    """An output is written without a later submission or the end of the block (the caller
    may be blocked on an input that never ends: the kill -9 case of test_hostile)."""
    done = threading.Event()
    with Writeback(2, depth=8) as writes:
        writes.submit(lambda: b"x", lambda result: result() and done.set())
        assert done.wait(timeout=60)


def test_writeback_stops_on_an_escaping_error():
    """An exception escaping ``then`` (a full disk) stops the writer and is raised in the
    caller; nothing after it is written."""
    written: list[int] = []

    def then(i):
        if i == 2:
            raise OSError("disk full")
        written.append(i)

    with pytest.raises(OSError, match="disk full"), Writeback(2, depth=3) as writes:
        for i in range(50):
            writes.submit(None, lambda result, i=i: then(i))
    assert written == [0, 1]


def test_writeback_interrupted_finishes_what_it_began():
    """Ctrl-C in the caller: the block is left with the caller's exception, the queued outputs
    are dropped, and each ``then`` that began also ended."""
    began: list[int] = []
    ended: list[int] = []
    first = threading.Event()

    def then(i):
        began.append(i)
        if i == 0:  # the first write lasts until the caller has left the block
            first.set()
            deadline = time.monotonic() + 60
            while not writes._closed and time.monotonic() < deadline:
                time.sleep(0.001)
        ended.append(i)

    with pytest.raises(KeyboardInterrupt), Writeback(2, depth=64) as writes:
        for i in range(64):
            writes.submit(lambda: time.sleep(0.001), lambda result, i=i: then(i))
        assert first.wait(timeout=60)
        raise KeyboardInterrupt
    assert began == ended == [0]  # the write in progress ended; the 63 queued were dropped


def test_cli_background_writes_refuse_duplicate_names_like_serial(tmp_path, weights):
    """Two inputs that map to one output, and a missing input: the same lines, in the same
    order, on stdout and stderr as the serial path, and the same bytes written."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    a = write_rgb(tmp_path / "a" / "x.png", smooth_image(40, 48, 1))
    b = write_rgb(tmp_path / "b" / "x.png", smooth_image(48, 40, 2))
    c = write_rgb(tmp_path / "c.png", smooth_image(32, 32, 3))
    inputs = [a, tmp_path / "missing.png", b, c]
    got = {}
    for n in (0, 2):
        out = tmp_path / f"out{n}"
        p = run(["predict", *inputs, "-w", weights, "-b", "1", "--io-workers", str(n), "-o",
                 f"{out}/", "--device", "cpu"], check_rc=1)  # fmt: skip
        err = p.stderr.decode().replace(str(out), "OUT")
        printed = p.stdout.decode().replace(str(out), "OUT")
        got[n] = (printed, err, {f.name: f.read_bytes() for f in out.iterdir()})
    printed, err, files = got[0]
    assert printed.splitlines() == ["OUT/x.png", "OUT/c.png"]
    assert len(err.splitlines()) == 2 and "already written" in err.splitlines()[1], err
    assert got[2] == got[0]


def test_cli_background_disk_full_stops_the_run(tmp_path, weights, monkeypatch, capsys):
    """ENOSPC on the writer thread: one line, exit 1, no output and no temporary file left,
    and the run stops there (the other outputs are not tried)."""
    from recolor_tools.cli import main

    inputs = [str(write_rgb(tmp_path / f"in{i}.png", smooth_image(32, 40, i))) for i in range(4)]
    disk_full(monkeypatch)
    out = tmp_path / "out"
    args = ["predict", *inputs, "-w", str(weights), "-b", "1", "--io-workers", "2"]
    assert main([*args, "--device", "cpu", "-o", f"{out}/"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"recolor predict: {out / 'in0.png'}: no space left on device"
    ]
    assert captured.out == "" and list(out.iterdir()) == []


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_background_signal_leaves_whole_outputs_only(tmp_path, weights, sig, code):
    """Signalled while it waits on a stdin that has not ended, with earlier outputs written by
    the writer thread: it exits at once (stdin is read in the main thread, not a reader thread
    that would hold the exit until the pipe ends), each printed path is a whole image, nothing
    else is in the output directory (no temporary file), and the exit status is the signal's."""
    src = [write_rgb(tmp_path / f"im{i}.png", smooth_image(40, 48, i)) for i in range(6)]
    out = tmp_path / "out"
    args = [*src[:3], "-", *src[3:]]
    cmd = [*RECOLOR, "predict", "-q", "-w", str(weights), "-b", "1", "--io-workers", "2",
           "--device", "cpu", "-o", f"{out}/", *map(str, args)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=sigint_default)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and len(list(out.glob("im*"))) >= 3):  # before stdin ends
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code  # stdin still open
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
    printed = proc.stdout.read().decode().splitlines()
    assert "Traceback" not in proc.stderr.read().decode()
    assert printed == [str(out / f"im{i}.png") for i in range(3)]
    assert sorted(f.name for f in out.iterdir()) == [f"im{i}.png" for i in range(3)]
    assert all(read_rgb_u8(out / f"im{i}.png").shape[:2] == (40, 48) for i in range(3))


def test_cli_background_closed_stdout_is_quiet(tmp_path, weights):
    """``recolor predict many | head -n 1``: the writer thread's closed pipe ends the run
    without a message."""
    src = [write_rgb(tmp_path / f"im{i}.png", smooth_image(24, 24, i)) for i in range(12)]
    cmd = [*RECOLOR, "predict", "-w", str(weights), "-b", "1", "--io-workers", "2",
           "--device", "cpu", "-o", f"{tmp_path}/out/", *map(str, src)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1) and err == ""


@pytest.mark.parametrize("io_workers", [0, 2])
def test_cli_out_of_memory_fails_that_image_only(
    tmp_path, weights, monkeypatch, capsys, io_workers
):
    """An image too large for the memory free, wherever it runs out (reading, the network with
    its batch, composing the full-resolution output): one line naming it, exit 1, and the other
    images of its batch and after it are written as in a run without it."""
    from recolor_tools.cli import main

    shapes = [(40, 56), (64, 48), (33, 71), (48, 48), (90, 30), (56, 40)]
    inputs = [str(write_rgb(tmp_path / f"in{i}.png", smooth_image(h, w, i)))
              for i, (h, w) in enumerate(shapes)]  # fmt: skip
    args = ["predict", "-w", str(weights), "-b", "3", "--io-workers", str(io_workers)]
    assert main([*args, *inputs, "--device", "cpu", "-o", f"{tmp_path / 'all'}/"]) == 0
    capsys.readouterr()
    # in1 fails on reading, in2 in the network (in a batch with in0), in4 on composing
    real_read, real_infer, real_compose = batching.read_rgb, predict.infer, predict.compose

    def read(path, meta=None, **kw):
        if path.endswith("in1.png"):
            raise MemoryError
        return real_read(path, meta, **kw)

    def infer(model, items, *a, **kw):
        if any(it.L.shape == (33, 71) for it in items):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_infer(model, items, *a, **kw)

    def compose(pred, *a, **kw):
        if pred.prepared.L.shape == (90, 30):
            raise RuntimeError("OpenCV(4.11.0) error: (-4:Insufficient memory) Failed to allocate")
        return real_compose(pred, *a, **kw)

    monkeypatch.setattr(batching, "read_rgb", read)
    monkeypatch.setattr(predict, "infer", infer)
    monkeypatch.setattr(predict, "compose", compose)
    out = tmp_path / "out"
    assert main([*args, *inputs, "--device", "cpu", "-o", f"{out}/"]) == 1
    captured = capsys.readouterr()
    oom = "out of memory (too large for the memory free)"
    assert captured.err.splitlines() == [f"recolor predict: {inputs[i]}: {oom}" for i in (1, 2, 4)]
    written = [f"in{i}.png" for i in (0, 3, 5)]
    assert captured.out.splitlines() == [f"{out}/{n}" for n in written]
    assert sorted(p.name for p in out.iterdir()) == written
    for n in written:
        assert (out / n).read_bytes() == (tmp_path / "all" / n).read_bytes()
