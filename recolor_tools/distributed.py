"""This process's place in a training run: rank, cores, replicas.

A run is one process, or several started by ``torchrun`` (env ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``); :func:`setup_distributed` reads that, and this
process's share of the cores, once into a :class:`Dist`; everything else asks the
:class:`Dist`. NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from .process import usable_cores


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) distributed run."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    # This process's share of the cores it may use (affinity, a container's CPU quota): all of
    # them, or an equal part for each process torchrun started on this machine (at least 1).
    cores: int = field(default_factory=usable_cores)

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and logs."""
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group torchrun describes (env WORLD_SIZE > 1); otherwise single process."""
    from .shard import rank_and_size

    rank, world = rank_and_size()  # (a UsageError for values torchrun would not set)
    if world <= 1:
        return Dist()
    cores = max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    d = Dist(rank, int(os.environ.get("LOCAL_RANK", "0")), world, cores)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
    from .process import die_on_signals
    from .shard import joining

    joining()
    with die_on_signals():  # waiting for the other ranks: nothing written yet
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return d


def default_workers(device: torch.device, d: Dist) -> int:
    """DataLoader workers per process when not given.

    On a CPU the network dominates: decoding and encoding a 182x268 poster take about 2.5 ms,
    2-3% of a training step's time per image at size 128 (benchmarks/bench_train.py). One
    worker hides that when a core is spare (4 cores or more); on fewer cores a worker only
    competes with the compute threads, so data is loaded inline. A GPU needs the data side to
    keep up, so every core but one goes to workers: on an H100 at size 128, batch 64, the step
    takes an image every 0.22 ms (4,530 img/s, bf16) and a worker one every 1.6 ms, so seven
    workers just keep up; with 14 the shipped cls run logged 3,700-4,300 img/s end to end.
    """
    if device.type == "cpu":
        return 1 if d.cores >= 4 else 0
    return max(1, d.cores - 1)


@contextlib.contextmanager
def all_or_none(d: Dist) -> Iterator[None]:
    """Leave the block on every rank, or raise on every rank: one rank's expected error (a
    folder or ``--stats`` file missing on its machine) is raised by rank 0 too, with the rank
    named, since what is about the whole run is said by rank 0 only. Before, that rank exited
    unsaid and the others failed at their next collective ("internal error: ... Connection
    reset by peer"). Another exception (a bug, memory) stands on its rank; the others say
    that rank stopped, with its type and text. The block must hold no collective of its own
    (call it on every rank)."""
    from .errors import RecolorError, UsageError

    if d.world <= 1:
        yield
        return
    own = None
    try:
        yield
    except Exception as e:
        own = e
    told = None
    if isinstance(own, RecolorError):
        told = (type(own) is UsageError, own.reason, own.path, getattr(own, "see_help", True))
    elif own is not None:
        told = (False, f"stopped: {type(own).__name__}: {own}", None, True)
    every: list = [None] * d.world
    dist.all_gather_object(every, told)
    if own is not None:
        raise own
    failed = [(r, t) for r, t in enumerate(every) if t is not None]
    if failed:
        r, (usage, reason, path, see_help) = failed[0]
        if usage:
            raise UsageError(f"{reason} (rank {r})", path, see_help)
        raise RecolorError(f"{reason} (rank {r})", path)


def check_same(values: dict[str, tuple[object, str]], d: Dist) -> None:
    """Raise :class:`~recolor_tools.errors.UsageError` unless every rank holds the same value
    under each key of ``values`` (``{what differs: (value, how it is said)}``, the first that
    differs said; call it on every rank, with the same keys)."""
    from .errors import UsageError

    if d.world <= 1:
        return
    every: list = [None] * d.world
    dist.all_gather_object(every, values)
    for what, (mine, _) in every[0].items():
        other = [r for r, theirs in enumerate(every) if theirs[what][0] != mine]
        if other:
            said = ", ".join(f"rank {r}: {every[r][what][1]}" for r in (0, *other))
            raise UsageError(f"the processes {what} ({said}): every process must be given the "
                             "same", see_help=False)  # fmt: skip


def check_same_run(lists: tuple[list, ...], settings: dict[str, object], d: Dist) -> None:
    """Raise :class:`~recolor_tools.errors.UsageError` unless every rank listed the same
    training and validation images and resolved the same run ``settings`` (``{flag: value}``;
    call it on every rank). Each rank takes its share of its own list by position: lists that
    differ between the machines of a launch (a folder read on each) train on other images than
    asked, unsaid, and other counts of images wait for good at the end of the shorter epoch.
    Other settings did alike: another ``--lr`` trained replicas apart, another ``--seed``
    overlapping shares, another ``--steps`` waited for good, another ``--width`` failed in
    DDP ("params[0] ... appears not to match"), a stale copy of OUT resumed another step."""
    from .shard import digest

    values = {}
    for what, items in zip(("training", "validation"), lists, strict=True):
        n, sha = digest(items)
        values[f"listed different {what} images"] = ((n, sha), str(n))
    for flag, value in settings.items():
        values[f"were given different {flag}"] = (value, str(value))
    check_same(values, d)


def check_same_classes(classes: np.ndarray | None, weights: np.ndarray | None, d: Dist) -> None:
    """Raise :class:`~recolor_tools.errors.UsageError` unless every rank has the same colour
    classes and rebalancing weights (``--stats`` or ``--classes`` files that differ between the
    machines trained other classes or weights, unsaid); call it on every rank."""
    if classes is None:
        return
    sha = hashlib.sha256(classes.tobytes() + (b"" if weights is None else weights.tobytes()))
    said = f"{len(classes)} classes, sha256 {sha.hexdigest()[:12]}"
    what = "were given different classes or rebalancing (--stats, --classes)"
    check_same({what: (sha.hexdigest(), said)}, d)


def broadcast_buffers(model: torch.nn.Module, d: Dist) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every replica.

    DDP keeps the parameters identical but each replica's BatchNorm statistics come from its
    own share of the data; an evaluation or a saved model must use one set.
    """
    if d.world > 1:
        for b in model.buffers():
            dist.broadcast(b, 0)


def mean_over_ranks(total: torch.Tensor, n: int, d: Dist) -> float:
    """Sum of ``total`` over ranks divided by the sum of ``n`` (0 when no rank has any)."""
    both = torch.stack([total.double(), torch.tensor(float(n), device=total.device).double()])
    if d.world > 1:
        dist.all_reduce(both)
    return (both[0] / both[1].clamp(min=1)).item()


def each_rank(value: torch.Tensor, d: Dist) -> list[float]:
    """A scalar of every rank, in rank order (one collective: call it on every rank)."""
    if d.world <= 1:
        return [value.item()]
    parts = [torch.zeros_like(value) for _ in range(d.world)]
    dist.all_gather(parts, value)
    return [p.item() for p in parts]


def param_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in state_dict order (replica-identity check)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
