"""STAGATE (methods/stagate): learning signal, masked loss, tied weights, graphs, variants. Fast (CPU)."""

import sys

import numpy as np
import pytest
import torch

from stbench.data.masks import MaskSpec, make_mask
from stbench.kit.methodkit import gene_means
from stbench.run.registry import discover
from stbench.data.task import build_task, truth_on_scale

METHOD = discover()["stagate"]


@pytest.fixture(scope="module")
def mod():
    METHOD.load_impute()
    return sys.modules["stbench_methods.stagate.impute"]


@pytest.fixture(scope="module")
def model_mod(mod):
    return sys.modules["stbench_methods.stagate.model"]


@pytest.fixture(scope="module")
def graph_mod(mod):
    return sys.modules["stbench_methods.stagate.graph"]


@pytest.fixture
def task(small_pre, small_mask, tmp_path):
    held, train = small_mask
    return build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)


def _rmse(pred, truth, held):
    return float(np.sqrt(np.mean((pred[held] - truth[held]) ** 2)))


@pytest.mark.parametrize("mask_seed", [0, 1])
def test_training_beats_untrained_and_gene_mean(mod, small_pre, tmp_path, mask_seed):
    held, train = make_mask(np.asarray(small_pre.layers["counts"]) > 0, MaskSpec("random", 0.1), seed=mask_seed)
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    truth = truth_on_scale(small_pre, task)
    p = METHOD.params("test")
    trained = mod.impute(task, **p)
    untrained = mod.impute(task, **{**p, "n_epochs": 0})
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)
    r_t, r_u, r_m = _rmse(trained, truth, held), _rmse(untrained, truth, held), _rmse(mean, truth, held)
    assert r_t < r_u, (r_t, r_u)
    assert r_t < 0.9 * r_m, (r_t, r_m)
    # observed entries are returned unchanged
    obs = task.observed_mask
    np.testing.assert_array_equal(trained[obs], task.observed[obs])


def test_loss_ignores_held_out_targets(mod, model_mod, task):
    """Same input, different values at held-out entries of the target: identical first-step gradients.
    (The truth-free *input* fill does enter the forward pass, by design; see the README.)"""
    p = METHOD.params("test")
    d = mod.prepare(task, p)
    x = torch.as_tensor(d["x_fill"])
    m = torch.as_tensor(d["mask"].copy())
    ei = d["edge_index"]
    grads = []
    for fill in (0.0, 1234.5):
        target = torch.where(m, x, torch.full_like(x, fill))
        torch.manual_seed(0)
        model = model_mod.STAGATE(task.n_genes, p["hidden_dims"], 0.0, p["tied_update"])
        loss = model_mod.masked_loss(model, x, target, m, ei)
        loss.backward()
        grads.append([q.grad.clone() for q in model.parameters()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_input_fill_is_truth_free(mod, task):
    """The model input: observed values, and each gene's observed mean at held-out entries."""
    d = mod.prepare(task, METHOD.params("test"))
    held = ~task.observed_mask
    np.testing.assert_array_equal(d["x_fill"][~held], task.observed[~held])
    gm = np.broadcast_to(gene_means(task)[None, :], held.shape)
    np.testing.assert_array_equal(d["x_fill"][held], gm[held])


@pytest.mark.parametrize("tied_update", ["split", "joint"])
def test_decoder_weights_stay_tied(model_mod, tied_update):
    torch.manual_seed(0)
    n, g = 20, 12
    x = torch.rand(n, g)
    ei = torch.stack([torch.arange(n), torch.arange(n)])  # self-loops only
    model = model_mod.STAGATE(g, (16, 4), 0.0, tied_update)
    before = model.W1.detach().clone()
    hist = model_mod.fit(model, x, x, torch.ones(n, g, dtype=torch.bool), ei, None, n_epochs=3, lr=1e-2,
                         weight_decay=1e-4, gradient_clipping=5.0)
    assert len(hist) == 3 and np.isfinite(hist).all()
    assert not torch.equal(before, model.W1.detach())
    if tied_update == "split":  # separate parameters, one storage (STAGATE_pyG)
        assert model.W1_dec.data_ptr() == model.W1.data_ptr()
        assert torch.equal(model.W1_dec.detach(), model.W1.detach().t())
        assert torch.equal(model.W2_dec.detach(), model.W2.detach().t())
    else:
        assert not hasattr(model, "W1_dec")


def test_attention_is_softmax_over_incoming_edges(model_mod):
    torch.manual_seed(0)
    h = torch.randn(5, 3)
    ei = torch.tensor([[0, 1, 2, 3, 4, 1, 2], [0, 1, 2, 3, 4, 0, 0]])
    w = model_mod.attention_weights(h, torch.randn(3), torch.randn(3), ei)
    sums = torch.zeros(5).index_add_(0, ei[1], w)
    assert torch.allclose(sums, torch.ones(5))
    # spot 0 receives from 0, 1, 2: a dense softmax of sigmoid scores gives the same weights
    a_s, a_d = torch.randn(3), torch.randn(3)
    w = model_mod.attention_weights(h, a_s, a_d, ei)
    score = torch.sigmoid(h[[0, 1, 2]] @ a_s + h[0] @ a_d)
    assert torch.allclose(w[[0, 5, 6]], torch.softmax(score, 0))


def test_spatial_networks(graph_mod):
    # a hexagonal grid with spacing 100 (the demo's layout): 6-NN == radius 1.5 x spacing (== 150)
    rows, cols = 6, 7
    xy = np.array([[100.0 * c + 50.0 * (r % 2), 100.0 * np.sqrt(3) / 2 * r] for r in range(rows) for c in range(cols)])
    knn = graph_mod.knn_edges_upstream(xy, 6)
    assert knn.shape[1] == 6 * len(xy)
    assert (knn[0] != knn[1]).all()
    rad, desc = graph_mod.spatial_net(xy, "radius", 6, None, 1.5)
    assert desc.startswith("radius r=") and float(desc.split("=")[1]) == pytest.approx(150.0)
    rad150, _ = graph_mod.spatial_net(xy, "radius", 6, 150.0, 99.0)
    assert torch.equal(rad, rad150)
    # interior spots: their 6 nearest spots are the hexagonal ring, the radius graph's neighbours
    as_set = lambda ei: {(int(a), int(b)) for a, b in ei.t()}  # noqa: E731
    interior = {i for i in range(len(xy)) if 0 < i // cols < rows - 1 and 0 < i % cols < cols - 1}
    k_in = {e for e in as_set(knn) if e[0] in interior}
    r_in = {e for e in as_set(rad) if e[0] in interior}
    assert k_in == r_in and len(k_in) == 6 * len(interior)
    loops = graph_mod.with_self_loops(rad, len(xy))
    assert loops.shape[1] == rad.shape[1] + len(xy)


def test_cell_type_aware_variant(mod, task):
    p = METHOD.params("celltype_aware", {"n_epochs": 5})
    out = mod.run(task, **p)
    assert out["labels"] is not None and out["labels"].shape == (task.n_spots,)
    d = mod.prepare(task, p)
    full = {(int(a), int(b)) for a, b in d["edge_index"].t()}
    pruned = {(int(a), int(b)) for a, b in d["pruned_index"].t()}
    assert pruned <= full
    lab = d["labels"]
    assert all(lab[a] == lab[b] for a, b in pruned)
    assert np.isfinite(out["imputed"]).all()


def test_radius_variant_and_inductive_split(mod, small_pre, tmp_path):
    held, train = make_mask(np.asarray(small_pre.layers["counts"]) > 0, MaskSpec("inductive", 0.1), seed=0)
    assert not train.all()
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    out = mod.run(task, **METHOD.params("radius", {"n_epochs": 5}))
    assert out["graph"].startswith("radius")
    assert out["imputed"].shape == (task.n_spots, task.n_genes) and np.isfinite(out["imputed"]).all()


def test_bad_parameters_are_rejected_by_the_registry():
    """The limits live in param_schema only; the registry rejects a bad value with the method and parameter named."""
    from stbench.errors import ConfigError

    for bad, name in (({"spatial_net": "delaunay"}, "spatial_net"), ({"hidden_dims": [512]}, "hidden_dims")):
        with pytest.raises(ConfigError, match=f"method 'stagate': parameter {name}="):
            METHOD.params("test", bad)
    with pytest.raises(ConfigError, match="unknown parameter"):
        METHOD.params("test", {"no_such_param": 1})
