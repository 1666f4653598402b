"""`stbench estimate` for the paper run (issue 21): every GPU job costed, the levers' arithmetic, N GPUs."""


import pytest
import yaml

from stbench.results import cost_estimate as ce
from stbench.cli import main

EST = {"stagate": {"cpu_seconds": 100, "ref_spots": 100, "ref_genes": 50, "spots_exponent": 2, "genes_exponent": 1,
                   "gpu_factor": 10}}


def test_scaled_cost_is_the_stated_formula():
    assert ce.scaled_cost(EST["stagate"], 200, 100) == pytest.approx(100 * 2 ** 2 * 2 / 10)


def test_levers_assumed_without_a_measurement_and_measured_with_one():
    lv = ce.levers("GPU X", 4, 11, rows=[])
    assert not lv["slots"].measured and lv["slots"].factor == 4.0  # min(k, 1 / busy) with busy 0.21
    assert lv["ensemble"].factor == pytest.approx(1 / ce.PROFILE_BUSY) and not lv["ensemble"].measured
    assert lv["both"].factor == pytest.approx(1 / ce.PROFILE_BUSY) and not lv["both"].measured
    assert ce.levers("GPU X", 1, 1, rows=[])["both"].factor == 1.0
    rows = [{"device": "GPU X", "lever": "slots", "k": "2", "speedup": "1.5", "n_spots": "2000", "n_genes": "1000",
             "preset": "paper", "_file": "f.csv"},
            {"device": "GPU X", "lever": "slots", "k": "4", "speedup": "2.5", "n_spots": "2000", "n_genes": "1000",
             "preset": "paper", "_file": "f.csv"},
            {"device": "GPU X", "lever": "ensemble", "k": "11", "speedup": "3.0", "n_spots": "2000", "n_genes": "1000",
             "preset": "paper", "_file": "f.csv"}]
    lv = ce.levers("GPU X", 4, 11, rows=rows)
    assert lv["slots"].measured and lv["slots"].factor == 2.5  # the row nearest in k
    assert lv["ensemble"].measured and lv["ensemble"].factor == 3.0 and lv["both"].factor == 3.0


def test_levers_apply_to_training_of_the_jobs_they_concern():
    shared = ce.JobCost("d", "stmcdi", "default", 2, 10, 10, train_s=3600.0, sample_s=1800.0, basis="measured",
                        slots=1, ensemble=3)
    whole = ce.JobCost("d", "csdi", "default", 1, 10, 10, train_s=7200.0, sample_s=0.0, basis="estimate", slots=4)
    cpu = ce.JobCost("d", "dca", "default", 5, 10, 10, basis="cpu")
    costs = [shared, whole, cpu]
    assert ce.device_hours(costs) == pytest.approx(2 * 1.5 + 2)
    two = ce.Lever("x", 2.0, False, "")
    assert ce.device_hours(costs, slots=two) == pytest.approx(2 * (0.5 + 0.5) + 2)  # csdi takes a whole device
    assert ce.device_hours(costs, ensemble=ce.Lever("e", 4.0, True, "")) == pytest.approx(2 * (0.25 + 0.5) + 2)
    assert ce.wall_hours(10.0, 1.0, 4) == 2.5 and ce.wall_hours(10.0, 4.0, 4) == 4.0


def _config(tmp_path, methods):
    c = {"run": "levertest", "seeds": [0, 1], "gpu_slots_per_device": 4,
         "datasets": {"demo": {"format": "simulate", "seed": 0}}, "methods": methods}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(c))
    return c


def test_every_gpu_job_gets_a_basis(tmp_path):
    c = _config(tmp_path, {"stagate": {}, "dca": {}, "scgnn": {}, "csdi": {},
                           "stmcdi": {"preset": "paper", "resources": {"gpu_slots": 1},
                                      "variants": {"default": {}, "r2": {"params": {"train_mask_ratio": 0.2}},
                                                   "gat": {"params": {"encoder": "gat"}}}}})
    dev = next(d for d in ce.devices() if d != "cpu")
    costs = {(x.method, x.variant): x for x in ce.estimate(c, dev, results_dir=tmp_path, estimates=EST)}
    assert costs[("stagate", "default")].basis == "estimate"
    assert costs[("stagate", "default")].train_s == pytest.approx(ce.scaled_cost(EST["stagate"], 600, 400))
    assert costs[("dca", "default")].basis == "cpu" and costs[("dca", "default")].hours is None
    assert costs[("scgnn", "default")].basis == "unmeasured"  # not in this estimates table
    assert costs[("csdi", "default")].basis == "estimate" and "csdi itself not benchmarked" in costs[("csdi", "default")].rate
    assert costs[("stmcdi", "default")].basis == "measured" and costs[("stmcdi", "default")].slots == 1
    assert costs[("stmcdi", "default")].ensemble == 2 and costs[("stmcdi", "gat")].ensemble == 1
    assert costs[("csdi", "default")].slots == 4 and costs[("dca", "default")].slots == 0


def test_cli_prints_levers_both_figures_and_the_wall_time_for_n_gpus(tmp_path, capsys):
    _config(tmp_path, {"stmcdi": {"preset": "paper", "resources": {"gpu_slots": 1}}, "stagate": {}})
    assert main(["estimate", "--config", str(tmp_path / "c.yaml"), "--gpus", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert "slots: 4 per GPU, shared by stmcdi" in out and "UNMEASURED on a GPU" in out
    assert " without, " in out and " with" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("1 ", "3 "))]
    assert [r[0] for r in rows] == ["1", "3"]
    one, three = (float(r[1].rstrip("h")) for r in rows)
    assert three == pytest.approx(max(one / 3, three), rel=1e-3)  # device-hours / N unless one job is longer


def test_the_paper_config_costs_every_gpu_job_and_names_what_stops_it():
    c = yaml.safe_load(open(ce.ROOT / "config.yaml"))
    dev = next(d for d in ce.devices() if d != "cpu")
    costs = ce.estimate(c, dev, results_dir=ce.ROOT / "no-such-run")
    gpu = {x.method for x in costs if x.basis != "cpu"}
    assert gpu == {"stmcdi", "csdi", "gimvi", "tangram", "stagate", "scgnn", "stplus", "cpg_transformer", "graphcpg",
                   "spaformer"}
    assert all(x.hours is not None for x in costs if x.basis != "cpu")
    text = ce.report(costs, dev, (1, 4), 4)
    assert "NOT met" in text or "Met with both levers" in text
    assert "cpg_transformer" in text.split("What stops it")[-1]
