"""What every generator shares: labels, log-normalised expression, library sizes, and the output AnnData."""

from __future__ import annotations

import random

import numpy as np

from stbench.kit.reference_protocol import normalise_cells, reference_counts
# Imported inside functions on purpose: anndata, pandas, scanpy, scipy (import cost).


def cell_labels(reference, by: str) -> np.ndarray:
    """The reference's cell labels (``obs[by]`` as strings). ``by: louvain`` clusters the cells when the
    reference has no such column (the paper's route: Louvain on the log-normalised cells, scanpy defaults)."""
    if by in reference.obs.columns:
        return reference.obs[by].astype(str).to_numpy()
    if by != "louvain":
        cols = ", ".join(map(str, reference.obs.columns)) or "none"
        raise ValueError(f"the reference has no obs column {by!r} (columns: {cols}); use by: louvain to cluster "
                         "the cells as SCLD does")
    return louvain_labels(reference_counts(reference))


def louvain_labels(counts: np.ndarray, seed: int = 0) -> np.ndarray:
    """Louvain clusters (scanpy with igraph's Louvain: log-normalised cells, PCA, 15-neighbour graph), as ``c<k>``."""
    import anndata as ad
    import scanpy as sc

    random.seed(seed)  # python-igraph draws from Python's random module: the same clusters in every job
    a = ad.AnnData(normalise_cells(counts).astype(np.float32))
    sc.pp.pca(a, n_comps=int(min(50, a.n_vars - 1, a.n_obs - 1)), random_state=seed)
    sc.pp.neighbors(a, random_state=seed)
    sc.tl.louvain(a, flavor="igraph", directed=False)  # igraph's Louvain (community_multilevel): the `louvain` package needs pkg_resources
    return np.array([f"c{v}" for v in a.obs["louvain"].astype(str)])


def log_expression(counts: np.ndarray) -> tuple[np.ndarray, float]:
    """log1p of the cells scaled to the median cell total, and that median (the scale synthetic cells return from)."""
    tot = counts.sum(1)
    med = float(np.median(tot[tot > 0])) if (tot > 0).any() else 1.0
    return normalise_cells(counts), med


def to_counts(logx: np.ndarray, libs: np.ndarray, median: float, upper: np.ndarray | None = None) -> np.ndarray:
    """Log-normalised expression back to counts: each gene clipped to [0, ``upper``] (the real cells' per-gene
    maximum), the cell's profile rescaled to its library size ``libs``, rounded to integers. Without the clip
    and the rescaling a decoder extrapolating off the data's manifold gave cells of 1e10 counts (demo, SCLD)."""
    x = np.maximum(np.asarray(logx, np.float64), 0.0)
    if upper is not None:
        x = np.minimum(x, np.asarray(upper, np.float64)[None, :])
    x = np.expm1(x)
    tot = x.sum(1, keepdims=True)
    libs = np.asarray(libs, np.float64)[:, None]
    return np.rint(np.where(tot > 0, x / np.maximum(tot, 1e-12) * libs, 0.0)).astype(np.float32)


def draw_libraries(counts: np.ndarray, labels: np.ndarray, out_labels: np.ndarray, rng) -> np.ndarray:
    """Per synthetic cell, the total count of a real cell of the same type drawn at random."""
    tot = counts.sum(1)
    out = np.empty(len(out_labels), dtype=np.float64)
    for t in np.unique(out_labels):
        sel = out_labels == t
        pool = tot[labels == t]
        out[sel] = rng.choice(pool if len(pool) else tot, size=int(sel.sum()))
    return out


def requested_labels(n_per_type: dict, known) -> np.ndarray:
    """One label per requested cell; a type the reference does not have is an error."""
    known = set(map(str, known))
    bad = [t for t, n in n_per_type.items() if int(n) > 0 and str(t) not in known]
    if bad:
        raise ValueError(f"cannot generate cells of type(s) {', '.join(map(str, bad))}: the reference has none")
    return np.concatenate([np.full(int(n), str(t), dtype=object) for t, n in n_per_type.items() if int(n) > 0]
                          or [np.array([], dtype=object)]).astype(str)


def synthetic_anndata(counts: np.ndarray, labels: np.ndarray, reference, by: str, generator: str):
    """Synthetic cells as an AnnData: raw counts in X (CSR) and layers['counts'], ``obs[by]``, obs['synthetic']."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    x = sp.csr_matrix(np.asarray(counts, dtype=np.float32))
    obs = pd.DataFrame({by: pd.Categorical(labels.astype(str)), "synthetic": True},
                       index=[f"{generator}_{i:06d}" for i in range(len(labels))])
    out = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=reference.var_names.copy()))
    out.layers["counts"] = x.copy()
    out.uns["generator"] = generator
    return out
