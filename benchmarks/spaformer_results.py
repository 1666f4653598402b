"""The numbers of methods/spaformer/README.md's Results: SpaFormer presets and variants beside the per-gene
Mean and KNN, random 10% masks (mask seeds 0-2, task seed 0), log scale, on the demo section and on the real
seqFISH field 43 (../shared; skipped when absent).

    .venv/bin/python benchmarks/spaformer_results.py [--variants quick,pe-none,...] [--datasets demo,seqfish_field43]
        -> benchmarks/results/spaformer.csv (one row per dataset x mask seed x run)

The README's first tables come from the default run list; ``--variants all`` adds the mask-0 variants table
and ``paper`` (the defaults: up to 3000 epochs, hours on a CPU).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from stbench.data.masks import MaskSpec, make_mask
from stbench.kit.methodkit import torch_threads
from stbench.results.metrics import evaluate_imputation
from stbench.data.preprocess import PreprocessConfig, preprocess
from stbench.run.registry import discover
from stbench.data.task import build_task, truth_on_scale

ROOT = Path(__file__).resolve().parents[1]
SEQFISH = ROOT.parent / "shared" / "data" / "seqfish_field43"
# run label -> (method, preset, overrides, mask seeds)
RUNS = {
    "Mean (per gene)": ("mean", "quick", {"axis": "gene"}, (0, 1, 2)),
    "KNN (k=5)": ("knn", "quick", {"k": 5}, (0, 1, 2)),
    "quick": ("spaformer", "quick", {}, (0, 1, 2)),
    "quick + pe: none": ("spaformer", "quick", {"pe": "none"}, (0, 1, 2)),
    "quick + pe: sinu": ("spaformer", "quick", {"pe": "sinu"}, (0, 1, 2)),
}
VARIANTS = {  # the README's mask-0 table
    "upstream settings capped at 40 epochs": ("spaformer", None, {"max_epoch": 40, "patience": None}, (0,)),
    "quick + pe: mlp": ("spaformer", "quick", {"pe": "mlp"}, (0,)),
    "quick + attention: full": ("spaformer", "quick", {"attention": "full"}, (0,)),
    "quick + mask_rescale: false": ("spaformer", "quick", {"mask_rescale": False}, (0,)),
    "quick + loss_entries: hidden": ("spaformer", "quick", {"loss_entries": "hidden"}, (0,)),
    "quick + fill: gene_mean": ("spaformer", "quick", {"fill": "gene_mean"}, (0,)),
    "quick + init_gene_mean: false": ("spaformer", "quick", {"init_gene_mean": False}, (0,)),
    "paper (defaults)": ("spaformer", None, {}, (0, 1, 2)),
}


def datasets(names):
    from stbench.data.simulate import simulate_demo

    if "demo" in names:
        yield "demo", simulate_demo(seed=0)[0], {}
    if "seqfish_field43" in names and (SEQFISH / "counts.csv").exists():
        from stbench.data.loaders.tables import load_tables

        yield "seqfish_field43", load_tables({"counts": str(SEQFISH / "counts.csv"),
                                              "locations": str(SEQFISH / "locations.csv")}), {"n_genes": 200}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="", help="comma-separated labels of VARIANTS to add, or 'all'")
    ap.add_argument("--datasets", default="demo,seqfish_field43")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spaformer.csv"))
    a = ap.parse_args(argv)
    runs = dict(RUNS)
    extra = list(VARIANTS) if a.variants == "all" else [v for v in a.variants.split(",") if v]
    runs.update({k: VARIANTS[k] for k in extra})
    methods = discover()
    rows = []
    for name, adata, prep in datasets(a.datasets.split(",")):
        pre, _ = preprocess(adata, PreprocessConfig(**prep))
        for mask_seed in (0, 1, 2):
            held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec("random", 0.1), seed=mask_seed)
            for label, (m, preset, over, seeds) in runs.items():
                if mask_seed not in seeds:
                    continue
                task = build_task(pre, held, train, seed=0, device="cpu")
                with torch_threads(1):
                    out = methods[m].load_impute()(task, **methods[m].params(preset, over))
                met = evaluate_imputation(truth_on_scale(pre, task), out, held)["metrics"]
                rows.append({"dataset": name, "mask_seed": mask_seed, "run": label,
                             **{k: round(float(met[k]), 4) for k in ("pcc", "rmse", "pcc_gene")}})
                print(rows[-1], flush=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
