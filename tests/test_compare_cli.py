"""`recolor compare` end to end: real processes on generated images."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import drain_pty, smooth_image, write_rgb
from conftest import run as run_recolor

RED = (255, 0, 0)


def run(*args: str | Path) -> subprocess.CompletedProcess:
    """``recolor compare ARGS`` in a subprocess, stdout and stderr as text."""
    p = run_recolor(["compare", *args])
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())


def pattern(h: int = 40, w: int = 50) -> np.ndarray:
    """Smooth RGB pattern with values in [28, 228], so a +-20 shift never clips."""
    i, j, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return np.rint(128 + 100 * np.sin(i / 6 + 2 * c) * np.cos(j / 9 - c)).astype(np.uint8)


def save(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_rgb(path, rgb)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """pred/ and truth/: 'same' identical, 'shift' +10 on every value, each side one extra."""
    x = pattern()
    save(tmp_path / "truth" / "same.png", x)
    save(tmp_path / "pred" / "same.png", x)
    save(tmp_path / "truth" / "shift.png", x)
    save(tmp_path / "pred" / "shift.png", x + np.uint8(10))
    save(tmp_path / "pred" / "extra.png", x)
    return tmp_path / "pred", tmp_path / "truth"


def test_identical_files(tmp_path):
    a = save(tmp_path / "a.png", pattern())
    r = run(a, a, "--csv")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    (row, mean) = csv_rows(r.stdout)
    assert row["name"] == "a" and mean["name"] == "mean"
    assert float(row["psnr"]) == math.inf
    assert float(row["ssim"]) == pytest.approx(1.0, abs=1e-12)
    assert float(row["ab_rmse"]) == 0.0 and float(row["auc"]) == 100.0


def test_rebalanced_auc_with_statistics_of_a_narrow_palette(tmp_path):
    """Statistics counted on one green: the smoothed prior's far tail holds denormals, whose
    inverse overflowed. Two identical navy images scored a rebalanced AuC of NaN, exit 0; two
    blue ones failed, "weights must be non-negative finite numbers", blaming the image."""
    green = write_rgb(tmp_path / "green.png", np.full((16, 16, 3), (0, 255, 0), np.uint8))
    stats = tmp_path / "g.npz"
    run_recolor(["rebalance-stats", green, "-o", stats, "-q"], check_rc=0)
    for d in ("p", "t"):  # each pair alike: navy.png with navy.png, blue.png with blue.png
        for name, colour in (("navy", (0, 33, 140)), ("blue", (0, 0, 255))):
            save(tmp_path / d / f"{name}.png", np.full((64, 64, 3), colour, np.uint8))
    r = run(tmp_path / "p", tmp_path / "t", "--csv", "--stats", stats)
    assert (r.returncode, r.stderr) == (0, "")
    rows = csv_rows(r.stdout)
    assert [row["name"] for row in rows] == ["blue", "navy", "mean"]
    assert [float(row["auc_rebal"]) for row in rows[:2]] == [100.0, 100.0]


def test_shifted_image(tmp_path):
    truth = save(tmp_path / "t.png", pattern())
    pred = save(tmp_path / "p.png", pattern() + np.uint8(10))
    r = run(pred, truth, "--csv")
    assert r.returncode == 0, r.stderr
    row = csv_rows(r.stdout)[0]
    assert float(row["psnr"]) == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)
    assert 0 < float(row["ssim"]) < 1
    # A grey shift changes L, barely a/b (sRGB is not linear, so not exactly 0).
    assert float(row["ab_rmse"]) < 2.0


def test_plain_table_when_piped(dirs):
    r = run(*dirs)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["image", "PSNR", "dB"]
    assert [ln.split()[0] for ln in lines[1:]] == ["same", "shift", "mean"]
    assert lines[1].split()[1] == "inf"
    assert "\x1b" not in r.stdout  # no terminal colour codes in a pipe


def test_directories_with_unmatched_name(dirs):
    r = run(*dirs, "--csv")
    assert r.returncode == 1
    err = r.stderr.splitlines()
    assert len(err) == 1
    assert err[0].startswith("recolor compare: ") and "extra.png" in err[0]
    rows = csv_rows(r.stdout)
    assert [row["name"] for row in rows] == ["same", "shift", "mean"]
    # the CSV's mean row (the same run): the mean of the image rows
    assert list(rows[0])[:4] == ["name", "psnr", "ssim", "ab_rmse"]
    for key in ("ssim", "ab_rmse", "auc", "colourfulness_diff"):
        expected = (float(rows[0][key]) + float(rows[1][key])) / 2
        assert float(rows[2][key]) == pytest.approx(expected, abs=1e-12)


def test_prediction_folder_inside_truth_folder(tmp_path):
    # `recolor predict -o out/ .` then `recolor compare out/ .`: the files below out/ are the
    # predictions, not ground truths without a partner.
    x = pattern()
    save(tmp_path / "a.png", x)
    save(tmp_path / "sub" / "b.png", x)
    save(tmp_path / "out" / "a.jpg", x + np.uint8(10))
    save(tmp_path / "out" / "sub" / "b.png", x)
    p = run_recolor(["compare", "out", ".", "--csv"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b""
    rows = csv_rows(p.stdout.decode())
    assert [row["name"] for row in rows] == ["a", "sub/b", "mean"]
    assert float(rows[0]["psnr"]) < 40 < math.inf == float(rows[1]["psnr"])
    # The other way round: truths in a folder inside the predictions' folder.
    p = run_recolor(["compare", ".", "out", "--csv"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    assert [row["name"] for row in csv_rows(p.stdout.decode())] == ["a", "sub/b", "mean"]


def test_json_parses(dirs):
    r = run(*dirs, "--json")
    doc = json.loads(r.stdout)
    same, shift = doc["images"]
    assert (same["name"], shift["name"]) == ("same", "shift")
    assert same["psnr"] is None  # infinite PSNR is null in strict JSON
    assert shift["psnr"] == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)
    assert doc["mean"]["ssim"] == pytest.approx((same["ssim"] + shift["ssim"]) / 2, abs=1e-12)
    assert "auc_rebal" not in doc["mean"]


def test_an_image_named_mean_is_not_the_mean_row(tmp_path):
    """An image named "mean" gave a second row named "mean" in the table and CSV."""
    for name in ("mean", "z"):
        save(tmp_path / "p" / f"{name}.png", pattern())
        save(tmp_path / "t" / f"{name}.png", pattern()[::-1])
    rows = csv_rows(run(tmp_path / "p", tmp_path / "t", "--csv").stdout)
    assert [r["name"] for r in rows] == ["./mean", "z", "mean"]
    lines = run(tmp_path / "p", tmp_path / "t").stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["./mean", "z", "mean"]
    doc = json.loads(run(tmp_path / "p", tmp_path / "t", "--json").stdout)  # apart already
    assert [i["name"] for i in doc["images"]] == ["mean", "z"]


def test_a_carriage_return_in_a_name_is_quoted_in_csv(tmp_path):
    """csv quoted names holding "\n", "," or '"', not a lone "\r": a reader split that row."""
    for name in ("a\rb", "c\r\nd", "e,f"):
        save(tmp_path / "p" / f"{name}.png", pattern())
        save(tmp_path / "t" / f"{name}.png", pattern()[::-1])
    out = run_recolor(["compare", tmp_path / "p", tmp_path / "t", "--csv"], check_rc=0).stdout
    rows = list(csv.reader(io.StringIO(out.decode(), newline="")))
    assert [r[0] for r in rows] == ["name", "a\rb", "c\r\nd", "e,f", "mean"]
    assert out.endswith(b"\n") and b"\r\n" not in out.replace(b"c\r\nd", b"")


def test_a_report_named_as_an_image_is_a_usage_error(tmp_path):
    """-o report.png wrote the text table into it; the next compare of that folder found a
    .png that is no image."""
    a = save(tmp_path / "a.png", pattern())
    r = run(a, a, "-o", tmp_path / "r.PNG")
    assert (r.returncode, r.stderr) == (
        2, f"recolor compare: -o {tmp_path / 'r.PNG'}: compare writes a report, not a png image "
        "(--montage draws one) (see recolor compare -h)\n"
    )  # fmt: skip
    assert not (tmp_path / "r.PNG").exists()


def _no_dac(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """``recolor ARGS`` as a user that the file modes hold (root without the capabilities that
    pass them by: ``setpriv``)."""
    from conftest import RECOLOR, ROOT

    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    root = os.geteuid() == 0
    if root and (not shutil.which("setpriv") or subprocess.run([*drop, "true"]).returncode):
        pytest.skip("root, and setpriv cannot drop the capabilities here")
    cmd = [*(drop if root else []), *RECOLOR, *map(str, args)]
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, env=env)


def test_an_unreadable_file_or_folder_is_the_line_every_tool_gives(tmp_path):
    """click's check of a Path parameter made an unreadable PRED, TRUTH or --stats a usage
    error ("Invalid value for 'PRED': Path ... is not readable", exit 2), as quantize --classes
    and predict --weights; an unreadable subfolder was paired as a file ("p/locked: no ground
    truth of that name", and its truths "no prediction of that name")."""
    for side in ("p", "t"):
        for name in ("k1", "locked/k2"):
            save(tmp_path / side / f"{name}.png", pattern())
    (tmp_path / "secret").write_bytes(b"")
    (tmp_path / "secret").chmod(0)
    (tmp_path / "p" / "locked").chmod(0)
    try:
        cases = [
            (["compare", "p", "t"], "p/locked"),
            (["compare", "secret", "t/k1.png"], "secret"),
            (["compare", "t/k1.png", "secret"], "secret"),
            (["compare", "p/k1.png", "t/k1.png", "--stats", "secret"], "secret"),
            (["quantize", "t/k1.png", "--classes", "secret", "-o", "q/"], "secret"),
            (["predict", "t/k1.png", "--weights", "secret", "-o", "r/"], "secret"),
        ]
        for args, named in cases:
            p = _no_dac(args, tmp_path)
            assert (p.returncode, p.stderr.decode()) == (
                1, f"recolor {args[0]}: {named}: permission denied\n"
            ), args  # fmt: skip
    finally:
        (tmp_path / "p" / "locked").chmod(0o755)


def test_output_extension_says_the_format_as_images_do(dirs, tmp_path):
    """-o r.json wrote the text table into it (and --csv -o r.json CSV), where every other
    tool's -o FILE takes the format from the extension. (Exit 1: the fixture's unpaired
    extra.png.)"""
    assert run(*dirs, "-o", tmp_path / "r.json").returncode == 1
    assert len(json.loads((tmp_path / "r.json").read_text())["images"]) == 2
    assert run(*dirs, "-o", tmp_path / "r.CSV").returncode == 1
    assert [r["name"] for r in csv_rows((tmp_path / "r.CSV").read_text())][-1] == "mean"
    r = run(*dirs, "--json", "-o", tmp_path / "r.txt")  # the flag says
    assert r.returncode == 1 and r.stdout == ""  # (the report in the file alone)
    assert len(json.loads((tmp_path / "r.txt").read_text())["images"]) == 2
    assert run(*dirs, "-o", tmp_path / "r.txt").returncode == 1
    assert (tmp_path / "r.txt").read_text().split()[0] == "image"  # the table
    for flag, name in (("--csv", "x.json"), ("--json", "x.csv")):
        r = run(*dirs, flag, "-o", tmp_path / name)
        assert r.returncode == 2 and not (tmp_path / name).exists()
        assert r.stderr == (f"recolor compare: {flag} and -o {tmp_path / name} name two "
                            "formats: give one (see recolor compare -h)\n")  # fmt: skip


def test_montage_png(tmp_path):
    truth = save(tmp_path / "t" / "a.png", pattern(40, 50))
    pred = save(tmp_path / "p" / "a.png", np.full((40, 50, 3), RED, np.uint8))
    out = tmp_path / "m.png"
    r = run(pred, truth, "--montage", out, "-q")
    assert r.returncode == 0, r.stderr
    fig = cv2.imread(str(out))[..., ::-1]
    # Cells are 256 high: the 40x50 prediction becomes one 256x320 block of pure red.
    assert np.all(fig == RED, axis=-1).sum() == 256 * 320
    assert 3 * 320 <= fig.shape[1] < 3 * 320 + 100
    assert 256 < fig.shape[0] < 256 + 200
    # sRGB, and says so as every other image recolor writes does (it embedded no profile)
    from PIL import Image

    from recolor_tools.colorprofile import srgb_profile

    with Image.open(out) as im:
        assert im.info.get("icc_profile") == srgb_profile()
    plot = tmp_path / "plot.jpg"
    p = run_recolor(["rebalance-stats", truth, "-o", tmp_path / "s.npz", "--plot", plot, "-q"])
    assert p.returncode == 0, p.stderr
    with Image.open(plot) as im:
        assert im.info.get("icc_profile") == srgb_profile()


def test_a_montage_kept_in_a_compared_folder_is_not_compared_when_run_again(tmp_path):
    """`recolor compare out/ . --montage m.jpg` run twice: the second run took its first's
    figure for a truth with no prediction, exit 1."""
    save(tmp_path / "a.png", pattern())
    save(tmp_path / "out" / "a.png", pattern())
    for _ in range(2):
        r = run_recolor(["compare", "out/", ".", "--montage", "m.jpg", "--csv"], cwd=tmp_path)
        assert r.returncode == 0 and r.stderr == b"", r.stderr
        assert [row["name"] for row in csv_rows(r.stdout.decode())] == ["a", "mean"]
    assert cv2.imread(str(tmp_path / "m.jpg")).shape[0] > 256
    # but a --montage that is a compared file is an input, never overwritten
    (tmp_path / "m.jpg").unlink()
    truth = (tmp_path / "a.png").read_bytes()
    r = run_recolor(["compare", "out/", ".", "--montage", "a.png"], cwd=tmp_path)
    assert (r.returncode, r.stderr) == (
        1,
        b"recolor compare: a.png: refusing to overwrite an input\n",
    )
    assert (tmp_path / "a.png").read_bytes() == truth


def test_a_montage_that_cannot_be_written_is_a_usage_error(tmp_path):
    """Before any image is scored: a directory (once a file named like it, the "/" dropped) or
    an unknown image format (once an error after all the scoring)."""
    truth = save(tmp_path / "t.png", pattern())
    for montage, says in (
        (f"{tmp_path}/figs/", "names an image file, not a directory"),
        (str(tmp_path / "m.xyz"), "unknown image format '.xyz'"),
    ):
        r = run(truth, truth, "--montage", montage)
        assert r.returncode == 2 and r.stdout == "", r.stderr
        assert r.stderr.startswith(f"recolor compare: --montage {montage}: {says}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.png"]


def test_a_montage_taller_than_its_format_holds(tmp_path):
    """64 rows of 256 px pass WebP's 16,383 px a side: one line that says so, no file (it said
    "could not encode .webp image"), and before the work (it came after every pair had been
    compared and the figure built); PNG holds it, as tall as it was said to be."""
    from recolor_tools.report import montage_height

    for i in range(64):
        save(tmp_path / "t" / f"{i:02d}.png", pattern(16, 20))
    webp, png = tmp_path / "m.webp", tmp_path / "m.png"
    r = run(tmp_path / "t", tmp_path / "t", "--montage", webp, "-q")
    assert (r.returncode, r.stdout) == (2, "") and r.stderr == (
        f"recolor compare: --montage {webp}: 64 rows make it {montage_height(64)} px tall; webp "
        "holds at most 16383 a side (tiff holds more) (see recolor compare -h)\n"
    )
    assert not webp.exists()
    assert run(tmp_path / "t", tmp_path / "t", "--montage", png, "-q").returncode == 0
    assert cv2.imread(str(png)).shape[0] == montage_height(64) > 16383
    # a name without an extension is a png: its limit was not looked up ("" has none), and
    # the 1,000,000 px figure failed after every pair was compared (2.5 GB built); as many rows
    # as that need a pixel limit above the default (test_a_montage_is_one_recolor_reads_back)
    n = next(n for n in range(3000, 5000, 50) if montage_height(n) > 1_000_000)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(n):
        os.link(tmp_path / "t" / "00.png", many / f"{i:04d}.png")
    args = ["compare", many, many, "--montage", tmp_path / "fig", "-q"]
    r = run_recolor(args, env={"RECOLOR_MAX_PIXELS": str(4 * 10**9)})
    assert r.returncode == 2 and b"png holds at most 1000000 a side" in r.stderr
    assert not (tmp_path / "fig").exists()


def test_a_montage_is_one_recolor_reads_back(tmp_path):
    """1,000 pairs drew a 298 Mpx figure (2 GB), over the pixel limit of recolor's own reader:
    the first rows that fit it are drawn, whatever their images, and a note says so."""
    from recolor_tools.imagehead import DEFAULT_MAX_PIXELS
    from recolor_tools.report import MAX_CELL_RATIO, montage_height, montage_rows

    widest = 3 * (MAX_CELL_RATIO * 256 + 2 * 8)
    most = montage_rows(DEFAULT_MAX_PIXELS)
    assert montage_height(most) * widest <= DEFAULT_MAX_PIXELS < montage_height(most + 1) * widest
    for i in range(5):
        save(tmp_path / "t" / f"{i}.png", pattern(16, 20))
    limit = {"RECOLOR_MAX_PIXELS": str(montage_height(3) * widest)}
    m = tmp_path / "m.png"
    r = run_recolor(["compare", tmp_path / "t", tmp_path / "t", "--montage", m], env=limit)
    assert r.returncode == 0 and r.stderr.decode() == (
        f"recolor compare: --montage {m}: 3 of 5 pairs drawn, the first read (recolor reads at "
        f"most {montage_height(3) * widest:,} pixels: RECOLOR_MAX_PIXELS)\n"
    )
    assert cv2.imread(str(m)).shape[0] == montage_height(3)
    assert run_recolor(["to-lab", m, "-o", tmp_path / "m.lab"], env=limit).returncode == 0
    # under the limit: every pair, and no note
    r = run_recolor(["compare", tmp_path / "t", tmp_path / "t", "--montage", m])
    assert (r.returncode, r.stderr) == (0, b"")
    assert cv2.imread(str(m)).shape[0] == montage_height(5)


def test_a_montage_cell_of_a_thin_image_is_bounded(tmp_path):
    """An 11 x 2000 image was enlarged to a 256 x 46,545 cell (a 333 x 139,683 figure, 12 times
    the memory of comparing): a cell is at most 4 heights wide, the image centred in it."""
    strip = np.zeros((11, 2000, 3), np.uint8)
    strip[:, :, 1] = 200
    save(tmp_path / "w.png", strip)
    r = run(tmp_path / "w.png", tmp_path / "w.png", "--montage", tmp_path / "m.png", "-q")
    assert r.returncode == 0, r.stderr
    fig = cv2.imread(str(tmp_path / "m.png"))
    assert fig.shape[1] < 3 * (4 * 256 + 20) and fig.shape[0] < 256 + 100
    green = np.all(fig == (0, 200, 0), axis=-1)
    assert green.sum(axis=1).max() == 2 * 1024  # prediction and truth, each 1024 px wide
    assert green.any(axis=1).sum() == round(11 * 1024 / 2000)  # and 6 px high


def test_missing_file(tmp_path):
    truth = save(tmp_path / "t.png", pattern())
    r = run(tmp_path / "nope.png", truth)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"recolor compare: {tmp_path / 'nope.png'}: no such file"]
    # nothing compared: no table (it was a header alone), no report file; CSV and JSON keep
    # their shape for scripts, with the usual columns (not the rebalanced AuC of --stats)
    assert r.stdout == ""
    r = run(tmp_path / "nope.png", truth, "-o", tmp_path / "report.txt")
    assert r.returncode == 1 and not (tmp_path / "report.txt").exists()
    r = run(tmp_path / "nope.png", truth, "--csv")
    keys = "psnr,ssim,ab_rmse,auc,colourfulness_pred,colourfulness_truth,colourfulness_diff"
    assert r.stdout == f"name,{keys}\n"


def test_text_file_named_png(tmp_path):
    truth = save(tmp_path / "t.png", pattern())
    fake = tmp_path / "fake.png"
    fake.write_text("not an image\n")
    r = run(fake, truth)
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"recolor compare: {fake}: ") and "image" in line


def test_too_small_image(tmp_path):
    """The truth is said to be the small one, and the line names the truth's file (it named
    the prediction's)."""
    a, b = save(tmp_path / "a.png", pattern(30, 30)), save(tmp_path / "b.png", pattern(8, 8))
    r = run(a, b)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"recolor compare: {b}: the truth (8x8) is smaller than the 11x11 SSIM window"
    ]


def test_both_files_of_a_pair_bad_are_both_named(tmp_path):
    """Only the prediction's problem was said; the truth was never read."""
    for d in ("P", "T"):
        (tmp_path / d).mkdir()
    (tmp_path / "P/a.png").write_text("junk\n")
    (tmp_path / "T/a.png").write_bytes(b"")
    save(tmp_path / "P/b.png", pattern())
    save(tmp_path / "T/b.png", pattern() // 2)
    r = run(tmp_path / "P", tmp_path / "T", "--csv")
    assert r.returncode == 1
    said = r.stderr.splitlines()
    assert [line.split(": ")[1] for line in said] == [
        str(tmp_path / f) for f in ("P/a.png", "T/a.png")
    ]
    assert [row["name"] for row in csv_rows(r.stdout)] == ["b", "mean"]


def test_a_missing_folder_is_no_such_file_not_usage(tmp_path):
    """`compare nodir/ truth/` with nodir mistyped: "PRED and TRUTH must both be files or both
    be directories", exit 2."""
    (tmp_path / "truth").mkdir()
    save(tmp_path / "truth" / "a.png", pattern())
    r = run(tmp_path / "nodir", tmp_path / "truth")
    assert (r.returncode, r.stderr) == (1, f"recolor compare: {tmp_path / 'nodir'}: no such file\n")
    (tmp_path / "unmounted").symlink_to(tmp_path / "nowhere")  # a link to nothing: the same
    r = run(tmp_path / "unmounted", tmp_path / "truth")
    assert (r.returncode, r.stderr) == (
        1,
        f"recolor compare: {tmp_path / 'unmounted'}: no such file\n",
    )
    r = run(tmp_path / "truth" / "a.png", tmp_path / "truth")  # both there: usage, as before
    assert r.returncode == 2 and "must both be files or both be directories" in r.stderr
    for args in (["-", tmp_path / "truth"], [tmp_path / "truth", "-"]):  # stdin is a file
        r = run(*args)  # (it was "-: no such file", exit 1)
        assert r.returncode == 2 and "must both be files or both be directories" in r.stderr


def test_a_prediction_of_another_shape_is_one_line_the_others_compared(tmp_path):
    x = pattern(40, 50)
    for name in ("half", "other"):
        save(tmp_path / "truth" / f"{name}.png", x)
    save(tmp_path / "pred" / "half.png", cv2.resize(x, (25, 20), interpolation=cv2.INTER_AREA))
    save(tmp_path / "pred" / "other.png", pattern(50, 40))  # stretched to fit, once
    r = run(tmp_path / "pred", tmp_path / "truth", "--csv")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"recolor compare: {tmp_path / 'pred' / 'other.png'}: the prediction is 40x50 and the "
        "truth 50x40: not the same shape of picture"
    ]
    assert [row["name"] for row in csv_rows(r.stdout)] == ["half", "mean"]


def test_usage_errors(dirs, tmp_path):
    pred, truth = dirs
    r = run(pred, truth, "--json", "--csv")
    assert r.returncode == 2 and "exclude" in r.stderr
    r = run(pred / "same.png", truth)
    assert r.returncode == 2 and "both" in r.stderr
    # stdin for both: the first read left the second "empty file", exit 1
    r = run_recolor(["compare", "-", "-"], input=(pred / "same.png").read_bytes())
    assert r.returncode == 2
    assert r.stderr.decode().startswith("recolor compare: PRED and TRUTH cannot both be stdin")
    # nor stdin under another name, or one FIFO twice (a pipe is read once)
    r = run_recolor(["compare", "-", "/dev/stdin"], input=(pred / "same.png").read_bytes())
    assert r.returncode == 2
    assert r.stderr.decode().startswith("recolor compare: PRED and TRUTH cannot both be stdin")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run_recolor(["compare", fifo, fifo])  # refused before it is opened: nothing waits
    assert r.returncode == 2 and r.stderr.decode().startswith(
        f"recolor compare: PRED and TRUTH are one stream, {fifo}, read once: give two files"
    )
    same = pred / "same.png"
    assert run_recolor(["compare", same, same]).returncode == 0  # one regular file: alike


@pytest.mark.parametrize("stdout", [[], ["-o", "-"]])
def test_rich_table_on_a_terminal(dirs, stdout):
    """``-o -`` is stdout as no -o is: it was refused as "binary data to a terminal" (exit 2),
    after all the work."""
    import os
    import pty

    for name in ("[red]x", "[/red]", "k:smile:"):  # names, not rich markup nor emoji codes
        for d in dirs:
            save(d / f"{name}.png", pattern())
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "recolor_tools", "compare", *map(str, dirs), "-q", *stdout]
    p = subprocess.run(cmd, stdout=slave, stderr=subprocess.PIPE, env=env, timeout=120)
    out = drain_pty(master, slave)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode())  # the mean row is bold
    assert p.returncode == 1, p.stderr  # 'extra.png' has no partner
    names = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
    assert [n for n in names if n in ("same", "shift", "mean")] == ["same", "shift", "mean"]
    assert "[red]x" in names and "[/red]" in names and "k:smile:" in names
    assert "───" in text  # rich's rule under the column titles: not the plain-text table


def test_rich_table_keeps_names_whole_and_figures_uncut_on_a_narrow_terminal(dirs):
    """At 80 columns two long names were both "poster_1…", at 50 the figures "41…"; and
    ":smile:" in a name was printed as an emoji."""
    import os
    import pty

    long = ["poster_1942_casablanca_restored", "poster_1942_casablanca_restored_v2", "k:smile:l"]
    for name in long:
        for d in dirs:
            save(d / f"{name}.png", pattern())
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "50", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "recolor_tools", "compare", *map(str, dirs), "-q"]
    plain = subprocess.run(cmd[:-1], capture_output=True, env=env, timeout=120).stdout.decode()
    p = subprocess.run(cmd, stdout=slave, stderr=subprocess.PIPE, env=env, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", drain_pty(master, slave).decode())
    assert p.returncode == 1, p.stderr  # 'extra.png' has no partner
    assert "…" not in text and "😄" not in text
    flat = re.sub(r"\s+", "", text)  # a name folded onto two lines reads whole without spaces
    for name in long:
        assert name in flat
    assert text.replace("\r\n", "\n") == plain  # too narrow for rich's: the plain table


def test_a_table_longer_than_rich_rows_is_plain_on_a_terminal(tmp_path):
    """rich lays a table out at 2 ms a row (5,000 images: 10 s); a long one is printed plain."""
    import pty

    from recolor_tools.cli.score import RICH_ROWS

    x = pattern(16, 16)
    for i in range(RICH_ROWS + 1):
        for d in ("p", "t"):
            save(tmp_path / d / f"{i}.png", x)
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "recolor_tools", "compare", tmp_path / "p", tmp_path / "t", "-q"]
    p = subprocess.Popen(cmd, stdout=slave, env=env)  # read while it runs: a pty holds 4 KB
    text = drain_pty(master, slave).decode().replace("\r\n", "\n")
    assert p.wait(timeout=120) == 0
    assert text == run_recolor(cmd[3:]).stdout.decode()  # the plain table, as through a pipe


def test_a_name_with_a_newline_keeps_its_row_one_line(tmp_path):
    for d in ("p", "t"):
        save(tmp_path / d / "a\nb.png", pattern())
    r = run(tmp_path / "p", tmp_path / "t")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith("a\\nb ")  # head, the image, mean


def red_strip_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Truth: grey with a red strip (a rare colour); prediction: all grey; stats of the truth."""
    from recolor_tools import quant
    from recolor_tools.color import rgb_to_lab
    from recolor_tools.rebalance import PriorAccumulator

    truth = np.full((40, 50, 3), 128, np.uint8)
    truth[:4] = (220, 30, 30)
    pred = np.full((40, 50, 3), 128, np.uint8)
    acc = PriorAccumulator(quant.gamut_classes(8), 8)
    acc.add(rgb_to_lab(truth / np.float32(255))[..., 1:])
    stats = tmp_path / "rebalance-stats.npz"
    acc.finish().save(stats)
    return save(tmp_path / "p.png", pred), save(tmp_path / "t.png", truth), stats


def test_stats_add_rebalanced_auc(tmp_path):
    pred, truth, stats = red_strip_pair(tmp_path)
    for d, strip in (("P", pred), ("T", truth)):  # strip.png: pred with truth; same.png alike
        save(tmp_path / d / "strip.png", cv2.imread(str(strip))[..., ::-1])
        save(tmp_path / d / "same.png", cv2.imread(str(truth))[..., ::-1])
    r = run(tmp_path / "P", tmp_path / "T", "--stats", stats, "--csv")
    assert r.returncode == 0, r.stderr
    same, row, _ = csv_rows(r.stdout)
    assert (same["name"], row["name"]) == ("same", "strip")
    # 10% of the pixels (the red strip) are wrong; rebalancing makes them count for more.
    assert 80 < float(row["auc"]) < 100
    assert float(row["auc_rebal"]) < float(row["auc"])
    assert float(same["auc_rebal"]) == 100.0


def test_bad_stats_file(tmp_path):
    pred, truth, _ = red_strip_pair(tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_text("not an npz\n")
    r = run(pred, truth, "--stats", bad)
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"recolor compare: {bad}: ")
    assert r.stdout == ""
    r = run(pred, truth, "--stats", tmp_path)  # its own reason, not "not a ... file"
    assert (r.returncode, r.stderr) == (1, f"recolor compare: {tmp_path}: is a directory\n")


def test_stats_from_a_pipe(tmp_path):
    """`--stats <(recolor rebalance-stats ... -o -)`: np.load seeks, which a pipe cannot, and
    the stats were called "not a recolor-rebalance file"."""
    import os
    import threading

    pred, truth, stats = red_strip_pair(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(stats.read_bytes()), daemon=True)
    writer.start()
    r = run(pred, truth, "--stats", fifo, "--json")
    writer.join(timeout=60)
    assert r.returncode == 0, r.stderr
    want = json.loads(run(pred, truth, "--stats", stats, "--json").stdout)
    assert json.loads(r.stdout) == want
    # `rebalance-stats -o - | compare P T --stats -` (it was "-: no such file"), but not where
    # stdin is an input's
    r = run_recolor(["compare", pred, truth, "--stats", "-", "--json"], input=stats.read_bytes())
    assert r.returncode == 0 and json.loads(r.stdout) == want, r.stderr
    r = run_recolor(["compare", "-", truth, "--stats", "-"], input=stats.read_bytes())
    assert r.returncode == 2 and b"--stats - reads its file from stdin" in r.stderr


def test_a_truth_on_stdin_is_named_stdin_as_in_every_tool(tmp_path):
    """It was named "-" (to-lab and predict name stdin "stdin")."""
    a, b = save(tmp_path / "a.png", pattern()), save(tmp_path / "b.png", pattern() // 2)
    p = run_recolor(["compare", a, "-", "--json"], input=b.read_bytes(), check_rc=0)
    assert [r["name"] for r in json.loads(p.stdout)["images"]] == ["stdin"]
    p = run_recolor(["compare", "-", b, "--json"], input=a.read_bytes(), check_rc=0)
    assert [r["name"] for r in json.loads(p.stdout)["images"]] == ["b"]


def test_the_plain_table_aligns_wide_names(tmp_path):
    """Columns were padded by len(): a name in wide characters (日本, 2 characters, 4 columns)
    pushed its row's numbers 2 columns right of the others'."""
    import unicodedata

    pred, truth = tmp_path / "pred", tmp_path / "truth"
    for d in (pred, truth):
        d.mkdir()
        for i, name in enumerate(["日本", "ab"]):
            write_rgb(d / f"{name}.png", smooth_image(24, 32, i + (d == pred)))
    p = run_recolor(["compare", pred, truth], check_rc=0)
    lines = p.stdout.decode().splitlines()

    def columns(line: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)

    assert len(lines) == 4 and len({columns(line) for line in lines}) == 1, lines
