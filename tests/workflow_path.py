"""Run a method the way the workflow's rules do (task rule, impute rule, evaluate rule), on files."""

from pathlib import Path

import numpy as np

from stbench.atomic import write_h5ad
from stbench.data.masks import MaskSpec, save_mask
from stbench.steps import evaluate_step, impute_step, task_step

CHEATERS = Path(__file__).resolve().parent / "cheaters"


def write_inputs(root: Path, pre, held, train, dataset="ds", reference=None, spec=None):
    """results/<run>/<dataset>/{preprocessed.h5ad, masks/..., tasks/..., reference.h5ad if given} under ``root``
    (as the rules lay them out); ``spec``: the task rule's TaskSpec (None: its defaults)."""
    d = root / "results" / "run" / dataset
    write_h5ad(d / "preprocessed.h5ad", pre)
    if reference is not None:
        write_h5ad(d / "reference.h5ad", reference)
    save_mask(d / "masks" / "m" / "seed0.npz", held, train, MaskSpec(), 0, dataset)
    task_step(d / "preprocessed.h5ad", d / "masks" / "m" / "seed0.npz", d / "tasks" / "m" / "seed0.npz", spec=spec,
              dataset=dataset)
    return d


def run(root: Path, method: str, params: dict, *, methods_dir=None, isolation="auto", evaluate=True, variant="default",
        **impute_kw):
    """Impute (sandboxed child process) and evaluate; returns (imputed array or None, metrics record).
    ``impute_kw``: more of impute_step's keywords (timeout_s, mem_mb, checkpoint_dir)."""
    d = root / "results" / "run" / "ds"
    out = d / "m" / "seed0" / method / variant
    reference = d / "reference.h5ad"  # the impute rule passes this path; it exists where the dataset has a reference
    rec = impute_step(d / "tasks" / "m" / "seed0.npz", method, variant, params, out, hide=[root / "results"],
                      isolation=isolation, methods_dir=methods_dir, log_file=out / "impute.log",
                      reference=reference if reference.exists() else None, **impute_kw)
    arr = None
    if rec["status"] == "ok":
        with np.load(out / "imputed.npz") as z:
            arr = z["imputed"]
    if not evaluate:
        return arr, rec
    ev = evaluate_step(d / "preprocessed.h5ad", d / "masks" / "m" / "seed0.npz", d / "tasks" / "m" / "seed0.npz",
                       out / "imputed.npz", out / "run.json", out / "metrics.json")
    return arr, ev


def with_other_truth(pre, held, seed=123):
    """The same preprocessed dataset with every held-out count replaced (spot totals follow)."""
    other = pre.copy()
    rng = np.random.default_rng(seed)
    c = np.asarray(other.layers["counts"]).copy()
    c[held] = rng.integers(0, 300, size=int(held.sum()))
    other.layers["counts"] = c
    other.obs["total_counts"] = other.obs["other_counts"] + c.sum(1)
    other.X = np.log1p(c).astype(np.float32)
    return other
