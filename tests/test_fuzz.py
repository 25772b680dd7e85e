"""Fuzzing the readers of untrusted bytes, the record reader, the image-reading path and the
JSON hint-file reader: whatever the bytes, nothing escapes but RecolorError.

Derandomized and bounded in CI (RECOLOR_FUZZ_EXAMPLES, default 300 per target); ``make fuzz``
runs 100,000. Inputs that once found a bug are kept as ``@example``s (the regression corpus)."""

from __future__ import annotations

import io
import json
import os
import struct

import numpy as np
import pytest
from conftest import smooth_image
from corpus import encoded, good_record, png_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from recolor_tools.errors import RecolorError
from recolor_tools.hintfiles import read_hints
from recolor_tools.imageio import decode_rgb
from recolor_tools.records import check_finite, iter_records

FUZZ = settings(
    max_examples=int(os.environ.get("RECOLOR_FUZZ_EXAMPLES", "300")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

_RGB = smooth_image(12, 10, 9)
IMAGE_SEEDS = [encoded(ext, _RGB) for ext in (".png", ".jpg", ".bmp", ".tif", ".webp")]
IMAGE_SEEDS.append(png_bytes(16, 4))
STREAM_SEEDS = [good_record("a.png", 3, 4), good_record("b.png", 1, 1) * 2]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes overwritten, inserted or deleted, maybe cut short."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["set", "insert", "delete", "max"]))
        if op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        elif data:
            data[i : i + 4] = b"\xff\xff\xff\x7f"  # a large size field
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _any_bytes(seeds):
    return st.one_of(st.binary(max_size=200), mutated(seeds))


@pytest.fixture(autouse=True)
def _small_limit(monkeypatch):
    # A mutated size field may claim up to the limit; keep each decode small.
    monkeypatch.setenv("RECOLOR_MAX_PIXELS", str(1 << 16))


@FUZZ
@given(_any_bytes(STREAM_SEEDS))
@example(b"RCLR\x01\x00\x00\x00" + struct.pack("<I", 100_000) + b"[" * 100_000)  # RecursionError
@example(STREAM_SEEDS[0].replace(b'"shape":[3', b'"shape":[true'))  # bools as sizes
@example(STREAM_SEEDS[0] + b"RC")  # a few bytes after the last record
def test_record_reader_raises_only_recolor_errors(data):
    try:
        for rec in iter_records(io.BytesIO(data), "fuzz"):
            assert all(arr.ndim >= 1 for arr in rec.arrays.values())
            try:
                check_finite(rec)
            except RecolorError as e:
                assert e.path == rec.name and "NaN" in e.reason
    except RecolorError as e:
        assert e.path == "fuzz" and "\n" not in e.reason


@FUZZ
@given(_any_bytes(IMAGE_SEEDS))
@example(png_bytes(100_000, 100_000, b"x"))  # a bomb: once OpenCV's assertion text
@example(b"\xff\xd8\xff\xd9")  # a JPEG with no frame: once "not a readable image"
def test_image_reader_raises_only_recolor_errors(data):
    try:
        rgb = decode_rgb(data, "fuzz")
    except RecolorError as e:
        assert e.path == "fuzz" and "\n" not in e.reason
        assert "Assertion" not in e.reason and "cv::" not in e.reason
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.float32
    assert rgb.shape[0] * rgb.shape[1] <= 1 << 16
    assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1


_KEYS = st.sampled_from(["points", "palette", "x", "y", "color", "size", "weight"]) | st.text(
    max_size=3
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["#c0392b", "#fff", "50%", "100%", "1", "-3", "1e400", "nan", "#ff"])
    | st.text(max_size=6)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)
HINT_SEED = json.dumps(
    {
        "points": [{"x": 3, "y": "50%", "color": "#c0392b", "size": 3}],
        "palette": [{"color": "#1d4e89", "weight": 0.5}],
    }  # fmt: skip
).encode()


@FUZZ
@given(st.one_of(_JSON.map(lambda doc: json.dumps(doc).encode()), _any_bytes([HINT_SEED])))
@example(b'{"points": [{"x": 1, "y": 1, "color": 5}]}')  # once AttributeError
@example(b'{"points": [{"x": 1, "y": 1, "color": "#fff", "size": 1e400}]}')  # once OverflowError
@example(b'{"points": [{"x": 1, "y": 1, "color": "#fff", "size": 1e20}]}')  # once OverflowError
@example(b"[" * 100_000)  # once RecursionError
@example(b'{"palette": [{"color": "#fff", "weight": 1e-300}]}')  # once a white image
def test_hint_file_reader_raises_only_recolor_errors(tmp_path, data):
    """Whatever a JSON hint file holds, reading it and placing it on an image gives hints or
    one RecolorError line naming the file."""
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        hints = read_hints(path)
        resolved = hints.resolve(10, 12)
    except RecolorError as e:
        assert str(e.path) == str(path) or e.path is None
        assert "\n" not in e.reason
        return
    squares = resolved.squares()
    assert ((squares[:, :2] >= 0) & (squares[:, 2:] <= [12, 10])).all()
    assert np.isfinite(resolved.ab).all() and np.isfinite(resolved.palette_w).all()
    assert (resolved.palette_w > 0).all()  # a weight that is 0 as float32 made NaN colours
