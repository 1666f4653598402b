"""Loader for 10x Visium output: a filtered matrix (.h5 or mtx folder) plus tissue positions.

``spec``: ``matrix`` (``filtered_feature_bc_matrix.h5``, or a folder / ``.mtx(.gz)`` with its
features and barcodes) and ``positions`` (``tissue_positions_list.csv`` without header, Space
Ranger < 2.0, or ``tissue_positions.csv`` with header). Only in-tissue spots are kept;
coordinates are the full-resolution pixel positions as (x, y) = (pxl_col, pxl_row), the
convention scanpy and squidpy use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stbench.errors import DatasetError
from stbench.data.loaders.common import require_file, require_keys, resolve, source_record
from stbench.data.loaders.scrna import harmonise_genes, read_reference

POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def read_positions(path) -> pd.DataFrame:
    """The tissue positions table indexed by barcode (with or without its header line)."""
    path = require_file(path)
    try:
        df = pd.read_csv(path, header=None, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot be parsed as a tissue positions CSV ({e})") from None
    if df.shape[1] != 6:
        raise DatasetError(path, f"tissue positions need 6 columns ({', '.join(POSITION_COLUMNS)}); found {df.shape[1]}")
    if not str(df.iat[0, 1]).strip().lstrip("-").isdigit():
        df = df.iloc[1:]
    df.columns = POSITION_COLUMNS
    num = df[POSITION_COLUMNS[1:]].apply(pd.to_numeric, errors="coerce")
    if num.isna().any().any():
        r = int(np.flatnonzero(num.isna().any(axis=1).to_numpy())[0])
        raise DatasetError(path, f"non-numeric position value in row for barcode '{df.iat[r, 0]}'")
    num.index = df["barcode"].str.strip()
    if num.index.has_duplicates:
        raise DatasetError(path, "duplicate barcodes in the tissue positions")
    return num


def load_visium(spec: dict, base=None):
    """Counts of the in-tissue spots with their pixel coordinates (see the module docstring)."""
    require_keys(spec, ("matrix", "positions"), "visium")
    mpath, ppath = resolve(spec["matrix"], base), resolve(spec["positions"], base)
    adata = read_reference(mpath, spec)
    pos = read_positions(ppath)
    bars = pd.Index(adata.obs_names)
    idx = pos.index.get_indexer(bars)
    if (idx < 0).any():
        missing = bars[idx < 0]
        raise DatasetError(ppath, f"{len(missing)} barcode(s) of {mpath.name} have no position, e.g. {list(missing[:3])}"
                                  " (matrix and positions from different sections?)")
    keep = pos["in_tissue"].to_numpy()[idx] == 1
    adata = adata[keep].copy()
    sel = pos.iloc[idx[keep]]
    adata.obsm["spatial"] = sel[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    adata.layers["counts"] = adata.X.copy()
    adata = harmonise_genes(adata, mpath)
    adata.uns["source"] = source_record(spec, url=str(mpath), platform="10x Visium")
    return adata
