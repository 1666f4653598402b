"""STAGATE's graph attention auto-encoder (Dong & Zhang 2022), reimplemented in plain PyTorch.

Encoder  h1 = ELU(Att(X W1)),  z = h1 W2           (in -> 512 -> 30; no biases)
Decoder  h3 = ELU(Att(z W2^T)), X^ = h3 W1^T        (weights tied to the encoder's)

``Att`` aggregates over the spatial network (self-loops included) with edge weights
``softmax_j(sigmoid(a_src . h_j + a_dst . h_i))`` (the sigmoid replaced LeakyReLU in STAGATE_pyG on
2022-08-23, as in the TensorFlow STAGATE). The decoder's attention layer reuses the encoder's
attention weights (tied attention); the middle layers (z, the output) have no attention.

Cell type-aware module (``alpha > 0``, TensorFlow STAGATE only): every attention layer becomes
``(1 - alpha) Att_SNN + alpha Att_pruned``, where the pruned SNN keeps the edges between spots of
the same expression pre-cluster and has its own attention vectors.

``tied_update``:
* ``split`` (STAGATE_pyG): the decoder's weight tensors are separate parameters that share the
  encoder weights' storage (upstream assigns ``conv3.lin_src.data = conv2.lin_src.T`` on every
  forward). Each optimiser step therefore updates a tied weight twice, once from the encoder's
  gradient and once from the decoder's, each with its own Adam moments and weight decay.
* ``joint`` (TensorFlow STAGATE / the paper's tied auto-encoder): one parameter, one gradient
  (the sum of both uses), one Adam update.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def segment_softmax(e: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Softmax of the edge scores ``e`` within each group of edges sharing ``index`` (the target spot),
    as ``torch_geometric.utils.softmax``; plain torch, so that no PyG import is needed."""
    e_max = torch.full((num_nodes,), float("-inf"), dtype=e.dtype, device=e.device)
    e_max = e_max.scatter_reduce(0, index, e.detach(), reduce="amax", include_self=True)
    ex = (e - e_max[index]).exp()
    denom = torch.zeros(num_nodes, dtype=e.dtype, device=e.device).index_add_(0, index, ex)
    return ex / (denom[index] + 1e-16)


def _xavier(*shape, gain: float = 1.414) -> nn.Parameter:
    """Upstream's initialisation: ``xavier_normal_(gain=1.414)`` (attention vectors as (1, 1, C))."""
    t = torch.empty(*shape)
    nn.init.xavier_normal_(t, gain=gain)
    return nn.Parameter(t)


def attention_weights(h: torch.Tensor, a_src: torch.Tensor, a_dst: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """Per-edge weights: sigmoid score, softmax over each target's incoming edges."""
    src, dst = edge_index
    s_src = h @ a_src
    s_dst = h @ a_dst
    e = torch.sigmoid(s_src[src] + s_dst[dst])
    return segment_softmax(e, dst, num_nodes=h.shape[0])


def propagate(h: torch.Tensor, w: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """out_i = sum_j w_ij h_j over the edges (j -> i)."""
    src, dst = edge_index
    return torch.zeros_like(h).index_add_(0, dst, h[src] * w.unsqueeze(-1))


class STAGATE(nn.Module):
    def __init__(self, in_dim: int, hidden_dims, alpha: float, tied_update: str):
        super().__init__()
        if tied_update not in ("split", "joint"):
            raise ValueError(f"stagate: tied_update must be 'split' or 'joint', got {tied_update!r}")
        hid, out = (int(d) for d in hidden_dims)
        self.alpha = float(alpha)
        self.tied_update = tied_update
        self.W1 = _xavier(in_dim, hid)
        self.att_src = _xavier(1, 1, hid)
        self.att_dst = _xavier(1, 1, hid)
        self.W2 = _xavier(hid, out)
        if self.alpha > 0:
            self.prune_att_src = _xavier(1, 1, hid)
            self.prune_att_dst = _xavier(1, 1, hid)
        if tied_update == "split":
            self.W1_dec = nn.Parameter(torch.empty(hid, in_dim))
            self.W2_dec = nn.Parameter(torch.empty(out, hid))
            self.link_decoder()

    def link_decoder(self):
        """Point the decoder weights at the encoder weights' storage (transposed views), as upstream does
        before every forward pass; needed again after ``.to(device)``, which copies parameters one by one."""
        if self.tied_update == "split":
            self.W1_dec.data = self.W1.data.t()
            self.W2_dec.data = self.W2.data.t()

    def _att(self, h, edge_index, pruned_index):
        w = attention_weights(h, self.att_src.view(-1), self.att_dst.view(-1), edge_index)
        wp = None
        if self.alpha > 0:
            wp = attention_weights(h, self.prune_att_src.view(-1), self.prune_att_dst.view(-1), pruned_index)
        return w, wp

    def _aggregate(self, h, weights, edge_index, pruned_index):
        w, wp = weights
        out = propagate(h, w, edge_index)
        if self.alpha > 0:
            out = (1.0 - self.alpha) * out + self.alpha * propagate(h, wp, pruned_index)
        return out

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, pruned_index: torch.Tensor | None = None):
        """Returns (latent z, reconstruction X^)."""
        if self.alpha > 0 and pruned_index is None:
            raise ValueError("stagate: alpha > 0 needs the pruned (cell type-aware) network")
        h = x @ self.W1
        weights = self._att(h, edge_index, pruned_index)
        h1 = F.elu(self._aggregate(h, weights, edge_index, pruned_index))
        z = h1 @ self.W2
        if self.tied_update == "split":
            self.link_decoder()
            w2t, w1t = self.W2_dec, self.W1_dec
        else:
            w2t, w1t = self.W2.t(), self.W1.t()
        # Att(z W2^T) == Att(z) W2^T (the aggregation is linear): aggregate in the 30-d latent space
        h3 = F.elu(self._aggregate(z, weights, edge_index, pruned_index) @ w2t)
        return z, h3 @ w1t


def masked_loss(model: STAGATE, x_in, target, mask, edge_index, pruned_index=None):
    """Reconstruction MSE over the entries where ``mask`` is True (STAGATE_pyG: MSE over all entries).
    The input ``x_in`` may hold a truth-free fill at unobserved entries; ``target`` is only read where
    ``mask`` is True."""
    from stbench.kit.methodkit import masked_mse

    _, out = model(x_in, edge_index, pruned_index)
    return masked_mse(out, target, mask)


def fit(model: STAGATE, x_in, target, mask, edge_index, pruned_index, *, n_epochs: int, lr: float,
        weight_decay: float, gradient_clipping) -> list:
    """Full-batch training as in STAGATE_pyG's ``train_STAGATE``: Adam with L2 weight decay, gradient
    norm clipping, ``n_epochs`` steps. Returns the loss of every step."""
    params = list(model.parameters())
    # foreach=False: the split decoder parameters alias the encoder's storage; the per-tensor loop
    # applies their two in-place updates one after the other (a multi-tensor kernel could race).
    opt = torch.optim.Adam(params, lr=float(lr), weight_decay=float(weight_decay), foreach=False)
    history = []  # loss tensors (converted once at the end: no device sync per step)
    for _ in range(int(n_epochs)):
        model.train()
        opt.zero_grad()
        loss = masked_loss(model, x_in, target, mask, edge_index, pruned_index)
        loss.backward()
        if gradient_clipping:
            torch.nn.utils.clip_grad_norm_(params, float(gradient_clipping))
        opt.step()
        history.append(loss.detach())
    return torch.stack(history).cpu().tolist() if history else []
