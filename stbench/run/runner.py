"""One runner for every method: run ``impute`` in the sandbox, validate its output, record provenance.

The runner writes ``imputed.npz`` and ``run.json`` atomically, and is the only place that writes a
failure record. A method that raises, returns an invalid matrix, needs a reference the dataset
lacks, or dies does not stop the workflow: its run.json says ``failed`` with the error, and the
tables show a failed row. A method that needs a reference on a dataset without one is not run: its
run.json says ``skipped: no reference``, and so does its row.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np

from stbench.atomic import write_json, write_npz
from stbench.errors import MethodError
from stbench.data.task import load_task
# Imported inside functions on purpose: stbench.run.sandbox (runner.py also runs in the method's box, where sandbox.py is not copied).

SKIPPED_NO_REFERENCE = "skipped: no reference"


def check_output(result, task, method: str) -> np.ndarray:
    """The imputation must be a finite (n_spots, n_genes) numeric matrix; returned as float32."""
    if hasattr(result, "toarray"):
        result = result.toarray()
    try:
        arr = np.asarray(result)
    except Exception as e:  # pragma: no cover - exotic return types
        raise MethodError(method, f"impute() returned {type(result).__name__}, not an array ({e})") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise MethodError(method, f"impute() returned a non-numeric array (dtype {arr.dtype})")
    expected = (task.n_spots, task.n_genes)
    if arr.shape != expected:
        raise MethodError(method, f"impute() returned shape {arr.shape}, expected (n_spots, n_genes) = {expected}")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise MethodError(method, f"impute() returned {int(bad.sum())} non-finite value(s), "
                                  f"first at spot '{task.spots[i]}', gene '{task.genes[j]}'")
    return arr


def run_method(method, params: dict, task_file, out_dir, *, reference_file=None, device: str = "auto",
               threads: int = 1, hide=(), isolation: str = "auto", variant: str = "default", timeout=None,
               mem_mb=None, log_file=None, checkpoint_dir=None) -> dict:
    """Run ``method`` (a registry.Method) on a task file; write imputed.npz and run.json to ``out_dir``.

    ``checkpoint_dir``: the job's folder for training checkpoints, outside the sandbox, so that a killed job's
    rerun resumes; removed once the row is ok or skipped (kept after a failure, so that a forced rerun resumes).
    The record is this process's: method, variant, dataset, seed, isolation, device and cost are set or measured
    here; of the child's output only the predictions and its validated ``info`` block are taken."""
    from stbench.run.sandbox import resolve_isolation, run_in_sandbox

    params = method.resolve(params)  # the record names every parameter the method ran with
    out_dir = Path(out_dir)
    task = load_task(task_file)  # truth-free: names, shape and provenance for the record
    record = {"method": method.name, "variant": variant, "params": params, "seed": task.seed,
              "dataset": task.dataset, "device_requested": device, "host": platform.node(),
              "mask": {"spec": task.protocol.get("mask")}, "protocol": task.protocol}
    has_reference = reference_file is not None and Path(reference_file).exists()
    arr = None
    if method.needs_reference and not has_reference:
        # not a failure: the method does not apply to this dataset (tables show "skipped: no reference")
        record.update(status=SKIPPED_NO_REFERENCE, isolation=resolve_isolation(isolation),
                      error=f"method '{method.name}' needs a paired scRNA-seq reference and dataset '{task.dataset}' "
                            "has none")
    else:
        res = run_in_sandbox(method, params, task_file, reference_file=reference_file if has_reference else None,
                             device=device, threads=threads, hide=hide, isolation=isolation, timeout=timeout,
                             mem_mb=mem_mb, log_file=log_file, checkpoint_dir=checkpoint_dir,
                             shape=(task.n_spots, task.n_genes))
        info, cost = res["info"], res["cost"]
        record.update(status=info["status"], error=info.get("error"), isolation=res["isolation"],
                      limits=res["limits"], exit_code=cost["exit_code"], wall_time_s=cost["wall_time_s"],
                      peak_rss_mb=cost["peak_rss_mb"], peak_threads=cost["peak_threads"],
                      peak_processes=cost["peak_processes"], leftover_processes_killed=cost["leftover_killed"],
                      device=_gpu_model() if cost["gpu_used"] else "cpu")
        for k in ("traceback", "method_info", "versions", "peak_cuda_mb_self_reported"):
            if info.get(k) is not None:
                record[k] = info[k]
        if "peak_cuda_mb_self_reported" in record:  # the cost table's column (documented as the method's own report)
            record["peak_cuda_mb"] = record["peak_cuda_mb_self_reported"]
        if record["status"] == "ok":
            try:
                arr = check_output(res["imputed"], task, method.name)
            except MethodError as e:
                record.update(status="failed", error=str(e))
    if arr is not None:
        write_npz(out_dir / "imputed.npz", imputed=arr)
    else:
        if not record.get("error"):
            record["error"] = "unknown error"
        write_npz(out_dir / "imputed.npz", failed=np.array(str(record["error"])))
    write_json(out_dir / "run.json", record)
    if checkpoint_dir is not None and not str(record.get("status")).startswith("failed"):
        # done with: a failed row keeps its checkpoints, so that a forced rerun resumes
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if log_file is not None:  # the row's outcome closes the job's log (a failure's error where the report links)
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as fh:
            fh.write(f"stbench: {method.name}/{variant}: {record.get('status')}"
                     + (f": {record.get('error')}" if record.get("status") != "ok" else "") + "\n")
    return record


def _gpu_model() -> str:
    from stbench.run.sandbox import _gpu_model as model

    return model()
