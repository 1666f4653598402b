"""Count splitting (mask strategy `countsplit`): binomial thinning into an input half and a target half,
a task built from the input half alone, and an evaluation against the target half (rescaled)."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stbench.atomic import write_h5ad, write_npz
from stbench.data.masks import MaskSpec, load_split, make_split, thin
from stbench.results.metrics import evaluate_imputation
from stbench.data.preprocess import PreprocessConfig, preprocess
from stbench.steps import evaluate_step, mask_step, task_step
from stbench.data.task import TaskSpec, build_task, load_task, truth_on_scale

ROOT = Path(__file__).resolve().parents[1]
SPEC = MaskSpec("countsplit", 0.1, fraction=0.7)


def test_thinning_is_binomial_with_the_right_mean_and_variance():
    rng = np.random.default_rng(0)
    counts = np.full((400, 500), 20.0)
    inp = thin(counts, 0.7, rng)
    assert inp.dtype == np.float64 and np.all(inp == np.round(inp)) and np.all((inp >= 0) & (inp <= counts))
    assert abs(inp.mean() - 14.0) < 0.02                 # n p
    assert abs(inp.var() - 20 * 0.7 * 0.3) < 0.05        # n p (1 - p)
    target = counts - inp
    assert abs(np.corrcoef(inp.ravel(), target.ravel())[0, 1] + 1) < 1e-9  # fixed total: halves sum to the count
    zero = thin(np.zeros((3, 3)), 0.5, rng)
    assert not zero.any()
    with pytest.raises(ValueError, match="integer"):
        thin(np.array([[1.5]]), 0.5, rng)


def test_split_of_poisson_counts_gives_independent_halves():
    """Poisson counts thinned at p: two independent Poisson draws with means p*lambda and (1-p)*lambda."""
    rng = np.random.default_rng(1)
    lam = rng.gamma(2.0, 3.0, size=(1, 300)).repeat(2000, axis=0)
    counts = rng.poisson(lam).astype(np.float32)
    held, train, split = make_split(counts, np.full(2000, 1000.0), SPEC, seed=0)
    inp = split["input_counts"]
    target = counts - inp
    np.testing.assert_allclose(inp.mean(0), 0.7 * lam[0], rtol=0.08, atol=0.05)
    np.testing.assert_allclose(target.mean(0), 0.3 * lam[0], rtol=0.12, atol=0.05)
    r = [np.corrcoef(inp[:, j], target[:, j])[0, 1] for j in range(300) if lam[0, j] > 2]
    assert abs(np.mean(r)) < 0.01
    assert abs(split["input_other_counts"].mean() - 700) < 3
    assert train.all() and abs(held.mean() - 0.1) < 0.01


def test_split_is_reproducible_and_holds_out_only_input_entries():
    rng = np.random.default_rng(2)
    counts = rng.poisson(1.0, size=(50, 40)).astype(np.float32)
    spec = MaskSpec("countsplit", 0.2, among="nonzero", fraction=0.5)
    a = make_split(counts, np.full(50, 100.0), spec, seed=3)
    b = make_split(counts, np.full(50, 100.0), spec, seed=3)
    c = make_split(counts, np.full(50, 100.0), spec, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2]))
    assert np.array_equal(a[2]["input_counts"], b[2]["input_counts"])
    assert not np.array_equal(a[2]["input_counts"], c[2]["input_counts"])
    held, _, split = a
    assert held.any() and np.all(split["input_counts"][held] > 0)  # `nonzero` means detected in the input half
    assert spec.id == "countsplit-0.2-nonzero-p0.5" and MaskSpec().id == "random-0.1-all"


@pytest.fixture(scope="module")
def pre(small_dataset):
    pre, _ = preprocess(small_dataset[0], PreprocessConfig(n_genes=50, min_detection=0.1))
    return pre


def _files(tmp_path, pre, spec=SPEC, name="a", task_spec=None):
    d = tmp_path / name
    write_h5ad(d / "pre.h5ad", pre)
    mask_step(d / "pre.h5ad", spec, 0, d / "mask.npz", dataset="ds")
    task_step(d / "pre.h5ad", d / "mask.npz", d / "task.npz", spec=task_spec, dataset="ds")
    return d


def _with_other_target(pre, split, seed=5):
    """Same input half, a different target half (raw counts and spot totals follow)."""
    rng = np.random.default_rng(seed)
    other = pre.copy()
    c = np.asarray(split["input_counts"], dtype=np.float32) + rng.integers(0, 50, size=pre.shape).astype(np.float32)
    other.layers["counts"] = c
    other.obs["other_counts"] = split["input_other_counts"] + rng.integers(0, 500, size=pre.n_obs)
    other.obs["total_counts"] = other.obs["other_counts"] + c.sum(1)
    other.X = np.log1p(c)
    return other


@pytest.mark.parametrize("scale,library_size", [("log", "observed"), ("zscore", "observed"), ("log", "all")])
def test_task_holds_only_the_input_half_and_is_bit_identical_whatever_the_target(small_dataset, tmp_path, scale,
                                                                                   library_size):
    pre, _ = preprocess(small_dataset[0], PreprocessConfig(n_genes=50))
    task_spec = TaskSpec(scale=scale, library_size=library_size)
    a = _files(tmp_path, pre, task_spec=task_spec)
    split = load_split(a / "mask.npz")
    raw = np.asarray(pre.layers["counts"])
    task = load_task(a / "task.npz")
    obs = task.observed_mask
    np.testing.assert_array_equal(task.observed_counts[obs], split["input_counts"][obs])
    assert not np.array_equal(task.observed_counts[obs], raw[obs])  # thinned, not the raw counts
    assert task.protocol["mask"]["strategy"] == "countsplit" and task.protocol["mask"]["fraction"] == 0.7
    # the same input half under a different target half (and different raw counts): the task does not move
    other = _with_other_target(pre, split)
    b = tmp_path / "b"
    write_h5ad(b / "pre.h5ad", other)
    shutil.copy(a / "mask.npz", b / "mask.npz")
    task_step(b / "pre.h5ad", b / "mask.npz", b / "task.npz", spec=task_spec, dataset="ds")
    assert hashlib.sha256((a / "task.npz").read_bytes()).digest() == hashlib.sha256((b / "task.npz").read_bytes()).digest()
    # ... while the truth it is scored against does
    assert not np.array_equal(truth_on_scale(pre, task, split)[task.observed_mask == 0],
                              truth_on_scale(other, task, split)[task.observed_mask == 0])


def test_truth_of_a_countsplit_task_needs_the_split(pre, tmp_path):
    d = _files(tmp_path, pre)
    with pytest.raises(ValueError, match="target half"):
        truth_on_scale(pre, load_task(d / "task.npz"))


def test_evaluate_scores_against_the_rescaled_target_half(pre, tmp_path):
    d = _files(tmp_path, pre)
    task = load_task(d / "task.npz")
    split = load_split(d / "mask.npz")
    held = ~task.observed_mask
    obs = np.where(task.observed_mask, task.observed, np.nan)
    pred = np.where(held, np.nanmean(obs, axis=0, keepdims=True), task.observed).astype(np.float32)  # per-gene mean
    write_npz(d / "imputed.npz", imputed=pred)
    (d / "run.json").write_text(json.dumps({"status": "ok", "method": "m", "variant": "default", "seed": 0,
                                            "dataset": "ds"}))
    out = evaluate_step(d / "pre.h5ad", d / "mask.npz", d / "task.npz", d / "imputed.npz", d / "run.json",
                        d / "metrics.json")
    # the target half, rescaled by p/(1-p) to the input half's depth, on the task's scale, written out here
    target = (np.asarray(pre.layers["counts"], np.float64) - split["input_counts"]) * (0.7 / 0.3)
    lib = task.library_size[:, None]
    truth = np.log1p(target / lib * task.median_library_size)
    expect = evaluate_imputation(truth, pred, held)["metrics"]
    raw_truth = task.counts_to_scale(np.asarray(pre.layers["counts"]))
    wrong = evaluate_imputation(raw_truth, pred, held)["metrics"]
    assert out["status"] == "ok" and out["n_held_out"] == held.sum()
    for k in ("pcc", "rmse", "mae", "cosine"):
        assert out["metrics"][k] == pytest.approx(expect[k], rel=1e-5, abs=1e-6)
    assert out["metrics"]["rmse"] != pytest.approx(wrong["rmse"], rel=1e-3)


def test_build_task_with_the_default_mask_is_unchanged(pre):
    """Entry masking keeps reading the raw counts (count splitting adds a path, it changes none)."""
    from stbench.data.masks import make_mask

    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
    task = build_task(pre, held, train)
    np.testing.assert_array_equal(task.observed_counts[~held], np.asarray(pre.layers["counts"])[~held])


@pytest.mark.slow
def test_workflow_runs_both_protocols_and_scores_countsplit_against_the_target(tmp_path):
    methods = tmp_path / "methods"
    for m in ("mean", "knn"):
        shutil.copytree(ROOT / "methods" / m, methods / m)
    cfg = {"run": "cs", "seeds": [0], "methods_dir": str(methods),
           "preprocess": {"n_genes": 30, "min_detection": 0.1},
           "masks": [{}, {"strategy": "countsplit", "ratio": 0.1, "fraction": 0.5}],
           "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 8, "n_cols": 8, "n_genes": 50,
                                "n_cells": 60}},
           "methods": {"mean": {}, "knn": {"variants": {"default": {"params": {"k": 4}}}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", "c.yaml", "--cores", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    r = tmp_path / "results" / "cs"
    long = pd.read_csv(r / "tables" / "table1_long.csv")
    assert set(long["mask_strategy"]) == {"random", "countsplit"}
    wide = pd.read_csv(r / "tables" / "table1.csv")
    assert {"random-0.1-all", "countsplit-0.1-all-p0.5"} <= set(wide["mask"])  # one block per MaskSpec.id
    assert "count splitting" in (r / "tables" / "table1.md").read_text()
    d = r / "sim"
    mask = d / "masks" / "countsplit-0.1-all-p0.5" / "seed0.npz"
    task_file = d / "tasks" / "countsplit-0.1-all-p0.5" / "seed0.npz"
    run = d / "countsplit-0.1-all-p0.5" / "seed0" / "knn" / "default"
    rec = json.loads((run / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["mask"]["strategy"] == "countsplit"
    from stbench.data.loaders.h5ad import read_h5ad

    pre = read_h5ad(d / "preprocessed.h5ad")
    task = load_task(task_file)
    split = load_split(mask)
    with np.load(run / "imputed.npz") as z:
        pred = z["imputed"]
    target = np.asarray(pre.layers["counts"], np.float64) - split["input_counts"]  # p = 0.5: no rescaling
    truth = np.log1p(target / task.library_size[:, None] * task.median_library_size)
    expect = evaluate_imputation(truth, pred, ~task.observed_mask)["metrics"]
    assert rec["metrics"]["pcc"] == pytest.approx(expect["pcc"], rel=1e-5)
    assert rec["metrics"]["rmse"] == pytest.approx(expect["rmse"], rel=1e-5)
    ok = long[(long["status"] == "ok") & (long["metric"] == "pcc_gene") & (long["mask_strategy"] == "countsplit")]
    pcc = ok.set_index("label")["mean"]
    assert pcc["KNN"] > 0  # spatial neighbours predict the independent target half


def test_config_keeps_two_countsplit_masks_that_differ_only_in_fraction():
    """The tables key a mask on MaskSpec.id (tests/test_tables.py: one row block each), so both masks run."""
    from stbench.config import masks

    ok = masks({"masks": [{}, {"strategy": "countsplit"}, {"strategy": "countsplit", "ratio": 0.2, "fraction": 0.5}]})
    assert list(ok) == ["random-0.1-all", "countsplit-0.1-all-p0.9", "countsplit-0.2-all-p0.5"]
    two = masks({"masks": [{"strategy": "countsplit"}, {"strategy": "countsplit", "fraction": 0.5}]})
    assert list(two) == ["countsplit-0.1-all-p0.9", "countsplit-0.1-all-p0.5"]
