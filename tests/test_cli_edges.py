"""The command line at its edges: closed standard streams, folders without images, options that
name one file given a folder, two outputs per input, and flags that would be ignored."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import RECOLOR, ROOT, run, smooth_image, write_rgb

from recolor_tools import records
from recolor_tools.rebalance import RebalanceStats


def run_closed(args, close: str, cwd: Path) -> subprocess.CompletedProcess:
    """``recolor ARGS`` with a standard stream closed (``close``: ``>&-`` or ``2>&-``), as a
    shell leaves it: the process starts without that file descriptor."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    cmd = ["sh", "-c", f'exec "$@" {close}', "sh", *RECOLOR, *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, stdin=subprocess.DEVNULL, cwd=cwd, env=env, timeout=600
    )


def names(data: bytes) -> list[str]:
    return [rec.name for rec in records.iter_records(io.BytesIO(data))]


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    """A colour image, a gray one, and a prediction/truth pair, in ``tmp_path``."""
    write_rgb(tmp_path / "rand.png", smooth_image(40, 60, 1))
    write_rgb(tmp_path / "gray.png", smooth_image(40, 60, 2)[:, :, 0].copy())
    truth = smooth_image(50, 70, 3)
    write_rgb(tmp_path / "t.png", truth)
    write_rgb(tmp_path / "p.png", 255 - truth)
    return tmp_path


@pytest.fixture(scope="module")
def rand_stats(tmp_path_factory) -> bytes:
    """What ``rebalance-stats -q rand.png -o -`` writes for :func:`pics`' rand.png (made once)."""
    d = tmp_path_factory.mktemp("stats")
    write_rgb(d / "rand.png", smooth_image(40, 60, 1))
    return run(["rebalance-stats", "-q", "rand.png", "-o", "-"], cwd=d, check_rc=0).stdout


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_compare_a_folder_without_images_is_one_line(pics, content):
    (pics / "empty").mkdir()
    if content:
        (pics / "empty" / content).write_text("no image here\n")
    (pics / "truth").mkdir()
    write_rgb(pics / "truth" / "a.png", smooth_image(20, 20, 4))
    p = run(["compare", "empty", "truth"], cwd=pics)
    assert p.returncode == 1
    assert p.stdout == b""
    # what every other tool says of a folder without images
    other = run(["to-lab", "empty"], cwd=pics).stderr.decode()
    assert other == "recolor to-lab: empty: is a directory, and no input was found in it\n"
    assert p.stderr.decode() == other.replace("to-lab", "compare")


def test_a_closed_stdout_with_o_writes_the_file(pics):
    p = run_closed(["to-lab", "rand.png", "-o", "cl.lab"], ">&-", pics)
    assert (p.returncode, p.stderr) == (0, b"")
    assert names((pics / "cl.lab").read_bytes()) == ["rand.png"]
    p = run_closed(["compare", "p.png", "t.png", "-o", "rep.txt"], ">&-", pics)
    assert (p.returncode, p.stderr) == (0, b"")
    assert (pics / "rep.txt").read_text().startswith("image")


@pytest.mark.parametrize(
    "args",
    [["to-lab", "rand.png"], ["compare", "p.png", "t.png"], ["rebalance-stats", "-q", "rand.png"],
     ["rebalance-stats", "-q", "rand.png", "-o", "-"], ["predict", "rand.png", "-o", "out/"],
     ["predict", "rand.png", "-o", "-"], ["predict", "rand.png", "--suggest", "1,1"],
     ["train", "rand.png", "--steps", "1", "--out", "run"]],
)  # fmt: skip
def test_writing_to_a_closed_stdout_is_one_line(pics, args):
    """predict and train print the paths they write: they exited 0 with the list lost."""
    p = run_closed(args, ">&-", pics)
    assert p.returncode == 1
    advice = "use -o FILE"  # where -o takes what went to stdout; else how to drop it
    if args[0] in ("predict", "train") and args[-1] != "-":
        advice = "the paths written go there; > /dev/null drops them"
    if "--suggest" in args:  # (it takes no -o: that advice was itself a usage error)
        advice = "--suggest prints its colours there; redirect it to a file"
    why = f"is closed, nothing can be written to it ({advice})"
    assert p.stderr.decode() == f"recolor {args[0]}: <stdout>: {why}\n"
    assert not (pics / "out").exists() and not (pics / "run").exists()  # before any work


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_full_non_blocking_pipe_is_waited_for(tmp_path, unbuffered):
    """Another process on the pipe can set O_NONBLOCK: unbuffered (PYTHONUNBUFFERED=1, as many
    containers set it) to-lab wrote the first 64 KiB of its records and ended 0; buffered,
    each input failed "write could not complete without blocking". A slow reader is waited
    for, as with a blocking pipe."""
    import fcntl
    import time

    imgs = [write_rgb(tmp_path / f"{i}.png", smooth_image(120, 160, i)) for i in range(3)]
    want = run(["to-lab", *imgs], check_rc=0).stdout
    assert len(want) > 4 * 65536  # (more than a pipe holds)
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": unbuffered}
    cmd = [*RECOLOR, "to-lab", *map(str, imgs)]
    p = subprocess.Popen(cmd, stdout=w, stderr=subprocess.PIPE, env=env)
    os.close(w)
    time.sleep(2)  # a slow reader: the pipe fills
    with os.fdopen(r, "rb") as f:
        got = f.read()
    assert (p.wait(60), p.stderr.read(), got == want) == (0, b"", True)
    p.stderr.close()


@pytest.mark.parametrize("args", [["--version"], ["-h"], [], ["predict", "--help"]])
def test_help_and_version_to_a_closed_stdout_are_one_line(pics, args):
    """They went to a closed stdout unsaid, exit 0."""
    p = run_closed(args, ">&-", pics)
    where = " ".join(["recolor", *args[:1]]) if args[:1] == ["predict"] else "recolor"
    assert (p.returncode, p.stderr.decode()) == (
        1, f"{where}: <stdout>: is closed, nothing can be written to it\n"
    )  # fmt: skip


def test_a_closed_stderr_leaves_stdout_and_outputs_alone(pics):
    p = run_closed(["to-lab", "rand.png", "-o", "cl.lab"], "2>&-", pics)
    assert (p.returncode, p.stdout) == (0, b"")
    assert names((pics / "cl.lab").read_bytes()) == ["rand.png"]
    # a failed input: the exit status says it; no diagnostic lands in the record stream
    p = run_closed(["to-lab", "missing.png", "rand.png"], "2>&-", pics)
    assert p.returncode == 1
    assert names(p.stdout) == ["rand.png"]


def run_dead_stderr(args, cwd: Path) -> subprocess.CompletedProcess:
    """``recolor ARGS`` with stderr a pipe whose reader has gone (a dead log pipe)."""
    r, w = os.pipe()
    os.close(r)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    try:
        return subprocess.run([*RECOLOR, *map(str, args)], stdout=subprocess.PIPE, stderr=w,
                              stdin=subprocess.DEVNULL, cwd=cwd, env=env, timeout=600)  # fmt: skip
    finally:
        os.close(w)


def test_a_stderr_that_cannot_be_written_ends_nothing(pics):
    """The first line to a dead stderr pipe ended the run: the good input before or after a
    bad one unwritten, quantize's note line lost its output, a bad flag exited 1."""
    p = run_dead_stderr(["to-lab", "missing.png", "rand.png", "-o", "d.lab"], pics)
    assert p.returncode == 1 and names((pics / "d.lab").read_bytes()) == ["rand.png"]
    p = run_dead_stderr(["quantize", "d.lab", "-o", "d.t"], pics)  # prints a line per input
    assert p.returncode == 0 and names((pics / "d.t").read_bytes()) == ["rand.png"]
    assert run_dead_stderr(["to-lab", "--nope"], pics).returncode == 2


def test_ctrl_c_while_the_tools_load_is_exit_130_not_a_traceback(tmp_path):
    """The console script imported the CLI (typer, numpy, OpenCV) before main() set anything
    up: Ctrl-C in those tenths of a second printed a KeyboardInterrupt traceback. Here the
    import itself raises it, as a Ctrl-C there does."""
    code = (
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'recolor_tools.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        "from recolor_tools import run\n"
        "run()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code, "to-lab"], capture_output=True, env=env,
                       cwd=tmp_path, timeout=120)  # fmt: skip
    assert (p.returncode, p.stderr) == (130, b"")


def test_a_current_directory_that_was_removed_is_one_line(pics):
    """predict and train exited 2 without a word (torch's libraries cannot load), predict
    without -o ended in "internal error: FileNotFoundError"."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    for args in (["predict", pics / "rand.png", "-o", pics / "out/"], ["to-lab", "-q"]):
        cmd = ["sh", "-c", 'cd gone && rmdir ../gone && exec "$@"', "sh", *RECOLOR, *map(str, args)]
        (pics / "gone").mkdir()
        p = subprocess.run(cmd, capture_output=True, cwd=pics, env=env, timeout=600)
        want = f"recolor {args[0]}: the current directory no longer exists\n"
        assert (p.returncode, p.stderr.decode()) == (1, want)
    assert not (pics / "out").exists()


def test_an_option_naming_one_file_refuses_a_folder(pics):
    p = run(["rebalance-stats", "-q", "rand.png", "-o", "newstats/"], cwd=pics)
    assert p.returncode == 2
    why = b"-o newstats/: names a stats file, not a directory"
    assert p.stderr == b"recolor rebalance-stats: " + why + b" (see recolor rebalance-stats -h)\n"
    assert not (pics / "newstats").exists()
    p = run(["compare", "p.png", "t.png", "-o", "rep/"], cwd=pics)
    assert p.returncode == 2
    why = b"-o rep/: names a report file, not a directory"
    assert p.stderr == b"recolor compare: " + why + b" (see recolor compare -h)\n"
    assert not (pics / "rep").exists()
    (pics / "made").mkdir()
    p = run(["compare", "p.png", "t.png", "-o", "made", "--json"], cwd=pics)
    assert p.returncode == 2
    assert list((pics / "made").iterdir()) == []


def test_quantize_an_input_whose_preview_fails_leaves_no_target(pics):
    p = run(["quantize", "rand.png", "gray.png", "--preview", "pp.png"], cwd=pics)
    assert p.returncode == 1
    assert b"gray.png: output pp.png was already written" in p.stderr
    assert names(p.stdout) == ["rand.png"]


def test_quantize_a_preview_that_cannot_be_written_leaves_no_target(pics):
    """A folder where the preview goes: the target was written (to stdout or -o FILE), then
    the preview failed. Now found before either is written; the other input is still done."""
    (pics / "pv" / "rand.png").mkdir(parents=True)
    p = run(["quantize", "-q", "rand.png", "gray.png", "--preview", "pv/"], cwd=pics)
    assert p.returncode == 1
    assert p.stderr == b"recolor quantize: pv/rand.png: is a directory\n"
    assert p.stdout.count(b"RCLR") == 1  # gray.png's target alone
    assert (pics / "pv" / "gray.png").is_file()
    p = run(["quantize", "-q", "rand.png", "--preview", "pv/", "-o", "t.target"], cwd=pics)
    assert p.returncode == 1 and p.stderr == b"recolor quantize: pv/rand.png: is a directory\n"
    assert not (pics / "t.target").exists()


def test_quantize_refuses_a_preview_naming_an_input_before_any_work(pics):
    before = (pics / "rand.png").read_bytes()
    p = run(["quantize", "rand.png", "--preview", "rand.png"], cwd=pics)
    assert p.returncode == 1
    assert p.stderr == b"recolor quantize: rand.png: refusing to overwrite an input\n"
    assert p.stdout == b""
    assert (pics / "rand.png").read_bytes() == before


@pytest.mark.parametrize(
    "args", [["predict", "x.png", "-o"], ["to-lab", "x.png", "--max-size"], ["train", "--steps"]]
)
def test_an_option_without_its_value_names_the_tool(tmp_path, args):
    """Click says this one before the tool's context exists: the line named `recolor` and sent
    the user to `recolor -h`."""
    p = run(args, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == b""
    tool, flag = args[0], args[-1]
    want = f"recolor {tool}: Option '{flag}' requires an argument (see recolor {tool} -h)\n"
    assert p.stderr.decode() == want


@pytest.mark.parametrize("tool", ["quantize", "rebalance-stats"])
def test_grid_with_classes_is_a_usage_error(pics, tool, rand_stats):
    (pics / "st.npz").write_bytes(rand_stats)  # rebalance-stats' of rand.png
    p = run([tool, "--classes", "st.npz", "--grid", "10", "rand.png"], cwd=pics)
    assert p.returncode == 2
    assert p.stdout == b""
    why = "--grid 10 and --classes exclude each other (the file holds its grid)"
    assert p.stderr.decode() == f"recolor {tool}: {why} (see recolor {tool} -h)\n"


def test_rebalance_stats_tells_images_from_records_by_their_bytes(pics):
    lab = run(["to-lab", "rand.png"], cwd=pics, check_rc=0).stdout
    (pics / "rec.lab").write_bytes(lab)
    (pics / "rec_named.png").write_bytes(lab)
    (pics / "img_named.lab").write_bytes((pics / "gray.png").read_bytes())
    run(["rebalance-stats", "-q", "rec.lab", "gray.png", "-o", "want.npz"], cwd=pics, check_rc=0)
    run(["rebalance-stats", "-q", "rec_named.png", "img_named.lab", "-o", "got.npz"], cwd=pics,
        check_rc=0)  # fmt: skip
    want, got = (RebalanceStats.load(pics / n) for n in ("want.npz", "got.npz"))
    assert got.n_images == 2
    np.testing.assert_array_equal(got.counts, want.counts)


def test_quantize_escapes_a_name_in_its_note(pics):
    name = "a\nb.png"
    write_rgb(pics / name, smooth_image(20, 30, 5))
    p = run(["quantize", name], cwd=pics, check_rc=0)
    (line,) = p.stderr.decode().splitlines()  # one line, the name escaped as errors are
    assert line.startswith("recolor quantize: a\\nb.png: ") and line.endswith(" classes")
    # a name holding a backslash and an n is not that one: backslashes are doubled
    (pics / "a\\nb.png").write_bytes(b"not an image")
    p = run(["to-lab", "a\\nb.png", name], cwd=pics)
    assert p.returncode == 1 and p.stderr.decode() == (
        "recolor to-lab: a\\\\nb.png: not an image recolor reads (text)\n"
    )


def test_a_name_in_the_reason_of_an_error_is_escaped_too(pics):
    """An output, a folder or an option's value named in the reason of an error or usage line
    is escaped as the file name before it is: its newline or TAB split the one line, and its
    backslash was not doubled."""
    for folder, seed in (("d1", 6), ("d2", 7)):
        (pics / folder).mkdir()
        write_rgb(pics / folder / "q\tq.png", smooth_image(20, 30, seed))
    (pics / "p\nr\\ed").mkdir()
    write_rgb(pics / "p\nr\\ed" / "x.png", smooth_image(20, 30, 8))
    (pics / "truth").mkdir()
    for name in ("x.png", "y.png"):
        write_rgb(pics / "truth" / name, smooth_image(20, 30, 9))
    (pics / "d\nir").mkdir()
    cases = {  # args: (exit status, the one line on stderr)
        ("to-lab", "-o", "o\nut/", "d1/q\tq.png", "d2/q\tq.png"): (
            1,
            "recolor to-lab: d2/q\\tq.png: output o\\nut/q\\tq.lab was already written for an "
            "earlier input",
        ),
        ("compare", "p\nr\\ed", "truth"): (
            1,
            "recolor compare: truth/y.png: no prediction of that name in p\\nr\\\\ed",
        ),
        ("to-lab", "-o", "a\tb.png", "rand.png"): (
            2,
            "recolor to-lab: -o a\\tb.png: to-lab writes records, not a png image (name a .lab "
            "file or a folder) (see recolor to-lab -h)",
        ),
        ("rebalance-stats", "-o", "d\nir", "rand.png"): (
            2,
            "recolor rebalance-stats: -o d\\nir: names a stats file, not a directory (see "
            "recolor rebalance-stats -h)",
        ),
    }
    for args, (rc, line) in cases.items():
        p = run(args, cwd=pics)
        assert (p.returncode, p.stderr.decode()) == (rc, line + "\n"), args


def test_predict_o_with_a_format_it_does_not_write_is_a_usage_error(tmp_path, tiny_cls):
    """-o x.gif made a folder named x.gif (a name without an image extension is a folder for
    predict); from-lab refused it as an unknown format, as predict now does."""
    src = write_rgb(tmp_path / "a.png", smooth_image(24, 32, 1))
    for tool in ("predict", "from-lab"):
        p = run([tool, src, "-o", tmp_path / "x.gif"])
        assert p.returncode == 2 and "unknown image format '.gif'" in p.stderr.decode()
    assert not (tmp_path / "x.gif").exists()
    p = run(["predict", src, "--size", "16", "-w", tiny_cls, "-o", tmp_path / "noext"], check_rc=0)
    assert p.stdout.decode() == f"{tmp_path / 'noext' / 'a.png'}\n"
    for tool in ("predict", "from-lab"):  # --format was ignored without a word
        p = run([tool, src, "-o", tmp_path / "x.png", "--format", "jpg"])
        assert (p.returncode, p.stderr.decode()) == (2, (
            f"recolor {tool}: --format jpg and -o {tmp_path / 'x.png'} name two formats: give one "
            f"(see recolor {tool} -h)\n"
        ))  # fmt: skip
    run(["from-lab", src, "-o", tmp_path / "y.jpeg", "--format", "JPG"], check_rc=0)  # alike
    # an extension that is no image format's is a folder's name too (it was "unknown format")
    p = run(["predict", src, "--size", "16", "-w", tiny_cls, "-o", tmp_path / "results.v2"],
            check_rc=0)  # fmt: skip
    assert p.stdout.decode() == f"{tmp_path / 'results.v2' / 'a.png'}\n"


def test_a_folder_in_a_list_file_is_searched_as_on_the_command_line(tmp_path, tiny_cls):
    """A folder line in a .txt list was opened as a file: "is a directory, and no input was
    found in it", though it held images."""
    (tmp_path / "k" / "sub").mkdir(parents=True)
    write_rgb(tmp_path / "k" / "a.png", smooth_image(8, 10, 1))
    write_rgb(tmp_path / "k" / "sub" / "b.png", smooth_image(8, 10, 2))
    write_rgb(tmp_path / "k" / "sub" / "a.png", smooth_image(8, 10, 4))
    write_rgb(tmp_path / "c.png", smooth_image(8, 10, 3))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "in.txt").write_text("# posters\n../k\n  ../c.png\n")
    out = tmp_path / "out"
    p = run(["to-lab", tmp_path / "lists" / "in.txt", "-o", f"{out}/"], check_rc=0)
    assert p.stderr == b""
    # and its tree is mirrored, as for a folder on the command line (the two a.png collided)
    found = sorted(f.relative_to(out).as_posix() for f in out.rglob("*.lab"))
    assert found == ["a.lab", "c.lab", "sub/a.lab", "sub/b.lab"]
    # an output folder inside a listed folder holds no inputs on a rerun (it was read back):
    # here a first run's outputs, k/rec/ as its tree of images, are there already
    (tmp_path / "k.txt").write_text("k\n")
    for name in ("a.png", "sub/a.png", "sub/b.png"):
        (tmp_path / "k" / "rec" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "k" / name, tmp_path / "k" / "rec" / name)
    p = run(["predict", tmp_path / "k.txt", "-o", f"{tmp_path}/k/rec/", "-q", "-w", tiny_cls],
            check_rc=0)  # fmt: skip
    assert p.stderr == b"" and len(p.stdout.splitlines()) == 3


def test_a_list_file_splits_at_newlines_only(tmp_path):
    """Lines were split as Python's splitlines splits them: a name holding a form feed, a
    group separator or U+2028 (legal on Linux; `ls > list.txt` writes it) was two missing
    files. A CRLF list still reads."""
    names = ["a\x0cb.png", "c\u2028d.png", "e\x1df.png", "g\x0bh.png", "i\rj.png"]
    for i, n in enumerate(names):
        write_rgb(tmp_path / n, smooth_image(8, 10, i))
    (tmp_path / "list.txt").write_bytes(b"".join(os.fsencode(n) + b"\n" for n in names))
    (tmp_path / "crlf.txt").write_bytes(b"# dos\r\nk.png\r\n")
    write_rgb(tmp_path / "k.png", smooth_image(8, 10, 9))
    out = tmp_path / "out"
    p = run(["to-lab", tmp_path / "list.txt", tmp_path / "crlf.txt", "-o", f"{out}/"],
            check_rc=0)  # fmt: skip
    assert p.stderr == b""
    assert sorted(os.listdir(out)) == sorted([n[:-4] + ".lab" for n in names] + ["k.lab"])


def test_a_txt_file_holding_a_nul_byte_is_no_list_but_the_file_it_is(tmp_path):
    """A JPEG named photo.txt was split into "paths" at its newline bytes: a dozen lines of
    garbage ("embedded null byte", "no such file"), none naming photo.txt. Binary, it is the
    image its bytes are; junk is one line naming it."""
    write_rgb(tmp_path / "a.jpg", smooth_image(16, 16, 1))
    (tmp_path / "a.jpg").rename(tmp_path / "photo.txt")
    (tmp_path / "junk.list").write_bytes(b"\x00\x01\nb.png\n\xff\x00\n")
    (tmp_path / "list.txt").write_bytes(b"photo.txt\n")  # (a list naming it)
    out = tmp_path / "out"
    for arg in ("photo.txt", "list.txt"):
        p = run(["to-lab", tmp_path / arg, "-o", f"{out}/"], check_rc=0)
        assert p.stderr == b"" and os.listdir(out) == ["photo.lab"]
        shutil.rmtree(out)
    p = run(["to-lab", tmp_path / "junk.list", "-o", f"{out}/"])
    assert p.returncode == 1
    assert p.stderr.decode().splitlines() == [
        f"recolor to-lab: {tmp_path / 'junk.list'}: not an image recolor reads (unknown format)"
    ]


def test_skip_existing_still_refuses_a_second_input_of_one_output(tmp_path, tiny_cls):
    """d/a/x.png and d/b/x.png given as files both make out/x.*: the second is refused; a rerun
    with --skip-existing skipped both and exited 0, as if d/b/x.png had been done."""
    for sub, seed in (("a", 1), ("b", 2)):
        (tmp_path / sub).mkdir()
        write_rgb(tmp_path / sub / "x.png", smooth_image(8, 10, seed))
    srcs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    for tool, extra in (("to-lab", []), ("predict", ["--size", "16", "-w", tiny_cls])):
        out = tmp_path / f"out-{tool}"
        # predict's first run (its refusal: test_outputs.py's
        # test_two_inputs_mapping_to_one_output) here is its output, made by hand
        if tool == "to-lab":
            done = [run([tool, *srcs, *extra, "-o", f"{out}/"])]
        else:
            out.mkdir()
            shutil.copy(srcs[0], out / "x.png")
            done = []
        again = run([tool, *srcs, *extra, "-o", f"{out}/", "--skip-existing"])
        # (the rerun wrote nothing: its output is kept for the first input, not written)
        for p, says in [(p, "was already written for an earlier") for p in done] + [
            (again, "exists, kept for an earlier input")
        ]:
            err = p.stderr.decode()
            assert p.returncode == 1 and err.count(says) == 1, err
            assert err.startswith(f"recolor {tool}: {srcs[1]}: ")


def test_an_eof_error_is_an_internal_error_not_ctrl_c(tmp_path, monkeypatch, capsys):
    """click turns any EOFError that leaves a command into Abort, which was taken for Ctrl-C:
    exit 130 and a blank line (a numba cache file left empty by a crash did it); then an
    internal error, still after click's blank line."""
    from recolor_tools.cli import main, score

    def broken(*args):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(score, "_compare_pairs", broken)
    assert main(["compare", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert err == (  # one line: no blank line of click's before it
        "recolor compare: internal error: EOFError: Ran out of input (--debug shows a traceback)\n"
    )


def test_notes_of_inputs_read_on_threads_come_in_input_order(tmp_path, tiny_cls):
    """With -j, each input's note (a multi-page TIFF, an animated PNG) was said when its read
    ended: a large first input's came after the small ones'. Now in input order, as with -j 0."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (2000, 2000, 3), np.uint8)) for _ in range(2)]
    pages[0].save(tmp_path / "a.tif", save_all=True, append_images=pages[1:])  # slow to read
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)) for _ in range(2)]
    for name in ("b.png", "c.png"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
    inputs = [tmp_path / n for n in ("a.tif", "b.png", "c.png")]
    want = [f"{inputs[0]}: multi-page TIFF: reading the first page only"] + [
        f"{f}: animated PNG: reading the first frame only" for f in inputs[1:]
    ]
    for j in ("0", "4"):
        for tool, args in (("predict", ["--size", "32", "-o", f"{tmp_path}/out{j}/", "-w",
                                        tiny_cls]),
                           ("rebalance-stats", ["-o", tmp_path / f"s{j}.npz"])):  # fmt: skip
            p = run([tool, *inputs, "-j", j, *args, "-q"], check_rc=0)
            assert p.stderr.decode().splitlines() == [f"recolor {tool}: {w}" for w in want], j
    # and the same outputs, one at a time or on threads (for test_workers_and_threads_are_...)
    for name in ("a.tif", "b.png", "c.png"):
        assert (tmp_path / "out0" / name).read_bytes() == (tmp_path / "out4" / name).read_bytes()
    s0, s4 = (np.load(tmp_path / f"s{j}.npz") for j in "04")
    np.testing.assert_array_equal(s0["counts"], s4["counts"])


def test_workers_and_threads_are_the_same_flags_in_every_tool(tmp_path, tiny_cls):
    """-j/--workers: threads (or loader processes) that read images, 0 for one at a time, in
    rebalance-stats, train and predict alike: predict's was --io-workers only, rebalance-stats
    refused 0; predict had no --threads (train's)."""
    from recolor_tools import defaults

    # -j 0 and -j n in rebalance-stats and predict, and their outputs the same: the runs of
    # test_notes_of_inputs_read_on_threads_come_in_input_order. Here predict's --threads, its
    # -j with the most it takes (for test_threads_and_workers_past_any_machine_...), and
    # --io-workers, the same output (both on one torch thread: a convolution's sums need not
    # be bit-identical across thread counts)
    img = write_rgb(tmp_path / "a.png", smooth_image(32, 40, 3))
    most = str(defaults.MAX_WORKERS)
    run(["predict", img, "-j", most, "--threads", "1", "-o", tmp_path / "pn.png", "--size", "32",
         "-w", tiny_cls], check_rc=0)  # fmt: skip
    p = run(["predict", img, "--io-workers", "1", "--threads", "1", "-o", tmp_path / "p1.png",
             "--size", "32", "-w", tiny_cls])  # fmt: skip
    assert (
        p.returncode == 0
        and (tmp_path / "p1.png").read_bytes() == (tmp_path / "pn.png").read_bytes()
    )


def test_a_quoted_glob_is_expanded_as_the_shell_would(tmp_path):
    """A quoted ``in/*`` passed a matched folder to the reader ("is a directory") where the
    shell's expansion searched it; a quoted ``**`` followed a link to a parent folder, walking
    ever longer paths of the same folders (memory growing, no end)."""
    for name in ("in/a.png", "in/sub/b.png", "in/.hidden/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(tmp_path / name, smooth_image(12, 12, len(name)))
    (tmp_path / "in/sub/up").symlink_to("..")
    (tmp_path / "in/sub/top").symlink_to("../..")
    for pattern in ("in/*", "in/**/*.png"):
        out = tmp_path / f"out{len(pattern)}"
        p = run(["to-lab", pattern, "-o", f"{out}/"], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        # the shell's expansion names each file below the folder it matched (or by its name)
        assert sorted(f.name for f in out.rglob("*.lab")) == ["a.lab", "b.lab"]
    shell = run(["to-lab", "in/a.png", "in/sub", "-o", "-"], cwd=tmp_path).stdout
    assert names(run(["to-lab", "in/*", "-o", "-"], cwd=tmp_path).stdout) == names(shell)


def test_a_depth_other_than_8_or_16_is_a_usage_error(pics):
    """One check for the option both tools take (each tool had its own copy)."""
    lab = pics / "r.lab"
    lab.write_bytes(run(["to-lab", "rand.png"], cwd=pics, check_rc=0).stdout)
    for tool, src in (("from-lab", lab), ("predict", pics / "rand.png")):
        p = run([tool, src, "--depth", "12", "-o", pics / "x.png"], cwd=pics)
        assert (p.returncode, p.stderr.decode()) == (2, f"recolor {tool}: Invalid value for "
            f"'--depth': must be 8 or 16, got 12 (see recolor {tool} -h)\n")  # fmt: skip
        assert not (pics / "x.png").exists()


def test_stats_appended_to_a_file_are_a_whole_npz(pics, rand_stats):
    """`rebalance-stats -o - >> s.npz` (and `-o /dev/stdout`, opened for appending too): zipfile
    seeks back to fill in its headers, which landed at the end of the file, a broken npz (exit
    0)."""
    from recolor_tools.rebalance import RebalanceStats

    want = rand_stats  # `rebalance-stats rand.png -o - -q` to a pipe
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    with open(pics / "s.npz", "ab") as out:  # the shell's >>
        cmd = [*RECOLOR, "rebalance-stats", "rand.png", "-o", "-", "-q"]
        subprocess.run(cmd, stdout=out, cwd=pics, env=env, check=True)
    assert (pics / "s.npz").read_bytes() == want
    assert RebalanceStats.load(pics / "s.npz").n_images == 1


def test_a_record_promising_more_than_a_stdin_file_holds_is_refused_from_its_header(tmp_path):
    """Stdin that is a regular file was read through the pipe reader, which cannot tell what
    the file has left: a header promising 270 GB went on to "out of memory"."""
    import json
    import struct

    side = [13000, 13000]
    arrays = [{"name": "lab", "dtype": "<f4", "shape": [*side, 3]}]
    head = json.dumps({"name": "a.png", "size": side, "arrays": arrays}).encode()
    stream = tmp_path / "big.lab"
    prefix = struct.pack("<4sHHI", records.MAGIC, 1, 0, len(head))
    stream.write_bytes(prefix + head + bytes(1000))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(stream, "rb") as stdin:
        cmd = [*RECOLOR, "from-lab", "-o", f"{tmp_path}/o/"]
        p = subprocess.run(cmd, stdin=stdin, capture_output=True, env=env)
    assert p.returncode == 1
    assert "truncated record stream (the header promises 2,028,000,000 bytes of arrays" in (
        p.stderr.decode()
    )


@pytest.mark.parametrize(
    "tool, flag", [("predict", "--threads"), ("predict", "-j"), ("train", "--threads"),
                   ("train", "-j"), ("rebalance-stats", "-j")]
)  # fmt: skip
def test_threads_and_workers_past_any_machine_are_a_usage_error(pics, tool, flag):
    """--threads 20000 ended predict with exit 1 and no word (libgomp could not start them),
    100000 with a segfault; train -j 100000 forked loader processes for minutes, deaf to
    SIGTERM. The most is still taken."""
    from recolor_tools import defaults
    from recolor_tools.trainconfig import TrainConfig

    most = defaults.MAX_WORKERS
    p = run([tool, "rand.png", flag, most + 1, "-o", "out"], cwd=pics)
    assert p.returncode == 2 and p.stderr.decode().count("\n") == 1, p.stderr
    assert f"{most + 1} is not in the range" in p.stderr.decode()
    assert not (pics / "out").exists()
    if tool == "train":  # the API checks what the CLI does
        name = "threads" if flag == "--threads" else "workers"
        with pytest.raises(ValueError, match=f"--{name} must be"):
            TrainConfig(data=[pics], **{name: most + 1})
    # the most is taken (threads as work comes): predict's run with -j MAX_WORKERS is
    # test_workers_and_threads_are_the_same_flags_in_every_tool's


def test_a_thread_the_system_refuses_is_said_as_its_limit_not_an_internal_error(
    pics, monkeypatch, capsys
):
    """Under ``ulimit -u`` (or a container's pids limit) rebalance-stats, quantize and predict
    said "internal error: RuntimeError: can't start new thread"; and an allocation that failed
    in C++ (torch's import under ``ulimit -v``: std::bad_alloc) or in the system (ENOMEM) was an
    internal error too, not "out of memory"."""
    import threading

    from recolor_tools.cli import main
    from recolor_tools.errors import out_of_memory

    def refused(self):
        raise RuntimeError("can't start new thread")  # CPython's own words

    from recolor_tools.quant import jit

    monkeypatch.setattr(threading.Thread, "start", refused)
    # (a pool that an earlier test in this process started needs no new thread: quantize
    # passed after test_hint_model's tests)
    monkeypatch.setattr(jit, "_pool", None)
    assert main(["rebalance-stats", str(pics / "rand.png"), str(pics / "t.png"), "-j", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert err.startswith("recolor rebalance-stats: can't start new thread: the system refused")
    assert err.endswith("; fewer -j need fewer)\n")
    big = write_rgb(pics / "big.png", smooth_image(600, 800, 4))  # (its kernels use threads)
    assert main(["quantize", str(big), "-o", str(pics / "big.target")]) == 1
    err = capsys.readouterr().err  # quantize has no -j to lower
    assert err.startswith("recolor quantize: can't start new thread") and "-j" not in err, err
    assert out_of_memory(RuntimeError("std::bad_alloc"))
    # (not the loader's "failed to map segment from shared object": a noexec mount says it too)
    assert not out_of_memory(ImportError("x.so: failed to map segment from shared object"))
    assert not out_of_memory(RuntimeError("can't start new thread"))


def _cgroups(root: Path, own: str, files: dict[str, str]) -> None:
    """A cgroup tree below ``root``: ``own`` as /proc/self/cgroup reads, and ``files``."""
    (root / "self").write_text(own)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize(
    "own, files, cores",
    [  # a quota on the process's cgroup or on one above it; the least wins
        ("0::/a/b\n", {"a/b/cpu.max": "max 100000\n", "a/cpu.max": "50000 100000\n"}, 1),
        ("0::/a/b\n", {"a/b/cpu.max": "250000 100000\n", "cpu.max": "max 100000\n"}, 2),
        ("4:cpu,cpuacct:/job\n1:memory:/job\n",
         {"cpu/job/cpu.cfs_quota_us": "190000\n", "cpu/job/cpu.cfs_period_us": "100000\n"}, 1),
        ("4:cpu,cpuacct:/job\n", {"cpu/job/cpu.cfs_quota_us": "-1\n",
                                  "cpu/job/cpu.cfs_period_us": "100000\n"}, None),
        ("0::/host/path\n", {"cpu.max": "100000 100000\n"}, 1),  # a container's root only
        ("0::/a\n", {"a/cpu.max": "garbage\n"}, None),
        ("", {}, None),
    ],
)  # fmt: skip
def test_usable_cores_are_the_affinity_capped_by_the_cgroups_cpu_quota(
    tmp_path, monkeypatch, own, files, cores
):
    """torch, numba and OpenMP count the affinity mask alone: in a container limited to 2 CPUs
    on a 64-core host they ran 32-64 threads, throttled for most of each period."""
    from recolor_tools import process

    _cgroups(tmp_path, own, files)
    monkeypatch.setattr(process, "CGROUPS", str(tmp_path))
    monkeypatch.setattr(process, "OWN_CGROUP", str(tmp_path / "self"))
    mask = len(os.sched_getaffinity(0))
    assert process.usable_cores.__wrapped__() == min(mask, cores or mask)


def test_the_memory_cgroups_least_room_is_the_memory_free(tmp_path, monkeypatch):
    """A limit on a cgroup above the process's holds too (it read the process's own alone)."""
    from recolor_tools import process

    files = {"a/b/memory.max": "max\n", "a/b/memory.current": "5\n", "a/memory.max": "1000\n",
             "a/memory.current": "400\n"}  # fmt: skip
    _cgroups(tmp_path, "0::/a/b\n", files)
    monkeypatch.setattr(process, "CGROUPS", str(tmp_path))
    monkeypatch.setattr(process, "OWN_CGROUP", str(tmp_path / "self"))
    assert process.memory_free() == 600
    # the file cache that the usage counts and the kernel would reclaim is room (v2, then v1)
    (tmp_path / "a/memory.stat").write_text("anon 100\nfile 300\ninactive_file 250\n")
    assert process.memory_free() == 850
    _cgroups(tmp_path, "5:memory:/job\n", {"memory/job/memory.limit_in_bytes": "1000\n",
             "memory/job/memory.usage_in_bytes": "900\n",
             "memory/job/memory.stat": "inactive_file 1\ntotal_inactive_file 700\n"})  # fmt: skip
    assert process.memory_free() == 800


def test_predict_and_the_kernels_run_no_more_threads_than_the_cpu_quota(pics, monkeypatch):
    """Without --threads, predict's network and the colour-class kernels take the cores the
    cgroup's quota allows, not every core of the host."""
    import torch

    from recolor_tools import process
    from recolor_tools.cli import main
    from recolor_tools.quant import jit

    monkeypatch.setattr(process, "usable_cores", lambda: 1)
    before = torch.get_num_threads()
    try:
        out = pics / "out.png"
        assert main(["predict", str(pics / "rand.png"), "-o", str(out), "-q"]) == 0
        assert out.exists() and torch.get_num_threads() == 1
        assert jit.threads() == 1
    finally:
        torch.set_num_threads(before)
