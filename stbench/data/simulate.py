"""A deterministic demo dataset: a Visium-like hexagonal grid with spatial domains, smooth
expression programs and negative-binomial counts, plus a matched single-cell reference.

No network is needed; the same seed gives bit-identical data. It is built so that spatial
structure carries real signal (neighbouring spots share programs), as in tissue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
# Imported inside functions on purpose: anndata (import cost).


def hex_grid(n_rows: int, n_cols: int, spacing: float = 100.0) -> np.ndarray:
    """Spot centres of a Visium-like hexagonal lattice (odd rows shifted by half a spot)."""
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    x = (c + 0.5 * (r % 2)) * spacing
    y = r * spacing * np.sqrt(3) / 2
    return np.column_stack([x.ravel(), y.ravel()]).astype(np.float64)


def _nb(rng, mu: np.ndarray, theta: float) -> np.ndarray:
    """Negative-binomial counts with mean ``mu`` and inverse dispersion ``theta`` (gamma-Poisson)."""
    lam = rng.gamma(shape=theta, scale=mu / theta)
    return rng.poisson(lam)


def _smooth_fields(rng, xy: np.ndarray, n_fields: int, length_scale: float) -> np.ndarray:
    """``n_fields`` spatially smooth random fields (sums of Gaussian bumps), standardised."""
    span = xy.max(axis=0) - xy.min(axis=0)
    centres = xy.min(axis=0) + rng.random((n_fields, 6, 2)) * span
    weights = rng.normal(size=(n_fields, 6))
    d2 = ((xy[None, None, :, :] - centres[:, :, None, :]) ** 2).sum(-1)  # fields x bumps x spots
    f = (weights[:, :, None] * np.exp(-d2 / (2 * length_scale**2))).sum(1).T  # spots x fields
    return (f - f.mean(0)) / (f.std(0) + 1e-9)


def simulate_demo(seed: int = 0, n_rows: int = 24, n_cols: int = 25, n_genes: int = 400,
                  n_domains: int = 4, n_cells: int = 1200, median_umi: float = 1200.0):
    """Return (spatial AnnData, reference AnnData) following the dataset contract."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    xy = hex_grid(n_rows, n_cols)
    n = xy.shape[0]
    # domains: Voronoi cells of random centres, boundaries made wavy by a smooth field
    centres = xy[rng.choice(n, n_domains, replace=False)]
    wobble = _smooth_fields(rng, xy, n_domains, length_scale=300.0) * 150.0
    dist = np.sqrt(((xy[:, None, :] - centres[None]) ** 2).sum(-1)) + wobble
    domain = dist.argmin(1)

    base = rng.normal(-6.0, 1.6, size=n_genes)                          # log proportion per gene
    marker_of = rng.integers(-1, n_domains, size=n_genes)                # -1: no domain marker
    domain_effect = np.zeros((n_domains, n_genes))
    is_marker = marker_of >= 0
    domain_effect[marker_of[is_marker], np.flatnonzero(is_marker)] = rng.uniform(0.8, 2.5, is_marker.sum())
    domain_effect += rng.normal(0, 0.15, size=domain_effect.shape)
    n_fields = 6
    fields = _smooth_fields(rng, xy, n_fields, length_scale=250.0)
    loadings = rng.normal(0, 0.45, size=(n_fields, n_genes)) * (rng.random((n_fields, n_genes)) < 0.5)

    log_rate = base[None] + domain_effect[domain] + fields @ loadings
    prop = np.exp(log_rate)
    prop /= prop.sum(1, keepdims=True)
    umi = median_umi * np.exp(rng.normal(0, 0.35, size=n))
    counts = _nb(rng, prop * umi[:, None], theta=8.0)
    empty = counts.sum(1) == 0
    counts[empty, np.argmax(base)] = 1  # keep every spot non-empty

    genes = [f"Gene{i:04d}" for i in range(n_genes)]
    spots = [f"spot{i:04d}" for i in range(n)]
    source = {"accession": f"simulated(seed={seed})", "url": "stbench.data.simulate.simulate_demo", "checksum": "n/a",
              "platform": "simulated Visium-like hexagonal grid", "species": "none", "tissue": "simulated",
              "citation": "stbench demo simulator"}
    sp_ad = ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)))
    sp_ad.obs_names, sp_ad.var_names = spots, genes
    sp_ad.layers["counts"] = sp_ad.X.copy()
    sp_ad.obsm["spatial"] = xy
    sp_ad.obs["domain"] = domain.astype(str)
    sp_ad.uns["source"] = source

    # reference: one cell type per domain plus one extra type, no spatial field, deeper sequencing,
    # and 40 genes the spatial panel does not have
    n_types = n_domains + 1
    ctype = rng.integers(0, n_types, size=n_cells)
    type_effect = np.vstack([domain_effect, rng.normal(0, 0.6, size=(1, n_genes))])
    extra = 40
    ref_base = np.concatenate([base, rng.normal(-6.0, 1.6, size=extra)])
    ref_effect = np.hstack([type_effect, rng.normal(0, 0.8, size=(n_types, extra))])
    cell_field = rng.normal(0, 1, size=(n_cells, n_fields)) @ np.hstack([loadings, np.zeros((n_fields, extra))])
    rprop = np.exp(ref_base[None] + ref_effect[ctype] + 0.5 * cell_field)
    rprop /= rprop.sum(1, keepdims=True)
    rumi = 2.0 * median_umi * np.exp(rng.normal(0, 0.5, size=n_cells))
    rcounts = _nb(rng, rprop * rumi[:, None], theta=4.0)
    rcounts[rcounts.sum(1) == 0, np.argmax(base)] = 1
    ref = ad.AnnData(X=sp.csr_matrix(rcounts.astype(np.float32)))
    ref.obs_names = [f"cell{i:05d}" for i in range(n_cells)]
    ref.var_names = genes + [f"RefOnly{i:03d}" for i in range(extra)]
    ref.layers["counts"] = ref.X.copy()
    ref.obs["cell_type"] = [f"type{t}" for t in ctype]
    ref.uns["source"] = dict(source, platform="simulated scRNA-seq")
    return sp_ad, ref
