"""numba set-up shared by the colour-class kernels: where compiled kernels are cached, the threads
that run them, and the two intrinsics numba lacks (a scalar bit cast and an atomic add).

Cache. Kernels compile on first use (seconds each) and are kept on disk. numba's default place
is ``__pycache__`` beside the source, which an install owned by root or another user does not
let us write; numba then tries ``~/.cache/numba`` and, failing that, refuses to import the module
at all. So unless ``NUMBA_CACHE_DIR`` is set, the cache goes to
``$XDG_CACHE_HOME/recolor/numba`` (default ``~/.cache/recolor/numba``), and where no directory
can be written the kernels are compiled anew in each process (slower, not broken). Either way
in a subfolder per version of the kernels' sources (:func:`source_stamp`; those of earlier
versions, unused for a month, are removed by the first run of a new one: :func:`prune_stale`),
through a cache that compiles around damaged files and failed saves (:class:`_SafeCache`).

Threads. The kernels are serial numba functions that release the GIL (``nogil``); a large call
runs one copy per thread from a small Python thread pool, the copies taking chunks of work from
a shared counter (:func:`fetch_add`). numba's ``parallel=True`` did the same job, but it
compiles each kernel twice (a parallel body and a serial copy for small calls) and its parfor
passes are slow: the soft-encoding kernel took 9.2 s to compile in parallel form against 2.7 s
serial, on this 2-core machine. The pool is made again after a fork (torch DataLoader workers,
multiprocessing), whose child has no threads but the forking one; the number of threads follows
``numba.get_num_threads()`` (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), at most the
cores the process may use (:func:`threads`: a ``NUMBA_NUM_THREADS`` above them is capped).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
from numba.core import types
from numba.core.caching import FunctionCache
from numba.extending import intrinsic

# numba.get_num_threads() starts numba's threading layer; GNU OpenMP, which numba picks when it
# can, kills a process forked after it has started. "forksafe" picks TBB if installed, else
# numba's own workqueue.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "forksafe"


def cache_dir(env: dict | None = None) -> Path | None:
    """The directory recolor's kernels are cached in: ``$XDG_CACHE_HOME/recolor/numba``
    (``~/.cache/recolor/numba`` by default, home from the user database where ``HOME`` is not
    an absolute path), or None where it cannot be created and written (``NUMBA_CACHE_DIR``,
    when set, is numba's to use and wins over this)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        home = env.get("HOME", "")
        if not os.path.isabs(home):  # unset, empty (it was /.cache) or relative (the cwd's)
            import pwd

            try:
                home = pwd.getpwuid(os.getuid()).pw_dir
            except KeyError:  # a user id with no entry (some containers): no home
                return None
        base = os.path.join(home, ".cache")
    path = Path(base) / "recolor" / "numba"
    return path if _writable(path) else None


def _writable(path: Path) -> bool:
    """Whether ``path`` is (or can be made) a folder this process can write files in."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()  # as numba tests it: root ignores mode bits
    except OSError:
        return False
    return True


def source_stamp(here: Path = Path(__file__).resolve().parent) -> str:
    """A short hash of the kernels' sources (``quant/*.py``, ``here``),
    the name of the cache's subfolder: numba checks a cached kernel against its own file only,
    so a kernel compiled with another version of the constants and helpers it takes from the
    others (``search._FINE``, :func:`fetch_add`) was loaded, stale, and gave other classes."""
    import hashlib

    digest = hashlib.sha1()
    for f in sorted(here.glob("*.py")):
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


STALE_DAYS = 30
"""A cache folder of other kernel sources (an earlier recolor's) that nothing wrote into for
this many days is removed when a new one is made (:func:`prune_stale`)."""


def prune_stale(base: Path, keep: str, days: float = STALE_DAYS) -> list[Path]:
    """Remove the ``src-*`` folders of ``base`` but ``keep`` whose newest write (the folder or
    one of its own folders, where numba adds a kernel's files) is older than ``days`` days;
    returns them. Each holds a few MB of compiled kernels, and every upgrade made one more. One
    still in use after all is compiled anew, once (seconds), and a process loading from it as it
    goes compiles around the missing files (:class:`_SafeCache`)."""
    import shutil
    import time

    cutoff, gone = time.time() - days * 86400, []
    for old in base.glob("src-*"):
        with contextlib.suppress(OSError):
            if old.name == keep or not old.is_dir() or old.is_symlink():
                continue
            newest = max([old.stat().st_mtime] + [d.stat().st_mtime for d in old.iterdir()])
            if newest < cutoff:
                shutil.rmtree(old)
                gone.append(old)
    return gone


_base = Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else cache_dir()
if _base is not None and not _writable(_base):  # a NUMBA_CACHE_DIR that cannot be written:
    _base = None  # numba went on to __pycache__ beside the sources, with no src-<hash> level
if _base is not None:  # NUMBA_CACHE_DIR, when set, numba's; else recolor's own
    _here = _base / f"src-{source_stamp()}"
    if not _here.exists():  # the first run of these kernels' sources: after an upgrade
        prune_stale(_base, _here.name)
    numba.config.CACHE_DIR = str(_here)


class _SafeCache(FunctionCache):
    """numba's cache of one kernel, which a damaged or full cache cannot break: an entry that
    does not load (garbage, a file cut short by a crash: pickle's errors, even EOFError) is
    dropped and the kernel compiled anew; a save that fails (a full disk) keeps the kernel in
    memory for this run. numba trusts its files and raised both up to the tool."""

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception:  # noqa: BLE001 - any damage: the same as no entry
            with contextlib.suppress(Exception):
                self.flush()  # an empty index over the damaged one, for the save after
            return None

    def save_overload(self, sig, data):
        with contextlib.suppress(Exception):
            super().save_overload(sig, data)


def _signals_after_compiling(kernel):
    """``kernel`` compiling (or loading from the cache) with Ctrl-C and SIGTERM held until it
    is done (:func:`recolor_tools.process.signals_deferred`): one that came during a first
    run's compiling was lost in numba's ctypes callback, the run going on to exit 0."""
    from ..process import signals_deferred

    compile_ = kernel.compile

    def compile(sig):
        with signals_deferred():
            return compile_(sig)

    kernel.compile = compile
    return kernel


def njit(**options) -> Callable:
    """``numba.njit(cache=True, **options)``, or without the cache where recolor has no cache
    folder (:func:`cache_dir` None and no ``NUMBA_CACHE_DIR``: numba would fall back on
    ``__pycache__`` beside the sources, with no ``src-<hash>`` level, and load kernels compiled
    from other sources there), where numba would cache it anywhere but in that folder's
    ``src-<hash>`` (which it cannot use), or where it finds no writable place (it raises)."""

    def wrap(fn):
        return _signals_after_compiling(_cached(fn) or numba.njit(**options)(fn))

    def _cached(fn):
        if _base is None:
            return None
        try:
            kernel = numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return None
        kernel._cache = _SafeCache(fn)  # (what numba's enable_caching() sets)
        # numba goes down its list of places where the first cannot be used (src-<hash> a
        # file, another user's, a read-only mount): to __pycache__ or ~/.cache/numba, with no
        # src-<hash> level, where kernels compiled from other sources are loaded
        if not Path(kernel._cache._cache_path).is_relative_to(_here):
            return None
        return kernel

    return wrap


def bitcast(name: str, src: types.Type, dst: types.Type, doc: str):
    """A numba intrinsic ``name(x)``: the ``dst`` with the IEEE bits of ``x``, a ``src`` (numba
    has no bit cast of scalars)."""
    kind = types.Integer if isinstance(src, types.Integer) else types.Float

    def typer(typingctx, x):
        if not isinstance(x, kind):
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(dst))

        return dst(src), codegen

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


@intrinsic
def fetch_add(typingctx, x, v):
    """``x[0] += v`` as one atomic step, in a numba kernel; returns x[0] before (x a 1-D int64
    array). The workers of one call share x as their counter of chunks taken."""
    if not (isinstance(x, types.Array) and x.ndim == 1 and x.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        add = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", arr.data, add, "monotonic")

    return types.int64(x, v), codegen


def threads() -> int:
    """Threads a large call may use: ``numba.get_num_threads()``, at most the cores that the
    affinity and the cgroup's CPU quota leave (:func:`~recolor_tools.process.usable_cores`)."""
    from ..process import usable_cores

    return min(numba.get_num_threads(), usable_cores())


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid that made it, size, pool)


def run_workers(fn: Callable[[], object], nwork: int) -> list:
    """``fn()`` in ``nwork`` threads at once (the calling thread is one), its results in a list.

    ``fn`` is a nogil kernel call that takes its work from a shared counter, so the copies
    finish together whatever share of the cores each gets (with another process holding one of
    the two cores, taking chunks as they finish measured 1.22-1.26x an even split fixed in
    advance).
    """
    global _pool
    if nwork <= 1:
        return [fn()]
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < nwork - 1:
        size = max(nwork - 1, numba.config.NUMBA_NUM_THREADS)
        _pool = (os.getpid(), size, ThreadPoolExecutor(size, "recolor-quant"))
    futures = [_pool[2].submit(fn) for _ in range(nwork - 1)]
    return [fn(), *(f.result() for f in futures)]
