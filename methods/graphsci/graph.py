"""GraphSCI's gene-to-gene graph: |Pearson r| above a threshold, from observed entries only.

Upstream (tutorial.ipynb, "Construction of gene-to-gene relationships") correlates every gene pair
over all cells of the raw count matrix and links pairs with |r| > 0.3 (no self-loops). Here some
entries are held out, so each pair's correlation is computed over the spots where BOTH genes are
observed (pairwise-complete Pearson), vectorised as a handful of (genes x genes) matrix products.
"""

from __future__ import annotations

import numpy as np


def pairwise_complete_pearson(x: np.ndarray, mask: np.ndarray, min_pairs: int = 3) -> np.ndarray:
    """(G, G) Pearson correlations of the columns of ``x`` over rows where both columns are observed.

    ``x`` (n, G) may hold anything (NaN included) where ``mask`` is False: those entries are never read.
    Pairs with fewer than ``min_pairs`` common rows, or zero variance on them, get r = 0.
    """
    m = np.asarray(mask, dtype=np.float64)
    x0 = np.where(mask, np.nan_to_num(np.asarray(x, dtype=np.float64)), 0.0)
    n = m.T @ m                    # common observed rows of (i, j)
    sx = x0.T @ m                  # sum of x_i over rows where j is observed too
    sy = sx.T                      # sum of x_j over rows where i is observed too
    sxx = (x0 * x0).T @ m
    syy = sxx.T
    sxy = x0.T @ x0
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.where(n > 0, n, np.nan)
        cov = sxy - sx * sy / nn
        vx = sxx - sx * sx / nn
        vy = syy - sy * sy / nn
        den = np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))
        tol = 1e-12 * np.maximum(sxx, 1.0)
        r = np.where((n >= min_pairs) & (den > 0) & (vx > tol) & (vy > tol.T), cov / den, 0.0)
    r = np.clip(np.nan_to_num(r), -1.0, 1.0)
    return 0.5 * (r + r.T)


def gene_graph(x: np.ndarray, mask: np.ndarray, threshold: float = 0.3):
    """Undirected gene graph as a (2, E) torch long tensor: pairs i != j with |r_ij| > threshold.

    Also returns the dense (G, G) 0/1 adjacency (float32 numpy), the label of the graph decoder.
    """
    import torch

    r = pairwise_complete_pearson(x, mask)
    adj = (np.abs(r) > threshold)
    np.fill_diagonal(adj, False)
    src, dst = np.nonzero(adj)
    edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
    return edge_index, adj.astype(np.float32)
