"""The workflow's steps as plain functions (the Snakemake scripts are thin calls to these).

download -> prepare -> preprocess -> mask -> impute -> evaluate. Each step reads files, writes
files atomically, and raises DatasetError/ConfigError with the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stbench.atomic import write_h5ad, write_json
from stbench.contract import validate_dataset, validate_reference
from stbench.errors import ConfigError


def load_dataset(name: str, spec: dict, *, base=None, cache_dir="resources/downloads"):
    """Load a dataset from its config block: (spatial AnnData, reference or None, path for messages)."""
    spec = dict(spec)
    if "recipe" in spec:
        from stbench import datasets as recipes

        adata, ref = recipes.load_recipe(spec["recipe"], spec.get("source", "authors"), cache_dir)
        return adata, ref, f"recipe {spec['recipe']} ({spec.get('source', 'authors')})"
    fmt = spec.get("format")
    if fmt == "simulate":
        from stbench.simulate import simulate_demo

        kwargs = {k: v for k, v in spec.items() if k not in ("format", "preprocess", "source")}
        adata, ref = simulate_demo(**kwargs)
        return adata, ref, f"simulated dataset '{name}'"
    from stbench.loaders import get_loader
    from stbench.loaders.common import resolve

    adata = get_loader(fmt)(spec, base)
    ref = None
    if spec.get("reference"):
        rspec = spec["reference"] if isinstance(spec["reference"], dict) else {"format": "h5ad", "path": spec["reference"]}
        ref = get_loader(rspec.get("format", "h5ad"))(rspec, base) if rspec.get("format", "h5ad") != "h5ad" else \
            _load_reference_h5ad(resolve(rspec["path"], base))
    where = spec.get("path") or spec.get("counts") or name
    return adata, ref, str(where)


def _load_reference_h5ad(path):
    from stbench.loaders.h5ad import read_h5ad

    ref = read_h5ad(path)
    if "counts" not in ref.layers:
        ref.layers["counts"] = ref.X.copy()
    return ref


def prepare(name: str, spec: dict, out_prepared, out_report, *, base=None, cache_dir="resources/downloads") -> dict:
    """Load, validate and write the prepared dataset (+ reference.h5ad beside it when there is one)."""
    import scipy.sparse as sp

    adata, ref, where = load_dataset(name, spec, base=base, cache_dir=cache_dir)
    validate_dataset(adata, where)
    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    if not sp.issparse(adata.layers["counts"]):
        adata.layers["counts"] = sp.csr_matrix(adata.layers["counts"])
    adata.X = adata.layers["counts"]
    report = {"dataset": name, "spots": int(adata.n_obs), "genes": int(adata.n_vars),
              "source": dict(adata.uns["source"]), "has_reference": ref is not None}
    report.update(adata.uns.get("prepare_report", {}) if isinstance(adata.uns.get("prepare_report"), dict) else {})
    out_prepared = Path(out_prepared)
    ref_path = out_prepared.with_name("reference.h5ad")
    if ref is not None:
        validate_reference(ref, f"{where} (reference)", adata.var_names)
        report.update(reference_cells=int(ref.n_obs), reference_genes=int(ref.n_vars),
                      reference_gene_overlap=int(len(set(ref.var_names) & set(adata.var_names))))
        write_h5ad(ref_path, ref)
    elif ref_path.exists():
        ref_path.unlink()
    write_h5ad(out_prepared, adata)
    write_json(out_report, report)
    return report


def preprocess_step(prepared, cfg, out_h5ad, out_qc) -> dict:
    from stbench.loaders.h5ad import read_h5ad
    from stbench.preprocess import preprocess

    adata = read_h5ad(prepared)
    validate_dataset(adata, prepared)
    pre, qc = preprocess(adata, cfg, path=prepared)
    write_h5ad(out_h5ad, pre)
    write_json(out_qc, qc)
    return qc


def mask_step(preprocessed, spec, seed: int, out_npz, dataset: str = "") -> None:
    from stbench.loaders.h5ad import read_h5ad
    from stbench.masks import make_mask, save_mask

    pre = read_h5ad(preprocessed)
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, spec, seed)
    save_mask(out_npz, held, train, spec, seed, dataset)


def impute_step(preprocessed, mask_npz, method_name: str, variant: str, params: dict, out_dir, *, seed: int,
                device: str = "auto", dataset: str = "", methods_dir=None) -> dict:
    """Build the task (truth hidden) and run one method variant through the runner."""
    from stbench.loaders.h5ad import read_h5ad
    from stbench.masks import load_mask
    from stbench.registry import get_method
    from stbench.runner import run_method
    from stbench.task import build_task

    method = get_method(method_name, methods_dir)
    pre = read_h5ad(preprocessed)
    held, train, meta = load_mask(mask_npz)
    ref_path = Path(preprocessed).with_name("reference.h5ad")
    reference = read_h5ad(ref_path) if ref_path.exists() else None
    out_dir = Path(out_dir)
    scratch = out_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    if device == "auto":
        device = _auto_device()
    task = build_task(pre, held, train, reference=reference, seed=seed, device=device, scratch=scratch, dataset=dataset)
    del pre  # the truth goes out of scope before the method runs
    if method.needs_reference and reference is None:
        from stbench.atomic import write_npz

        rec = {"method": method_name, "variant": variant, "status": "failed", "seed": seed, "dataset": dataset,
               "error": f"method '{method_name}' needs a paired scRNA-seq reference and dataset '{dataset}' has none"}
        write_npz(out_dir / "imputed.npz", failed=np.array(rec["error"]))
        write_json(out_dir / "run.json", rec)
        return rec
    return run_method(method, params, task, out_dir, variant=variant, extra={"mask": meta})


def _auto_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def evaluate_step(preprocessed, mask_npz, imputed_npz, run_json, out_metrics, out_per_gene=None) -> dict:
    """Score one imputation on the held-out entries (the only step besides masking that reads the truth)."""
    import pandas as pd

    from stbench.atomic import write_csv
    from stbench.loaders.h5ad import read_h5ad
    from stbench.masks import load_mask
    from stbench.metrics import evaluate_imputation

    run = json.loads(Path(run_json).read_text())
    out = {k: run.get(k) for k in ("method", "variant", "seed", "dataset", "status", "error", "wall_time_s",
                                   "peak_rss_mb", "peak_cuda_mb", "device")}
    out["mask"] = (run.get("mask") or {}).get("spec")
    if run.get("status") == "ok":
        pre = read_h5ad(preprocessed)
        held, _, meta = load_mask(mask_npz)
        out["mask"] = meta["spec"]
        with np.load(imputed_npz) as z:
            pred = z["imputed"]
        res = evaluate_imputation(np.asarray(pre.X), pred, held)
        out.update(metrics=res["metrics"], undefined=res["undefined"], n_held_out=res["n_held_out"],
                   n_genes_scored=res["n_genes_scored"])
        if out_per_gene:
            df = pd.DataFrame(res["per_gene"], index=pre.var_names)
            df.insert(0, "n_held_out", held.sum(0))
            write_csv(out_per_gene, df, index_label="gene")
    else:
        out["metrics"] = {}
        if out_per_gene:
            from stbench.atomic import write_text

            write_text(out_per_gene, "gene\n")
    write_json(out_metrics, out)
    return out


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
