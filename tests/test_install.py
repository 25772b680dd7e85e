"""What `pip install` puts on a machine: every module, the shipped weights, a command that runs."""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT, read_rgb_u8, smooth_image, write_rgb


def test_an_installed_copy_holds_every_module_and_runs_alone(tmp_path):
    # A wheel is what pip installs from PyPI or from `pip install .`; the editable install
    # that `make` and CI use maps the source folder and hid a wheel without the subpackages.
    tree = tmp_path / "tree"  # setuptools writes build/ and egg-info beside the sources
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("recolor_tools", "weights"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    p = subprocess.run([*build, "-w", wheels, tree], capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    (wheel,) = wheels.glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "recolor_tools").rglob("*.py")}
    installed = {p.relative_to(site).as_posix() for p in (site / "recolor_tools").rglob("*.py")}
    assert source <= installed, sorted(source - installed)
    for head in ("cls", "reg"):
        shipped = (ROOT / "weights" / f"{head}.pt").read_bytes()
        assert (site / "recolor_tools" / "weights" / f"{head}.pt").read_bytes() == shipped

    # The console script names a function the installed copy has.
    (info,) = site.glob("*.dist-info")
    scripts = configparser.ConfigParser()
    scripts.read(info / "entry_points.txt")
    module, _, func = scripts["console_scripts"]["recolor"].partition(":")
    env = {**os.environ, "PYTHONPATH": str(site), "NO_COLOR": "1"}
    code = (
        f"import recolor_tools, {module} as m; assert callable(m.{func}); "
        "print(recolor_tools.__file__)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().startswith(str(site)), p.stdout  # not the checkout

    # The model card's scripts travel with the weights; importing one (pydoc, autodoc) put the
    # package's own folder first on sys.path, where its train.py hid any other `train`.
    code = (
        "import sys; b = list(sys.path); import recolor_tools.weights.subset, "
        "recolor_tools.weights.evaluate_hints; print(sys.path == b)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True)
    assert p.stdout.decode().split() == ["True"], p.stderr.decode()

    # A tool with numba kernels and one with the shipped model, from that copy alone.
    img = write_rgb(tmp_path / "a.png", smooth_image(40, 56, 2))
    for args in (
        ["quantize", img, "-o", tmp_path / "a.targets"],
        ["predict", img, "-o", tmp_path / "out/"],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "recolor_tools", *map(str, args)],
            cwd=tmp_path, env=env, capture_output=True, timeout=600,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr.decode()
    assert read_rgb_u8(tmp_path / "out" / "a.png").shape == (40, 56, 3)


def test_the_sdist_holds_the_documents_the_readme_links_to(tmp_path):
    """FORMAT.md and RELIABILITY.md, which the README points to, were not in the sdist."""
    import tarfile

    tree = tmp_path / "tree"  # (setuptools writes egg-info beside the sources)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pt")
    for folder in ("recolor_tools", "weights"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=junk)
    for f in ROOT.glob("*"):
        if f.is_file():
            shutil.copy(f, tree / f.name)
    code = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    p = subprocess.run([sys.executable, "-c", code, tmp_path], cwd=tree, capture_output=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as t:
        held = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    linked = set(re.findall(r"\]\(([A-Z]+\.md)\)", (ROOT / "README.md").read_text()))
    assert {"FORMAT.md", "RELIABILITY.md"} <= linked <= held, linked - held


def test_help_names_what_the_arguments_take():
    # Click 8.5 with the pinned typer printed the arguments' names without their help: the
    # only place where --help says that '-' reads stdin.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    wanted = {
        "to-lab": "'-' or nothing reads stdin",
        "compare": "Ground truth image, or a directory of them",
        "train": "Training images: files, directories, globs, .txt lists",
    }
    for tool, text in wanted.items():
        cmd = [sys.executable, "-m", "recolor_tools", tool, "--help"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        assert text in " ".join(p.stdout.split()), (tool, p.stdout)


def test_bin_recolor_without_the_dependencies_is_one_line():
    """A Python without them printed a traceback ("ModuleNotFoundError: No module named ...")."""
    p = subprocess.run([sys.executable, "-S", str(ROOT / "bin" / "recolor"), "--version"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("recolor: ") and "is not installed for" in p.stderr


def test_a_tool_that_needs_torch_without_it_says_so(tmp_path):
    """An install without torch (`pip install --no-deps`) made predict report an internal
    error ("ModuleNotFoundError: No module named 'torch'"), as if recolor had a bug."""
    from conftest import run

    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ModuleNotFoundError("no torch here", name="torch")\n')
    img = write_rgb(tmp_path / "a.png", smooth_image(24, 24, 1))
    p = run(["predict", img, "-o", tmp_path / "out/"], env={"PYTHONPATH": f"{fake.parent}:{ROOT}"})
    assert p.returncode == 1
    assert p.stderr.decode() == (
        f"recolor predict: torch is not installed for {sys.executable} (see README, Quick start)\n"
    )


def test_the_readmes_python_example_runs(tmp_path):
    """The README's "Python API" example, as written, on a generated poster.jpg: it loads the
    shipped weights, recolours with and without hints, suggests colours and writes out.png."""
    text = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    write_rgb(tmp_path / "poster.jpg", smooth_image(360, 240, 4))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    found = ast.literal_eval(p.stdout)  # the printed list of (hex, probability)
    assert 1 <= len(found) <= 5 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c, _ in found)
    assert read_rgb_u8(tmp_path / "out.png").shape == (360, 240, 3)
