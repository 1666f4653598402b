"""The child side of a method run: load the truth-free task, call ``impute``, validate, write.

Runs inside the sandbox folder made by ``stbench.run.sandbox`` (its working directory), from a copy
of part of this package and of the method folder under ``lib/``. It reads ``job.json`` and ``task.npz``
(and ``reference.h5ad`` if present) and writes ``out/imputed.npz`` and ``out/child.json`` (the ``info``
block: status, error, traceback, method_info, versions; the parent validates it and measures the rest).
Entry ``ensemble`` (the workflow's batched-ensemble job) trains several variants of the method into their
checkpoint folders instead and writes only ``out/child.json``.
Nothing here knows where the project or its results are.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import traceback
from pathlib import Path
# Imports inside main() on purpose: the project's modules must come from the box's copy, after _forget_project_imports.

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


def main() -> int:
    box = Path.cwd()
    lib = box / "lib"
    _forget_project_imports(lib)
    job = json.loads((box / "job.json").read_text())
    out = box / "out"
    out.mkdir(exist_ok=True)
    record = {"status": "failed", "error": None}
    try:
        import numpy as np

        from stbench.atomic import write_npz
        from stbench.run.runner import check_output
        from stbench.data.task import load_task

        # threads: OMP/MKL/OPENBLAS_NUM_THREADS are set by the sandbox (torch reads them when a method imports it)
        reference = None
        if (box / "reference.h5ad").exists():
            import anndata as ad

            reference = ad.read_h5ad(box / "reference.h5ad")
        scratch = box / "scratch"
        scratch.mkdir(exist_ok=True)
        # "auto" stays "auto": task.torch_device() resolves it, so methods without torch never import it
        task = load_task(box / "task.npz", reference=reference, device=job["device"], scratch=scratch,
                         checkpoint_dir=job.get("checkpoint_dir"))
        import importlib

        if job.get("entry", "impute") == "ensemble":  # several variants trained as one model; no predictions
            _train_ensemble(job, task, record)
            return _finish(out, record)
        module = importlib.import_module(f"stbench_methods.{job['method']}.impute")
        impute = getattr(module, "impute", None)
        if not callable(impute):
            raise TypeError(f"methods/{job['method']}/impute.py defines no function impute(task, **params)")
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        arr = check_output(impute(task, **job["params"]), task, job["method"])
        if task.info:  # facts the method recorded (e.g. stbench.kit.reference_protocol's gene counts)
            record["method_info"] = json.loads(json.dumps(task.info, default=str))
        write_npz(out / "imputed.npz", imputed=np.asarray(arr, dtype=np.float32))
        record.update(status="ok")
    except BaseException as e:  # noqa: BLE001 - everything a method raises becomes a failed row
        from stbench.kit.methodkit import NotApplicable

        if isinstance(e, NotApplicable):  # not run here, for a stated reason: a skipped row, not a failed one
            record.update(status="skipped: " + str(e).split(" (")[0])  # the short reason; the whole message in `error`
        record.update(error=f"{type(e).__name__}: {e}", traceback="".join(traceback.format_exc(limit=20))[-5000:])
    return _finish(out, record)


def _train_ensemble(job: dict, task, record: dict) -> None:
    """Entry ``ensemble``: ``train_ensemble(task, members, checkpoint_dirs)`` of the method's ``ensemble.py``
    trains the member variants (``job["params"]``: variant -> params) as one model and leaves each member's
    finished training in its checkpoint folder (``job["checkpoint_dirs"]``, the only folders it may write
    outside the box). What it returns is the info block's ``method_info``."""
    import importlib

    module = importlib.import_module(f"stbench_methods.{job['method']}.ensemble")
    train = getattr(module, "train_ensemble", None)
    if not callable(train):
        raise TypeError(f"methods/{job['method']}/ensemble.py defines no function train_ensemble(task, members, "
                        "checkpoint_dirs)")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    info = train(task, job["params"], job["checkpoint_dirs"])
    record["method_info"] = json.loads(json.dumps(info or {}, default=str))
    record.update(status="ok")


def _finish(out: Path, record: dict) -> int:
    """The info block, with the self-reported peak CUDA memory and the package versions, written atomically."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():  # self-reported (the parent cannot read CUDA's allocator)
        record["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    record["versions"] = _versions()
    tmp = out / "child.json.tmp"
    tmp.write_text(json.dumps(record, default=str))
    os.replace(tmp, out / "child.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
