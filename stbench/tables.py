"""Tables: tidy long results, Table 1 in the paper's layout, the Table 2/3 ablations, Figure 3
data, each with the paper's numbers beside ours where the dataset is one of the paper's.

Each table names its protocol (preprocessing, gene filter, scale, mask strategy, among, ratio):
the same method can move from PCC 0 to 0.6 on a real section with nothing but those changed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.atomic import write_csv, write_text

MAIN = ("pcc", "cosine", "rmse", "mae")  # the paper's metrics (App. D), flattened over held-out entries
TABLE1 = ("pcc", "pcc_gene", "cosine", "rmse", "mae")  # + the per-gene PCC, which gene levels alone do not earn
NAMES = {"pcc": "PCC", "cosine": "Cosine", "rmse": "RMSE", "mae": "MAE", "pcc_gene": "PCC (gene median)",
         "cosine_gene": "Cosine (gene median)", "rmse_gene": "RMSE (gene median)", "mae_gene": "MAE (gene median)",
         "ssim_gene": "SSIM (gene median)", "js_gene": "JS (gene median)", "pcc_spadit": "PCC (SpaDiT, gene mean)",
         "ssim_spadit": "SSIM (SpaDiT, gene mean)", "rmse_spadit": "RMSE (SpaDiT, gene mean)",
         "js_spadit": "JS (SpaDiT, gene mean)"}
DEFINITIONS_TEXT = {
    "spatialbenchmarking": "Metric definitions: spatialbenchmarking (SSIM on per-gene max-scaled vectors, JS divergence "
                           "of normalised vectors, gene medians; stbench/metrics/imputation.py).",
    "spadit": "Metric definitions: spadit (SpaDiT's cal_baseline.py: SSIM on raw values with L = the larger maximum, "
              "JS = scipy's Jensen-Shannon distance on raw vectors, gene means; AS = mean rank per dataset, "
              "N = best; stbench/metrics/spadit.py). Flattened PCC/RMSE columns are the paper's App. D metrics."}
PAPER_DATASETS = ("MOB", "HBC", "HP", "HO", "ML", "MK")
PAPER_NAMES = {"CpG Transformer": "CpG"}  # our label -> the paper's row name, where they differ


def _ref_genes(rec: dict):
    """'k/n': of the n genes with held-out entries, k were predicted from the reference (reference methods)."""
    info = ((rec.get("method_info") or {}).get("reference_protocol") or {})
    if "n_genes_from_reference" not in info:
        return None
    return f"{info['n_genes_from_reference']}/{info['n_genes_held_out']}"


def collect(metric_files, variants: list[dict]) -> pd.DataFrame:
    """One row per (run, metric): dataset, mask, seed, method, variant, label, table, status, value."""
    info = {(v["method"], v["name"]): v for v in variants}
    rows = []
    for f in metric_files:
        rec = json.loads(Path(f).read_text())
        v = info.get((rec["method"], rec["variant"]), {})
        mask = rec.get("mask") or {}
        base = {"dataset": rec["dataset"], "mask_strategy": mask.get("strategy"), "ratio": mask.get("ratio"),
                "among": mask.get("among"), "seed": rec["seed"], "method": rec["method"], "variant": rec["variant"],
                "label": v.get("label", f"{rec['method']} ({rec['variant']})"), "table": v.get("table", "table1"),
                "figure": v.get("figure"), "x": v.get("x"), "status": rec.get("status"), "error": rec.get("error"),
                "wall_time_s": rec.get("wall_time_s"), "ref_genes": _ref_genes(rec),
                "isolation": rec.get("isolation") or "unknown"}
        metrics = rec.get("metrics") or {}
        if rec.get("status") != "ok" or not metrics:
            rows.extend({**base, "metric": k, "value": np.nan} for k in TABLE1)
            continue
        for k, val in metrics.items():
            rows.append({**base, "metric": k, "value": np.nan if val is None else float(val)})
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds; status 'ok', 'failed: <error>', 'partial (k/n failed)' or 'suspect: ...'."""
    keys = ["dataset", "mask_strategy", "ratio", "among", "method", "variant", "label", "table", "figure", "x", "metric"]

    def agg(g):
        ok = g["status"] == "ok"
        vals = g.loc[ok, "value"].dropna()
        n_seeds = g["seed"].nunique()
        n_failed = g.loc[~ok, "seed"].nunique()
        suspect = g["status"].astype(str).str.startswith("suspect")
        if suspect.any():  # one near-perfect seed makes the whole row suspect: it never wins a column
            status = str(g.loc[suspect, "status"].iloc[0])
            vals = vals.iloc[:0]
        elif g.loc[~ok, "status"].astype(str).str.startswith("skipped").all() and n_failed == n_seeds:
            status = str(g.loc[~ok, "status"].iloc[0])  # e.g. "skipped: no reference": not run, not failed
        elif n_failed == n_seeds:
            status = "failed: " + str(g.loc[~ok, "error"].iloc[0])
        elif n_failed:
            status = f"partial ({n_failed}/{n_seeds} seeds failed)"
        else:
            status = "ok"
        return pd.Series({"mean": vals.mean() if len(vals) else np.nan,
                          "std": vals.std(ddof=0) if len(vals) > 1 else (0.0 if len(vals) == 1 else np.nan),
                          "n_seeds": int(len(vals)), "status": status,
                          "wall_time_s": g["wall_time_s"].mean(),
                          "ref_genes": g["ref_genes"].dropna().iloc[0] if g["ref_genes"].notna().any() else None})

    return df.groupby(keys, dropna=False, sort=False).apply(agg, include_groups=False).reset_index()


def _fmt(mean, std, status="ok") -> str:
    if isinstance(status, str) and status.startswith("skipped"):
        return status
    if isinstance(status, str) and status.startswith(("failed", "suspect")):
        return status.split(":")[0]
    if not np.isfinite(mean):
        return "NaN"
    return f"{mean:.3f}±{std:.3f}"


def _table1_cells(summary: pd.DataFrame, metrics=TABLE1):
    """Table 1's cells (one row per method x dataset x metric), its row index and its column order."""
    s = summary[(summary["table"] == "table1") & summary["metric"].isin(metrics)].copy()
    s["mask"] = s["mask_strategy"].astype(str) + "-" + s["ratio"].astype(str) + "-" + s["among"].astype(str)
    s["col"] = s["dataset"] + " " + s["metric"].map(NAMES)
    index = ["mask", "label"] if s["mask"].nunique() > 1 else ["label"]
    have = set(zip(s["dataset"], s["metric"]))
    cols = [(d, m) for d in dict.fromkeys(s["dataset"]) for m in metrics if (d, m) in have]
    return s, index, cols, "dataset"


def _ablation_cells(summary: pd.DataFrame, table: str, metrics=MAIN):
    """Table 2 or 3's cells: the method's default row as 'stMCDI (Ours)' plus every variant reported in ``table``."""
    abl = summary[(summary["table"] == table) & summary["metric"].isin(metrics)]
    if abl.empty:
        return abl, ["label"], [], "metric"
    methods = abl["method"].unique()
    ref = summary[summary["method"].isin(methods) & (summary["variant"] == "default") & summary["metric"].isin(metrics)].copy()
    ref["label"] = "stMCDI (Ours)"
    s = pd.concat([ref, abl])
    s["col"] = s["metric"].map(NAMES) + " " + s["dataset"]
    have = set(zip(s["dataset"], s["metric"]))
    cols = [(d, m) for m in metrics for d in dict.fromkeys(s["dataset"]) if (d, m) in have]
    return s, ["label"], cols, "metric"


def _wide(s: pd.DataFrame, index, cols, group_by) -> pd.DataFrame:
    """The CSV/Markdown layout: 'mean±std' strings, columns '<dataset> <Metric>' (or '<Metric> <dataset>')."""
    if s.empty:
        return pd.DataFrame()
    s = s.copy()
    s["cell"] = [_fmt(m, d, st) for m, d, st in zip(s["mean"], s["std"], s["status"])]
    wide = s.pivot_table(index=index, columns="col", values="cell", aggfunc="first", sort=False)
    names = [f"{d} {NAMES[m]}" if group_by == "dataset" else f"{NAMES[m]} {d}" for d, m in cols]
    return wide[[n for n in names if n in wide.columns]]


def table1_wide(summary: pd.DataFrame, metrics=TABLE1) -> pd.DataFrame:
    """The paper's layout: methods x (dataset, metric), 'mean±std'; one block per mask if several."""
    return _wide(*_table1_cells(summary, metrics))


def ablation_wide(summary: pd.DataFrame, table: str, metrics=MAIN) -> pd.DataFrame:
    """Table 2 or 3: the method's default row as 'stMCDI (Ours)' plus every variant reported in ``table``."""
    return _wide(*_ablation_cells(summary, table, metrics))


HIGHER_IS_BETTER = {"pcc", "cosine", "pcc_gene", "cosine_gene", "ssim_gene"}
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def tex_escape(text) -> str:
    return "".join(_TEX.get(c, c) for c in str(text))


def _wins(rec) -> bool:
    """A cell that may be best in its column: a finite mean, not failed, not suspect."""
    return (rec is not None and not str(rec["status"]).startswith(("failed", "suspect"))
            and bool(np.isfinite(rec["mean"])))


def cell_grid(s: pd.DataFrame, index, cols, group_by) -> dict:
    """What every format of a results table shows (LaTeX here, HTML in stbench.report): the header groups,
    the column names, and per row its cells {mean, std, status, text, best}. The best value of each column
    is marked (failed and suspect runs never win; judged on the printed, rounded value, so ties all win).
    ``cols`` are (dataset, metric) pairs; the first header row groups consecutive columns by ``group_by``."""
    cell = {(tuple(r[i] for i in index), (r["dataset"], r["metric"])): r for _, r in s.iterrows()}
    rows = list(dict.fromkeys(tuple(r) for r in s[index].itertuples(index=False)))
    best = {}
    for c in cols:
        vals = [round(float(cell[(r, c)]["mean"]), 3) for r in rows if _wins(cell.get((r, c)))]
        if vals:
            best[c] = max(vals) if c[1] in HIGHER_IS_BETTER else min(vals)
    g_of, sub_of = (lambda c: c[0], lambda c: NAMES[c[1]]) if group_by == "dataset" else (lambda c: NAMES[c[1]], lambda c: c[0])
    groups = [(g, len(list(grp))) for g, grp in itertools.groupby(cols, key=g_of)]
    body = []
    for r in rows:
        cells = []
        for c in cols:
            rec = cell.get((r, c))
            if rec is None:
                cells.append({"mean": np.nan, "std": np.nan, "status": "", "text": "--", "best": False})
                continue
            status = str(rec["status"])
            ok = np.isfinite(rec["mean"]) and not status.startswith(("failed", "suspect"))
            cells.append({"mean": rec["mean"], "std": rec["std"], "status": status,
                          "text": status.split(":")[0] if status.startswith(("failed", "suspect"))
                          else status if status.startswith("skipped")
                          else (_fmt(rec["mean"], rec["std"]) if ok else "--"),
                          "best": bool(ok and best.get(c) == round(float(rec["mean"]), 3))})
        body.append({"key": r, "block": r[0] if len(index) > 1 else None, "label": r[-1], "cells": cells})
    return {"groups": groups, "columns": [sub_of(c) for c in cols], "rows": body}


def to_latex(s: pd.DataFrame, index, cols, group_by, caption: str = "", label: str = "") -> str:
    """A booktabs table: mean $\\pm$ std per cell, the best value of each column in bold (``cell_grid``)."""
    if s.empty:
        return ""
    grid = cell_grid(s, index, cols, group_by)

    def fmt(c):
        if c["text"] in ("failed", "suspect", "--") or not np.isfinite(c["mean"]):
            return c["text"]
        text = f"{c['mean']:.3f} $\\pm$ {c['std']:.3f}"
        return f"\\textbf{{{text}}}" if c["best"] else text

    head1, rules, start = [""], [], 2
    for g, n in grid["groups"]:
        head1.append(f"\\multicolumn{{{n}}}{{c}}{{{tex_escape(g)}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    head2 = ["Method"] + [tex_escape(c) for c in grid["columns"]]
    lines = ["% needs \\usepackage{booktabs} and \\usepackage{graphicx}", "\\begin{table}[ht]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{tex_escape(caption)}}}")
    if label:
        lines.append(f"\\label{{{label}}}")
    lines += ["\\resizebox{\\linewidth}{!}{%", f"\\begin{{tabular}}{{l{'r' * len(cols)}}}", "\\toprule",
              " & ".join(head1) + " \\\\", " ".join(rules), " & ".join(head2) + " \\\\", "\\midrule"]
    block = None
    for r in grid["rows"]:
        if r["block"] is not None and r["block"] != block:
            if block is not None:
                lines.append("\\midrule")
            block = r["block"]
            lines.append(f"\\multicolumn{{{len(cols) + 1}}}{{l}}{{\\emph{{{tex_escape(block)}}}}} \\\\")
        lines.append(" & ".join([tex_escape(r["label"])] + [fmt(c) for c in r["cells"]]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def beside_paper(summary: pd.DataFrame, paper_dir, table: str) -> pd.DataFrame:
    """Our mean beside the paper's number, for the paper's datasets (empty if none are present)."""
    paper_dir = Path(paper_dir)
    s = summary[summary["dataset"].isin(PAPER_DATASETS) & summary["metric"].isin(MAIN)]
    if s.empty or not (paper_dir / f"{table}.csv").exists():
        return pd.DataFrame()
    paper = pd.read_csv(paper_dir / f"{table}.csv")
    if table == "table1":
        ours = s[s["table"] == "table1"].copy()
        ours["row"] = ours["label"].replace(PAPER_NAMES)
        # stMCDI's row label names the reading ("stMCDI (target: values)"); the paper has one stMCDI row
        ours.loc[(ours["method"] == "stmcdi") & (ours["variant"] == "default"), "row"] = "stMCDI"
        paper = paper.rename(columns={"method": "row", "mean": "paper_mean", "std": "paper_std"})
    else:
        ours = s[s["table"] == table].copy()
        ours["row"] = ours["label"]
        ref = s[s["method"].isin(ours["method"].unique()) & (s["variant"] == "default")].copy()
        ref["row"] = "stMCDI (Ours)"
        ours = pd.concat([ref, ours])
        paper = paper.rename(columns={"value": "paper_mean"})
    merged = ours.merge(paper, on=["row", "dataset", "metric"], how="left")
    keep = ["row", "dataset", "mask_strategy", "ratio", "among", "metric", "mean", "std", "n_seeds", "status",
            "paper_mean"] + (["paper_std"] if "paper_std" in merged else [])
    return merged[keep].rename(columns={"mean": "ours_mean", "std": "ours_std"})


def _selection_text(pre) -> str:
    return {"cv": f"top {pre.n_genes} genes by CV (paper App. E)",
            "hvg": f"top {pre.n_genes} highly variable genes (scanpy, flavor {pre.hvg_flavor})",
            "mean": f"top {pre.n_genes} genes by mean expression", "all": "every gene",
            "list": f"the genes listed in {pre.gene_list}"}[pre.gene_selection]


def protocol_text(protocols: dict) -> str:
    """The protocol of each dataset (resolved per dataset), grouped where datasets share one."""
    from stbench.masks import MaskSpec
    from stbench.preprocess import PreprocessConfig

    groups: dict[str, list[str]] = {}
    for dataset, p in protocols.items():
        pre = PreprocessConfig.from_dict(p["preprocess"])
        masks = "; ".join(f"{m.strategy} mask, ratio {m.ratio:g}, among {m.among}" + (
            f" (count splitting: input half = binomial thinning at {m.fraction:g}, scored against the target half "
            f"rescaled by {m.fraction:g}/{1 - m.fraction:g})" if m.strategy == "countsplit" else "")
            for m in (MaskSpec.from_dict(x) for x in p["masks"]))
        text = (f"log-normalised to the median spot total (paper Eq. 41) with library sizes from "
                f"{'observed entries only' if pre.library_size == 'observed' else 'all entries (the paper; includes held-out counts)'}, "
                f"{_selection_text(pre)} among genes detected in >= {pre.min_detection:g} of spots, "
                f"scale '{pre.scale}'{' (statistics from observed entries)' if pre.scale == 'zscore' else ''}; "
                f"held-out entries: {masks}; seeds: {p['seeds']}")
        groups.setdefault(text, []).append(dataset)
    lines = [f"Protocol ({', '.join(ds)}): {text}." for text, ds in groups.items()]
    return "\n".join(lines) + ("\nPCC, Cosine, RMSE, MAE over all held-out entries flattened (paper App. D); PCC (gene median): the median "
                                 "over genes of each gene's PCC over its held-out entries; mean±std over seeds.")


def isolation_text(metric_files) -> str:
    """Which isolation level (stbench/sandbox.py) the runs behind a table ran under, named in its header."""
    levels: dict[str, list[str]] = {}
    for f in metric_files:
        rec = json.loads(Path(f).read_text())
        levels.setdefault(rec.get("isolation") or "unknown", []).append(f"{rec.get('method')} ({rec.get('variant')})")
    if not levels:
        return ""
    if len(levels) == 1:
        return f"Method isolation: {next(iter(levels))} (every run; README: the method boundary)."
    parts = [f"{lvl} ({len(runs)} runs{': ' + ', '.join(sorted(set(runs))) if lvl != 'bwrap' else ''})"
             for lvl, runs in sorted(levels.items())]
    return "Method isolation differs between runs: " + "; ".join(parts) + " (README: the method boundary)."


def accuracy_scores(summary: pd.DataFrame) -> pd.DataFrame:
    """SpaDiT's Accuracy Score per dataset and mask over the Table 1 methods."""
    from stbench.metrics import accuracy_score

    s = summary[(summary["table"] == "table1")]
    rows = []
    for (ds, strat, ratio, among), g in s.groupby(["dataset", "mask_strategy", "ratio", "among"], dropna=False):
        t = {lab: dict(zip(gg["metric"], gg["mean"])) for lab, gg in g.groupby("label", sort=False)}
        for lab, a in accuracy_score(t).items():
            rows.append({"dataset": ds, "mask_strategy": strat, "ratio": ratio, "among": among, "label": lab, "accuracy_score": a})
    return pd.DataFrame(rows)


def accuracy_scores_spadit(summary: pd.DataFrame) -> pd.DataFrame:
    """SpaDiT's Accuracy Score (stbench.metrics.accuracy_score_spadit) per dataset and mask over the Table 1 rows
    that have a result (failed and skipped rows take no rank), with the four gene means it ranks."""
    from stbench.metrics import SPADIT, accuracy_score_spadit

    s = summary[(summary["table"] == "table1") & summary["metric"].isin(SPADIT) & (summary["status"] == "ok")]
    rows = []
    for (ds, strat, ratio, among), g in s.groupby(["dataset", "mask_strategy", "ratio", "among"], dropna=False):
        t = g.pivot_table(index="label", columns="metric", values="mean", aggfunc="first", sort=False)
        t = t.reindex(columns=list(SPADIT))
        t["accuracy_score_spadit"] = accuracy_score_spadit(t)
        t = t.sort_values("accuracy_score_spadit", ascending=False)
        rows.append(t.reset_index().assign(dataset=ds, mask_strategy=strat, ratio=ratio, among=among))
    cols = ["dataset", "mask_strategy", "ratio", "among", "label", *SPADIT, "accuracy_score_spadit"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no rows)\n"
    df = df.reset_index()
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def rank_stability(summary: pd.DataFrame, sweeps: dict) -> pd.DataFrame:
    """Each Table 1 method's rank (1 = best) under every protocol of a sweep, by flattened and per-gene PCC;
    ``rank_changes`` marks a method whose rank is not the same under every protocol."""
    s = summary[(summary["table"] == "table1") & summary["dataset"].isin(list(sweeps)) &
                summary["metric"].isin(["pcc", "pcc_gene"])].copy()
    if s.empty:
        return pd.DataFrame()
    s["sweep_of"] = s["dataset"].map(sweeps)
    s["protocol"] = [d[len(b) + 2:] for d, b in zip(s["dataset"], s["sweep_of"])]
    if s[["mask_strategy", "ratio", "among"]].drop_duplicates().shape[0] > 1:  # several masks: part of the protocol
        s["protocol"] = s["protocol"] + " / " + s["mask_strategy"].astype(str) + "-" + s["among"].astype(str)
    s["rank"] = s.groupby(["dataset", "mask_strategy", "ratio", "among", "metric"])["mean"].rank(ascending=False, method="min")
    s["rank_changes"] = s.groupby(["sweep_of", "metric", "label"])["rank"].transform(
        lambda r: r.nunique(dropna=False) > 1)
    return s[["sweep_of", "protocol", "mask_strategy", "ratio", "among", "metric", "label", "mean", "rank", "rank_changes"]]


def write_tables(metric_files, variants: list[dict], protocols: dict, out_dir, paper_dir="results/paper",
                 sweeps: dict | None = None, metric_definitions: str = "spatialbenchmarking") -> dict:
    """Write table1_long.csv, table1.csv, table1.md, table1.tex (+ table2/3 in the same three formats, figure3 data,
    paper comparisons). ``metric_definitions: spadit`` adds table1_spadit.{csv,md} and accuracy_score_spadit.{csv,md}
    (SpaDiT's SSIM, JS and per-dataset AS); every table1.md names the definitions."""
    if metric_definitions not in DEFINITIONS_TEXT:
        raise ValueError(f"metric_definitions must be one of {sorted(DEFINITIONS_TEXT)}, got {metric_definitions!r}")
    out_dir = Path(out_dir)
    metric_files = list(metric_files)
    df = collect(metric_files, variants)
    summary = summarise(df)
    write_csv(out_dir / "table1_long.csv", summary.drop(columns=["figure", "x"]), index=False)
    metric_files = list(metric_files)
    header = protocol_text(protocols) + ("\n" + isolation_text(metric_files) if metric_files else "")
    header += "\n" + DEFINITIONS_TEXT[metric_definitions]
    t1 = table1_wide(summary)
    write_csv(out_dir / "table1.csv", t1)
    tex_head = "".join(f"% {line}\n" for line in header.splitlines())
    write_text(out_dir / "table1.tex", tex_head + to_latex(
        *_table1_cells(summary), caption="Imputation accuracy on held-out entries (mean ± std over seeds; best per "
                                         "column in bold).", label="tab:table1"))
    written = {"table1": t1}
    md = [f"# Table 1\n\n{header}\n\n", to_markdown(t1)]
    refs = summary[summary["ref_genes"].notna() & (summary["table"] == "table1")][["dataset", "label", "ref_genes"]]
    if len(refs):
        md.append("\nReference-based rows (stbench.reference_protocol: gene folds, truth-free fill, calibration from "
                  "observed entries): genes predicted from the reference / genes with held-out entries (the rest take "
                  "the gene's observed mean):\n\n" + "\n".join(
                      f"- {r.label} on {r.dataset}: {r.ref_genes}" for r in refs.drop_duplicates().itertuples()) + "\n")
    failed = summary[summary["status"] != "ok"][["dataset", "label", "status"]].drop_duplicates()
    if len(failed):
        md.append("\nFailed, partial, skipped or suspect runs:\n\n" + "\n".join(f"- {r.label} on {r.dataset}: {r.status}" for r in failed.itertuples()) + "\n")
    write_text(out_dir / "table1.md", "".join(md))
    write_csv(out_dir / "accuracy_score.csv", accuracy_scores(summary), index=False)
    if metric_definitions == "spadit":
        from stbench.metrics import SPADIT

        t1s = table1_wide(summary, metrics=("pcc", "rmse", *SPADIT))
        write_csv(out_dir / "table1_spadit.csv", t1s)
        write_text(out_dir / "table1_spadit.md", f"# Table 1 (SpaDiT's metric definitions)\n\n{header}\n\n" + to_markdown(t1s))
        acc = accuracy_scores_spadit(summary)
        write_csv(out_dir / "accuracy_score_spadit.csv", acc, index=False)
        write_text(out_dir / "accuracy_score_spadit.md", "# Accuracy Score (SpaDiT's definition, per dataset)\n\n"
                   f"{header}\n\n" + to_markdown(acc.set_index("dataset")))
        written["table1_spadit"] = t1s
    for table in ("table1", "table2", "table3"):
        cmp_ = beside_paper(summary, paper_dir, table)
        if not cmp_.empty:
            write_csv(out_dir / f"{table}_vs_paper.csv", cmp_, index=False)
    for table in ("table2", "table3"):
        w = ablation_wide(summary, table)
        if not w.empty:
            write_csv(out_dir / f"{table}.csv", w)
            write_text(out_dir / f"{table}.md", f"# {table.capitalize()}\n\n{header}\n\n" + to_markdown(w))
            what = {"table2": "mask strategy and mask phase", "table3": "graph encoder"}[table]
            write_text(out_dir / f"{table}.tex", tex_head + to_latex(
                *_ablation_cells(summary, table), caption=f"Ablation of the {what} (mean ± std over seeds; best per "
                                                          "column in bold).", label=f"tab:{table}"))
            written[table] = w
    if sweeps:
        write_csv(out_dir / "rank_stability.csv", rank_stability(summary, sweeps), index=False)
    fig = summary[summary["figure"] == "figure3"]  # Figure 4 (generators) is drawn from the imputations
    if not fig.empty:
        write_csv(out_dir / "figure3.csv", fig[["dataset", "mask_strategy", "ratio", "among", "method", "variant",
                                                "figure", "x", "metric", "mean", "std", "n_seeds", "status"]], index=False)
    return written
