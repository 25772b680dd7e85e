"""The learned hint model: checkpoints without hints load unchanged, hints are simulated per crop
deterministically, ``recolor train --hints --init`` starts exactly from the automatic model, and
a model fine-tuned on a tiny synthetic set follows a hint that lightness cannot tell. Learned
affinity features (``recolor train --affinity``, what spreads a point hint over the class
distribution, :func:`recolor_tools.guide.point_mix`) learn while the network stays as it is.

The synthetic set: gray images holding one square of lightness 55 whose hue is random per image,
so only a hint can say the square's colour.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import run, write_rgb

from recolor_tools import checkpoints, guide, hintinput, hints, models, quant
from recolor_tools.color import lab_to_rgb, rgb_to_lab, to_uint8
from recolor_tools.data import ColorDataset
from recolor_tools.distributed import Dist
from recolor_tools.errors import UsageError
from recolor_tools.imageio import read_rgb
from recolor_tools.predict import Predictor
from recolor_tools.train import train
from recolor_tools.trainconfig import TrainConfig, resolve_defaults
from recolor_tools.trainoptim import build_optimiser
from recolor_tools.trainsetup import ClassSetup, Device, build_model

SIDE = 32
CHROMA = 45.0
HINT_HUES = (2.2, 4.0)  # radians: hint colours (any hue is one the square can take)


def square_image(hue: float | None, x0: int = 8, y0: int = 8, side: int = 16) -> np.ndarray:
    """uint8 RGB: gray (L 40) with a square of L 55, coloured at ``hue`` (None: gray too)."""
    lab = np.zeros((SIDE, SIDE, 3), np.float32)
    lab[:, :, 0] = 40
    lab[y0 : y0 + side, x0 : x0 + side, 0] = 55
    if hue is not None:
        lab[y0 : y0 + side, x0 : x0 + side, 1] = CHROMA * np.cos(hue)
        lab[y0 : y0 + side, x0 : x0 + side, 2] = CHROMA * np.sin(hue)
    return to_uint8(lab_to_rgb(lab))


def hex_of(hue: float) -> str:
    lab = np.array([[[55, CHROMA * np.cos(hue), CHROMA * np.sin(hue)]]], np.float32)
    return "#" + bytes(to_uint8(lab_to_rgb(lab))[0, 0]).hex()


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    d = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    for i in range(32):
        x0, y0 = rng.integers(2, SIDE - 18, size=2)
        write_rgb(d / f"{i:02d}.png", square_image(rng.uniform(0, 2 * np.pi), x0, y0))
    return d


def tiny_model(hints: bool = False, seed: int = 0) -> models.Colorizer:
    torch.manual_seed(seed)
    q = len(quant.gamut_classes(10))
    model = models.Colorizer(models.ModelConfig(num_classes=q, width=8, hints=hints))
    for m in model.modules():  # statistics that are not the identity, as a trained model has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    model.classes.copy_(torch.tensor(quant.gamut_classes(10)))
    return model.eval()


def save(model: models.Colorizer, path, drop_hints: bool = False):
    ckpt = checkpoints.make_checkpoint(model, classes=model.classes.numpy(), grid=10.0)
    if drop_hints:  # as written before models took hints
        del ckpt["config"]["hints"]
    checkpoints.save_checkpoint(path, ckpt)
    return path


def some_hints(L: torch.Tensor, q: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    B, _, H, W = L.shape
    return {
        "hint_ab": torch.randn(B, 2, H, W, generator=g) * 40,
        "hint_mask": (torch.rand(B, 1, H, W, generator=g) > 0.95).float(),
        "palette": torch.softmax(torch.randn(B, q, generator=g), dim=1),
    }


# -- the model and its checkpoints --------------------------------------------------------------


def test_old_checkpoint_loads_without_hints_and_gives_identical_output(tmp_path):
    model = tiny_model()
    loaded, _ = checkpoints.load_checkpoint(save(model, tmp_path / "old.pt", drop_hints=True))
    assert loaded.config.hints is False
    assert not any(name in dict(loaded.named_children()) for name in models.HINT_MODULES)
    L = torch.rand(2, 1, 32, 40) * 100
    with torch.no_grad():
        assert torch.equal(loaded(L)[0], model(L)[0])
        x, palette = models.network_input(L, some_hints(L, 5), loaded.config)
    assert x.shape == (2, 1, 32, 40) and palette is None  # hints do not enter such a model


def test_hint_model_round_trips_and_its_input_holds_the_hints(tmp_path):
    model = tiny_model(hints=True)
    for name in models.HINT_MODULES:  # trained hint layers, not the zeros they start at
        for p in getattr(model, name).parameters():
            torch.nn.init.normal_(p, std=0.1)
    loaded, ckpt = checkpoints.load_checkpoint(save(model, tmp_path / "hint.pt"))
    assert ckpt["config"]["hints"] is True and loaded.config.hints is True
    L = torch.rand(2, 1, 32, 40) * 100
    h = some_hints(L, loaded.config.num_classes)
    with torch.no_grad():
        out = loaded(L, hints=h)[0]
        assert torch.equal(out, model(L, hints=h)[0])
        assert not torch.equal(out, loaded(L)[0])  # the hints change the output
        x, palette = models.network_input(L, h, loaded.config)
    mask = h["hint_mask"]
    assert x.shape == (2, 4, 32, 40)
    np.testing.assert_allclose(x[:, 1:3], h["hint_ab"] * mask / models.AB_SCALE, atol=1e-6)
    assert torch.equal(x[:, 3:], mask)
    assert torch.equal(palette[:, -1], torch.ones(2))  # the flag: a palette is given
    np.testing.assert_allclose(palette[:, :-1].sum(1), 1, rtol=1e-5)


# -- simulated hints ----------------------------------------------------------------------------


def test_simulated_hints_follow_the_truth_and_the_seed(squares):
    classes = quant.gamut_classes(10)
    paths = sorted(str(p) for p in squares.iterdir())
    ds = ColorDataset(paths, SIDE, head="cls", classes=classes, seed=3, hints=True)
    items = [ds[(e, i)] for e in range(4) for i in range(len(paths))]
    again = ds[(2, 5)]
    for key in models.HINT_KEYS:
        assert torch.equal(again[key], items[2 * len(paths) + 5][key])  # fixed by seed/epoch/item
    no_points = np.mean([it["hint_mask"].sum().item() == 0 for it in items])
    with_palette = np.mean([it["palette"].sum().item() > 0 for it in items])
    assert 0.1 < no_points < 0.45 and 0.3 < with_palette < 0.7  # 1/4 and 1/2 by design
    counts = [it["hint_mask"].sum().item() for it in items]
    assert max(counts) > 81  # several patches in some crops
    for it in items:
        assert set(it["hint_mask"].unique().tolist()) <= {0.0, 1.0}
        assert (it["hint_ab"][:, ~it["hint_mask"][0].bool()] == 0).all()
        if it["palette"].sum() > 0:
            np.testing.assert_allclose(it["palette"].sum().item(), 1, rtol=1e-5)
    # With the full-resolution truth (validation items): a hint is the mean of the truth over
    # its patch, so between the truth's extremes, and equal to it inside one flat area.
    val = ColorDataset(paths, SIDE, train=False, head="cls", classes=classes, hints=True)
    diffs = []
    for i in range(len(paths)):
        it = val[i]
        m = it["hint_mask"][0].bool()
        truth, hint = it["ab_full"][:, m], it["hint_ab"][:, m]
        lo, hi = it["ab_full"].amin(dim=(1, 2)), it["ab_full"].amax(dim=(1, 2))
        assert ((hint >= lo[:, None] - 1e-3) & (hint <= hi[:, None] + 1e-3)).all()
        diffs.append((hint - truth).abs().flatten())
    diffs = torch.cat(diffs)
    assert len(diffs) > 0 and diffs.median() < 1.0  # most patches lie in one flat area
    plain = ColorDataset(paths, SIDE, head="cls", classes=classes, seed=3)
    assert torch.equal(plain[(2, 5)]["idx"], again["idx"])  # the crop does not change


# -- training ------------------------------------------------------------------------------------


def train_args(data, out, *extra):
    grid = [] if {"--init", "--resume"} & set(extra) else ["--grid", 10]  # they bring theirs
    return [
        "train", data, "--size", SIDE, "-b", 8, "--width", 8, *grid, "-j", 0,
        "--threads", 1, "--device", "cpu", "-o", out, "--quiet", *extra,
    ]  # fmt: skip


def train_config(data, out, **given) -> TrainConfig:
    """What :func:`train_args` gives ``recolor train``, for :func:`recolor_tools.train.train` in
    this process (the runs below that check no command-line behaviour: no new process)."""
    brought = {"init", "resume"} & set(given) or given.get("head") == "reg"  # (reg: no classes)
    grid = {} if brought else {"grid": 10}  # they bring theirs
    return TrainConfig(data=[str(data)], size=SIDE, batch_size=8, width=8, **grid, workers=0,
                       threads=1, device="cpu", out=out, quiet=True, **given)  # fmt: skip


@pytest.fixture(scope="module")
def automatic(squares, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto")
    return train(train_config(squares, out, steps=40, lr=3e-3))


def test_init_with_hints_starts_exactly_as_the_automatic_model(squares, automatic, tmp_path):
    auto, ckpt = checkpoints.load_checkpoint(automatic)
    assert auto.config.hints is False
    cfg = resolve_defaults(
        TrainConfig(data=[str(squares)], out=tmp_path, hints=True, init=automatic), None, ckpt
    )
    assert cfg.freeze_bn is True and cfg.lr == 3e-5  # the fine-tune defaults
    dev = Device(torch.device("cpu"), torch.autocast("cpu", enabled=False), None, 0)
    model = build_model(cfg, Dist(), dev, ClassSetup.of_checkpoint(ckpt), ckpt).eval()
    model.classes.copy_(auto.classes)
    assert model.config.hints is True
    L = torch.rand(3, 1, 32, 32) * 100
    with torch.no_grad():
        expected = auto(L)[0]
        assert torch.equal(model(L)[0], expected)
        assert torch.equal(model(L, hints=some_hints(L, model.config.num_classes))[0], expected)
    opt = build_optimiser(cfg, model, 10, None)
    assert [g["lr"] for g in opt.optimizer.param_groups] == [3e-5, 1e-3]
    model.train()
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_without_hints_the_hint_layers_add_nothing_whatever_their_weights():
    # Trained hint layers must leave the automatic path alone: no hints is all-zero input to
    # them, and they hold no bias (a learned bias moved every automatic prediction).
    torch.manual_seed(1)
    config = models.ModelConfig(head="cls", num_classes=25, width=8, hints=True)
    model = models.Colorizer(config).eval()
    base = models.Colorizer(config).eval()
    base.load_state_dict(model.state_dict())
    for name in models.HINT_MODULES:
        for p in getattr(model, name).parameters():
            torch.nn.init.normal_(p)
    L = torch.rand(2, 1, 32, 40) * 100
    with torch.no_grad():
        assert torch.equal(model(L)[0], base(L)[0])
        hinted = some_hints(L, config.num_classes)
        assert not torch.equal(model(L, hints=hinted)[0], base(L, hints=hinted)[0])


@pytest.mark.parametrize("automatic", [True, False])
def test_a_hint_model_is_steered_through_the_features_of_a_pass_without_hints(
    tmp_path, monkeypatch, automatic
):
    """The hints change a hint model's features where they are (hint4 adds to the decoder's
    output), so a hint compared there found fewer cells like it: 23.27 dB against 24.63 on
    posters with 10 points (hintinput.AFFINITY_FROM_AUTOMATIC). Steering now compares the
    features of a second pass without hints; the switch still gives the hint-fed ones."""
    from recolor_tools import predict

    model = tiny_model(hints=True)
    for name in models.HINT_MODULES:
        for p in getattr(model, name).parameters():
            torch.nn.init.normal_(p)
    pred = Predictor.load(save(model, tmp_path / "h.pt"))
    seen = []
    steer = predict.steer
    monkeypatch.setattr(predict, "steer", lambda z, f, *a: seen.append(f) or steer(z, f, *a))
    monkeypatch.setattr(hintinput, "AFFINITY_FROM_AUTOMATIC", automatic)
    gray = square_image(None).astype(np.float32) / 255
    item = pred.prepare(gray, hints.point(10, 10, "#c0392b", size=3))
    pred.run([item])
    x = torch.from_numpy(item.work[None, None])
    with torch.inference_mode():
        given = hintinput.batch_hints([item], pred.model.classes, torch.device("cpu"))
        plain = pred.model.features(x)
        hinted = pred.model.features(x, given)
    assert not torch.equal(plain, hinted)  # the hints do change the features
    (f,) = seen
    assert torch.equal(f, (plain if automatic else hinted)[0])


def test_suggest_reads_what_predict_decodes_for_a_hint_model(tmp_path, monkeypatch):
    """--suggest ran a hint model without its hints as input and steered whatever
    STEER_LEARNED said: its colours came from a distribution predict never decodes."""
    from recolor_tools import predict

    model = tiny_model(hints=True)
    for name in models.HINT_MODULES:
        for p in getattr(model, name).parameters():
            torch.nn.init.normal_(p)
    pred = Predictor.load(save(model, tmp_path / "h.pt"))
    monkeypatch.setattr(hintinput, "STEER_LEARNED", False)  # the learned input alone
    for module in (predict, guide):  # (the old path called guide's own)
        monkeypatch.setattr(module, "steer", lambda *a: pytest.fail("steered"))
    gray = square_image(None)
    given = hints.point(6, 6, "#c0392b", size=3)
    with_hint = pred.suggest_points(gray, [(20, 20)], 3, given)
    assert with_hint != pred.suggest_points(gray, [(20, 20)], 3)  # the input moved them
    item = pred.prepare(gray.astype(np.float32) / 255, given)
    z = predict.network_output(pred.model, [item], pred.prior)[0]
    one = guide.cell_probabilities(z, item, pred.model.config.out_stride, 20, 20)  # scalars
    assert one.shape == (len(pred.model.classes),) and abs(one.sum() - 1) < 1e-9
    two = guide.cell_probabilities(z, item, pred.model.config.out_stride, 20, np.array([20, 3]))
    assert two.shape == (2, len(one)) and np.allclose(two[0], one)


def test_a_hint_over_another_is_the_model_input_alone(tmp_path):
    """The learned input averaged a --hint with the hint file's point it covers (weighted by
    their squares' areas), while the steering and the output take the later one alone."""
    red, blue = hints.parse_color("#c0392b"), hints.parse_color("#1d4e89")
    both = hints.points([(12, 12, "#c0392b", 3), (12, 12, "#1d4e89", 3)])
    pred = Predictor.load(save(tiny_model(hints=True), tmp_path / "h.pt"))
    item = pred.prepare(square_image(None).astype(np.float32) / 255, both)
    ab, mask = hintinput.rasterise(item)
    hinted = ab[:, mask[0] > 0].T
    assert len(hinted) and np.allclose(hinted, blue, atol=1e-4), (hinted, red, blue)


def test_fine_tune_settings_survive_a_resume(tmp_path):
    resumed = {"train_state": {"args": {"freeze_bn": True, "hints": True}}}
    cfg = TrainConfig(data=["x"], out=tmp_path, resume=True)  # --resume takes no --init
    assert resolve_defaults(cfg, resumed).freeze_bn is True
    assert resolve_defaults(cfg, {"train_state": {"args": {}}}).freeze_bn is False
    given = TrainConfig(data=["x"], out=tmp_path, resume=True, freeze_bn=False)
    assert resolve_defaults(given, resumed).freeze_bn is False  # what the user says wins
    assert TrainConfig(data=["x"], hints=True).lr == 1e-4  # no --init: not a fine-tune
    # the learning rate too: an --init --affinity run (lr 0) resumed at 1e-4 with an optimiser
    # of two parameter groups, which its checkpoint's one could not load into
    assert resolve_defaults(cfg, {"train_state": {"args": {"lr": 0.0}}}).lr == 0.0
    assert resolve_defaults(cfg, {"train_state": {"args": {}}}).lr == 1e-4
    given = TrainConfig(data=["x"], out=tmp_path, resume=True, lr=3e-4)  # the optimiser and
    # schedule restored would overrule it (or not fit: lr 0 has one parameter group)
    with pytest.raises(UsageError, match="--lr 0.0003 and --resume: the run has 0 "):
        resolve_defaults(given, {"train_state": {"args": {"lr": 0.0}}})
    assert resolve_defaults(given, {"train_state": {"args": {"lr": 3e-4}}}).lr == 3e-4
    affine = {"train_state": {"args": {}}, "config": {"affinity": 16}}
    with pytest.raises(UsageError, match="--affinity 0 and --resume: the run has 16"):
        resolve_defaults(TrainConfig(data=["x"], out=tmp_path, resume=True, affinity=0), affine)
    # --hint-lr means nothing to a run without new layers: refused, as for a fresh run (it
    # was accepted, unsaid)
    hint_lr = TrainConfig(data=["x"], out=tmp_path, resume=True, hint_lr=5e-4)
    with pytest.raises(UsageError, match="--hint-lr sets the rate of the layers"):
        resolve_defaults(hint_lr, {"train_state": {"args": {}}, "config": {}})
    with pytest.raises(UsageError, match="--hint-lr 0.0005 and --resume: the run has 0.001"):
        resolve_defaults(hint_lr, affine)
    assert TrainConfig(data=["x"], head=None).head == "cls"  # None: the default (or the run's)
    with pytest.raises(ValueError, match="--precision must be one of"):  # it has no None
        TrainConfig(data=["x"], precision=None)
    fresh = TrainConfig(data=["x"])  # a fresh run's defaults without resolve_defaults
    assert (fresh.schedule, fresh.hint_lr) == ("plateau", 1e-3)
    assert TrainConfig(data=["x"], hints=True, init="w.pt", lr=1e-3).lr == 1e-3


def test_fine_tuned_hint_model_follows_a_hint(squares, automatic, tmp_path, monkeypatch):
    monkeypatch.setattr(hintinput, "STEER_LEARNED", False)  # the learned path alone
    out = tmp_path / "hint"
    # Learning rates far above the defaults: a toy set that must be learnt in seconds. (Through
    # the command line: this file's one `recolor train --hints --init` that trains.)
    extra = ("--hints", "--init", automatic, "--steps", 300, "--lr", 3e-3, "--hint-lr", 0.1)
    run(train_args(squares, out, *extra), check_rc=0)
    predictor = Predictor.load(out / "cls.pt")
    assert predictor.model.config.hints is True
    gray = square_image(None).astype(np.float32) / 255
    for hue in HINT_HUES:
        color = hex_of(hue)
        without = square_error(predictor.recolorize(gray), color)
        hinted = predictor.recolorize(gray, hints=hints.point(15, 15, color, size=3))
        with_hint = square_error(hinted, color)
        assert with_hint < 0.5 * without, (hue, with_hint, without)
    # The same through the command line (steered as well, as predict does by default).
    write_rgb(tmp_path / "gray.png", square_image(None))
    color = hex_of(HINT_HUES[0])
    args = ["predict", tmp_path / "gray.png", "-w", out / "cls.pt", "-o", tmp_path / "o.png"]
    run([*args, "--hint", f"15,15={color}"], check_rc=0)
    hinted = read_rgb(tmp_path / "o.png")
    assert square_error(hinted, color) < 0.5 * square_error(predictor.recolorize(gray), color)


def square_error(rgb: np.ndarray, color: str) -> float:
    """Median a/b distance to ``color`` over the square, less the hinted pixels (which compose
    pastes): what the hint must have spread to."""
    region = np.zeros((SIDE, SIDE), bool)
    region[8:24, 8:24] = True
    region[14:17, 14:17] = False
    ab = rgb_to_lab(np.asarray(rgb, np.float32))[:, :, 1:]
    return float(np.median(np.linalg.norm(ab[region] - hints.parse_color(color), axis=1)))


# -- learned affinity features ---------------------------------------------------------------


def test_affinity_starts_as_the_decoder_features_and_only_it_learns():
    base = tiny_model()
    model = models.Colorizer(models.ModelConfig(num_classes=base.config.num_classes, width=8,
                                                affinity=16))  # fmt: skip
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["affinity.weight"] and not unexpected
    model.classes.copy_(base.classes)
    L = torch.rand(2, 1, 32, 32) * 100
    feats = model.features(L)
    assert torch.equal(model.affinity_features(feats), feats)  # identity at twice the width
    idx = torch.randint(0, base.config.num_classes, (2, 5, 8, 8))
    targets = {"idx": idx, "w": torch.full((2, 5, 8, 8), 0.2), "pw": torch.ones(2, 8, 8)}
    torch.manual_seed(0)
    _, loss = model(L, targets)
    with torch.no_grad():
        assert loss > base(L, targets)[1]  # the cls loss plus the affinity's
    loss.backward()
    learned = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert "affinity.weight" in learned and len(learned) > 1  # the cls loss reaches the rest
    model.zero_grad(set_to_none=True)
    emb = model.affinity_features(feats.detach())
    guide.affinity_loss(model.head_out(feats), emb, targets, model.classes).backward()
    learned = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert learned == {"affinity.weight"}  # the affinity loss never moves the network


def test_affinity_needs_the_cls_head(tmp_path):
    with pytest.raises(ValueError, match="cls"):
        models.ModelConfig(head="reg", affinity=8)
    write_rgb(tmp_path / "a.png", square_image(1.0))
    r = run(train_args(tmp_path, tmp_path / "o", "--head", "reg", "--affinity", 16, "--steps", 1))
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err  # a usage error (was 1, after torch)
    assert len(err.strip().splitlines()) == 1 and "cls" in err, err


def test_a_reg_model_with_hint_inputs_takes_points_not_a_palette(squares, tmp_path):
    """predict steered a reg model trained with --hints as if it had classes: "internal error:
    RuntimeError" with a point hint, ZeroDivisionError with a palette. Points go in as its
    input; a palette is a usage error (one line), and in a hint file that input's error."""
    train(train_config(squares, tmp_path / "r", head="reg", hints=True, steps=2))
    img = write_rgb(tmp_path / "a.png", square_image(None))
    w = ["--head", "reg", "-w", tmp_path / "r" / "reg.pt", "--size", SIDE]
    run(["predict", img, *w, "--hint", "10,10=#ff0000", "-o", tmp_path / "p.png"], check_rc=0)
    p = run(["predict", img, *w, "--palette", "#ff0000", "-o", tmp_path / "q.png"])
    assert p.returncode == 2 and p.stderr.decode().startswith("recolor predict: a palette needs")
    # in a hint file, that file's error (it named the input, which is not where the palette is)
    h = tmp_path / "h.json"
    h.write_text('{"palette": [{"color": "#ff0000"}]}')
    img2 = write_rgb(tmp_path / "b.png", square_image(None))
    p = run(["predict", img, img2, *w, "--hints", h, "-o", tmp_path / "q"])
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1  # once, not once per input
    assert p.stderr.decode().startswith(f"recolor predict: {h}: a palette needs the cls head")
    assert not (tmp_path / "q").exists()
    hints_dir = tmp_path / "hints"
    hints_dir.mkdir()
    (hints_dir / "a.json").write_text(h.read_text())
    (hints_dir / "b.json").write_text('{"points": [{"x": 10, "y": 10, "color": "#00ff00"}]}')
    p = run(["predict", img, img2, *w, "--hints", hints_dir, "-o", tmp_path / "q"])
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1
    err = p.stderr.decode()
    assert err.startswith(f"recolor predict: {hints_dir / 'a.json'}: a palette needs the cls"), err
    assert sorted(os.listdir(tmp_path / "q")) == ["b.png"]  # the other input still done
    # nothing spreads its hints but the network: a strength or spread was ignored, unsaid
    for steer in (["--hint-strength", "3"], ["--hint-spread", "region"]):
        p = run(["predict", img, *w, "--hint", "10,10=#ff0000", *steer, "-o", tmp_path / "s.png"])
        assert p.returncode == 2 and "steer the cls head's" in p.stderr.decode()
        assert len(p.stderr.splitlines()) == 1 and not (tmp_path / "s.png").exists()


def hinted_error(predictor: Predictor, hue: float) -> float:
    """Mean a/b distance to the truth (the square at ``hue``, gray around it) of a gray image
    recoloured with one hint in the square's corner."""
    truth = rgb_to_lab(square_image(hue).astype(np.float32) / 255)[:, :, 1:]
    gray = square_image(None).astype(np.float32) / 255
    out = predictor.recolorize(gray, hints=hints.point(10, 10, hex_of(hue), size=1))
    return float(np.linalg.norm(rgb_to_lab(out)[:, :, 1:] - truth, axis=2).mean())


def test_affinity_fine_tune_keeps_the_network_and_spreads_hints_better(
    squares, automatic, tmp_path
):
    out = tmp_path / "aff"
    # A learning rate far above the default: a toy set that must be learnt in seconds. (60
    # steps left the margin to chance: 13.80 against 13.78 with the seeds drawn after the
    # checkpoints are read; 120 gave 0.7-1.9 on seeds 0-3.)
    train(train_config(squares, out, init=automatic, affinity=16, steps=120, hint_lr=0.03))
    auto, _ = checkpoints.load_checkpoint(automatic)
    tuned, _ = checkpoints.load_checkpoint(out / "cls.pt")
    assert tuned.config.affinity == 16 and not tuned.config.hints
    old = auto.state_dict()
    for name, value in tuned.state_dict().items():  # --lr defaults to 0: the network is kept
        if name.startswith("affinity."):
            assert not torch.equal(value[:, :, 0, 0], torch.eye(16)), "affinity did not learn"
        else:
            assert torch.equal(value, old[name]), name
    # Without hints, bit-identical outputs through the command line.
    write_rgb(tmp_path / "g.png", square_image(None))
    for name, w in (("a.png", automatic), ("b.png", out / "cls.pt")):
        run(["predict", tmp_path / "g.png", "-w", w, "-o", tmp_path / name], check_rc=0)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # With a hint, the learned features keep it to the square better than the decoder's own.
    before, after = Predictor.load(automatic), Predictor.load(out / "cls.pt")
    for hue in HINT_HUES:
        assert hinted_error(after, hue) < hinted_error(before, hue), hue
    color = hex_of(HINT_HUES[0])
    run(["predict", tmp_path / "g.png", "-w", out / "cls.pt", "-o", tmp_path / "h.png",
         "--hint", f"10,10={color}"], check_rc=0)  # fmt: skip
    assert not np.array_equal(read_rgb(tmp_path / "h.png"), read_rgb(tmp_path / "b.png"))
    # Weights that hold the layer already (the shipped ones), --affinity again: the layer
    # trains on, the network kept (was a usage error, "this run adds no layer to train")
    args = train_args(squares, tmp_path / "again", "--init", out / "cls.pt", "--affinity", 16,
                      "--steps", 3, "--hint-lr", 0.03)  # fmt: skip
    args.remove("--quiet")
    first = run(args, check_rc=0).stderr.decode().splitlines()[0]
    every = sum(v.numel() for v in tuned.parameters())  # said: not the network's count alone
    assert f"cls head, {16 * 16:,} parameters trained of {every:,}, " in first, first
    again, _ = checkpoints.load_checkpoint(tmp_path / "again" / "cls.pt")
    kept = tuned.state_dict()
    for name, value in again.state_dict().items():
        assert torch.equal(value, kept[name]) != name.startswith("affinity."), name


def test_an_affinity_fine_tune_resumes(squares, automatic, tmp_path):
    """--resume of an --init --affinity run failed ("a different number of parameter groups"):
    the lr default (0: the network kept) came from --init, which a resume does not repeat."""
    out = tmp_path / "aff"
    common = dict(affinity=16, hint_lr=0.03, ckpt_every=2)
    train(train_config(squares, out, init=automatic, **common, steps=2))
    train(train_config(squares, out, **common, steps=4, resume=True))  # a failure raises
    tuned, _ = checkpoints.load_checkpoint(out / "cls.pt")
    auto, _ = checkpoints.load_checkpoint(automatic)
    for k, v in auto.state_dict().items():  # lr 0 still: the network itself is kept
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(tuned.state_dict()[k], v), k


def test_validation_does_not_change_the_affinity_training(squares, automatic, tmp_path):
    """The affinity loss draws its points at random: evaluating in between (--val, here every
    step) must not move those draws, so a run with validation learns exactly what one without
    does."""
    common = dict(init=automatic, affinity=16, steps=6, hint_lr=0.03)
    train(train_config(squares, tmp_path / "plain", **common))
    train(train_config(squares, tmp_path / "val", **common, val=[str(squares)], eval_every=1))
    plain, _ = checkpoints.load_checkpoint(tmp_path / "plain" / "cls.pt")
    val, _ = checkpoints.load_checkpoint(tmp_path / "val" / "cls.pt")
    assert torch.equal(plain.affinity.weight, val.affinity.weight)
    lines = (tmp_path / "val" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["val_loss"] for line in lines]
    assert len(losses) >= 6 and all(v is not None for v in losses)
    # the network is kept (--lr 0 with --init and --affinity): its lr is 0, the new layer's
    # its own (the log showed the layer's as "lr")
    first = json.loads(lines[0])
    assert first["lr"] == 0 and 0 < first["hint_lr"] <= 0.03


def test_a_fine_tune_trains_only_the_layers_it_adds(squares, automatic, tmp_path):
    """Every hint and affinity layer went to the --hint-lr group, also those the --init
    weights already held: `--init HINTMODEL --affinity` (lr 0, "the network is kept") retrained
    the hint layers, and `--init weights-with-affinity --hints --lr 0` the affinity layer. The
    layers the start holds are its network's now; a resume groups them as the run did."""
    hinted = tmp_path / "hinted"
    train(train_config(squares, hinted, hints=True, steps=2))
    aff = tmp_path / "aff"
    train(train_config(squares, aff, init=hinted / "cls.pt", affinity=16, steps=2, hint_lr=0.03,
                       ckpt_every=1))  # fmt: skip
    start, _ = checkpoints.load_checkpoint(hinted / "cls.pt")
    tuned, _ = checkpoints.load_checkpoint(aff / "cls.pt")
    old = start.state_dict()
    changed = {
        k for k, v in tuned.state_dict().items() if k not in old or not torch.equal(v, old[k])
    }
    assert changed == {"affinity.weight"}, changed  # the hint layers are the network's: kept
    # nothing new to train at lr 0: one usage line (it was torch's "empty parameter list")
    r = run(train_args(squares, tmp_path / "none", "--init", aff / "cls.pt", "--hints", "--lr",
                       0, "--steps", 2))  # fmt: skip
    assert r.returncode == 2 and b"this run adds no layer to train" in r.stderr, r.stderr
    # --hint-lr for hint layers the start holds: they train at --lr (it trained nothing, unsaid)
    r = run(train_args(squares, tmp_path / "none", "--init", hinted / "cls.pt", "--hints",
                       "--hint-lr", 0.03, "--steps", 2))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count(b"\n") == 1 and b"take hints already" in r.stderr, r.stderr
    # and a redundant --hints is no fine-tune that adds layers: --init's plain defaults
    held = torch.load(hinted / "cls.pt", weights_only=True)
    alone = TrainConfig(data=["x"], init=hinted / "cls.pt", hint_lr=0.03)  # (the API's way)
    with pytest.raises(UsageError, match="--hint-lr sets the rate of the layers"):
        resolve_defaults(alone, None, held)
    for given in ({}, {"hints": True}):
        cfg = resolve_defaults(TrainConfig(data=["x"], init=hinted / "cls.pt", **given), None, held)
        assert (cfg.lr, cfg.freeze_bn) == (1e-4, False), given
    # the other way: an affinity model given --hints at lr 0 keeps its affinity layer
    aff_only, both = tmp_path / "aff_only", tmp_path / "both"
    train(train_config(squares, aff_only, init=automatic, affinity=16, steps=2, hint_lr=0.03))
    train(train_config(squares, both, init=aff_only / "cls.pt", hints=True, lr=0.0, steps=2,
                       hint_lr=0.03))  # fmt: skip
    was, _ = checkpoints.load_checkpoint(aff_only / "cls.pt")
    now, _ = checkpoints.load_checkpoint(both / "cls.pt")
    assert torch.equal(now.state_dict()["affinity.weight"], was.state_dict()["affinity.weight"])
    # a resume of the first run groups its layers as the run did (or Adam's state would not fit)
    train(train_config(squares, aff, affinity=16, hint_lr=0.03, steps=3, resume=True))
    last = torch.load(aff / "last.pt", weights_only=True)
    assert last["train_state"]["new_modules"] == ["affinity"]
