"""DCA for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

A deep count autoencoder (Eraslan et al. 2019) is fitted to the observed raw counts
(``task.observed_counts``) with the (ZI)NB likelihood summed over observed entries only; the
imputation of a held-out entry is the fitted NB mean count (size factor x ``mean`` head, the
upstream denoised output), mapped to the task's scale by ``task.counts_to_scale``. Observed
entries are returned unchanged. Upstream (TensorFlow < 2.5, Keras < 2.6) does not install here,
so this is a PyTorch reimplementation; see README.md for every deviation.
"""

from __future__ import annotations

import numpy as np
import torch

from stbench.kit.methodkit import seeded, torch_threads

from .model import DCA
from .train import fit, prepare_inputs, split_rows

def _check(p: dict) -> None:
    # a cross-parameter rule, which param_schema (one schema per parameter) cannot express; the rest is there
    if p["output"] == "zinb_mean" and not p["ae_type"].startswith("zinb"):
        raise ValueError("dca: output 'zinb_mean' needs a zero-inflated ae_type (zinb-conddisp or zinb)")


def run(task, *, ae_type, hidden_size, hidden_dropout, input_dropout, batchnorm, activation, ridge, size_factors,
        log1p, scale_input, epochs, batch_size, optimizer, learning_rate, clip_grad, reduce_lr, early_stop,
        validation_split, restore_best, output, threads) -> dict:
    """Fit DCA and return a dict: ``imputed`` (task scale), ``counts`` (predicted counts), ``mean``,
    ``theta``, ``pi`` (None for NB), ``size_factors``, ``history``, ``train_rows``, ``val_rows``."""
    p = dict(locals())
    p.pop("task")
    _check(p)
    device = task.torch_device()
    data = prepare_inputs(task, size_factors=bool(size_factors), log1p=bool(log1p), scale_input=bool(scale_input))
    train_rows, val_rows = split_rows(data["fit_rows"], float(validation_split), task.seed)
    with torch_threads(threads), seeded(task.seed, device):
        net = DCA(task.n_genes, hidden_size=hidden_size, ae_type=ae_type, batchnorm=bool(batchnorm),
                  activation=activation, hidden_dropout=hidden_dropout, input_dropout=float(input_dropout)).to(device)
        hist = fit(net, data, train_rows, val_rows, epochs=int(epochs), batch_size=int(batch_size),
                   optimizer=optimizer, learning_rate=float(learning_rate), clip_grad=clip_grad,
                   reduce_lr=int(reduce_lr or 0), early_stop=int(early_stop or 0), ridge=float(ridge),
                   restore_best=bool(restore_best), seed=task.seed, device=device)
        net.eval()
        with torch.no_grad():
            mean, theta, pi = net(torch.as_tensor(data["x"], device=device))
            mu = mean * torch.as_tensor(data["size_factors"], device=device)[:, None]
            counts = mu * (1.0 - pi) if output == "zinb_mean" else mu
    counts = counts.double().cpu().numpy()
    pred = np.asarray(task.counts_to_scale(counts), dtype=np.float32)
    obs = np.asarray(task.observed, dtype=np.float32)
    imputed = np.where(task.observed_mask, obs, pred).astype(np.float32)
    return {"imputed": imputed, "prediction": pred, "counts": counts.astype(np.float32),
            "mean": mean.cpu().numpy(), "theta": theta.cpu().numpy(),
            "pi": None if pi is None else pi.cpu().numpy(), "size_factors": data["size_factors"],
            "history": hist, "train_rows": train_rows, "val_rows": val_rows}


def impute(task, **params) -> np.ndarray:
    out = run(task, **params)["imputed"]
    if not np.isfinite(out).all():
        raise FloatingPointError("dca: non-finite imputation")
    return out
