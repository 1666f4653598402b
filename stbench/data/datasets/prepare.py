"""Read a downloaded recipe source (never downloads) into contract AnnData plus prepare-time checks.

The checks compare spots and genes with the range the recipe expects (the paper's Table 4 and the
SpatialBenchmarking folder; a warning names both numbers), require coordinates and integer counts
(stbench.data.contract) and harmonise the reference's gene names with the spatial ones; the outcome is
stored in ``adata.uns['prepare_report']``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.data.contract import check_counts, validate_dataset
from stbench.data.datasets.download import manifest_path
from stbench.data.datasets.recipes import get_recipe, get_source, size_range
from stbench.errors import ConfigError, DatasetError
from stbench.data.loaders import get_loader


def read_manifest(cache_dir, recipe_id: str, source: str, *, reference_only: bool = False) -> tuple[dict, Path]:
    path = manifest_path(cache_dir, recipe_id, source, reference_only=reference_only)
    if not path.exists():
        flag = " --reference-only" if reference_only else ""
        raise DatasetError(path, f"no download manifest; run the download step first: "
                                 f"`snakemake {path}` or `python -m stbench.data.datasets.download {recipe_id} {source} "
                                 f"--cache-dir {cache_dir}{flag}`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"manifest is not valid JSON ({e}); run the download step again") from None
    for f in manifest.get("files", []):
        for key in ("path", "unpacked"):
            if f.get(key) and not (path.parent / f[key]).exists():
                raise DatasetError(path.parent / f[key], "listed in the manifest but missing; run the download step again")
    return manifest, path


def resolve_pattern(base: Path, pattern: str, *, optional: bool = False):
    """The one path under ``base`` matching ``pattern`` (``*``/``**`` allowed); None if optional and absent."""
    if not any(c in pattern for c in "*?["):
        p = base / pattern
        return p if p.exists() or not optional else None
    hits = sorted(p for p in base.glob(pattern) if not p.name.startswith("."))
    if len(hits) == 1:
        return hits[0]
    if not hits and optional:
        return None
    found = ", ".join(str(h.relative_to(base)) for h in hits[:5]) or "nothing"
    raise DatasetError(base / pattern, f"expected exactly one match in the download, found {found}; fix the recipe's path")


def _resolved_spec(spec: dict, base: Path) -> dict | None:
    out = dict(spec)
    optional = bool(out.pop("optional", False))
    for key in ("path", "counts", "locations", "matrix", "positions"):
        if key in out:
            hit = resolve_pattern(base, str(out[key]), optional=optional)
            if hit is None:
                return None
            out[key] = str(hit)
    if out.get("labels"):  # a cell-type label table: required once its matrix is there
        out["labels"] = str(resolve_pattern(base, str(out["labels"])))
    for key in ("genes", "barcodes", "features"):  # relative to the matrix's folder when not found from base
        if key in out and "path" in out and not (base / out[key]).exists():
            out[key] = str(Path(out["path"]).parent / out[key])
    return out


def harmonise_reference(ref, spatial_genes) -> dict:
    """Rename reference genes that differ from a spatial gene only by case; return overlap figures."""
    sp_names = pd.Index(map(str, spatial_genes))
    exact = int(pd.Index(ref.var_names).isin(sp_names).sum())
    upper = pd.Series(sp_names, index=sp_names.str.upper())
    upper = upper[~upper.index.duplicated()]
    ref_names = pd.Index(ref.var_names)
    mapped = ref_names.str.upper().map(upper)
    new = np.where(mapped.isna() | ref_names.isin(sp_names), ref_names, mapped)
    if not pd.Index(new).has_duplicates:
        ref.var_names = [str(n) for n in new]
    overlap = int(pd.Index(ref.var_names).isin(sp_names).sum())
    return {"reference_gene_overlap": overlap, "reference_gene_overlap_exact_case": exact,
            "spatial_genes_in_reference": round(overlap / max(len(sp_names), 1), 4)}


def _check_range(report: dict, what: str, n: int, rng, recipe_id: str, source: str) -> None:
    if not rng:
        return
    lo, hi = int(rng[0]), int(rng[1])
    report[f"expected_{what}"] = [lo, hi]
    if not lo <= n <= hi:
        msg = f"{recipe_id} ({source}): {n} {what}, expected {lo}-{hi} (the recipe: paper Table 4, size: or the SpatialBenchmarking folder)"
        report.setdefault("warnings", []).append(msg)
        warnings.warn(msg, stacklevel=3)


def _source_record(recipe: dict, src: dict, files: list[dict]) -> dict:
    spatial = [f for f in files if f["role"] == "spatial"]
    return {
        "accession": str(src.get("accession") or ((recipe["paper"].get("table4") or {}).get("geo") or recipe["id"])),
        "url": " ".join(f["url"] for f in spatial),
        "checksum": " ".join(f"sha256:{f['sha256']}" for f in spatial),
        "platform": str(recipe["platform"]),
        "species": str(recipe["species"]),
        "tissue": str(recipe["tissue"]),
        "citation": str(src.get("citation", recipe["citation"])),
    }


def reference_source_of(recipe: dict, source: str, reference_source: str | None = None) -> str:
    """Which source's ``reference`` block a dataset uses: the argument, else the recipe's
    ``reference_source``, else the spatial source itself; ``none`` means no reference."""
    ref = reference_source or recipe.get("reference_source") or source
    if ref != "none" and ref not in (recipe.get("sources") or {}):
        raise ConfigError(f"recipe '{recipe.get('id')}': reference_source '{ref}' is not one of its sources "
                          f"({', '.join(recipe.get('sources') or {})}) or 'none'")
    return ref


def _load_reference(recipe: dict, recipe_id: str, ref_source: str, source: str, base: Path, cache_dir, report: dict):
    """The reference AnnData (or None, with the reason in ``report``) from ``ref_source``'s download."""

    report["reference_source"] = ref_source
    spec = None if ref_source == "none" else get_source(recipe, ref_source).get("reference")
    if not spec:
        report["reference"] = "none for this source" if ref_source != "none" else "switched off (reference_source: none)"
        return None
    if ref_source != source:
        _, rpath = read_manifest(cache_dir, recipe_id, ref_source, reference_only=True)
        base = rpath.parent / "files"
    rspec = _resolved_spec(spec, base)
    if rspec is None:
        report["reference"] = "absent from this download (optional)"
        return None
    ref = get_loader(rspec["format"])(rspec, base)
    ref.uns.pop("duplicate_genes_summed", None)
    return ref


def load_recipe(recipe_id: str, source: str, cache_dir, reference_source: str | None = None):
    """(spatial AnnData following the contract, reference AnnData or None) from a downloaded source.

    The reference comes from ``reference_source`` (see :func:`reference_source_of`); a source other
    than the spatial one is read from its reference-only download (``manifest_reference.json``).
    """
    manifest, mpath = read_manifest(cache_dir, recipe_id, source)
    recipe = manifest.get("recipe_data") or get_recipe(recipe_id)
    src = get_source(recipe, source)
    ref_source = reference_source_of(recipe, source, reference_source)  # a bad value fails before any reading
    base = mpath.parent / "files"
    where = f"recipe {recipe_id} ({source}): {mpath.parent}"
    if not src.get("spatial"):
        raise DatasetError(where, "this source has no spatial data; use the recipe's default source")
    sspec = _resolved_spec(src["spatial"], base)
    adata = get_loader(sspec["format"])(sspec, base)
    report = {"recipe": recipe_id, "recipe_source": source, "manifest": str(mpath),
              "duplicate_genes_summed": int(adata.uns.pop("duplicate_genes_summed", 0))}
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    check_counts(counts, sspec.get("counts") or sspec.get("matrix") or where)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    if (totals <= 0).any():  # the contract forbids empty spots; drop them and say so
        report["dropped_empty_spots"] = int((totals <= 0).sum())
        adata = adata[totals > 0].copy()
    adata.X = sp.csr_matrix(adata.layers["counts"])
    adata.layers["counts"] = adata.X.copy()
    adata.uns["source"] = _source_record(recipe, src, manifest["files"])
    # the source's own expectation, else the recipe's size: (the shape known before download; a miss warns)
    expect = src.get("expect") or {k: list(size_range(v)) for k, v in (recipe.get("size") or {}).items()
                                    if k in ("spots", "genes")}
    report.update(spots=int(adata.n_obs), genes=int(adata.n_vars),
                  table4_spots=(recipe["paper"].get("table4") or {}).get("spots"))
    _check_range(report, "spots", adata.n_obs, expect.get("spots"), recipe_id, source)
    _check_range(report, "genes", adata.n_vars, expect.get("genes"), recipe_id, source)
    validate_dataset(adata, where)
    ref = _load_reference(recipe, recipe_id, ref_source, source, base, cache_dir, report)
    if ref is not None:
        report.update(harmonise_reference(ref, adata.var_names), reference_cells=int(ref.n_obs),
                      reference_genes=int(ref.n_vars))
    adata.uns["prepare_report"] = report
    return adata, ref
