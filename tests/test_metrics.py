import math

import numpy as np
from scipy.spatial.distance import jensenshannon

from stbench.results.metrics import accuracy_score, evaluate_imputation, flat_metrics, per_gene_metrics


def test_flat_metrics_against_hand_computed_values():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 2.0, 2.0, 6.0])
    v, why = flat_metrics(t, p)
    assert why == {}
    assert math.isclose(v["rmse"], math.sqrt((1 + 0 + 1 + 4) / 4))
    assert math.isclose(v["mae"], (1 + 0 + 1 + 2) / 4)
    # pcc: t centred (-1.5,-.5,.5,1.5), p centred (-1,-1,-1,3): cov 6, |t|^2 5, |p|^2 12
    assert math.isclose(v["pcc"], 6 / math.sqrt(5 * 12))
    assert math.isclose(v["cosine"], (2 + 4 + 6 + 24) / (math.sqrt(30) * math.sqrt(48)))


def test_undefined_values_are_nan_with_a_reason():
    v, why = flat_metrics(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0]))
    assert math.isnan(v["pcc"]) and why["pcc"] == "constant prediction"
    assert math.isfinite(v["rmse"])
    v, why = flat_metrics(np.zeros(3), np.zeros(3))
    assert math.isnan(v["cosine"]) and "all-zero" in why["cosine"]
    v, why = flat_metrics(np.array([]), np.array([]))
    assert all(math.isnan(x) for x in v.values()) and why["mae"] == "no held-out entries"


def test_per_gene_metrics_match_a_loop_and_ignore_observed_entries():
    rng = np.random.default_rng(0)
    t = rng.random((30, 6)); p = t + rng.normal(0, 0.2, t.shape); h = rng.random(t.shape) < 0.5
    p_obs_changed = np.where(h, p, 1e6)  # values at observed entries must not matter
    r = per_gene_metrics(t, p_obs_changed, h)
    for j in range(6):
        tt, pp = t[h[:, j], j], p[h[:, j], j]
        assert math.isclose(r["pcc_gene"][j], np.corrcoef(tt, pp)[0, 1], rel_tol=1e-9)
        assert math.isclose(r["rmse_gene"][j], np.sqrt(np.mean((tt - pp) ** 2)), rel_tol=1e-9)
        assert math.isclose(r["mae_gene"][j], np.mean(np.abs(tt - pp)), rel_tol=1e-9)
        P, Q = tt / tt.sum(), np.clip(pp, 0, None) / np.clip(pp, 0, None).sum()
        js = jensenshannon(P, Q) ** 2  # scipy returns the JS distance (natural log)
        assert math.isclose(r["js_gene"][j], js, rel_tol=1e-6)


def test_ssim_is_one_for_perfect_prediction_and_js_nan_for_negative_truth():
    t = np.linspace(0.1, 2, 20).reshape(10, 2)
    r = per_gene_metrics(t, t.copy(), np.ones_like(t, bool))
    np.testing.assert_allclose(r["ssim_gene"], 1.0)
    np.testing.assert_allclose(r["js_gene"], 0.0, atol=1e-12)
    r = per_gene_metrics(t - 1, t - 1, np.ones_like(t, bool))
    assert np.isnan(r["js_gene"]).all()


def test_evaluate_imputation_reports_medians_and_counts():
    rng = np.random.default_rng(1)
    t = rng.random((40, 5)); h = rng.random(t.shape) < 0.3
    res = evaluate_imputation(t, t, h)
    assert res["n_held_out"] == h.sum()
    assert math.isclose(res["metrics"]["pcc"], 1.0) and res["metrics"]["rmse"] == 0
    assert res["n_genes_scored"]["pcc_gene"] == 5


def test_accuracy_score_ranks_best_method_highest():
    table = {"good": {"pcc_gene": 0.9, "ssim_gene": 0.8, "rmse_gene": 0.1, "js_gene": 0.01},
             "bad": {"pcc_gene": 0.1, "ssim_gene": 0.2, "rmse_gene": 0.9, "js_gene": 0.5},
             "mid": {"pcc_gene": 0.5, "ssim_gene": 0.5, "rmse_gene": 0.5, "js_gene": float("nan")}}
    a = accuracy_score(table)
    assert a["good"] == 3 and a["bad"] < a["mid"] < a["good"]
