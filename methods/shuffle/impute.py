"""Negative control: each held-out entry gets a random observed value of the same gene (another spot's).

The donors are the observed entries of the ``train_spots`` (under ``inductive``, the test fold is no donor)."""

import numpy as np


def impute(task):
    rng = np.random.default_rng(np.random.SeedSequence([int(task.seed), 7]))
    x = np.nan_to_num(task.observed)
    out = x.copy()
    m = task.observed_mask & np.asarray(task.train_spots, dtype=bool)[:, None]     # the donor entries
    n_obs = m.sum(0)
    fallback = float(x[m].mean()) if m.any() else 0.0
    # one vectorised draw: for gene j, a uniform index into its observed entries
    order = np.argsort(~m, axis=0, kind="stable")           # observed rows of each gene first
    draws = (rng.random(m.shape) * np.maximum(n_obs, 1)).astype(np.int64)
    picked = np.take_along_axis(x, np.take_along_axis(order, draws, axis=0), axis=0)
    fill = np.where(n_obs[None, :] > 0, picked, fallback)
    held = ~task.observed_mask
    out[held] = fill[held]
    return out.astype(np.float32)
