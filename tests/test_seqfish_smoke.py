"""Real-data smoke test: seqFISH field 43 (counts + locations tables) through the user-dataset path.

Skips when ../shared is absent (a user's fresh clone)."""

import numpy as np
import pytest

from tests.conftest import SHARED

DATA = SHARED / "data" / "seqfish_field43"
pytestmark = pytest.mark.skipif(not (DATA / "counts.csv").exists(), reason="../shared/data/seqfish_field43 not available")


def test_seqfish_through_prepare_preprocess_mask_impute_evaluate(tmp_path):
    from stbench.data.masks import MaskSpec
    from stbench.data.preprocess import PreprocessConfig
    from stbench.steps import evaluate_step, impute_step, mask_step, prepare, preprocess_step, task_step

    spec = {"format": "tables", "counts": str(DATA / "counts.csv"), "locations": str(DATA / "locations.csv"),
            "source": {"platform": "seqFISH", "species": "mouse", "tissue": "hippocampus"}}
    rep = prepare("seqfish", spec, tmp_path / "prepared.h5ad", tmp_path / "prepare.json")
    assert rep["spots"] == 131 and rep["genes"] == 249
    import anndata as ad

    a = ad.read_h5ad(tmp_path / "prepared.h5ad")
    assert not any(g.startswith("'") for g in a.var_names)  # R-style quoted names cleaned
    assert a.obsm["spatial"].shape == (131, 2)
    qc = preprocess_step(tmp_path / "prepared.h5ad", PreprocessConfig(n_genes=200), tmp_path / "pre.h5ad", tmp_path / "qc.json")
    assert qc["genes_kept"] == 200
    mask_step(tmp_path / "pre.h5ad", MaskSpec("random", 0.1), 0, tmp_path / "mask.npz")
    task_step(tmp_path / "pre.h5ad", tmp_path / "mask.npz", tmp_path / "task.npz", dataset="seqfish")
    results = {}
    for m in ("mean", "knn"):
        out = tmp_path / m
        impute_step(tmp_path / "task.npz", m, "default", {}, out, device="cpu", hide=[tmp_path, DATA])
        res = evaluate_step(tmp_path / "pre.h5ad", tmp_path / "mask.npz", tmp_path / "task.npz", out / "imputed.npz",
                            out / "run.json", out / "metrics.json")
        assert res["status"] == "ok"
        results[m] = res["metrics"]
    assert np.isfinite(results["knn"]["pcc"]) and np.isfinite(results["mean"]["rmse"])
