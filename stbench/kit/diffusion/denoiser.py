"""CSDI-style conditional denoiser (Tashiro et al. 2021), shared by stMCDI and CSDI, with the spot as the sample and the genes
as tokens: residual layers, a diffusion-step embedding, side information (gene embedding,
sinusoidal gene-index embedding, conditional mask, graph-encoder latent) and self-attention
across genes via ``torch.nn.functional.scaled_dot_product_attention``.

Tensors are laid out (batch, genes, channels); a 1x1 ``Conv1d`` of CSDI is a ``Linear`` here
(same parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from stbench.kit.diffusion.dropout import dropout


def sinusoidal_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim) transformer positional table (the released code's embedding of the gene index)."""
    pe = torch.zeros(n, dim)
    if dim == 0:
        return pe
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe


class DiffusionEmbedding(nn.Module):
    """DiffWave/CSDI step embedding: fixed sin/cos table, then two SiLU projections."""

    def __init__(self, num_steps: int, dim: int = 128):
        super().__init__()
        half = dim // 2
        steps = torch.arange(num_steps, dtype=torch.float32)[:, None]
        freqs = 10.0 ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1) * 4.0)[None]
        table = torch.cat([torch.sin(steps * freqs), torch.cos(steps * freqs)], 1)
        self.register_buffer("table", table, persistent=False)
        self.proj1 = nn.Linear(dim, dim)
        self.proj2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = self.table[t]
        return F.silu(self.proj2(F.silu(self.proj1(x))))


class GeneAttention(nn.Module):
    """One post-norm transformer encoder layer over the gene axis (the parameters of
    ``nn.TransformerEncoderLayer(d_model=C, nhead=H, dim_feedforward=ff, activation='gelu')``),
    with fused scaled-dot-product attention."""

    def __init__(self, channels: int, heads: int, ff: int = 64, dropout: float = 0.1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.ff1 = nn.Linear(channels, ff)
        self.ff2 = nn.Linear(ff, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, g, c = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = self.qkv(x).view(b, g, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # no dropout on the attention weights: keeps the fused kernels
        a = a.transpose(1, 2).reshape(b, g, c)
        x = self.norm1(x + dropout(self.out(a), p, self.training))
        h = self.ff2(dropout(F.gelu(self.ff1(x)), p, self.training))
        return self.norm2(x + dropout(h, p, self.training))


class ResidualBlock(nn.Module):
    def __init__(self, side_dim: int, channels: int, emb_dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.diffusion_projection = nn.Linear(emb_dim, channels)
        self.cond_projection = nn.Linear(side_dim, 2 * channels)
        self.mid_projection = nn.Linear(channels, 2 * channels)
        self.output_projection = nn.Linear(channels, 2 * channels)
        self.attn = GeneAttention(channels, heads, ff, dropout)
        for lin in (self.cond_projection, self.mid_projection, self.output_projection):
            nn.init.kaiming_normal_(lin.weight)

    def forward(self, x, cond_proj, demb):
        y = x + self.diffusion_projection(demb)[:, None, :]
        y = self.attn(y)
        y = self.mid_projection(y) + cond_proj
        gate, filt = y.chunk(2, dim=-1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.chunk(2, dim=-1)
        return (x + residual) / math.sqrt(2.0), skip


class Denoiser(nn.Module):
    """eps_theta(x_t, t | condition, side information) for a batch of spots.

    Input ``x`` is (B, G, 2): [conditional values, noisy targets]. ``side`` is (B, G, side_dim).
    """

    def __init__(self, side_dim: int, num_steps: int, channels: int = 32, layers: int = 4, heads: int = 16,
                 emb_dim: int = 128, ff: int = 64, dropout: float = 0.1):
        super().__init__()
        self.diffusion_embedding = DiffusionEmbedding(num_steps, emb_dim)
        self.input_projection = nn.Linear(2, channels)
        self.output_projection1 = nn.Linear(channels, channels)
        self.output_projection2 = nn.Linear(channels, 1)
        nn.init.kaiming_normal_(self.input_projection.weight)
        nn.init.kaiming_normal_(self.output_projection1.weight)
        nn.init.zeros_(self.output_projection2.weight)
        self.blocks = nn.ModuleList(
            ResidualBlock(side_dim, channels, emb_dim, heads, ff, dropout) for _ in range(layers))

    def project_side(self, side: torch.Tensor) -> list[torch.Tensor]:
        """Per-block projections of the side information (constant along the reverse chain)."""
        return [blk.cond_projection(side) for blk in self.blocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond_proj: list[torch.Tensor]) -> torch.Tensor:
        h = F.relu(self.input_projection(x))
        demb = self.diffusion_embedding(t)
        if demb.shape[0] != h.shape[0]:
            demb = demb.expand(h.shape[0], -1)
        skip = 0.0
        for blk, cp in zip(self.blocks, cond_proj):
            if cp.shape[0] != h.shape[0]:  # side info shared by the samples of a spot
                cp = cp.repeat(h.shape[0] // cp.shape[0], 1, 1)
            h, s = blk(h, cp, demb)
            skip = skip + s
        h = skip / math.sqrt(len(self.blocks))
        return self.output_projection2(F.relu(self.output_projection1(h))).squeeze(-1)
