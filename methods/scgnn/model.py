"""scGNN's networks and losses: the (feature / cluster / imputation) autoencoder and the graph autoencoder.

The same autoencoder architecture serves as scGNN's feature, cluster and imputation autoencoder
(upstream ``model.AE``): genes -> 512 -> 128 -> 512 -> genes, ReLU everywhere, ReLU output.
The graph autoencoder is the GCN variational graph autoencoder of Kipf & Welling (upstream
``gae/model.GCNModelVAE``; ``gcn_ae`` = the non-variational ``GCNModelAE``) with an inner-product
decoder, trained on the cell graph with the binarised embedding as node features.

Every reconstruction loss is a masked sum of squared errors over the observed entries only
(``mask``), optionally weighted per cell (the imputation autoencoder's graph and cell-type
regularisers, see ``cell_weights``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from stbench.kit.graph_autoencoder import balance, reconstruction_terms


class AE(nn.Module):
    """scGNN's autoencoder (upstream default sizes: hidden 512, embedding 128)."""

    def __init__(self, dim: int, hidden: int, latent: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, dim)

    def encode(self, x):
        return F.relu(self.fc2(F.relu(self.fc1(x))))

    def decode(self, z):
        return F.relu(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        z = self.encode(x)
        return self.decode(z), z


def weight_penalty(model: nn.Module, l1: float, l2: float):
    """L1Para * sum|w| + L2Para * sum w^2 over every parameter (biases included, as upstream)."""
    out = 0.0
    if l1:
        out = out + l1 * sum(p.abs().sum() for p in model.parameters())
    if l2:
        out = out + l2 * sum(p.pow(2).sum() for p in model.parameters())
    return out


def masked_recon_loss(recon, target, mask, cell_w, reduction: str):
    """sum_j w_j * sum_g m_jg (recon - target)^2; ``mean`` divides by the observed entries of the batch.

    ``cell_w`` (per cell) is scGNN's gamma (feature AE) or the imputation regulariser's weights.
    Held-out entries (mask False) contribute nothing, whatever value the input holds there.
    """
    zero = torch.zeros((), dtype=recon.dtype, device=recon.device)
    target = torch.where(mask, target, zero)  # whatever the target holds at held-out entries (even NaN)
    se = torch.where(mask, (recon - target) ** 2, zero).sum(1)
    loss = (cell_w * se).sum()
    if reduction == "mean":
        loss = loss / mask.sum().clamp_min(1).to(recon.dtype)
    return loss


def batches(n: int, batch_size: int) -> list[slice]:
    """Fixed contiguous mini-batches (upstream DataLoader with shuffle=False)."""
    b = max(1, int(batch_size))
    return [slice(i, min(i + b, n)) for i in range(0, n, b)]


def ae_loss(model, x_in, target, mask, cell_w, *, l1: float, l2: float, reduction: str):
    """One batch's loss: masked reconstruction + weight penalty. Returns (loss, recon, z)."""
    recon, z = model(x_in)
    loss = masked_recon_loss(recon, target, mask, cell_w, reduction) + weight_penalty(model, l1, l2)
    return loss, recon, z


def train_ae(model, opt, x_in, target, mask, cell_w, *, epochs: int, batch_size: int, l1: float, l2: float,
             reduction: str) -> list[float]:
    """Train for ``epochs`` passes over fixed batches. Returns the per-epoch summed loss."""
    hist = []
    parts = batches(x_in.shape[0], batch_size)
    model.train()
    for _ in range(int(epochs)):
        total = 0.0
        for sl in parts:
            opt.zero_grad(set_to_none=True)
            loss, _, _ = ae_loss(model, x_in[sl], target[sl], mask[sl], cell_w[sl], l1=l1, l2=l2, reduction=reduction)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        hist.append(total)
    return hist


@torch.no_grad()
def ae_forward(model, x_in, batch_size: int):
    """Reconstruction and embedding of every cell (no gradient)."""
    model.eval()
    rs, zs = [], []
    for sl in batches(x_in.shape[0], batch_size):
        r, z = model(x_in[sl])
        rs.append(r)
        zs.append(z)
    return torch.cat(rs), torch.cat(zs)


# --------------------------------------------------------------------------- graph autoencoder


class GraphConv(nn.Module):
    """Kipf-Welling GCN layer: act(A_norm @ dropout(x) @ W), Xavier-uniform W, no bias (upstream)."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0, act=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        nn.init.xavier_uniform_(self.weight)
        self.dropout = dropout
        self.act = act

    def forward(self, x, adj):
        x = F.dropout(x, self.dropout, self.training)
        out = adj @ (x @ self.weight)
        return self.act(out) if self.act is not None else out


class GCNGAE(nn.Module):
    """GCN graph autoencoder: ``gcn_vae`` (default) or ``gcn_ae``; the embedding is ``mu``."""

    def __init__(self, d_in: int, hidden1: int = 32, hidden2: int = 16, dropout: float = 0.0, variational: bool = True):
        super().__init__()
        self.gc1 = GraphConv(d_in, hidden1, dropout, act=F.relu)
        self.gc2 = GraphConv(hidden1, hidden2, dropout)
        self.gc3 = GraphConv(hidden1, hidden2, dropout) if variational else None
        self.dropout = dropout

    def forward(self, x, adj):
        h = self.gc1(x, adj)
        mu = self.gc2(h, adj)
        if self.gc3 is None:
            return mu, mu, None
        logvar = self.gc3(h, adj)
        # upstream treats "logvar" as log(sigma): z = mu + eps * exp(logvar)
        z = mu + torch.randn_like(mu) * torch.exp(logvar) if self.training else mu
        return z, mu, logvar

    def decode(self, z):
        z = F.dropout(z, self.dropout, self.training)
        return z @ z.t()


def normalised_adjacency(adj: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1/2 (A + I) D^-1/2 (upstream ``preprocess_graph``)."""
    a = adj + sp.eye(adj.shape[0])
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    return sp.csr_matrix(sp.diags(d) @ a @ sp.diags(d))


def holdout_edges(adj: sp.csr_matrix, frac: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Remove ``frac`` of the undirected edges (upstream ``mask_test_edges``: 5% validation + 10% test)."""
    if frac <= 0:
        return adj
    tri = sp.triu(adj, k=1).tocoo()
    m = tri.nnz
    n_drop = int(np.floor(m * frac))
    keep = np.ones(m, dtype=bool)
    keep[rng.permutation(m)[:n_drop]] = False
    a = sp.csr_matrix((np.ones(keep.sum()), (tri.row[keep], tri.col[keep])), shape=adj.shape)
    return sp.csr_matrix(a + a.T)


def gae_embedding(features: np.ndarray, adj: sp.csr_matrix, *, epochs: int, hidden1: int, hidden2: int, lr: float,
                  dropout: float, model: str, edge_holdout: float, rng: np.random.Generator, device) -> np.ndarray:
    """Train the graph autoencoder on (features, adj) and return the node embedding ``mu``.

    Loss (upstream ``gae/optimizer.loss_function``, ``stbench.kit.graph_autoencoder``): norm * BCE-with-logits(Z Z^T,
    A + I) with the positive weight (n^2 - |A|) / |A|, plus the KL term of the variational model.
    """
    n = features.shape[0]
    a_train = holdout_edges(adj, edge_holdout, rng)
    a_norm = torch.as_tensor(normalised_adjacency(a_train).toarray(), dtype=torch.float32, device=device)
    label = torch.as_tensor((a_train + sp.eye(n)).toarray(), dtype=torch.float32, device=device)
    pos_weight, norm = balance(n, float(a_train.sum()))  # a graph without edges counts as one edge
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    net = GCNGAE(x.shape[1], hidden1, hidden2, dropout, variational=(model == "gcn_vae")).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    mu = None
    for _ in range(int(epochs)):
        net.train()
        opt.zero_grad(set_to_none=True)
        z, mu, logvar = net(x, a_norm)
        recon, kl = reconstruction_terms(net.decode(z), label, pos_weight, norm, mu, logvar)
        loss = recon - kl if logvar is not None else recon
        loss.backward()
        opt.step()
    if mu is None:
        with torch.no_grad():
            net.eval()
            _, mu, _ = net(x, a_norm)
    return mu.detach().cpu().numpy().astype(np.float64)
