"""weights/evaluate_hints.py (the model card's guided-recolouring table) on generated images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run, smooth_image, write_rgb

ROOT = Path(__file__).resolve().parent.parent


def test_truth_hints_raise_the_scores_and_hold(tmp_path):
    data = tmp_path / "val"
    data.mkdir()
    for i, (h, w) in enumerate([(72, 96), (90, 60), (64, 64)]):
        write_rgb(data / f"im{i}.png", smooth_image(h, w, seed=i))
    run(["rebalance-stats", data, "-o", tmp_path / "s.npz", "-q"], check_rc=0)
    card = tmp_path / "card.md"
    card.write_text("before\n<!-- hints:start -->\nold\n<!-- hints:end -->\nafter\n")
    cmd = [sys.executable, ROOT / "weights" / "evaluate_hints.py", data, "--stats"]
    cmd += [tmp_path / "s.npz", "--points", "2", "50", "--card", card]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = {}
    for line in p.stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| guidance"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    assert list(rows) == [
        "automatic",
        "2 points",
        "50 points",
        "own 8-colour palette",
        "another poster's palette",
    ]
    psnr = {k: float(v[0]) for k, v in rows.items()}
    # 50 patches of the truth on these small smooth images: far closer to it than automatic
    assert psnr["50 points"] > psnr["automatic"] + 3
    assert float(rows["50 points"][4]) < 6  # fidelity: hinted pixels hold the hint
    assert rows["automatic"][4] == "–" and rows["automatic"][5] == "+0.00"
    text = card.read_text()
    assert text.startswith("before\n<!-- hints:start -->\n3 images") and "old" not in text
    assert text.endswith("<!-- hints:end -->\nafter\n") and "| 50 points |" in text
