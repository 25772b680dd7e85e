"""The checkpoint format: what a trained model's file holds, and how it is written and read.

A checkpoint is a plain dict of tensors and primitives (loadable with
``torch.load(weights_only=True)``, never anything that runs code): the model's config and
weights, for the cls head its colour classes, grid, rebalancing and soft-encoding, a summary of
the data and of the last evaluation, and for ``last.pt`` the training state. Version 2 stores
nothing that can be derived (the head, Q, the class prior); :func:`read_checkpoint` puts those
back, so version 1 files, the shipped weights among them, read the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import io
import os
import pickle
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import defaults, process
from .errors import RecolorError, is_real, is_whole
from .fileio import check_regular, os_reason
from .models import HEADS, Colorizer, ModelConfig

CHECKPOINT_FORMAT = "recolor-checkpoint"


CHECKPOINT_VERSION = 2
"""2: no derived fields (head, num_classes, the prior), soft-encoding recorded; 1 still reads."""


def make_checkpoint(
    model: nn.Module,
    *,
    classes: Any = None,
    grid: float | None = None,
    rebalance: dict[str, Any] | None = None,
    k: int = defaults.K,
    sigma: float = defaults.SIGMA,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    step: int = 0,
    train_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the checkpoint dict for ``model`` (a :class:`Colorizer`, possibly DDP-wrapped).

    A checkpoint records what the model was trained with and nothing that can be derived from
    it: the head is ``config["head"]``, and Q is the length of ``classes`` (so the stored
    ``config`` has no ``num_classes``; :func:`read_checkpoint` puts both back).

    Parameters
    ----------
    model : Colorizer
    classes : (Q, 2) array_like float32, optional
        ab centres of the colour classes (cls head; required there, Q = ``config.num_classes``).
    grid : float, optional
        Spacing of the class grid in ab units.
    rebalance : dict, optional
        The rebalancing the cls loss used: ``{"weights": (Q,) float32 tensor, "lam": float,
        "sigma": float}`` (weights from :func:`recolor_tools.rebalance.rebalance_weights`;
        version-1 files also hold the smoothed ``"prior"`` they came from). Weights and prior
        given as arrays are stored as float32 tensors (``torch.load(weights_only=True)``
        reads no numpy array back); the dict given is not changed.
    k, sigma : int, float
        Soft-encoding of the cls targets: ``k`` nearest classes, Gaussian width ``sigma`` in
        a/b units (:func:`recolor_tools.quant.soft_encode`). Stored as
        ``"encoding": {"k", "sigma"}`` for cls, None for reg.
    data, metrics : dict, optional
        Summaries of the training data (``"size"``: the training crop side in pixels) and of
        the last evaluation (primitives only).
    step : int
        Optimiser steps taken.
    train_state : dict, optional
        Optimiser, scheduler, RNG and data position for ``--resume``; removed by
        :func:`strip_checkpoint` from shipped weights.

    Returns
    -------
    dict
        ``{"format", "version", "config", "model", "classes", "grid", "encoding",
        "rebalance", "data", "metrics", "step"[, "train_state"]}``.

    Raises
    ------
    ValueError
        cls classes missing, not (Q, 2) or not finite; a ``rebalance`` that
        :func:`read_checkpoint` would refuse (see there).
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    config: ModelConfig = model.config
    encoding = None
    if config.head == "cls":
        if classes is None:
            raise ValueError("a cls checkpoint needs its classes")
        classes = torch.tensor(np.asarray(classes, dtype=np.float32))
        if classes.shape != (config.num_classes, 2):
            raise ValueError(f"classes must be ({config.num_classes}, 2), got {classes.shape}")
        if not classes.isfinite().all():
            raise ValueError("classes hold NaN or infinity")
        encoding = {"k": int(k), "sigma": float(sigma)}
        if rebalance is not None:
            rebalance = _as_tensors(rebalance)
            reason = _rebalance_problem(rebalance, config.num_classes)
            if reason:
                raise ValueError(reason)
            lam = rebalance.get("lam")
            if rebalance.get("weights") is not None and is_real(lam) and lam < 1:
                rebalance.pop("prior", None)  # derived again on reading (a resumed run's
                # checkpoints held the prior that read_checkpoint had put in)
    stored_config = dataclasses.asdict(config)
    del stored_config["num_classes"]  # len(classes)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": stored_config,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": classes,
        "grid": grid,
        "encoding": encoding,
        "rebalance": rebalance,
        "data": data or {},
        "metrics": metrics or {},
        "step": int(step),
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def _as_tensors(rebalance: Any) -> Any:
    """A copy of a rebalance dict with array weights and prior as float32 tensors, numpy
    scalars as Python floats."""
    if not isinstance(rebalance, dict):
        return rebalance
    out = dict(rebalance)
    for key, v in out.items():
        if isinstance(v, (np.floating, np.integer)):
            out[key] = float(v)
    for key in ("weights", "prior"):
        v = out.get(key)
        if v is not None and not isinstance(v, torch.Tensor) and not isinstance(v, (str, bytes)):
            with contextlib.suppress(TypeError, ValueError):  # else _rebalance_problem names it
                out[key] = torch.tensor(np.asarray(v, dtype=np.float32))
    return out


def _rebalance_problem(rebalance: Any, q: int) -> str | None:
    """What is wrong with a cls checkpoint's ``rebalance`` entry, or None: a dict whose
    ``weights`` (> 0) and ``prior`` (>= 0), where present, are finite (Q,) float tensors, whose
    ``lam`` is a number in [0, 1], and which holds a prior or the weights and lam to derive it
    from (:func:`prior_from_weights`)."""
    if rebalance is None:
        return None
    if not isinstance(rebalance, dict):
        return f"rebalance must be a dict, got {type(rebalance).__name__}"
    for key in ("weights", "prior"):
        v = rebalance.get(key)
        if v is None:
            continue
        if not (isinstance(v, torch.Tensor) and v.is_floating_point() and v.shape == (q,)):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            return f"rebalance {key} must be a ({q},) float tensor, got {got}"
        if not v.isfinite().all():
            return f"NaN or infinite rebalance {key}"
        if key == "weights" and not (v > 0).all():
            return "rebalance weights not all > 0"
        if key == "prior" and not (v >= 0).all():
            return "negative rebalance prior"
    lam = rebalance.get("lam")
    if lam is not None and (
        isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1
    ):
        return f"rebalance lam must be a number in [0, 1], got {lam!r}"
    if rebalance.get("prior") is None:
        missing = [key for key in ("weights", "lam") if rebalance.get(key) is None]
        if missing:
            return f"rebalance without {' or '.join(missing)} (nor a prior)"
    return None


_LEAVES = (torch.Tensor, str, bytes, int, float, complex, bool, type(None), torch.Size,
           torch.dtype, torch.device)  # fmt: skip
"""What ``torch.load(weights_only=True)`` reads back, besides dicts, lists, tuples and sets."""


def _unloadable(obj: Any, where: str) -> str | None:
    """The first value in ``obj`` that ``torch.load(weights_only=True)`` cannot read back
    (a numpy array or scalar, any other object), as ``where.key: type``; None if all can be."""
    if isinstance(obj, np.generic) or not isinstance(obj, (*_LEAVES, dict, list, tuple, set)):
        return f"{where}: {type(obj).__module__}.{type(obj).__name__}"
    if isinstance(obj, torch.Tensor):
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad = _unloadable(k, f"{where}[{k!r}]") or _unloadable(v, f"{where}.{k}")
            if bad:
                return bad
    elif isinstance(obj, (list, tuple, set)):
        for i, v in enumerate(obj):
            bad = _unloadable(v, f"{where}[{i}]")
            if bad:
                return bad
    return None


def strip_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``ckpt`` without ``train_state``: the weights to ship or predict with."""
    return {k: v for k, v in ckpt.items() if k != "train_state"}


def save_checkpoint(path: str | Path, ckpt: dict[str, Any], keep_previous: bool = False) -> None:
    """Write ``ckpt`` with ``torch.save``, atomically: a killed run leaves the old file whole.

    The data is flushed to disk (fsync) before the rename, so a crash of the machine cannot
    leave a renamed but short file either. With ``keep_previous``, the file ``path`` held is
    first renamed to :func:`previous_path` (``last.pt`` -> ``last.prev.pt``), so that a
    checkpoint damaged later (a truncated copy) still has a good predecessor to resume from.

    Raises
    ------
    ValueError
        ``ckpt`` holds a value ``torch.load(weights_only=True)`` would not read back (a numpy
        array or scalar, any other object), named by its place (``ckpt.rebalance.weights``);
        nothing is written.
    """
    from .fileio import atomic_open

    bad = _unloadable(ckpt, "ckpt")
    if bad:
        raise ValueError(
            f"checkpoint value {bad} would not load back (store torch tensors, Python numbers, "
            "strings, lists and dicts)"
        )
    path = Path(path)
    buf = io.BytesIO()
    torch.save(ckpt, buf)  # into memory: torch's zip writer turns ENOSPC into a RuntimeError
    with contextlib.ExitStack() as renaming, atomic_open(path) as f:
        f.write(buf.getbuffer())
        f.flush()
        if stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # (a FIFO or device: written in place,
            os.fsync(f.fileno())  # where fsync is EINVAL and there is no old file to keep)
            if keep_previous and path.exists():
                # a signal between this rename and atomic_open's left no last.pt: it ends the
                # run once both are done (not while a write or an open blocks)
                renaming.enter_context(process.signals_deferred())
                os.replace(_followed(path), previous_path(path))  # (the link itself moved
                # away: no last.pt, and the new checkpoint written over the previous one)


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the previous file: ``last.pt`` -> ``last.prev.pt``;
    beside the file that a link ``last.pt`` leads to, named after it (the link is kept)."""
    path = _followed(Path(path))
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _followed(path: Path) -> Path:
    """``path``, or where it leads if it is a symbolic link (dangling or not)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_head(ckpt: dict[str, Any], head: str | None, path: str | Path, advice: str = "") -> None:
    """Raise if ``head`` is given and the checkpoint is for the other head."""
    if head is not None and ckpt.get("head") != head:
        raise RecolorError(
            f"checkpoint is for the {ckpt.get('head')!r} head, not {head!r}{advice}", path
        )


def read_checkpoint(
    path: str | Path, map_location: Any = "cpu", head: str | None = None
) -> dict[str, Any]:
    """Load and validate a checkpoint dict without building the model.

    ``head``, if given, is the head the caller expects; a checkpoint of the other one is an error.
    Every version reads the same: the derived ``"head"`` and ``config["num_classes"]`` are put
    back, and a version-1 checkpoint (which stored them, and trained with the default
    soft-encoding) gets ``"encoding"`` = ``{"k": defaults.K, "sigma": defaults.SIGMA}``.
    ``"version"`` stays the file's.

    Raises
    ------
    RecolorError
        Missing file, a zip entry whose CRC-32 does not match (a flipped bit), not a recolor
        checkpoint (a file cut short is one), a newer format
        version or one that is not an integer >= 1, cls weights without matching classes,
        classes or a rebalancing prior or weights holding NaN or infinity, a rebalance entry
        missing what it needs (see :func:`make_checkpoint`), or the wrong head.
    """
    p = Path(path)
    check_regular(p)
    try:  # the file itself: read_bytes would take a file named "-" for stdin
        with open(p, "rb") as f:  # its first bytes first: a 1 GB video given as -w is no
            start = f.read(len(_TORCH_SAVED[1]))  # checkpoint, said at once (it was read whole)
        if not start.startswith(_TORCH_SAVED[0]) and not _TORCH_SAVED[1].startswith(start):
            raise RecolorError(NOT_SAVED, path)
        data = p.read_bytes()
    except OSError as e:
        raise RecolorError(os_reason(e), path) from None
    except MemoryError:  # (a checkpoint is megabytes: this is no recolor checkpoint)
        size = p.stat().st_size / 2**30
        raise RecolorError(f"too large to load ({size:.1f} GiB, out of memory)", path) from None
    damaged = _damaged_entry(data)
    if damaged:
        raise RecolorError(f"corrupt checkpoint (CRC-32 mismatch in {damaged})", path)
    try:
        with warnings.catch_warnings():  # (a plain pickle: torch warns of its protocol first)
            warnings.simplefilter("ignore")
            ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # pickle, zip and torch errors: in plain words, not their names
        refused = isinstance(e, pickle.UnpicklingError) and data.startswith(_TORCH_SAVED)
        why = "not a recolor checkpoint (it holds objects that loading weights only refuses)"
        raise RecolorError(why if refused else NOT_SAVED, path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RecolorError("not a recolor checkpoint (no 'recolor-checkpoint' format tag)", path)
    version = ckpt.get("version")
    if not is_whole(version) or version < 1:
        raise RecolorError(f"broken checkpoint: version {version!r} is not an integer >= 1", path)
    if version > CHECKPOINT_VERSION:
        raise RecolorError(
            f"checkpoint version {version} is newer than this recolor reads "
            f"({CHECKPOINT_VERSION}); upgrade recolor",
            path,
        )
    _complete(ckpt, path)
    check_head(ckpt, head, path)
    return ckpt


NOT_SAVED = "not a recolor checkpoint (not a file torch.save wrote, or cut short)"

_TORCH_SAVED = (b"PK", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")
"""How torch.save's files begin: a zip archive, or (``_use_new_zipfile_serialization=False``)
the pickled magic number 0x1950a86a20f9469cfc6c."""


def _damaged_entry(data: bytes) -> str | None:
    """The first entry of a checkpoint (a zip archive, as torch.save writes it) whose CRC-32
    does not match its bytes: torch.load does not check them, so a flipped bit in a tensor
    loaded as a different model, silently (12 ms for the 16 MB cls weights). None for a file
    that is no zip archive: torch.load says what it is."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return None


def _complete(ckpt: dict[str, Any], path: str | Path) -> None:
    """Put back what a checkpoint derives (head, Q); check the copies a version 1 stored."""
    config = ckpt.get("config")
    classes = ckpt.get("classes")
    if not isinstance(config, dict) or config.get("head") not in HEADS:
        raise RecolorError("broken checkpoint: no model config", path)
    cls = config["head"] == "cls"
    if cls and not (
        isinstance(classes, torch.Tensor) and classes.ndim == 2 and classes.shape[1] == 2
    ):
        raise RecolorError("broken checkpoint: cls weights without classes", path)
    if cls and not classes.isfinite().all():  # every output pixel would be NaN
        raise RecolorError("broken checkpoint: NaN or infinite classes", path)
    q = len(classes) if cls else 0
    if config.setdefault("num_classes", q) != q:  # version 1 stored both
        raise RecolorError("broken checkpoint: cls weights without matching classes", path)
    if ckpt.setdefault("head", config["head"]) != config["head"]:  # version 1 stored both
        raise RecolorError("broken checkpoint: two different heads", path)
    default = {"k": defaults.K, "sigma": defaults.SIGMA} if cls else None
    encoding = ckpt.setdefault("encoding", default)
    if cls and not _encoding_ok(encoding):  # (train --init takes it: an internal error there)
        raise RecolorError(f"broken checkpoint: soft-encoding {encoding!r} is not k >= 1 and "
                           f"sigma >= {defaults.SIGMA_MIN}", path)  # fmt: skip
    data = ckpt.setdefault("data", {})
    if not isinstance(data, dict):
        raise RecolorError("broken checkpoint: its data record is not a mapping", path)
    size = data.get("size")
    if size is not None and not (is_whole(size) and size >= 8):
        # predict's default working size is made from it (capped at MAX_SIZE there)
        raise RecolorError(f"broken checkpoint: training size {size!r} is not a whole number "
                           "of 8 or more", path)  # fmt: skip
    rebalance = ckpt.get("rebalance")
    reason = _rebalance_problem(rebalance, q) if cls else None
    if reason:
        raise RecolorError(f"broken checkpoint: {reason}", path)
    if cls and rebalance is not None and rebalance.get("prior") is None:
        rebalance["prior"] = prior_from_weights(rebalance["weights"], float(rebalance["lam"]))


def _encoding_ok(encoding: object) -> bool:
    if not isinstance(encoding, dict) or set(encoding) != {"k", "sigma"}:
        return False
    k, sigma = encoding["k"], encoding["sigma"]
    return is_whole(k) and k >= 1 and is_real(sigma) and sigma >= defaults.SIGMA_MIN


def prior_from_weights(weights: torch.Tensor, lam: float) -> torch.Tensor | None:
    """The smoothed class prior p that rebalancing weights were made from, or None for lam = 1.

    Inverts :func:`recolor_tools.rebalance.rebalance_weights`: ``w = s / ((1 - lam) p + lam / Q)``
    with ``sum p w = 1`` gives ``s = 1 / sum(1 / w)`` and ``p = (s / w - lam / Q) / (1 - lam)``.
    Version 2 checkpoints store only the weights; palettes (:mod:`recolor_tools.guide`) need p.
    """
    if lam >= 1:
        return None
    w = weights.double()
    s = 1.0 / (1.0 / w).sum()
    return ((s / w - lam / len(w)) / (1.0 - lam)).clamp(min=0).float()


def load_checkpoint(
    path: str | Path, head: str | None = None, map_location: Any = "cpu", advice: str = ""
) -> tuple[Colorizer, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint file.

    Parameters
    ----------
    path : str or Path
    head : {"reg", "cls"}, optional
        The head the caller expects; a checkpoint of the other head is an error.
    map_location : str or torch.device
        Passed to ``torch.load``.
    advice : str
        Appended to the error for a checkpoint of the other head (the CLI's "; use --head ...").

    Returns
    -------
    model : Colorizer
        In eval mode, on ``map_location``'s device.
    ckpt : dict
        The whole checkpoint (see :func:`make_checkpoint`).

    Raises
    ------
    RecolorError
        Missing file, not a checkpoint, newer version, wrong head, or weights that do not fit
        the stored config; the reason is one line.
    """
    ckpt = read_checkpoint(path, map_location)
    check_head(ckpt, head, path, advice.format(head=ckpt.get("head")))
    model = model_of(ckpt, path)
    model.to(map_location if not isinstance(map_location, dict) else "cpu").eval()
    return model, ckpt


def model_of(ckpt: dict[str, Any], path: str | Path) -> Colorizer:
    """The model of a checkpoint read by :func:`read_checkpoint`, its weights and classes loaded
    (on the CPU, in train mode). Also how ``recolor train`` checks an ``--init`` or resumed
    checkpoint before any work (20 ms for the cls weights).

    Raises
    ------
    RecolorError
        A config no model can be built from, weights that do not fit it (missing, unexpected
        or misshapen tensors: the first named), or NaN or infinite weights; naming ``path``.
    """
    state = ckpt.get("model")
    try:
        model = Colorizer(ModelConfig(**ckpt["config"]))
        if not isinstance(state, dict):
            raise TypeError("no weights")
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RecolorError(f"broken checkpoint: {_first_problem(e)}", path) from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:  # a diverged or damaged run: it would paint every image one flat colour, or NaN
        raise RecolorError(f"broken checkpoint: NaN or infinite weights in {bad[0]}", path)
    bad = [k for k, v in state.items() if k.endswith("running_var") and (v < 0).any()]
    if bad:  # BatchNorm's square root of it: NaN in every output pixel
        raise RecolorError(f"broken checkpoint: negative variance in {bad[0]}", path)
    if model.config.head == "cls":
        model.classes.copy_(ckpt["classes"].float())
    return model


def _first_problem(e: Exception) -> str:
    """One line for why a model could not be built or loaded: torch's load_state_dict says
    "Error(s) in loading state_dict for Colorizer:" and lists the problems on the next lines."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        problem = lines[1]
        return f"weights do not fit the model: {problem[:200]}{'...' * (len(problem) > 200)}"
    return lines[0]


def default_weights(head: str) -> Path:
    """Path of the shipped weights for ``head``: ``{head}.pt`` in package data or the checkout.

    Looks in the installed package ``recolor_tools.weights`` (pyproject maps the top-level
    ``weights/`` directory there), then in ``<checkout>/weights/``.

    Raises
    ------
    RecolorError
        Neither holds ``{head}.pt`` (its path: where the package keeps them, else the
        checkout's).
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    name = f"{head}.pt"
    candidates: list[Path] = []
    try:
        res = importlib.resources.files("recolor_tools.weights") / name
        if res.is_file():
            return Path(str(res))
        candidates.append(Path(str(res)))
    except (ModuleNotFoundError, TypeError, NotADirectoryError):
        pass
    local = Path(__file__).resolve().parent.parent / "weights" / name
    if local.is_file():
        return local
    candidates.append(local)
    where = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise RecolorError(
        f"no shipped weights for the {head} head (looked in {where}); "
        "train some with `recolor train`",
        candidates[0],
    )
