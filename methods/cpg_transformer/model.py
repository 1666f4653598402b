"""CpG Transformer network (De Waele et al. 2022), rewritten in PyTorch for a spot x gene matrix.

Layout of every activation: ``[B, L, C, H]`` with B the batch (segments), L the site axis (here:
genes, in the chosen gene order), C the cell axis (here: spots) and H the hidden size.

* Input embedding of an entry: [value embedding | cell (spot) embedding | site embedding] ->
  Linear -> ReLU. The value embedding is a Linear(1 -> value_embed_size) of the value, or one
  learned vector (the "missing token") where the entry is missing or masked. Upstream's site
  embedding is a CNN over the DNA around the CpG site; genes have no such context here, so the
  site embedding is a learned vector per gene (``gene_embed_size``; 0 switches it off).
* ``n_layers`` transformer layers. Axial mode (upstream default): a sliding-window self-attention
  along the site axis inside each cell (window ``window``, Transformer-XL relative positions),
  then full self-attention across cells at each site, then a feed-forward block; residual
  connection and post-LayerNorm around each of the three. Dropout acts on the attention matrices.
* Output head: Linear(hidden -> 1), one value per entry.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("axial", "intercell", "intracell", "none")
ACTIVATIONS = ("relu", "gelu")


def _uniform_(t: torch.Tensor) -> torch.Tensor:
    bound = 1.0 / math.sqrt(t.shape[-1])
    with torch.no_grad():
        return t.uniform_(-bound, bound)


class ValueEmbedding(nn.Module):
    """Continuous-mode entry embedding: Linear(1 -> d) of the value, a learned vector where missing."""

    def __init__(self, size: int):
        super().__init__()
        self.lin = nn.Linear(1, size)
        self.missing = nn.Parameter(_uniform_(torch.empty(size)))

    def forward(self, values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        z = self.lin(torch.where(missing, torch.zeros_like(values), values).unsqueeze(-1))
        return torch.where(missing.unsqueeze(-1), self.missing.to(z.dtype), z)


def relative_sinusoids(pos: torch.Tensor, w: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sinusoidal embeddings of the relative positions pos[i + o - w] - pos[i], o = 0 .. 2w.

    ``pos``: [B, L] (float). Returns ([B, L, W, size] embeddings, [L, W] bool: key outside the segment).
    """
    b, length = pos.shape
    width = 2 * w + 1
    padded = F.pad(pos, (w, w))
    keys = padded.unfold(-1, width, 1)                                 # [B, L, W]
    rel = keys - pos.unsqueeze(-1)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, size, 2, device=pos.device, dtype=pos.dtype) / size))
    ang = rel.unsqueeze(-1) * inv_freq
    emb = torch.cat([ang.sin(), ang.cos()], dim=-1)[..., :size]
    idx = torch.arange(length, device=pos.device).unsqueeze(1) + torch.arange(width, device=pos.device) - w
    outside = (idx < 0) | (idx >= length)
    return emb, outside


class WindowSiteAttention(nn.Module):
    """Sliding-window self-attention along the site axis, within each cell (upstream
    ``SlidingWindowWithinCellAttention``): score(i, j) = (q_i + u).k_j + (q_i + v).W_r R(pos_j - pos_i),
    keys j in [i - w, i + w] inside the segment.

    Computed block-wise: the queries of a block of ``block`` consecutive sites attend to the
    ``block + 2w`` keys around it with one matrix product, and entries outside the window are masked;
    this gives exactly the sliding window (tested against a dense reference) with fewer, larger
    matrix products than a loop over the window offsets.
    """

    def __init__(self, hidden: int, head_dim: int, n_heads: int, window: int, dropout: float, block: int = 32):
        super().__init__()
        if window % 2 != 1:
            raise ValueError("window must be odd")
        self.h, self.nh, self.w, self.block = head_dim, n_heads, (window - 1) // 2, int(block)
        self.qkv = nn.Linear(hidden, 3 * n_heads * head_dim)
        self.rel = nn.Linear(hidden, n_heads * head_dim)
        self.out = nn.Linear(n_heads * head_dim, hidden)
        self.u = nn.Parameter(_uniform_(torch.empty(n_heads, head_dim)))
        self.v = nn.Parameter(_uniform_(torch.empty(n_heads, head_dim)))
        self.dropout = nn.Dropout(dropout)

    def _band(self, q, k, v, p, length):
        """q, k, v: [N, L, h] (q already carries u), p: [N, L, W] positional scores -> [N, L, h]."""
        w, kb = self.w, min(self.block, length)
        width = 2 * w + 1
        n = q.shape[0]
        nb = -(-length // kb)
        lp = nb * kb
        qb = F.pad(q, (0, 0, 0, lp - length)).view(n, nb, kb, self.h)
        kw = F.pad(k, (0, 0, w, lp - length + w)).unfold(1, kb + 2 * w, kb)      # [N, nb, h, kb + 2w]
        vw = F.pad(v, (0, 0, w, lp - length + w)).unfold(1, kb + 2 * w, kb)
        s = qb @ kw                                                              # [N, nb, kb, kb + 2w]
        pb = F.pad(p, (0, 0, 0, lp - length)).view(n, nb, kb, width)
        idx = (torch.arange(kb, device=q.device).unsqueeze(1) + torch.arange(width, device=q.device))
        s = s + torch.zeros_like(s).scatter_(-1, idx.expand(n, nb, kb, width), pb)
        a = torch.arange(kb, device=q.device).view(kb, 1)
        b = torch.arange(kb + 2 * w, device=q.device).view(1, kb + 2 * w)
        key = torch.arange(nb, device=q.device).view(nb, 1, 1) * kb + b - w
        query = torch.arange(nb, device=q.device).view(nb, 1, 1) * kb + a
        valid = ((b - a >= 0) & (b - a <= 2 * w) & (key >= 0) & (key < length)) | (query >= length)  # padded rows: unused
        s = s.masked_fill(~valid, float("-inf"))
        att = self.dropout(torch.softmax(s, dim=-1))
        z = att @ vw.transpose(-1, -2)                                           # [N, nb, kb, h]
        return z.reshape(n, lp, self.h)[:, :length]

    def forward(self, x: torch.Tensor, r: torch.Tensor, outside: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        # ``outside`` (keys beyond the segment) is recomputed per block in ``_band``; kept for a uniform signature
        b, length, c, _ = x.shape
        width = 2 * self.w + 1
        q, k, v = self.qkv(x).view(b, length, c, 3, self.nh, self.h).permute(3, 0, 2, 4, 1, 5).unbind(0)
        q = q * self.h ** -0.5                                                   # [B, C, nh, L, h]
        rr = self.rel(r).view(b, length, width, self.nh, self.h)                 # [B, L, W, nh, h]
        p = torch.einsum("bcnlh,blwnh->bcnlw", q + self.v.view(1, 1, self.nh, 1, self.h), rr)
        qk = q + self.u.view(1, 1, self.nh, 1, self.h)
        flat = lambda t: t.reshape(b * c * self.nh, length, -1)  # noqa: E731
        qk, k, v, p = flat(qk), flat(k), flat(v), flat(p)
        n = qk.shape[0]
        step = n if (chunk is None or self.training) else max(1, int(chunk) * self.nh)
        z = torch.cat([self._band(qk[i:i + step], k[i:i + step], v[i:i + step], p[i:i + step], length)
                       for i in range(0, n, step)])
        z = z.view(b, c, self.nh, length, self.h).permute(0, 3, 1, 2, 4).reshape(b, length, c, self.nh * self.h)
        return self.out(z)


class CellAttention(nn.Module):
    """Full self-attention across cells at each site (upstream ``BetweenCellAttention``), no positions."""

    def __init__(self, hidden: int, head_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.h, self.nh, self.p = head_dim, n_heads, float(dropout)
        self.qkv = nn.Linear(hidden, 3 * n_heads * head_dim)
        self.out = nn.Linear(n_heads * head_dim, hidden)

    def forward(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        b, length, c, _ = x.shape
        q, k, v = self.qkv(x).view(b * length, c, 3, self.nh, self.h).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.p if self.training else 0.0
        if chunk is None or chunk >= b * length:
            z = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:  # inference on large inputs: site chunks (the same computation, less memory)
            z = torch.cat([F.scaled_dot_product_attention(q[i:i + chunk], k[i:i + chunk], v[i:i + chunk], dropout_p=p)
                           for i in range(0, b * length, chunk)])
        z = z.permute(0, 2, 1, 3).reshape(b, length, c, self.nh * self.h)
        return self.out(z)


class AxialLayer(nn.Module):
    """One transformer layer (upstream ``MultiDimWindowTransformerLayer``)."""

    def __init__(self, hidden: int, head_dim: int, n_heads: int, window: int, dropout: float,
                 activation: str, layernorm: bool, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}")
        norm = (lambda: nn.LayerNorm(hidden)) if layernorm else (lambda: nn.Identity())
        self.site = WindowSiteAttention(hidden, head_dim, n_heads, window, dropout) \
            if mode in ("axial", "intracell") else None
        self.cell = CellAttention(hidden, head_dim, n_heads, dropout) if mode in ("axial", "intercell") else None
        self.norm_site = norm() if self.site is not None else None
        self.norm_cell = norm() if self.cell is not None else None
        act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.ff = nn.Sequential(nn.Linear(hidden, 4 * hidden), act, nn.Linear(4 * hidden, hidden))
        self.norm_ff = norm()

    def forward(self, x, r, outside, chunk=None):
        if self.site is not None:
            x = self.norm_site(self.site(x, r, outside, chunk) + x)
        if self.cell is not None:
            x = self.norm_cell(self.cell(x, chunk) + x)
        return self.norm_ff(self.ff(x) + x)


class CpGTransformer(nn.Module):
    """The whole network: embeddings, ``n_layers`` axial layers, a linear output head."""

    def __init__(self, n_cells: int, n_sites: int, cell_embed_size: int, value_embed_size: int,
                 gene_embed_size: int, hidden_size: int, n_layers: int, n_heads: int,
                 head_dim: int, window: int, dropout: float, activation: str,
                 layernorm: bool, mode: str):
        super().__init__()
        self.w = (int(window) - 1) // 2
        self.hidden = int(hidden_size)
        self.cell_embed = nn.Embedding(n_cells, cell_embed_size)
        self.value_embed = ValueEmbedding(value_embed_size)
        self.gene_embed = nn.Embedding(n_sites, gene_embed_size) if gene_embed_size else None
        n_in = cell_embed_size + value_embed_size + (gene_embed_size or 0)
        self.combine = nn.Sequential(nn.Linear(n_in, hidden_size), nn.ReLU())
        self.layers = nn.ModuleList([AxialLayer(hidden_size, head_dim, n_heads, window, dropout, activation,
                                                layernorm, mode) for _ in range(int(n_layers))])
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, values, missing, cells, sites, pos, chunk=None):
        """values, missing: [B, L, C]; cells: [B, C] spot indices; sites: [B, L] gene indices;
        pos: [B, L] site positions. Returns the predicted value of every entry, [B, L, C]."""
        b, length, c = values.shape
        parts = [self.value_embed(values, missing),
                 self.cell_embed(cells).unsqueeze(1).expand(b, length, c, -1)]
        if self.gene_embed is not None:
            parts.append(self.gene_embed(sites).unsqueeze(2).expand(b, length, c, -1))
        x = self.combine(torch.cat(parts, dim=-1))
        r, outside = relative_sinusoids(pos.to(x.dtype), self.w, self.hidden)
        for layer in self.layers:
            x = layer(x, r, outside, chunk)
        return self.head(x).squeeze(-1)
