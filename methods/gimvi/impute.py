"""gimVI (Lopez et al. 2019), wrapped: scvi-tools' scvi.external.GIMVI (setup_anndata, train,
get_imputed_values) under the harness's truth-free reference protocol (stbench.kit.reference_protocol):
in each gene fold, the spatial AnnData holds only the other shared genes, the scRNA-seq AnnData every
reference gene, and the fold's genes are read from the spatial half's imputed values.
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


def impute(task, *, max_epochs: int, n_latent: int, kappa: int, batch_size: int, generative_distributions: list,
           model_library_size: list, normalized: bool, n_folds: int, fill: str, fill_k: int, calibrate: str):
    import anndata as ad
    import scvi
    from scvi.external import GIMVI

    for name in ("scvi", "lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ref = task.reference
    if ref is None:
        raise ValueError("gimVI needs a paired scRNA-seq reference")
    rc = reference_counts(ref)
    keep_cells = rc.sum(1) > 0                          # tutorial: sc.pp.filter_cells(seq_data, min_counts=1)
    seq_counts = np.round(rc[keep_cells]).astype(np.float32)
    seq_names = [str(g) for g in ref.var_names]
    accelerator = _accelerator(task.device)
    history = []

    def mapper(inp):
        scvi.settings.seed = int(inp.seed)
        seq = ad.AnnData(X=seq_counts.copy())
        seq.var_names = seq_names
        seq.obs_names = [f"c{i}" for i in range(seq.n_obs)]
        spc = np.round(np.maximum(inp.counts, 0.0)).astype(np.float32)
        empty = spc.sum(1) == 0
        spc[empty] = 0.0
        spatial = ad.AnnData(X=spc)
        spatial.var_names = list(inp.ref_genes)         # a subset of the reference's genes, as GIMVI requires
        spatial.obs_names = [f"s{i}" for i in range(spc.shape[0])]
        # GIMVI needs every spot to have counts: an empty spot (rare) is given one count of its top input gene
        if empty.any():
            spatial.X[np.flatnonzero(empty), int(np.argmax(spc.sum(0)))] = 1.0
        GIMVI.setup_anndata(spatial)
        GIMVI.setup_anndata(seq)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = GIMVI(seq, spatial, generative_distributions=list(generative_distributions),
                          model_library_size=list(model_library_size), n_latent=int(n_latent))
            model.train(max_epochs=int(max_epochs), kappa=int(kappa), batch_size=int(batch_size),
                        accelerator=accelerator, devices=1, enable_progress_bar=False, logger=False,
                        enable_checkpointing=False)
            _, imputed = model.get_imputed_values(normalized=bool(normalized))
        col = {g: i for i, g in enumerate(seq_names)}
        history.append(int(max_epochs))
        return np.asarray(imputed)[:, [col[g] for g in inp.predict]]

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate)
    if isinstance(getattr(task, "info", None), dict):
        task.info["gimvi"] = {"accelerator": accelerator, "epochs_per_fold": history,
                              "scvi_tools": getattr(scvi, "__version__", "?")}
    return out
