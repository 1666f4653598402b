"""The cost model (`stbench estimate`): device-hours from measured rates, never from guesses."""

import csv
import math

import pytest

from stbench.results import cost_estimate
from stbench.cli import main
from stbench.run.registry import get_method

FIELDS = ["device", "preset", "n_spots", "n_genes", "channels", "layers", "heads", "batch_size", "T",
          "train_steps_per_s", "n_samples", "ddpm_s_per_1000_spots"]


def _rates(path, device="GPU X", train=100.0, ddpm=2000.0, n_samples=10):
    p = get_method("stmcdi").params("quick")
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerow({"device": device, "preset": "quick", "n_spots": 600, "n_genes": 350, "channels": p["channels"],
                    "layers": p["layers"], "heads": p["heads"], "batch_size": p["batch_size"], "T": p["num_steps"],
                    "train_steps_per_s": train, "n_samples": n_samples, "ddpm_s_per_1000_spots": ddpm})
    return path


def _config(**stmcdi):
    return {"run": "costtest", "seeds": [0, 1], "datasets": {"demo": {"format": "simulate", "seed": 0}},
            "methods": {"mean": {}, "stmcdi": {"preset": "quick", **stmcdi}}}


def test_diffusion_job_cost_follows_the_measured_rates(tmp_path):
    rates = _rates(tmp_path / "r.csv")
    costs = cost_estimate.estimate(_config(), "GPU X", [rates], results_dir=tmp_path / "none")
    c = next(c for c in costs if c.method == "stmcdi")
    p = get_method("stmcdi").params("quick")
    n = c.n_spots
    steps = p["epochs"] * math.ceil(n / p["batch_size"])
    assert c.jobs == 2 and c.train_steps == steps
    assert c.train_s == pytest.approx(steps / 100.0)
    chain = min(p["sample_steps"], p["num_steps"]) if p["sampler"] == "ddim" else p["num_steps"]
    per_step = 2000.0 / p["num_steps"] * p["n_samples"] / 10
    assert c.sample_s == pytest.approx(per_step * chain * n / 1000)
    assert c.hours == pytest.approx(2 * (c.train_s + c.sample_s) / 3600)
    assert next(c for c in costs if c.method == "mean").hours is None  # CPU baselines are not modelled


def test_training_steps_follow_the_floor_and_the_cap(tmp_path):
    rates = [_rates(tmp_path / "r.csv")]

    def steps(**params):
        cfg = _config(variants={"default": {"params": params}})
        return next(c for c in cost_estimate.estimate(cfg, "GPU X", rates, tmp_path) if c.method == "stmcdi").train_steps

    per_epoch = math.ceil(600 / get_method("stmcdi").params("quick")["batch_size"])  # the demo's 600 spots
    assert steps(epochs=5, min_steps=None) == 5 * per_epoch
    assert steps(epochs=5, min_steps=400) == 400  # the quick preset's floor, as the training loop applies it
    assert steps(epochs=5, min_steps=400, max_steps=30) == 30


def test_sampling_cost_scales_with_samples_and_chain(tmp_path):
    rates = [_rates(tmp_path / "r.csv")]
    base = next(c for c in cost_estimate.estimate(_config(), "GPU X", rates, tmp_path) if c.method == "stmcdi")
    more = _config(variants={"default": {"params": {"n_samples": 2 * get_method("stmcdi").params("quick")["n_samples"]}}})
    c2 = next(c for c in cost_estimate.estimate(more, "GPU X", rates, tmp_path) if c.method == "stmcdi")
    assert c2.sample_s == pytest.approx(2 * base.sample_s) and c2.train_s == base.train_s
    ddpm = _config(variants={"default": {"params": {"sampler": "ddpm"}}})
    c3 = next(c for c in cost_estimate.estimate(ddpm, "GPU X", rates, tmp_path) if c.method == "stmcdi")
    p = get_method("stmcdi").params("quick")
    assert c3.sample_s == pytest.approx(base.sample_s * p["num_steps"] / min(p["sample_steps"], p["num_steps"]))


def test_an_unmeasured_model_size_is_reported_not_guessed(tmp_path):
    rates = [_rates(tmp_path / "r.csv")]
    cfg = _config(variants={"default": {"params": {"channels": 64}}})
    c = next(c for c in cost_estimate.estimate(cfg, "GPU X", rates, tmp_path) if c.method == "stmcdi")
    assert c.hours is None and c.rate == "unmeasured"
    assert "unmeasured: stmcdi/default" in cost_estimate.report([c], "GPU X")


def test_cli_prints_the_total_and_rejects_an_unknown_device(tmp_path, capsys):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config()))
    rates = str(_rates(tmp_path / "r.csv"))
    assert main(["estimate", "--config", str(tmp_path / "c.yaml"), "--rates", rates]) == 0
    out = capsys.readouterr().out
    assert "Total for the modelled GPU jobs" in out and "GPU X" in out
    assert main(["estimate", "--config", str(tmp_path / "c.yaml"), "--rates", rates, "--device", "TPU"]) == 2
    assert "no measured rates for device 'TPU'" in capsys.readouterr().err


def test_paper_config_is_costed_from_the_committed_rates():
    """config.yaml against the committed H100 rates: every stMCDI variant is measured."""
    import yaml

    cfg = yaml.safe_load(open(cost_estimate.ROOT / "config.yaml"))
    dev = next(d for d in cost_estimate.devices() if d != "cpu")
    costs = [c for c in cost_estimate.estimate(cfg, dev, results_dir=cost_estimate.ROOT / "no-such-run")
             if c.method == "stmcdi"]
    assert costs and all(c.hours is not None for c in costs)


def test_a_csv_that_is_not_a_rates_file_is_named(tmp_path, capsys):
    """A results CSV of another shape passed as rates gives an error naming it, not a KeyError."""
    from stbench.cli import main

    other = tmp_path / "stmcdi_other.csv"
    other.write_text("code,train_s_per_step\nreleased,13.3\n")
    (tmp_path / "c.yaml").write_text("datasets: {}\nmethods: {}\n")
    assert main(["estimate", "--config", str(tmp_path / "c.yaml"), "--rates", str(other)]) == 2
    err = capsys.readouterr().err
    assert "stmcdi_other.csv: not a rates file" in err and "no column device" in err


def test_spadit_config_is_priced_before_download_from_the_recipes_sizes(tmp_path):
    """SpaDiT's config: nothing downloaded, every GPU job priced from its recipe's size: (MG's verified 8425 spots;
    MH at the upper end of its candidate folders) and SpaDiT itself by the FLOPs of each dataset's Table 1 row."""
    import yaml

    cfg = yaml.safe_load(open(cost_estimate.ROOT / "workflow" / "spadit.yaml"))
    dev = next(d for d in cost_estimate.devices() if d != "cpu")
    costs = cost_estimate.estimate(cfg, dev, results_dir=tmp_path)
    gpu = [c for c in costs if c.basis != "cpu"]
    assert gpu and all(c.basis == "estimate" and c.hours and c.hours > 0 for c in gpu)
    size = {c.dataset: c.n_spots for c in gpu}
    assert size["MG"] == 8425 and size["MH"] == 6000 and size["ML"] == 2177 and len(size) == 10
    spadit = {c.dataset: c for c in gpu if c.method == "spadit" and c.variant == "default"}
    # MVC's row (depth 64, batch 1024, 4000 epochs) costs more than ML's (depth 8, batch 256, 2000 epochs)
    assert spadit["MVC"].train_s > spadit["ML"].train_s > 0 and spadit["MVC"].sample_s > 0
    out = cost_estimate.report(costs, dev)
    assert "NOT PRICED" not in out and "Not downloaded yet, priced at the recipe's size" in out
    assert "MH: 6000 (upper end of 603-6000) spots, weak" in out and "MG: 8425 spots, verified" in out
    # Table 1's widest rows do not fit an 80 GB device (a 10-billion-parameter network for MH), and the estimate says so
    assert spadit["MH"].memory_gb > 150 and spadit["ML"].memory_gb < 80
    fits = cost_estimate.report(costs, "NVIDIA H100 80GB HBM3")
    assert "DOES NOT FIT the device's 80 GB" in fits and "spadit on MH: " in fits and "spadit on ML" not in fits
    assert "spadit on MH" not in cost_estimate.report(costs, "a 1000GB device")
    # stDiff and SpatialScope too are priced by their networks' FLOPs, which the report totals with a second reading
    by = {c.method: c for c in gpu if c.dataset == "MC"}
    assert by["stdiff"].flops > 0 and by["spatialscope"].flops > 0 and by["tangram"].flops is None
    assert "Priced by FLOPs (spadit, spatialscope, stdiff)" in out


def test_a_dataset_of_unknown_size_is_named_not_priced_at_zero(tmp_path):
    """A dataset whose size nothing gives before it is prepared: its GPU jobs are listed as not priced (not as
    0.0 h, which would read as free)."""
    import yaml

    cfg = yaml.safe_load(open(cost_estimate.ROOT / "workflow" / "spadit.yaml"))
    cfg["datasets"] = {"mine": {"format": "h5ad", "path": str(tmp_path / "mine.h5ad")}}
    dev = next(d for d in cost_estimate.devices() if d != "cpu")
    costs = cost_estimate.estimate(cfg, dev, results_dir=tmp_path)
    gpu = [c for c in costs if c.basis != "cpu"]
    assert gpu and all(c.basis == "unsized" and c.hours is None for c in gpu)
    out = cost_estimate.report(costs, dev)
    assert "NOT PRICED, size unknown until downloaded" in out and "mine" in out
    assert not any(line.split()[3:4] == ["estimate"] for line in out.splitlines() if line.startswith("tangram"))
