"""Helpers for method authors: truth-free fills, masked losses, seeding, the spatial spot graph.

Every method folder may import these (``from stbench.kit.methodkit import ...``): the child process
that runs a method has a copy of the ``stbench`` package beside it. Nothing here reads files.
"""

from __future__ import annotations

import contextlib

import numpy as np
# Imported inside functions on purpose: torch, networkx, scipy.spatial/cluster (import cost; a method imports only what it uses).


class NotApplicable(Exception):
    """Raise from ``impute`` when the method cannot run on this dataset for a reason that is not a
    failure (e.g. Tangram's clusters mode on a reference without cell-type labels); the runner
    records ``skipped: <message up to its first ' ('>`` (the whole message as the error) and the
    tables show it instead of a failed row."""


def fit_mask(task) -> np.ndarray:
    """(n_spots, n_genes) bool: the observed entries a method may fit on, those of the ``train_spots`` (under
    ``inductive`` the test fold's entries are input for its own predictions, never for a fit)."""
    return np.asarray(task.observed_mask, dtype=bool) & np.asarray(task.train_spots, dtype=bool)[:, None]


def gene_means(task) -> np.ndarray:
    """Per-gene mean of the observed entries of the train spots (float32, length n_genes); the overall mean
    where a gene has none."""
    m = fit_mask(task)
    x0 = np.where(m, task.observed, 0.0)
    count = m.sum(0)
    overall = float(x0.sum() / max(int(m.sum()), 1))
    return np.where(count > 0, x0.sum(0) / np.maximum(count, 1), overall).astype(np.float32)


def observed_fill(task, how: str = "gene_mean") -> np.ndarray:
    """A complete (n_spots, n_genes) float32 matrix: observed values, held-out entries filled truth-free.

    ``how``: ``gene_mean`` (the gene's observed mean over the train spots, ``gene_means``) or ``zero``.
    Methods that need a complete input start from this and mask their losses to ``task.observed_mask``.
    """
    if how == "gene_mean":
        fill = gene_means(task)[None, :]
    elif how == "zero":
        fill = np.float32(0.0)
    else:
        raise ValueError(f"observed_fill: how must be 'gene_mean' or 'zero', got {how!r}")
    return np.where(task.observed_mask, np.nan_to_num(task.observed), fill).astype(np.float32)


def masked_mse(pred, target, mask):
    """Mean squared error over the entries where ``mask`` is True (torch tensors); 0 if none."""
    import torch

    m = mask.to(torch.promote_types(pred.dtype, torch.float32))      # counts in at least float32 (bf16 autocast)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


@contextlib.contextmanager
def seeded(seed: int, device=None):
    """Seed torch's RNGs inside the block and restore the caller's RNG state afterwards."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        np_state = np.random.get_state()
        np.random.seed(int(seed) % 2**32)
        try:
            yield
        finally:
            np.random.set_state(np_state)


def knn_edge_index(coords: np.ndarray, k: int = 5):
    """Undirected spatial k-NN graph over spots as a (2, E) torch long tensor (no self-loops, no duplicates).

    PyG's ``knn_graph`` needs the optional ``torch-cluster`` extension, often absent; scipy's cKDTree
    gives the same edges (``knn_others``). The graph is symmetric (the paper's adjacency, stMCDI Eq. 2).
    """
    import torch

    n = np.asarray(coords).shape[0]
    idx, _ = knn_others(coords, k)
    if idx.shape[1] == 0:
        return torch.empty(2, 0, dtype=torch.long)
    src, dst = np.repeat(np.arange(n), idx.shape[1]), idx.reshape(-1)
    pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1)]), axis=0)
    return torch.as_tensor(pairs.T.copy(), dtype=torch.long)


def radius_edge_index(coords: np.ndarray, radius: float):
    """Undirected spatial radius graph (all spot pairs closer than ``radius``) as a (2, E) long tensor."""
    import torch
    from scipy.spatial import cKDTree

    pairs = cKDTree(np.asarray(coords, dtype=np.float64)).query_pairs(float(radius), output_type="ndarray")
    if pairs.size == 0:
        return torch.empty(2, 0, dtype=torch.long)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    return torch.as_tensor(both.T.copy(), dtype=torch.long)


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with ``n`` torch CPU threads (``None``/0: leave as is), restoring the caller's count."""
    import torch

    prev = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def pairwise_complete_pearson(x: np.ndarray, mask: np.ndarray, min_pairs: int = 3) -> np.ndarray:
    """(G, G) Pearson correlation of the columns of ``x`` (n, G), each pair over the rows where both columns are
    observed (``mask`` True); unobserved entries (NaN allowed) are never read. Pairs with fewer than
    ``min_pairs`` shared rows or no variance there get 0; the diagonal is 1. Written here because numpy's
    ``corrcoef`` and pandas' pairwise ``corr`` either ignore a mask or loop over pairs; this is a handful of
    (G x G) matrix products. (GraphSCI's gene graph, GraphCpG's and CpG Transformer's gene orders.)"""
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


def correlation_order(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A permutation of the columns that puts positively correlated ones side by side: average-linkage
    hierarchical clustering (scipy) on 1 - r (``pairwise_complete_pearson`` of the observed entries), leaves
    in scipy's optimal leaf order. The stand-in for a genomic order of loci (GraphCpG, CpG Transformer)."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    d = 1.0 - pairwise_complete_pearson(x, mask)
    np.fill_diagonal(d, 0.0)
    d = squareform(np.clip(0.5 * (d + d.T), 0.0, 2.0), checks=False)
    z = linkage(d, method="average")
    return np.asarray(leaves_list(optimal_leaf_ordering(z, d)), dtype=np.int64)


def observed_zscore(x: np.ndarray, mask: np.ndarray, min_sd: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and sd (ddof=1, as ``sc.pp.scale``) over the entries where ``mask`` is True (pass the
    observed entries of the fitting spots); values elsewhere (NaN allowed) are never read. A column with no
    such entry gets mean 0; an sd not above ``min_sd`` (one entry, constant column) becomes 1. The column sums
    are taken in ``x``'s dtype (DCA and GraphSCI z-score float64 values, the diffusion models float32 ones).
    Written here because ``sc.pp.scale`` and scikit-learn's scalers have no mask."""
    m = np.asarray(mask, dtype=bool)
    x0 = np.where(m, x, 0.0)
    n = m.sum(0)
    mu = np.where(n > 0, x0.sum(0) / np.maximum(n, 1), 0.0)
    var = np.where(m, (x0 - mu) ** 2, 0.0).sum(0) / np.maximum(n - 1, 1)
    sd = np.sqrt(var)
    return mu, np.where(sd > min_sd, sd, 1.0)


def validation_split(n: int, fraction: float, rng: np.random.Generator, count: str = "round") -> np.ndarray:
    """(n,) bool, True for the items (spots or entries) set aside for validation, drawn at random from ``rng``.

    ``count="round"`` (GraphCpG, CpG Transformer: a fraction of the observed entries): round(fraction * n)
    items, at most n - 1, drawn with ``rng.choice``. ``count="keras"`` (DCA: Keras' ``validation_split``
    of the spots): the first int(n * (1 - fraction)) items of ``rng.permutation(n)`` train, the rest validate,
    and none validate when fewer than 2 would train."""
    val = np.zeros(int(n), dtype=bool)
    f = float(fraction)
    if count == "keras":
        n_train = int(n * (1.0 - f))
        if f <= 0 or n_train >= n or n_train < 2:
            return val
        val[rng.permutation(int(n))[n_train:]] = True
    elif count == "round":
        n_val = min(int(round(f * n)), max(int(n) - 1, 0))
        if n_val > 0:
            val[rng.choice(int(n), size=n_val, replace=False)] = True
    else:
        raise ValueError(f"validation_split: count must be 'round' or 'keras', got {count!r}")
    return val


def knn_others(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest *other* rows by Euclidean distance: (indices, distances), both (n, k), nearest
    first (k is capped at n - 1). scipy's cKDTree returns the row itself among its hits, usually first but
    not always when rows coincide: the self-hit is removed wherever it stands (else the farthest hit)."""
    from scipy.spatial import cKDTree

    z = np.asarray(points, dtype=np.float64)
    n = z.shape[0]
    k = int(min(k, max(n - 1, 0)))
    if k == 0:
        return np.empty((n, 0), dtype=np.int64), np.empty((n, 0))
    dist, idx = cKDTree(z).query(z, k=k + 1)
    self_hit = idx == np.arange(n)[:, None]
    drop = np.where(self_hit.any(1), self_hit.argmax(1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, k), dist[keep].reshape(n, k)


def louvain_labels(adj, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Louvain communities (networkx, edge weights of the sparse adjacency ``adj``) as labels 0..K-1,
    numbered by each community's smallest node. The ``louvain`` / ``igraph`` packages scanpy and scGNN call
    are not dependencies here; networkx's is the same algorithm (STAGATE's pre-clustering, scGNN)."""
    import networkx as nx

    n = adj.shape[0]
    comms = nx.community.louvain_communities(nx.from_scipy_sparse_array(adj), weight="weight",
                                             resolution=float(resolution), seed=int(seed))
    labels = np.empty(n, dtype=np.int64)
    for c, members in enumerate(sorted(comms, key=min)):
        labels[sorted(members)] = c
    return labels


COLUMN_ORDERS = ("correlation", "task")


def column_order(x: np.ndarray, mask: np.ndarray, how: str = "correlation") -> np.ndarray:
    """The 1-D order of the genes that stands in for a genome's order of loci (GraphCpG, CpG Transformer):
    ``correlation`` (``correlation_order`` of the observed entries) or ``task`` (the task's own order, a
    control); fewer than 3 genes keep the task's order."""
    g = np.asarray(x).shape[1]
    if how == "task" or g < 3:
        return np.arange(g)
    if how != "correlation":
        raise ValueError(f"the gene order must be one of {COLUMN_ORDERS}, got {how!r}")
    return correlation_order(x, mask)


def glorot_linear(n_in: int, n_out: int):
    """A torch ``Linear`` initialised as a Keras / TensorFlow ``Dense`` layer (Glorot-uniform weights, zero
    bias): the upstream initialisation of DCA's and GraphSCI's dense layers (torch's default differs)."""
    from torch import nn

    lin = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin
