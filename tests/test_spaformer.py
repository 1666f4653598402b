"""SpaFormer (methods/spaformer): learning signal, masked loss, FAVOR+ attention, positional encodings, tiles. Fast (CPU)."""

import sys

import numpy as np
import pytest
import torch

from stbench.data.masks import MaskSpec, make_mask
from stbench.kit.methodkit import gene_means
from stbench.run.registry import discover
from stbench.data.task import TaskSpec, build_task, truth_on_scale

METHOD = discover()["spaformer"]


@pytest.fixture(scope="module")
def mod():
    METHOD.load_impute()
    return sys.modules["stbench_methods.spaformer.impute"]


@pytest.fixture(scope="module")
def model_mod(mod):
    return sys.modules["stbench_methods.spaformer.model"]


@pytest.fixture(scope="module")
def spatial_mod(mod):
    return sys.modules["stbench_methods.spaformer.spatial"]


@pytest.fixture
def task(small_pre, small_mask, tmp_path):
    held, train = small_mask
    return build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)


def _rmse(pred, truth, held):
    return float(np.sqrt(np.mean((pred[held] - truth[held]) ** 2)))


def test_presets_pass_the_cross_parameter_rules(mod):
    """param_schema holds every per-parameter limit; impute.py keeps only the rules across parameters."""
    for preset in METHOD.presets:
        mod._check(METHOD.params(preset))
    with pytest.raises(ValueError, match="divisible by 4"):
        mod._check(METHOD.params("test", {"pe": "sinu", "num_hidden": 66}))
    with pytest.raises(ValueError, match="even num_hidden"):
        mod._check(METHOD.params("test", {"pe": "lap", "cat_pe": True, "num_hidden": 65}))


@pytest.mark.parametrize("mask_seed", [0, 1])
def test_training_beats_untrained_and_gene_mean(mod, small_pre, tmp_path, mask_seed):
    held, train = make_mask(np.asarray(small_pre.layers["counts"]) > 0, MaskSpec("random", 0.1), seed=mask_seed)
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    truth = truth_on_scale(small_pre, task)
    p = METHOD.params("test")
    trained = mod.impute(task, **p)
    untrained = mod.impute(task, **{**p, "max_epoch": 0})
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)
    r_t, r_u, r_m = _rmse(trained, truth, held), _rmse(untrained, truth, held), _rmse(mean, truth, held)
    assert r_t < 0.95 * r_u, (r_t, r_u)
    assert r_t < 0.9 * r_m, (r_t, r_m)
    obs = task.observed_mask  # observed entries are returned unchanged
    np.testing.assert_array_equal(trained[obs], task.observed[obs])
    assert trained.dtype == np.float32 and np.isfinite(trained).all()


@pytest.mark.parametrize("loss_entries", ["cell", "hidden"])
def test_loss_ignores_held_out_entries(mod, model_mod, task, loss_entries):
    """Different values at the held-out entries of the target (a fill, a large number, NaN): the
    first training step's loss and gradients are identical (same seed, same corruption)."""
    p = METHOD.params("test", {"loss_entries": loss_entries})
    d = mod.prepare(task, p)
    x = torch.as_tensor(d["x"])
    obs = torch.as_tensor(d["obs"].copy())
    fill = torch.as_tensor(d["fill"])
    t, pos = d["tiles"][0]
    assert len(d["tiles"]) == 1 and len(t) == task.n_spots
    pos = {k: torch.as_tensor(v, dtype=torch.long if k == "bin" else torch.float32) for k, v in pos.items()}
    losses, grads = [], []
    for held_value in (0.0, 1234.5, float("nan")):
        target = torch.where(obs, x, torch.full_like(x, held_value))
        torch.manual_seed(0)
        model = model_mod.SpaFormer(task.n_genes, p, relu_out=True)
        model.train()
        torch.manual_seed(1)
        loss = model_mod.masked_loss(model, x, target, obs, fill, pos, p, flip=True)
        loss.backward()
        losses.append(loss.detach())
        grads.append([q.grad.clone() for q in model.parameters()])
    assert torch.isfinite(losses[0])
    for other_l, other_g in zip(losses[1:], grads[1:]):
        assert torch.equal(losses[0], other_l)
        for a, b in zip(grads[0], other_g):
            assert torch.equal(a, b)


def test_corruption_hides_only_observed_entries_of_masked_cells(model_mod):
    torch.manual_seed(0)
    n, g = 40, 30
    x = torch.rand(n, g) + 1.0
    obs = torch.rand(n, g) > 0.2
    fill = torch.zeros(g)
    p = {"mask_node_rate": 0.5, "mask_feature_rate": 0.5, "drop_node_rate": 0.3, "mask_rescale": True}
    c = model_mod.corrupt(torch.where(obs, x, fill), obs, fill, p)
    assert int(c["masked"].sum()) == 20
    assert not (c["hidden"] & ~obs).any() and not (c["hidden"] & ~c["masked"][:, None]).any()
    assert (c["x_in"][c["hidden"]] == 0).all()
    unmasked = ~c["masked"]
    assert torch.equal(c["x_in"][unmasked], torch.where(obs, x, fill)[unmasked])  # untouched cells
    kept = c["masked"][:, None] & obs & ~c["hidden"]
    assert torch.allclose(c["x_in"][kept], 2.0 * x[kept])  # F.dropout's 1 / (1 - p) on the kept entries
    for mode in ("cell", "hidden"):
        assert not (model_mod.loss_mask(c, obs, mode) & ~obs).any()


def test_favor_attention_approximates_softmax_attention(model_mod):
    """With many random features, Performer's FAVOR+ output is close to exact softmax attention."""
    torch.manual_seed(0)
    h = torch.randn(50, 16) * 0.5
    fast = model_mod.SelfAttention(16, 2, 8, 4096, 0.0, "performer")
    exact = model_mod.SelfAttention(16, 2, 8, None, 0.0, "full")
    exact.load_state_dict({k: v for k, v in fast.state_dict().items() if k != "projection"}, strict=False)
    with torch.no_grad():
        a, b = fast(h), exact(h)
    assert float((a - b).norm() / b.norm()) < 0.05
    assert fast.projection.shape == (4096, 8)
    default = model_mod.SelfAttention(16, 2, 64, None, 0.0, "performer")
    assert default.projection.shape[0] == int(64 * np.log(64))  # 266, performer_pytorch's default


def test_laplacian_pe(spatial_mod):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, size=(200, 2))
    adj = spatial_mod.radius_adjacency(xy, 1.5)
    assert (adj.diagonal() == 1).all() and (adj != adj.T).nnz == 0
    dense = spatial_mod.laplacian_pe(adj, 10)
    sparse = spatial_mod.laplacian_pe(adj, 10, dense_max=50)  # the shift-invert branch
    deg = np.asarray(adj.sum(1)).ravel()
    lap = np.eye(200) - adj.toarray() / np.sqrt(deg[:, None] * deg[None, :])
    vals = np.linalg.eigvalsh(lap)
    for pe in (dense, sparse):
        assert pe.shape == (200, 10)
        np.testing.assert_allclose(pe.T @ pe, np.eye(10), atol=1e-4)
        ray = np.diag(pe.T @ lap @ pe)  # the eigenvalues after the smallest, in increasing order
        np.testing.assert_allclose(ray, vals[1:11], atol=1e-4)
    np.testing.assert_allclose(np.abs(dense.T @ sparse), np.eye(10), atol=1e-3)
    small = spatial_mod.laplacian_pe(spatial_mod.radius_adjacency(xy[:5], 100.0), 10)
    assert small.shape == (5, 10) and (small[:, 4:] == 0).all()  # zero padding as dgl.laplacian_pe


def test_sinusoidal_table_values(spatial_mod):
    pe = spatial_mod.sinusoidal_2d(np.array([3]), np.array([7]), 16)[0]
    half = 8
    freq = 10000.0 ** (-np.arange(0, half, 2) / half)
    np.testing.assert_allclose(pe[0:half:2], np.sin(7 * freq), atol=1e-6)  # first half: the y bin
    np.testing.assert_allclose(pe[1:half:2], np.cos(7 * freq), atol=1e-6)
    np.testing.assert_allclose(pe[half::2], np.sin(3 * freq), atol=1e-6)  # second half: the x bin
    np.testing.assert_allclose(pe[half + 1::2], np.cos(3 * freq), atol=1e-6)
    xb, yb = spatial_mod.grid_bins(np.array([[0.0, 0.0], [1.0, 1.0], [0.555, 0.2]]))
    assert list(xb) == [0, 100, 55] and list(yb) == [0, 99, 20]


def test_tiles_partition_and_multi_tile_run(mod, spatial_mod, task):
    tiles = spatial_mod.spatial_tiles(task.coords, np.arange(task.n_spots), 20)
    assert all(len(t) <= 20 for t in tiles) and len(tiles) >= 4
    np.testing.assert_array_equal(np.sort(np.concatenate(tiles)), np.arange(task.n_spots))
    p = {**METHOD.params("test"), "tile_cells": 20, "max_epoch": 2, "steps_per_epoch": 1}
    for pe in ("lap", "sinu", "mlp", "bin", "none"):
        r = mod.run(task, **{**p, "pe": pe})
        assert r["n_tiles"] == len(tiles)
        assert r["imputed"].shape == (task.n_spots, task.n_genes) and np.isfinite(r["imputed"]).all()
        assert len(r["val_rmse"]) == 2


def test_zscore_scale_allows_negative_output(mod, small_pre, small_mask, tmp_path):
    """On the z-score scale the decoder has no output ReLU (values are centred)."""
    from stbench.data.preprocess import PreprocessConfig, preprocess
    from stbench.data.simulate import simulate_demo

    adata, _ = simulate_demo(seed=3, n_rows=8, n_cols=9, n_genes=60, n_cells=200)
    pre, _ = preprocess(adata, PreprocessConfig(n_genes=50, min_detection=0.1))
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec("random", 0.1), seed=0)
    task = build_task(pre, held, train, spec=TaskSpec(scale="zscore"), seed=0, device="cpu", scratch=tmp_path)
    r = mod.run(task, **{**METHOD.params("test"), "max_epoch": 2})
    assert (r["reconstruction"] < 0).any()


def test_inductive_trains_on_training_spots_only(mod, small_pre, tmp_path):
    held, train = make_mask(np.asarray(small_pre.layers["counts"]) > 0, MaskSpec("inductive", 0.1), seed=0)
    assert not train.all()
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    p = METHOD.params("test", {"max_epoch": 1, "steps_per_epoch": 1})
    d = mod.prepare(task, p)
    fit_spots = np.sort(np.concatenate([t for t, _ in d["train_tiles"]]))
    np.testing.assert_array_equal(fit_spots, np.flatnonzero(train))
    all_spots = np.sort(np.concatenate([t for t, _ in d["tiles"]]))
    np.testing.assert_array_equal(all_spots, np.arange(task.n_spots))
    out = mod.impute(task, **p)
    assert out.shape == (task.n_spots, task.n_genes) and np.isfinite(out).all()


def test_a_non_finite_output_fails_the_run(mod, model_mod, task, monkeypatch):
    """A diverged network is an error, never silently replaced by the input fill."""

    class Diverged(model_mod.SpaFormer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.decoder.register_forward_hook(lambda m, i, out: out * float("nan"))

    monkeypatch.setattr(mod, "SpaFormer", Diverged)
    with pytest.raises(FloatingPointError, match="non-finite"):
        mod.run(task, **{**METHOD.params("test"), "max_epoch": 0})
