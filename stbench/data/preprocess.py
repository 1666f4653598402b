"""Preprocessing (paper App. E): size-factor normalisation to the median spot total, log1p,
then the gene selection (the paper's: top genes by coefficient of variation).

The evaluation scale (log, or log then per-gene z-score) and the library sizes are the task step's
(``stbench.data.task.TaskSpec``): preprocessing neither reads nor stores them.
Genes are chosen only among those detected in at least ``min_detection`` of spots (default 0.1;
0 with ``cv`` gives the paper's literal rule, which on sparse sequencing-based data picks genes
seen in a single spot). ``gene_selection``: ``cv`` (the paper), ``hvg`` (scanpy's
``highly_variable_genes``), ``mean`` (top mean expression), ``all`` (every eligible gene) or
``list`` (the genes named in ``gene_list``, one per line).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from stbench.data.contract import counts_matrix
from stbench.errors import DatasetError
from stbench.options import check, from_dict, option
# Imported inside functions on purpose: anndata, scanpy (import cost; scanpy only for hvg).

GENE_SELECTIONS = ("cv", "hvg", "mean", "all", "list")
HVG_FLAVORS = ("seurat", "cell_ranger", "seurat_v3")


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessing protocol; the defaults here are the only ones (the config schema is generated from them)."""
    gene_selection: str = option("hvg", enum=GENE_SELECTIONS,
                                 doc="hvg: scanpy highly_variable_genes (default for users' own data, see README); "
                                     "cv: top CV (paper App. E, pinned by the paper's recipes); mean: top mean; all; list")
    n_genes: int = option(1000, minimum=1, doc="how many genes cv, hvg and mean keep")
    min_detection: float = option(0.1, minimum=0, exclusive_maximum=1,
                                  doc="only genes detected in >= this fraction of spots are eligible; 0 = the paper's literal rule")
    hvg_flavor: str = option("seurat_v3", enum=HVG_FLAVORS,
                             doc="scanpy flavour for hvg (seurat_v3, the default, ranks raw counts; needs scikit-misc)")
    gene_list: str = option("", doc="for gene_selection: list, a text file with one gene name per line")

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
    eligible = eligible_genes(d, min_detection)
    return _top(coefficient_of_variation(d), eligible, n_genes)


def eligible_genes(d: np.ndarray, min_detection: float) -> np.ndarray:
    detection = (d > 0).mean(axis=0)
    return (detection >= min_detection) & (detection > 0)


def _top(score: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    idx = np.flatnonzero(eligible & np.isfinite(score))
    if idx.size > n:
        idx = np.sort(idx[np.argsort(-score[idx], kind="stable")[:n]])
    return idx


def choose_genes(d: np.ndarray, counts: np.ndarray, names, options: "PreprocessConfig", path) -> np.ndarray:
    """The indices (original order) of the genes ``options.gene_selection`` keeps."""
    eligible = eligible_genes(d, options.min_detection)
    how = options.gene_selection
    if how == "cv":
        return _top(coefficient_of_variation(d), eligible, options.n_genes)
    if how == "mean":
        return _top(d.mean(axis=0), eligible, options.n_genes)
    if how == "all":
        return np.flatnonzero(eligible)
    if how == "list":
        f = Path(options.gene_list)
        if not options.gene_list or not f.is_file():
            raise DatasetError(options.gene_list or "<config>", "gene_selection 'list' needs gene_list: a file of gene names")
        wanted = {line.strip() for line in f.read_text().splitlines() if line.strip() and not line.startswith("#")}
        return np.flatnonzero(np.isin(np.asarray(names, dtype=str), list(wanted)) & eligible)
    return _hvg(d, counts, eligible, options, path)


def _hvg(d, counts, eligible, options, path) -> np.ndarray:
    """scanpy's highly_variable_genes among the eligible genes (log data; raw counts for seurat_v3)."""
    import anndata as ad
    import scanpy as sc

    idx = np.flatnonzero(eligible)
    if idx.size <= options.n_genes:  # nothing to rank (and loess aborts the process on a handful of genes)
        return idx
    a = ad.AnnData(X=d[:, idx].astype(np.float32))
    a.layers["counts"] = counts[:, idx].astype(np.float32)
    n = options.n_genes
    try:
        if options.hvg_flavor == "seurat_v3":
            sc.pp.highly_variable_genes(a, n_top_genes=n, flavor="seurat_v3", layer="counts")
        else:
            sc.pp.highly_variable_genes(a, n_top_genes=n, flavor=options.hvg_flavor)
    except ImportError as e:
        raise DatasetError(path, f"gene_selection hvg with flavor {options.hvg_flavor}: {e}") from None
    return idx[np.asarray(a.var["highly_variable"], dtype=bool)]


def preprocess(adata, options: PreprocessConfig, path="<dataset>"):
    """Return (preprocessed AnnData, QC dict): the selected genes' raw counts and the spot totals.

    Gene selection (CV of the log-normalised matrix over all entries) happens here, before any mask,
    identically for all methods. Normalisation to the evaluation scale happens per task
    (``stbench.data.task``), so that library sizes and z-score statistics can come from observed entries.
    ``X`` holds the paper's log scale (spot totals over all counts) for reference.
    """
    import anndata as ad

    counts = counts_matrix(adata)
    d, n_median = log_normalise(counts)
    c = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    keep = choose_genes(d, c, adata.var_names, options, path)
    if keep.size < 2:
        raise DatasetError(path, f"only {keep.size} gene(s) kept by gene_selection '{options.gene_selection}' among genes "
                                 f"detected in >= {options.min_detection:.0%} of spots; lower preprocess.min_detection")
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
    out.uns["source"] = dict(adata.uns.get("source", {}))
    return out, qc
