"""novoSpaRc (Nitzan et al. 2019), wrapped: the PyPI package ``novosparc`` as SpatialBenchmarking calls it
(Benchmarking/SpatialGenes.py, novoSpaRc_impute): the 2000 most dispersed reference genes give the cells' expression
graph (novosparc.rc.setup_for_OT_reconstruction, 5 neighbours each side), the input genes give the linear cost
between cells and spots (Euclidean, each side divided by its maximum), and
novosparc.rc._GWadjusted.gromov_wasserstein_adjusted_norm (alpha_linear 0.5, square loss, epsilon 5e-3) the
coupling; each spot's prediction is the coupling-weighted mean of the cells' expression.
Runs under the harness's truth-free reference protocol (stbench.kit.reference_protocol).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from stbench.kit.reference_protocol import normalise_cells, reference_counts, reference_impute


def _dispersed(x: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` genes with the largest var / (mean + 1e-4) (SpatialBenchmarking's HVG rule)."""
    order = np.argsort(x.var(0) / (x.mean(0) + 1e-4))
    return order[-int(n):]


def impute(task, *, n_hvg: int, num_neighbors_source: int, num_neighbors_target: int, alpha_linear: float,
           epsilon: float, max_iter: int, tol: float, n_folds: int, fill: str, fill_k: int, calibrate: str):
    import novosparc as nc
    from scipy.spatial.distance import cdist

    ref = task.reference
    if ref is None:
        raise ValueError("novoSpaRc needs a paired scRNA-seq reference")
    rc = reference_counts(ref)
    rc = rc[rc.sum(1) > 0]
    dge = normalise_cells(rc, log=True)                  # cells x genes, log-normalised (novoSpaRc's tutorials)
    hvg = _dispersed(dge, min(int(n_hvg), dge.shape[1]))
    col = {g: i for i, g in enumerate(map(str, ref.var_names))}
    costs = {}
    runs = []

    def mapper(inp):
        key = inp.coords.shape[0]
        if key not in costs:                             # the graphs depend on the spots mapped, not on the fold
            with contextlib.redirect_stdout(io.StringIO()):
                costs[key] = nc.rc.setup_for_OT_reconstruction(
                    dge[:, hvg], inp.coords, num_neighbors_source=int(num_neighbors_source),
                    num_neighbors_target=int(num_neighbors_target), verbose=False)
        cost_expression, cost_locations = costs[key]
        markers = dge[:, [col[g] for g in inp.ref_genes]]
        insitu = inp.values.astype(np.float64)
        cost_marker = cdist(markers / max(float(markers.max()), 1e-12), insitu / max(float(np.abs(insitu).max()), 1e-12))
        p_location, p_expression = nc.rc.create_space_distributions(insitu.shape[0], dge.shape[0])
        with contextlib.redirect_stdout(io.StringIO()):
            gw = nc.rc._GWadjusted.gromov_wasserstein_adjusted_norm(
                cost_marker, cost_expression, cost_locations, float(alpha_linear), p_expression, p_location,
                "square_loss", epsilon=float(epsilon), max_iter=int(max_iter), tol=float(tol))
        tot = gw.sum(0, keepdims=True)
        if not (np.isfinite(gw).all() and np.all(tot > 0)):
            raise FloatingPointError(f"novoSpaRc: the coupling is not finite or leaves spots empty (epsilon={epsilon})")
        runs.append(float(gw.sum()))
        return (gw / tot).T @ dge[:, [col[g] for g in inp.predict]]   # log-normalised: prediction_scale="log"

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate,
                           prediction_scale="log")
    if isinstance(getattr(task, "info", None), dict):
        task.info["novosparc"] = {"n_hvg": int(len(hvg)), "coupling_mass": runs,
                                  "novosparc": getattr(nc, "__version__", "0.4.4")}
    return out
