"""A selective state-space (Mamba) token mixer for SpaDiT's ``backbone: mamba`` ablation (supplementary Table 2).

Written here because no maintained Mamba layer runs on a CPU-only torch: ``mamba-ssm`` builds CUDA kernels
and needs CUDA to install; the SpaDiT release does not contain its Mamba backbone. This is the Mamba-2 layer
(Dao & Gu 2024, "Transformers are SSMs") in its quadratic "dual" form, the reference form of that paper's
``ssd_minimal``: input projection to (x, z), a causal depthwise convolution, input-dependent step sizes
Delta, input matrices B and output matrices C (the *selective* part), one negative scalar A per head, and
y_t = sum_{s<=t} exp(sum_{r=s+1..t} Delta_r A) (C_t . B_s) Delta_s x_s + D x_t, gated by SiLU(z).
The decay matrix is computed from differences of a cumulative sum with -inf above the diagonal, so it never
overflows; memory is heads x L x L for a sequence of L tokens (here: the genes of one batch).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelectiveSSM(nn.Module):
    """(L, dim) -> (L, dim): one Mamba-2 mixer over a single sequence; ``heads`` SSM heads, state size ``d_state``."""

    def __init__(self, dim: int, heads: int, d_state: int = 16, expand: int = 2, d_conv: int = 4):
        super().__init__()
        inner = expand * dim
        if inner % heads:
            raise ValueError(f"mamba: inner width {inner} must be divisible by heads={heads}")
        self.heads, self.inner, self.d_state = heads, inner, d_state
        self.in_proj = nn.Linear(dim, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, heads + 2 * d_state)     # Delta (per head), B, C
        self.dt_bias = nn.Parameter(torch.log(torch.expm1(torch.linspace(1e-3, 1e-1, heads))))
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, heads)))
        self.D = nn.Parameter(torch.ones(heads))
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        n = u.shape[0]
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = F.silu(self.conv(x.T[None])[0, :, :n].T)                                   # causal over the sequence
        dt, b, c = torch.split(self.x_proj(x), [self.heads, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt + self.dt_bias)                                              # (L, H)
        da = dt * -torch.exp(self.A_log)                                                # (L, H), negative
        cum = torch.cumsum(da, dim=0)
        seg = cum.T[:, :, None] - cum.T[:, None, :]                                     # (H, L_t, L_s)
        causal = torch.ones(n, n, dtype=torch.bool, device=u.device).tril()
        decay = torch.exp(seg.masked_fill(~causal, float("-inf")))
        w = decay * (c @ b.T)[None] * dt.T[:, None, :]                                  # (H, L, L)
        xh = x.reshape(n, self.heads, -1).transpose(0, 1)                               # (H, L, P)
        y = w @ xh + self.D[:, None, None] * xh
        y = y.transpose(0, 1).reshape(n, self.inner)
        return self.out_proj(y * F.silu(z))
