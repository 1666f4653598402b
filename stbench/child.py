"""The child side of a method run: load the truth-free task, call ``impute``, validate, write.

Runs inside the sandbox folder made by ``stbench.sandbox`` (its working directory), from a copy
of this package and of the method folder under ``lib/``. It reads ``job.json`` and ``task.npz``
(and ``reference.h5ad`` if present) and writes ``out/imputed.npz`` and ``out/child.json``.
Nothing here knows where the project or its results are.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

PACKAGES = ("numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn", "torch", "torch_geometric", "scvi-tools",
            "tangram-sc", "stbench")


def _forget_project_imports(lib: Path) -> None:
    """Drop import machinery that points outside the sandbox: editable-install finders and path
    entries other than ``lib``, the standard library and site-packages."""
    def foreign(obj) -> bool:
        mod = getattr(obj, "__module__", "") or getattr(type(obj), "__module__", "") or ""
        return "__editable__" in mod or "__editable__" in repr(obj)

    sys.meta_path[:] = [f for f in sys.meta_path if not foreign(f)]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not foreign(h)]
    for name in [m for m in sys.modules if "__editable__" in m]:
        del sys.modules[name]
    keep = [str(lib)]
    for p in sys.path:
        if p and p != str(lib) and ("site-packages" in p or "dist-packages" in p or p.startswith(sys.base_prefix)
                                    or p.endswith(".zip")):
            keep.append(p)
    sys.path[:] = keep
    sys.path_importer_cache.clear()
    gc.collect()


def _versions() -> dict:
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _peak_rss_mb() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 1024.0**2


def main() -> int:
    box = Path.cwd()
    lib = box / "lib"
    _forget_project_imports(lib)
    job = json.loads((box / "job.json").read_text())
    out = box / "out"
    out.mkdir(exist_ok=True)
    record = {"status": "failed", "error": None}
    t0 = time.perf_counter()
    try:
        import numpy as np

        from stbench.atomic import write_npz
        from stbench.runner import check_output
        from stbench.task import load_task

        # threads: OMP/MKL/OPENBLAS_NUM_THREADS are set by the sandbox (torch reads them when a method imports it)
        reference = None
        if (box / "reference.h5ad").exists():
            import anndata as ad

            reference = ad.read_h5ad(box / "reference.h5ad")
        scratch = box / "scratch"
        scratch.mkdir(exist_ok=True)
        # "auto" stays "auto": task.torch_device() resolves it, so methods without torch never import it
        ck = job.get("checkpoint_dir")  # relative: the box's bind-mounted folder; absolute: the host's (process isolation)
        task = load_task(box / "task.npz", reference=reference, device=job["device"], scratch=scratch,
                         checkpoint_dir=None if not ck else box / ck)
        import importlib

        module = importlib.import_module(f"stbench_methods.{job['method']}.impute")
        impute = getattr(module, "impute", None)
        if not callable(impute):
            raise TypeError(f"methods/{job['method']}/impute.py defines no function impute(task, **params)")
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        arr = check_output(impute(task, **job["params"]), task, job["method"])
        if task.info:  # facts the method recorded (e.g. stbench.reference_protocol's gene counts)
            record["method_info"] = json.loads(json.dumps(task.info, default=str))
        write_npz(out / "imputed.npz", imputed=np.asarray(arr, dtype=np.float32))
        record.update(status="ok")
    except BaseException as e:  # noqa: BLE001 - everything a method raises becomes a failed row
        from stbench.methodkit import NotApplicable

        if isinstance(e, NotApplicable):  # not run here, for a stated reason: a skipped row, not a failed one
            record.update(status="skipped: " + str(e).split(" (")[0])  # the short reason; the whole message in `error`
        record.update(error=f"{type(e).__name__}: {e}", traceback="".join(traceback.format_exc(limit=20))[-5000:])
        if not isinstance(e, NotApplicable):  # the traceback in the job's log too (the child's stderr)
            sys.stderr.write(f"stbench: {job['method']} failed:\n{traceback.format_exc()}")
            sys.stderr.flush()
    record["impute_seconds"] = time.perf_counter() - t0
    record["peak_rss_mb"] = _peak_rss_mb()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        record.update(peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20, device=torch.cuda.get_device_name())
    else:
        record["device"] = "cpu"
    record["versions"] = _versions()
    tmp = out / "child.json.tmp"
    tmp.write_text(json.dumps(record, default=str))
    os.replace(tmp, out / "child.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
