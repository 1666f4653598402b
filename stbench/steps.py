"""The workflow's steps as plain functions (the Snakemake scripts are thin calls to these).

download -> prepare -> preprocess -> mask -> impute -> evaluate. Each step reads files, writes
files atomically, and raises DatasetError/ConfigError with the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.atomic import write_csv, write_h5ad, write_json, write_text
from stbench.data.contract import validate_dataset, validate_reference
from stbench.data.dataset_blocks import DEFAULT_CACHE_DIR, load_dataset
from stbench.errors import DatasetError
from stbench.run.gpu_slots import pinned
from stbench.data.loaders.h5ad import read_h5ad
from stbench.data.masks import load_mask, load_split, make_mask, make_split, save_mask
from stbench.results.metrics import evaluate_imputation
from stbench.data.preprocess import preprocess
from stbench.run.registry import get_method
from stbench.run.runner import _gpu_model, run_method
from stbench.run.sandbox import run_in_sandbox
from stbench.data.task import TaskSpec, build_task, input_half, load_task, save_task, truth_on_scale


def prepare(name: str, spec: dict, out_prepared, out_report, *, base=None, cache_dir=DEFAULT_CACHE_DIR) -> dict:
    """Load, validate and write the prepared dataset (+ reference.h5ad beside it when there is one)."""
    adata, ref, where = load_dataset(name, spec, base=base, cache_dir=cache_dir)
    validate_dataset(adata, where)
    adata.uns["input"] = str(where)  # the user's file, named by later steps' errors
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


def preprocess_step(prepared, options, out_h5ad, out_qc) -> dict:
    adata = read_h5ad(prepared)
    where = f"{adata.uns['input']} (prepared as {prepared})" if "input" in adata.uns else prepared
    validate_dataset(adata, where)
    try:
        pre, qc = preprocess(adata, options, path=where)
    except DatasetError:
        # the dataset cannot be used under this protocol: nothing of it stays in the results (a rerun prepares it anew)
        for f in (Path(prepared), Path(prepared).with_name("prepare.json"), Path(prepared).with_name("reference.h5ad")):
            f.unlink(missing_ok=True)
        raise
    write_h5ad(out_h5ad, pre)
    write_json(out_qc, qc)
    return qc


def mask_step(preprocessed, spec, seed: int, out_npz, dataset: str = "") -> None:
    pre = read_h5ad(preprocessed)
    counts = np.asarray(pre.layers["counts"].toarray() if hasattr(pre.layers["counts"], "toarray") else pre.layers["counts"])
    split = None
    if spec.strategy == "countsplit":  # binomial thinning into input and target halves; the file keeps the input half
        held, train, split = make_split(counts, pre.obs["other_counts"].to_numpy(), spec, seed)
    else:
        held, train = make_mask(counts > 0, spec, seed)
    save_mask(out_npz, held, train, spec, seed, dataset, split=split)


def task_step(preprocessed, mask_npz, out_task, *, spec=None, dataset: str = "") -> None:
    """Write the truth-free task file of one (dataset, mask, seed): the only input of a method run. ``spec``: the
    task rule's ``TaskSpec`` (scale, library sizes) from the config; None: its defaults."""
    pre = read_h5ad(preprocessed)
    held, train, meta = load_mask(mask_npz)
    split = load_split(mask_npz)
    if split is not None:  # count splitting: the task is built from the input half alone
        pre = input_half(pre, split)
    if held.shape != pre.shape:
        raise DatasetError(mask_npz, f"mask shape {held.shape} does not match {preprocessed} {pre.shape}")
    task = build_task(pre, held, train, spec=spec if spec is not None else TaskSpec(), seed=meta["seed"], dataset=dataset or meta.get("dataset", ""),
                      mask_spec=meta["spec"])
    save_task(out_task, task)


def impute_step(task_file, method_name: str, variant: str, params: dict, out_dir, *, reference=None,
                device: str = "auto", threads: int = 1, hide=(), isolation: str = "auto", methods_dir=None,
                log_file=None, timeout_s=None, mem_mb=None, checkpoint_dir=None, gpu_slots: int = 0,
                slots_per_device: int = 1) -> dict:
    """Run one method variant on a task file in its sandbox (it never sees preprocessed.h5ad or a mask).

    ``timeout_s``: the config's or else method.yaml's limit; ``mem_mb``: the declared memory (the data limit's base).
    A GPU job (``gpu_slots`` > 0, on a cuda/auto device) first leases its slots on the least-loaded GPU
    (stbench.run.gpu_slots) and runs with ``CUDA_VISIBLE_DEVICES`` set to it; the sandbox passes that on."""
    method = get_method(method_name, methods_dir)
    with pinned(gpu_slots if device != "cpu" else 0, slots_per_device):
        return run_method(method, params, task_file, out_dir, reference_file=reference, device=device, threads=threads,
                          hide=hide, isolation=isolation, variant=variant, log_file=log_file,
                          timeout=timeout_s if timeout_s is not None else method.timeout_s, mem_mb=mem_mb,
                          checkpoint_dir=checkpoint_dir)


def ensemble_step(task_file, method_name: str, members: dict[str, dict], checkpoint_dirs: dict, out_json, *,
                  device: str = "auto", threads: int = 1, hide=(), isolation: str = "auto", methods_dir=None,
                  log_file=None, timeout_s=None, mem_mb=None, gpu_slots: int = 0, slots_per_device: int = 1) -> dict:
    """Train the variants ``members`` (name -> resolved params: one ensemble group of stbench.run.ensembles) of one
    (dataset, mask, seed) as one batched model, in the sandbox on the same truth-free task file as their impute
    jobs. The child may write only the members' checkpoint folders (``checkpoint_dirs``: variant -> folder, the
    impute jobs' own), where it leaves each member's finished training; each variant's impute job then finds it
    and only samples, and writes its own row. ``out_json``: this job's record (the parent's, as a row's run.json:
    status, error, cost). A failed ensemble is recorded, not raised: its members' impute jobs then train on their
    own (resuming from any checkpoint it left), so a failure costs time, never a row."""
    method = get_method(method_name, methods_dir)
    if set(members) != set(checkpoint_dirs):
        raise ValueError(f"ensemble of {method_name}: members {sorted(members)} and checkpoint folders "
                         f"{sorted(checkpoint_dirs)} differ")
    task = load_task(task_file)  # truth-free: names and provenance for the record
    record = {"method": method.name, "members": list(members), "dataset": task.dataset, "seed": task.seed,
              "mask": {"spec": task.protocol.get("mask")}, "device_requested": device}
    with pinned(gpu_slots if device != "cpu" else 0, slots_per_device):
        res = run_in_sandbox(method, members, task_file, device=device, threads=threads, hide=hide,
                             isolation=isolation, timeout=timeout_s if timeout_s is not None else method.timeout_s,
                             mem_mb=mem_mb, log_file=log_file, checkpoint_dir=dict(checkpoint_dirs), entry="ensemble")
    info, cost = res["info"], res["cost"]
    record.update(status=info["status"], error=info.get("error"), isolation=res["isolation"], limits=res["limits"],
                  exit_code=cost["exit_code"], wall_time_s=cost["wall_time_s"], peak_rss_mb=cost["peak_rss_mb"],
                  device=_gpu_model() if cost["gpu_used"] else "cpu")
    for k in ("traceback", "method_info", "versions", "peak_cuda_mb_self_reported"):
        if info.get(k) is not None:
            record[k] = info[k]
    write_json(out_json, record)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as fh:
            fh.write(f"stbench: {method.name} ensemble of {', '.join(members)}: {record['status']}"
                     + ("" if record["status"] == "ok" else f": {record.get('error')} (each member's impute job "
                        "trains on its own, from any checkpoint the ensemble left)") + "\n")
    return record


SUSPECT = "suspect: near-perfect on held-out entries"


def suspicious(metrics: dict, n_held_out: int) -> bool:
    """Near-zero held-out error over enough entries: the signature of a leak, not of a good method."""
    if n_held_out < 100:
        return False
    rmse, pcc = metrics.get("rmse"), metrics.get("pcc")
    return (rmse is not None and rmse < 1e-6) or (pcc is not None and pcc > 0.9999)


def evaluate_step(preprocessed, mask_npz, task_file, imputed_npz, run_json, out_metrics, out_per_gene=None) -> dict:
    """Score one imputation on the held-out entries (with masking, the only step that reads the truth)."""
    run = json.loads(Path(run_json).read_text())
    out = {k: run.get(k) for k in ("method", "variant", "seed", "dataset", "status", "error", "wall_time_s",
                                   "peak_rss_mb", "peak_cuda_mb", "device", "isolation", "method_info")}
    out["mask"] = (run.get("mask") or {}).get("spec")
    out["protocol"] = run.get("protocol")
    if run.get("status") == "ok":
        pre = read_h5ad(preprocessed)
        held, _, meta = load_mask(mask_npz)
        task = load_task(task_file)
        out["mask"] = meta["spec"]
        out["protocol"] = task.protocol
        with np.load(imputed_npz) as z:
            pred = z["imputed"]
        res = evaluate_imputation(truth_on_scale(pre, task, load_split(mask_npz)), pred, held)
        out.update(metrics=res["metrics"], undefined=res["undefined"], n_held_out=res["n_held_out"],
                   n_genes_scored=res["n_genes_scored"])
        if suspicious(res["metrics"], res["n_held_out"]):
            out.update(status=SUSPECT, error=SUSPECT)
        if out_per_gene:
            df = pd.DataFrame(res["per_gene"], index=pre.var_names)
            df.insert(0, "n_held_out", held.sum(0))
            write_csv(out_per_gene, df, index_label="gene")
    else:
        out["metrics"] = {}
        if out_per_gene:
            write_text(out_per_gene, "gene\n")
    write_json(out_metrics, out)
    return out
