"""CpG Transformer for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

De Waele et al. (2022) impute single-cell methylomes (cells x CpG sites) with axial attention:
sliding-window self-attention along the CpG sites of each cell and full attention across cells at
each site, trained by masking observed entries. Here spots take the place of cells and genes the
place of CpG sites; the gene axis is ordered by observed co-expression (default) so that the
21-gene window holds co-expressed genes. The loss is upstream's continuous-mode MSE. Observed
entries are returned unchanged; held-out entries get the model output. See README.md.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from stbench.kit.methodkit import seeded, torch_threads

from .train import build, fit, predict, prepare, to_torch


def run(task, *, gene_order, segment_size, resample_cells, mask_p, mask_random_p, val_fraction, cell_embed_size,
        value_embed_size, gene_embed_size, hidden_size, n_layers, n_heads, head_dim, window, dropout, activation,
        layernorm, mode, lr, lr_decay_factor, warmup_steps, max_epochs, max_steps, steps_per_epoch, earlystop, patience,
        predict_cells, threads) -> dict:
    """Fit and impute. Returns ``imputed`` (task scale, observed entries unchanged), ``prediction``
    (the model output for every entry, task scale), ``order`` (the gene order), ``history``, ``seconds``."""
    p = dict(locals())
    p.pop("task")
    t0 = time.time()
    device = task.torch_device()
    with torch_threads(threads):
        d = to_torch(prepare(task, gene_order, float(val_fraction), task.seed))
        with seeded(task.seed, device):
            net = build(task.n_spots, task.n_genes, p).to(device)
            hist = fit(net, d, p, task.seed, device)
            unseen = np.setdiff1d(np.arange(task.n_spots), d["fit_spots"])
            if unseen.size and d["fit_spots"].size:   # inductive masks: spots never trained get the mean embedding
                with torch.no_grad():
                    w = net.cell_embed.weight
                    w[torch.as_tensor(unseen, device=w.device)] = w[torch.as_tensor(d["fit_spots"], device=w.device)].mean(0)
            out = predict(net, d, p, task.seed, device)                       # [genes in site order, spots]
            if unseen.size and d["fit_spots"].size:   # the train spots read the train spots only (inductive)
                out[:, d["fit_spots"]] = predict(net, d, p, task.seed, device, among=d["fit_spots"])[:, d["fit_spots"]]
    pred = np.empty((task.n_spots, task.n_genes), dtype=np.float64)
    pred[:, d["order"]] = out.T.astype(np.float64) * d["sd"] + d["mu"]
    pred = np.where(np.isfinite(pred), pred, 0.0)
    obs = np.asarray(task.observed, dtype=np.float64)
    imputed = np.where(task.observed_mask, obs, pred).astype(np.float32)
    return {"imputed": imputed, "prediction": pred.astype(np.float32), "order": d["order"], "history": hist,
            "seconds": time.time() - t0}


def impute(task, **params) -> np.ndarray:
    return run(task, **params)["imputed"]
