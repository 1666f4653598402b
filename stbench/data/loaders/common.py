"""Helpers shared by the loaders: table reading with clear errors, name cleaning, source records."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.data.contract import SOURCE_KEYS
from stbench.errors import DatasetError
# Imported inside functions on purpose: anndata (import cost).


def resolve(path, base) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else Path(base) / p


def require_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "file not found")
    if path.is_dir():
        raise DatasetError(path, "expected a file, found a directory")
    return path


def table_sep(path) -> str:
    name = Path(path).name.lower().removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def read_table(path, *, index_col=0, header=0, sep=None) -> pd.DataFrame:
    """Read a delimited text table (csv by extension, else tab), naming the file on failure."""
    path = require_file(path)
    try:
        df = pd.read_csv(path, sep=sep or table_sep(path), index_col=index_col, header=header)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(path, f"cannot be parsed as a {'CSV' if table_sep(path) == ',' else 'tab-separated'} table ({e})") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise DatasetError(path, "table is empty")
    return df


def header_names(path, sep=None) -> list[str]:
    """The raw column names of a delimited table's first line (pandas would rename duplicates)."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="") as fh:
            return next(csv.reader(fh, delimiter=sep or table_sep(path)), [])
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read the header line ({e})") from None


def clean_names(names) -> list[str]:
    """Strip whitespace and surrounding quotes (R's write.csv of quoted names gives "'Gene'")."""
    out = []
    for n in map(str, names):
        n = n.strip()
        while len(n) >= 2 and n[0] == n[-1] and n[0] in "'\"":
            n = n[1:-1].strip()
        out.append(n)
    return out


def numeric_frame(df: pd.DataFrame, path, what: str) -> np.ndarray:
    """Convert a table to float64, naming the first non-numeric cell."""
    try:
        return df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = df.apply(pd.to_numeric, errors="coerce").isna() & df.notna()
        r, c = np.argwhere(bad.to_numpy())[0]
        raise DatasetError(path, f"{what} has a non-numeric value {df.iat[r, c]!r} at row '{df.index[r]}', column '{df.columns[c]}'") from None


def read_counts_frame(path) -> pd.DataFrame:
    """A counts table keeping the file's own column names (pandas renames duplicates "G", "G.1";
    the contract check must see the duplicates)."""
    df = read_table(path)
    raw = clean_names(header_names(path))
    if len(raw) == df.shape[1] + 1:
        df.columns = raw[1:]
    return df


def require_keys(spec: dict, keys, fmt: str) -> None:
    """The config block of format ``fmt`` names every path in ``keys``."""
    missing = [k for k in keys if k not in spec]
    if missing:
        where = next((spec[k] for k in keys if k in spec), "<config>")
        raise DatasetError(where, f"format '{fmt}' needs {', '.join(repr(k) for k in missing)}")


def spatial_anndata(m, spots, genes, xy):
    """The contract AnnData from a dense spots x genes count matrix, names and coordinates."""
    import anndata as ad

    adata = ad.AnnData(X=sp.csr_matrix(np.asarray(m, dtype=np.float32)))
    adata.obs_names, adata.var_names = list(spots), list(genes)
    adata.layers["counts"] = adata.X.copy()
    adata.obsm["spatial"] = np.asarray(xy, dtype=np.float64)
    return adata


def source_record(spec: dict, **defaults) -> dict:
    """The uns['source'] record: the config's ``source`` block over loader defaults, all keys present."""
    rec = {k: "unknown" for k in SOURCE_KEYS}
    rec.update({k: v for k, v in defaults.items() if v is not None})
    rec.update({k: str(v) for k, v in (spec.get("source") or {}).items()})
    return rec
