"""The learned comparator: a conditional VAE on the log-normalised cells (one-hot type into encoder and decoder,
Gaussian likelihood = MSE, standard-normal prior). Synthetic cells: z ~ N(0, I) decoded with their type, then
returned to counts like SCLD's (library sizes of real cells of the type, rounded)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from stbench.data.reference_generators.cells import (cell_labels, draw_libraries, log_expression, requested_labels,
                                                synthetic_anndata, to_counts)
from stbench.kit.reference_protocol import reference_counts

PRESETS = {"default": {"hidden": 256, "latent_dim": 16, "steps": 3000, "batch_size": 128, "lr": 1e-3, "beta": 1.0},
           "paper": {}, "quick": {"steps": 1500}, "test": {"hidden": 32, "latent_dim": 4, "steps": 50}}


class CVAE(nn.Module):
    def __init__(self, g: int, k: int, hidden: int, latent: int):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(g + k, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent + k, hidden), nn.ReLU(), nn.Linear(hidden, g), nn.ReLU())
        self.latent = latent

    def forward(self, x, c):
        mu, logvar = self.enc(torch.cat([x, c], 1)).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(torch.cat([z, c], 1)), mu, logvar


def generate(reference, n_per_type: dict, *, by: str, seed: int = 0, params: dict, device: str = "cpu"):
    """Fit the conditional VAE on ``reference`` and return ``n_per_type`` synthetic cells."""
    torch.manual_seed(int(seed))
    counts, labels = reference_counts(reference), cell_labels(reference, by)
    want = requested_labels(n_per_type, labels)
    types = sorted(set(labels.tolist()))
    x, med = log_expression(counts)
    xt = torch.as_tensor(x, dtype=torch.float32)
    onehot = F.one_hot(torch.as_tensor([types.index(t) for t in labels]), len(types)).float()
    model = CVAE(x.shape[1], len(types), int(params["hidden"]), int(params["latent_dim"]))
    opt = torch.optim.AdamW(model.parameters(), lr=float(params["lr"]))
    gen = torch.Generator().manual_seed(int(seed))
    bs = int(min(params["batch_size"], len(x)))
    for _ in range(int(params["steps"])):
        idx = torch.randint(0, len(x), (bs,), generator=gen)
        rec, mu, logvar = model(xt[idx], onehot[idx])
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1).mean()
        loss = F.mse_loss(rec, xt[idx], reduction="none").sum(1).mean() + float(params["beta"]) * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        c = F.one_hot(torch.as_tensor([types.index(t) for t in want], dtype=torch.long), len(types)).float()
        z = torch.randn((len(want), model.latent), generator=gen)
        logx = model.dec(torch.cat([z, c], 1)).numpy()
    libs = draw_libraries(counts, labels, want, np.random.default_rng(int(seed) + 2))
    return synthetic_anndata(to_counts(logx, libs, med, upper=x.max(0)), want, reference, by, "vae")
