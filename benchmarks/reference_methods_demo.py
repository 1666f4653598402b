"""Time and score the reference methods on the demo task (quick preset) beside the per-gene Mean.

Usage: python benchmarks/reference_methods_demo.py [method[:key=value,...] ...]   (needs results/demo/demo from a
demo run, or a link to results/demo-spadit/demo, whose section and mask are the same; run with OMP_NUM_THREADS=1 as the sandbox does: on 2 shared cores more torch threads only contend)
Runs each method in this process (not the sandbox), scores it with the evaluate step's code
(stbench.results.metrics.evaluate_imputation on stbench.data.task.truth_on_scale), prints one line per method.
"""

import sys
import time
from pathlib import Path

import numpy as np

from stbench.data.loaders.h5ad import read_h5ad
from stbench.data.masks import load_mask
from stbench.results.metrics import evaluate_imputation
from stbench.run.registry import discover
from stbench.data.task import load_task, truth_on_scale

D = Path("results/demo/demo")


def main(names):
    import anndata as ad

    ref = ad.read_h5ad(D / "reference.h5ad")
    pre = read_h5ad(D / "preprocessed.h5ad")
    held, _, _ = load_mask(D / "masks" / "random-0.1-all" / "seed0.npz")
    methods = discover()
    rows = []
    for spec in ["mean", *names]:
        name, _, over = spec.partition(":")
        m = methods[name]
        params = m.params("quick") if name != "mean" else {**m.params("quick"), "axis": "gene"}
        for kv in filter(None, over.split(",")):
            k, v = kv.split("=")
            params[k] = type(params[k])(v) if params.get(k) is not None else v
        task = load_task(D / "tasks" / "random-0.1-all" / "seed0.npz", reference=ref)
        truth = truth_on_scale(pre, task)
        t0, c0 = time.perf_counter(), time.process_time()
        pred = m.load_impute()(task, **params)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0   # CPU time: the shared machine's load aside
        r = evaluate_imputation(truth, np.asarray(pred), held)["metrics"]
        info = task.info.get("reference_protocol", {})
        rows.append((name, dt, r["pcc"], r["pcc_gene"], r["rmse"], info.get("n_genes_from_reference")))
        print(f"{spec:28s} {dt:7.1f}s (CPU {cpu:.1f}s)  PCC {r['pcc']:.3f}  PCC(gene) {r['pcc_gene']:.3f}  RMSE {r['rmse']:.3f}  "
              f"from reference: {info.get('n_genes_from_reference')}", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
