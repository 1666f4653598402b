"""scGNN's cell graph (here: a spot graph), its clustering and the convergence criteria.

* ``embedding_graph``: k-NN graph on the feature-autoencoder embedding, pruned with scGNN's
  default "KNNgraphStats" rule (a neighbour is kept when its distance is at most the mean plus one
  standard deviation of the spot's k neighbour distances).
* ``spatial_graph``: the spatial k-NN graph of the spots (the optional spatial variant).
* ``cluster_labels``: scGNN's default "LouvainK" clustering: Louvain on the cell graph gives the
  number of communities, scaled by ``resolution``; k-means on the embedding with that many clusters.
* ``graph_change`` (and scikit-learn's ``adjusted_rand_score``, in impute.py): the two convergence
  criteria of the iterative loop.

All graphs are symmetric binary ``scipy.sparse.csr_matrix`` adjacencies without self-loops,
built with vectorised numpy/scipy (no loop over spots).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from stbench.kit.methodkit import knn_others, louvain_labels

METRICS = ("euclidean", "cosine", "correlation")
PRUNE = ("stats", "none")


def knn(z: np.ndarray, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows: (indices n x k, distances n x k in ``metric``).

    Cosine and correlation distances are computed exactly from the Euclidean distance of the
    L2-normalised (and, for correlation, centred) rows: ``d = ||u - v||^2 / 2``.
    """
    z = np.asarray(z, dtype=np.float64)
    if metric not in METRICS:
        raise ValueError(f"knn metric must be one of {METRICS}, got {metric!r}")
    if metric == "correlation":
        z = z - z.mean(1, keepdims=True)
    if metric in ("cosine", "correlation"):
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        z = np.divide(z, norm, out=np.zeros_like(z), where=norm > 0)
    idx, dist = knn_others(z, k)   # the spot itself dropped wherever cKDTree returns it
    if metric in ("cosine", "correlation"):
        dist = dist ** 2 / 2.0
    return idx, dist


def prune_stats(dist: np.ndarray) -> np.ndarray:
    """scGNN's KNNgraphStats pruning: keep neighbours with distance <= mean + std of the row."""
    bound = dist.mean(1, keepdims=True) + dist.std(1, keepdims=True)
    return dist <= bound


def adjacency(n: int, idx: np.ndarray, keep: np.ndarray | None = None) -> sp.csr_matrix:
    """Symmetric binary adjacency from directed neighbour lists (an edge kept in either direction)."""
    rows = np.repeat(np.arange(n), idx.shape[1])
    cols = idx.reshape(-1)
    if keep is not None:
        rows, cols = rows[keep.reshape(-1)], cols[keep.reshape(-1)]
    ok = rows != cols
    a = sp.csr_matrix((np.ones(ok.sum()), (rows[ok], cols[ok])), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.float64)
    return sp.csr_matrix(a)


def embedding_graph(z: np.ndarray, k: int, metric: str, prune: str) -> sp.csr_matrix:
    """The scGNN cell graph: k-NN on the embedding, pruned."""
    if prune not in PRUNE:
        raise ValueError(f"prune must be one of {PRUNE}, got {prune!r}")
    idx, dist = knn(z, k, metric)
    keep = prune_stats(dist) if prune == "stats" else None
    return adjacency(z.shape[0], idx, keep)


def spatial_graph(coords: np.ndarray, k: int) -> sp.csr_matrix:
    """Spatial k-NN graph of the spots (the harness's ``knn_edge_index``) as a csr adjacency."""
    from stbench.kit.methodkit import knn_edge_index

    n = coords.shape[0]
    ei = knn_edge_index(np.asarray(coords, dtype=np.float64), int(k)).numpy()
    a = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    return sp.csr_matrix(((a + a.T) > 0).astype(np.float64))


def louvain_count(adj: sp.csr_matrix, seed: int) -> int:
    """Number of Louvain communities of the graph (modularity resolution 1, as igraph's multilevel)."""
    if adj.nnz == 0:
        return adj.shape[0]
    return int(louvain_labels(adj, 1.0, seed).max()) + 1


def trim_clusters(labels: np.ndarray, min_size: int, max_clusters: int) -> np.ndarray:
    """scGNN's trimClustering: clusters smaller than ``min_size`` (or numbered >= max) merge into one."""
    labels = np.asarray(labels).copy()
    ids, counts = np.unique(labels, return_counts=True)
    small = ids[(counts < min_size) | (ids >= max_clusters)]
    labels[np.isin(labels, small)] = max_clusters
    return np.unique(labels, return_inverse=True)[1]


def cluster_labels(adj: sp.csr_matrix, emb: np.ndarray, method: str, *, resolution: float | None,
                   n_clusters: int, max_clusters: int, min_cluster_size: int, seed: int) -> np.ndarray:
    """Cell-type labels (0..K-1) of the iteration.

    ``louvain_k`` (scGNN default "LouvainK"): K = int(#Louvain communities * resolution), at least 2
    (resolution "auto": 0.8 below 2000 cells, else 0.5), then k-means on the embedding.
    ``louvain``: the Louvain communities themselves. ``kmeans``: k-means with ``n_clusters``.
    """
    n = emb.shape[0]
    if resolution is None:
        resolution = 0.8 if n < 2000 else 0.5
    if method == "louvain":
        labels = louvain_labels(adj, 1.0, seed)
    else:
        if method == "louvain_k":
            k = int(louvain_count(adj, seed) * resolution)
            k = k if k >= 3 else 2
        elif method == "kmeans":
            k = int(n_clusters)
        else:
            raise ValueError(f"clustering must be louvain_k, louvain or kmeans, got {method!r}")
        k = max(1, min(k, n))
        from sklearn.cluster import KMeans

        # scikit-learn's KMeans with the settings of scGNN's release (k-means++, n_init=10, max_iter=300, tol=1e-4)
        labels = KMeans(n_clusters=k, n_init=10, max_iter=300, tol=1e-4,
                        random_state=int(seed)).fit_predict(np.asarray(emb, np.float64))
    labels = np.unique(labels, return_inverse=True)[1]
    n_lab = labels.max() + 1
    if n_lab > max_clusters or n_lab <= 1:
        labels = trim_clusters(labels, min_cluster_size, max_clusters)
    return labels


def normalized_laplacian(adj: sp.csr_matrix) -> sp.csr_matrix:
    """I - D^-1/2 A D^-1/2 (zero rows/columns for isolated nodes, as networkx)."""
    deg = np.asarray(adj.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    d = sp.diags(inv)
    return sp.csr_matrix(sp.diags((deg > 0).astype(float)) - d @ adj @ d)


def column_normalised(adj: sp.csr_matrix) -> sp.csr_matrix:
    """A / colsum(A) (scGNN's ``adjGc / np.sum(adjGc, axis=0)``)."""
    col = np.asarray(adj.sum(0)).ravel()
    return sp.csr_matrix(adj @ sp.diags(np.where(col > 0, 1.0 / np.where(col > 0, col, 1.0), 0.0)))


def graph_change(new: sp.csr_matrix, old: sp.csr_matrix) -> float:
    """Mean absolute entry-wise change over all n^2 entries."""
    n = new.shape[0]
    return float(abs(new - old).sum() / (n * n))
