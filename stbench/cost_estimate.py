"""Cost model of a config: estimated device-hours of every impute job, from measured rates.

Rates are the benchmark CSVs in ``benchmarks/results/`` (``bench_stmcdi.py`` writes them:
training steps per second and denoiser seconds per 1000 spots, per device, preset and size). A job
whose rate was never measured is reported as unmeasured, never guessed. The other rules (prepare,
preprocess, mask, task, evaluate, tables) take seconds and are listed as such.

    stbench estimate --config config.yaml [--device "NVIDIA H100 80GB HBM3"] [--rates benchmarks/results/*.csv]
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATES = ROOT / "benchmarks" / "results"
DIFFUSION_METHODS = ("stmcdi",)  # methods whose cost follows the diffusion model below (bench_stmcdi.py)


@dataclass
class JobCost:
    dataset: str
    method: str
    variant: str
    jobs: int
    n_spots: int
    n_genes: int
    train_steps: int | None = None
    train_s: float | None = None
    sample_s: float | None = None
    rate: str = ""

    @property
    def hours(self) -> float | None:
        if self.train_s is None or self.sample_s is None:
            return None
        return self.jobs * (self.train_s + self.sample_s) / 3600


def dataset_sizes(config: dict, results_dir: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """{dataset: (spots, genes, where the numbers come from)}: a prepared file of an earlier run if there is
    one, else the recipe's Table 4 spot count and the protocol's gene number."""
    from stbench import config as cfg

    out = {}
    for name in config["datasets"]:
        spec = cfg.dataset_spec(config, name)
        n_genes = cfg.preprocess_config(config, name).n_genes
        pre = Path(results_dir or ROOT / "results" / config.get("run", "paper")) / name / "preprocessed.h5ad"
        if pre.exists():
            import h5py

            with h5py.File(pre, "r") as f:
                n = len(f["obs"][f["obs"].attrs.get("_index", "_index")])
                g = len(f["var"][f["var"].attrs.get("_index", "_index")])
            out[name] = (n, g, str(pre))
        elif spec.get("recipe"):
            from stbench import datasets

            r = datasets.get_recipe(spec["recipe"])
            spots = int(((r.get("paper") or {}).get("table4") or {}).get("spots") or 0)
            genes = min(n_genes, int((r.get("paper") or {}).get("genes") or n_genes))
            out[name] = (spots, genes, f"recipe {spec['recipe']} (paper Table 4 spots)")
        elif spec.get("format") == "simulate":
            import inspect

            from stbench.simulate import simulate_demo

            d = {k: v.default for k, v in inspect.signature(simulate_demo).parameters.items()}
            out[name] = (d["n_rows"] * d["n_cols"], min(n_genes, d["n_genes"]), "simulate (before gene selection)")
        else:
            out[name] = (0, n_genes, "unknown until prepared")
    return out


RATE_COLUMNS = ("device", "channels", "layers", "heads", "batch_size", "n_spots", "n_genes", "train_steps_per_s")


def load_rates(paths=None) -> list[dict]:
    """Rows of bench_stmcdi.py's CSVs: ``paths``, or every ``benchmarks/results/stmcdi_*.csv`` of that
    shape (other benchmark results there are skipped). A given CSV of another shape is an error naming it."""
    from stbench.errors import ConfigError

    given = bool(paths)
    rows = []
    for p in paths or sorted(RATES.glob("stmcdi_*.csv")):
        with open(p, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in RATE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing and not given:
                continue
            if missing:
                raise ConfigError(f"{p}: not a rates file of benchmarks/bench_stmcdi.py (no column {', '.join(missing)})")
            for r in reader:
                r["_file"] = Path(p).name
                rows.append(r)
    return rows


def _rate(rates: list[dict], device: str, p: dict, n_spots: int, n_genes: int) -> dict | None:
    """The measured row for this device and model size (channels, layers, heads, batch), nearest in genes then spots."""
    def same(r):
        return (r["device"] == device and int(r["channels"]) == int(p["channels"]) and int(r["layers"]) == int(p["layers"])
                and int(r["heads"]) == int(p["heads"]) and int(r["batch_size"]) == int(p["batch_size"]))
    cand = [r for r in rates if same(r)]
    if not cand:
        return None
    return min(cand, key=lambda r: (abs(int(r["n_genes"]) - n_genes), abs(int(r["n_spots"]) - n_spots)))


def diffusion_cost(p: dict, n_spots: int, n_genes: int, rates: list[dict], device: str) -> tuple:
    """(train steps, train seconds, sampling seconds, rate used) of one stMCDI fit + imputation."""
    # as the method's training loop counts them (methods/stmcdi/train.py total_steps): epochs, floored, capped
    steps = max(int(p["epochs"]) * max(1, math.ceil(n_spots / int(p["batch_size"]))), int(p.get("min_steps") or 0))
    if p.get("max_steps"):
        steps = min(steps, int(p["max_steps"]))
    r = _rate(rates, device, p, n_spots, n_genes)
    if r is None:
        return steps, None, None, "unmeasured"
    # denoiser seconds per 1000 spots per chain step at the benchmark's sample count, scaled to ours
    per_step_1000 = float(r["ddpm_s_per_1000_spots"]) / int(r["T"]) * int(p["n_samples"]) / int(r["n_samples"])
    chain = int(p["num_steps"]) if p["sampler"] == "ddpm" else min(int(p["sample_steps"]), int(p["num_steps"]))
    sample_s = per_step_1000 * chain * n_spots / 1000
    return steps, steps / float(r["train_steps_per_s"]), sample_s, f"{r['_file']}: {r['device']} {r['n_spots']}x{r['n_genes']}"


def estimate(config: dict, device: str, rate_files=None, results_dir=None) -> list[JobCost]:
    from stbench import config as cfg

    config = cfg.with_defaults(config)
    rates = load_rates(rate_files)
    sizes = dataset_sizes(config, results_dir)
    n_jobs = len(cfg.seeds(config)) * len(cfg.masks(config))
    out = []
    for v in cfg.variants(config):
        for ds, (n, g, _) in sizes.items():
            jc = JobCost(ds, v.method, v.name, n_jobs, n, g)
            if v.method in DIFFUSION_METHODS:
                jc.train_steps, jc.train_s, jc.sample_s, jc.rate = diffusion_cost(v.params, n, g, rates, device)
            else:
                jc.rate = "CPU baseline: not modelled (minutes per job on the demo; see results/<run>/tables/cost.csv)"
            out.append(jc)
    return out


def devices(rate_files=None) -> list[str]:
    return sorted({r["device"] for r in load_rates(rate_files)})


def report(costs: list[JobCost], device: str) -> str:
    """A plain-text table per method x variant (summed over datasets) and the grid's total."""
    lines = [f"Estimated device time on {device} (rates measured by benchmarks/bench_stmcdi.py)", ""]
    lines.append(f"{'method':10s} {'variant':12s} {'jobs':>5s} {'train steps/job':>16s} {'train h':>9s} {'sample h':>9s} {'total h':>9s}")
    groups: dict = {}
    for c in costs:
        groups.setdefault((c.method, c.variant), []).append(c)
    total, unmeasured = 0.0, []
    for (m, v), cs in groups.items():
        if m not in DIFFUSION_METHODS:
            continue
        if any(c.hours is None for c in cs):
            unmeasured.append(f"{m}/{v}")
            lines.append(f"{m:10s} {v:12s} {sum(c.jobs for c in cs):5d} {'':>16s} {'unmeasured':>9s}")
            continue
        tr = sum(c.jobs * c.train_s for c in cs) / 3600
        sa = sum(c.jobs * c.sample_s for c in cs) / 3600
        steps = round(sum(c.train_steps for c in cs) / len(cs))
        total += tr + sa
        lines.append(f"{m:10s} {v:12s} {sum(c.jobs for c in cs):5d} {steps:16d} {tr:9.1f} {sa:9.1f} {tr + sa:9.1f}")
    lines += ["", f"Total for the modelled GPU jobs: {total:.1f} device-hours"
              + (f" (unmeasured: {', '.join(unmeasured)})" if unmeasured else "")]
    others = sorted({c.method for c in costs if c.method not in DIFFUSION_METHODS})
    if others:
        lines.append(f"Not modelled (CPU baselines, minutes per job): {', '.join(others)}")
    lines.append("Other rules (prepare, preprocess, mask, task, evaluate, tables): seconds per job.")
    return "\n".join(lines)
