"""recolor_tools.color: known values, and the strip-wise conversion against the whole-image one."""

from __future__ import annotations

import numpy as np
import pytest

from recolor_tools import color


def test_known_lab_values():
    # sRGB primaries in CIELAB (D65), as tabulated by Lindbloom's calculator and skimage.
    rgb = np.array([[[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]], np.float32)
    want = [[100, 0, 0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86],
            [0, 0, 0]]  # fmt: skip
    np.testing.assert_allclose(color.rgb_to_lab(rgb)[0], want, atol=0.05)
    np.testing.assert_allclose(color.lab_to_rgb(color.rgb_to_lab(rgb)), rgb, atol=1e-3)


def test_integer_scaling_round_trips_every_level():
    for dtype, to_int in ((np.uint8, color.to_uint8), (np.uint16, color.to_uint16)):
        levels = np.arange(np.iinfo(dtype).max + 1, dtype=dtype).reshape(1, -1, 1)
        f = color.to_float(levels)
        assert f.dtype == np.float32 and f.min() == 0 and f.max() == 1
        assert np.array_equal(to_int(f), levels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_lab_to_rgb_as_in_strips_is_the_whole_conversion(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    lab = np.dstack([rng.uniform(0, 100, (37, 23)), rng.uniform(-128, 127, (37, 23, 2))])
    lab = lab.astype(np.float32)  # many colours outside the gamut: clamped alike
    whole = color.lab_to_rgb(lab)
    rounded = {np.uint8: color.to_uint8, np.uint16: color.to_uint16}.get(dtype)
    want = whole if rounded is None else rounded(whole)
    monkeypatch.setattr(color, "STRIP_PIXELS", 23 * 5)  # strips of 5 rows, the last one short
    got = color.lab_to_rgb_as(lab, dtype)
    assert got.dtype == dtype and np.array_equal(got, want)
