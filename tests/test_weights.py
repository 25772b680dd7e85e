"""The shipped weights: present, small, self-describing, and they recolor an image end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT, read_rgb_u8, run, smooth_image, write_rgb

from recolor_tools import quant
from recolor_tools.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    default_weights,
    read_checkpoint,
)
from recolor_tools.color import rgb_to_lab

HEADS = ("cls", "reg")


@pytest.mark.parametrize("head", HEADS)
def test_shipped_file_is_small_and_self_describing(head):
    path = default_weights(head)
    assert path == ROOT / "weights" / f"{head}.pt" or path.name == f"{head}.pt"
    assert path.stat().st_size <= 25 * 2**20
    raw = torch.load(path, weights_only=True, map_location="cpu")
    ckpt = read_checkpoint(path)
    assert raw["format"] == ckpt["format"] == CHECKPOINT_FORMAT
    assert ckpt["version"] in (1, CHECKPOINT_VERSION)  # reg.pt predates version 2
    assert ckpt["head"] == head
    assert "train_state" not in ckpt or not ckpt["train_state"], "optimizer state shipped"
    assert ckpt["data"]["n_train"] > 1000 and ckpt["data"]["size"] >= 64
    if head == "cls":
        classes = ckpt["classes"].numpy()
        np.testing.assert_array_equal(classes, quant.gamut_classes(int(ckpt["grid"])))
        reb = ckpt["rebalance"]
        prior, weights = reb["prior"].double(), reb["weights"].double()
        assert len(prior) == len(weights) == len(classes)
        assert abs(float((prior * weights).sum()) - 1.0) < 1e-3
        assert ckpt["config"].get("affinity", 0) > 0, "no learned affinity (make affinity-weights)"
    else:
        assert ckpt["classes"] is None


@pytest.mark.parametrize("head", HEADS)
def test_shipped_weights_recolor_a_generated_image(tmp_path, head):
    rgb = smooth_image(90, 60, 4)
    gray = np.repeat(rgb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    src = write_rgb(tmp_path / "gray poster.png", gray)
    p = run(["predict", "--head", head, "-o", f"{tmp_path}/out/", src], check_rc=0)
    out = tmp_path / "out" / "gray poster.png"
    assert p.stdout.decode().strip() == str(out)
    pred = read_rgb_u8(out)
    assert pred.shape == gray.shape
    lab_in = rgb_to_lab(gray.astype(np.float32) / 255)
    lab_out = rgb_to_lab(pred.astype(np.float32) / 255)
    chroma = np.hypot(lab_out[..., 1], lab_out[..., 2])
    assert chroma.mean() > 2.0, "the shipped model left the gray image gray"
    # Low-chroma, mid-lightness pixels are far from the gamut's edge: no clamp moved their L.
    unclamped = (chroma < 25) & (lab_in[..., 0] > 15) & (lab_in[..., 0] < 85)
    assert unclamped.sum() > 100
    assert np.abs(lab_out[..., 0] - lab_in[..., 0])[unclamped].max() < 2.0
