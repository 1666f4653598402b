"""Tables and figures from synthetic metrics.json files: layout, failed rows, paper comparison."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.results.figures import ratio_curve
from stbench.results.tables import write_tables

ROOT = Path(__file__).resolve().parents[1]


def _metrics(tmp, dataset, method, variant, seed, pcc, status="ok", mask=None):
    mask = mask or {"strategy": "random", "ratio": 0.1, "among": "all"}
    f = tmp / dataset / "_".join(f"{k}{v}" for k, v in sorted(mask.items())) / f"seed{seed}" / method / variant / "metrics.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    rec = {"dataset": dataset, "method": method, "variant": variant, "seed": seed, "status": status,
           "error": None if status == "ok" else "Boom: no GPU", "wall_time_s": 1.0, "mask": mask,
           "metrics": {"pcc": pcc, "cosine": pcc / 2, "rmse": 1 - pcc, "mae": 0.5 - pcc / 4,
                       "pcc_gene": pcc, "ssim_gene": pcc, "rmse_gene": 1 - pcc, "js_gene": 0.1} if status == "ok" else {}}
    f.write_text(json.dumps(rec))
    return f


def test_tables_layout_and_paper_beside(tmp_path):
    files, variants = [], [
        {"method": "stmcdi", "name": "default", "label": "stMCDI", "table": "table1", "figure": None, "x": None},
        {"method": "stmcdi", "name": "gat", "label": "w/ GAT", "table": "table3", "figure": None, "x": None},
        {"method": "stmcdi", "name": "r2", "label": "ratio 0.2", "table": "none", "figure": "figure3", "x": 0.2},
        {"method": "stmcdi", "name": "r6", "label": "ratio 0.6", "table": "none", "figure": "figure3", "x": 0.6},
        {"method": "knn", "name": "default", "label": "KNN", "table": "table1", "figure": None, "x": None},
        {"method": "gpuonly", "name": "default", "label": "GpuOnly", "table": "table1", "figure": None, "x": None},
    ]
    for ds in ("MOB", "HBC"):
        for seed in (0, 1):
            files += [_metrics(tmp_path, ds, "stmcdi", "default", seed, 0.6 + 0.01 * seed),
                      _metrics(tmp_path, ds, "stmcdi", "gat", seed, 0.5),
                      _metrics(tmp_path, ds, "stmcdi", "r2", seed, 0.55),
                      _metrics(tmp_path, ds, "stmcdi", "r6", seed, 0.62),
                      _metrics(tmp_path, ds, "knn", "default", seed, 0.3),
                      _metrics(tmp_path, ds, "gpuonly", "default", seed, 0.0, status="failed")]
    out = tmp_path / "tables"
    protocols = {ds: {"preprocess": {"n_genes": 1000}, "masks": [{}], "seeds": [0, 1]} for ds in ("MOB", "HBC")}
    write_tables(files, variants, protocols, out, ROOT / "results" / "paper")
    t1 = pd.read_csv(out / "table1.csv", index_col=0)
    assert list(t1.index) == ["stMCDI", "KNN", "GpuOnly"]
    assert t1.loc["stMCDI", "MOB PCC"] == "0.605±0.005" and t1.loc["GpuOnly", "HBC MAE"] == "failed"
    t3 = pd.read_csv(out / "table3.csv", index_col=0)
    assert list(t3.index) == ["stMCDI (Ours)", "w/ GAT"] and t3.loc["w/ GAT", "PCC MOB"] == "0.500±0.000"
    assert not (out / "table2.csv").exists()
    cmp3 = pd.read_csv(out / "table3_vs_paper.csv")
    row = cmp3[(cmp3["row"] == "w/ GAT") & (cmp3["dataset"] == "MOB") & (cmp3["metric"] == "pcc")].iloc[0]
    assert row["paper_mean"] == 0.597 and row["ours_mean"] == 0.5
    cmp1 = pd.read_csv(out / "table1_vs_paper.csv")
    knn = cmp1[(cmp1["row"] == "KNN") & (cmp1["dataset"] == "HBC") & (cmp1["metric"] == "pcc")].iloc[0]
    assert knn["paper_mean"] == -0.371
    fig = pd.read_csv(out / "figure3.csv")
    assert sorted(fig["x"].unique()) == [0.2, 0.6]
    ratio_curve(out / "figure3.csv", tmp_path / "fig3.png")
    assert (tmp_path / "fig3.png").read_bytes()[:4] == b"\x89PNG"
    acc = pd.read_csv(out / "accuracy_score.csv")
    best = acc[acc["dataset"] == "MOB"].set_index("label")["accuracy_score"]
    assert best["stMCDI"] == best.max()
    assert "Failed, partial, skipped or suspect runs" in (out / "table1.md").read_text()


def test_skipped_rows_and_reference_gene_counts(tmp_path):
    """A reference method on a dataset without a reference says so (not failed); reference rows give k/n genes."""
    variants = [{"method": "spage", "name": "default", "label": "SpaGE", "table": "table1", "figure": None, "x": None}]
    f1 = _metrics(tmp_path, "noref", "spage", "default", 0, 0.0, status="skipped: no reference")
    f2 = _metrics(tmp_path, "demo", "spage", "default", 0, 0.7)
    rec = json.loads(f2.read_text())
    rec["method_info"] = {"reference_protocol": {"n_genes_from_reference": 340, "n_genes_held_out": 352}}
    f2.write_text(json.dumps(rec))
    protocols = {ds: {"preprocess": {}, "masks": [{}], "seeds": [0]} for ds in ("noref", "demo")}
    write_tables([f1, f2], variants, protocols, tmp_path / "t")
    t1 = pd.read_csv(tmp_path / "t" / "table1.csv", index_col=0)
    assert t1.loc["SpaGE", "noref PCC"] == "skipped: no reference" and t1.loc["SpaGE", "demo PCC"] == "0.700 (n=1)"  # no ±0.000 from one seed
    md = (tmp_path / "t" / "table1.md").read_text()
    assert "SpaGE on demo: 340/352" in md and "SpaGE on noref: skipped: no reference" in md


def _qc(genes_kept, **config):
    """A qc.json record as stbench.data.preprocess writes it."""
    return {"genes_in": 2000, "genes_kept": genes_kept, "genes_eligible_min_detection": genes_kept,
            "config": {"gene_selection": "cv", "n_genes": 1000, "min_detection": 0.1, "hvg_flavor": "seurat", **config}}


def test_a_dataset_that_overrides_scale_gets_its_own_header():
    from stbench import config as cfg
    from stbench.results.tables import protocol_text

    config = {"preprocess": {"n_genes": 500}, "masks": [{"ratio": 0.2}], "seeds": [0],
              "datasets": {"A": {"format": "simulate"}, "B": {"format": "simulate", "preprocess": {"scale": "zscore"}}},
              "methods": {"mean": {}}}
    qc = {"A": _qc(500, gene_selection="hvg", n_genes=500), "B": _qc(500, gene_selection="hvg", n_genes=500)}
    text = protocol_text(cfg.protocols(config), qc)
    a = next(line for line in text.splitlines() if line.startswith("Protocol (A)"))
    b = next(line for line in text.splitlines() if line.startswith("Protocol (B)"))
    assert "scale 'log'" in a and "scale 'zscore'" in b
    assert "500 of 2000 genes kept (highly variable (scanpy, flavor seurat), asked for up to 500" in a
    assert "ratio 0.2" in a and "library sizes from observed entries" in b


def test_header_states_the_genes_qc_json_says_were_kept_not_the_configs_n_genes(tmp_path):
    """The config asks for the top 1000 genes by CV; the preprocess step kept 352 (qc.json): the header says 352."""
    import json as _json

    variants = [{"method": "knn", "name": "default", "label": "KNN", "table": "table1", "figure": None, "x": None}]
    files = [_metrics(tmp_path, "demo", "knn", "default", 0, 0.4)]
    qc_file = tmp_path / "demo" / "qc.json"
    qc_file.write_text(_json.dumps(_qc(352, min_detection=0.05)))
    protocols = {"demo": {"preprocess": {"n_genes": 1000, "gene_selection": "cv"}, "masks": [{}], "seeds": [0]}}
    write_tables(files, variants, protocols, tmp_path / "t", qc={"demo": str(qc_file)})
    md = (tmp_path / "t" / "table1.md").read_text()
    assert "352 of 2000 genes kept (by CV (paper App. E), asked for up to 1000; qc.json)" in md
    assert "top 1000" not in md and ">= 0.05 of spots" in md  # min_detection as the step ran it, from qc.json
    tex = (tmp_path / "t" / "table1.tex").read_text()
    assert "% Protocol (demo):" in tex and "352 of 2000 genes kept" in tex


def test_rank_stability_marks_a_method_whose_rank_flips(tmp_path):
    from stbench.results.figures import rank_stability_figure
    from stbench.results.tables import collect, rank_stability, summarise

    files = []
    for proto, (a, b) in {"cv_log": (0.6, 0.3), "hvg_log": (0.2, 0.5)}.items():
        for m, v in (("knn", a), ("mean", b), ("shuffle", 0.1)):
            files.append(_metrics(tmp_path, f"demo__{proto}", m, "default", 0, v))
    variants = [{"method": m, "name": "default", "label": m.upper(), "table": "table1"} for m in ("knn", "mean", "shuffle")]
    r = rank_stability(summarise(collect(files, variants)), {"demo__cv_log": "demo", "demo__hvg_log": "demo"})
    pcc = r[r["metric"] == "pcc"].set_index(["protocol", "label"])
    assert pcc.loc[("cv_log", "KNN"), "rank"] == 1 and pcc.loc[("hvg_log", "KNN"), "rank"] == 2
    assert pcc.loc[("cv_log", "KNN"), "rank_changes"] and not pcc.loc[("cv_log", "SHUFFLE"), "rank_changes"]
    r.to_csv(tmp_path / "rs.csv", index=False)
    rank_stability_figure(tmp_path / "rs.csv", "demo", tmp_path / "rs.png")
    assert (tmp_path / "rs.png").read_bytes()[:4] == b"\x89PNG"


def test_latex_tables_booktabs_bold_best_and_never_a_failed_or_suspect_winner(tmp_path):
    variants = [{"method": m, "name": "default", "label": lab, "table": "table1", "figure": None, "x": None}
                for m, lab in (("good", "Good_1"), ("ok", "OK"), ("bad", "Bad"), ("leak", "Leak"))]
    variants.append({"method": "good", "name": "gin", "label": "w/ GIN", "table": "table3", "figure": None, "x": None})
    files = []
    for seed in (0, 1):
        files += [_metrics(tmp_path, "MOB", "good", "default", seed, 0.7 + 0.02 * seed),
                  _metrics(tmp_path, "MOB", "ok", "default", seed, 0.5),
                  _metrics(tmp_path, "MOB", "bad", "default", seed, 0.0, status="failed"),
                  _metrics(tmp_path, "MOB", "leak", "default", seed, 0.9, status="suspect: near-perfect on held-out entries"),
                  _metrics(tmp_path, "MOB", "good", "gin", seed, 0.6)]
    out = tmp_path / "tables"
    write_tables(files, variants, {"MOB": {"preprocess": {}, "masks": [{}], "seeds": [0, 1]}}, out, ROOT / "results" / "paper")
    tex = (out / "table1.tex").read_text()
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\cmidrule(lr){2-6}", "\\multicolumn{5}{c}{MOB}"):
        assert token in tex
    rows = {line.split(" & ")[0]: line.split(" & ")[1:] for line in tex.splitlines() if " & " in line and "$\\pm$" in line}
    assert set(rows) == {"Good\\_1", "OK"}  # the escaped label; failed/suspect rows print their status
    assert rows["Good\\_1"][0] == "\\textbf{0.710 $\\pm$ 0.010}"  # PCC: higher is better
    assert rows["Good\\_1"][3] == "\\textbf{0.290 $\\pm$ 0.010}"  # RMSE: lower is better
    assert rows["OK"][3] == "0.500 $\\pm$ 0.000"
    # a failed or suspect row says so once, in one cell spanning the dataset's columns
    assert "Leak & \\multicolumn{5}{c}{suspect}" in tex and "Bad & \\multicolumn{5}{c}{failed}" in tex
    t3 = (out / "table3.tex").read_text()
    assert "stMCDI (Ours) & \\textbf{0.710 $\\pm$ 0.010}" in t3 and "w/ GIN & 0.600 $\\pm$ 0.000" in t3


def test_best_is_decided_by_a_margin_larger_than_the_seeds_spread():
    from stbench.results.tables import best_cells, spans

    def rec(mean, std, n, status="ok"):
        return {"mean": mean, "std": std, "n_seeds": n, "status": status}

    # 0.70±0.02 vs 0.69±0.03: the lead (0.01) is within the spread: both bold; 0.60±0.01 is not
    assert best_cells([rec(0.70, 0.02, 3), rec(0.69, 0.03, 3), rec(0.60, 0.01, 3)], "pcc") == [True, True, False]
    # lower is better for RMSE; a failed or suspect cell never wins, whatever its number
    assert best_cells([rec(0.3, 0.0, 2), rec(0.1, 0.0, 2, "suspect: x"), rec(0.5, 0.0, 2)], "rmse") == [True, False, False]
    # one seed: no spread to judge, so only the printed best (ties included) is bold
    assert best_cells([rec(0.7001, 0.0, 1), rec(0.6996, 0.0, 1), rec(0.69, 0.0, 1)], "pcc") == [True, True, False]
    assert best_cells([rec(0.7, 0.0, 1), rec(0.69, 0.05, 3)], "pcc") == [True, False]
    assert best_cells([rec(0.7, 0.0, 2)], "no_such_metric") == [False]  # unknown direction: no best
    cells = [{"mean": np.nan, "status": "skipped: no reference", "text": "skipped: no reference"}] * 3 + [
        {"mean": 0.5, "status": "ok", "text": "0.500"}, {"mean": np.nan, "status": "failed: x", "text": "failed"}]
    merged = spans(cells, [("A", 3), ("B", 2)])
    assert [(c["text"], c["span"]) for c in merged] == [("skipped: no reference", 3), ("0.500", 1), ("failed", 1)]


def test_a_metric_the_tables_do_not_know_gets_its_own_name_and_no_best(tmp_path):
    from stbench.results.tables import _table1_cells, cell_grid, collect, summarise, table1_wide

    files = []
    for m, v in (("knn", 0.6), ("mean", 0.2)):
        f = _metrics(tmp_path, "demo", m, "default", 0, v)
        rec = json.loads(f.read_text())
        rec["metrics"]["my_metric"] = v
        f.write_text(json.dumps(rec))
        files.append(f)
    variants = [{"method": m, "name": "default", "label": m.upper(), "table": "table1"} for m in ("knn", "mean")]
    s = summarise(collect(files, variants))
    wide = table1_wide(s, metrics=("pcc", "my_metric"))
    assert list(wide.columns) == ["demo PCC", "demo my_metric"] and wide.loc["KNN", "demo my_metric"] == "0.600 (n=1)"
    grid = cell_grid(*_table1_cells(s, ("pcc", "my_metric")))
    assert grid["columns"] == ["PCC", "my_metric"]
    knn = grid["rows"][0]["cells"]
    assert knn[0]["best"] and not knn[1]["best"]  # no known direction: no best value claimed


def test_masks_that_differ_only_in_fraction_or_n_folds_get_their_own_rows_keyed_on_mask_spec_id(tmp_path):
    """One identity: MaskSpec.id names the mask in the config, the tables (rows, long CSV, paper comparison) and the
    report's blocks, so two masks that differ only in ``fraction`` (or ``n_folds``) are never averaged together."""
    from dataclasses import asdict

    from stbench import config as cfg
    from stbench.results.report import paper_comparison, results_grids

    specs = list(cfg.masks({"masks": [{"strategy": "countsplit"}, {"strategy": "countsplit", "fraction": 0.5},
                                      {"strategy": "inductive"}, {"strategy": "inductive", "n_folds": 3}]}).values())
    ids = [m.id for m in specs]
    assert ids == ["countsplit-0.1-all-p0.9", "countsplit-0.1-all-p0.5", "inductive-0.1-all-k5", "inductive-0.1-all-k3"]
    variants = [{"method": "knn", "name": "default", "label": "KNN", "table": "table1", "figure": None, "x": None}]
    files = [_metrics(tmp_path, "MOB", "knn", "default", seed, 0.1 * (i + 1) + 0.01 * seed, mask=asdict(m))
             for i, m in enumerate(specs) for seed in (0, 1)]
    protocols = {"MOB": {"preprocess": {}, "masks": [asdict(m) for m in specs], "seeds": [0, 1]}}
    out = tmp_path / "t"
    write_tables(files, variants, protocols, out, ROOT / "results" / "paper")
    t1 = pd.read_csv(out / "table1.csv", index_col=[0, 1])
    assert list(t1.index) == [(i, "KNN") for i in ids]  # four rows, one per mask, not two averaged pairs
    assert [t1.loc[(i, "KNN"), "MOB PCC"] for i in ids] == ["0.105±0.005", "0.205±0.005", "0.305±0.005", "0.405±0.005"]
    long = pd.read_csv(out / "table1_long.csv")
    assert list(dict.fromkeys(long["mask"])) == ids
    assert list(dict.fromkeys(long["mask_family"])) == [m.family for m in specs]
    assert list(dict.fromkeys(pd.read_csv(out / "table1_vs_paper.csv")["mask"])) == ids
    assert [r["block"] for r in results_grids(out / "table1_long.csv")["table1"]["rows"]] == ids
    assert [r["block"] for r in paper_comparison(out / "table1_vs_paper.csv")["rows"]] == ids
    header = (out / "table1.md").read_text()
    assert all(i in header for i in ids) and "3 spot folds" in header
