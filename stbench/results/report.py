"""The run's report: one self-contained HTML page (``results/<run>/report.html``, figures embedded as
base64 PNG, no server, no network) built with jinja2 from what the run wrote.

It shows the protocol; Table 1 and Tables 2-3 as measured, and beside the paper where a dataset is one of
the paper's (reproduced − paper per cell, flagged where ``|diff| > 0.05`` or ``> 2 ×`` the paper's std over
seeds); the figures (Figure 2 heatmaps, Figure 3, Figure 4 when present, mask-ratio robustness, rank
stability, spatial maps); the cost table; every failed, skipped and suspect run with its reason; and a card
per dataset. It reads the truth only through figures already drawn by evaluation-side rules.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from stbench import __version__
from stbench.atomic import write_text
from stbench.results.cost_table import RUN_TOTAL
from stbench.data.datasets import get_recipe
from stbench.results.failures import problem_runs
from stbench.results.provenance import PACKAGES
from stbench.results.tables import (
    ABLATIONS,
    BEST_RULE,
    DEFINITIONS_TEXT,
    MAIN,
    NAMES,
    PAPER_DATASETS,
    RANK_RULE,
    _ablation_cells,
    _table1_cells,
    cell_grid,
    isolation_text,
    protocol_text,
)
# Imported inside functions on purpose: jinja2 (only when the HTML is rendered).

TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html.j2"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets"
FLAG_ABS = 0.05  # flag a reproduced − paper difference larger than this
FLAG_SD = 2.0    # ... or larger than this many of the paper's standard deviations over seeds (where it printed one > 0)
FLAG_RULE = (f"A cell is flagged (red) where |reproduced − paper| > {FLAG_ABS:g}, or > {FLAG_SD:g} × the paper's std over "
             f"seeds where the paper prints a std above 0 (a printed '±0' is below the paper's rounding, so it is not "
             f"used as a threshold). Tables 2 and 3 of the paper print no std: only the {FLAG_ABS:g} rule applies there.")


def png_data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


# --- results tables -----------------------------------------------------------------------------------------


def results_grids(long_csv) -> dict:
    """Table 1 and every ablation table (stMCDI's Tables 2-3, SpaDiT's supplementary Tables 2-4: tables.ABLATIONS)
    as ``stbench.results.tables.cell_grid`` structures (the LaTeX tables' code path)."""
    if not Path(long_csv).exists():
        return {}
    summary = pd.read_csv(long_csv)
    out = {}
    s, index, cols, by = _table1_cells(summary)
    if not s.empty:
        out["table1"] = cell_grid(s, index, cols, by)
    for t in ABLATIONS:
        s, index, cols, by = _ablation_cells(summary, t)
        if not s.empty:
            out[t] = cell_grid(s, index, cols, by)
    return out


def flag(diff: float, paper_std: float | None) -> list[str]:
    """Why a reproduced − paper difference is flagged (empty: not flagged)."""
    if not np.isfinite(diff):
        return []
    why = []
    if abs(diff) > FLAG_ABS:
        why.append(f"|diff| > {FLAG_ABS:g}")
    if paper_std is not None and np.isfinite(paper_std) and paper_std > 0 and abs(diff) > FLAG_SD * paper_std:
        why.append(f"|diff| > {FLAG_SD:g} std")
    return why


def paper_comparison(vs_paper_csv) -> dict | None:
    """Rows x (dataset, metric) cells of ours, the paper's, the difference and its flag, from
    ``<table>_vs_paper.csv`` (``stbench.results.tables.beside_paper``)."""
    p = Path(vs_paper_csv)
    if not p.exists():
        return None
    df = pd.read_csv(p)
    if df.empty:
        return None
    cols = [(d, m) for d in dict.fromkeys(df["dataset"]) for m in MAIN if ((df["dataset"] == d) & (df["metric"] == m)).any()]
    df["mask"] = df["mask"].fillna("").astype(str) if "mask" in df else ""  # MaskSpec.id, as the tables wrote it
    several = df["mask"].nunique() > 1
    rows, n_flagged, n_compared = [], 0, 0
    mask_rank = {m: i for i, m in enumerate(dict.fromkeys(df["mask"]))}
    row_rank = {r: i for i, r in enumerate(dict.fromkeys(df["row"]))}
    groups = sorted(df.groupby(["mask", "row"], sort=False), key=lambda kg: (mask_rank[kg[0][0]], row_rank[kg[0][1]]))
    for (mask, row), g in groups:
        by = {(r.dataset, r.metric): r for r in g.itertuples(index=False)}
        cells = []
        for c in cols:
            r = by.get(c)
            if r is None:
                cells.append(None)
                continue
            status = str(r.status)
            ours = r.ours_mean if status == "ok" or status.startswith("partial") else np.nan
            paper = r.paper_mean
            pstd = getattr(r, "paper_std", None)
            diff = ours - paper if np.isfinite(ours) and np.isfinite(paper) else np.nan
            why = flag(diff, pstd)
            n_compared += int(np.isfinite(diff))
            n_flagged += int(bool(why))
            n = getattr(r, "n_seeds", np.nan)
            one = np.isfinite(n) and int(n) <= 1
            cells.append({"ours": "--" if not np.isfinite(ours) else (f"{ours:.3f} (n=1)" if one else f"{ours:.3f}±{r.ours_std:.3f}"),
                          "status": "" if status == "ok" else status.split(":")[0],
                          "paper": "--" if not np.isfinite(paper) else
                          (f"{paper:.3f}" + (f"±{pstd:.3f}" if pstd is not None and np.isfinite(pstd) else "")),
                          "diff": "" if not np.isfinite(diff) else f"{diff:+.3f}", "flag": "; ".join(why)})
        rows.append({"label": row, "block": mask if several else None, "cells": cells})
    groups = [(d, sum(1 for c in cols if c[0] == d)) for d in dict.fromkeys(c[0] for c in cols)]
    return {"groups": groups, "columns": [NAMES.get(m, m) for _, m in cols], "rows": rows,
            "n_flagged": n_flagged, "n_compared": n_compared}


# --- runs: failures, cost ---------------------------------------------------------------------------------------


def cost_totals_rows(totals_csv) -> list[dict]:
    p = Path(totals_csv)
    if not p.exists():
        return []
    df = pd.read_csv(p)

    def num(x, fmt):
        return "-" if x is None or not np.isfinite(x) else format(x, fmt)

    return [{"label": r.label, "runs": f"{r.n_runs} ({r.n_ok} ok)", "wall": num(r.total_wall_time_s, ".1f"),
             "hours": num(r.total_wall_time_s / 3600, ".2f"), "rss": num(r.max_peak_rss_mb, ".0f"),
             "gpu": num(r.max_peak_gpu_mb, ".0f"), "devices": r.devices, "total": r.label == RUN_TOTAL}
            for r in df.itertuples(index=False)]


def summary_rows(summary_csv) -> dict | None:
    """The summary table across datasets and metrics (``stbench.results.tables.rank_summary``) for the page."""
    p = Path(summary_csv)
    if not p.exists():
        return None
    df = pd.read_csv(p)
    if df.empty:
        return None
    ds_cols = [c for c in df.columns if c.startswith("mean rank ")]
    rows = [{"label": r["label"], "mean": f"{r['mean_rank']:.2f}", "std": f"{r['std_rank']:.2f}",
             "range": f"{r['min_rank']:g}-{r['max_rank']:g}", "n": int(r["n_rankings"]), "no_result": int(r["n_no_result"]),
             "per_ds": [("-" if not np.isfinite(r[c]) else f"{r[c]:.2f}") for c in ds_cols]}
            for _, r in df.iterrows()]
    return {"datasets": [c[len("mean rank "):] for c in ds_cols], "rows": rows}


def provenance_view(provenance_json) -> dict | None:
    """The provenance record (``stbench.results.provenance``) as the page's key-value lists, and the raw JSON."""
    p = Path(provenance_json)
    if not p.exists():
        return None
    rec = json.loads(p.read_text())
    git = rec.get("git") or {}
    commit = git.get("commit") or f"unknown ({git.get('note', '')})"
    dirty = git.get("dirty")
    cfg = rec.get("config") or {}
    hw = rec.get("hardware") or {}
    gpus = hw.get("gpus")
    gpu_text = gpus if isinstance(gpus, str) else "; ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in gpus)
    code = [("git commit", commit + ("" if not git.get("branch") else f" (branch {git['branch']})")),
            ("uncommitted changes", "unknown" if dirty is None else
             ("YES (dirty): " + ", ".join(git.get("changed_files") or [])) if dirty else "no (clean tree)"),
            ("stbench", str(rec.get("stbench"))),
            ("config files", "; ".join(f"{f['path']} (sha256 {str(f['sha256'])[:16]}…)" for f in cfg.get("files") or [])
             or "none (config given on the command line)"),
            ("resolved config sha256", str(cfg.get("resolved_sha256"))),
            ("command line", str(rec.get("command_line"))),
            ("written", str(rec.get("generated_utc")))]
    hardware = [("CPU", f"{hw.get('cpu')} ({hw.get('logical_cores')} logical cores, {hw.get('usable_cores')} usable)"),
                ("memory", f"{hw.get('memory_gib')} GiB"), ("GPUs visible to the report job", gpu_text),
                ("devices the method runs used", ", ".join(f"{d} ({n} runs)" for d, n in (rec.get("run_devices") or {}).items())),
                ("platform", str(hw.get("platform"))), ("host", str(hw.get("hostname")))]
    datasets = []
    for name, d in (rec.get("datasets") or {}).items():
        src = d.get("source") or {}
        datasets.append((name, "; ".join(filter(None, [
            f"source {src.get('accession', '')}: {src.get('checksum', '')}" if src else "",
            f"prepared.h5ad sha256 {d['prepared_sha256']}" if d.get("prepared_sha256") else "",
            f"preprocessed.h5ad sha256 {d['preprocessed_sha256']}" if d.get("preprocessed_sha256") else ""]))))

    pk = rec.get("packages") or {}
    first = ["python", "torch", "torch CUDA build", "cuDNN", *PACKAGES]
    packages = [(k, pk[k]) for k in dict.fromkeys(first) if k in pk] + [(k, v) for k, v in pk.items() if k not in first]
    return {"code": code, "packages": packages, "hardware": hardware,
            "datasets": datasets, "json": json.dumps(rec, indent=1, sort_keys=True), "dirty": bool(dirty),
            "commit": commit}


def cost_rows(cost_csv) -> list[dict]:
    p = Path(cost_csv)
    if not p.exists():
        return []
    df = pd.read_csv(p)

    def num(x, fmt):
        return "-" if x is None or not np.isfinite(x) else format(x, fmt)

    return [{"dataset": r.dataset, "label": r.label, "runs": f"{r.n_runs} ({r.n_ok} ok)",
             "wall": num(r.wall_time_s, ".1f"), "rss": num(r.peak_rss_mb, ".0f"), "gpu": num(r.peak_gpu_mb, ".0f"),
             "device": r.device} for r in df.itertuples(index=False)]


# --- dataset cards ---------------------------------------------------------------------------------------------


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', text)
    return text


def markdown_to_html(md: str) -> str:
    """The small part of Markdown the dataset cards use: headings, paragraphs, '-' lists, pipe tables,
    `code`, **bold** and http(s) links. Everything else is escaped text."""
    out, para, items, table = [], [], [], []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if table:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table
                    if not re.fullmatch(r"\|?[\s:|-]+\|?", line.strip())]
            head, body = rows[0], rows[1:]
            out.append("<table class='card'><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            table.clear()

    for line in md.splitlines():
        s = line.strip()
        if not s:
            flush()
        elif s.startswith("#"):
            flush()
            level = min(len(s) - len(s.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{_inline(s.lstrip('#').strip())}</h{level}>")
        elif s.startswith("|"):
            if para or items:
                flush()
            table.append(s)
        elif s.startswith(("- ", "* ")):
            if para or table:
                flush()
            items.append(s[2:])
        elif items and line.startswith(" "):
            items[-1] += " " + s
        else:
            if table:
                flush()
            para.append(s)
    flush()
    return "\n".join(out)


def dataset_card(name: str, spec: dict, qc_json=None, prepare_json=None, docs_dir=DOCS) -> dict:
    """What the run knows about a dataset: its config entry, the source (prepare.json), the QC of
    preprocessing (qc.json) and, for a paper dataset, its recipe and card (docs/datasets/<ID>.md)."""
    card = {"name": name, "spec": json.dumps(spec, sort_keys=True), "facts": [], "card_html": ""}
    prep = json.loads(Path(prepare_json).read_text()) if prepare_json and Path(prepare_json).exists() else {}
    qc = json.loads(Path(qc_json).read_text()) if qc_json and Path(qc_json).exists() else {}
    src = prep.get("source") or {}
    for key in ("tissue", "species", "platform", "accession", "citation", "url", "checksum"):
        if src.get(key):
            card["facts"].append((key, str(src[key])))
    if prep:
        card["facts"].append(("spots x genes (prepared)", f"{prep.get('spots')} x {prep.get('genes')}"))
        if prep.get("simulation_seed") is not None:  # `seed: secret`: revealed here, after the run
            card["facts"].append(("simulation seed", f"{prep['simulation_seed']} ({prep.get('simulation_seed_note', '')})"))
        if prep.get("has_reference"):
            card["facts"].append(("scRNA-seq reference", f"{prep.get('reference_cells')} cells, "
                                  f"{prep.get('reference_gene_overlap')} genes shared"))
    if qc:
        card["facts"].append(("after preprocessing", f"{qc.get('spots_kept')} spots x {qc.get('genes_kept')} genes "
                              f"(of {qc.get('genes_in')}; {qc.get('genes_eligible_min_detection')} pass the detection filter)"))
        if qc.get("zero_fraction_selected") is not None:
            card["facts"].append(("zeros", f"{qc['zero_fraction_raw']:.0%} of the raw matrix, "
                                  f"{qc['zero_fraction_selected']:.0%} of the kept genes"))
        lib = qc.get("library_size") or {}
        if lib:
            card["facts"].append(("counts per spot", f"median {lib.get('median'):g} (min {lib.get('min'):g}, max {lib.get('max'):g})"))
    recipe = spec.get("recipe")
    if recipe:
        try:
            r = get_recipe(recipe)
            card["facts"][:0] = [("recipe", f"{recipe}: {r.get('title', '')}"), ("confidence", str(r.get("confidence", "n/a")))]
        except Exception as e:  # noqa: BLE001 - a card never stops the report
            card["facts"].insert(0, ("recipe", f"{recipe} (could not be read: {e})"))
        doc = Path(docs_dir) / f"{recipe}.md"
        if doc.exists():
            card["card_html"] = markdown_to_html(doc.read_text())
    return card


# --- the page -------------------------------------------------------------------------------------------------


FIGURE_KEYS = ("heatmaps", "figure3", "figure4", "mask_ratio", "rank_stability", "spatial", "summary", "reference_augmentation")


def _figures(paths) -> list[dict]:
    return [{"name": Path(p).name, "src": png_data_uri(p)} for p in paths if Path(p).exists()]


def ablation_sections(grids: dict) -> list[tuple[str, str]]:
    """(table, title) of the ablation tables to show: stMCDI's Tables 2-3 always (a note says when a run has none),
    SpaDiT's supplementary Tables 2-4 when the run has them."""
    out = []
    for t, what in ABLATIONS.items():
        if t.startswith("spadit_"):
            if grids.get(t):
                out.append((t, f"SpaDiT supplementary Table {t.rsplit('table', 1)[1]}: {what.replace(' (SpaDiT)', '')}"))
        else:
            out.append((t, f"Table {t[-1]}: {what}"))
    return out


def spadit_tables(tables_dir) -> dict:
    """SpaDiT's metric definitions' Table 1 and Accuracy Score (written by the tables step when the config sets
    ``metric_definitions: spadit``), as header + rows; empty when the run uses SpatialBenchmarking's."""
    out = {}
    for key, name in (("table1", "table1_spadit.csv"), ("accuracy_score", "accuracy_score_spadit.csv")):
        path = Path(tables_dir) / name
        if path.exists():
            df = pd.read_csv(path)
            out[key] = {"columns": [str(c) for c in df.columns],
                        "rows": [[("" if pd.isna(v) else (f"{v:.3f}" if isinstance(v, float) else str(v))) for v in r]
                                 for r in df.itertuples(index=False)]}
    return out


def augmentation_view(tables_dir) -> list[dict]:
    """The reference-augmentation table (``tables/reference_augmentation.csv``, written when the config has
    ``reference_settings``) as the blocks its Markdown file shows; empty when the run has none."""
    from stbench.data.reference_generators.report import augmentation_blocks

    p = Path(tables_dir) / "reference_augmentation.csv"
    if not p.exists():
        return []
    df = pd.read_csv(p)
    return augmentation_blocks(df) if not df.empty else []


def build_report(out_html, *, run: str, protocols: dict, tables_dir, metric_files, figures: dict | None = None,
                 datasets: dict | None = None, spatial_rule: str = "", notes: list[str] | None = None,
                 metric_definitions: str = "spatialbenchmarking") -> str:
    """Write the report and return its text.

    ``figures``: {"heatmaps": [...], "figure3": [...], "figure4": [...], "mask_ratio": [...], "rank_stability": [...],
    "spatial": [...], "reference_augmentation": [...]} PNG paths; ``datasets``: {name: {"spec": ..., "qc": path, "prepare": path}};
    ``notes``: lines for the "what was skipped" list (sections the config does not produce, and why).
    """
    import jinja2

    tables_dir = Path(tables_dir)
    metric_files = list(metric_files)
    figures = figures or {}
    comparisons = {t: paper_comparison(tables_dir / f"{t}_vs_paper.csv") for t in ("table1", "table2", "table3")}
    notes = list(notes or [])
    if not any(comparisons.values()):
        notes.append(f"No comparison with the paper: none of this run's datasets is one of the paper's "
                     f"({', '.join(PAPER_DATASETS)}). The paper's values are in results/paper/*.csv.")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    grids = results_grids(tables_dir / "table1_long.csv")
    seeds = sorted({n for g in grids.values() for n in g.get("n_seeds", [])})
    page = env.get_template(TEMPLATE.name).render(
        run=run, version=__version__, generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        protocol=[*protocol_text(protocols, {n: d.get("qc") for n, d in (datasets or {}).items()}).splitlines(), *filter(None, [isolation_text(list(metric_files))]),
                  DEFINITIONS_TEXT[metric_definitions]],
        ablations=ablation_sections(grids), spadit=spadit_tables(tables_dir), augmentation=augmentation_view(tables_dir),
        protocols=json.dumps(protocols, indent=1, sort_keys=True),
        grids=grids, seeds=seeds, best_rule=BEST_RULE, rank_rule=RANK_RULE, comparisons=comparisons, flag_rule=FLAG_RULE,
        summary=summary_rows(tables_dir / "summary.csv"), provenance=provenance_view(tables_dir / "provenance.json"),
        cost_totals=cost_totals_rows(tables_dir / "cost_totals.csv"),
        figures={k: _figures(figures.get(k) or []) for k in FIGURE_KEYS}, spatial_rule=spatial_rule,
        cost=cost_rows(tables_dir / "cost.csv"), problems=problem_runs(metric_files), notes=notes,
        cards=[dataset_card(n, d.get("spec") or {}, d.get("qc"), d.get("prepare")) for n, d in (datasets or {}).items()],
        n_runs=len(list(metric_files)))
    write_text(out_html, page)
    return page
