"""The Lab record stream: exact round trips, streams of many records, and every way to break one."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from corpus import with_header

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
        (
            lambda d: d[:4] + struct.pack("<H", 2) + d[6:],
            r"version 2 is newer than this recolor reads \(1\); upgrade recolor",
        ),
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


def test_a_record_cut_short_in_a_file_is_named_and_what_is_short_said(tmp_path):
    """In a regular file the arrays' size is checked against what is left before reading: the
    line named the file alone (not the record), and a checksum cut short was said as arrays
    short ("promises 420 bytes of arrays, 418 are left")."""
    data = _stream(records.lab_record("a.png", _lab(), (5, 7)))
    n = 5 * 7 * 3 * 4  # the arrays' bytes
    short = f"the header promises {n} bytes of arrays, {n - 6} are left"
    for cut, said in ((2, "end of data inside a record checksum"), (10, short)):
        path = tmp_path / "s.lab"
        path.write_bytes(data[:-cut])
        with path.open("rb") as f, pytest.raises(RecolorError) as info:
            list(records.iter_records(f, str(path)))
        assert (info.value.path, info.value.reason) == (
            f"{path}: a.png",
            f"truncated record stream ({said})",
        )


def test_good_records_before_a_break_are_still_delivered():
    good = _stream(records.lab_record("a.png", _lab(), (5, 7)))
    it = records.iter_records(io.BytesIO(good + good[:20]))
    assert next(it).name == "a.png"
    with pytest.raises(RecolorError, match="truncated"):
        next(it)


@pytest.mark.parametrize(
    ("rec", "match"),
    [
        (records.Record("a", (2, 2), {"lab": np.zeros((2, 2, 3))}), "'lab' is float64"),
        (records.Record("a", (2, 2), {"m": np.zeros((2, 2), bool)}), "'m' is bool"),
        (records.Record("a", (2, 2), {"m": np.zeros(2, np.uint32)}), "'m' is uint32"),
        (records.Record("a", (2, 2), {"m": np.zeros(2, np.uint64)}), "'m' is uint64"),
        (records.Record("a", (2, 2), {"m": np.zeros(2, np.complex64)}), "'m' is complex64"),
        (records.Record("a", (2, 2), {"m": np.zeros((1,) * 5, np.float32)}), "5 dimensions"),
        (records.Record("a", (2, 2), {"m": np.float32(1)}), r"shape \(\) has 0 dimensions"),
        (records.Record("a", (2, 2), {"m": np.zeros((1, 1, 257), np.uint8)}), "values a pixel"),
        (records.Record("a", (2, 2), {1: np.zeros(2, np.float32)}), "array names"),
        (records.Record("a", (1, 1), {"m": np.zeros((0, 1 << 31), np.uint8)}), "2\\*\\*31"),
        (records.Record("a", (-1, 2), {}), "record size"),
        (records.Record("a", (2.0, 2), {}), "record size"),
        (records.Record("a", (2,), {}), "record size"),
        (records.Record(b"a", (2, 2), {}), "record name must be a string"),
        (records.Record("a", (2, 2), {}, [1]), "record meta must be a dict"),
        (records.Record("a", (2, 2), {}, {"x": object()}), "JSON-serialisable"),
        (records.Record("a", (2, 2), {}, {}, ["s"]), "record source must be a dict"),
        # written, then refused by the reader as a corrupt header
        (records.Record("a", (2, 2), {}, file=(-1, 2)), r"record file must be \(device, inode\)"),
        (records.Record("a", (2, 2), {}, file=(True, 2)), r"record file must be \(device, inode\)"),
        (records.Record("a", (2, 2), {}, file=(1,)), r"record file must be \(device, inode\)"),
        # written, then read back otherwise: {1: 2} as {"1": 2}, a tuple as a list
        (records.Record("a", (2, 2), {}, {1: 2}), "record meta does not read back as given"),
        (records.Record("a", (2, 2), {}, {}, {"x": (1, 2)}), "record source does not read back"),
        (records.Record("a", (2, 2), {}, {"x": "y" * (1 << 20)}), "header of"),
    ],
)
def test_write_record_refuses_what_the_format_cannot_carry_before_writing(rec, match):
    """What iter_records would refuse as a "corrupt record header" (or read back changed: a
    0-d array came back (1,)) is a ValueError naming the field, and nothing is written."""
    buf = io.BytesIO()
    with pytest.raises(ValueError, match=match):
        records.write_record(buf, rec)
    assert buf.getvalue() == b""


def test_write_record_stores_big_endian_and_numpy_sizes_readably():
    rec = records.Record(
        "a", (np.int64(2), 3), {"m": np.arange(3, dtype=">f4"), "k": np.ones((2, 2), ">u2")}
    )
    (back,) = records.iter_records(io.BytesIO(_stream(rec)))
    assert back.size == (2, 3) and back.arrays["m"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(back.arrays["m"], [0, 1, 2])
    assert back == records.Record("a", (2, 3), {k: v.astype(v.dtype.newbyteorder("<"))
                                                for k, v in rec.arrays.items()})  # fmt: skip
    assert back == rec  # byte order is storage: the values are the same


@pytest.mark.parametrize("source", [None, {}, {"depth": 16}])
def test_a_record_reads_back_equal_to_what_was_written(source):
    """source={} came back None (not equal to the record written)."""
    rec = records.Record(
        "a", (2, 3), {"m": np.arange(3, dtype=np.float32)}, {}, source, file=(5, 7)
    )
    (back,) = records.iter_records(io.BytesIO(_stream(rec)))
    assert back == rec and back.source == source and back.file == (5, 7)


@pytest.mark.parametrize("l_only", [False, True])
@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 1), (4, 4, 4), (4,)])
def test_lab_record_refuses_what_is_not_an_h_w_3_image(shape, l_only):
    with pytest.raises(ValueError, match=r"lab must be an \(H, W, 3\) array"):
        records.lab_record("x", np.zeros(shape, np.float32), (4, 4), l_only=l_only)


def test_lab_record_refuses_complex_values_and_a_bad_size():
    with pytest.raises(ValueError, match="real numbers"):
        records.lab_record("x", np.zeros((4, 4, 3), np.complex64), (4, 4))
    with pytest.raises(ValueError, match="record size"):
        records.lab_record("x", np.zeros((4, 4, 3), np.float32), (4.5, 4))


@pytest.mark.parametrize("data", [b"hello world", b"x", b"RCLX", b"GIF89a"])
def test_short_garbage_is_bad_magic_not_truncation(data):
    with pytest.raises(RecolorError, match="bad magic"):
        list(records.iter_records(io.BytesIO(data), "s"))
    with pytest.raises(RecolorError, match="truncated"):  # a real record's start, cut short
        list(records.iter_records(io.BytesIO(b"RCL"), "s"))


def test_records_compare_by_value():
    lab = _lab(2, 3)
    lab[0, 0, 1] = np.nan
    a = records.lab_record("x", lab, (2, 3))
    assert a == records.lab_record("x", lab.copy(), (2, 3))
    assert a == next(records.iter_records(io.BytesIO(_stream(a))))
    assert a != records.lab_record("y", lab, (2, 3))
    assert a != records.lab_record("x", lab + 1, (2, 3))
    assert a != records.lab_record("x", lab, (2, 3), l_only=True)
    b = records.lab_record("x", lab, (2, 3))
    b.arrays["lab"] = b.arrays["lab"].astype(np.float16)
    assert a != b and a != "x"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_header_holds_strict_json_only(value):
    """A NaN in meta was written as `NaN`, which recolor's reader took and strict JSON readers
    (jq, JSON.parse) refuse; the writer refuses it, naming meta, with nothing written."""
    buf = io.BytesIO()
    rec = records.Record("r", (4, 5), {"lab": np.zeros((4, 5, 3), "<f4")}, meta={"x": value})
    with pytest.raises(ValueError, match="record meta or source is not JSON-serialisable"):
        records.write_record(buf, rec)
    assert buf.getvalue() == b""


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ([{"name": f"v{i}", "dtype": "<f4", "shape": [2, 2]} for i in range(17)],
         "record holds 17 arrays, over the format's 16"),
        ([{"name": "v", "dtype": "<f4", "shape": [1, 1, 1, 1, 1]}],
         "record array 'v' of shape (1, 1, 1, 1, 1) has 5 dimensions (the format holds 1 to 4)"),
        ([{"name": "v", "dtype": "<f8", "shape": [2, 2]}],
         "record array 'v' is of dtype '<f8', which the format does not hold (FORMAT.md)"),
        ([{"name": "v", "dtype": "<i2", "shape": [1, 1, 257]}],  # (said as the pixel limit)
         "record array 'v' of shape (1, 1, 257) holds over 256 values a pixel"),
    ],
)  # fmt: skip
def test_a_header_over_the_limits_names_the_record_and_the_limit(arrays, reason):
    """Each was "corrupt record header (fields missing or malformed)", naming neither the record
    (FORMAT.md promises it) nor the limit."""
    import json

    head = json.dumps({"name": "a17.png", "size": [2, 2], "arrays": arrays}).encode()
    data = struct.pack("<4sHHI", records.MAGIC, 1, 0, len(head)) + head
    with pytest.raises(RecolorError) as info:
        list(records.iter_records(io.BytesIO(data), "s.lab"))
    assert (str(info.value.path), info.value.reason) == ("s.lab: a17.png", reason)


@pytest.mark.parametrize(
    ("field", "value"),
    [("meta", []), ("meta", False), ("meta", 0), ("source", ""), ("source", [1]), ("meta", [1])],
)
def test_an_optional_field_of_the_wrong_type_is_a_corrupt_header(field, value):
    """FORMAT.md: a field of the wrong JSON type is a corrupt header. `"meta": [1]` was, but an
    empty value of the wrong type (`[]`, `false`, `0`, `""`) was taken for no field at all;
    `null` still is (absent)."""
    import json
    import zlib

    def stream(**fields) -> bytes:
        arrays = [{"name": "lab", "dtype": "<f4", "shape": [1, 1, 3]}]
        head = json.dumps({"name": "a.png", "size": [1, 1], "arrays": arrays, **fields}).encode()
        body = head + bytes(12)
        crc = struct.pack("<I", zlib.crc32(body))
        return struct.pack("<4sHHI", records.MAGIC, 1, 0, len(head)) + body + crc

    (rec,) = records.iter_records(io.BytesIO(stream(**{field: None})), "s.lab")
    assert rec.meta == {} and rec.source is None
    with pytest.raises(RecolorError, match="corrupt record header"):
        list(records.iter_records(io.BytesIO(stream(**{field: value})), "s.lab"))


def test_numpy_numbers_in_file_are_written_and_a_long_start_is_refused():
    """file=(np.int64, np.int64) was said as "record meta or source is not JSON-serialisable";
    a ``start`` of 13 bytes read the whole stream, then failed in struct."""
    rec = records.Record(
        "a", (1, 1), {"m": np.zeros(2, np.float32)}, file=(np.int64(1), np.uint64(2))
    )
    data = _stream(rec)
    (back,) = records.iter_records(io.BytesIO(data))
    assert back.file == (1, 2) and back == rec
    (back,) = records.iter_records(io.BytesIO(data[12:]), "s", data[:12])  # a prefix: fine
    with pytest.raises(ValueError, match="start holds at most 12 bytes"):
        list(records.iter_records(io.BytesIO(data[13:]), "s", data[:13]))


def test_a_header_with_nan_is_no_json():
    """The writer never writes NaN (no strict JSON reader takes it); the reader took it."""
    import zlib

    def frame(head: bytes) -> bytes:
        return (
            struct.pack("<4sHHI", b"RCLR", 1, 0, len(head))
            + head
            + struct.pack("<I", zlib.crc32(head))
        )

    head = b'{"name":"d","size":[1,1],"meta":{"x":%s},"arrays":[]}'
    with pytest.raises(RecolorError, match=r"corrupt record header \(not JSON\)"):
        list(records.iter_records(io.BytesIO(frame(head % b"NaN")), "s"))
    (rec,) = records.iter_records(io.BytesIO(frame(head % b"1.5")), "s")
    assert rec.meta == {"x": 1.5}


# -- FORMAT.md's byte layout and reading rules, checked against bytes made by hand -------------


def test_the_written_bytes_are_the_documented_layout():
    """A writer and a reader that agreed on a wrong layout (a CRC over the wrong span, two
    fields swapped) would pass every round trip: parse the writer's bytes by FORMAT.md."""
    import json
    import zlib

    lab = _lab(3, 4)
    data = _stream(records.lab_record("caf\udce9.png", lab, (6, 8)))
    magic, version, flags, n = struct.unpack("<4sHHI", data[:12])
    assert (magic, version, flags) == (b"RCLR", 1, 0)
    head = json.loads(data[12 : 12 + n].decode("ascii"))  # a name's undecodable byte: \udce9
    assert head["name"] == "caf\udce9.png" and head["size"] == [6, 8]
    assert head["arrays"] == [{"name": "lab", "dtype": "<f4", "shape": [3, 4, 3]}]
    body = data[12 + n : -4]
    assert body == lab.astype("<f4").tobytes(order="C")
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[12:-4])


def test_reading_rules_a_record_built_by_hand_follows():
    """FORMAT.md: flags are ignored on reading, keys a reader does not know are ignored (what
    lets version 1 grow), an array name given twice is the last one's, and version 0 or a
    header over 1 MiB is a clear error."""
    lab = np.full((1, 2, 3), 50, "<f4")
    head = {"name": "a.png", "size": [1, 2], "meta": {},
            "arrays": [{"name": "lab", "dtype": "<f4", "shape": [1, 2, 3]}]}  # fmt: skip
    plain = next(records.iter_records(io.BytesIO(with_header(head, lab.tobytes()))))
    assert np.array_equal(plain.arrays["lab"], lab)
    flagged = with_header(head, lab.tobytes(), flags=0xFFFF)
    assert next(records.iter_records(io.BytesIO(flagged))) == plain
    grown = with_header({**head, "zzz": [1, {"a": 2}]}, lab.tobytes())
    assert next(records.iter_records(io.BytesIO(grown))) == plain
    twice = {**head, "arrays": head["arrays"] * 2}
    second = np.full((1, 2, 3), 7, "<f4")
    rec = next(records.iter_records(io.BytesIO(with_header(twice, lab.tobytes() +
                                                            second.tobytes()))))  # fmt: skip
    assert np.array_equal(rec.arrays["lab"], second)
    with pytest.raises(RecolorError, match="corrupt record prefix"):
        list(records.iter_records(io.BytesIO(with_header(head, lab.tobytes(), version=0))))
    huge = {**head, "meta": {"pad": "x" * (1 << 20)}}  # a real header of just over 1 MiB
    for stream in (io.BytesIO(with_header(huge, lab.tobytes())),
                   OneByteReader(with_header(huge, lab.tobytes()))):  # fmt: skip
        with pytest.raises(RecolorError, match=r"over 1,048,576\)"):
            list(records.iter_records(stream))
