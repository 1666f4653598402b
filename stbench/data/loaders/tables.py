"""Loader for a counts table plus a locations table (csv/tsv, optionally gzipped).

counts: spots x genes with spot names in the first column (``transpose: true`` for genes x
spots); locations: spot names in the first column and coordinate columns ``x`` and ``y`` (any
further column such as ``z`` is ignored), or, with ``locations_index: false``, two unnamed
columns in the same order as the counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.errors import DatasetError
from stbench.data.loaders.common import (clean_names, numeric_frame, read_counts_frame, read_table, require_keys,
                                    resolve, source_record, spatial_anndata)


def read_counts_table(path, transpose: bool = False):
    """Return (matrix spots x genes, spot names, gene names) from a counts table."""
    df = read_counts_frame(path)
    if transpose:
        df = df.T
    m = numeric_frame(df, path, "counts table")
    return m, clean_names(df.index), clean_names(df.columns)


def read_locations_table(path, spots, *, has_index: bool = True, x: str = "x", y: str = "y") -> np.ndarray:
    """Coordinates (n x 2) of ``spots`` from a locations table, matched by name when it has an index."""
    df = read_table(path, index_col=0 if has_index else None)
    df.columns = [c.strip().lower() for c in map(str, df.columns)]
    cols = [x.lower(), y.lower()]
    if not all(c in df.columns for c in cols):
        if df.shape[1] < 2:
            raise DatasetError(path, f"locations table needs columns '{x}' and '{y}'; found {list(df.columns)}")
        cols = list(df.columns[:2])
    xy = numeric_frame(df[cols], path, "locations table")
    if has_index:
        idx = pd.Index(clean_names(df.index))
        if idx.has_duplicates:
            raise DatasetError(path, "duplicate spot names in the locations table")
        pos = idx.get_indexer(spots)
        missing = [s for s, p in zip(spots, pos) if p < 0]
        if missing:
            raise DatasetError(path, f"missing coordinates for {len(missing)} spot(s) of the counts table, e.g. {missing[:3]}")
        xy = xy[pos]
    elif xy.shape[0] != len(spots):
        raise DatasetError(path, f"{xy.shape[0]} location rows but {len(spots)} spots in the counts table")
    if not np.isfinite(xy).all():
        raise DatasetError(path, "missing spot coordinates (NaN) in the locations table")
    return xy


def load_tables(spec: dict, base=None):
    """``spec``: ``counts``, ``locations`` (paths), optional ``transpose``, ``locations_index``, ``source``."""
    require_keys(spec, ("counts", "locations"), "tables")
    cpath, lpath = resolve(spec["counts"], base), resolve(spec["locations"], base)
    m, spots, genes = read_counts_table(cpath, bool(spec.get("transpose", False)))
    xy = read_locations_table(lpath, spots, has_index=bool(spec.get("locations_index", True)))
    adata = spatial_anndata(m, spots, genes, xy)
    adata.uns["source"] = source_record(spec, url=str(cpath), accession="user")
    return adata
