"""to-lab and from-lab through the real command line: pipes, round trips and bad input."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    drain_pty,
    fifo_read_whole,
    pipeline,
    read_rgb_u8,
    run,
    smooth_image,
    write_rgb,
)

from recolor_tools import records


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return cv2.PSNR(np.ascontiguousarray(a), np.ascontiguousarray(b))


@pytest.fixture(scope="module")
def stream_to_a_folder(tmp_path_factory) -> tuple[list, Path, Path]:
    """One ``to-lab ... | from-lab -o "ô ut/"`` through a real pipe of the inputs several tests
    check (conftest's three ``images``, a name with spaces and non-ASCII, a transparent image,
    16-bit gray, RGBA and 16-bit TIFF ones): (the two stages' results, the inputs' folder, the
    output folder)."""
    d = tmp_path_factory.mktemp("stream")
    rgb = smooth_image(32, 48, 5)
    inputs = [
        write_rgb(d / "a.png", smooth_image(48, 64, 1)),
        write_rgb(d / "b.png", smooth_image(40, 30, 2)),
        write_rgb(d / "c.bmp", smooth_image(33, 57, 3)),
        write_rgb(d / "Le Voyage dans la Lune — 1902.png", smooth_image(20, 30, 1)),
        write_rgb(d / "t.png", np.zeros((8, 8, 4), np.uint8)),
        write_rgb(d / "g16.png", (rgb[..., 1].astype(np.uint16) * 257)),
        write_rgb(d / "rgba.png", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
        write_rgb(d / "rgb16.tiff", rgb.astype(np.uint16) * 257),
    ]
    out = d / "ô ut"
    stages = pipeline(["to-lab", *inputs], ["from-lab", "-o", f"{out}/"])
    return stages, d, out


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory) -> tuple[Path, bytes]:
    """A 20 x 20 ``a.png`` and the record stream ``recolor to-lab`` makes of it."""
    src = write_rgb(tmp_path_factory.mktemp("small") / "a.png", smooth_image(20, 20, 1))
    return src, run(["to-lab", src], check_rc=0).stdout


def test_to_lab_from_lab_round_trip_through_a_pipe(tmp_path):
    rgb = smooth_image(60, 80, 7)
    src = write_rgb(tmp_path / "a.png", rgb)
    lab_stage, rgb_stage = pipeline(["to-lab", src], ["from-lab"])
    assert lab_stage.returncode == 0 and rgb_stage.returncode == 0, rgb_stage.stderr
    assert rgb_stage.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(read_rgb_u8(rgb_stage.stdout), rgb)  # every pixel, exactly


def test_a_16_bit_image_round_trips_within_one_level(tmp_path):
    """A 16-bit PNG comes back 16-bit and within 1 of 65,535 (OpenCV's float conversion, which
    this once was, brought it back up to 150 off)."""
    levels = smooth_image(60, 80, 3).astype(np.int64) * 256 + np.arange(80)[:, None] * 3
    rgb16 = levels.astype(np.uint16)  # levels between the 8-bit ones, at most 65,517
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), np.ascontiguousarray(rgb16[:, :, ::-1]))
    _, back = pipeline(["to-lab", src], ["from-lab", "-o", tmp_path / "back.png"])
    assert back.returncode == 0, back.stderr
    got = cv2.imread(str(tmp_path / "back.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert got.dtype == np.uint16 and np.abs(got.astype(np.int64) - rgb16).max() <= 1


def test_many_images_in_one_stream_to_a_directory(stream_to_a_folder):
    stages, d, out = stream_to_a_folder
    assert [s.returncode for s in stages] == [0, 0], stages[1].stderr
    for src in (d / "a.png", d / "b.png", d / "c.bmp"):
        back = read_rgb_u8(out / (src.stem + ".png"))
        assert _psnr(back, read_rgb_u8(src)) > 48


def test_stream_file_keeps_names_and_original_sizes(tmp_path, images):
    stream = tmp_path / "all.lab"
    run(["to-lab", "--max-size", "20", "-o", stream, *images], check_rc=0)
    with open(stream, "rb") as f:
        recs = list(records.iter_records(f))
    assert [r.name for r in recs] == [p.name for p in images]
    for r, p in zip(recs, images, strict=True):
        h, w = read_rgb_u8(p).shape[:2]
        assert r.size == (h, w)
        assert max(r.lab().shape[:2]) == 20


def test_l_only_gives_a_gray_image(tmp_path):
    src = write_rgb(tmp_path / "a.png", smooth_image(30, 40, 3))
    _, back = pipeline(["to-lab", "--l-only", src], ["from-lab"])
    img = read_rgb_u8(back.stdout).astype(int)
    assert np.abs(img[..., 0] - img[..., 1]).max() <= 1
    assert np.abs(img[..., 1] - img[..., 2]).max() <= 1


def test_sixteen_bit_gray_and_rgba_inputs(stream_to_a_folder):
    stages, _, out = stream_to_a_folder  # (g16.png, rgba.png and rgb16.tiff of this image)
    assert [s.returncode for s in stages] == [0, 0], stages[1].stderr
    rgb = smooth_image(32, 48, 5)
    assert _psnr(read_rgb_u8(out / "rgba.png"), rgb) > 48
    assert _psnr(read_rgb_u8(out / "rgb16.png"), rgb) > 48
    gray = read_rgb_u8(out / "g16.png")
    assert _psnr(gray[..., 0], rgb[..., 1]) > 48


def test_transparent_pixels_become_white(stream_to_a_folder):
    stages, _, out = stream_to_a_folder  # (t.png: 8 x 8, every pixel transparent black)
    assert [s.returncode for s in stages] == [0, 0], stages[1].stderr
    assert read_rgb_u8(out / "t.png").min() == 255


def test_exif_orientation_is_honoured(tmp_path):
    rgb = smooth_image(20, 40, 9)
    ok, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    # An APP1 Exif segment (big-endian TIFF) with one IFD entry: Orientation (0x0112) = 6,
    # "rotate 90 degrees clockwise to display".
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08"
        + b"\x00\x01"
        + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
        + b"\x00\x00\x00\x00"
    )
    app1 = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    data = jpg.tobytes()
    (tmp_path / "rot.jpg").write_bytes(data[:2] + seg + data[2:])
    rec_out = run(["to-lab", tmp_path / "rot.jpg"], check_rc=0).stdout
    import io

    (rec,) = records.iter_records(io.BytesIO(rec_out))
    assert rec.lab().shape[:2] == (40, 20)


def test_names_with_spaces_and_unicode(stream_to_a_folder):
    stages, _, out = stream_to_a_folder  # (into "ô ut/")
    assert [s.returncode for s in stages] == [0, 0]
    assert (out / "Le Voyage dans la Lune — 1902.png").exists()


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = write_rgb(tmp_path / "good.jpg", smooth_image(30, 40, 1))
    data = good.read_bytes()
    bad = {
        "empty": tmp_path / "empty.jpg",
        "truncated": tmp_path / "truncated.jpg",
        "text": tmp_path / "text.jpg",
        "missing": tmp_path / "missing.png",
        "directory": tmp_path / "dir.png",
    }
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["text"].write_text("this is not a picture\n")
    bad["directory"].mkdir()
    return bad


def test_bad_images_each_get_one_line_and_the_rest_is_processed(tmp_path):
    bad = _bad_inputs(tmp_path)
    good = tmp_path / "good.jpg"
    last = tmp_path / "last.jpg"  # (a file named twice is done once)
    shutil.copy(good, last)
    p = run(["to-lab", "-o", tmp_path / "s.lab", good, *bad.values(), last])
    assert p.returncode == 1
    lines = p.stderr.decode().splitlines()
    assert len(lines) == len(bad), lines
    for line, path in zip(lines, bad.values(), strict=True):
        assert line.startswith(f"recolor to-lab: {path}: ")
    assert "Traceback" not in p.stderr.decode()
    with open(tmp_path / "s.lab", "rb") as f:
        assert [r.name for r in records.iter_records(f)] == ["good.jpg", "last.jpg"]


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda d: b"", None),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: b"hello, world\n" * 10, "bad magic"),
        (lambda d: d[:4] + b"\x07\x00" + d[6:], "version 7"),
    ],
)
def test_from_lab_bad_streams(tmp_path, small_lab, mangle, reason):
    _, data = small_lab
    p = run(["from-lab", "-o", tmp_path / "x.png"], input=mangle(data))
    assert p.returncode == 1
    err = p.stderr.decode()
    assert len(err.splitlines()) == 1 and err.startswith("recolor from-lab: "), err
    if reason:
        assert reason in err
    assert not (tmp_path / "x.png").exists()
    assert not list(tmp_path.glob(".x.png*")), "a temporary file was left behind"


def test_from_lab_bad_files_and_directory(tmp_path):
    bad = _bad_inputs(tmp_path)
    p = run(["from-lab", "-o", f"{tmp_path}/out/", *bad.values()])
    assert p.returncode == 1
    assert len(p.stderr.decode().splitlines()) == len(bad)


def test_from_lab_refuses_a_format_it_cannot_write_before_reading(tmp_path, small_lab):
    """As predict does: `-f xyz`, or an `-o` FILE named for an image format recolor does not
    write (.gif), is a usage error (once one line per record, naming the record as if it were
    at fault); a name without an image extension is a folder, in both (from-lab called .xyz an
    unknown image format, and wrote `-o out` as a file)."""
    (tmp_path / "a.lab").write_bytes(small_lab[1])  # (to-lab's stream of a.png)
    for args, match in (
        (
            ["-f", "xyz", "-o", f"{tmp_path}/out/"],
            "unknown --format 'xyz' (use one of jpg, jpeg, png, tif, tiff, webp, bmp)",
        ),
        (["-o", tmp_path / "x.gif"], f"-o {tmp_path / 'x.gif'}: unknown image format '.gif'"),
    ):
        p = run(["from-lab", tmp_path / "a.lab", *args])
        err = p.stderr.decode()
        assert p.returncode == 2 and err.startswith(f"recolor from-lab: {match}"), err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.gif").exists()
    for name in ("d.v2", "plain"):  # -o results.v2, -o out: folders, made as DIR/ is
        run(["from-lab", tmp_path / "a.lab", "-o", tmp_path / name], check_rc=0)
        assert [f.name for f in (tmp_path / name).iterdir()] == ["a.png"]


def test_unreadable_file(tmp_path, monkeypatch, capsys):
    src = write_rgb(tmp_path / "secret.png", smooth_image(10, 10, 1))
    os.chmod(src, 0)
    if os.geteuid() == 0:
        # root reads any file, so make the kernel's answer for this one file EACCES by hand.
        from recolor_tools import fileio

        def refuse(path, *args, **kw):
            if str(path) == str(src):
                raise PermissionError(13, "Permission denied", str(path))
            return open(path, *args, **kw)

        monkeypatch.setattr(fileio, "open", refuse, raising=False)
    from recolor_tools.cli import main

    assert main(["to-lab", "-o", str(tmp_path / "s.lab"), str(src)]) == 1
    assert capsys.readouterr().err.strip() == f"recolor to-lab: {src}: permission denied"


def test_never_overwrites_an_input(tmp_path, small_lab):
    src = write_rgb(tmp_path / "a.png", smooth_image(10, 10, 1))
    stream = tmp_path / "a.lab"
    stream.write_bytes(small_lab[1])  # (a stream to-lab wrote)
    before = stream.read_bytes()
    p = run(["to-lab", "-o", stream, src, stream])
    assert p.returncode == 1 and "overwrite an input" in p.stderr.decode()
    assert stream.read_bytes() == before
    p = run(["from-lab", "-o", stream, stream])  # recolor's own kind of file: no folder name
    assert (p.returncode, p.stderr.decode()) == (2, (  # (it said "unknown image format '.lab'")
        f"recolor from-lab: -o {stream}: from-lab writes an image there, not a .lab file (see "
        "recolor from-lab -h)\n"
    ))  # fmt: skip
    p = run(["rebalance-stats", src, "--plot", tmp_path / "p.npz"])  # (a figure's option too)
    assert p.returncode == 2 and "rebalance-stats writes an image there, not a .npz file" in (
        p.stderr.decode()
    )
    assert stream.read_bytes() == before


def test_a_record_stream_named_as_an_image_is_a_usage_error(tmp_path):
    """`to-lab -o x.png` wrote a record stream named .png, exit 0 (the image tools refuse
    `-o x.lab`); a folder or a device of such a name is still written to."""
    src = write_rgb(tmp_path / "a.png", smooth_image(10, 10, 1))
    for tool, ext in (("to-lab", ".lab"), ("quantize", ".target")):
        p = run([tool, src, "-o", "x.PNG"], cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.decode() == (
            f"recolor {tool}: -o x.PNG: {tool} writes records, not a png image (name a {ext} "
            f"file or a folder) (see recolor {tool} -h)\n"
        )
        assert not (tmp_path / "x.PNG").exists()
        p = run([tool, src, "-o", src])  # an input of that name too: still usage (quantize: 1)
        assert p.returncode == 2 and "writes records, not a png image" in p.stderr.decode()
    (tmp_path / "d.png").mkdir()
    run(["to-lab", src, "-o", "d.png"], cwd=tmp_path, check_rc=0)
    assert os.listdir(tmp_path / "d.png") == ["a.lab"]
    with fifo_read_whole(tmp_path / "f.png") as got:
        run(["to-lab", src, "-o", "f.png"], cwd=tmp_path, check_rc=0)
    assert got[0][:4] == records.MAGIC
    p = run(["rebalance-stats", src, "-o", "s.webp"], cwd=tmp_path)  # an npz named .webp
    assert (p.returncode, p.stderr.decode()) == (
        2, "recolor rebalance-stats: -o s.webp: rebalance-stats writes statistics, not a webp "
        "image (--plot draws them) (see recolor rebalance-stats -h)\n"
    )  # fmt: skip


def test_binary_output_is_refused_on_a_terminal_and_usage_errors_exit_2(tmp_path):
    # usage errors, the parser's as the tools' own: one line naming the tool, exit 2
    for args, says in (
        (["to-lab", "--max-size", "0", "x.png"], "recolor to-lab: Invalid value for '--max-size'"),
        (["to-lab", "--no-such-flag"], "recolor to-lab: No such option '--no-such-flag'"),
        (["frobnicate"], "recolor: No such command 'frobnicate'"),
        (["compare", "a", "b", "--json", "--csv"], "recolor compare: --json and --csv exclude"),
    ):
        p = run(args)
        err = p.stderr.decode().splitlines()
        assert p.returncode == 2 and len(err) == 1 and err[0].startswith(says), (args, err)
    # a near miss: one suggestion (Click 8.2+ makes one and typer adds its own: said twice)
    p = run(["predcit", "x.png"])
    assert p.returncode == 2 and p.stderr.decode() in (
        "recolor: No such command 'predcit'. Did you mean 'predict'? (see recolor -h)\n",
        "recolor: No such command 'predcit' (see recolor -h)\n",  # (typer without Click's)
    )
    p = run(["to-lab", "--max-size", "abc", "x.png"])  # ("not a valid integer range": Click's)
    assert p.returncode == 2 and p.stderr.decode() == (
        "recolor to-lab: Invalid value for '--max-size': 'abc' is not a valid integer (see "
        "recolor to-lab -h)\n"
    )
    p = run(["tolab", "x.png"])  # two near misses: typer added its list after Click's
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and err.count("Did you mean") <= 1, err


def test_an_empty_argument_is_a_usage_error_not_the_current_folder(tmp_path):
    # `recolor predict "$unset"`: Path("") is ".", which would recolour every image here.
    write_rgb(tmp_path / "a.png", smooth_image(10, 10, 1))
    for args in (
        ["predict", ""],
        ["predict", "a.png", "-o", ""],
        ["predict", "a.png", "--palette="],
        ["to-lab", "a.png", ""],
        ["compare", "a.png", ""],
        ["rebalance-stats", ""],
    ):
        p = run(args, cwd=tmp_path)
        err = p.stderr.decode().splitlines()
        assert p.returncode == 2 and p.stdout == b"", (args, err)
        assert err == [f"recolor {args[0]}: an empty argument names no file, folder or value "
                       f"(see recolor {args[0]} -h)"]  # fmt: skip
        assert sorted(f.name for f in tmp_path.iterdir()) == ["a.png"], args


def test_an_empty_file_name_is_no_file_in_the_library(tmp_path, monkeypatch):
    from recolor_tools import hintfiles, palettes
    from recolor_tools.errors import RecolorError, printable
    from recolor_tools.imageio import read_rgb
    from recolor_tools.inputs import expand_inputs

    monkeypatch.chdir(tmp_path)
    write_rgb(tmp_path / "a.png", smooth_image(10, 10, 1))
    assert expand_inputs([""]) == [""] and expand_inputs(["."]) == ["a.png"]
    with pytest.raises(RecolorError, match="no such file") as e:
        read_rgb("")
    assert printable(e.value.path) == "''"
    with pytest.raises(ValueError, match="--palette is empty"):
        palettes.parse_palette("")
    with pytest.raises(ValueError, match="--hints is empty"):
        hintfiles.hint_source([], "", None, ["a.png"], ["a.png"])


def test_a_file_named_and_found_in_a_named_folder_is_done_once(tmp_path):
    q = tmp_path / "q"
    q.mkdir()
    write_rgb(q / "ref.png", smooth_image(10, 12, 1))
    write_rgb(q / "b.png", smooth_image(10, 12, 2))
    p = run(["to-lab", q, q / "ref.png", f"{q}/./ref.png", "-o", f"{tmp_path}/out/"], check_rc=0)
    assert p.stderr == b"" and sorted(os.listdir(tmp_path / "out")) == ["b.lab", "ref.lab"]
    # a stream too holds each file once, where it was first reached
    stream = run(["to-lab", q / "b.png", q], check_rc=0).stdout
    names = [r.name for r in records.iter_records(io.BytesIO(stream))]
    assert names == ["b.png", "ref.png"]
    # named under another spelling inside the output folder (left out of the folder's walk,
    # kept as named): it was done zero times, exit 0
    (q / "out").mkdir()
    write_rgb(q / "out" / "c.png", smooth_image(10, 12, 3))
    run(["to-lab", "q", "./q/out/c.png", "-o", "q/out/"], cwd=tmp_path, check_rc=0)
    assert sorted(os.listdir(q / "out" / "out")) == ["c.lab"]
    # `lnk/..` is the folder above where the link leads: another file, not q/b.png
    (tmp_path / "o" / "d").mkdir(parents=True)
    write_rgb(tmp_path / "o" / "b.png", smooth_image(10, 12, 4))
    (q / "lnk").symlink_to(tmp_path / "o" / "d")
    stream = run(["to-lab", q / "b.png", f"{q}/lnk/../b.png"], check_rc=0).stdout
    assert len(list(records.iter_records(io.BytesIO(stream)))) == 2


def test_a_folder_reached_again_through_a_link_is_done_once(tmp_path):
    """``posters/ lnk/`` (``lnk`` a link to ``posters``) gave each file twice under one output
    name: two records named ``a.png`` in a stream, "already written for an earlier input" with
    ``-o DIR/``; a link to a folder inside one walked gave its files again under other names.
    A link to a folder below a walked one is not followed (``find -H``)."""
    posters = tmp_path / "posters"
    (posters / "sub").mkdir(parents=True)
    write_rgb(posters / "a.png", smooth_image(10, 12, 1))
    write_rgb(posters / "sub" / "b.png", smooth_image(10, 12, 2))
    (tmp_path / "lnk").symlink_to("posters")
    (posters / "sublnk").symlink_to("sub")
    for args, want in (
        (["posters/", "lnk/"], ["a.lab", "sub/b.lab"]),
        (["lnk", "posters/sub"], ["a.lab", "sub/b.lab"]),  # named where first reached
        (["posters/sub", "lnk/sub/b.png", "posters/sublnk/"], ["b.lab"]),
    ):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        p = run(["to-lab", *args, "-o", f"{out}/"], cwd=tmp_path)
        assert (p.returncode, p.stderr) == (0, b""), (args, p.stderr)
        assert sorted(f.relative_to(out).as_posix() for f in out.rglob("*.lab")) == want
    stream = run(["to-lab", "posters", "lnk"], cwd=tmp_path, check_rc=0).stdout
    assert [r.name for r in records.iter_records(io.BytesIO(stream))] == ["a.png", "sub/b.png"]
    # missing files in missing folders, spelled through links: one line for each file
    (tmp_path / "sublnk").symlink_to("posters/sub")  # sublnk/.. is posters, not tmp_path
    p = run(["to-lab", "posters/sub/../gone/x.png", "lnk/sub/../gone/x.png", "sublnk/../gone/x.png",
             "gone/x.png"], cwd=tmp_path)  # fmt: skip
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 2, p.stderr


def test_closed_pipe_ends_quietly(tmp_path, images):
    # `recolor to-lab many | head -c 10`: the producer must not print a traceback.
    many = images * 30
    prod = subprocess.Popen(
        [sys.executable, "-m", "recolor_tools", "to-lab", *map(str, many)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    prod.stdout.read(10)
    prod.stdout.close()
    err = prod.stderr.read().decode()
    assert prod.wait(timeout=120) == 1
    assert "Traceback" not in err and err == ""


def test_closed_pipe_ends_from_lab_with_1(tmp_path):
    """`from-lab big.lab | head -c 10`: the image's one write met the closed pipe after 64 KiB,
    which Python's buffered write returns as a short count, and the run ended 0."""
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)  # 360 KB as PNG
    _write_stream(tmp_path / "big.lab", "big.png", noise)
    prod = subprocess.Popen(
        [sys.executable, "-m", "recolor_tools", "from-lab", tmp_path / "big.lab"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert len(prod.stdout.read(10)) == 10
    prod.stdout.close()
    err = prod.stderr.read().decode()
    assert (prod.wait(timeout=120), err) == (1, "")


def _write_stream(path: Path, name: str, rgb: np.ndarray) -> None:
    """A one-record stream at ``path`` of the uint8 RGB ``rgb`` named ``name``, as to-lab
    writes one (made in-process: what from-lab is given, not what is tested)."""
    from recolor_tools.color import rgb_to_lab

    lab = rgb_to_lab(rgb / np.float32(255)).astype(np.float32)
    with open(path, "wb") as f:
        records.write_record(f, records.lab_record(name, lab, rgb.shape[:2]))


def _unread(pipe) -> int:
    """Bytes written to ``pipe`` (its writing end) that its reader has not read yet (Linux)."""
    import fcntl
    import termios

    return struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def test_a_record_stream_from_a_pipe_is_read_however_it_arrives(tmp_path, small_lab):
    """A pipe whose first read held fewer than 4 bytes (`(head -c 2 a.lab; sleep 1; tail -c
    +3 a.lab) |`) was refused as "neither a recolor record stream nor an image"; a stream cut
    inside its magic was called text; both are read as record streams now."""
    src, lab = small_lab
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = tmp_path / "split.png"
    cons = subprocess.Popen([sys.executable, "-m", "recolor_tools", "from-lab", "-o", out],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    cons.stdin.write(lab[:2])
    cons.stdin.flush()
    deadline = time.monotonic() + 120
    while _unread(cons.stdin) and time.monotonic() < deadline:  # the tool starts and reads
        time.sleep(0.01)  # what is there: a first read of 2 bytes
    assert _unread(cons.stdin) == 0
    cons.stdin.write(lab[2:])
    cons.stdin.close()
    assert (cons.wait(timeout=120), cons.stderr.read()) == (0, b"")
    np.testing.assert_array_equal(read_rgb_u8(out), read_rgb_u8(src))
    p = run(["from-lab", "-o", tmp_path / "cut.png"], input=b"RCL")
    want = "recolor from-lab: -: truncated record stream (end of data inside a record prefix)\n"
    assert (p.returncode, p.stderr.decode()) == (1, want)


def test_a_record_too_large_for_memory_fails_alone(tmp_path, images):
    """A header from a pipe may promise arrays of any size within the limits (here 346 GB):
    the allocation's failure ended the whole run, the inputs after it unread."""
    header = json.dumps({"name": "c.png", "size": [1, 1], "meta": {}, "arrays": [
        {"name": "lab", "dtype": "<i8", "shape": [13000, 13000, 16, 16]}]}).encode()  # fmt: skip
    huge = b"RCLR" + struct.pack("<HHI", 1, 0, len(header)) + header
    p = run(["from-lab", "-o", f"{tmp_path}/out/", "-", images[0]], input=huge)
    assert p.returncode == 1 and p.stderr.decode().startswith("recolor from-lab: -: ")
    assert len(p.stderr.splitlines()) == 1
    assert os.listdir(tmp_path / "out") == [images[0].name]


def test_version_and_help():
    p = run(["--version"], check_rc=0)
    assert p.stdout.decode().startswith("recolor ")
    p = run(["--help"], check_rc=0)
    for tool in ("to-lab", "from-lab"):
        assert tool in p.stdout.decode()
    p = run([])  # no tool: a usage error like any (it was the whole help on stdout, exit 2)
    assert (p.returncode, p.stdout) == (2, b"")
    assert p.stderr.decode() == "recolor: Missing command (see recolor -h)\n"


def test_a_dash_in_a_list_is_the_file_beside_it_wherever_the_list_is(tmp_path):
    """README: a list's lines are relative to its folder. `-` in a list in the current folder
    was stdin ("-: empty file"); below it, the file named `-`."""
    for d in (tmp_path, tmp_path / "sub"):
        d.mkdir(exist_ok=True)
        write_rgb(d / "x.png", smooth_image(10, 12, 1)).rename(d / "-")
        (d / "l.txt").write_text("-\n")
    for lst in ("l.txt", "sub/l.txt"):
        p = run(["to-lab", lst, "-o", f"out-{lst[0]}/"], cwd=tmp_path, input=b"")
        assert p.returncode == 0 and p.stderr == b"", (lst, p.stderr)
        assert os.listdir(tmp_path / f"out-{lst[0]}") == ["-.lab"]


@pytest.mark.parametrize("tool", ["quantize", "rebalance-stats", "predict"])
def test_help_wraps_each_paragraph_to_the_terminal(tool):
    # Typer kept the docstrings' own line breaks after the first paragraph: at 80 columns
    # every other line was a stub of a word or two.
    from recolor_tools.cli import app

    doc = next(c.callback.__doc__ for c in app.registered_commands if c.name == tool)
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")[1:]]
    assert any(len(p) > 120 for p in paragraphs)  # so the source's lines had to be rewrapped
    wide = run([tool, "-h"], check_rc=0, env={"COLUMNS": "1000"}).stdout.decode()
    for p in paragraphs:  # (click caps the width at 80 columns)
        assert p in " ".join(wide.split()), (p, wide)
    narrow = run([tool, "-h"], check_rc=0, env={"COLUMNS": "60"}).stdout.decode()
    text = re.split(r"^(?:Arguments|Options):$", narrow, flags=re.M)[0]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert max(map(len, lines)) <= 56  # 58 columns, less the indent of 2
    for a, b in itertools.pairwise(lines):  # a line short of the width ends its paragraph
        assert not (a and b) or len(a) + 1 + len(b.split()[0]) > 56, (a, b)


@pytest.mark.parametrize(
    "tool", ["to-lab", "from-lab", "quantize", "rebalance-stats", "train", "predict", "compare"]
)
def test_no_option_help_is_cut_short_at_80_columns(tool):
    """Rich cuts a word longer than the help column with '…': predict's --palette help ended
    "'#hex,#hex:weight,..…" at 80 columns, the list form's end unseen."""
    p = run([tool, "-h"], check_rc=0, env={"COLUMNS": "80"})
    assert "…" not in p.stdout.decode(), p.stdout.decode()


@pytest.mark.parametrize(
    "tool", ["to-lab", "from-lab", "quantize", "rebalance-stats", "train", "predict", "compare"]
)
def test_help_is_plain_text_that_names_each_value(tool):
    """rich's boxes left each option's help 23 of 80 columns and put box characters in `-h |
    grep`; the values were click's types ("--size INTEGER RANGE", "--hint TEXT")."""
    text = run([tool, "-h"], check_rc=0, env={"COLUMNS": "80"}).stdout.decode()
    assert max(map(len, text.splitlines())) <= 80 and "│" not in text
    options = [line.split("  ")[1] for line in text.splitlines() if line.startswith("  -")]
    assert options and not re.search(r"\b(TEXT|INTEGER|FLOAT)\b", " ".join(options)), options


def test_tools_without_a_model_do_not_import_torch(tmp_path):
    src = write_rgb(tmp_path / "a.png", smooth_image(10, 10, 1))
    code = (
        "import sys; from recolor_tools.cli import main; "
        f"rc = main(['to-lab', '-o', {str(tmp_path / 'a.lab')!r}, {str(src)!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules; assert 'numba' not in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent
    )


@pytest.mark.parametrize("ext", [".jpg", ".webp"])
def test_write_image_quality_trades_size_for_fidelity(tmp_path, ext):
    from recolor_tools.errors import RecolorError
    from recolor_tools.imageio import read_rgb, write_image

    rgb = smooth_image(96, 80, 4).astype(np.float32) / 255.0
    rgb[::7] = 0.0  # hard edges, which lossy coding blurs
    err, size = {}, {}
    for q in (20, 95):
        path = tmp_path / f"q{q}{ext}"
        write_image(path, rgb, quality=q)
        size[q] = path.stat().st_size
        err[q] = np.abs(read_rgb(path) - rgb).mean()
    assert size[20] < 0.6 * size[95] and err[20] > 1.2 * err[95]
    with pytest.raises(RecolorError, match="quality"):
        write_image(tmp_path / f"bad{ext}", rgb, quality=0)


def test_to_lab_out_of_memory_fails_that_image_only(tmp_path, monkeypatch, capsys):
    """MemoryError (or an allocator's error) for one input: its one line, exit 1, the others
    converted; not "internal error" for the whole run."""
    import recolor_tools.imageio as imageio
    from recolor_tools.cli import main

    paths = [str(write_rgb(tmp_path / f"{n}.png", smooth_image(24, 32, i)))
             for i, n in enumerate(["a", "huge", "c"])]  # fmt: skip
    real = imageio.read_rgb

    def read(path, meta=None, **kw):
        if "huge" in str(path):
            raise MemoryError
        return real(path, meta, **kw)

    monkeypatch.setattr(imageio, "read_rgb", read)
    out = tmp_path / "out"
    assert main(["to-lab", *paths, "-o", f"{out}/"]) == 1
    err = capsys.readouterr().err
    assert err == f"recolor to-lab: {paths[1]}: out of memory (too large for the memory free)\n"
    assert sorted(p.name for p in out.iterdir()) == ["a.lab", "c.lab"]


def test_an_image_opencv_cannot_allocate_is_out_of_memory_not_corrupt(
    tmp_path, monkeypatch, capsys
):
    """OpenCV's "(-4:Insufficient memory) Failed to allocate" for a valid large image was
    taken for a decoding failure: "not a readable image (corrupt PNG data)"."""
    import recolor_tools.imageio as imageio
    from recolor_tools.cli import main

    paths = [str(write_rgb(tmp_path / f"{n}.png", smooth_image(24, 32, i)))
             for i, n in enumerate(["a", "huge"])]  # fmt: skip
    real = cv2.imdecode

    def imdecode(buf, flags):
        if buf.size == os.path.getsize(paths[1]):
            raise cv2.error("OpenCV(4.x) alloc.cpp:73: error: (-4:Insufficient memory) "
                            "Failed to allocate 288000000 bytes")  # fmt: skip
        return real(buf, flags)

    monkeypatch.setattr(imageio.cv2, "imdecode", imdecode)
    assert main(["to-lab", *paths, "-o", f"{tmp_path / 'out'}/"]) == 1
    err = capsys.readouterr().err
    assert err == f"recolor to-lab: {paths[1]}: out of memory (too large for the memory free)\n"
    assert os.listdir(tmp_path / "out") == ["a.lab"]


@pytest.mark.parametrize("first", ["recolor_tools.metrics", "recolor_tools.report",
                                   "recolor_tools.quant", "recolor_tools.imageio"])  # fmt: skip
def test_a_raised_pixel_limit_reaches_opencv_whichever_module_loads_it(first):
    """OpenCV reads its own limit (2**30 pixels) where cv2 is first imported; it was raised
    only by imageio, so compare, quantize and rebalance-stats (which load cv2 before it) called
    a valid 40000 x 40000 PNG "corrupt" under RECOLOR_MAX_PIXELS=2000000000."""
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    head = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)  # 8-bit grey
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head)
    png += chunk(b"IDAT", zlib.compress(b"\0" * 40001)) + chunk(b"IEND", b"")  # one row of data
    code = (f"import {first}, cv2, numpy as np\n"
            "try:\n    cv2.imdecode(np.frombuffer(sys.stdin.buffer.read(), np.uint8), -1)\n"
            "except cv2.error as e:\n    print(e)\n")  # fmt: skip
    env = {**os.environ, "RECOLOR_MAX_PIXELS": "2000000000"}
    env.pop("OPENCV_IO_MAX_IMAGE_PIXELS", None)  # (set to 2**30 by this process's import)
    p = subprocess.run([sys.executable, "-c", "import sys\n" + code], input=png,
                       capture_output=True, env=env, timeout=60)  # fmt: skip
    assert p.returncode == 0 and b"CV_IO_MAX_IMAGE_PIXELS" not in p.stdout, p.stdout


@pytest.mark.parametrize("tool", ["to-lab", "quantize"])
def test_lines_on_a_terminal_begin_above_the_progress_bar(tmp_path, tool):
    """An error or note printed while the bar was drawn began in the middle of it
    ("...0/3 [00:00<?, ?img/s]recolor to-lab: nope.png: no such file")."""
    import fcntl
    import pty
    import termios

    src = write_rgb(tmp_path / "a.png", smooth_image(16, 16, 1))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    args = [src, tmp_path / "nope.png", tmp_path / "nope2.png", "-o", f"{tmp_path / 'out'}/"]
    p = subprocess.run([sys.executable, "-m", "recolor_tools", tool, *map(str, args)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                       timeout=120, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    err = drain_pty(master, slave)
    starts = [i for i in range(len(err)) if err.startswith(f"recolor {tool}: ".encode(), i)]
    assert p.returncode == 1 and len(starts) >= 2 and b"img/s]" in err, err
    assert all(i == 0 or err[i - 1 : i] in (b"\r", b"\n") for i in starts), err


def test_a_broken_link_in_an_input_folder_is_reported_not_skipped(tmp_path):
    """A folder's dangling x.png is named (it was left out without a word); a FIFO there is
    still left out, since reading it would wait for a writer."""
    d = tmp_path / "in"
    d.mkdir()
    write_rgb(d / "a.png", smooth_image(16, 16, 1))
    (d / "gone.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(d / "pipe.png")
    # a link loop there was "internal error: OSError: [Errno 40] ..." for the whole run (train:
    # no training at all), while named, it is that input's line (to-lab: beside the dangling
    # link, in the same run)
    (d / "l1.png").symlink_to("l2.png")
    (d / "l2.png").symlink_to("l1.png")
    loop = "too many levels of symbolic links"
    p = run(["to-lab", d, "-o", f"{tmp_path}/out/"])
    assert p.returncode == 1
    assert p.stderr.decode() == (
        f"recolor to-lab: {d / 'gone.png'}: no such file\n"
        f"recolor to-lab: {d / 'l1.png'}: {loop}\nrecolor to-lab: {d / 'l2.png'}: {loop}\n"
    )
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["a.lab"]
    (d / "gone.png").unlink()
    p = run(["rebalance-stats", d, "-o", tmp_path / "s.npz", "-q"])
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor rebalance-stats: {d / 'l1.png'}: {loop}\n"
        f"recolor rebalance-stats: {d / 'l2.png'}: {loop}\n"
    )


def test_a_link_loop_beside_an_output_folder_inside_the_input_folder_is_one_line(tmp_path):
    """Leaving an output folder inside the input folder out of the inputs followed each input's
    links with Path.resolve, which raised RuntimeError at a loop: "internal error" and nothing
    done, where the loop is two inputs' lines."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write_rgb(d / "a.png", smooth_image(16, 16, 1))
    write_rgb(d / "sub" / "a.png", smooth_image(16, 16, 2))
    (d / "l1.png").symlink_to("l2.png")
    (d / "l2.png").symlink_to("l1.png")
    loop = "too many levels of symbolic links"
    for tool, extra in (
        ("to-lab", ["-o", f"{d}/out/"]),
        ("quantize", ["-o", f"{tmp_path}/q/", "--preview", f"{d}/out/", "-q"]),
    ):
        p = run([tool, d, *extra])  # fmt: skip
        assert p.returncode == 1 and p.stderr.decode() == (
            f"recolor {tool}: {d / 'l1.png'}: {loop}\nrecolor {tool}: {d / 'l2.png'}: {loop}\n"
        )
    assert sorted(f.relative_to(d).as_posix() for f in (d / "out").rglob("*.lab")) == [
        "out/a.lab",
        "out/sub/a.lab",
    ]
    p = run(["compare", d / "sub", d, "--csv"])  # the nested folder is no truth of its own
    assert p.returncode == 1 and "internal error" not in p.stderr.decode()
    assert [r.split(",")[0] for r in p.stdout.decode().splitlines()] == ["name", "a", "mean"]


def test_to_lab_and_quantize_leave_their_output_folder_inside_the_input_folder_out(tmp_path):
    """As predict does (README): a rerun, or the next tool writing beside, takes no outputs
    for inputs. to-lab read predict's a.png in src/o/ and wrote src/o/o/a.lab; quantize read
    to-lab's records there, both named a.png: "output ... already written"."""
    src = tmp_path / "src"
    src.mkdir()
    for i, n in enumerate("ab"):
        write_rgb(src / f"{n}.png", smooth_image(16, 16, i))
    (src / "o").mkdir()
    write_rgb(src / "o" / "a.png", smooth_image(16, 16, 3))  # (as predict src -o src/o/ would)
    for tool, made in (("to-lab", ".lab"), ("to-lab", ".lab"), ("quantize", ".target")):
        p = run([tool, src, "-o", f"{src}/o/", "-q"])
        assert (p.returncode, p.stderr) == (0, b"")
        assert sorted(f.name for f in (src / "o").glob(f"*{made}")) == [f"a{made}", f"b{made}"]
    assert not (src / "o" / "o").exists()
    # a file there named on its own is an input all the same (it was left out unsaid)
    p = run(["to-lab", src, src / "o" / "a.png", "-o", f"{src}/o/"], check_rc=0)
    assert sorted(f.name for f in (src / "o" / "o").iterdir()) == ["a.lab"]
    shutil.rmtree(src / "o" / "o")
    run(["from-lab", src / "o", "-o", f"{src}/o/"], check_rc=0)  # (a.png replaced, b.png made)
    run(["from-lab", src / "o", "-o", f"{src}/o/"], check_rc=0)
    assert sorted(f.name for f in (src / "o").iterdir()) == [
        "a.lab", "a.png", "a.target", "b.lab", "b.png", "b.target"
    ]  # fmt: skip


def test_from_lab_to_one_file_keeps_it_when_the_encoding_fails(tmp_path):
    """-o FILE from a record stream is replaced only when the run ends: an image the format
    cannot hold (a JPEG side over 65,500 px) is one error, and the file stays as it was, not
    emptied by the temporary file opened before the encoder failed."""
    _write_stream(tmp_path / "wide.lab", "wide.png", np.full((1, 70000, 3), 128, np.uint8))
    out = tmp_path / "out.jpg"
    out.write_bytes(b"previous good output")
    lab = (tmp_path / "wide.lab").read_bytes()
    p = run(["from-lab", "-o", out, "-"], input=lab)
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1, p.stderr
    assert "65500" in p.stderr.decode()
    assert out.read_bytes() == b"previous good output"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.jpg", "wide.lab"]  # no temporary
    out.unlink()
    p = run(["from-lab", "-o", out, "-"], input=lab)
    assert p.returncode == 1 and not out.exists()


def test_a_record_that_names_no_file_or_holds_bad_metadata_fails_alone(tmp_path):
    """A record name with a NUL or a lone surrogate (not one of the \\udc80-\\udcff that stand
    for a file name's bytes) was said as Python's "embedded null byte" or a codec's error, and
    source metadata that is no base64 text as base64's TypeError, or taken as empty: each is a
    plain line now, and the other records are still written."""
    lab = np.zeros((4, 5, 3), np.float32)
    lab[..., 0] = 50
    recs = [
        records.Record("a\0b.png", (4, 5), {"lab": lab}),
        records.Record("c\ud800.png", (4, 5), {"lab": lab}),
        records.Record("icc.png", (4, 5), {"lab": lab}, {}, {"depth": 8, "icc": 5}),
        records.Record("exif.png", (4, 5), {"lab": lab}, {}, {"depth": 8, "exif": "@@@"}),
        records.Record("good.png", (4, 5), {"lab": lab}),
    ]
    buf = io.BytesIO()
    for r in recs:
        records.write_record(buf, r)
    (tmp_path / "s.lab").write_bytes(buf.getvalue())
    for tool in (["from-lab"], ["from-lab", "--skip-existing"], ["quantize", "-q"]):
        out = tmp_path / "-".join(tool)
        p = run([*tool, tmp_path / "s.lab", "-o", f"{out}/"])
        lines = p.stderr.decode().splitlines()
        assert p.returncode == 1 and len(lines) == (4 if tool[0] == "from-lab" else 2), lines
        assert lines[0].endswith(": a\\x00b.png: its name holds a NUL character"), lines
        assert "c\\ud800.png: its name holds a character no file name can hold" in lines[1]
        if tool[0] == "from-lab":
            assert lines[2].endswith("icc.png: corrupt source metadata in record header (icc is "
                                     "not base64 text)"), lines  # fmt: skip
            assert lines[3].endswith("(exif is not base64 text)"), lines
        assert "good" in " ".join(f.name for f in out.iterdir())


_IMPORT_FAILS = """
import os, signal, sys
how = sys.argv.pop(1)
class Fails:
    def find_spec(self, name, path=None, target=None):
        if name == "cv2" and how == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)  # as OpenCV's import under ulimit -v
        if name == "cv2":
            raise ImportError("libaom.so.3: failed to map segment from shared object")
sys.meta_path.insert(0, Fails())
from recolor_tools.cli import main
sys.exit(main())
"""


@pytest.mark.parametrize("how", ["crash", "refused"])
def test_to_lab_that_cannot_load_opencv_leaves_no_temporary_file(tmp_path, how):
    """Under ``ulimit -v`` OpenCV's import crashed, ended by OpenBLAS's exit(), or failed with
    "failed to map segment from shared object": after ``-o x.lab`` had made the stream's
    temporary file, which stayed."""
    from conftest import ROOT

    src = write_rgb(tmp_path / "a.png", smooth_image(24, 32))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", _IMPORT_FAILS, how, "to-lab", src, "-o",
                        out / "x.lab"], env=env, capture_output=True, timeout=120)  # fmt: skip
    assert list(out.iterdir()) == []
    if how == "crash":
        assert p.returncode == -11, p.stderr.decode()
    else:  # (the loader's words: a noexec mount says them too, so not "out of memory")
        err = p.stderr.decode()
        assert p.returncode == 1 and err.count("\n") == 1 and "libaom.so.3" in err, err
