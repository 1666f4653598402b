"""Cost model of a config: device-hours of every GPU impute job, and the run's wall time on N GPUs.

Each job's figure says where it comes from (``basis``):

* ``measured``: stMCDI, from the benchmark CSVs in ``benchmarks/results/`` (``bench_stmcdi.py``: training
  steps per second and denoiser seconds per 1000 spots, per device, preset and size);
* ``estimate``: CSDI from the nearest measured stMCDI shape (same denoiser code, no benchmark of its own);
  the other GPU baselines from a CPU measurement scaled by a stated factor (``gpu_job_estimates.yaml``);
* ``unmeasured``: no rate at all (reported, never guessed).

The levers (GPU slots, batched ensembles) are applied to the training time of the jobs they concern, with
their factor measured on a GPU (``stmcdi_levers_*.csv``, ``bench_stmcdi_levers.py``) or, where not, an
assumed factor shown beside the figure without it. CPU jobs (``device`` cpu) and the other rules take
seconds to minutes and are listed as such.

    stbench estimate --config config.yaml [--device "NVIDIA H100 80GB HBM3"] [--gpus 1 2 4] [--rates ...]
"""

from __future__ import annotations

import csv
import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from stbench import config as cfg
from stbench.data import datasets
from stbench.data.datasets.recipes import size_range
from stbench.config import ensemble_groups
from stbench.errors import ConfigError
from stbench.run.gpu_slots import slots_requested
from stbench.run.registry import get_method
from stbench.data.simulate import simulate_demo
# Imported inside functions on purpose: h5py (only to read a dataset's shape).

ROOT = Path(__file__).resolve().parents[2]
RATES = ROOT / "benchmarks" / "results"
DIFFUSION_METHODS = ("stmcdi", "csdi")  # methods whose cost follows the diffusion model below (bench_stmcdi.py)
ESTIMATES = RATES / "gpu_job_estimates.yaml"
KNOWN_MEMORY_GB = {"H200": 141.0, "H100": 80.0}
SUSTAINED_TFLOPS = 20.0  # a second, stated reading of the FLOP-priced jobs (report): not a measurement  # devices whose rate files name them without their memory
# kernels busy 21% of a paper-preset training step on the H200 (benchmarks/README.md): the most that filling
# the device (slots, ensembles) can give a host-bound step is 1 / 0.21
PROFILE_BUSY = 0.21
# the same profile's kernel time, 364.4 ms for 20 steps, against the unprofiled H200 rate (20.7 steps/s): if the
# kernels' own time does not shrink when jobs or members share them, filling the device gives at most this
KERNEL_BOUND = 1.0 / (0.3644 / 20 * 20.7)
GOAL_HOURS = 24.0


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
    basis: str = "unmeasured"  # measured | estimate | unmeasured | cpu | unsized
    slots: int = 0  # GPU slots of one job (stbench.run.gpu_slots); 0: a CPU job
    ensemble: int = 1  # size of the batched-ensemble group this variant belongs to (1: none)
    ensemble_on: bool = False  # whether the config's switch (`ensemble: true`) trains that group in one job
    size_from: str = ""  # where n_spots comes from when it is not a prepared file (a recipe's size: before download)
    memory_gb: float | None = None  # training state of one job where the method's cost module counts it
    flops: float | None = None  # FLOPs of one job where the method is priced by its FLOP count

    @property
    def hours(self) -> float | None:
        if self.train_s is None or self.sample_s is None:
            return None
        return self.jobs * (self.train_s + self.sample_s) / 3600


def dataset_sizes(config: dict, results_dir: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """{dataset: (spots, genes, where the numbers come from)}: a prepared file of an earlier run if there is
    one, else the recipe's ``size:`` (the upper end of a range of candidates), else its Table 4 spot count,
    with the protocol's gene number as a cap."""
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
        elif spec.get("recipe") and datasets.get_recipe(spec["recipe"]).get("size"):
            size = datasets.get_recipe(spec["recipe"])["size"]
            (lo, hi), (_, g_hi) = size_range(size["spots"]), size_range(size["genes"])
            shape = f"{hi}" if lo == hi else f"{hi} (upper end of {lo}-{hi})"
            out[name] = (hi, min(n_genes, g_hi), f"recipe {spec['recipe']} size: {shape} spots, {size['confidence']}, "
                                                  f"{size.get('folder', '')}".rstrip(", "))
        elif spec.get("recipe"):
            r = datasets.get_recipe(spec["recipe"])
            spots = int(((r.get("paper") or {}).get("table4") or {}).get("spots") or 0)
            genes = min(n_genes, int((r.get("paper") or {}).get("genes") or n_genes))
            out[name] = (spots, genes, f"recipe {spec['recipe']} (paper Table 4 spots)")
        elif spec.get("format") == "simulate":
            d = {k: v.default for k, v in inspect.signature(simulate_demo).parameters.items()}
            out[name] = (d["n_rows"] * d["n_cols"], min(n_genes, d["n_genes"]), "simulate (before gene selection)")
        else:
            out[name] = (0, n_genes, "unknown until prepared")
    return out


RATE_COLUMNS = ("device", "channels", "layers", "heads", "batch_size", "n_spots", "n_genes", "train_steps_per_s")


def load_rates(paths=None) -> list[dict]:
    """Rows of bench_stmcdi.py's CSVs: ``paths``, or every ``benchmarks/results/stmcdi_*.csv`` of that
    shape (other benchmark results there are skipped). A given CSV of another shape is an error naming it."""
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


def _rate(rates: list[dict], device: str, p: dict, n_spots: int, n_genes: int, exact: bool = True) -> dict | None:
    """The measured row for this device and model size (channels, layers, heads, batch), nearest in genes then
    spots; ``exact=False``: the row nearest in (channels, layers) on this device (another model's estimate)."""
    def same(r):
        return (r["device"] == device and int(r["channels"]) == int(p["channels"]) and int(r["layers"]) == int(p["layers"])
                and int(r["heads"]) == int(p["heads"]) and int(r["batch_size"]) == int(p["batch_size"]))
    cand = [r for r in rates if same(r)]
    if not cand and not exact:
        cand = [r for r in rates if r["device"] == device]
        if cand:
            best = min((abs(int(r["channels"]) - int(p["channels"])), abs(int(r["layers"]) - int(p["layers"]))) for r in cand)
            cand = [r for r in cand if (abs(int(r["channels"]) - int(p["channels"])),
                                        abs(int(r["layers"]) - int(p["layers"]))) == best]
    if not cand:
        return None
    return min(cand, key=lambda r: (abs(int(r["n_genes"]) - n_genes), abs(int(r["n_spots"]) - n_spots)))


def diffusion_cost(p: dict, n_spots: int, n_genes: int, rates: list[dict], device: str, exact: bool = True,
                   terms=None) -> tuple:
    """(train steps, train seconds, sampling seconds, rate used) of one stMCDI (or CSDI) fit + imputation.

    ``terms``: the method's own cost module (``methods/<name>/cost.py``: ``train_steps``, ``chain_steps``), which
    its training loop counts with too; the estimate asks it rather than repeating its formula."""
    terms = terms if terms is not None else cost_terms("stmcdi")
    steps = int(terms.train_steps(n_spots, p))
    r = _rate(rates, device, p, n_spots, n_genes, exact)
    if r is None:
        return steps, None, None, "unmeasured"
    # denoiser seconds per 1000 spots per chain step at the benchmark's sample count, scaled to ours
    per_step_1000 = float(r["ddpm_s_per_1000_spots"]) / int(r["T"]) * int(p["n_samples"]) / int(r["n_samples"])
    sample_s = per_step_1000 * int(terms.chain_steps(p)) * n_spots / 1000
    return steps, steps / float(r["train_steps_per_s"]), sample_s, f"{r['_file']}: {r['device']} {r['n_spots']}x{r['n_genes']}"


@functools.lru_cache(maxsize=None)
def cost_terms(method_name: str, methods_dir=None):
    """A method's torch-free cost module (``methods/<name>/cost.py``), imported in this process (once)."""
    return get_method(method_name, methods_dir).load_module("cost")


def load_estimates(path=None) -> dict:
    """The CPU-scaled per-job estimates of the GPU baselines (``gpu_job_estimates.yaml``)."""
    p = Path(path or ESTIMATES)
    return (yaml.safe_load(p.read_text()) or {}) if p.exists() else {}


def scaled_cost(e: dict, n_spots: int, n_genes: int) -> float:
    """GPU seconds of one job from a CPU measurement: scaled to the dataset's size, divided by the assumed GPU factor."""
    return (float(e["cpu_seconds"]) * (n_spots / float(e["ref_spots"])) ** float(e["spots_exponent"])
            * (n_genes / float(e["ref_genes"])) ** float(e["genes_exponent"]) / float(e["gpu_factor"]))


def flops_memory_gb(e: dict, v, dataset: str, n_spots: int, n_genes: int, terms) -> float:
    """GB of one job's training state (weights, gradients, optimiser, EMA) from the method's parameter count."""
    cells = int(v.params.get("max_cells") or e["reference_cells"])
    return terms.job_state_bytes(n_spots, cells, n_genes, v.params, dataset) / 1e9


def device_memory_gb(device: str) -> float | None:
    """The memory in a device's name ("NVIDIA H100 80GB HBM3" -> 80), or None."""
    m = re.search(r"(\d+)\s*GB", device)
    if m:
        return float(m.group(1))
    return next((gb for name, gb in KNOWN_MEMORY_GB.items() if name in device), None)


def flops_cost(e: dict, v, dataset: str, n_spots: int, n_genes: int, masks,
               terms) -> tuple[float, float, str, float]:
    """(train s, sample s, rate, FLOPs) of one job of a method priced by FLOPs (its cost.py's ``job_flops``, from the
    job's own parameters, given the fits the reference protocol runs: one direct pass for a gene mask, ``n_folds``
    for an entry mask), at the measured CPU rate times the assumed GPU factor."""
    p = v.params
    cells = int(p.get("max_cells") or e["reference_cells"])
    train = sample = 0.0
    for m in masks:
        if m.strategy == "gene":
            fits, n_pred = 1, max(1, round(float(m.ratio) * n_genes))
        else:
            fits, n_pred = int(p["n_folds"]), max(1, n_genes // int(p["n_folds"]))
        tr, sa = terms.job_flops(fits, n_genes - n_pred, n_pred, n_spots, cells, p, dataset, e)
        train, sample = train + tr / len(masks), sample + sa / len(masks)
    rate = float(e["cpu_gflops"]) * 1e9 * float(e["gpu_factor"])
    why = (f"FLOPs of its network at each job's own hyperparameters ({cells} reference cells"
           f"{', ASSUMED' if not p.get('max_cells') else ''}) / measured CPU {e['cpu_gflops']} GFLOP/s "
           f"x {e['gpu_factor']} (assumed GPU speed-up), {ESTIMATES.name}")
    return train / rate, sample / rate, why, train + sample


def estimate(config: dict, device: str, rate_files=None, results_dir=None, estimates=None) -> list[JobCost]:
    config = cfg.with_defaults(config)
    rates = load_rates(rate_files)
    table = load_estimates() if estimates is None else estimates
    sizes = dataset_sizes(config, results_dir)
    n_jobs = len(cfg.seeds(config)) * len(cfg.masks(config))
    k = int(config.get("gpu_slots_per_device") or 1)
    variants = cfg.variants(config)
    # the workflow's own grouping (stbench.run.ensembles, the rule in method.yaml): the jobs that `ensemble: true`
    # trains together; priced whether or not the switch is on (the report says which)
    group_of = {}
    for (m, _), names in ensemble_groups(config, variants, switch_only=False).items():
        group_of.update({(m, n): len(names) for n in names})
    switched = {m for m, block in (config.get("methods") or {}).items() if (block or {}).get("ensemble")}
    out = []
    for v in variants:
        gpu = cfg.job_device(config["device"], v.resources) != "cpu"
        for ds, (n, g, where) in sizes.items():
            jc = JobCost(ds, v.method, v.name, n_jobs, n, g, slots=slots_requested(v.resources, k) if gpu else 0,
                         ensemble=group_of.get((v.method, v.name), 1), ensemble_on=v.method in switched,
                         size_from=where if " size: " in where else "")
            if not gpu:
                jc.basis, jc.rate = "cpu", "CPU job (its method.yaml asks for no GPU)"
            elif n <= 0:  # no spot count before download (e.g. an unverified recipe): not priced, and said so
                jc.basis, jc.rate = "unsized", "dataset size unknown until it is downloaded and prepared"
            elif v.method in DIFFUSION_METHODS:
                exact = v.method == "stmcdi"
                jc.train_steps, jc.train_s, jc.sample_s, jc.rate = diffusion_cost(
                    v.params, n, g, rates, device, exact, terms=cost_terms(v.method, config.get("methods_dir")))
                if jc.train_s is not None:
                    jc.basis = "measured" if exact else "estimate"
                    if not exact:
                        jc.rate = f"nearest measured stMCDI shape ({jc.rate}); {v.method} itself not benchmarked"
            elif (table.get(v.method) or {}).get("model") == "flops":
                try:
                    jc.train_s, jc.sample_s, jc.rate, jc.flops = flops_cost(
                        table[v.method], v, ds, n, g, list(cfg.masks(config).values()),
                        cost_terms(v.method, config.get("methods_dir")))
                    jc.basis = "estimate"
                    jc.memory_gb = flops_memory_gb(table[v.method], v, ds, n, g,
                                                   cost_terms(v.method, config.get("methods_dir")))
                except ValueError as e:  # e.g. SpaDiT's paper preset on a dataset that is no Table 1 row
                    jc.rate = f"unmeasured: {e}"
            elif v.method in table:
                jc.train_s, jc.sample_s, jc.basis = scaled_cost(table[v.method], n, g), 0.0, "estimate"
                jc.rate = f"CPU measurement / {table[v.method]['gpu_factor']} (assumed GPU speed-up), {ESTIMATES.name}"
            else:
                jc.rate = "unmeasured: no GPU rate and no CPU-scaled estimate"
            out.append(jc)
    return out + reference_generator_costs(config, sizes, table)


def reference_generator_costs(config: dict, sizes: dict, table: dict) -> list[JobCost]:
    """The reference-augmentation protocol's generator jobs (workflow/rules/reference.smk: one per dataset,
    setting and seed, on the run's device): a generator at its paper settings (no preset, or ``paper``) priced
    from its entry in ``gpu_job_estimates.yaml`` (``scld``); a smaller preset, or resampling, is CPU minutes."""
    from stbench import config as cfg
    from stbench.data.reference_generators.protocol import parse_settings

    n_seeds = len(cfg.seeds(config))
    out = []
    for st in parse_settings(config.get("reference_settings")).values():
        if st.augment == "none":
            continue
        preset = (st.generator or {}).get("preset") or "paper"
        for ds, (n, g, _) in sizes.items():
            jc = JobCost(ds, f"{st.augment} (reference)", st.name, n_seeds, n, g)
            if st.augment == "resample" or preset not in ("paper", "default"):
                jc.basis, jc.rate = "cpu", f"CPU minutes ({st.augment}, preset {preset})"
            elif st.augment in table:
                e = table[st.augment]
                jc.train_s, jc.sample_s, jc.basis = scaled_cost(e, n, g), 0.0, "estimate"
                jc.rate = f"CPU measurement / {e['gpu_factor']} (assumed GPU speed-up), {ESTIMATES.name}"
            else:
                jc.rate = "unmeasured: no GPU rate and no CPU-scaled estimate"
            out.append(jc)
    return out


def devices(rate_files=None) -> list[str]:
    return sorted({r["device"] for r in load_rates(rate_files)})


@dataclass
class Lever:
    name: str
    factor: float  # on the training time of the jobs it applies to
    measured: bool
    source: str


def load_levers(device: str, paths=None) -> list[dict]:
    """Rows of ``bench_stmcdi_levers.py``'s CSVs (``stmcdi_levers_*.csv``) for this device."""
    rows = []
    for p in paths or sorted(RATES.glob("stmcdi_levers_*.csv")):
        with open(p, newline="") as fh:
            rows += [dict(r, _file=Path(p).name) for r in csv.DictReader(fh) if r.get("device") == device]
    return rows


def levers(device: str, slots_per_device: int, ensemble_size: int, rows=None) -> dict[str, Lever]:
    """Each lever's factor on training time: measured on this device where ``stmcdi_levers_*.csv`` has it
    (the row nearest in k), else assumed: the profile's host-bound step gives at most 1 / PROFILE_BUSY."""
    rows = load_levers(device) if rows is None else rows
    cap = 1.0 / PROFILE_BUSY
    out = {}
    for name, k in (("slots", slots_per_device), ("ensemble", ensemble_size)):
        got = [r for r in rows if r["lever"] == name]
        if k <= 1:
            out[name] = Lever(name, 1.0, False, "off (k = 1)")
        elif got:
            r = min(got, key=lambda r: abs(int(r["k"]) - k))
            out[name] = Lever(name, float(r["speedup"]), True,
                              f"{r['_file']}: k = {r['k']}, {r['n_spots']} x {r['n_genes']}, {r['preset']}")
        else:
            out[name] = Lever(name, min(float(k), cap), False,
                              f"assumed min(k = {k}, 1 / {PROFILE_BUSY}): kernels busy {PROFILE_BUSY:.0%} of a step (H200 profile)")
    both = max(out["slots"].factor, out["ensemble"].factor)
    out["both"] = Lever("both", min(both, cap) if both > 1 else 1.0, False,
                        "assumed: the larger of the two (both fill the same device; its kernel time is the limit)")
    return out


def device_hours(costs: list[JobCost], slots: Lever | None = None, ensemble: Lever | None = None) -> float:
    """Device-hours of the GPU jobs with a lever applied to the training of the jobs it concerns: slots to
    jobs that share a device (fewer slots than a device has), ensembles to the variants of a group."""
    total = 0.0
    for c in costs:
        if c.hours is None:
            continue
        f = 1.0
        if slots is not None and c.slots == 1:
            f = max(f, slots.factor)
        if ensemble is not None and c.ensemble > 1:
            f = max(f, ensemble.factor)
        total += c.jobs * (c.train_s / f + c.sample_s) / 3600
    return total


def longest_job_hours(c: JobCost, slots: Lever | None = None, ensemble: Lever | None = None) -> float:
    """Hours of the longest job ``c`` takes part in: its own job, or, for an ensemble member under the ensemble
    lever, the ensemble job that trains all ``c.ensemble`` members (their training, at the lever's factor)."""
    own = device_hours([c], slots, ensemble) / c.jobs
    if ensemble is not None and c.ensemble > 1:
        return max(c.sample_s / 3600, c.ensemble * c.train_s / ensemble.factor / 3600)
    return own


def wall_hours(device_h: float, longest_h: float, n_gpus: int) -> float:
    """Wall time on ``n_gpus`` devices: the device-hours spread evenly, never below the longest single job."""
    return max(device_h / max(1, n_gpus), longest_h)


def report(costs: list[JobCost], device: str, gpus=(1,), slots_per_device: int = 4, lever_rows=None) -> str:
    """Per method (summed over variants and datasets): jobs, basis, device-hours; the levers; the wall time
    for --resources gpu=N; whether the run fits the GPU-day, and if not, what stops it."""
    lines = [f"Estimated device time on {device} (every GPU job; basis: measured = benchmarks/bench_stmcdi.py rates,",
             "estimate = another model's rate or a CPU measurement / an assumed GPU factor, unmeasured = no rate)", ""]
    lines.append(f"{'method':16s} {'variant':12s} {'jobs':>5s} {'basis':10s} {'train h':>9s} {'sample h':>9s} {'total h':>9s}")
    groups: dict = {}
    for c in costs:
        groups.setdefault((c.method, c.variant), []).append(c)
    unmeasured, cpu = [], []
    per_method: dict = {}
    unsized = sorted({c.dataset for c in costs if c.basis == "unsized"})
    for (m, v), all_cs in groups.items():
        if all_cs[0].basis == "cpu":
            cpu.append(m)
            continue
        cs = [c for c in all_cs if c.basis != "unsized"]
        if not cs:
            continue
        if any(c.hours is None for c in cs):
            unmeasured.append(f"{m}/{v}")
            lines.append(f"{m:16s} {v:12s} {sum(c.jobs for c in cs):5d} {'unmeasured':10s}")
            continue
        tr = sum(c.jobs * c.train_s for c in cs) / 3600
        sa = sum(c.jobs * c.sample_s for c in cs) / 3600
        per_method[m] = per_method.get(m, 0.0) + tr + sa
        lines.append(f"{m:16s} {v:12s} {sum(c.jobs for c in cs):5d} {cs[0].basis:10s} {tr:9.1f} {sa:9.1f} {tr + sa:9.1f}")
    base = device_hours(costs)
    measured = sum(c.hours for c in costs if c.hours is not None and c.basis == "measured")
    lines += ["", f"Total for the modelled GPU jobs: {base:.1f} device-hours ({measured:.1f} measured, "
              f"{base - measured:.1f} estimated)" + (f" (unmeasured: {', '.join(unmeasured)})" if unmeasured else "")]
    rates_used = sorted({f"{c.method}: {c.rate}" for c in costs if c.hours is not None and c.basis != "measured"})
    if rates_used:
        lines += ["Estimates used:"] + [f"  {r}" for r in rates_used]
    fl = [c for c in costs if c.flops is not None]
    if fl:
        total = sum(c.jobs * c.flops for c in fl)
        lines.append(f"Priced by FLOPs ({', '.join(sorted({c.method for c in fl}))}): {total / 1e18:.1f} EFLOP in all. "
                     f"At a sustained {SUSTAINED_TFLOPS:.0f} TFLOP/s (ASSUMED: ~30% of an H100's fp32 peak, large dense "
                     f"layers) they would take {total / (SUSTAINED_TFLOPS * 1e12) / 3600:.0f} device-hours, against "
                     f"{sum(c.hours for c in fl):.0f} above at the CPU rate x the assumed factor: the GPU factor is the "
                     "estimate's largest unknown")
    cap = device_memory_gb(device)
    too_big = sorted({(c.method, c.variant, c.dataset, c.memory_gb) for c in costs
                      if cap and c.memory_gb is not None and c.memory_gb > cap})
    if too_big:
        lines.append(f"DOES NOT FIT the device's {cap:.0f} GB (training state: fp32 weights, gradients, AdamW, EMA; "
                     "the job stops with this message before it allocates):")
        by: dict = {}
        for m, v, d, gb in too_big:
            by.setdefault((m, d), []).append((v, gb))
        for (m, d), vs in sorted(by.items()):
            lo, hi = min(gb for _, gb in vs), max(gb for _, gb in vs)
            lines.append(f"  {m} on {d}: {lo:.0f}{f'-{hi:.0f}' if hi - lo >= 1 else ''} GB "
                         f"({len(vs)} variant{'s' if len(vs) > 1 else ''}: {', '.join(v for v, _ in vs)})")
    before = {c.dataset: c.size_from.split(" size: ", 1)[1] for c in costs if c.size_from}
    if before:
        lines.append("Not downloaded yet, priced at the recipe's size: (a range of candidate folders at its upper end; "
                     "estimate again after the prepare rule to price the real shape):")
        lines += [f"  {d}: {w}" for d, w in sorted(before.items())]
    if unsized:
        lines.append(f"NOT PRICED, size unknown until downloaded (the recipe gives no spot count): {', '.join(unsized)}; "
                     "run the workflow's download and prepare rules, then estimate again (it reads the prepared files)")
    if cpu:
        lines.append(f"CPU jobs (device cpu, not on the GPU; minutes per job): {', '.join(sorted(set(cpu)))}")
    lines.append("Other rules (prepare, preprocess, mask, task, evaluate, tables): seconds per job.")
    if base <= 0:
        return "\n".join(lines)
    ens_k = max((c.ensemble for c in costs), default=1)
    lv = levers(device, slots_per_device, ens_k, lever_rows)
    shared = sorted({c.method for c in costs if c.slots == 1})
    scen = {"none": device_hours(costs), "slots": device_hours(costs, slots=lv["slots"]),
            "ensemble": device_hours(costs, ensemble=lv["ensemble"]),
            "both": device_hours(costs, slots=lv["slots"], ensemble=lv["both"])}
    lines += ["", "Levers (on the training time of the jobs each concerns; sampling is unchanged):"]
    lines.append(f"  slots: {slots_per_device} per GPU, shared by {', '.join(shared) or 'no job (gpu_slots: 1 nowhere)'}: "
                 f"x{lv['slots'].factor:.2f}, {'measured on a GPU' if lv['slots'].measured else 'UNMEASURED on a GPU'} "
                 f"({lv['slots'].source}); device-h {scen['none']:.1f} without, {scen['slots']:.1f} with")
    members = sorted({f"{c.method}/{c.variant}" for c in costs if c.ensemble > 1})
    on = sorted({c.method for c in costs if c.ensemble > 1 and c.ensemble_on})
    off = sorted({c.method for c in costs if c.ensemble > 1 and not c.ensemble_on})
    n_ens = sum(c.jobs for c in costs if c.ensemble > 1 and c.ensemble_on) // max(1, ens_k)
    state = (f"ON in this config for {', '.join(on)}: {n_ens} ensemble jobs (one per dataset, mask and seed, a whole "
             "GPU each), then each member's job only samples" if on else "")
    state += ("; " if on and off else "") + (f"OFF in this config for {', '.join(off)} (`ensemble: true` in its "
                                             "method block turns it on)" if off else "")
    lines.append(f"  ensemble: groups of up to {ens_k} variants ({len(members)} variants: method.yaml's ensemble rule, "
                 f"as the workflow groups them): x{lv['ensemble'].factor:.2f}, "
                 f"{'measured on a GPU' if lv['ensemble'].measured else 'UNMEASURED on a GPU'} ({lv['ensemble'].source}); "
                 f"device-h {scen['none']:.1f} without, {scen['ensemble']:.1f} with. {state}")
    lines.append(f"  both: x{lv['both'].factor:.2f}, UNMEASURED ({lv['both'].source}); device-h {scen['both']:.1f}")
    lines.append(f"  (the profile's 21% is of the profiled wall time; against the unprofiled H200 rate its kernels are busy "
                 f"{1 / KERNEL_BOUND:.0%} of a step, so an unchanged kernel time would allow at most x{KERNEL_BOUND:.2f})")
    lines.append("  CUDA graphs / torch.compile: not built (need a GPU to build and measure)")
    longest = {}
    for name, sl, en in (("none", None, None), ("slots", lv["slots"], None), ("ensemble", None, lv["ensemble"]),
                         ("both", lv["slots"], lv["both"])):
        longest[name] = max((longest_job_hours(c, sl, en) for c in costs if c.hours is not None), default=0.0)
    lines += ["", "Wall time with --resources gpu=N (device-hours / N, at least the longest job):",
              f"  {'N':>3s} {'no lever':>10s} {'slots':>10s} {'ensemble':>10s} {'both':>10s}"]
    for n in gpus:
        lines.append(f"  {n:3d} " + " ".join(f"{wall_hours(scen[k], longest[k], n):9.1f}h" for k in scen))
    best = scen["both"]
    if best <= GOAL_HOURS:
        lines.append(f"Goal: {GOAL_HOURS:.0f} GPU-hours. Met with both levers ({best:.1f} device-hours"
                     + ("" if lv["both"].measured else "; the levers are unmeasured on a GPU") + ").")
        return "\n".join(lines)
    lines.append(f"Goal: {GOAL_HOURS:.0f} GPU-hours. NOT met: {best:.1f} device-hours with both levers "
                 f"({best / GOAL_HOURS:.1f}x the goal). What stops it, per method (device-hours without -> with both levers):")
    with_both = {}
    for c in costs:
        if c.hours is not None:
            with_both[c.method] = with_both.get(c.method, 0.0) + device_hours([c], lv["slots"], lv["both"])
    for m, h in sorted(per_method.items(), key=lambda kv: -kv[1]):
        basis = sorted({c.basis for c in costs if c.method == m})
        train = sum(c.jobs * c.train_s for c in costs if c.method == m and c.hours is not None) / 3600
        lines.append(f"  {m:16s} {h:10.1f} -> {with_both[m]:10.1f}  ({'/'.join(basis)}; training {train:.1f} h of it)")
    return "\n".join(lines)
