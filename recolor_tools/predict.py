"""Recolour images with a trained :class:`~recolor_tools.models.Colorizer`.

For each image, of any size, aspect ratio and kind (colour, gray, RGBA, 16-bit):

1. the full-resolution lightness ``L`` is computed from the input (``color.rgb_to_l``) and kept;
2. a working copy is resized so that its shorter side is ``size`` pixels (by default 1.25 times
   the size the model was trained at, :data:`WORK_SCALE`; the longer side is capped at
   ``max_side`` so panoramas stay cheap), padded on
   the bottom and right to a multiple of 8 by reflection, and passed through the network;
3. the network's a/b at 1/4 of the working resolution (``cls``: annealed mean of the class logits;
   ``reg``: ``128 * tanh`` output; both :func:`recolor_tools.models.decode`, on the network's
   device) is upsampled bilinearly to the full resolution, scaled by ``saturation``, joined to
   the input's own ``L`` and converted back to sRGB (``color.lab_to_rgb``: out-of-gamut colours
   are clamped).

The three steps are plain functions over frozen data: :func:`prepare` (read, L, working image;
``Prepared``), :func:`infer` (the network and its decode; ``Predicted``), :func:`compose`
(upsample, join, convert). :class:`Predictor` holds a model and its settings;
:mod:`recolor_tools.batching` drives files through them under a memory budget. Colour hints
(:mod:`recolor_tools.hints`) ride on ``Prepared``; :mod:`recolor_tools.guide` steers the class
distribution with them in step 2, and step 3 writes each hint point's a/b over its own pixels
before the ``saturation`` scale.

Why the decode is torch, not the numba kernel (:func:`recolor_tools.quant.annealed_mean`), on
the CPU too: it costs about 6 ms more per image at the default working size (torch 52 ms, numba
6.6 ms for 8 images of 160x240, 2 busy cores), but ``recolor predict`` then compiles no numba
kernel: a first run with an empty numba cache took 15.6 s and now takes 3.5 s (one Kodak image,
``NUMBA_CACHE_DIR`` emptied), and a warm one 3.9 s -> 3.4 s (numba is not imported at all).

So the output has exactly the input's size and, wherever the predicted colour is inside the sRGB
gamut, exactly its lightness (up to the output's 8-bit rounding); only chroma is predicted.

Step 3 runs in horizontal strips of about a million pixels, so a 6000x4000 photograph needs the
input, its ``L`` (4 bytes per pixel) and the 8-bit output, but no full-size a/b or Lab array.

References
----------
.. [1] R. Zhang, P. Isola, A. A. Efros, "Colorful Image Colorization", ECCV 2016 (output at 1/4
   resolution joined to the full-resolution L; annealed mean with T = 0.38).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from . import checkpoints, defaults, models
from .color import lab_to_rgb_as, rgb_dtype, rgb_to_l
from .errors import RecolorError, check_count, is_real
from .guide import cell_probabilities, colour_modes, steer
from .hints import Hints, resolve_points
from .imagemeta import ImageMeta
from .workgrid import is_samples, lightness, strips, upsample_ab, working_rgb, working_shape

WORK_SCALE = 1.25
"""The default working shorter side is this times the training size (128 -> 160).

Measured with the shipped weights on the 800 validation posters (shorter side 182) at full size,
against working at the training size: cls rebalanced AuC 78.4 -> 79.1%, plain AuC 87.1 -> 87.1%,
colourfulness 50.8 -> 54.3; reg PSNR 20.98 -> 21.09 dB, AuC 88.4 -> 88.5%. The scale was chosen
on the first 150 posters and held on the other 650 (cls rebalanced AuC +0.7 there). Larger
scales traded plain AuC and PSNR for colour (cls at x1.44: rebalanced +1.0, AuC -0.3).
"""
BATCH_PIXELS = 32_000_000
"""A batch of inputs holds at most about this many full-resolution pixels at once (float32 L)."""
_FLOAT_SLACK = 1e-3
"""How far float RGB may stray outside [0, 1] (rounding in a caller's own conversions)."""


def default_size(ckpt: dict[str, Any]) -> int:
    """The default working shorter side for a checkpoint: ``round(WORK_SCALE * training size)``."""
    size = round(WORK_SCALE * ((ckpt.get("data") or {}).get("size") or defaults.TRAIN_SIZE))
    return min(size, defaults.MAX_SIZE)


@dataclass(frozen=True)
class Prepared:
    """One input, ready for the network (step 1 of 3).

    Attributes
    ----------
    L : (H, W) float32
        Full-resolution lightness in [0, 100], joined to the prediction.
    work : (hp, wp) float32
        Working-resolution L, padded to multiples of 8.
    hw : (int, int)
        Working size (h, w) before padding.
    hints : Hints or None
        Colour hints and palette for this image, in its pixels (:mod:`recolor_tools.hints`);
        None for the automatic prediction (empty hints are dropped).
    meta : ImageMeta or None
        What the source file carried besides pixels (profile, depth, EXIF, XMP), for the output
        to keep; None for an image given as an array.
    """

    L: np.ndarray
    work: np.ndarray
    hw: tuple[int, int]
    hints: Hints | None = None
    meta: ImageMeta | None = None


@dataclass(frozen=True)
class Predicted:
    """One input and the network's a/b for it (step 2 of 3), ready to :func:`compose`.

    Attributes
    ----------
    prepared : Prepared
    ab : (hp / s, wp / s, 2) float32
        a/b at the network's output resolution (stride s), padding included.
    """

    prepared: Prepared
    ab: np.ndarray

    @property
    def hw(self) -> tuple[int, int]:
        return self.prepared.hw


@dataclass(frozen=True)
class Settings:
    """How to predict: working size and decoding (see :class:`Predictor` for each field)."""

    size: int
    max_side: int | None = None
    temperature: float = defaults.TEMPERATURE
    saturation: float = 1.0

    def __post_init__(self) -> None:
        top = defaults.MAX_SIZE
        for name, hi in (("size", top), ("max_side", np.inf)):  # NaN, inf, None: this line
            v = getattr(self, name)
            if v is None and name == "max_side":
                continue
            if not (isinstance(v, int | float | np.number) and np.isfinite(v) and int(v) == v
                    and 8 <= v <= hi):  # fmt: skip
                raise ValueError(f"{name} must be an integer from 8 to {hi:g}, got {v!r}")
            object.__setattr__(self, name, int(v))  # (64.0 taken: an int from here on)
        # checked before float(): True was taken for 1, "0.5" for 0.5
        if not (is_real(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        check_saturation(self.saturation)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "saturation", float(self.saturation))


def check_saturation(saturation: float) -> None:
    """ValueError unless ``saturation`` is from 0 to :data:`~recolor_tools.defaults.MAX_SATURATION`
    (NaN fails too; a negative one turned every hue to its opposite)."""
    if not (is_real(saturation) and 0 <= saturation <= defaults.MAX_SATURATION):
        raise ValueError(
            f"saturation must be from 0 to {defaults.MAX_SATURATION:g}, got {saturation!r}"
        )


# -- the three steps, as plain functions --------------------------------------------------------


def prepare(rgb: np.ndarray, settings: Settings, hints: Hints | None = None) -> Prepared:
    """Step 1: full-resolution L and the padded working L of one (H, W, 3) sRGB image: float
    in [0, 1], or uint8 / uint16 samples (scaled by 1/255, 1/65535).

    ``hints`` (in pixels or percent of this image) are resolved to its pixels here, so a point
    outside it raises :class:`RecolorError` before any network work.

    Raises
    ------
    ValueError
        Another shape or dtype, a NaN or infinite sample (one would turn every output pixel
        NaN: the network mixes it into all of them), or float samples outside [0, 1].
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    # integer samples (either byte order) are taken as 0..1 a strip at a time (workgrid; as
    # 0..255 they were a white image); floats are checked
    floats = not is_samples(rgb)
    if floats and not np.issubdtype(rgb.dtype, np.floating):
        raise ValueError(f"rgb must be float in [0, 1], uint8 or uint16, got {rgb.dtype}")
    if floats and not np.isfinite(rgb).all():
        raise ValueError("rgb holds NaN or infinite samples")
    if floats and rgb.size and not -_FLOAT_SLACK <= rgb.min() <= rgb.max() <= 1 + _FLOAT_SLACK:
        # floats on the 0..255 scale came out white, with no word
        raise ValueError(
            f"float rgb must be in [0, 1], got [{rgb.min():g}, {rgb.max():g}] (for 0..255 "
            "samples pass uint8, or divide by 255)"
        )
    H, W = rgb.shape[:2]
    if hints is not None:
        hints = hints.resolve(H, W)
    h, w = working_shape(H, W, settings.size, settings.max_side)
    work = rgb_to_l(working_rgb(rgb, h, w))  # (h, w)
    pad_h, pad_w = -h % 8, -w % 8
    # Pad bottom/right only, so that working pixel (0, 0) stays the image's corner.
    work = cv2.copyMakeBorder(work, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
    return Prepared(lightness(rgb), work, (h, w), hints if hints and not hints.empty else None)


def infer(
    model: models.Colorizer,
    items: Sequence[Prepared],
    temperature: float = defaults.TEMPERATURE,
    batch_size: int = 8,
    prior: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
) -> list[Predicted]:
    """Step 2: the network's a/b for every item; items of one working shape share a pass
    (:func:`network_output`), decoded in float32 on the network's device by
    :meth:`Colorizer.decode` (only the 2-channel a/b leaves it)."""
    check_count("batch_size", batch_size)
    out: dict[int, Predicted] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.work.shape, []).append(i)
    for group in groups.values():
        for s in range(0, len(group), batch_size):
            chunk = group[s : s + batch_size]
            z = network_output(model, [items[i] for i in chunk], prior, amp_dtype)
            with torch.inference_mode():
                ab = model.decode(z, temperature).permute(0, 2, 3, 1).cpu().numpy()
            for j, i in enumerate(chunk):
                out[i] = Predicted(items[i], np.ascontiguousarray(ab[j]))
    return [out[i] for i in range(len(items))]


def network_output(
    model: models.Colorizer,
    items: Sequence[Prepared],
    prior: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """(B, 2 or Q, h', w') float32: the network's output for items of one working shape, the
    class log-distribution of those with hints steered: what ``predict`` decodes and
    ``--suggest`` reads.

    The network runs under autocast to ``amp_dtype`` when given (:func:`models.amp_dtype`). A
    model that takes hints gets them as input (:mod:`recolor_tools.hintinput`). Items with
    hints have their class log-distribution steered (:func:`recolor_tools.guide.steer`,
    ``prior`` the checkpoint's class prior); for a hint model, as ``hintinput.STEER_LEARNED``
    and ``AFFINITY_FROM_AUTOMATIC`` say.
    """
    from . import hintinput

    device, stride = next(model.parameters()).device, model.config.out_stride
    if device.type == "cpu":  # (CUDA says its own out of memory)
        models.check_memory(model.config, len(items) * items[0].work.size)
    x = torch.from_numpy(np.stack([it.work for it in items])[:, None]).to(device)
    given = None
    if model.config.hints:
        given = hintinput.batch_hints(items, model.classes, device)
    with torch.inference_mode():
        with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
            feats = model.features(x, given)  # (B, 2C, h', w')
            z = model.head_out(feats)  # (B, 2 or Q, h', w')
            # the cls head's distribution is steered (reg takes points as input only)
            steered = model.config.head == "cls" and (
                not model.config.hints or hintinput.STEER_LEARNED
            )
            if steered and any(it.hints is not None for it in items):
                if model.config.hints and hintinput.AFFINITY_FROM_AUTOMATIC:
                    feats = model.features(x)  # the image as the automatic model sees it
                feats = model.affinity_features(feats)
        feats, z = feats.float(), z.float()  # guidance and decode in float32
        for j, it in enumerate(items):
            if it.hints is not None and steered:
                z[j] = steer(z[j], feats[j], it, model.classes, prior, stride)
    return z


def compose(
    pred: Predicted, stride: int = 4, saturation: float = 1.0, dtype: type = np.float32
) -> np.ndarray:
    """Step 3: join the a/b to the full-resolution L and convert to sRGB, in strips.

    a/b are upsampled (:func:`upsample_ab`), every hint point's own square gets the hint's a/b
    exactly (so a hint holds whatever the model chose), and all are scaled by ``saturation``
    (hinted squares too: unscaled, they stood out of what they spread to as dots).

    Returns
    -------
    (H, W, 3) RGB of ``dtype``: float32 in [0, 1], or uint8 / uint16 rounded (3/4 or 1/2 less
    memory; 16 bits keep a 16-bit master's tonal depth).
    """
    check_saturation(saturation)
    L, hints = pred.prepared.L, pred.prepared.hints
    H, W = L.shape
    out = np.empty((H, W, 3), rgb_dtype(dtype))  # (None: refused, not a float64 image)
    for a, b in strips(H, W):
        lab = np.empty((b - a, W, 3), np.float32)
        lab[:, :, 0] = L[a:b]
        lab[:, :, 1:] = upsample_ab(pred.ab, pred.hw, stride, (H, W), (a, b))
        if hints is not None:  # before the scale: a hinted square scaled as what it spread to
            hints.paste(lab[:, :, 1:], a)
        if saturation != 1:
            lab[:, :, 1:] *= np.float32(saturation)
        out[a:b] = lab_to_rgb_as(lab, dtype)
    return out


def _hinted(item: Prepared, x: int, y: int) -> np.ndarray | None:
    """The a/b that :func:`compose` writes at pixel (x, y) of ``item`` when a hint point's
    square covers it (the hint's own, whatever the model chose there), else None."""
    if item.hints is None or not len(item.hints.xy):
        return None
    row = np.full((1, item.L.shape[1], 2), np.nan, np.float32)
    item.hints.paste(row, y)
    return row[0, x] if np.isfinite(row[0, x]).all() else None


class Predictor:
    """A model, its checkpoint and the settings: turns RGB images into recoloured ones.

    A thin holder over :func:`prepare`, :func:`infer` and :func:`compose`, with a file driver
    (:meth:`predict_files`, :mod:`recolor_tools.batching`) that batches under a memory budget.

    Parameters
    ----------
    model : Colorizer
        In eval mode (moved to ``device`` here).
    ckpt : dict
        Its checkpoint (``load_checkpoint``): ``classes`` for ``cls``, ``data["size"]``.
    size : int, optional
        Working shorter side in pixels; default :data:`WORK_SCALE` times the checkpoint's
        training size (``ckpt["data"]["size"]``, else :data:`defaults.TRAIN_SIZE`), rounded.
    temperature : float, default 0.38
        Annealed-mean temperature (``cls`` only); 0 takes the most likely class (the mode),
        larger values give more muted, averaged colours.
    saturation : float, default 1.0
        Multiplies the predicted a/b; 0 gives a gray image with the input's lightness.
    device : str or torch.device, default "cpu"
        "auto", "cpu", "cuda", ...
    max_side : int, optional
        Cap on the working longer side (default ``workgrid.MAX_ASPECT * size``).
    precision : {"auto", "fp32", "bf16", "fp16"}, default "auto"
        The network's arithmetic (:func:`models.amp_dtype`): auto is bf16 mixed precision on a
        GPU that has it (else fp16), float32 on the CPU.

    Examples
    --------
    >>> model, ckpt = load_checkpoint("weights/cls.pt", "cls")  # doctest: +SKIP
    >>> rgb_out = Predictor(model, ckpt).recolorize(rgb)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: models.Colorizer,
        ckpt: dict[str, Any],
        *,
        size: int | None = None,
        temperature: float = defaults.TEMPERATURE,
        saturation: float = 1.0,
        device: str | torch.device = "cpu",
        max_side: int | None = None,
        precision: str = "auto",
    ) -> None:
        size = default_size(ckpt) if size is None else size  # 0 is an error, not the default
        self.settings = Settings(size, max_side, temperature, saturation)
        self.device = models.resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.amp_dtype = models.amp_dtype(precision, self.device)
        self.ckpt = ckpt
        rebalance = ckpt.get("rebalance") or {}
        self.prior = rebalance.get("prior") if model.config.head == "cls" else None

    @property
    def size(self) -> int:
        return int(self.settings.size)

    @property
    def stride(self) -> int:
        return self.model.config.out_stride

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        head: str | None = None,
        advice: str = "",
        **kwargs: Any,
    ) -> Predictor:
        """Build from a checkpoint file, or the shipped weights for ``head`` when ``weights`` is
        None (``head`` then defaults to ``cls``); ``advice`` ends the error for a checkpoint of
        another head (``{head}`` its head); ``kwargs`` go to the constructor.

        Raises
        ------
        RecolorError
            No shipped weights, not a checkpoint, or a checkpoint for another head.
        """
        device = models.resolve_device(str(kwargs.pop("device", "cpu")))
        if weights is None:
            head = head or "cls"
            try:
                weights = checkpoints.default_weights(head)
            except RecolorError as e:  # (named where the package looked: an install's own)
                raise RecolorError(f"no weights for head {head} (train them with `recolor "
                                   "train` or pass --weights)", e.path) from None  # fmt: skip
        model, ckpt = checkpoints.load_checkpoint(weights, head, device, advice)
        return cls(model, ckpt, device=device, **kwargs)

    def check_hints(
        self, given: bool, palette: bool = False, steered: bool = False, fix: str = "--head cls"
    ) -> None:
        """Raise :class:`RecolorError` if hints are ``given`` (a ``palette`` among them, or a
        strength or spread that ``steered`` them) to a model that cannot take them: a reg model
        takes point hints only as input (trained with ``--hints``), never a palette (a
        colour-class histogram), and nothing spreads them but the network. ``fix``: what the
        message says to use instead (the CLI's "a cls checkpoint" where --weights named one)."""
        config = self.model.config
        if given and config.head != "cls" and not config.hints:
            raise RecolorError(
                "colour hints and palettes need the cls head (its class distribution is what "
                f"they steer); the reg head predicts one colour per pixel: use {fix}"
            )
        if palette and config.head != "cls":
            raise RecolorError(
                "a palette needs the cls head (a colour-class histogram steers its class "
                f"distribution); this reg model takes point hints only: use {fix}"
            )
        if steered and given and config.head != "cls":  # they were ignored, unsaid
            raise RecolorError(
                "--hint-strength and --hint-spread steer the cls head's class distribution; "
                f"this reg model takes point hints as its input: drop them or use {fix}"
            )

    def check_suggest(self, fix: str = "--head cls") -> None:
        """Raise :class:`RecolorError` if this model has no class distribution to suggest from."""
        if self.model.config.head != "cls":
            raise RecolorError(
                f"--suggest needs the cls head (reg has no class distribution): use {fix}"
            )

    def check_given(self, hints: Hints | None) -> None:
        """:meth:`check_hints` for these ``hints`` (None: none)."""
        if hints is not None and not isinstance(hints, Hints):  # ("5,5=#f00": AttributeError)
            raise TypeError(f"hints must be a Hints (hints.parse_hint, ...) or None, not "
                            f"{type(hints).__name__}")  # fmt: skip
        given = hints is not None and not hints.empty
        palette = given and len(hints.palette_w) > 0
        steered = given and (hints.strength is not None or hints.spread != "alike")
        self.check_hints(given, palette, steered)

    def prepare(self, rgb: np.ndarray, hints: Hints | None = None) -> Prepared:
        """:func:`prepare` with this predictor's settings."""
        self.check_given(hints)
        return prepare(rgb, self.settings, hints)

    def run(self, items: Sequence[Prepared], batch_size: int = 8) -> list[Predicted]:
        """:func:`infer` with this predictor's model, temperature and precision."""
        T = self.settings.temperature
        return infer(self.model, items, T, batch_size, self.prior, self.amp_dtype)

    def compose(self, pred: Predicted, dtype: type = np.float32) -> np.ndarray:
        """:func:`compose` with this predictor's stride and saturation."""
        return compose(pred, self.stride, self.settings.saturation, dtype)

    def recolorize(
        self, rgb: np.ndarray, dtype: type = np.float32, hints: Hints | None = None
    ) -> np.ndarray:
        """Recolour one (H, W, 3) sRGB image (float in [0, 1], uint8 or uint16; see
        :func:`prepare`) to RGB of ``dtype`` (as :func:`compose`: float32, uint8 or uint16; not
        None, which is each file's own depth only in :meth:`predict_files`); see the module
        docstring."""
        return self.compose(self.run([self.prepare(rgb, hints)])[0], dtype)

    def recolorize_batch(
        self, rgbs: Iterable[np.ndarray], batch_size: int = 8, dtype: type = np.float32
    ) -> list[np.ndarray]:
        """Recolour several images; those of one working shape share forward passes."""
        preds = self.run([self.prepare(rgb) for rgb in rgbs], batch_size)
        return [self.compose(p, dtype) for p in preds]

    def suggest(
        self,
        rgb: np.ndarray,
        x: float | str,
        y: float | str,
        k: int = 5,
        hints: Hints | None = None,
    ) -> list[tuple[str, float]]:
        """The model's ``k`` main colours at pixel (x, y): ``[("#rrggbb", probability)]``,
        likeliest first.

        The class distribution (steered, when ``hints`` are given) at the network's output
        cell holding the pixel, at T = 1, is split into at most ``k`` colours by
        :func:`recolor_tools.guide.colour_modes`; each probability is its cluster's share, and
        its a/b is shown with the pixel's own L (out-of-gamut colours clamped).
        """
        return self.suggest_points(rgb, [(x, y)], k, hints)[0]

    def suggest_points(
        self,
        rgb: np.ndarray,
        points: Sequence[tuple[float | str, float | str]],
        k: int = 5,
        hints: Hints | None = None,
    ) -> list[list[tuple[str, float]]]:
        """:meth:`suggest` at each (x, y) of ``points`` (pixels or ``"50%"``), the network run
        once; a point outside the image raises :class:`RecolorError` before it runs. At a hint
        point's own pixels, the hint's colour alone (probability 1), as the output holds it."""
        self.check_suggest()
        if not len(points):  # no point: nothing to run the network for
            return []
        item = self.prepare(rgb, hints)
        xy = np.array(resolve_points(list(points), *item.L.shape, "--suggest point"))
        z = network_output(self.model, [item], self.prior, self.amp_dtype)[0]
        p = cell_probabilities(z, item, self.model.config.out_stride, xy[:, 1], xy[:, 0])
        classes = self.model.classes.cpu().numpy()
        found = []
        for (x, y), pi in zip(xy, p, strict=True):
            ab, mass = colour_modes(pi, classes, k)
            if (held := _hinted(item, x, y)) is not None:  # as the output holds it there
                ab, mass = held[None], np.ones(1)
            lab = np.concatenate([np.full((len(ab), 1), item.L[y, x]), ab], 1)[None]
            rgb8 = lab_to_rgb_as(lab.astype(np.float32), np.uint8)[0]
            hexes = ["#" + bytes(c).hex() for c in rgb8]
            found.append(list(zip(hexes, mass.tolist(), strict=True)))
        return found

    def predict_files(
        self,
        paths: Iterable[str],
        batch_size: int = 8,
        hints: Callable[[str], Hints | None] | None = None,
        dtype: type | None = np.uint8,
        io_workers: int = 0,
    ) -> Iterator[tuple[str, np.ndarray | RecolorError, ImageMeta | None]]:
        """Read, recolour and yield ``(path, RGB of dtype, meta)`` per file, in input order;
        ``meta`` is what the file carried besides pixels (:class:`Prepared`), for the output.
        ``dtype`` None: each file's own depth (uint16 for a 16-bit source, else uint8).

        Files are read ``batch_size`` at a time (fewer when together they exceed
        :data:`BATCH_PIXELS` pixels, to bound memory), and those of one working shape go through
        the network together. ``hints(path)`` gives each file's hints (or None). An unreadable
        file, bad hints or an image too large for the memory free (:class:`OutOfMemory`; a batch
        that runs out is run again image by image) yield ``(path, RecolorError, meta or None)``
        and the rest go on; ``-`` reads stdin.

        With ``io_workers`` > 0, ``io_workers`` threads read and prepare up to ``batch_size``
        files ahead while the network runs on the current batch, and as many more compose its
        results while the caller consumes (encodes, writes) earlier ones; OpenCV and numpy
        release the GIL. At most about two batches of full-resolution images are alive, and the
        results are the serial path's (0), byte for byte and in the same order. ``hints`` is
        then called from worker threads, in input order of submission.
        """
        from .batching import predict_files
        from .inputs import check_path_list

        check_path_list(paths, "paths")
        # here, not when the generator is first read: "2" failed there, naming no argument
        check_count("io_workers", io_workers, least=None)  # (0 or less: serial)
        check_count("batch_size", batch_size)
        if dtype is not None:  # (None: each file's own depth)
            rgb_dtype(dtype)
        return predict_files(self, paths, batch_size, hints, dtype, io_workers)
