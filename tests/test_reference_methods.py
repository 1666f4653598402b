"""Each reference method (SpaGE, Tangram, gimVI, stPlus) on a tiny matched spatial/scRNA-seq pair: its
prediction of the held-out entries beats the per-gene mean (a real signal check, not only shapes).

The pair is the demo simulator's (spatial domains = reference cell types), small enough for seconds.
Methods whose upstream package is not installed are skipped with the reason.
"""

import importlib.util

import numpy as np
import pytest

from stbench.kit.methodkit import torch_threads
from stbench.results.metrics import evaluate_imputation
from stbench.run.registry import discover
from stbench.data.task import build_task, truth_on_scale

NEEDS = {"spage": None, "tangram": "tangram", "gimvi": "scvi", "stplus": None}


@pytest.fixture(scope="module")
def pair():
    from stbench.data.masks import MaskSpec, make_mask
    from stbench.data.preprocess import PreprocessConfig, preprocess
    from stbench.data.simulate import simulate_demo

    spatial, ref = simulate_demo(seed=5, n_rows=12, n_cols=12, n_genes=80, n_cells=400)
    pre, _ = preprocess(spatial, PreprocessConfig(n_genes=60, min_detection=0.1))
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec("random", 0.1), seed=0)
    return pre, ref, held, train


def _score(pre, held, task, pred):
    return evaluate_imputation(truth_on_scale(pre, task), np.asarray(pred), held)["metrics"]


# gimVI's `test` preset (5 epochs) learns little on this 144-spot pair, and `moments` calibration then puts it below
# the per-gene mean (measured 2026-12-06: PCC 0.651 / per-gene 0.00 at 5 epochs, 0.674 / 0.10 at 50 epochs, against the
# mean's 0.78). Trained 50 epochs (2 folds, ~8 s) and calibrated `linear`, it beats the mean (PCC 0.812, per-gene
# 0.302, RMSE 0.826 vs 0.887); 1 epoch does not (per-gene 0.148): the check below can fail.
OVERRIDES = {"gimvi": {"max_epochs": 50, "n_folds": 2, "calibrate": "linear"}}


@pytest.mark.parametrize("name", ["gimvi", "spage", "stplus", "tangram"])
def test_beats_the_per_gene_mean_on_held_out_entries(name, pair):
    mod = NEEDS[name]
    if mod and importlib.util.find_spec(mod) is None:
        pytest.skip(f"{name} needs the '{mod}' package, not installed here")
    methods = discover()
    if name not in methods:
        pytest.skip(f"methods/{name} not present")
    pre, ref, held, train = pair
    m = methods[name]
    task = build_task(pre, held, train, reference=ref, seed=0)
    with torch_threads(1):  # 2 shared cores: more torch threads only contend
        pred = m.load_impute()(task, **m.params("test", OVERRIDES.get(name)))
    assert pred.shape == (task.n_spots, task.n_genes) and np.isfinite(pred).all()
    np.testing.assert_array_equal(pred[task.observed_mask], task.observed[task.observed_mask])
    base_task = build_task(pre, held, train, seed=0)
    base = methods["mean"].load_impute()(base_task, **{**methods["mean"].params("test"), "axis": "gene"})
    got, mean = _score(pre, held, task, pred), _score(pre, held, base_task, base)
    assert task.info["reference_protocol"]["n_genes_from_reference"] == task.n_genes
    assert got["rmse"] < mean["rmse"], (name, got, mean)
    assert got["pcc"] > mean["pcc"], (name, got, mean)
    assert got["pcc_gene"] > 0.2, (name, got)


def test_tangram_clusters_mode_without_labels_is_not_applicable():
    """On a reference without cell-type labels (HP, HO) the clusters variant is skipped, not failed;
    a column the user names but the reference lacks stays an error."""
    import pandas as pd

    from stbench.kit.methodkit import NotApplicable

    find_label = discover()["tangram"].load_module("impute").find_label
    assert find_label(pd.DataFrame({"orig.ident": ["a"], "cell_type": ["T"]}), "auto") == "cell_type"
    with pytest.raises(NotApplicable, match=r"^no cell-type labels in the reference \(.*obs columns: orig\.ident"):
        find_label(pd.DataFrame({"orig.ident": ["a"]}), "auto")
    with pytest.raises(ValueError, match="no obs column 'ClusterName'"):
        find_label(pd.DataFrame({"orig.ident": ["a"]}), "ClusterName")


def test_tangram_a_large_reference_never_zeroes_high_expression_spots():
    """Tangram's projection sums log values over the cells mapped to a spot (~n_cells / n_spots of them):
    8,000 cells over 20 spots pass exp's overflow at 709. The same reference replicated 40 times maps the
    same way, so its prediction must match the unreplicated one's (before the fix, expm1 overflowed to inf,
    the protocol turned inf into 0 and the highest spots got the lowest predictions)."""
    if importlib.util.find_spec("tangram") is None:
        pytest.skip("tangram needs the 'tangram' package, not installed here")
    import anndata as ad

    from stbench.data.masks import MaskSpec, make_mask
    from stbench.data.preprocess import PreprocessConfig, preprocess
    from stbench.data.simulate import simulate_demo

    spatial, ref = simulate_demo(seed=3, n_rows=4, n_cols=5, n_genes=40, n_cells=200)
    pre, _ = preprocess(spatial, PreprocessConfig(n_genes=30, min_detection=0.1))
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec("random", 0.2), seed=0)
    m = discover()["tangram"]
    preds = []
    for reference in (ref, ad.concat([ref] * 40, index_unique="-")):
        task = build_task(pre, held, train, reference=reference, seed=0)
        with torch_threads(1):
            preds.append(m.load_impute()(task, **m.params("test")))
    small, big = (p[held] for p in preds)
    assert np.isfinite(big).all()
    assert np.corrcoef(small, big)[0, 1] > 0.98
