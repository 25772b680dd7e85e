"""Recolour images with a trained :class:`~recolor_tools.models.Colorizer`.

For each image, of any size, aspect ratio and kind (colour, gray, RGBA, 16-bit):

1. the full-resolution lightness ``L`` is computed from the input (``color.rgb_to_lab``) and kept;
2. a working copy is resized so that its shorter side is ``size`` pixels (by default 1.25 times
   the size the model was trained at, :data:`WORK_SCALE`; the longer side is capped at
   ``max_side`` so panoramas stay cheap), padded on
   the bottom and right to a multiple of 8 by reflection, and passed through the network;
3. the network's a/b at 1/4 of the working resolution (``cls``: annealed mean of the class logits,
   :func:`recolor_tools.quant.annealed_mean`; ``reg``: ``128 * tanh`` output) is upsampled
   bilinearly to the full resolution, scaled by ``saturation``, joined to the input's own ``L``
   and converted back to sRGB (``color.lab_to_rgb``: out-of-gamut colours are clamped).

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

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from . import defaults, models, quant
from .color import lab_to_rgb, rgb_to_lab, to_uint8, to_uint16
from .errors import RecolorError
from .imageio import read_rgb, resize_to

WORK_SCALE = 1.25
"""The default working shorter side is this times the training size (128 -> 160).

Measured with the shipped weights on the 800 validation posters (shorter side 182) at full size,
against working at the training size: cls rebalanced AuC 78.4 -> 79.1%, plain AuC 87.1 -> 87.1%,
colourfulness 50.8 -> 54.3; reg PSNR 20.98 -> 21.09 dB, AuC 88.4 -> 88.5%. The scale was chosen
on the first 150 posters and held on the other 650 (cls rebalanced AuC +0.7 there). Larger
scales traded plain AuC and PSNR for colour (cls at x1.44: rebalanced +1.0, AuC -0.3).
"""
MAX_ASPECT = 8
"""The working longer side is at most ``MAX_ASPECT * size``: a panorama costs no more than this."""
BATCH_PIXELS = 32_000_000
"""A batch of inputs holds at most about this many full-resolution pixels at once (float32 L)."""
_STRIP_PIXELS = 1 << 20  # full-resolution pixels converted per strip: a few MB of temporaries
_REMAP_MAX = 16384  # cv2.remap needs both sides of its maps below 32767 (SHRT_MAX)


def default_size(ckpt: dict[str, Any]) -> int:
    """The default working shorter side for a checkpoint: ``round(WORK_SCALE * training size)``."""
    return round(WORK_SCALE * ((ckpt.get("data") or {}).get("size") or defaults.TRAIN_SIZE))


def working_shape(H: int, W: int, size: int, max_side: int | None = None) -> tuple[int, int]:
    """The (h, w) the network sees for an (H, W) image.

    The shorter side becomes ``size`` (images are enlarged or shrunk: the model was trained on
    images of one scale, see :func:`default_size`), the longer side is capped at ``max_side``
    (default ``MAX_ASPECT * size``), the aspect ratio is kept, and neither side is below 8.
    """
    if H < 1 or W < 1:
        raise ValueError(f"image must not be empty, got {H}x{W}")
    max_side = max_side or MAX_ASPECT * size
    s = min(size / min(H, W), max_side / max(H, W))
    return max(8, round(H * s)), max(8, round(W * s))


def _strips(H: int, W: int) -> Iterator[tuple[int, int]]:
    """Row ranges [a, b) of about ``_STRIP_PIXELS`` pixels covering H rows of width W."""
    rows = max(1, min(_STRIP_PIXELS // max(W, 1), _REMAP_MAX))
    for a in range(0, H, rows):
        yield a, min(a + rows, H)


def lightness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L of an sRGB image, computed in strips (no full-size Lab temporary).

    Parameters
    ----------
    rgb : (H, W, 3) float32 in [0, 1]

    Returns
    -------
    L : (H, W) float32 in [0, 100]
    """
    H, W = rgb.shape[:2]
    L = np.empty((H, W), np.float32)
    for a, b in _strips(H, W):
        L[a:b] = rgb_to_lab(rgb[a:b])[:, :, 0]
    return L


@dataclass
class Prepared:
    """One input, ready for the network.

    Attributes
    ----------
    L : (H, W) float32
        Full-resolution lightness in [0, 100], joined to the prediction.
    work : (hp, wp) float32
        Working-resolution L, padded to multiples of 8.
    hw : (int, int)
        Working size (h, w) before padding.
    ab : (hp / s, wp / s, 2) float32 or None
        Predicted a/b at the network's output resolution (stride s), once :meth:`Predictor.run`
        has seen it.
    """

    L: np.ndarray
    work: np.ndarray
    hw: tuple[int, int]
    ab: np.ndarray | None = None


def upsample_ab(
    ab: np.ndarray, hw: tuple[int, int], stride: int, shape: tuple[int, int], rows: tuple[int, int]
) -> np.ndarray:
    """Bilinear a/b for rows [a, b) of the full-resolution image.

    Output pixel j of the network covers working pixels [stride j, stride (j + 1)), so with
    half-pixel centres (the convention of ``cv2.resize`` and of area-averaged training targets)
    full-resolution pixel y lies at output coordinate ``(y + 0.5) h / (stride H) - 0.5``. Mapping
    through this, rather than cropping and resizing, keeps a working size that is not a multiple
    of ``stride`` exactly aligned. Borders replicate, as in ``cv2.resize``; ``cv2.remap``
    interpolates at 1/32 pixel of the output grid.

    Parameters
    ----------
    ab : (h', w', 2) float32
        Network output, padding included.
    hw : (int, int)
        Working size (h, w) before padding, which spans the whole image.
    stride : int
        Network output stride (4).
    shape : (int, int)
        Full-resolution (H, W).
    rows : (int, int)
        Full-resolution rows [a, b) wanted.

    Returns
    -------
    (b - a, W, 2) float32
    """
    (h, w), (H, W), (a, b) = hw, shape, rows
    ys = ((np.arange(a, b) + 0.5) * (h / (stride * H)) - 0.5).astype(np.float32)
    xs = ((np.arange(W) + 0.5) * (w / (stride * W)) - 0.5).astype(np.float32)
    out = np.empty((b - a, W, 2), np.float32)
    for c0 in range(0, W, _REMAP_MAX):
        c1 = min(c0 + _REMAP_MAX, W)
        mx = np.tile(xs[c0:c1], (b - a, 1))  # (b-a, c1-c0)
        my = np.repeat(ys[:, None], c1 - c0, axis=1)  # (b-a, c1-c0)
        out[:, c0:c1] = cv2.remap(ab, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


class Predictor:
    """A model, its checkpoint and the decoding settings: turns RGB images into recoloured ones.

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
        Cap on the working longer side (default ``MAX_ASPECT * size``).

    Examples
    --------
    >>> model, ckpt = load_checkpoint("weights/cls.pt", "cls")  # doctest: +SKIP
    >>> rgb_out = Predictor(model, ckpt).recolorize(rgb)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
        ckpt: dict[str, Any],
        *,
        size: int | None = None,
        temperature: float = defaults.TEMPERATURE,
        saturation: float = 1.0,
        device: str | torch.device = "cpu",
        max_side: int | None = None,
    ) -> None:
        size = size or default_size(ckpt)
        if int(size) != size or size < 8:
            raise ValueError(f"size must be an integer >= 8, got {size!r}")
        if not (np.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        if not (np.isfinite(saturation) and saturation >= 0):
            raise ValueError(f"saturation must be >= 0, got {saturation!r}")
        self.device = models.resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.ckpt = ckpt
        self.head = model.config.head
        self.stride = model.config.out_stride
        self.size, self.max_side = int(size), max_side
        self.temperature, self.saturation = float(temperature), float(saturation)
        self.classes = None
        if self.head == "cls":
            self.classes = np.ascontiguousarray(ckpt["classes"].cpu().numpy(), np.float32)

    @classmethod
    def load(
        cls, weights: str | Path | None = None, head: str | None = None, **kwargs: Any
    ) -> Predictor:
        """Build from a checkpoint file, or the shipped weights for ``head`` when ``weights`` is
        None (``head`` then defaults to ``cls``); ``kwargs`` go to the constructor.

        Raises
        ------
        RecolorError
            No shipped weights, not a checkpoint, or a checkpoint for another head.
        """
        device = models.resolve_device(str(kwargs.pop("device", "cpu")))
        if weights is None:
            head = head or "cls"
            try:
                weights = models.default_weights(head)
            except RecolorError:
                raise RecolorError(
                    f"no weights for head {head} "
                    "(train them with `recolor train` or pass --weights)",
                    Path(models.__file__).resolve().parent.parent / "weights" / f"{head}.pt",
                ) from None
        model, ckpt = models.load_checkpoint(weights, head, map_location=device)
        return cls(model, ckpt, device=device, **kwargs)

    # -- the three steps ------------------------------------------------------------------------

    def prepare(self, rgb: np.ndarray) -> Prepared:
        """Full-resolution L and the padded working L of one (H, W, 3) float32 RGB image."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
        H, W = rgb.shape[:2]
        h, w = working_shape(H, W, self.size, self.max_side)
        small = resize_to(np.asarray(rgb, np.float32), h, w)  # resampled as in training
        work = rgb_to_lab(small)[:, :, 0]  # (h, w)
        pad_h, pad_w = -h % 8, -w % 8
        # Pad bottom/right only, so that working pixel (0, 0) stays the image's corner.
        work = cv2.copyMakeBorder(work, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
        return Prepared(lightness(rgb), work, (h, w))

    def run(self, items: list[Prepared], batch_size: int = 8) -> None:
        """Predict ``item.ab`` for every item; items of one working shape share a forward pass.

        Parameters
        ----------
        items : list of Prepared
        batch_size : int
            Most images per forward pass.
        """
        groups: dict[tuple[int, int], list[Prepared]] = {}
        for it in items:
            groups.setdefault(it.work.shape, []).append(it)
        for group in groups.values():
            for i in range(0, len(group), batch_size):
                chunk = group[i : i + batch_size]
                ab = self._chroma(np.stack([it.work for it in chunk]))  # (B, h', w', 2)
                for it, ab_i in zip(chunk, ab, strict=True):
                    it.ab = ab_i

    def _chroma(self, work: np.ndarray) -> np.ndarray:
        """(B, hp, wp) working L -> (B, hp / s, wp / s, 2) float32 a/b."""
        x = torch.from_numpy(work[:, None]).to(self.device)  # (B, 1, hp, wp)
        with torch.inference_mode():
            out, _ = self.model(x)
        out = out.float().cpu().numpy()  # (B, 2 or Q, h', w')
        if self.head == "reg":
            return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) * np.float32(models.AB_SCALE)
        # The decode is the numba kernel: a (B, Q, h', w') softmax in torch would cost as much
        # memory traffic again as the network's last layers.
        if self.temperature == 0:
            return quant.mode(out, self.classes, axis=1)
        return quant.annealed_mean(out, self.classes, self.temperature, axis=1, logits=True)

    def compose(self, item: Prepared, dtype: type = np.float32) -> np.ndarray:
        """Join the predicted a/b to the full-resolution L and convert to sRGB, in strips.

        Parameters
        ----------
        item : Prepared
            After :meth:`run`.
        dtype : np.float32, np.uint8 or np.uint16
            float32 in [0, 1], or rounded to 8 or 16 bits (saves 3/4 or 1/2 of the memory).

        Returns
        -------
        (H, W, 3) RGB of ``dtype``
        """
        if item.ab is None:
            raise ValueError("compose() needs run() first")
        L = item.L
        H, W = L.shape
        out = np.empty((H, W, 3), dtype)
        for a, b in _strips(H, W):
            lab = np.empty((b - a, W, 3), np.float32)
            lab[:, :, 0] = L[a:b]
            lab[:, :, 1:] = upsample_ab(item.ab, item.hw, self.stride, (H, W), (a, b))
            if self.saturation != 1:
                lab[:, :, 1:] *= np.float32(self.saturation)
            rgb = lab_to_rgb(lab)
            rounded = {np.uint8: to_uint8, np.uint16: to_uint16}.get(dtype)
            out[a:b] = rgb if rounded is None else rounded(rgb)
        return out

    # -- convenience ----------------------------------------------------------------------------

    def recolorize(self, rgb: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Recolour one (H, W, 3) float32 sRGB image in [0, 1]; see the module docstring."""
        return self.recolorize_batch([rgb], dtype=dtype)[0]

    def recolorize_batch(
        self, rgbs: Iterable[np.ndarray], batch_size: int = 8, dtype: type = np.float32
    ) -> list[np.ndarray]:
        """Recolour several images; those of one working shape share forward passes."""
        items = [self.prepare(rgb) for rgb in rgbs]
        self.run(items, batch_size)
        return [self.compose(it, dtype) for it in items]

    def predict_files(
        self,
        paths: Iterable[str],
        batch_size: int = 8,
        read: Callable[[str], np.ndarray] = read_rgb,
        dtype: type = np.uint8,
    ) -> Iterator[tuple[str, np.ndarray | RecolorError]]:
        """Read (with ``read``), recolour and yield ``(path, RGB of dtype)`` per file, in order.

        Files are read ``batch_size`` at a time (fewer when together they exceed
        :data:`BATCH_PIXELS` pixels, to bound memory), and those of one working shape go through
        the network together. An unreadable file yields ``(path, RecolorError)`` and the rest go
        on; ``-`` reads stdin.
        """
        pending: list[tuple[str, Prepared | RecolorError]] = []
        pixels = 0
        for path in itertools.chain(paths, [None]):
            if path is not None:
                try:
                    it = self.prepare(read(path))
                    pixels += it.L.size
                except RecolorError as e:
                    it = e
                pending.append((path, it))
                if len(pending) < batch_size and pixels < BATCH_PIXELS:
                    continue
            self.run([it for _, it in pending if isinstance(it, Prepared)], batch_size)
            pending.reverse()
            while pending:  # popped, so each full-resolution L is freed once written
                p, it = pending.pop()
                yield p, it if isinstance(it, RecolorError) else self.compose(it, dtype)
            pixels = 0


def recolorize(
    rgb: np.ndarray,
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    *,
    size: int | None = None,
    temperature: float = defaults.TEMPERATURE,
    saturation: float = 1.0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Recolour one image with ``model``: predict a/b from its lightness, keep its L.

    Parameters
    ----------
    rgb : (H, W, 3) float32 in [0, 1]
        sRGB input, colour or gray (only its L is used).
    model, ckpt
        From :func:`recolor_tools.models.load_checkpoint`.
    size, temperature, saturation, device
        See :class:`Predictor`.

    Returns
    -------
    (H, W, 3) float32 in [0, 1]
        sRGB with the input's L and the predicted a/b; out-of-gamut colours clamped.
    """
    p = Predictor(
        model, ckpt, size=size, temperature=temperature, saturation=saturation, device=device
    )
    return p.recolorize(rgb)


def recolorize_batch(
    rgbs: Iterable[np.ndarray],
    model: torch.nn.Module,
    ckpt: dict[str, Any],
    *,
    size: int | None = None,
    temperature: float = defaults.TEMPERATURE,
    saturation: float = 1.0,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> list[np.ndarray]:
    """:func:`recolorize` for several images; those of one working shape share forward passes."""
    p = Predictor(
        model, ckpt, size=size, temperature=temperature, saturation=saturation, device=device
    )
    return p.recolorize_batch(rgbs, batch_size)
