"""SCLD's measures of synthesis quality (paper Sec. 4.2), and a train-on-synthetic test-on-real classifier.

- ``rf_auc``: a random forest told real from synthetic cells; ROC AUC on a held-out half (0.5: indistinguishable).
- ``mmd``: maximum mean discrepancy with the paper's kernel (Eq. 14): a sum of Gaussians with sigma in
  {m/2, m, 2m}, m the median over the real cells of their mean distance to their 25 nearest neighbours.
- ``ot_distance``: the exact 2-Wasserstein distance between the two point clouds (POT, uniform weights).
- ``tstr``: a classifier of cell type trained on synthetic cells, scored on real ones (macro F1).
All take log-normalised cells on one scale (``log_normalise`` with the real training cells' median total).
"""

from __future__ import annotations

import numpy as np
# Imported inside functions on purpose: POT, scikit-learn, scipy (import cost; each measure its own).


def log_normalise(counts: np.ndarray, median: float) -> np.ndarray:
    """log1p of each cell scaled to ``median`` total counts (cells with none stay 0)."""
    c = np.asarray(counts, np.float64)
    tot = c.sum(1, keepdims=True)
    return np.log1p(np.where(tot > 0, c / np.maximum(tot, 1e-12) * median, 0.0))


def rf_auc(real: np.ndarray, syn: np.ndarray, seed: int = 0) -> float:
    """ROC AUC of a random forest (100 trees) separating real (0) from synthetic (1), fitted on a stratified
    half and scored on the other half."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x = np.vstack([real, syn])
    y = np.r_[np.zeros(len(real)), np.ones(len(syn))]
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    rf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1).fit(xa, ya)
    return float(roc_auc_score(yb, rf.predict_proba(xb)[:, 1]))


def kernel_scale(real: np.ndarray, k: int = 25) -> float:
    """m of Eq. 14: the median over the real cells of their mean distance to their k nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(real) - 1))
    d, _ = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)
    return float(np.median(d[:, 1:].mean(1)))


def mmd(real: np.ndarray, syn: np.ndarray, scale: float | None = None) -> float:
    """Biased MMD^2 estimate with the paper's multi-scale Gaussian kernel."""
    from scipy.spatial.distance import cdist

    m = kernel_scale(real) if scale is None else float(scale)

    def k(a, b):
        d2 = cdist(a, b, "sqeuclidean")
        return sum(np.exp(-d2 / s ** 2) for s in (m / 2, m, 2 * m))

    return float(k(real, real).mean() + k(syn, syn).mean() - 2 * k(real, syn).mean())


def ot_distance(real: np.ndarray, syn: np.ndarray) -> float:
    """Exact 2-Wasserstein distance (POT's network simplex, uniform weights, squared Euclidean cost)."""
    import ot

    a, b = np.full(len(real), 1.0 / len(real)), np.full(len(syn), 1.0 / len(syn))
    return float(np.sqrt(ot.emd2(a, b, ot.dist(real, syn), numItermax=1_000_000)))


def tstr(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int = 0) -> float:
    """Macro F1 on ``test`` (real cells) of a random forest of cell type fitted on ``train``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score

    rf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1).fit(train_x, train_y)
    return float(f1_score(test_y, rf.predict(test_x), average="macro"))
