"""The cost table: what each method cost per dataset, from every run's ``run.json`` (mean over seeds).

Wall time is the whole sandboxed run (process start to exit) and peak RSS that of the method's process tree, both
measured by the impute process (stbench.run.sandbox); peak GPU memory is ``torch.cuda.max_memory_allocated`` as the
method's process reports it (empty on CPU); device is the GPU the method's process held open, else cpu.
(Estimates before a run are ``stbench.results.cost_estimate``'s; this table is what was measured.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.atomic import write_csv, write_text
from stbench.results.tables import isolation_text

COLUMNS = ["dataset", "method", "variant", "label", "n_runs", "n_ok", "wall_time_s", "peak_rss_mb", "peak_gpu_mb", "device"]


def _num(x):
    try:
        return float(x) if x is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def cost_table(run_files, variants: list[dict] | None = None) -> pd.DataFrame:
    """One row per (dataset, method, variant): runs, successful runs, and the mean over seeds of wall time,
    peak RSS and peak GPU memory; the devices used (comma-separated if they differ)."""
    labels = {(v["method"], v["name"]): v.get("label") for v in variants or []}
    rows = []
    for f in run_files:
        rec = json.loads(Path(f).read_text())
        rows.append({"dataset": rec.get("dataset"), "method": rec.get("method"), "variant": rec.get("variant"),
                     "seed": rec.get("seed"), "ok": rec.get("status") == "ok",
                     "wall_time_s": _num(rec.get("wall_time_s")), "peak_rss_mb": _num(rec.get("peak_rss_mb")),
                     "peak_gpu_mb": _num(rec.get("peak_cuda_mb")), "device": rec.get("device") or "n/a"})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.DataFrame(rows)
    out = (df.groupby(["dataset", "method", "variant"], sort=False, dropna=False)
             .agg(n_runs=("seed", "size"), n_ok=("ok", "sum"), wall_time_s=("wall_time_s", "mean"),
                  peak_rss_mb=("peak_rss_mb", "mean"), peak_gpu_mb=("peak_gpu_mb", "mean"),
                  device=("device", lambda d: ", ".join(dict.fromkeys(map(str, d)))))
             .reset_index())
    out["label"] = [labels.get((m, v)) or (m if v == "default" else f"{m} ({v})")
                    for m, v in zip(out["method"], out["variant"])]
    out["n_ok"] = out["n_ok"].astype(int)
    return out[COLUMNS]


TOTAL_COLUMNS = ["label", "method", "variant", "n_runs", "n_ok", "total_wall_time_s", "max_peak_rss_mb", "max_peak_gpu_mb",
                 "devices"]
RUN_TOTAL = "all methods (the run)"


def cost_totals(run_files, variants: list[dict] | None = None) -> pd.DataFrame:
    """Totals per method (over datasets and seeds): runs, successful runs, the summed wall time and the largest
    peak RSS and GPU memory of any of its runs; then one row for the whole run (``RUN_TOTAL``). Summed wall time
    is machine time, not the run's elapsed time: jobs run side by side."""
    labels = {(v["method"], v["name"]): v.get("label") for v in variants or []}
    rows = []
    for f in run_files:
        rec = json.loads(Path(f).read_text())
        rows.append({"method": rec.get("method"), "variant": rec.get("variant"), "ok": rec.get("status") == "ok",
                     "wall": _num(rec.get("wall_time_s")), "rss": _num(rec.get("peak_rss_mb")),
                     "gpu": _num(rec.get("peak_cuda_mb")), "device": str(rec.get("device") or "n/a")})
    if not rows:
        return pd.DataFrame(columns=TOTAL_COLUMNS)
    df = pd.DataFrame(rows)

    def agg(g):
        return pd.Series({"n_runs": len(g), "n_ok": int(g["ok"].sum()), "total_wall_time_s": g["wall"].sum(min_count=1),
                          "max_peak_rss_mb": g["rss"].max(), "max_peak_gpu_mb": g["gpu"].max(),
                          "devices": ", ".join(dict.fromkeys(g["device"]))})

    out = df.groupby(["method", "variant"], sort=False).apply(agg, include_groups=False).reset_index()
    out = out.sort_values("total_wall_time_s", ascending=False, kind="stable")
    out["label"] = [labels.get((m, v)) or (m if v == "default" else f"{m} ({v})") for m, v in zip(out["method"], out["variant"])]
    total = agg(df).to_dict() | {"label": RUN_TOTAL, "method": "", "variant": ""}
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    out[["n_runs", "n_ok"]] = out[["n_runs", "n_ok"]].astype(int)
    return out[TOTAL_COLUMNS]


def cost_markdown(df: pd.DataFrame) -> str:
    """The cost table for a reader: seconds, MB, '-' where a quantity does not apply (no GPU memory on CPU)."""
    def num(x, fmt):
        return "-" if not np.isfinite(x) else format(x, fmt)

    lines = ["| dataset | method | runs (ok) | wall time (s) | peak RSS (MB) | peak GPU memory (MB) | device |",
             "|---|---|---|---|---|---|---|"]
    for r in df.itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.label} | {r.n_runs} ({r.n_ok}) | {num(r.wall_time_s, '.1f')} | "
                     f"{num(r.peak_rss_mb, '.0f')} | {num(r.peak_gpu_mb, '.0f')} | {r.device} |")
    return "\n".join(lines) + "\n"


def totals_markdown(tot: pd.DataFrame) -> str:
    def num(x, fmt):
        return "-" if not np.isfinite(x) else format(x, fmt)

    lines = ["| method | runs (ok) | total wall time (s) | max peak RSS (MB) | max peak GPU memory (MB) | devices |",
             "|---|---|---|---|---|---|"]
    for r in tot.itertuples(index=False):
        name = f"**{r.label}**" if r.label == RUN_TOTAL else r.label
        lines.append(f"| {name} | {r.n_runs} ({r.n_ok}) | {num(r.total_wall_time_s, '.1f')} | "
                     f"{num(r.max_peak_rss_mb, '.0f')} | {num(r.max_peak_gpu_mb, '.0f')} | {r.devices} |")
    return "\n".join(lines) + "\n"


def write_cost(run_files, variants, out_dir) -> pd.DataFrame:
    """Write cost.csv, cost_totals.csv and cost.md under ``out_dir``."""
    out_dir = Path(out_dir)
    run_files = list(run_files)
    df = cost_table(run_files, variants)
    write_csv(out_dir / "cost.csv", df, index=False)

    head = ("# Cost per method and dataset (mean over seeds)\n\n" + isolation_text(list(run_files)) +
            " Wall time, peak RSS and device are measured by the harness; peak GPU memory is the method "
            "process's own report (torch.cuda.max_memory_allocated).\n\n")
    tot = cost_totals(run_files, variants)
    write_csv(out_dir / "cost_totals.csv", tot, index=False)
    write_text(out_dir / "cost.md", head + cost_markdown(df) + "\n## Totals per method and for the run (summed over "
               "datasets and seeds; machine time, not elapsed time: jobs run side by side)\n\n" + totals_markdown(tot))
    return df
