"""SpaDiT's metric definitions (stbench/results/metrics/spadit.py) pinned on hand-computed vectors, beside
SpatialBenchmarking's (which must stay what they were), and the per-dataset Accuracy Score."""

import math

import numpy as np
import pandas as pd
import pytest

from stbench.results.metrics import accuracy_score_spadit, evaluate_imputation, js_spadit, per_gene_metrics, ssim_spadit


def _col(*vectors):
    """Genes as columns, every entry held out."""
    a = np.array(vectors, dtype=float).T
    return a, np.ones_like(a, dtype=bool)


def test_ssim_spadit_hand_computed():
    # gene 0: t=[0,2], p=[2,0]: L=2, mu=1,1, sigma=1,1, cov=-1; C1=.02^2, C2=.06^2, C3=C2/2 -> l=c=1, s=(-1+C3)/(1+C3)
    # gene 1 (negative prediction): t=[1,3], p=[-1,1]: L=3, mu=2,0, sigma=1,1, cov=1 -> l=C1/(4+C1), c=s=1, C1=.03^2
    # gene 2 (all-zero truth): t=[0,0], p=[1,1]: L=1, mu=0,1, sigma=0,0 -> l=C1/(1+C1), C1=1e-4; c=s=1
    # gene 3 (both all zero): L=0 -> 0/0 -> NaN (as upstream)
    t, m = _col([0, 2], [1, 3], [0, 0], [0, 0])
    p, _ = _col([2, 0], [-1, 1], [1, 1], [0, 0])
    got = ssim_spadit(t, p, m)
    c3 = 0.06**2 / 2
    np.testing.assert_allclose(got[:3], [(-1 + c3) / (1 + c3), 0.0009 / 4.0009, 1e-4 / 1.0001], rtol=1e-12)
    assert np.isnan(got[3])
    # SpatialBenchmarking scales each vector by its own maximum: with unequal maxima (gene 1) the two differ
    sb = per_gene_metrics(t, p, m)["ssim_gene"][1]
    assert not math.isclose(sb, got[1], rel_tol=1e-3)


def test_ssim_spadit_uses_only_held_out_entries_and_is_one_when_exact():
    t = np.array([[1.0, 5.0], [2.0, 0.0], [4.0, 9.0]])
    p = t.copy()
    p[0, 0] = 100.0                                      # observed entry, not held out: must not count
    m = np.array([[False, True], [True, True], [True, True]])
    np.testing.assert_allclose(ssim_spadit(t, p, m), [1.0, 1.0])


def test_js_spadit_is_scipys_distance_on_raw_vectors():
    # t=[1,0], p=[0,1]: P=[1,0], Q=[0,1], M=[.5,.5] -> divergence ln 2, distance sqrt(ln 2)
    # t=[1,1], p=[1,3]: P=[.5,.5], Q=[.25,.75], M=[.375,.625]
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)
    d1 = math.sqrt(0.5 * kl([.5, .5], [.375, .625]) + 0.5 * kl([.25, .75], [.375, .625]))
    t, m = _col([1, 0], [1, 1], [1, 1], [1, 2], [0, 0])
    p, _ = _col([0, 1], [1, 3], [2, 6], [-1, 2], [1, 1])
    got = js_spadit(t, p, m)
    np.testing.assert_allclose(got[:3], [math.sqrt(math.log(2)), d1, d1], rtol=1e-12)  # scale-free: [2,6] ~ [1,3]
    assert np.isnan(got[3])                              # a negative prediction: scipy gives inf -> undefined
    assert np.isnan(got[4])                              # an all-zero truth: 0/0 -> undefined
    # SpatialBenchmarking's js_gene is the divergence (no square root): ln 2 for gene 0
    assert math.isclose(per_gene_metrics(t, p, m)["js_gene"][0], math.log(2), rel_tol=1e-9)


def test_evaluate_reports_both_families_with_gene_means():
    t, m = _col([1, 2, 3, 4], [2, 2, 5, 1], [0, 0, 0, 0])
    p, _ = _col([1, 2, 3, 5], [1, 3, 4, 1], [1, 0, 0, 0])
    r = evaluate_imputation(t, p, m)
    pg = r["per_gene"]
    v = r["metrics"]
    assert math.isclose(v["ssim_spadit"], float(np.mean(ssim_spadit(t, p, m))), rel_tol=1e-12)
    assert math.isclose(v["js_spadit"], float(np.nanmean(pg["js_spadit"])), rel_tol=1e-12)
    assert r["n_genes_scored"]["js_spadit"] == 2          # gene 2: all-zero truth
    assert math.isclose(v["pcc_spadit"], float(np.nanmean(pg["pcc_gene"])), rel_tol=1e-12)
    assert math.isclose(v["rmse_spadit"], float(np.mean(pg["rmse_gene"])), rel_tol=1e-12)
    assert math.isclose(v["ssim_gene"], float(np.nanmedian(pg["ssim_gene"])), rel_tol=1e-12)


def test_accuracy_score_spadit_ranks_methods_best_is_n_ties_min():
    t = pd.DataFrame({"pcc_spadit": [0.9, 0.5, 0.5], "ssim_spadit": [0.8, 0.2, 0.6],
                      "rmse_spadit": [0.1, 0.9, 0.5], "js_spadit": [0.2, 0.1, 0.3]}, index=["a", "b", "c"])
    # PCC: a=3, b and c tie for 1-2 -> both 1 (min); SSIM: a=3, c=2, b=1; RMSE (low best): a=3, c=2, b=1;
    # JS: b=3, a=2, c=1  ->  a=(3+3+3+2)/4, b=(1+1+1+3)/4, c=(1+2+2+1)/4
    got = accuracy_score_spadit(t)
    np.testing.assert_allclose(got.loc[["a", "b", "c"]].to_numpy(), [11 / 4, 6 / 4, 6 / 4])
    t.loc["c", "pcc_spadit"] = np.nan                    # a NaN metric: c leaves every ranking, its AS is NaN
    got = accuracy_score_spadit(t)                       # a, b ranked among two: a=(2+2+2+1)/4, b=(1+1+1+2)/4
    assert np.isnan(got["c"]) and got["a"] == 7 / 4 and got["b"] == 5 / 4


def test_tables_write_spadit_files_only_when_asked(tmp_path):
    """``metric_definitions: spadit`` adds Table 1 under SpaDiT's definitions and the per-dataset AS table; every
    table1.md names its definitions; the default run writes neither file."""
    import json

    from stbench.results.tables import write_tables

    files = []
    for name, pcc, rmse, seed in [("good", 0.9, 0.1, 0), ("good", 0.8, 0.2, 1), ("bad", 0.1, 0.9, 0), ("bad", 0.1, 0.9, 1)]:
        f = tmp_path / name / f"{seed}.json"
        f.parent.mkdir(exist_ok=True)
        f.write_text(json.dumps({"dataset": "D", "method": name, "variant": "default", "seed": seed, "status": "ok",
                                 "mask": {"strategy": "random", "ratio": 0.1, "among": "all"}, "wall_time_s": 1.0,
                                 "metrics": {"pcc": pcc, "rmse": rmse, "pcc_spadit": pcc, "ssim_spadit": pcc,
                                             "rmse_spadit": rmse, "js_spadit": rmse}}))
        files.append(f)
    variants = [{"method": m, "name": "default", "label": m.upper(), "table": "table1", "figure": None, "x": None}
                for m in ("good", "bad")]
    protocols = {"D": {"preprocess": {}, "masks": [{}], "seeds": [0, 1]}}
    write_tables(files, variants, protocols, tmp_path / "sb")
    assert not (tmp_path / "sb" / "accuracy_score_spadit.csv").exists()
    assert "Metric definitions: spatialbenchmarking" in (tmp_path / "sb" / "table1.md").read_text()
    write_tables(files, variants, protocols, tmp_path / "sp", metric_definitions="spadit")
    assert "Metric definitions: spadit" in (tmp_path / "sp" / "table1.md").read_text()
    acc = pd.read_csv(tmp_path / "sp" / "accuracy_score_spadit.csv").set_index("label")
    assert acc.loc["GOOD", "accuracy_score_spadit"] == 2.0 and acc.loc["BAD", "accuracy_score_spadit"] == 1.0
    assert math.isclose(acc.loc["GOOD", "pcc_spadit"], 0.85)
    t1 = pd.read_csv(tmp_path / "sp" / "table1_spadit.csv", index_col=0)
    assert t1.loc["GOOD", "D SSIM (SpaDiT, gene mean)"] == "0.850±0.050"
    with pytest.raises(ValueError, match="metric_definitions"):
        write_tables(files, variants, protocols, tmp_path / "x", metric_definitions="SpaDiT")
