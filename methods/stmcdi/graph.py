"""Spatial spot graph: k nearest neighbours in the plane, built once per dataset.

PyG's ``knn_graph`` needs the optional ``torch-cluster`` extension, which is often absent
(it is not installed in this project's environment); we build the same edges with
``scipy.spatial.cKDTree`` and hand PyG a plain ``edge_index``. The graph is made undirected
(i->j and j->i for every k-NN pair), as in the paper's symmetric adjacency matrix (Eq. 2);
the GCN encoder adds the self-loops and normalises once on the full graph (encoder.py).
"""

from __future__ import annotations

import torch

from stbench.kit.methodkit import knn_edge_index  # noqa: F401  (the one spatial k-NN graph, shared by methods)


def subgraph_for(batch: torch.Tensor, edge_index: torch.Tensor, n_nodes: int, hops: int,
                 edge_weight: torch.Tensor | None = None):
    """The ``hops``-hop neighbourhood of ``batch`` (enough for an exact ``hops``-layer GNN on it).

    Returns (nodes, sub_edge_index, pos, sub_edge_weight) with ``nodes[pos] == batch``; the
    subgraph's edges keep their full-graph weights (``edge_weight[edge_mask]``, None if none).
    """
    from torch_geometric.utils import k_hop_subgraph

    if hops <= 0 or edge_index.numel() == 0:
        return (batch, edge_index.new_empty(2, 0), torch.arange(batch.numel(), device=batch.device),
                None if edge_weight is None else edge_weight.new_empty(0))
    nodes, sub_ei, pos, emask = k_hop_subgraph(batch, hops, edge_index, relabel_nodes=True, num_nodes=n_nodes)
    return nodes, sub_ei, pos, (None if edge_weight is None else edge_weight[emask])
