"""recolor_tools.color: known values, and the strip-wise conversion against the whole-image one."""

from __future__ import annotations

import warnings

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


def test_lab_round_trips_8_and_16_bit_samples():
    """Every 8-bit colour of a dense sample comes back exactly, and 16-bit ones within 0.5 of
    65,535: OpenCV's float conversion (which interpolates the sRGB curve from a table) brought
    16-bit samples back up to 150 off. The definitions stay OpenCV's: its conversion differs
    from this one by that table's error only."""
    import cv2

    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (256, 256, 3)).astype(np.uint8)
    rgb8[0, :, :] = np.arange(256)[:, None]  # every gray level, and pure channels
    rgb8[1, :, 0], rgb8[1, :, 1:] = np.arange(256), 0
    f8 = color.to_float(rgb8)
    assert np.array_equal(color.lab_to_rgb_as(color.rgb_to_lab(f8), np.uint8), rgb8)
    rgb16 = rng.integers(0, 65536, (256, 256, 3)).astype(np.uint16)
    back = color.lab_to_rgb_as(color.rgb_to_lab(color.to_float(rgb16)), np.uint16)
    assert np.abs(back.astype(np.int64) - rgb16).max() <= 1
    theirs = cv2.cvtColor(f8, cv2.COLOR_RGB2Lab)
    np.testing.assert_allclose(color.rgb_to_lab(f8), theirs, atol=0.5)
    lab = color.rgb_to_lab(f8)
    np.testing.assert_allclose(
        color.lab_to_rgb(lab), cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), atol=3e-3
    )


def test_rgb_to_l_and_samples_to_lab_are_rgb_to_lab_to_the_bit():
    """predict's full-resolution L (rgb_to_l: f of Y alone) and the Lab of images as read
    (samples_to_lab: to-lab, rebalance-stats), which take the sRGB curve of 8-bit samples from
    a table, are rgb_to_lab's exactly, for every 8-bit colour (a gray image's broadcast view
    too), 16-bit samples of either byte order, and floats (outside [0, 1] too, as a wide
    profile's conversion gives them); their refusals are rgb_to_lab's."""
    levels = np.arange(1 << 24, dtype=np.uint32)
    rgb8 = np.stack([levels >> 16, levels >> 8 & 255, levels & 255], -1).astype(np.uint8)
    rgb8 = rgb8.reshape(4096, 4096, 3)
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (256, 256, 3)).astype(np.uint16)
    gray = np.broadcast_to(rgb8[:64, :64, 2:], (64, 64, 3))
    wide = rng.uniform(-0.2, 1.2, (64, 64, 3)).astype(np.float32)
    for rgb in (rgb8, gray, rgb16, rgb16.astype(">u2"), rng.random((64, 64, 3)), wide):
        want = color.rgb_to_lab(color.to_float(rgb) if rgb.dtype.kind == "u" else rgb)
        lab, L = color.samples_to_lab(rgb), color.rgb_to_l(rgb)
        assert lab.dtype == L.dtype == np.float32
        assert np.array_equal(lab, want) and np.array_equal(L, want[:, :, 0])
    for convert in (color.rgb_to_l, color.samples_to_lab):
        with pytest.raises(ValueError, match="NaN or infinity"):
            convert(np.full((2, 2, 3), np.nan, np.float32))
        with pytest.raises(ValueError, match="must be float in"):
            convert(np.zeros((2, 2, 3), np.int32))


def test_lab_to_rgb_as_refuses_a_type_it_cannot_round_to():
    lab = np.full((2, 2, 3), 50, np.float32)
    with pytest.raises(ValueError, match="dtype must be uint8, uint16 or a float type"):
        color.lab_to_rgb_as(lab, np.int32)  # once every sample truncated to 0


def test_integer_scaling_round_trips_every_level():
    for dtype, to_int in ((np.uint8, color.to_uint8), (np.uint16, color.to_uint16)):
        levels = np.arange(np.iinfo(dtype).max + 1, dtype=dtype).reshape(1, -1, 1)
        f = color.to_float(levels)
        assert f.dtype == np.float32 and f.min() == 0 and f.max() == 1
        assert np.array_equal(to_int(f), levels)


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint32, np.bool_, np.complex64])
def test_to_float_refuses_samples_it_cannot_scale(dtype):
    # int32 samples 0..255 were clipped as floats: every sample above 0 became 1, a white image
    with pytest.raises(ValueError, match="samples must be uint8, uint16 or a float type"):
        color.to_float(np.full((2, 2, 3), 128, dtype))


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


def test_lab_to_rgb_clips_out_of_range_lab_into_range_first():
    # L = 1e30 overflowed f^3 (RuntimeWarnings) and gave NaN, cast to arbitrary pixels
    lab = np.array([[[1e30, 1e30, -1e30], [-1e30, 3e38, 0], [50, -1e25, 1e25], [101, 130, -129]]],
                   np.float32)  # fmt: skip
    before = lab.copy()
    clipped = np.clip(lab, [0, -128, -128], [100, 127, 127]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = color.lab_to_rgb(lab)
        u8 = color.lab_to_rgb_as(lab.astype(np.float64), np.uint8)
    np.testing.assert_array_equal(rgb, color.lab_to_rgb(clipped))
    np.testing.assert_array_equal(u8, color.to_uint8(rgb))
    assert ((rgb >= 0) & (rgb <= 1)).all()
    np.testing.assert_array_equal(lab, before)  # the caller's array is left as it was
    srgb = np.random.default_rng(0).uniform(0, 1, (9, 11, 3)).astype(np.float32)
    inside = color.rgb_to_lab(srgb)  # every sRGB colour is in range: converted as it was
    np.testing.assert_allclose(color.lab_to_rgb(inside), srgb, atol=1e-5)
