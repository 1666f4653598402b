"""Preprocessing (paper App. E): size-factor normalisation to the median spot total, log1p,
then the top genes by coefficient of variation.

The evaluation scale (log, or log then per-gene z-score) is applied per task by
``stbench.task``, with statistics from the task's observed entries.
The CV rule is applied only among genes detected in at least ``min_detection`` of spots
(default 0.1; 0 gives the paper's literal rule, which on sparse sequencing-based data picks
genes seen in a single spot).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from stbench.contract import counts_matrix
from stbench.errors import DatasetError
from stbench.options import check, from_dict, option

SCALES = ("log", "zscore")
LIBRARY_SIZES = ("observed", "all")


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessing protocol; the defaults here are the only ones (the config schema is generated from them)."""
    n_genes: int = option(1000, minimum=1, doc="top genes by coefficient of variation (paper App. E)")
    min_detection: float = option(0.1, minimum=0, exclusive_maximum=1,
                                  doc="CV rule only among genes detected in >= this fraction of spots; 0 = the paper's literal rule")
    scale: str = option("log", enum=SCALES,
                        doc="log: paper Eq. 41; zscore: log, then per-gene z-score from observed entries (the released code)")
    library_size: str = option("observed", enum=LIBRARY_SIZES,
                               doc="observed: size factors from observed entries (leak-free); all: spot totals incl. held-out counts (the paper)")

    def __post_init__(self):
        check(self, "preprocess")

    @classmethod
    def from_dict(cls, d: dict | None) -> "PreprocessConfig":
        return from_dict(cls, d, "preprocess")


def log_normalise(counts) -> tuple[np.ndarray, float]:
    """D = log(N * C / rowsum(C) + 1) with N the median spot total (Eq. 41). Returns (D, N)."""
    c = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    c = c.astype(np.float64, copy=False)
    totals = c.sum(axis=1, keepdims=True)
    n = float(np.median(totals))
    return np.log1p(c / totals * n), n


def coefficient_of_variation(d: np.ndarray) -> np.ndarray:
    """Per-gene CV (sd / mean over spots, Eq. 42); NaN for genes never expressed."""
    mean = d.mean(axis=0)
    sd = d.std(axis=0, ddof=1) if d.shape[0] > 1 else np.zeros_like(mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, sd / mean, np.nan)


def select_genes(d: np.ndarray, n_genes: int, min_detection: float) -> np.ndarray:
    """Indices (in original order) of the top ``n_genes`` by CV among sufficiently detected genes."""
    detection = (d > 0).mean(axis=0)
    cv = coefficient_of_variation(d)
    eligible = np.isfinite(cv) & (detection >= min_detection) & (detection > 0)
    idx = np.flatnonzero(eligible)
    if idx.size > n_genes:
        order = np.argsort(-cv[idx], kind="stable")[:n_genes]
        idx = np.sort(idx[order])
    return idx


def preprocess(adata, options: PreprocessConfig, path="<dataset>"):
    """Return (preprocessed AnnData, QC dict): the selected genes' raw counts and the spot totals.

    Gene selection (CV of the log-normalised matrix over all entries) happens here, before any mask,
    identically for all methods. Normalisation to the evaluation scale happens per task
    (``stbench.task``), so that library sizes and z-score statistics can come from observed entries.
    ``X`` holds the paper's log scale (spot totals over all counts) for reference.
    """
    import anndata as ad

    counts = counts_matrix(adata)
    d, n_median = log_normalise(counts)
    keep = select_genes(d, options.n_genes, options.min_detection)
    if keep.size < 2:
        raise DatasetError(path, f"only {keep.size} gene(s) detected in >= {options.min_detection:.0%} of spots; "
                                 "lower preprocess.min_detection")
    c = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    kept = c[:, keep].astype(np.float32)
    totals = c.sum(axis=1, dtype=np.float64)
    out = ad.AnnData(X=d[:, keep].astype(np.float32))
    out.obs_names = adata.obs_names.copy()
    out.var_names = adata.var_names[keep].copy()
    out.layers["counts"] = kept
    out.obs["total_counts"] = totals
    out.obs["other_counts"] = totals - kept.sum(axis=1, dtype=np.float64)  # genes never held out
    out.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    qc = {
        "spots_in": int(adata.n_obs), "genes_in": int(adata.n_vars),
        "spots_kept": int(out.n_obs), "genes_kept": int(out.n_vars),
        "genes_eligible_min_detection": int(((d > 0).mean(axis=0) >= options.min_detection).sum()),
        "median_total_count": n_median,
        "library_size": {"min": float(totals.min()), "median": float(np.median(totals)), "max": float(totals.max())},
        "zero_fraction_raw": float((c == 0).mean()),
        "zero_fraction_selected": float((kept == 0).mean()),
        "config": asdict(options),
    }
    out.uns["protocol"] = {"preprocess": asdict(options), "median_total_count": n_median}
    out.uns["source"] = dict(adata.uns.get("source", {}))
    return out, qc
