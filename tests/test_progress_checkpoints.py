"""A run a user can watch and resume: progress lines at a steady wall-clock interval in the job log
(stbench/kit/progress.py), and training checkpoints in a per-job folder outside the sandbox, so that a job
killed mid-training (SIGKILL of the impute process and its child) resumes where it stopped and ends
with the result of an uninterrupted run."""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stbench.kit.progress import Progress, hms
from stbench.run.registry import get_method
from stbench.data.task import build_task, save_task

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_lines_come_at_first_step_then_every_interval_and_at_the_last():
    clock, out = FakeClock(), io.StringIO()
    prog = Progress(100, label="train", every_s=30, stream=out, clock=clock)
    written = []
    for step in range(1, 101):
        clock.t += 1.0  # one second per step
        if prog.update(step, loss=1.0 / step):
            written.append(step)
    assert written == [1, 31, 61, 91, 100]
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert "train: step 1/100 (1.0%), loss 1, elapsed 0:00:01, eta 0:01:39" in lines[0]
    assert "step 31/100 (31.0%), loss 0.03226, elapsed 0:00:31, eta 0:01:09" in lines[1]
    assert "step 100/100 (100.0%)" in lines[-1] and "eta 0:00:00" in lines[-1]
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] ", lines[0])


def test_progress_eta_counts_only_this_process_steps_and_loss_is_read_only_when_due():
    clock, out = FakeClock(), io.StringIO()
    prog = Progress(1000, label="t", every_s=60, start=900, stream=out, clock=clock)  # resumed at step 900
    reads = []

    def loss():
        reads.append(1)
        return 0.5

    for step in range(901, 1001):
        clock.t += 2.0
        prog.update(step, loss)
    assert len(reads) == len(out.getvalue().splitlines()) == 5  # 901, 931, 961, 991, 1000
    assert "step 901/1000 (90.1%), loss 0.5, elapsed 0:00:02, eta 0:03:18" in out.getvalue().splitlines()[0]
    quiet = Progress(10, label="t", stream=out, clock=clock, enabled=False)
    assert quiet.update(10, loss) is None and len(reads) == 5
    assert hms(3725.4) == "1:02:05" and hms(-3) == "0:00:00"


# --- stMCDI in the sandbox: progress in the job log, checkpoints outside the sandbox, resume after a kill ---


def _params(**kw):
    # the `test` preset, long enough to kill it mid-training: 300 steps, a checkpoint every 30
    return get_method("stmcdi").params("test", {"min_steps": 300, "checkpoints": 10, "progress_interval": 0.5,
                                                "epochs": 1, **kw})


def _task(tmp_path, small_pre, small_mask):
    f = tmp_path / "task.npz"
    save_task(f, build_task(small_pre, *small_mask, seed=2))
    return f


def _impute_call(task, out, ck, log):
    return (f"from stbench.steps import impute_step; import json; "
            f"impute_step({str(task)!r}, 'stmcdi', 'default', json.loads({json.dumps(_params())!r}), {str(out)!r}, "
            f"device='cpu', threads=1, checkpoint_dir={str(ck)!r}, log_file={str(log)!r})")


def test_job_killed_mid_training_resumes_from_its_checkpoint_and_equals_an_uninterrupted_run(
        tmp_path, small_pre, small_mask):
    from stbench.steps import impute_step

    task = _task(tmp_path, small_pre, small_mask)
    # the job is killed (SIGKILL of the impute process and its sandboxed child, as a cluster's time limit
    # does) once training has written a checkpoint, but well before its end
    ck, log, out = tmp_path / "ck", tmp_path / "impute.log", tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen([sys.executable, "-c", _impute_call(task, out, ck, log)], env=env, cwd=tmp_path,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    # (the parent copies the child's output into the log every LIVE_POLL_S: wait for a line there too)
    while (not list(ck.glob("stmcdi-*.pt")) or not (log.exists() and "stMCDI train: step" in log.read_text())) \
            and job.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    killed_at = log.read_text()
    assert list(ck.glob("stmcdi-*.pt")), f"no checkpoint was written before the kill:\n{killed_at[-2000:]}"
    assert not (out / "run.json").exists(), "the job finished before it could be killed: make it longer"
    assert re.search(r"stMCDI train: step \d+/300", killed_at), killed_at[-2000:]  # watched live, no terminal

    rec = impute_step(task, "stmcdi", "default", _params(), out, device="cpu", threads=1, checkpoint_dir=ck,
                      log_file=log)
    assert rec["status"] == "ok", rec
    text = log.read_text()[len(killed_at):]
    m = re.search(r"stMCDI train: resuming from checkpoint stmcdi-\w+\.pt at step (\d+)/300", text)
    assert m and 0 < int(m.group(1)) < 300, text[-3000:]
    assert re.search(r"step 300/300 \(100\.0%\)", text)
    assert not ck.exists(), "the checkpoint folder outlived the job's result"
    with np.load(out / "imputed.npz") as z:
        resumed = z["imputed"]

    ref_out, ref_ck = tmp_path / "ref", tmp_path / "ref_ck"
    ref = impute_step(task, "stmcdi", "default", _params(), ref_out, device="cpu", threads=1, checkpoint_dir=ref_ck)
    assert ref["status"] == "ok"
    with np.load(ref_out / "imputed.npz") as z:
        np.testing.assert_allclose(resumed, z["imputed"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isolation", ["process", "bwrap"])
def test_checkpoints_go_to_the_job_folder_and_hold_model_state_only(tmp_path, small_pre, small_mask, isolation):
    """The method writes its checkpoint into the job's folder under either isolation, the file holds no
    array of the task's shape, and the folder is kept after a failure (a forced rerun resumes) but not after a result."""
    import torch

    from stbench.run.sandbox import bwrap_available
    from stbench.steps import impute_step

    if isolation == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap cannot run here")
    task = _task(tmp_path, small_pre, small_mask)
    ck = tmp_path / "ck"
    # a sampling failure after training (n_samples=0) keeps the folder; the registry rejects 0 (param_schema, checked
    # for every run), so this run uses a copy of the method whose schema lets it through
    relaxed = tmp_path / "methods"
    shutil.copytree(get_method("stmcdi").folder, relaxed / "stmcdi", ignore=shutil.ignore_patterns("__pycache__"))
    manifest = yaml.safe_load((relaxed / "stmcdi" / "method.yaml").read_text())
    manifest["param_schema"]["n_samples"] = {"type": "integer", "minimum": 0}
    (relaxed / "stmcdi" / "method.yaml").write_text(yaml.safe_dump(manifest))
    p = {**_params(min_steps=20, checkpoints=1), "n_samples": 0}
    rec = impute_step(task, "stmcdi", "default", p, tmp_path / "o1", device="cpu", threads=1, isolation=isolation,
                      checkpoint_dir=ck, log_file=tmp_path / "l1.log", methods_dir=relaxed)
    assert rec["status"] == "failed" and rec["isolation"] == isolation
    (f,) = ck.glob("stmcdi-*.pt")
    st = torch.load(f, map_location="cpu", weights_only=False)
    assert st["step"] == 20 and {"model", "opt", "sched", "gen", "cpu_rng"} <= set(st)
    shape = tuple(small_pre.shape)

    def arrays(o):
        if isinstance(o, torch.Tensor):
            yield o
        elif isinstance(o, dict):
            for v in o.values():
                yield from arrays(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                yield from arrays(v)

    assert not [a for a in arrays(st) if tuple(a.shape[-2:]) == shape or a.numel() == small_pre.n_obs * small_pre.n_vars]
    log = (tmp_path / "l1.log").read_text()
    assert "Traceback (most recent call last)" in log and "stbench: stmcdi/default: failed" in log
    rec = impute_step(task, "stmcdi", "default", _params(min_steps=20, checkpoints=1), tmp_path / "o2", device="cpu",
                      threads=1, isolation=isolation, checkpoint_dir=ck, log_file=tmp_path / "l2.log")
    assert rec["status"] == "ok" and "resuming from checkpoint" in (tmp_path / "l2.log").read_text()
    assert not ck.exists()


def test_csdi_resumes_from_an_epoch_checkpoint_and_equals_an_uninterrupted_run(tmp_path, small_pre, small_mask,
                                                                                monkeypatch, capsys):
    import dataclasses

    from stbench.run.registry import discover

    m = discover()["csdi"]
    m.load_impute()
    mod = sys.modules["stbench_methods.csdi.impute"]
    p = m.params("test", {"epochs": 6, "checkpoints": 3, "progress_interval": 0, "threads": 1})  # one every 2 epochs
    task = build_task(small_pre, *small_mask, seed=1)
    full = mod.run(dataclasses.replace(task, checkpoint_dir=tmp_path / "full"), **p)
    steps_per_epoch = full["history"]["steps"] // 6
    calls = {"n": 0}
    real = sys.modules["stbench_methods.csdi.model"].CSDI.training_loss

    def crash(self, *a, **k):  # killed at the first step of epoch 4: the last checkpoint is that of epoch 2
        calls["n"] += 1
        if calls["n"] == 3 * steps_per_epoch + 1:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(sys.modules["stbench_methods.csdi.model"].CSDI, "training_loss", crash)
    cut = dataclasses.replace(task, checkpoint_dir=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        mod.run(cut, **p)
    monkeypatch.setattr(sys.modules["stbench_methods.csdi.model"].CSDI, "training_loss", real)
    capsys.readouterr()
    again = mod.run(cut, **p)
    err = capsys.readouterr().err
    assert again["history"]["resumed_from"] == 2, again["history"]
    assert "CSDI train: resuming from checkpoint csdi-" in err and f"at step {2 * steps_per_epoch}/" in err
    assert "CSDI train: step 1/" not in err and f"step {6 * steps_per_epoch}/{6 * steps_per_epoch}" in err
    np.testing.assert_allclose(again["history"]["loss"], full["history"]["loss"], rtol=1e-6)
    np.testing.assert_array_equal(again["imputed"], full["imputed"])


@pytest.mark.slow
def test_workflow_killed_mid_training_resumes_and_ends_with_the_tables_of_an_uninterrupted_run(tmp_path):
    """Through Snakemake: SIGKILL of the whole run once stMCDI has checkpointed, `--unlock`, then
    `--rerun-incomplete`: the impute log says from which step it resumed, the checkpoint folder is gone
    once the row is written, and the tables equal those of an uninterrupted run."""
    import shutil

    import pandas as pd
    import yaml

    def setup(wd):
        wd.mkdir()
        shutil.copytree(ROOT / "methods" / "stmcdi", wd / "methods" / "stmcdi")
        cfg = {"run": "rs", "seeds": [0], "methods_dir": str(wd / "methods"),
               "preprocess": {"n_genes": 20, "min_detection": 0.1},
               "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 6, "n_cols": 6, "n_genes": 40,
                                    "n_cells": 50}},
               "methods": {"stmcdi": {"preset": "test", "resources": {"threads": 1},
                                      "variant_defaults": {"params": {"min_steps": 300, "checkpoints": 10,
                                                                      "progress_interval": 0.5}}}}}
        (wd / "c.yaml").write_text(yaml.safe_dump(cfg))

    def cmd(wd, *extra):
        return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
                "--configfile", "c.yaml", "--cores", "1", *extra]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    target = "results/rs/tables/table1_long.csv"
    ref, wd = tmp_path / "ref", tmp_path / "killed"
    setup(ref)
    setup(wd)
    ck = wd / "results" / "rs" / "checkpoints" / "sim" / "random-0.1-all" / "seed0" / "stmcdi" / "default"
    log = wd / "results" / "rs" / "logs" / "impute" / "sim_random-0.1-all_seed0_stmcdi_default.log"
    ref_proc = subprocess.Popen(cmd(ref, target), cwd=ref, env=env, stdout=subprocess.DEVNULL,  # in parallel
                                stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(cmd(wd, target), cwd=wd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(ck.glob("stmcdi-*.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, "stMCDI never checkpointed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (wd / "results" / "rs" / "tables").exists()
    for extra in (["--unlock"], ["--rerun-incomplete", target]):
        res = subprocess.run(cmd(wd, *extra), cwd=wd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"stMCDI train: resuming from checkpoint stmcdi-\w+\.pt at step (\d+)/300", log.read_text())
    assert m and 0 < int(m.group(1)) < 300, log.read_text()[-3000:]
    assert not ck.exists()
    err = ref_proc.communicate(timeout=300)[1]
    assert ref_proc.returncode == 0, err[-3000:]
    a, b = (pd.read_csv(w / "results" / "rs" / "tables" / "table1_long.csv") for w in (wd, ref))
    keep = [c for c in a.columns if not any(t in c for t in ("time", "rss", "cuda"))]
    pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=False, rtol=1e-4, atol=1e-5)


def test_checkpoint_clock_and_a_time_limit_shorter_than_a_tenth_of_training(tmp_path, small_pre, small_mask,
                                                                            monkeypatch):
    """`checkpoint_interval` (seconds) also saves between the `checkpoints` evenly spaced ones, so a job that a
    time limit kills before its first tenth still resumes from where it was."""
    import dataclasses

    from stbench.kit.diffusion.common import CheckpointClock

    clock = FakeClock()
    c = CheckpointClock(600, clock=clock)
    clock.t += 599
    assert not c.due()
    clock.t += 1
    assert c.due()
    c.saved()
    assert not c.due() and not CheckpointClock(0, clock=clock).due() and not CheckpointClock(None).due()

    m = get_method("stmcdi")
    m.load_impute()
    stm = sys.modules["stbench_methods.stmcdi.impute"]
    trn = sys.modules["stbench_methods.stmcdi.train"]
    p = m.params("test", {"min_steps": 40, "epochs": 1, "checkpoints": 1, "checkpoint_interval": 1e-9,
                          "progress": False, "threads": 1})
    task = dataclasses.replace(build_task(small_pre, *small_mask, seed=3), checkpoint_dir=tmp_path / "ck")
    calls, real = {"n": 0}, trn.EMA.update

    def crash(self, model):
        calls["n"] += 1
        if calls["n"] == 25:  # killed at step 25 of 40: `checkpoints: 1` alone would have saved nothing yet
            raise KeyboardInterrupt
        return real(self, model)

    monkeypatch.setattr(trn.EMA, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        stm.run(task, **p)
    monkeypatch.setattr(trn.EMA, "update", real)
    again = stm.run(task, **p)
    assert again["history"]["resumed_from"] == 24
    full = stm.run(dataclasses.replace(task, checkpoint_dir=tmp_path / "full"), **p)
    assert full["history"]["resumed_from"] == 0
    np.testing.assert_array_equal(again["imputed"], full["imputed"])
