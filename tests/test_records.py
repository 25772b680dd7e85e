"""The Lab record stream: exact round trips, streams of many records, and every way to break one."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from recolor_tools import records
from recolor_tools.errors import RecolorError


def _lab(h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.empty((h, w, 3), np.float32)
    lab[..., 0] = rng.uniform(0, 100, (h, w))
    lab[..., 1:] = rng.uniform(-128, 127, (h, w, 2))
    return lab


class OneByteReader(io.RawIOBase):
    """A non-seekable stream that returns at most one byte per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._pos >= len(self._data):
            return 0
        b[0] = self._data[self._pos]
        self._pos += 1
        return 1


def _stream(*recs) -> bytes:
    buf = io.BytesIO()
    for r in recs:
        records.write_record(buf, r)
    return buf.getvalue()


def test_float32_round_trip_is_bit_exact_through_a_non_seekable_stream():
    lab = _lab()
    lab[0, 0] = [0.0, -0.0, np.float32(1e-30)]
    data = _stream(records.lab_record("größe poster.jpg", lab, (50, 70)))
    (rec,) = records.iter_records(OneByteReader(data))
    assert rec.name == "größe poster.jpg"
    assert rec.size == (50, 70)
    assert rec.lab().dtype == np.float32
    assert rec.lab().tobytes() == lab.tobytes()


def test_many_records_in_one_stream_keep_order_and_arrays():
    labs = [_lab(3 + i, 4 + 2 * i, i) for i in range(4)]
    data = _stream(
        *(records.lab_record(f"{i}.png", lab, lab.shape[:2]) for i, lab in enumerate(labs))
    )
    got = list(records.iter_records(io.BytesIO(data)))
    assert [r.name for r in got] == ["0.png", "1.png", "2.png", "3.png"]
    for r, lab in zip(got, labs, strict=True):
        np.testing.assert_array_equal(r.lab(), lab)


def test_l_only_record_holds_just_lightness():
    lab = _lab()
    (rec,) = records.iter_records(io.BytesIO(_stream(records.lab_record("x", lab, (5, 7), True))))
    assert set(rec.arrays) == {"L"}
    np.testing.assert_array_equal(rec.lightness(), lab[..., 0])
    with pytest.raises(RecolorError, match="no Lab image"):
        rec.lab()


def test_record_size_matches_the_documented_poster_figure():
    data = _stream(records.lab_record("ml-tt0000000.jpg", _lab(268, 182), (268, 182)))
    payload = 268 * 182 * 3 * 4
    assert payload == 585_312
    assert payload < len(data) < payload + 200


def test_empty_stream_yields_nothing():
    assert list(records.iter_records(io.BytesIO(b""))) == []


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: b"GIF89a" + d, "bad magic"),
        (lambda d: d[:4] + struct.pack("<H", 2) + d[6:], "version 2 is newer"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:7], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d[:-10] + bytes([d[-10] ^ 1]) + d[-9:], "checksum"),
        (lambda d: d[:12] + b"X" + d[13:], "corrupt record header"),
    ],
)
def test_broken_streams_fail_with_a_clear_reason(mangle, message):
    data = mangle(_stream(records.lab_record("a.png", _lab(), (5, 7))))
    with pytest.raises(RecolorError, match=message) as info:
        list(records.iter_records(io.BytesIO(data), "stream.lab"))
    assert info.value.path == "stream.lab"


def test_good_records_before_a_break_are_still_delivered():
    good = _stream(records.lab_record("a.png", _lab(), (5, 7)))
    it = records.iter_records(io.BytesIO(good + good[:20]))
    assert next(it).name == "a.png"
    with pytest.raises(RecolorError, match="truncated"):
        next(it)
