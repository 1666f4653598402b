"""stbench.kit.methodkit's pairwise-complete Pearson and correlation order (one copy for GraphSCI, GraphCpG and CpG
Transformer): observed pairs only, equal to numpy's on complete data, co-expressed columns side by side."""

import numpy as np

from stbench.kit.methodkit import correlation_order, pairwise_complete_pearson


def test_pairwise_pearson_uses_observed_pairs_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=40)
    np.testing.assert_allclose(pairwise_complete_pearson(x, np.ones_like(x, dtype=bool)), np.corrcoef(x.T),
                               atol=1e-10)
    mask = rng.random(x.shape) > 0.3
    r = pairwise_complete_pearson(x, mask)
    both = mask[:, 0] & mask[:, 2]
    np.testing.assert_allclose(r[0, 2], np.corrcoef(x[both, 0], x[both, 2])[0, 1], atol=1e-10)
    other = np.where(mask, x, rng.normal(100.0, 50.0, size=x.shape))
    np.testing.assert_array_equal(pairwise_complete_pearson(other, mask), r)       # held-out never read
    np.testing.assert_array_equal(pairwise_complete_pearson(np.where(mask, x, np.nan), mask), r)
    x[:, 4] = 2.0                                                                   # a constant column
    assert np.all(pairwise_complete_pearson(x, mask)[4, [0, 1, 2, 3, 5]] == 0.0)


def test_correlation_order_puts_correlated_columns_side_by_side():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6))
    x[:, 3] = x[:, 0] + 0.05 * rng.normal(size=60)     # 3 follows 0
    x[:, 5] = -x[:, 0] + 0.05 * rng.normal(size=60)    # 5 mirrors it
    mask = rng.random(x.shape) > 0.2
    o = correlation_order(x, mask)
    assert sorted(o.tolist()) == list(range(6))
    pos = {g: i for i, g in enumerate(o)}
    assert abs(pos[0] - pos[3]) == 1 and abs(pos[0] - pos[5]) > 1
    np.testing.assert_array_equal(correlation_order(np.where(mask, x, rng.normal(50, 9, x.shape)), mask), o)
