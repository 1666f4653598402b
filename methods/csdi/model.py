"""CSDI (Tashiro et al. 2021) with genes as its features K and spots as its samples (L = 1).

The denoiser, the noise schedule, the samplers and the random training mask are stMCDI's,
imported from one place (``stbench.kit.diffusion``). What is CSDI's own: the side information (the
time embedding of the spot's single "time point", a learned feature embedding, the conditional
mask; no gene-index embedding, no graph latent) and the per-sample ratio of its ``random`` target
strategy (``get_randmask``: one uniform ratio per sample).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from stbench.kit.diffusion import Denoiser, Schedule, ddim_sample, ddpm_sample, sinusoidal_table
from stbench.kit.diffusion.masks import train_targets


class CSDI(nn.Module):
    def __init__(self, n_genes: int, p: dict):
        super().__init__()
        self.p = dict(p)
        self.n_genes = n_genes
        # CSDI's time_embedding(pos=0): with one time point per spot it is a constant vector
        self.register_buffer("time_emb", sinusoidal_table(1, p["time_emb_dim"])[0], persistent=False)
        self.feature_emb = nn.Embedding(n_genes, p["feature_emb_dim"]) if p["feature_emb_dim"] > 0 else None
        side_dim = p["time_emb_dim"] + p["feature_emb_dim"] + 1
        self.denoiser = Denoiser(side_dim, p["num_steps"], p["channels"], p["layers"], p["heads"],
                                 p["diff_emb_dim"], p["ff_dim"], p["dropout"])
        self.sched = Schedule(p["num_steps"], p["beta_start"], p["beta_end"], p["schedule"])
        self.register_buffer("alpha_bar", torch.as_tensor(self.sched.alpha_bar, dtype=torch.float32), persistent=False)

    def side_info(self, cond: torch.Tensor) -> torch.Tensor:
        b, g = cond.shape
        parts = [self.time_emb[None, None].expand(b, g, -1)]
        if self.feature_emb is not None:
            parts.append(self.feature_emb.weight[None].expand(b, -1, -1))
        parts.append(cond[..., None])
        return torch.cat(parts, -1)

    def training_loss(self, xb, ob, gen=None):
        """CSDI's calc_loss: random per-spot target ratio among the observed entries, noise MSE on the targets."""
        ratio = torch.rand(xb.shape[0], generator=gen, device=xb.device)
        M = train_targets(ob, "random", ratio, gen)
        cond = (ob & ~M).float()
        t = torch.randint(0, self.sched.T, (xb.shape[0],), generator=gen, device=xb.device)
        noise = torch.randn(xb.shape, generator=gen, device=xb.device)
        ab = self.alpha_bar[t][:, None]
        xt = ab.sqrt() * xb + (1 - ab).sqrt() * noise
        inp = torch.stack([xb * cond, xt * (1 - cond)], -1)
        eps = self.denoiser(inp, t, self.denoiser.project_side(self.side_info(cond)))
        tm = M.float()
        return (((eps.float() - noise) ** 2) * tm).sum() / tm.sum().clamp(min=1)

    @torch.no_grad()
    def sample(self, xb, ob, n_samples: int, sampler: str, steps: int, eta: float, gen=None, clip=None):
        """(n_samples, b, G): the observed entries are the condition, the others start from pure noise."""
        b, g = xb.shape
        cond = ob.float()
        cp = [c.repeat(n_samples, 1, 1) for c in self.denoiser.project_side(self.side_info(cond))]
        cond_vals = (xb * cond).repeat(n_samples, 1)
        free = (1 - cond).repeat(n_samples, 1)

        def eps_fn(x, t):
            return self.denoiser(torch.stack([cond_vals, x * free], -1), torch.tensor([t], device=x.device), cp).float()

        noise = torch.randn((n_samples * b, g), generator=gen, device=xb.device)
        if sampler == "ddpm":
            out = ddpm_sample(eps_fn, noise, self.sched, gen=gen)
        else:
            out = ddim_sample(eps_fn, noise, self.sched, steps, eta, gen=gen, clip=clip)
        return out.view(n_samples, b, g)
