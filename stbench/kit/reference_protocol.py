"""The one truth-free protocol for reference-based methods (gimVI, Tangram, SpaGE, stPlus).

Reference methods predict genes that are *unmeasured* in space from a single-cell reference, while
the benchmark's masks hide scattered entries. This module turns any "mapper" (a function that maps
the reference onto the spots with some genes and predicts others) into a method of the benchmark,
in one place, the same for every reference method:

- **Entry masks** (``random``, ``spot``, ``inductive``: genes with some held-out entries): K-fold over
  the genes shared with the reference that have a held-out entry (``n_folds``, default 5, folds drawn
  with the task's seed). In fold k, the fold's genes are removed from the spatial input entirely;
  the mapper sees only the other shared genes and predicts the fold's genes. The held-out entries of
  those genes take the prediction; observed entries stay as observed.
- **Gene masks** (genes with no observed entry at all): predicted directly, from every shared gene
  that has observed entries (the SpatialBenchmarking protocol).
- **Inductive masks** (``train_spots`` not all True): every fill, calibration and fallback reads the
  observed entries of the train spots only. A mapper maps the spots it predicts, so the test fold's
  predictions come from a mapping of every spot (the test fold's *input genes* included, never a
  held-out or target-gene value); the train spots' own held-out entries, if any, come from a second
  mapping of the train spots alone, so that nothing the test fold holds reaches them (checked by the
  inductive contract test of tests/test_methods_contract.py).
- **Held-out entries of the input genes** are filled without the truth before the mapper sees a
  complete matrix (``fill``): ``knn`` (default: the mean of the gene over the ``fill_k`` spatially
  nearest spots where it is observed, the KNN baseline's estimate) or ``gene_mean``.
- **Genes absent from the reference** (or every held-out gene when no input gene is left): the
  fallback, the gene's mean over its observed entries (the overall observed mean for a gene with
  none). How many genes were predicted from the reference, and how many by the fallback, goes to
  ``task.info["reference_protocol"]`` (run.json's ``method_info``) and to the tables.
- **Scale.** A mapper returns non-negative expression in its own per-gene units (reference
  normalised to the median cell total, as upstream), or, with ``prediction_scale="log"``, values
  already on a log scale (Tangram's projection of log-normalised cells, a sum over the cells mapped
  to a spot that can pass exp's overflow at 709). A non-finite prediction is an error (the row
  fails), never a value. ``calibrate`` maps it to the task's scale
  without the truth: ``linear`` (entry masks) regresses the gene's *observed* entries on
  log1p(prediction) by least squares (slope >= 0; the mapper never saw those entries), so a weak
  prediction is shrunk toward the gene's observed mean; ``moments`` matches log1p(prediction) to the
  mean and sd of the observed entries (full spread whatever the prediction's quality); ``global``
  (gene masks, whose genes have no observed entry) fits one affine map from log1p(prediction) to the
  task's values on the input genes' observed entries and applies it to the held-out genes. ``auto``
  picks ``linear`` where a gene has observed entries, ``global`` where it has none. ``linear`` was
  chosen on real paired data (osmFISH with its scRNA-seq reference, README "Reference-based
  methods"): it beats ``moments`` for every reference method measured, in PCC and RMSE.

A mapper is ``mapper(inp: MapperInput) -> np.ndarray`` of shape (n_spots, len(inp.predict)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stbench.kit.methodkit import knn_others
# Imported inside functions on purpose: scipy.sparse, scikit-learn (import cost in the method's box).

FILLS = ("knn", "gene_mean")
CALIBRATIONS = ("auto", "moments", "linear", "global")
PREDICTION_SCALES = ("expression", "log")


@dataclass
class MapperInput:
    """What a mapper sees in one pass: the input genes only (never the genes it predicts)."""
    genes: list                 # spatial input genes (task names), shared with the reference
    values: np.ndarray          # (n_spots, n_in) float32 on the task's scale, held-out entries filled truth-free
    counts: np.ndarray          # (n_spots, n_in) float64 counts, held-out entries filled truth-free (not rounded)
    coords: np.ndarray          # (n_spots, 2)
    reference: object           # AnnData, cells x genes, raw counts (all reference genes)
    ref_genes: list             # reference names of ``genes`` (same order)
    predict: list               # reference names of the genes to predict (never among ``ref_genes``)
    seed: int = 0
    device: str = "cpu"
    scratch: object = None
    fold: int = -1              # fold index (-1: the direct pass of fully held-out genes)
    extra: dict = field(default_factory=dict)


def reference_counts(reference) -> np.ndarray:
    """The reference's raw counts as a dense float64 cells x genes matrix (``layers['counts']`` or X)."""
    import scipy.sparse as sp

    x = reference.layers["counts"] if "counts" in getattr(reference, "layers", {}) else reference.X
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def normalise_cells(counts: np.ndarray, log: bool = True) -> np.ndarray:
    """Each row scaled to the median row total (rows with no counts stay 0), then log1p if ``log``."""
    tot = counts.sum(1, keepdims=True)
    med = float(np.median(tot[tot > 0])) if (tot > 0).any() else 1.0
    x = np.where(tot > 0, counts / np.maximum(tot, 1e-12) * med, 0.0)
    return np.log1p(x) if log else x


def match_genes(task_genes, ref_genes) -> dict:
    """task gene -> reference gene: exact names first, then case-insensitive (first match)."""
    ref = list(map(str, ref_genes))
    exact = set(ref)
    upper: dict = {}
    for g in ref:
        upper.setdefault(g.upper(), g)
    out = {}
    for g in map(str, task_genes):
        if g in exact:
            out[g] = g
        elif g.upper() in upper:
            out[g] = upper[g.upper()]
    return out


def spatial_knn_fill(x: np.ndarray, mask: np.ndarray, coords: np.ndarray, k: int = 5, donors=None) -> np.ndarray:
    """Held-out entries (``~mask``) replaced by the gene's mean over the k nearest spots that observe it,
    else the gene's observed mean (else the overall observed mean). Observed entries are unchanged.
    ``donors`` (bool per spot; default all): only these spots' entries enter an estimate (the train spots)."""
    import scipy.sparse as sp

    n = x.shape[0]
    given = np.where(mask, np.nan_to_num(x), 0.0).astype(np.float64)
    use = mask if donors is None else mask & np.asarray(donors, dtype=bool)[:, None]
    x0 = np.where(use, given, 0.0)
    m = use.astype(np.float64)
    count = use.sum(0)
    overall = float(x0.sum() / max(int(use.sum()), 1))
    gmean = np.where(count > 0, x0.sum(0) / np.maximum(count, 1), overall)
    k = int(min(k, n - 1))
    if k < 1:
        est = np.broadcast_to(gmean, x.shape)
    else:
        idx, _ = knn_others(coords, k)
        a = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
        s, c = a @ x0, a @ m
        est = np.where(c > 0, s / np.maximum(c, 1), gmean[None, :])
    return np.where(mask, given, est)


def cosine_knn_transfer(ref_emb: np.ndarray, spot_emb: np.ndarray, ref_values: np.ndarray, n_neighbors: int = 50):
    """SpaGE's and stPlus's prediction step: each spot's ``n_neighbors`` nearest reference cells by cosine
    distance in a shared embedding; over those with distance < 1, weights ``1 - d / sum(d)`` divided by
    ``(count - 1)`` (they sum to 1); the prediction is the weighted mean of ``ref_values`` (cells x genes).
    One neighbour within distance 1: weight 1 (upstream divides by 0); none: the plain neighbour mean
    (upstream: 0)."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(n_neighbors, ref_emb.shape[0]))
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="auto", metric="cosine").fit(ref_emb).kneighbors(spot_emb)
    sel = dist < 1
    dsel = np.where(sel, dist, 0.0)
    n_sel = sel.sum(1, keepdims=True)
    w = np.where(sel, 1.0 - dsel / np.maximum(dsel.sum(1, keepdims=True), 1e-12), 0.0)
    w = np.where(n_sel > 1, w / np.maximum(n_sel - 1, 1), w)
    w[n_sel[:, 0] == 0] = 1.0 / k
    return np.einsum("sk,skg->sg", w, ref_values[idx])


def _gene_fill(x, mask, coords, how, k, donors=None):
    if how == "knn":
        return spatial_knn_fill(x, mask, coords, k, donors)
    if how == "gene_mean":
        return spatial_knn_fill(x, mask, coords, 0, donors)
    raise ValueError(f"fill must be one of {FILLS}, got {how!r}")


def _observed_means(task) -> np.ndarray:
    m = np.asarray(task.observed_mask, dtype=bool) & np.asarray(task.train_spots, dtype=bool)[:, None]
    x0 = np.where(m, np.nan_to_num(task.observed), 0.0)
    count = m.sum(0)
    overall = float(x0.sum() / max(int(m.sum()), 1))
    return np.where(count > 0, x0.sum(0) / np.maximum(count, 1), overall)


def _log_scale(raw: np.ndarray, prediction_scale: str) -> np.ndarray:
    """A mapper's prediction on a log scale: log1p of non-negative expression, or as given for ``log``."""
    return np.asarray(raw, dtype=np.float64) if prediction_scale == "log" else np.log1p(np.maximum(raw, 0.0))


def _calibrate_moments(v: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per gene: the log-scale prediction ``v`` standardised over the observed spots, given the observed mean and sd."""
    out = np.empty_like(v)
    for j in range(v.shape[1]):
        m = mask[:, j]
        if not m.any():             # nothing to calibrate on: the caller puts the fallback here
            out[:, j] = 0.0
            continue
        o = obs[m, j].astype(np.float64)
        mu, sd = float(o.mean()), float(o.std())
        pm, ps = float(v[m, j].mean()), float(v[m, j].std())
        out[:, j] = mu + (sd / ps) * (v[:, j] - pm) if ps > 1e-12 else mu
    return out


def _calibrate_linear(v: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per gene: least squares of the observed entries on the log-scale prediction ``v`` over the observed spots
    (slope >= 0)."""
    out = np.empty_like(v)
    for j in range(v.shape[1]):
        m = mask[:, j]
        if not m.any():             # nothing to calibrate on: the caller puts the fallback here
            out[:, j] = 0.0
            continue
        o, x = obs[m, j].astype(np.float64), v[m, j]
        vx = float(x.var())
        b = max(float(((x - x.mean()) * (o - o.mean())).mean()) / vx, 0.0) if vx > 1e-12 else 0.0
        out[:, j] = o.mean() + b * (v[:, j] - x.mean())
    return out


def _fit_global(v_in: np.ndarray, obs_in: np.ndarray, mask_in: np.ndarray):
    """One affine map log-scale prediction -> task value, least squares over the input genes' observed entries."""
    v = v_in[mask_in]
    y = obs_in[mask_in].astype(np.float64)
    if v.size < 2 or v.std() < 1e-12:
        return 0.0, float(y.mean()) if y.size else 0.0
    b, a = np.polyfit(v, y, 1)
    return float(b), float(a)


def reference_impute(task, mapper, *, n_folds: int, fill: str, fill_k: int, calibrate: str,
                     min_input_genes: int = 2, extra: dict | None = None,
                     prediction_scale: str = "expression") -> np.ndarray:
    """Impute ``task`` with a reference ``mapper`` under the protocol above; returns (n_spots, n_genes) float32.

    ``n_folds``, ``fill``, ``fill_k`` and ``calibrate`` are each reference method's parameters, whose defaults live
    in its method.yaml only (no default here to drift from them).

    Records ``task.info["reference_protocol"]`` (when the task has an ``info`` dict).
    """
    if task.reference is None:
        raise ValueError("this method needs a paired scRNA-seq reference and the task has none")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if calibrate not in CALIBRATIONS:
        raise ValueError(f"calibrate must be one of {CALIBRATIONS}, got {calibrate!r}")
    if prediction_scale not in PREDICTION_SCALES:
        raise ValueError(f"prediction_scale must be one of {PREDICTION_SCALES}, got {prediction_scale!r}")
    if int(n_folds) < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    ref = task.reference
    genes = list(task.genes)
    mask = np.asarray(task.observed_mask, dtype=bool)
    obs = np.asarray(task.observed, dtype=np.float64)
    held = ~mask
    train = np.asarray(task.train_spots, dtype=bool)
    fitm = mask & train[:, None]               # what a fill, a calibration or a fallback may read
    match = match_genes(genes, ref.var_names)
    shared = np.array([g in match for g in genes])
    has_obs = mask.any(0)
    has_held = held.any(0)
    full = shared & ~has_obs & has_held        # gene masks: predicted directly
    partial = shared & has_obs & has_held      # entry masks: K-fold
    inputs_all = np.flatnonzero(shared & has_obs)

    # truth-free complete inputs (only the columns a pass may use are ever handed over)
    values = _gene_fill(obs, mask, task.coords, fill, fill_k, train)
    counts_obs = np.asarray(task.observed_counts, dtype=np.float64)
    lib = np.asarray(task.library_size, dtype=np.float64)[:, None]
    counts = _gene_fill(counts_obs / lib, mask, task.coords, fill, fill_k, train) * lib
    counts = np.where(mask, np.nan_to_num(counts_obs), np.maximum(counts, 0.0))

    out = np.where(mask, obs, np.nan)
    predicted = np.zeros(len(genes), dtype=bool)
    passes = []
    rng = np.random.default_rng(int(task.seed))
    part_idx = np.flatnonzero(partial)
    k = int(min(int(n_folds), max(len(part_idx), 1)))
    order = rng.permutation(part_idx)
    folds = [order[i::k] for i in range(k)] if len(part_idx) else []
    if full.any():
        folds.append(np.flatnonzero(full))
    for fi, targets in enumerate(folds):
        direct = bool(full[targets].all())
        tset = set(targets.tolist())
        inp = np.array([j for j in inputs_all if j not in tset], dtype=int)
        if len(inp) < int(min_input_genes):
            passes.append({"fold": fi, "n_input": int(len(inp)), "n_predict": 0, "skipped": "too few input genes"})
            continue
        mode = calibrate if calibrate != "auto" else ("global" if direct else "linear")
        predict_idx = targets if mode != "global" else np.concatenate([targets, inp])

        def call(rows):
            """The mapper on the spots ``rows`` (its predictions of those spots, on a log scale)."""
            mi = MapperInput(genes=[genes[j] for j in inp], values=values[np.ix_(rows, inp)].astype(np.float32),
                             counts=counts[np.ix_(rows, inp)].copy(),
                             coords=np.asarray(task.coords, dtype=np.float64)[rows].copy(),
                             reference=ref, ref_genes=[match[genes[j]] for j in inp],
                             predict=[match[genes[j]] for j in predict_idx], seed=int(task.seed),
                             device=str(task.device), scratch=task.scratch, fold=-1 if direct else fi,
                             extra=dict(extra or {}))
            raw = np.asarray(mapper(mi), dtype=np.float64)
            if raw.shape != (len(rows), len(predict_idx)):
                raise ValueError(f"mapper returned shape {raw.shape}, expected {(len(rows), len(predict_idx))}")
            bad = ~np.isfinite(raw)
            if bad.any():  # a diverged or overflowed mapper fails its row; a fill would pass for a prediction
                raise FloatingPointError(f"the mapper returned {int(bad.sum())} non-finite predictions of {raw.size} "
                                         f"in pass {fi} (genes: {', '.join(np.array(mi.predict)[bad.any(0)][:5])})")
            return _log_scale(raw, prediction_scale)

        def calibrated(v, rows):
            """``v`` (the mapper's output on ``rows``) on the task's scale, fitted on the train spots' observed
            entries among ``rows`` only."""
            f = fitm[rows]
            if mode in ("moments", "linear"):
                fit = _calibrate_moments if mode == "moments" else _calibrate_linear
                p = fit(v[:, :nt], obs[rows][:, targets], f[:, targets])
                return np.where(f[:, targets].any(0)[None, :], p, _observed_means(task)[targets][None, :])
            b, a = _fit_global(v[:, nt:], obs[rows][:, inp], f[:, inp])
            return a + b * v[:, :nt]

        nt = len(targets)
        every = np.arange(task.n_spots)
        pred = calibrated(call(every), every)
        on_train = np.flatnonzero(train)
        if not train.all() and held[np.ix_(on_train, targets)].any():
            # inductive: the train spots' own predictions come from a mapping of the train spots alone, so that
            # nothing the test fold holds reaches them (the test fold's predictions need a mapping that includes it)
            pred[on_train] = calibrated(call(on_train), on_train)
        out[:, targets] = np.where(mask[:, targets], obs[:, targets], pred)
        predicted[targets] = True
        passes.append({"fold": fi, "n_input": int(len(inp)), "n_predict": int(nt), "calibrate": mode})
    # fallback: held-out entries not predicted from the reference
    fb = has_held & ~predicted
    gm = _observed_means(task)
    out[:, fb] = np.where(mask[:, fb], obs[:, fb], gm[fb][None, :])
    if not np.isfinite(out).all():
        raise FloatingPointError(f"{int((~np.isfinite(out)).sum())} non-finite values after calibration")
    info = {"n_genes": len(genes), "n_shared_genes": int(shared.sum()), "n_genes_held_out": int(has_held.sum()),
            "n_genes_from_reference": int(predicted.sum()), "n_genes_fallback": int(fb.sum()),
            "fallback": "gene mean of observed entries", "n_folds": int(k if len(part_idx) else 0),
            "direct_pass": bool(full.any()), "fill": fill, "fill_k": int(fill_k), "calibrate": calibrate,
            "passes": passes}
    store = getattr(task, "info", None)
    if isinstance(store, dict):
        store["reference_protocol"] = info
    return out.astype(np.float32)
