"""models.py: shapes, losses against dense references, size counts, checkpoint files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from recolor_tools import checkpoints, models
from recolor_tools.errors import RecolorError

Q = 20


def small(head: str, width: int = 8) -> models.Colorizer:
    torch.manual_seed(0)
    return models.Colorizer(
        models.ModelConfig(head=head, num_classes=Q if head == "cls" else 0, width=width)
    )


@pytest.mark.parametrize("head", ["reg", "cls"])
@pytest.mark.parametrize("hw", [(32, 32), (40, 56), (8, 16), (72, 24)])
def test_forward_shapes(head, hw):
    model = small(head).eval()
    H, W = hw
    out, loss = model(torch.rand(3, 1, H, W) * 100)
    assert out.shape == (3, 2 if head == "reg" else Q, H // 4, W // 4)
    assert out.dtype == torch.float32
    assert loss is None
    if head == "reg":  # tanh range: a/b / 128 in [-1, 1]
        assert out.abs().max() <= 1


def test_input_checks():
    model = small("reg")
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.zeros(1, 3, 32, 32))


def test_config_checks():
    with pytest.raises(ValueError, match="head"):
        models.ModelConfig(head="gan")
    with pytest.raises(ValueError, match="num_classes"):
        models.ModelConfig(head="cls", num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        models.ModelConfig(head="reg", num_classes=5)
    with pytest.raises(ValueError, match="out_stride"):
        models.ModelConfig(head="reg", out_stride=2)


def test_cls_loss_equals_dense_cross_entropy():
    """The gathered soft-target loss equals the cross-entropy with a dense (B, Q, h, w) target."""
    g = torch.Generator().manual_seed(1)
    B, k, h, w = 2, 5, 4, 6
    logits = torch.randn(B, Q, h, w, generator=g)
    # k distinct classes per pixel, soft weights summing to 1, a per-pixel weight
    idx = torch.argsort(torch.rand(B, Q, h, w, generator=g), dim=1)[:, :k]
    wts = torch.softmax(torch.randn(B, k, h, w, generator=g), dim=1)
    pw = torch.rand(B, h, w, generator=g) * 3
    dense = torch.zeros(B, Q, h, w).scatter_(1, idx, wts)
    expect = (-(dense * F.log_softmax(logits, 1)).sum(1) * pw).mean()
    got = small("cls").loss(logits, {"idx": idx, "w": wts, "pw": pw})
    torch.testing.assert_close(got, expect)
    unweighted = (-(dense * F.log_softmax(logits, 1)).sum(1)).mean()
    torch.testing.assert_close(small("cls").loss(logits, {"idx": idx, "w": wts}), unweighted)


def test_reg_loss_is_mse_on_scaled_ab():
    out = torch.tensor([[[[0.5]], [[-0.25]]]])  # (1, 2, 1, 1)
    target = torch.tensor([[[[0.0]], [[0.25]]]])
    got = small("reg").loss(out, {"ab": target})
    assert got.item() == pytest.approx((0.5**2 + 0.5**2) / 2)


def test_forward_with_targets_returns_finite_loss_with_gradients():
    model = small("cls")
    L = torch.rand(2, 1, 32, 32) * 100
    t = {
        "idx": torch.randint(0, Q, (2, 5, 8, 8)),
        "w": torch.full((2, 5, 8, 8), 0.2),
        "pw": torch.ones(2, 8, 8),
    }
    _, loss = model(L, t)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_param_count_counts_trainable_parameters():
    model = small("reg")
    n = sum(p.numel() for p in model.parameters())
    assert models.param_count(model) == n
    model.head.weight.requires_grad_(False)
    assert models.param_count(model) == n - model.head.weight.numel()


@pytest.mark.parametrize("head", ["reg", "cls"])
def test_flops_match_torch_flop_counter(head):
    """MACs from our hooks = half the FLOPs torch's own counter finds for conv and linear."""
    config = models.ModelConfig(head=head, num_classes=Q if head == "cls" else 0, width=8)
    model = models.Colorizer(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, 64, 96))
    assert models.flops(config, 64, 96) * 2 == counter.get_total_flops()


def test_default_size_is_about_a_million_parameters():
    config = models.ModelConfig(head="cls", num_classes=395)
    n = models.param_count(models.Colorizer(config))
    assert 0.8e6 < n < 1.2e6
    assert 1.2e9 < models.flops(config, 256, 256) < 2.0e9


# -- checkpoints ------------------------------------------------------------------------------

CLASSES = np.stack(np.meshgrid(np.arange(-40, 40, 20), np.arange(-20, 20, 8)), -1)
CLASSES = CLASSES.reshape(-1, 2)[:Q].astype(np.float32)


@pytest.mark.parametrize("head", ["reg", "cls"])
def test_checkpoint_round_trip(tmp_path, head):
    model = small(head).eval()
    for m in model.modules():  # non-default BN statistics must survive too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    classes = CLASSES if head == "cls" else None
    ckpt = checkpoints.make_checkpoint(
        model, classes=classes, grid=8, data={"size": 32}, step=7, train_state={"x": 1}
    )
    path = tmp_path / "m.pt"
    checkpoints.save_checkpoint(path, ckpt)
    assert torch.load(path, weights_only=True)["format"] == "recolor-checkpoint"
    loaded, got = checkpoints.load_checkpoint(path, head)
    assert not loaded.training
    assert got["step"] == 7 and got["data"] == {"size": 32} and got["train_state"] == {"x": 1}
    L = torch.rand(2, 1, 40, 48) * 100
    with torch.no_grad():
        torch.testing.assert_close(loaded(L)[0], model(L)[0], rtol=0, atol=0)
    if head == "cls":
        np.testing.assert_array_equal(got["classes"].numpy(), CLASSES)
    assert "train_state" not in checkpoints.strip_checkpoint(got)


def test_make_checkpoint_needs_matching_classes():
    with pytest.raises(ValueError, match="classes"):
        checkpoints.make_checkpoint(small("cls"))
    with pytest.raises(ValueError, match="classes"):
        checkpoints.make_checkpoint(small("cls"), classes=CLASSES[:5])


def test_load_checkpoint_errors(tmp_path):
    path = tmp_path / "reg.pt"
    checkpoints.save_checkpoint(path, checkpoints.make_checkpoint(small("reg")))
    with pytest.raises(RecolorError, match="'reg' head, not 'cls'") as e:
        checkpoints.load_checkpoint(path, "cls")
    assert e.value.path == str(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RecolorError, match="not a recolor checkpoint"):
        checkpoints.load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(RecolorError, match="format tag"):
        checkpoints.load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({**checkpoints.make_checkpoint(small("reg")), "version": 99}, newer)
    with pytest.raises(RecolorError, match="newer"):
        checkpoints.load_checkpoint(newer)
    broken = tmp_path / "broken.pt"
    ckpt = checkpoints.make_checkpoint(small("reg"))
    ckpt["config"]["width"] = 16  # weights no longer fit
    torch.save(ckpt, broken)
    with pytest.raises(RecolorError, match="broken checkpoint"):
        checkpoints.load_checkpoint(broken)
    with pytest.raises(RecolorError, match="no such file"):
        checkpoints.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(RecolorError, match=": is a directory$"):  # it said "not a file"
        checkpoints.load_checkpoint(tmp_path)
    os.mkfifo(tmp_path / "fifo.pt")  # (not opened: it would wait for a writer)
    with pytest.raises(RecolorError, match=": not a regular file$"):
        checkpoints.load_checkpoint(tmp_path / "fifo.pt")
    # a large file of something else (a video given as -w) is refused from its first bytes: it
    # was read whole first (1 GB of memory for a 1 GB file)
    big = tmp_path / "video.pt"
    with open(big, "wb") as f:
        f.write(b"\x1aE\xdf\xa3")
        f.truncate(1 << 40)  # sparse: 1 TiB that takes no disk, nor memory unless read
    with pytest.raises(RecolorError, match="not a file torch.save wrote, or cut short\\)$"):
        checkpoints.load_checkpoint(big)
    # a negative BatchNorm variance (finite, so not NaN weights) gave NaN in every pixel
    ckpt = checkpoints.make_checkpoint(small("reg"))
    name = next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][name] = -ckpt["model"][name] - 1
    with pytest.raises(RecolorError, match=f"broken checkpoint: negative variance in {name}"):
        checkpoints.load_checkpoint(_saved(tmp_path, "negvar.pt", ckpt))


def test_default_weights_rejects_unknown_head():
    with pytest.raises(ValueError, match="head"):
        checkpoints.default_weights("gan")


def test_resolve_device_names_one_gpu_and_checks_it_exists(monkeypatch):
    # Two GPUs pretended (no CUDA call is made for a torch.device): cuda:N is that GPU, and a
    # GPU the machine lacks is one clear line, not a CUDA error at the first tensor.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert models.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert models.resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(RecolorError, match=r"--device cuda:2: no such GPU \(this machine has 2"):
        models.resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecolorError, match="--device cuda:1: CUDA is not available"):
        models.resolve_device("cuda:1")


def _saved(tmp_path, name, ckpt):
    """``ckpt`` written as is with torch.save (no checks), as a damaged or foreign file is."""
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _cls_ckpt(**kw):
    return checkpoints.make_checkpoint(small("cls"), classes=CLASSES, grid=8, **kw)


W = torch.linspace(0.5, 2.0, Q)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"classes": torch.full((Q, 2), float("nan"))}, "NaN or infinite classes"),
        (
            {"classes": torch.tensor(CLASSES).index_fill_(0, torch.tensor([3]), float("inf"))},
            "NaN or infinite classes",
        ),  # fmt: skip
        (
            {"rebalance": {"weights": W.clone().fill_(float("nan")), "lam": 0.5}},
            "NaN or infinite rebalance weights",
        ),  # fmt: skip
        (
            {"rebalance": {"prior": torch.full((Q,), float("inf"))}},
            "NaN or infinite rebalance prior",
        ),
        ({"rebalance": {"weights": W}}, "rebalance without lam"),
        ({"rebalance": {"lam": 0.5}}, "rebalance without weights"),
        ({"rebalance": {"sigma": 5.0}}, "rebalance without weights or lam"),
        (
            {"rebalance": {"weights": W, "lam": "x"}},
            "rebalance lam must be a number in \\[0, 1\\], got 'x'",
        ),
        ({"rebalance": {"weights": W, "lam": 2.0}}, "rebalance lam must be a number"),
        (
            {"rebalance": {"weights": W[:3], "lam": 0.5}},
            r"rebalance weights must be a \(20,\) float tensor",
        ),
        ({"rebalance": {"weights": -W, "lam": 0.5}}, "rebalance weights not all > 0"),
        ({"rebalance": [W]}, "rebalance must be a dict"),
        ({"version": "2"}, "version '2' is not an integer >= 1"),
        ({"version": 0}, "version 0 is not an integer"),
        ({"version": True}, "version True is not an integer"),
        ({"data": [1]}, "its data record is not a mapping"),  # an AttributeError in predict
        ({"data": {"size": "big"}}, "training size 'big' is not a whole number of 8 or more"),
        ({"data": {"size": 3}}, "training size 3 is not"),  # "--size ... got 4", unnamed
        # train --init took these: an internal error, and a line that named no file
        ({"encoding": "x"}, "soft-encoding 'x' is not k >= 1 and sigma >= 0.01"),
        ({"encoding": {"k": 0, "sigma": 5.0}}, "soft-encoding .* is not k >= 1"),
        ({"encoding": {"k": 5, "sigma": -1.0}}, "soft-encoding .* is not k >= 1"),
    ],
)
def test_checkpoint_fields_that_cannot_work_are_refused_at_load(tmp_path, change, match):
    """NaN classes made every output pixel NaN; a rebalance without lam or weights, or a lam
    that is no number, let a KeyError or a float ValueError out; version "2" was "newer"."""
    path = _saved(tmp_path, "bad.pt", {**_cls_ckpt(), **change})
    for read in (checkpoints.read_checkpoint, checkpoints.load_checkpoint):
        with pytest.raises(RecolorError, match="broken checkpoint: " + match) as e:
            read(path)
        assert e.value.path == str(path)


def test_checkpoint_prior_from_weights_still_derived_and_a_prior_alone_still_reads(tmp_path):
    got = checkpoints.read_checkpoint(
        _saved(tmp_path, "w.pt", _cls_ckpt(rebalance={"weights": W, "lam": 0.5, "sigma": 5.0}))
    )
    p = got["rebalance"]["prior"].double()
    assert (
        abs(float((p * 0.5 + 0.5 / Q) @ W.double()) / float(1 / (1 / W.double()).sum()) - Q) < 1e-3
    )
    prior = torch.full((Q,), 1 / Q)
    got = checkpoints.read_checkpoint(
        _saved(tmp_path, "p.pt", _cls_ckpt(rebalance={"prior": prior}))
    )
    assert torch.equal(got["rebalance"]["prior"], prior)


def test_make_checkpoint_refuses_nan_classes_and_stores_array_weights_as_tensors(tmp_path):
    with pytest.raises(ValueError, match="classes hold NaN or infinity"):
        checkpoints.make_checkpoint(small("cls"), classes=np.full((Q, 2), np.nan))
    with pytest.raises(ValueError, match="rebalance without lam"):
        _cls_ckpt(rebalance={"weights": W})
    given = {"weights": W.numpy().astype(np.float64), "lam": np.float64(0.5), "sigma": 5.0}
    ckpt = _cls_ckpt(rebalance=given)
    assert isinstance(given["weights"], np.ndarray)  # the caller's dict is left alone
    path = tmp_path / "np.pt"
    checkpoints.save_checkpoint(path, ckpt)  # numpy weights once saved, then failed to load
    got = checkpoints.read_checkpoint(path)["rebalance"]
    assert got["weights"].dtype == torch.float32 and torch.equal(got["weights"], W)
    assert type(got["lam"]) is float


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (np.ones(3), "ckpt.metrics.a"),
        (np.float64(1.0), "ckpt.metrics.a"),
        ([1, object()], r"ckpt.metrics.a\[1\]"),
    ],  # fmt: skip
)
def test_save_checkpoint_refuses_what_would_not_load_back(tmp_path, value, where):
    ckpt = checkpoints.make_checkpoint(small("reg"), metrics={"a": value})
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match=f"checkpoint value {where}: .* would not load back"):
        checkpoints.save_checkpoint(path, ckpt)
    assert not path.exists()


def _unfit(ckpt: dict, how: str) -> dict:
    state = dict(ckpt["model"])
    if how == "missing":
        del state["head.weight"]
    elif how == "unexpected":
        state["extra.weight"] = torch.zeros(3)
    elif how == "nan":
        state["head.weight"] = state["head.weight"] * float("nan")
    config = {**ckpt["config"], "width": 8.0} if how == "float width" else ckpt["config"]
    return {**ckpt, "model": state, "config": config}


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("missing", 'weights do not fit the model: Missing key(s) in state_dict: "head.weight"'),
        (
            "unexpected",
            'weights do not fit the model: Unexpected key(s) in state_dict: "extra.weight"',
        ),  # fmt: skip
        ("nan", "NaN or infinite weights in head.weight"),
        ("float width", "width must be a whole number, got 8.0"),
    ],
)
def test_weights_that_do_not_fit_say_why_in_one_line(tmp_path, how, reason):
    """The line ended at torch's "Error(s) in loading state_dict for Colorizer:", the keys on
    the next line dropped; a float width was a TypeError of torch.empty."""
    path = _saved(tmp_path, "bad.pt", _unfit(_cls_ckpt(), how))
    with pytest.raises(RecolorError) as e:
        checkpoints.load_checkpoint(path)
    assert e.value.reason.startswith(f"broken checkpoint: {reason}"), e.value.reason
    assert "\n" not in e.value.reason and e.value.path == str(path)


def test_model_config_takes_any_integer_type_and_any_training_size(tmp_path):
    """numpy integers (a class count from len() of an array's shape, np.int64) were refused by
    the whole-number check; a checkpoint trained at --size 8200 (train takes any multiple of 8)
    was "broken"."""
    import numpy as np

    cfg = models.ModelConfig(head="cls", num_classes=np.int64(20), width=np.int32(4), hints=1)
    assert (cfg.num_classes, cfg.width, cfg.hints) == (20, 4, True)
    assert type(cfg.num_classes) is int and type(cfg.hints) is bool
    for bad in ({"width": 4.0}, {"width": True}, {"hints": 2}):
        with pytest.raises(ValueError, match="must be"):
            models.ModelConfig(head="reg", **bad)
    big = _saved(tmp_path, "big.pt", {**_cls_ckpt(), "data": {"size": 8200}})
    checkpoints.load_checkpoint(big)
