"""SpaFormer's network: cells as tokens, a Performer (FAVOR+) or exact-softmax transformer encoder, an MLP decoder.

Reimplemented from the logic of upstream's ``Performer`` encoder and ``PreModel`` (wehos/CellT,
``SpaFormer/spaformer/models/performer.py`` and ``edcoder.py``) and of the attention module they
import (``performer_pytorch.SelfAttention``, lucidrains/performer-pytorch 1.1.x): no code copied.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from stbench.kit.methodkit import masked_mse

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "prelu": nn.PReLU, "elu": nn.ELU}


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "batchnorm":
        return nn.BatchNorm1d(dim)
    return nn.Identity()


def orthogonal_gaussian_features(n_features: int, dim: int) -> torch.Tensor:
    """FAVOR+ projection (n_features x dim): stacked random orthogonal blocks (QR of Gaussian matrices),
    each row rescaled to the norm of a fresh Gaussian vector (the 'scaling 0' variant of Performer)."""
    blocks, left = [], n_features
    while left > 0:
        q, _ = torch.linalg.qr(torch.randn(dim, dim))
        blocks.append(q.t()[: min(left, dim)])
        left -= dim
    w = torch.cat(blocks)
    return torch.randn(n_features, dim).norm(dim=1)[:, None] * w


def favor_features(x: torch.Tensor, proj: torch.Tensor, is_query: bool, eps: float = 1e-4) -> torch.Tensor:
    """Positive random features phi(x) with phi(q).phi(k) ~ exp(q.k / sqrt(d)) (FAVOR+ softmax kernel).

    x: (heads, n, d). Stabilisers, as in Performer: queries subtract their own row maximum, keys the
    maximum over all keys and features (both cancel in the attention normalisation)."""
    d = x.shape[-1]
    c = d ** -0.25
    dash = torch.einsum("hnd,md->hnm", x * c, proj.to(x.dtype))
    diag = (x ** 2).sum(-1, keepdim=True) * (c * c) / 2.0
    if is_query:
        stab = dash.amax(dim=-1, keepdim=True).detach()
    else:
        stab = dash.amax(dim=(-1, -2), keepdim=True).detach()
    return (torch.exp(dash - diag - stab) + eps) * proj.shape[0] ** -0.5


class SelfAttention(nn.Module):
    """Multi-head self-attention over the cells of one tile.

    ``performer``: FAVOR+ linear attention with ``nb_features`` fixed orthogonal random features per
    layer (upstream's ``SelfAttention`` is used without its projection-redraw wrapper, so the features
    stay those drawn at initialisation). ``full``: exact softmax attention (same projections).
    As upstream's: q/k/v without bias, ``heads * dim_head`` inner width, output projection with bias,
    then dropout.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, nb_features: int | None, dropout: float, kind: str):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.kind = heads, dim_head, kind
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)
        m = int(nb_features) if nb_features else int(dim_head * math.log(dim_head))
        self.register_buffer("projection", orthogonal_gaussian_features(m, dim_head) if kind == "performer"
                             else torch.empty(0, dim_head))

    def split(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], self.heads, self.dim_head).transpose(0, 1)  # (heads, n, dh)

    def attend(self, q, k, v):
        if self.kind == "performer":
            qp = favor_features(q, self.projection, True)
            kp = favor_features(k, self.projection, False)
            context = torch.einsum("hnm,hne->hme", kp, v)
            norm = torch.einsum("hnm,hm->hn", qp, kp.sum(dim=1))
            return torch.einsum("hnm,hme->hne", qp, context) / norm[..., None]
        return F.scaled_dot_product_attention(q, k, v)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split(f(h)) for f in (self.to_q, self.to_k, self.to_v))
        out = self.attend(q, k, v).transpose(0, 1).reshape(h.shape[0], -1)
        return self.dropout(self.to_out(out))


class Encoder(nn.Module):
    """Upstream's Performer encoder: expression embedding (+ positional encoding), post-norm transformer
    layers, a linear head to ``latent_dim`` and the activation."""

    def __init__(self, in_dim: int, p: dict):
        super().__init__()
        d, heads = int(p["num_hidden"]), int(p["num_heads"])
        self.pe, self.cat_pe = (None if p["pe"] == "none" else p["pe"]), bool(p["cat_pe"])
        num_emb = d // 2 if (self.cat_pe and self.pe is not None) else d
        self.num_emb = num_emb
        self.emb = nn.Linear(in_dim, num_emb)
        self.act = ACTIVATIONS[p["activation"]]()
        self.dropout = nn.Dropout(float(p["dropout"]))
        self.norm0 = make_norm(p["norm"], d)
        if self.pe == "lap":
            self.pe_enc = nn.Linear(int(p["lap_k"]), num_emb)
        elif self.pe == "mlp":
            self.pe_enc = nn.Linear(2, num_emb)
        elif self.pe == "bin":
            self.pe_enc = nn.Embedding(110 * 100, num_emb)
        else:  # 'sinu' is a fixed table lookup (precomputed per tile); 'none' has no encoder
            self.pe_enc = None
        self.attn = nn.ModuleList()
        self.ff = nn.ModuleList()
        self.norm1 = nn.ModuleList()
        self.norm2 = nn.ModuleList()
        for _ in range(int(p["num_layers"])):
            self.attn.append(SelfAttention(d, heads, int(p["dim_head"]), p["nb_features"], float(p["dropout"]),
                                           p["attention"]))
            self.ff.append(nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(float(p["dropout"])),
                                         nn.Linear(4 * d, d), nn.GELU(), nn.Dropout(float(p["dropout"]))))
            self.norm1.append(make_norm(p["norm"], d))
            self.norm2.append(make_norm(p["norm"], d))
        latent = int(p["latent_dim"])
        self.head = nn.Identity() if latent == d else nn.Linear(d, latent)

    def position(self, pos: dict, flip: bool) -> torch.Tensor:
        if self.pe == "lap":
            lap = pos["lap"]
            if flip:  # a random sign per eigenvector at every training step (upstream)
                lap = lap * (torch.randint(0, 2, (lap.shape[1],), device=lap.device, dtype=lap.dtype) * 2 - 1)
            return self.pe_enc(lap)
        if self.pe == "mlp":
            return self.pe_enc(pos["pos"])
        if self.pe == "bin":
            return self.pe_enc(pos["bin"])
        return pos["sinu"]

    def forward(self, x: torch.Tensor, pos: dict | None, flip: bool = False) -> torch.Tensor:
        if self.pe is None:
            h = self.dropout(self.norm0(self.act(self.emb(x))))
        else:
            e, q = self.emb(x), self.position(pos, flip)
            h = self.norm0(self.dropout(torch.cat([e, q], 1) if self.cat_pe else e + q))
        for attn, ff, n1, n2 in zip(self.attn, self.ff, self.norm1, self.norm2):
            h = n1(h + self.dropout(attn(h)))
            h = n2(h + ff(h))
        return self.act(self.head(h))


class SpaFormer(nn.Module):
    """Encoder + upstream's MLP decoder (latent -> num_hidden -> PReLU -> dropout -> genes [-> ReLU])."""

    def __init__(self, in_dim: int, p: dict, relu_out: bool):
        super().__init__()
        self.encoder = Encoder(in_dim, p)
        d = int(p["num_hidden"])
        layers = [nn.Linear(int(p["latent_dim"]), d), nn.PReLU(), nn.Dropout(float(p["dropout"])), nn.Linear(d, in_dim)]
        if relu_out:
            layers.append(nn.ReLU())
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, pos: dict | None, flip: bool = False) -> torch.Tensor:
        return self.decoder(self.encoder(x, pos, flip))


def select_pos(pos: dict, rows: torch.Tensor) -> dict:
    return {k: v[rows] for k, v in pos.items()}


def corrupt(x: torch.Tensor, obs: torch.Tensor, fill: torch.Tensor, p: dict) -> dict:
    """Upstream's bi-level mask (``PreModel.encoding_mask_noise``) restricted to observed entries.

    * cell level: ``int(mask_node_rate * n)`` cells of a random permutation are masked;
    * gene level: in the masked cells each entry is hidden with probability ``mask_feature_rate``
      (F.dropout upstream); only observed entries can be hidden (held-out ones already carry the fill);
      hidden entries take the fill (upstream: 0); with ``mask_rescale`` the other observed entries of
      masked cells are multiplied by 1 / (1 - mask_feature_rate), which is what upstream's F.dropout does;
    * DropNode: each cell is dropped from the step's sequence with probability ``drop_node_rate``.

    Returns the corrupted input, the kept cells, the masked cells and the hidden entries.
    """
    n = x.shape[0]
    rate = float(p["mask_feature_rate"])
    perm = torch.randperm(n, device=x.device)
    masked = torch.zeros(n, dtype=torch.bool, device=x.device)
    masked[perm[: int(float(p["mask_node_rate"]) * n)]] = True
    drop = torch.rand(x.shape, device=x.device) < rate
    hidden = drop & masked[:, None] & obs
    x_in = torch.where(hidden, fill.expand_as(x), x)
    if p["mask_rescale"] and rate < 1.0:
        x_in = torch.where(masked[:, None] & ~drop & obs, x_in / (1.0 - rate), x_in)
    keep = torch.rand(n, device=x.device) >= float(p["drop_node_rate"])
    if not keep.any():
        keep[perm[0]] = True
    return {"x_in": x_in, "keep": keep, "masked": masked, "hidden": hidden}


def loss_mask(c: dict, obs: torch.Tensor, loss_entries: str) -> torch.Tensor:
    """The entries the loss is computed on: never a held-out entry.

    ``cell`` (upstream): every observed entry of the masked cells; ``hidden``: only the hidden entries."""
    if loss_entries == "hidden":
        return c["hidden"]
    return c["masked"][:, None] & obs


def masked_loss(model: SpaFormer, x: torch.Tensor, target: torch.Tensor, obs: torch.Tensor, fill: torch.Tensor,
                pos: dict | None, p: dict, flip: bool = True, c: dict | None = None) -> torch.Tensor:
    """One training objective on one tile: corrupt, encode the kept cells, MSE on the loss entries.

    ``x`` is the truth-free input (held-out entries = the fill); ``target`` is only read where ``obs``
    is True (its held-out entries may hold anything: the loss and its gradient do not depend on them).
    ``c``: a corruption drawn beforehand (the fixed validation mask); None draws a fresh one."""
    if c is None:
        c = corrupt(x, obs, fill, p)
    rows = torch.nonzero(c["keep"], as_tuple=True)[0]
    rec = model(c["x_in"][rows], select_pos(pos, rows) if pos else None, flip)
    m = loss_mask(c, obs, p["loss_entries"])[rows]
    t = torch.where(m, target[rows], torch.zeros((), dtype=target.dtype, device=target.device))
    return masked_mse(rec, t, m)
