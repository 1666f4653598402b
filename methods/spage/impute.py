"""SpaGE (Abdelaal et al. 2020), reimplemented: PRECISE principal vectors between the scRNA-seq and the
spatial data, both projected on the reference's principal vectors, then a cosine kNN regression from
reference cells to spots. Runs under the harness's truth-free reference protocol
(stbench.kit.reference_protocol): the genes it predicts are never among the genes it aligns on.

Step by step against the published code (SpaGE/main.py, principal_vectors.py; README.md has the table).
"""

from __future__ import annotations

import numpy as np

from stbench.kit.reference_protocol import cosine_knn_transfer, normalise_cells, reference_counts, reference_impute


def _zscore(x: np.ndarray) -> np.ndarray:
    """scipy.stats.zscore(x, axis=0) (population sd); constant columns give 0 (upstream: NaN)."""
    mu = x.mean(0, keepdims=True)
    sd = x.std(0, keepdims=True)
    return np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0)


def principal_vectors(source: np.ndarray, target: np.ndarray, n_factors: int, n_pv: int, seed: int = 0):
    """PRECISE's PVComputation.fit with PCA on both sides: (source PVs, target PVs, cosine similarities)."""
    import scipy.linalg
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import normalize

    ps = PCA(n_components=n_factors, random_state=seed).fit(source).components_
    ps = scipy.linalg.orth(ps.T).T
    pt = PCA(n_components=n_factors, random_state=seed).fit(target).components_
    pt = scipy.linalg.orth(pt.T).T
    u, _, vt = np.linalg.svd(ps @ pt.T)
    s_pv = normalize((u.T @ ps)[:n_pv], axis=1)
    t_pv = normalize((vt @ pt)[:n_pv], axis=1)
    return s_pv, t_pv, np.diag(s_pv @ t_pv.T)


def spage_predict(ref_log: np.ndarray, ref_in_idx, ref_out_idx, spatial: np.ndarray, *, n_pv: int,
                  n_neighbors: int, cos_threshold: float, seed: int = 0):
    """SpaGE(Spatial_data, RNA_data, n_pv, genes_to_predict) on arrays; returns (prediction, n_effective_pv).

    ``ref_log``: cells x genes log-normalised reference; ``spatial``: spots x input genes (normalised);
    the prediction is the weighted mean of ``ref_log[:, ref_out_idx]`` over each spot's neighbours.
    """
    common = _zscore(ref_log[:, ref_in_idx])           # RNA_data_scaled[Common genes]
    sp_scaled = _zscore(spatial)                         # Spatial_data_scaled[Common genes]
    n_factors = int(max(1, min(n_pv, common.shape[1], common.shape[0] - 1, sp_scaled.shape[0] - 1)))
    s_pv, _, cos = principal_vectors(common, sp_scaled, n_factors, n_factors, seed)
    n_eff = int((cos > cos_threshold).sum())
    s = s_pv[: max(n_eff, 1)].T                          # S = source_components_.T[:, :Effective_n_pv]
    ref_proj, sp_proj = common @ s, sp_scaled @ s
    pred = cosine_knn_transfer(ref_proj, sp_proj, ref_log[:, ref_out_idx], n_neighbors)  # steps 6-8
    return pred, n_eff


def impute(task, *, n_pv: int, n_neighbors: int, cos_threshold: float, min_cells: int, n_folds: int, fill: str,
           fill_k: int, calibrate: str):
    ref = task.reference
    if ref is None:
        raise ValueError("SpaGE needs a paired scRNA-seq reference")
    rc = reference_counts(ref)
    keep = (rc > 0).sum(0) >= int(min_cells)             # the paper: genes expressed in >= 10 cells
    keep_cells = rc[:, keep].sum(1) > 0
    rc = rc[keep_cells]
    ref_log = normalise_cells(rc, log=True)
    col = {g: i for i, g in enumerate(map(str, ref.var_names)) if keep[i]}
    effective = []

    def mapper(inp):
        use = [i for i, g in enumerate(inp.ref_genes) if g in col]
        out_idx = [col.get(g, -1) for g in inp.predict]
        pred, n_eff = spage_predict(ref_log, [col[inp.ref_genes[i]] for i in use], [max(j, 0) for j in out_idx],
                                    inp.values[:, use].astype(np.float64), n_pv=int(n_pv),
                                    n_neighbors=int(n_neighbors), cos_threshold=float(cos_threshold), seed=inp.seed)
        pred[:, [j for j, o in enumerate(out_idx) if o < 0]] = 0.0   # filtered out of the reference: constant
        effective.append(n_eff)
        return np.expm1(pred)                            # the protocol takes log1p: back to the log-normalised mean

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate)
    if isinstance(getattr(task, "info", None), dict):
        task.info["spage"] = {"effective_n_pv": effective, "reference_genes_kept": int(keep.sum())}
    return out
