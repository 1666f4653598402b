"""The 1-D order of genes that stands in for GraphCpG's genomic order of CpG loci.

GraphCpG's "neighbouring loci" of a target CpG are the ``segment_size`` consecutive CpG sites of
its chromosome centred on it: neighbouring CpGs are co-methylated, so their states are informative.
Genes of a spatial section have no such order. Two orders are offered:

* ``correlation`` (default): genes ordered so that positively correlated genes are adjacent:
  average-linkage hierarchical clustering of the genes on the distance 1 - r (r: Pearson
  correlation over the spots where both genes are observed, held-out entries never read), leaves
  in scipy's optimal leaf order (adjacent leaves as similar as possible). A window then holds
  genes whose expression rises and falls with the target gene's, as neighbouring CpGs are
  co-methylated, which is what makes a CpG window informative. (1 - |r| would also put
  anti-correlated genes side by side; then "the neighbours are high" means "high" for some
  windows and "low" for others, a rule the network cannot learn once for all windows.)
* ``task``: the task's own gene order (as the preprocessing kept them); it carries no biological
  neighbourhood and is offered only as a control.
"""

from __future__ import annotations

import numpy as np

LOCUS_ORDERS = ("correlation", "task")


def pairwise_complete_pearson(x: np.ndarray, mask: np.ndarray, min_pairs: int = 3) -> np.ndarray:
    """(G, G) Pearson correlation of the columns of ``x`` (n, G), each pair over the rows where both
    columns are observed (``mask`` True). Unobserved entries (NaN allowed) are never read. Pairs
    with fewer than ``min_pairs`` shared rows or no variance there get 0; the diagonal is 1."""
    m = np.asarray(mask, dtype=bool)
    mf = m.astype(np.float64)
    v = np.where(m, np.nan_to_num(np.asarray(x, dtype=np.float64)), 0.0)
    n_ab = mf.T @ mf
    s_a = v.T @ mf             # [a, b]: sum of column a over rows where a and b are observed
    s_aa = (v * v).T @ mf
    s_ab = v.T @ v
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(n_ab > 0, n_ab, np.nan)
        cov = s_ab - s_a * s_a.T / n
        var_a = s_aa - s_a * s_a / n
        var_b = var_a.T
        ok = (n_ab >= min_pairs) & (var_a > 1e-12 * np.maximum(s_aa, 1.0)) & (var_b > 1e-12 * np.maximum(s_aa.T, 1.0))
        r = np.where(ok, cov / np.sqrt(np.clip(var_a, 0, None) * np.clip(var_b, 0, None)), 0.0)
    r = np.clip(np.nan_to_num(r), -1.0, 1.0)
    r = 0.5 * (r + r.T)
    np.fill_diagonal(r, 1.0)
    return r


def locus_order(values: np.ndarray, mask: np.ndarray, how: str = "correlation") -> np.ndarray:
    """Permutation of the genes (columns of ``values``) defining which genes are "nearby loci"."""
    g = values.shape[1]
    if how == "task" or g < 3:
        return np.arange(g)
    if how != "correlation":
        raise ValueError(f"graphcpg: locus_order must be one of {LOCUS_ORDERS}, got {how!r}")
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    d = 1.0 - pairwise_complete_pearson(values, mask)
    np.fill_diagonal(d, 0.0)
    d = squareform(np.clip(0.5 * (d + d.T), 0.0, None), checks=False)
    z = linkage(d, method="average")
    return np.asarray(leaves_list(optimal_leaf_ordering(z, d)), dtype=np.int64)
