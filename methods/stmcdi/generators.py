"""App. F.1 of the paper: the diffusion model swapped for another generator on top of the same
graph-encoder latent (``generator: gain | vae | mlp``). Each gets, per spot, the conditional values
(observed entries not in the training targets M, 0 elsewhere), the conditional mask and the
encoder's latent, and predicts every gene. Imputation: the prediction at the held-out entries (all
observed entries as condition). Each trains with its own optimiser settings (``optimiser_params``),
not the diffusion model's 6e-6 schedule.

* ``mlp``: a three-layer MLP (in -> hidden -> hidden -> G, ReLU), MSE on M.
* ``gain`` (Yoon, Jordon & van der Schaar, ICML 2018), m = the conditional mask (the entries given
  to the generator): generator input m * x + (1 - m) * U(0, 0.01) and m; x_hat = m * x + (1 - m) * G.
  Hint as in the paper (Sec. 4): per spot one gene k drawn uniformly, b_k = 0 and b_j = 1 elsewhere,
  H = B * m + 0.5 (1 - B). The discriminator predicts m from (x_hat, H); both adversarial terms are
  scored on the b = 0 entry only (the paper's L_D and L_G). Generator loss: -(1 - m) log D there +
  ``gain_alpha`` x MSE on the *given* entries m (the paper's L_M); the training targets M are just
  more missing entries (their values enter no GAIN loss). D and G have the same Adam settings; one
  optimiser steps both at once (G's adversarial term sees a detached copy of D's weights, D's loss a
  detached x_hat), where the paper alternates a D step and a G step.
* ``vae`` (the expression-profile VAE of Qiu et al. 2020, GigaScience): encoder q(h | cond values,
  cond mask, latent) -> (mu, logvar) of ``gen_latent`` dims, decoder p(x | h, latent). Loss per spot
  = the squared error summed over its observed entries (given and M alike) + ``vae_beta`` x KL
  summed over the latent dims, averaged over spots: the negative ELBO of a Gaussian decoder of fixed
  variance 1/2, so ``vae_beta`` = 1 is the plain VAE (no hidden scaling by the number of genes).
  Imputation decodes the posterior mean.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from stbench.kit.methodkit import masked_mse

GENERATORS = ("diffusion", "gain", "vae", "mlp")


def mlp3(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


def optimiser_params(p: dict) -> dict:
    """The optimiser settings ``fit`` reads: the diffusion model's for ``diffusion``; for GAIN / VAE / MLP
    Adam at a constant ``gen_lr`` with no weight decay, EMA or clipping (GAIN's released code: Adam at
    TensorFlow's default 1e-3), so that they train under the ``paper`` preset too."""
    if p.get("generator", "diffusion") == "diffusion":
        return p
    return {**p, "optimizer": "adam", "lr": float(p["gen_lr"]), "lr_milestones": [], "lr_factors": [],
            "weight_decay": 0.0, "ema": None, "grad_clip": 0}


def paper_hint_vector(shape, gen, device) -> torch.Tensor:
    """GAIN's B (Yoon et al. 2018, Sec. 4): per row one index k drawn uniformly, b_k = 0, every other b_j = 1."""
    k = torch.randint(0, shape[1], (shape[0],), generator=gen, device=device)
    b = torch.ones(shape, device=device)
    b[torch.arange(shape[0], device=device), k] = 0.0
    return b


class Generator(nn.Module):
    def __init__(self, kind: str, n_genes: int, p: dict, latent: bool):
        super().__init__()
        if kind not in GENERATORS[1:]:
            raise ValueError(f"generator must be one of {GENERATORS}, got {kind!r}")
        self.kind = kind
        self.latent = latent
        g, h = n_genes, int(p["gen_hidden"])
        d_in = g * (3 if latent else 2)  # cond values, cond mask (, encoder latent)
        self.p = p
        if kind == "vae":
            k = int(p["gen_latent"])
            self.enc = nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
            self.mu, self.logvar = nn.Linear(h, k), nn.Linear(h, k)
            self.dec = mlp3(k + (g if latent else 0), h, g)
        else:
            self.net = mlp3(d_in, h, g)
            if kind == "gain":
                self.disc = nn.Sequential(nn.Linear(2 * g, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, g))

    def _inputs(self, vals, cond, z):
        parts = [vals * cond, cond] + ([z] if self.latent else [])
        return torch.cat(parts, -1)

    def predict(self, vals, cond, z, gen=None):
        """Point prediction of every gene (standardised scale)."""
        if self.kind == "vae":
            hid = self.enc(self._inputs(vals, cond, z))
            return self.dec(torch.cat([self.mu(hid)] + ([z] if self.latent else []), -1))
        if self.kind == "gain":
            filled = vals * cond + (1 - cond) * 0.01 * torch.rand(vals.shape, generator=gen, device=vals.device)
            return self.net(torch.cat([filled, cond] + ([z] if self.latent else []), -1))
        return self.net(self._inputs(vals, cond, z))

    def loss(self, xb, ob, cond, targets, z, gen=None):
        """Masked loss of one batch: ``cond`` (float) the conditional entries, ``targets`` (bool) M."""
        if self.kind == "mlp":
            return masked_mse(self.predict(xb, cond, z), xb, targets)
        if self.kind == "vae":
            hid = self.enc(self._inputs(xb, cond, z))
            mu, logvar = self.mu(hid), self.logvar(hid).clamp(-10, 10)
            hz = mu + torch.randn(mu.shape, generator=gen, device=mu.device) * (0.5 * logvar).exp()
            rec = self.dec(torch.cat([hz] + ([z] if self.latent else []), -1))
            sse = (((rec - xb) ** 2) * ob.float()).sum(1)                          # per spot, observed entries
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)              # per spot, summed over dims
            return (sse + float(self.p["vae_beta"]) * kl).mean()
        # gain: m = the given entries (cond)
        pred = self.predict(xb, cond, z, gen)
        hat = cond * xb + (1 - cond) * pred
        b = paper_hint_vector(cond.shape, gen, cond.device)
        hint = b * cond + 0.5 * (1 - b)
        unrevealed = 1 - b                                                          # one entry per spot
        n = unrevealed.sum().clamp(min=1)
        logit_d = self.disc(torch.cat([hat.detach(), hint], -1))
        d_loss = (F.binary_cross_entropy_with_logits(logit_d, cond, reduction="none") * unrevealed).sum() / n
        frozen = {k: v.detach() for k, v in self.disc.named_parameters()}
        logit_g = torch.func.functional_call(self.disc, frozen, (torch.cat([hat, hint], -1),))
        g_adv = (F.softplus(-logit_g) * (1 - cond) * unrevealed).sum() / n         # -(1 - m) log D(x_hat)
        return d_loss + g_adv + float(self.p["gain_alpha"]) * masked_mse(pred, xb, cond > 0)
