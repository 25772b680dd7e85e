"""weights/oracle.py (the model card's hue/magnitude analysis) on generated images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_oracle_rows_order_as_their_information(tmp_path, val_folder):
    data = val_folder
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
