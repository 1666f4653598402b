"""Figures: a Figure-2-style clustered heatmap of held-out entries (truth beside every method,
one clustering order for all panels) and the Figure-3-style training-mask-ratio curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stbench.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap_block(held: np.ndarray, max_spots: int = 60, max_genes: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Spots and genes with the most held-out entries: the block shown in the heatmap."""
    genes = np.sort(np.argsort(-held.sum(0), kind="stable")[:max_genes])
    spots = np.sort(np.argsort(-held[:, genes].sum(1), kind="stable")[:max_spots])
    return spots, genes


def clustered_heatmap(truth: np.ndarray, held: np.ndarray, panels: dict[str, np.ndarray], out_png, title: str = "",
                      max_spots: int = 60, max_genes: int = 40) -> None:
    """Truth and every method's imputation on one block, rows/columns in the truth's clustering order.

    Observed (not held-out) cells are greyed out: only held-out entries are compared. The order
    comes from seaborn's hierarchical clustering (clustermap) of the truth block.
    """
    import seaborn as sns

    plt = _plt()
    spots, genes = heatmap_block(held, max_spots, max_genes)
    block = truth[np.ix_(spots, genes)]
    cg = sns.clustermap(pd.DataFrame(block), method="average", metric="euclidean", cmap="viridis")
    rows, cols = cg.dendrogram_row.reordered_ind, cg.dendrogram_col.reordered_ind
    plt.close(cg.fig)
    hidden = ~held[np.ix_(spots, genes)][np.ix_(rows, cols)]
    mats = {"Truth": block[np.ix_(rows, cols)]}
    mats.update({k: v[np.ix_(spots, genes)][np.ix_(rows, cols)] for k, v in panels.items()})
    vals = np.concatenate([m[~hidden] for m in mats.values()]) if (~hidden).any() else block.ravel()
    vmin, vmax = np.percentile(vals, [1, 99])
    n = len(mats)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), squeeze=False)
    for ax, (name, m) in zip(axes.ravel(), mats.items()):
        sns.heatmap(np.ma.masked_array(m, hidden), ax=ax, cmap="viridis", vmin=vmin, vmax=vmax, cbar=False,
                    xticklabels=False, yticklabels=False, mask=hidden)
        ax.set_facecolor("#dddddd")
        ax.set_title(name, fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title + "\n(held-out entries; grey = observed; one clustering order from the truth)", fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def ratio_curve(figure_csv, out_png, metrics=("pcc", "cosine", "rmse", "mae")) -> None:
    """Figure 3: each metric against the training mask ratio, one line per dataset (and per held-out mask,
    where the config lists several)."""
    plt = _plt()
    df = pd.read_csv(figure_csv)
    keys = ["dataset", "mask_strategy", "ratio", "among"] if {"mask_strategy", "ratio", "among"} <= set(df.columns) else ["dataset"]
    several = len(keys) > 1 and df[keys[1:]].drop_duplicates().shape[0] > 1
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        d = df[df["metric"] == metric]
        for key, g in d.groupby(keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            label = f"{key[0]} ({key[1]} {key[2]:g}, {key[3]})" if several else str(key[0])
            g = g.sort_values("x")
            ax.errorbar(g["x"], g["mean"], yerr=g["std"].fillna(0), marker="o", capsize=2, label=label)
        ax.set_xlabel("training mask ratio")
        ax.set_title(metric.upper() if metric != "cosine" else "Cosine")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def heatmap_from_files(preprocessed, mask_npz, task_file, imputed: dict[str, str], out_png, title: str = "") -> None:
    """Load the truth (on the task's scale), the mask and each method's imputed.npz (failed runs skipped); draw."""
    from stbench.loaders.h5ad import read_h5ad
    from stbench.masks import load_mask, load_split
    from stbench.task import load_task, truth_on_scale

    truth = truth_on_scale(read_h5ad(preprocessed), load_task(task_file), load_split(mask_npz))
    held, _, _ = load_mask(mask_npz)
    panels = {}
    for label, path in imputed.items():
        with np.load(path) as z:
            if "imputed" in z:
                panels[label] = z["imputed"]
    clustered_heatmap(truth, held, panels, out_png, title=title)


def figure4_from_files(preprocessed, mask_npz, task_file, imputed: dict[str, str], out_png, title: str = "") -> None:
    """Figure 4 (the paper's App. F.1): clustered heatmaps of the held-out predictions of each generator
    (GAIN, VAE, MLP on the same graph-encoder latent) beside stMCDI's diffusion and the truth, one
    clustering order (seaborn clustermap of the truth block) for all panels."""
    heatmap_from_files(preprocessed, mask_npz, task_file, imputed, out_png,
                       title=("Figure 4: generators on the graph-encoder latent" + (f" - {title}" if title else "")))


def rank_stability_figure(csv_path, sweep_of: str, out_png) -> None:
    """Each method's rank (1 = best) under each protocol of the sweep, flattened and per-gene PCC side by side;
    a method whose rank changes is starred."""
    import pandas as pd

    from stbench.atomic import atomic_path

    plt = _plt()
    df = pd.read_csv(csv_path)
    df = df[df["sweep_of"] == sweep_of]
    metrics = [m for m in ("pcc", "pcc_gene") if m in set(df["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 0.45 * df["label"].nunique() + 2.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        d = df[df["metric"] == metric]
        wide = d.pivot_table(index="label", columns="protocol", values="rank", aggfunc="first")
        changes = d.groupby("label")["rank_changes"].any()
        wide.index = [f"{lab} *" if changes.get(lab, False) else lab for lab in wide.index]
        im = ax.imshow(wide.values, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(wide.shape[0]), wide.index, fontsize=8)
        for (i, j), v in np.ndenumerate(wide.values):
            if np.isfinite(v):
                ax.text(j, i, f"{int(v)}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title({"pcc": "rank by flattened PCC", "pcc_gene": "rank by per-gene PCC"}[metric], fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.6)
    fig.suptitle(f"{sweep_of}: rank of each method under each protocol (* = rank changes)", fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
