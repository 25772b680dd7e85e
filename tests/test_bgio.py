"""recolor predict's background I/O (--io-workers): the serial path's outputs, byte for byte.

Reading the next batch and composing finished images on threads must change nothing a user can
see: the files written, the paths printed and their order, one error line for a bad file while
the others go on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run, smooth_image, tiny_checkpoint, write_rgb

from recolor_tools import predict
from recolor_tools.errors import RecolorError

SIZES = [(40, 56), (64, 48), (33, 71), (48, 48), (90, 30), (56, 40), (40, 56)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "cls.pt", "cls")


def _inputs(tmp_path: Path, bad_at: int) -> list[Path]:
    """Generated PNG and JPEG images of several working shapes; a broken file at ``bad_at``."""
    paths = []
    for i, (h, w) in enumerate(SIZES):
        ext = ".jpg" if i % 2 else ".png"
        paths.append(write_rgb(tmp_path / f"in{i}{ext}", smooth_image(h, w, seed=i)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths.insert(bad_at, bad)
    return paths


def test_cli_background_io_is_byte_identical(tmp_path, weights):
    paths = _inputs(tmp_path, bad_at=3)
    outs = {}
    for n in (0, 2, 3):
        out = tmp_path / f"out{n}"
        args = ["predict", *paths, "-w", weights, "-b", "2", "--io-workers", str(n), "-o", out]
        p = run([*args, "--device", "cpu"], cwd=tmp_path, check_rc=1)
        err = p.stderr.decode().splitlines()
        assert len(err) == 1 and err[0].startswith(f"recolor predict: {paths[3]}: ")
        printed = [Path(line).relative_to(out) for line in p.stdout.decode().splitlines()]
        good = [q for i, q in enumerate(paths) if i != 3]
        assert [q.stem for q in printed] == [q.stem for q in good]  # input order
        outs[n] = {q: (out / q).read_bytes() for q in printed}
    assert len(outs[0]) == len(SIZES)
    assert outs[2] == outs[0] and outs[3] == outs[0]


def test_api_background_io_same_results_and_order(tmp_path, weights, monkeypatch):
    # A pixel budget of about two images: batches end on pixels as well as on count.
    monkeypatch.setattr(predict, "BATCH_PIXELS", 2 * 48 * 64)
    paths = [str(p) for p in _inputs(tmp_path, bad_at=0)] + [str(tmp_path / "missing.png")]
    predictor = predict.Predictor.load(weights, "cls")
    runs = {n: list(predictor.predict_files(paths, 3, io_workers=n)) for n in (0, 1, 4)}
    for n, got in runs.items():
        assert [p for p, _ in got] == paths, n
        kinds = [isinstance(r, RecolorError) for _, r in got]
        assert kinds == [True] + [False] * len(SIZES) + [True], n
        for (_, a), (_, b) in zip(runs[0], got, strict=True):
            if not isinstance(a, RecolorError):
                assert a.dtype == b.dtype and np.array_equal(a, b), n


def test_api_background_io_stops_early(tmp_path, weights):
    """Closing the generator after one result returns (no reader left blocked on the pool)."""
    paths = [str(p) for p in _inputs(tmp_path, bad_at=len(SIZES))]
    predictor = predict.Predictor.load(weights, "cls")
    found = predictor.predict_files(paths, 2, io_workers=2)
    path, rgb = next(found)
    found.close()
    assert path == paths[0] and rgb.shape[:2] == SIZES[0]
