"""PCC, cosine similarity, RMSE and MAE over all held-out entries flattened (stMCDI App. D),
their per-gene variants (median over genes), and SpaDiT's SSIM, JS and Accuracy Score.

An undefined value (a constant vector, an empty set, negative values for JS) is NaN and its
reason is reported, never an exception.
"""

from __future__ import annotations

import numpy as np

from stbench.results.metrics.spadit import js_spadit, spadit_summary, ssim_spadit

FLAT = ("pcc", "cosine", "rmse", "mae")
PER_GENE = ("pcc_gene", "cosine_gene", "rmse_gene", "mae_gene", "ssim_gene", "js_gene")
METRICS = FLAT + PER_GENE
SPADIT = ("pcc_spadit", "ssim_spadit", "rmse_spadit", "js_spadit")  # SpaDiT's definitions (stbench/results/metrics/spadit.py)
HIGHER_IS_BETTER = {"pcc": True, "cosine": True, "rmse": False, "mae": False, "pcc_gene": True,
                    "cosine_gene": True, "rmse_gene": False, "mae_gene": False, "ssim_gene": True,
                    "js_gene": False, "pcc_spadit": True, "ssim_spadit": True, "rmse_spadit": False,
                    "js_spadit": False}
SSIM_C1, SSIM_C2 = 0.01, 0.03


def flat_metrics(truth: np.ndarray, pred: np.ndarray) -> tuple[dict, dict]:
    """Metrics over two 1-D vectors of held-out entries. Returns (values, reasons for NaN)."""
    t = np.asarray(truth, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    out, why = {}, {}
    if t.size == 0:
        return {k: float("nan") for k in FLAT}, {k: "no held-out entries" for k in FLAT}
    d = p - t
    out["rmse"] = float(np.sqrt(np.mean(d * d)))
    out["mae"] = float(np.mean(np.abs(d)))
    tc, pc = t - t.mean(), p - p.mean()
    den = np.sqrt((tc * tc).sum() * (pc * pc).sum())
    if den > 0:
        out["pcc"] = float((tc * pc).sum() / den)
    else:
        out["pcc"] = float("nan")
        why["pcc"] = "constant prediction" if (pc * pc).sum() == 0 else "constant truth"
    den = np.sqrt((t * t).sum() * (p * p).sum())
    if den > 0:
        out["cosine"] = float((t * p).sum() / den)
    else:
        out["cosine"] = float("nan")
        why["cosine"] = "all-zero prediction" if (p * p).sum() == 0 else "all-zero truth"
    return out, why


def per_gene_metrics(truth: np.ndarray, pred: np.ndarray, held_out: np.ndarray) -> dict[str, np.ndarray]:
    """Per-gene metrics over each gene's held-out entries (vectorised; NaN where undefined).

    SSIM follows SpatialBenchmarking: each gene's vectors scaled by their maximum, C1=0.01,
    C2=0.03. JS uses each vector normalised to a distribution; negative predictions are clipped
    to 0 and genes with negative truth (z-scored data) are NaN.
    """
    m = np.asarray(held_out, dtype=np.float64)
    t = np.where(held_out, truth, 0.0).astype(np.float64)
    p = np.where(held_out, pred, 0.0).astype(np.float64)
    k = m.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        kk = np.where(k > 0, k, np.nan)
        mt, mp = t.sum(0) / kk, p.sum(0) / kk
        tc, pc = (t - mt) * m, (p - mp) * m
        vt, vp, cov = (tc * tc).sum(0), (pc * pc).sum(0), (tc * pc).sum(0)
        pcc = np.where((k >= 2) & (vt > 0) & (vp > 0), cov / np.sqrt(vt * vp), np.nan)
        nt, np_ = np.sqrt((t * t).sum(0)), np.sqrt((p * p).sum(0))
        cosine = np.where((nt > 0) & (np_ > 0), (t * p).sum(0) / (nt * np_), np.nan)
        rmse = np.sqrt(((p - t) ** 2).sum(0) / kk)
        mae = np.abs(p - t).sum(0) / kk
        # SSIM on max-scaled vectors
        st = t / np.where(np.abs(t).max(0) > 0, np.abs(t).max(0), 1.0)
        sp_ = p / np.where(np.abs(p).max(0) > 0, np.abs(p).max(0), 1.0)
        mst, msp = st.sum(0) / kk, sp_.sum(0) / kk
        stc, spc = (st - mst) * m, (sp_ - msp) * m
        vst, vsp, csp = (stc**2).sum(0) / kk, (spc**2).sum(0) / kk, (stc * spc).sum(0) / kk
        ssim = ((2 * mst * msp + SSIM_C1**2) * (2 * csp + SSIM_C2**2)) / (
            (mst**2 + msp**2 + SSIM_C1**2) * (vst + vsp + SSIM_C2**2))
        ssim = np.where(k >= 2, ssim, np.nan)
        # JS divergence of the spatial distributions
        pp = np.clip(p, 0, None)
        neg_truth = ((t < 0) & held_out).any(0)
        Pt = t / np.where(t.sum(0) > 0, t.sum(0), np.nan)
        Pp = pp / np.where(pp.sum(0) > 0, pp.sum(0), np.nan)
        M = 0.5 * (Pt + Pp)
        kl = lambda a, b: np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / np.where(b > 0, b, 1)), 0.0).sum(0)
        js = 0.5 * kl(Pt, M) + 0.5 * kl(Pp, M)
        js = np.where(neg_truth | ~np.isfinite(Pt).all(0) | ~np.isfinite(Pp).all(0) | (k < 1), np.nan, js)
    return {"pcc_gene": pcc, "cosine_gene": cosine, "rmse_gene": rmse, "mae_gene": mae, "ssim_gene": ssim, "js_gene": js}


def evaluate_imputation(truth: np.ndarray, pred: np.ndarray, held_out: np.ndarray) -> dict:
    """All metrics for one imputation, both definition families (SpatialBenchmarking's ``*_gene`` medians and
    SpaDiT's ``*_spadit`` means; a run's ``metric_definitions`` picks which its tables show).
    Returns a JSON-ready dict: values, NaN reasons, counts."""
    truth, pred, held_out = np.asarray(truth), np.asarray(pred), np.asarray(held_out, dtype=bool)
    if truth.shape != pred.shape or truth.shape != held_out.shape:
        raise ValueError(f"shape mismatch: truth {truth.shape}, prediction {pred.shape}, mask {held_out.shape}")
    values, why = flat_metrics(truth[held_out], pred[held_out])
    per_gene = per_gene_metrics(truth, pred, held_out)
    n_genes_scored = {}
    for name, v in per_gene.items():
        ok = np.isfinite(v)
        n_genes_scored[name] = int(ok.sum())
        if ok.any():
            values[name] = float(np.median(v[ok]))
        else:
            values[name] = float("nan")
            why[name] = "undefined for every gene (constant or empty held-out vectors)"
    per_gene["ssim_spadit"] = ssim_spadit(truth, pred, held_out)
    per_gene["js_spadit"] = js_spadit(truth, pred, held_out)
    sv, sw, sn = spadit_summary(per_gene)
    values.update(sv)
    why.update(sw)
    n_genes_scored.update(sn)
    return {"metrics": values, "undefined": why, "n_held_out": int(held_out.sum()),
            "n_genes_scored": n_genes_scored, "per_gene": per_gene}


def accuracy_score(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """SpaDiT's Accuracy Score: mean over PCC, SSIM, RMSE, JS of each method's rank (N = best).

    ``table`` maps method -> {"pcc_gene", "ssim_gene", "rmse_gene", "js_gene"} (averages over genes).
    Ties share the average rank; a NaN metric ranks last.
    """
    methods = list(table)
    ranks = np.zeros(len(methods))
    for key in ("pcc_gene", "ssim_gene", "rmse_gene", "js_gene"):
        v = np.array([table[m].get(key, np.nan) for m in methods], dtype=float)
        score = v if HIGHER_IS_BETTER[key] else -v
        score = np.where(np.isfinite(score), score, -np.inf)
        order = score.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for s in np.unique(score):  # average ties
            r[score == s] = r[score == s].mean()
        ranks += r
    return {m: float(x / 4) for m, x in zip(methods, ranks)}
