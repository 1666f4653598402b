"""The dataset contract: what a prepared dataset (and its optional scRNA-seq reference) must be.

Every loader produces this, every later step relies on it, and `validate_dataset` checks it at
load time so that a bad file fails with a message naming the file and the problem.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from stbench.errors import DatasetError

SOURCE_KEYS = ("accession", "url", "checksum", "platform", "species", "tissue", "citation")
MIN_SPOTS = 20
MIN_GENES = 10
# The largest plausible count of one gene in one spot. UMI counts per spot are 1e3-1e5 in total on every
# platform of the paper; read counts of one gene in a deep non-UMI library stay below 1e6. Above 2**24
# (1.7e7) float32, in which the harness stores counts, no longer holds every integer. 1e7 is above anything
# measured and below that limit: a larger value is a unit or file error (normalised or summed data).
MAX_COUNT = 1e7
# The largest plausible coordinate (absolute value): pixels of a full-resolution image (~3e4), micrometres
# of a whole slide (~1e5) and array indices all lie far below; 1e300 or 1e12 is a file error.
MAX_COORD = 1e8


class CoordinateWarning(UserWarning):
    """Spot coordinates that are valid but degenerate (all on one line): spatial methods lose their signal."""


def counts_matrix(adata):
    """The raw-count matrix of a contract AnnData: ``layers['counts']`` if present, else ``X``."""
    return adata.layers["counts"] if "counts" in adata.layers else adata.X


def _values(m) -> np.ndarray:
    return m.data if sp.issparse(m) else np.asarray(m).ravel()


def _row_sums(m) -> np.ndarray:
    return np.asarray(m.sum(axis=1)).ravel()


def check_counts(m, path, what: str = "counts") -> None:
    """Counts must be finite, non-negative integers."""
    v = _values(m)
    if v.size and not np.issubdtype(v.dtype, np.number):
        raise DatasetError(path, f"{what} are not numeric (dtype {v.dtype})")
    if v.size == 0:
        return
    v = v.astype(np.float64, copy=False)
    n_nan = int(np.isnan(v).sum())
    if n_nan:
        raise DatasetError(path, f"{what} contain {n_nan} NaN value(s); raw counts must be complete")
    n_inf = int(np.isinf(v).sum())
    if n_inf:
        raise DatasetError(path, f"{what} contain {n_inf} infinite value(s)")
    n_neg = int((v < 0).sum())
    if n_neg:
        raise DatasetError(path, f"{what} contain {n_neg} negative value(s) (min {v.min():g}); raw counts must be >= 0")
    big = v > MAX_COUNT
    if big.any():
        raise DatasetError(path, f"{what} contain {int(big.sum())} value(s) above {MAX_COUNT:.0e} (max {v.max():.3g}); "
                                 "no single gene in one spot is counted that often: normalised or summed data?")
    frac = v != np.round(v)
    if frac.any():
        raise DatasetError(
            path,
            f"{what} contain {int(frac.sum())} non-integer value(s) (e.g. {v[frac][0]:g}); "
            "the harness expects raw counts, not normalised data",
        )


def check_coordinates(xy: np.ndarray, path) -> None:
    """Coordinates must be within MAX_COORD and not all at one point; all on one line is a CoordinateWarning."""
    far = np.abs(xy).max()
    if far > MAX_COORD:
        raise DatasetError(path, f"obsm['spatial'] has a coordinate of {far:.3g}, beyond {MAX_COORD:.0e}: "
                                 "not pixels, micrometres or array indices")
    extent = xy.max(0) - xy.min(0)
    if (extent == 0).all():
        raise DatasetError(path, f"obsm['spatial']: every spot has the same coordinate {tuple(xy[0])}")
    if (extent == 0).any() or len(np.unique(xy, axis=0)) < 0.5 * len(xy):
        warnings.warn(f"{path}: obsm['spatial'] is degenerate (spots on one line, or most of them sharing a "
                      "coordinate); spatial methods will see little structure", CoordinateWarning, stacklevel=3)


def check_names(names, path, what: str) -> None:
    names = list(map(str, names))
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        shown = ", ".join(sorted(set(dups))[:5])
        raise DatasetError(path, f"{len(dups)} duplicate {what} name(s): {shown}")
    if any(n == "" or n.lower() == "nan" for n in names):
        raise DatasetError(path, f"empty or 'nan' {what} name(s)")


def validate_dataset(adata, path, *, min_spots: int = MIN_SPOTS, min_genes: int = MIN_GENES,
                     require_source: bool = True) -> None:
    """Check a prepared spatial dataset against the contract; raise DatasetError naming ``path``."""
    if adata.n_obs < min_spots:
        raise DatasetError(path, f"too few spots: {adata.n_obs} (need at least {min_spots})")
    if adata.n_vars < min_genes:
        raise DatasetError(path, f"too few genes: {adata.n_vars} (need at least {min_genes})")
    if "spatial" not in adata.obsm:
        raise DatasetError(path, "missing spot coordinates: obsm['spatial'] is absent")
    xy = np.asarray(adata.obsm["spatial"])
    if xy.ndim != 2 or xy.shape[0] != adata.n_obs or xy.shape[1] != 2:
        raise DatasetError(path, f"obsm['spatial'] must be n_spots x 2, got shape {xy.shape}")
    if not np.issubdtype(xy.dtype, np.number) or not np.isfinite(xy.astype(float)).all():
        raise DatasetError(path, "obsm['spatial'] has missing or non-numeric coordinates")
    check_coordinates(xy.astype(np.float64), path)
    check_names(adata.obs_names, path, "spot")
    check_names(adata.var_names, path, "gene")
    m = counts_matrix(adata)
    check_counts(m, path)
    totals = _row_sums(m)
    empty = np.flatnonzero(totals <= 0)
    if empty.size:
        shown = ", ".join(map(str, adata.obs_names[empty[:5]]))
        raise DatasetError(path, f"{empty.size} empty spot(s) with zero total count: {shown}")
    if require_source:
        src = adata.uns.get("source")
        if not isinstance(src, dict):
            raise DatasetError(path, "uns['source'] is missing (accession, url, checksum, platform, species, tissue, citation)")
        missing = [k for k in SOURCE_KEYS if k not in src]
        if missing:
            raise DatasetError(path, f"uns['source'] lacks key(s): {', '.join(missing)}")


def validate_reference(ref, path, spatial_genes, *, min_cells: int = MIN_SPOTS) -> None:
    """Check a paired scRNA-seq reference: valid counts, unique names, overlap with the spatial genes."""
    if ref.n_obs < min_cells:
        raise DatasetError(path, f"too few cells in the reference: {ref.n_obs} (need at least {min_cells})")
    check_names(ref.obs_names, path, "cell")
    check_names(ref.var_names, path, "gene")
    check_counts(counts_matrix(ref), path, "reference counts")
    overlap = len(set(map(str, ref.var_names)) & set(map(str, spatial_genes)))
    if overlap == 0:
        raise DatasetError(path, "no gene overlap with the spatial data (compare gene identifiers: symbols vs Ensembl ids?)")
