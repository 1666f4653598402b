"""SpaDiT's denoising network (Li, Zhu & Min 2024), reimplemented from the supplementary and the released code
(wenwenmin/SpaDiT, model/diff_model.py at fc8a3f9): one *gene* is one sample.

- Phi (the latent embedding): the gene's noisy spatial vector (n_spots) and, with ``concat``, its clean
  single-cell vector (n_cells) are each embedded to ``hidden`` and concatenated into a token of width
  D = 2 * hidden (the released code's ``in_layer``/``x_in_layer`` and ``torch.cat``); ``latent_layers``
  Linear layers per branch (Table 1's "Latent layers"; the released code has one).
- Psi (the condition): one vector of width D computed from the whole single-cell matrix (genes x cells), the
  same for every gene, added to the step embedding: ``mlp`` (the released SimpleMLP: mean over genes, three
  Linear layers), ``attention`` (the released SelfAttention2: self-attention over the genes with cells as
  features, mean over genes, Linear), ``flash_attention`` (the same module through torch's
  ``scaled_dot_product_attention``, which picks a FlashAttention kernel on CUDA; on a CPU it is the math
  kernel, so it equals ``attention`` up to rounding), ``pca`` (the matrix's top ``pca_dim`` principal
  components over cells, mean over genes, Linear) or ``none`` (zeros: the paper's "w/o Condition psi").
- The backbone over the tokens (the genes of a batch form one sequence, as in the released Attention2):
  ``transformer`` (DiT blocks with adaLN-Zero), ``mamba`` (the same blocks with a selective state-space
  mixer, ssm.py) or ``unet`` (the released MLP encoder-middle-decoder, with the condition added at its
  middle; the released forward ignores step and condition).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from stbench.kit.diffusion import DiffusionEmbedding

from .ssm import SelectiveSSM

BACKBONES = ("transformer", "unet", "mamba")
CONDITIONS = ("flash_attention", "attention", "mlp", "pca", "none")


def _embed(n_in: int, width: int, layers: int) -> nn.Sequential:
    """``layers`` Linear layers n_in -> width (SiLU between)."""
    mods: list = [nn.Linear(n_in, width)]
    for _ in range(max(int(layers), 1) - 1):
        mods += [nn.SiLU(), nn.Linear(width, width)]
    return nn.Sequential(*mods)


class Condition(nn.Module):
    """Psi: the single-cell matrix (genes x cells) -> one (D,) condition vector."""

    def __init__(self, kind: str, n_cells: int, width: int, hidden: int, pca_dim: int):
        super().__init__()
        if kind not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {kind!r}")
        self.kind, self.width = kind, width
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(n_cells, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, width))
        elif kind in ("attention", "flash_attention"):
            self.q, self.k, self.v = (nn.Linear(n_cells, n_cells) for _ in range(3))
            self.out = nn.Linear(n_cells, width)
        elif kind == "pca":
            self.out = nn.Linear(pca_dim, width)

    def forward(self, sc: torch.Tensor, pcs: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "none":
            return sc.new_zeros(self.width)
        if self.kind == "mlp":
            return self.net(sc.mean(0))
        if self.kind == "pca":
            return self.out(pcs.mean(0))
        q, k, v = self.q(sc), self.k(sc), self.v(sc)
        if self.kind == "flash_attention":
            a = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
        else:
            a = torch.softmax(q @ k.T / k.shape[-1] ** 0.5, dim=-1) @ v
        return self.out(a.mean(0))


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class SelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of one sequence (L, D) (the genes of a batch)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the token width 2*hidden_size={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, d = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, d // self.heads).permute(1, 2, 0, 3)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(n, d))


class Block(nn.Module):
    """A DiT block (adaLN-Zero: shift/scale/gate from the condition) with a token mixer: attention or Mamba."""

    def __init__(self, dim: int, heads: int, mixer: str, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-4)
        self.mix = SelfAttention(dim, heads) if mixer == "transformer" else SelectiveSSM(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-4)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(), nn.Linear(hid, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
        x = x + g1 * self.mix(modulate(self.norm1(x), s1, sc1))
        return x + g2 * self.mlp(modulate(self.norm2(x), s2, sc2))


class UNetBackbone(nn.Module):
    """The released ``UNet``: Linear D->512->256 (encoder), 256->128->128 (middle), 128->256->512->out (decoder),
    ReLU, no skip connections. The released forward calls it without step or condition; here the condition
    vector (step + psi) is projected and added at the middle, so that the ablation is a conditional model."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
        self.cond = nn.Linear(dim, 256)
        self.mid = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, out))

    def forward(self, x, c):
        return self.dec(self.mid(self.enc(x) + self.cond(c)))


class SpaDiTNet(nn.Module):
    """eps_theta(x_t, t | Phi(x_t, x_sc), psi(X_sc)): (genes x spots) noisy spatial vectors -> predicted noise."""

    def __init__(self, n_spots: int, n_cells: int, *, hidden: int, depth: int, heads: int, latent_layers: int,
                 num_steps: int, backbone: str, condition: str,
                 concat: bool, pca_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        dim = 2 * int(hidden)
        self.concat, self.backbone = bool(concat), backbone
        # Phi: with concat, [embed(x_t) | embed(x_sc)]; without, embed(x_t) alone at the full width
        self.phi_st = _embed(n_spots, hidden if concat else dim, latent_layers)
        self.phi_sc = _embed(n_cells, hidden, latent_layers) if concat else None
        self.t_emb = DiffusionEmbedding(num_steps, dim)
        self.psi = Condition(condition, n_cells, dim, hidden, pca_dim)
        if backbone == "unet":
            self.net = UNetBackbone(dim, n_spots)
        else:
            self.blocks = nn.ModuleList(Block(dim, heads, backbone, mlp_ratio) for _ in range(int(depth)))
            self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-4)
            self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
            self.final = nn.Linear(dim, n_spots)
            for lin in (self.final_ada[-1], self.final):  # the DiT's zero-initialised output layer
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def condition(self, sc: torch.Tensor, pcs: torch.Tensor | None = None) -> torch.Tensor:
        """psi(X_sc): one (D,) vector for the whole reference (computed once per step, shared by every gene)."""
        return self.psi(sc, pcs)

    def forward(self, x_t: torch.Tensor, x_sc: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.phi_st(x_t)
        if self.concat:
            h = torch.cat([h, self.phi_sc(x_sc)], dim=-1)
        c = self.t_emb(t) + cond[None, :]
        if self.backbone == "unet":
            return self.net(h, c)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.final(modulate(self.norm(h), shift, scale))
