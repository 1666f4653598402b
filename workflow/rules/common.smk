# Expands the config into targets; all names are checked here so that a typo fails at parse time.
import json
from pathlib import Path

from stbench import config as cfg
from stbench.registry import discover

RUN = config.get("run", "default")
R = f"results/{RUN}"
CACHE = config.get("cache_dir", "resources/downloads")
DEVICE = config.get("device", "auto")
cfg.check_datasets(config)
DATASETS = list(config["datasets"])
MASKS = cfg.masks(config)
SEEDS = cfg.seeds(config)
VARIANTS = cfg.variants(config)
VMAP = {(v.method, v.name): v for v in VARIANTS}
METHODS = discover(config.get("methods_dir"))
TABLES = sorted({v.table for v in VARIANTS} - {"table1"})
HAS_FIGURE3 = any(v.figure for v in VARIANTS)


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
    return [f"{R}/figures/heatmap_{d}_{m}.png" for d in DATASETS for m in MASKS]


def table_files():
    out = [f"{R}/tables/{n}" for n in ("table1_long.csv", "table1.csv", "table1.md")]
    out += [f"{R}/tables/{t}.csv" for t in TABLES if t in ("table2", "table3")]
    return out


def all_targets():
    out = table_files() + heatmap_files() + [f"{R}/{d}/qc.json" for d in DATASETS]
    if HAS_FIGURE3:
        out.append(f"{R}/figures/figure3.png")
    return out


def variant_of(wc):
    key = (wc.method, wc.variant)
    if key not in VMAP:
        raise ValueError(f"no variant '{wc.variant}' of method '{wc.method}' in the config")
    return VMAP[key]


def protocol():
    return {"preprocess": config.get("preprocess", {}), "masks": config.get("masks", [{}]), "seeds": SEEDS}
