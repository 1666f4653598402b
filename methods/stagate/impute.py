"""STAGATE for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

STAGATE needs a complete input matrix. It gets a truth-free fill: the observed values, and at the
held-out entries the gene's observed mean (``fill``). The fill enters the forward pass; the
reconstruction loss is masked to the observed entries (of the training spots). The imputation is
the decoder's reconstruction at the held-out entries; observed entries are returned unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from stbench.kit.methodkit import observed_fill, seeded

from .graph import induced_subgraph, pre_cluster, prune_by_labels, spatial_net, with_self_loops
from .model import STAGATE, fit


def prepare(task, p: dict) -> dict:
    """Everything the model sees, built once: the truth-free input, the loss mask, the graphs."""
    n = task.n_spots
    x_fill = observed_fill(task, p["fill"])  # observed values; held-out entries: gene mean (or 0)
    mask = np.asarray(task.observed_mask, dtype=bool)
    train = np.asarray(task.train_spots, dtype=bool)
    if not train.any():
        train = np.ones(n, dtype=bool)
    snn, desc = spatial_net(task.coords, p["spatial_net"], p["k_cutoff"], p["rad_cutoff"], p["rad_cutoff_nn"])
    out = {"x_fill": x_fill, "mask": mask, "train": train, "graph": desc, "labels": None,
           "edge_index": with_self_loops(snn, n), "pruned_index": None}
    if float(p["alpha"]) > 0:
        labels = pre_cluster(x_fill, p["pre_resolution"], p["pre_n_pcs"], p["pre_n_neighbors"], task.seed)
        out["labels"] = labels
        out["pruned_index"] = with_self_loops(prune_by_labels(snn, labels), n)
    return out


def run(task, **params) -> dict:
    """Fit and reconstruct; returns imputed, reconstruction, latent, loss history and the graph used."""
    p = dict(params)
    device = task.torch_device()
    d = prepare(task, p)
    n, g = task.n_spots, task.n_genes
    train = d["train"]
    with seeded(task.seed, device):
        x = torch.as_tensor(d["x_fill"], device=device)
        m = torch.as_tensor(d["mask"].copy(), device=device)
        ei = d["edge_index"].to(device)
        pi = d["pruned_index"].to(device) if d["pruned_index"] is not None else None
        model = STAGATE(g, p["hidden_dims"], float(p["alpha"]), p["tied_update"])
        model = model.to(device)
        model.link_decoder()
        if train.all():
            tx, tm, tei, tpi = x, m, ei, pi
        else:  # inductive protocol: fit on the subgraph of the training spots only
            idx = torch.as_tensor(np.flatnonzero(train), device=device)
            tx, tm = x[idx], m[idx]
            tei = induced_subgraph(d["edge_index"], train, n).to(device)
            tpi = induced_subgraph(d["pruned_index"], train, n).to(device) if pi is not None else None
        history = fit(model, tx, tx, tm, tei, tpi, n_epochs=p["n_epochs"], lr=p["lr"],
                      weight_decay=p["weight_decay"], gradient_clipping=p["gradient_clipping"])
        model.eval()
        with torch.no_grad():
            z, rec = model(x, ei, pi)
        rec = rec.float().cpu().numpy()
        z = z.float().cpu().numpy()
    if p["clip_negative"] and task.scale == "log":
        rec = np.maximum(rec, 0.0)  # upstream: ReX[ReX < 0] = 0 (log-normalised data are >= 0)
    rec = np.where(np.isfinite(rec), rec, d["x_fill"]).astype(np.float32)  # a diverged run falls back to the fill
    imputed = np.where(d["mask"], d["x_fill"], rec).astype(np.float32)
    return {"imputed": imputed, "reconstruction": rec, "latent": z, "history": history, "graph": d["graph"],
            "n_edges": int(d["edge_index"].shape[1]), "labels": d["labels"]}


def impute(task, **params) -> np.ndarray:
    return run(task, **params)["imputed"]
