"""Failures that are seen: a method's traceback is in its impute log, one summary (tables/failures.csv, .md,
printed at the end of the run, and the report) lists failed, suspect and skipped rows with their reasons, and
`fail_on` says whether failed rows make the run exit non-zero (default: failed; skipped rows never count)."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stbench.results.failures import finish, should_fail, write_summary

ROOT = Path(__file__).resolve().parents[1]

BOOM_PY = '''def impute(task):
    return helper(task)


def helper(task):
    raise RuntimeError("kaboom: the test method fails on purpose")
'''
NAPP_PY = '''from stbench.kit.methodkit import NotApplicable


def impute(task):
    raise NotApplicable("not for this dataset (test)")
'''


def _method(root: Path, name: str, body: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "method.yaml").write_text(f"name: {name}\ntitle: {name}\ncitation: test\nenv: envs/core.yaml\nparams: {{}}\n")
    (root / name / "impute.py").write_text(body)


def _row(kind, status, **kw):
    return {"kind": kind, "status": status, "dataset": "d", "mask": "m", "seed": 0, "method": "x", "variant": "v",
            "reason": status, "traceback": "", "log": "logs/x.log", **kw}


def test_fail_on_counts_failed_and_suspect_rows_never_skipped_ones():
    skipped, failed, suspect = _row("skipped", "skipped: no reference"), _row("failed", "failed"), _row("suspect", "suspect: x")
    assert [should_fail([skipped], f) for f in ("none", "failed", "any")] == [False, False, False]
    assert [should_fail([skipped, failed], f) for f in ("none", "failed", "any")] == [False, True, True]
    assert [should_fail([suspect], f) for f in ("none", "failed", "any")] == [False, False, True]
    with pytest.raises(ValueError, match="fail_on must be one of none, failed, any"):
        should_fail([], "sometimes")


def test_fail_on_is_declared_once_in_the_config_schema():
    from stbench.config import schema
    from stbench.results.failures import FAIL_ON, default_fail_on

    prop = schema()["properties"]["fail_on"]
    assert tuple(prop["enum"]) == FAIL_ON and default_fail_on() == prop["default"] == "failed"


def test_summary_of_metric_files(tmp_path):
    recs = {"a": {"status": "ok"}, "b": {"status": "failed", "error": "RuntimeError: kaboom"},
            "c": {"status": "skipped: no reference", "error": "needs a reference"}}
    files = []
    for name, rec in recs.items():
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({**rec, "dataset": "sim", "method": name, "variant": "default",
                                                    "seed": 0, "mask": {"strategy": "random", "ratio": 0.1}}))
        (d / "run.json").write_text(json.dumps({"traceback": "Traceback (most recent call last):\n  boom\n"
                                                if name == "b" else None}))
        files.append(d / "metrics.json")
    rows = write_summary(files, tmp_path / "failures.csv", tmp_path / "failures.md")
    assert [(r["kind"], r["method"]) for r in rows] == [("failed", "b"), ("skipped", "c")]
    md = (tmp_path / "failures.md").read_text()
    assert "1 failed, 0 suspect, 1 skipped of 3" in md and "Traceback (most recent call last)" in md
    assert "[log](../logs/impute/sim_random-0.1-all_seed0_b_default.log)" in md
    out = io.StringIO()
    (tmp_path / "tables").mkdir()
    shutil.copy(tmp_path / "failures.csv", tmp_path / "tables" / "failures.csv")
    assert finish(tmp_path, "failed", stream=out) is True
    assert finish(tmp_path, "none", stream=io.StringIO()) is False
    assert "b/default: RuntimeError: kaboom" in out.getvalue() and "exiting non-zero" in out.getvalue()
    from stbench.cli import main

    assert main(["failures", str(tmp_path)]) == 1 and main(["failures", str(tmp_path), "--fail-on", "none"]) == 0
    assert main(["failures", str(tmp_path / "nosuch")]) == 2


def _snakemake(wd, *extra, env=None):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
           "--configfile", "c.yaml", "--cores", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=wd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_a_failing_method_is_seen_in_its_log_the_summary_the_report_and_the_exit_status(tmp_path):
    methods = tmp_path / "methods"
    shutil.copytree(ROOT / "methods" / "mean", methods / "mean")
    _method(methods, "boom", BOOM_PY)
    _method(methods, "napp", NAPP_PY)
    cfg = {"run": "ft", "seeds": [0], "methods_dir": str(methods), "preprocess": {"n_genes": 20, "min_detection": 0.1},
           "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 6, "n_cols": 6, "n_genes": 40, "n_cells": 50}},
           "methods": {"mean": {}, "boom": {}, "napp": {}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = tmp_path / "results" / "ft"
    targets = ["results/ft/tables/failures.csv", "results/ft/report.html"]

    res = _snakemake(tmp_path, *targets)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]  # default fail_on: failed
    assert (r / "report.html").exists() and (r / "tables" / "table1.csv").exists()  # every table was written first
    assert "stbench: 1 failed, 0 suspect, 1 skipped run(s)" in out, out[-3000:]
    assert "boom/default: RuntimeError: kaboom" in out and "exiting non-zero (fail_on: failed" in out

    log = (r / "logs" / "impute" / "sim_random-0.1-all_seed0_boom_default.log").read_text()
    assert "Traceback (most recent call last)" in log and "in helper" in log and "kaboom" in log
    assert "stbench: boom/default: failed: RuntimeError: kaboom" in log

    df = pd.read_csv(r / "tables" / "failures.csv")
    assert sorted(zip(df["kind"], df["method"])) == [("failed", "boom"), ("skipped", "napp")]
    assert (r / df.loc[df["method"] == "boom", "log"].item()).exists()
    assert "in helper" in (r / "tables" / "failures.md").read_text()
    html = (r / "report.html").read_text()
    assert "kaboom" in html and "in helper" in html
    assert 'href="logs/impute/sim_random-0.1-all_seed0_boom_default.log"' in html

    # opting out: the same summary, exit 0 (the environment overrides the config)
    res = _snakemake(tmp_path, *targets, "--forcerun", "failures", env={"STBENCH_FAIL_ON": "none"})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "stbench: 1 failed, 0 suspect, 1 skipped run(s)" in out and "exiting non-zero" not in out
