"""SpatialScope's score network (upstream ``src/SCGrad``, a WaveGrad-style 1-D U-Net over the gene axis),
reimplemented: the noisy cell (centred on its cell type's mean) runs down and up a U-Net whose blocks are
feature-wise modulated (FiLM) by a second stream over the cell type's mean expression. The network does not see
the noise level (upstream's ``FeatureWiseLinearModulation_NoScalarCond``); the score is its output / sigma."""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Conv1d:
    """Conv1d with 'same' padding and orthogonal weights (upstream's Conv1dWithInitialization)."""
    c = nn.Conv1d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation)
    nn.init.orthogonal_(c.weight, gain=1)
    return c


def _resample(c: int, factor: int, down: bool, out_pad: int = 0) -> nn.Module:
    """Strided conv (k=7) down by ``factor``, or its transpose up by ``factor`` (+ ``out_pad`` positions)."""
    if down:
        return nn.Conv1d(c, c, 7, stride=factor, padding=3)
    return nn.ConvTranspose1d(c, c, 7, stride=factor, padding=3, output_padding=out_pad)


def fit_factors(n: int, factors) -> list[int]:
    """``factors`` with any downsampling that would leave fewer than 2 positions replaced by 1 (instance norm
    needs 2; upstream's factors 3, 4, 5 assume hundreds of marker genes)."""
    out = []
    for f in map(int, factors):
        f = f if (n - 1) // f + 1 >= 2 else 1
        out.append(f)
        n = (n - 1) // f + 1
    return out


def up_lengths(n: int, factors) -> list[int]:
    """The output paddings that bring each upsampling back to the length before the matching downsampling."""
    pads = []
    for f in factors:
        m = int((n - 1) / f + 1)
        pads.append(n - ((m - 1) * f + 1))
        n = m
    return pads


class DBlock(nn.Module):
    """Conditioning-stream block: resample, three dilated conv blocks (LeakyReLU then conv), 1x1 residual."""

    def __init__(self, cin, cout, factor, down, out_pad=0, dilations=(1, 2, 4)):
        super().__init__()
        layers = [_resample(cin, factor, down, out_pad)]
        for i, d in enumerate(dilations):
            layers += [nn.LeakyReLU(0.2), _conv(cin if i == 0 else cout, cout, 3, d)]
        self.main = nn.Sequential(*layers)
        self.res = nn.Sequential(_conv(cin, cout, 1), _resample(cout, factor, down, out_pad))

    def forward(self, x):
        return self.main(x) + self.res(x)


class FiLM(nn.Module):
    """Scale and shift from the conditioning stream (conv + LeakyReLU, then one conv each); no noise-level input."""

    def __init__(self, c):
        super().__init__()
        self.signal = nn.Sequential(_conv(c, c), nn.LeakyReLU(0.2))
        self.scale, self.shift = _conv(c, c), _conv(c, c)

    def forward(self, x):
        h = self.signal(x)
        return self.scale(h), self.shift(h)


class Modulation(nn.Module):
    """Instance norm, affine by (scale, shift), LeakyReLU, dilated conv."""

    def __init__(self, c, dilation):
        super().__init__()
        self.norm = nn.InstanceNorm1d(c)
        self.conv = _conv(c, c, 3, dilation)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x, scale, shift):
        return self.conv(self.act(scale * self.norm(x) + shift))


class UBlock(nn.Module):
    """Signal-stream block: (LeakyReLU, resample, conv, modulation) + 1x1 residual, then two modulated residuals."""

    def __init__(self, cin, cout, factor, down, out_pad=0, dilations=(1, 2, 1, 2)):
        super().__init__()
        self.first = nn.Sequential(nn.LeakyReLU(0.2), _resample(cin, factor, down, out_pad),
                                   _conv(cin, cout, 3, dilations[0]))
        self.mod0 = Modulation(cout, dilations[1])
        self.res = nn.Sequential(_conv(cin, cout, 1), _resample(cout, factor, down, out_pad))
        self.mod1, self.mod2 = Modulation(cout, dilations[2]), Modulation(cout, dilations[3])

    def forward(self, x, scale, shift):
        h = self.mod0(self.first(x), scale, shift) + self.res(x)
        return h + self.mod2(self.mod1(h, scale, shift), scale, shift)


class ScoreNet(nn.Module):
    """SCGradNN: ``forward(x, mu)`` -> (cells, genes); the score at noise level sigma is ``forward(x, mu) / sigma``.

    ``channels`` (upstream ``down_block_dim``) and ``factors`` (the downsampling factor of each level, the last
    usually 1) set the depth and width; ``n_genes`` is the length of the gene axis (``fit_factors``)."""

    def __init__(self, n_genes: int, channels=(32, 128, 256, 512), factors=(3, 4, 5, 1)):
        super().__init__()
        ch, fa = list(map(int, channels)), list(map(int, factors))
        if len(ch) != len(fa) or len(ch) < 2:
            raise ValueError(f"channels {ch} and factors {fa} must have the same length (at least 2)")
        if n_genes < 2:
            raise ValueError(f"the score network needs at least 2 genes, got {n_genes}")
        self.factors = fa = fit_factors(int(n_genes), fa)
        outs = ch[1:] + [ch[-1]]
        pads = up_lengths(int(n_genes), fa[:-1])[::-1]
        self.mu_in, self.x_in = _conv(1, ch[0], 5), _conv(1, ch[0], 3)
        self.left_d = nn.ModuleList(DBlock(i, o, f, True) for i, o, f in zip(ch, outs, fa))
        self.left_f = nn.ModuleList(FiLM(o) for o in outs)
        self.left_u = nn.ModuleList(UBlock(i, o, f, True) for i, o, f in zip(ch, outs, fa))
        r_in, r_out, r_fa = [2 * c for c in ch[1:]][::-1], ch[:-1][::-1], fa[:-1][::-1]
        self.right_d = nn.ModuleList(DBlock(i, o, f, False, p) for i, o, f, p in zip(r_in, r_out, r_fa, pads))
        self.right_f = nn.ModuleList(FiLM(o) for o in r_out)
        self.right_u = nn.ModuleList(UBlock(i, o, f, False, p) for i, o, f, p in zip(r_in, r_out, r_fa, pads))
        self.out = _conv(ch[0], 1, 3)

    def forward(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        d, u = self.mu_in(mu.unsqueeze(1)), self.x_in(x.unsqueeze(1))
        hs_d, hs_u = [], []
        for db, film, ub in zip(self.left_d, self.left_f, self.left_u):
            d = db(d)
            u = ub(u, *film(d))
            hs_d.append(d)
            hs_u.append(u)
        hs_d.pop()
        hs_u.pop()
        for db, film, ub in zip(self.right_d, self.right_f, self.right_u):
            d = db(torch.cat([d, hs_d.pop()], 1))
            u = ub(torch.cat([u, hs_u.pop()], 1), *film(d))
        return self.out(u).squeeze(1)
