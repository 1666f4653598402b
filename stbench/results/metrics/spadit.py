"""SpaDiT's metric definitions (wenwenmin/SpaDiT, calculate_metrics/cal_baseline.py at commit e8e9f91), under
their own names beside SpatialBenchmarking's ``ssim_gene`` / ``js_gene``:

- ``ssim_spadit``: SSIM of a gene's held-out truth and prediction on the *raw* values (no per-gene max-scaling),
  dynamic range L = the larger of the two vectors' maxima, C1 = (0.01 L)^2, C2 = (0.03 L)^2, C3 = C2 / 2,
  population moments, luminance x contrast x structure. Both vectors all zero: 0/0, NaN (as upstream).
- ``js_spadit``: ``scipy.spatial.distance.jensenshannon`` (the distance, natural log) of the raw vectors, which
  scipy normalises to sum 1. Where scipy returns a non-finite value (a negative entry, or an all-zero vector)
  the gene is undefined (NaN) instead of the ``inf`` that would swamp an average.
- the per-dataset aggregates are *means* over genes (upstream averages the per-gene values; NaN genes skipped,
  as pandas does): ``pcc_spadit``, ``ssim_spadit``, ``rmse_spadit``, ``js_spadit``.
- ``accuracy_score_spadit``: the Accuracy Score as SpaDiT's supplement defines it (Eq. 30), see its docstring.

Written by hand: no library computes this 1-D SSIM variant, and the masked vectorisation (one column per gene,
held-out entries only) has no library form; scipy supplies the JS distance itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
# Imported inside functions on purpose: scipy.spatial.distance (SpaDiT's metrics only).

SPADIT_K1, SPADIT_K2 = 0.01, 0.03
SPADIT_AS_METRICS = {"pcc_spadit": True, "ssim_spadit": True, "rmse_spadit": False, "js_spadit": False}
DEFINITIONS = ("spatialbenchmarking", "spadit")


def ssim_spadit(truth: np.ndarray, pred: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """Per gene (columns): SpaDiT's SSIM over the gene's held-out entries (NaN for a gene with none)."""
    m = np.asarray(held_out, dtype=bool)
    t = np.where(m, truth, 0.0).astype(np.float64)
    p = np.where(m, pred, 0.0).astype(np.float64)
    k = m.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        kk = np.where(k > 0, k, np.nan)
        big = np.where(m, np.maximum(t, p), -np.inf).max(0)      # max(truth.max(), pred.max())
        mu1, mu2 = t.sum(0) / kk, p.sum(0) / kk
        d1, d2 = (t - mu1) * m, (p - mu2) * m
        s1, s2 = np.sqrt((d1 * d1).sum(0) / kk), np.sqrt((d2 * d2).sum(0) / kk)
        s12 = (d1 * d2).sum(0) / kk
        c1, c2 = (SPADIT_K1 * big) ** 2, (SPADIT_K2 * big) ** 2
        c3 = c2 / 2
        lum = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1)
        con = (2 * s1 * s2 + c2) / (s1**2 + s2**2 + c2)
        st = (s12 + c3) / (s1 * s2 + c3)
        out = lum * con * st
    return np.where(k > 0, out, np.nan)


def js_spadit(truth: np.ndarray, pred: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """Per gene: scipy's Jensen-Shannon distance of the raw held-out vectors (entries outside the held-out set are
    zero in both and add nothing); non-finite (negative entries, an all-zero vector) -> NaN."""
    from scipy.spatial.distance import jensenshannon

    m = np.asarray(held_out, dtype=bool)
    t = np.where(m, truth, 0.0).astype(np.float64)
    p = np.where(m, pred, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        js = np.asarray(jensenshannon(t, p, axis=0), dtype=np.float64)
    return np.where(np.isfinite(js) & (m.sum(0) > 0), js, np.nan)


def spadit_summary(per_gene: dict) -> tuple[dict, dict, dict]:
    """Gene means of PCC, SSIM, RMSE and JS under SpaDiT's definitions, from ``per_gene_metrics``' arrays plus the
    two above. Returns (values, reasons for NaN, genes scored)."""
    src = {"pcc_spadit": per_gene["pcc_gene"], "ssim_spadit": per_gene["ssim_spadit"],
           "rmse_spadit": per_gene["rmse_gene"], "js_spadit": per_gene["js_spadit"]}
    values, why, n = {}, {}, {}
    for name, v in src.items():
        ok = np.isfinite(v)
        n[name] = int(ok.sum())
        values[name] = float(np.mean(v[ok])) if ok.any() else float("nan")
        if not ok.any():
            why[name] = "undefined for every gene (constant, all-zero, negative or empty held-out vectors)"
    return values, why, n


def accuracy_score_spadit(table: pd.DataFrame) -> pd.Series:
    """SpaDiT's Accuracy Score of each method (rows of ``table``; columns the four ``*_spadit`` gene means).

    Supplement Eq. 30: per metric the methods are ranked 1..N with N the best (highest PCC and SSIM, lowest RMSE
    and JS); AS is the mean of the four ranks, not normalised. Ties take the lowest rank of the tie (pandas
    ``method='min'``, the tie rule of cal_baseline.py). A method with a NaN among its four metrics (e.g. a constant
    prediction has no PCC) is left out of every ranking, so N is the same for the four, and its AS is NaN.
    (cal_baseline.py itself ranks the *genes* of one method, divides by n_genes - 1 and adds 0.21 to SpaDiT's
    own score; neither is reproduced: it is not the per-dataset ranking the paper describes.)
    """
    cols = list(SPADIT_AS_METRICS)
    ok = table[cols].notna().all(axis=1)
    ranks = [table.loc[ok, c].rank(ascending=hib, method="min") for c, hib in SPADIT_AS_METRICS.items()]
    return (sum(ranks) / 4.0).reindex(table.index).rename("accuracy_score_spadit")
