"""Loader for Spatial Transcriptomics (Ståhl et al. 2016) count tables with "XxY" spot names.

``spec``: ``counts`` (csv/tsv, optionally gzipped) with spot names such as ``16x12`` or
``16.92x12.04`` (an optional letter prefix like ``X16x12`` is allowed); ``orientation``
``auto`` (default: spots are whichever axis carries the XxY names), ``spots_x_genes`` or
``genes_x_spots``. Coordinates are parsed from the names (array units).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.errors import DatasetError
from stbench.data.loaders.common import clean_names, numeric_frame, read_counts_frame, require_keys, resolve, source_record, spatial_anndata
from stbench.data.loaders.scrna import harmonise_genes

SPOT_NAME = r"^[A-Za-z_]*?(-?\d+(?:\.\d+)?)x(-?\d+(?:\.\d+)?)$"


def parse_spot_names(names) -> np.ndarray:
    """(n, 2) float coordinates from "XxY" names; NaN rows where a name does not match."""
    parts = pd.Series(list(names), dtype=str).str.strip().str.extract(SPOT_NAME)
    return parts.astype(float).to_numpy()


def load_st(spec: dict, base=None):
    """Spots x genes counts with coordinates parsed from the spot names (see the module docstring)."""
    require_keys(spec, ("counts",), "st")
    path = resolve(spec["counts"], base)
    df = read_counts_frame(path)
    orient = spec.get("orientation", "auto")
    if orient == "auto":
        rows_ok = np.isfinite(parse_spot_names(clean_names(df.index))).all(axis=1).mean()
        cols_ok = np.isfinite(parse_spot_names(clean_names(df.columns))).all(axis=1).mean()
        if max(rows_ok, cols_ok) < 0.9:
            raise DatasetError(path, "no 'XxY' spot names (e.g. 16x12) on either axis; is this an ST count table?")
        orient = "spots_x_genes" if rows_ok >= cols_ok else "genes_x_spots"
    if orient == "genes_x_spots":
        df = df.T
    elif orient != "spots_x_genes":
        raise DatasetError(path, f"orientation must be auto, spots_x_genes or genes_x_spots, got {orient!r}")
    spots = clean_names(df.index)
    xy = parse_spot_names(spots)
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        first = spots[int(np.flatnonzero(bad)[0])]
        raise DatasetError(path, f"{int(bad.sum())} spot name(s) are not 'XxY' coordinates, e.g. {first!r}")
    m = numeric_frame(df, path, "counts table")
    adata = spatial_anndata(m, spots, clean_names(df.columns), xy)
    adata = harmonise_genes(adata, path)
    adata.uns["source"] = source_record(spec, url=str(path), platform="Spatial Transcriptomics (ST)")
    return adata
