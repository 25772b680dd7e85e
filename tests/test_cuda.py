"""CUDA paths: mixed-precision training, resume and prediction on a GPU.

Skipped where CUDA is not available (CI has no GPU); run on a GPU machine with
``pytest tests/test_cuda.py``. The CPU tests in test_train.py and test_predict.py cover the same
logic; these check what only a GPU exercises: autocast (bf16, and fp16 with a GradScaler),
channels-last tensors, pinned memory, checkpoints written from CUDA tensors and read on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_rgb_u8, run, smooth_image, write_rgb

from recolor_tools import checkpoints, models
from recolor_tools.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cuda-data")
    for i in range(16):
        write_rgb(d / f"{i:02d}.png", smooth_image(64, 48, i))
    return d


def metric_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_training_on_cuda_learns_and_loads_on_cpu(data, tmp_path, precision):
    out = tmp_path / precision
    args = [
        "train", "--head", "reg", data, "--val", data, "--steps", "30", "--eval-every", "10",
        "--size", SIZE, "--batch-size", "8", "--width", "8", "--lr", "3e-3", "--workers", "2",
        "--device", "cuda", "--precision", precision, "--out", out, "-q",
    ]  # fmt: skip
    run(args, check_rc=0)
    lines = metric_lines(out)
    assert [m["step"] for m in lines] == [10, 20, 30]
    assert all(np.isfinite(m["train_loss"]) and np.isfinite(m["val_loss"]) for m in lines)
    assert lines[-1]["train_loss"] < 0.8 * lines[0]["train_loss"], lines
    # saved from CUDA tensors; usable on a machine without a GPU
    ckpt = torch.load(out / "reg.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    image = write_rgb(tmp_path / "in.png", smooth_image(50, 70, 3))
    p = run(["predict", "--head", "reg", "--weights", out / "reg.pt", "--device", "cpu",
             "-o", tmp_path / "out.png", image], check_rc=0)  # fmt: skip
    assert read_rgb_u8(tmp_path / "out.png").shape == (50, 70, 3), p.stderr


def test_cls_head_with_rebalancing_trains_on_cuda(data, tmp_path):
    cfg = TrainConfig(
        data=[str(data)], head="cls", out=tmp_path / "cls", size=SIZE, batch_size=8, width=8,
        grid=10, steps=24, eval_every=8, lr=1e-2, workers=0, device="cuda", quiet=True,
        val=[str(data)],
    )  # fmt: skip
    train(cfg)
    lines = metric_lines(cfg.out)
    assert lines[-1]["train_loss"] < 0.95 * lines[0]["train_loss"], lines
    assert all(0 <= m["val_auc"] <= 1 for m in lines)


def test_affinity_trains_on_cuda_beside_the_network(data, tmp_path):
    # The affinity loss (guide.affinity_loss) under bf16 autocast: the layer sees bf16 features.
    cfg = TrainConfig(
        data=[str(data)], head="cls", out=tmp_path / "aff", size=SIZE, batch_size=8, width=8,
        grid=10, steps=12, lr=1e-2, workers=0, device="cuda", quiet=True, affinity=16,
    )  # fmt: skip
    model, _ = checkpoints.load_checkpoint(train(cfg))  # on the CPU
    w = model.affinity.weight[:, :, 0, 0]
    assert torch.isfinite(w).all() and not torch.equal(w, torch.eye(16))


def test_resume_on_cuda_reaches_the_same_weights(data, tmp_path):
    """As on the CPU (test_train.py): 6 steps in one go == 3 steps, then --resume to 6, bit for
    bit, with bf16 autocast. (One process: cudnn.benchmark picks its kernels by timing, and
    another process may pick others, which changes the last bits.)"""
    kw = dict(head="reg", size=SIZE, batch_size=4, width=8, lr=2e-3, workers=0, device="cuda",
              quiet=True, eval_every=2, ckpt_every=100)  # fmt: skip
    train(TrainConfig(data=[str(data)], out=tmp_path / "a", steps=6, **kw))
    train(TrainConfig(data=[str(data)], out=tmp_path / "b", steps=3, **kw))
    train(TrainConfig(data=[str(data)], out=tmp_path / "b", steps=6, resume=True, **kw))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert a["train_state"]["scheduler"] == b["train_state"]["scheduler"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_predict_on_cuda_matches_cpu(tmp_path):
    """The shipped cls and reg weights give the same picture on the GPU as on the CPU, up to
    TF32 convolutions (cuDNN's default): within a few 8-bit levels."""
    image = write_rgb(tmp_path / "in.png", smooth_image(120, 90, 7))
    for head in models.HEADS:
        outs = {}
        for device in ("cpu", "cuda"):
            outs[device] = tmp_path / f"{head}-{device}.png"
            run(["predict", "--head", head, "--device", device, "--precision", "fp32",
                 "-o", outs[device], image], check_rc=0)  # fmt: skip
        a, b = (read_rgb_u8(outs[d]).astype(np.int16) for d in ("cpu", "cuda"))
        diff = np.abs(a - b)
        print(f"{head}: mean |cpu - cuda| {diff.mean():.3f}, 99.9% {np.quantile(diff, 0.999)}")
        assert diff.mean() < 0.5 and np.quantile(diff, 0.999) <= 6, head


def test_predict_in_bf16_stays_close_to_float32(tmp_path):
    """predict's default on a GPU (--precision auto: bf16 autocast for the network, guidance and
    decode in float32) gives nearly the float32 picture: within a few 8-bit levels on average."""
    image = write_rgb(tmp_path / "in.png", smooth_image(160, 120, 8))
    outs = {}
    for precision in ("fp32", "auto"):
        outs[precision] = tmp_path / f"{precision}.png"
        run(["predict", "--device", "cuda", "--precision", precision, "--hint", "5,5=#c0392b",
             "-o", outs[precision], image], check_rc=0)  # fmt: skip
    a, b = (read_rgb_u8(outs[p]).astype(np.int16) for p in ("fp32", "auto"))
    diff = np.abs(a - b)
    print(f"mean |fp32 - bf16| {diff.mean():.3f}, 99.9% {np.quantile(diff, 0.999)}")
    assert diff.mean() < 1.5 and np.quantile(diff, 0.999) <= 16
