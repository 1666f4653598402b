"""The paper run's plan (issue 21): every Table 1 system on the six datasets, each job's device and GPU slots."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stbench import config as cfg
from stbench.run.gpu_slots import slots_requested

ROOT = Path(__file__).resolve().parent.parent
# the 15 systems of the paper's Table 1 (stMCDI and its 14 baselines)
TABLE1 = {"mean", "knn", "stagate", "dca", "graphsci", "scgnn", "cpg_transformer", "graphcpg", "spaformer",
          "gimvi", "tangram", "spage", "stplus", "csdi", "stmcdi"}
PAPER_DATASETS = {"MOB", "HBC", "HP", "HO", "ML", "MK"}


def _paper():
    return cfg.with_defaults(yaml.safe_load((ROOT / "config.yaml").read_text()))


def test_config_yaml_runs_every_table1_system_on_the_six_datasets():
    c = _paper()
    cfg.validate(c)
    assert set(c["datasets"]) == PAPER_DATASETS
    table1 = {v.method for v in cfg.variants(c) if v.table == "table1"}
    assert TABLE1 <= table1, f"missing from config.yaml: {sorted(TABLE1 - table1)}"
    # the controls (negative; the among: nonzero leak) and SpaDiT's other reference baselines (issue 24): the only extra rows
    assert table1 - TABLE1 == {"shuffle", "nonzero_mean"}  # the controls; SpaDiT's baselines run in workflow/spadit.yaml
    # App. C: baselines run with their original hyperparameters (no preset, no parameter override)
    for m in ("graphcpg", "spaformer"):
        (v,) = [v for v in cfg.variants(c) if v.method == m]
        assert v.params == cfg.variants({"methods": {m: {}}, "datasets": c["datasets"]})[0].params


def _dry(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "-n", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)


def test_dry_run_lists_every_table1_system_on_every_dataset(tmp_path):
    """`snakemake -n` on config.yaml (offline): one impute job per system, dataset and seed."""
    out = _dry(tmp_path, "--configfile", str(ROOT / "config.yaml"), "--cores", "8", "--resources", "gpu=1")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = set()
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("wildcards:") and "method=" in line:
            w = dict(kv.split("=", 1) for kv in line[len("wildcards:"):].strip().split(", "))
            jobs.add((w["dataset"], w["method"], w["seed"]))
    for m in TABLE1:
        for d in PAPER_DATASETS:
            assert all((d, m, str(s)) in jobs for s in range(5)), (d, m)


@pytest.mark.parametrize("device,gpu,expected", [("auto", 0, "cpu"), ("cuda", 0, "cpu"), ("cpu", 1, "cpu"),
                                                 ("auto", 1, "auto"), ("cuda", 1, "cuda")])
def test_job_device_follows_the_method_declaration(device, gpu, expected):
    assert cfg.job_device(device, {"gpu": gpu}) == expected


def test_cpu_declared_methods_run_on_cpu_in_the_paper_config():
    c = _paper()
    devices = {v.method: cfg.job_device(c["device"], v.resources) for v in cfg.variants(c)}
    for m in ("dca", "graphsci", "mean", "knn", "spage", "shuffle"):
        assert devices[m] == "cpu", m
    for m in ("stmcdi", "csdi", "gimvi", "tangram", "stagate", "scgnn", "stplus", "cpg_transformer", "graphcpg",
              "spaformer"):
        assert devices[m] == "auto", m


def test_slots_requested():
    assert slots_requested({"gpu": 0, "gpu_slots": 1}, 4) == 0
    assert slots_requested({"gpu": 1}, 4) == 4           # a whole device unless the method allows sharing
    assert slots_requested({"gpu": 1, "gpu_slots": 1}, 4) == 1
    assert slots_requested({"gpu": 1, "gpu_slots": 9}, 4) == 4
    assert slots_requested({"gpu": 2}, 4) == 8
    assert slots_requested({"gpu": 1, "gpu_slots": 1}, 1) == 1
    c = _paper()
    k = c["gpu_slots_per_device"]
    req = {v.method: slots_requested(v.resources, k) for v in cfg.variants(c)}
    assert req["stmcdi"] == 1 and req["csdi"] == k and req["dca"] == 0


def test_dry_run_maps_the_users_gpus_to_slots(tmp_path):
    """--resources gpu=1 on the demo config with 3 slots per device: stMCDI (gpu_slots 1) asks for 1 of 3
    slots, CSDI for a whole device (3), DCA for none."""
    demo = yaml.safe_load((ROOT / "workflow" / "demo.yaml").read_text())
    demo["methods"] = {"stmcdi": {"preset": "quick", "resources": {"gpu_slots": 1}}, "csdi": {"preset": "quick"},
                       "dca": {"preset": "quick"}}
    demo["gpu_slots_per_device"] = 3
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(demo))
    out = _dry(tmp_path, "--configfile", "c.yaml", "--cores", "2", "--resources", "gpu=1")
    assert out.returncode == 0, out.stderr[-3000:]
    got, method, rule = {}, None, None
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif rule == "impute" and line.startswith("wildcards:"):
            method = line.split("method=")[1].split(",")[0]
        elif line.startswith("resources:") and method:
            got[method] = dict(kv.split("=", 1) for kv in line[len("resources:"):].strip().split(", "))["gpu"]
            method = None
    assert got == {"stmcdi": "1", "csdi": "3", "dca": "0"}
