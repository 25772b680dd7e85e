"""Guided recolouring: hint files and folders (JSON or painted layers) matched to their inputs,
and their errors, one line each."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import fifo_write_whole, read_rgb_u8, run, smooth_image, write_rgb
from hint_helpers import hex_of, hint_error, lab
from hint_helpers import image as image  # the fixtures, for pytest to find here
from hint_helpers import weights as weights

from recolor_tools import hintfiles, hints, palettes
from recolor_tools.errors import RecolorError


def test_a_hint_folder_run_matches_and_reports_each_file(tmp_path, weights, image):
    """One predict run over a hint folder stands for several (each was a run of its own): the
    inputs each take their file, and each bad file or input is one line, the rest done. The
    cases, and the bugs they guard, are told below; the runs they are compared to follow."""
    src, rgb = image
    posters = tmp_path / "posters"
    hdir = posters / "hints"  # inside the input folder: its files are no inputs (see below)
    (hdir / "sub").mkdir(parents=True)
    wrote, said = [], []  # the outputs it writes, the lines it says

    # posters/x.png and posters/x.jpg both take hints/x.json (the second was left automatic
    # without a word).
    for ext in ("png", "jpg"):
        write_rgb(posters / f"x.{ext}", smooth_image(40, 50, 7))
    (hdir / "x.json").write_text(json.dumps({"points": [{"x": 8, "y": 8, "color": "#1d4e89",
                                                         "size": 9}]}))  # fmt: skip
    wrote += ["x.png", "x.jpg"]

    # The hint directory matches inputs by path.
    rgbs = {}
    for rel in ("a", "sub/b", "c"):
        (posters / rel).parent.mkdir(parents=True, exist_ok=True)
        rgbs[rel] = smooth_image(40, 50, len(rel) + ord(rel[-1]))
        write_rgb(posters / f"{rel}.png", rgbs[rel])
    (hdir / "a.json").write_text(json.dumps({"points": [{"x": 3, "y": 4, "color": "#fff"}]}))
    pts = [{"x": 10, "y": 20, "color": hex_of(rgbs["sub/b"], 10, 20), "size": 5}]
    (hdir / "sub" / "b.json").write_text(json.dumps({"points": pts}))
    wrote += ["a.png", "sub/b.png", "c.png"]
    # a hint file for no input: one line naming it, the inputs still done
    (hdir / "zzz.json").write_text("{}")
    said += [f"recolor predict: {hdir / 'zzz.json'}: hint file for no input"]

    # A hint folder inside the input folder holds no inputs: posters/hints/b.png is b.png's
    # hint layer, not an image to recolour (and output).
    write_rgb(posters / "b.png", smooth_image(40, 50, 3))
    layer = np.zeros((40, 50, 4), np.uint8)
    layer[10:15, 10:15] = (40, 60, 220, 255)  # RGBA: a blue square
    write_rgb(hdir / "b.png", layer)
    wrote += ["b.png"]

    # Empty hints are bit-identical to none (to auto.png, below).
    empties = ("empty", "none", "clear", "blank", "bom", "bom16")
    for name in empties:
        write_rgb(posters / f"{name}.png", rgb)
    (hdir / "empty.json").write_text("{}")
    (hdir / "blank.json").write_text(" \n")  # a file made and never written
    (hdir / "bom.json").write_bytes(b"\xef\xbb\xbf\n")  # an editor's empty UTF-8 file
    (hdir / "bom16.json").write_bytes(b"\xff\xfe\n\x00")  # and UTF-16 one ("Expecting value")
    (hdir / "none.json").write_text('{"points": [], "palette": []}')
    write_rgb(hdir / "clear.png", np.zeros((60, 80, 4), np.uint8))
    wrote += [f"{name}.png" for name in empties]

    # Bad hint files give one line each and the rest is done.
    names = ("good", "outside", "far", "bad_json", "no_alpha", "small_layer", "clear_small",
             "huge", "heavy", "link")  # fmt: skip
    for name in names:
        write_rgb(posters / f"{name}.png", smooth_image(60, 80, 1))
    doc = {"points": [{"x": 1, "y": 1, "color": "blue"}]}
    (hdir / "bad_json.json").write_text(json.dumps(doc))
    (hdir / "outside.json").write_text(json.dumps({"points": [{"x": 80, "y": 1, "color": "#f00"}]}))
    # 1e308 pixels times the width overflowed: numpy's warning on stderr before the line
    (hdir / "far.json").write_text('{"points": [{"x": 1e308, "y": 1, "color": "#f00"}]}')
    write_rgb(hdir / "no_alpha.png", smooth_image(60, 80, 1))
    write_rgb(hdir / "small_layer.png", np.full((8, 8, 4), 200, np.uint8))
    # a layer of another size is the wrong file even when nothing is painted on it
    write_rgb(hdir / "clear_small.png", np.zeros((8, 8, 4), np.uint8))
    (hdir / "good.json").write_text(json.dumps({"points": [{"x": 1, "y": 1, "color": "#f00"}]}))
    # a 400-digit integer: "internal error: OverflowError", and no input done
    huge = {"points": [{"x": 1, "y": 1, "color": "#f00", "size": 10**400}]}
    (hdir / "huge.json").write_text(json.dumps(huge))
    heavy = {"palette": [{"color": "#f00", "weight": 10**400}]}
    (hdir / "heavy.json").write_text(json.dumps(heavy))
    (hdir / "link.json").symlink_to(tmp_path / "nowhere.json")  # was passed over, no word
    wrote += ["good.png"]
    said += [
        f"recolor predict: {hdir / 'bad_json.json'}: bad hint file: colour 'blue' is not "
        "#rrggbb or #rgb",
        f"recolor predict: {hdir / 'no_alpha.png'}: bad hint file: a hint layer must be an "
        "image with an alpha channel",
        # the input, and the hint file the bad points came from (it said only the input)
        f"recolor predict: {posters / 'clear_small.png'}: the hint layer of "
        f"{hdir / 'clear_small.png'} is 8x8, the image 80x60",
        f"recolor predict: {posters / 'far.png'}: hint point (1e+308, 1) of {hdir / 'far.json'} "
        "is outside the 80x60 image",
        f"recolor predict: {posters / 'outside.png'}: hint point (80, 1) of "
        f"{hdir / 'outside.json'} is outside the 80x60 image",
        f"recolor predict: {posters / 'small_layer.png'}: the hint layer of "
        f"{hdir / 'small_layer.png'} is 8x8, the image 80x60",
        f"recolor predict: {hdir / 'heavy.json'}: bad hint file: number {'1' + '0' * 19}... "
        "(401 digits) is too large",  # (it printed all 401 digits)
        f"recolor predict: {hdir / 'huge.json'}: bad hint file: number {'1' + '0' * 19}... "
        "(401 digits) is too large",
        f"recolor predict: {hdir / 'link.json'}: no such file",
    ]  # fmt: skip

    # Two hint files for one input refuse that input: hints/two.json and hints/two.png both
    # match posters/two.png: the second was reported ("second hint file") and the input
    # written with the first alone, so a rerun with --skip-existing took it for done. Now the
    # input is refused, naming both files, and the others are done (--suggest: below).
    write_rgb(posters / "two.png", smooth_image(40, 50, 1))
    (hdir / "two.json").write_text(json.dumps({"points": [{"x": 3, "y": 4, "color": "#fff"}]}))
    layer = np.zeros((40, 50, 4), np.uint8)
    layer[5, 5] = (0, 0, 255, 255)
    cv2.imwrite(str(hdir / "two.png"), layer)
    said += [f"recolor predict: {posters / 'two.png'}: two hint files, {hdir / 'two.json'} and "
             f"{hdir / 'two.png'}: neither is used"]  # fmt: skip

    out = tmp_path / "out"
    p = run(["predict", posters, "-w", weights["cls"], "--hints", hdir, "-o", out])
    assert p.returncode == 1, p.stderr.decode()
    assert sorted(p.stdout.decode().splitlines()) == sorted(str(out / n) for n in wrote)
    assert sorted(p.stderr.decode().splitlines()) == sorted(said)
    on_disk = [f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()]
    assert sorted(on_disk) == sorted(wrote)  # (nothing of the hint folder, nor two.png)

    want = hints.parse_color("#1d4e89")
    for ext in ("png", "jpg"):
        assert np.linalg.norm(lab(read_rgb_u8(out / f"x.{ext}"))[8, 8, 1:] - want) < 6, ext
    got = read_rgb_u8(out / "sub" / "b.png")  # the output mirrors the inputs' tree, as hints
    square = [(x, y) for x in range(8, 13) for y in range(18, 23)]
    assert hint_error(got, rgbs["sub/b"], square) < 6
    assert np.abs(lab(read_rgb_u8(out / "a.png"))[4, 3, 1:]).max() < 3  # white: a = b = 0
    square = [(x, y) for x in range(10, 15) for y in range(10, 15)]
    blue = np.broadcast_to(np.array([40, 60, 220], np.uint8), (40, 50, 3))
    assert hint_error(read_rgb_u8(out / "b.png"), blue, square) < 6

    run(["predict", src, "-w", weights["cls"], "-o", tmp_path / "auto.png"], check_rc=0)
    want = (tmp_path / "auto.png").read_bytes()
    for name in empties:
        assert (out / f"{name}.png").read_bytes() == want, name

    # A float layer's pixel of alpha -1 (or -1e-9) was a hint, as a pixel of alpha 1: the
    # rule is alpha > 0. A layer whose only painted pixel has negative alpha is no hint.
    h, w = read_rgb_u8(src).shape[:2]
    layer = np.zeros((h, w, 4), np.float32)
    layer[5, 5] = (0, 0, 1, -1)  # BGRA: red, alpha -1
    cv2.imwrite(str(tmp_path / "neg.tiff"), layer)
    run(["predict", src, "-w", weights["cls"], "--hints", tmp_path / "neg.tiff", "-o",
         tmp_path / "n.png"], check_rc=0)  # fmt: skip
    assert (tmp_path / "n.png").read_bytes() == want

    # two hint files for one input, with --suggest: the same line
    few, few_hints = tmp_path / "few", tmp_path / "few_hints"
    few.mkdir(), few_hints.mkdir()
    for name in ("a", "b"):
        write_rgb(few / f"{name}.png", smooth_image(40, 50, 1))
    shutil.copy(hdir / "two.json", few_hints / "a.json")
    shutil.copy(hdir / "two.png", few_hints / "a.png")
    p = run(["predict", few, "-w", weights["cls"], "--hints", few_hints, "--suggest", "1,1"])
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor predict: {few / 'a.png'}: two hint files, {few_hints / 'a.json'} and "
        f"{few_hints / 'a.png'}: neither is used\n"
    )


def test_suggest_and_skip_existing_still_check_the_hints(tmp_path, weights, image):
    """--suggest reported no hint file for no input (exit 0), and with every output there
    already, --skip-existing passed hints that do not parse or that the model cannot take."""
    src, _ = image
    hdir = tmp_path / "hints"
    hdir.mkdir()
    (hdir / "typo.json").write_text('{"points": [{"x": 5, "y": 5, "color": "#ff0000"}]}')
    cls = ["--weights", weights["cls"]]
    p = run(["predict", src, *cls, "--hints", hdir, "--suggest", "5,5"])
    assert p.returncode == 1 and p.stdout.count(b"\t5,5\t") >= 1  # the suggestions still come
    assert p.stderr.decode() == f"recolor predict: {hdir / 'typo.json'}: hint file for no input\n"
    # an image on stdin takes stdin.json, as its output is stdin.png (it was for no input)
    (hdir / "stdin.json").write_text('{"points": [{"x": 5, "y": 5, "color": "#ff0000"}]}')
    p = run(["predict", "-", *cls, "--hints", hdir, "--suggest", "5,5"], input=src.read_bytes())
    assert p.stderr.decode() == f"recolor predict: {hdir / 'typo.json'}: hint file for no input\n"
    assert p.stdout.decode().split("\t")[::3] == ["-", "1.0000\n"]  # the hint's colour alone
    (hdir / "stdin.json").unlink()
    out = tmp_path / "out"
    out.mkdir()  # every output there already (a file that is not empty: what --skip-existing
    shutil.copy(src, out / src.name)  # looks at, whatever wrote it)
    done = [src, "-o", f"{out}/", "--skip-existing"]
    assert run(["predict", *done, *cls]).returncode == 0  # nothing to do, nothing said
    p = run(["predict", *done, *cls, "--hint", "nonsense"])
    assert p.returncode == 2 and "'nonsense' is not X,Y=#RRGGBB" in p.stderr.decode()
    p = run(["predict", *done, "--weights", weights["reg"], "--hint", "1,1=#fff"])
    assert p.returncode == 2 and "need the cls head" in p.stderr.decode()
    p = run(["predict", *done, *cls, "--hints", hdir])
    assert (p.returncode, p.stdout) == (1, b"") and "typo.json: hint file for no input" in str(
        p.stderr
    )


def test_a_colour_nested_as_deep_as_json_reads_is_a_bad_hint_file(tmp_path, weights):
    """A "color" nested 970 lists deep was read (json.loads stops near 1000) and then echoed
    in the error line with json.dumps, a few frames deeper: "internal error: RecursionError"."""
    from recolor_tools import hints

    deep: list = []
    for _ in range(5000):  # deeper than any stack: the line shows its opening
        deep = [deep]
    assert hints.shown(deep) == "[" * 40 + "..."
    src = write_rgb(tmp_path / "a.png", smooth_image(24, 32, 1))
    for depth in (900, 970):
        doc = tmp_path / f"deep{depth}.json"
        doc.write_text('{"points": [{"x": 1, "y": 1, "color": %s}]}' % ("[" * depth + "]" * depth))
        p = run(["predict", src, "-w", weights["cls"], "--hints", doc, "-o", tmp_path / "o.png"])
        err = p.stderr.decode()
        assert p.returncode == 1 and err.count("\n") == 1, err
        assert err.startswith(f"recolor predict: {doc}: bad hint file: "), err


def test_a_layer_of_another_size_is_named_beside_point_hints(tmp_path, weights, image):
    """With --hint as well, "the hint layer is 8x8, ..." named no file (the points came from
    two places); the layer is named whatever else gives points."""
    src, _ = image
    layer = write_rgb(tmp_path / "small.png", np.full((8, 8, 4), 200, np.uint8))
    p = run(["predict", src, "-w", weights["cls"], "--hints", layer, "--hint", "1,1=#f00",
             "-o", tmp_path / "out.png"])  # fmt: skip
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor predict: {src}: the hint layer of {layer} is 8x8, the image 80x60\n"
    )


def test_a_hint_layer_is_read_with_the_image_checks(tmp_path):
    # A hint layer is an image from the user: it passes the format and pixel-limit checks of
    # every image read (a decompression bomb is refused before decoding), named in one line.
    import zlib

    from corpus import png_bytes

    (tmp_path / "bomb.png").write_bytes(png_bytes(100_000, 100_000, zlib.compress(bytes(1000))))
    with pytest.raises(RecolorError, match="bomb|pixel") as e:
        hintfiles.read_hints(tmp_path / "bomb.png")
    assert e.value.path == str(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ('{"points": {"x": 1}}', '"points" must be a list of objects with "x", "y", "color"'),
        ('{"points": [[1, 2, "#f00"]]}', '"points" must be a list of objects with "x", "y"'),
        ('{"points": ""}', '"points" must be a list of objects'),  # not "no points"
        ('{"points": false}', '"points" must be a list of objects'),
        ('{"palette": "#fff"}', '"palette" must be a list of objects with "color" and an'),
        ('{"points": [], "point": []}', "unknown key 'point' (a hint file holds \"points\""),
        ('{"points": [{"x": 1, "y": 1, "colour": "#f00"}]}', "unknown key 'colour' in \"points\""),
        ('{"points": [{"x": 1, "y": 1, "color": "#f00", "sise": 9}]}', "unknown key 'sise'"),
        ('{"points": [{"x": 1, "color": "#f00"}]}', "missing key 'y'"),
        ('{"palette": [{"color": "#f00", "wieght": 9}]}', "unknown key 'wieght' in \"palette\""),
        ('{"palette": [{"color": "#e63946,#1d3557"}]}', "colour '#e63946,#1d3557' is not"),
        ('{"palette": [{"color": "#e63946:5"}]}', "colour '#e63946:5' is not #rrggbb"),
        ('{"palette": [{"color": "#e63946", "weight": "x"}]}', "palette weight 'x' is not a"),
        ('{"palette": [{"color": "#e63946", "weight": true}]}', "palette weight true is not a"),
        ('{"palette": [{"color": "#e63946", "weight": null}]}', "palette weight null is not a"),
        # JSON's own spellings, not Python's; and no Python advice for a number too long
        ('{"points": [{"x": true, "y": 1, "color": "#f00"}]}', "coordinate true is not a"),
        ('{"points": [{"x": null, "y": 1, "color": "#f00"}]}', "coordinate null is not a"),
        ('{"points": [{"x": {"a": 1}, "y": 1, "color": "#f00"}]}', 'coordinate {"a": 1} is not'),
        ('{"points": [{"x": 1, "y": 1, "color": ["#f00"]}]}', 'colour ["#f00"] is not #rrggbb'),
        # decimal notation as JSON's, not all that Python's float() takes (x = 10, 12, weight 1)
        ('{"points": [{"x": "1_0", "y": 1, "color": "#f00"}]}', "coordinate '1_0' is not a"),
        ('{"points": [{"x": "\u0661\u0662", "y": 1, "color": "#f00"}]}', "coordinate '١٢' is"),
        ('{"points": [{"x": 1, "y": 1, "color": "#f00", "size": "\u0663"}]}', "hint size must"),
        ('{"palette": [{"color": "#f00", "weight": "\u0661"}]}', "palette weight '١' is not a"),
        ('{"points": [{"x": 1, "y": 1, "color": "#f00", "size": true}]}', "hint size must be a"
         f" whole number of pixels, 1 to {2**31 - 1}: true"),
        ('{"points": [{"x": 1e999, "y": 1, "color": "#f00"}]}', "number 1e999 is too large"),
        ('{"points": [{"x": NaN, "y": 1, "color": "#f00"}]}', "NaN is not a JSON number"),
        ('{"palette": [{"color": "#f00", "weight": Infinity}]}', "Infinity is not a JSON number"),
        ('{"points": [{"x": 1, "y": 1, "color": true}]}', "colour true is not #rrggbb"),
        ('{"palette": [{"color": null}]}', "colour null is not #rrggbb"),
        ('{"points": [{"x": 1%s, "y": 1, "color": "#f00"}]}' % ("0" * 4999),
         "number 10000000000000000000... (5000 digits) is too large"),
        # as text: Python's "Exceeds the limit (4300 digits) for integer string conversion",
        # and a coordinate's 400 digits echoed whole, "not a number"
        ('{"points": [{"x": 1, "y": 1, "color": "#f00", "size": "%s"}]}' % ("9" * 5000),
         f"hint size must be a whole number of pixels, 1 to {2**31 - 1}: '{'9' * 40}...'"),
        ('{"points": [{"x": "%s", "y": 1, "color": "#f00"}]}' % ("9" * 400),
         f"coordinate '{'9' * 40}...' is out of range"),
        ("[]", 'expected an object with "points" and/or "palette"'),
        # the second "points" dropped the first's hints without a word
        ('{"points": [{"x": 1, "y": 1, "color": "#f00"}], "points": []}',
         "key 'points' given twice in one object"),
        ('{"points": [{"x": 1, "y": 1, "x": 2, "color": "#f00"}]}', "key 'x' given twice"),
    ],
)  # fmt: skip
def test_a_malformed_hint_file_says_what_is_wrong(tmp_path, doc, reason):
    # Python's own words ("string indices must be integers") once stood for a wrong shape.
    (tmp_path / "h.json").write_text(doc)
    with pytest.raises(RecolorError) as e:
        hintfiles.read_hints(tmp_path / "h.json")
    assert e.value.reason.startswith(f"bad hint file: {reason}"), e.value.reason


def test_a_palette_image_or_hint_layer_in_the_input_folder_is_no_input(tmp_path, weights):
    """`recolor predict . --palette ref.png` recoloured ref.png too (and took the palette's
    pixels for a hint layer of another size); named on the command line, it is an input."""
    posters = tmp_path / "posters"
    posters.mkdir()
    write_rgb(posters / "b.png", smooth_image(40, 50, 3))
    write_rgb(posters / "ref.png", smooth_image(40, 50, 4))  # a layer fits every input
    layer = np.zeros((40, 50, 4), np.uint8)
    layer[10:15, 10:15] = (40, 60, 220, 255)
    write_rgb(posters / "b.hints.png", layer)
    out = tmp_path / "out"
    args = ["predict", posters, "-w", weights["cls"], "-o", out, "-q"]
    for given in (["--palette", posters / "ref.png"], ["--hints", posters / "b.hints.png"]):
        p = run([*args, *given], check_rc=0)
        written = {Path(x).name for x in p.stdout.decode().splitlines()}
        assert written == {"b.png", "ref.png" if given[0] == "--hints" else "b.hints.png"}
    alone = ["predict", posters / "ref.png", "-w", weights["cls"], "-o", tmp_path / "own", "-q"]
    p = run([*alone, "--palette", posters / "ref.png"], check_rc=0)
    assert p.stdout.decode() == f"{tmp_path / 'own' / 'ref.png'}\n"


def test_a_palette_image_in_the_hint_folder_is_no_hint_file(tmp_path, weights):
    """`predict q --hints q --palette q/ref.png`: the palette image was left out of the inputs
    but then reported as "hint file for no input" (exit 1, all done)."""
    folder = tmp_path / "q"
    folder.mkdir()
    write_rgb(folder / "a.png", smooth_image(40, 50, 3))
    write_rgb(folder / "ref.png", smooth_image(40, 50, 4))
    (folder / "a.json").write_text('{"points": [{"x": 5, "y": 5, "color": "#f00"}]}')
    out = tmp_path / "out"
    p = run(["predict", folder, "--hints", folder, "--palette", folder / "ref.png",
             "-w", weights["cls"], "-o", f"{out}/"])  # fmt: skip
    assert (p.returncode, p.stderr) == (0, b"")
    assert p.stdout.decode() == f"{out / 'a.png'}\n"
    # a hint folder of its own holding the palette: a stray layer there is still one for no
    # input (the palette's folder was taken for a folder of inputs not named)
    hints_dir = tmp_path / "h"
    hints_dir.mkdir()
    layer = np.zeros((40, 50, 4), np.uint8)
    layer[5, 5] = (255, 0, 0, 255)
    write_rgb(hints_dir / "typo.png", layer)
    write_rgb(hints_dir / "ref.png", smooth_image(40, 50, 4))
    p = run(["predict", folder / "a.png", "--hints", hints_dir, "--palette",
             hints_dir / "ref.png", "-w", weights["cls"], "-o", f"{tmp_path / 'o2'}/"])  # fmt: skip
    assert p.returncode == 1
    typo = hints_dir / "typo.png"
    assert p.stderr.decode() == f"recolor predict: {typo}: hint file for no input\n"


def test_a_hint_folder_that_is_the_input_folder(tmp_path, weights):
    """JSON hint files beside the images: a PNG image there was dropped from the inputs and
    reported as "hint file for no input" (it was taken for a layer); its images are inputs and
    its JSON files their hints, PNG photographs included."""
    folder = tmp_path / "posters"
    folder.mkdir()
    write_rgb(folder / "a.jpg", smooth_image())
    write_rgb(folder / "b.png", smooth_image(seed=1))
    write_rgb(folder / "c.png", smooth_image(seed=2))
    for name in ("a", "b"):
        (folder / f"{name}.json").write_text('{"points": [{"x": 5, "y": 5, "color": "#f00"}]}')
    w = ["-w", weights["cls"]]
    out = tmp_path / "out"
    p = run(["predict", folder, "--hints", folder, *w, "-o", f"{out}/"])
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["a.jpg", "b.png", "c.png"]
    # b.png took its hint, c.png none: as run with b.json alone, in a folder beside no image
    only_b = tmp_path / "only_b"
    only_b.mkdir()
    shutil.copy(folder / "b.json", only_b / "b.json")
    alone = tmp_path / "alone"
    run(["predict", folder / "b.png", folder / "c.png", "--hints", only_b, *w, "-o", f"{alone}/"],
        check_rc=0)  # fmt: skip
    for name in ("b", "c"):
        assert (out / f"{name}.png").read_bytes() == (alone / f"{name}.png").read_bytes(), name
    # some of its images named (a glob): the others are images not named, not layers for no
    # input, in its subfolders too (sub/e.png was one), and their JSON files theirs (each was
    # "for no input", exit 1); a JSON file beside no image is still for no input
    (folder / "d.json").write_text('{"points": []}')
    write_rgb(folder / "f.Png", smooth_image(seed=4))  # (its extension in mixed case)
    (folder / "f.json").write_text('{"points": []}')
    (folder / "loop.tif").symlink_to("loop.tif")  # (a link loop: no image, not a failed run)
    (folder / "sub").mkdir()
    write_rgb(folder / "sub" / "e.png", smooth_image(seed=3))
    (folder / "sub" / "e.json").write_text('{"points": [{"x": 2, "y": 2, "color": "#00f"}]}')
    p = run(["predict", folder / "a.jpg", folder / "b.png", "--hints", folder, *w,
             "-o", f"{tmp_path / 'some'}/"])  # fmt: skip
    assert (p.returncode, p.stderr.decode()) == (
        1, f"recolor predict: {folder / 'd.json'}: hint file for no input\n"
    )  # fmt: skip
    assert (tmp_path / "some" / "b.png").read_bytes() == (out / "b.png").read_bytes()
    # the hint folder above the input folder: sub/e.png takes the sub/e.json beside it (it
    # took e.json, and sub/e.json was a file for no input); the images of the folder above are
    # images not named and their JSON files theirs (each was "for no input", a.jpg too), as
    # the JSON file beside no image is still for no input
    p = run(["predict", folder / "sub", "--hints", folder, *w, "-o", f"{tmp_path / 'up'}/"])
    assert (p.returncode, p.stderr.decode()) == (
        1, f"recolor predict: {folder / 'd.json'}: hint file for no input\n"
    )  # fmt: skip
    run(["predict", folder / "sub" / "e.png", "--hints", folder / "sub" / "e.json", *w, "-o",
         tmp_path / "e.png"], check_rc=0)  # fmt: skip
    assert (tmp_path / "up" / "e.png").read_bytes() == (tmp_path / "e.png").read_bytes()


def test_a_hint_file_is_json_or_a_layer_by_its_bytes(tmp_path, weights):
    """A JSON hint file named .txt was "not an image", a layer named .json "bad hint file:
    'utf-8' codec can't decode": told apart by their bytes, as stdin always was."""
    write_rgb(tmp_path / "a.png", smooth_image())
    doc = '{"points": [{"x": 5, "y": 5, "color": "#ff0000"}]}'
    (tmp_path / "h.json").write_text(doc)
    (tmp_path / "h.txt").write_text(doc)
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[5, 5] = (0, 0, 255, 255)  # red, BGRA
    cv2.imwrite(str(tmp_path / "layer.png"), layer)
    (tmp_path / "layer.json").write_bytes(cv2.imencode(".png", layer)[1].tobytes())
    # read as the file of the right name is (the name aside, which its errors say)
    read = hintfiles.read_hints
    txt = str(tmp_path / "h.txt")
    assert read(txt) == replace(read(tmp_path / "h.json"), origin=txt)
    named = {"origin": str(tmp_path / "layer.json"), "layer": str(tmp_path / "layer.json")}
    assert read(tmp_path / "layer.json") == replace(read(tmp_path / "layer.png"), **named)
    # by the CLI, in one run over a hint folder: a layer named .json (a.json), an empty .json
    # (e.json: no hints, where an empty .png is a broken layer, below)
    ins, hdir = tmp_path / "in", tmp_path / "hints"
    ins.mkdir(), hdir.mkdir()
    for name in ("a", "e"):
        shutil.copy(tmp_path / "a.png", ins / f"{name}.png")
    shutil.copy(tmp_path / "layer.json", hdir / "a.json")
    (hdir / "e.json").write_bytes(b"")
    out = tmp_path / "out"
    run(["predict", ins, "--hints", hdir, "-w", weights["cls"], "-o", out], check_rc=0)
    # and a JSON file named .txt, given alone: a point and its pixel alike
    run(["predict", tmp_path / "a.png", "--hints", tmp_path / "h.txt", "-w", weights["cls"],
         "-o", tmp_path / "txt.png"], check_rc=0)  # fmt: skip
    assert (tmp_path / "txt.png").read_bytes() == (out / "a.png").read_bytes()
    # bytes that tell neither (empty, a format recolor does not read): the name says which
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "anim.png").write_bytes(b"GIF89a" + bytes(40))
    for name, says in (("empty.png", "empty file"), ("anim.png", "not an image recolor reads")):
        p = run(["predict", tmp_path / "a.png", "--hints", tmp_path / name, "-w",
                 weights["cls"], "-o", tmp_path / "x.png"])  # fmt: skip
        assert p.returncode == 1 and p.stderr.decode().startswith(
            f"recolor predict: {tmp_path / name}: {says}"
        ), p.stderr
    # an empty or blank file of another name is no hints too, as stdin's: it was "empty file"
    # (also a process substitution's /dev/fd/63) or "not an image recolor reads (text)"
    (tmp_path / "poster.hints").write_bytes(b"")
    (tmp_path / "blank").write_bytes(b" \n")
    for name in ("poster.hints", "blank"):  # read as an empty .json is
        f = tmp_path / name
        assert read(f) == replace(read(hdir / "e.json"), origin=str(f)), name
    fifo = tmp_path / "fifo"  # and recoloured as none, by the CLI
    with fifo_write_whole(fifo, b""):
        run(["predict", tmp_path / "a.png", "--hints", fifo, "-w", weights["cls"], "-o",
             tmp_path / "none.png"], check_rc=0)  # fmt: skip
    assert (tmp_path / "none.png").read_bytes() == (out / "e.png").read_bytes()


def test_palette_weights_far_apart_are_kept_in_float32(tmp_path, weights, image):
    """Weights 1e30 and 1e-30 are both in range, but their shares (1 and 1e-60) were rounded
    to float32, the second to 0, and then refused as "Hints: palette_w must be positive" (an
    internal field, and "no colour list" for --palette). The small one now counts as the
    smallest positive share."""
    h = palettes.palette([("#e63946", "1e30"), ("#1d3557", 1e-30)])
    assert h.palette_w.dtype == np.float32 and (h.palette_w > 0).all()
    assert h.palette_w[0] == 1 and h.palette_w[1] < 1e-37
    big = tmp_path / "big.json"  # 10^30 written out is in range too (31 digits)
    big.write_text('{"palette": [{"color": "#e63946", "weight": 1%s}]}' % ("0" * 30))
    assert hintfiles.read_hints(big).palette_w.tolist() == [1.0]
    src, _ = image
    # one run of two inputs, the same image: w.png takes w.json, alone.png the first colour
    hdir, posters = tmp_path / "hints", tmp_path / "posters"
    hdir.mkdir(), posters.mkdir()
    doc = {"palette": [{"color": "#e63946", "weight": 1e30}, {"color": "#1d3557", "weight": 1e-30}]}
    (hdir / "w.json").write_text(json.dumps(doc))
    (hdir / "alone.json").write_text('{"palette": [{"color": "#e63946"}]}')
    for name in ("w", "alone"):
        shutil.copy(src, posters / f"{name}.png")
    run(["predict", posters, "-w", weights["cls"], "--hints", hdir, "-o", tmp_path / "out"],
        check_rc=0)  # fmt: skip
    alone = (tmp_path / "out" / "alone.png").read_bytes()
    assert (tmp_path / "out" / "w.png").read_bytes() == alone  # the tiny share changes nothing
    out = tmp_path / "o.png"  # nor in --palette's colours
    run(["predict", src, "-w", weights["cls"], "--palette", "#e63946:1e30,#1d3557:1e-30", "-o",
         out], check_rc=0)  # fmt: skip
    assert out.read_bytes() == alone


def test_a_palette_folder_is_named_as_a_folder(tmp_path, weights, image):
    """A folder given as --palette said "is a directory, and no input was found in it" (the
    words for an input folder), though it held images: a palette is no folder of inputs."""
    src, _ = image
    (tmp_path / "pd").mkdir()
    write_rgb(tmp_path / "pd" / "b.png", smooth_image(20, 20, 1))
    p = run(["predict", src, "-w", weights["cls"], "-o", tmp_path / "x.png", "--palette",
             tmp_path / "pd"])  # fmt: skip
    assert p.returncode == 1 and p.stderr.decode() == (
        f"recolor predict: {tmp_path / 'pd'}: is a directory (--palette takes an image or "
        "#rrggbb colours)\n"
    )
    assert not (tmp_path / "x.png").exists()


def test_outputs_into_the_hint_folder_are_a_usage_error(tmp_path, weights, image):
    """-o hints/ --hints hints/ wrote the outputs among the hint files, and the next run read
    them as hint layers ("two hint files", "a hint layer must be an image with an alpha
    channel"). Refused before any work, also for a folder below it, and for a file there
    (it was written: the next run found two hint files); with no -o, the default folder
    (the message said "-o None")."""
    src, _ = image
    hdir = tmp_path / "hints"
    hdir.mkdir()
    (hdir / "a.json").write_text("{}")
    for out in (f"{hdir}/", f"{hdir}/sub/", f"{hdir}/a.png"):
        p = run(["predict", src, "-w", weights["cls"], "--hints", hdir, "-o", out])
        assert p.returncode == 2 and p.stderr.decode() == (
            f"recolor predict: -o {out}: inside the --hints folder, where outputs would be "
            "read as hint files (see recolor predict -h)\n"
        )
    assert sorted(f.name for f in hdir.iterdir()) == ["a.json"]
    p = run(["predict", src, "-w", weights["cls"], "--hints", "."], cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.decode() == (
        "recolor predict: -o recolored/ (the default): inside the --hints folder, where "
        "outputs would be read as hint files (see recolor predict -h)\n"
    )


def test_a_hint_on_the_command_line_corrects_a_hint_file(tmp_path, weights, image):
    """Where a --hint's square overlaps a file's point, the --hint holds (it was the file's,
    whatever the order given): the file is the base, the command line the correction, for a
    single file and for a hint folder alike."""
    src, _ = image
    hdir = tmp_path / "hints"
    hdir.mkdir()
    doc = {"points": [{"x": 20, "y": 20, "color": "#c0392b", "size": 5},
                      {"x": 50, "y": 30, "color": "#c0392b"}]}  # fmt: skip
    for f in (tmp_path / "h.json", hdir / "a.json"):
        f.write_text(json.dumps(doc))
    # a --hint on a file's point replaces it everywhere, not only at its pixels (their colours
    # were mixed on the output grid: a red point corrected to blue spread magenta): in the
    # folder's run, both.png (the same image) takes both.json's red point, alone.png no file
    (hdir / "both.json").write_text('{"points": [{"x": 20, "y": 20, "color": "#c0392b"}]}')
    for name in ("both", "alone"):
        shutil.copy(src, tmp_path / f"{name}.png")
    outs = {}
    for given in (tmp_path / "h.json", hdir):
        o = tmp_path / f"out-{given.name}"
        more = [tmp_path / "both.png", tmp_path / "alone.png"] if given == hdir else []
        order = (["--hints", given, "--hint", "20,20=#1d4e89"] if more
                 else ["--hint", "20,20=#1d4e89", "--hints", given])  # fmt: skip
        run(["predict", src, *more, "-w", weights["cls"], *order, "-o", f"{o}/"], check_rc=0)
        outs[given] = o
        # (the hint's a/b at the pixel's own lightness, clipped to sRGB: not the hex itself)
        ab = lab(read_rgb_u8(o / "a.png"))[..., 1:]
        blue, red = hints.parse_color("#1d4e89"), hints.parse_color("#c0392b")
        for x, y, want, other in ((20, 20, blue, red), (21, 21, red, blue), (50, 30, red, blue)):
            d = np.linalg.norm(ab[y, x] - want), np.linalg.norm(ab[y, x] - other)
            assert d[0] < d[1] / 3, (given, x, y, d)  # the --hint's pixel, then the file's
    both, alone = (outs[hdir] / f"{name}.png" for name in ("both", "alone"))
    assert both.read_bytes() == alone.read_bytes()
