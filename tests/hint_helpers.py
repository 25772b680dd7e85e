"""Shared by the hint tests: tiny random-weight cls and reg checkpoints, a test image, and
how far an output is from the hints at their pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, smooth_image, tiny_checkpoint, write_rgb

SHIPPED = ROOT / "weights" / "cls.pt"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {head: tiny_checkpoint(d / f"{head}.pt", head, prior=True) for head in ("cls", "reg")}


def lab(rgb_u8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb_u8.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def hex_of(rgb_u8: np.ndarray, x: int, y: int) -> str:
    return "#" + bytes(rgb_u8[y, x].tolist()).hex()


def hint_error(out: np.ndarray, truth: np.ndarray, xy: list[tuple[int, int]]) -> float:
    """Median a/b distance between output and truth at the hinted pixels (the hints are the
    truth's own colours there, so this is the distance to the hint)."""
    a, b = lab(out), lab(truth)
    return float(np.median([np.linalg.norm(a[y, x, 1:] - b[y, x, 1:]) for x, y in xy]))


@pytest.fixture
def image(tmp_path) -> tuple[Path, np.ndarray]:
    rgb = smooth_image(60, 80, 11)
    return write_rgb(tmp_path / "a.png", rgb), rgb
