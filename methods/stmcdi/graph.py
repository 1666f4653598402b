"""Spatial spot graph: k nearest neighbours in the plane, built once per dataset.

PyG's ``knn_graph`` needs the optional ``torch-cluster`` extension, which is often absent
(it is not installed in this project's environment); we build the same edges with
``scipy.spatial.cKDTree`` and hand PyG a plain ``edge_index``. The graph is made undirected
(i->j and j->i for every k-NN pair), as in the paper's symmetric adjacency matrix (Eq. 2);
``GCNConv`` adds the self-loops.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree


def knn_edge_index(coords: np.ndarray, k: int = 5) -> torch.Tensor:
    """Undirected k-NN graph over spots as a (2, E) long tensor (no self-loops, no duplicates)."""
    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    k = int(min(k, max(n - 1, 0)))
    if k == 0:
        return torch.empty(2, 0, dtype=torch.long)
    _, idx = cKDTree(coords).query(coords, k=k + 1)
    src = np.repeat(np.arange(n), k)
    dst = idx[:, 1:].reshape(-1)
    keep = src != dst  # duplicate coordinates can put a spot among its own neighbours
    src, dst = src[keep], dst[keep]
    pairs = np.unique(np.concatenate([np.stack([src, dst], 1), np.stack([dst, src], 1)]), axis=0)
    return torch.as_tensor(pairs.T.copy(), dtype=torch.long)


def subgraph_for(batch: torch.Tensor, edge_index: torch.Tensor, n_nodes: int, hops: int):
    """The ``hops``-hop neighbourhood of ``batch`` (enough for an exact ``hops``-layer GNN on it).

    Returns (nodes, sub_edge_index, pos) with ``nodes[pos] == batch``.
    """
    from torch_geometric.utils import k_hop_subgraph

    if hops <= 0 or edge_index.numel() == 0:
        return batch, edge_index.new_empty(2, 0), torch.arange(batch.numel(), device=batch.device)
    nodes, sub_ei, pos, _ = k_hop_subgraph(batch, hops, edge_index, relabel_nodes=True, num_nodes=n_nodes)
    return nodes, sub_ei, pos
