"""Resumability: a run killed (SIGKILL of snakemake and every process it started) while a method is
running resumes with `--unlock` and a rerun with `--rerun-incomplete` (both profiles set it): finished
jobs are not recomputed, the killed job is rerun, and the final tables equal those of an uninterrupted run."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# A test-only method: the per-gene mean, after sleeping for the number of seconds in delay.txt (read from
# its own folder, which the sandbox copies, so the test can shorten the delay before the rerun).
SLEEPY_YAML = "name: sleepy\ntitle: Sleepy\ncitation: test\nenv: envs/core.yaml\nparams: {}\n"
SLEEPY_PY = '''import time
from pathlib import Path

import numpy as np


def impute(task):
    time.sleep(float((Path(__file__).parent / "delay.txt").read_text()))
    x, m = task.observed, task.observed_mask
    mean = np.where(m, x, 0.0).sum(0) / np.maximum(m.sum(0), 1)
    return np.where(m, x, mean[None, :]).astype(np.float32)
'''


def _setup(wd: Path, delay: float) -> None:
    methods = wd / "methods"
    shutil.copytree(ROOT / "methods" / "mean", methods / "mean")
    (methods / "sleepy").mkdir()
    (methods / "sleepy" / "method.yaml").write_text(SLEEPY_YAML)
    (methods / "sleepy" / "impute.py").write_text(SLEEPY_PY)
    (methods / "sleepy" / "delay.txt").write_text(str(delay))
    cfg = {"run": "rs", "seeds": [0], "methods_dir": str(methods),
           "preprocess": {"n_genes": 20, "min_detection": 0.1},
           "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 6, "n_cols": 6, "n_genes": 40,
                                "n_cells": 50}},
           "methods": {"mean": {}, "sleepy": {}}}
    (wd / "c.yaml").write_text(yaml.safe_dump(cfg))


TARGET = "results/rs/tables/table1.csv"  # the tables (the figures and the report would only add time)


def _cmd(wd, *extra):
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
            "--configfile", "c.yaml", "--cores", "2", *extra]


def _run(wd, *extra):
    res = subprocess.run(_cmd(wd, *extra), capture_output=True, text=True, timeout=300, cwd=wd)
    assert res.returncode == 0, f"snakemake failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


def _job_counts(out: str) -> dict:
    """Snakemake's 'Job stats' table: {rule: count}."""
    table = out.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m.group(1) != "total"}


def _stamps(r: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in r.rglob("*") if p.is_file() and "logs" not in p.parts}


def _tables(r: Path):
    long = pd.read_csv(r / "tables" / "table1_long.csv")
    long = long.drop(columns=[c for c in long.columns if "time" in c or "rss" in c or "cuda" in c])
    return long, (r / "tables" / "table1.csv").read_text()


def _boxes_of_session(method: str, session: int) -> set:
    """Sandbox folders of ``method`` made by an impute process of the given session."""
    out = set()
    for owner in Path(tempfile.gettempdir()).glob("stbench-*.owner"):
        box = owner.with_suffix("")
        try:
            pid = int(owner.read_text().split()[1])
            if f'"method": "{method}"' in (box / "job.json").read_text() and os.getsid(pid) == session:
                out.add(box)
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_stale_sandbox_folders_are_removed_only_when_their_owner_is_gone(tmp_path):
    import socket

    from stbench.run.sandbox import remove_stale_boxes

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    for name, owner in (("stbench-dead", f"{host} {dead.pid}"), ("stbench-live", f"{host} {os.getpid()}"),
                        ("stbench-other", f"another-node {dead.pid}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "task.npz").write_text("x")
        (tmp_path / f"{name}.owner").write_text(owner)
    assert remove_stale_boxes(tmp_path) == [tmp_path / "stbench-dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stbench-live", "stbench-live.owner", "stbench-other",
                                                          "stbench-other.owner"]


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_finished_jobs(tmp_path):
    ref = tmp_path / "uninterrupted"  # the reference run, in parallel with the killed one
    ref.mkdir()
    _setup(ref, delay=0)
    ref_proc = subprocess.Popen(_cmd(ref, TARGET), cwd=ref, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wd = tmp_path / "killed"
    wd.mkdir()
    _setup(wd, delay=300)
    r = wd / "results" / "rs"
    run = r / "sim" / "random-0.1-all" / "seed0"
    sleepy_log = r / "logs" / "impute" / "sim_random-0.1-all_seed0_sleepy_default.log"
    proc = subprocess.Popen(_cmd(wd, TARGET), cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        # kill once Mean is scored (snakemake says so) while Sleepy is still imputing
        while not (sleepy_log.exists() and any("(Rule: evaluate)" in x for x in list(lines))
                   and (stale := _boxes_of_session("sleepy", proc.pid))):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "the method never ran beside finished jobs"
            time.sleep(0.2)
        assert not (run / "sleepy" / "default" / "run.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake, its job scripts and the method's sandboxed process
        proc.wait()
        reader.join(timeout=10)
    assert all(b.exists() for b in stale)  # the killed method's sandbox folder: no process left to remove it
    before = _stamps(r)
    assert run / "mean" / "default" / "imputed.npz" in before
    assert not (r / "tables" / "table1.csv").exists()

    (wd / "methods" / "sleepy" / "delay.txt").write_text("0")
    _run(wd, "--unlock")
    out = _run(wd, "--rerun-incomplete", TARGET)
    jobs = _job_counts(out)
    assert jobs.get("impute") == 1 and jobs.get("evaluate") == 1, jobs  # only the killed method, then its score
    assert not {"prepare", "preprocess", "mask", "task"} & set(jobs), jobs
    after = _stamps(r)
    unchanged = {p for p in before if before[p] == after.get(p)}
    assert unchanged == set(before), sorted(str(p.relative_to(r)) for p in set(before) - unchanged)
    assert (run / "sleepy" / "default" / "run.json").exists()
    assert not any(b.exists() for b in stale)  # the rerun's sandbox removed it
    assert "Nothing to be done" in _run(wd, "-n", TARGET)  # and the run is now complete

    ref_out = ref_proc.communicate(timeout=300)[0]
    assert ref_proc.returncode == 0, ref_out[-3000:]
    long_a, wide_a = _tables(r)
    long_b, wide_b = _tables(ref / "results" / "rs")
    pd.testing.assert_frame_equal(long_a, long_b)
    assert wide_a == wide_b
