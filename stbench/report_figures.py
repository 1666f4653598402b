"""The report's own figures: spatial maps (truth and each method at the spot coordinates) and the
mask-ratio robustness figure (PCC and RMSE against the share of entries held out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.atomic import atomic_path
from stbench.figures import _plt


def spatial_genes(truth: np.ndarray, held: np.ndarray, n: int = 3) -> np.ndarray:
    """The rule for the spatial maps' genes: the ``n`` genes with the most held-out entries, ties broken by the
    larger variance of the truth across spots, then by gene order."""
    var = np.nanvar(truth, axis=0)
    order = np.lexsort((np.arange(truth.shape[1]), -var, -held.sum(0)))
    return order[:n][held.sum(0)[order[:n]] > 0]


SPATIAL_RULE = ("genes: the 3 with the most held-out entries (ties: the larger variance of the truth across spots); "
                "first panel: the truth at every spot; then the truth and each method's imputation at the gene's "
                "held-out spots only (grey: the other spots); one colour scale per gene (the truth's 1st-99th percentile); "
                "first seed")


def spatial_maps(coords: np.ndarray, truth: np.ndarray, held: np.ndarray, panels: dict[str, np.ndarray], genes,
                 out_png, title: str = "", n_genes: int = 3) -> list[str]:
    """Truth and each method at the spot coordinates for the genes chosen by ``spatial_genes``; returns their names."""
    plt = _plt()
    idx = spatial_genes(truth, held, n_genes)
    cols = [("Truth (all spots)", truth, False), ("Truth (held-out)", truth, True)] + [(k, v, True) for k, v in panels.items()]
    nrow, ncol = max(len(idx), 1), len(cols)
    size = max(2.0, min(30.0, 6000.0 / max(len(coords), 1)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.9 * ncol, 1.9 * nrow + 0.6), squeeze=False)
    for i, g in enumerate(idx):
        vmin, vmax = np.nanpercentile(truth[:, g], [1, 99])
        h = held[:, g]
        for j, (name, m, only_held) in enumerate(cols):
            ax = axes[i][j]
            if only_held:
                ax.scatter(coords[~h, 0], coords[~h, 1], s=size, c="#dddddd", linewidths=0)
                ax.scatter(coords[h, 0], coords[h, 1], s=size, c=m[h, g], cmap="viridis", vmin=vmin, vmax=vmax, linewidths=0)
            else:
                ax.scatter(coords[:, 0], coords[:, 1], s=size, c=m[:, g], cmap="viridis", vmin=vmin, vmax=vmax, linewidths=0)
            ax.set_aspect("equal")
            ax.invert_yaxis()
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{genes[g]}\n({int(h.sum())} held out)", fontsize=8)
    if not len(idx):
        axes[0][0].text(0.5, 0.5, "no held-out entries", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return [str(genes[g]) for g in idx]


def spatial_from_files(preprocessed, mask_npz, task_file, imputed: dict[str, str], out_png, title: str = "") -> list[str]:
    """Load the truth (on the task's scale), the mask, the coordinates and each method's imputed.npz
    (failed runs skipped); draw the spatial maps (an evaluation-side figure: it reads the truth)."""
    from stbench.loaders.h5ad import read_h5ad
    from stbench.masks import load_mask, load_split
    from stbench.task import load_task, truth_on_scale

    task = load_task(task_file)
    truth = truth_on_scale(read_h5ad(preprocessed), task, load_split(mask_npz))  # count splitting: the target half
    held, _, _ = load_mask(mask_npz)
    panels = {}
    for label, path in imputed.items():
        with np.load(path) as z:
            if "imputed" in z:
                panels[label] = z["imputed"]
    return spatial_maps(task.coords, truth, held, panels, list(task.genes), out_png, title=title)


def mask_ratio_figure(long_csv, out_png, metrics=("pcc", "rmse")) -> bool:
    """Robustness to the share held out: each Table 1 method's metric against the mask ratio (mean ± std over
    seeds), one row per dataset and mask strategy listed at two or more ratios. False if there is none."""
    plt = _plt()
    df = pd.read_csv(long_csv)
    df = df[(df["table"] == "table1") & df["metric"].isin(metrics)]
    groups = [(k, g) for k, g in df.groupby(["dataset", "mask_strategy", "among"], sort=False) if g["ratio"].nunique() >= 2]
    if not groups:
        return False
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(groups)), squeeze=False)
    for row, ((ds, strat, among), g) in zip(axes, groups):
        for ax, metric in zip(row, metrics):
            d = g[g["metric"] == metric]
            for label, gg in d.groupby("label", sort=False):
                gg = gg.sort_values("ratio")
                ax.errorbar(gg["ratio"], gg["mean"], yerr=gg["std"].fillna(0), marker="o", capsize=2, label=label)
            ax.set_xlabel("mask ratio (share of entries held out)")
            ax.set_title(f"{ds}: {strat} mask, among {among}", fontsize=9)
            ax.set_ylabel(metric.upper())
    axes[0][-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True
