"""GraphSCI (methods/graphsci): it learns, its losses ignore held-out entries, its parts are right."""

import importlib

import numpy as np
import pytest
import torch

from stbench.run.registry import discover
from stbench.data.task import build_task, truth_on_scale


@pytest.fixture(scope="module")
def method():
    m = discover()["graphsci"]
    fn = m.load_impute()
    return m, fn, importlib.import_module(fn.__module__)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _task(pre, mask, tmp_path, seed=0):
    held, train = mask
    return build_task(pre, held, train, seed=seed, device="cpu", scratch=tmp_path)


def _rmse(truth, pred, held):
    return float(np.sqrt(np.mean((truth[held] - pred[held]) ** 2)))


def test_trained_beats_untrained_and_gene_mean(method, small_pre, small_mask, tmp_path):
    from stbench.kit.methodkit import gene_means, seeded

    m, fn, mod = method
    task = _task(small_pre, small_mask, tmp_path)
    held = small_mask[0]
    truth = truth_on_scale(small_pre, task)
    params = m.params("test", {"epochs": 200, "lr": 0.05})
    trained = fn(task, **params)

    prep = mod.prepare(task, params["corr_threshold"], params["graph_on"], torch.device("cpu"))
    with seeded(task.seed):
        model = mod.build_model(prep, params["hidden1"], params["hidden2"], params["dropout"])
        untrained = task.counts_to_scale(mod.predict_counts(model, prep))
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)

    r_trained, r_untrained, r_mean = (_rmse(truth, p, held) for p in (trained, untrained, mean))
    assert r_trained < r_untrained
    assert r_trained < 0.95 * r_mean, (r_trained, r_mean)


def test_loss_gradients_ignore_held_out_targets(method, small_pre, small_mask, tmp_path):
    from stbench.kit.methodkit import seeded

    m, _, mod = method
    task = _task(small_pre, small_mask, tmp_path)
    p = m.params("test")
    prep = mod.prepare(task, p["corr_threshold"], p["graph_on"], torch.device("cpu"))
    held = torch.as_tensor(small_mask[0])
    with seeded(0):
        model = mod.build_model(prep, p["hidden1"], p["hidden2"], p["dropout"])
    model.train()

    grads, losses = [], []
    for fill in (0.0, 1.0e4, float("nan")):
        counts = torch.where(held, torch.full_like(prep.counts, fill), prep.counts)
        model.zero_grad(set_to_none=True)
        with seeded(1):  # same dropout masks and Z noise for every fill
            cost, _ = mod.loss_on(model, prep, counts=counts, mse_weight=p["mse_weight"])
        cost.backward()
        losses.append(cost.detach())
        grads.append([q.grad.clone() for q in model.parameters()])
    assert torch.isfinite(losses[0])
    for other_loss, other in zip(losses[1:], grads[1:]):
        assert torch.equal(losses[0], other_loss)
        assert all(torch.equal(a, b) for a, b in zip(grads[0], other))
    # the precomputed lgamma(y + 1) gives the same loss as computing it from the target
    with seeded(1):
        cost_pre, _ = mod.loss_on(model, prep, mse_weight=p["mse_weight"])
    assert torch.allclose(cost_pre.detach(), losses[0])


def _sibling(method, name):
    return importlib.import_module(f"{method[2].__package__}.{name}")


def test_gene_graph(method):
    gene_graph = _sibling(method, "graph").gene_graph
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=40)
    edge_index, adj = gene_graph(x, np.ones_like(x, dtype=bool), 0.3)
    assert adj[0, 1] == 1 and adj[1, 0] == 1 and np.all(np.diag(adj) == 0)
    assert (adj == adj.T).all() and edge_index.shape[1] == int(adj.sum())


def test_deterministic_and_keeps_observed(method, small_pre, small_mask, tmp_path):
    m, fn, _ = method
    task = _task(small_pre, small_mask, tmp_path)
    a = fn(task, **m.params("test"))
    b = fn(task, **m.params("test"))
    np.testing.assert_array_equal(a, b)
    obs = task.observed_mask
    np.testing.assert_array_equal(a[obs], task.observed[obs])
    assert a.dtype == np.float32 and np.isfinite(a).all()


def test_bad_parameters_are_rejected(method):
    """param_schema is the only home of the limits: the registry names the method and the parameter."""
    from stbench.errors import ConfigError

    m, _, _ = method
    with pytest.raises(ConfigError, match="method 'graphsci': parameter graph_on='bogus'"):
        m.params("test", {"graph_on": "bogus"})
    with pytest.raises(ConfigError, match="method 'graphsci': parameter dropout=1.0"):
        m.params("test", {"dropout": 1.0})
