"""stMCDI for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

Everything is built from ``task.observed`` / ``task.observed_mask`` (held-out entries are NaN and
never read); held-out entries are the imputation targets, observed entries the condition.
"""

from __future__ import annotations

import numpy as np
import torch

from stbench.kit.diffusion.common import Prepared, check_finite, checkpoint_file, default_chunk, sample_rows
from stbench.kit.diffusion.common import determinism as _determinism

from .generators import optimiser_params
from .graph import knn_edge_index
from .model import STMCDI, parameter_breakdown
from .train import fit

# parameters that do not change the trained model (excluded from the checkpoint key)
_SAMPLING_ONLY = {"sampler", "sample_steps", "eta", "n_samples", "aggregate", "sample_batch", "progress",
                  "progress_interval", "checkpoints", "checkpoint_interval", "threads"}


def run(task, **p) -> dict:
    """Fit and sample with the resolved parameters ``p`` (the registry's); returns imputed, spread
    (per-entry sample std), mean, median, history, parameter counts."""
    device = task.torch_device()
    d = Prepared(task, p["standardise"])
    m, train, xs = d.m, d.train, d.xs  # xs: standardised, 0 at held-out entries
    n, g = xs.shape

    with _determinism(int(task.seed), device, p["threads"]):
        gen = torch.Generator(device=device).manual_seed(int(task.seed))
        X = torch.as_tensor(xs, device=device)
        O = torch.as_tensor(m, device=device)
        edge_index = knn_edge_index(task.coords, int(p["k_neighbors"])).to(device)  # built once
        model = STMCDI(g, p).to(device)
        # in the job's checkpoint folder (outside the sandbox, survives a killed job) when the runner gives one
        ckpt = checkpoint_file(task, p, "stmcdi", _SAMPLING_ONLY)
        train_idx = torch.as_tensor(np.flatnonzero(train), device=device)
        hist = fit(model, X, O, edge_index, train_idx, optimiser_params(p), gen, ckpt, seed=int(task.seed))
        out = impute_with(model, d, X, O, edge_index, p, gen, device)
    return {**out, "history": hist, "n_parameters": parameter_breakdown(model), "params": p}


def impute_with(model, d: Prepared, X, O, edge_index, p: dict, gen, device) -> dict:
    """Sample a trained model at the held-out entries: the latent of the observed data over the full
    graph, then ``n_samples`` draws per spot; imputed, median, mean and spread on the task's scale."""
    x, m, xs, mu, sd = d.x, d.m, d.xs, d.mu, d.sd  # the caller holds the determinism context
    n, g = x.shape
    S = int(p["n_samples"])
    amp = bool(p["amp"]) and device.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        Z = model.encode(X * O, edge_index)
        Z = None if Z is None else Z.float()
    clip = 1.5 * float(np.abs(xs[d.train]).max()) + 1.0  # DDIM x0 bound: beyond any observed (train-spot) value
    chunk = p["sample_batch"] or default_chunk(device, S, g)
    rows = np.flatnonzero((~m).any(1)) if p["lr_mask"] else np.arange(n)

    def draw(idx):
        zb = None if Z is None else Z[idx]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            return model.sample(X[idx], O[idx], zb, S, p["sampler"], int(p["sample_steps"]), float(p["eta"]), gen,
                                clip=clip)

    med, mean, spread = sample_rows(draw, rows, (n, g), S, chunk, device)
    est = med if p["aggregate"] == "median" else mean
    back = lambda a: a * sd + mu  # noqa: E731
    imputed = np.where(m, x, back(est))
    imputed = imputed.astype(np.float32)
    check_finite(imputed)  # a diverged model fails the run with a clear error
    spread = np.where(m, 0.0, spread * sd).astype(np.float32)  # observed entries are given, not sampled
    return {"imputed": imputed, "median": back(med), "mean": back(mean), "spread": spread}


def impute(task, **params) -> np.ndarray:
    res = run(task, **params)
    h = res["history"]
    # run.json's method_info: how much of the training this job ran itself (none where a finished checkpoint,
    # e.g. a batched ensemble's, was found: resumed_from == steps)
    task.info["training"] = {"steps": int(h.get("steps", 0)), "resumed_from": int(h.get("resumed_from", 0)),
                             "seconds": round(float(h.get("seconds", 0.0)), 3)}
    return res["imputed"]
