import numpy as np
import pytest

from stbench.data.masks import MaskSpec, load_mask, make_mask, save_mask


@pytest.fixture
def detected():
    rng = np.random.default_rng(1)
    return rng.random((200, 50)) < 0.4


@pytest.mark.parametrize("strategy", ["random", "spot", "gene"])
def test_ratio_and_strategy_shape(detected, strategy):
    held, train = make_mask(detected, MaskSpec(strategy, 0.2), seed=0)
    assert held.shape == detected.shape and train.all()
    if strategy == "random":
        assert held.sum() == round(0.2 * held.size)
    elif strategy == "spot":
        rows = held.any(1)
        assert rows.sum() == 40 and held[rows].all() and not held[~rows].any()
    else:
        cols = held.any(0)
        assert cols.sum() == 10 and held[:, cols].all() and not held[:, ~cols].any()


def test_among_nonzero_only_holds_out_detected_entries(detected):
    held, _ = make_mask(detected, MaskSpec("random", 0.1, among="nonzero"), seed=0)
    assert held.sum() == round(0.1 * detected.sum())
    assert not (held & ~detected).any()


def test_inductive_holds_out_per_gene_in_test_fold_only(detected):
    held, train = make_mask(detected, MaskSpec("inductive", 0.1, n_folds=5), seed=0)
    assert (~train).sum() == 40
    assert not held[train].any()
    per_gene = held[~train].sum(0)
    np.testing.assert_array_equal(per_gene, np.round(0.1 * 40).astype(int))


def test_same_inputs_same_mask_bit_for_bit_and_seeds_differ(detected, tmp_path):
    a, _ = make_mask(detected, MaskSpec("random", 0.1), seed=7)
    b, _ = make_mask(detected, MaskSpec("random", 0.1), seed=7)
    c, _ = make_mask(detected, MaskSpec("random", 0.1), seed=8)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    save_mask(tmp_path / "m.npz", a, np.ones(200, bool), MaskSpec("random", 0.1), 7, "toy")
    h, t, meta = load_mask(tmp_path / "m.npz")
    np.testing.assert_array_equal(h, a)
    assert meta["seed"] == 7 and meta["spec"]["strategy"] == "random" and meta["n_held_out"] == a.sum()
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left behind


def test_held_out_and_observed_are_disjoint_in_the_task(small_pre, small_mask):
    from stbench.data.task import build_task

    held, train = small_mask
    task = build_task(small_pre, held, train)
    assert np.isnan(task.observed[held]).all()
    assert np.isfinite(task.observed[~held]).all()
    np.testing.assert_array_equal(task.observed_mask, ~held)


def test_invalid_specs_are_rejected():
    for bad in [dict(strategy="blocks"), dict(ratio=0), dict(ratio=1.5), dict(among="zeros")]:
        with pytest.raises(ValueError):
            MaskSpec(**bad)
    assert MaskSpec("random", 0.1, "all").id == "random-0.1-all"
