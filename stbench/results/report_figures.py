"""The report's own figures: spatial maps (truth and each method at the spot coordinates) and the
mask-ratio robustness figure (PCC and RMSE against the share of entries held out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.atomic import atomic_path
from stbench.results.figures import _plt
from stbench.data.loaders.h5ad import read_h5ad
from stbench.data.masks import load_mask, load_split
from stbench.data.task import load_task, truth_on_scale
# Imported inside functions on purpose: matplotlib, scanpy, scikit-learn (plotting cost).

MIN_HELD_SHARE = 0.05  # a gene shown in the spatial maps has at least this share of its spots held out


def spatial_genes(truth: np.ndarray, held: np.ndarray, n: int = 4, coords: np.ndarray | None = None,
                  k: int = 6) -> np.ndarray:
    """The rule for the spatial maps' genes (``SPATIAL_RULE``): among genes with at least ``MIN_HELD_SHARE`` of their
    spots held out (all genes with any held-out spot, if none reaches it), the ``n`` with the largest Moran's I of the
    truth on the spots' ``k``-nearest-neighbour graph (scanpy): the most spatially patterned genes, where a method's
    spatial fidelity shows. Without coordinates, or as a tie-break: more held-out entries, then larger variance."""
    n_held = held.sum(0)
    var = np.nanvar(truth, axis=0)
    eligible = n_held >= max(1, MIN_HELD_SHARE * truth.shape[0])
    if not eligible.any():
        eligible = n_held > 0
    moran = np.zeros(truth.shape[1])
    if coords is not None and len(coords) > k and eligible.any():
        import scanpy as sc
        from sklearn.neighbors import kneighbors_graph

        g = kneighbors_graph(np.asarray(coords, dtype=float), k, include_self=False)
        g = ((g + g.T) > 0).astype(np.float64).tocsr()
        vals = np.nan_to_num(truth[:, eligible].T.astype(np.float64))
        moran[eligible] = np.nan_to_num(np.atleast_1d(sc.metrics.morans_i(g, vals)), nan=-np.inf)
    order = np.lexsort((np.arange(truth.shape[1]), -var, -n_held, -moran))
    order = order[eligible[order]]
    return order[:n]


SPATIAL_RULE = (f"Genes (columns): among genes with at least {MIN_HELD_SHARE:.0%} of their spots held out, the 4 with the "
                "largest Moran's I of the truth on the spots' 6-nearest-neighbour graph (scanpy.metrics.morans_i): the most "
                "spatially patterned genes, where a method's spatial fidelity shows. Rows: the truth at every spot, then the "
                "truth and each Table 1 method at the gene's held-out spots only (grey: the other spots). One colour scale per "
                "gene, shared by every row (the truth's 1st-99th percentile), with its colour bar under the column. First seed.")


def spatial_maps(coords: np.ndarray, truth: np.ndarray, held: np.ndarray, panels: dict[str, np.ndarray], genes,
                 out_png, title: str = "", n_genes: int = 4) -> list[str]:
    """A grid of methods (rows) x genes (columns) at the spot coordinates, for the genes chosen by ``spatial_genes``;
    one colour scale and colour bar per gene. Returns the genes' names."""
    plt = _plt()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    idx = spatial_genes(truth, held, n_genes, coords)
    rows = [("Truth (all spots)", truth, False), ("Truth (held-out spots)", truth, True)] + [(k, v, True) for k, v in panels.items()]
    nrow, ncol = len(rows), max(len(idx), 1)
    span = np.ptp(coords, axis=0) + 1e-9
    aspect = float(span[1] / span[0])
    w = 2.6
    size = max(1.0, min(80.0, 0.7 * (72 * w) ** 2 * min(aspect, 1.0) / max(len(coords), 1)))  # spots nearly touch
    fig, axes = plt.subplots(nrow + 1, ncol, figsize=(1.8 + w * ncol, 0.9 + w * aspect * nrow + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": [1] * nrow + [0.08]})
    for j, g in enumerate(idx):
        vmin, vmax = np.nanpercentile(truth[:, g], [1, 99])
        norm = Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-6)
        h = held[:, g]
        for i, (name, m, only_held) in enumerate(rows):
            ax = axes[i][j]
            if only_held:
                ax.scatter(coords[~h, 0], coords[~h, 1], s=size, c="#e3e3e3", linewidths=0)
                ax.scatter(coords[h, 0], coords[h, 1], s=size, c=m[h, g], cmap="viridis", norm=norm, linewidths=0)
            else:
                ax.scatter(coords[:, 0], coords[:, 1], s=size, c=m[:, g], cmap="viridis", norm=norm, linewidths=0)
            ax.set_aspect("equal")
            ax.invert_yaxis()
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{genes[g]}\n({int(h.sum())} spots held out)", fontsize=10)
            if j == 0:
                ax.set_ylabel(name, fontsize=10, rotation=0, ha="right", va="center")
        cb = fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), cax=axes[nrow][j], orientation="horizontal")
        cb.set_label(f"{genes[g]}: expression (task scale)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    if not len(idx):
        for ax in axes.ravel():
            ax.axis("off")
        axes[0][0].text(0.5, 0.5, "no held-out entries", ha="center", va="center")
    fig.suptitle((f"{title}: " if title else "") + "spatial maps (rows: truth and methods; columns: genes)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return [str(genes[g]) for g in idx]


def spatial_from_files(preprocessed, mask_npz, task_file, imputed: dict[str, str], out_png, title: str = "") -> list[str]:
    """Load the truth (on the task's scale), the mask, the coordinates and each method's imputed.npz
    (failed runs skipped); draw the spatial maps (an evaluation-side figure: it reads the truth)."""
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
    groups = [(k, g) for k, g in df.groupby(["dataset", "mask_family"], sort=False) if g["ratio"].nunique() >= 2]
    if not groups:
        return False
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(groups)), squeeze=False)
    for row, ((ds, family), g) in zip(axes, groups):  # family: MaskSpec.family, the mask without its ratio
        for ax, metric in zip(row, metrics):
            d = g[g["metric"] == metric]
            for label, gg in d.groupby("label", sort=False):
                gg = gg.sort_values("ratio")
                ax.errorbar(gg["ratio"], gg["mean"], yerr=gg["std"].fillna(0), marker="o", capsize=2, label=label)
            ax.set_xlabel("mask ratio (share of entries held out)")
            ax.set_title(f"{ds}: {family} masks", fontsize=9)
            ax.set_ylabel(metric.upper())
    axes[0][-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


def summary_figure(ranks_csv, summary_csv, out_png) -> None:
    """The overview across datasets and metrics (``stbench.results.tables.RANK_RULE``): left, each method's mean rank per
    dataset (over the metrics; methods ordered by overall mean rank, values printed, colour bar); right, its overall
    mean rank with the std (thick bar) and min-max (thin line), every single ranking as a dot. The rank of every
    dataset x metric is in ``summary_ranks.csv``."""
    plt = _plt()
    r = pd.read_csv(ranks_csv)
    summ = pd.read_csv(summary_csv)
    labels = list(summ["label"])
    if r.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no rankable Table 1 rows", ha="center", va="center")
        ax.axis("off")
    else:
        several_masks = r["mask"].nunique() > 1  # mask: MaskSpec.id
        r["col"] = r["dataset"].astype(str) + ("\n" + r["mask"].astype(str) if several_masks else "")
        wide = r.pivot_table(index="label", columns="col", values="rank", aggfunc="mean", sort=False).reindex(labels)
        n_metrics = r["metric"].nunique()
        n_m, n_c = len(labels), wide.shape[1]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(3.2 + 0.75 * n_c + 5.5, 1.8 + 0.4 * n_m),
                                      gridspec_kw={"width_ratios": [max(n_c, 2) * 0.75 + 0.8, 5.5]})
        im = ax.imshow(wide.values, cmap="viridis_r", aspect="auto", vmin=1, vmax=max(len(labels), 2))
        ax.set_xticks(range(n_c), wide.columns, rotation=45 if n_c > 4 else 0, ha="right" if n_c > 4 else "center",
                      fontsize=9)
        ax.set_yticks(range(n_m), labels, fontsize=9)
        for (i, j), v in np.ndenumerate(wide.values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="w" if v > (len(labels) + 1) / 2 else "k")
        ax.set_title(f"mean rank per dataset\n(over {n_metrics} metrics; 1 = best)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02, label="rank")
        y = np.arange(n_m)
        for i, lab in enumerate(labels):
            vals = r.loc[r["label"] == lab, "rank"].to_numpy()
            jitter = (np.linspace(-0.18, 0.18, len(vals)) if len(vals) > 1 else np.zeros(1))
            ax2.scatter(vals, i + jitter, s=9, color="#9aa7b8", zorder=1)
        ax2.hlines(y, summ["min_rank"], summ["max_rank"], color="#1d3557", lw=1, zorder=2)
        ax2.errorbar(summ["mean_rank"], y, xerr=summ["std_rank"], fmt="o", color="#e63946", ecolor="#e63946",
                     elinewidth=3, capsize=0, zorder=3, label="mean rank ± std")
        ax2.set_yticks(y, labels, fontsize=9)
        ax2.set_ylim(n_m - 0.5, -0.5)
        ax2.set_xlim(0.5, max(len(labels), 2) + 0.5)
        ax2.set_xlabel("rank (1 = best)")
        ax2.set_title("mean rank, std (thick), min-max (line), each ranking (dots)", fontsize=9)
        ax2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
