"""Mean imputation: each missing entry gets the mean of its spot's (or gene's) observed values.

``axis: gene`` averages over the train spots only (under ``inductive`` the test fold is not fitted on)."""

import numpy as np


def impute(task, *, axis: str):
    if axis not in ("spot", "gene"):
        raise ValueError(f"axis must be 'spot' or 'gene', got {axis!r}")
    x = task.observed
    m = task.observed_mask
    ax = 1 if axis == "spot" else 0
    if axis == "gene":
        m = m & np.asarray(task.train_spots, dtype=bool)[:, None]
    total = np.where(m, x, 0.0).sum(axis=ax, dtype=np.float64)
    count = m.sum(axis=ax)
    fallback = float(total.sum() / max(int(count.sum()), 1)) if m.any() else 0.0
    means = np.where(count > 0, total / np.maximum(count, 1), fallback)
    fill = means[:, None] if axis == "spot" else means[None, :]
    return np.where(task.observed_mask, x, fill).astype(np.float32)
