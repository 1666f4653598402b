"""The augmentation table and figure: each reference method's Table 1 metrics under every reference setting."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.atomic import atomic_path
from stbench.results.tables import collect, summarise
# Imported inside functions on purpose: matplotlib (plotting cost).

METRICS = ("pcc", "pcc_gene", "rmse", "mae")


def augmentation_table(metric_files, variants: list[dict], settings: dict) -> pd.DataFrame:
    """Long table: dataset, mask, method, setting, metric, mean, std, n_seeds, status, and the change against
    the setting that leaves the reference as prepared (``vs_full``; absent when no such setting)."""
    vs = [v for v in variants if v.get("reference_setting")]
    info = {(v["method"], v["name"]): v for v in vs}
    s = summarise(collect(metric_files, vs))
    s = s[s["metric"].isin(METRICS)].copy()
    s["setting"] = [info[(m, v)]["reference_setting"] for m, v in zip(s["method"], s["variant"])]
    s["base_variant"] = [v.rsplit("__", 1)[0] for v in s["variant"]]
    s["setting_label"] = [settings[x].describe() for x in s["setting"]]
    full = [n for n, st in settings.items() if st.identity]
    keys = ["dataset", "mask_strategy", "ratio", "among", "method", "base_variant", "metric"]
    if full:
        base = s[s["setting"] == full[0]].set_index(keys)["mean"]
        s["vs_full"] = [row["mean"] - base.get(tuple(row[k] for k in keys), np.nan) for _, row in s.iterrows()]
    order = {n: i for i, n in enumerate(settings)}
    s["_o"] = s["setting"].map(order)
    cols = keys[:-1] + ["setting", "setting_label", "metric", "mean", "std", "n_seeds", "status"] + (["vs_full"] if full else [])
    return s.sort_values(keys[:-1] + ["metric", "_o"])[cols].reset_index(drop=True)


def row_names(df: pd.DataFrame) -> pd.Series:
    """Each row's method as shown: the method, with its variant when not ``default`` (two variants of one
    method, e.g. Tangram at two settings, stay two rows and two bar groups)."""
    base = df["base_variant"].astype(str) if "base_variant" in df else pd.Series("default", index=df.index)
    return pd.Series([m if b == "default" else f"{m} ({b})" for m, b in zip(df["method"], base)], index=df.index)


def augmentation_blocks(df: pd.DataFrame) -> list[dict]:
    """The table as blocks, one per dataset and mask: title, metric names, and rows of method, setting and one
    text per metric ('mean±std (change vs full) [status]'; 'mean (n=1)' for one seed). The Markdown file and
    the HTML report both read it."""
    blocks = []
    for (d, m, r), g in df.groupby(["dataset", "mask_strategy", "ratio"], sort=False):
        mets = [x for x in ("pcc", "rmse") if x in set(g["metric"])]
        rows = []
        g = g.assign(_row=row_names(g))
        for (meth, sett), h in g.groupby(["_row", "setting"], sort=False):
            cells = []
            for x in mets:
                row = h[h["metric"] == x].iloc[0]
                one = pd.notna(row["n_seeds"]) and int(row["n_seeds"]) <= 1   # one seed: no std (as Table 1)
                txt = ("n/a" if pd.isna(row["mean"]) else f"{row['mean']:.3f} (n=1)" if one
                       else f"{row['mean']:.3f}±{row['std']:.3f}")
                if pd.notna(row.get("vs_full", np.nan)) and row["vs_full"] != 0.0:   # 0 exactly: the full row itself
                    txt += f" ({row['vs_full']:+.3f})"
                if row["status"] != "ok":
                    txt += f" [{row['status']}]"
                cells.append(txt)
            rows.append({"method": meth, "setting": sett, "setting_label": h["setting_label"].iloc[0], "cells": cells})
        blocks.append({"title": f"{d}, mask {m} {r}", "metrics": mets, "rows": rows})
    return blocks


def to_markdown(df: pd.DataFrame) -> str:
    """Methods x settings, one block per dataset and mask: 'PCC mean±std (change vs full)' and RMSE."""
    lines = []
    for b in augmentation_blocks(df):
        lines.append(f"### {b['title']}\n")
        lines.append("| method | setting | " + " | ".join(b["metrics"]) + " |")
        lines.append("|---|---|" + "---|" * len(b["metrics"]))
        lines += [f"| {r['method']} | {r['setting_label']} | " + " | ".join(r["cells"]) + " |" for r in b["rows"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def augmentation_figure(df: pd.DataFrame, out_png) -> None:
    """Grouped bars: per method, one bar per setting (mean over seeds, std as error bar); PCC and RMSE panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mets = [x for x in ("pcc", "rmse") if x in set(df["metric"])] or ["pcc"]
    groups = list(df.groupby(["dataset", "mask_strategy", "ratio"], sort=False))
    fig, axes = plt.subplots(len(groups) or 1, len(mets), figsize=(5 * len(mets), 3.6 * max(len(groups), 1)), squeeze=False)
    for gi, ((d, m, r), g) in enumerate(groups):
        g = g.assign(_row=row_names(g))
        methods = list(dict.fromkeys(g["_row"]))
        settings = list(dict.fromkeys(g["setting"]))
        labels = dict(zip(g["setting"], g["setting_label"]))
        w = 0.8 / max(len(settings), 1)
        for mi, met in enumerate(mets):
            ax = axes[gi, mi]
            h = g[g["metric"] == met]
            for si, st in enumerate(settings):
                vals = [h[(h["_row"] == me) & (h["setting"] == st)] for me in methods]
                mean = [float(v["mean"].iloc[0]) if len(v) else np.nan for v in vals]
                std = [float(v["std"].iloc[0]) if len(v) else 0.0 for v in vals]
                ax.bar(np.arange(len(methods)) + (si - (len(settings) - 1) / 2) * w, mean, w, yerr=std,
                       label=labels[st], capsize=2)
            ax.set_xticks(np.arange(len(methods)), methods)
            ax.set_ylabel(met.upper())
            ax.set_title(f"{d}, {m} {r}: {met.upper()}")
        axes[gi, 0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
