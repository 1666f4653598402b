"""Tables and figures from synthetic metrics.json files: layout, failed rows, paper comparison."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.figures import ratio_curve
from stbench.tables import write_tables

ROOT = Path(__file__).resolve().parents[1]


def _metrics(tmp, dataset, method, variant, seed, pcc, status="ok"):
    f = tmp / dataset / f"seed{seed}" / method / variant / "metrics.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    rec = {"dataset": dataset, "method": method, "variant": variant, "seed": seed, "status": status,
           "error": None if status == "ok" else "Boom: no GPU", "wall_time_s": 1.0,
           "mask": {"strategy": "random", "ratio": 0.1, "among": "all"},
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


def test_a_dataset_that_overrides_scale_gets_its_own_header():
    from stbench import config as cfg
    from stbench.tables import protocol_text

    config = {"preprocess": {"n_genes": 500}, "masks": [{"ratio": 0.2}], "seeds": [0],
              "datasets": {"A": {"format": "simulate"}, "B": {"format": "simulate", "preprocess": {"scale": "zscore"}}},
              "methods": {"mean": {}}}
    text = protocol_text(cfg.protocols(config))
    a = next(line for line in text.splitlines() if line.startswith("Protocol (A)"))
    b = next(line for line in text.splitlines() if line.startswith("Protocol (B)"))
    assert "scale 'log'" in a and "scale 'zscore'" in b and "top 500 highly variable genes" in a and "top 500" in b
    assert "ratio 0.2" in a and "library sizes from observed entries" in b


def test_rank_stability_marks_a_method_whose_rank_flips(tmp_path):
    from stbench.figures import rank_stability_figure
    from stbench.tables import collect, rank_stability, summarise

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
    from stbench.tables import best_cells, spans

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
    from stbench.tables import _table1_cells, cell_grid, collect, summarise, table1_wide

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
