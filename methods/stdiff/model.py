"""stDiff's denoising network (fdu-wangfeilab/stDiff, model/stDiff_model.py, DiT_stDiff with 'dit' blocks),
reimplemented in PyTorch: genes -> hidden by one linear layer, DiT blocks whose adaptive LayerNorm is modulated by
time embedding + a linear embedding of the masked (conditioning) expression, and whose self-attention runs across
the *cells of the batch* (each cell is a token; the heads split the hidden features), then an adaLN-modulated
linear layer back to genes. Also the cosine noise schedule and DDPM step (model/stDiff_scheduler.py)."""

from __future__ import annotations

import math

import torch
from torch import nn


class BatchAttention(nn.Module):
    """Multi-head self-attention with the batch's cells as tokens (upstream Attention2): x is (cells, dim)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        c, d = x.shape
        q, k, v = self.qkv(x).reshape(c, 3, self.heads, d // self.heads).permute(1, 2, 0, 3).unbind(0)  # (h, c, f)
        a = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((a @ v).transpose(0, 1).reshape(c, d))


def _modulate(x, shift, scale):
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """adaLN -> attention across cells -> adaLN -> MLP, each gated (upstream DiTblock)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = BatchAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(), nn.Linear(hid, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        s1, g1, a1, s2, g2, a2 = self.ada(c).chunk(6, dim=1)
        x = x + a1 * self.attn(_modulate(self.norm1(x), s1, g1))
        return x + a2 * self.mlp(_modulate(self.norm2(x), s2, g2))


def timestep_embedding(t, dim: int = 256, max_period: float = 10000.0):
    """Sinusoidal embedding of integer steps (cos then sin, as upstream)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class StDiffNet(nn.Module):
    """The denoiser: predicts the noise of every gene of ``x`` given step ``t`` and the masked expression ``cond``."""

    def __init__(self, n_genes: int, hidden_size: int, depth: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.in_layer = nn.Linear(n_genes, hidden_size)
        self.cond_layer = nn.Linear(n_genes, hidden_size)
        self.time_mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.out = nn.Linear(hidden_size, n_genes)
        self._init()

    def _init(self):
        """Upstream's initialisation: Xavier-uniform linears with zero bias, N(0, 0.02) time MLP, zeroed adaLN and
        output layers (so the untrained network predicts zero noise)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_mlp[2].weight, std=0.02)
        for lin in [b.ada[-1] for b in self.blocks] + [self.final_ada[-1], self.out]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x, t, cond):
        c = self.time_mlp(timestep_embedding(t)) + self.cond_layer(cond)
        h = self.in_layer(x)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=1)
        return self.out(_modulate(self.final_norm(h), shift, scale))


class CosineSchedule:
    """Upstream NoiseScheduler(beta_schedule='cosine'): betas from alpha_bar(t) = cos((t + 0.008) / 1.008 * pi/2)^2,
    capped at 0.999; x0 predictions clamped to [-1, 1]."""

    def __init__(self, steps: int, device):
        s = torch.arange(steps + 1, dtype=torch.float64) / steps
        abar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.clamp(1 - abar[1:] / abar[:-1], max=0.999).float()
        self.betas = betas.to(device)
        alphas = 1 - self.betas
        self.abar = torch.cumprod(alphas, 0)
        self.abar_prev = torch.cat([torch.ones(1, device=device), self.abar[:-1]])
        self.coef1 = self.betas * self.abar_prev.sqrt() / (1 - self.abar)
        self.coef2 = (1 - self.abar_prev) * alphas.sqrt() / (1 - self.abar)
        self.var = (self.betas * (1 - self.abar_prev) / (1 - self.abar)).clamp(min=1e-20)

    def add_noise(self, x0, noise, t):
        a = self.abar[t][:, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def step(self, eps, t: int, x, generator=None):
        """One reverse step from ``x`` at step ``t`` given the predicted noise (DDPM posterior mean + noise)."""
        x0 = torch.clamp((1 / self.abar[t]).sqrt() * x - (1 / self.abar[t] - 1).sqrt() * eps, -1, 1)
        mean = self.coef1[t] * x0 + self.coef2[t] * x
        if t == 0:
            return mean
        z = torch.randn(x.shape, generator=generator, device=x.device)
        return mean + self.var[t].sqrt() * z
