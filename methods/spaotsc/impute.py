"""SpaOTsc (Cang & Nie 2020), its gene-prediction path reimplemented on POT as SpatialBenchmarking runs it
(Benchmarking/SpatialGenes.py, SpaOTsc_impute): Spearman correlation of each cell with each spot over the shared
genes, cost exp(1 - rho)^2, marginals from the weights exp(rho), unbalanced entropic OT (alpha = 0: no
Gromov-Wasserstein term), each spot's column of the plan normalised to 1, prediction = the plan-weighted mean of
the cells' expression. Runs under the harness's truth-free reference protocol (stbench.kit.reference_protocol).

Hand-written: the row-wise Spearman matrix (ranks, then one matrix product; scipy.stats.spearmanr would build the
(cells + spots)^2 matrix). The transport itself is POT's ``ot.unbalanced.sinkhorn_unbalanced``.
"""

from __future__ import annotations

import numpy as np

from stbench.kit.reference_protocol import normalise_cells, reference_counts, reference_impute


def _row_ranks(x: np.ndarray) -> np.ndarray:
    """Each row's average ranks (scipy.stats.rankdata, ties averaged), centred and scaled to unit norm."""
    from scipy.stats import rankdata

    r = rankdata(x, axis=1)
    r = r - r.mean(1, keepdims=True)
    n = np.linalg.norm(r, axis=1, keepdims=True)
    return np.where(n > 0, r / np.where(n > 0, n, 1.0), 0.0)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Spearman correlations between the rows of ``a`` and those of ``b``; a constant row gives 0
    (upstream: NaN, then set to 0)."""
    return _row_ranks(a) @ _row_ranks(b).T


def transport_plan(mcc: np.ndarray, epsilon: float, rho: float, max_iter: int) -> np.ndarray:
    """SpaOTsc's spatial_sc.transport_plan(C**2, cor_matrix=mcc, alpha=0, rho, epsilon, scaling=False) with C =
    exp(1 - mcc): weights exp(mcc), marginals their row / column sums normalised, unbalanced Sinkhorn with an
    entropy term and KL marginal penalties rho. Returns (cells, spots)."""
    import ot

    w = np.exp(mcc)
    wa, wb = w.sum(1), w.sum(0)
    cost = np.exp(1.0 - mcc) ** 2
    return ot.unbalanced.sinkhorn_unbalanced(wa / wa.sum(), wb / wb.sum(), cost, reg=float(epsilon),
                                             reg_m=float(rho), reg_type="entropy", numItermax=int(max_iter))


def impute(task, *, epsilon: float, rho: float, max_iter: int, n_folds: int, fill: str, fill_k: int, calibrate: str):
    ref = task.reference
    if ref is None:
        raise ValueError("SpaOTsc needs a paired scRNA-seq reference")
    rc = reference_counts(ref)
    rc = rc[rc.sum(1) > 0]
    expr = normalise_cells(rc, log=False)                # cells' expression, normalised to the median total
    col = {g: i for i, g in enumerate(map(str, ref.var_names))}
    mass = []

    def mapper(inp):
        mcc = spearman_rows(rc[:, [col[g] for g in inp.ref_genes]], inp.values.astype(np.float64))
        gamma = transport_plan(mcc, epsilon, rho, max_iter)
        tot = gamma.sum(0, keepdims=True)
        if not np.all(tot > 0):
            raise FloatingPointError(f"SpaOTsc: {int((tot <= 0).sum())} spots received no mass from the transport "
                                     f"plan (epsilon={epsilon}, rho={rho})")
        mass.append(float(gamma.sum()))
        return (gamma / tot).T @ expr[:, [col[g] for g in inp.predict]]

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate)
    if isinstance(getattr(task, "info", None), dict):
        task.info["spaotsc"] = {"transported_mass": mass}
    return out
