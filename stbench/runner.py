"""One runner for every method: run ``impute``, validate its output, record provenance.

The runner writes ``imputed.npz`` and ``run.json`` atomically. A method that raises or returns
an invalid matrix does not stop the workflow: its run.json says ``failed`` with the error, and
the tables show a failed row.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np

from stbench.atomic import write_json, write_npz
from stbench.errors import MethodError

PACKAGES = ("numpy", "scipy", "pandas", "anndata", "scanpy", "torch", "torch_geometric", "scvi-tools",
            "tangram-sc", "stbench")


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


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


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 1024.0**2


def _cuda_info():
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return {"peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20, "cuda_device": torch.cuda.get_device_name()}


def run_method(method, params: dict, task, out_dir, *, variant: str = "default", extra: dict | None = None) -> dict:
    """Run ``method`` (a registry.Method) on ``task``; write imputed.npz and run.json to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"method": method.name, "variant": variant, "params": params, "seed": task.seed,
              "device_requested": task.device, "dataset": task.dataset, "host": platform.node(),
              "versions": package_versions(), **(extra or {})}
    t0 = time.perf_counter()
    try:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        impute = method.load_impute()
        result = impute(task, **params)
        arr = check_output(result, task, method.name)
        record.update(status="ok", error=None)
    except Exception as e:  # a failing method becomes a failed row, never a crashed workflow
        arr = None
        record.update(status="failed", error=f"{type(e).__name__}: {e}",
                      traceback="".join(traceback.format_exc(limit=20))[-5000:])
    record["wall_time_s"] = time.perf_counter() - t0
    record["peak_rss_mb"] = _peak_rss_mb()
    cuda = _cuda_info()
    record["device"] = cuda["cuda_device"] if cuda else "cpu"
    if cuda:
        record["peak_cuda_mb"] = cuda["peak_cuda_mb"]
    if arr is not None:
        write_npz(out_dir / "imputed.npz", imputed=arr)
    else:
        write_npz(out_dir / "imputed.npz", failed=np.array(record["error"]))
    write_json(out_dir / "run.json", record)
    return record
