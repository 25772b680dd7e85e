"""The colorization network: predicts CIELAB a/b for a lightness image L.

One small fully convolutional network with a learned global branch (Iizuka, Simo-Serra, Ishikawa
2016) and two interchangeable heads:

- ``reg``: regression of a/b / 128 through tanh, L2 loss (the seed's regression model);
- ``cls``: Q logits over ab colour classes (``quant.gamut_classes``), soft-encoded multinomial
  cross-entropy with class rebalancing, decoded by the annealed mean (Zhang, Isola, Efros 2016).

Layout, with ``C = config.width`` and the resolution relative to the input (H, W)::

    L (B,1,H,W) -> (L-50)/50
    enc1  1/2   C      conv3x3/2, conv3x3
    enc2  1/4   2C     conv3x3/2, conv3x3        --------------------------- skip
    enc3  1/8   4C     conv3x3/2, conv3x3                                      |
    glob  1/16  4C     conv3x3/2 -> global mean -> MLP 4C-8C-4C  (global vector g)
    fuse  1/8   4C     concat(enc3, g broadcast) -> conv1x1
    mid   1/8   4C     conv3x3 dilation 2, x2
    dec   1/4   2C     bilinear x2, conv3x3, concat(skip), conv3x3
    head  1/4   2 (reg, tanh) or Q (cls, conv1x1 logits)

A model with ``config.hints`` also takes colour hints (hint a/b, a hint mask, a palette): they
enter at the input, at 1/8 after the fusion, at 1/4 before the head and in the global vector,
each through a zero-initialised layer (:class:`Colorizer`'s Notes; :func:`network_input` builds
them).

A cls model with ``config.affinity`` also holds a 1x1 layer that maps the decoder's features to
those that decide where a point hint spreads (:meth:`Colorizer.affinity_features`); it does not
take part in the automatic prediction.

Every conv but the head is followed by BatchNorm and ReLU. The output is at 1/4 of the input
resolution (``out_stride``); callers upsample a/b bilinearly onto the full-resolution L.

Size at the default width 32, computed by :func:`param_count` and :func:`flops`: the ``cls`` head
with the 395 sRGB gamut classes of grid 8 has 1,002,347 parameters and 1.69 GMAC per 256x256
image (0.42 GMAC at 128x128); the ``reg`` head 977,826 parameters and 1.59 GMAC. The seed's
models had tens of millions of parameters plus a frozen 56M-parameter Inception-ResNet-v2; this
one trains on a CPU.

The global descriptor replaces the seed's frozen ImageNet Inception-ResNet-v2 (which this
project cannot download): it is pooled from the network's own features and learned with the
rest, as in Iizuka et al.

Checkpoints (the model's config and weights with what it was trained with) are written and read
by :mod:`recolor_tools.checkpoints`.

References
----------
.. [1] S. Iizuka, E. Simo-Serra, H. Ishikawa, "Let there be Color!: Joint End-to-end Learning of
   Global and Local Image Priors for Automatic Image Colorization with Simultaneous
   Classification", SIGGRAPH 2016.
.. [2] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import defaults
from .errors import RecolorError, is_whole

HEADS = defaults.HEADS
AB_SCALE = 128.0
"""a/b are divided by this for the regression head (tanh output in [-1, 1])."""
HINT_KEYS = ("hint_ab", "hint_mask", "palette")
"""The entries of a hints dict (:func:`network_input`), in batches and in prediction."""
HINT_CHANNELS = 3
"""Hint input channels next to L: mask * a / 128, mask * b / 128, mask."""
HINT_MODULES = ("hint_in", "hint8", "hint4", "palette_in")
"""The layers a hint model adds (all zero-initialised); see :class:`Colorizer`."""
NEW_MODULES = (*HINT_MODULES, "affinity")
"""The layers that a fine-tune may add to a model (``--init`` with ``--hints`` or
``--affinity``), trained at ``--hint-lr``."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`Colorizer`; stored in every checkpoint."""

    head: str = "cls"
    # "reg": 2 channels a/b/128; "cls": Q logits over colour classes.
    num_classes: int = 0
    # Q, the number of ab colour classes (cls only; 0 for reg). Must match the classes array
    # stored beside the weights.
    width: int = 32
    # Base channel count C; stages use C, 2C, 4C. 32 keeps the model about 1M parameters, small
    # enough to train and run on a CPU; cost grows as width^2.
    out_stride: int = 4
    # Output resolution is input / out_stride. 4 as in Zhang et al.: colour varies slowly, so
    # a/b at 1/4 upsampled onto the full-resolution L loses little and saves the costliest layers.
    hints: bool = False
    # Takes colour hints as input (see :func:`network_input` and :class:`Colorizer`'s Notes).
    # Old checkpoints have no such field and load with False: the same network as before.
    affinity: int = 0
    # Channels of the learned affinity features that spread point hints (cls; see
    # :meth:`Colorizer.affinity_features`); 0: the decoder's features as they are.

    def __post_init__(self) -> None:
        for name in ("num_classes", "width", "out_stride", "affinity"):
            v = getattr(self, name)  # any integer type (numpy's too), as a plain int
            if not is_whole(v):
                raise ValueError(f"{name} must be a whole number, got {v!r}")
            setattr(self, name, int(v))
        if not (isinstance(self.hints, bool | np.bool_) or self.hints in (0, 1)):
            raise ValueError(f"hints must be True or False, got {self.hints!r}")
        self.hints = bool(self.hints)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "cls" and self.num_classes < 2:
            raise ValueError(f"the cls head needs num_classes >= 2, got {self.num_classes}")
        if self.head == "reg" and self.num_classes != 0:
            raise ValueError(f"the reg head takes num_classes=0, got {self.num_classes}")
        if self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.affinity and self.head != "cls":
            raise ValueError("affinity features steer the cls head only")
        if self.affinity < 0:
            raise ValueError(f"affinity must be 0 or positive, got {self.affinity}")
        if self.out_stride != 4:
            raise ValueError(f"only out_stride=4 is implemented, got {self.out_stride}")


# ---------------------------------------------------------------------------------------------
# building blocks


class ConvBNReLU(nn.Sequential):
    """3x3 (or kxk) convolution, BatchNorm, ReLU; ``padding = dilation * (k // 2)`` keeps size."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class GlobalBranch(nn.Module):
    """Image-level descriptor: one more stride-2 conv, global mean, then a small MLP.

    Learned end to end (Iizuka et al.) in place of a frozen classifier's 1000-d output. The
    mean pool makes it independent of the image size.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = 4 * config.width
        self.conv = ConvBNReLU(c, c, stride=2)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.ReLU(inplace=True), nn.Linear(2 * c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, 4C, H/16, W/16)
        x = x.mean(dim=(2, 3))  # (B, 4C)
        return F.relu(self.mlp(x))  # (B, 4C)


class Fusion(nn.Module):
    """Broadcast the global vector to every position, concatenate, mix with a 1x1 conv."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = 4 * config.width
        self.mix = ConvBNReLU(2 * c, c, k=1)

    def forward(self, local: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        B, _, h, w = local.shape
        g = g[:, :, None, None].expand(B, g.shape[1], h, w)  # (B, 4C, h, w)
        return self.mix(torch.cat([local, g], dim=1))  # (B, 8C, h, w) -> (B, 4C, h, w)


class Decoder(nn.Module):
    """From 1/8 to 1/4: bilinear x2, conv, concatenate the 1/4 encoder features, conv."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.width
        self.up_conv = ConvBNReLU(4 * c, 2 * c)
        self.merge = ConvBNReLU(4 * c, 2 * c)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up_conv(x)  # (B, 2C, H/4, W/4)
        return self.merge(torch.cat([x, skip], dim=1))  # (B, 4C, ..) -> (B, 2C, H/4, W/4)


def _zero(layer: nn.Module) -> nn.Module:
    """``layer`` with every parameter set to 0: it adds nothing until training moves it."""
    for p in layer.parameters():
        nn.init.zeros_(p)
    return layer


# ---------------------------------------------------------------------------------------------
# the model


class Colorizer(nn.Module):
    """Predict a/b (``reg``) or colour-class logits (``cls``) at 1/4 resolution from L.

    Parameters
    ----------
    config : ModelConfig

    Notes
    -----
    ``forward(L, targets=None) -> (out, loss)``:

    - ``L``: (B, 1, H, W) float, lightness in [0, 100]; H and W multiples of 8 (callers pad).
    - ``out``: reg: (B, 2, H/4, W/4) a/b / 128 in [-1, 1]; cls: (B, Q, H/4, W/4) logits.
    - ``targets`` (optional dict, at the output resolution):
      reg: ``{"ab": (B, 2, h, w) float a/b / 128}``, loss = mean squared error;
      cls: ``{"idx": (B, k, h, w) int64 class indices, "w": (B, k, h, w) float soft weights
      summing to 1, "pw": (B, h, w) float rebalancing weight (optional, default 1)}``,
      loss = mean over pixels of ``pw * -sum_k w_k log softmax(logits)[idx_k]``; with
      ``config.affinity``, plus :func:`recolor_tools.guide.affinity_loss` (which reaches only the
      ``affinity`` layer: see :meth:`loss`).
    - ``loss`` is a scalar float32 tensor, or None without targets.
    - ``hints`` (optional dict, only for ``config.hints``; see :func:`network_input`): the user's
      or the simulated colour hints. A hint model without them predicts automatically.

    With ``config.hints`` (Zhang et al. 2017's local hints, plus a global one), the hints enter
    in four places, each through a layer that starts at zero, so that a model expanded from one
    without hints (:func:`recolor_tools.trainsetup.load_expanded`) computes exactly what it did:

    - ``hint_in``: conv3x3/2 of (a/128, b/128, mask) added to enc1's first conv, before its BN;
    - ``hint8``: conv3x3 of the hints area-averaged to 1/8, added after the fusion;
    - ``hint4``: conv3x3 of the hints area-averaged to 1/4, added to the decoder's output
      (the head reads it: a hinted cell can take the hint's colour at once);
    - ``palette_in`` (cls): linear map of (class histogram, flag) added to the global vector.

    Issue 15's calibration: hints at the input alone did not move in 40 minutes of CPU
    fine-tuning; with the 1/8 and 1/4 paths they did.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.width
        self.enc1 = nn.Sequential(ConvBNReLU(1, c, stride=2), ConvBNReLU(c, c))
        self.enc2 = nn.Sequential(ConvBNReLU(c, 2 * c, stride=2), ConvBNReLU(2 * c, 2 * c))
        self.enc3 = nn.Sequential(ConvBNReLU(2 * c, 4 * c, stride=2), ConvBNReLU(4 * c, 4 * c))
        self.glob = GlobalBranch(config)
        self.fuse = Fusion(config)
        # Dilation widens the receptive field at 1/8 without further downsampling.
        self.mid = nn.Sequential(
            ConvBNReLU(4 * c, 4 * c, dilation=2), ConvBNReLU(4 * c, 4 * c, dilation=2)
        )
        self.dec = Decoder(config)
        if config.head == "reg":
            self.head = nn.Conv2d(2 * c, 2, 3, padding=1)
        else:
            self.head = nn.Conv2d(2 * c, config.num_classes, 1)
        # The class centres decode the cls head (:meth:`decode`). Not persistent: checkpoints
        # keep them beside the weights (``ckpt["classes"]``); load_checkpoint fills them.
        self.register_buffer("classes", torch.zeros(config.num_classes, 2), persistent=False)
        self.frozen_bn = False  # fine-tuning: BatchNorm keeps its statistics (see :meth:`train`)
        if config.hints:
            # No biases: with no hints their input is all zeros, so whatever training makes of
            # these layers, the automatic path stays the base model's (a bias learned here had
            # shifted every automatic prediction of a CPU fine-tune, weights/README.md).
            self.hint_in = _zero(nn.Conv2d(HINT_CHANNELS, c, 3, 2, 1, bias=False))
            self.hint8 = _zero(nn.Conv2d(HINT_CHANNELS, 4 * c, 3, padding=1, bias=False))
            self.hint4 = _zero(nn.Conv2d(HINT_CHANNELS, 2 * c, 3, padding=1, bias=False))
            if config.head == "cls":
                self.palette_in = _zero(nn.Linear(config.num_classes + 1, 4 * c, bias=False))
        if config.affinity:
            self.affinity = nn.Conv2d(2 * c, config.affinity, 1, bias=False)
            if config.affinity == 2 * c:  # start from the decoder's features as they are
                nn.init.eye_(self.affinity.weight[:, :, 0, 0])

    def forward(
        self,
        L: torch.Tensor,
        targets: dict[str, torch.Tensor] | None = None,
        hints: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = self.features(L, hints)
        out = self.head_out(feats)  # (B, 2 or Q, H/4, W/4)
        loss = None if targets is None else self.loss(out, targets, feats)
        return out, loss

    def features(
        self, L: torch.Tensor, hints: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The decoder's (B, 2C, H/4, W/4) features, from which the head reads its output.

        Guidance (:mod:`recolor_tools.guide`) compares them between cells, through
        :meth:`affinity_features`.
        """
        x, palette = network_input(L, hints, self.config)  # (B, 1 or 4, H, W), (B, Q+1) or None
        if not self.config.hints:
            x = self.enc1(x)  # (B, C, H/2, W/2)
        else:
            x, h = x[:, :1], x[:, 1:]  # L; hint a/b and mask
            conv, bn, relu = self.enc1[0]
            x = self.enc1[1](relu(bn(conv(x) + self.hint_in(h))))
        skip = self.enc2(x)  # (B, 2C, H/4, W/4)
        x = self.enc3(skip)  # (B, 4C, H/8, W/8)
        g = self.glob(x)  # (B, 4C)
        if palette is not None:
            g = g + self.palette_in(palette)
        x = self.fuse(x, g)  # (B, 4C, H/8, W/8)
        if self.config.hints:
            x = x + self.hint8(F.avg_pool2d(h, 8))
        x = self.mid(x)  # (B, 4C, H/8, W/8)
        x = self.dec(x, skip)  # (B, 2C, H/4, W/4)
        if self.config.hints:
            x = x + self.hint4(F.avg_pool2d(h, self.config.out_stride))
        return x

    def train(self, mode: bool = True) -> Colorizer:
        """As ``nn.Module.train``; with ``frozen_bn`` BatchNorm stays in eval mode (it keeps and
        uses its running statistics): fine-tuning on few crops must not move them."""
        super().train(mode)
        if mode and self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def head_out(self, feats: torch.Tensor) -> torch.Tensor:
        """The head on decoder features: reg a/b / 128 (tanh), or cls logits."""
        out = self.head(feats)
        return torch.tanh(out) if self.config.head == "reg" else out

    def decode(self, out: torch.Tensor, temperature: float = defaults.TEMPERATURE) -> torch.Tensor:
        """a/b of this model's output, with the classes it holds (see :func:`decode`)."""
        return decode(out, self.classes if self.config.head == "cls" else None, temperature)

    def affinity_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The (B, D, H/4, W/4) features whose cosine similarity spreads a point hint
        (:func:`recolor_tools.guide.point_mix`): the decoder's ``feats`` through the learned
        1x1 ``affinity`` layer, or ``feats`` themselves for a model without one."""
        return self.affinity(feats) if self.config.affinity else feats

    def loss(
        self,
        out: torch.Tensor,
        targets: dict[str, torch.Tensor],
        feats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The training loss for ``out`` from :meth:`forward` (see the class Notes), plus, for a
        model with ``config.affinity``, :func:`recolor_tools.guide.affinity_loss` of the
        decoder's ``feats`` (which trains the ``affinity`` layer alone: it sees them detached)."""
        out = out.float()  # losses in float32 under autocast
        if self.config.head == "reg":
            return F.mse_loss(out, targets["ab"].float())
        extra = 0.0
        if self.config.affinity and feats is not None:
            from .guide import affinity_loss  # guide decodes with this module's decode

            emb = self.affinity_features(feats.detach())
            extra = affinity_loss(out.detach(), emb, targets, self.classes)
        logp = F.log_softmax(out, dim=1)  # (B, Q, h, w)
        # Gather the k target classes instead of building a dense (B, Q, h, w) target.
        picked = logp.gather(1, targets["idx"].long())  # (B, k, h, w)
        nll = -(targets["w"].float() * picked).sum(dim=1)  # (B, h, w)
        if "pw" in targets:
            nll = nll * targets["pw"].float()
        return nll.mean() + extra


# ---------------------------------------------------------------------------------------------
# the way in and the way out


def network_input(
    L: torch.Tensor,
    hints: dict[str, torch.Tensor] | None = None,
    config: ModelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The network's input, built in this one place for training and prediction alike.

    This is where colour hints enter the network (Zhang et al. 2017): as extra channels next to
    L, and as a class histogram for the global branch.

    Parameters
    ----------
    L : (B, 1, H, W) float
        Lightness in [0, 100]; H and W multiples of 8 (callers pad).
    hints : dict, optional
        Only read when ``config.hints``; every key optional (missing: no such hint):

        - ``"hint_ab"``: (B, 2, H, W) float, a/b of the hints (about [-128, 127]; any value
          where the mask is 0);
        - ``"hint_mask"``: (B, 1, H, W) float, 1 where a hint touches the pixel, else 0 (a
          share of coverage in [0, 1] would be taken as it is; recolor gives 0 or 1);
        - ``"palette"``: (B, Q) float, the soft-encoded class histogram of a palette (sums to
          1), or all zeros for none.
    config : ModelConfig, optional
        The model's; None is a model without hints.

    Returns
    -------
    x : (B, 1, H, W) or, with ``config.hints``, (B, 4, H, W) float
        ``(L - 50) / 50`` in [-1, 1]; then ``mask * a / 128``, ``mask * b / 128`` (the
        regression targets' scale) and ``mask``. Without hints the last three are 0.
    palette : (B, Q + 1) float or None
        ``(histogram, flag)``, flag 1 where a palette is given; None unless a cls hint model.
    """
    if L.ndim != 4 or L.shape[1] != 1:
        raise ValueError(f"L must have shape (B, 1, H, W), got {tuple(L.shape)}")
    if L.shape[2] % 8 or L.shape[3] % 8:
        raise ValueError(f"H and W must be multiples of 8, got {tuple(L.shape[2:])}")
    x = (L - 50.0) / 50.0
    if config is None or not config.hints:
        return x, None
    hints = hints or {}
    B, _, H, W = L.shape
    mask = hints.get("hint_mask")
    if mask is None:
        local = x.new_zeros(B, HINT_CHANNELS, H, W)
    else:
        mask = mask.to(x.dtype)
        local = torch.cat([hints["hint_ab"].to(x.dtype) * (mask / AB_SCALE), mask], dim=1)
    palette = None
    if config.head == "cls":
        hist = hints.get("palette")
        if hist is None:
            hist = x.new_zeros(B, config.num_classes)
        hist = hist.to(x.dtype)
        flag = (hist.sum(dim=1, keepdim=True) > 0).to(x.dtype)
        palette = torch.cat([hist, flag], dim=1)
    return torch.cat([x, local], dim=1), palette


def pop_hints(batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """Remove and return the hint entries (:data:`HINT_KEYS`) of a batch, or None if none."""
    hints = {k: batch.pop(k) for k in HINT_KEYS if k in batch}
    return hints or None


def decode(
    out: torch.Tensor, classes: torch.Tensor | None, temperature: float = defaults.TEMPERATURE
) -> torch.Tensor:
    """a/b from the network's output, for either head: the one decoder of recolor.

    Parameters
    ----------
    out : (B, 2, h, w) or (B, Q, h, w) float tensor
        reg: a/b / 128 (tanh output); cls: class logits ``z`` (or any log-distribution).
    classes : (Q, 2) float tensor or None
        Class centres (a, b) of the cls head; None for reg.
    temperature : float, default 0.38
        Annealed-mean temperature T >= 0 (cls only).

    Returns
    -------
    (B, 2, h, w) float32 tensor of a/b (about [-128, 127]), on ``out``'s device
        reg: ``128 * out``; cls: the annealed mean ``sum_q softmax(z / T)_q c_q`` (Zhang et al.
        2016, Sec. 2.3), or for T = 0 the centre of the most likely class (ties: lower index);
        for 0 < T < ``defaults.T_MODE`` too, its limit (``z / T`` would overflow float32 there).
        Equal to :func:`recolor_tools.quant.annealed_mean` (numba, float32) within float32
        rounding, so training's validation and prediction decode alike on any device.
    """
    out = out.float()
    if classes is None:
        return out * AB_SCALE
    if not temperature >= 0:  # (NaN too) -1 gave the mode, NaN all-NaN a/b, unsaid
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    classes = classes.to(out.device, torch.float32)
    if temperature < defaults.T_MODE:
        return classes[out.argmax(dim=1)].permute(0, 3, 1, 2)
    p = torch.softmax(out / temperature, dim=1)  # (B, Q, h, w)
    return torch.einsum("bqhw,qc->bchw", p, classes)


# ---------------------------------------------------------------------------------------------
# size


def inference_bytes(config: ModelConfig, pixels: int) -> int:
    """Estimated peak memory, in bytes, of a CPU forward pass in inference mode over ``pixels``
    working pixels (the batch's together): ``(4.5 width + 0.25 Q) pixels``, Q the classes (0
    for reg). Fitted to the peak resident memory measured around ``Predictor.run`` (shipped cls,
    width 64, Q 395: 455 and 352 bytes a pixel at 0.4 and 1.6 M pixels, 387 estimated; shipped
    reg, width 32: 126 and 115, 144 estimated), so that an image the memory cannot hold fails
    alone instead of the kernel's OOM killer ending the run unsaid."""
    return int(pixels * (4.5 * config.width + 0.25 * config.num_classes))


def check_memory(config: ModelConfig, pixels: int) -> None:
    """MemoryError when a CPU pass over ``pixels`` working pixels would need more memory than
    is free (:func:`inference_bytes`, :func:`~recolor_tools.process.memory_free`): Linux lets
    the allocations through and its OOM killer ended the whole run, unsaid (``predict --size
    8192``), where that image alone should fail."""
    from .process import memory_free

    need, free = inference_bytes(config, pixels), memory_free()
    if free is not None and need > free:
        raise MemoryError(f"a pass needs about {need / 2**30:.1f} GiB, {free / 2**30:.1f} free")


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics not included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops(config: ModelConfig, H: int = 256, W: int = 256) -> int:
    """Multiply-accumulates of one forward pass on one (1, 1, H, W) image.

    Counted with forward hooks on every Conv2d (output elements x input channels per group x
    kernel area) and Linear layer (in x out); BatchNorm, activations, pooling, interpolation and
    the loss are not counted (they are a few percent). H and W must be multiples of 8.
    """
    model = Colorizer(config).eval()
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        model(torch.zeros(1, 1, H, W))
    for h in hooks:
        h.remove()
    return total


# ---------------------------------------------------------------------------------------------
# where the network runs


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device for ``--device``: ``auto`` (CUDA when available, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``.

    Under torchrun, ``local_rank`` picks this process's GPU for ``auto`` and ``cuda``.

    Raises
    ------
    RecolorError
        CUDA was asked for but is not available.
    ValueError
        The name is not a device.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RecolorError(f"--device {name}: CUDA is not available (use --device cpu or auto)")
        if name == "cuda" and local_rank is not None:
            return torch.device("cuda", local_rank)
        device, n = torch.device(name), torch.cuda.device_count()
        if device.index is not None and device.index >= n:  # else a CUDA error at first use
            raise RecolorError(f"--device {name}: no such GPU (this machine has {n}: cuda:0 "
                               f"to cuda:{n - 1})")  # fmt: skip
        return device
    if name != "cpu":
        raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")
    return torch.device("cpu")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--precision`` on ``device``; None runs in float32.

    ``auto``: bf16 on a CUDA GPU that has it, else fp16; float32 on the CPU. ``bf16`` and
    ``fp16`` need CUDA. Losses, guidance and the decode stay in float32 either way.

    Raises
    ------
    RecolorError
        bf16 or fp16 asked for off CUDA.
    ValueError
        An unknown name.
    """
    if precision not in defaults.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (use auto, fp32, bf16 or fp16)")
    if device.type != "cuda" or precision == "fp32":
        if precision in ("bf16", "fp16") and device.type != "cuda":
            raise RecolorError(f"--precision {precision} needs CUDA")
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16
