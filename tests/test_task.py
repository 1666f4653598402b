"""The truth-free task: the evaluation scale from observed entries, and a task file that does not
move when only the held-out values move (under every scale and library-size option)."""

import hashlib

import numpy as np
import pytest

from stbench.data.masks import MaskSpec, make_mask
from stbench.data.preprocess import PreprocessConfig, preprocess
from stbench.data.task import TaskSpec, build_task, load_task, save_task, truth_on_scale

OPTIONS = [(s, lib) for s in ("log", "zscore") for lib in ("observed", "all")]


def _pre(small_dataset, scale, library_size):
    """The preprocessed data and the task step's spec (preprocessing knows nothing of the scale)."""
    pre, _ = preprocess(small_dataset[0], PreprocessConfig(n_genes=50))
    return pre, TaskSpec(scale=scale, library_size=library_size)


def _other_truth(pre, held, *, keep_spot_totals: bool, seed=7):
    """The same dataset with different held-out counts (spot totals kept when asked: the `all` protocol's
    size factors are those totals, recorded before any mask)."""
    rng = np.random.default_rng(seed)
    out = pre.copy()
    c = np.asarray(out.layers["counts"]).copy()
    if keep_spot_totals:  # shuffle each spot's held-out counts among its held-out entries
        for i in np.flatnonzero(held.any(1)):
            j = np.flatnonzero(held[i])
            c[i, j] = rng.permutation(c[i, j])
        assert not np.array_equal(c, pre.layers["counts"])
    else:
        c[held] = rng.integers(0, 500, size=held.sum())
        out.obs["total_counts"] = out.obs["other_counts"] + c.sum(1)
    out.layers["counts"] = c
    out.X = np.log1p(c)  # anything: the task never reads X
    return out


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("scale,library_size", OPTIONS)
def test_task_file_is_bit_identical_when_only_held_out_values_change(small_dataset, scale, library_size, tmp_path):
    pre, spec = _pre(small_dataset, scale, library_size)
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
    other = _other_truth(pre, held, keep_spot_totals=(library_size == "all"))
    assert not np.array_equal(truth_on_scale(pre, build_task(pre, held, train, spec=spec))[held],
                              truth_on_scale(other, build_task(other, held, train, spec=spec))[held])
    save_task(tmp_path / "a.npz", build_task(pre, held, train, spec=spec, seed=3, dataset="d"))
    save_task(tmp_path / "b.npz", build_task(other, held, train, spec=spec, seed=3, dataset="d"))
    assert _sha(tmp_path / "a.npz") == _sha(tmp_path / "b.npz")


def test_library_size_all_carries_the_spot_totals_observed_does_not(small_dataset):
    """Documented weak leak of the paper's protocol: under `all`, a changed held-out total moves the task."""
    pre, spec = _pre(small_dataset, "log", "all")
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
    other = _other_truth(pre, held, keep_spot_totals=False)
    a, b = build_task(pre, held, train, spec=spec), build_task(other, held, train, spec=spec)
    assert not np.array_equal(a.library_size, b.library_size)
    spec = TaskSpec(library_size="observed")
    np.testing.assert_array_equal(build_task(pre, held, train, spec=spec).library_size,
                                  build_task(other, held, train, spec=spec).library_size)


def test_log_scale_with_all_entries_is_the_papers_matrix(small_dataset):
    pre, spec = _pre(small_dataset, "log", "all")
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
    task = build_task(pre, held, train, spec=spec)
    np.testing.assert_allclose(truth_on_scale(pre, task), pre.X, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(task.observed[~held], np.asarray(pre.X)[~held], rtol=1e-5, atol=1e-5)


def test_zscore_statistics_come_from_observed_entries(small_dataset):
    pre, spec = _pre(small_dataset, "zscore", "observed")
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
    task = build_task(pre, held, train, spec=spec)
    obs = np.where(task.observed_mask, task.observed, np.nan)
    np.testing.assert_allclose(np.nanmean(obs, 0), 0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(obs, 0)[np.nanstd(obs, 0) > 0], 1, atol=1e-4)
    # the held-out mean is not recoverable from the column sums any more (the old leak)
    truth = truth_on_scale(pre, task)
    guess = -np.nansum(obs, 0) / np.maximum(held.sum(0), 1)
    cols = held.sum(0) > 3
    held_mean = np.array([truth[held[:, j], j].mean() for j in np.flatnonzero(cols)])
    assert not np.allclose(guess[cols], held_mean, atol=1e-3)


def test_counts_to_scale_reproduces_observed_and_task_file_round_trips(small_dataset, tmp_path):
    pre, spec = _pre(small_dataset, "zscore", "observed")
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec("spot", 0.2), seed=1)
    task = build_task(pre, held, train, spec=spec, seed=5, dataset="x", mask_spec={"strategy": "spot"})
    np.testing.assert_array_equal(task.counts_to_scale(task.observed_counts), task.observed)
    assert np.isnan(task.observed[held]).all() and np.isnan(task.observed_counts[held]).all()
    save_task(tmp_path / "t.npz", task)
    back = load_task(tmp_path / "t.npz", scratch=tmp_path)
    for k in ("observed", "observed_mask", "observed_counts", "coords", "train_spots", "library_size", "gene_mean", "gene_sd"):
        np.testing.assert_array_equal(getattr(back, k), getattr(task, k))
    assert (back.genes, back.spots, back.seed, back.dataset, back.scale) == (task.genes, task.spots, 5, "x", "zscore")
    with pytest.raises(ValueError):
        back.observed[0, 0] = 1.0  # read-only


def test_bad_task_file_is_a_clear_error(tmp_path):
    from stbench.errors import DatasetError

    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="t.npz: not a valid task file"):
        load_task(tmp_path / "t.npz")


@pytest.mark.parametrize("scale,library_size", OPTIONS)
def test_inductive_train_inputs_do_not_read_the_test_fold(small_dataset, scale, library_size):
    """Under ``inductive`` N and the z-score statistics come from the train spots: replacing the test
    fold's counts (observed ones included, and their spot totals) leaves every train spot's task values,
    N and the z-score statistics unchanged. The same change with every spot a train spot (transductive)
    must move them, so the check can fail."""
    pre, spec = _pre(small_dataset, scale, library_size)
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(strategy="inductive"), seed=0)
    assert train.any() and not train.all()
    other = pre.copy()
    c = np.asarray(other.layers["counts"]).copy()
    c[~train] = c[~train] * 3 + 2                      # every count of the test fold, observed or not
    other.layers["counts"] = c
    other.obs["total_counts"] = other.obs["other_counts"] + c.sum(1)
    a, b = build_task(pre, held, train, spec=spec), build_task(other, held, train, spec=spec)
    assert a.median_library_size == b.median_library_size
    np.testing.assert_array_equal(a.gene_mean, b.gene_mean)
    np.testing.assert_array_equal(a.gene_sd, b.gene_sd)
    np.testing.assert_array_equal(a.observed[train], b.observed[train])
    np.testing.assert_array_equal(a.observed_counts[train], b.observed_counts[train])
    assert not np.array_equal(np.nan_to_num(a.observed[~train]), np.nan_to_num(b.observed[~train]))
    everyone = np.ones_like(train)
    ta, tb = build_task(pre, held, everyone, spec=spec), build_task(other, held, everyone, spec=spec)
    assert not np.array_equal(np.nan_to_num(ta.observed[train]), np.nan_to_num(tb.observed[train]))
    # transductive: the statistics are those of all observed entries, as before
    assert ta.median_library_size == float(np.median(ta.library_size))


def test_task_spec_rejects_unknown_values():
    with pytest.raises(ValueError, match="scale"):
        TaskSpec(scale="cpm")
    with pytest.raises(ValueError, match="library_size"):
        TaskSpec(library_size="median")
