"""GraphCpG's network on batches of locus-aware neighbouring subgraphs (dense bipartite form).

Upstream (model/graphcpg.py, ``CpGGraph``): every target (locus, cell) gets a subgraph with
``segment_size`` locus nodes (the window centred on the target locus; one-hot node label = window
position 1..W) and ALL cell nodes (label 0, fixed order); an edge per observed entry of the window,
its relation type = the methylation state. Six RGCN layers (2 relations, 2 bases, mean aggregation
per relation, root weight, bias), tanh after each; the states of all layers are concatenated,
the (W + C) x sum(latent_dim) node-state matrix is read out as an image by a small CNN
(Conv 5x5 stride (1,5) -> ReLU -> MaxPool 2 -> Conv 3x3 stride (1,3) -> ReLU -> MaxPool 2), then
Linear(-> 40) -> ReLU -> Dropout(0.5) -> Linear(-> 1).

Here the subgraph of a target is held densely: its window of the (locus x cell) matrix, as an
edge mask A and edge values X (B, W, C). A bipartite graph with mean aggregation is then a pair of
batched matrix products, which is what PyG's RGCNConv computes on the same edges, without building
a per-target edge list. Relations (see README, "Deviations"):

* ``observed`` edges carry a continuous value v (the task-scale value, standardised); their weight
  is W(v) = B1 + v * B2: a value-modulated version of upstream's two-basis RGCN (two bases; for
  v in {0, 1} it spans the same per-relation weights);
* the ``query`` edge (target locus, target cell) replaces the target's own edge; it carries no value
  (upstream keeps the target edge but forces its relation to "unmethylated").
Edge dropout (upstream ``dropout_adj``, p = 0.2, each direction independently) is applied when
the batch is built (subgraph.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _glorot(shape) -> nn.Parameter:
    a = math.sqrt(6.0 / (shape[-2] + shape[-1]))
    return nn.Parameter(torch.empty(shape).uniform_(-a, a))


class BipartiteRelConv(nn.Module):
    """One relational graph convolution over a batch of dense bipartite (locus x cell) subgraphs.

    For a node i: out_i = W_root h_i + b + mean_{j in N_obs(i)} (B1 + v_ij B2) h_j + W_q h_q(i),
    the last term only on the two endpoints of a (kept) query edge, mean over its single edge.
    """

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.root = _glorot((d_in, d_out))
        self.w_obs = _glorot((d_in, d_out))
        self.w_val = _glorot((d_in, d_out))
        self.w_query = _glorot((d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, h_loc, h_cell, g, uniform_cells: bool = False):
        """``h_loc`` (B or 1, W, d), ``h_cell`` (B or 1, C, d); ``uniform_cells``: every cell has the
        same features (the first layer: label 0), so a mean over cells is that row where deg > 0."""
        b, w = g.target_cell.shape[0], g.inv_deg_loc.shape[1]
        rows = torch.arange(b, device=g.target_cell.device)
        # messages into locus nodes (cell -> locus edges): aggregate (2W rows: plain, value-weighted), transform
        if uniform_cells:
            agg = g.edges_in_loc.sum(2, keepdim=True) * h_cell[:, :1]            # (B, 2W, d)
        else:
            agg = torch.bmm(g.edges_in_loc, h_cell.expand(b, -1, -1))
        agg = agg.view(b, w, 2, -1) * g.inv_deg_loc[:, :, :, None]
        out_loc = h_loc @ self.root + self.bias + agg[:, :, 0] @ self.w_obs + agg[:, :, 1] @ self.w_val
        # messages into cell nodes (locus -> cell edges): transform the W locus rows, then aggregate
        p = torch.stack([h_loc @ self.w_obs, h_loc @ self.w_val], dim=2).flatten(1, 2)   # (B or 1, 2W, out)
        et = g.edges_in_cell.transpose(1, 2)                                               # (B, C, 2W)
        msg = et @ p[0] if p.shape[0] == 1 else torch.bmm(et, p)
        out_cell = h_cell @ self.root + self.bias + msg * g.inv_deg_cell
        # the query edge (target locus at the window centre <-> target cell): a relation of its own
        hc_t = h_cell.expand(b, -1, -1)[rows, g.target_cell]
        hl_t = h_loc.expand(b, -1, -1)[:, g.center]
        centre = torch.full_like(g.target_cell, g.center)
        out_loc = out_loc.expand(b, -1, -1).index_put((rows, centre), (hc_t @ self.w_query) * g.q_in_loc,
                                                       accumulate=True)
        out_cell = out_cell.index_put((rows, g.target_cell), (hl_t @ self.w_query) * g.q_in_cell, accumulate=True)
        return out_loc, out_cell


def cnn_out_size(h_in: int, w_in: int) -> tuple[int, int]:
    """Height and width after upstream's CNN readout (same formula as upstream ``lin1_param``)."""
    def conv(n, k, s, p):
        return (n + 2 * p - (k - 1) - 1) // s + 1
    h = conv(conv(conv(conv(h_in, 5, 1, 1), 2, 2, 0), 3, 1, 1), 2, 2, 0)
    w = conv(conv(conv(conv(w_in, 5, 5, 2), 2, 2, 0), 3, 3, 1), 2, 2, 0)
    return h, w


class GraphCpGNet(nn.Module):
    """Relational GNN over the subgraph + upstream's CNN readout over all node states -> one value."""

    def __init__(self, segment_size: int, n_cells: int, latent_dim):
        super().__init__()
        self.segment_size, self.n_cells = int(segment_size), int(n_cells)
        dims = [self.segment_size + 1, *map(int, latent_dim)]
        self.convs = nn.ModuleList(BipartiteRelConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        h, w = cnn_out_size(self.segment_size + self.n_cells, sum(dims[1:]))
        if h < 1 or w < 1:
            raise ValueError(f"graphcpg: the CNN readout needs sum(latent_dim) >= 36 and segment_size + cell nodes >= 6 "
                             f"(got {sum(dims[1:])} and {self.segment_size + self.n_cells})")
        self.cnn = nn.Sequential(nn.Conv2d(1, 4, (5, 5), stride=(1, 5), padding=(1, 2)), nn.ReLU(), nn.MaxPool2d(2, 2),
                                 nn.Conv2d(4, 1, (3, 3), stride=(1, 3), padding=(1, 1)), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.lin1 = nn.Linear(h * w, 40)
        self.lin2 = nn.Linear(40, 1)
        # Initialisation (README, "Deviations"): He-normal weights and zero biases for the readout's
        # convolutions and lin1, and the 1-channel conv's kernel shifted to sum 0. PyTorch's default
        # init shrinks the signal at every layer (prediction sd ~0.005 at start: a long plateau), and the
        # 1-channel conv reads ReLU + max-pool outputs (all >= 0), so a random kernel with a negative sum
        # switches off every output of the ReLU after it for about half of all seeds: a constant
        # prediction and no gradient, for good.
        with torch.no_grad():
            for m in (self.cnn[0], self.cnn[3], self.lin1):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.bias.zero_()
            self.cnn[3].weight -= self.cnn[3].weight.mean()
        # node features: one-hot labels, window position 1..W for loci, 0 for every cell
        self.register_buffer("x_loc", F.one_hot(torch.arange(1, self.segment_size + 1), self.segment_size + 1).float()[None])
        self.register_buffer("x_cell", F.one_hot(torch.zeros(self.n_cells, dtype=torch.long), self.segment_size + 1).float()[None])

    def forward(self, g):
        h_loc, h_cell = self.x_loc, self.x_cell
        states = []
        for i, conv in enumerate(self.convs):
            h_loc, h_cell = conv(h_loc, h_cell, g, uniform_cells=(i == 0))
            h_loc, h_cell = torch.tanh(h_loc), torch.tanh(h_cell)
            states.append(torch.cat([h_loc, h_cell], dim=1))
        x = torch.cat(states, dim=2).unsqueeze(1)       # (B, 1, W + C, sum(latent_dim))
        x = self.cnn(x).flatten(1)
        x = F.dropout(F.relu(self.lin1(x)), p=0.5, training=self.training)
        return self.lin2(x).squeeze(-1)
