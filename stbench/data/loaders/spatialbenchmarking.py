"""Loader for the SpatialBenchmarking layout (Li et al. 2022), which the stMCDI authors released.

``Insitu_count.txt``: spots x genes, tab-separated, a header row of gene names and (usually) no
index column, so spots are named ``spot0..spotN-1`` in file order (an index column, if present,
is used instead). ``Locations.txt``: one row per spot in the same order, tab- or space-separated,
with a header line such as ``x y`` (a header-less file and an extra leading index column are also
accepted). ``scRNA_count.txt`` (the paired reference, genes x cells) is read with the ``scrna``
loader, ``orientation: genes_x_cells``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.errors import DatasetError
from stbench.data.loaders.common import (clean_names, header_names, numeric_frame, require_file, require_keys, resolve,
                                    source_record, spatial_anndata)
from stbench.data.loaders.scrna import harmonise_genes


def read_insitu(path):
    """(matrix spots x genes, spot names, gene names) from an Insitu_count.txt."""
    path = require_file(path)
    try:
        df = pd.read_csv(path, sep="\t", header=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot be parsed as a tab-separated counts table ({e})") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise DatasetError(path, "table is empty")
    raw = clean_names(header_names(path, "\t"))
    first = df.iloc[:, 0]
    if len(raw) == df.shape[1] and raw[0] in ("", "Unnamed: 0") and first.dtype == object:
        df = df.set_index(df.columns[0])  # an explicit index column with an empty header cell
        raw = raw[1:]
    if isinstance(df.index, pd.RangeIndex):
        spots = [f"spot{i}" for i in range(df.shape[0])]
    else:
        spots = clean_names(df.index)
        raw = raw[-df.shape[1]:]
    df.columns = raw if len(raw) == df.shape[1] else clean_names(df.columns)
    return numeric_frame(df, path, "Insitu_count table"), spots, list(df.columns)


def read_locations(path, n_spots: int) -> np.ndarray:
    """(n, 2) coordinates from a Locations.txt, in the order of the counts table."""
    path = require_file(path)
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot be parsed as a whitespace-separated locations table ({e})") from None
    if df.shape[0] and pd.to_numeric(df.iloc[0], errors="coerce").isna().any():
        df = df.iloc[1:]  # the header line (x y)
    if df.shape[1] < 2:
        raise DatasetError(path, f"locations need two coordinate columns (x y); found {df.shape[1]}")
    xy = numeric_frame(df.iloc[:, -2:].reset_index(drop=True), path, "locations table")
    if xy.shape[0] != n_spots:
        raise DatasetError(path, f"{xy.shape[0]} location rows but {n_spots} spots in the counts table")
    if not np.isfinite(xy).all():
        raise DatasetError(path, "missing spot coordinates (NaN) in the locations table")
    return xy


def load_spatialbenchmarking(spec: dict, base=None):
    """``spec``: ``counts`` (Insitu_count.txt) and ``locations`` (Locations.txt) paths, optional ``source``."""
    require_keys(spec, ("counts", "locations"), "spatialbenchmarking")
    cpath, lpath = resolve(spec["counts"], base), resolve(spec["locations"], base)
    m, spots, genes = read_insitu(cpath)
    xy = read_locations(lpath, len(spots))
    adata = spatial_anndata(m, spots, genes, xy)
    adata = harmonise_genes(adata, cpath)
    adata.uns["source"] = source_record(spec, url=str(cpath))
    return adata
