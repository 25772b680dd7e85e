"""The named steps of training on their own: options, the class-set decision, the loop state,
the checkpoint format (version 2 and the version 1 it still reads) and checkpoint safety (a
last.pt cut short falls back to last.prev.pt)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import smooth_image, write_rgb

from recolor_tools import checkpoints, defaults, models, quant
from recolor_tools.errors import RecolorError, UsageError
from recolor_tools.rebalance import compute_stats
from recolor_tools.train import TrainConfig, TrainState, resolve_classes, train

SIZE = 32
CLASSES = quant.gamut_classes(10)


def stats_file(path, classes, grid, lam=0.5):
    rng = np.random.default_rng(0)
    ab = rng.uniform(-40, 40, size=(500, 2)).astype(np.float32)
    stats = compute_stats([ab], classes, grid, lam=lam)
    stats.save(path)
    return path, stats


def fake_checkpoint(classes, weight=2.0):
    q = len(classes)
    return {
        "classes": torch.tensor(classes),
        "grid": 10.0,
        "rebalance": {"weights": torch.full((q,), weight), "lam": 0.5, "sigma": 5.0},
        "encoding": {"k": 3, "sigma": 4.0},
    }


# -- options ----------------------------------------------------------------------------------


def test_train_config_checks_each_option_once():
    TrainConfig(data=["x"])  # the defaults are valid
    for kw, match in [
        ({"epochs": 1, "steps": 1}, "--epochs and --steps exclude each other"),
        ({"init": "w.pt", "resume": True}, "--init and --resume exclude each other"),
        ({"head": "gan"}, "--head must be one of reg, cls"),
        ({"schedule": "step"}, "--schedule"),
        ({"precision": "fp8"}, "--precision"),
        ({"size": 36}, "multiple of 8"),
        ({"batch_size": 0}, "--batch-size must be positive"),
        ({"eval_every": 0}, "--eval-every must be positive"),
        ({"workers": -1}, "--workers"),
        ({"lr": 0.0}, "--lr must be positive"),
        ({"hint_lr": 0.0}, "--hint-lr must be positive"),
        ({"affinity": -1}, "--affinity must be 0 or more"),
        ({"affinity": 16, "head": "reg"}, "steer the cls head only"),
        ({"grid": 10, "classes": "c.npz"}, "--grid and --classes exclude each other"),
        ({"grid": 10, "stats": "s.npz"}, "--grid and --stats exclude each other"),
        ({"grid": 10, "init": "w.pt"}, "--grid and --init exclude each other"),
        ({"grid": 10, "resume": True}, "--grid and --resume exclude each other"),
        ({"head": "reg", "stats": "s.npz"}, "--stats sets the colour classes of --head cls"),
        ({"head": "reg", "classes": "c.npz"}, "--classes sets the colour classes"),
        ({"head": "reg", "grid": 10}, "--grid sets the colour classes"),
    ]:  # all bad option values: ValueError, which the CLI makes a usage error (exit 2)
        with pytest.raises(ValueError, match=match):
            TrainConfig(data=["x"], **kw)


def test_cli_reports_conflicting_options_as_usage(tmp_path):
    from conftest import run

    p = run(["train", tmp_path, "--steps", "1", "--epochs", "1", "-q"])
    assert p.returncode == 2
    assert (
        p.stderr.decode()
        == "recolor train: --epochs and --steps exclude each other (see recolor train -h)\n"
    )
    # a stray RANK without a launch of several processes is one process: it says its errors
    p = run(["train", tmp_path, "--grid", "10", "--stats", tmp_path / "s.npz", "-q"],
            env={"RANK": "1"})  # fmt: skip
    assert (p.returncode, p.stderr.decode()) == (2, (
        "recolor train: --grid and --stats exclude each other (--stats brings the class set) "
        "(see recolor train -h)\n"
    ))  # fmt: skip
    p = run(["train", tmp_path, "--head", "reg", "--stats", tmp_path / "s.npz", "-q"])
    assert (p.returncode, p.stderr.decode()) == (2, (  # was ignored without a word
        "recolor train: --stats sets the colour classes of --head cls; the reg head has none "
        "(see recolor train -h)\n"
    ))  # fmt: skip
    for out in ("-", "model.pt"):  # a folder named "-" or "model.pt" was made, unsaid
        p = run(["train", tmp_path, "--steps", "1", "-q", "-o", out], cwd=tmp_path)
        assert (p.returncode, p.stderr.decode()) == (2, (
            f"recolor train: -o {out}: a run writes a folder (last.pt, metrics.jsonl, HEAD.pt), "
            "not stdout or one file: name a folder (see recolor train -h)\n"
        ))  # fmt: skip
        assert not (tmp_path / out).exists()
    (tmp_path / "old.pt").mkdir()  # a run folder of that name stays usable (resumed, say)
    p = run(["train", tmp_path, "--steps", "1", "-q", "-o", "old.pt"], cwd=tmp_path)
    assert b"a run writes a folder" not in p.stderr


@pytest.mark.parametrize("tool", ["train", "predict"])
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:", "cuda:-1"])
def test_a_device_that_is_no_device_name_is_a_usage_error(tmp_path, tool, device):
    from conftest import run

    p = run([tool, tmp_path, "--device", device, "-q"])
    assert p.returncode == 2
    assert p.stderr.decode() == (
        f"recolor {tool}: Invalid value for '--device': {device!r} is not auto, cpu, cuda or "
        f"cuda:N (see recolor {tool} -h)\n"
    )


# -- where the classes come from --------------------------------------------------------------


def test_resolve_classes_reg_has_none():
    cs = resolve_classes(TrainConfig(data=["x"], head="reg"))
    assert cs.classes is None and cs.rebalance is None and cs.weights is None


def test_resolve_classes_resume_keeps_the_checkpoints(tmp_path):
    other, _ = stats_file(tmp_path / "s.npz", quant.gamut_classes(20), 20.0)
    for kw in ({"stats": other}, {"classes": tmp_path / "missing.npz"}):  # were ignored
        with pytest.raises(ValueError, match="and --resume exclude each other"):
            TrainConfig(data=["x"], resume=True, **kw)
    cfg = TrainConfig(data=["x"], resume=True)
    cs = resolve_classes(cfg, resumed=fake_checkpoint(CLASSES))
    np.testing.assert_array_equal(cs.classes, CLASSES)
    assert cs.grid == 10.0 and (cs.k, cs.sigma) == (3, 4.0)
    np.testing.assert_array_equal(cs.weights, np.full(len(CLASSES), 2.0, np.float32))


def test_resolve_classes_init_keeps_its_classes_and_takes_new_stats(tmp_path):
    init = fake_checkpoint(CLASSES)
    cs = resolve_classes(TrainConfig(data=["x"]), init=init)
    assert cs.weights[0] == 2.0 and cs.k == 3
    with pytest.raises(UsageError, match="--init fixes the class set"):
        resolve_classes(TrainConfig(data=["x"], classes=tmp_path / "c.npz"), init=init)
    same, stats = stats_file(tmp_path / "same.npz", CLASSES, 10.0, lam=0.1)
    cs = resolve_classes(TrainConfig(data=["x"], stats=same), init=init)
    np.testing.assert_array_equal(cs.weights, stats.weights)
    assert cs.rebalance["lam"] == pytest.approx(0.1) and (cs.k, cs.sigma) == (3, 4.0)
    other, _ = stats_file(tmp_path / "other.npz", quant.gamut_classes(20), 20.0)
    with pytest.raises(RecolorError, match="differs from the --init") as e:
        resolve_classes(TrainConfig(data=["x"], stats=other), init=init)
    assert e.value.path == str(other)


def test_resolve_classes_fresh_reads_stats_or_computes_them(tmp_path):
    path, stats = stats_file(tmp_path / "s.npz", CLASSES, 10.0)
    cs = resolve_classes(TrainConfig(data=["x"], stats=path), compute=None)
    np.testing.assert_array_equal(cs.classes, CLASSES)
    np.testing.assert_array_equal(cs.weights, stats.weights)
    assert (cs.k, cs.sigma, cs.grid) == (defaults.K, defaults.SIGMA, 10.0)
    classes_file = tmp_path / "c.npz"
    quant.save_classes(classes_file, quant.gamut_classes(20), 20.0)
    with pytest.raises(RecolorError, match="--classes and --stats hold different class sets"):
        resolve_classes(TrainConfig(data=["x"], stats=path, classes=classes_file))

    asked = []

    def compute(classes, grid):
        asked.append(grid)
        return stats_file(tmp_path / f"{len(asked)}.npz", classes, grid)[1]

    cs = resolve_classes(TrainConfig(data=["x"], grid=10), compute=compute)
    np.testing.assert_array_equal(cs.classes, CLASSES)
    cs = resolve_classes(TrainConfig(data=["x"], classes=classes_file), compute=compute)
    assert asked == [10.0, 20.0] and len(cs.classes) == len(quant.gamut_classes(20))


# -- loop state -------------------------------------------------------------------------------


def test_train_state_round_trips_through_its_state_dict():
    a = TrainState(step=7, epoch=2, pos=12, elapsed=3.0, loss_n=4)
    a.loss_sum += 0.1 + 1e-12  # needs a float64 to survive
    b = TrainState()
    b.load_state_dict(a.state_dict())
    assert (b.step, b.epoch, b.pos, b.loss_n) == (7, 2, 12, 4)
    assert b.loss_sum.item() == a.loss_sum.item() and b.elapsed >= 3.0
    assert all(isinstance(v, int | float) for v in a.state_dict().values())


# -- checkpoint format ------------------------------------------------------------------------


def small(head):
    q = len(CLASSES) if head == "cls" else 0
    return models.Colorizer(models.ModelConfig(head=head, num_classes=q, width=4))


def test_checkpoint_records_the_encoding_and_not_what_derives(tmp_path):
    path = tmp_path / "cls.pt"
    reb = {"weights": torch.ones(len(CLASSES)), "lam": 0.5, "sigma": 5.0}
    ckpt = checkpoints.make_checkpoint(small("cls"), classes=CLASSES, grid=10, rebalance=reb, k=3)
    checkpoints.save_checkpoint(path, ckpt)
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == checkpoints.CHECKPOINT_VERSION == 2
    assert "head" not in raw and "num_classes" not in raw["config"]
    assert raw["encoding"] == {"k": 3, "sigma": defaults.SIGMA}
    model, got = checkpoints.load_checkpoint(path, "cls")
    assert got["head"] == "cls" and got["config"]["num_classes"] == len(CLASSES)
    assert model.config.num_classes == len(CLASSES)
    # a checkpoint made again from one read (a resumed run's, an --init run's): the prior
    # that reading derived was stored
    again = checkpoints.make_checkpoint(
        small("cls"), classes=CLASSES, grid=10, rebalance=got["rebalance"], k=3
    )
    assert "prior" in got["rebalance"] and "prior" not in again["rebalance"]
    kept = {**got["rebalance"], "lam": None}  # (a prior no lam derives: kept)
    made = checkpoints.make_checkpoint(small("cls"), classes=CLASSES, rebalance=kept)
    assert torch.equal(made["rebalance"]["prior"], kept["prior"])  # (it raised TypeError)
    checkpoints.save_checkpoint(path, checkpoints.make_checkpoint(small("reg")))
    assert checkpoints.read_checkpoint(path, head="reg")["encoding"] is None


def test_an_out_that_takes_no_file_is_refused_before_any_work(images, tmp_path, monkeypatch):
    """A read-only mount was found when metrics.jsonl was first written, after the model was
    built and a cls run's class statistics counted (minutes over a large set); now as OUT is
    taken (here the kernel's EROFS by hand: root writes anywhere)."""
    import errno

    out = tmp_path / "ro"
    real_open = os.open

    def refuse(path, flags, *args, **kw):
        if flags & os.O_CREAT and os.path.dirname(os.path.abspath(path)) == str(out):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(RecolorError) as e:
        train(config(images, out, steps=50, eval_every=50))
    assert (e.value.path, e.value.reason) == (
        str(out),
        "cannot write there (read-only file system)",
    )
    assert not out.exists()  # (made for the run, removed again)


def test_version_1_checkpoints_still_load(tmp_path):
    """Version 1 stored the head and Q twice and no encoding (it trained with the defaults)."""
    v1 = checkpoints.make_checkpoint(small("cls"), classes=CLASSES, grid=10)
    v1.update(version=1, head="cls")
    v1["config"]["num_classes"] = len(CLASSES)
    del v1["encoding"]
    path = tmp_path / "v1.pt"
    torch.save(v1, path)
    _, got = checkpoints.load_checkpoint(path, "cls")
    assert got["version"] == 1 and got["encoding"] == {"k": defaults.K, "sigma": defaults.SIGMA}
    v1["config"]["num_classes"] = 5  # the two copies disagree
    torch.save(v1, path)
    with pytest.raises(RecolorError, match="broken checkpoint: cls weights without matching"):
        checkpoints.read_checkpoint(path)
    v1["config"]["num_classes"] = len(CLASSES)
    v1["head"] = "reg"
    torch.save(v1, path)
    with pytest.raises(RecolorError, match="broken checkpoint"):
        checkpoints.read_checkpoint(path)


# -- checkpoint safety ------------------------------------------------------------------------


def test_save_keeps_the_previous_and_a_failed_write_changes_nothing(tmp_path):
    path = tmp_path / "last.pt"
    first = checkpoints.make_checkpoint(small("reg"), step=1)
    checkpoints.save_checkpoint(path, first, keep_previous=True)
    assert not checkpoints.previous_path(path).exists()
    checkpoints.save_checkpoint(
        path, checkpoints.make_checkpoint(small("reg"), step=2), keep_previous=True
    )
    assert checkpoints.read_checkpoint(path)["step"] == 2
    assert checkpoints.read_checkpoint(tmp_path / "last.prev.pt")["step"] == 1
    with pytest.raises(Exception):  # noqa: B017, PT011 - torch.save fails part-way through
        checkpoints.save_checkpoint(path, {**first, "bad": lambda: 0}, keep_previous=True)
    assert checkpoints.read_checkpoint(path)["step"] == 2
    assert checkpoints.read_checkpoint(tmp_path / "last.prev.pt")["step"] == 1
    assert {p.name for p in tmp_path.iterdir()} == {"last.pt", "last.prev.pt"}  # no temp file


def test_a_linked_last_pt_stays_a_link_with_the_previous_beside_its_target(tmp_path):
    """The link itself was renamed to last.prev.pt and the new checkpoint written into its
    target: no last.pt after the save, and the previous checkpoint gone."""
    (tmp_path / "big").mkdir()
    (tmp_path / "out").mkdir()
    real, link = tmp_path / "big" / "run.pt", tmp_path / "out" / "last.pt"
    checkpoints.save_checkpoint(real, checkpoints.make_checkpoint(small("reg"), step=1))
    link.symlink_to(real)
    for step in (2, 3):
        ckpt = checkpoints.make_checkpoint(small("reg"), step=step)
        checkpoints.save_checkpoint(link, ckpt, keep_previous=True)
        assert link.is_symlink() and checkpoints.read_checkpoint(link)["step"] == step
        prev = checkpoints.previous_path(link)
        assert prev == tmp_path / "big" / "run.prev.pt"  # (on the target's disk)
        assert checkpoints.read_checkpoint(prev)["step"] == step - 1
    assert sorted(os.listdir(tmp_path / "out")) == ["last.pt"]
    os.replace(real, checkpoints.previous_path(link))  # killed between save's two renames
    with pytest.raises(ValueError, match="holds a run"):  # (a dangling link: it started afresh)
        TrainConfig(data=["x"], out=tmp_path / "out", head="reg").check_out()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    for i in range(8):
        write_rgb(d / f"{i}.png", smooth_image(48, 40, i))
    return d


def config(images, out, **kw):
    base = dict(
        data=[str(images)], out=out, head="reg", size=SIZE, batch_size=4, workers=0, width=4,
        quiet=True, lr=2e-3, threads=1, device="cpu", eval_every=1, ckpt_every=1,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_resume_from_a_cut_short_checkpoint_uses_the_one_before(images, tmp_path, capfd):
    whole = train(config(images, tmp_path / "a", steps=4)).parent
    out = tmp_path / "b"
    train(config(images, out, steps=3))
    last = out / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # as a copy or a crash cut it
    capfd.readouterr()
    train(config(images, out, steps=4, resume=True))
    err = capfd.readouterr().err
    assert f"recolor train: {last}: not a recolor checkpoint" in err
    assert f"resuming from {out / 'last.prev.pt'}" in err
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:  # from step 2, as exact as any resume
        assert torch.equal(a["model"][k], b["model"][k]), k

    last.unlink()  # killed between the two renames: only last.prev.pt
    train(config(images, out, steps=5, resume=True))
    assert torch.load(last, weights_only=True)["step"] == 5
    # the broken last.pt is replaced, not kept as last.prev.pt in place of the good one that
    # the run resumed from (one more damage, and nothing was left to resume)
    last.write_bytes(last.read_bytes()[:100])
    train(config(images, out, steps=5, resume=True))  # from step 4: one step, one save
    prev = torch.load(out / "last.prev.pt", weights_only=True)
    assert (prev["step"], torch.load(last, weights_only=True)["step"]) == (4, 5)


def _checkpointing_run(images, out, steps: int, workers: int):
    """``recolor train`` started in a process group of its own, checkpointing every step, once
    it has written two checkpoints: (its arguments, the process; stderr a pipe)."""
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT, sigint_default

    args = [
        "train", images, "--head", "reg", "--steps", steps, "--ckpt-every", "1", "--eval-every",
        "1000", "--size", SIZE, "-b", "4", "--width", "4", "-j", workers, "--threads", "1",
        "--device", "cpu", "--out", out, "-q",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "recolor_tools", *map(str, args)], env=env,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=sigint_default)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "last.prev.pt").exists() and p.poll() is None:
        assert time.monotonic() < deadline, "no second checkpoint"
        time.sleep(0.01)
    return args, p


def test_resume_after_kill_9_mid_run(images, tmp_path):
    """A run killed at any moment (here: while it writes a checkpoint every step) resumes."""
    import signal

    from conftest import run

    out = tmp_path / "run"
    args, p = _checkpointing_run(images, out, steps=12, workers=0)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    done = run([*args, "--resume"], check_rc=0)
    assert done.stdout.decode().strip() == str(out / "reg.pt")
    assert checkpoints.read_checkpoint(out / "last.pt")["step"] == 12


@pytest.mark.parametrize("signum", [15, 1, 2])  # SIGTERM, SIGHUP, SIGINT (Ctrl-C)
def test_a_signal_to_the_process_group_ends_a_run_with_workers_cleanly(images, tmp_path, signum):
    """docker stop, systemd and Slurm signal the whole group: the DataLoader workers, which
    inherited the main process's handler, exited 143 themselves, and the run ended "internal
    error: RuntimeError: DataLoader worker ... exited unexpectedly" (exit 1) or with a
    traceback after 143. They leave the signal to the main process, which ends them as at the
    end of a run, and says nothing more. (A worker ended by an exception raised in its handler
    could hold the lock of the DataLoader's stop event: the run hung, about one in forty.)"""
    import contextlib
    import os

    out = tmp_path / "run"
    _, p = _checkpointing_run(images, out, steps=400, workers=2)
    try:
        os.killpg(p.pid, signum)
        _, err = p.communicate(timeout=60)
    finally:  # (a run that hung: its workers held the stop event's lock)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, 9)
    assert (p.returncode, err.decode()) == (128 + signum, "")
    assert checkpoints.read_checkpoint(out / "last.pt")["step"] >= 1


def _wrapped_recolor(prelude: str, args, **kw):
    """A ``recolor`` process (its own session) run after ``prelude``, Python code that patches
    the tools as a fault would."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, sigint_default

    code = prelude + (
        "import runpy, sys\n"
        "sys.argv = ['recolor', *sys.argv[1:]]\n"
        "runpy.run_module('recolor_tools', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # set by torch in this process once its optimisers
    # ran: the run's own temporary folder is then not asked for
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=sigint_default, **kw)  # fmt: skip


def _stderr_when_ended(p, timeout: float) -> bytes:
    """What ``p`` (the leader of its own process group) wrote on stderr by its end; the group
    is killed after, and also where it did not end within ``timeout`` (a hang fails the test)."""
    import contextlib
    import os

    try:
        return p.communicate(timeout=timeout)[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, 9)


_SIGNAL_AT = {
    # the group's SIGTERM inside Python's fork hooks in the main process, as the workers fork
    "fork": """
import os, signal
def hit():
    if not hit.done:
        hit.done = True
        os.kill(os.getpid(), signal.SIGTERM)
hit.done = False
os.register_at_fork(after_in_parent=hit)
""",
    # ... and in a worker after torch's own handler but before worker_init ignores it, while
    # the main process still forks the others, and once it is waiting for their batches
    **{
        moment: f"""
import os, signal, time
import recolor_tools.data as data
real = data.worker_init
def worker_init(worker_id):
    if worker_id == 0:  # (once: a second SIGTERM as the run unwinds is another matter)
        time.sleep({pause})
        os.killpg(0, signal.SIGTERM)
    real(worker_id)
data.worker_init = worker_init
"""
        for moment, pause in (("worker start", 0), ("worker start, run going", 1))
    },
}


@pytest.mark.parametrize("moment", list(_SIGNAL_AT))
def test_a_signal_to_the_group_as_workers_start_ends_the_run(images, tmp_path, moment):
    """A signal as the DataLoader forks its workers (the validation loader forked anew at
    every evaluation): Python reported the SystemExit raised inside its fork hook as ignored
    and the run went on training; a worker killed by torch's own SIGTERM handler, before it
    could ignore the signal, made the main process's unwinding raise "DataLoader worker ... is
    killed by signal" after 143. Now: exit 143, nothing said, every time."""

    args = [
        "train", images, "--val", images, "--head", "reg", "--steps", "200", "--eval-every",
        "2", "--size", SIZE, "-b", "4", "--width", "4", "-j", "2", "--threads", "1",
        "--device", "cpu", "--out", tmp_path / "run", "-q",
    ]  # fmt: skip
    p = _wrapped_recolor(_SIGNAL_AT[moment], args)
    err = _stderr_when_ended(p, 120)  # (its own session: the worker's killpg reaches it only)
    assert (p.returncode, err.decode()) == (143, "")


def test_a_run_whose_worker_failed_exits(images, tmp_path):
    """An error inside a loader worker: the run said it, then hung for good at the interpreter's
    exit (the persistent workers, kept by the error's traceback, ignored the terminate() that
    multiprocessing's exit sends them, then waits for). Only the parent's SIGTERM ends one."""

    prelude = """
import torch.utils.data as tud
import recolor_tools.data as data
real = data.ColorDataset.__getitem__
def getitem(self, key):
    if tud.get_worker_info() is not None and getitem.n >= 5:
        raise RuntimeError("a fault in a worker")
    getitem.n += 1
    return real(self, key)
getitem.n = 0
data.ColorDataset.__getitem__ = getitem
"""
    args = [
        "train", images, "--val", images, "--head", "reg", "--steps", "50", "--size", SIZE,
        "-b", "2", "--width", "4", "-j", "2", "--threads", "1", "--device", "cpu", "--out",
        tmp_path / "run", "-q",
    ]  # fmt: skip
    p = _wrapped_recolor(prelude, args)
    err = _stderr_when_ended(p, 60)
    assert p.returncode == 1 and "a fault in a worker" in err.decode(), err.decode()


_LIMIT_FAULT = {
    # Under ulimit -u (a container's pids limit) the thread that hands a batch's file
    # descriptors to the parent could not start: multiprocessing's queue feeder printed a
    # traceback per batch and went on, and the run waited for those batches for good. The
    # worker says why and ends; the parent says a worker ended.
    "batch not handed over": ("1", """
import multiprocessing.resource_sharer as rs
import torch.utils.data as tud
real = rs._ResourceSharer._start
def start(self):
    if tud.get_worker_info() is not None:
        raise RuntimeError("can't start new thread")  # CPython's words under ulimit -u
    return real(self)
rs._ResourceSharer._start = start
""", [
        "recolor train: a loader worker could not hand a batch over (RuntimeError: can't start "
        "new thread)",
        "recolor train: a loader worker ended unexpectedly (-j 0 loads in this process)",
    ]),
    # Under ulimit -n 16 the second worker's pipe could not be made: "too many open files",
    # naming nothing, then torch's "Exception ignored in: ...__del__" traceback of the
    # half-made iterator.
    "worker not started": ("2", """
import errno
import multiprocessing.popen_fork as pf
real = pf.Popen._launch
def launch(self, process_obj):
    if launch.n:  # the first worker starts, the second cannot
        raise OSError(errno.EMFILE, "Too many open files")
    launch.n += 1
    return real(self, process_obj)
launch.n = 0
pf.Popen._launch = launch
""", [
        "recolor train: cannot start 2 loader workers: too many open files (the limits on open "
        "files or processes: ulimit -n, ulimit -u); -j 0 loads in this process",
    ]),
    # A worker the OOM killer ended (a container's memory limit): "internal error: RuntimeError:
    # DataLoader worker (pid N) is killed by signal: Killed."
    # (torch's SIGCHLD handler says it; where its poll finds the worker gone first, "exited
    # unexpectedly" below)
    "worker killed": ("2", """
import torch.utils.data.dataloader as dl
def killed(self):
    raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
dl._MultiProcessingDataLoaderIter._next_data = killed
""", [
        "recolor train: a loader worker was killed (Killed; where by the system for want of "
        "memory, fewer -j or a smaller -b need less, -j 0 loads in this process)",
    ]),
    # No writable temporary folder (torch compiles in one): "no such file", naming nothing.
    "no temporary folder": ("0", """
import tempfile
tempfile._candidate_tempdir_list = lambda: ["/nonexistent-recolor-tmp"]
""", [
        "recolor train: no usable temporary directory found in ['/nonexistent-recolor-tmp']",
    ]),
}  # fmt: skip


@pytest.mark.parametrize("fault", list(_LIMIT_FAULT))
def test_a_run_that_meets_a_system_limit_ends_saying_so(images, tmp_path, fault):
    workers, prelude, said = _LIMIT_FAULT[fault]
    args = ["train", images, "--head", "reg", "--steps", "5", "--size", SIZE, "-b", "2",
            "--width", "4", "-j", workers, "--threads", "1", "--device", "cpu", "--out",
            tmp_path / "run", "-q"]  # fmt: skip
    p = _wrapped_recolor(prelude, args)
    err = _stderr_when_ended(p, 120)
    assert (p.returncode, err.decode().splitlines()) == (1, said), err.decode()


SHM_FULL = """
import torch, torch.utils.data as tud
real = torch.UntypedStorage._new_shared
def new_shared(cls, size, *a, **kw):
    if tud.get_worker_info() is not None:  # torch's words where /dev/shm is full
        raise RuntimeError("unable to allocate shared memory(shm) for file </torch_1_2_0>: No "
                           "space left on device (28)")
    return real(size, *a, **kw)
torch.UntypedStorage._new_shared = classmethod(new_shared)
import threading, time, torch.utils.data._utils.worker as tw
loop = tw._worker_loop
def worker_loop(*args, **kw):  # as torch starts one there in a run's workers (thread_main)
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    return loop(*args, **kw)
tw._worker_loop = worker_loop
"""


def test_loader_workers_out_of_shared_memory_end_the_run_saying_so(images, tmp_path):
    """Docker's /dev/shm holds 64 MiB unless told: a worker's batch that did not fit was
    "internal error: RuntimeError: Caught RuntimeError in DataLoader worker process 0." and
    its traceback, and the run then hung at exit for good (multiprocessing waiting for
    workers whose SIGTERM a thread of torch's had taken to the Python handler that ignores
    it). Checked by hand with /dev/shm a 64 KiB tmpfs (``unshare -m``)."""
    import re

    args = ["train", images, "--head", "cls", "--steps", "5", "--size", SIZE, "-b", "4",
            "--width", "4", "-j", "2", "--device", "cpu", "--out", tmp_path / "run",
            "-q"]  # fmt: skip
    p = _wrapped_recolor(SHM_FULL, args)
    err = _stderr_when_ended(p, 120).decode()
    assert p.returncode == 1, err
    said = (r"recolor train: the loader workers ran out of shared memory \(/dev/shm holds "
            r"[\d,]+ [KM]iB; a container's --shm-size sets it; fewer -j or a smaller -b need "
            r"less, -j 0 none\)\n")  # fmt: skip
    assert re.fullmatch(said, err), err


SIGCHLD_PENDING = """
import os, signal
from recolor_tools import process
with process.exit_on_sigterm():
    signal.signal(signal.SIGCHLD, lambda *a: None)  # as torch's DataLoader sets one
    both = {signal.SIGTERM, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, both)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGCHLD)  # a worker that ended as the group's SIGTERM came
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both caught; SIGTERM handled first
        x = [str(i) for i in range(100)]
    finally:
        x = [str(i) for i in range(100)]  # the unwinding runs Python: SIGCHLD's turn
"""


def test_a_sigchld_caught_with_the_sigterm_is_no_traceback():
    """One run in about thirty of ``test_a_signal_to_the_group_as_workers_start_ends_the_run``
    ended 143 with "OSError: Signal 17 ignored due to race condition": the SIGTERM handler set
    SIGCHLD to SIG_DFL while a SIGCHLD was caught and not yet handled, which Python then
    reports. Here both are made pending at once."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", SIGCHLD_PENDING], env=env, capture_output=True,
                       timeout=60)  # fmt: skip
    assert (p.returncode, p.stderr.decode()) == (143, "")


def test_a_signal_while_a_checkpoint_waits_on_a_fifo_ends_the_process(tmp_path):
    """The signals held across a checkpoint's two renames were held from its open: a FIFO's
    with no reader (written in place) kept SIGTERM from ending the process."""
    import contextlib
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT

    fifo = tmp_path / "last.pt"
    os.mkfifo(fifo)
    code = (
        "from recolor_tools import checkpoints, process\n"
        "with process.exit_on_sigterm():\n"
        f"    checkpoints.save_checkpoint({str(fifo)!r}, {{'step': 1}}, keep_previous=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    # Signalled once it waits in the FIFO's open (the kernel's wait_for_partner), not after a
    # fixed sleep: on a loaded machine 3 s were not enough for torch's import, and SIGTERM came
    # before exit_on_sigterm (-15).
    wchan, seen, deadline = f"/proc/{p.pid}/wchan", set(), time.monotonic() + 120
    while p.poll() is None and "wait_for_partner" not in seen and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(wchan) as f:  # (if it just ended)
            seen.add(f.read())
        time.sleep(0.05)
    if p.poll() is None and seen <= {"0"}:  # (also what a running process shows)
        p.kill()
        pytest.skip("this kernel does not say where a process waits (/proc/PID/wchan)")
    assert "wait_for_partner" in seen, (seen, p.poll(), p.stderr.read() if p.poll() else "")
    p.terminate()
    try:
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert (p.returncode, err.decode()) == (143, "")


@pytest.mark.parametrize("hard", [False, True])
def test_workers_train_under_a_low_open_files_limit(images, tmp_path, hard):
    """torch passes each batch's tensors as file descriptors: under `ulimit -n 20` the workers'
    feeder threads printed hundreds of "Too many open files" tracebacks and the run hung for
    good. The soft limit is raised where the hard one allows; else tensors go by shared memory."""
    import os
    import resource
    import subprocess
    import sys

    from conftest import ROOT

    def low() -> None:
        h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (20, 20 if hard else h))

    args = ["train", images, "--head", "reg", "--steps", "6", "--size", SIZE, "-b", "8",
            "--width", "4", "-j", "2", "--threads", "1", "--device", "cpu", "-q",
            "--out", tmp_path / "run"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "recolor_tools", *map(str, args)], env=env,
                       capture_output=True, preexec_fn=low, timeout=120)  # fmt: skip
    assert (p.returncode, p.stderr) == (0, b"")
    assert (tmp_path / "run" / "reg.pt").exists()


def test_one_named_gpu_for_every_torchrun_rank_is_refused():
    """``--device cuda:1`` would put every rank on GPU 1 while DDP and NCCL give each its own."""
    from recolor_tools.distributed import Dist
    from recolor_tools.trainsetup import setup_process

    with pytest.raises(RecolorError, match="--device cuda:1 names one GPU; under torchrun"):
        setup_process(TrainConfig(data=["x"], device="cuda:1"), Dist(1, 1, 2, 1))


def _all_or_none_rank(rank: int, init: str, results) -> None:
    """One of two gloo processes: rank 1 meets a bug inside the block, rank 0 nothing."""
    import torch.distributed as dist

    from recolor_tools.distributed import Dist, all_or_none

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        with all_or_none(Dist(rank, rank, 2, 1)):
            if rank == 1:
                raise ZeroDivisionError("division by zero")
        results.put((rank, "left the block"))
    except Exception as e:
        results.put((rank, f"{type(e).__name__}: {e}"))
    finally:
        dist.destroy_process_group()


def test_all_or_none_stops_every_rank_when_one_meets_a_bug(tmp_path):
    """Only an expected error (RecolorError) was shared: a bug on one rank (or its memory) left
    the others to fail at their next collective, "Connection reset by peer", or to wait for
    NCCL's timeout. Now they stop too, naming the rank and what it met; its own error stands."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    init = f"file://{tmp_path / 'store'}"
    procs = [ctx.Process(target=_all_or_none_rank, args=(r, init, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == {
        0: "RecolorError: stopped: ZeroDivisionError: division by zero (rank 1)",
        1: "ZeroDivisionError: division by zero",
    }


NO_THREAD_IN_WORKER = """
import signal, threading
from recolor_tools.process import as_worker
def refused(self):
    raise RuntimeError("can't start new thread")
threading.Thread.start = refused
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as the workers are forked
as_worker()
held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
print(held, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
"""


def test_a_worker_without_its_signal_thread_still_ends_on_sigterm():
    """Workers fork with SIGTERM held, for the thread that checks who sent it; where that
    thread cannot start (a pids limit), a worker that kept SIGTERM held could not be ended by
    its parent, whose exit then waited for it for good."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", NO_THREAD_IN_WORKER], env=env,
                       capture_output=True, timeout=60)  # fmt: skip
    assert p.stdout.decode().split() == ["False", "True"], p.stderr.decode()


SLOW_WORKER_START = """
import time, torch.utils.data._utils.worker as tw
loop = tw._worker_loop
def worker_loop(*args, **kw):  # a worker slow to start: its parent is killed meanwhile
    time.sleep(4)
    return loop(*args, **kw)
tw._worker_loop = worker_loop
"""


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (Linux /proc)."""
    import os

    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def test_loader_workers_end_with_a_parent_killed_as_they_start(images, tmp_path):
    """A training run killed (kill -9, the OOM killer) while its loader workers started left
    them running for good: torch's watchdog takes the parent to be whatever getppid() gives
    when the worker first looks, by then init. The kernel now kills them with the parent
    (PR_SET_PDEATHSIG), and one whose parent has already gone ends at once."""
    import os
    import signal
    import time

    args = ["train", images, "--head", "reg", "--steps", "50", "--size", SIZE, "-b", "2",
            "--width", "4", "-j", "2", "--threads", "1", "--device", "cpu", "--out",
            tmp_path / "run", "-q"]  # fmt: skip
    p = _wrapped_recolor(SLOW_WORKER_START, args)
    try:
        deadline = time.monotonic() + 120
        while len(_group(p.pid)) < 3 and time.monotonic() < deadline:  # the workers forked
            time.sleep(0.05)
        assert len(_group(p.pid)) >= 3, "the workers never started"
        p.kill()
        p.wait()
        deadline = time.monotonic() + 30
        while _group(p.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group(p.pid) == [], "loader workers outlived their killed parent"
    finally:
        for pid in _group(p.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_resumed_cosine_run_given_more_steps_stretches_its_rate_from_the_next_step():
    """--resume --steps 8 on a 4-step cosine run trained step 5 at the saved rate, the end of
    the 4-step schedule (1e-5), and only then followed the 8-step one: the rate of the step
    reached is the new length's, f(4 / 8), at once."""
    from recolor_tools.trainoptim import build_optimiser

    cfg = TrainConfig(data=["x"], lr=1e-3, schedule="cosine")
    model = models.Colorizer(models.ModelConfig(head="reg", width=8))
    opt = build_optimiser(cfg, model, 4, None)
    for _ in range(4):
        opt.optimizer.step()
        opt.scheduler.step()
    assert opt.lr == pytest.approx(1e-5)  # the floor, at the end of 4 steps
    again = build_optimiser(cfg, model, 8, None)
    again.load_state_dict(opt.state_dict())
    assert again.lr == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # halfway down the 8 steps
    same = build_optimiser(cfg, model, 4, None)  # the same length: the saved rate, exactly
    same.load_state_dict(opt.state_dict())
    assert same.lr == opt.lr
