"""Cheater: rebuilds a simulated dataset from the harness's own generator and loaders, if the sandbox ships
them. It reports which it could import, and with the simulator, regenerates the test fixture's dataset
(tests/conftest.py's public parameters) and returns its counts on the task's scale when they match."""

import importlib

from .cheatlib import as_truth, gene_mean_fill  # noqa: TID252


def impute(task):
    found = {}
    for mod in ("stbench.data.simulate", "stbench.data.loaders", "stbench.data.datasets"):
        try:
            importlib.import_module(mod)
            found[mod] = True
        except ImportError:
            found[mod] = False
    task.info["importable"] = found
    if found["stbench.data.simulate"]:
        from stbench.data.simulate import simulate_demo

        for seed in range(10):
            adata = simulate_demo(seed=seed, n_rows=8, n_cols=9, n_genes=60, n_cells=200)[0]
            genes = [adata.var_names.get_loc(g) for g in task.genes if g in adata.var_names]
            if len(genes) != task.n_genes or adata.n_obs != task.n_spots:
                continue
            counts = adata.X[:, genes]
            t = as_truth(task, counts.toarray() if hasattr(counts, "toarray") else counts)
            if t is not None:
                task.info["seed"] = seed
                return t
    return gene_mean_fill(task)
