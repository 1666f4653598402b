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
from stbench.errors import DatasetError
from stbench.data.masks import MaskSpec
from stbench.results.metrics import HIGHER_IS_BETTER as directions
from stbench.results.metrics import SPADIT, accuracy_score, accuracy_score_spadit
from stbench.data.task import TaskSpec

MAIN = ("pcc", "cosine", "rmse", "mae")  # the paper's metrics (App. D), flattened over held-out entries
TABLE1 = ("pcc", "pcc_gene", "cosine", "rmse", "mae")  # + the per-gene PCC, which gene levels alone do not earn
NAMES = {"pcc": "PCC", "cosine": "Cosine", "rmse": "RMSE", "mae": "MAE", "pcc_gene": "PCC (gene median)",
         "cosine_gene": "Cosine (gene median)", "rmse_gene": "RMSE (gene median)", "mae_gene": "MAE (gene median)",
         "ssim_gene": "SSIM (gene median)", "js_gene": "JS (gene median)", "pcc_spadit": "PCC (SpaDiT, gene mean)",
         "ssim_spadit": "SSIM (SpaDiT, gene mean)", "rmse_spadit": "RMSE (SpaDiT, gene mean)",
         "js_spadit": "JS (SpaDiT, gene mean)"}
DEFINITIONS_TEXT = {
    "spatialbenchmarking": "Metric definitions: spatialbenchmarking (SSIM on per-gene max-scaled vectors, JS divergence "
                           "of normalised vectors, gene medians; stbench/results/metrics/imputation.py).",
    "spadit": "Metric definitions: spadit (SpaDiT's cal_baseline.py: SSIM on raw values with L = the larger maximum, "
              "JS = scipy's Jensen-Shannon distance on raw vectors, gene means; AS = mean rank per dataset, "
              "N = best; stbench/results/metrics/spadit.py). Flattened PCC/RMSE columns are the paper's App. D metrics."}
PAPER_DATASETS = ("MOB", "HBC", "HP", "HO", "ML", "MK")
# SpaDiT's supplementary Tables 2-4 (results/paper-spadit/): its ten datasets, named as workflow/spadit.yaml names them
SPADIT_PAPER_DATASETS = ("MG", "MH", "MHPR", "MVC", "MHM", "HBC", "ME", "MPMC", "MC", "ML")
SPADIT_PAPER_TABLES = ("spadit_table2", "spadit_table3", "spadit_table4")


def metric_name(metric: str) -> str:
    """A metric's column name: ``NAMES`` where it lists one, else the metric's own name (a metric family added later
    appears under its key)."""
    return NAMES.get(metric, metric)
PAPER_NAMES = {"CpG Transformer": "CpG"}  # our label -> the paper's row name, where they differ


def _ref_genes(rec: dict):
    """'k/n': of the n genes with held-out entries, k were predicted from the reference (reference methods)."""
    info = ((rec.get("method_info") or {}).get("reference_protocol") or {})
    if "n_genes_from_reference" not in info:
        return None
    return f"{info['n_genes_from_reference']}/{info['n_genes_held_out']}"


def collect(metric_files, variants: list[dict]) -> pd.DataFrame:
    """One row per (run, metric): dataset, mask (``MaskSpec.id``; its family and options beside it), seed, method,
    variant, label, table, status, value."""
    info = {(v["method"], v["name"]): v for v in variants}
    rows = []
    for f in metric_files:
        rec = json.loads(Path(f).read_text())
        v = info.get((rec["method"], rec["variant"]), {})
        mask = rec.get("mask") or {}
        spec = MaskSpec.from_dict(dict(mask)) if mask else None
        base = {"dataset": rec["dataset"], "mask": spec and spec.id, "mask_family": spec and spec.family,
                "mask_strategy": mask.get("strategy"), "ratio": mask.get("ratio"),
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
    keys = ["dataset", "mask", "mask_family", "mask_strategy", "ratio", "among", "method", "variant", "label", "table",
            "figure", "x", "metric"]

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


def _fmt(mean, std, status="ok", n=None) -> str:
    """A cell's text: 'mean±std' over seeds, or 'mean (n=1)' where one seed stands behind it (no std to give)."""
    if isinstance(status, str) and status.startswith("skipped"):
        return status
    if isinstance(status, str) and status.startswith(("failed", "suspect")):
        return status.split(":")[0]
    if not np.isfinite(mean):
        return "NaN"
    if n is not None and np.isfinite(n) and int(n) <= 1:
        return f"{mean:.3f} (n=1)"
    return f"{mean:.3f}±{std:.3f}"


def _table1_cells(summary: pd.DataFrame, metrics=TABLE1):
    """Table 1's cells (one row per method x dataset x metric), its row index and its column order."""
    s = summary[(summary["table"] == "table1") & summary["metric"].isin(metrics)].copy()
    s["col"] = s["dataset"] + " " + s["metric"].map(metric_name)
    index = ["mask", "label"] if s["mask"].nunique() > 1 else ["label"]
    have = set(zip(s["dataset"], s["metric"]))
    cols = [(d, m) for d in dict.fromkeys(s["dataset"]) for m in metrics if (d, m) in have]
    return s, index, cols, "dataset"


OURS = {"stmcdi": "stMCDI (Ours)", "spadit": "SpaDiT (Ours)"}  # an ablation table's full-model row
# every ablation table a config may name (workflow/schemas/config.schema.yaml), with what it ablates
ABLATIONS = {"table2": "mask strategy and mask phase", "table3": "graph encoder",
             "spadit_table2": "network backbone (SpaDiT)", "spadit_table3": "condition and latent embedding modules (SpaDiT)",
             "spadit_table4": "condition embedding (SpaDiT)"}


def _ablation_cells(summary: pd.DataFrame, table: str, metrics=MAIN):
    """Table 2 or 3's cells: the method's default row as 'stMCDI (Ours)' plus every variant reported in ``table``."""
    abl = summary[(summary["table"] == table) & summary["metric"].isin(metrics)]
    if abl.empty:
        return abl, ["label"], [], "metric"
    methods = abl["method"].unique()
    ref = summary[summary["method"].isin(methods) & (summary["variant"] == "default") & summary["metric"].isin(metrics)].copy()
    ref["label"] = ref["method"].map(lambda m: OURS.get(m, OURS["stmcdi"]))
    s = pd.concat([ref, abl])
    s["col"] = s["metric"].map(metric_name) + " " + s["dataset"]
    have = set(zip(s["dataset"], s["metric"]))
    cols = [(d, m) for m in metrics for d in dict.fromkeys(s["dataset"]) if (d, m) in have]
    return s, ["label"], cols, "metric"


def _wide(s: pd.DataFrame, index, cols, group_by) -> pd.DataFrame:
    """The CSV/Markdown layout: 'mean±std' strings, columns '<dataset> <Metric>' (or '<Metric> <dataset>')."""
    if s.empty:
        return pd.DataFrame()
    s = s.copy()
    s["cell"] = [_fmt(m, d, st, n) for m, d, st, n in zip(s["mean"], s["std"], s["status"], s["n_seeds"])]
    wide = s.pivot_table(index=index, columns="col", values="cell", aggfunc="first", sort=False)
    names = [f"{d} {metric_name(m)}" if group_by == "dataset" else f"{metric_name(m)} {d}" for d, m in cols]
    return wide[[n for n in names if n in wide.columns]]


def table1_wide(summary: pd.DataFrame, metrics=TABLE1) -> pd.DataFrame:
    """The paper's layout: methods x (dataset, metric), 'mean±std'; one block per mask if several."""
    return _wide(*_table1_cells(summary, metrics))


def ablation_wide(summary: pd.DataFrame, table: str, metrics=MAIN) -> pd.DataFrame:
    """Table 2 or 3: the method's default row as 'stMCDI (Ours)' plus every variant reported in ``table``."""
    return _wide(*_ablation_cells(summary, table, metrics))


def higher_is_better(metric: str) -> bool | None:
    """The direction of a metric, from ``stbench.results.metrics.HIGHER_IS_BETTER`` (the one home of metric directions);
    None for a metric it does not list (such a column gets no best value and no rank)."""
    d = directions.get(metric)
    return None if d is None else bool(d)


HIGHER_IS_BETTER = {"pcc", "cosine", "pcc_gene", "cosine_gene", "ssim_gene"}  # kept for readers of this name
BEST_RULE = ("Bold: the best mean of each column, and every mean whose distance to it is within the seeds' spread "
             "(the larger of the two stds over seeds): a lead smaller than that spread is not a win, so a column can "
             "have several bold cells. Where one seed stands behind either cell there is no spread, and only the printed "
             "(3-decimal) best value is bold, ties included. Failed and suspect runs never win.")
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def tex_escape(text) -> str:
    return "".join(_TEX.get(c, c) for c in str(text))


def _wins(rec) -> bool:
    """A cell that may be best in its column: a finite mean, not failed, not suspect."""
    return (rec is not None and not str(rec["status"]).startswith(("failed", "suspect"))
            and bool(np.isfinite(rec["mean"])))


def _seed_std(rec) -> float | None:
    """A cell's std over seeds, where two or more seeds stand behind it (else None: no spread is known)."""
    n = rec.get("n_seeds") if hasattr(rec, "get") else None
    if n is None or not np.isfinite(n) or int(n) < 2 or not np.isfinite(rec["std"]):
        return None
    return float(rec["std"])


def best_cells(recs: list, metric: str) -> list[bool]:
    """Which of a column's cells are marked best (``BEST_RULE``): the top mean, and every mean within the seeds'
    spread of it (the larger std of the two cells, where both have two or more seeds; else the printed value)."""
    hib = higher_is_better(metric)
    ok = [_wins(r) for r in recs]
    if hib is None or not any(ok):
        return [False] * len(recs)
    means = [round(float(r["mean"]), 3) if o else np.nan for r, o in zip(recs, ok)]
    top_i = int(np.nanargmax(means) if hib else np.nanargmin(means))
    top, top_sd = means[top_i], _seed_std(recs[top_i])
    out = []
    for r, o, m in zip(recs, ok, means):
        if not o:
            out.append(False)
            continue
        sd = _seed_std(r)
        tol = max(sd, top_sd) if sd is not None and top_sd is not None else 0.0
        out.append(bool(abs(m - top) <= tol + 1e-12))
    return out


def _short(status: str) -> str:
    """A non-ok cell's short text (the full reason is in the failures section)."""
    return status.split(":")[0] if status.startswith(("failed", "suspect")) else status


def spans(cells: list[dict], groups) -> list[dict]:
    """Consecutive cells of one header group (a dataset) with the same non-ok status, merged into one cell
    ``{"text", "status", "span"}``: a skipped or failed row says why once, not in every metric's column."""
    out, start = [], 0
    bounds = []
    for _, n in groups:
        bounds.append((start, start + n))
        start += n
    for a, b in bounds:
        i = a
        while i < b:
            c = cells[i]
            j = i + 1
            if c["status"] and c["status"] != "ok" and c["text"] != "--" and not np.isfinite(c["mean"]):
                while j < b and cells[j]["status"] == c["status"] and not np.isfinite(cells[j]["mean"]):
                    j += 1
            out.append({**c, "span": j - i})
            i = j
    return out


def cell_grid(s: pd.DataFrame, index, cols, group_by) -> dict:
    """What every format of a results table shows (LaTeX here, HTML in stbench.results.report): the header groups,
    the column names, and per row its cells {mean, std, n, status, text, best} and the same cells merged where a
    dataset's cells share one non-ok status (``spanned``). The best cells of each column follow ``BEST_RULE``.
    ``cols`` are (dataset, metric) pairs; the first header row groups consecutive columns by ``group_by``."""
    cell = {(tuple(r[i] for i in index), (r["dataset"], r["metric"])): r for _, r in s.iterrows()}
    rows = list(dict.fromkeys(tuple(r) for r in s[index].itertuples(index=False)))
    best = {}
    for c in cols:
        recs = [cell.get((r, c)) for r in rows]
        flags = best_cells([x if x is not None else {"status": "", "mean": np.nan, "std": np.nan} for x in recs], c[1])
        best.update({(r, c): f for r, f in zip(rows, flags)})
    g_of, sub_of = (lambda c: c[0], lambda c: metric_name(c[1])) if group_by == "dataset" else (lambda c: metric_name(c[1]), lambda c: c[0])
    groups = [(g, len(list(grp))) for g, grp in itertools.groupby(cols, key=g_of)]
    body = []
    ns = set()
    for r in rows:
        cells = []
        for c in cols:
            rec = cell.get((r, c))
            if rec is None:
                cells.append({"mean": np.nan, "std": np.nan, "n": 0, "status": "", "text": "--", "best": False})
                continue
            status = str(rec["status"])
            ok = np.isfinite(rec["mean"]) and not status.startswith(("failed", "suspect"))
            n = int(rec["n_seeds"]) if "n_seeds" in rec and np.isfinite(rec["n_seeds"]) else 0
            if ok:
                ns.add(n)
            cells.append({"mean": rec["mean"], "std": rec["std"] if n > 1 else np.nan, "n": n, "status": status,
                          "text": _short(status) if status.startswith(("failed", "suspect", "skipped"))
                          else (_fmt(rec["mean"], rec["std"], n=n).replace(" (n=1)", "") if ok else "--"),
                          "best": bool(ok and best[(r, c)])})
        body.append({"key": r, "block": r[0] if len(index) > 1 else None, "label": r[-1], "cells": cells,
                     "spanned": spans(cells, groups)})
    return {"groups": groups, "columns": [sub_of(c) for c in cols], "rows": body, "n_seeds": sorted(ns)}


def to_latex(s: pd.DataFrame, index, cols, group_by, caption: str = "", label: str = "") -> str:
    """A booktabs table: mean $\\pm$ std per cell, the best value of each column in bold (``cell_grid``)."""
    if s.empty:
        return ""
    grid = cell_grid(s, index, cols, group_by)

    def fmt(c):
        if not np.isfinite(c["mean"]) or c["status"].startswith(("failed", "suspect", "skipped")):
            text = tex_escape(c["text"])
        else:
            text = f"{c['mean']:.3f}" + (f" $\\pm$ {c['std']:.3f}" if c["n"] > 1 else "")
            text = f"\\textbf{{{text}}}" if c["best"] else text
        return text if c["span"] == 1 else f"\\multicolumn{{{c['span']}}}{{c}}{{{text}}}"

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
        lines.append(" & ".join([tex_escape(r["label"])] + [fmt(c) for c in r["spanned"]]) + " \\\\")
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
    keep = ["row", "dataset", "mask", "mask_strategy", "ratio", "among", "metric", "mean", "std", "n_seeds", "status",
            "paper_mean"] + (["paper_std"] if "paper_std" in merged else [])
    return merged[keep].rename(columns={"mean": "ours_mean", "std": "ours_std"})


def spadit_ablation_as(summary: pd.DataFrame, table: str, labels=()) -> pd.DataFrame:
    """SpaDiT's AS (Eq. 30, ``accuracy_score_spadit``) of the rows of one of its ablation tables, ranked among that
    table's rows (the full model, the table's variants, and the method's variants labelled as one of ``labels``:
    a variant reported in another table that this one also compares, e.g. Table 4's MLP row = Table 3's
    "w/o Flash-Attention") per dataset and mask, as its Tables 2-4 compare them; ``rank``: 1 = best, ``n_rows``:
    the rows ranked (Eq. 30's AS lies in [1, n_rows])."""
    from stbench.results.metrics import SPADIT, accuracy_score_spadit

    cols = ["row", "dataset", "mask", "mask_strategy", "ratio", "among", "metric", "mean", "std", "n_seeds", "status",
            "rank", "n_rows"]
    abl = summary[summary["table"] == table]
    if abl.empty:
        return pd.DataFrame(columns=cols)
    of = summary[summary["method"].isin(abl["method"].unique())]
    ref = of[of["variant"] == "default"].copy()
    ref["label"] = ref["method"].map(lambda m: OURS.get(m, m))
    also = of[(of["table"] != table) & (of["variant"] != "default") & of["label"].isin(list(labels))]
    s = pd.concat([ref, abl, also])
    s = s[s["metric"].isin(SPADIT)]
    keys = ["dataset", "mask", "mask_strategy", "ratio", "among"]
    rows = []
    for key, g in s.groupby(keys, dropna=False, sort=False):
        t = g.pivot_table(index="label", columns="metric", values="mean", aggfunc="first", sort=False)
        t = t.reindex(columns=list(SPADIT))
        ok = g.groupby("label", sort=False)["status"].agg(lambda st: "ok" if (st == "ok").all() else
                                                          next(x for x in st if x != "ok"))
        t.loc[ok.reindex(t.index) != "ok", list(SPADIT)] = np.nan   # a failed row takes no rank
        a = accuracy_score_spadit(t)
        n = g.groupby("label", sort=False)["n_seeds"].min().reindex(t.index)
        rows.append(pd.DataFrame({"row": t.index, **dict(zip(keys, key)), "metric": "as", "mean": a.to_numpy(),
                                  "std": np.nan, "n_seeds": n.to_numpy(), "status": ok.reindex(t.index).to_numpy(),
                                  "rank": a.rank(ascending=False, method="min").to_numpy(),
                                  "n_rows": int(a.notna().sum())}))
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def beside_paper_spadit(summary: pd.DataFrame, paper_dir, table: str) -> pd.DataFrame:
    """One of SpaDiT's ablation tables (supplementary Tables 2-4): our AS (Eq. 30 among the table's rows) beside the
    paper's printed AS, and the row's rank within the table in each (1 = best). The paper's AS values (0.3-0.62)
    are not on Eq. 30's scale ([1, N]), so the ranks are the comparable part (results/paper-spadit/README.md)."""
    paper_dir = Path(paper_dir)
    if not (paper_dir / f"{table}.csv").exists():
        return pd.DataFrame()
    paper = pd.read_csv(paper_dir / f"{table}.csv").rename(columns={"value": "paper_mean", "std": "paper_std"})
    ours = spadit_ablation_as(summary[summary["dataset"].isin(SPADIT_PAPER_DATASETS)], table, set(paper["row"]))
    if ours.empty:
        return pd.DataFrame()
    paper["paper_rank"] = paper.groupby("dataset")["paper_mean"].rank(ascending=False, method="min")
    merged = ours.merge(paper[["row", "dataset", "metric", "paper_mean", "paper_std", "paper_rank"]],
                        on=["row", "dataset", "metric"], how="left")
    keep = ["row", "dataset", "mask", "mask_strategy", "ratio", "among", "metric", "mean", "std", "n_seeds", "status",
            "paper_mean", "paper_std", "rank", "n_rows", "paper_rank"]
    return merged[keep].rename(columns={"mean": "ours_mean", "std": "ours_std", "rank": "ours_rank"})


_RULES = {"cv": "by CV (paper App. E)", "hvg": "highly variable (scanpy, flavor {hvg_flavor})",
          "mean": "by mean expression", "all": "every gene", "list": "listed in {gene_list}"}


def _qc(qc) -> dict | None:
    """A dataset's QC record (``qc.json`` written by the preprocess step): a path, the record itself, or None."""
    if qc is None or isinstance(qc, dict):
        return qc

    try:
        return json.loads(Path(qc).read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(qc, f"not a readable qc.json ({e})") from None


def _selection_text(qc: dict | None) -> str:
    """The genes kept, as the preprocess step reports them in ``qc.json`` (its count and the options it ran with),
    never re-derived from the config: a rule asking for the top 1000 may keep 352."""
    if qc is None:
        return "genes kept: unknown (no qc.json given)"
    c = qc.get("config") or {}
    rule = _RULES.get(c.get("gene_selection"), str(c.get("gene_selection"))).format(**{k: c.get(k) for k in
                                                                                       ("hvg_flavor", "gene_list")})
    asked = f", asked for up to {c['n_genes']}" if c.get("gene_selection") in ("cv", "hvg", "mean") else ""
    return (f"{qc['genes_kept']} of {qc['genes_in']} genes kept ({rule}{asked}; qc.json) among the "
            f"{qc['genes_eligible_min_detection']} detected in >= {c.get('min_detection', float('nan')):g} of spots")


def protocol_text(protocols: dict, qc: dict | None = None) -> str:
    """The protocol of each dataset (resolved per dataset), grouped where datasets share one. ``qc``: per dataset
    its ``qc.json`` (path or record): the genes kept are read from there (the preprocess step's facts); scale and
    library sizes from ``protocols[d]["task"]`` (the task step's spec, :func:`stbench.config.protocols`)."""
    groups: dict[str, list[str]] = {}
    for dataset, p in protocols.items():
        spec = TaskSpec.from_dict(p.get("task"))  # the task step's own: scale and library sizes
        masks = "; ".join(f"{m.id} ({m.strategy} mask, ratio {m.ratio:g}, among {m.among}" + (
            f", {m.n_folds} spot folds" if m.strategy == "inductive" else "") + (
            f"; count splitting: input half = binomial thinning at {m.fraction:g}, scored against the target half "
            f"rescaled by {m.fraction:g}/{1 - m.fraction:g}" if m.strategy == "countsplit" else "") + ")"
            for m in (MaskSpec.from_dict(x) for x in p["masks"]))
        text = (f"log-normalised to the median spot total (paper Eq. 41) with library sizes from "
                f"{'observed entries only' if spec.library_size == 'observed' else 'all entries (the paper; includes held-out counts)'}, "
                f"{_selection_text(_qc((qc or {}).get(dataset)))}, "
                f"scale '{spec.scale}'{' (statistics from observed entries)' if spec.scale == 'zscore' else ''}; "
                f"held-out entries: {masks}; seeds: {p['seeds']}")
        groups.setdefault(text, []).append(dataset)
    lines = [f"Protocol ({', '.join(ds)}): {text}." for text, ds in groups.items()]
    return "\n".join(lines) + ("\nPCC, Cosine, RMSE, MAE over all held-out entries flattened (paper App. D); PCC (gene median): the median "
                                 "over genes of each gene's PCC over its held-out entries; mean±std over the seeds that ran "
                                 "(n_seeds in table1_long.csv); '(n=1)': one seed, so no std.")


def isolation_text(metric_files) -> str:
    """Which isolation level (stbench/run/sandbox.py) the runs behind a table ran under, named in its header."""
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
    s = summary[(summary["table"] == "table1")]
    rows = []
    for (ds, mask, strat, ratio, among), g in s.groupby(["dataset", "mask", "mask_strategy", "ratio", "among"], dropna=False):
        t = {lab: dict(zip(gg["metric"], gg["mean"])) for lab, gg in g.groupby("label", sort=False)}
        for lab, a in accuracy_score(t).items():
            rows.append({"dataset": ds, "mask": mask, "mask_strategy": strat, "ratio": ratio, "among": among, "label": lab, "accuracy_score": a})
    return pd.DataFrame(rows)


def accuracy_scores_spadit(summary: pd.DataFrame) -> pd.DataFrame:
    """SpaDiT's Accuracy Score (stbench.results.metrics.accuracy_score_spadit) per dataset and mask over the Table 1 rows
    that have a result (failed and skipped rows take no rank), with the four gene means it ranks."""
    s = summary[(summary["table"] == "table1") & summary["metric"].isin(SPADIT) & (summary["status"] == "ok")]
    rows = []
    for (ds, mask, strat, ratio, among), g in s.groupby(["dataset", "mask", "mask_strategy", "ratio", "among"],
                                                        dropna=False):
        t = g.pivot_table(index="label", columns="metric", values="mean", aggfunc="first", sort=False)
        t = t.reindex(columns=list(SPADIT))
        t["accuracy_score_spadit"] = accuracy_score_spadit(t)
        t = t.sort_values("accuracy_score_spadit", ascending=False)
        rows.append(t.reset_index().assign(dataset=ds, mask=mask, mask_strategy=strat, ratio=ratio, among=among))
    cols = ["dataset", "mask", "mask_strategy", "ratio", "among", "label", *SPADIT, "accuracy_score_spadit"]
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
    if s["mask"].nunique() > 1:  # several masks: part of the protocol
        s["protocol"] = s["protocol"] + " / " + s["mask"].astype(str)
    s["rank"] = s.groupby(["dataset", "mask", "metric"])["mean"].rank(ascending=False, method="min")
    s["rank_changes"] = s.groupby(["sweep_of", "metric", "label"])["rank"].transform(
        lambda r: r.nunique(dropna=False) > 1)
    return s[["sweep_of", "protocol", "mask", "mask_strategy", "ratio", "among", "metric", "label", "mean", "rank",
              "rank_changes"]]


def write_tables(metric_files, variants: list[dict], protocols: dict, out_dir, paper_dir="results/paper",
                 sweeps: dict | None = None, qc: dict | None = None,
                 metric_definitions: str = "spatialbenchmarking", spadit_paper_dir="results/paper-spadit") -> dict:
    """Write table1_long.csv, table1.csv, table1.md, table1.tex (+ table2/3 in the same three formats, figure3 data,
    paper comparisons). ``qc``: per dataset its ``qc.json``, the source of the headers' gene counts.
    ``metric_definitions: spadit`` adds table1_spadit.{csv,md} and accuracy_score_spadit.{csv,md}
    (SpaDiT's SSIM, JS and per-dataset AS) and compares the run with SpaDiT's supplementary Tables 2-4
    (``spadit_paper_dir``) instead of stMCDI's Tables 1-3 (``paper_dir``); every table1.md names the definitions."""
    if metric_definitions not in DEFINITIONS_TEXT:
        raise ValueError(f"metric_definitions must be one of {sorted(DEFINITIONS_TEXT)}, got {metric_definitions!r}")
    out_dir = Path(out_dir)
    metric_files = list(metric_files)
    df = collect(metric_files, variants)
    summary = summarise(df)
    write_csv(out_dir / "table1_long.csv", summary.drop(columns=["figure", "x"]), index=False)
    metric_files = list(metric_files)
    header = protocol_text(protocols, qc) + ("\n" + isolation_text(metric_files) if metric_files else "")
    header += "\n" + DEFINITIONS_TEXT[metric_definitions]
    t1 = table1_wide(summary)
    write_csv(out_dir / "table1.csv", t1)
    tex_head = "".join(f"% {line}\n" for line in header.splitlines())
    write_text(out_dir / "table1.tex", tex_head + to_latex(
        *_table1_cells(summary), caption="Imputation accuracy on held-out entries (mean ± std over seeds; a cell "
                                         "without ± comes from one seed; bold: best per column, ties within the "
                                         "seeds' spread included).", label="tab:table1"))
    written = {"table1": t1}
    md = [f"# Table 1\n\n{header}\n\n", to_markdown(t1)]
    refs = summary[summary["ref_genes"].notna() & (summary["table"] == "table1")][["dataset", "label", "ref_genes"]]
    if len(refs):
        md.append("\nReference-based rows (stbench.kit.reference_protocol: gene folds, truth-free fill, calibration from "
                  "observed entries): genes predicted from the reference / genes with held-out entries (the rest take "
                  "the gene's observed mean):\n\n" + "\n".join(
                      f"- {r.label} on {r.dataset}: {r.ref_genes}" for r in refs.drop_duplicates().itertuples()) + "\n")
    failed = summary[summary["status"] != "ok"][["dataset", "label", "status"]].drop_duplicates()
    if len(failed):
        md.append("\nFailed, partial, skipped or suspect runs:\n\n" + "\n".join(f"- {r.label} on {r.dataset}: {r.status}" for r in failed.itertuples()) + "\n")
    write_text(out_dir / "table1.md", "".join(md))
    write_csv(out_dir / "accuracy_score.csv", accuracy_scores(summary), index=False)
    if metric_definitions == "spadit":
        t1s = table1_wide(summary, metrics=("pcc", "rmse", *SPADIT))
        write_csv(out_dir / "table1_spadit.csv", t1s)
        write_text(out_dir / "table1_spadit.md", f"# Table 1 (SpaDiT's metric definitions)\n\n{header}\n\n" + to_markdown(t1s))
        acc = accuracy_scores_spadit(summary)
        write_csv(out_dir / "accuracy_score_spadit.csv", acc, index=False)
        write_text(out_dir / "accuracy_score_spadit.md", "# Accuracy Score (SpaDiT's definition, per dataset)\n\n"
                   f"{header}\n\n" + to_markdown(acc.set_index("dataset")))
        written["table1_spadit"] = t1s
    # which paper a run is compared with: SpaDiT's (its Tables 2-4) under its metric definitions, else stMCDI's (its
    # Tables 1-3); both papers name a dataset HBC and ML, so a run is never compared with both
    if metric_definitions == "spadit":
        for table in SPADIT_PAPER_TABLES:
            cmp_ = beside_paper_spadit(summary, spadit_paper_dir, table)
            if not cmp_.empty:
                write_csv(out_dir / f"{table}_vs_paper.csv", cmp_, index=False)
    else:
        for table in ("table1", "table2", "table3"):
            cmp_ = beside_paper(summary, paper_dir, table)
            if not cmp_.empty:
                write_csv(out_dir / f"{table}_vs_paper.csv", cmp_, index=False)
    for table in ABLATIONS:
        w = ablation_wide(summary, table)
        if not w.empty:
            write_csv(out_dir / f"{table}.csv", w)
            write_text(out_dir / f"{table}.md", f"# {table.replace('_', ' ').capitalize()}\n\n{header}\n\n" + to_markdown(w))
            what = ABLATIONS[table]
            write_text(out_dir / f"{table}.tex", tex_head + to_latex(
                *_ablation_cells(summary, table), caption=f"Ablation of the {what} (mean ± std over seeds; a cell "
                                                          "without ± comes from one seed; bold: best per column, "
                                                          "ties within the seeds' spread included).", label=f"tab:{table}"))
            written[table] = w
    if sweeps:
        write_csv(out_dir / "rank_stability.csv", rank_stability(summary, sweeps), index=False)
    fig = summary[summary["figure"] == "figure3"]  # Figure 4 (generators) is drawn from the imputations
    if not fig.empty:
        keys = ["dataset", "mask", "mask_strategy", "ratio", "among", "method", "variant", "metric"]
        ok = df[(df["figure"] == "figure3") & (df["status"] == "ok") & df["value"].notna()]
        seeds = (ok.sort_values("seed").groupby(keys, dropna=False, sort=False)["value"]
                   .agg(lambda v: ";".join(f"{x:.6g}" for x in v)).rename("seed_values").reset_index())
        fig = fig.merge(seeds, on=keys, how="left")  # every seed's value: the figure shows the spread, not only the mean
        write_csv(out_dir / "figure3.csv", fig[["dataset", "mask", "mask_strategy", "ratio", "among", "method", "variant",
                                                "figure", "x", "metric", "mean", "std", "n_seeds", "status",
                                                "seed_values"]], index=False)
    return written


SKIP_RANK = ("skipped",)
RANK_RULE = ("Each Table 1 method is ranked (1 = best) on every dataset, mask and metric whose direction is known "
             "(stbench.results.metrics.HIGHER_IS_BETTER), by its mean over seeds; ties share the best rank. A failed or suspect "
             "row ranks last there (it gave no usable result); a skipped row (not applicable, e.g. no reference) is not "
             "ranked. Mean rank and its spread (std, min-max) are over those rankings; methods are ordered by mean rank.")


def ranks(summary: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Every Table 1 row's rank per (dataset, mask, metric) (``RANK_RULE``); ``metrics`` default: every metric in
    the data whose direction is known."""
    s = summary[summary["table"] == "table1"].copy()
    known = [m for m in dict.fromkeys(s["metric"]) if higher_is_better(m) is not None]
    s = s[s["metric"].isin(known if metrics is None else [m for m in metrics if m in known])]
    s = s[~s["status"].astype(str).str.startswith(SKIP_RANK)]
    if s.empty:
        return pd.DataFrame(columns=["dataset", "mask", "mask_strategy", "ratio", "among", "metric", "label", "mean",
                                     "status", "rank"])
    usable = np.isfinite(s["mean"]) & ~s["status"].astype(str).str.startswith(("failed", "suspect"))
    s["score"] = np.where(usable, [m if higher_is_better(k) else -m for m, k in zip(s["mean"], s["metric"])], np.nan)
    keys = ["dataset", "mask", "mask_strategy", "ratio", "among", "metric"]
    g = s.groupby(keys, dropna=False, sort=False)
    s["rank"] = g["score"].rank(ascending=False, method="min")
    s["rank"] = s["rank"].fillna(g["label"].transform("size"))  # no usable result: last place
    return s[keys + ["label", "mean", "status", "rank"]].reset_index(drop=True)


def rank_summary(r: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean rank over every ranking of ``ranks``, its std, min and max, how many rankings, how many of
    them it was placed last for having no usable result, and its mean rank per dataset; best mean rank first."""
    if r.empty:
        return pd.DataFrame(columns=["label", "mean_rank", "std_rank", "min_rank", "max_rank", "n_rankings", "n_no_result"])
    no_result = r["status"].astype(str).str.startswith(("failed", "suspect")) | ~np.isfinite(r["mean"])
    out = (r.assign(no_result=no_result).groupby("label", sort=False)
            .agg(mean_rank=("rank", "mean"), std_rank=("rank", lambda x: x.std(ddof=0)), min_rank=("rank", "min"),
                 max_rank=("rank", "max"), n_rankings=("rank", "size"), n_no_result=("no_result", "sum")))
    per_ds = r.pivot_table(index="label", columns="dataset", values="rank", aggfunc="mean", sort=False)
    per_ds.columns = [f"mean rank {d}" for d in per_ds.columns]
    out = out.join(per_ds).sort_values(["mean_rank", "std_rank"], kind="stable").reset_index()
    out["n_no_result"] = out["n_no_result"].astype(int)
    return out


def write_rank_summary(long_csv, out_dir) -> pd.DataFrame:
    """summary.csv (per method), summary_ranks.csv (every ranking) and summary.md from ``table1_long.csv``."""
    out_dir = Path(out_dir)
    r = ranks(pd.read_csv(long_csv))
    summ = rank_summary(r)
    write_csv(out_dir / "summary_ranks.csv", r, index=False)
    write_csv(out_dir / "summary.csv", summ, index=False)
    md = ["# Summary across datasets and metrics: mean rank per method\n", RANK_RULE + "\n",
          f"Metrics ranked: {', '.join(NAMES.get(m, m) for m in dict.fromkeys(r['metric']))}; datasets: "
          f"{', '.join(map(str, dict.fromkeys(r['dataset'])))}.\n" if len(r) else "No rankable rows.\n"]
    md.append(to_markdown(summ.round(2).set_index("label")) if len(summ) else "")
    write_text(out_dir / "summary.md", "\n".join(md))
    return summ
