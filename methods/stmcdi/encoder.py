"""Graph encoders of the spot expression profile (paper §3.3.2, Table 3 ablation).

Every encoder maps an (n_spots, n_genes) masked expression matrix to a latent of the same shape
(n_genes -> hidden -> ... -> n_genes, as in the released code's 3-layer GCN with hidden 128).

Mini-batches are exact for every encoder: the GCN's symmetric degree normalisation (with self
loops) is computed once on the full graph (:meth:`GraphEncoder.graph`) and its edge weights are
carried into the batch's k-hop subgraph (``GCNConv(normalize=False)``), so the batch spots' outputs
equal the full-graph ones. GAT (softmax over each node's own in-edges, all inside the subgraph)
and GIN (a plain sum) are exact on the subgraph as they are.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ENCODERS = ("gcn", "gat", "gin", "mlp", "none")


class GraphEncoder(nn.Module):
    def __init__(self, kind: str, n_genes: int, hidden: int = 128, layers: int = 3, dropout: float = 0.0):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {kind!r}")
        if kind == "none":
            raise ValueError("encoder 'none' has no module; the model skips the latent")
        self.kind = kind
        self.dropout = dropout
        dims = [n_genes] + [hidden] * (layers - 1) + [n_genes]
        convs = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            if kind == "gcn":
                from torch_geometric.nn import GCNConv
                convs.append(GCNConv(a, b, normalize=False))  # normalised once on the full graph
            elif kind == "gat":
                from torch_geometric.nn import GATConv
                convs.append(GATConv(a, b, heads=1))
            elif kind == "gin":
                from torch_geometric.nn import GINConv
                convs.append(GINConv(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b)), train_eps=True))
            else:  # mlp: same widths, no graph
                convs.append(nn.Linear(a, b))
        self.convs = nn.ModuleList(convs)

    @property
    def hops(self) -> int:
        return 0 if self.kind == "mlp" else len(self.convs)

    def graph(self, edge_index: torch.Tensor, n_nodes: int):
        """(edge_index, edge_weight) of the full graph as the encoder uses it: for GCN with self loops
        and the symmetric degree normalisation D^-1/2 (A + I) D^-1/2; for the others unchanged, no weights."""
        if self.kind != "gcn":
            return edge_index, None
        from torch_geometric.nn.conv.gcn_conv import gcn_norm

        return gcn_norm(edge_index, None, n_nodes, improved=False, add_self_loops=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_weight`` None: ``edge_index`` is the full graph (normalised here); otherwise the
        (sub)graph's edges with their full-graph weights from :meth:`graph`."""
        if self.kind == "gcn" and edge_weight is None:
            edge_index, edge_weight = self.graph(edge_index, x.shape[0])
        for i, conv in enumerate(self.convs):
            if self.kind == "mlp":
                x = conv(x)
            elif self.kind == "gcn":
                x = conv(x, edge_index, edge_weight)
            else:
                x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.relu(x)
                if self.dropout > 0:
                    x = F.dropout(x, self.dropout, self.training)
        return x
