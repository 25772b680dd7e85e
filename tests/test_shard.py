"""predict across processes: each rank of a torchrun launch takes its share of the inputs, and
together they write what one process writes, each output once."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import pytest
from conftest import (
    RECOLOR,
    ROOT,
    ranks_by_hand,
    run,
    sigint_default,
    smooth_image,
    torchrun,
    write_rgb,
)

from recolor_tools.errors import UsageError
from recolor_tools.shard import rank_and_size, this_rank


@pytest.fixture(scope="module")
def tiny(tiny_cls):
    """``-w`` a tiny random model: these tests are about which process does and says what, not
    about colours."""
    return ["-w", tiny_cls]


@pytest.mark.parametrize("n", [0, 1, 5, 8])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_ranks_share_the_inputs_once_each(n, size):
    items = [f"img{i}.png" for i in range(n)]
    outs = [f"out/{i}.png" for i in range(n)]
    shares = [this_rank(items, outs, env={"RANK": str(r), "WORLD_SIZE": str(size)})
              for r in range(size)]  # fmt: skip
    taken = [x for mine, _ in shares for x in mine]
    assert sorted(taken) == sorted(items) and len(taken) == n  # nothing twice, nothing skipped
    for mine, theirs in shares:  # each input keeps its own output name
        assert [outs[items.index(x)] for x in mine] == theirs


def test_rank_outside_a_launch_and_bad_values():
    assert rank_and_size({}) == (0, 1)
    assert rank_and_size({"RANK": "1"}) == (0, 1)  # a stray RANK alone: one process
    assert rank_and_size({"RANK": "3", "WORLD_SIZE": "1"}) == (0, 1)
    assert this_rank([1, 2, 3], env={}) == ([1, 2, 3],)
    bad = [{"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"},
           {"WORLD_SIZE": "2"}, {"WORLD_SIZE": "x"}, {"RANK": "0", "WORLD_SIZE": "0"}]  # fmt: skip
    for env in bad:
        with pytest.raises(UsageError):
            rank_and_size(env)


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("MASTER_PORT", "x", "MASTER_PORT 'x' is not a whole number from 1 to 65535"),
        ("MASTER_PORT", "99999", "MASTER_PORT '99999' is not a whole number from 1 to 65535"),
        ("LOCAL_WORLD_SIZE", "0", "LOCAL_WORLD_SIZE '0' is not a whole number from 1"),
        ("LOCAL_RANK", "-1", "LOCAL_RANK '-1' is not a whole number from 0"),
        ("LOCAL_RANK", "1" * 5000, f"LOCAL_RANK '{'1' * 5000}' is not a whole number from 0"),
    ],
)
def test_a_launch_variable_set_badly_by_hand_is_named(tmp_path, tiny, name, value, says):
    """MASTER_PORT=x was "internal error: ValueError: invalid literal for int()" after rank 0's
    share was written (predict) or "invalid literal for int() with base 10: 'x'", exit 1
    (train); LOCAL_WORLD_SIZE=0 a ZeroDivisionError."""
    img = write_rgb(tmp_path / "a.png", smooth_image(40, 48, 1))
    env = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", name: value}
    for tool in (["predict", img, *tiny, "--size", "16"], ["train", tmp_path, "--size", "16"]):
        p = run([*tool, "-o", f"{tmp_path}/out/"], env=env)
        assert (p.returncode, p.stderr.decode()) == (
            2, f"recolor {tool[0]}: {says} (set by torchrun)\n"
        )  # fmt: skip
        assert not (tmp_path / "out").exists()


def test_rank_values_set_by_hand_and_usage_said_once(tmp_path, tiny):
    """RANK=1 alone was "internal error: RecolorError: RANK 1 is not in [0, WORLD_SIZE=1)",
    WORLD_SIZE=2 alone wrote rank 0's share unsaid (train: "internal error: KeyError: 'RANK'");
    click's usage errors, an empty argument and -o FILE/ were said by every rank (on one line,
    run together); --hints - and --palette - under torchrun were read by one rank only."""
    img = write_rgb(tmp_path / "a.png", smooth_image(40, 48, 1))
    img2 = write_rgb(tmp_path / "b.png", smooth_image(40, 48, 2))
    (tmp_path / "afile").write_text("x")
    p = run(["predict", img, *tiny, "--size", "16", "-o", f"{tmp_path}/one/"], env={"RANK": "1"})
    assert p.returncode == 0 and (tmp_path / "one" / "a.png").exists(), p.stderr
    for tool in (["predict", img], ["train", tmp_path, "--size", "16"]):
        p = run([*tool, "-o", f"{tmp_path}/ws/"], env={"WORLD_SIZE": "2"})
        assert p.returncode == 2 and p.stderr.decode() == (
            f"recolor {tool[0]}: WORLD_SIZE 2 without RANK: launch with torchrun\n"
        )
        p = run([*tool, "-o", f"{tmp_path}/ws/"], env={"WORLD_SIZE": "0"})  # it named RANK 0
        assert p.returncode == 2 and p.stderr.decode() == (
            f"recolor {tool[0]}: WORLD_SIZE 0 is no number of processes (set by torchrun)\n"
        )
    # train's ranks meet through torchrun's rendezvous: torch's own error after 5 s, exit 1
    p = run(["train", tmp_path, "--size", "16", "-o", f"{tmp_path}/ws/"],
            env={"WORLD_SIZE": "2", "RANK": "0"})  # fmt: skip
    assert p.returncode == 2 and "WORLD_SIZE above 1 without MASTER_ADDR" in p.stderr.decode()
    assert not (tmp_path / "ws").exists()
    cases = [(["--bogus"], 2, "No such option"), ([""], 2, "an empty argument"),
             (["-o", f"{tmp_path}/afile/"], 1, "afile: exists and is not a directory"),
             (["--hints", "-"], 2, "--hints - under torchrun"),
             (["--palette", "-"], 2, "--palette - under torchrun")]  # fmt: skip
    # a tool that shares out no work is the only one doing its own: it says its usage errors
    p = run(["to-lab", img, "--bogus"], env={"RANK": "1", "WORLD_SIZE": "2"})
    assert p.returncode == 2 and "No such option '--bogus'" in p.stderr.decode()
    for extra, rc, says in cases:
        for rank in (0, 1):
            env = {"RANK": str(rank), "WORLD_SIZE": "2"}
            p = run(["predict", img, img2, *tiny, "--size", "16", *extra], env=env, input=b"{}")
            err = p.stderr.decode()
            assert p.returncode == rc and err.count(says) == (rank == 0), (extra, rank, err)
            assert len(err.splitlines()) == (rank == 0), (extra, rank, err)


def test_predict_under_torchrun_writes_what_one_process_writes(tmp_path, tiny):
    sizes = [(40, 56), (48, 48), (36, 60), (50, 40), (44, 44)]
    imgs = [write_rgb(tmp_path / f"im{i}.png", smooth_image(h, w, i))
            for i, (h, w) in enumerate(sizes)]  # fmt: skip
    args = ["predict", *imgs, *tiny, "--device", "cpu", "--batch-size", "1"]
    one = run([*args, "-o", tmp_path / "one/"], check_rc=0)
    two = torchrun([*args, "-o", f"{tmp_path / 'two'}/"], fresh=(tmp_path / "two",))
    assert two.returncode == 0, two.stderr.decode(errors="replace")
    printed = two.stdout.decode().split()
    assert sorted(printed) == sorted(str(tmp_path / "two" / p.name) for p in imgs)  # once each
    assert len(one.stdout.decode().split()) == len(imgs)
    for p in imgs:
        assert (tmp_path / "two" / p.name).read_bytes() == (tmp_path / "one" / p.name).read_bytes()


def test_each_printed_path_is_one_write(tmp_path, tiny):
    """torchrun's ranks share one stdout pipe; with PYTHONUNBUFFERED (many container images
    set it) print() wrote a path and its newline apart, and two ranks' paths ran together
    ("im0.png/tmp/.../im3.png", seen in CI). Each write to stdout is recorded here."""
    import subprocess
    import sys

    from conftest import ROOT

    img = write_rgb(tmp_path / "im.png", smooth_image(40, 48, 0))
    prelude = (
        "import io, os, sys, runpy\n"
        "class Raw(io.RawIOBase):\n"
        "    def writable(self): return True\n"
        "    def write(self, b): os.write(1, b'<' + bytes(b) + b'>'); return len(b)\n"
        "sys.stdout = io.TextIOWrapper(Raw(), write_through=True)\n"
        "sys.argv = ['recolor', *sys.argv[1:]]\n"
        "runpy.run_module('recolor_tools', run_name='__main__')\n"
    )
    args = ["predict", img, *tiny, "--device", "cpu", "-o", f"{tmp_path / 'out'}/"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-c", prelude, *map(str, args)], env=env,
                       capture_output=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode() == f"<{tmp_path / 'out' / 'im.png'}\n>"


def test_what_is_about_the_whole_list_is_said_by_rank_0_only(tmp_path, tiny):
    # a hint file for no input, and --suggest's lines (up to 5 per image)
    imgs = [write_rgb(tmp_path / f"im{i}.png", smooth_image(40, 48, i)) for i in range(2)]
    hints = tmp_path / "hints"
    hints.mkdir()
    (hints / "im0.json").write_text('{"points": [{"x": 3, "y": 4, "color": "#c0392b"}]}')
    (hints / "stray.json").write_text('{"points": []}')
    for rank in (0, 1):
        out = tmp_path / f"rank{rank}"
        p = run(["predict", *imgs, *tiny, "--hints", hints, "-o", f"{out}/"],
                env={"RANK": str(rank), "WORLD_SIZE": "2"})  # fmt: skip
        err = p.stderr.decode()
        assert err.count("stray.json") == (rank == 0) and p.returncode == (rank == 0), err
        assert sorted(f.name for f in out.iterdir()) == [imgs[rank].name]  # its share, done
        p = run(["predict", *imgs, *tiny, "--suggest", "5,5"],
                env={"RANK": str(rank), "WORLD_SIZE": "2"})  # fmt: skip
        named = {ln.split(b"\t")[0].decode() for ln in p.stdout.splitlines()}
        assert p.returncode == 0 and named == ({str(i) for i in imgs} if rank == 0 else set())


def test_two_inputs_of_one_output_in_two_shares_and_usage_said_once(tmp_path, tiny):
    """Each rank saw only its own writes: x/a.png and y/a.png, one per rank, were both written
    to out/a.png (and printed twice). Usage and weights errors were said by every rank."""
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
    imgs = [write_rgb(tmp_path / d / "a.png", smooth_image(40, 48, i)) for i, d in enumerate("xy")]
    for rank in (0, 1):
        env = {"RANK": str(rank), "WORLD_SIZE": "2"}
        out = tmp_path / f"rank{rank}"
        p = run(["predict", *imgs, *tiny, "-o", f"{out}/", "--size", "16"], env=env)
        if rank == 0:
            assert p.returncode == 0 and p.stdout.decode() == f"{out / 'a.png'}\n"
        else:
            want = f"output {out / 'a.png'} is also that of an earlier input, {imgs[0]}"
            assert p.returncode == 1 and not out.exists()
            assert p.stderr.decode() == f"recolor predict: {imgs[1]}: {want}\n"
        for bad, rc in ((["-T", "nan"], 2), (["-w", tmp_path / "none.pt"], 1)):
            p = run(["predict", imgs[0], tmp_path / "b.png", "-o", f"{out}/", *bad], env=env)
            assert p.returncode == rc and len(p.stderr.splitlines()) == (rank == 0), bad
        p = run(["predict", *imgs, "-o", f"{out}/"], env={**env, "RECOLOR_MAX_PIXELS": "x"})
        assert p.returncode == 2 and len(p.stderr.splitlines()) == (rank == 0)
    # one process refuses the second only once the first is written: a first input that fails
    # leaves the output to the second
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    p = run(["predict", tmp_path / "z" / "a.png", imgs[1], *tiny, "-o", f"{tmp_path}/one/"])
    assert p.returncode == 1 and p.stdout.decode() == f"{tmp_path / 'one' / 'a.png'}\n"
    assert len(p.stderr.splitlines()) == 1 and str(tmp_path / "z" / "a.png") in p.stderr.decode()


def test_a_rank_never_writes_over_an_input_in_another_ranks_share(tmp_path, tiny):
    """a.jpg (rank 0's) and a.png (rank 1's) into their own folder as PNG: each rank guarded
    only its own share, so rank 0 wrote a.jpg's output over the input a.png."""
    d = tmp_path / "d"
    d.mkdir()
    write_rgb(d / "a.jpg", smooth_image(40, 48, 1))
    png = write_rgb(d / "a.png", smooth_image(40, 48, 2)).read_bytes()
    lines = [
        f"recolor predict: {d}/a.jpg: output {d}/a.png is another input: refusing to overwrite it",
        f"recolor predict: {d}/a.png: refusing to overwrite an input",
    ]
    for rank in (0, 1, None):  # None: one process, which said the second line twice
        env = {"RANK": str(rank), "WORLD_SIZE": "2"} if rank is not None else {}
        p = run(["predict", d, *tiny, "--size", "16", "-o", f"{d}/", "--format", "png"], env=env)
        assert p.returncode == 1 and p.stdout == b"", (rank, p.stderr)
        assert (d / "a.png").read_bytes() == png and sorted(os.listdir(d)) == ["a.jpg", "a.png"]
        clash = (
            f"recolor predict: {d}/a.png: output {d}/a.png is also that of an earlier "
            f"input, {d}/a.jpg"
        )  # (ranks refuse such pairs up front)
        said = lines if rank is None else [lines[0]] if rank == 0 else [clash]
        assert p.stderr.decode().splitlines() == said, rank


def test_a_failing_rank_does_not_cut_the_others_short(tmp_path):
    """torchrun stops every worker once one exits nonzero: rank 0's share is a broken file and
    small images, rank 1's larger ones; rank 1 must still write all of them."""
    small = [write_rgb(tmp_path / f"s{i}.jpg", smooth_image(24, 32, i)) for i in range(3)]
    large = [write_rgb(tmp_path / f"l{i}.jpg", smooth_image(1200, 1600, i)) for i in range(4)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    args = [bad, large[0]]
    for s, big in zip(small, large[1:], strict=True):
        args += [s, big]  # rank 0: bad and the small ones; rank 1: the large ones
    out = tmp_path / "out"
    p = torchrun(["predict", "-b", "1", "--device", "cpu", "-o", f"{out}/", *args], fresh=(out,))
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0 and err.count(f"{bad}: ") == 1, err
    written = sorted(f.name for f in (tmp_path / "out").iterdir())
    assert written == sorted(f.name for f in small + large), err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_rank_waiting_for_ranks_that_never_come_leaves_at_a_signal(tmp_path, signum, tiny):
    """A rank launched by hand (WORLD_SIZE, RANK, MASTER_*) whose peers never came waited in
    gloo's barrier (days) with SIGTERM and Ctrl-C caught but never acted on: only SIGKILL ended
    it. Its outputs are written before it waits, so it may end at once."""
    img = write_rgb(tmp_path / "a.png", smooth_image(16, 16, 1))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip

    p = subprocess.Popen([*RECOLOR, "predict", img, *tiny, "--size", "16", "-o", f"{tmp_path}/o/"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         preexec_fn=sigint_default)  # as from a terminal  # fmt: skip
    try:
        assert p.stdout.readline().decode() == f"{tmp_path / 'o' / 'a.png'}\n"  # then it waits
        for _ in range(300):  # until rank 0 serves the rendezvous: inside the wait
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", port))
                break
            time.sleep(0.1)
        p.send_signal(signum)
        p.wait(timeout=60)
    finally:
        p.kill()
    assert p.returncode == -signum  # as the signal's default action ends it (a shell: 128 + n)


def test_ranks_given_different_lists_say_so(tmp_path):
    """Each rank takes its share of its own list by position: machines of a launch that list
    other inputs (a glob or a folder read on each) skipped some and did others twice, exit 0.
    Now rank 0 says so once, every rank exits 2; the same lists stay silent, exit 0."""
    imgs = [write_rgb(tmp_path / f"{n}.png", smooth_image(16, 16, i)) for i, n in enumerate("abc")]
    common = ["predict", "--size", "16", "--device", "cpu", "-q"]
    a, b, c = imgs
    ps = ranks_by_hand([*common, "-o", f"{tmp_path}/o/", a, b, c],
                       [*common, "-o", f"{tmp_path}/o/", a, b],
                       fresh=(tmp_path / "o",))  # fmt: skip
    assert [p.returncode for p in ps] == [2, 2], [p.stderr for p in ps]
    assert ps[0].stderr.decode() == (
        "recolor predict: the processes were given different lists of inputs (rank 0: 3, rank"
        " 1: 2): each took its share of its own list, so some may be missing or done twice;"
        " give every process the same list\n"
    )
    assert ps[1].stderr == b""
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == ["a.png", "b.png", "c.png"]
    same = ranks_by_hand(*[[*common, "-o", f"{tmp_path}/s/", a, b, c]] * 2, fresh=(tmp_path / "s",))
    assert [(p.returncode, p.stderr) for p in same] == [(0, b""), (0, b"")]


def test_an_error_only_another_rank_met_is_said_by_rank_0(tmp_path):
    """What is about the whole run (usage, weights) is said by rank 0 only; a --weights file
    missing on one machine alone made that rank exit 1 unsaid (torchrun: the launch failed, no
    reason given). Now rank 0 says that rank's line at the end, naming it; an error every rank
    met is still said once, as before."""
    imgs = [write_rgb(tmp_path / f"{n}.png", smooth_image(16, 16, i)) for i, n in enumerate("ab")]
    common = ["predict", *imgs, "--size", "16", "--device", "cpu", "-q", "-o", f"{tmp_path}/o/"]
    gone = tmp_path / "gone.pt"
    ps = ranks_by_hand(common, [*common, "--weights", gone])
    assert [p.returncode for p in ps] == [0, 1], [p.stderr for p in ps]
    assert ps[0].stderr.decode() == f"recolor predict: {gone}: no such file (rank 1)\n"
    assert ps[1].stderr == b""
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == ["a.png"]  # rank 0's share
    # a usage line held back names the rank before its pointer to -h, as train's do (it came
    # after: "... (see recolor predict -h) (rank 1)")
    gif = tmp_path / "x.gif"
    ps = ranks_by_hand(common, [*common, "-o", gif])
    assert [p.returncode for p in ps] == [0, 2], [p.stderr for p in ps]
    assert (
        ps[0]
        .stderr.decode()
        .endswith(
            f"recolor predict: -o {gif}: unknown image format '.gif' (use one of .jpg, .jpeg, .png,"
            " .tif, .tiff, .webp, .bmp) (rank 1) (see recolor predict -h)\n"
        )
    )
    both = ranks_by_hand(*[[*common, "--weights", gone]] * 2)
    assert [(p.returncode, p.stderr.decode()) for p in both] == [
        (1, f"recolor predict: {gone}: no such file\n"),
        (1, ""),
    ]


SLOW_RANK_0 = """\
import os, sys, time
from datetime import timedelta
from recolor_tools import shard
shard.LAST_WORD_WAIT = timedelta(seconds=120)  # (30 s, less a loaded start: a thin margin)
if os.environ["RANK"] == "0":
    time.sleep(4)  # a loaded machine: rank 1 meets the run's error first
sys.argv[0] = "recolor"
from recolor_tools import run
run()
"""


@pytest.mark.parametrize("case", ["flag", "tool", "out"])
def test_a_usage_error_every_rank_meets_is_said_though_rank_1_meets_it_first(tmp_path, case):
    """Said by rank 0 alone; when rank 1 ended first, torchrun stopped rank 0 before its line
    (exit 1, nothing said: one launch in three beside other work). Now rank 1 waits for rank
    0's last word (:func:`recolor_tools.shard.last_word`)."""
    img = write_rgb(tmp_path / "a.png", smooth_image(16, 16, 0))
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"")
    args, said = {
        "flag": (["train", img, "--bogus"], "recolor train: No such option '--bogus'"),
        "tool": (["train", "-o", tmp_path / "new"], "recolor train: missing DATA"),
        "out": (["train", img, "-o", out, "--device", "cpu"], f"recolor train: {out} holds a run"),
    }[case]  # fmt: skip
    script = tmp_path / "slow_rank_0.py"
    script.write_text(SLOW_RANK_0)
    p = torchrun(args, script=script)
    assert p.returncode != 0
    assert p.stderr.decode().count(said) == 1, p.stderr.decode()


def test_last_word_waits_for_rank_0_else_says_the_held_back_lines_itself(monkeypatch, capsys):
    from datetime import timedelta

    import torch.distributed as dist

    from recolor_tools import shard

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, is_master=True)  # (torchrun's agent holds one)
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RUN_ID": "t"}  # fmt: skip
    for k, v in {**env, "RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(shard, "_lines", {})
    monkeypatch.setattr(shard, "_joined", False)
    monkeypatch.setattr(shard, "LAST_WORD_WAIT", timedelta(seconds=1))
    shard.keep_line("recolor train: x.pt: no such file (see recolor train -h)", said=False)
    polls = []  # each poll of the store for rank 0's word (a wait of 50 ms)
    monkeypatch.setattr(time, "sleep", lambda s, sleep=time.sleep: (polls.append(s), sleep(s)))
    t = time.monotonic()
    shard.last_word(1)  # rank 0 never came (busy): this rank's own error, said here
    assert time.monotonic() - t >= 1 and polls  # (it waited LAST_WORD_WAIT for it)
    said = "recolor train: x.pt: no such file (rank 1) (see recolor train -h)\n"
    assert capsys.readouterr().err == said
    polls.clear()
    shard.last_word(0)  # a rank that ends well stops no one: no wait
    shard.last_word(130)  # nor one that was interrupted
    assert polls == []
    shard.last_word(143, env={**env, "RANK": "0"})  # (a signal may have cut torch's import short)
    assert store.num_keys() == 0
    monkeypatch.setattr(shard, "LAST_WORD_WAIT", timedelta(seconds=30))
    store.set("recolor/waiting/t/0", "1")  # rank 0 waits for the others (shard.joining)
    shard.last_word(1)  # this rank never joined them: rank 0 will not come, said at once
    assert polls == []
    assert capsys.readouterr().err == said
    store.delete_key("recolor/waiting/t/0")
    shard.joining()  # (this rank's own: rank 1 sets nothing)
    assert not store.check(["recolor/waiting/t/0"])
    monkeypatch.setattr(shard, "LAST_WORD_WAIT", timedelta(seconds=1))
    store.set("recolor/waiting/t/0", "1")
    t = time.monotonic()
    shard.last_word(1)  # joined: rank 0 is past its wait, and may yet say it
    assert time.monotonic() - t >= 1 and polls
    assert capsys.readouterr().err == said
    shard.last_word(2, env={**env, "RANK": "0"})  # rank 0 has said all
    polls.clear()
    shard.last_word(2)
    assert capsys.readouterr().err == "" and polls == []  # (it came: no wait)
    assert store.get("recolor/said/t/0") == b"1"


def test_a_flag_error_only_rank_1_met_is_said_by_it_when_rank_0_does_not_come(tmp_path):
    """Click's usage lines were said by rank 0 alone and kept nowhere: one that only rank 1 met
    (other arguments on its machine) was never said; and c10d's C++ added two lines of its own
    when the wait ended."""
    import sys

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, is_master=True)  # noqa: F841 (rank 0 never sets it)
    script = ("import sys; from datetime import timedelta; from recolor_tools import shard; "
              "shard.LAST_WORD_WAIT = timedelta(seconds=1); sys.argv[0] = 'recolor'; "
              "from recolor_tools import run; run()")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "WORLD_SIZE": "2", "RANK": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "TORCHELASTIC_USE_AGENT_STORE": "True"}  # fmt: skip
    p = subprocess.run([sys.executable, "-c", script, "predict", "--bogus"], env=env,
                       capture_output=True, timeout=120)  # fmt: skip
    said = "recolor predict: No such option '--bogus' (rank 1) (see recolor predict -h)\n"
    assert (p.returncode, p.stderr.decode()) == (2, said)


RANK_1_ALONE = """\
import os, sys
from datetime import timedelta
from recolor_tools import shard
shard.LAST_WORD_WAIT = timedelta(seconds=300)  # a wait for rank 0 would show, not be missed
if os.environ["RANK"] == "1":
    sys.argv.append("--bogus")  # (another machine's command line)
sys.argv[0] = "recolor"
from recolor_tools import run
run()
"""


def test_an_error_rank_1_met_alone_before_joining_is_said_at_once(tmp_path):
    """Rank 0, done with its share, waits in the barrier for rank 1, which stopped before it
    joined: rank 1 waited 30 s for rank 0's last word before it said its own line. Rank 0 now
    says in torchrun's store that it waits (shard.joining), and rank 1 says its line then."""
    imgs = [write_rgb(tmp_path / f"{n}.png", smooth_image(16, 16, i)) for i, n in enumerate("ab")]
    script = tmp_path / "rank_1_alone.py"
    script.write_text(RANK_1_ALONE)
    t = time.monotonic()
    p = torchrun(["predict", *imgs, "--size", "16", "--device", "cpu", "-q", "-o",
                  f"{tmp_path}/o/"], script=script)  # fmt: skip
    said = "recolor predict: No such option '--bogus' (rank 1) (see recolor predict -h)"
    assert p.returncode != 0 and p.stderr.decode().count(said) == 1, p.stderr.decode()
    assert time.monotonic() - t < 200  # (LAST_WORD_WAIT is 300 s here)
