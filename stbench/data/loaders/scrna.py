"""Loader for scRNA-seq reference matrices (cells x genes AnnData, raw counts in X and layers['counts']).

Accepted inputs (``spec['path']``): an ``.h5ad``; a 10x ``.h5``; a Matrix Market ``.mtx(.gz)`` with
``genes``/``features`` and ``barcodes`` files; a folder holding one or more mtx triplets (10x
``matrix.mtx.gz`` + ``features.tsv.gz`` + ``barcodes.tsv.gz``, GEO ``GSMxxx_matrix.mtx.gz`` sets,
Wu et al.'s ``count_matrix_sparse.mtx``) or 10x ``.h5`` files, all samples concatenated; or a dense csv/tsv table
(``orientation``: ``genes_x_cells``, the default, or ``cells_x_genes``), read in chunks into a
sparse matrix; or an R ``.rds(.gz)`` holding a Seurat v3/v4 object (raw counts of ``spec['assay']``,
default ``RNA``; meta.data as ``obs``) or a dgCMatrix, via rds2py (:mod:`stbench.data.loaders.seurat_rds`).
Gene identifiers are harmonised by :func:`harmonise_genes`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.errors import DatasetError
from stbench.data.loaders.common import (
    clean_names,
    header_names,
    numeric_frame,
    read_table,
    require_file,
    resolve,
    source_record,
    table_sep,
)
from stbench.data.loaders.h5ad import read_h5ad
from stbench.data.loaders.seurat_rds import read_seurat_rds
# Imported inside functions on purpose: anndata, scanpy, scipy.io (import cost; per format).

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")


def _stem(path) -> str:
    return Path(path).name.lower().removesuffix(".gz")


def harmonise_genes(adata, path=None):
    """Clean gene names (strip quotes/space, drop Ensembl version suffixes) and sum duplicated genes.

    Summing keeps every count (a gene symbol listed twice, e.g. two Ensembl ids with one symbol,
    is one gene for imputation); ``uns['duplicate_genes_summed']`` records how many were merged.
    """
    import anndata as ad

    names = pd.Index([_ENSEMBL_VERSION.sub(r"\1", n) for n in clean_names(adata.var_names)])
    if (names == "").any() or names.str.lower().isin(["nan", "none"]).any():
        raise DatasetError(path or "<matrix>", "empty or 'nan' gene name(s)")
    codes, uniq = pd.factorize(names)
    n_dup = len(names) - len(uniq)
    m = adata.layers["counts"] if "counts" in adata.layers else adata.X
    if n_dup:
        ind = sp.csr_matrix((np.ones(len(codes), np.float32), (np.arange(len(codes)), codes)),
                            shape=(len(codes), len(uniq)))
        m = (sp.csr_matrix(m) @ ind).astype(np.float32)
        obsm = {k: v for k, v in adata.obsm.items()}
        adata = ad.AnnData(X=m, obs=adata.obs.copy(), uns=dict(adata.uns), obsm=obsm)
    adata.var_names = [str(u) for u in uniq]
    adata.X = sp.csr_matrix(m, dtype=np.float32)
    adata.layers["counts"] = adata.X.copy()
    adata.uns["duplicate_genes_summed"] = int(n_dup)
    return adata


def read_names(path, *, prefer_column: int = 1) -> list[str]:
    """One name per line from a genes/features/barcodes file; 2+ columns -> ``prefer_column`` (symbols)."""
    path = require_file(path)
    try:
        df = pd.read_csv(path, sep="\t" if not _stem(path).endswith(".csv") else ",", header=None, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot be read as a list of names ({e})") from None
    col = prefer_column if df.shape[1] > prefer_column else 0
    names = df.iloc[:, col].fillna("").astype(str)
    if len(names) and names.iloc[0].strip().lower() in ("gene", "genes", "gene_ids", "gene_symbols", "barcode", "barcodes", "x"):
        names = names.iloc[1:]
    return clean_names(names)


def read_mtx(matrix, genes, barcodes):
    """A Matrix Market triplet as a cells x genes AnnData (orientation detected from the name counts)."""
    import anndata as ad
    import scipy.io

    matrix = require_file(matrix)
    g, b = read_names(genes), read_names(barcodes, prefer_column=0)
    try:
        m = scipy.io.mmread(str(matrix))
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(matrix, f"cannot be read as a Matrix Market file ({e})") from None
    m = sp.csr_matrix(m, dtype=np.float32)
    if m.shape == (len(g), len(b)):
        m = m.T.tocsr()
    elif m.shape != (len(b), len(g)):
        raise DatasetError(matrix, f"matrix is {m.shape[0]} x {m.shape[1]} but {Path(genes).name} lists "
                                   f"{len(g)} genes and {Path(barcodes).name} {len(b)} barcodes")
    adata = ad.AnnData(X=m)
    adata.obs_names, adata.var_names = b, g
    return adata


def find_mtx_triplets(folder, sample: str | None = None) -> list[tuple[Path, Path, Path]]:
    """Every (matrix, genes, barcodes) set below ``folder``; companions share the matrix's name prefix."""
    folder = Path(folder)
    out = []
    for mtx in sorted(p for p in folder.rglob("*") if _stem(p).endswith(".mtx")):
        if sample and sample not in str(mtx.relative_to(folder)):
            continue
        prefix = mtx.name.lower().split("matrix")[0]
        sib = [p for p in mtx.parent.iterdir() if p.is_file() and p.name.lower().startswith(prefix) and p != mtx]
        bar = [p for p in sib if "barcode" in p.name.lower()]
        gen = [p for p in sib if "feature" in p.name.lower()] or [p for p in sib if "gene" in p.name.lower()]
        if len(bar) != 1 or len(gen) != 1:
            raise DatasetError(mtx, f"cannot pair this matrix with exactly one barcodes and one genes/features file "
                                    f"(found {[p.name for p in bar]} and {[p.name for p in gen]})")
        out.append((mtx, gen[0], bar[0]))
    if not out:
        raise DatasetError(folder, "no Matrix Market (.mtx/.mtx.gz) file found" + (f" matching '{sample}'" if sample else ""))
    return out


def concat_samples(parts: list, labels: list[str]):
    """Stack cells of several samples over the union of their genes (cells prefixed by sample)."""
    import anndata as ad

    if len(parts) == 1:
        return parts[0]
    genes = pd.Index(pd.unique(np.concatenate([np.asarray(p.var_names) for p in parts])))
    mats, names = [], []
    for p, lab in zip(parts, labels):
        cols = genes.get_indexer(p.var_names)
        coo = sp.coo_matrix(p.X)
        mats.append(sp.csr_matrix((coo.data, (coo.row, cols[coo.col])), shape=(p.n_obs, len(genes))))
        names.append(np.char.add(f"{lab}:", np.asarray(p.obs_names, dtype=str)))
    out = ad.AnnData(X=sp.vstack(mats).tocsr())
    out.obs_names, out.var_names = np.concatenate(names), genes
    return out


def read_dense(path, orientation: str = "genes_x_cells", chunksize: int = 2000):
    """A dense counts table read in row chunks into a sparse cells x genes AnnData."""
    import anndata as ad

    path = require_file(path)
    if orientation not in ("genes_x_cells", "cells_x_genes"):
        raise DatasetError(path, f"orientation must be 'genes_x_cells' or 'cells_x_genes', got {orientation!r}")
    sep = table_sep(path)
    cols = clean_names(header_names(path, sep))
    rows, blocks = [], []
    try:
        for chunk in pd.read_csv(path, sep=sep, index_col=0, header=0, chunksize=chunksize):
            blocks.append(sp.csr_matrix(numeric_frame(chunk, path, "counts table").astype(np.float32)))
            rows.extend(clean_names(chunk.index))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot be parsed as a {'CSV' if sep == ',' else 'tab-separated'} table ({e})") from None
    if not blocks:
        raise DatasetError(path, "table is empty")
    m = sp.vstack(blocks).tocsr()
    cols = cols[1:] if len(cols) == m.shape[1] + 1 else cols[-m.shape[1]:]
    if orientation == "genes_x_cells":
        m, rows, cols = m.T.tocsr(), cols, rows
    adata = ad.AnnData(X=m)
    adata.obs_names, adata.var_names = rows, cols
    return adata


def read_folder(folder, sample: str | None = None):
    """Every 10x matrix below ``folder`` (mtx triplets, else Cell Ranger ``.h5`` files), samples
    concatenated: GEO's ``<GSE>_RAW.tar`` holds one matrix per sample in either form."""
    folder = Path(folder)
    h5s = sorted(p for p in folder.rglob("*") if _stem(p).endswith(".h5") and (not sample or sample in str(p)))
    has_mtx = any(_stem(p).endswith(".mtx") for p in folder.rglob("*"))
    if h5s and not has_mtx:
        parts = [read_10x_h5(p) for p in h5s]
        return concat_samples(parts, [p.name.split(".")[0] for p in h5s])
    triplets = find_mtx_triplets(folder, sample)
    parts = [read_mtx(*t) for t in triplets]
    labels = [t[0].name[: t[0].name.lower().find("matrix")].strip("_.-") or t[0].parent.name for t in triplets]
    return concat_samples(parts, labels)


def read_reference(path, spec: dict | None = None):
    """Read any supported reference input at ``path`` (file or folder); see the module docstring."""
    spec = spec or {}
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "file not found")
    name = _stem(path)
    if path.is_dir():
        return read_folder(path, spec.get("sample"))
    if name.endswith(".h5ad"):
        adata = read_h5ad(path)
        if "counts" in adata.layers:
            adata.X = adata.layers["counts"]
        return adata
    if name.endswith(".h5"):
        return read_10x_h5(path)
    if name.endswith(".mtx"):
        base = path.parent
        genes, barcodes = spec.get("genes") or spec.get("features"), spec.get("barcodes")
        if not genes or not barcodes:
            _, genes, barcodes = next(t for t in find_mtx_triplets(base) if t[0] == path)
        return read_mtx(path, resolve(genes, base), resolve(barcodes, base))
    if name.endswith(TABLE_SUFFIXES):
        return read_dense(path, spec.get("orientation", "genes_x_cells"))
    if name.endswith(".rds"):
        return read_seurat_rds(path, assay=spec.get("assay", "RNA"))
    if name.endswith((".rdata", ".rda")):
        raise DatasetError(path, "R workspaces (.RData/.rda) cannot be read; saveRDS() the Seurat object, "
                                 "or convert to .h5ad or 10x mtx first")
    raise DatasetError(path, "unsupported reference format (expected .h5ad, .h5, .mtx(.gz), .rds, a 10x folder "
                             "or a csv/tsv table)")


def read_10x_h5(path):
    """A Cell Ranger / Space Ranger HDF5 matrix (gene symbols as names)."""
    import scanpy as sc

    try:
        adata = sc.read_10x_h5(str(path))
    except Exception as e:  # h5py/scanpy raise many types for a malformed file
        raise DatasetError(path, f"cannot be read as a 10x HDF5 matrix ({type(e).__name__}: {e})") from None
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


LABEL_COLUMN = "cell_type"  # where a reference's cell-type labels land (Tangram's clusters mode reads it)


def attach_labels(adata, spec: dict, base=None, where=None):
    """Copy cell-type labels into ``obs['cell_type']``, from a table (``labels``: csv/tsv path,
    ``labels_cell_column``: cell ids, default its first column; ``labels_column``) or, without a
    table, from an ``obs`` column of the reference itself (``labels_column``, e.g. a Seurat cluster).

    Cells the label table does not list are dropped: the published label tables are the authors'
    quality-controlled cell lists (Tabula Muris). The number dropped is kept in ``uns``.
    """
    column = spec.get("labels_column")
    if not spec.get("labels") and not column:
        return adata
    if not column:
        raise DatasetError(where or "<reference>", "`labels` needs `labels_column`, the label column of the table")
    if spec.get("labels"):
        path = resolve(spec["labels"], base)
        table = read_table(path, index_col=None)
        cell_col = spec.get("labels_cell_column") or table.columns[0]
        for c in (cell_col, column):
            if c not in table.columns:
                raise DatasetError(path, f"has no column '{c}' (columns: {', '.join(map(str, table.columns[:20]))})")
        labels = pd.Series(table[column].astype(str).values, index=clean_names(table[cell_col]))
        labels = labels[~labels.index.duplicated()]
        found = pd.Index(adata.obs_names).isin(labels.index)
        if not found.any():
            raise DatasetError(path, f"none of the reference's {adata.n_obs} cells is listed in column '{cell_col}' "
                                     f"(first cells: {', '.join(map(str, adata.obs_names[:3]))})")
        if not found.all():
            adata = adata[found].copy()
        adata.obs[LABEL_COLUMN] = labels.reindex(adata.obs_names).values
        adata.uns["unlabelled_cells_dropped"] = int((~found).sum())
    else:
        if column not in adata.obs.columns:
            raise DatasetError(where or "<reference>", f"has no cell metadata column '{column}' "
                                                       f"(columns: {', '.join(map(str, adata.obs.columns[:20]))})")
        col = adata.obs[column]
        adata.obs[LABEL_COLUMN] = np.where(col.isna(), "unlabelled", col.astype(str))  # an NA cluster is not a type
    adata.obs[LABEL_COLUMN] = adata.obs[LABEL_COLUMN].astype("category")
    return adata


def load_scrna(spec: dict, base=None):
    """``spec``: ``path`` (file or folder), optional ``genes``, ``barcodes``, ``orientation``, ``sample``,
    and cell-type labels (``labels``, ``labels_cell_column``, ``labels_column``: :func:`attach_labels`)."""
    path = resolve(spec["path"], base)
    adata = read_reference(path, spec)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.layers["counts"] = adata.X.copy()
    adata = harmonise_genes(adata, path)
    if pd.Index(adata.obs_names).has_duplicates:
        raise DatasetError(path, "duplicate cell barcodes")
    adata = attach_labels(adata, spec, base, where=path)
    adata.uns["source"] = source_record(spec, url=str(path))
    return adata
