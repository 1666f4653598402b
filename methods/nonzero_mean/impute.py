"""Leak control: fill each held-out entry with the mean of the gene's observed nonzero values (what
``among: nonzero`` promises every held-out entry is)."""

import numpy as np


def impute(task):
    m = task.observed_mask
    x = np.nan_to_num(task.observed)
    nz = m & (np.nan_to_num(task.observed_counts) > 0)
    n_nz = nz.sum(0)
    gene_mean = np.where(m, x, 0.0).sum(0) / np.maximum(m.sum(0), 1)  # no nonzero observed value: the gene's mean
    fill = np.where(n_nz > 0, np.where(nz, x, 0.0).sum(0) / np.maximum(n_nz, 1), gene_mean)
    return np.where(m, x, fill[None, :]).astype(np.float32)
