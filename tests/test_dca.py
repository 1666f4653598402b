"""DCA (methods/dca): likelihood, masked loss, training signal, size factors, determinism."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stbench.kit.methodkit import gene_means
from stbench.run.registry import Method, validate_manifest
from stbench.data.task import build_task, truth_on_scale

FOLDER = Path(__file__).resolve().parents[1] / "methods" / "dca"
METHOD = Method("dca", FOLDER, validate_manifest(yaml.safe_load((FOLDER / "method.yaml").read_text()), FOLDER))
dca = METHOD.load_module("impute")
model = METHOD.load_module("model")
train = METHOD.load_module("train")
TEST = METHOD.params("test")


@pytest.fixture()
def task(small_pre, small_mask, tmp_path):
    held, spots = small_mask
    return build_task(small_pre, held, spots, seed=0, device="cpu", scratch=tmp_path)


def _rmse(a, b, held):
    return float(np.sqrt(np.mean((a[held] - b[held]) ** 2)))


def test_params_resolve_and_schema_rejects_bad_values():
    p = METHOD.params()
    assert p["hidden_size"] == [64, 32, 64] and p["ae_type"] == "zinb-conddisp" and p["epochs"] == 300
    assert p["batch_size"] == 32 and p["early_stop"] == 15 and p["reduce_lr"] == 10 and p["validation_split"] == 0.1
    METHOD.params("quick")
    from stbench.errors import ConfigError

    for bad in ({"ae_type": "poisson"}, {"learning_rate": 0}, {"hidden_size": []}, {"validation_split": 1.0}):
        with pytest.raises(ConfigError):
            METHOD.params(overrides=bad)


def test_loss_gradients_ignore_held_out_targets(task):
    """Changing the held-out targets (any fill, even NaN) leaves the first step's gradients bit-identical."""
    data = train.prepare_inputs(task, **{k: TEST[k] for k in ("size_factors", "log1p", "scale_input")})
    held = ~data["mask"]
    rows = np.flatnonzero(held.any(1))[:16]
    assert held[rows].any()
    grads = []
    for fill in (0.0, 7.0, 1e4, np.nan):
        y = data["y"].copy()
        y[held] = fill
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = model.DCA(task.n_genes, **{**{k: TEST[k] for k in ("ae_type", "batchnorm", "activation",
                                                                       "hidden_dropout", "input_dropout")},
                                             "hidden_size": [16, 8, 16]})
        net.train()
        mean, theta, pi = net(torch.as_tensor(data["x"][rows]))
        loss = model.masked_count_loss(torch.as_tensor(y[rows]), torch.as_tensor(data["mask"][rows]), mean, theta, pi,
                                       torch.as_tensor(data["size_factors"][rows]), TEST["ridge"])
        loss.backward()
        assert torch.isfinite(loss)
        grads.append([p.grad.clone() for p in net.parameters()])
    for g in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], g))


def test_inputs_are_truth_free(task):
    """Size factors from observed totals; held-out inputs are the gene's observed mean (0 after scaling)."""
    data = train.prepare_inputs(task, **{k: TEST[k] for k in ("size_factors", "log1p", "scale_input")})
    m = np.asarray(task.observed_mask)
    tot = np.where(m, np.nan_to_num(task.observed_counts), 0).sum(1)
    np.testing.assert_allclose(data["size_factors"], tot / np.median(tot[tot > 0]), rtol=1e-6)
    assert (data["x"][~m] == 0).all()
    np.testing.assert_allclose(data["x"].sum(0) / m.sum(0), 0, atol=1e-5)  # observed entries centred per gene


def test_training_beats_untrained_and_gene_mean(small_pre, small_mask, tmp_path):
    held, spots = small_mask
    task = build_task(small_pre, held, spots, seed=0, device="cpu", scratch=tmp_path)
    truth = truth_on_scale(small_pre, task)
    trained = dca.run(task, **TEST)
    untrained = dca.run(task, **{**TEST, "epochs": 0})
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)
    r_trained, r_untrained, r_mean = (_rmse(x, truth, held) for x in (trained["imputed"], untrained["imputed"], mean))
    assert trained["history"]["epochs_run"] > 10
    assert r_trained < r_untrained - 0.2, (r_trained, r_untrained)
    assert r_trained < r_mean - 0.05, (r_trained, r_mean)
    out = trained["imputed"]
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[~held], task.observed[~held])


def test_deterministic_and_seed_dependent(task, tmp_path):
    fast = {**TEST, "epochs": 5}
    a, b = dca.impute(task, **fast), dca.impute(task, **fast)
    np.testing.assert_array_equal(a, b)
    other = dca.impute(dataclasses.replace(task, seed=1), **fast)
    assert not np.array_equal(a, other)


@pytest.mark.parametrize("variant", [{"ae_type": "nb-conddisp"}, {"ae_type": "zinb", "output": "zinb_mean"},
                                     {"ae_type": "nb", "batchnorm": False, "optimizer": "adam"},
                                     {"validation_split": 0.0, "restore_best": True, "activation": "prelu"}])
def test_variants_run(task, variant):
    out = dca.run(task, **{**TEST, "epochs": 3, **variant})
    assert np.isfinite(out["imputed"]).all()
    assert (out["pi"] is None) == variant.get("ae_type", "zinb").startswith("nb")


def test_validation_spots_and_inductive_fit_rows(small_pre, small_mask, tmp_path):
    held, _ = small_mask
    spots = np.ones(held.shape[0], bool)
    spots[:20] = False
    task = build_task(small_pre, held, spots, seed=0, device="cpu", scratch=tmp_path)
    out = dca.run(task, **{**TEST, "epochs": 2})
    rows = np.concatenate([out["train_rows"], out["val_rows"]])
    assert set(rows) == set(np.flatnonzero(spots)) and len(out["val_rows"]) == len(rows) - int(len(rows) * 0.9)
    assert not set(out["train_rows"]) & set(out["val_rows"])
