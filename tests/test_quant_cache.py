"""Where compiled kernels go: a writable cache directory even when the package's own directory
cannot be written (an install owned by root or another user), and no failure when nothing can.

The package is copied to a temporary directory whose ``__pycache__`` folders are plain files, so
that nothing can be written beside the sources even by root (which ignores permission bits);
the tool then runs through the real CLI with HOME and XDG_CACHE_HOME pointing into tmp_path.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run, smooth_image, write_rgb

from recolor_tools import quant, records


def _unwritable_copy(tmp_path: Path) -> Path:
    """A copy of recolor_tools in which no ``__pycache__`` directory can be made; returns the
    directory to put on PYTHONPATH."""
    site = tmp_path / "site"
    pkg = site / "recolor_tools"
    shutil.copytree(ROOT / "recolor_tools", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for d in (pkg, pkg / "quant"):
        (d / "__pycache__").write_text("a file, so that no directory of that name can be made\n")
    return site


def _quantize(site: Path, src: Path, out: Path, home: Path, xdg: Path, *extra: str):
    """``recolor quantize --hard`` (or with ``extra`` options) from the copy at ``site``,
    without NUMBA_CACHE_DIR."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(site), NO_COLOR="1", HOME=str(home), XDG_CACHE_HOME=str(xdg))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recolor_tools",
            "quantize",
            *(extra or ["--hard"]),
            "-o",
            str(out),
            str(src),
        ],  # fmt: skip
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=site,  # -m puts the current directory first: the checkout's package, not the copy
        timeout=600,
        check=False,
    )


def _kernel_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _expected_idx(src: Path) -> np.ndarray:
    (rec,) = records.iter_records(io.BytesIO(run(["to-lab", src], check_rc=0).stdout))
    return quant.hard_encode(rec.lab()[..., 1:], quant.gamut_classes(8))


def _idx_of(path: Path) -> np.ndarray:
    (rec,) = records.iter_records(io.BytesIO(path.read_bytes()))
    return rec.arrays["idx"][..., 0]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> dict:
    """A read-only copy of the package (``site``), an image ``src`` and the classes it must
    get (``want``), and a first ``quantize --hard`` of it from that copy (``p``, into
    ``out``) with an empty cache under ``xdg``, but for an earlier version's kernels written 40
    days ago (``old``) and another's written today (``recent``): the kernels compiled and
    cached there. Other tests take a copy of that cache (it is not to be changed here)."""
    tmp = tmp_path_factory.mktemp("first")
    site = _unwritable_copy(tmp)
    src = write_rgb(tmp / "a.png", smooth_image(24, 32, 4))
    xdg = tmp / "xdg"
    old, recent = (xdg / "recolor" / "numba" / f"src-{n}" for n in ("0ld", "recent"))
    for folder in (old / "quant_x", recent / "quant_x"):
        folder.mkdir(parents=True)
        (folder / "k.nbi").write_bytes(b"x")
    for path in (old, old / "quant_x"):
        os.utime(path, (time.time() - 40 * 86400,) * 2)
    p = _quantize(site, src, tmp / "a.target", tmp / "home", xdg)
    return {"site": site, "src": src, "want": _expected_idx(src), "xdg": xdg, "old": old,
            "recent": recent, "p": p, "out": tmp / "a.target", "home": tmp / "home"}  # fmt: skip


def test_kernels_cache_under_xdg_cache_home_when_the_package_is_read_only(tmp_path, first_run):
    site, src, xdg, p = (first_run[k] for k in ("site", "src", "xdg", "p"))
    old, recent = first_run["old"], first_run["recent"]
    assert p.returncode == 0, p.stderr.decode()
    np.testing.assert_array_equal(_idx_of(first_run["out"]), first_run["want"])
    assert not old.exists() and (recent / "quant_x" / "k.nbi").exists()  # pruned on an upgrade
    cached = [f for f in _kernel_files(xdg / "recolor" / "numba") if recent not in f.parents]
    assert cached, "no compiled kernel was cached"
    assert not _kernel_files(site) and not first_run["home"].exists()
    # A second run loads them (the cache index is not rewritten) and gives the same output.
    stamps = {p: p.stat().st_mtime_ns for p in cached if p.suffix == ".nbi"}
    p = _quantize(site, src, tmp_path / "b.target", first_run["home"], xdg)
    assert p.returncode == 0, p.stderr.decode()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    np.testing.assert_array_equal(_idx_of(tmp_path / "b.target"), _idx_of(first_run["out"]))


def test_the_colour_table_kernel_caches_with_the_others(tmp_path):
    # lut3d's kernel (16-bit and float images with an ICC profile) is no colour-class kernel
    # and is imported by colorprofile alone: its cache must follow the same rule, not numba's
    # own default ($XDG_CACHE_HOME/numba).
    site = _unwritable_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    xdg = tmp_path / "xdg"
    env.update(PYTHONPATH=str(site), HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(xdg))
    code = (
        "import numpy as np; from recolor_tools import colorprofile as c; "
        "t = np.stack(np.meshgrid(*[np.linspace(0, 1, 3)] * 3, indexing='ij'), -1); "
        "x = np.random.default_rng(0).random((50, 3)); "
        "assert np.abs(c.apply_lut(x, t.astype(np.float32)) - x).max() < 1e-6"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, cwd=site,
                       check=False)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    cached = _kernel_files(tmp_path)
    assert cached and all(f.is_relative_to(xdg / "recolor" / "numba") for f in cached), cached
    assert any("tetrahedral" in f.name for f in cached)


def test_kernels_compile_without_a_cache_when_nothing_is_writable(tmp_path, first_run):
    site, src = first_run["site"], first_run["src"]  # (the read-only copy)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file: no directory can be made below it\n")
    p = _quantize(site, src, tmp_path / "a.target", blocker / "home", blocker / "xdg")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr.decode().count("\n") == 1  # the one line of class counts, no warning
    np.testing.assert_array_equal(_idx_of(tmp_path / "a.target"), first_run["want"])
    assert not _kernel_files(tmp_path) and not _kernel_files(site)


def test_without_a_cache_folder_no_kernel_is_cached_beside_the_sources(tmp_path):
    """With no writable cache folder, numba fell back on __pycache__ beside the sources (a
    checkout, a user's own install), without the src-<hash> level, and later runs loaded
    kernels compiled from other sources there."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "recolor_tools", site / "recolor_tools",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    src = write_rgb(tmp_path / "a.png", smooth_image(24, 32, 5))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file: no directory can be made below it\n")
    p = _quantize(site, src, tmp_path / "a.target", blocker / "home", blocker / "xdg")
    # (--hard compiles the nearest-class kernel: numba cached it here, in __pycache__, before)
    assert p.returncode == 0, p.stderr.decode()
    assert _idx_of(tmp_path / "a.target").shape == (24, 32)
    assert not _kernel_files(site)


def test_cache_dir_follows_xdg_cache_home_then_home(tmp_path, monkeypatch):
    assert quant.jit.cache_dir({"XDG_CACHE_HOME": str(tmp_path / "x")}) == (
        tmp_path / "x" / "recolor" / "numba"
    )
    assert quant.jit.cache_dir({"HOME": str(tmp_path / "h")}) == (
        tmp_path / "h" / ".cache" / "recolor" / "numba"
    )
    (tmp_path / "f").write_text("")
    assert quant.jit.cache_dir({"XDG_CACHE_HOME": str(tmp_path / "f" / "x")}) is None
    # an empty HOME made it /.cache at the root, a relative one a folder in the cwd: the user
    # database's home instead
    import pwd

    own = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "recolor" / "numba"
    monkeypatch.chdir(tmp_path)
    for home in ("", "relhome"):
        got = quant.jit.cache_dir({"HOME": home, "XDG_CACHE_HOME": "rel"})
        assert got in (own, None) and not (tmp_path / "relhome").exists()


def test_a_damaged_or_full_cache_is_compiled_anew(tmp_path, first_run):
    """Cache files left empty by a crash made every later run exit 130 with a blank line,
    garbage ones "internal error: UnpicklingError", and a full cache disk "a.png: no space left
    on device" (the input blamed, no output): the kernel is compiled anew, the output the same."""
    site, src, want = first_run["site"], first_run["src"], first_run["want"]
    xdg = tmp_path / "xdg"  # a copy of the first run's cache (its kernels compiled, saved)
    assert first_run["p"].returncode == 0, first_run["p"].stderr.decode()
    shutil.copytree(first_run["xdg"], xdg, ignore=shutil.ignore_patterns("src-recent"))
    assert _kernel_files(xdg)
    for damage in (lambda f: f.write_bytes(b""), lambda f: f.write_bytes(os.urandom(3000))):
        for f in _kernel_files(xdg):
            damage(f)
        for _ in range(2):  # and the run after it, from what the first wrote back
            p = _quantize(site, src, tmp_path / "a.t", tmp_path, xdg)
            assert p.returncode == 0 and p.stderr.decode().count("\n") == 1, p.stderr.decode()
            np.testing.assert_array_equal(_idx_of(tmp_path / "a.t"), want)
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", full],
                      capture_output=True).returncode:  # fmt: skip
        return  # (not root: the damaged cases above still ran)
    try:
        p = _quantize(site, src, tmp_path / "f.t", tmp_path, full)
        assert p.returncode == 0 and p.stderr.decode().count("\n") == 1, p.stderr.decode()
        np.testing.assert_array_equal(_idx_of(tmp_path / "f.t"), want)
    finally:
        subprocess.run(["umount", full], check=False)


def test_the_cache_follows_the_kernels_sources(tmp_path):
    """numba checks a cached kernel against its own file only: a change to the constants it
    takes from search.py left the old kernel loaded, and other classes came out. The cache's
    folder is named by a hash of all the kernels' sources."""
    import numba

    copy = tmp_path / "recolor_tools"
    shutil.copytree(ROOT / "recolor_tools", copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = quant.jit.source_stamp(copy / "quant")
    assert before == quant.jit.source_stamp()  # the same sources, the same folder
    search = copy / "quant" / "search.py"
    search.write_text(search.read_text() + "\n# another version\n")
    assert quant.jit.source_stamp(copy / "quant") != before
    lut = copy / "quant" / "lut3d.py"
    search.write_text((ROOT / "recolor_tools" / "quant" / "search.py").read_text())
    lut.write_text(lut.read_text() + "#\n")
    assert quant.jit.source_stamp(copy / "quant") != before  # lut3d.py counts too
    assert Path(numba.config.CACHE_DIR).name == f"src-{before}"
    assert quant.jit.cache_dir({"XDG_CACHE_HOME": "relative", "HOME": str(tmp_path / "h")}) == (
        tmp_path / "h" / ".cache" / "recolor" / "numba"  # a relative XDG value is ignored
    )


def test_a_numba_cache_dir_that_cannot_be_written_caches_nothing_beside_the_sources(
    tmp_path, first_run
):
    """NUMBA_CACHE_DIR was taken as given: where it could not be written, numba went on to
    ``__pycache__`` beside the sources (an install's own folder, no ``src-<hash>`` level, left
    behind by ``pip uninstall``). Now the kernels are compiled anew, as with no cache at all."""
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "recolor_tools", site / "recolor_tools", ignore=shutil.ignore_patterns("__pycache__")
    )  # fmt: skip (writable)
    src = first_run["src"]
    (tmp_path / "afile").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(site), "NO_COLOR": "1", "HOME": str(tmp_path / "h"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "NUMBA_CACHE_DIR": f"{tmp_path}/afile/nb"}  # fmt: skip
    p = subprocess.run(
        [sys.executable, "-m", "recolor_tools", "quantize", "--hard", "-o", tmp_path / "a.t", src],
        capture_output=True, stdin=subprocess.DEVNULL, env=env, cwd=site, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    np.testing.assert_array_equal(_idx_of(tmp_path / "a.t"), first_run["want"])
    assert not _kernel_files(site) and not _kernel_files(tmp_path / "xdg")


def test_a_signal_while_the_kernels_compile_ends_the_run(tmp_path):
    """SIGTERM or Ctrl-C while numba compiled (a first run) was lost: it came inside numba's
    ctypes callback, which printed the handler's SystemExit as ignored, and the run went on
    to write its output and exit 0. Sent there on purpose (llvmlite's object-cache notice),
    while --hard's kernel compiles (the quickest to compile: the others' cache the same way)."""
    src = write_rgb(tmp_path / "a.png", smooth_image(16, 16, 1))
    code = (
        "import os, signal, sys\n"
        "from llvmlite.binding import executionengine as ee\n"
        "real = ee.ExecutionEngine.set_object_cache\n"
        "def set_object_cache(self, notify=None, getbuffer=None):\n"
        "    def told(module, buf):\n"
        "        os.kill(os.getpid(), getattr(signal, sys.argv[1]))\n"
        "        return notify(module, buf)\n"
        "    return real(self, told if notify else None, getbuffer)\n"
        "ee.ExecutionEngine.set_object_cache = set_object_cache\n"
        "from recolor_tools.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    for sig, rc in (("SIGTERM", 143), ("SIGINT", 130)):
        out = tmp_path / f"{sig}.lab"
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / sig), "PYTHONPATH": str(ROOT)}
        env.pop("NUMBA_CACHE_DIR", None)
        # (a background job starts with SIGINT ignored, which Python then leaves so: default)
        args = [sys.executable, "-c", code, sig, "quantize", "--hard", str(src), "-o", str(out),
                "-q"]  # fmt: skip
        default = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        p = subprocess.run(args, capture_output=True, env=env, timeout=300, preexec_fn=default)
        assert (p.returncode, p.stderr) == (rc, b""), p.stderr.decode()
        assert not out.exists()


def test_a_cache_folder_numba_cannot_use_caches_nothing_elsewhere(tmp_path):
    """recolor's cache folder writable, but this version's ``src-<hash>`` in it not a folder
    numba can use (here a file; another user's, a read-only mount): numba went on to
    ``__pycache__`` beside the sources, with no ``src-<hash>`` level, where a later version
    that changed only ``search.py`` loaded a stale kernel and gave other classes."""
    from recolor_tools.quant.jit import source_stamp

    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "recolor_tools", site / "recolor_tools", ignore=shutil.ignore_patterns("__pycache__")
    )  # fmt: skip (writable)
    xdg = tmp_path / "xdg"
    (xdg / "recolor" / "numba").mkdir(parents=True)
    stamp = source_stamp(site / "recolor_tools" / "quant")
    (xdg / "recolor" / "numba" / f"src-{stamp}").write_text("not a folder\n")
    src = write_rgb(tmp_path / "a.png", smooth_image(24, 32, 5))
    p = _quantize(site, src, tmp_path / "a.target", tmp_path / "home", xdg)  # (--hard: a kernel)
    assert p.returncode == 0, p.stderr.decode()
    assert _idx_of(tmp_path / "a.target").shape == (24, 32)
    assert not _kernel_files(site) and not _kernel_files(tmp_path / "home")
