"""recolor predict: sizes and lightness kept, strips and batches, and the command line.

The checkpoints are tiny random-weight models saved by the tests: they check shapes, sizes, that
L is the input's own and that chroma is the only thing predicted, not colour quality (the train
tests overfit a model for that).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import CLASSES, read_rgb_u8, run, smooth_image, tiny_checkpoint, write_rgb
from typer.testing import CliRunner

from recolor_tools import checkpoints, color, defaults, predict, workgrid
from recolor_tools.cli import app
from recolor_tools.errors import RecolorError


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {head: tiny_checkpoint(d / f"{head}.pt", head) for head in ("cls", "reg")}


@pytest.fixture(scope="module")
def predictors(weights) -> dict[str, predict.Predictor]:
    return {head: predict.Predictor.load(path, head) for head, path in weights.items()}


def lab_l(rgb01: np.ndarray) -> np.ndarray:
    """Reference L of float RGB in [0, 1] (color.rgb_to_lab, tested against known values)."""
    return color.rgb_to_lab(rgb01)[..., 0]


# An RGB -> Lab -> RGB -> Lab round trip in float32 moves L by float rounding only (OpenCV's
# table-interpolated conversion, used before, moved it by up to 0.25).
L_ROUND_TRIP = 0.01


def unclamped(rgb: np.ndarray, lo, hi) -> np.ndarray:
    """Pixels no channel of which sits at a gamut bound: lab_to_rgb clamped none of them."""
    return np.all((rgb > lo) & (rgb < hi), axis=-1)


# --- library ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("H", "W", "size", "expect"),
    [
        (400, 600, 128, (128, 192)),  # shrink: shorter side = size
        (30, 20, 128, (192, 128)),  # enlarge
        (100, 100, 64, (64, 64)),
        (100, 10_000, 128, (10, 1024)),  # panorama: longer side capped at 8 * size
        (1, 5000, 64, (8, 512)),  # never below 8
    ],
)
def test_working_shape(H, W, size, expect):
    assert workgrid.working_shape(H, W, size) == expect


def test_default_working_size_is_a_scale_of_the_training_size(predictors, weights):
    rgb = np.full((100, 200, 3), 0.5, np.float32)
    for head, p in predictors.items():
        assert p.size == round(predict.WORK_SCALE * 48) == 60  # the fixtures train at 48
        assert p.prepare(rgb).hw == (60, 120)
        explicit = predict.Predictor.load(weights[head], head, size=48)
        assert explicit.prepare(rgb).hw == (48, 96)
    model, ckpt = checkpoints.load_checkpoint(weights["reg"], "reg")
    del ckpt["data"]  # a checkpoint that does not say: the assumed training size, scaled
    assert predict.Predictor(model, ckpt).size == round(predict.WORK_SCALE * defaults.TRAIN_SIZE)


def test_upsample_matches_cv2_resize_when_aligned():
    # With a working size that is a multiple of the stride, the mapping is exactly cv2.resize of
    # the output grid to the full size; remap interpolates at 1/32 pixel, hence the tolerance.
    rng = np.random.default_rng(0)
    ab = (rng.standard_normal((12, 20, 2)) * 30).astype(np.float32)
    H, W = 150, 250
    want = cv2.resize(ab, (W, H), interpolation=cv2.INTER_LINEAR)
    got = workgrid.upsample_ab(ab, (48, 80), 4, (H, W), (0, H))
    step = np.abs(np.diff(ab, axis=0)).max()
    assert np.abs(got - want).max() <= step / 32 + 1e-4


def test_upsample_rows_are_independent_of_strips():
    ab = np.random.default_rng(1).uniform(-50, 50, (9, 7, 2)).astype(np.float32)
    whole = workgrid.upsample_ab(ab, (36, 26), 4, (101, 77), (0, 101))
    part = workgrid.upsample_ab(ab, (36, 26), 4, (101, 77), (40, 73))
    np.testing.assert_array_equal(part, whole[40:73])


@pytest.mark.parametrize("shape", [(1, 1), (37, 41), (300, 40), (40, 300), (17, 900)])
@pytest.mark.parametrize("head", ["cls", "reg"])
def test_output_keeps_size_and_range(predictors, head, shape):
    rgb = np.random.default_rng(2).random((*shape, 3), dtype=np.float32)
    out = predictors[head].recolorize(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("head", ["cls", "reg"])
def test_saturation_zero_is_gray_with_the_input_l(predictors, head):
    rgb = smooth_image(70, 50, 4).astype(np.float32) / 255
    p = predictors[head]
    gray = predict.Predictor(p.model, p.ckpt, saturation=0).recolorize(rgb)
    assert np.abs(gray - gray[..., :1]).max() < 1e-3
    assert np.abs(lab_l(gray) - lab_l(rgb)).max() < L_ROUND_TRIP


@pytest.mark.parametrize("head", ["cls", "reg"])
def test_l_is_kept_where_no_clamping(predictors, head):
    rgb = smooth_image(80, 60, 5).astype(np.float32) / 255
    out = predict.Predictor(predictors[head].model, predictors[head].ckpt).recolorize(rgb)
    ok = unclamped(out, 0.0, 1.0)
    assert ok.mean() > 0.5  # enough pixels to make the check mean something
    assert np.abs(lab_l(out) - lab_l(rgb))[ok].max() < L_ROUND_TRIP
    # and the colour is not gray: a/b were really predicted
    assert np.abs(cv2.cvtColor(out, cv2.COLOR_RGB2Lab)[..., 1:]).max() > 1


def test_strips_do_not_change_the_result(predictors, monkeypatch):
    rgb = smooth_image(90, 70, 6).astype(np.float32) / 255
    whole = predictors["cls"].recolorize(rgb)
    monkeypatch.setattr(color, "STRIP_PIXELS", 70 * 11)  # strips of 11 rows, last one short
    np.testing.assert_array_equal(predictors["cls"].recolorize(rgb), whole)


def test_batches_match_single_images(predictors):
    # Same working shape (batched together) and another shape (its own forward pass).
    imgs = [smooth_image(60, 90, s).astype(np.float32) / 255 for s in (7, 8)]
    imgs.append(smooth_image(90, 50, 9).astype(np.float32) / 255)
    p = predictors["cls"]
    batched = p.recolorize_batch(imgs, batch_size=8)
    for img, b in zip(imgs, batched, strict=True):
        np.testing.assert_allclose(b, p.recolorize(img), atol=1e-5)


def test_temperature_zero_takes_class_centres(predictors):
    p = predictors["cls"]
    mode = predict.Predictor(p.model, p.ckpt, temperature=0)
    item = mode.prepare(smooth_image(40, 40, 3).astype(np.float32) / 255)
    item = mode.run([item])[0]
    centres = {tuple(c) for c in CLASSES}
    assert {tuple(ab) for ab in item.ab.reshape(-1, 2)} <= centres


def test_bad_settings_raise(predictors):
    p = predictors["cls"]
    bad = ({"temperature": -1}, {"temperature": float("inf")}, {"saturation": float("nan")},
           {"saturation": 1e300}, {"size": 4}, {"size": 100_000})  # fmt: skip
    for kw in bad:
        with pytest.raises(ValueError):
            predict.Predictor(p.model, p.ckpt, **kw)
    # once: size 0 the default, max_side 3 an 8x8 working size, NaN int()'s own words
    for kw in ({"size": 0}, {"max_side": 3}, {"max_side": -5}, {"size": float("nan")}):
        name = next(iter(kw))
        with pytest.raises(ValueError, match=f"{name} must be an integer from 8"):
            predict.Predictor(p.model, p.ckpt, **kw)
    rgb = color.to_float(smooth_image(16, 16, 1))
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        p.recolorize_batch([rgb], batch_size=0)
    with pytest.raises(ValueError, match="k must be a whole number >= 0"):
        p.suggest(rgb, 1, 1, k=-1)


def test_integer_images_are_scaled_and_bad_samples_refused(predictors):
    """uint8 / uint16 arrays are samples (an 8-bit 255 once read as 255.0 made a white image);
    other dtypes and a NaN sample (which turned every output pixel NaN) are a ValueError."""
    p = predictors["cls"]
    rgb8 = smooth_image(24, 32, 5)
    want = p.recolorize(color.to_float(rgb8))
    np.testing.assert_array_equal(p.recolorize(rgb8), want)
    np.testing.assert_allclose(p.recolorize(rgb8.astype(np.uint16) * 257), want, atol=1e-5)
    nan = color.to_float(rgb8)
    nan[3, 4, 0] = np.nan
    for bad, match in ((rgb8.astype(np.int32), "float in \\[0, 1\\], uint8 or uint16, got int32"),
                       (nan, "NaN or infinite")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            p.recolorize(bad)
    with pytest.raises(ValueError, match="must be float"):
        color.rgb_to_lab(rgb8)


# --- command line -------------------------------------------------------------------------------


def test_cli_sizes_lightness_and_printed_paths(tmp_path, weights):
    rgb = smooth_image(50, 70, 1)
    srcs = {
        "gray.png": write_rgb(tmp_path / "gray.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)),
        "rgba.png": write_rgb(
            tmp_path / "rgba.png", np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
        ),
        "deep.png": write_rgb(tmp_path / "deep.png", rgb.astype(np.uint16) * 256 + 77),
        "tall.jpg": write_rgb(tmp_path / "tall.jpg", smooth_image(300, 41, 2)),
        "wide.bmp": write_rgb(tmp_path / "wide.bmp", smooth_image(23, 400, 3)),
    }
    out = tmp_path / "out"
    for sat in ("0", "1"):
        p = run(
            ["predict", *srcs.values(), "--weights", weights["cls"], "-o", out / sat, "-b", "2"]
            + ["--saturation", sat],
            check_rc=0,
        )
        printed = p.stdout.decode().splitlines()
        assert printed == [str(out / sat / name) for name in srcs]
        for path in printed:
            src = tmp_path / Path(path).name
            flags = cv2.IMREAD_UNCHANGED
            ref = cv2.imread(str(src), flags if src.suffix == ".png" else cv2.IMREAD_COLOR)
            got = read_rgb_u8(path)
            assert got.shape[:2] == ref.shape[:2], path
            ref = ref.astype(np.float32) / (65535 if ref.dtype == np.uint16 else 255)
            if ref.ndim == 2:
                ref = np.repeat(ref[..., None], 3, axis=2)
            elif ref.shape[2] == 4:  # composited on white
                ref = ref[..., :3] * ref[..., 3:] + 1 - ref[..., 3:]
            ref = ref[..., ::-1]  # BGR -> RGB
            ok = np.ones(got.shape[:2], bool) if sat == "0" else unclamped(got, 0, 255)
            assert ok.mean() > 0.3, path
            err = np.abs(lab_l(got.astype(np.float32) / 255) - lab_l(ref))[ok]
            assert err.max() <= 1.0, (path, err.max())
            if sat == "0":
                assert np.abs(got.astype(int) - got[..., :1]).max() <= 1, path


def test_cli_stdout_and_single_file(tmp_path, weights):
    src = write_rgb(tmp_path / "a.jpg", smooth_image(30, 44, 4))
    p = run(["predict", src, "--weights", weights["reg"], "-o", "-"], check_rc=0)
    assert p.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_rgb_u8(p.stdout).shape == (30, 44, 3)
    dst = tmp_path / "sub" / "x.webp"
    dst.parent.mkdir()
    p = run(["predict", src, "--weights", weights["reg"], "-o", dst], check_rc=0)
    assert p.stdout.decode() == f"{dst}\n" and read_rgb_u8(dst).shape == (30, 44, 3)


def test_cli_outputs_keep_the_inputs_spelling(tmp_path, weights):
    """A camera's IMG_0001.JPG is written as IMG_0001.JPG (it was IMG_0001.jpg), and a rerun
    with --skip-existing finds it."""
    srcs = [write_rgb(tmp_path / n, smooth_image(30, 44, 4)) for n in ("IMG_0001.JPG", "b.Png")]
    out = tmp_path / "out"
    p = run(["predict", *srcs, "-w", weights["reg"], "-o", f"{out}/"], check_rc=0)
    assert p.stdout.decode().splitlines() == [str(out / "IMG_0001.JPG"), str(out / "b.Png")]
    assert read_rgb_u8(out / "IMG_0001.JPG").shape == (30, 44, 3)
    assert (out / "b.Png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run(["predict", *srcs, "-w", weights["reg"], "-o", f"{out}/", "--skip-existing"])
    assert again.returncode == 0 and again.stdout == b"", again.stderr


def test_cli_bad_image_among_good_ones(tmp_path, weights):
    good = [write_rgb(tmp_path / f"{n}.png", smooth_image(20, 30, i)) for i, n in enumerate("ab")]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    p = run(["predict", good[0], bad, good[1], "--weights", weights["cls"]], cwd=tmp_path)
    assert p.returncode == 1
    assert p.stdout.decode().splitlines() == ["recolored/a.png", "recolored/b.png"]
    err = p.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith(f"recolor predict: {bad}: ")
    assert (tmp_path / "recolored" / "a.png").is_file() and not (
        tmp_path / "recolored/bad.png"
    ).exists()


def test_cli_refuses_to_overwrite_an_input(tmp_path, weights):
    src = write_rgb(tmp_path / "a.png", smooth_image(20, 30, 1))
    before = src.read_bytes()
    r = _invoke([src, "--weights", weights["cls"], "-o", tmp_path])
    assert r.exit_code == 1 and "refusing to overwrite an input" in r.stderr
    assert src.read_bytes() == before


def _invoke(args: list[str]):
    return CliRunner().invoke(app, ["predict", *map(str, args)])


def test_cli_missing_default_weights(tmp_path, monkeypatch):
    # an installed package's own folder: the line named <site-packages>/weights/reg.pt, as in
    # a checkout, where an install has no such folder
    where = tmp_path / "site-packages" / "recolor_tools" / "weights" / "reg.pt"

    def no_weights(head):
        raise RecolorError("no shipped weights", where)

    monkeypatch.setattr(checkpoints, "default_weights", no_weights)
    src = write_rgb(tmp_path / "a.png", smooth_image(20, 30, 1))
    r = _invoke([src, "--head", "reg", "-o", tmp_path / "out"])
    assert r.exit_code == 1
    assert r.stderr == (f"recolor predict: {where}: no weights for head reg (train them with "
                        "`recolor train` or pass --weights)\n")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_cli_wrong_head_and_not_a_checkpoint(tmp_path, weights):
    src = write_rgb(tmp_path / "a.png", smooth_image(20, 30, 1))
    r = _invoke([src, "--head", "reg", "--weights", weights["cls"], "-o", tmp_path / "o"])
    assert r.exit_code == 1 and len(r.stderr.splitlines()) == 1
    assert r.stderr.rstrip().endswith("'cls' head, not 'reg'; use --head cls or other weights")
    with pytest.raises(RecolorError) as e:  # the API, or a script, has no --head to advise
        predict.Predictor.load(weights["cls"], "reg")
    assert e.value.reason == "checkpoint is for the 'cls' head, not 'reg'"
    r = _invoke([src, "--weights", src, "-o", tmp_path / "o"])
    assert r.exit_code == 1 and len(r.stderr.splitlines()) == 1
    assert "not a recolor checkpoint" in r.stderr


def test_weights_larger_than_memory_are_named(tmp_path):
    """A weights file larger than the memory free (here: a 4 GiB address space, an 8 GiB
    sparse file) was "out of memory (smaller sizes or batches need less)", naming no file."""
    import resource
    import subprocess
    import sys

    src = write_rgb(tmp_path / "a.png", smooth_image(20, 30, 1))
    with open(tmp_path / "huge.pt", "wb") as f:
        f.write(b"PK\x03\x04")  # begins as torch.save's zip files do: read whole
        f.truncate(8 << 30)  # no disk used

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    p = subprocess.run([sys.executable, "-m", "recolor_tools", "predict", "-w",
                        tmp_path / "huge.pt", src, "-o", tmp_path / "o/"],
                       preexec_fn=limit, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (p.returncode, p.stderr) == (
        1,
        f"recolor predict: {tmp_path}/huge.pt: too large to load (8.0 GiB, out of memory)\n",
    )


def test_cli_precision(tmp_path, weights):
    # On the CPU, auto is float32 (the same bytes as fp32); bf16 and fp16 need CUDA: one line.
    src = write_rgb(tmp_path / "a.png", smooth_image(30, 40, 1))
    outs = {}
    for precision in ("auto", "fp32"):
        outs[precision] = tmp_path / f"{precision}.png"
        r = _invoke([src, "-w", weights["cls"], "--device", "cpu", "--precision", precision,
                     "-o", outs[precision]])  # fmt: skip
        assert r.exit_code == 0, r.stderr
    assert outs["auto"].read_bytes() == outs["fp32"].read_bytes()
    # with --device cpu no machine runs it: a usage error (it was exit 1, as a missing GPU)
    for tool in ("predict", "train"):
        p = run([tool, src, "--device", "cpu", "--precision", "bf16", "-o", tmp_path / "bf16/"])
        assert (p.returncode, p.stderr.decode()) == (
            2,
            f"recolor {tool}: --precision bf16 needs CUDA, and --device cpu asks for the CPU "
            f"(see recolor {tool} -h)\n",
        )
    if not torch.cuda.is_available():  # on the machine's own device: the machine's failure
        r = _invoke([src, "-w", weights["cls"], "--precision", "fp16", "-o", tmp_path / "x.png"])
        assert r.exit_code == 1 and r.stderr == "recolor predict: --precision fp16 needs CUDA\n"
    assert not (tmp_path / "bf16").exists() and not (tmp_path / "x.png").exists()


def test_cli_usage_errors(tmp_path, weights):
    a = write_rgb(tmp_path / "a.png", smooth_image(20, 30, 1))
    b = write_rgb(tmp_path / "b.png", smooth_image(20, 30, 2))
    for args in (
        [a, b, "-o", tmp_path / "one.png"],
        [a, b, "-o", "-"],
        [a, "--format", "gif"],
        [a, "--saturation", "-1"],
        [a, "--saturation", "1e300"],  # once infinite in float32, and a RuntimeWarning
        [a, "--saturation", "nan"],
        [a, "-T", "inf"],  # NaN and inf pass typer's ranges
        [a, "--size", "100000"],  # once OpenCV's "Failed to allocate 120000000000 bytes"
    ):
        r = _invoke([*args, "--weights", weights["cls"]])
        assert r.exit_code == 2, (args, r.stderr)


def test_cli_same_name_from_two_directories(tmp_path, weights):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        write_rgb(tmp_path / d / "a.png", smooth_image(20, 30, 1))
    r = _invoke([tmp_path / "x", tmp_path / "y", "--weights", weights["cls"], "-o", tmp_path / "o"])
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [str(tmp_path / "o" / "a.png")]
    assert "already written for an earlier input" in r.stderr


def test_an_image_on_stdin_is_written_as_png_under_its_name_stdin(tmp_path, weights):
    """stdin has no extension to keep (`--format` says "the input's extension"): a JPEG on
    stdin becomes stdin.png in the output folder, and --format chooses another."""
    a = write_rgb(tmp_path / "a.jpg", smooth_image(20, 30, 1))
    for fmt, name in ((None, "stdin.png"), ("jpg", "stdin.jpg")):
        out = tmp_path / f"o{fmt}"
        args = ["predict", "-", "-w", weights["cls"], "-o", f"{out}/"]
        args += ["--format", fmt] if fmt else []
        p = run(args, input=a.read_bytes(), check_rc=0)
        assert p.stdout.decode() == f"{out / name}\n" and os.listdir(out) == [name]
        assert cv2.imread(str(out / name)).shape == (20, 30, 3)


HEAP_HOLES = """
import os
import numpy as np
from recolor_tools import process

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

big = np.ones(30 * 2**20 // 8)  # freed: glibc's mmap threshold rises to 30 MiB
del big
holes = [np.ones(k * 2**20 // 8) for k in range(4, 24)]  # 270 MiB, from the heap now
live = np.ones(2**20 // 8)  # a live block above them: the heap cannot shrink at its top
del holes
before = resident()
process.return_freed_memory()
print((before - resident()) // 2**20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap")
def test_the_heaps_freed_memory_is_given_back():
    """glibc keeps what a freed block below a live one held (after a large block was freed it
    serves blocks up to 32 MiB from its heap): predict over images of many widths grew by
    about 5 MiB an image. return_freed_memory gives such holes back. (In a fresh interpreter:
    a hole that earlier tests left takes the live block, and MALLOC_* settings fix the
    threshold.)"""
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-c", HEAP_HOLES], env=env, capture_output=True,
                       timeout=120, check=True)  # fmt: skip
    assert int(p.stdout) > 200, p.stdout  # MiB given back


def test_a_batch_of_a_new_working_shape_gives_the_freed_memory_back(tmp_path, weights,
                                                                    monkeypatch):  # fmt: skip
    """Only a pass at a shape the previous batch did not have leaves holes: a run of one shape
    gives back once (its first pass), one of ever new shapes after each batch."""
    from recolor_tools import batching

    calls = []
    monkeypatch.setattr(batching, "return_freed_memory", lambda: calls.append(1))
    p = predict.Predictor.load(weights["cls"], "cls", size=32)
    same = [write_rgb(tmp_path / f"s{i}.png", smooth_image(32, 48, i)) for i in range(6)]
    assert all(isinstance(r, np.ndarray) for _, r, _ in p.predict_files(map(str, same), 2))
    assert len(calls) == 1
    calls.clear()
    wide = [write_rgb(tmp_path / f"w{i}.png", smooth_image(32, 48 + 8 * i, i)) for i in range(6)]
    list(p.predict_files(map(str, wide), 2))
    assert len(calls) == 3


def test_an_image_the_memory_cannot_hold_fails_alone_before_the_pass(tmp_path, weights,
                                                                       monkeypatch):  # fmt: skip
    """On Linux the allocations of a pass too large for the memory (``--size 8192``) went through
    and the kernel's OOM killer ended the whole run unsaid (exit 137, nothing written): the pass
    is measured against the memory free first, so that image fails alone, and a batch that does
    not fit runs again image by image."""
    from recolor_tools import models, process
    from recolor_tools.errors import OutOfMemory

    p = predict.Predictor.load(weights["cls"], "cls", size=64)
    files = [write_rgb(tmp_path / f"{n}.png", smooth_image(64, w, i))
             for i, (n, w) in enumerate([("a", 64), ("wide", 512), ("b", 64)])]  # fmt: skip
    square = models.inference_bytes(p.model.config, 64 * 64)
    assert models.inference_bytes(p.model.config, 64 * 512) > 2 * square
    # a and b (one shape) together need 2 * square: only one at a time fits; wide never
    monkeypatch.setattr(process, "memory_free", lambda: int(1.5 * square))
    out = {Path(f).name: r for f, r, _ in p.predict_files(map(str, files), batch_size=8)}
    assert isinstance(out["wide.png"], OutOfMemory)
    want = {n: p.recolorize(read_rgb_u8(tmp_path / n), np.uint8) for n in ("a.png", "b.png")}
    monkeypatch.undo()
    for n, rgb in want.items():
        np.testing.assert_array_equal(out[n], rgb)
    # where it is free, the same pass runs
    assert process.memory_free() is None or process.memory_free() > 2 * square
    ((_, rgb, _),) = p.predict_files([str(files[1])])
    assert isinstance(rgb, np.ndarray)


def test_on_a_terminal_the_printed_paths_are_the_progress(tmp_path):
    """A progress bar on stderr drawn on the terminal that stdout's paths go to was glued to
    them ("predict:  8%|...| 1/12 ...out/q0.png"), and its last clear erased a written path."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    from conftest import ROOT, drain_pty

    w = tiny_checkpoint(tmp_path / "w.pt", "reg")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        write_rgb(src / f"q{i}.png", smooth_image(16, 16, i))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # (0 x 0: no bar)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "recolor_tools", "predict", src, "-w", w, "-o", f"{tmp_path}/o/"]
    p = subprocess.run(cmd, stdout=slave, stderr=slave, env=env, timeout=120)
    out = drain_pty(master, slave).decode()
    assert p.returncode == 0
    assert out.split("\r\n") == [f"{tmp_path}/o/q{i}.png" for i in range(6)] + [""]
