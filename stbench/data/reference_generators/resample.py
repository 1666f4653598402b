"""The simple comparator: real cells of the requested type drawn with replacement, each entry redrawn with
negative-binomial noise around the drawn cell's count (Poisson of count x Gamma(1/phi, phi), mean kept)."""

from __future__ import annotations

import numpy as np

from stbench.data.reference_generators.cells import cell_labels, requested_labels, synthetic_anndata
from stbench.kit.reference_protocol import reference_counts

PRESETS = {"default": {"phi": 0.1}, "paper": {}, "quick": {}, "test": {}}


def generate(reference, n_per_type: dict, *, by: str, seed: int = 0, params: dict, device: str = "cpu"):
    """Synthetic cells: ``n_per_type[t]`` noisy copies of randomly drawn real cells of type ``t``."""
    phi = float(params["phi"])
    if phi < 0:
        raise ValueError(f"resample: phi must be >= 0, got {phi}")
    counts, labels = reference_counts(reference), cell_labels(reference, by)
    want = requested_labels(n_per_type, labels)
    rng = np.random.default_rng(int(seed))
    src = np.empty(len(want), dtype=int)
    for t in np.unique(want):
        sel = want == t
        src[sel] = rng.choice(np.flatnonzero(labels == t), size=int(sel.sum()), replace=True)
    mu = counts[src]
    if phi > 0:
        mu = mu * rng.gamma(1.0 / phi, phi, size=mu.shape)
    return synthetic_anndata(rng.poisson(mu).astype(np.float32), want, reference, by, "resample")
