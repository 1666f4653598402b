"""GraphSCI network and loss (Rao et al. 2021), reimplemented in PyTorch + PyTorch Geometric.

Two coupled parts, as in the upstream TensorFlow code (network.py, optimizer.py, loss.py):

* a variational graph autoencoder over GENES: node features are each gene's expression over all
  spots (G x S); three GCN layers (tanh, relu, then two linear heads) give a mean and a log-std
  (G x G) whose reparameterised sample Z is both decoded as the gene graph (logits) and handed to
  the expression autoencoder;
* an expression autoencoder over SPOTS: X (S x G) is multiplied with W * Z (elementwise weight on
  the learned gene-gene matrix, then ReLU), two dense layers with batch norm, and three dense heads
  with batch norm give the ZINB parameters (dropout pi, dispersion theta, mean mu); mu times the
  spot's size factor is the predicted count.

Loss = graph reconstruction (weighted BCE) + ZINB NLL - KL term of Z + a small count MSE term,
exactly the terms of upstream's ``OptimizerSCI``; here the two expression terms are averaged over
observed entries only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import GCNConv

from stbench.kit.graph_autoencoder import reconstruction_terms
from stbench.kit.likelihoods import zinb_nll
from stbench.kit.methodkit import glorot_linear as _dense  # upstream Dense: Glorot-uniform weights, zero bias


class GraphSCINet(nn.Module):
    def __init__(self, n_spots: int, n_genes: int, hidden1: int, hidden2: int, dropout: float):
        super().__init__()
        self.dropout = float(dropout)
        # GCN encoder over the gene graph (upstream GraphConvolution: no bias, Glorot weights,
        # symmetric normalisation of A + I: exactly GCNConv with bias=False).
        gcn = lambda i, o: GCNConv(i, o, bias=False, cached=True, add_self_loops=True, normalize=True)
        self.gc1 = gcn(n_spots, hidden1)
        self.gc2 = gcn(hidden1, hidden2)
        self.gc_mean = gcn(hidden2, n_genes)
        self.gc_logstd = gcn(hidden2, n_genes)
        # MultiplyLayer: X @ (W * Z) + b
        w = torch.empty(n_genes, n_genes)
        nn.init.xavier_uniform_(w)
        self.mult_w = nn.Parameter(w)
        self.mult_b = nn.Parameter(torch.zeros(n_genes))
        # Dense layers, each followed by batch norm (upstream Dense applies
        # tf.layers.batch_normalization before the activation, heads included; TF's epsilon 1e-3).
        # Full-batch training: batch statistics are used at training and at prediction alike.
        bn = lambda d: nn.BatchNorm1d(d, eps=1e-3, track_running_stats=False)
        self.enc1, self.bn1 = _dense(n_genes, hidden1), bn(hidden1)
        self.enc2, self.bn2 = _dense(hidden1, hidden2), bn(hidden2)
        self.pi_head, self.bn_pi = _dense(hidden2, n_genes), bn(n_genes)
        self.disp_head, self.bn_disp = _dense(hidden2, n_genes), bn(n_genes)
        self.mean_head, self.bn_mean = _dense(hidden2, n_genes), bn(n_genes)

    def _gc(self, layer, h, edge_index):
        return layer(F.dropout(h, self.dropout, self.training), edge_index)

    def forward(self, gene_feats: torch.Tensor, x: torch.Tensor, edge_index,
                size_factors: torch.Tensor, sample: bool = True) -> dict:
        """gene_feats (G, S) = x.T; x (S, G) the normalised, scaled, truth-free-filled input;
        edge_index: the gene graph (a (2, E) edge_index or a sparse adj_t)."""
        h = torch.tanh(self._gc(self.gc1, gene_feats, edge_index))
        h = torch.relu(self._gc(self.gc2, h, edge_index))
        z_mean = self._gc(self.gc_mean, h, edge_index)
        z_logstd = self._gc(self.gc_logstd, h, edge_index)
        if sample:
            z = z_mean + torch.randn_like(z_mean) * torch.exp(z_logstd)
        else:
            z = z_mean
        inner = torch.relu(x @ (self.mult_w * z) + self.mult_b)
        e = torch.relu(self.bn1(self.enc1(inner)))
        e = torch.relu(self.bn2(self.enc2(e)))
        pi = torch.sigmoid(self.bn_pi(self.pi_head(e)))
        disp = torch.clamp(F.softplus(self.bn_disp(self.disp_head(e))), 1e-4, 1e4)
        mu = torch.clamp(torch.exp(self.bn_mean(self.mean_head(e))), 1e-5, 1e6)
        return {"z_adj": z, "z_mean": z_mean, "z_logstd": z_logstd, "pi": pi, "disp": disp,
                "mu": mu, "counts": mu * size_factors[:, None]}


def graphsci_loss(out: dict, counts: torch.Tensor, mask: torch.Tensor, adj_label: torch.Tensor,
                  pos_weight: float, norm: float, mse_weight: float,
                  lgamma_y1: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Upstream's total cost, with both expression terms restricted to observed entries.

    ``counts`` may hold anything at unobserved entries (they are replaced by 0 before any
    arithmetic, so neither the loss nor its gradient can depend on them). ``lgamma_y1``, if given,
    must be lgamma(y + 1) of that zero-filled target.
    """
    m = mask.to(out["mu"].dtype)
    n_obs = m.sum().clamp_min(1.0)
    y = torch.where(mask, counts, torch.zeros_like(counts))
    n_spots = counts.shape[0]
    # graph decoder: Z itself are the edge logits; the (V)GAE terms of stbench.kit.graph_autoencoder
    cost_adj, kl_adj = reconstruction_terms(out["z_adj"], adj_label, pos_weight, norm, out["z_mean"], out["z_logstd"])
    nll = zinb_nll(y, out["counts"], out["disp"], out["pi"], lgamma_y1=lgamma_y1)  # ZINB on mu * size factor
    cost_expr = torch.where(mask, nll, torch.zeros_like(nll)).sum() / n_obs
    sq = (out["counts"] - y) ** 2
    kl_expr = (mse_weight * 0.5 / n_spots) * (torch.where(mask, sq, torch.zeros_like(sq)).sum() / n_obs)
    cost = cost_adj + cost_expr - (kl_adj - kl_expr)
    return cost, {"cost": float(cost.detach()), "adj": float(cost_adj.detach()), "zinb": float(cost_expr.detach()),
                  "kl_adj": float(kl_adj.detach()), "mse": float(kl_expr.detach())}
