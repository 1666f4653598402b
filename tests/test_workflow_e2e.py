"""End to end: snakemake on a tiny config in a temp directory; tables and heatmap checked."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    methods = wd / "methods"
    for m in ("mean", "knn"):
        shutil.copytree(ROOT / "methods" / m, methods / m)
    (methods / "boom").mkdir()
    (methods / "boom" / "method.yaml").write_text("name: boom\ntitle: Boom\ncitation: test\nenv: envs/core.yaml\nparams: {}\n")
    (methods / "boom" / "impute.py").write_text("def impute(task):\n    raise RuntimeError('deliberate failure')\n")
    cfg = {
        "run": "tiny", "seeds": [0, 1], "methods_dir": str(methods),
        "fail_on": "none",  # Boom's failed row is expected here (tests/test_failures.py checks the exit status)
        "preprocess": {"n_genes": 40, "min_detection": 0.1},
        "masks": [{"strategy": "random", "ratio": 0.1}],
        "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 10, "n_cols": 10, "n_genes": 60, "n_cells": 100}},
        "methods": {"mean": {"variants": {"default": {}, "per_gene": {"params": {"axis": "gene"}, "label": "Mean (per gene)"}}},
                    "knn": {"variants": {"default": {"params": {"k": 4}}}}, "boom": {}},
    }
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(wd, "--configfile", "tiny.yaml", "--cores", "2")
    return wd / "results" / "tiny"


def test_tables_have_mean_knn_and_a_failed_row(tiny_run):
    long = pd.read_csv(tiny_run / "tables" / "table1_long.csv")
    assert set(long["label"]) == {"Mean", "Mean (per gene)", "KNN", "Boom"}
    ok = long[(long["status"] == "ok") & long["metric"].isin(["pcc", "cosine", "rmse", "mae"])]
    assert (ok["n_seeds"] == 2).all()
    # a per-gene mean is constant within each gene: its per-gene PCC is undefined, not a number
    undefined = long[(long["label"] == "Mean (per gene)") & (long["metric"] == "pcc_gene")]
    assert undefined["mean"].isna().all() and (undefined["n_seeds"] == 0).all()
    assert long.loc[long["label"] == "Boom", "status"].str.contains("deliberate failure").all()
    pcc = ok[ok["metric"] == "pcc"].set_index("label")["mean"]
    assert pcc["KNN"] > pcc["Mean"]
    wide = pd.read_csv(tiny_run / "tables" / "table1.csv", index_col=0)
    assert list(wide.columns) == ["sim PCC", "sim PCC (gene median)", "sim Cosine", "sim RMSE", "sim MAE"]
    assert wide.loc["Boom", "sim PCC"] == "failed"
    assert "±" in wide.loc["KNN", "sim PCC"]
    md = (tiny_run / "tables" / "table1.md").read_text()
    assert "Protocol (" in md and "| KNN |" in md and "deliberate failure" in md
    assert "genes kept (" in md and "qc.json" in md and "no qc.json given" not in md  # the count from the step's qc.json


def test_heatmap_and_provenance(tiny_run):
    png = tiny_run / "figures" / "heatmap_sim_random-0.1-all.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    run = json.loads((tiny_run / "sim" / "random-0.1-all" / "seed1" / "knn" / "default" / "run.json").read_text())
    assert run["status"] == "ok" and run["params"] == {"k": 4} and run["seed"] == 1 and "numpy" in run["versions"]
    qc = json.loads((tiny_run / "sim" / "qc.json").read_text())
    assert qc["genes_kept"] <= 40 and qc["spots_kept"] == 100


def test_every_run_writes_provenance_json(tiny_run):
    """tables/provenance.json names the commit and the config hash (and the files are readable by others)."""
    import hashlib
    import stat

    from stbench.results.provenance import config_hash

    rec = json.loads((tiny_run / "tables" / "provenance.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert rec["git"]["commit"] == head.stdout.strip() and isinstance(rec["git"]["dirty"], bool)
    assert rec["config"]["resolved"]["run"] == "tiny"
    assert rec["config"]["resolved_sha256"] == config_hash(rec["config"]["resolved"])
    cfg_file = tiny_run.parents[1] / "tiny.yaml"
    assert [f["sha256"] for f in rec["config"]["files"]] == [hashlib.sha256(cfg_file.read_bytes()).hexdigest()]
    assert "--configfile tiny.yaml" in rec["command_line"] and "--target-jobs" not in rec["command_line"]
    assert len(rec["datasets"]["sim"]["preprocessed_sha256"]) == 64
    page = (tiny_run / "report.html").read_text()
    assert rec["config"]["resolved_sha256"] in page and 'id="summarytable"' in page
    import os

    umask = os.umask(0)
    os.umask(umask)
    for f in ("tables/table1.csv", "report.html", "tables/provenance.json"):
        assert stat.S_IMODE((tiny_run / f).stat().st_mode) == 0o666 & ~umask, f


def test_unknown_names_give_a_clear_error(tmp_path):
    cfg = {"datasets": {"sim": {"format": "simulate"}}, "methods": {"nosuch": {}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--configfile", "c.yaml", "-n", check=False)
    assert res.returncode != 0
    assert "unknown method 'nosuch' in config; available methods:" in res.stdout + res.stderr
    assert "knn" in res.stdout + res.stderr
    cfg = {"datasets": {"sim": {"format": "visiumx"}}, "methods": {"knn": {}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--configfile", "c.yaml", "-n", check=False)
    assert res.returncode != 0 and "unknown or missing format 'visiumx'" in res.stdout + res.stderr


def test_paper_config_dry_run_offline(tmp_path):
    """`snakemake -n` on config.yaml lists download, prepare and preprocess jobs for all six datasets."""
    res = snakemake(tmp_path, "-n", "--configfile", str(ROOT / "config.yaml"))
    out = res.stdout + res.stderr
    for job in ("download", "prepare", "preprocess", "impute", "tables"):
        assert job in out, f"no {job} job in the dry run"
    for ds in ("MOB", "HBC", "HP", "HO", "ML", "MK"):
        assert f"dataset={ds}" in out or f"/{ds}/" in out, f"no job for {ds}"


FAKE_CONDA = """#!/bin/sh
# stands in for conda in a dry run (no environment is created): answers the checks snakemake makes
case "$*" in
  *info*) echo '{"conda_version": "24.7.1", "platform": "linux-64", "root_prefix": "/nonexistent", "envs_dirs": [], "pkgs_dirs": [], "channels": [], "conda_prefix": "/nonexistent", "active_prefix": null, "default_prefix": "/nonexistent"}' ;;
  *--version*) echo "conda 24.7.1" ;;
  *config*) echo '{"get": {"channel_priority": "strict"}}' ;;
  *) echo "{}" ;;
esac
"""


def _dry(tmp_path, cfg: dict, *extra, env=None):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "-n",
           "--configfile", "c.yaml", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)


def test_dry_run_of_a_visium_dataset_declares_its_files_and_each_method_env(tmp_path):
    import os

    for f in ("matrix.h5", "tissue_positions.csv"):
        (tmp_path / f).write_text("")
    cfg = {"run": "v", "datasets": {"vis": {"format": "visium", "matrix": str(tmp_path / "matrix.h5"),
                                            "positions": str(tmp_path / "tissue_positions.csv")}},
           "methods": {"mean": {}, "stmcdi": {"preset": "quick"}}}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "conda").write_text(FAKE_CONDA)
    (bin_dir / "conda").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    res = _dry(tmp_path, cfg, "--use-conda", env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert f"input: {tmp_path / 'matrix.h5'}, {tmp_path / 'tissue_positions.csv'}" in out
    assert "envs/core.yaml" in out and "envs/torch.yaml" in out  # mean's and stMCDI's own environments


@pytest.mark.parametrize("params,expected", [
    ({"k": "banana"}, "parameter k='banana' is invalid"),
    ({"k": 0}, "allowed: type: integer, minimum: 1"),
])
def test_dry_run_rejects_an_invalid_parameter_value_fast(tmp_path, params, expected):
    import time

    cfg = {"run": "bad", "datasets": {"sim": {"format": "simulate"}}, "methods": {"knn": {"variants": {"default": {"params": params}}}}}
    t0 = time.perf_counter()
    res = _dry(tmp_path, cfg)
    assert res.returncode != 0 and expected in res.stdout + res.stderr
    assert time.perf_counter() - t0 < 60


def test_dry_run_rejects_a_bad_protocol_value_naming_it(tmp_path):
    cfg = {"run": "bad", "preprocess": {"scale": "cpm"}, "datasets": {"sim": {"format": "simulate"}}, "methods": {"mean": {}}}
    res = _dry(tmp_path, cfg)
    assert res.returncode != 0 and "preprocess/scale" in res.stdout + res.stderr and "'cpm'" in res.stdout + res.stderr


def test_report_latex_cost_and_spatial_maps(tiny_run):
    """The default target ends with the report: one self-contained page built from this run's files."""
    page = (tiny_run / "report.html").read_text()
    assert "<img" in page and 'src="http' not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 3  # the summary figure, the Figure 2 heatmap and the spatial map
    assert "deliberate failure" in page.split('id="problemtable"')[1]  # Boom's failed runs, with their reason
    assert 'id="costtable"' in page and "Not in this run: the config lists fewer than two mask ratios" in page
    assert (tiny_run / "figures" / "spatial_sim_random-0.1-all.png").read_bytes()[:4] == b"\x89PNG"
    cost = pd.read_csv(tiny_run / "tables" / "cost.csv")
    assert set(cost["label"]) == {"Mean", "Mean (per gene)", "KNN", "Boom"} and (cost["n_runs"] == 2).all()
    assert "\\toprule" in (tiny_run / "tables" / "table1.tex").read_text()


def test_dry_run_draws_the_mask_ratio_figure_only_for_two_or_more_ratios(tmp_path):
    base = {"run": "r", "datasets": {"sim": {"format": "simulate"}}, "methods": {"mean": {}}}
    one = _dry(tmp_path, {**base, "masks": [{"ratio": 0.1}]})
    assert one.returncode == 0, one.stderr[-3000:]
    assert "rule report:" in one.stdout and "rule mask_ratio:" not in one.stdout
    two = _dry(tmp_path, {**base, "masks": [{"ratio": 0.1}, {"ratio": 0.3}]})
    assert two.returncode == 0, two.stderr[-3000:]
    assert "rule mask_ratio:" in two.stdout and "results/r/figures/mask_ratio.png" in two.stdout
