"""scVI as the SpaDiT and stDiff benchmarks run it, wrapped: their "scVI" row is the GIMVI model of the scvi
package they vendor (stDiff test-baseline.py, gimVI_impute; SpaDiT ships the same baseline/scvi), called on
log-normalised data (normalize_total to 1e4, log1p) of both the reference (restricted to the spatial genes) and the
spot, ``GIMVI(seq, spatial).train(200)``, ``get_imputed_values(normalized=False)``. Here it is scvi-tools'
``scvi.external.GIMVI`` (the maintained successor of that class) under the harness's truth-free reference protocol.
This differs from methods/gimvi, which feeds counts and reads normalised rates (scvi-tools' tutorial).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from stbench.kit.reference_protocol import reference_counts, reference_impute


def _accelerator(requested: str) -> str:
    import torch

    if requested in ("auto", "cuda") or str(requested).startswith("cuda"):
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def log_normalise(x: np.ndarray, target_sum: float) -> np.ndarray:
    """scanpy's normalize_total(target_sum) then log1p, on a dense matrix (rows without counts stay 0)."""
    tot = x.sum(1, keepdims=True)
    return np.log1p(np.where(tot > 0, x / np.where(tot > 0, tot, 1.0) * float(target_sum), 0.0))


def impute(task, *, max_epochs: int, target_sum: float, normalized: bool, n_latent: int, kappa: int, batch_size: int,
           n_folds: int, fill: str, fill_k: int, calibrate: str):
    import anndata as ad
    import scvi
    from scvi.external import GIMVI

    for name in ("scvi", "lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ref = task.reference
    if ref is None:
        raise ValueError("scVI (GIMVI) needs a paired scRNA-seq reference")
    rc = reference_counts(ref)
    col = {g: i for i, g in enumerate(map(str, ref.var_names))}
    accelerator = _accelerator(task.device)

    def mapper(inp):
        scvi.settings.seed = int(inp.seed)
        genes = list(inp.ref_genes) + list(inp.predict)
        sub = rc[:, [col[g] for g in genes]]
        sub = sub[sub.sum(1) > 0]                        # upstream: filter_cells(min_counts=0) keeps every cell
        seq = ad.AnnData(X=log_normalise(sub, target_sum).astype(np.float32))
        seq.var_names = genes
        seq.obs_names = [f"c{i}" for i in range(seq.n_obs)]
        spx = log_normalise(np.maximum(inp.counts, 0.0), target_sum).astype(np.float32)
        empty = spx.sum(1) == 0
        if empty.any():                                  # GIMVI needs a non-empty library: one pseudo-count (rare)
            spx[np.flatnonzero(empty), int(np.argmax(spx.sum(0)))] = float(np.log1p(1.0))
        spatial = ad.AnnData(X=spx)
        spatial.var_names = list(inp.ref_genes)
        spatial.obs_names = [f"s{i}" for i in range(spx.shape[0])]
        GIMVI.setup_anndata(spatial)
        GIMVI.setup_anndata(seq)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = GIMVI(seq, spatial, n_latent=int(n_latent))
            model.train(max_epochs=int(max_epochs), kappa=int(kappa), batch_size=int(batch_size),
                        accelerator=accelerator, devices=1, enable_progress_bar=False, logger=False,
                        enable_checkpointing=False)
            _, imputed = model.get_imputed_values(normalized=bool(normalized))
        return np.asarray(imputed)[:, len(inp.ref_genes):]   # on the log-normalised scale

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate,
                           prediction_scale="log")
    if isinstance(getattr(task, "info", None), dict):
        task.info["scvi"] = {"accelerator": accelerator, "scvi_tools": getattr(scvi, "__version__", "?"),
                             "model": "scvi.external.GIMVI"}
    return out
