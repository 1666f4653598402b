"""Shared fixtures: a small simulated dataset, preprocessed and masked (no network, no GPU)."""

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def small_dataset():
    from stbench.data.simulate import simulate_demo

    return simulate_demo(seed=3, n_rows=8, n_cols=9, n_genes=60, n_cells=200)


@pytest.fixture(scope="session")
def small_pre(small_dataset):
    from stbench.data.preprocess import PreprocessConfig, preprocess

    pre, _ = preprocess(small_dataset[0], PreprocessConfig(n_genes=50, min_detection=0.1))
    return pre


@pytest.fixture(scope="session")
def small_mask(small_pre):
    from stbench.data.masks import MaskSpec, make_mask

    return make_mask(np.asarray(small_pre.layers["counts"]) > 0, MaskSpec("random", 0.1), seed=0)
