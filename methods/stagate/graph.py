"""STAGATE's spatial neighbour network (SNN) and the optional cell type-aware (pruned) network.

Graphs are PyG-style ``edge_index`` tensors (2, E): row 0 = source j, row 1 = target i; target i
aggregates the messages of its sources. As in STAGATE_pyG (``Cal_Spatial_Net`` +
``Transfer_pytorch_Data``), every spot also gets a self-loop.

* ``radius``: spots closer than the cutoff (``stbench.kit.methodkit.radius_edge_index``, symmetric).
  The cutoff is absolute (``rad_cutoff``, upstream's coordinate units) or, when ``rad_cutoff`` is
  None, ``rad_cutoff_nn`` times the median nearest-neighbour distance (scale-aware).
* ``knn``: upstream builds the edge list (spot, one of its k nearest spots) and feeds it as
  (source, target), so a spot aggregates from the spots that count it among *their* k nearest
  neighbours (in-degree varies, out-degree is k). We keep that direction; on a regular grid the
  graph is symmetric anyway.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from stbench.kit.methodkit import knn_others, louvain_labels, radius_edge_index


def median_nn_distance(coords: np.ndarray) -> float:
    """Median distance from a spot to its nearest other spot (distinct positions; 1.0 if undefined)."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape[0] < 2:
        return 1.0
    d, _ = cKDTree(coords).query(coords, k=2)
    d = d[:, 1]
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def knn_edges_upstream(coords: np.ndarray, k: int) -> torch.Tensor:
    """Directed k-NN edges (source = spot, target = each of its k nearest other spots)."""
    n = np.asarray(coords).shape[0]
    idx, _ = knn_others(coords, k)     # exactly k other spots each, the spot itself dropped wherever it stands
    return torch.as_tensor(np.stack([np.repeat(np.arange(n), idx.shape[1]), idx.reshape(-1)]), dtype=torch.long)


def spatial_net(coords: np.ndarray, spatial_net: str, k_cutoff: int, rad_cutoff, rad_cutoff_nn: float):
    """The SNN without self-loops, and a short description (for logs / the README)."""
    if spatial_net == "knn":
        return knn_edges_upstream(coords, int(k_cutoff)), f"knn k={int(k_cutoff)}"
    if spatial_net == "radius":
        r = float(rad_cutoff) if rad_cutoff is not None else float(rad_cutoff_nn) * median_nn_distance(coords)
        return radius_edge_index(coords, r), f"radius r={r:g}"
    raise ValueError(f"stagate: spatial_net must be 'knn' or 'radius', got {spatial_net!r}")


def with_self_loops(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Add one self-loop per spot (upstream adds the identity to the adjacency); drop duplicates."""
    loops = torch.arange(n, dtype=torch.long).repeat(2, 1)
    ei = torch.cat([edge_index.to(torch.long), loops], dim=1)
    ei = torch.unique(ei, dim=1)  # sorted by (source, target): deterministic order
    return ei


def prune_by_labels(edge_index: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """Cell type-aware SNN: keep the edges whose two spots share a pre-clustering label."""
    lab = torch.as_tensor(np.asarray(labels))
    keep = lab[edge_index[0]] == lab[edge_index[1]]
    return edge_index[:, keep]


def induced_subgraph(edge_index: torch.Tensor, nodes: np.ndarray, n: int) -> torch.Tensor:
    """Edges among ``nodes`` (bool mask of length n), relabelled to 0..len(nodes)-1."""
    nodes = torch.as_tensor(np.array(nodes, dtype=bool))
    new_id = torch.full((n,), -1, dtype=torch.long)
    new_id[nodes] = torch.arange(int(nodes.sum()))
    keep = nodes[edge_index[0]] & nodes[edge_index[1]]
    return new_id[edge_index[:, keep]]


def pre_cluster(x: np.ndarray, resolution: float, n_pcs: int, n_neighbors: int, seed: int) -> np.ndarray:
    """Expression pre-clustering of the cell type-aware module.

    Upstream: ``sc.tl.pca`` (50 PCs), ``sc.pp.neighbors`` (15 neighbours, the spot itself included),
    ``sc.tl.louvain(resolution=0.2)``. ``sc.tl.louvain`` ignores the edge weights by default
    (``use_weights=False``), so what it clusters is the symmetric k-NN graph of the PCs (the nonzero
    pattern of the connectivities). We build that graph directly (exact PCA by SVD, exact k-NN) and
    run networkx's Louvain on it (the ``louvain`` package is not a dependency here; scanpy's
    neighbours would also cost a numba compilation). Labels are numbered by their smallest spot.
    """
    import scipy.sparse as sp

    from stbench.kit.methodkit import knn_edge_index

    x = np.asarray(x, dtype=np.float64)
    n, g = x.shape
    xc = x - x.mean(axis=0, keepdims=True)
    n_comps = int(max(1, min(n_pcs, n - 1, g - 1)))
    u, sv, _ = np.linalg.svd(xc, full_matrices=False)
    pcs = u[:, :n_comps] * sv[:n_comps]
    ei = knn_edge_index(pcs, int(max(1, min(n_neighbors - 1, n - 1)))).numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    return louvain_labels(adj, resolution, seed)
