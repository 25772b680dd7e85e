"""quantize and rebalance-stats through the real command line: pipes, files and bad input."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fifo_write_whole, pipeline, read_rgb_u8, run, smooth_image, write_rgb

from recolor_tools import quant, records
from recolor_tools.color import rgb_to_lab
from recolor_tools.rebalance import PriorAccumulator, RebalanceStats

C8 = np.asarray(quant.gamut_classes(8))


def lab_stream(*labs, names=None) -> bytes:
    buf = io.BytesIO()
    for i, lab in enumerate(labs):
        name = names[i] if names else f"r{i}.png"
        records.write_record(buf, records.lab_record(name, lab, lab.shape[:2]))
    return buf.getvalue()


def read_stream(data: bytes) -> list[records.Record]:
    return list(records.iter_records(io.BytesIO(data)))


def lab_of(path: Path) -> np.ndarray:
    (lab,) = labs_of([path])
    return lab


def labs_of(paths: list[Path]) -> list[np.ndarray]:
    """The Lab arrays to-lab makes of ``paths``, in one run."""
    recs = read_stream(run(["to-lab", *paths], check_rc=0).stdout)
    assert [r.name for r in recs] == [p.name for p in paths]
    return [r.lab() for r in recs]


def test_to_lab_into_quantize_through_a_pipe(tmp_path, images):
    prev = tmp_path / "prev"  # (and quantize --preview DIR/ from a pipe: an image each)
    stages = pipeline(
        ["to-lab", *images], ["quantize", "-k", "4", "--sigma", "3", "--preview", f"{prev}/"]
    )
    assert [s.returncode for s in stages] == [0, 0], stages[1].stderr
    assert sorted(p.name for p in prev.iterdir()) == ["a.png", "b.png", "c.png"]
    targets = read_stream(stages[1].stdout)
    assert [t.name for t in targets] == [p.name for p in images]
    for t, src, lab in zip(targets, images, labs_of(images), strict=True):
        idx, w = quant.soft_encode(lab[..., 1:], C8, k=4, sigma=3.0)
        assert t.arrays["idx"].dtype == np.int16 and t.arrays["w"].dtype == np.float32
        np.testing.assert_array_equal(t.arrays["idx"], idx)
        np.testing.assert_array_equal(t.arrays["w"], w)
        assert t.meta["kind"] == "target" and t.meta["q"] == len(C8) and t.meta["k"] == 4
        used = len(np.unique(idx[..., 0]))
        assert (
            f"recolor quantize: {src.name}: {used} of {len(C8)} classes"
            in stages[1].stderr.decode()
        )


def test_quantize_hard_with_a_class_file_and_a_preview(tmp_path):
    src = write_rgb(tmp_path / "a.png", smooth_image(30, 40, 5))
    lab = lab_of(src)
    classes = quant.data_classes(lab[..., 1:], grid=10)
    quant.save_classes(tmp_path / "c.npz", classes, 10)
    out, prev = tmp_path / "a.target", tmp_path / "prev.png"
    p = run(["quantize", "--hard", "--classes", tmp_path / "c.npz", "--preview", prev, "-o", out,
             "-q", src])  # fmt: skip
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    (t,) = read_stream(out.read_bytes())
    assert set(t.arrays) == {"idx"} and t.arrays["idx"].shape == (30, 40, 1)
    np.testing.assert_array_equal(t.arrays["idx"][..., 0], quant.hard_encode(lab[..., 1:], classes))
    assert t.meta["grid"] == 10.0
    # The preview is the image with each pixel's a/b replaced by its class centre.
    want = quant.preview_rgb(lab, classes, t.arrays["idx"])
    got = read_rgb_u8(prev).astype(int)
    assert np.abs(got - np.rint(want * 255)).max() <= 1
    assert np.abs(got - read_rgb_u8(src).astype(int)).mean() > 0.5  # colours did change


def test_quantize_previews_into_a_directory(tmp_path, images):
    # (--preview DIR/ from a pipe: in test_to_lab_into_quantize_through_a_pipe's pipeline)
    # a name without an image extension is a folder, as predict's and from-lab's -o (it was
    # one PNG file of that name, and the second input "already written")
    p = run(["quantize", "--preview", tmp_path / "shown", "-o", tmp_path / "t0", *images])
    assert p.returncode == 0, p.stderr
    assert sorted(p.name for p in (tmp_path / "shown").iterdir()) == ["a.png", "b.png", "c.png"]
    # ... so a --preview that names -o's file is one path for two outputs: a usage error (the
    # folder was made, and the target then failed on it)
    p = run(["quantize", "--preview", tmp_path / "q.t", "-o", tmp_path / "q.t", *images])
    assert p.returncode == 2 and b"name one path" in p.stderr and not (tmp_path / "q.t").exists()
    p = run(["quantize", "--preview", tmp_path / "one.png", "-o", tmp_path / "t", *images])
    assert p.returncode == 1 and b"already written" in p.stderr


def test_nan_in_a_record_fails_that_record_only(tmp_path):
    good = np.zeros((4, 5, 3), np.float32)
    good[..., 0] = 50
    bad = good.copy()
    bad[1, 2, 1] = np.nan
    data = lab_stream(good, bad, good, names=["g1.png", "bad.png", "g2.png"])
    p = run(["quantize"], input=data)
    assert p.returncode == 1
    assert p.stderr.decode().count("recolor quantize: bad.png: ab contains 1 NaN") == 1
    assert [t.name for t in read_stream(p.stdout)] == ["g1.png", "g2.png"]
    p = run(["rebalance-stats", "-o", tmp_path / "s.npz"], input=data)
    assert p.returncode == 1 and b"recolor rebalance-stats: bad.png: ab contains" in p.stderr
    assert RebalanceStats.load(tmp_path / "s.npz").n_images == 2


def test_empty_stream(tmp_path):
    p = run(["quantize"], input=b"")
    assert p.returncode in (0, 1) and p.stdout == b""
    p = run(["rebalance-stats", "-o", tmp_path / "s.npz"], input=b"")
    assert p.returncode == 1 and len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "s.npz").exists()


def test_to_lab_into_rebalance_stats_through_a_pipe(tmp_path, images):
    out, plot = tmp_path / "stats.npz", tmp_path / "plot.png"
    stages = pipeline(
        ["to-lab", *images],
        ["rebalance-stats", "-o", out, "--lambda", "0.25", "--sigma", "4", "--plot", plot],
    )
    assert [s.returncode for s in stages] == [0, 0], stages[1].stderr
    assert stages[1].stdout == b"" and f"classes: {len(C8)} ".encode() in stages[1].stderr
    stats = RebalanceStats.load(out)
    acc = PriorAccumulator(C8, 8)
    for lab in labs_of(images):
        acc.add(lab[..., 1:])
    want = acc.finish(lam=0.25, sigma=4.0)
    np.testing.assert_array_equal(stats.counts, want.counts)
    np.testing.assert_allclose(stats.weights, want.weights, rtol=1e-6)
    assert (stats.n_images, stats.lam, stats.sigma) == (3, 0.25, 4.0)
    assert read_rgb_u8(plot).shape[0] > 100
    # Reading the images directly (by threads) counts the same; no -o: summary on stdout.
    p = run(["rebalance-stats", "--grid", "10", *images], check_rc=0)
    assert b"classes: 262 (grid 10)" in p.stdout and b"images: 3" in p.stdout


@pytest.mark.parametrize("kind", ["junk", "npy"])
def test_bad_class_file_stops_with_one_line(tmp_path, images, kind):
    """A .npy (one array, no archive) was an internal error: "TypeError: 'numpy.ndarray'
    object does not support the context manager protocol"."""
    bad = tmp_path / "c.npz"
    if kind == "npy":
        np.save(bad.with_suffix(".npy"), np.zeros((8, 2), np.float32))
        bad = bad.with_suffix(".npy")
    else:
        bad.write_bytes(b"junk")
    for tool in ("quantize", "rebalance-stats"):
        p = run([tool, "--classes", bad, "-o", tmp_path / "x", images[0]])
        assert p.returncode == 1
        assert p.stderr.decode().strip() == (
            f"recolor {tool}: {bad}: not a class-set or rebalance-stats file"
        )
        assert not (tmp_path / "x").exists()


def test_classes_from_a_rebalance_stats_file(tmp_path, images):
    """No tool writes a class-set file: --classes takes the statistics' own classes, so the
    targets are quantized over the classes the weights were counted on."""
    # statistics of all three images on the --grid 10 classes (counts other than the runs'
    # own), saved in-process as rebalance-stats saves them
    stats = tmp_path / "s.npz"
    acc = PriorAccumulator(quant.gamut_classes(10), 10)
    for src in images:
        acc.add(rgb_to_lab(read_rgb_u8(src) / np.float32(255))[..., 1:])
    acc.finish().save(stats)
    for tool, out in (("quantize", "t"), ("rebalance-stats", "npz")):
        by_grid, by_file = tmp_path / f"grid.{out}", tmp_path / f"file.{out}"
        run([tool, "--grid", "10", "-o", by_grid, images[0]], check_rc=0)
        run([tool, "--classes", stats, "-o", by_file, images[0]], check_rc=0)
        assert by_file.read_bytes() == by_grid.read_bytes(), tool
        # from a pipe (`--classes <(...)`, a FIFO): read once. It was read as a class-set
        # file first and then as statistics, which found the pipe empty or waited for ever.
        fifo = tmp_path / f"fifo.{out}.npz"
        by_pipe = tmp_path / f"pipe.{out}"
        with fifo_write_whole(fifo, stats.read_bytes()):
            run([tool, "--classes", fifo, "-o", by_pipe, images[0]], check_rc=0)
        assert by_pipe.read_bytes() == by_grid.read_bytes(), tool
        # `--classes -` from stdin (it was "-: no such file"), unless an input is stdin's
        by_stdin = tmp_path / f"stdin.{out}"
        run([tool, "--classes", "-", "-o", by_stdin, images[0]], input=stats.read_bytes(),
            check_rc=0)  # fmt: skip
        assert by_stdin.read_bytes() == by_grid.read_bytes(), tool
        p = run([tool, "--classes", "-", "-o", by_stdin, "-"], input=stats.read_bytes())
        assert p.returncode == 2 and b"--classes - reads its file from stdin" in p.stderr
        p = run([tool, "--classes", "-", "-o", by_stdin], input=stats.read_bytes())  # (implied)
        assert (p.returncode, p.stderr.decode()) == (2, (
            f"recolor {tool}: --classes - reads its file from stdin, which an input reads too "
            "('-', or no input named): name the inputs, or give --classes a file (see recolor "
            f"{tool} -h)\n"
        ))  # fmt: skip


def test_numpy_warnings_do_not_reach_stderr(tmp_path, images):
    """A class file holding 1e300 (float64): numpy's "overflow encountered in cast" came in two
    lines before the one that says what is wrong (--debug still shows them)."""
    bad = tmp_path / "big.npz"
    np.savez(bad, format=np.array(quant.CLASSES_FORMAT), version=np.array(quant.CLASSES_VERSION),
             classes=np.array([[1e300, 0.0], [0.0, 0.0]]), grid=np.array(10.0))  # fmt: skip
    p = run(["quantize", images[0], "--classes", bad, "-o", tmp_path / "q.t"])
    assert p.returncode == 1
    assert p.stderr.decode().splitlines() == [
        f"recolor quantize: {bad}: invalid class set: classes contains 1 NaN or infinite value"
    ]
    p = run(["quantize", images[0], "--classes", bad, "-o", tmp_path / "q.t", "--debug"])
    assert "RuntimeWarning" in p.stderr.decode()


def test_a_lambda_too_small_names_no_output_file(tmp_path):
    """It blamed the output file ("s.npz: lam = 0 needs ...") for a lambda of 1e-300."""
    out = tmp_path / "s.npz"
    green = write_rgb(tmp_path / "green.png", np.full((16, 16, 3), (0, 255, 0), np.uint8))
    p = run(["rebalance-stats", green, "--lambda", "1e-300", "-o", out])
    assert p.returncode == 1 and not out.exists()
    said = "recolor rebalance-stats: lambda 1e-300 gives a colour class never seen "
    assert p.stderr.decode().startswith(said)
    assert len(p.stderr.splitlines()) == 1


def test_commands_do_not_import_torch(tmp_path, images):
    t, s, src = (str(x) for x in (tmp_path / "t", tmp_path / "s", images[0]))
    code = (
        "import sys; from recolor_tools.cli import main; "
        f"rc = main(['quantize', '-q', '-o', {t!r}, {src!r}]); "
        f"rc2 = main(['rebalance-stats', '-q', '-o', {s!r}, {src!r}]); "
        "assert rc == rc2 == 0, (rc, rc2); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


@pytest.mark.parametrize(
    ("tool", "args", "match"),
    [
        ("quantize", ["--sigma", "nan"], "--sigma must be a finite number, got nan"),
        ("quantize", ["--sigma", "1e-300"], "--sigma must be at least 0.01 (see"),
        ("quantize", ["-k", "1000"], "-k 1000 is more than the {Q} classes; give a smaller -k"),
        # -k not given: its default named as such (it read as a -k the user never gave)
        ("quantize", ["--grid", "200"], "-k 5 (the default) is more than the 2 classes"),
        # --hard weighs no neighbours: --sigma was ignored without a word
        ("quantize", ["--sigma", "3", "--hard"], "--sigma and --hard exclude each other"),
        ("quantize", ["-k", "257"], "-k 257: a target record holds at most 256 classes a pixel"),
        ("quantize", ["-k", "3", "--hard"], "-k 3 and --hard exclude each other"),
        ("quantize", ["--grid", "nan"], "--grid must be a finite number, got nan"),
        ("rebalance-stats", ["--sigma", "1e-300"], "--sigma must be 0 (no smoothing) or at"),
        ("rebalance-stats", ["--lambda", "nan"], "--lambda must be a finite number, got nan"),
        # an image FILE option naming a folder once wrote a file of its name (typer dropped "/")
        ("rebalance-stats", ["--plot", "figs/"], "--plot figs/: names an image file, not a dir"),
        ("rebalance-stats", ["--plot", "p.xyz"], "--plot p.xyz: unknown image format '.xyz'"),
        ("quantize", ["--preview", "p.gif"], "--preview p.gif: unknown image format '.gif'"),
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path, images, tool, args, match):
    """NaN, inf and values that once divided by zero or named the input as the culprit, and
    image files that cannot be written: exit 2, one line, before any input is read, nothing
    written."""
    out = tmp_path / "out"
    p = run([tool, images[0], *args, "-o", out], cwd=tmp_path)  # (relative names land here)
    match = match.format(Q=len(quant.gamut_classes(8)))  # --grid's default
    assert p.returncode == 2 and p.stderr.decode().startswith(f"recolor {tool}: {match}")
    assert len(p.stderr.splitlines()) == 1 and not out.exists()


def test_the_sigma_help_shows_no_range_it_does_not_take():
    """quantize --help showed --sigma's range as x>=0, and 0 is refused (the least is 0.01)."""
    p = run(["quantize", "--help"], check_rc=0)
    text = " ".join(p.stdout.decode().split())
    assert "at least 0.01" in text and "x>=0]" not in text.split("--sigma")[1].split("--")[0]
