"""The SLURM profile asks for a GPU only for jobs whose `gpu` resource is positive.

The real profile (workflow/profiles/slurm) and the real executor plugin (snakemake-executor-plugin-slurm,
in the `test` extra) submit the impute jobs of a tiny config to stand-in SLURM tools that record every
call; the test then reads each job's sbatch arguments: stMCDI (method.yaml `gpu: 1`) gets `--gpus=1` on
the GPU partition, Mean and KNN (`gpu: 0`) no GPU request on the CPU partition.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm"

pytestmark = pytest.mark.slow

# One script for every SLURM client tool: logs "<tool>\t<args>" and answers what the plugin parses.
# sbatch returns a new job id; sacct/squeue report every submitted job as FAILED, so the run ends
# quickly (nothing is executed: only the submissions are checked).
FAKE_SLURM = """#!/bin/sh
name=$(basename "$0")
printf '%s\\t%s\\n' "$name" "$*" >> "$FAKE_SLURM_LOG"
case "$name" in
  sbatch) n=$(wc -l < "$FAKE_SLURM_LOG"); echo "$((1000 + n))" >> "$FAKE_SLURM_LOG.ids"; echo "$((1000 + n))" ;;
  sacct|squeue) case "$*" in
      *Account*) ;;  # the plugin guessing an account from past jobs: none (no account to validate)
      *) [ -f "$FAKE_SLURM_LOG.ids" ] && while read id; do echo "$id|FAILED"; done < "$FAKE_SLURM_LOG.ids" ;;
    esac ;;
  sinfo) echo "PARTITION"; echo "cpu*"; echo "gpu" ;;
esac
exit 0
"""


def _snakemake(wd, *args, env=None, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=wd, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    wd = tmp_path_factory.mktemp("slurm")
    methods = wd / "methods"
    for m in ("mean", "knn", "stmcdi"):
        shutil.copytree(ROOT / "methods" / m, methods / m)
    cfg = {"run": "sl", "seeds": [0], "methods_dir": str(methods),
           "preprocess": {"n_genes": 20, "min_detection": 0.1},
           "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 6, "n_cols": 6, "n_genes": 40,
                                "n_cells": 50}},
           "methods": {"mean": {}, "knn": {}, "stmcdi": {"preset": "test"}}}
    (wd / "c.yaml").write_text(yaml.safe_dump(cfg))
    task = "results/sl/sim/tasks/random-0.1-all/seed0.npz"
    _snakemake(wd, "--configfile", "c.yaml", "--cores", "2", task)  # the upstream jobs, locally
    bin_dir = wd / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake_slurm").write_text(FAKE_SLURM)
    (bin_dir / "fake_slurm").chmod(0o755)
    for tool in ("sbatch", "sacct", "squeue", "sinfo", "scontrol", "sacctmgr", "sshare", "scancel", "srun"):
        (bin_dir / tool).symlink_to("fake_slurm")
    log = wd / "slurm_calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_LOG": str(log)}
    targets = [f"results/sl/sim/random-0.1-all/seed0/{m}/default/run.json" for m in ("mean", "knn", "stmcdi")]
    res = _snakemake(wd, "--configfile", "c.yaml", "--workflow-profile", str(PROFILE), "--latency-wait", "1",
                     "--slurm-init-seconds-before-status-checks", "1", *targets, env=env, check=False)
    calls = [line.split("\t", 1) for line in log.read_text().splitlines()] if log.exists() else []
    sbatch = {}
    for tool, args in calls:
        if tool != "sbatch":
            continue
        argv = shlex.split(args.split(" --wrap=", 1)[0])
        comment = argv[argv.index("--comment") + 1]
        method = comment.split("_0_", 1)[1].rsplit("_default", 1)[0]
        sbatch[method] = argv
    assert set(sbatch) == {"mean", "knn", "stmcdi"}, res.stdout[-3000:] + res.stderr[-3000:]
    return sbatch, wd, cfg


def _gpu_args(argv):
    return [a for a in argv if a.startswith(("--gpus", "--gres", "--gpus-per", "-G"))]


def test_stmcdi_asks_for_one_gpu_on_the_gpu_partition(submissions):
    sbatch, _, _ = submissions
    argv = sbatch["stmcdi"]
    assert _gpu_args(argv) == ["--gpus=1"]
    assert argv[argv.index("-p") + 1] == "gpu"


@pytest.mark.parametrize("method", ["mean", "knn"])
def test_cpu_methods_ask_for_no_gpu(submissions, method):
    sbatch, _, _ = submissions
    argv = sbatch[method]
    assert _gpu_args(argv) == [], argv
    assert argv[argv.index("-p") + 1] == "cpu"
    assert "--mem" in argv and argv[argv.index("--mem") + 1] == "2000"  # method.yaml's mem_mb, not the default


def test_profile_sets_no_rule_wide_gpu_request():
    prof = yaml.safe_load((PROFILE / "config.yaml").read_text())
    text = yaml.safe_dump(prof)
    assert "gres" not in text and "gpus" not in text and "slurm_extra" not in text
    assert (PROFILE / prof["slurm-partition-config"]).exists()


def test_dry_run_with_the_profile_lists_the_gpu_resource_per_job(submissions):
    _, wd, _ = submissions
    res = _snakemake(wd, "--configfile", "c.yaml", "--workflow-profile", str(PROFILE), "-n", "-p",
                     "--forceall", "results/sl/sim/random-0.1-all/seed0/stmcdi/default/run.json",
                     "results/sl/sim/random-0.1-all/seed0/mean/default/run.json")
    out = res.stdout + res.stderr
    blocks = [b for b in out.split("\n\n") if "rule impute:" in b]
    by_method = {("stmcdi" if "method=stmcdi" in b else "mean"): b for b in blocks}
    assert "gpu=1" in by_method["stmcdi"] and "gpu=0" in by_method["mean"], out[-3000:]
