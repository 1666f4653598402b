"""Tangram (Biancalani et al. 2021), wrapped: tangram-sc's pp_adatas, map_cells_to_space (cells or clusters
mode) and project_genes, under the harness's truth-free reference protocol (stbench.kit.reference_protocol):
in each gene fold, Tangram is trained on the other shared genes and projects the fold's genes.
"""

from __future__ import annotations

import logging

import numpy as np

from stbench.kit.methodkit import NotApplicable, seeded
from stbench.kit.reference_protocol import normalise_cells, reference_counts, reference_impute

LABEL_KEYS = ("cell_type", "celltype", "cell_types", "CellType", "cell_subclass", "cell_class", "cluster", "clusters",
              "label", "labels", "annotation")


def find_label(obs, key: str):
    """The reference's cell-type column: ``key``, or for ``auto`` the first of LABEL_KEYS present."""
    if key != "auto":
        if key not in obs.columns:
            raise ValueError(f"Tangram clusters mode: the reference has no obs column {key!r}; columns: {list(obs.columns)}")
        return key
    for k in LABEL_KEYS:
        if k in obs.columns:
            return k
    raise NotApplicable(f"no cell-type labels in the reference (clusters mode reads one of {', '.join(LABEL_KEYS)}; "
                        f"obs columns: {', '.join(map(str, obs.columns)) or 'none'})")


def _device(requested: str) -> str:
    import torch

    if requested in ("auto", "cuda") or str(requested).startswith("cuda"):
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return "cpu"


def impute(task, *, mode: str, cluster_label: str, num_epochs: int, learning_rate: float, density_prior: str,
           lambda_d: float, lambda_g1: float, lambda_g2: float, lambda_r: float, n_folds: int, fill: str, fill_k: int,
           calibrate: str):
    import anndata as ad
    import scipy.sparse as sp
    import tangram as tg

    logging.getLogger().setLevel(logging.WARNING)  # tangram logs every step at INFO
    ref = task.reference
    if ref is None:
        raise ValueError("Tangram needs a paired scRNA-seq reference")
    if mode not in ("cells", "clusters"):
        raise ValueError(f"mode must be 'cells' or 'clusters', got {mode!r}")
    label = find_label(ref.obs, cluster_label) if mode == "clusters" else None
    sc_log = normalise_cells(reference_counts(ref), log=True).astype(np.float32)  # tutorial: normalize_total + log1p
    sc_names = [str(g) for g in ref.var_names]
    device = _device(task.device)
    losses = []

    def mapper(inp):
        ad_sc = ad.AnnData(X=sc_log.copy())
        ad_sc.obs_names = [str(c) for c in ref.obs_names]
        ad_sc.var_names = sc_names
        if label is not None:
            ad_sc.obs[label] = ref.obs[label].astype(str).values
        sp_log = normalise_cells(inp.counts, log=True).astype(np.float32)
        ad_sp = ad.AnnData(X=sp_log)
        ad_sp.obs_names = [f"s{i}" for i in range(sp_log.shape[0])]
        ad_sp.var_names = list(inp.ref_genes)  # reference names: pp_adatas intersects by (lower-cased) name
        tg.pp_adatas(ad_sc, ad_sp, genes=list(inp.ref_genes))
        # pp_adatas keeps the genes as list(set(...)): an order that changes with the process's hash seed, and
        # with it the float sums (~3e-6 between runs); a sorted order makes the same input give the same output
        for a in (ad_sc, ad_sp):
            for key in ("training_genes", "overlap_genes"):
                a.uns[key] = sorted(a.uns[key])
        with seeded(inp.seed, device):  # tangram's Mapper seeds numpy only when random_state is truthy (not for seed 0)
            ad_map = tg.map_cells_to_space(ad_sc, ad_sp, mode=mode, cluster_label=label, device=device,
                                           learning_rate=learning_rate, num_epochs=int(num_epochs),
                                           density_prior=density_prior, lambda_d=lambda_d, lambda_g1=lambda_g1,
                                           lambda_g2=lambda_g2, lambda_r=lambda_r, random_state=inp.seed, verbose=False)
        losses.append(float(ad_map.uns["training_history"]["main_loss"][-1]) if "training_history" in ad_map.uns
                      and len(ad_map.uns["training_history"].get("main_loss", [])) else None)
        ad_ge = tg.project_genes(ad_map, ad_sc, cluster_label=label)
        x = ad_ge.X.toarray() if sp.issparse(ad_ge.X) else np.asarray(ad_ge.X)
        col = {g: i for i, g in enumerate(ad_ge.var_names)}
        out = np.zeros((x.shape[0], len(inp.predict)))
        for j, g in enumerate(inp.predict):
            i = col.get(g.lower())
            if i is not None:
                out[:, j] = x[:, i]
        # project_genes returns M^T S: per spot, a sum of log-normalised values over the cells mapped to it (the
        # quantity Tangram's per-gene cosine loss fits to the spatial data). It is a log-scale prediction, ~n_cells /
        # n_spots times a cell's log values: expm1 of it overflows for a large reference, so it goes as it is.
        return out

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate,
                           prediction_scale="log")
    if isinstance(getattr(task, "info", None), dict):
        task.info["tangram"] = {"mode": mode, "cluster_label": label, "device": device, "final_main_loss": losses}
    return out
