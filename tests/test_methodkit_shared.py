"""The shared pieces of stbench.kit.methodkit and stbench.kit.early_stopping that several methods call: the observed-only
z-score, the seeded validation split, k-NN without the self-hit, Louvain labels, seeding and threads, and
early stopping with the best weights kept. Each is tested here once."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from stbench.kit.early_stopping import EarlyStopping, Plateau
from stbench.kit.methodkit import (knn_edge_index, knn_others, louvain_labels, observed_zscore, seeded, torch_threads,
                               validation_split)


def test_observed_zscore_reads_the_masked_entries_only():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(60, 5))
    m = rng.random(x.shape) < 0.7
    m[:, 3] = False                 # no entry: mean 0, sd 1
    m[:, 4] = False
    m[0, 4] = True                  # one entry: sd 1
    mu, sd = observed_zscore(np.where(m, x, np.nan), m)
    for j in range(3):
        v = x[m[:, j], j]
        assert np.isclose(mu[j], v.mean()) and np.isclose(sd[j], v.std(ddof=1))
    assert mu[3] == 0 and sd[3] == 1 and mu[4] == x[0, 4] and sd[4] == 1
    x2 = np.where(m, x, 1e6)       # other values at unmasked entries change nothing
    assert all(np.array_equal(a, b) for a, b in zip(observed_zscore(x2, m), (mu, sd)))
    xc = np.ones((10, 2), np.float32)
    xc[:, 1] = np.arange(10) * 1e-10
    _, sdc = observed_zscore(xc, np.ones_like(xc, dtype=bool), min_sd=1e-8)
    assert sdc[0] == 1 and sdc[1] == 1


def test_validation_split_counts_and_seeding():
    rng = lambda s: np.random.default_rng(s)      # noqa: E731
    v = validation_split(100, 0.1, rng(0))
    assert v.sum() == 10 and np.array_equal(v, validation_split(100, 0.1, rng(0)))
    assert not np.array_equal(v, validation_split(100, 0.1, rng(1)))
    assert validation_split(3, 0.9, rng(0)).sum() == 2          # at most n - 1
    assert validation_split(100, 0.0, rng(0)).sum() == 0
    k = validation_split(100, 0.1, rng(0), count="keras")     # Keras: int(n * 0.9) = 90 train
    assert k.sum() == 10
    assert validation_split(95, 0.1, rng(0), count="keras").sum() == 10   # int(85.5) = 85 train
    assert validation_split(2, 0.5, rng(0), count="keras").sum() == 0     # < 2 would train
    with pytest.raises(ValueError):
        validation_split(10, 0.1, rng(0), count="other")


def test_knn_others_drops_the_self_hit_even_among_duplicates():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(40, 2))
    idx, dist = knn_others(xy, 4)
    assert idx.shape == (40, 4) and not (idx == np.arange(40)[:, None]).any()
    full = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(dist, np.sort(full, 1)[:, :4])
    dup = np.repeat(xy[:10], 3, axis=0)                       # each position three times
    idx, dist = knn_others(dup, 2)
    assert not (idx == np.arange(30)[:, None]).any() and np.all(dist == 0)
    assert knn_others(xy[:1], 3)[0].shape == (1, 0)
    ei = knn_edge_index(dup, 2).numpy()                        # each spot keeps its 2 coincident twins
    assert (ei[0] != ei[1]).all() and np.bincount(ei[0], minlength=30).min() >= 2


def test_louvain_labels_find_two_cliques_and_number_by_smallest_node():
    a = np.zeros((10, 10))
    a[:5, :5] = 1
    a[5:, 5:] = 1
    np.fill_diagonal(a, 0)
    a[4, 5] = a[5, 4] = 1
    perm = np.random.default_rng(0).permutation(10)
    lab = louvain_labels(sp.csr_matrix(a[np.ix_(perm, perm)]), 1.0, seed=0)
    truth = (perm >= 5).astype(int)
    assert np.array_equal(lab, truth if truth[0] == 0 else 1 - truth)
    assert np.array_equal(louvain_labels(sp.csr_matrix((3, 3)), 1.0, 0), [0, 1, 2])


def test_seeded_and_torch_threads_restore_the_caller_state():
    torch.manual_seed(5)
    np.random.seed(5)
    before_t, before_n = torch.get_rng_state(), np.random.get_state()[1].copy()
    with seeded(3):
        a = torch.rand(3)
        b = np.random.rand()
    with seeded(3):
        assert torch.equal(a, torch.rand(3)) and b == np.random.rand()
    assert torch.equal(torch.get_rng_state(), before_t) and np.array_equal(np.random.get_state()[1], before_n)
    n = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n


def test_early_stopping_keeps_the_best_weights_and_counts_patience():
    net = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2)
    losses = [3.0, 2.0, 2.5, 1.0, 1.5, 1.5, 0.5]
    stopped_at, best_w = None, None
    for epoch, v in enumerate(losses):
        with torch.no_grad():
            net.weight.fill_(v)
        if v == 1.0:
            best_w = net.weight.detach().clone()
        if stop.step(v, net, epoch):
            stopped_at = epoch
            break
    assert stopped_at == 5 and stop.best_epoch == 3 and stop.best == 1.0
    assert stop.restore(net) and torch.equal(net.weight, best_w)
    keep = EarlyStopping(None, keep=2)                          # stPlus: the 2 lowest-loss snapshots
    for v in (5.0, 4.0, float("nan"), 6.0, 3.0, 4.5):
        assert not keep.step(v, net)
    assert [v for v, _ in keep.snapshots] == [4.0, 3.0]
    assert not EarlyStopping().restore(net)                     # nothing kept: nothing loaded
    p = Plateau(2, min_delta=0.1)                               # ReduceLROnPlateau: fires, then counts again
    assert [p.step(v) for v in (1.0, 0.95, 0.95, 0.5, 0.45, 0.44)] == [False, False, True, False, False, True]


def test_column_order_dispatch_and_glorot_linear():
    from stbench.kit.methodkit import column_order, correlation_order, glorot_linear

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    m = np.ones_like(x, dtype=bool)
    assert np.array_equal(column_order(x, m, "task"), np.arange(6))
    assert np.array_equal(column_order(x, m, "correlation"), correlation_order(x, m))
    assert np.array_equal(column_order(x[:, :2], m[:, :2], "correlation"), [0, 1])
    with pytest.raises(ValueError, match="gene order"):
        column_order(x, m, "alphabetical")
    torch.manual_seed(0)
    lin = glorot_linear(200, 100)
    bound = np.sqrt(6.0 / 300)
    assert torch.all(lin.bias == 0) and float(lin.weight.abs().max()) <= bound
    assert float(lin.weight.abs().max()) > 0.9 * bound          # Glorot's range, not torch's narrower default
