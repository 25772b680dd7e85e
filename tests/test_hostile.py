"""The hostile-input suite: every tool that reads a kind of input, run over every hostile case of
that kind NEXT TO A GOOD INPUT, in one CLI call per tool. Each bad file must give exactly one line
``recolor <tool>: <file>: <reason>`` on stderr, the run exits 1, the good input is fully processed
and nothing is written for the bad ones. The cases are in corpus.py; RELIABILITY.md lists them."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import RECOLOR, ROOT, read_rgb_u8, run, smooth_image, write_rgb
from corpus import IMAGE_CASES, STREAM_CASES, Case, good_record, make

from recolor_tools.errors import printable
from recolor_tools.imagehead import IMAGE_EXTS
from recolor_tools.records import iter_records

IMAGE_TOOLS = ["to-lab", "from-lab", "quantize", "rebalance-stats", "predict", "compare"]
STREAM_TOOLS = ["from-lab", "quantize", "rebalance-stats"]


def _plain(case: Case) -> bool:
    """A regular file with an image extension (what compare finds in a directory)."""
    return not case.make.__code__.co_argcount and Path(case.name).suffix in IMAGE_EXTS


def _feed_fifos(paths: list[Path]) -> None:
    """Write a line of text into each FIFO once a reader opens it (daemon threads: a tool that
    never opens one leaves its writer waiting, harmlessly)."""
    for p in paths:
        if p.is_fifo():
            threading.Thread(target=p.write_bytes, args=(b"not an image\n",), daemon=True).start()


def _check_lines(p, tool: str, bad: list[tuple[Case, Path]]) -> None:
    lines = p.stderr.decode().splitlines()
    assert p.returncode == 1, p.stderr.decode()
    for case, path in bad:
        head = f"recolor {tool}: {printable(case.named(path))}: "
        mine = [ln for ln in lines if ln.startswith(head)]
        assert len(mine) == 1, (case.name, lines)
        # in the reason, not the name (pfm-named.png held "PFM" whatever the reason said)
        assert case.reason.lower() in mine[0][len(head) :].lower(), (case.name, mine[0])
        assert "Traceback" not in mine[0] and "Assertion" not in mine[0]
    assert len(lines) == len(bad), lines


def _run_over(tool: str, inputs: list[Path], tmp: Path, weights: Path | None = None):
    """Run ``tool`` over ``inputs`` writing into tmp/out; returns (process, names written)."""
    out = tmp / f"out-{tool}"
    _feed_fifos(inputs)
    args = [tool, "-q", "-o", f"{out}/"] if tool != "rebalance-stats" else [
        tool, "-q", "-o", out.with_suffix(".npz")]  # fmt: skip
    if tool == "predict":
        args += ["--weights", weights]
    p = run([*args, "--", *inputs])
    if tool == "rebalance-stats":
        from recolor_tools.rebalance import RebalanceStats

        n = RebalanceStats.load(out.with_suffix(".npz")).n_images
        return p, [f"{n} image(s)"]
    return p, sorted(f.name for f in out.iterdir())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    for case in IMAGE_CASES + STREAM_CASES:
        make(case, d)
    write_rgb(d / "good.png", smooth_image(20, 24, 3))
    (d / "good.lab").write_bytes(good_record("good.png", 7, 9))
    return d


def test_the_corpus_is_big_and_unambiguous():
    names = [c.name for c in IMAGE_CASES + STREAM_CASES]
    assert len(names) >= 30 and len(set(names)) == len(names)
    stems = [Path(n).stem for n in names]
    assert len(set(stems)) == len(stems)  # compare pairs by stem


@pytest.mark.parametrize("tool", IMAGE_TOOLS[:-1])
def test_hostile_images(tool, hostile, tmp_path, tiny_cls):
    bad = [(c, hostile / c.name) for c in IMAGE_CASES]
    p, written = _run_over(tool, [hostile / "good.png", *(path for _, path in bad)], tmp_path,
                           tiny_cls)  # fmt: skip
    _check_lines(p, tool, bad)
    want = {"to-lab": ["good.lab"], "from-lab": ["good.png"], "quantize": ["good.target"],
            "predict": ["good.png"], "rebalance-stats": ["1 image(s)"]}[tool]  # fmt: skip
    assert written == want


def test_what_c_libraries_say_is_dropped_and_kept_with_debug(hostile):
    """libpng's and libjpeg's own text on fd 2 is dropped (recolor's line says it); --debug
    keeps it, libjpeg's too, which recolor reads back from fd 2 to refuse a cut scan."""
    files = [hostile / "bad-idat.png", hostile / "cut-scan.jpg"]
    p = run(["to-lab", *files, "-o", "-"])
    assert p.returncode == 1 and len(p.stderr.decode().splitlines()) == 2, p.stderr
    p = run(["to-lab", "--debug", *files, "-o", "-"])
    said = p.stderr.decode()
    assert p.returncode == 1 and "libpng error" in said, said
    assert "Corrupt JPEG data: premature end of data segment" in said
    assert f"{files[1]}: truncated JPEG (premature end of data segment)" in said


def test_only_the_cut_jpegs_are_refused_when_threads_read_them(tmp_path):
    """Reading fd 2 back around a decode that another thread's warning could reach: a good
    JPEG read beside cut ones was refused as cut (libjpeg's line, written back after the lock
    was let go, landed in its capture). Good files ending in the grey that marks a cut scan
    are decoded again listening, too."""
    import cv2
    import numpy as np
    from corpus import encoded

    rng = np.random.default_rng(3)
    for i in range(12):
        img = rng.integers(0, 256, (48, 64, 3), np.uint8)
        img[-16:, -16:] = 128 if i % 4 == 0 else img[-16:, -16:]  # a grey end: listened to
        data = encoded(".jpg", img)
        if i % 2:
            scan = data.index(b"\xff\xda")
            data = data[: (scan + len(data)) // 2] + b"\xff\xd9"
        (tmp_path / f"{i:02d}{'_cut' * (i % 2)}.jpg").write_bytes(data)
    assert cv2.imread(str(tmp_path / "00.jpg"))[-1, -1].tolist() == [128] * 3
    p = run(["rebalance-stats", tmp_path, "-j", 4, "-o", tmp_path / "s.npz"])
    lines = p.stderr.decode().splitlines()
    refused = sorted(ln.split(": ")[1] for ln in lines if "truncated JPEG" in ln)
    assert refused == [f"{tmp_path}/{i:02d}_cut.jpg" for i in range(1, 12, 2)], p.stderr


def _python(code: str) -> subprocess.CompletedProcess:
    """``python -c CODE`` with recolor importable: what a process's fd-2 lock does is seen in
    a process of its own (one left held would stop the test worker's JPEG decodes)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def test_a_child_forked_while_a_thread_listens_to_fd_2_has_its_own(hostile):
    """A fork while another thread decoded a cut JPEG listening to fd 2 gave the child the
    parent's memfd as its stderr, and the lock held for ever (the child's own decode hung)."""
    code = f"""
import os, threading
from recolor_tools.imageio import decode_stored
data = open({str(hostile / "cut-scan.jpg")!r}, "rb").read()
stop = []
def loop():
    while not stop:
        try: decode_stored(data, "x.jpg")
        except Exception: pass
t = threading.Thread(target=loop); t.start()
bad = 0
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        try: decode_stored(data, "x.jpg")
        except Exception: pass
        os._exit("memfd" in os.readlink("/proc/self/fd/2"))
    bad += os.WEXITSTATUS(os.waitpid(pid, 0)[1])
stop.append(1); t.join()
print(bad)
"""
    p = _python(code)
    assert (p.returncode, p.stdout) == (0, b"0\n"), p.stderr


def test_a_listener_whose_wait_a_signal_ends_lets_the_decodes_go_on():
    """An exception raised by a signal handler while a listener waited for fd 2 left it
    counted as waiting: every JPEG decode after it in the process waited for good."""
    code = """
import os, signal, threading
from recolor_tools.process import FD2
class Stop(Exception): pass
def stop(*_): raise Stop
signal.signal(signal.SIGUSR1, stop)
held, release, after = threading.Event(), threading.Event(), threading.Event()
def decode():
    with FD2.shared():
        held.set(); release.wait(60)
threading.Thread(target=decode).start(); held.wait(60)
try:
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    with FD2.exclusive(): pass
except Stop: pass
release.set()
def another():
    with FD2.shared(): after.set()
threading.Thread(target=another, daemon=True).start()
print(after.wait(20))
"""
    p = _python(code)
    assert (p.returncode, p.stdout) == (0, b"True\n"), p.stderr


def test_hostile_images_in_compare(hostile, tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    bad = []
    for case in filter(_plain, IMAGE_CASES):
        bad.append((case, make(case, pred)))
        write_rgb(truth / (Path(case.name).stem + ".png"), smooth_image(16, 16, 1))
    good = smooth_image(20, 24, 3)
    write_rgb(pred / "good.png", good)
    write_rgb(truth / "good.png", good)
    p = run(["compare", pred, truth, "--csv"])
    _check_lines(p, "compare", bad)
    rows = [ln.split(",")[0] for ln in p.stdout.decode().splitlines()[1:]]
    assert rows == ["good", "mean"]


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_hostile_streams(tool, hostile, tmp_path):
    bad = [(c, hostile / c.name) for c in STREAM_CASES]
    p, written = _run_over(tool, [hostile / "good.lab", *(path for _, path in bad)], tmp_path)
    _check_lines(p, tool, bad)
    want = {"from-lab": ["good.png"], "quantize": ["good.target"],
            "rebalance-stats": ["1 image(s)"]}[tool]  # fmt: skip
    assert written == want


def test_trailing_garbage_keeps_the_records_before_it(tmp_path):
    stream = tmp_path / "s.lab"
    stream.write_bytes(good_record("a.png") + good_record("b.png") + b"junk after the end")
    p = run(["from-lab", "-o", f"{tmp_path}/o/", stream])
    assert p.returncode == 1 and p.stderr.decode().splitlines() == [
        f"recolor from-lab: {stream}: trailing data after record 2 (bad magic)"
    ]
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == ["a.png", "b.png"]


def test_awkward_names_are_good_inputs(tmp_path):
    names = ["with space.png", "ünïcödé.png", "-dash.png", "new\nline.png"]
    for n in names:
        write_rgb(tmp_path / n, smooth_image(6, 8, 2))
    p = run(["to-lab", "-o", f"{tmp_path}/o/", "--", *(tmp_path / n for n in names)])
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == sorted(
        Path(n).stem + ".lab" for n in names
    )


def test_a_name_near_the_length_limit_is_written(tmp_path, tiny_cls):
    """250 bytes and an extension: a good name (NAME_MAX is 255); the temporary file beside the
    output was named after all of it and failed ("file name too long", naming the folder)."""
    name = "a" + "é" * 100 + "a" * 45  # 246 bytes of UTF-8; byte 128 is inside an é
    src = tmp_path / f"{name}.png"
    write_rgb(tmp_path / "a.png", smooth_image(16, 24, 2)).rename(src)
    run(["predict", src, "-o", f"{tmp_path}/p/", "--size", "16", "-w", tiny_cls], check_rc=0)
    run(["to-lab", src, "-o", f"{tmp_path}/lab/"], check_rc=0)
    assert [p.name for p in (tmp_path / "p").iterdir()] == [src.name]
    assert [p.name for p in (tmp_path / "lab").iterdir()] == [f"{name}.lab"]


def test_a_name_too_long_is_one_line_and_the_others_are_done(tmp_path, tiny_cls):
    """A name over NAME_MAX: pathlib's is_dir/exists raise ENAMETOOLONG, and every tool that
    looked at its inputs so ended with "internal error: OSError"; a --palette colour list
    longer than 255 characters was taken for a file name and refused."""
    good = write_rgb(tmp_path / "a.png", smooth_image(16, 24, 2))
    long = str(tmp_path / ("x" * 300))
    want = f"{long}.png: file name too long"
    # a NUL in a list: predict ended with "internal error: ValueError"; such a file is no
    # list of paths now (a JPEG named .txt is read as one), and one line names it (predict
    # meets it beside the long name, and with a palette below)
    (tmp_path / "nul.txt").write_bytes(b"a.png\nfoo\0bar.png\n")
    nul = f"recolor predict: {tmp_path}/nul.txt: not an image recolor reads (text with NUL bytes)\n"
    predict = ["-w", tiny_cls, "--size", "16"]
    for tool, args in {
        "to-lab": [f"{long}.png", good, "-o", f"{tmp_path}/lab/"],
        "predict": [f"{long}.png", tmp_path / "nul.txt", good, "-o", f"{tmp_path}/p/", *predict],
        "compare": [f"{long}.png", good],
    }.items():
        p = run([tool, *args])
        lines = [f"recolor {tool}: {want}\n", *([nul] if tool == "predict" else [])]
        assert p.returncode == 1, (tool, p.stderr)
        assert sorted(p.stderr.decode().splitlines(keepends=True)) == sorted(lines), tool
    assert os.listdir(tmp_path / "lab") == ["a.lab"] and os.listdir(tmp_path / "p") == ["a.png"]
    p = run(["predict", good, "-o", tmp_path / "h.png", "--hints", f"{long}.json", *predict])
    assert p.returncode == 1 and p.stderr.decode().endswith(".json: file name too long\n")
    # the NUL list with a palette, given as a colour list of 319 characters: colours, read
    colours = ",".join(f"#{i:02x}{255 - i:02x}80" for i in range(0, 240, 6))
    assert len(colours) == 319
    p = run(["predict", tmp_path / "nul.txt", good, "-o", f"{tmp_path}/pal/", "--palette",
             colours, *predict])  # fmt: skip
    assert p.returncode == 1 and os.listdir(tmp_path / "pal") == ["a.png"]
    assert p.stderr.decode() == nul


def test_a_name_that_is_not_utf8_goes_through_every_tool_as_its_bytes(tmp_path, tiny_cls):
    """Linux file names are bytes: b"caf\xe9.png" (Latin-1) is a good name. With a strict UTF-8
    stdout (a desktop's en_US.UTF-8) predict wrote the file but failed printing its path, and
    to-lab failed to write the record's header ("surrogates not allowed")."""
    raw = b"caf\xe9"
    src = tmp_path / os.fsdecode(raw + b".png")  # (OpenCV's imwrite crashes on such a name)
    write_rgb(tmp_path / "a.png", smooth_image(16, 24, 2)).rename(src)
    strict = {"PYTHONIOENCODING": "utf-8:strict"}
    p = run(["predict", src, "-o", f"{tmp_path}/p/", "--size", "16", "-w", tiny_cls], env=strict)
    assert p.returncode == 0 and p.stdout == os.fsencode(tmp_path) + b"/p/" + raw + b".png\n"
    p = run(["to-lab", src], env=strict, check_rc=0)
    p = run(["from-lab", "-o", f"{tmp_path}/back/"], input=p.stdout, env=strict, check_rc=0)
    assert os.listdir(os.fsencode(tmp_path / "back")) == [raw + b".png"]
    p = run(["compare", tmp_path / "back", tmp_path / "p", "--csv"], env=strict, check_rc=0)
    assert raw in p.stdout
    report = tmp_path / "r.csv"  # to a file: "internal error: UnicodeEncodeError"
    run(["compare", tmp_path / "back", tmp_path / "p", "--csv", "-o", report], check_rc=0)
    assert report.read_bytes() == p.stdout
    montage = tmp_path / "m.png"  # the name as a caption: OpenCV crashed (SIGSEGV) on it
    run(["compare", tmp_path / "back", tmp_path / "p", "--montage", montage, "-q"], check_rc=0)
    assert montage.stat().st_size > 0
    (tmp_path / "list.txt").write_bytes(raw + b".png\n")  # as `find -name '*.png' >` writes it
    run(["to-lab", tmp_path / "list.txt", "-o", f"{tmp_path}/lab/"], env=strict, check_rc=0)
    assert os.listdir(os.fsencode(tmp_path / "lab")) == [raw + b".lab"]
    # a stdout encoding that cannot hold the name (PYTHONIOENCODING=ascii): the image was
    # written and reported failed, exit 1; the path goes out as the name's bytes
    uni = tmp_path / "日本.png"
    src.rename(uni)
    p = run(["predict", uni, "-o", f"{tmp_path}/u/", "--size", "16", "-w", tiny_cls],
            env={"PYTHONIOENCODING": "ascii:strict"})  # fmt: skip
    assert (p.returncode, p.stdout) == (0, os.fsencode(tmp_path / "u" / "日本.png") + b"\n")
    # an ASCII locale without Python's UTF-8 coercion: help's "…" and "∝" were an internal
    # error half-way through the help; "?" now, as the names' bytes still go out as they are
    ascii_c = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    for tool in ("predict", "rebalance-stats"):
        p = run([tool, "-h"], env=ascii_c, check_rc=0)
        assert p.stderr == b"" and b"Usage: recolor " + tool.encode() in p.stdout
    p = run(["predict", uni, "-o", f"{tmp_path}/v/", "--size", "16", "-w", tiny_cls], env=ascii_c,
            check_rc=0)  # fmt: skip
    assert p.stdout == os.fsencode(tmp_path / "v" / "日本.png") + b"\n"


# Weights --------------------------------------------------------------------------------------


class _Boom:
    """Unpickling this runs code: it would create the file named at pickling."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _bad_weights(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = torch.load(ROOT / "weights" / "cls.pt", weights_only=True)
    out = {}

    def save(name: str, obj, reason: str) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf)
        (tmp / name).write_bytes(buf.getvalue())
        out[name] = (tmp / name, reason)

    save("pickle.pt", {"format": "recolor-checkpoint", "x": _Boom(str(tmp / "pwned"))},
         "not a recolor checkpoint")  # fmt: skip
    legacy = io.BytesIO()  # torch.save's older format, not a zip: refused for what it holds too
    torch.save({"x": _Boom(str(tmp / "pwned"))}, legacy, _use_new_zipfile_serialization=False)
    (tmp / "legacy.pt").write_bytes(legacy.getvalue())
    out["legacy.pt"] = (tmp / "legacy.pt", "holds objects that loading weights only refuses")
    raw = (ROOT / "weights" / "cls.pt").read_bytes()
    (tmp / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    out["truncated.pt"] = (tmp / "truncated.pt", "not a recolor checkpoint")
    (tmp / "text.pt").write_bytes(b"not a zip file\n")
    out["text.pt"] = (tmp / "text.pt", "not a recolor checkpoint")
    with zipfile.ZipFile(tmp / "zip.pt", "w") as z:
        z.writestr("a.txt", "hello")
    out["zip.pt"] = (tmp / "zip.pt", "not a recolor checkpoint")
    flipped = bytearray(raw)  # a bit flipped in a tensor: loaded as another model, silently
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor, stored
        name_len, extra_len = struct.unpack(
            "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
        )
        at = info.header_offset + 30 + name_len + extra_len  # the local header's own lengths
    flipped[at + info.file_size // 2] ^= 0x10
    (tmp / "flipped.pt").write_bytes(bytes(flipped))
    out["flipped.pt"] = (
        tmp / "flipped.pt",
        f"corrupt checkpoint \\(CRC-32 mismatch in {info.filename}",
    )
    save("future.pt", {**good, "version": 99}, "newer")
    save("no-tag.pt", {k: v for k, v in good.items() if k != "format"}, "format tag")
    return out


@pytest.mark.parametrize(
    "tool",
    [["to-lab"], ["from-lab", "-o", "x.png"], ["predict", "-o", "x.png"],
     ["predict", "a.png", "-o", "x.png", "--hints"]],  # a hint file from stdin
)  # fmt: skip
def test_an_endless_stdin_is_refused_from_its_start_or_stopped_by_a_signal(
    tool, tmp_path, tiny_cls
):
    """`yes | recolor to-lab -` read stdin whole before looking at it (24 GB, until the kernel
    killed it), and SIGTERM and Ctrl-C went unheard meanwhile: one read() of a pipe that never
    ends runs no signal handler. Text is refused from its first bytes now; data that starts
    like an image is read a MiB at a time, so a signal ends it as it ends any run."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    write_rgb(tmp_path / "a.png", smooth_image(16, 16, 1))
    weights = ["-w", str(tiny_cls)] if tool[0] == "predict" else []
    cmd = [*RECOLOR, tool[0], *weights, *tool[1:], "-"]
    for start, stop in ((b"y\n", False), (b"\x89PNG\r\n\x1a\n", True)):
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=tmp_path, env=env)  # fmt: skip
        sent = 0
        try:
            p.stdin.write(start)
            while p.poll() is None:
                p.stdin.write(b"y\n" * 32768)
                sent += 65536
                if stop and sent > 32 << 20:  # the tool is reading: its handlers are set
                    p.send_signal(signal.SIGTERM)
                    stop = False
                assert sent < 512 << 20, "read on without end"
        except BrokenPipeError:
            pass
        rc, err = p.wait(timeout=120), p.stderr.read().decode()
        if start == b"y\n":
            said = "neither a JSON object nor an image" if "--hints" in tool else "reads (text)"
            assert rc == 1 and err.endswith(f"{said}\n") and err.count("\n") == 1, err
            assert sent < 32 << 20
        else:
            assert (rc, err) == (143, "")
    assert not (tmp_path / "x.png").exists()


def test_hostile_weights_are_refused_and_never_run_code(tmp_path, tiny_cls):
    from recolor_tools.checkpoints import read_checkpoint
    from recolor_tools.errors import RecolorError

    bad = _bad_weights(tmp_path)
    for path, reason in bad.values():  # the public API, in one process
        with pytest.raises(RecolorError, match=reason):
            read_checkpoint(path)
    with pytest.raises(RecolorError, match="head"):
        read_checkpoint(ROOT / "weights" / "cls.pt", head="reg")
    img = write_rgb(tmp_path / "a.png", smooth_image(16, 16, 1))
    path, reason = bad["pickle.pt"]  # and the CLI: one line, nothing written, no code run
    p = run(["predict", "-o", f"{tmp_path}/o/", "--weights", path, img])
    assert p.returncode == 1 and p.stderr.decode().splitlines() == [
        f"recolor predict: {path}: not a recolor checkpoint (it holds objects that loading "
        "weights only refuses)"  # (it said "torch.load failed: UnpicklingError")
    ]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o").exists()
    # a plain pickle and half a checkpoint: one line each in plain words (torch's warning about
    # the pickle protocol came first, two lines of its own text)
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    for name in ("plain.pt", "truncated.pt"):
        p = run(["predict", "-o", f"{tmp_path}/o/", "--weights", tmp_path / name, img])
        assert p.returncode == 1 and p.stderr.decode() == (
            f"recolor predict: {tmp_path / name}: not a recolor checkpoint (not a file "
            "torch.save wrote, or cut short)\n"
        )
    shutil.copy(tiny_cls, tmp_path / "-")  # a file named "-", not stdin
    run(["predict", "a.png", "-w", "./-", "-o", "b.png", "--size", "16"], cwd=tmp_path,
        check_rc=0)  # fmt: skip
    assert pickle.loads(pickle.dumps(_Boom(str(tmp_path / "proof")))) is not None
    assert (tmp_path / "proof").exists(), "the payload is live: it runs when unpickled unsafely"


def test_nan_weights_and_a_foreign_class_set_are_refused(tmp_path):
    import torch

    from recolor_tools.checkpoints import load_checkpoint, make_checkpoint, save_checkpoint
    from recolor_tools.errors import RecolorError
    from recolor_tools.models import Colorizer, ModelConfig
    from recolor_tools.quant import gamut_classes

    model = Colorizer(ModelConfig(head="cls", num_classes=len(gamut_classes(8)), width=4))
    good = make_checkpoint(model, classes=gamut_classes(8), grid=8.0)
    nan = {**good, "model": {k: v.clone() for k, v in good["model"].items()}}
    nan["model"]["head.weight"][0, 0] = float("nan")
    foreign = {**good, "classes": torch.tensor(gamut_classes(10))}  # 262 classes, 395 logits
    for name, ckpt, reason in [("nan", nan, "NaN or infinite"), ("foreign", foreign, "broken")]:
        save_checkpoint(tmp_path / f"{name}.pt", ckpt)
        with pytest.raises(RecolorError, match=reason):
            load_checkpoint(tmp_path / f"{name}.pt", "cls")
    img = write_rgb(tmp_path / "a.png", smooth_image(16, 16, 1))
    p = run(["predict", "-o", f"{tmp_path}/o/", "--weights", tmp_path / "nan.pt", img])
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "NaN or infinite weights" in p.stderr.decode() and not (tmp_path / "o").exists()


# Processes ------------------------------------------------------------------------------------


def _whole(tool: str, path: Path) -> bool:
    if tool in ("to-lab",):
        return len(list(iter_records(io.BytesIO(path.read_bytes())))) == 1
    return read_rgb_u8(path).shape[:2] == (40, 48)


@pytest.mark.parametrize("tool", ["to-lab", "from-lab", "predict"])
def test_kill_9_mid_batch_then_skip_existing_finishes(tool, tmp_path, tiny_cls):
    src = tmp_path / "src"
    src.mkdir()
    n = 120 if tool != "predict" else 8  # (30 left the kill ~0.2 s to land on a loaded machine)
    for i in range(n):
        write_rgb(src / f"im{i:02d}.png", smooth_image(40, 48, i))
    inputs = sorted(src.iterdir())
    if tool == "from-lab":
        run(["to-lab", "-o", f"{tmp_path}/labs/", *inputs], check_rc=0)
        inputs = sorted((tmp_path / "labs").iterdir())
    out = tmp_path / "out"
    extra = ["-b", "1", "--size", "32", "-w", tiny_cls] if tool == "predict" else []
    # predict is slow to start and to run: it gets a stdin that never ends in the middle of its
    # inputs, so the kill lands with half the batch done; the others are killed on the fly.
    middle = ["-"] if tool == "predict" else []
    args = [*inputs[: n // 2], *middle, *inputs[n // 2 :]]
    cmd = [*RECOLOR, tool, "-q", *extra, "-o", f"{out}/", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    want = n // 2 if middle else 3
    deadline = time.monotonic() + 120
    while not (out.is_dir() and len(list(out.glob("im*"))) >= want):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdin.close()
    visible = sorted(out.glob("im*"))
    assert want <= len(visible) < n, "the kill came too late to test anything"
    assert all(_whole(tool, f) for f in visible)
    stamps = {f.name: f.stat().st_mtime_ns for f in visible}
    run([tool, "-q", *extra, "--skip-existing", "-o", f"{out}/", *inputs], check_rc=0)
    done = sorted(out.glob("im*"))
    assert len(done) == n and all(_whole(tool, f) for f in done)
    assert all(f.stat().st_mtime_ns == stamps[f.name] for f in visible), "finished work redone"


def test_train_reports_each_bad_image_once(tmp_path, hostile):
    """Each unreadable image, training or validation: one line; training goes on with the
    others, writes its weights, prints their path and exits 1. (A bad validation image was
    once replaced by the next one without a word, in every evaluation.)"""
    data, val = tmp_path / "data", tmp_path / "val"
    data.mkdir(), val.mkdir()
    for i in range(4):
        write_rgb(data / f"good{i}.png", smooth_image(24, 24, i))
    write_rgb(val / "good.png", smooth_image(24, 24, 9))
    bad = [c for c in IMAGE_CASES if c.name in ("text.jpg", "truncated-png.png", "bomb.png")]
    for c in bad:
        make(c, data)
    bad_val = [c for c in IMAGE_CASES if c.name == "empty.png"]
    make(bad_val[0], val)
    p = run(["train", data, "--val", val, "--steps", "2", "--eval-every", "1", "-b", "2",
             "--size", "16", "--width", "4", "--workers", "0", "--out", tmp_path / "run",
             "-q"])  # fmt: skip
    err = p.stderr.decode()
    assert p.returncode == 1, err  # some inputs failed, as every tool says it
    for c in [*bad, *bad_val]:
        assert err.count(c.name) == 1, err
    assert len(err.splitlines()) == len(bad) + 1 and "Traceback" not in err
    weights = tmp_path / "run" / "cls.pt"  # trained on the others: the product is whole
    assert p.stdout.decode() == f"{weights}\n" and weights.is_file()


def test_every_torch_load_is_weights_only():
    import ast

    calls = 0
    for path in [*ROOT.glob("recolor_tools/**/*.py"), *ROOT.glob("weights/*.py"),
                 *ROOT.glob("benchmarks/*.py")]:  # fmt: skip
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("torch.load"):
                calls += 1
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert kw.get("weights_only") == "True", f"{path}:{node.lineno}"
    assert calls >= 1
