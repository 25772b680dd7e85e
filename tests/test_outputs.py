"""The output router (recolor_tools.outputs) through the real CLI: devices, FIFOs, links, names
from record headers, full disks, --skip-existing, signals."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import RECOLOR, ROOT, disk_full, run, sigint_default, smooth_image, write_rgb

from recolor_tools.records import iter_records, lab_record, write_record


def _env() -> dict:
    return {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}


def _char_device(path: Path, minor: int) -> Path:
    """A twin of /dev/null (minor 3) or /dev/full (minor 7) inside the test's own directory."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("mknod needs root")
    return path


@pytest.fixture
def png(tmp_path: Path) -> Path:
    return write_rgb(tmp_path / "a.png", smooth_image(12, 16, 1))


def _lines(p) -> list[str]:
    return p.stderr.decode().splitlines()


def test_output_onto_a_device_writes_in_place(tmp_path, png):
    null = _char_device(tmp_path / "null", 3)
    for tool in (["to-lab"], ["from-lab"]):
        src = png if tool == ["to-lab"] else tmp_path / "a.lab"
        if tool == ["from-lab"]:
            run(["to-lab", png, "-o", src], check_rc=0)
        run([*tool, src, "-o", null], check_rc=0)
        assert stat.S_ISCHR(os.stat(null).st_mode), "the device was replaced by a file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_into_a_fifo_and_dev_stdout(tmp_path, png):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    run(["to-lab", png, "-o", fifo], check_rc=0)
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (rec,) = iter_records(io.BytesIO(got[0]))
    assert rec.name == "a.png" and rec.arrays["lab"].shape == (12, 16, 3)
    # -o /dev/stdout with stdout a pipe (captured) and a regular file the shell opened to append
    p = run(["to-lab", png, "-o", "/dev/stdout"], check_rc=0)
    assert p.stdout == got[0]
    log = tmp_path / "log"
    log.write_bytes(b"kept")
    with open(log, "ab") as out:
        subprocess.run([*RECOLOR, "to-lab", png, "-o", "/dev/stdout"], stdout=out, env=_env())
    assert log.read_bytes() == b"kept" + got[0]


def test_output_onto_a_socket_is_one_line_and_the_socket_stays(tmp_path, png):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        p = run(["to-lab", png, "-o", path])
    assert p.returncode == 1 and len(_lines(p)) == 1
    assert _lines(p)[0].startswith(f"recolor to-lab: {path}: ")
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_output_dir_that_is_a_file_or_cannot_be_made(tmp_path, png):
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    p = run(["to-lab", png, "-o", f"{afile}/"])
    assert p.returncode == 1 and _lines(p) == [
        f"recolor to-lab: {afile}: exists and is not a directory"
    ]
    p = run(["from-lab", png, "-o", f"{afile}/sub/"])
    assert p.returncode == 1 and _lines(p) == [
        f"recolor from-lab: {afile}/sub: cannot create the output directory (not a directory)"
    ]
    assert afile.read_bytes() == b"x"


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_input_and_output_the_same_file_through_a_link(tmp_path, png, link):
    stream = tmp_path / "a.lab"
    run(["to-lab", png, "-o", stream], check_rc=0)
    before = stream.read_bytes()
    other = tmp_path / "other.lab"
    (os.symlink if link == "symlink" else os.link)(stream, other)
    p = run(["to-lab", stream, other, "-o", stream])
    assert p.returncode == 1 and "refusing to overwrite an input" in p.stderr.decode()
    png_link = tmp_path / "other.png"  # from-lab writes images: the input under an image name
    (os.symlink if link == "symlink" else os.link)(stream, png_link)
    p = run(["from-lab", stream, "-o", png_link])
    assert p.returncode == 1 and "refusing to overwrite an input" in p.stderr.decode()
    assert stream.read_bytes() == before


def test_a_symlinked_output_is_followed_not_replaced(tmp_path, png):
    real = tmp_path / "real.lab"
    real.write_bytes(b"old")
    (tmp_path / "link.lab").symlink_to(real)
    run(["to-lab", png, "-o", tmp_path / "link.lab"], check_rc=0)
    assert (tmp_path / "link.lab").is_symlink() and real.read_bytes()[:4] == b"RCLR"


def test_two_inputs_mapping_to_one_output(tmp_path):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        write_rgb(tmp_path / d / "a.png", smooth_image(8, 8, 1))
    for tool, out in (("to-lab", "o/a.lab"), ("from-lab", "o/a.png")):
        p = run([tool, tmp_path / "x/a.png", tmp_path / "y/a.png", "-o", f"{tmp_path}/o/"])
        assert p.returncode == 1 and _lines(p) == [
            f"recolor {tool}: a.png: output {tmp_path / out} was already written for an "
            "earlier input"
        ]


def test_record_names_never_escape_the_output_dir(tmp_path):
    buf = io.BytesIO()
    lab = smooth_image(4, 4, 1).astype("float32") / 2.55
    for name in ("../../evil.png", "/tmp/abs.png", "..", "sub\\win.png", "ok/../../up.png"):
        write_record(buf, lab_record(name, lab, (4, 4)))
    out = tmp_path / "deep" / "out"
    p = run(["from-lab", "-", "-o", f"{out}/"], input=buf.getvalue(), check_rc=0)
    names = ["abs.png", "evil.png", "unnamed.png", "up.png", "win.png"]
    assert sorted(f.name for f in out.iterdir()) == names
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == sorted(
        f.name for f in out.iterdir()
    ), p.stderr


def test_outputs_mirror_an_input_folders_tree(tmp_path):
    """Two x.png in two subfolders of an input folder: each tool's outputs keep their paths
    below it (they were flattened, and the second was refused as already written), so predict
    is followed by compare, and to-lab by from-lab and quantize, folder to folder."""
    from conftest import tiny_checkpoint

    src = tmp_path / "src"
    for i, sub in enumerate(("a", "b/c")):
        (src / sub).mkdir(parents=True)
        write_rgb(src / sub / "x.png", smooth_image(24, 32, i))
    write_rgb(tmp_path / "y.png", smooth_image(24, 32, 5))  # named on its own: its base name
    tree = ["a/x", "b/c/x"]

    def files(d: Path) -> list[str]:
        return sorted(f.relative_to(d).as_posix() for f in d.rglob("*") if f.is_file())

    w = tiny_checkpoint(tmp_path / "cls.pt", "cls")
    p = run(["predict", "-w", w, src, tmp_path / "y.png", "-o", f"{tmp_path}/out/"], check_rc=0)
    want = [*(f"{t}.png" for t in tree), "y.png"]
    assert p.stdout.decode().splitlines() == [f"{tmp_path}/out/{n}" for n in want]
    assert files(tmp_path / "out") == want
    r = run(["compare", tmp_path / "out" / "b", src / "b", "--csv"], check_rc=0)
    assert [line.split(",")[0] for line in r.stdout.decode().splitlines()] == [
        "name",
        "c/x",
        "mean",
    ]
    again = run(["predict", "-w", w, src, "-o", f"{tmp_path}/out/", "--skip-existing"], check_rc=0)
    assert again.stdout == b""
    # an output folder inside the input folder: a rerun does not take its outputs for inputs
    # (they would go to src/out/out/, or be refused as inputs)
    for _ in range(2):
        p = run(["predict", "-w", w, src, "-o", f"{src}/out/"], check_rc=0)
        assert p.stdout.decode().splitlines() == [f"{src}/out/{t}.png" for t in tree]
    assert files(src / "out") == [f"{t}.png" for t in tree]
    (src / "out").rename(tmp_path / "moved")  # for the tools below

    run(["to-lab", src, "-o", f"{tmp_path}/labs/"], check_rc=0)
    assert files(tmp_path / "labs") == [f"{t}.lab" for t in tree]
    run(["from-lab", tmp_path / "labs", "-o", f"{tmp_path}/back/"], check_rc=0)
    assert files(tmp_path / "back") == [f"{t}.png" for t in tree]
    for inputs, out in ((tmp_path / "labs", "t1"), (src, "t2")):  # records or images
        run(["quantize", inputs, "-o", f"{tmp_path}/{out}/", "-q"], check_rc=0)
        assert files(tmp_path / out) == [f"{t}.target" for t in tree]
    for inputs, out in ((tmp_path / "labs", "s1.npz"), (src, "s2.npz")):
        run(["rebalance-stats", inputs, "-o", tmp_path / out, "-q"], check_rc=0)
    assert (tmp_path / "s1.npz").read_bytes() == (tmp_path / "s2.npz").read_bytes()


def test_stdout_on_a_full_device(tmp_path, png):
    full = _char_device(tmp_path / "full", 7)
    for args in (["to-lab", png, png], ["from-lab", png]):
        with open(full, "wb") as out:
            p = subprocess.run([*RECOLOR, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                               env=_env())  # fmt: skip
        assert p.returncode == 1
        assert p.stderr.decode().splitlines() == [
            f"recolor {args[0]}: <stdout>: no space left on device"
        ]
        p = run([*args, "-o", full])
        assert p.returncode == 1 and _lines(p) == [
            f"recolor {args[0]}: {full}: no space left on device"
        ]
        assert stat.S_ISCHR(os.stat(full).st_mode)


def test_injected_enospc_leaves_the_target_and_no_temporary(tmp_path, png, monkeypatch, capsys):
    from recolor_tools.cli import main

    target = tmp_path / "out.lab"
    target.write_bytes(b"old")
    disk_full(monkeypatch)
    assert main(["to-lab", str(png), str(png), "-o", str(target)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"recolor to-lab: {target}: no space left on device"
    ]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out.lab"]


def test_skip_existing_finishes_what_is_missing(tmp_path, png):
    b = write_rgb(tmp_path / "b.png", smooth_image(9, 7, 2))
    out = tmp_path / "o"
    run(["to-lab", png, b, "-o", f"{out}/"], check_rc=0)
    (out / "a.lab").write_bytes(b"done")  # a finished output the rerun must not redo
    (out / "b.lab").unlink()
    run(["to-lab", png, b, "-o", f"{out}/", "--skip-existing"], check_rc=0)
    assert (out / "a.lab").read_bytes() == b"done"
    (rec,) = iter_records(io.BytesIO((out / "b.lab").read_bytes()))
    assert rec.name == "b.png"
    run(["from-lab", out / "b.lab", "-o", f"{out}/"], check_rc=0)
    (out / "b.png").write_bytes(b"done")
    run(["from-lab", out / "b.lab", "-o", f"{out}/", "--skip-existing"], check_rc=0)
    assert (out / "b.png").read_bytes() == b"done"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_remove_temporary_files(tmp_path, png, sig, code):
    # After a.png the tool blocks reading stdin, with its output's temporary file open.
    out = tmp_path / "out.lab"
    p = subprocess.Popen([*RECOLOR, "to-lab", str(png), "-", "-o", str(out)],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                         preexec_fn=sigint_default)  # fmt: skip
    deadline = time.monotonic() + 60
    while not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]:
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # a.png converted, now waiting on stdin
    p.send_signal(sig)
    assert p.wait(timeout=60) == code
    assert "Traceback" not in p.stderr.read().decode()
    p.stdin.close()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png"]
