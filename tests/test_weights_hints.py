"""weights/evaluate_hints.py (the model card's guided-recolouring table) on generated images."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CLASSES, stats_of, val_images, write_rgb

ROOT = Path(__file__).resolve().parent.parent
EVALUATE = ROOT / "weights" / "evaluate_hints.py"


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> tuple[Path, Path]:
    """conftest's three validation images and their stats, once for the tests here."""
    data = tmp_path_factory.mktemp("val") / "val"
    return data, stats_of(data.parent / "s.npz", *val_images(data))


def evaluate(data: Path, stats: Path, *args) -> dict[str, list[str]]:
    """Run evaluate_hints.py; its table's cells by row name."""
    cmd = [sys.executable, EVALUATE, data, "--stats", stats, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = {}
    for line in p.stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| guidance"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_truth_hints_raise_the_scores_and_hold(tmp_path, val):
    data, stats = val
    card = tmp_path / "card.md"
    card.write_text("before\n<!-- hints:start -->\nold\n<!-- hints:end -->\nafter\n")
    rows = evaluate(data, stats, "--points", "2", "50", "--card", card)
    assert list(rows) == [
        "automatic",
        "2 points",
        "50 points",
        "4 colourful points",
        "own 8-colour palette",
        "another poster's palette",
    ]
    psnr = {k: float(v[0]) for k, v in rows.items()}
    # 50 patches of the truth on these small smooth images: far closer to it than automatic
    assert psnr["50 points"] > psnr["automatic"] + 3
    assert float(rows["50 points"][4]) < 6  # fidelity: hinted pixels hold the hint
    assert float(rows["4 colourful points"][4]) < 6
    assert rows["automatic"][4] == "–" and rows["automatic"][5] == "+0.00"
    text = card.read_text()
    assert text.startswith("before\n<!-- hints:start -->\n3 images") and "old" not in text
    assert text.endswith("<!-- hints:end -->\nafter\n") and "| 50 points |" in text


def test_colourful_points_find_the_most_chromatic_places():
    from recolor_tools.color import rgb_to_lab

    spec = importlib.util.spec_from_file_location("evaluate_hints", EVALUATE)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    colourful_points = script.colourful_points

    rgb = np.full((90, 120, 3), 0.5, np.float32)  # gray, a red square right, a pale blue top left
    rgb[40:52, 90:102] = (0.9, 0.1, 0.1)
    rgb[10:22, 12:24] = (0.45, 0.5, 0.65)
    h = colourful_points(rgb, 2)
    (x0, y0), (x1, y1) = h.xy.tolist()
    assert 90 <= x0 < 102 and 40 <= y0 < 52 and 12 <= x1 < 24 and 10 <= y1 < 22
    truth = rgb_to_lab(rgb)[:, :, 1:]
    np.testing.assert_allclose(h.ab, [truth[45, 95], truth[15, 17]], atol=0.5)  # inside: exact
    assert len(colourful_points(rgb, 4).xy) == 4  # the most chromatic of the gray cells too
    # an image under 51 px left its cells empty (8 px in from each edge): argmax of nothing
    assert len(colourful_points(rgb[:40, :30], 4).xy) == 4
    assert len(colourful_points(rgb[:2, :2], 4).xy) <= 4


def test_another_posters_palette_is_never_the_images_own(tmp_path):
    """The other poster was drawn from all of them, the image itself included: with two
    images, half the draws scored the image's own palette as "another poster's"."""
    data = tmp_path / "two"
    data.mkdir()
    rgbs = []
    for i, c in enumerate([(220, 20, 20), (20, 40, 220)]):
        noise = np.random.default_rng(i).normal(0, 25, (64, 64, 3))
        rgbs.append(np.clip(noise + c, 0, 255).astype(np.uint8))
        write_rgb(data / f"e{i}.png", rgbs[-1])
    stats = stats_of(tmp_path / "s.npz", *rgbs)
    for seed in ("0", "1"):
        rows = evaluate(data, stats, "--points", "2", "--colourful", "0",
                        "--seed", seed)  # fmt: skip
        assert rows["another poster's palette"] != rows["own 8-colour palette"], seed


def test_the_oracle_spreads_hints_by_the_truth_colours(val):
    """--oracle: each hint reaches the cells of its own true colour, so forced (gamma 30) a few
    hints beat what the model's features make of the same hints."""
    args = ["--points", "5", "--colourful", "0", "--no-palettes", "--radius", "0", "--gamma", "30"]
    model = evaluate(*val, *args)
    oracle = evaluate(*val, *args, "--oracle", "10")
    assert list(oracle) == ["automatic", "5 points"]
    assert oracle["automatic"] == model["automatic"]  # the same network, unguided
    psnr = {k: float(v[0]) for k, v in oracle.items()}
    assert psnr["5 points"] > psnr["automatic"] + 0.5
    # forced by look-alike features, hints paint over other colours (about -0.6 dB here)
    assert psnr["5 points"] > float(model["5 points"][0]) + 1


def test_an_oracle_for_a_hint_model_and_no_images_are_said(tmp_path, val):
    """--oracle with a model that takes hints steered it without them, under a table headed
    with the --hint-model-steer asked; --first 0 was said as "--skip 0"."""
    from recolor_tools import checkpoints, models

    data, stats = val
    model = models.Colorizer(models.ModelConfig(head="cls", num_classes=len(CLASSES), width=8,
                                                hints=True))  # fmt: skip
    hinted = tmp_path / "hints.pt"
    checkpoints.save_checkpoint(hinted, checkpoints.make_checkpoint(
        model.eval(), classes=CLASSES, grid=20, data={"size": 48}))  # fmt: skip
    for args, says in ((["--weights", hinted, "--oracle", "10"], "does not run a hint model"),
                       (["--first", "0"], "--skip 0, --first 0)")):  # fmt: skip
        cmd = [sys.executable, EVALUATE, data, "--stats", stats, "--points", "2", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert p.returncode == 2 and says in p.stderr, p.stderr


def test_the_readme_montage_builds(tmp_path):
    """docs/guided_montage.py (the README's guided picture) still runs on the public API: one row
    per bundled example, automatic | hints | palette, hints drawn as dots."""
    out = tmp_path / "guided.jpg"
    p = subprocess.run([sys.executable, ROOT / "docs" / "guided_montage.py", out],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    grid = cv2.imread(str(out))
    examples = [cv2.imread(str(f)) for f in sorted((ROOT / "examples").glob("*.jpg"))]
    h, w = examples[0].shape[:2]
    assert grid.shape == (len(examples) * (h + 6) - 6, 3 * w + 12, 3)
    auto, hinted = grid[:h, :w].astype(int), grid[:h, w + 6 : 2 * w + 6].astype(int)
    assert np.abs(auto - hinted).mean() > 2  # the hints changed the first example
