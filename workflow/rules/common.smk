# Validates and expands the config (stbench.config); a bad name or parameter value fails here, before any job.
# Every function and constant the rules use lives in this file (snakemake --lint: rules files hold rules only).
from pathlib import Path

from stbench import config as cfg
from stbench.data.dataset_blocks import dataset_inputs, input_folders

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
# the environment of all the other rules (impute and ensemble use the method's own `env:`), with --use-conda
CORE_ENV = str(Path(workflow.basedir) / "envs" / "core.yaml")

# GPU slots (stbench/run/gpu_slots.py): `--resources gpu=N` becomes N x gpu_slots_per_device slots, and a
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
    if config.get("metric_definitions") == "spadit":  # SpaDiT's SSIM/JS and per-dataset AS (stbench/results/metrics/spadit.py)
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
    from stbench.run.gpu_slots import slots_requested

    return slots_requested(variant_of(wc).resources, SLOTS)


def gpu_request(wc):
    """The impute job's `gpu` resource: slots when --resources gpu=N is given (local runs), else GPUs (SLURM)."""
    return job_slots(wc) if GPU_SHARING else int(variant_of(wc).resources["gpu"])


def truth_folders(wc):
    """Folders a method's process must not see: every results run, the download cache, the dataset's raw inputs."""
    return ["results", CACHE, *input_folders(cfg.dataset_spec(config, wc.dataset), CACHE)]


# ---- the reference-augmentation protocol's settings and the impute jobs' reference (rules: reference.smk)
from stbench.data.reference_generators.protocol import parse_settings
REF_SETTINGS = parse_settings(config.get("reference_settings"))
REF_VARIANTS = [v for v in VARIANTS if v.reference_setting]


def _ref_setting(wc):
    return REF_SETTINGS.get(variant_of(wc).reference_setting) if variant_of(wc).reference_setting else None


def reference_input(wc):
    """The impute job's reference-transform report (so the transform runs first); none for the prepared reference."""
    s = _ref_setting(wc)
    return [] if s is None or s.identity else f"{R}/{wc.dataset}/references/{s.name}/seed{wc.seed}.json"


def reference_file(wc):
    """The reference file an impute job hands to its method: the setting's, else the prepared one."""
    s = _ref_setting(wc)
    if s is None or s.identity:
        return f"{R}/{wc.dataset}/reference.h5ad"
    return f"{R}/{wc.dataset}/references/{s.name}/seed{wc.seed}.h5ad"


def reference_targets():
    """The augmentation table and figure, when the config has reference settings and a reference method."""
    if not REF_VARIANTS:
        return []
    return [f"{R}/tables/reference_augmentation.csv", f"{R}/tables/reference_augmentation.md",
            f"{R}/figures/reference_augmentation.png"]


# ---- batched ensembles (rules: ensemble.smk)
from stbench.config import ensemble_groups
ENSEMBLES = ensemble_groups(config, VARIANTS)  # {(method, group): [variant, ...]}
ENSEMBLE_OF = {(m, v): g for (m, g), vs in ENSEMBLES.items() for v in vs}


def checkpoint_dir(dataset, mask, seed, method, variant):
    """A job's training checkpoints (model state only), outside the sandbox: a killed job's rerun resumes from them."""
    return f"{R}/checkpoints/{dataset}/{mask}/seed{seed}/{method}/{variant}"


def ensemble_members(wc):
    key = (wc.method, wc.group)
    if key not in ENSEMBLES:
        raise ValueError(f"no ensemble '{wc.group}' of method '{wc.method}' in the config")
    return ENSEMBLES[key]


def ensemble_record(wc):
    """An impute job's ensemble input: the record of the job that trains its variant, or nothing."""
    g = ENSEMBLE_OF.get((wc.method, wc.variant))
    return [] if g is None else f"{R}/ensembles/{wc.dataset}/{wc.mask}/seed{wc.seed}/{wc.method}/{g}.json"


def _member(wc):
    return VMAP[(wc.method, ensemble_members(wc)[0])]


def _ensemble_timeout(wc):
    """The members' limits added up (the ensemble trains them all; it never samples), or the default."""
    t = _member(wc).timeout_s
    return None if t is None else t * len(ensemble_members(wc))


def _ensemble_gpu(wc):
    """A whole device: K members in one step fill it (the H200 profile: kernels busy 21% of a one-model step)."""
    res = _member(wc).resources
    gpu = int(res.get("gpu", 0) or 0)
    return gpu * SLOTS if GPU_SHARING else gpu


# ---- the figures' and the report's inputs (rules: report.smk)
def heatmap_inputs(wc):
    seed = SEEDS[0]
    return {v.label: f"{run_dir(wc.dataset, wc.mask, seed, v.method, v.name)}/imputed.npz"
            for v in VARIANTS if v.table == "table1"}


def figure4_inputs(wc):
    """Figure 4's panels: the default variant of each method with figure4 variants (stMCDI's diffusion), then those variants."""
    seed = SEEDS[0]
    fig4 = [v for v in VARIANTS if v.figure == "figure4"]
    base = [v for v in VARIANTS if v.name == "default" and v.method in {f.method for f in fig4}]
    return {v.label: f"{run_dir(wc.dataset, wc.mask, seed, v.method, v.name)}/imputed.npz" for v in base + fig4}


RATIOS = sorted({m.ratio for m in MASKS.values()})
HAS_MASK_RATIO = len(RATIOS) >= 2


def run_files():
    return [f"{run_dir(d, m, s, v.method, v.name)}/run.json"
            for d in DATASETS for m in MASKS for s in SEEDS for v in VARIANTS]


def spatial_files():
    return [f"{R}/figures/spatial_{d}_{m}.png" for d in DATASETS for m in MASKS if d not in SWEEP]
