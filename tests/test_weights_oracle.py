"""weights/oracle.py (the model card's hue/magnitude analysis) on generated images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import stats_of, val_images

ROOT = Path(__file__).resolve().parent.parent


def test_oracle_rows_order_as_their_information(tmp_path):
    data = tmp_path / "val"
    stats_of(tmp_path / "s.npz", *val_images(data))
    p = subprocess.run(
        [sys.executable, ROOT / "weights" / "oracle.py", data, "--stats", tmp_path / "s.npz"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    rows = {}
    for line in p.stdout.splitlines()[2:7]:
        name, cells = line[:16].strip(), line[16:].split()
        rows[name] = dict(zip(("psnr", "auc", "rebal", "colour"), map(float, cells), strict=True))
    assert list(rows) == ["cls", "gray", "ceiling", "true hue", "true magnitude"]
    assert rows["gray"]["colour"] == 0
    # Smooth images: the output grid holds almost all of the truth's colour.
    assert rows["ceiling"]["auc"] > 97 and rows["ceiling"]["auc"] > rows["cls"]["auc"] + 3
    # With the true hue each a/b error shrinks to the difference of magnitudes (triangle
    # inequality), whatever the network predicted.
    assert rows["true hue"]["auc"] > rows["cls"]["auc"], rows
    assert "3 images" in p.stdout.splitlines()[0]
    assert "cls - gray" in p.stdout


def test_the_repository_scripts_say_a_bad_input_in_one_line(tmp_path):
    """weights/, docs/ and benchmarks/ scripts ended a missing file or a folder without images
    in a traceback around recolor's own one-line message; evaluate.py scored an earlier run's
    images left in --work."""
    empty = tmp_path / "empty"
    empty.mkdir()
    nowhere = tmp_path / "nowhere"
    for script, args in (
        ("weights/oracle.py", [empty, "--stats", nowhere]),
        ("weights/evaluate_hints.py", [nowhere, "--stats", nowhere]),
        ("benchmarks/bench_quant.py", [nowhere]),
    ):
        p = subprocess.run([sys.executable, ROOT / script, *args], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
        assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
        assert p.stderr.startswith(f"{Path(script).name}: {tmp_path}/"), p.stderr
    for script in ("weights/oracle.py", "weights/evaluate_hints.py"):  # (slices: -2 kept some)
        p = subprocess.run([sys.executable, ROOT / script, empty, "--stats", nowhere, "--first",
                            "-2"], capture_output=True, text=True, timeout=600)  # fmt: skip
        assert p.returncode == 2 and "--first: must be at least 0, got -2" in p.stderr
    # a card without the table's section was skipped without a word, after all the work; an
    # empty --from-dump ran the whole evaluation
    (tmp_path / "card.md").write_text("no section\n")
    for script, extra in (("weights/evaluate.py", ["--card", tmp_path / "card.md"]),
                          ("weights/evaluate_hints.py", ["--card", tmp_path / "card.md"]),
                          ("weights/evaluate_hints.py", ["--from-dump"])):  # fmt: skip
        p = subprocess.run([sys.executable, ROOT / script, empty, "--stats", nowhere, *extra,
                            "--size" if "hints" not in script else "--seed", "64"],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert "section" in p.stderr or "needs the dump files" in p.stderr, p.stderr
    # values that did nothing (NaN: the hints had no effect) or wrote less than reported
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "b").mkdir()
    for d in ("a", "b"):  # two x.jpg: one x.webp, "2 images" reported
        cv2.imwrite(str(tmp_path / "src" / d / "x.jpg"), np.full((8, 8, 3), 90, np.uint8))
    for script, args, says in (
        ("weights/evaluate_hints.py", [empty, "--stats", nowhere, "--gamma", "nan"], "--gamma"),
        ("weights/subset.py", [tmp_path / "src", tmp_path / "dst"], "share an output"),
        ("weights/subset.py", [tmp_path / "src", tmp_path / "src" / "out"], "or inside it"),
    ):
        p = subprocess.run([sys.executable, ROOT / script, *map(str, args)], capture_output=True,
                           text=True, timeout=600)  # fmt: skip
        assert p.returncode == 2 and says in p.stderr, p.stderr
    assert not (tmp_path / "dst").exists() and not (tmp_path / "src" / "out").exists()
    # a tool's failure: its own line, not a CalledProcessError traceback that hid it
    (tmp_path / "val").mkdir()  # WebP, as subset.py writes (evaluate.py read jpg and png only)
    cv2.imwrite(str(tmp_path / "val" / "a.webp"), np.full((32, 32, 3), 90, np.uint8))
    stats = stats_of(tmp_path / "s.npz", np.full((32, 32, 3), 90, np.uint8))
    # (the shipped cls.pt alone: no reg row to predict before the cls row that fails)
    (tmp_path / "cls_only").mkdir()
    (tmp_path / "cls_only" / "cls.pt").symlink_to(ROOT / "weights" / "cls.pt")
    p = subprocess.run([sys.executable, ROOT / "weights" / "evaluate.py", tmp_path / "val",
                        "--stats", stats, "--size", "64", "--temperatures", "abc", "--work",
                        tmp_path / "w", "--weights", tmp_path / "cls_only"], capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert p.returncode == 2 and "recolor predict: Invalid value for '--temperature'" in p.stderr
    assert "Traceback" not in p.stderr
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "old.png").write_bytes(b"")
    p = subprocess.run([sys.executable, ROOT / "weights" / "evaluate.py", empty, "--stats",
                        tmp_path / "s.npz", "--work", tmp_path / "work", "--size", "64"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 2 and "is not empty" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, ROOT / "weights" / "evaluate.py", empty, "--stats",
                        tmp_path / "s.npz", "--work", tmp_path / "w2", "--size", "64"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 1 and p.stderr.splitlines()[-1] == (
        f"evaluate.py: {empty}: is a directory, and no input was found in it"
    )
    cv2.imwrite(str(tmp_path / "val" / "a.png"), np.full((32, 32, 3), 90, np.uint8))
    p = subprocess.run([sys.executable, ROOT / "weights" / "evaluate.py", tmp_path / "val",
                        "--stats", tmp_path / "s.npz", "--work", tmp_path / "w3", "--size", "64"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 1 and p.stderr.splitlines()[-1] == (  # both copied to truth/a.png
        f"evaluate.py: {tmp_path / 'val'}: two images named a (another extension each)"
    )


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("benchmarks/bench_colorprofile.py", ["--mp", "0"], "--mp: must be at least 0.01"),
        ("benchmarks/bench_colorprofile.py", ["--mp", "1e-9"], "--mp: must be at least 0.01"),
        ("benchmarks/bench_predict.py", ["--size", "36"], "--size: must be a multiple of 8"),
        ("benchmarks/bench_train.py", ["--size", "30"], "--size: must be a multiple of 8"),
        ("benchmarks/bench_predict.py", ["--precision", "x"], "--precision: invalid choice"),
        ("benchmarks/bench_train.py", ["--device", "bogus"], "--device: invalid choice"),
        ("benchmarks/bench_colorprofile.py", ["--runs", "0"], "--runs: must be at least 1"),
        ("benchmarks/bench_startup.py", ["--runs", "0"], "--runs: must be at least 1"),
        ("benchmarks/bench_predict.py", ["--repeat", "0"], "--repeat: must be at least 1"),
        ("benchmarks/bench_predict.py", ["--batch", "1", "0"], "--batch: must be at least 1"),
        ("benchmarks/bench_quant.py", ["--threads", "0"], "--threads: must be at least 1"),
        ("benchmarks/bench_memory.py", ["--size", "0", "5"], "--size: must be at least 1"),
        ("benchmarks/bench_train.py", ["--workers", "-1"], "--workers: must be at least 0"),
        ("benchmarks/bench_guide.py", ["--repeat", "0"], "--repeat: must be at least 1"),
        ("benchmarks/bench_guide.py", ["--sizes", "160", "0"], "--sizes: must be at least 8"),
        ("benchmarks/bench_quota.py", ["--cpus", "0.001"], "--cpus: must be at least 0.01"),
        ("benchmarks/bench_quota.py", ["--repeat", "0"], "--repeat: must be at least 1"),
        ("benchmarks/bench_quota.py", ["--images", "0"], "--images: must be at least 1"),
        ("benchmarks/bench_tree.py", ["--depth", "0"], "--depth: must be at least 1"),
        ("weights/subset.py", ["a", "b", "--of", "0"], "--of: must be at least 1"),
        ("weights/subset.py", ["a", "b", "--of", "-1" + "0" * 400], "--of: must be at least 1"),
        ("weights/evaluate_hints.py", ["a", "--stats", "s", "--oracle", "0"], "more than 0"),
    ],
)
def test_the_scripts_refuse_numbers_out_of_range_as_usage(script, args, says):
    """Benchmark options of 0 ended far into the run in a traceback (the median of no runs, a
    division by a zero-megapixel image, numba's thread count) or hung (--repeat 0), or were
    replaced without a word (bench_startup --runs 0 ran 7), or left an empty cgroup behind
    (bench_quota --cpus 0.001, said as "needs root", exit 0): a usage line and exit 2."""
    p = subprocess.run([sys.executable, ROOT / script, *args], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)  # fmt: skip
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_the_scripts_take_fractions_for_float_options(tmp_path):
    """--gamma 0.5 (the model card's rows) and bench_colorprofile --mp 0.5 were refused: "must
    be a multiple of 1". Parsed, the run goes on to its first file (here an empty dump)."""
    from recolor_tools.errors import at_least

    assert at_least(0, float)("0.5") == 0.5 and at_least(0.01, float)("0.01") == 0.01
    (tmp_path / "empty.jsonl").write_text("")
    # all five in one run (a refused one would be its usage line, exit 2), on an empty dump:
    # its one line (an interrupted run's dump: it was a KeyError traceback), the first case of
    # test_evaluate_hints_says_a_bad_dump_in_one_line, said here
    flags = ("--gamma", "--power", "--alpha", "--radius", "--oracle")
    p = subprocess.run([sys.executable, ROOT / "weights" / "evaluate_hints.py", "x", "--stats",
                        "s", *(a for f in flags for a in (f, "0.5")), "--from-dump",
                        tmp_path / "empty.jsonl"], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith(
        f"evaluate_hints.py: {tmp_path}/empty.jsonl: no image's scores in the dumps"
    ), p.stderr


def test_evaluate_hints_says_a_bad_dump_in_one_line(tmp_path):
    """An empty dump (an interrupted run) or a line of something else was a KeyError or a
    JSONDecodeError traceback."""
    # (the empty dump: in test_the_scripts_take_fractions_for_float_options's one run, the
    # same line with every float option given 0.5)
    (tmp_path / "bad.jsonl").write_text('{"file": "a.png", "scores": {}}\nnot json\n')
    (tmp_path / "bin.jsonl").write_bytes(b"\x89PNG\xff\xfe")
    (tmp_path / "keys.jsonl").write_text('{"file": "a.png", "scores": {"automatic": {}}}\n')
    for name, says in (("bad", "line 2 is not"), ("bin", "not a --dump file"),
                       ("keys", "line 1 is not")):  # fmt: skip
        p = subprocess.run([sys.executable, ROOT / "weights" / "evaluate_hints.py", "x",
                            "--stats", "s", "--from-dump", tmp_path / f"{name}.jsonl"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
        assert p.stderr.startswith(f"evaluate_hints.py: {tmp_path}/{name}.jsonl: {says}")


def test_the_scripts_say_a_bad_folder_or_dump_in_one_line_before_the_work(tmp_path):
    """evaluate.py given a missing folder (or a file), subset.py an existing file as its
    destination, and evaluate_hints.py a --dump it cannot open (after the first image's work)
    ended in tracebacks."""
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "x.png"), np.full((40, 48, 3), (30, 90, 200), np.uint8))
    stats_of(tmp_path / "s.npz", np.full((40, 48, 3), (200, 90, 30), np.uint8))
    (tmp_path / "afile").write_text("x")
    for script, args, says in (
        ("weights/evaluate.py", [tmp_path / "nowhere", "--stats", tmp_path / "s.npz"],
         "nowhere: no such directory"),
        ("weights/evaluate.py", [tmp_path / "afile", "--stats", tmp_path / "s.npz", "--size",
                                 "64"], "afile: not a directory"),  # (no checkpoint read)
        ("weights/subset.py", [src, tmp_path / "afile"], "afile: exists and is not a directory"),
        ("weights/evaluate_hints.py", [src, "--stats", tmp_path / "s.npz", "--points", "1",
                                       "--dump", tmp_path / "afile" / "d.jsonl"],
         "d.jsonl: --dump: not a directory"),
    ):  # fmt: skip
        p = subprocess.run([sys.executable, ROOT / script, *args], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
        assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
        assert p.stderr.rstrip().endswith(says), p.stderr


def test_bench_quant_crops_an_image_smaller_than_its_crop(tmp_path, monkeypatch):
    """A 64 px image ended bench_quant.py in a traceback ("high <= 0": its crops were 128 px)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_quant import crop_targets

    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "small.png"), rng.integers(0, 255, (64, 40, 3), np.uint8))
    targets = crop_targets([str(tmp_path / "small.png")], n=3)
    assert [t.shape for t in targets] == [(32, 32, 2)] * 3 and all(t.std() > 0 for t in targets)
