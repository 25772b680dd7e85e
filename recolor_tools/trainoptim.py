"""The optimiser of a training run: Adam over the network and, in a group of their own at
``--hint-lr``, the layers a run adds (:func:`new_modules`), with the plateau or cosine
learning-rate schedule (:func:`build_optimiser`); :class:`Optimiser` is saved and restored as
one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import models
from .errors import UsageError
from .trainconfig import TrainConfig

PLATEAU = {"factor": 0.5, "patience": 10, "min_lr": 1e-5}
"""ReduceLROnPlateau settings (the seed's)."""


@dataclass(frozen=True)
class Optimiser:
    """Adam, its learning-rate schedule and the fp16 grad scaler; saved and restored as one."""

    optimizer: torch.optim.Optimizer
    scheduler: Any  # ReduceLROnPlateau or LambdaLR
    scaler: torch.amp.GradScaler
    groups: tuple[str, ...] = ("network",)
    """What each parameter group holds: ``"network"`` and/or ``"new"`` (hint, affinity)."""
    new_modules: tuple[str, ...] = ()
    """The layers in the ``"new"`` group (:func:`new_modules`), saved so a resume groups alike."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "new_modules": list(self.new_modules),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            # the rate of the step reached under this run's length: the saved one was the
            # saved length's (--resume --steps 8 on a 4-step cosine run trained step 5 at the
            # old schedule's last rate, 1e-5, not f(4/8))
            at = self.scheduler.last_epoch
            groups = self.optimizer.param_groups
            lambdas = self.scheduler.lr_lambdas
            for g, base, f in zip(groups, self.scheduler.base_lrs, lambdas, strict=True):
                g["lr"] = base * f(at)

    @property
    def lr(self) -> float:
        """The network's learning rate now (0 where it is kept: ``--lr 0``)."""
        return self._lr("network") or 0.0

    @property
    def hint_lr(self) -> float | None:
        """The new layers' learning rate now (None where the model has none)."""
        return self._lr("new")

    def _lr(self, group: str) -> float | None:
        if group not in self.groups:
            return None
        return self.optimizer.param_groups[self.groups.index(group)]["lr"]


def new_modules(
    model: models.Colorizer,
    resumed: dict | None = None,
    init: dict | None = None,
    asked: Sequence[str] = (),
) -> tuple[str, ...]:
    """The layers of ``model`` trained at ``--hint-lr``: the hint and affinity layers
    (:data:`~recolor_tools.models.NEW_MODULES`) it has, but where it starts from ``init``, only
    those this run adds or ``asked`` names (``--affinity`` given: the shipped weights' affinity
    layer trained again, as ``make affinity-weights`` does; the others ``init`` holds are its
    network's: a hint model fine-tuned with ``--affinity`` at ``--lr 0`` had its hint layers
    trained too, and the shipped affinity layer trained beside new hint layers); a resumed
    run's as it had them (all, for a run saved before they were recorded)."""
    have = tuple(n for n in models.NEW_MODULES if hasattr(model, n))
    if resumed is not None:
        return tuple(resumed["train_state"].get("new_modules", have))
    if init is not None:
        held = {n for n in have if any(k.startswith(n + ".") for k in init["model"])}
        return tuple(n for n in have if n not in held or n in asked)
    return have


def build_optimiser(
    cfg: TrainConfig,
    model: torch.nn.Module,
    total_steps: int,
    amp_dtype: torch.dtype | None,
    new_layers: Sequence[str] | None = None,
) -> Optimiser:
    """Adam with the plateau or cosine schedule (see the module's Choices); the ``new_layers``
    (:func:`new_modules`; default all the hint and affinity layers), if any, in a second group
    at ``cfg.hint_lr``. At ``lr`` 0 the rest of the network is not trained at all (no
    gradients: a fine-tune that adds layers to a network it keeps costs a forward pass and the
    new layers' backward)."""
    if new_layers is None:
        new_layers = new_modules(model)
    new = [p for name in new_layers for p in getattr(model, name).parameters()]
    ids = {id(p) for p in new}
    old = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": old, "lr": cfg.lr}]
    if not cfg.lr:  # the network is kept: no gradients through it
        groups = []
        for p in old:
            p.requires_grad_(False)
    if new:
        groups.append({"params": new, "lr": cfg.hint_lr})
    if not groups:  # (torch: "optimizer got an empty parameter list")
        raise UsageError("--lr 0 keeps the network, and this run adds no layer to train (the "
                         "--init weights hold the hint and affinity layers asked)")  # fmt: skip
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **PLATEAU)
    else:

        def cosine(lr: float) -> Callable[[int], float]:  # a group's lr down to min_lr over the run
            # a share of the group's own starting rate (one share for both groups took the new
            # layers' rate to hint_lr * 1e-5 / lr); one below min_lr stays (1e-6 rose to 1e-5)
            floor = min(1.0, PLATEAU["min_lr"] / lr)

            def factor(step: int) -> float:
                progress = min(step, total_steps) / total_steps
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

            return factor

        lambdas = [cosine(g["lr"]) for g in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    names = ("network",) * bool(cfg.lr) + ("new",) * bool(new)
    return Optimiser(optimizer, scheduler, scaler, names, tuple(new_layers))
