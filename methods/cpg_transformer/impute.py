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

from .model import ACTIVATIONS, MODES
from .train import ORDERS, build, fit, predict, prepare, to_torch


def _check(p: dict) -> None:
    if p["gene_order"] not in ORDERS:
        raise ValueError(f"cpg_transformer: gene_order must be one of {ORDERS}, got {p['gene_order']!r}")
    if p["mode"] not in MODES:
        raise ValueError(f"cpg_transformer: mode must be one of {MODES}, got {p['mode']!r}")
    if p["activation"] not in ACTIVATIONS:
        raise ValueError(f"cpg_transformer: activation must be one of {ACTIVATIONS}, got {p['activation']!r}")
    if int(p["window"]) < 1 or int(p["window"]) % 2 != 1:
        raise ValueError(f"cpg_transformer: window must be an odd integer >= 1, got {p['window']}")
    if not 0 <= float(p["mask_random_p"]) < 1 or not float(p["mask_p"]) > 0:
        raise ValueError("cpg_transformer: need mask_p > 0 and 0 <= mask_random_p < 1")
    if not 0 <= float(p["val_fraction"]) < 1:
        raise ValueError(f"cpg_transformer: val_fraction must be in [0, 1), got {p['val_fraction']}")
    for k in ("segment_size", "hidden_size", "n_heads", "head_dim", "cell_embed_size", "value_embed_size"):
        if int(p[k]) < 1:
            raise ValueError(f"cpg_transformer: {k} must be >= 1")


def run(task, *, gene_order="correlation", segment_size=1024, resample_cells=None, mask_p=0.25, mask_random_p=0.2,
        val_fraction=0.1, cell_embed_size=32, value_embed_size=32, gene_embed_size=32, hidden_size=64, n_layers=4,
        n_heads=8, head_dim=8, window=21, dropout=0.2, activation="relu", layernorm=True, mode="axial", lr=5e-4,
        lr_decay_factor=0.9, warmup_steps=1000, max_epochs=1000, max_steps=None, steps_per_epoch=None,
        earlystop=True, patience=10, predict_cells=None, threads=None) -> dict:
    """Fit and impute. Returns ``imputed`` (task scale, observed entries unchanged), ``prediction``
    (the model output for every entry, task scale), ``order`` (the gene order), ``history``, ``seconds``."""
    p = dict(locals())
    p.pop("task")
    _check(p)
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
