"""data.py and train.py: targets, sampling, learning, exact resume, DDP, command-line errors.

Everything runs on tiny generated images (64x48, tall like posters) at crop size 32, so a
training run takes a few seconds on a CPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import (
    RECOLOR,
    ROOT,
    image_folder,
    ranks_by_hand,
    run,
    smooth_image,
    torchrun,
    write_rgb,
)

from recolor_tools import checkpoints, models, quant
from recolor_tools.cli import main
from recolor_tools.color import rgb_to_lab
from recolor_tools.data import ColorDataset, EpochSampler
from recolor_tools.errors import RecolorError, UsageError
from recolor_tools.imageio import read_rgb
from recolor_tools.train import TrainConfig, param_digest, train

SEE = "(see recolor train -h)"
"""The end of train's usage errors."""

SIZE = 32
CLASSES = quant.gamut_classes(10)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    (d / "train").mkdir()
    (d / "val").mkdir()
    for i in range(16):
        write_rgb(d / "train" / f"{i:02d}.png", smooth_image(64, 48, i))
    for i in range(4):
        write_rgb(d / "val" / f"{i}.png", smooth_image(64, 48, 100 + i))
    (d / "bad.png").write_bytes(b"this is not an image")
    return {"train": d / "train", "val": d / "val", "bad": d / "bad.png"}


def config(data, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=[str(data["train"])], out=out, size=SIZE, batch_size=4, workers=0, width=8,
        grid=10, quiet=True, lr=2e-3, threads=1, device="cpu",
    )  # fmt: skip
    if any(kw.get(k) for k in ("init", "stats", "classes", "resume")) or kw.get("head") == "reg":
        del base["grid"]  # they bring the class set, or reg has none: --grid is refused
    return TrainConfig(**{**base, **kw})


def metric_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# -- data -------------------------------------------------------------------------------------


def expected_val_crop(path: Path) -> np.ndarray:
    """Lab of the validation crop, as the data module documents it: shorter side to SIZE by area
    averaging, centre SIZE x SIZE."""
    rgb = read_rgb(path)
    h, w = rgb.shape[:2]
    s = SIZE / min(h, w)
    rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    y0, x0 = (rgb.shape[0] - SIZE) // 2, (rgb.shape[1] - SIZE) // 2
    return rgb_to_lab(np.ascontiguousarray(rgb[y0 : y0 + SIZE, x0 : x0 + SIZE]))


def test_validation_items_match_documented_targets(data):
    paths = sorted(str(p) for p in data["val"].iterdir())
    lab = expected_val_crop(Path(paths[1]))
    ab8 = cv2.resize(lab[:, :, 1:], (SIZE // 4, SIZE // 4), interpolation=cv2.INTER_AREA)

    reg = ColorDataset(paths, SIZE, train=False, head="reg")[1]
    assert reg["L"].shape == (1, SIZE, SIZE) and reg["L"].dtype == torch.float32
    np.testing.assert_allclose(reg["L"][0].numpy(), lab[:, :, 0], atol=1e-4)
    np.testing.assert_allclose(reg["ab"].numpy(), ab8.transpose(2, 0, 1) / 128, atol=1e-5)
    np.testing.assert_allclose(reg["ab_full"].numpy(), lab[:, :, 1:].transpose(2, 0, 1), atol=1e-3)
    assert reg["bad"] == ""

    weights = np.linspace(0.5, 2.0, len(CLASSES)).astype(np.float32)
    ds = ColorDataset(paths, SIZE, train=False, head="cls", classes=CLASSES, class_weights=weights)
    cls = ds[1]
    idx, w = quant.soft_encode(ab8, CLASSES, 5, 5.0)
    assert cls["idx"].shape == (5, SIZE // 4, SIZE // 4) and cls["idx"].dtype == torch.int64
    np.testing.assert_array_equal(cls["idx"].numpy(), idx.transpose(2, 0, 1))
    np.testing.assert_allclose(cls["w"].numpy(), w.transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(cls["w"].sum(0).numpy(), 1, atol=1e-5)
    np.testing.assert_array_equal(cls["pw"].numpy(), weights[idx[:, :, 0]])


def test_training_crops_are_seeded_per_item_and_epoch(data):
    paths = sorted(str(p) for p in data["train"].iterdir())
    ds = ColorDataset(paths, SIZE, head="reg", seed=3)
    a, b = ds[(0, 5)], ColorDataset(paths, SIZE, head="reg", seed=3)[(0, 5)]
    torch.testing.assert_close(a["L"], b["L"], rtol=0, atol=0)
    assert not torch.equal(a["L"], ds[(1, 5)]["L"])
    assert not torch.equal(a["L"], ColorDataset(paths, SIZE, head="reg", seed=4)[(0, 5)]["L"])
    assert a["L"].shape == (1, SIZE, SIZE) and a["L"].min() >= 0 and a["L"].max() <= 100


def test_a_crop_of_a_thin_image_resizes_a_window_not_the_whole(tmp_path, monkeypatch):
    """A 2 x 4000 image was resized whole (to 128 x 256,000, 393 MB) for each 128 px crop;
    past MAX_ASPECT the crop comes from a square of the short side, anywhere along the long
    side in training, the centre for validation."""
    import recolor_tools.data as data_module

    strip = np.zeros((2, 4000, 3), np.uint8)
    strip[:, :, 0] = np.arange(4000) * 255 // 3999  # the red ramp tells where a crop lies
    path = str(write_rgb(tmp_path / "strip.png", strip))
    resized, real = [], data_module.resize_short_side

    def spy(img, short, min_side):
        resized.append(img.shape[:2])
        return real(img, short, min_side)

    monkeypatch.setattr(data_module, "resize_short_side", spy)
    rng = np.random.default_rng(0)
    ds = ColorDataset([path], SIZE, head="reg")
    rgb = read_rgb(path)
    reds = [ds.crop(rgb, rng)[..., 0].mean() for _ in range(200)]
    assert resized and all(h == w for h, w in resized)
    # anywhere along the long side, evenly (a window four times the short side, then a crop
    # in it, reached the ends a tenth as often as the middle)
    assert np.histogram(reds, bins=10, range=(0, 1))[0].min() >= 8
    val = ColorDataset([path], SIZE, head="reg", train=False).crop(rgb, rng)
    assert abs(val[..., 0].mean() - 0.5) < 0.01


def test_unreadable_image_is_replaced_by_the_next(data):
    good = sorted(str(p) for p in data["train"].iterdir())[:2]
    ds = ColorDataset([good[0], str(data["bad"]), good[1]], SIZE, head="reg", train=False)
    item = ds[1]
    assert item["bad"].startswith(str(data["bad"]))
    torch.testing.assert_close(item["L"], ds[2]["L"], rtol=0, atol=0)
    assert ds[1]["bad"] == ""  # known bad now: skipped silently


def test_loader_workers_inherit_the_kernels_the_parent_loaded(data, tmp_path):
    """Each forked loader worker loaded (on an empty cache: compiled, 4.4 s each) the soft
    encoding kernel for itself; the parent loads it once, before they start."""
    p = run(["train", "--head", "cls", data["train"], "--steps", "1", "-b", "2", "--size", "16",
             "--width", "8", "-j", "2", "-o", tmp_path / "run", "-q"],
            env={"NUMBA_DEBUG_CACHE": "1"}, check_rc=0)  # fmt: skip
    said = [ln for ln in p.stdout.decode().splitlines() if "_knn_kernel" in ln]
    assert len([ln for ln in said if "data loaded" in ln or "data saved" in ln]) == 1, said


def test_epoch_sampler_shards_and_resumes():
    n, world = 10, 3
    shards = []
    for rank in range(world):
        s = EpochSampler(n, seed=1, rank=rank, world=world)
        s.set_epoch(2)
        shards.append([i for _, i in s])
        assert len(s) == 4 and all(e == 2 for e, _ in s)
    assert sorted(set(sum(shards, []))) == list(range(n))  # padded to 12, covering all 10
    s = EpochSampler(n, seed=1, rank=1, world=world)
    s.set_epoch(2, start=3)
    assert [i for _, i in s] == shards[1][3:] and len(s) == 1
    one = EpochSampler(n, seed=1)
    orders = []
    for epoch in (0, 1, 0):
        one.set_epoch(epoch)
        orders.append([i for _, i in one])
    assert sorted(orders[0]) == list(range(n)) and orders[0] == orders[2] != orders[1]
    val = EpochSampler(n, shuffle=False, rank=2, world=world, pad=False)
    assert [i for _, i in val] == [2, 5, 8]


# -- training ---------------------------------------------------------------------------------


# The cls loss starts near log(Q) = 5.6 and falls more slowly than the reg loss: 16 images
# spread over many colour classes, and the rebalancing weights stress the rare ones.
@pytest.mark.parametrize(("head", "lr", "ratio"), [("reg", 2e-3, 0.8), ("cls", 1e-2, 0.95)])
def test_loss_falls_and_metrics_are_logged(data, tmp_path, head, lr, ratio, capfd):
    out = tmp_path / head
    cfg = config(data, out, head=head, steps=24, eval_every=8, batch_size=8, lr=lr)
    cfg.data.append(str(data["bad"]))
    cfg.val = [str(data["val"])]
    path = train(cfg)
    assert path == out / f"{head}.pt" and (out / "last.pt").is_file()
    lines = metric_lines(out)
    assert [m["step"] for m in lines] == [8, 16, 24]
    assert lines[-1]["train_loss"] < ratio * lines[0]["train_loss"]
    for m in lines:
        assert 0 <= m["val_auc"] <= 1 and 5 < m["val_psnr"] < 60 and m["val_loss"] > 0
        assert m["lr"] == pytest.approx(lr) and m["img_per_s"] > 0
    warnings = [ln for ln in capfd.readouterr().err.splitlines() if "bad.png" in ln]
    assert len(warnings) == 1 and "skipped" in warnings[0]
    model, ckpt = checkpoints.load_checkpoint(path, head)
    assert "train_state" not in ckpt and ckpt["step"] == 24 and ckpt["data"]["size"] == SIZE
    if head == "cls":  # computed from the training data and saved beside the weights
        assert ckpt["classes"].shape == (len(CLASSES), 2)
        weights = ckpt["rebalance"]["weights"]
        assert weights.shape == (len(CLASSES),) and torch.all(weights > 0)
        assert (out / "rebalance-stats.npz").is_file()


def test_overfit_one_image(data, tmp_path):
    """Trained on one image, the model colours that image close to its true a/b."""
    from recolor_tools.predict import Predictor

    image = write_rgb(tmp_path / "one.png", smooth_image(40, 32, 5))
    cfg = config(data, tmp_path / "run", head="reg", steps=60, batch_size=8, lr=3e-3, width=16)
    for i in range(7):  # eight crops of it per batch (a file named twice is read once)
        os.link(image, tmp_path / f"one{i}.png")
    cfg.data = [str(image), *(str(tmp_path / f"one{i}.png") for i in range(7))]
    weights = train(cfg)
    rgb = read_rgb(image)
    pred = Predictor.load(weights, "reg").recolorize(rgb)
    truth_ab, pred_ab = rgb_to_lab(rgb)[:, :, 1:], rgb_to_lab(pred)[:, :, 1:]
    err = np.linalg.norm(pred_ab - truth_ab, axis=-1).mean()
    gray_err = np.linalg.norm(truth_ab, axis=-1).mean()  # predicting no colour at all
    assert gray_err > 30
    assert err < 0.35 * gray_err


def test_resume_reaches_the_same_weights(data, tmp_path):
    """6 steps in one go == 3 steps, then --resume to 6 (across an epoch boundary: 4 steps per
    epoch), even with loader workers in the second half."""
    kw = dict(head="cls", eval_every=2, ckpt_every=100, val=[data["val"]])
    whole = train(config(data, tmp_path / "a", steps=6, **kw)).parent
    train(config(data, tmp_path / "b", steps=3, **kw))
    part = train(config(data, tmp_path / "b", steps=6, resume=True, workers=2, **kw)).parent
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(part / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["train_state"]["optimizer"]["state"], b["train_state"]["optimizer"]["state"]
    for p in sa:
        for k in sa[p]:
            assert torch.equal(sa[p][k], sb[p][k]), (p, k)
    assert a["train_state"]["scheduler"] == b["train_state"]["scheduler"]
    ma = {m["step"]: m for m in metric_lines(whole)}
    mb = {m["step"]: m for m in metric_lines(part)}
    assert sorted(ma) == [2, 4, 6] and sorted(mb) == [2, 3, 4, 6]  # 3: end of the first part
    for step in ma:
        for key in ("train_loss", "val_loss", "val_auc", "lr"):
            assert ma[step][key] == mb[step][key], (step, key)


def test_a_resumed_run_keeps_the_checkpoints_permissions(data, tmp_path):
    """A private run (chmod 600) resumed: last.pt came back 0644, since the file it replaced
    had moved to last.prev.pt before the new one took its mode."""
    out = train(config(data, tmp_path / "r", steps=2, ckpt_every=1)).parent
    for f in out.iterdir():
        f.chmod(0o600)
    train(config(data, out, steps=4, ckpt_every=1, resume=True))
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in out.iterdir()}
    assert set(modes.values()) == {"0o600"}, modes


def test_the_logged_rate_leaves_the_checkpoints_write_out(data, tmp_path, monkeypatch):
    """A checkpoint written at an evaluation fell into the next interval's img/s (a slow disk
    halved the rate the log showed)."""
    from recolor_tools import train as train_module

    save_last, clock, skipped = train_module.save_last, time.perf_counter, [0.0]

    def slow_save(*args):  # a write of 1000 s on a clock of the test's (a loaded machine's
        save_last(*args)  # own pauses are far shorter)
        skipped[0] += 1000  # 8 images an interval: 0.008 img/s at most if the write counted

    monkeypatch.setattr(time, "perf_counter", lambda: clock() + skipped[0])
    monkeypatch.setattr(train_module, "save_last", slow_save)
    out = train(config(data, tmp_path / "r", steps=4, eval_every=2, ckpt_every=2)).parent
    rates = [m["img_per_s"] for m in metric_lines(out)]
    assert len(rates) == 2 and rates[1] > 0.08, rates


def test_a_damaged_training_state_is_one_line_naming_last_pt(data, tmp_path, capsys):
    """A train_state that is no mapping, or lacks the optimiser's, was an internal error (and
    one without its RNG state was said to lack the optimiser's)."""
    out = train(config(data, tmp_path / "r", steps=1, ckpt_every=1)).parent
    last = out / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    no_rng = {k: v for k, v in ckpt["train_state"].items() if k != "rng"}
    for damaged, lacks in (("x", "optimizer"), ({}, "optimizer"), (no_rng, "rng")):
        torch.save({**ckpt, "train_state": damaged}, last)
        (out / "last.prev.pt").unlink(missing_ok=True)  # (else the run resumes from that one)
        rc, _, err = cli(["--resume", "-o", out, "--steps", 2, "-q"], capsys)
        assert (rc, err) == (1, f"recolor train: {last}: broken checkpoint: its training state "
                                f"has no {lacks!r}\n")  # fmt: skip


def test_a_resumed_run_keeps_its_settings(data, tmp_path, capsys):
    """A cosine run resumed without --schedule went on as plateau (another result, no word);
    with --schedule cosine on a plateau run, "internal error: KeyError: 'lr_lambdas'"; --lr
    given again was overruled by the restored optimiser. Now kept, or refused before any work."""
    out = tmp_path / "run"
    base = [data["train"], "--head", "cls", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0]
    base += ["--lr", "2e-3", "--threads", 1, "-q", "--out", out]
    assert cli([*base, "--steps", 2, "--schedule", "cosine"], capsys)[0] == 0
    for again, has in [(["--schedule", "plateau"], "cosine"), (["--lr", "0.005"], "0.002"),
                       (["--width", "16"], "8"), (["--head", "reg"], "cls"),
                       (["--hints"], "none"), (["--affinity", "16"], "0")]:  # fmt: skip
        rc, _, err = cli([*base, "--steps", 4, "--resume", *again], capsys)
        given = " ".join(again)
        assert (rc, err) == (
            2,
            f"recolor train: {given} and --resume: the run has {has} (a "
            "resumed run keeps its settings; start another with --init) (see recolor train -h)\n",
        )
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2  # nothing was done
    rc, _, err = cli([*base, "--steps", 4, "--resume", "--schedule", "cosine"], capsys)  # the same
    assert (rc, err) == (0, "")
    args = torch.load(out / "last.pt", weights_only=True)["train_state"]["args"]
    assert args["schedule"] == "cosine" and args["lr"] == 2e-3
    rc, _, err = cli([*base, "--steps", 6, "--resume"], capsys)  # not given: the run's
    assert (rc, err) == (0, "")
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["train_state"]["args"]["schedule"] == "cosine"
    lrs = [m["lr"] for m in metric_lines(out)]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-4  # cosine all the way down


def test_the_epoch_logged_counts_the_batches_an_epoch_takes(tmp_path):
    """6 images in batches of 4 take one step an epoch (the last, incomplete batch is
    dropped): the log said epoch 0.67, 1.67, ... and an --epochs 2 run ended at "1.67"."""
    (tmp_path / "six").mkdir()
    for i in range(6):
        write_rgb(tmp_path / "six" / f"{i}.png", smooth_image(48, 40, i))
    data = {"train": tmp_path / "six"}
    train(config(data, tmp_path / "a", epochs=2, eval_every=1))
    assert [m["epoch"] for m in metric_lines(tmp_path / "a")] == [1.0, 2.0]
    train(config(data, tmp_path / "b", steps=3, eval_every=1, batch_size=8))  # all in one
    assert [m["epoch"] for m in metric_lines(tmp_path / "b")] == [1.0, 2.0, 3.0]


def test_init_fine_tunes_from_weights_with_new_rebalancing(data, tmp_path):
    """--init starts from a checkpoint's weights and architecture with a fresh optimiser and
    step count; for cls its class set stays and --stats may bring new rebalancing weights."""
    import dataclasses

    from recolor_tools.rebalance import RebalanceStats, rebalance_weights

    kw = dict(head="cls", val=[data["val"]], eval_every=2)
    base = train(config(data, tmp_path / "base", steps=4, **kw))
    stats = RebalanceStats.load(tmp_path / "base" / "rebalance-stats.npz")
    w01 = rebalance_weights(stats.counts, stats.classes, 0.1, stats.sigma)
    strong = tmp_path / "strong.npz"
    dataclasses.replace(stats, weights=w01, lam=0.1).save(strong)
    with pytest.raises(UsageError, match="width 8; drop --width"):  # the user's to change: 2
        train(config(data, tmp_path / "tiny", steps=1, init=base, width=16, **kw))
    tiny = train(config(data, tmp_path / "tiny", steps=1, lr=1e-12, init=base, width=None, **kw))
    a, b = torch.load(base, weights_only=True), torch.load(tiny, weights_only=True)
    assert b["step"] == 1 and b["config"] == a["config"]
    assert b["data"]["init"] == str(base)
    again = train(config(data, tmp_path / "tiny", steps=2, lr=1e-12, resume=True, **kw))
    assert torch.load(again, weights_only=True)["data"]["init"] == str(base)  # was None
    for k, v in a["model"].items():
        if "running" not in k and "num_batches" not in k:  # BatchNorm statistics still move
            torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-8)
    assert torch.equal(b["rebalance"]["weights"], a["rebalance"]["weights"])

    tuned = train(config(data, tmp_path / "tuned", steps=2, init=base, stats=strong, **kw))
    c = torch.load(tuned, weights_only=True)
    assert c["rebalance"]["lam"] == pytest.approx(0.1)
    np.testing.assert_allclose(c["rebalance"]["weights"].numpy(), w01, rtol=1e-6)
    assert not torch.equal(c["model"]["head.weight"], a["model"]["head.weight"])


def test_ddp_two_processes_keep_identical_replicas(data, tmp_path):
    """torchrun with 2 CPU processes (gloo): both replicas end with the same parameters, and they
    are the ones rank 0 saved."""
    digests = tmp_path / "digests"
    digests.mkdir()
    out = tmp_path / "ddp"
    env = {"RECOLOR_DEBUG_DDP_DIR": str(digests), "OMP_NUM_THREADS": "1"}
    args = [
        "train", "--head", "reg", data["train"], "--steps", "4", "--eval-every", "2",
        "--size", SIZE, "--batch-size", "4", "--width", "8", "--workers", "0", "--threads", "1",
        "--device", "cpu", "--out", out, "-q",
    ]  # fmt: skip
    p = torchrun(args, fresh=(digests, out), env=env)
    p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode(errors="replace")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines() == [str(out / "reg.pt")]  # printed by rank 0 only
    d0, d1 = ((digests / f"rank{r}.sha256").read_text().strip() for r in (0, 1))
    assert d0 == d1
    model, ckpt = checkpoints.load_checkpoint(out / "reg.pt", "reg")
    assert param_digest(model) == d0
    torch.manual_seed(0)  # the run's seed: the initial weights, which training must have moved
    initial = models.Colorizer(models.ModelConfig(head="reg", width=8))
    assert param_digest(initial) != d0
    assert [m["step"] for m in metric_lines(out)] == [2, 4]  # one writer
    assert ckpt["step"] == 4
    # stopped after 3 steps and resumed to 4: the log of the run that went straight on (the
    # checkpoint kept rank 0's running loss for both ranks, and step 4's train_loss differed)
    half = tmp_path / "half"
    cut = [half if a == out else a for a in args]
    cut[cut.index("--steps") + 1] = "3"
    assert torchrun(cut, fresh=(half,), env=env).returncode == 0
    on = torchrun([*[half if a == out else a for a in args], "--resume"], env=env)
    assert on.returncode == 0, on.stderr.decode(errors="replace")
    timing = {"img_per_s", "elapsed"}  # (the clock's)
    last = [{k: v for k, v in metric_lines(d)[-1].items() if k not in timing} for d in (half, out)]
    assert last[0] == last[1]
    # an error about the whole run is said once, not once per process
    again = torchrun(args, env=env)
    ours = [ln for ln in again.stderr.decode().splitlines() if ln.startswith("recolor train:")]
    assert again.returncode != 0 and ours == [
        f"recolor train: {out} holds a run (last.pt): --resume continues it, --overwrite "
        "starts afresh (see recolor train -h)"
    ]


# -- command line -----------------------------------------------------------------------------


def cli(args, capsys) -> tuple[int, str, str]:
    rc = main(["train", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_the_first_line_says_the_batch_the_steps_take(tmp_path, capsys):
    """3 images at -b 4 said "steps of 4 x 1": a pass over fewer images than a batch takes
    them all, 3."""
    folder = image_folder(tmp_path / "d", 3)
    args = [folder, "--head", "reg", "--steps", 1, "--size", 24, "-b", 4, "--width", 8, "-j", 0]
    rc, _, err = cli([*args, "--out", tmp_path / "run"], capsys)
    assert rc == 0 and ", 1 step of 3 x 1 on cpu, " in err.splitlines()[0], err


def test_hint_lr_without_layers_to_train_is_a_usage_error(tmp_path, capsys):
    """--hint-lr on a run that adds no layers (no --hints, no --affinity) was ignored without a
    word, where every other option without an effect is refused (--grid with --classes)."""
    folder = image_folder(tmp_path / "d", 2)
    args = [folder, "--head", "reg", "--steps", 1, "--size", 24, "-b", 2, "--width", 4, "-j", 0]
    rc, _, err = cli([*args, "--hint-lr", "1e-3", "--out", tmp_path / "run"], capsys)
    assert (rc, err) == (
        2,
        "recolor train: --hint-lr sets the rate of the layers that --hints "
        "and --affinity add: give one of them (see recolor train -h)\n",
    )
    assert not (tmp_path / "run").exists()
    rc, _, err = cli([*args, "--hint-lr", "1e-3", "--hints", "-q", "--out", tmp_path / "h"], capsys)
    assert rc == 0 and err == "", err
    # resumed, a run without such layers refuses it too (it was accepted, unsaid)
    assert cli([*args, "-q", "--out", tmp_path / "plain"], capsys)[0] == 0
    rc, _, err = cli([*args, "--hint-lr", "1e-3", "--resume", "--out", tmp_path / "plain"], capsys)
    assert rc == 2 and "--hint-lr sets the rate of the layers" in err


@pytest.mark.parametrize("head", ["reg", "cls"])  # cls: the class statistics name it first
def test_an_unreadable_files_name_is_escaped_in_its_line(data, tmp_path, capsys, head):
    """A file name with a newline and an escape sequence was printed raw by train (two lines,
    a cleared terminal); every other tool escapes it."""
    evil = tmp_path / "e\nvil\x1b[2J.png"
    evil.write_bytes(b"not an image")
    shown = str(evil).replace("\n", "\\n").replace("\x1b", "\\x1b")
    args = ["--head", head, "--steps", "1", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0, "-q"]
    rc, _, err = cli([data["train"], evil, *args, "--out", tmp_path / "r1"], capsys)
    assert rc == 1 and err.splitlines() == [
        f"recolor train: {shown}: not an image recolor reads (text) (skipped)"
    ]
    rc, _, err = cli([data["train"], *args, "--val", evil, "--out", tmp_path / "r2"], capsys)
    assert rc == 1 and err.splitlines() == [
        f"recolor train: none of the validation images is readable ({shown}: not an image "
        "recolor reads (text))"
    ]


@pytest.mark.parametrize("where", ["training", "validation"])
def test_unreadable_images_one_after_another_are_each_named(tmp_path, capsys, where):
    """b.png and c.png unreadable, one after the other: looking for b's stand-in met c too,
    marked it and said only b; at c's own turn it was passed over, never named."""
    good = image_folder(tmp_path / "good", 4)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes((good / os.listdir(good)[0]).read_bytes())
    for name in ("b.png", "c.png"):
        (mixed / name).write_text("junk")
    args = ["--head", "reg", "--steps", "1", "--size", "24", "-b", 3, "--width", 4, "-j", 0,
            "--device", "cpu", "-q", "--out", tmp_path / "run"]  # fmt: skip
    data = [good, "--val", mixed] if where == "validation" else [mixed]
    rc, _, err = cli([*data, *args], capsys)
    assert rc == 1 and sorted(err.splitlines()) == [
        f"recolor train: {mixed / n}: not an image recolor reads (text) (skipped)"
        for n in ("b.png", "c.png")
    ]


def test_a_full_disk_is_one_line_naming_the_checkpoint(data, tmp_path, capsys, monkeypatch):
    """torch.save turned ENOSPC into "internal error: RuntimeError: [enforce fail at
    inline_container.cc...]"; now the line every tool gives for a full disk, and no file left."""
    from conftest import disk_full

    disk_full(monkeypatch)
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--steps", "1", "--size", SIZE, "-b", 4, "-q"]
    rc, stdout, err = cli([*args, "--width", 8, "-j", 0, "--out", out], capsys)
    full = f"recolor train: {out / 'last.pt'}: no space left on device\n"
    assert (rc, stdout, err) == (1, "", full)
    assert [f.name for f in out.iterdir()] == ["metrics.jsonl"]  # no checkpoint, no temporary


def test_overwrite_keeps_the_old_run_when_no_training_image_is_readable(data, tmp_path, capsys):
    """A reg run (no class statistics to read the images first) with no readable image failed
    at its first batch, after --overwrite had removed the old run; now it stops before."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"the old run")
    args = [data["bad"], "--head", "reg", "--steps", "1", "--size", SIZE, "-b", 4, "-q"]
    rc, _, err = cli([*args, "--width", 8, "-j", 0, "--overwrite", "--out", out], capsys)
    assert (rc, err) == (1, "recolor train: none of the training images is readable "
                            f"({data['bad']}: not an image recolor reads (text))\n")  # fmt: skip
    assert (out / "last.pt").read_bytes() == b"the old run"


def test_cli_prints_the_weights_path(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--steps", "2", "--size", SIZE, "-b", 4]
    rc, stdout, _ = cli([*args, "--width", 8, "-j", 0, "--threads", 1, "-q", "--out", out], capsys)
    assert rc == 0 and stdout == f"{out / 'reg.pt'}\n"
    assert checkpoints.load_checkpoint(out / "reg.pt", "reg")[1]["step"] == 2


def test_a_run_is_not_replaced_without_overwrite(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0, "-q"]
    assert cli([*args, "--steps", "2", "--out", out], capsys)[0] == 0
    kept = {f.name: f.read_bytes() for f in out.iterdir()}
    rc, stdout, err = cli([*args, "--steps", "1", "--out", out], capsys)  # --resume forgotten
    assert (rc, stdout) == (2, "") and err == (
        f"recolor train: {out} holds a run (last.pt): --resume continues it, --overwrite starts "
        "afresh (see recolor train -h)\n"
    )
    assert {f.name: f.read_bytes() for f in out.iterdir()} == kept  # nothing touched
    with pytest.raises(RecolorError, match="holds a run"):  # the API says it too
        train(config(data, out, head="reg", steps=1))
    afile = tmp_path / "afile"
    afile.write_text("x")
    # as every tool's output folder that is a file: exit 1, the path first (it was a usage
    # error, "--out X: ...", exit 2)
    rc, _, err = cli([*args, "--steps", "1", "--out", afile], capsys)  # was found after stats
    assert rc == 1 and err == f"recolor train: {afile}: exists and is not a directory\n"
    monkeypatch.chdir(tmp_path)  # named as given, as the other tools name it (not absolute)
    rc, _, err = cli([*args, "--steps", "1", "--out", "afile/run"], capsys)  # also below
    assert rc == 1 and err == "recolor train: afile: not a directory\n"
    rc, _, err = cli([*args, "--steps", "1", "--out", out, "--resume", "--overwrite"], capsys)
    assert rc == 2 and err == f"recolor train: --resume and --overwrite exclude each other {SEE}\n"
    assert cli([*args, "--steps", "1", "--out", out, "--overwrite"], capsys)[0] == 0
    assert checkpoints.load_checkpoint(out / "reg.pt", "reg")[1]["step"] == 1  # afresh
    assert [m["step"] for m in metric_lines(out)] == [1]


def test_overwrite_replaces_the_old_run_when_it_starts(data, tmp_path, capsys, monkeypatch):
    """Cut short before its first checkpoint, an --overwrite left the old last.pt (which
    --resume then continued, with its metrics gone) and the other head's weights."""
    out = tmp_path / "run"
    args = [data["train"], "--size", SIZE, "-b", 4, "--width", 8, "-j", 0, "-q", "--out", out]
    assert cli([*args, "--head", "reg", "--steps", "2"], capsys)[0] == 0

    def ctrl_c(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr("recolor_tools.train.train_step", ctrl_c)  # Ctrl-C at the first step
    rc = cli([*args, "--head", "cls", "--grid", "10", "--steps", "4", "--overwrite"], capsys)[0]
    assert rc == 130  # (an empty metrics.jsonl was left: recolor leaves no empty file)
    assert sorted(f.name for f in out.iterdir()) == ["rebalance-stats.npz"]
    # a run that brings its statistics (--stats, --init) or needs none (reg) leaves no old
    # ones beside its weights: they were kept, and matched nothing it trained on
    monkeypatch.undo()
    assert cli([*args, "--head", "reg", "--steps", "1", "--overwrite"], capsys)[0] == 0
    assert sorted(f.name for f in out.iterdir()) == ["last.pt", "metrics.jsonl", "reg.pt"]
    # statistics given as --stats from OUT itself are read, never removed
    assert (
        cli([*args, "--head", "cls", "--grid", "10", "--steps", "1", "--overwrite"], capsys)[0] == 0
    )
    again = [*args, "--head", "cls", "--stats", out / "rebalance-stats.npz", "--steps", "1"]
    assert cli([*again, "--overwrite"], capsys)[0] == 0
    assert (out / "rebalance-stats.npz").exists()


def test_cli_more_workers_than_cores_is_one_line_not_torchs_warning(data, tmp_path):
    """Run on one core (its affinity), with 2 loader workers: the tools' one line on stderr and
    not torch's two-line UserWarning (with its source path)."""
    from conftest import run

    core = min(os.sched_getaffinity(0))
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--steps", "1", "--size", SIZE, "-b", 2, "-q"]
    p = run(["train", *args, "--width", 8, "-j", 2, "--out", out],
            preexec_fn=lambda: os.sched_setaffinity(0, {core}))  # fmt: skip
    assert p.returncode == 0 and p.stdout.decode() == f"{out / 'reg.pt'}\n"
    assert p.stderr.decode() == (
        "recolor train: --workers 2 is more than the 1 core this process may use (slower, and "
        "more memory)\n"
    )


def test_more_workers_than_a_processs_share_of_the_cores_is_said_under_torchrun(data, tmp_path):
    """Under torchrun the workers were weighed against all of the machine's cores, not the
    process's share: two processes on two cores with 2 workers each ran 4 on 2, unsaid."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
              "2", "-m", "recolor_tools", "train", data["train"], "--head", "reg", "--steps", "1",
              "--size", SIZE, "-b", "2", "-q", "--width", "8", "-j", "2", "--device", "cpu",
              "--out", out]  # fmt: skip
    p = subprocess.run(list(map(str, launch)), capture_output=True, timeout=300,
                       env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)},
                       preexec_fn=lambda: os.sched_setaffinity(0, set(cores)))  # fmt: skip
    assert p.returncode == 0, p.stderr
    said = [ln for ln in p.stderr.decode().splitlines() if ln.startswith("recolor train:")]
    assert said == ["recolor train: --workers 2 is more than the 1 core this process may use "
                    "(slower, and more memory)"]  # fmt: skip


def test_cli_resume_errors_are_one_line(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    base = [data["train"], "--head", "cls", "--steps", "2", "--size", SIZE, "-q", "--out", out]

    rc, _, err = cli([*base, "--resume"], capsys)  # was "OUT/last.pt: no such file", exit 1
    none = f"recolor train: --resume: {out} holds no run to continue (no last.pt) {SEE}\n"
    assert (rc, err) == (2, none)

    reg = models.Colorizer(models.ModelConfig(head="reg", width=8))
    checkpoints.save_checkpoint(out / "last.pt", checkpoints.make_checkpoint(reg, train_state={}))
    rc, _, err = cli([*base, "--resume"], capsys)  # --head given again: usage, as --width
    said = "the run has reg (a resumed run keeps its settings; start another with --init)"
    assert (rc, err) == (2, f"recolor train: --head cls and --resume: {said} {SEE}\n")

    (out / "last.pt").write_bytes(b"\x00garbage")
    rc, _, err = cli([*base, "--resume"], capsys)
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"recolor train: {out / 'last.pt'}: not a recolor checkpoint")


def test_cli_init_errors_are_one_line(data, tmp_path, capsys):
    reg = train(config(data, tmp_path / "reg", head="reg", steps=1))
    base = [data["train"], "--steps", "1", "--size", SIZE, "-q", "--out", tmp_path / "o"]
    rc, _, err = cli([*base, "--head", "cls", "--init", reg], capsys)
    assert rc == 1 and err == (f"recolor train: {reg}: checkpoint is for the 'reg' head, not "
                               "'cls'; use --head reg or other --init weights\n")  # fmt: skip
    rc, _, err = cli([*base, "--head", "reg", "--init", reg, "--resume"], capsys)
    assert rc == 2 and "exclude each other" in err and "Traceback" not in err
    cls = train(config(data, tmp_path / "cls", head="cls", steps=1))  # grid 10 classes
    other = tmp_path / "grid8.npz"
    main(["rebalance-stats", str(data["train"]), "-o", str(other), "-q"])
    capsys.readouterr()
    rc, _, err = cli([*base, "--head", "cls", "--init", cls, "--stats", other], capsys)
    assert (
        rc == 1
        and err == f"recolor train: {other}: its class set differs from the --init checkpoint's\n"
    )
    # options that cannot go together whatever the files hold: usage (2), as --grid with --init
    rc, _, err = cli([*base, "--head", "cls", "--init", cls, "--classes", other], capsys)
    assert (rc, err) == (
        2,
        "recolor train: --init fixes the class set; give --stats, not --classes "
        "(see recolor train -h)\n",
    )


def test_an_option_error_is_said_before_torch_loads_and_a_huge_crop_is_one(data, tmp_path):
    """train's option errors waited for torch (1.5 s) to be said, and --size 2147483648 was
    taken: after the class statistics, OpenCV's resize ended the run as a 4-line internal error.
    """
    code = (
        "import sys; from recolor_tools.cli import main; "
        f"rc = main(['train', {str(data['train'])!r}, '--steps', '1', '--epochs', '1']); "
        "assert rc == 2, rc; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
    p = run(["train", data["train"], "--size", "2147483648", "--steps", "1", "-o", tmp_path / "o"])
    assert p.returncode == 2 and "not in the range 8<=x<=8192" in p.stderr.decode(), p.stderr
    assert len(p.stderr.splitlines()) == 1 and not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="multiple of 8 up to 8192, got 8200"):
        TrainConfig(data=[data["train"]], size=8200)


@pytest.fixture(scope="module")
def short_run(data, tmp_path_factory) -> Path:
    """OUT of a 2-step run (width 8, 32 px crops)."""
    out = tmp_path_factory.mktemp("short") / "run"
    run(["train", data["train"], "--steps", "2", "--width", "8", "--size", "32", "-b", "2",
         "--workers", "0", "-q", "-o", out], check_rc=0)  # fmt: skip
    return out


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("step", -5, "training state's step is -5, not a whole number from 0"),
        ("batch_size", 0, "training state's batch_size is 0, not a whole number from 1"),
        ("elapsed", float("nan"), "training state's elapsed is nan, not a finite number"),
        ("rng", "x", "training state does not load (TypeError: "),
        ("optimizer", "other", "training state does not load ("),
        ("pos", None, "training state has no 'pos'"),
        ("loss_sums", ["x"], "training state does not load (TypeError: "),  # (torch's: 6 lines)
    ],
)
def test_a_hand_edited_training_state_is_one_line_naming_the_file(
    short_run, tmp_path, key, value, says
):
    """A checkpoint whose training state was edited by hand: a step of -5 trained past the
    steps asked and a batch size of 0 passed unsaid; an RNG or optimiser state that did not load
    was an internal error, without the file, and so was a missing count."""
    out = shutil.copytree(short_run, tmp_path / "run")
    ckpt = torch.load(out / "last.pt", weights_only=True)
    ts = ckpt["train_state"]
    if value is None:
        del ts[key]
    else:
        ts[key] = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups":
                   ts[key]["param_groups"]} if value == "other" else value  # fmt: skip
    torch.save(ckpt, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    p = run(["train", "--resume", "-o", out, "--steps", "4", "-q"])
    assert p.returncode == 1 and p.stderr.decode().startswith(
        f"recolor train: {out / 'last.pt'}: broken checkpoint: its {says}"
    ), p.stderr
    assert len(p.stderr.splitlines()) == 1 and (out / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    "first, again, end",
    [  # 16 images: -b 4 takes 4 steps an epoch, -b 2 eight, -b 8 two
        (["--epochs", "2", "-b", "4"], ["--epochs", "3", "-b", "8"], (10, 3.0)),
        (["--steps", "6", "-b", "4"], ["--epochs", "2", "-b", "2"], (10, 2.0)),
        (["--steps", "6", "-b", "4"], ["--epochs", "2", "-b", "8"], (7, 2.0)),
    ],
)
def test_a_resume_with_another_batch_ends_at_the_epoch_asked(data, tmp_path, first, again, end):
    """--epochs on a resume with another -b (or on other processes: other steps per epoch) was
    counted in the new steps per epoch from step 0: 3 epochs of -b 8 were 6 steps, "past"
    the 8 done ("nothing to train"); from epoch 1.5, 2 epochs of -b 2 went on to epoch 2.75."""
    out = tmp_path / "run"
    common = ["--width", "8", "--size", "32", "--workers", "0", "-q", "-o", out]
    run(["train", data["train"], "--head", "reg", *first, *common], check_rc=0)
    p = run(["train", "--resume", *again, *common], check_rc=0)
    assert "nothing to train" not in p.stderr.decode(), p.stderr
    last = metric_lines(out)[-1]
    assert (last["step"], last["epoch"]) == end, last


def test_a_resume_on_more_processes_takes_the_rest_of_the_epoch(data, tmp_path):
    """The items a process had trained of the epoch were skipped by each process of the new
    launch: from 6 of 16 on one process, two processes skipped 6 of their 8 each, and 6 images
    of the epoch went untrained (one step, not two, to its end)."""
    out = tmp_path / "run"
    common = ["--width", "8", "--size", "32", "--workers", "0", "--threads", "1", "-q"]
    run(["train", data["train"], "--head", "reg", "--steps", "3", "-b", "2", *common, "-o", out],
        check_rc=0)  # fmt: skip
    p = torchrun(["train", "--resume", "--epochs", "1", "--device", "cpu", *common, "-o", out],
                 env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    # 6 of 16 done: 10 left, 5 a process, two whole batches of 2 each
    assert [m["step"] for m in metric_lines(out)][-1] == 5


def test_an_option_of_the_other_head_on_a_resume_is_a_usage_error(data, tmp_path):
    """--affinity on a resume of a reg run exited 1; with --head reg given, 2."""
    out = tmp_path / "run"
    common = ["--width", "8", "--size", "32", "-b", "2", "--workers", "0", "-q", "-o", out]
    run(["train", data["train"], "--head", "reg", "--steps", "1", *common], check_rc=0)
    for head in ([], ["--head", "reg"]):
        p = run(["train", "--resume", *head, "--affinity", "16", "--steps", "2", "-o", out])
        assert (p.returncode, p.stderr.decode()) == (2, "recolor train: --affinity features "
                "steer the cls head only (--head cls) (see recolor train -h)\n")  # fmt: skip


def test_a_regression_run_does_not_import_numba(data, tmp_path):
    """The regression head has no classes to encode, but each crop imported the colour-class
    package, and with it numba (0.3 s of every reg run's start)."""
    args = [str(data["train"]), "--val", str(data["val"]), "--head", "reg", "--steps", "2"]
    args += ["--width", "8", "--size", "32", "-b", "2", "--workers", "0", "--eval-every", "1"]
    code = (
        "import sys; from recolor_tools.cli import main; "
        f"rc = main(['train', *{args!r}, '-q', '-o', {str(tmp_path / 'o')!r}]); "
        "assert rc == 0, rc; assert 'numba' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
    assert (tmp_path / "o" / "reg.pt").is_file()


def test_cli_bad_arguments(data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = cli([empty, "--steps", "1", "-q", "--out", tmp_path / "o"], capsys)
    said = "is a directory, and no input was found in it"  # (as every tool says it)
    assert rc == 1 and err == f"recolor train: {empty}: {said}\n"
    rc, _, err = cli([data["train"], "--steps", "1", "--epochs", "1"], capsys)
    assert rc == 2 and "exclude each other" in err
    # --lr 0 keeps the network: BatchNorm's statistics too (--no-freeze-bn let them change the
    # shipped model's automatic colours, unsaid); not given, frozen
    args = [data["train"], "--steps", 1, "--out", tmp_path / "lr0"]  # (it must write nothing)
    rc, _, err = cli([*args, "--hints", "--lr", 0, "--no-freeze-bn"], capsys)
    said = "(BatchNorm's statistics would change the network that --lr 0 keeps)"
    assert (rc, err) == (2, "recolor train: --lr 0 (given, or --init with --affinity's default) "
                            f"and --no-freeze-bn exclude each other {said} "
                            f"{SEE}\n")  # fmt: skip
    from recolor_tools.trainconfig import resolve_defaults

    assert resolve_defaults(config(data, tmp_path / "k", hints=True, lr=0.0), None).freeze_bn
    for flag in ("--stats", "--classes"):  # was "-: no such file", exit 1
        rc, _, err = cli([*args, flag, "-"], capsys)
        assert (rc, err) == (
            2,
            f"recolor train: {flag} -: train reads it by name; give a file {SEE}\n",
        )
    rc, _, err = cli([data["train"], "--size", "36", "--steps", "1", "--out", tmp_path], capsys)
    assert (
        rc == 2
        and err
        == "recolor train: --size must be a multiple of 8 up to 8192, got 36 (see "
        "recolor train -h)\n"
    )
    for flag in ("--lr", "--hint-lr"):  # inf once trained to NaN weights with exit 0
        for value in ("inf", "nan"):
            rc, _, err = cli([data["train"], flag, value, "--steps", "1"], capsys)
            assert (
                rc == 2
                and err == f"recolor train: {flag} must be a finite number, got {value} {SEE}\n"
            )
    for seed in ("-1", str(2**32), "99999999999999999999"):  # numpy's own words, exit 1, before
        rc, _, err = cli([data["train"], "--seed", seed, "--steps", "1"], capsys)
        want = f"recolor train: --seed must be from 0 to {2**32 - 1}, got {seed} {SEE}\n"
        assert (rc, err) == (2, want)


@pytest.mark.parametrize("head, val", [("reg", False), ("reg", True), ("cls", True)])
def test_a_run_that_diverges_writes_no_weights(data, tmp_path, capsys, head, val):
    """A finite but absurd --lr turns the weights to NaN: once written as reg.pt (which predict
    then refused) with exit 0; now one line, exit 1, and no weights from it. With --val the
    validation of NaN predictions ended the run first ("a/b errors must be non-negative numbers")
    and logged nothing; now its measures are null too."""
    out = tmp_path / "run"
    args = [data["train"], "--head", head, "--steps", "2", "--size", SIZE, "-b", 4, "-q"]
    args += ["--val", data["val"]] * val
    rc, stdout, err = cli([*args, "--width", 8, "-j", 0, "--lr", "1e308", "--out", out], capsys)
    assert (rc, stdout) == (1, "") and err == (
        "recolor train: training diverged by step 2: NaN or infinite weights (try a lower --lr); "
        "nothing written from it\n"
    )
    assert not list(out.glob("*.pt"))
    (line,) = (out / "metrics.jsonl").read_text().splitlines()  # strict JSON: NaN was written
    logged = json.loads(line, parse_constant=pytest.fail)
    assert logged["train_loss"] is None
    if val:
        assert logged["val_auc"] is None and logged["val_psnr"] is None


def test_a_class_set_smaller_than_the_soft_encodings_k_is_a_usage_error(data, tmp_path, capsys):
    """--grid 200 (2 classes) was taken, the statistics computed and written, and the first
    batch failed: "k must be an integer in [1, Q=2], got 5" (no such option), or with loader
    workers their whole traceback."""
    from recolor_tools.rebalance import compute_stats

    stats = tmp_path / "few.npz"
    ab = np.linspace(-40, 40, 512, dtype=np.float32).reshape(16, 16, 2)
    compute_stats([ab], quant.gamut_classes(200), 200).save(stats)
    out = tmp_path / "run"
    args = [data["train"], "--size", SIZE, "-b", 4, "--width", 8, "-j", 2, "--steps", 1, "-q"]
    for given, q in ((["--grid", "200"], 2), (["--stats", stats], 2), (["--grid", "300"], 1)):
        rc, stdout, err = cli([*args, *given, "--out", out], capsys)
        named = " ".join(map(str, given))
        assert (rc, stdout, err) == (2, "", f"recolor train: {named} gives {q} colour classes; "
            f"the soft-encoding takes the 5 nearest, so it needs 5 or more {SEE}\n")  # fmt: skip
        assert not out.exists()


def test_a_run_whose_batchnorm_statistics_overflow_writes_no_weights(data, tmp_path, capsys):
    """At --lr 1e4 the weights stayed finite but BatchNorm's running variance did not: exit 0
    and a reg.pt that predict and --resume refused ("NaN or infinite weights in
    ...running_var"); the check looked at the parameters alone."""
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--steps", "10", "--size", SIZE, "-b", 4, "-q"]
    rc, stdout, err = cli([*args, "--width", 4, "-j", 0, "--lr", "1e4", "--out", out], capsys)
    assert (rc, stdout) == (1, "") and "training diverged by step" in err, err
    for ckpt in out.glob("*.pt"):  # (a last.pt of a step before it went: loadable)
        checkpoints.read_checkpoint(ckpt)


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_validation_images_are_named_not_blamed_on_training(
    data, tmp_path, workers, capsys
):
    """All validation images unreadable: one line that says so and names the first (it said "none
    of the training images is readable"; with loader workers, torch's traceback came with it)."""
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--steps", "1", "--size", SIZE, "-b", 4, "-q"]
    rc, _, err = cli([*args, "--val", data["bad"], "--width", 8, "-j", workers, "--out", out],
                     capsys)  # fmt: skip
    assert rc == 1 and err == (
        f"recolor train: none of the validation images is readable ({data['bad']}: "
        f"{err.split(': ')[-1]}"
    )
    assert len(err.splitlines()) == 1 and "cannot identify" not in err
    rc, _, err = cli([tmp_path / "none.png", *args[1:], "-j", workers, "--out", out], capsys)
    assert rc == 1 and err.startswith(f"recolor train: none of the training images is readable "
                                      f"({tmp_path / 'none.png'}: no such file")  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 36 GB"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
def test_out_of_memory_is_one_line_not_an_internal_error(
    data, tmp_path, capsys, monkeypatch, error
):
    """What the allocators raise for a --size or --width the machine cannot hold (not made for
    real here: on an overcommitting kernel the allocation itself could succeed)."""
    import recolor_tools.train

    def too_big(cfg, report=None):
        raise error

    monkeypatch.setattr(recolor_tools.train, "train", too_big)
    rc, out, err = cli([data["train"], "--steps", "1", "-q", "--out", tmp_path / "o"], capsys)
    assert rc == 1 and out == ""
    assert err == "recolor train: out of memory (smaller sizes or batches need less)\n"


def test_help_shows_the_fine_tune_defaults():
    # Square brackets in a help text are rich markup: "[default: ...]" once vanished from it.
    p = subprocess.run(
        [sys.executable, "-m", "recolor_tools", "train", "--help"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        cwd=ROOT, check=True,
    )  # fmt: skip
    help_text = " ".join(p.stdout.split())  # one line
    assert "(default 1e-4; with --init, 3e-5 where --hints adds hint layers, 0 for --affinity "\
           "alone)" in help_text  # fmt: skip
    assert "(default: on where --hints or --affinity adds layers to --init's, and with --lr 0)" \
           in help_text  # fmt: skip


def test_a_batch_of_one_at_a_tiny_size_is_one_plain_line(data, tmp_path, capsys):
    # torch's own text came out: "Expected more than 1 value per channel when training"
    args = [data["train"], "--size", "16", "-b", "1", "--width", "8", "-j", "0", "-q"]
    rc, stdout, err = cli([*args, "--steps", "1", "--out", tmp_path / "r"], capsys)
    assert (rc, stdout) == (2, "") and err.startswith(  # options: a usage error
        "recolor train: a batch of one image at --size 16 cannot be trained"
    )
    assert len(err.splitlines()) == 1


def test_a_validation_set_with_no_readable_image_stops_before_training(data, tmp_path, capsys):
    """It was found at the first evaluation (an epoch lost), naming one file of them."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.jpg").write_text("x")
    out = tmp_path / "r"
    args = [data["train"], "--val", bad, "--size", SIZE, "-b", "4", "--width", "8", "-j", "0"]
    rc, stdout, err = cli([*args, "--steps", "4", "--eval-every", "3", "-q", "--out", out], capsys)
    assert (rc, stdout) == (1, "") and err == (
        f"recolor train: none of the validation images is readable ({bad / 'a.png'}: empty file;"
        f" {bad / 'b.jpg'}: not an image recolor reads (text))\n"
    )
    assert not out.exists()  # no step was taken
    rc, _, err = cli([*args[:1], "--val", "-", *args[3:], "-q", "--out", out], capsys)
    assert rc == 2 and err == (  # it said "training data"; and exit 1: it is the command line's
        "recolor train: validation data cannot come from stdin; give files or directories "
        "(see recolor train -h)\n"
    )


def test_a_second_train_into_a_held_out_folder_is_refused(data, tmp_path, capsys):
    """Two trains started together into one OUT both ran and mixed their metrics.jsonl lines
    and checkpoints (both exit 0): the second is refused while the first holds OUT."""
    import fcntl
    import os

    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)  # as a running train holds it
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    args = [data["train"], "--head", "reg", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0,
            "--steps", 1, "--threads", 1, "-q", "--out", out]  # fmt: skip
    try:
        assert cli(args, capsys) == (1, "", f"recolor train: {out}: another recolor train is "
                                            "writing into it\n")  # fmt: skip
        assert list(out.iterdir()) == []
    finally:
        os.close(fd)
    assert cli(args, capsys)[0] == 0  # let go: it runs, and lets go of OUT in its turn
    # held again, now with a run in it (the first run's last.pt): the second was told to
    # --resume it (exit 2), and only with --resume or --overwrite heard the reason
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        for extra in ([], ["--overwrite"], ["--resume"]):
            assert cli([*args, *extra], capsys) == (
                1, "", f"recolor train: {out}: another recolor train is writing into it\n"
            ), extra  # fmt: skip
        # options wrong whatever OUT holds stay usage errors (they were said as held too)
        assert cli([*args, "--resume", "--overwrite"], capsys)[0] == 2
    finally:
        os.close(fd)
    assert cli([*args, "--resume", "--steps", 2], capsys)[0] == 0
    # an OUT that a refused run created is not left behind, empty, nor the folders above it
    rc, _, err = cli([*args[:-1], tmp_path / "new" / "a" / "b", "--resume"], capsys)
    assert rc == 2 and "holds no run" in err and not (tmp_path / "new").exists()


def test_a_runs_inputs_are_none_of_the_files_it_writes(data, tmp_path, capsys):
    """--init OUT/cls.pt was replaced by the new weights (with --overwrite removed before the
    training began), --classes OUT/rebalance-stats.npz by statistics of the training data."""
    out = train(config(data, tmp_path / "run", steps=1)).parent
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    base = [data["train"], "--size", SIZE, "-b", 4, "-j", 0, "--steps", 1, "-q", "--out", out]
    base += ["--head", "cls", "--overwrite"]
    for given in (["--init", out / "cls.pt"], ["--init", out / "last.pt"],
                  ["--classes", out / "rebalance-stats.npz"]):  # fmt: skip
        rc, _, err = cli([*base, *given], capsys)
        assert rc == 2, err
        assert f"this run writes that file in {out} (copy it elsewhere first)" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    # --stats is read, not written: OUT's own statistics may be given again
    rc, _, err = cli([*base, "--stats", out / "rebalance-stats.npz"], capsys)
    assert rc == 0, err
    # nor is a file it writes, through a link, one it reads: the weights or the statistics
    # were written into a training image, and --stats was replaced
    mine = Path(shutil.copytree(data["train"], tmp_path / "mine"))
    image = sorted(mine.iterdir())[0]
    kept = image.read_bytes()
    stats = shutil.copy(out / "rebalance-stats.npz", tmp_path / "s.npz")
    args = [mine, "--size", SIZE, "-b", 4, "-j", 0, "--steps", 1, "-q", "--head", "cls"]
    for name, target, more in (("cls.pt", image, []), ("rebalance-stats.npz", image, []),
                               ("metrics.jsonl", stats, ["--stats", stats])):  # fmt: skip
        linked = tmp_path / f"linked-{name}"
        linked.mkdir()
        (linked / name).symlink_to(target)
        rc, _, err = cli([*args, *more, "--out", linked], capsys)
        assert (rc, err) == (1, f"recolor train: {linked / name}: refusing to overwrite an input\n")
    assert image.read_bytes() == kept and not list(tmp_path.glob("linked-*/*.pt.*"))
    # a folder where the final weights go: said before the training, not after it
    (tmp_path / "dir" / "cls.pt").mkdir(parents=True)
    rc, _, err = cli([*args, "--out", tmp_path / "dir"], capsys)
    assert (rc, err) == (1, f"recolor train: {tmp_path / 'dir' / 'cls.pt'}: is a directory (this "
                            "run writes or removes a file there)\n")  # fmt: skip
    assert not (tmp_path / "dir" / "last.pt").exists()


def test_a_fifo_for_the_metrics_is_written_in_place(data, tmp_path, capsys):
    """OUT/metrics.jsonl as a FIFO was removed by a fresh run (its old lines trimmed) and
    replaced by a file: a reader waiting on it got nothing."""
    out = tmp_path / "run"
    out.mkdir()
    fifo = out / "metrics.jsonl"
    os.mkfifo(fifo)
    read: list[str] = []

    def drain() -> None:  # each evaluation opens it anew: read until the run is over
        while not read or read[-1] != "":
            with open(fifo) as f:
                read.append(f.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    args = [data["train"], "--head", "reg", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0]
    rc, _, err = cli([*args, "--steps", 2, "--eval-every", 1, "-q", "--out", out], capsys)
    for _ in range(1000):  # the reader's last open, once it waits there: its end of file
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            break
        except OSError:  # ENXIO: not waiting yet
            time.sleep(0.01)
    reader.join(10)
    assert (rc, err) == (0, "") and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [json.loads(line)["step"] for line in "".join(read).splitlines()] == [1, 2]


def test_cosine_never_raises_a_rate_below_its_floor(data, tmp_path):
    """With --lr below the floor of 1e-5, cosine climbed from 1e-6 to 1e-5 over the run."""
    out = train(config(data, tmp_path / "c", lr=1e-6, schedule="cosine", steps=4, eval_every=1))
    lrs = [m["lr"] for m in metric_lines(out.parent)]
    assert lrs == [1e-6] * 4, lrs


def test_cosine_takes_each_parameter_group_to_the_floor(data, tmp_path):
    """One cosine share for both groups took the new layers' rate to hint_lr * 1e-5 / lr: 5e-6
    for an affinity layer at 1e-3 beside a network at 2e-3, 3.3e-4 for hint layers at 1e-3
    beside a network at 3e-5."""
    out = train(config(data, tmp_path / "c", head="cls", affinity=8, lr=2e-3, hint_lr=1e-3,
                       schedule="cosine", steps=4, eval_every=1)).parent  # fmt: skip
    first, last = metric_lines(out)[0], metric_lines(out)[-1]
    assert first["lr"] > first["hint_lr"] > 1e-4, first
    assert last["lr"] == pytest.approx(1e-5) and last["hint_lr"] == pytest.approx(1e-5), last


def test_init_weights_that_do_not_fit_or_are_nan_are_one_line_before_any_work(
    data, tmp_path, capsys
):
    """An unexpected key was "internal error: RuntimeError: Error(s) in loading state_dict" (two
    lines); NaN weights trained two steps, then "training diverged ... (try a lower --lr)"."""
    base = train(config(data, tmp_path / "base", head="cls", steps=1))
    good = torch.load(base, weights_only=True)
    nan = {k: v * float("nan") if k == "head.weight" else v for k, v in good["model"].items()}
    for name, model, reason in [
        ("extra.pt", {**good["model"], "extra.weight": torch.zeros(3)},
         'weights do not fit the model: Unexpected key(s) in state_dict: "extra.weight"'),
        ("nan.pt", nan, "NaN or infinite weights in head.weight"),
    ]:  # fmt: skip
        bad = tmp_path / name
        torch.save({**good, "model": model}, bad)
        out = tmp_path / f"run-{Path(name).stem}"
        rc, _, err = cli([data["train"], "--head", "cls", "--init", bad, "--size", SIZE, "-b", 4,
                          "-j", 0, "--steps", 1, "-q", "--out", out], capsys)  # fmt: skip
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert err.startswith(f"recolor train: {bad}: broken checkpoint: {reason}"), err
        assert not out.exists()


def test_a_batch_of_one_per_process_at_a_tiny_size_is_one_line_under_torchrun(tmp_path):
    """Two images, two processes, --size 16: each process's batch is one image, which the
    check (counting all the images) let through; torch's own message followed, and OUT was left
    with files."""
    two = image_folder(tmp_path / "two", 2)
    out = tmp_path / "run"
    args = ["train", two, "--steps", "2", "--width", "8", "-b", "2", "--size", "16",
            "--device", "cpu", "-j", "0", "-q", "--out", out]  # fmt: skip
    p = torchrun(args)
    ours = [ln for ln in p.stderr.decode().splitlines() if ln.startswith("recolor train:")]
    assert p.returncode != 0 and ours == [
        "recolor train: a batch of one image at --size 16 cannot be trained (its global features"
        " are one value): give 2 images or more a batch and process, or --size 24 or more"
        " (see recolor train -h)"
    ], p.stderr.decode()
    assert not out.exists()


def test_output_is_out_as_in_every_tool(data, tmp_path, capsys):
    """train's output folder was --out (-o) only: `--output`, every other tool's, was an unknown
    option."""
    out = tmp_path / "run"
    args = [data["train"], "--head", "reg", "--size", SIZE, "-b", 4, "-j", 0, "--width", 8]
    rc, stdout, err = cli([*args, "--steps", 1, "-q", "--output", out], capsys)
    assert rc == 0 and stdout == f"{out / 'reg.pt'}\n", err


def test_a_train_refused_at_the_lock_leaves_the_holders_new_out(
    data, tmp_path, capsys, monkeypatch
):
    """Two trains started together into a new OUT both found it missing; the one refused at the
    lock removed the new (still empty) OUT of the one holding it, which then trained in a
    folder no lock held (a third run got in)."""
    import fcntl

    out = tmp_path / "new" / "run"
    held = []
    real_open = os.open

    def other_run_first(path, flags, *a, **kw):
        fd = real_open(path, flags, *a, **kw)
        if str(path) == str(out) and not held:  # the other run locks it between mkdir and flock
            held.append(real_open(out, os.O_RDONLY))
            fcntl.flock(held[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd

    monkeypatch.setattr(os, "open", other_run_first)
    args = [data["train"], "--head", "reg", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0,
            "--steps", 1, "--threads", 1, "-q", "--out", out]  # fmt: skip
    try:
        assert cli(args, capsys) == (1, "", f"recolor train: {out}: another recolor train is "
                                            "writing into it\n")  # fmt: skip
        assert out.is_dir()  # the holder's: not removed by the run it refused
    finally:
        monkeypatch.undo()
        os.close(held[0])


def test_weights_onto_a_fifo_are_written_in_place(data, tmp_path, capsys):
    """A FIFO (or device) in OUT named as the weights: written in place as every tool writes
    one, but the fsync after it failed ("recolor train: invalid argument", exit 1, no file
    named) though the reader had every byte."""
    from conftest import fifo_read_whole

    out = tmp_path / "run"
    out.mkdir()
    args = [data["train"], "--head", "reg", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0,
            "--steps", 1, "--threads", 1, "-q", "--out", out]  # fmt: skip
    with fifo_read_whole(out / "reg.pt") as got:
        assert cli(args, capsys) == (0, f"{out / 'reg.pt'}\n", "")
    import io

    sent = torch.load(io.BytesIO(got[0]), weights_only=True)
    assert sent["config"]["head"] == "reg" and (out / "reg.pt").is_fifo()


def test_an_overwrite_that_fails_before_training_keeps_the_old_run_whole(
    data, tmp_path, capsys, monkeypatch
):
    """--overwrite removes the old run when training starts; its statistics were replaced
    before that, as soon as the new ones were computed, so a run that failed in between left
    the old checkpoints beside another run's rebalance-stats.npz."""
    import recolor_tools.train as train_module

    out = tmp_path / "run"
    args = [data["train"], "--head", "cls", "--size", SIZE, "-b", 4, "--width", 8, "-j", 0, "-q"]
    assert cli([*args, "--steps", "1", "--out", out], capsys)[0] == 0
    kept = {f.name: f.read_bytes() for f in out.iterdir()}
    assert "rebalance-stats.npz" in kept

    def no_model(*args, **kwargs):
        raise RecolorError("out of memory (smaller sizes or batches need less)")

    monkeypatch.setattr(train_module, "build_model", no_model)
    rc, _, err = cli([*args, "--grid", "10", "--steps", "1", "--overwrite", "--out", out], capsys)
    assert (rc, err) == (1, "recolor train: out of memory (smaller sizes or batches need less)\n")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == kept


@pytest.mark.parametrize("which", ["training", "validation"])
def test_processes_that_list_other_training_images_are_refused(tmp_path, which):
    """Each process takes its share of its own list by position: machines of a launch whose
    folders differ trained on other images than asked (unsaid), or, with other counts, waited
    for good at the shorter epoch's end. Now one line naming the list, exit 2 everywhere,
    before any work."""
    folders = [image_folder(tmp_path / "d0", 4), image_folder(tmp_path / "d1", 3)]
    args = ["train", "--steps", "2", "--width", "8", "-b", "2", "--size", "24", "--device",
            "cpu", "-j", "0", "-q", "--out", tmp_path / "run"]  # fmt: skip
    per_rank = [[*args, d] for d in folders]
    if which == "validation":
        per_rank = [[*args, folders[0], "--val", d] for d in folders]
    ps = ranks_by_hand(*per_rank)
    ours = [ln for p in ps for ln in p.stderr.decode().splitlines() if ln.startswith("recolor")]
    assert [p.returncode for p in ps] == [2, 2] and ours == [
        f"recolor train: the processes listed different {which} images (rank 0: 4, rank 1: 3):"
        " every process must be given the same"
    ], [p.stderr for p in ps]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flag", "values", "said"),
    [
        ("--lr", ("1e-4", "0.1"), "0.0001, rank 1: 0.1"),  # replicas trained apart, unsaid
        ("--seed", ("0", "1"), "0, rank 1: 1"),  # overlapping shares, unsaid
        ("--steps", ("2", "3"), "2, rank 1: 3"),  # waited for good
        ("--width", ("8", "16"), "8, rank 1: 16"),  # DDP's "params[0] ... appears not to match"
    ],
)
def test_processes_given_other_settings_are_refused(tmp_path, flag, values, said):
    """Only the image lists were compared between the processes of a launch: other run-wide
    settings trained wrong weights unsaid, hung, or failed with an internal error. Now one line
    naming the option, exit 2 everywhere, before any work."""
    folder = image_folder(tmp_path / "d", 4)
    args = ["train", folder, "--width", "8", "--steps", "2", "-b", "2", "--size", "24",
            "--device", "cpu", "-j", "0", "-q", "--out", tmp_path / "run"]  # fmt: skip
    ps = ranks_by_hand(*[[*args, flag, v] for v in values])
    ours = [ln for p in ps for ln in p.stderr.decode().splitlines() if ln.startswith("recolor")]
    assert [p.returncode for p in ps] == [2, 2] and ours == [
        f"recolor train: the processes were given different {flag} (rank 0: {said}): every "
        "process must be given the same"
    ], [p.stderr for p in ps]
    assert not (tmp_path / "run").exists()


@pytest.mark.distributed  # two ranks by hand: beside other tests on a loaded machine, the kill
# came before the ranks had met (it failed once so, with a clean-clone suite running beside it)
def test_a_process_killed_mid_run_is_said_as_such_by_the_others(tmp_path):
    """A rank killed mid-run made the others say gloo's "internal error: RuntimeError: [...]
    Connection closed by peer [...] GLHF!": one line now, the run resumable."""
    import signal
    import socket
    import time

    folder = image_folder(tmp_path / "d", 4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    args = ["train", folder, "--width", "8", "--steps", "100000", "-b", "2", "--size", "24",
            "--grid", "20", "--ckpt-every", "1", "--device", "cpu", "-j", "0", "-q", "--out",
            tmp_path / "run"]  # fmt: skip
    procs = [subprocess.Popen([*RECOLOR, *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**env, "RANK": str(r)})
             for r in (0, 1)]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)
        _, err = procs[0].communicate(timeout=120)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 1 and err.decode() == (
        "recolor train: another process of the launch stopped (killed, or its machine lost): "
        "continue the run with --resume\n"
    )
    assert checkpoints.read_checkpoint(tmp_path / "run" / "last.pt")["step"] >= 1


def test_processes_that_resume_other_steps_or_classes_are_refused(tmp_path):
    """A stale copy of OUT on one machine resumed another step (gloo aborted that rank unsaid,
    after rank 0 had written a checkpoint of the mixed run); --stats files that differ
    between the machines trained other classes or weights."""
    folder = image_folder(tmp_path / "d", 4)
    args = ["--width", "8", "-b", "2", "--size", "24", "--device", "cpu", "-j", "0", "-q"]
    one = [folder, *args, "--grid", "20"]
    run(["train", *one, "--steps", "1", "--out", tmp_path / "a"], check_rc=0)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    run(["train", "--resume", "--steps", "2", "-q", "--out", tmp_path / "b"], check_rc=0)
    kept = (tmp_path / "a" / "last.pt").read_bytes()
    ps = ranks_by_hand(*[["train", "--resume", "--steps", "3", "--device", "cpu", "-j", "0",
                          "-q", "--out", tmp_path / o] for o in "ab"])  # fmt: skip
    ours = [ln for p in ps for ln in p.stderr.decode().splitlines() if ln.startswith("recolor")]
    assert [p.returncode for p in ps] == [2, 2] and ours == [
        "recolor train: the processes were given different --resume (the step of OUT/last.pt) "
        "(rank 0: 1, rank 1: 2): every process must be given the same"
    ], [p.stderr for p in ps]
    assert (tmp_path / "a" / "last.pt").read_bytes() == kept
    for grid in ("20", "24"):
        run(["rebalance-stats", folder, "--grid", grid, "-o", tmp_path / f"s{grid}.npz"],
            check_rc=0)  # fmt: skip
    stats = [["--stats", tmp_path / f"s{g}.npz"] for g in ("20", "24")]
    ps = ranks_by_hand(*[["train", folder, *args, "--steps", "1", *st, "--out", tmp_path / "c"]
                         for st in stats])  # fmt: skip
    ours = [ln for p in ps for ln in p.stderr.decode().splitlines() if ln.startswith("recolor")]
    assert [p.returncode for p in ps] == [2, 2] and len(ours) == 1, [p.stderr for p in ps]
    assert re.fullmatch(
        r"recolor train: the processes were given different classes or rebalancing \(--stats, "
        r"--classes\) \(rank 0: \d+ classes, sha256 \w{12}, rank 1: \d+ classes, sha256 \w{12}\): "
        r"every process must be given the same", ours[0])  # fmt: skip


def test_resume_alone_continues_a_killed_run_as_it_was_started(tmp_path):
    """--resume kept the run's learning rate, schedule and width, but took -b, --seed, --size
    and the length from its own command line: a run started with --seed 5 -b 2 --size 24
    --steps 40, killed and resumed with --resume alone, went on with another order, other crops
    and batches and 10 epochs (a note said so); DATA was required, the head was cls unless
    given, and --val not given again was dropped. Now those are the run's unless given again,
    so `train --resume --out OUT` ends with the weights and metrics of the run never killed;
    given with another value, a note names each with the run's."""
    import signal
    import time

    data = image_folder(tmp_path / "d", 4)
    here = ["--device", "cpu", "-j", "0", "--threads", "1"]  # this machine's, not the run's
    common = ["train", *here]
    started = [*common, data, "--head", "reg", "--width", "4", "--ckpt-every", "1", "--val",
               data, "--seed", "5", "-b", "2", "--size", "24", "--schedule", "cosine"]  # fmt: skip
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # `started`, never killed (in this process: the run is what is compared, not a command line)
    train(TrainConfig(data=[str(data)], head="reg", width=4, ckpt_every=1, val=[str(data)], seed=5,
                      batch_size=2, size=24, schedule="cosine", steps=40, out=whole, device="cpu",
                      workers=0, threads=1))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([*RECOLOR, *map(str, [*started, "--steps", "40", "--out", cut])], env=env)
    deadline = time.monotonic() + 120
    while not (cut / "last.prev.pt").exists() and p.poll() is None:  # step 2 or more
        assert time.monotonic() < deadline, "no second checkpoint"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    # (a kill between save_checkpoint's two renames leaves last.prev.pt alone: resumed from it)
    left = cut / "last.pt" if (cut / "last.pt").exists() else cut / "last.prev.pt"
    assert torch.load(left, weights_only=True)["step"] < 40, "not cut short"
    done = run([*common, "--resume", "--out", cut], check_rc=0)
    assert "note:" not in done.stderr.decode(), done.stderr.decode()
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(cut / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 40
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert metric_lines(cut)[-1]["val_loss"] == metric_lines(whole)[-1]["val_loss"] is not None
    p = run(["train", "--out", cut])  # DATA is the run's only with --resume
    assert (p.returncode, p.stderr.decode()) == (2, "recolor train: missing DATA, the training "
                                                 "images (--resume takes the run's) (see recolor "
                                                 "train -h)\n")  # fmt: skip
    p = run([*common, "--resume", "--out", cut, "--steps", "41", "-b", "3", "--seed", "1"],
            check_rc=0)  # fmt: skip
    notes = [ln for ln in p.stderr.decode().splitlines() if "note:" in ln]
    assert notes == [
        "recolor train: note: -b 3 (the run's: 2), --seed 1 (the run's: 5); resume is not "
        "exact (give the run's values to continue it as it was)"
    ], p.stderr.decode()
    p = run([*common, "--resume", "--out", cut, "--steps", "10"], check_rc=0)  # a shorter run
    assert "recolor train: note: the run is at step 41, past the 10 asked: nothing to train; " \
           "its weights are written as they are" in p.stderr.decode()  # fmt: skip


@pytest.mark.parametrize("what", ["empty folder", "stats", "init"])
def test_an_error_of_one_process_alone_is_said_and_stops_every_process(tmp_path, what):
    """A folder, --stats or --init file missing on one machine of a launch: that process exited
    unsaid (what is about the whole run is rank 0's to say) and rank 0 failed at its next
    collective with "internal error: RuntimeError: ... Connection reset by peer". Now rank 0
    says that process's line, naming it, every process exits alike, nothing is written."""
    data = image_folder(tmp_path / "d", 4)
    args = ["train", "--steps", "2", "--width", "8", "-b", "2", "--size", "24", "--device",
            "cpu", "-j", "0", "-q", "--out", tmp_path / "run", "--head", "cls"]  # fmt: skip
    gone, empty = tmp_path / "gone", tmp_path / "empty"
    theirs, line = {
        "empty folder": ([empty], f"{empty}: is a directory, and no input was found in it"),
        "stats": ([data, "--stats", gone], f"{gone}: no such file"),
        "init": ([data, "--init", gone], f"{gone}: no such file"),
    }[what]  # fmt: skip
    empty.mkdir()
    ps = ranks_by_hand([*args, data], [*args, *theirs])
    assert [p.returncode for p in ps] == [1, 1], [p.stderr for p in ps]
    assert [p.stderr.decode() for p in ps] == [f"recolor train: {line} (rank 1)\n", ""]
    assert not (tmp_path / "run").exists()


def test_out_files_checked_are_those_the_run_writes_or_removes(data, tmp_path, capsys):
    """OUT/rebalance-stats.npz as a folder refused a reg run and an --init run, which never
    write it ("is a directory (this run writes a file there)"), while --overwrite --stats, which
    removes the old run's statistics, met it only after removing the old run's checkpoints:
    exit 1, the old run gone and nothing trained."""
    out = tmp_path / "run"
    (out / "rebalance-stats.npz").mkdir(parents=True)
    config(data, out, head="reg").check_out()  # writes no statistics: nothing in the way
    config(data, out, init=tmp_path / "w.pt").check_out()  # keeps --init's
    with pytest.raises(RecolorError, match="is a directory"):  # computes its own
        config(data, out).check_out()
    (out / "last.pt").write_bytes(b"an old run")
    (out / "cls.pt").write_bytes(b"its weights")
    stats = tmp_path / "s.npz"
    stats.write_bytes(b"read only after check_out")
    rc, _, err = cli([data["train"], "--stats", stats, "--overwrite", "--size", SIZE, "-b", 4,
                      "-j", 0, "--steps", 1, "-q", "--width", 8, "--out", out], capsys)  # fmt: skip
    assert (rc, err) == (1, f"recolor train: {out / 'rebalance-stats.npz'}: is a directory "
                            "(this run writes or removes a file there)\n")  # fmt: skip
    assert (out / "last.pt").read_bytes() == b"an old run" and (out / "cls.pt").exists()
