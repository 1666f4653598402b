"""Graph encoders of the spot expression profile (paper §3.3.2, Table 3 ablation).

Every encoder maps an (n_spots, n_genes) masked expression matrix to a latent of the same shape
(n_genes -> hidden -> ... -> n_genes, as in the released code's 3-layer GCN with hidden 128).
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
                convs.append(GCNConv(a, b))
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

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x) if self.kind == "mlp" else conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.relu(x)
                if self.dropout > 0:
                    x = F.dropout(x, self.dropout, self.training)
        return x
