"""Evidence for the `library_size` default: honest baselines under `observed` (size factors from
observed entries) and `all` (the paper: spot totals including held-out counts), on the demo section
and on the real seqFISH field 43 (../shared; skipped when absent), with the statistics cheater that
uses the `all` size factors (tests/cheaters/statistics_cheater).

    .venv/bin/python benchmarks/library_size.py   ->  benchmarks/results/library_size.csv
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from stbench.data.masks import MaskSpec, make_mask
from stbench.results.metrics import evaluate_imputation
from stbench.data.preprocess import PreprocessConfig, preprocess
from stbench.run.registry import discover
from stbench.data.task import TaskSpec, build_task, truth_on_scale

ROOT = Path(__file__).resolve().parents[1]
SEQFISH = ROOT.parent / "shared" / "data" / "seqfish_field43"
RUNS = {"Mean (per gene)": ("mean", {"axis": "gene"}), "KNN": ("knn", {}), "statistics cheater": ("statistics_cheater", {})}


def datasets():
    from stbench.data.simulate import simulate_demo

    yield "demo", simulate_demo(seed=0)[0], {}
    if (SEQFISH / "counts.csv").exists():
        from stbench.data.loaders.tables import load_tables

        yield "seqfish_field43", load_tables({"counts": str(SEQFISH / "counts.csv"), "locations": str(SEQFISH / "locations.csv")}), {"n_genes": 200}
        yield "seqfish_field43 (all 249 genes)", load_tables({"counts": str(SEQFISH / "counts.csv"), "locations": str(SEQFISH / "locations.csv")}), {"n_genes": 1000, "min_detection": 0.0}


def main():
    methods = {**discover(), **discover(ROOT / "tests" / "cheaters")}
    rows = []
    for name, adata, prep in datasets():
        pre, _ = preprocess(adata, PreprocessConfig(**prep))
        for lib in ("all", "observed"):
            for seed in (0, 1, 2):
                held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed)
                task = build_task(pre, held, train, spec=TaskSpec(library_size=lib), seed=seed)
                truth = truth_on_scale(pre, task)
                for label, (m, params) in RUNS.items():
                    out = methods[m].load_impute()(task, **methods[m].resolve(params))
                    met = evaluate_imputation(truth, out, held)["metrics"]
                    rows.append({"dataset": name, "library_size": lib, "seed": seed, "method": label,
                                 "genes": pre.n_vars, **{k: round(float(met[k]), 4) for k in ("pcc", "rmse")}})
                    print(rows[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "library_size.csv"
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
