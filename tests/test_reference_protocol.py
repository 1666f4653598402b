"""The truth-free reference protocol (stbench.kit.reference_protocol) shared by gimVI, Tangram, SpaGE, stPlus."""

import numpy as np
import pytest

from stbench.kit.reference_protocol import MapperInput, reference_impute, spatial_knn_fill
from stbench.data.task import build_task

# the protocol's four parameters as the reference methods' method.yaml give them (the function has no defaults)
PROTOCOL = dict(n_folds=5, fill="knn", fill_k=5, calibrate="auto")


def _impute(task, mapper, **kw):
    return reference_impute(task, mapper, **{**PROTOCOL, **kw})


def _task(small_pre, small_dataset, held, reference=True):
    train = np.ones(held.shape[0], dtype=bool)
    return build_task(small_pre, held, train, reference=small_dataset[1] if reference else None, seed=0)


class Recorder:
    """A fake mapper: records what it is given, predicts each gene's reference mean (constant)."""

    def __init__(self):
        self.calls = []

    def __call__(self, inp: MapperInput):
        self.calls.append(inp)
        return np.ones((inp.values.shape[0], len(inp.predict)))


def test_fold_genes_never_reach_the_mapper_that_predicts_them(small_pre, small_dataset, small_mask):
    held, _ = small_mask
    task = _task(small_pre, small_dataset, held)
    rec = Recorder()
    out = _impute(task, rec, n_folds=5)
    assert len(rec.calls) == 5
    predicted = []
    for inp in rec.calls:
        assert not set(inp.predict) & set(inp.ref_genes), "a fold's genes were among the mapper's inputs"
        assert inp.values.shape == (task.n_spots, len(inp.genes)) == inp.counts.shape
        assert np.isfinite(inp.values).all() and np.isfinite(inp.counts).all()
        predicted += inp.predict
        # the input columns carry no value of a predicted gene
        for g in inp.predict:
            j = task.genes.index(g)
            col = np.nan_to_num(task.observed[:, j])
            assert not any(np.array_equal(col, inp.values[:, i]) for i in range(inp.values.shape[1]))
    shared_with_held = {g for j, g in enumerate(task.genes) if (~task.observed_mask[:, j]).any()}
    assert set(predicted) == shared_with_held and len(predicted) == len(set(predicted))
    m = task.observed_mask
    np.testing.assert_array_equal(out[m], task.observed[m])
    info = task.info["reference_protocol"]
    assert info["n_genes_from_reference"] == len(shared_with_held) and info["n_genes_fallback"] == 0


def test_held_out_entries_of_input_genes_are_filled_truth_free(small_pre, small_dataset, small_mask):
    held, _ = small_mask
    task = _task(small_pre, small_dataset, held)
    rec = Recorder()
    _impute(task, rec, n_folds=3, fill="knn")
    inp = rec.calls[0]
    expect = spatial_knn_fill(task.observed, task.observed_mask, task.coords, 5)
    cols = [task.genes.index(g) for g in inp.genes]
    np.testing.assert_allclose(inp.values, expect[:, cols], rtol=1e-5)


def test_gene_mask_direct_pass_and_fallback_for_genes_absent_from_the_reference(small_pre, small_dataset):
    held = np.zeros(small_pre.shape, dtype=bool)
    held[:, [0, 1, 2]] = True            # three genes unmeasured in space
    ref = small_dataset[1]
    ref = ref[:, [g for g in ref.var_names if g != small_pre.var_names[2]]].copy()  # gene 2 not in the reference
    task = build_task(small_pre, held, reference=ref, seed=0)
    rec = Recorder()
    out = _impute(task, rec)
    assert len(rec.calls) == 1 and rec.calls[0].fold == -1
    assert set(rec.calls[0].predict[:2]) == set(small_pre.var_names[:2])
    assert not set(small_pre.var_names[:3]) & set(rec.calls[0].genes)
    info = task.info["reference_protocol"]
    assert (info["n_genes_from_reference"], info["n_genes_fallback"]) == (2, 1)
    assert np.isfinite(out).all()


def test_no_reference_is_an_error(small_pre, small_dataset, small_mask):
    task = _task(small_pre, small_dataset, small_mask[0], reference=False)
    with pytest.raises(ValueError, match="reference"):
        _impute(task, Recorder())


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_prediction_fails_the_row(small_pre, small_dataset, small_mask, bad):
    """A diverged or overflowed mapper is an error, never a value the protocol fills in."""
    task = _task(small_pre, small_dataset, small_mask[0])

    def mapper(inp):
        out = np.ones((inp.values.shape[0], len(inp.predict)))
        out[0, 0] = bad
        return out

    with pytest.raises(FloatingPointError, match="non-finite"):
        _impute(task, mapper, n_folds=2)


def test_log_scale_predictions_are_taken_as_they_are(small_pre, small_dataset, small_mask):
    """``prediction_scale='log'``: a value past exp's range (Tangram's sum of log values) is calibrated like any
    other; it equals the expression-scale path on log1p of the same prediction."""
    task = _task(small_pre, small_dataset, small_mask[0])
    rng = np.random.default_rng(0)
    cache = {}

    def log_mapper(inp):
        return cache.setdefault(inp.fold, rng.uniform(0, 3, (inp.values.shape[0], len(inp.predict))))

    a = _impute(task, log_mapper, n_folds=2, prediction_scale="log")
    b = _impute(task, lambda inp: np.expm1(cache[inp.fold]), n_folds=2)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    huge = _impute(task, lambda inp: 1000.0 + cache[inp.fold] * 100, n_folds=2, prediction_scale="log")
    np.testing.assert_allclose(huge, a, rtol=1e-4, atol=1e-4)  # moments calibration: affine-invariant per gene


def test_auto_calibration_is_linear_and_shrinks_a_weak_prediction(small_pre, small_dataset, small_mask):
    """``auto`` calibrates entry masks ``linear`` (chosen on real paired data, README): a prediction weakly
    correlated with the truth (r ~ 0.3) is shrunk toward the gene's observed mean, so its held-out RMSE stays at
    the per-gene mean's, where ``moments`` (the full observed spread) is clearly worse."""
    from stbench.kit.methodkit import gene_means
    from stbench.data.task import truth_on_scale

    held = small_mask[0]
    task = _task(small_pre, small_dataset, held)
    truth = truth_on_scale(small_pre, task)
    idx = {g: j for j, g in enumerate(task.genes)}
    rng = np.random.default_rng(3)
    z = (truth - truth.mean(0)) / np.maximum(truth.std(0), 1e-9)
    weak = 0.3 * z + np.sqrt(1 - 0.3 ** 2) * rng.standard_normal(z.shape)     # r ~ 0.3 with the truth

    def mapper(inp):                      # a test-side oracle with noise (the protocol never sees the truth)
        return np.stack([weak[:, idx[g]] for g in inp.predict], 1) + 10.0

    rmse = lambda out: float(np.sqrt(np.mean((out[held] - truth[held]) ** 2)))  # noqa: E731
    auto = _impute(task, mapper, n_folds=2, prediction_scale="log")
    lin = _impute(task, mapper, n_folds=2, prediction_scale="log", calibrate="linear")
    mom = _impute(task, mapper, n_folds=2, prediction_scale="log", calibrate="moments")
    np.testing.assert_array_equal(auto, lin)
    mean = rmse(np.broadcast_to(gene_means(task)[None, :], truth.shape))
    assert rmse(lin) < 1.02 * mean < rmse(mom), (rmse(lin), mean, rmse(mom))
