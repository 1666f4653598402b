# Validates and expands the config (stbench.config); a bad name or parameter value fails here, before any job.
from pathlib import Path

from stbench import config as cfg
from stbench.dataset_blocks import dataset_inputs, input_folders

config.update(cfg.expand_sweep(cfg.with_defaults(config)))
cfg.validate(config)
SWEEP = cfg.sweep_groups(config)
RUN = config["run"]
R = f"results/{RUN}"
LOGS = f"{R}/logs"
CACHE = config["cache_dir"]
DATASETS = list(config["datasets"])
MASKS = cfg.masks(config)
SEEDS = cfg.seeds(config)
VARIANTS = cfg.variants(config)
VMAP = {(v.method, v.name): v for v in VARIANTS}
TABLES = sorted({v.table for v in VARIANTS} - {"table1", "none"})
HAS_FIGURE3 = any(v.figure == "figure3" for v in VARIANTS)
HAS_FIGURE4 = any(v.figure == "figure4" for v in VARIANTS)

# GPU slots (stbench/gpu_slots.py): `--resources gpu=N` becomes N x gpu_slots_per_device slots, and a
# GPU job asks for the slots its method block allows, so several small GPU jobs share one device.
SLOTS = int(config["gpu_slots_per_device"])
_GPU = getattr(workflow.global_resources.get("gpu"), "value", None)  # None: no --resources gpu=N (or a job's own process)
GPU_SHARING = isinstance(_GPU, int) and SLOTS > 1
if GPU_SHARING:
    workflow.register_resource("gpu", _GPU * SLOTS)


wildcard_constraints:
    dataset=r"[^/]+",
    mask=r"[^/]+",
    seed=r"\d+",
    method=r"[a-z][a-z0-9_]*",
    variant=r"[^/]+",


def run_dir(dataset, mask, seed, method, variant):
    return f"{R}/{dataset}/{mask}/seed{seed}/{method}/{variant}"


def metric_files():
    return [f"{run_dir(d, m, s, v.method, v.name)}/metrics.json"
            for d in DATASETS for m in MASKS for s in SEEDS for v in VARIANTS]


def heatmap_files():
    return [f"{R}/figures/heatmap_{d}_{m}.png" for d in DATASETS for m in MASKS if d not in SWEEP]


def figure4_files():
    """Figure 4 (App. F.1): one clustered heatmap per dataset and mask, when a variant says figure: figure4."""
    if not HAS_FIGURE4:
        return []
    return [f"{R}/figures/figure4_{d}_{m}.png" for d in DATASETS for m in MASKS if d not in SWEEP]


def table_files():
    out = [f"{R}/tables/{n}" for n in ("table1_long.csv", "table1.csv", "table1.md", "table1.tex")]
    out += [f"{R}/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
    if config.get("metric_definitions") == "spadit":  # SpaDiT's SSIM/JS and per-dataset AS (stbench/metrics/spadit.py)
        out += [f"{R}/tables/{n}.{ext}" for n in ("table1_spadit", "accuracy_score_spadit") for ext in ("csv", "md")]
    return out


def all_targets():
    out = table_files() + heatmap_files() + [f"{R}/{d}/qc.json" for d in DATASETS]
    out += [f"{R}/figures/rank_stability_{b}.png" for b in sorted(set(SWEEP.values()))]
    out += figure4_files()
    if HAS_FIGURE3:
        out.append(f"{R}/figures/figure3.png")
    out.append(f"{R}/tables/failures.csv")  # the failed/suspect/skipped summary, printed at the end (Snakefile)
    out.append(f"{R}/report.html")  # the report rule (report.smk) needs every table and figure above
    return out


def variant_of(wc):
    key = (wc.method, wc.variant)
    if key not in VMAP:
        raise ValueError(f"no variant '{wc.variant}' of method '{wc.method}' in the config")
    return VMAP[key]


def job_slots(wc):
    """GPU slots of one impute job (0 for CPU methods); the job leases them on a device when it starts."""
    from stbench.gpu_slots import slots_requested

    return slots_requested(variant_of(wc).resources, SLOTS)


def gpu_request(wc):
    """The impute job's `gpu` resource: slots when --resources gpu=N is given (local runs), else GPUs (SLURM)."""
    return job_slots(wc) if GPU_SHARING else int(variant_of(wc).resources["gpu"])


def truth_folders(wc):
    """Folders a method's process must not see: every results run, the download cache, the dataset's raw inputs."""
    return ["results", CACHE, *input_folders(cfg.dataset_spec(config, wc.dataset), CACHE)]
