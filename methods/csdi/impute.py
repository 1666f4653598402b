"""CSDI for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

Trained on the observed entries only (held-out entries are NaN in the task, set to 0 after the
z-score and never a target); the held-out entries are sampled from pure noise with every observed
entry of the spot as the condition, and the median of the samples is the imputation.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from stbench.diffusion.common import Prepared, check_finite, default_chunk, determinism, sample_rows

from .model import CSDI

ENUMS = {"sampler": ("ddpm", "ddim"), "aggregate": ("median", "mean"), "schedule": ("quad", "linear")}


def check_params(p: dict) -> None:
    for name, allowed in ENUMS.items():
        if p.get(name) not in allowed:
            raise ValueError(f"CSDI: parameter {name}={p.get(name)!r} is invalid; allowed: {', '.join(allowed)}")
    if p["channels"] % p["heads"]:
        raise ValueError(f"CSDI: channels ({p['channels']}) must be divisible by heads ({p['heads']})")


def fit(model: CSDI, X, O, train_idx, p: dict, gen) -> dict:
    """Adam with MultiStepLR (x lr_gamma at each milestone fraction of the epochs), as upstream's utils.train;
    at least ``min_steps`` optimiser steps (whole epochs), so that a small section trains as long as a large one."""
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    bs = int(p["batch_size"])
    per_epoch = max(1, -(-int(train_idx.numel()) // bs))
    epochs = max(int(p["epochs"]), -(-int(p.get("min_steps") or 0) // per_epoch))
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(m * epochs) for m in p["lr_milestones"]], gamma=float(p["lr_gamma"]))
    hist, steps, t0 = [], 0, time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = train_idx[torch.randperm(train_idx.numel(), generator=gen, device=train_idx.device)]
        tot, nb = 0.0, 0
        for s in range(0, perm.numel(), bs):
            idx = perm[s:s + bs]
            loss = model.training_loss(X[idx], O[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()); nb += 1; steps += 1
        sched.step()
        hist.append(tot / max(nb, 1))
    model.eval()
    return {"loss": hist, "steps": steps, "seconds": time.perf_counter() - t0}


def run(task, **p) -> dict:
    check_params(p)
    device = task.torch_device()
    d = Prepared(task, p["standardise"])
    x, m, train, mu, sd, xs = d.x, d.m, d.train, d.mu, d.sd, d.xs  # xs: 0 at held-out entries
    n, g = x.shape

    with determinism(int(task.seed), device, p["threads"]):
        gen = torch.Generator(device=device).manual_seed(int(task.seed))
        X = torch.as_tensor(xs, device=device)
        O = torch.as_tensor(m, device=device)
        model = CSDI(g, p).to(device)
        hist = fit(model, X, O, torch.as_tensor(np.flatnonzero(train), device=device), p, gen)
        S = int(p["n_samples"])
        clip = 1.5 * float(np.abs(xs[train]).max()) + 1.0  # DDIM x0 bound over the train spots (as stMCDI); DDPM: none
        chunk = p["sample_batch"] or default_chunk(device, S, g)
        rows = np.flatnonzero((~m).any(1))

        def draw(idx):
            return model.sample(X[idx], O[idx], S, p["sampler"], int(p["sample_steps"]), float(p["eta"]), gen, clip=clip)

        med, mean, spread = sample_rows(draw, rows, (n, g), S, chunk, device)
    est = med if p["aggregate"] == "median" else mean
    back = lambda a: a * sd + mu  # noqa: E731
    imputed = np.where(m, x, back(est)).astype(np.float32)
    check_finite(imputed, "CSDI")
    spread = np.where(m, 0.0, spread * sd).astype(np.float32)
    return {"imputed": imputed, "spread": spread, "history": hist,
            "n_parameters": int(sum(q.numel() for q in model.parameters())), "params": p}


def impute(task, **params) -> np.ndarray:
    return run(task, **params)["imputed"]
