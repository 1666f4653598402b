"""A small report built from synthetic run files (no workflow run, no results/): a paper dataset (MOB, so
the paper comparison shows) and a simulated one, two mask ratios and two seeds, plus a dataset run with one seed
("solo", one ratio), Table 1 methods, a Table 3 ablation, a failed run and a suspect one, every figure the report
embeds, the summary across datasets, the cost totals and provenance.json."""

import json
from pathlib import Path

import numpy as np

from stbench.results.cost_table import write_cost
from stbench.results.figures import clustered_heatmap, ratio_curve
from stbench.results.provenance import write_provenance
from stbench.results.report import build_report
from stbench.results.report_figures import SPATIAL_RULE, mask_ratio_figure, spatial_maps, summary_figure
from stbench.results.tables import write_rank_summary, write_tables

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    {"method": "stmcdi", "name": "default", "label": "stMCDI", "table": "table1", "figure": "figure3", "x": 0.6},
    {"method": "stmcdi", "name": "gat", "label": "w/ GAT", "table": "table3", "figure": None, "x": None},
    {"method": "stmcdi", "name": "r2", "label": "stMCDI (r2)", "table": "none", "figure": "figure3", "x": 0.2},
    {"method": "knn", "name": "default", "label": "KNN", "table": "table1", "figure": None, "x": None},
    {"method": "mean", "name": "default", "label": "Mean", "table": "table1", "figure": None, "x": None},
    {"method": "boom", "name": "default", "label": "Boom <b>", "table": "table1", "figure": None, "x": None},
    {"method": "leak", "name": "default", "label": "Leak", "table": "table1", "figure": None, "x": None},
]
CONFIG = {"run": "small", "seeds": [0, 1]}
PCC = {"default": 0.64, "gat": 0.55, "r2": 0.6, "knn": 0.3, "mean": -0.005, "leak": 1.0}


def _write_run(root, dataset, ratio, seed, method, variant):
    d = root / dataset / f"random-{ratio:g}-all" / f"seed{seed}" / method / variant
    d.mkdir(parents=True, exist_ok=True)
    status, error = "ok", None
    if method == "boom":
        status, error = "failed", "RuntimeError: deliberate <failure> & more"
    elif method == "leak":
        status = error = "suspect: near-perfect on held-out entries"
    pcc = PCC.get(variant if method == "stmcdi" else method, 0.0) - ratio / 2 + 0.01 * seed
    mask = {"strategy": "random", "ratio": ratio, "among": "all", "n_folds": 5}
    run = {"dataset": dataset, "method": method, "variant": variant, "seed": seed, "status": status, "error": error,
           "wall_time_s": 10.0 + seed, "peak_rss_mb": 200.0, "peak_cuda_mb": 512.0 if method == "stmcdi" else None,
           "device": "NVIDIA H100" if method == "stmcdi" else "cpu", "mask": {"spec": mask}}
    metrics = {} if status == "failed" else {"pcc": pcc, "cosine": pcc / 2, "rmse": 1.4 - pcc, "mae": 1.0 - pcc / 2,
                                              "pcc_gene": pcc / 2}
    rec = {**{k: run[k] for k in ("dataset", "method", "variant", "seed", "status", "error", "wall_time_s")},
           "mask": mask, "metrics": metrics}
    (d / "run.json").write_text(json.dumps(run))
    (d / "metrics.json").write_text(json.dumps(rec))
    return d / "run.json", d / "metrics.json"


def build_small_report(tmp: Path) -> Path:
    """Write tables, figures and report.html under ``tmp``; return the report's path."""
    runs, metrics = [], []
    for ds, ratios, seeds in (("MOB", (0.1, 0.3), (0, 1)), ("sim", (0.1, 0.3), (0, 1)), ("solo", (0.1,), (0,))):
        for ratio in ratios:
            for seed in seeds:
                for v in VARIANTS:
                    r, m = _write_run(tmp / "runs", ds, ratio, seed, v["method"], v["name"])
                    runs.append(r)
                    metrics.append(m)
    protocols = {ds: {"preprocess": {}, "masks": [{"ratio": 0.1}, {"ratio": 0.3}], "seeds": [0, 1]} for ds in ("MOB", "sim")}
    protocols["solo"] = {"preprocess": {}, "masks": [{"ratio": 0.1}], "seeds": [0]}
    tables, figs = tmp / "tables", tmp / "figures"
    write_tables(metrics, VARIANTS, protocols, tables, ROOT / "results" / "paper")
    write_cost(runs, VARIANTS, tables)
    write_rank_summary(tables / "table1_long.csv", tables)
    summary_figure(tables / "summary_ranks.csv", tables / "summary.csv", figs / "summary.png")
    (tmp / "config.yaml").write_text("run: small\nseeds: [0, 1]\n")
    write_provenance(tables / "provenance.json", run="small", config=CONFIG, config_files=[tmp / "config.yaml"],
                     command_line="snakemake --configfile config.yaml", repo_dir=ROOT, protocols=protocols,
                     datasets={"sim": {"prepare": tmp / "nosuch.json"}}, run_files=runs)
    ratio_curve(tables / "figure3.csv", figs / "figure3.png")
    assert mask_ratio_figure(tables / "table1_long.csv", figs / "mask_ratio.png")
    rng = np.random.default_rng(0)
    coords = np.array([(i, j) for i in range(8) for j in range(8)], dtype=float)
    truth = rng.gamma(2.0, 1.0, size=(64, 12))
    held = rng.random((64, 12)) < 0.2
    panels = {"KNN": truth + rng.normal(0, 0.3, truth.shape), "Mean": np.tile(truth.mean(0), (64, 1))}
    clustered_heatmap(truth, held, panels, figs / "heatmap_sim_random-0.1-all.png", title="sim")
    spatial_maps(coords, truth, held, panels, [f"G{i}" for i in range(12)], figs / "spatial_sim_random-0.1-all.png")
    (tmp / "sim").mkdir(exist_ok=True)
    (tmp / "sim" / "qc.json").write_text(json.dumps({"spots_kept": 64, "genes_kept": 12, "genes_in": 20,
                                                     "genes_eligible_min_detection": 15, "zero_fraction_raw": 0.5,
                                                     "zero_fraction_selected": 0.4,
                                                     "library_size": {"median": 100.0, "min": 10.0, "max": 300.0},
                                                     "config": {"gene_selection": "cv", "n_genes": 1000,
                                                                "min_detection": 0.1}}))
    out = tmp / "report.html"
    build_report(out, run="small", protocols=protocols, tables_dir=tables, metric_files=metrics,
                 figures={"heatmaps": [figs / "heatmap_sim_random-0.1-all.png"], "figure3": [figs / "figure3.png"],
                          "summary": [figs / "summary.png"],
                          "mask_ratio": [figs / "mask_ratio.png"], "spatial": [figs / "spatial_sim_random-0.1-all.png"]},
                 datasets={"MOB": {"spec": {"recipe": "MOB"}}, "sim": {"spec": {"format": "simulate"}, "qc": tmp / "sim" / "qc.json"}},
                 spatial_rule=SPATIAL_RULE)
    return out
