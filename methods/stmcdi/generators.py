"""App. F.1 of the paper: the diffusion model swapped for another generator on top of the same
graph-encoder latent (``generator: gain | vae | mlp``). Each gets, per spot, the conditional values
(observed entries not in the training targets M, 0 elsewhere), the conditional mask and the
encoder's latent, and predicts every gene; the losses are masked to observed entries (the targets
M, and for VAE/GAIN's reconstruction the condition too), with the same training masks M as the
diffusion. Imputation: the prediction at the held-out entries (all observed entries as condition).

* ``mlp``: a three-layer MLP (in -> hidden -> hidden -> G, ReLU), MSE on M.
* ``gain`` (Yoon et al. 2018): generator = the same three-layer MLP fed noise U(0, 0.01) at the
  non-conditional entries; discriminator (three layers) guesses, per entry, whether it was given
  (condition) or generated (target), from the completed vector and the hint H = B * cond + 0.5 (1 - B),
  B ~ Bernoulli(hint_rate); D is scored on the observed entries only. Generator loss: -log D on the
  targets + alpha x MSE on M. One optimiser: the generator's adversarial term sees a detached copy of
  D's weights, the discriminator's loss a detached imputation.
* ``vae`` (Qiu et al. 2020, GigaScience: a VAE on the expression profile): encoder q(h | cond
  values, cond mask, latent) -> (mu, logvar) of ``gen_latent`` dims, decoder p(x | h, latent);
  loss = MSE on the observed entries (condition and targets, the targets weighted as one half)
  + ``vae_beta`` x KL. Imputation decodes the posterior mean.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

GENERATORS = ("diffusion", "gain", "vae", "mlp")


def mlp3(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


def masked_mse(pred, target, mask):
    m = mask.float()
    return (((pred - target) ** 2) * m).sum() / m.sum().clamp(min=1)


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
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1).mean() / xb.shape[1]
            return masked_mse(rec, xb, targets) + 0.5 * masked_mse(rec, xb, cond > 0) + float(self.p["vae_beta"]) * kl
        # gain
        pred = self.predict(xb, cond, z, gen)
        hat = cond * xb + (1 - cond) * pred
        b = (torch.rand(cond.shape, generator=gen, device=cond.device) < float(self.p["gain_hint"])).float()
        hint = b * cond + 0.5 * (1 - b)
        obs = ob.float()
        logit_d = self.disc(torch.cat([hat.detach(), hint], -1))
        d_loss = (F.binary_cross_entropy_with_logits(logit_d, cond, reduction="none") * obs).sum() / obs.sum().clamp(min=1)
        frozen = {k: v.detach() for k, v in self.disc.named_parameters()}
        logit_g = torch.func.functional_call(self.disc, frozen, (torch.cat([hat, hint], -1),))
        tm = targets.float()
        g_adv = (F.softplus(-logit_g) * tm).sum() / tm.sum().clamp(min=1)  # -log D(hat) on the targets
        return d_loss + g_adv + float(self.p["gain_alpha"]) * masked_mse(pred, xb, targets)
