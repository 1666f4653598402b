"""Figures: a Figure-2-style clustered heatmap of held-out entries (truth beside every method,
one clustering order for all panels) and the Figure-3-style training-mask-ratio curve."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from stbench.atomic import atomic_path
from stbench.data.loaders.h5ad import read_h5ad
from stbench.data.masks import load_mask, load_split
from stbench.data.task import load_task, truth_on_scale
# Imported inside functions on purpose: matplotlib, seaborn, pandas, scipy (plotting cost; imported only when a figure is drawn).


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


def _panel_image(sns, plt, block, hidden, row_link, col_link, title, vmin, vmax, gene_names, size=4.4):
    """One panel as a seaborn clustermap on the given linkages (dendrograms, colour bar, axis labels), rendered to
    an RGBA array so that every panel can be tiled into one figure (a clustermap always makes its own figure)."""
    df = pd.DataFrame(block, columns=gene_names)
    show_genes = len(gene_names) <= 40
    cg = sns.clustermap(df, row_linkage=row_link, col_linkage=col_link, mask=hidden, cmap="viridis", vmin=vmin,
                        vmax=vmax, figsize=(size, size), xticklabels=show_genes, yticklabels=False,
                        dendrogram_ratio=0.14, cbar_pos=(0.02, 0.865, 0.025, 0.115),
                        cbar_kws={"label": "expression\n(task scale)"})
    ax = cg.ax_heatmap
    ax.set_facecolor("#d9d9d9")
    ax.set_xlabel(f"genes ({block.shape[1]}, clustered)", fontsize=8)
    ax.set_ylabel(f"spots ({block.shape[0]}, clustered)", fontsize=8)
    ax.tick_params(axis="x", labelsize=(7 if len(gene_names) <= 20 else 4.5) if show_genes else 6)
    cg.ax_cbar.tick_params(labelsize=7)
    cg.ax_cbar.yaxis.label.set_size(7)
    cg.fig.suptitle(title, fontsize=11, x=0.57, y=0.995, fontweight="bold")
    cg.fig.canvas.draw()
    img = np.asarray(cg.fig.canvas.buffer_rgba()).copy()
    plt.close(cg.fig)
    return img


def clustered_heatmap(truth: np.ndarray, held: np.ndarray, panels: dict[str, np.ndarray], out_png, title: str = "",
                      max_spots: int = 60, max_genes: int = 40, gene_names=None) -> None:
    """Truth and every method's imputation on one block (the spots and genes with the most held-out entries), each a
    seaborn clustermap with the truth's dendrograms (average linkage, Euclidean; one order for every panel), one
    colour scale (the 1st-99th percentile of the truth's held-out entries; values beyond are clipped) with its colour
    bar, and labelled axes.

    Observed (not held-out) cells are grey: only held-out entries are compared.
    """
    import seaborn as sns
    from scipy.cluster.hierarchy import linkage

    plt = _plt()
    spots, genes = heatmap_block(held, max_spots, max_genes)
    names = [str(gene_names[g]) for g in genes] if gene_names is not None else [f"g{g}" for g in genes]
    block = truth[np.ix_(spots, genes)]
    hidden = ~held[np.ix_(spots, genes)]
    row_link = linkage(block, method="average", metric="euclidean") if block.shape[0] > 1 else None
    col_link = linkage(block.T, method="average", metric="euclidean") if block.shape[1] > 1 else None
    mats = {"Truth": block}
    mats.update({k: v[np.ix_(spots, genes)] for k, v in panels.items()})
    vals = block[~hidden] if (~hidden).any() else block.ravel()
    vmin, vmax = np.nanpercentile(vals, [1, 99])  # the truth's range: a method's outliers are clipped, not the scale
    imgs = [_panel_image(sns, plt, m, hidden, row_link, col_link, name, vmin, vmax, names) for name, m in mats.items()]
    ncol = min(len(imgs), 4)
    nrow = int(np.ceil(len(imgs) / ncol))
    h, w = imgs[0].shape[:2]
    blank = np.full_like(imgs[0], 255)
    grid = np.concatenate([np.concatenate([imgs[r * ncol + c] if r * ncol + c < len(imgs) else blank for c in range(ncol)],
                                          axis=1) for r in range(nrow)], axis=0)
    dpi = 100

    text = (title + ": " if title else "") + ("held-out entries (grey: observed), every panel in the truth's clustering "
                                              "order, one colour scale")
    lines = textwrap.wrap(text, width=max(40, int(grid.shape[1] / 9.5)))  # ~9.5 px per character at 12 pt
    head = 0.3 + 0.25 * len(lines)
    fig = plt.figure(figsize=(grid.shape[1] / dpi, grid.shape[0] / dpi + head), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, grid.shape[0] / (grid.shape[0] + head * dpi)))
    ax.imshow(grid, interpolation="none")
    ax.axis("off")
    fig.text(0.5, 1 - (head / 2) / fig.get_figheight(), "\n".join(lines), ha="center", va="center", fontsize=12)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def honest_ylim(metric: str, values) -> tuple[float, float]:
    """A y-range that does not exaggerate small differences: correlations and cosine on [min(0, lowest), 1],
    error metrics from 0 to 10% above the largest value; other metrics from 0 where all values are positive."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return (0.0, 1.0)
    if metric.startswith(("pcc", "cosine", "ssim")):
        return (min(0.0, float(v.min()) - 0.05), 1.0)
    lo = 0.0 if v.min() >= 0 else float(v.min()) * 1.1
    return (lo, float(v.max()) * 1.1 if v.max() > 0 else 1.0)


def ratio_curve(figure_csv, out_png, metrics=("pcc", "cosine", "rmse", "mae")) -> None:
    """Figure 3: each metric against the training mask ratio, one line per dataset (and per held-out mask, where the
    config lists several): the mean over seeds, its std as error bars and every seed's value as a dot, on an honest
    axis (``honest_ylim``); the panel says how many seeds stand behind each point."""
    plt = _plt()
    df = pd.read_csv(figure_csv)
    keys = ["dataset", "mask"] if "mask" in df.columns else ["dataset"]  # mask: MaskSpec.id
    several = len(keys) > 1 and df["mask"].nunique() > 1
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        d = df[df["metric"] == metric]
        shown = list(d["mean"])
        for key, g in d.groupby(keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            label = f"{key[0]} ({key[1]})" if several else str(key[0])
            g = g.sort_values("x")
            n = g["n_seeds"] if "n_seeds" in g else pd.Series([np.nan] * len(g))
            yerr = np.where(n.fillna(0) > 1, g["std"].fillna(0), 0.0)
            line = ax.errorbar(g["x"], g["mean"], yerr=yerr, marker="o", capsize=3, label=label, zorder=3)
            if "seed_values" in g:
                for x, sv in zip(g["x"], g["seed_values"]):
                    vals = [float(v) for v in str(sv).split(";") if v not in ("", "nan")]
                    shown += vals
                    ax.scatter([x] * len(vals), vals, s=14, color=line[0].get_color(), alpha=0.45, zorder=2,
                               edgecolors="none")
        ax.set_ylim(*honest_ylim(metric, shown))
        ns = sorted({int(v) for v in d.get("n_seeds", pd.Series(dtype=float)).dropna()})
        seeds = ("n = " + "/".join(map(str, ns)) + " seed" + ("s" if ns != [1] else "") +
                 (" (no spread)" if ns == [1] else "")) if ns else ""
        ax.set_xlabel("training mask ratio")
        ax.set_ylabel(metric.upper() if metric != "cosine" else "Cosine")
        ax.set_title(f"{'Cosine' if metric == 'cosine' else metric.upper()}" + (f"  [{seeds}]" if seeds else ""), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Figure 3: mean over seeds (line), std (bars), each seed (dots)", fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def heatmap_from_files(preprocessed, mask_npz, task_file, imputed: dict[str, str], out_png, title: str = "") -> None:
    """Load the truth (on the task's scale), the mask and each method's imputed.npz (failed runs skipped); draw."""
    truth = truth_on_scale(read_h5ad(preprocessed), load_task(task_file), load_split(mask_npz))
    held, _, _ = load_mask(mask_npz)
    panels = {}
    for label, path in imputed.items():
        with np.load(path) as z:
            if "imputed" in z:
                panels[label] = z["imputed"]
    clustered_heatmap(truth, held, panels, out_png, title=title, gene_names=list(load_task(task_file).genes))


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
