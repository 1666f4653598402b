"""Loader for an AnnData .h5ad file (the harness's own prepared format, or a user's)."""

from __future__ import annotations

import numpy as np

from stbench.errors import DatasetError
from stbench.data.loaders.common import require_file, resolve, source_record
# Imported inside functions on purpose: anndata (import cost; most callers of the loaders' registry read one format).


def read_h5ad(path):
    import anndata as ad

    path = require_file(path)
    try:
        return ad.read_h5ad(path)
    except Exception as e:  # h5py/anndata raise many types for a corrupt file
        raise DatasetError(path, f"cannot be read as h5ad ({type(e).__name__}: {e})") from None


def load_h5ad(spec: dict, base=None):
    """``spec``: ``path`` (required), optional ``spatial_key`` (default 'spatial'), ``counts_layer``."""
    path = resolve(spec["path"], base)
    adata = read_h5ad(path)
    key = spec.get("spatial_key", "spatial")
    if key not in adata.obsm:
        raise DatasetError(path, f"missing spot coordinates: obsm['{key}'] is absent (set spatial_key)")
    xy = np.asarray(adata.obsm[key])
    if xy.ndim == 2 and xy.shape[1] > 2:
        xy = xy[:, :2]
    adata.obsm["spatial"] = xy
    layer = spec.get("counts_layer")
    if layer:
        if layer not in adata.layers:
            raise DatasetError(path, f"counts layer '{layer}' not found; layers: {list(adata.layers)}")
        adata.layers["counts"] = adata.layers[layer]
    src = adata.uns.get("source") if isinstance(adata.uns.get("source"), dict) else {}
    adata.uns["source"] = source_record(spec, **{"url": str(path), **src})
    return adata
