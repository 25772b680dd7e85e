"""Records whose arrays the format carries but no image tool can use (empty, wrongly shaped),
records of absurd Lab values, and how errors about a record name it."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from conftest import run, smooth_image, write_rgb

from recolor_tools import quant, records
from recolor_tools.errors import RecolorError
from recolor_tools.rebalance import RebalanceStats


def raw_record(name: str, arrays: dict[str, np.ndarray]) -> bytes:
    """One record built byte by byte as FORMAT.md lays it out, without records.write_record (so
    that what the writer refuses or mangles can still be fed to the readers)."""
    head = {
        "name": name,
        "size": [2, 2],
        "meta": {"kind": "lab"},
        "arrays": [
            {"name": k, "dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()
        ],
    }
    header = json.dumps(head).encode()
    data = b"".join(a.tobytes() for a in arrays.values())
    prefix = b"RCLR" + struct.pack("<HHI", 1, 0, len(header))
    return prefix + header + data + struct.pack("<I", zlib.crc32(header + data))


def gray(h: int = 4, w: int = 5) -> np.ndarray:
    lab = np.zeros((h, w, 3), np.float32)
    lab[..., 0] = 50
    return lab


def read_stream(data: bytes) -> list[records.Record]:
    return list(records.iter_records(io.BytesIO(data)))


def test_zero_sized_arrays_round_trip_through_the_format():
    empty = records.Record(
        "e.png",
        (0, 5),
        {"lab": np.zeros((0, 5, 3), np.float32), "idx": np.zeros((3, 0), np.int16),
         "x": np.zeros((0,), np.uint8)},
    )  # fmt: skip
    after = records.lab_record("after.png", gray(), (4, 5))
    buf = io.BytesIO()
    records.write_record(buf, empty)
    records.write_record(buf, after)
    assert read_stream(buf.getvalue()) == [empty, after]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 5, 3), np.float32), np.zeros((4,), np.float32), np.zeros((2, 2, 2), np.float32)],
    ids=["empty", "1-D", "2-channel"],
)
def test_tools_refuse_a_lab_array_that_is_no_image_as_that_record_only(tmp_path, bad):
    stream = tmp_path / "s.lab"
    stream.write_bytes(
        raw_record("g1.png", {"lab": gray()})
        + raw_record("bad.png", {"lab": bad})
        + raw_record("g2.png", {"lab": gray()})
    )
    line = f"{stream}: bad.png: record array 'lab' "

    p = run(["from-lab", stream, "-o", f"{tmp_path / 'img'}/"])
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith(f"recolor from-lab: {line}"), err
    assert len(err.splitlines()) == 1
    assert sorted(f.name for f in (tmp_path / "img").iterdir()) == ["g1.png", "g2.png"]

    p = run(["quantize", stream, "-q", "-o", tmp_path / "t.target"])
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith(f"recolor quantize: {line}"), err
    assert len(err.splitlines()) == 1
    targets = read_stream((tmp_path / "t.target").read_bytes())
    assert [t.name for t in targets] == ["g1.png", "g2.png"]

    p = run(["rebalance-stats", stream, "-q", "-o", tmp_path / "s.npz"])
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith(f"recolor rebalance-stats: {line}"), err
    assert len(err.splitlines()) == 1
    assert RebalanceStats.load(tmp_path / "s.npz").n_images == 2


def test_from_lab_refuses_an_empty_l_only_record(tmp_path):
    stream = tmp_path / "l.lab"
    stream.write_bytes(raw_record("e.png", {"L": np.zeros((3, 0, 1), np.float32)}))
    p = run(["from-lab", stream, "-o", tmp_path / "e.png"])
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor from-lab: {stream}: e.png: record array 'L' is an empty image (0x3 pixels)\n"
    )
    assert not (tmp_path / "e.png").exists()


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ({"lab": np.zeros((4,), np.float32)}, r"array 'lab' has shape \(4,\), not \(H, W, 3\)"),
        ({"lab": np.zeros((0, 5, 3), np.float32)}, r"'lab' is an empty image \(5x0 pixels\)"),
        ({"L": np.zeros((2, 2, 1), np.float32)}, "record holds no Lab image"),
    ],
)
def test_record_lab_checks_the_image_in_one_place(arrays, reason):
    rec = records.Record("x.png", (2, 2), arrays)
    with pytest.raises(RecolorError, match=reason) as info:
        rec.lab()
    assert info.value.path == "x.png"
    rec.origin = "s.lab: x.png"
    for use in (rec.lab, lambda: quant.encode_record(rec, quant.gamut_classes(8), 8)):
        with pytest.raises(RecolorError, match=reason) as info:
            use()
        assert info.value.path == "s.lab: x.png"


def test_record_errors_name_the_record_file_and_the_record(tmp_path):
    image = write_rgb(tmp_path / "rand.png", smooth_image(12, 16))
    l_only = tmp_path / "l.lab"
    l_only.write_bytes(run(["to-lab", "--l-only", image], check_rc=0).stdout)
    why = "record holds no Lab image (an L-only or target record?)"
    for tool in ("quantize", "rebalance-stats"):
        p = run([tool, "-q", l_only])
        assert p.returncode == 1
        assert p.stderr.decode() == f"recolor {tool}: {l_only}: rand.png: {why}\n"

    nan = gray()
    nan[1, 2, 1] = np.nan
    stream = tmp_path / "s.lab"
    stream.write_bytes(raw_record("bad.png", {"lab": nan}))
    p = run(["quantize", "-q", stream])
    assert p.returncode == 1
    assert p.stderr.decode() == f"recolor quantize: {stream}: bad.png: ab contains 1 NaN or " \
        "infinite value\n"  # fmt: skip


def test_from_lab_clips_absurd_lab_values_into_range_without_warnings(tmp_path):
    huge = np.array([[[1e30, 1e30, -1e30], [-1e30, 3e38, 0]],
                     [[50, -1e25, 1e25], [101, 130, -129]]], np.float32)  # fmt: skip
    clipped = np.clip(huge, [0, -128, -128], [100, 127, 127]).astype(np.float32)
    (tmp_path / "huge.lab").write_bytes(raw_record("huge.png", {"lab": huge}))
    (tmp_path / "clipped.lab").write_bytes(raw_record("clipped.png", {"lab": clipped}))
    p = run(["from-lab", tmp_path / "huge.lab", tmp_path / "clipped.lab", "-o", f"{tmp_path}/"])
    assert p.returncode == 0 and p.stderr == b"", p.stderr.decode()
    got, want = (tmp_path / "huge.png").read_bytes(), (tmp_path / "clipped.png").read_bytes()
    assert got == want


def test_every_dtype_the_format_holds_is_read_by_the_record_tools(tmp_path):
    """FORMAT.md lets a `lab` or `L` array be any of eight dtypes; only float32 ever went
    through the tools (a kernel typed for float32 alone would end in a traceback)."""
    dtypes = ["<f4", "<f2", "<i2", "<i4", "<i8", "|u1", "<u2", "|i1"]
    lab = np.zeros((3, 4, 3))
    lab[..., 0] = 50
    labs = b"".join(raw_record(f"t{i}.png", {"lab": lab.astype(d)}) for i, d in enumerate(dtypes))
    (tmp_path / "lab.lab").write_bytes(labs)
    (tmp_path / "all.lab").write_bytes(labs + b"".join(
        raw_record(f"l{i}.png", {"L": lab[..., :1].astype(d)}) for i, d in enumerate(dtypes)
    ))  # fmt: skip
    run(["from-lab", tmp_path / "all.lab", "-o", f"{tmp_path}/png/", "-q"], check_rc=0)
    first = (tmp_path / "png" / "t0.png").read_bytes()
    for prefix in "tl":
        assert all((tmp_path / "png" / f"{prefix}{i}.png").read_bytes() == first
                   for i in range(len(dtypes)))  # fmt: skip
    run(["quantize", tmp_path / "lab.lab", "-o", tmp_path / "t.target", "-q"], check_rc=0)
    targets = list(records.iter_records(io.BytesIO((tmp_path / "t.target").read_bytes())))
    assert len(targets) == len(dtypes)
    assert all(records.values_equal(t.arrays, targets[0].arrays) for t in targets)
    run(["rebalance-stats", tmp_path / "lab.lab", "-o", tmp_path / "s.npz", "-q"], check_rc=0)
