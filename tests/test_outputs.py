"""The output router (recolor_tools.outputs) through the real CLI: devices, FIFOs, links, names
from record headers, full disks, --skip-existing, signals."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    RECOLOR,
    ROOT,
    deep_tree,
    disk_full,
    fifo_read_whole,
    pipeline,
    run,
    sigint_default,
    smooth_image,
    write_rgb,
)

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


def _made_once(tmp_path_factory, *args) -> bytes:
    """What ``recolor ARGS a.png`` writes on stdout for an image as :func:`png`'s (a record's
    source is that other a.png)."""
    d = tmp_path_factory.mktemp("png")
    write_rgb(d / "a.png", smooth_image(12, 16, 1))
    return run([*args, "a.png"], cwd=d, check_rc=0).stdout


@pytest.fixture(scope="module")
def png_lab(tmp_path_factory) -> bytes:
    """``to-lab a.png``'s record stream (made once)."""
    return _made_once(tmp_path_factory, "to-lab")


@pytest.fixture(scope="module")
def png_stats(tmp_path_factory) -> bytes:
    """``rebalance-stats a.png -o -``'s statistics (made once)."""
    return _made_once(tmp_path_factory, "rebalance-stats", "-o", "-", "-q")


def _lines(p) -> list[str]:
    return p.stderr.decode().splitlines()


def test_output_onto_a_device_writes_in_place(tmp_path, png, png_lab):
    null = _char_device(tmp_path / "null", 3)
    for tool in (["to-lab"], ["from-lab"]):
        src = png if tool == ["to-lab"] else tmp_path / "a.lab"
        if tool == ["from-lab"]:
            src.write_bytes(png_lab)
        run([*tool, src, "-o", null], check_rc=0)
        assert stat.S_ISCHR(os.stat(null).st_mode), "the device was replaced by a file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_into_a_fifo_and_dev_stdout(tmp_path, png):
    fifo = tmp_path / "fifo"
    with fifo_read_whole(fifo) as got:
        run(["to-lab", png, "-o", fifo], check_rc=0)
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


def test_a_fifo_is_written_in_the_chosen_format_whatever_its_name(tmp_path, png, tiny_cls, png_lab):
    """`predict a.jpg -o pipe.png` wrote png (the FIFO's name) where the README says the
    input's format or --format (`--format jpg` was ignored, unsaid), and `-o pipe.out` failed
    every input as an unknown format; from-lab refused `pipe.out` too.

    Folded in, test_predict_writes_a_fifo_in_place: predict -o FIFO (as -o /dev/null or
    /dev/stdout) was refused as "exists and is not a directory" (a name without an image
    extension, pipe.out, names a folder): with one input it is written in place, in --format or
    the input's format."""
    jpg = tmp_path / "a.jpg"
    cv2.imwrite(str(jpg), cv2.imread(str(png)))

    def through(fifo_name: str, args: list) -> bytes:
        fifo = tmp_path / fifo_name
        with fifo_read_whole(fifo) as got:
            p = run([*args, "-o", fifo])
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout == b"", args  # no path printed: it would follow the image on /dev/stdout
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert got, args
        return got[0]

    predict = ["predict", "-w", tiny_cls, "--size", "16"]
    assert through("pipe.png", [*predict, jpg])[:3] == b"\xff\xd8\xff"
    assert through("pipe.png", [*predict, jpg, "--format", "webp"])[8:12] == b"WEBP"
    assert through("pipe.out", [*predict, png])[:4] == b"\x89PNG"
    lab = tmp_path / "a.lab"
    lab.write_bytes(png_lab)
    assert through("pipe.out", ["from-lab", lab])[:4] == b"\x89PNG"
    assert through("pipe.out", ["from-lab", lab, "--format", "jpg"])[:3] == b"\xff\xd8\xff"
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "a.jpg", "a.lab", "a.png", "pipe.out", "pipe.png"
    ]  # fmt: skip


def test_a_fifo_whose_reader_has_gone_is_one_line_and_ends_the_run(tmp_path):
    """`-o fifo` read by `head -c 10`: exit 1 with nothing said (a closed stdout's quiet end,
    which a named output is not)."""
    imgs = [write_rgb(tmp_path / f"{i}.png", smooth_image(100, 100, i)) for i in range(3)]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def head() -> None:  # reads 10 bytes, closes: 3 records of 120 kB overflow the pipe
        with open(fifo, "rb") as f:
            got.append(f.read(10))

    reader = threading.Thread(target=head, daemon=True)
    reader.start()
    p = run(["to-lab", *imgs, "-o", fifo])
    reader.join(timeout=60)
    assert got and got[0].startswith(b"RCLR")
    assert (p.returncode, p.stderr.decode()) == (
        1, f"recolor to-lab: {fifo}: broken pipe (its reader has gone)\n"
    )  # fmt: skip
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_rewritten_output_keeps_its_permissions_and_a_new_one_follows_the_umask(tmp_path, png):
    """A private (0600) output came back 0644 when written again; `>`, `cp` and `sed -i` keep
    it. New outputs get 0666 & ~umask, as from any Unix tool."""
    out = tmp_path / "b.lab"

    def mode(umask: int, *args) -> int:
        run(["to-lab", png, *args, "-o", out], check_rc=0, preexec_fn=lambda: os.umask(umask))
        return stat.S_IMODE(os.stat(out).st_mode)

    assert mode(0o022) == 0o644
    out.chmod(0o600)
    assert mode(0o022) == 0o600
    out.unlink()
    assert mode(0o077) == 0o600
    out.unlink()
    assert mode(0o002, "--l-only") == 0o664


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_rewritten_output_keeps_its_owner_and_group(tmp_path, png):
    """Written again by root (a container writing into a user's mounted folder), a user's
    output became root's; `sed -i` keeps the owner and group."""
    out = tmp_path / "b.lab"
    run(["to-lab", png, "-o", out], check_rc=0)
    os.chown(out, 4321, 8765)
    out.chmod(0o640)
    run(["to-lab", png, "--l-only", "-o", out], check_rc=0)
    st = os.stat(out)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 8765, 0o640)
    out.unlink()
    run(["to-lab", png, "-o", out], check_rc=0)  # a new file is the writer's
    assert (os.stat(out).st_uid, os.stat(out).st_gid) == (os.geteuid(), os.getegid())


def test_a_temporary_file_swapped_for_a_link_gives_its_target_nothing(tmp_path):
    """The owner and mode of the file replaced were given by name to the temporary file after
    writing: a user who swapped it for a link (root writing into their folder) had root give
    them the link's target. They go to the file written, through its descriptor."""
    from recolor_tools.fileio import atomic_open

    victim = tmp_path / "victim"
    victim.write_bytes(b"root's")
    victim.chmod(0o600)
    out = tmp_path / "d" / "o.bin"
    out.parent.mkdir()
    out.write_bytes(b"old")
    out.chmod(0o666)
    if os.geteuid() == 0:
        os.chown(out, 4321, 8765)
    with atomic_open(out) as f:
        f.write(b"new")
        (tmp,) = out.parent.glob(".o.bin.*.tmp")
        tmp.unlink()
        tmp.symlink_to(victim)
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), os.getegid(), 0o600)


def test_dev_shm_holds_ordinary_files(png):
    """/dev/shm is a folder of files in memory: new files and folders there are written as
    anywhere (any name under /dev was refused as a device never created: "no such file")."""
    import shutil
    import tempfile

    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))  # this test's own folder there
    try:
        run(["to-lab", png, "-o", shm / "a.lab"], check_rc=0)
        run(["to-lab", png, "-o", f"{shm}/dir/"], check_rc=0)
        assert sorted(f.relative_to(shm).as_posix() for f in shm.rglob("*.lab")) == [
            "a.lab", "dir/a.lab"
        ]  # fmt: skip
        assert stat.S_ISREG(os.stat(shm / "a.lab").st_mode)
    finally:
        shutil.rmtree(shm)


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
    p = run(["from-lab", png, "-o", f"{afile}/sub/"])  # the file named, as train names it
    assert p.returncode == 1 and _lines(p) == [f"recolor from-lab: {afile}: not a directory"]
    assert afile.read_bytes() == b"x"
    # -o FILE in a folder that is missing, or a file: named as given, before the image is
    # predicted (it was the real path, after the work); and before the model is loaded (it took
    # 2.5 s to say): weights that are no checkpoint go unread
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"no checkpoint")
    for out, why in (
        ("missing/x.png", "missing: no such directory"),
        ("afile/x.png", "afile: not a directory"),
        ("afile/", "afile: exists and is not a directory"),
        (png, f"{png}: refusing to overwrite an input"),
    ):
        p = run(["predict", png, "-o", out, "-w", junk], cwd=tmp_path)
        assert p.returncode == 1 and _lines(p) == [f"recolor predict: {why}"]
    p = run(["predict", png, "-o", "x.png", "-w", junk], cwd=tmp_path)  # (the weights refused)
    assert p.returncode == 1 and "junk.pt" in _lines(p)[0] and not (tmp_path / "x.png").exists()
    # the single files of rebalance-stats and compare too: found before the counting, and
    # nothing else written (stats.npz and the montage were, the folder said after them)
    for tool, args in (
        ("rebalance-stats", [png, "-o", "s.npz", "--plot", "missing/p.png"]),
        ("compare", [png, png, "--montage", "m.png", "-o", "missing/r.txt"]),
    ):
        p = run([tool, *args, "-q"], cwd=tmp_path)
        assert p.returncode == 1 and _lines(p) == [f"recolor {tool}: missing: no such directory"]
    assert not (tmp_path / "s.npz").exists() and not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_input_and_output_the_same_file_through_a_link(tmp_path, png_lab, link):
    stream = tmp_path / "a.lab"
    stream.write_bytes(png_lab)  # (to-lab's record of an a.png)
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


def test_two_inputs_mapping_to_one_output(tmp_path, tiny_cls):
    """The line names the second input as given (y/a.png), not its base name (a.png)."""
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        write_rgb(tmp_path / d / "a.png", smooth_image(8, 8, 1))
    w = tiny_cls
    for tool, out in (
        (["to-lab"], "o/a.lab"),
        (["from-lab"], "o/a.png"),
        (["quantize", "-q"], "o/a.target"),
        (["predict", "-w", w], "o/a.png"),
    ):
        p = run([*tool, "x/a.png", "y/a.png", "-o", "o/"], cwd=tmp_path)
        assert p.returncode == 1 and _lines(p) == [
            f"recolor {tool[0]}: y/a.png: output {out} was already written for an earlier input"
        ]
        for f in (tmp_path / "o").iterdir():
            f.unlink()


def test_record_names_never_escape_the_output_dir(tmp_path):
    buf = io.BytesIO()
    lab = smooth_image(4, 4, 1).astype("float32") / 2.55
    for name in ("../../evil.png", "/tmp/abs.png", "..", "sub\\win.png", "ok/../../up.png"):
        write_record(buf, lab_record(name, lab, (4, 4)))
    out = tmp_path / "deep" / "out"
    p = run(["from-lab", "-", "-o", f"{out}/"], input=buf.getvalue(), check_rc=0)
    names = ["abs.png", "evil.png", "sub\\win.png", "unnamed.png", "up.png"]  # (\\: a name's own)
    assert sorted(f.name for f in out.iterdir()) == names
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == sorted(
        f.name for f in out.iterdir()
    ), p.stderr


def test_a_backslash_in_a_file_name_is_kept_in_its_outputs_name(tmp_path):
    """x\\y.png is one Linux file: its outputs were named y.png (the backslash taken for a
    folder separator), which clashed with the real y.png beside it and paired wrongly."""
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "x\\y.png", smooth_image(16, 16, 1))
    write_rgb(src / "y.png", smooth_image(16, 16, 2))
    run(["to-lab", src, "-o", f"{tmp_path}/labs/"], check_rc=0)
    assert sorted(f.name for f in (tmp_path / "labs").iterdir()) == ["x\\y.lab", "y.lab"]
    run(["from-lab", tmp_path / "labs", "-o", f"{tmp_path}/back/"], check_rc=0)
    p = run(["compare", tmp_path / "back", src, "--csv"], check_rc=0)
    rows = [r.split(",") for r in p.stdout.decode().splitlines()[1:-1]]
    assert [r[0] for r in rows] == ["x\\y", "y"]
    assert all(float(r[1]) > 40 for r in rows), rows  # each paired with itself (PSNR)


def test_outputs_mirror_an_input_folders_tree(tmp_path, tiny_cls):
    """Two x.png in two subfolders of an input folder: each tool's outputs keep their paths
    below it (they were flattened, and the second was refused as already written), so predict
    is followed by compare, and to-lab by from-lab and quantize, folder to folder."""
    src = tmp_path / "src"
    for i, sub in enumerate(("a", "b/c")):
        (src / sub).mkdir(parents=True)
        write_rgb(src / sub / "x.png", smooth_image(24, 32, i))
    write_rgb(tmp_path / "y.png", smooth_image(24, 32, 5))  # named on its own: its base name
    tree = ["a/x", "b/c/x"]

    def files(d: Path) -> list[str]:
        return sorted(f.relative_to(d).as_posix() for f in d.rglob("*") if f.is_file())

    w = tiny_cls
    # an output folder inside the input folder: a rerun does not take its outputs for inputs
    # (they would go to src/out/out/, or be refused as inputs); here the run is a rerun, a
    # first run's outputs (images) there already
    out = src / "out"
    want = [*(f"{t}.png" for t in tree), "y.png"]
    old = (tmp_path / "y.png").read_bytes()
    for name in want:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(old)
    p = run(["predict", "-w", w, src, tmp_path / "y.png", "-o", f"{out}/"], check_rc=0)
    assert p.stdout.decode().splitlines() == [f"{out}/{n}" for n in want]
    assert files(out) == want and all((out / n).read_bytes() != old for n in want)
    r = run(["compare", out / "b", src / "b", "--csv"], check_rc=0)
    assert [line.split(",")[0] for line in r.stdout.decode().splitlines()] == [
        "name",
        "c/x",
        "mean",
    ]
    again = run(["predict", "-w", w, src, "-o", f"{out}/", "--skip-existing"], check_rc=0)
    assert again.stdout == b""
    # with nothing to do the weights are still checked as loading checks them: a folder is a
    # directory (not "no input was found in it"), a FIFO is no regular file (it waited for a
    # writer), "-" no file of that name (it was taken for stdin)
    os.mkfifo(tmp_path / "w.fifo")
    for weights, why in ((tmp_path, "is a directory"), (tmp_path / "w.fifo", "not a regular file"),
                         ("-", "no such file")):  # fmt: skip
        p = run(["predict", "-w", weights, src, "-o", f"{out}/", "--skip-existing"],
                cwd=tmp_path)  # fmt: skip
        assert (p.returncode, p.stderr.decode()) == (1, f"recolor predict: {weights}: {why}\n")
    out.rename(tmp_path / "moved")  # for the tools below

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


def test_a_file_size_limit_is_named_as_such(tmp_path, png):
    """EFBIG (ulimit -f) was said "no space left on device" while the disk had room."""
    import resource

    def small() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

    big = write_rgb(tmp_path / "big.png", smooth_image(64, 64, 3))  # a record of 64 KB
    out = tmp_path / "all.lab"  # (stdout: test_stdout_cut_short_by_a_file_size_limit_...)
    p = subprocess.run([*RECOLOR, "to-lab", big, png, "-o", out], stderr=subprocess.PIPE,
                       env=_env(), preexec_fn=small)  # fmt: skip
    said = f"recolor to-lab: {out}: file too large (over a file size limit: ulimit -f, or the " \
           "file system's)\n"  # fmt: skip
    assert (p.returncode, p.stderr.decode()) == (1, said)
    assert not out.exists()


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


def test_a_plot_that_fails_leaves_the_statistics_unwritten(tmp_path, png):
    """rebalance-stats wrote -o, then failed on --plot (a full device): the statistics stayed,
    as if the run had done its work, while quantize's -o with a --preview that fails is left
    unwritten; now both."""
    full = _char_device(tmp_path / "full", 7)
    for args in (["rebalance-stats", png, "-o", tmp_path / "s.npz", "--plot", full],
                 ["quantize", png, "-o", tmp_path / "q.lab", "--preview", full]):  # fmt: skip
        p = run([*args, "-q"])
        assert (p.returncode, _lines(p)) == (1, [f"recolor {args[0]}: {full}: no space left on "
                                                 "device"]), args  # fmt: skip
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "full"]
    p = run(["rebalance-stats", png, "-o", "-", "--plot", full, "-q"])  # stdout: none sent
    assert (p.returncode, p.stdout) == (1, b"")


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


def test_no_inode_left_ends_the_run_naming_the_output(tmp_path, png, monkeypatch, capsys):
    """A file system out of inodes fails at the temporary file's creation: each input was
    "OUT: no space left on device" (the folder named, the run going on); now as a full disk."""
    import errno

    import recolor_tools.fileio as fileio
    from recolor_tools.cli import main

    real_open = os.open

    def no_inode(path, flags, *a):
        if str(path).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_open(path, flags, *a)

    monkeypatch.setattr(fileio.os, "open", no_inode)
    b = write_rgb(tmp_path / "b.png", smooth_image(9, 7, 2))
    assert main(["to-lab", str(png), str(b), "-o", f"{tmp_path}/o/"]) == 1
    said = capsys.readouterr().err.splitlines()
    assert said == [f"recolor to-lab: {tmp_path}/o/a.lab: no space left on device"]


def test_a_log_line_is_appended_whole_or_not_at_all(tmp_path):
    """train's metrics.jsonl held half a line (no closing brace) after a full disk, and the
    line said no file; append_whole cuts a failed write back and names the file."""
    log = tmp_path / "metrics.jsonl"
    code = f"""
import resource, sys
from recolor_tools.errors import RecolorError
from recolor_tools.fileio import append_whole
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
try:
    for i in range(100):
        append_whole({str(log)!r}, b'{{"step": %d, "x": "%s"}}\\n' % (i, b"y" * 60))
except RecolorError as e:
    sys.exit(str(e))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=_env())
    assert p.returncode == 1 and f"{log}: file too large" in p.stderr.decode(), p.stderr
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(log.read_bytes()) <= 1000 and len(lines) == 1000 // len(lines[0])
    assert [json.loads(ln)["step"] for ln in lines] == list(range(len(lines)))


def test_skip_existing_finishes_what_is_missing(tmp_path, png):
    b = write_rgb(tmp_path / "b.png", smooth_image(9, 7, 2))
    out = tmp_path / "o"
    run(["to-lab", png, b, "-o", f"{out}/"], check_rc=0)
    (out / "a.lab").write_bytes(b"done")  # a finished output the rerun must not redo
    (out / "b.lab").unlink()
    run(["to-lab", png, b, "-o", f"{out}/", "--skip-existing"], check_rc=0)
    assert (out / "a.lab").read_bytes() == b"done"
    # one stream file: there, it holds every input (a rerun skipped the first input only and
    # wrote the file again without it)
    for i in range(2):
        p = run(["to-lab", png, b, "-o", tmp_path / "all.lab", "--skip-existing"], check_rc=0)
        names = [r.name for r in iter_records(io.BytesIO((tmp_path / "all.lab").read_bytes()))]
        assert names == ["a.png", "b.png"]
        # said once when it skips, inputs added since included (they were dropped unsaid)
        said = (f"recolor to-lab: {tmp_path}/all.lab: exists: every input skipped "
                "(--skip-existing), also any added since it was written; -o DIR/ skips input "
                "by input")  # fmt: skip
        assert _lines(p) == ([] if i == 0 else [said])
    (rec,) = iter_records(io.BytesIO((out / "b.lab").read_bytes()))
    assert rec.name == "b.png"
    run(["from-lab", out / "b.lab", "-o", f"{out}/"], check_rc=0)
    (out / "b.png").write_bytes(b"done")
    run(["from-lab", out / "b.lab", "-o", f"{out}/", "--skip-existing"], check_rc=0)
    assert (out / "b.png").read_bytes() == b"done"
    # predict with every output there loads no model, but a missing --weights is still named
    p = run(["predict", b, "-o", f"{out}/", "--skip-existing", "-w", tmp_path / "no.pt"])
    assert (p.returncode, _lines(p)) == (1, [f"recolor predict: {tmp_path}/no.pt: no such file"])
    assert (out / "b.png").read_bytes() == b"done"
    # an empty file is no output of recolor's (a touch, a `>` that failed): written over
    (out / "b.png").write_bytes(b"")
    (tmp_path / "all.lab").write_bytes(b"")
    run(["from-lab", out / "b.lab", "-o", f"{out}/", "--skip-existing"], check_rc=0)
    run(["to-lab", png, b, "-o", tmp_path / "all.lab", "--skip-existing"], check_rc=0)
    assert (out / "b.png").read_bytes().startswith(b"\x89PNG")
    assert len(list(iter_records(io.BytesIO((tmp_path / "all.lab").read_bytes())))) == 2


def test_a_second_input_of_a_skipped_output_is_not_said_to_be_written(tmp_path, png):
    """y/a.png's output was a.png's, kept by --skip-existing: "was already written for an
    earlier input", where this run wrote nothing."""
    (tmp_path / "y").mkdir()
    other = write_rgb(tmp_path / "y" / "a.png", smooth_image(9, 7, 2))
    out = tmp_path / "o"
    run(["to-lab", png, "-o", f"{out}/"], check_rc=0)
    p = run(["to-lab", png, other, "-o", f"{out}/", "--skip-existing"])
    assert (p.returncode, _lines(p)) == (1, [
        f"recolor to-lab: {other}: output {out}/a.lab exists, kept for an earlier input "
        "(--skip-existing)"
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_signals_remove_temporary_files(tmp_path, png, sig, code):
    """SIGHUP (a closed terminal) ended the run as kill -9 does, its temporary file left."""
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


def _as_a_background_job() -> None:
    """A child's signals as `cmd &` in a script leaves them: SIGINT ignored (the hang below
    showed only then: 0 runs of 6 with SIGINT's default, 5 of 6 with it ignored)."""
    sigint_default()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_signal_while_a_stalled_pipe_is_read_ends_the_run(tmp_path, png):
    """A read blocked on a pipe is woken by a signal only in the thread the kernel hands it to;
    with numpy's and OpenCV's threads about, SIGTERM often went to one of them and the run
    waited on for its stalled writer (10 runs of 12 fed 0.7 s never ended, as background
    jobs), on stdin and on a FIFO named as an input (``<(cmd)``) alike."""
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    for source in ["-", str(fifo)] * 5:
        stdin = subprocess.PIPE if source == "-" else subprocess.DEVNULL
        p = subprocess.Popen([*RECOLOR, "to-lab", source, "-o", str(tmp_path / "out.lab")],
                             stdin=stdin, stderr=subprocess.PIPE, env=_env(),
                             preexec_fn=_as_a_background_job)  # fmt: skip
        writer = p.stdin if source == "-" else open(fifo, "wb")  # noqa: SIM115
        try:
            writer.write(png.read_bytes()[:100])
            end = time.monotonic() + 0.7
            while time.monotonic() < end:  # read as it comes; then the writer stalls
                writer.write(b"\0" * 65536)
            writer.flush()
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=20) == 143, source
        finally:
            with contextlib.suppress(OSError):
                writer.close()
            p.kill()
            p.wait()
        assert "Traceback" not in p.stderr.read().decode()
        assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "f.png"]


@pytest.mark.parametrize("link", [False, True])
def test_plot_and_montage_never_overwrite_an_input(tmp_path, png, link):
    """rebalance-stats --plot and compare --montage refuse an input, also through a symbolic
    link, as -o does (they replaced it and exited 0); nothing else is written then."""
    before = png.read_bytes()
    target = tmp_path / "link.png" if link else png
    if link:
        target.symlink_to(png)
    p = run(["rebalance-stats", png, "-o", tmp_path / "s.npz", "--plot", target, "-q"])
    assert p.returncode == 1 and _lines(p) == [
        f"recolor rebalance-stats: {target}: refusing to overwrite an input"
    ]
    assert not (tmp_path / "s.npz").exists()
    for flag in ("--montage", "-o"):  # refused before comparing: no report on stdout either
        p = run(["compare", png, png, flag, target, "-q"])
        assert p.returncode == 1 and _lines(p) == [
            f"recolor compare: {target}: refusing to overwrite an input"
        ]
        assert p.stdout == b""
    assert png.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", *(["link.png"] * link)]


def test_files_a_run_reads_are_never_written_over(tmp_path, png, tiny_cls, png_stats):
    """--palette, --hints (a file, or a folder's), --stats and --classes are read like inputs:
    -o naming one replaced it and exited 0 (a painted hint layer, a stats file lost)."""
    rgba = np.dstack([smooth_image(12, 16, 3), np.full((12, 16), 255, np.uint8)])
    layer, ref = tmp_path / "layer.png", write_rgb(tmp_path / "ref.png", smooth_image(12, 16, 2))
    cv2.imwrite(str(layer), rgba)
    (tmp_path / "hints").mkdir()
    cv2.imwrite(str(tmp_path / "hints" / "a.png"), rgba)
    stats = tmp_path / "st.npz"
    stats.write_bytes(png_stats)  # rebalance-stats' of a.png
    before = {f: f.read_bytes() for f in (layer, ref, stats, tmp_path / "hints" / "a.png")}
    w = ["-w", tiny_cls]
    for args, target in [
        (["predict", png, *w, "--palette", ref, "-o", ref], ref),
        (["predict", png, *w, "--palette", ref, "--hints", tmp_path / "hints", "-o", ref], ref),
        (["predict", png, *w, "--hints", layer, "-o", layer], layer),
        (["compare", png, png, "--stats", stats, "-o", stats], stats),
        (["quantize", png, "--classes", stats, "-o", stats], stats),
        (["rebalance-stats", png, "--classes", stats, "-o", stats], stats),
    ]:  # fmt: skip
        p = run([*args, "-q"])
        assert (p.returncode, _lines(p)) == (1, [
            f"recolor {args[0]}: {target}: refusing to overwrite an input"
        ]), args  # fmt: skip
    # the hint folder as the output folder: refused before any work (a usage error)
    p = run(["predict", png, "--hints", tmp_path / "hints", "-o", f"{tmp_path}/hints/", "-q"])
    assert p.returncode == 2 and "inside the --hints folder" in p.stderr.decode()
    assert {f: f.read_bytes() for f in before} == before


def test_an_output_made_from_a_record_never_replaces_its_source_image(tmp_path, png):
    """`to-lab a.png | from-lab -o .` named its output after the record, a.png, and replaced the
    image it was made from (shrunk by --max-size, say) with exit 0; quantize --preview DIR/ too.
    The record carries its image's (device, inode), and outputs are checked against it."""
    before = png.read_bytes()
    to_lab = ["to-lab", "--max-size", "8", png]
    lab, back = pipeline(to_lab, ["from-lab", "-", "-o", f"{tmp_path}/"])
    assert lab.returncode == 0 and back.returncode == 1
    why = "refusing to overwrite the image the record was made from"
    assert _lines(back) == [f"recolor from-lab: {png}: {why}"]
    # the image on stdin (`to-lab < a.png`, a regular file there): replaced with exit 0
    tool = shlex.join(map(str, RECOLOR))
    cmd = f"{tool} to-lab < {shlex.quote(str(png))} | {tool} from-lab -o {shlex.quote(str(png))}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, env=env, timeout=600)
    assert p.returncode == 1 and _lines(p) == [f"recolor from-lab: {png}: {why}"]
    assert png.read_bytes() == before
    run(["to-lab", png, "-o", tmp_path / "a.lab"], check_rc=0)  # through a record file too
    p = run(["quantize", tmp_path / "a.lab", "--preview", f"{tmp_path}/", "-o", tmp_path / "t"])
    assert p.returncode == 1 and _lines(p) == [f"recolor quantize: {png}: {why}"]
    # below, `to-lab ... | tool -` with to-lab's records made once: `tool -` reads them from a
    # pipe as above (the same bytes as to-lab's stdout, a.lab's here)
    records = (tmp_path / "a.lab").read_bytes()
    # a stream file named as the image: a usage error now (a record stream named .png), and
    # it is not renamed over it
    quant = run(["quantize", "-", "-o", png], input=records)
    assert quant.returncode == 2 and "writes records, not a png image" in quant.stderr.decode()
    stats = run(["rebalance-stats", "-", "-q", "--plot", png], input=records)  # after counting
    assert stats.returncode == 1 and _lines(stats) == [f"recolor rebalance-stats: {png}: {why}"]
    stats = run(["rebalance-stats", "-", "-q", "-o", png], input=records)  # (an npz: usage)
    assert stats.returncode == 2 and "writes statistics, not a png image" in stats.stderr.decode()
    # -o FILE / --preview FILE is the source of one record of several, whatever its place:
    # the other record's image was written over it
    second = write_rgb(tmp_path / "b.png", smooth_image(6, 8, 4))
    tools = (
        ["from-lab", "-", "-o", png],
        ["quantize", "-", "--preview", png, "-o", tmp_path / "t"],
    )
    for order in ([png, second], [second, png]):
        records = run(["to-lab", *order], check_rc=0).stdout
        for tool in tools:
            out = run([*tool, "-q"], input=records)
            assert out.returncode == 1 and f"{png}: {why}" in out.stderr.decode(), tool
            assert png.read_bytes() == before, (order, tool)
    assert png.read_bytes() == before
    other = tmp_path / "other"  # another file of that name is an output like any
    other.mkdir()
    (other / "a.png").write_bytes(b"old")
    run(["from-lab", tmp_path / "a.lab", "-o", f"{other}/"], check_rc=0)
    assert (other / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_two_outputs_of_one_run_naming_one_file_is_a_usage_error(tmp_path, png):
    """compare -o and --montage, rebalance-stats -o and --plot on one file: the second replaced
    the first, exit 0; now refused before any work. (quantize's -o names records, its --preview
    an image: `-o x.png` is refused as such, test_a_record_stream_named_as_an_image_...)"""
    out = tmp_path / "x.png"
    for args, flags in [
        (["compare", png, png, "--montage", out, "-o", out], "--montage and -o"),
        (["rebalance-stats", png, "-o", out, "--plot", out], "-o and --plot"),
    ]:
        p = run([*args, "-q"])
        assert (p.returncode, _lines(p)) == (2, [
            f"recolor {args[0]}: {flags} name one file, {out}: give each its own "
            f"(see recolor {args[0]} -h)"
        ])  # fmt: skip
        assert not out.exists()
    # folders whose files do not all pair: the pairing's lines came first, then the usage line
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    for folder, names in ((pred, ("a.png", "b.png")), (truth, ("a.png", "c.png"))):
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes(png.read_bytes())
    p = run(["compare", pred, truth, "--montage", out, "-o", out, "-q"])
    assert (p.returncode, _lines(p)) == (2, [
        f"recolor compare: --montage and -o name one file, {out}: give each its own "
        "(see recolor compare -h)"
    ])  # fmt: skip
    null = _char_device(tmp_path / "null", 3)  # a device takes both, as before
    run(["rebalance-stats", png, "-o", null, "--plot", null, "-q"], check_rc=0)
    fifo = tmp_path / "fifo"  # a FIFO does not: its reader takes one file (the second hung)
    os.mkfifo(fifo)
    os.link(fifo, tmp_path / "fifo2")  # also through a hard link
    for other in (fifo, tmp_path / "fifo2"):
        p = run(["compare", png, png, "--montage", fifo, "-o", other, "-q"])
        assert p.returncode == 2 and "--montage and -o name one file" in p.stderr.decode()


def test_a_stream_file_that_no_input_reached_is_not_created(tmp_path, png):
    """to-lab and quantize -o FILE with every input failing left an empty FILE, which a rerun
    with --skip-existing then skipped; now no file, and a rerun writes it."""
    bad = tmp_path / "b.png"
    bad.write_bytes(png.read_bytes()[:50])
    empty = tmp_path / "z.png"
    empty.write_bytes(b"")
    out = tmp_path / "b.lab"
    assert run(["to-lab", bad, "-o", out]).returncode == 1
    assert run(["quantize", empty, "-o", tmp_path / "q.target", "-q"]).returncode == 1
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "b.png", "z.png"]
    bad.write_bytes(png.read_bytes())  # fixed: the rerun does it
    run(["to-lab", bad, "-o", out, "--skip-existing"], check_rc=0)
    (rec,) = iter_records(io.BytesIO(out.read_bytes()))
    assert rec.name == "b.png"


def test_dash_is_stdout_for_rebalance_stats_and_no_file_for_plot_or_montage(tmp_path, png):
    """-o - wrote a file named "-": rebalance-stats -o - now writes the stats to stdout (refused
    on a terminal, as all binary data), and --plot - or --montage - is a usage error, as
    quantize --preview - is."""
    import pty

    from recolor_tools.rebalance import RebalanceStats

    p = run(["rebalance-stats", png, "-o", "-", "-q"], cwd=tmp_path, check_rc=0)
    (tmp_path / "s.npz").write_bytes(p.stdout)
    assert RebalanceStats.load(tmp_path / "s.npz").n_images == 1
    for args, flag in (
        (["rebalance-stats", png, "--plot", "-"], "--plot"),
        (["compare", png, png, "--montage", "-"], "--montage"),
    ):
        p = run(args, cwd=tmp_path)
        assert p.returncode == 2 and _lines(p) == [
            f"recolor {args[0]}: {flag} needs a FILE, not stdout (see recolor {args[0]} -h)"
        ]
    leader, follower = pty.openpty()
    try:
        p = subprocess.run([*RECOLOR, "rebalance-stats", str(png), "-o", "-"], cwd=tmp_path,
                           stdout=follower, stderr=subprocess.PIPE, env=_env())  # fmt: skip
    finally:
        os.close(follower)
        os.close(leader)
    assert p.returncode == 2 and _lines(p) == [
        "recolor rebalance-stats: refusing to write binary data to a terminal; use -o or a pipe "
        "(see recolor rebalance-stats -h)"
    ]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "s.npz"]


def test_an_output_file_that_is_a_folder_is_named_not_its_temporary(tmp_path, png):
    """rebalance-stats -o FOLDER named its own temporary file (.FOLDER.xxxxxxxx.tmp: is a
    directory), after all the counting; it is now a usage error before any, and an atomic write
    that cannot replace its target names the target, the folder left empty."""
    from recolor_tools.errors import RecolorError
    from recolor_tools.fileio import atomic_open

    (tmp_path / "outdir").mkdir()
    p = run(["rebalance-stats", png, "-o", "outdir", "-q"], cwd=tmp_path)
    assert p.returncode == 2 and _lines(p) == [
        "recolor rebalance-stats: -o outdir: names a stats file, not a directory "
        "(see recolor rebalance-stats -h)"
    ]
    with pytest.raises(RecolorError) as e, atomic_open(tmp_path / "outdir") as f:
        f.write(b"stats")
    assert (e.value.path, e.value.reason) == (str(tmp_path / "outdir"), "is a directory")
    assert list((tmp_path / "outdir").iterdir()) == []
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png", "outdir"]


def test_an_unwritable_output_folder_is_named_as_given(tmp_path, monkeypatch):
    """The folder was named by its real path (/tmp/.../ro for ro/a.lab); an output that is a
    link into another folder names that folder, where the file is written."""
    from recolor_tools.errors import RecolorError
    from recolor_tools.fileio import atomic_open

    real_open = os.open

    def refuse(path, flags, *args, **kw):  # root writes anywhere: the kernel's EACCES by hand
        if flags & os.O_CREAT and str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kw)

    (tmp_path / "ro").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "ro" / "b.lab").symlink_to(tmp_path / "elsewhere" / "b.lab")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "open", refuse)
    for given, named in (("ro/a.lab", "ro"), ("./ro/../ro/a.lab", "ro/../ro"),
                         ("link/a.lab", "link"),
                         ("ro/b.lab", str(tmp_path / "elsewhere"))):  # fmt: skip
        with pytest.raises(RecolorError) as e, atomic_open(given):
            pass
        assert (e.value.path, e.value.reason) == (named, "permission denied")


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_report_on_a_full_stdout_is_one_line(tmp_path, png, unbuffered, tiny_cls):
    """compare's report (and rebalance-stats' summary) on a full stdout: the line every tool
    gives, not "internal error: OSError" (stdout unbuffered, or a report over its buffer)."""
    full = _char_device(tmp_path / "full", 7)
    # (tiny models: the paths printed are what is tested, not the model)
    train = ["train", png, "--steps", "1", "--size", "24", "-b", "1", "--workers", "0", "-q",
             "--head", "reg", "--width", "4"]  # fmt: skip
    predict = ["predict", "-w", tiny_cls, png]
    for args in (["compare", png, png], ["rebalance-stats", png],
                 [*predict, "-o", tmp_path / "out/"], [*predict, "--suggest", "1,1"],
                 [*train, "--out", tmp_path / f"run{unbuffered}"]):  # fmt: skip
        # predict's and train's paths: it blamed the input (predict), or exited 0 (train)
        with open(full, "wb") as out:
            p = subprocess.run([*RECOLOR, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                               env={**_env(), "PYTHONUNBUFFERED": unbuffered})  # fmt: skip
        assert p.returncode == 1
        assert _lines(p) == [f"recolor {args[0]}: <stdout>: no space left on device"]


def test_stdout_cut_short_by_a_file_size_limit_is_one_line(tmp_path, png, png_stats):
    """A write to stdout that stops part way (a file size limit, a pipe's reader gone after
    64 KiB) returned a short count that compare's report and rebalance-stats' npz took for
    done: a cut file, exit 0. Both write all of it or say why now."""
    import resource
    import shutil

    for d in ("p", "t"):
        (tmp_path / d).mkdir()
        for i in range(40):
            shutil.copy(png, tmp_path / d / f"a_rather_long_name_to_fill_the_report_{i:02d}.png")
    report = run(["compare", tmp_path / "p", tmp_path / "t", "--csv"], check_rc=0).stdout
    stats = png_stats  # what `rebalance-stats a.png -o -` writes
    for args, whole in ((["compare", tmp_path / "p", tmp_path / "t", "--csv"], report),
                        (["rebalance-stats", png, "-o", "-", "-q"], stats)):  # fmt: skip
        limit = len(whole) // 2

        def small() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # noqa: B023

        with open(tmp_path / "out", "wb") as out:
            p = subprocess.run([*RECOLOR, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                               env=_env(), preexec_fn=small)  # fmt: skip
        assert p.returncode == 1 and _lines(p) == [
            f"recolor {args[0]}: <stdout>: file too large (over a file size limit: ulimit -f, "
            "or the file system's)"
        ], (len(whole), p.stderr)


def test_output_folder_removed_while_writing_is_named(tmp_path):
    """A folder removed under a write is reported as that, naming the folder, not as a
    missing file (which reads like a missing input)."""
    import shutil

    from recolor_tools.errors import RecolorError
    from recolor_tools.fileio import atomic_open

    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(RecolorError) as e, atomic_open(folder / "x.png") as f:
        f.write(b"data")
        shutil.rmtree(folder)
    assert str(e.value) == f"{folder}: the folder was removed while writing"


def test_a_stdout_appended_to_an_input_is_refused_and_the_input_kept(tmp_path):
    """``recolor to-lab a.png >> a.png`` added a record to the image (exit 0), and ``quantize
    s.lab >> s.lab`` then read its own targets back as input; ``cat`` refuses it."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    img = write_rgb(tmp_path / "a.png", smooth_image(24, 32, 1))
    write_rgb(tmp_path / "b.png", smooth_image(24, 32, 2))
    lab = tmp_path / "s.lab"
    lab.write_bytes(run(["to-lab", img], check_rc=0).stdout)
    cases = [(img, ["to-lab", img]), (lab, ["quantize", lab]),
             (lab, ["from-lab", lab, "-o", "-"]), (img, ["predict", img, "-o", "-"]),
             (img, ["rebalance-stats", img, "-o", "-"]), (img, ["rebalance-stats", img]),
             (img, ["compare", tmp_path / "b.png", img]),
             (img, ["predict", img, "-o", f"{tmp_path}/out/"])]  # fmt: skip
    for target, args in cases:
        before = target.read_bytes()
        with open(target, "ab") as out:  # the shell's >>
            p = subprocess.run([*RECOLOR, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)  # fmt: skip
        assert p.returncode == 1 and _lines(p) == [
            f"recolor {args[0]}: {target}: refusing to overwrite an input (it is stdout too)"
        ], (args, p.stderr)
        assert target.read_bytes() == before, args
    # the same through stdin (`recolor to-lab < a.png >> a.png`), and an output file that is
    # the file stdin reads (`-o a.target < a.target`: the input replaced by the rename)
    target = tmp_path / "q.target"
    target.write_bytes(lab.read_bytes())
    cases = [
        (img, ["to-lab"], None),
        (lab, ["quantize", "-"], None),
        (lab, ["from-lab", "-o", "-"], None),
        (target, ["quantize", "-o", target], target),
    ]
    for source, args, named in cases:  # fmt: skip
        before = source.read_bytes()
        with open(source, "rb") as stdin, open(named or source, "ab") as out:
            p = subprocess.run([*RECOLOR, *map(str, args)], stdin=stdin, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL if named else out, env=env)  # fmt: skip
        said = f"{named}: refusing to overwrite an input" if named else (
            "-: refusing to overwrite an input (it is stdout too)")  # fmt: skip
        assert p.returncode == 1 and _lines(p) == [f"recolor {args[0]}: {said}"], p.stderr
        assert source.read_bytes() == before, args
    # nor the image a record was made from (`from-lab -o - a.lab >> a.png`: records carry it;
    # s.lab's record was made from a.png, not an input here)
    made = img.read_bytes()
    for args in (["from-lab", lab, "-o", "-"], ["quantize", lab], ["rebalance-stats", lab],
                 ["rebalance-stats", lab, "-o", "-"]):  # fmt: skip
        with open(img, "ab") as out:
            p = subprocess.run([*RECOLOR, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, env=env)  # fmt: skip
        assert p.returncode == 1 and _lines(p)[0].endswith(
            "refusing to overwrite the image the record was made from (it is stdout)"
        ), (args, p.stderr)
        assert img.read_bytes() == made, args
    # a stdout that is another file is written as before
    with open(tmp_path / "other.lab", "ab") as out:
        p = subprocess.run([*RECOLOR, "to-lab", str(img)], stdout=out, env=env)
    assert p.returncode == 0 and (tmp_path / "other.lab").stat().st_size > 0


def test_an_interrupt_as_the_temporary_file_is_made_removes_it(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM just after the temporary file was created, before its name was known
    (inside mkstemp), left it behind, empty: 28 of 150 runs of to-lab killed at random."""
    from recolor_tools.fileio import atomic_open

    real_open = os.open

    def interrupted(path, flags, *a, **kw):
        fd = real_open(path, flags, *a, **kw)
        if flags & os.O_CREAT and str(path).endswith(".tmp"):
            raise KeyboardInterrupt  # as the signal handler raises it there
        return fd

    monkeypatch.setattr(os, "open", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_open(tmp_path / "out.png") as f:
        f.write(b"never")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_tree_1000_folders_deep_is_read_and_mirrored(tmp_path, png):
    """Listing it (rglob) and making its output folders (mkdir(parents=True)) recursed once a
    level: "internal error: RecursionError", the whole run lost, the other inputs with it."""
    out = tmp_path / "out"
    with deep_tree(tmp_path / "in", 1000, out) as deep:
        (deep / "x.png").write_bytes(png.read_bytes())
        p = run(["to-lab", png, tmp_path / "in", "-o", f"{out}/"])
        assert p.returncode == 0, p.stderr.decode()[-300:]
        assert (out / "a.lab").exists()
        assert (out / os.path.relpath(deep, tmp_path / "in") / "x.lab").exists()


def test_a_folder_that_takes_no_file_is_found_before_writing_where_a_link_leads(
    tmp_path, monkeypatch
):
    """Outputs.check refuses an output whose folder takes no new file before anything of the
    input is written (quantize wrote a target whose preview then failed); the folder is the one
    the file is written in, a link's target's (ro/a.png -> ../rw/a.png was refused for ro/, and
    rw/b.png -> ../ro/b.png let through). Root writes anywhere, so the refusal is simulated."""
    from recolor_tools.errors import RecolorError
    from recolor_tools.outputs import Outputs

    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "a.png").symlink_to(rw / "a.png")  # dangling: the output makes it
    (rw / "b.png").symlink_to(ro / "b.png")
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: Path(p).resolve() != ro and access(p, mode, **kw)
    )

    def check(output: Path) -> None:
        Outputs(str(output), [], ".png", lambda: None, many_per_file=False).check("x")

    check(ro / "a.png")
    with pytest.raises(RecolorError, match="permission denied") as e:
        check(rw / "b.png")
    assert e.value.path == str(ro)
    with pytest.raises(RecolorError, match="permission denied"):
        check(ro / "c.png")
    monkeypatch.chdir(tmp_path)  # named as given, as atomic_open names it (was /tmp/.../ro)
    with pytest.raises(RecolorError, match="permission denied") as e:
        check(Path("ro") / "c.png")
    assert e.value.path == "ro"
    # a read-only mount (which access() refuses too) says so, as writing there would
    statvfs = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result(
        (*statvfs(p)[:8], statvfs(p).f_flag | os.ST_RDONLY, statvfs(p).f_namemax)))  # fmt: skip
    with pytest.raises(RecolorError) as e:
        check(ro / "c.png")
    assert e.value.reason == "read-only file system"
