"""Splitting a tool's inputs across the processes of a torchrun launch (or any launcher that
sets ``RANK`` and ``WORLD_SIZE``), with no process group: each rank takes every WORLD_SIZE-th
input of the whole list, starting at its RANK.

The whole list is built (and its output names checked for clashes) in every rank before the
split, so the ranks together write exactly what one process would, each output once; each rank
prints the paths it wrote, so every written path is printed once. No rank leaves before the
others are done (:func:`together`): torchrun would stop them. There the ranks also compare the
lists they split: lists that differ between the machines of a launch (a glob or a folder read
on each) skip some inputs and do others twice, which is said then.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar

from . import errors
from .errors import ExitCode, RecolorError, UsageError

T = TypeVar("T")

_SIGNALLED = (ExitCode.INTERRUPTED, ExitCode.TERMINATED, ExitCode.HUNG_UP)

BARRIER_TIMEOUT = timedelta(days=7)
"""How long a rank that has finished waits for the others (:func:`together`)."""

_split: tuple[int, str] | None = None
"""The length and sha256 of the lists :func:`this_rank` split in this process, if it did."""

_lines: dict[str, None] = {}
"""Within a launch, the lines this process's tool reported about the run, each once, in order
(:func:`keep_line`): rank 0's said, another rank's held back."""


def keep_line(line: str, said: bool) -> None:
    """Record a line a ranked tool printed (``said``) or held back (a rank other than 0: what
    is about the whole run is said once). Rank 0 says, at the end, each line another rank held
    back and rank 0 itself did not meet: that rank's own (a ``--weights`` file missing on its
    machine), silent before while torchrun reported the rank failed. Outside a launch (one
    process) nothing is kept; nor what another rank said itself (an input's failure)."""
    try:
        rank, size = rank_and_size()
    except RecolorError:  # said where the run began (Tool): no launch to say it in
        return
    if size > 1 and said == (rank == 0):
        _lines[line] = None


def rank_and_size(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the environment; (0, 1) outside a distributed launch: without
    WORLD_SIZE or with WORLD_SIZE 1 (a stray RANK alone is one process).

    Raises :class:`UsageError` for a WORLD_SIZE that is no whole number from 1, one above 1
    without a RANK (half the inputs were skipped unsaid: rank 0's share), a RANK that is no
    whole number in [0, WORLD_SIZE), or, in a launch of several, a LOCAL_RANK, LOCAL_WORLD_SIZE
    or MASTER_PORT out of :data:`_LAUNCH_NUMBERS`: set by hand, not by torchrun.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return 0, 1
    try:
        size = int(env["WORLD_SIZE"])
        rank = int(env["RANK"]) if size > 1 else 0
    except ValueError:
        raise UsageError("RANK and WORLD_SIZE must be whole numbers (set by torchrun)") from None
    except KeyError:
        raise UsageError(f"WORLD_SIZE {size} without RANK: launch with torchrun") from None
    if size < 1:  # (no RANK was read: naming one would blame a variable nobody set)
        raise UsageError(f"WORLD_SIZE {size} is no number of processes (set by torchrun)")
    if not 0 <= rank < size:
        raise UsageError(f"RANK {rank} is not in [0, WORLD_SIZE={size}) (set by torchrun)")
    if size > 1:  # the launch's other variables, read later (an int() error then, unnamed)
        for name, least, most in _LAUNCH_NUMBERS:
            value = env.get(name)
            if value is None:
                continue
            n = int(value) if value.isascii() and value.isdigit() and len(value) < 20 else -1
            if n < least or most is not None and n > most:
                upto = f" to {most}" if most else ""
                raise UsageError(f"{name} {value!r} is not a whole number from {least}{upto} "
                                 "(set by torchrun)")  # fmt: skip
    return rank, size


_LAUNCH_NUMBERS = (
    ("LOCAL_RANK", 0, None),
    ("LOCAL_WORLD_SIZE", 1, None),
    ("MASTER_PORT", 1, 65535),
)
"""What a launch of several processes reads besides RANK and WORLD_SIZE, where set, and the
whole numbers each may be (None: no most)."""


def first_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process says what is about the whole run: all but ranks 1 and up of a
    launch of several processes (WORLD_SIZE > 1, as :func:`recolor_tools.distributed.
    setup_distributed` decides; a stray RANK alone is one process)."""
    try:
        rank, size = rank_and_size(env)
    except RecolorError:
        return True  # told where the values are used
    return rank == 0 or size <= 1


def this_rank(*lists: Sequence[T], env: Mapping[str, str] | None = None) -> tuple[list[T], ...]:
    """This rank's share of each list (the same positions in each): items ``RANK``,
    ``RANK + WORLD_SIZE``, ... Under torchrun with CUDA, also makes this process's GPU
    (``LOCAL_RANK``) the current one, so that ``--device cuda`` means it."""
    env = os.environ if env is None else env
    rank, size = rank_and_size(env)
    if size > 1 and "LOCAL_RANK" in env:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(env["LOCAL_RANK"]) % torch.cuda.device_count())
    global _split
    _split = digest(*lists) if size > 1 else None  # compared in together()'s wait
    return tuple(list(items[rank::size]) for items in lists)


def digest(*lists: Sequence[object]) -> tuple[int, str]:
    """The length of the first list and a sha256 of every list's items (as ``str``) in order:
    what the ranks of a launch compare to find that they were given the same inputs."""
    whole = "\0".join(map(str, zip(*lists, strict=True))).encode("utf-8", "surrogateescape")
    return len(lists[0]) if lists else 0, hashlib.sha256(whole).hexdigest()


@contextlib.contextmanager
def together(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within a torchrun launch, leave the block only once every rank has reached its end.

    torchrun stops every worker as soon as one exits with a nonzero status, so a rank whose
    share held one bad input (exit 1) would cut the other ranks' work short. Each rank waits
    for the others (a gloo barrier over torchrun's rendezvous: ``MASTER_ADDR``,
    ``MASTER_PORT``) and then exits with its own status. Ctrl-C and SIGTERM leave at once.
    Outside a launch (no ``MASTER_ADDR``, or one process) this does nothing.

    The wait is also where the ranks compare the lists they split (:func:`this_rank`): where
    they differ, rank 0 says so on stderr and every rank exits 2 (at least); and where rank 0
    says the lines about the whole run that only other ranks met (:func:`keep_line`).
    """
    env = os.environ if env is None else env
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    except SystemExit as e:
        interrupted = e.code in _SIGNALLED
        raise
    finally:
        if not interrupted and _barrier(env):
            # the block's own status (typer's Exit, SystemExit), at least 2; an error stands
            left = sys.exc_info()[1]
            if left is None or isinstance(left, SystemExit) or type(left).__name__ == "Exit":
                code = getattr(left, "exit_code", getattr(left, "code", 0))
                raise SystemExit(max(ExitCode.USAGE, code if isinstance(code, int) else 1))


def _barrier(env: Mapping[str, str]) -> bool:
    """Wait for every rank (see :func:`together`); whether their split lists differ."""
    try:
        rank, size = rank_and_size(env)
    except RecolorError:  # said where the run began (Tool): nothing to wait for
        return False
    if size == 1 or not {"MASTER_ADDR", "MASTER_PORT"} <= env.keys():
        return False
    import torch.distributed as dist

    from .process import die_on_signals

    # A rank may finish hours before the slowest one on an uneven share: wait that long, but
    # leave at a signal (every output is written: nothing to remove)
    joining(env)
    with die_on_signals():
        dist.init_process_group("gloo", rank=rank, world_size=size, timeout=BARRIER_TIMEOUT)
        try:
            every: list = [None] * size
            held = list(_lines) if rank else []
            dist.all_gather_object(every, (_split, held))  # (the barrier: each waits for all)
        finally:
            dist.destroy_process_group()
    if rank == 0:
        _say_held_back([theirs for _, theirs in every])
    split = [(r, v) for r, (v, _) in enumerate(every) if v is not None]  # None: stopped before
    if len({v for _, v in split}) < 2:
        return False
    if rank == 0:
        said = ", ".join(f"rank {r}: {n}" for r, (n, _) in split)
        errors.warn(f"the processes were given different lists of inputs ({said}): each took "
                    "its share of its own list, so some may be missing or done twice; give "
                    "every process the same list")  # fmt: skip
    return True


def _say_held_back(held: list[list[str]]) -> None:
    """Print each line that ranks held back and rank 0 did not meet, once, naming the ranks:
    ``recolor predict: w.pt: no such file (ranks 1, 3)``."""
    who: dict[str, list[int]] = {}
    for r, lines in enumerate(held):
        for line in lines:
            if line not in _lines:
                who.setdefault(line, []).append(r)
    for line, ranks in who.items():
        errors.to_stderr(_naming(line, ranks))


def _naming(line: str, ranks: list[int]) -> str:
    """``line`` naming the ranks that met it, before a usage line's ``(see ... -h)``."""
    which = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"
    line, see, usage = line.rpartition(" (see ")
    return f"{line} ({which}){see}{usage}" if see else f"{usage} ({which})"


LAST_WORD_WAIT = timedelta(seconds=30)
"""How long a rank other than 0 that ends with a failure waits for rank 0's lines
(:func:`last_word`): rank 0 meets the same error within seconds, or is busy elsewhere."""

_joined = False
"""Whether this process has joined the others' wait (:func:`joining`)."""


def joining(env: Mapping[str, str] | None = None) -> None:
    """Call before waiting for every rank (:func:`together`'s barrier, training's process
    group). Rank 0 says so in torchrun's store: a rank that stopped before it joined then says
    its own lines at once (:func:`last_word`), rank 0 being unable to come past its wait (it
    did after :data:`LAST_WORD_WAIT`)."""
    global _joined
    _joined = True
    env = os.environ if env is None else env
    if _agent_rank(env) == 0:
        with contextlib.suppress(Exception):  # (no store: last_word waits its while)
            _store(env).set(_key("waiting", env), "1")


def last_word(code: int, env: Mapping[str, str] | None = None) -> None:
    """Under torchrun, let rank 0 say its lines before another rank's failure stops it.

    torchrun's agent stops every worker once one exits with a nonzero status, and what is about
    the whole run (a usage error every rank meets, lines other ranks held back) is said by rank
    0 alone: when rank 1 ended first, rank 0 was at times stopped before its line (exit 1 and
    nothing said). So rank 0 sets a key in torchrun's own store (``MASTER_ADDR``,
    ``MASTER_PORT``: the agent's, shared with its workers where ``TORCHELASTIC_USE_AGENT_STORE``
    is ``True``) as it ends, and another rank ending with a failure waits for it, at most
    :data:`LAST_WORD_WAIT`; when rank 0 does not come (busy, or waiting for this rank: the error
    was this rank's alone, :func:`joining`), this rank says what it held back itself. After
    Ctrl-C or SIGTERM nothing waits. Ranks launched by hand (no agent to stop them), single
    processes and launches whose agent keeps its store to itself
    (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE``) do nothing.
    """
    env = os.environ if env is None else env
    rank = _agent_rank(env)
    if rank is None or code in _SIGNALLED or rank and code == ExitCode.OK:
        return
    from .process import die_on_signals, lossy_stderr, quiet_c_stderr

    came = False
    try:  # (c10d logs a timeout in two lines of C++ of its own)
        with lossy_stderr(), quiet_c_stderr(), die_on_signals():
            store = _store(env)
            if rank == 0:
                store.set(_key("said", env), "1")
                return
            came = _rank_0_came(store, env)
    except Exception:  # no store, torch's import failed: said here
        pass
    for line in () if came else _lines:  # rank 0 did not come, or waits for this rank
        errors.to_stderr(_naming(line, [rank]))


def _rank_0_came(store, env: Mapping[str, str]) -> bool:
    """Whether rank 0 said its last word within :data:`LAST_WORD_WAIT`; False at once where it
    waits for this rank, which has not joined the others (:func:`joining`)."""
    import time

    end = time.monotonic() + LAST_WORD_WAIT.total_seconds()
    while not store.check([_key("said", env)]):
        if time.monotonic() > end or not _joined and store.check([_key("waiting", env)]):
            return False
        time.sleep(0.05)
    return True


def _agent_rank(env: Mapping[str, str]) -> int | None:
    """This process's rank where it is one of several of a torchrun launch whose agent shares
    its store with the workers (:func:`last_word`); None otherwise."""
    try:
        rank, size = rank_and_size(env)
    except RecolorError:
        return None
    return rank if size > 1 and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" else None


def _store(env: Mapping[str, str]):
    """A client of torchrun's agent store."""
    import torch.distributed as dist

    return dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                         timeout=LAST_WORD_WAIT)  # fmt: skip


def _key(what: str, env: Mapping[str, str]) -> str:
    """``recolor/WHAT/RUN_ID/RESTART``: this launch's, and this try's."""
    launch = env.get("TORCHELASTIC_RUN_ID", ""), env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"recolor/{what}/{launch[0]}/{launch[1]}"
