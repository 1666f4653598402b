"""CSDI (methods/csdi): learning signal, shared diffusion code, CSDI's per-sample training ratio. Fast (CPU)."""

import sys

import numpy as np
import pytest
import torch

from stbench.kit.methodkit import gene_means
from stbench.run.registry import discover
from stbench.data.task import build_task

METHOD = discover()["csdi"]


@pytest.fixture(scope="module")
def mod():
    METHOD.load_impute()
    return sys.modules["stbench_methods.csdi.impute"]


def _rmse(pred, truth, held):
    return float(np.sqrt(np.mean((pred[held] - truth[held]) ** 2)))


def test_shares_stmcdis_diffusion_code(mod):
    import stbench.kit.diffusion as shared

    model = sys.modules["stbench_methods.csdi.model"]
    assert model.Denoiser is shared.Denoiser and model.ddpm_sample is shared.ddpm_sample
    p = METHOD.params()
    net = model.CSDI(35, p)  # upstream's physio setting: K = 35 features
    assert net.sched.T == 50 and np.isclose(net.sched.beta[-1], 0.5) and np.isclose(net.sched.beta[0], 1e-4)
    assert len(net.denoiser.blocks) == 4 and net.denoiser.blocks[0].attn.heads == 8
    assert net.denoiser.blocks[0].cond_projection.in_features == 128 + 16 + 1  # timeemb + featureemb + mask


def test_random_strategy_draws_a_ratio_per_spot():
    from stbench.kit.diffusion.masks import train_targets

    obs = torch.rand(400, 50) > 0.2
    ratio = torch.rand(400, generator=torch.Generator().manual_seed(0))
    m = train_targets(obs, "random", ratio, torch.Generator().manual_seed(1))
    assert not (m & ~obs).any()
    got = m.sum(1).float()
    want = torch.round(obs.sum(1).float() * ratio)
    assert torch.equal(got, want)  # exactly round(ratio_i * n_observed_i) per spot, as get_randmask


def test_training_beats_untrained_and_gene_mean(mod, tmp_path):
    """On a small simulated section with gene-gene structure (CSDI has no spatial input)."""
    from tests.test_stmcdi import make_task, smooth_data

    x, xy, held = smooth_data(n_side=12, n_genes=12, seed=2, held=0.1)
    task = make_task(x, xy, held, tmp_path)
    # ~540 steps; the mean of 8 DDIM samples (a median of few samples of an undertrained model is noisier)
    p = {**METHOD.params("test"), "epochs": 60, "batch_size": 16, "lr": 3e-3, "dropout": 0.0, "channels": 16,
         "layers": 2, "n_samples": 8, "sample_steps": 10, "aggregate": "mean"}
    trained = mod.impute(task, **p)
    untrained = mod.impute(task, **{**p, "epochs": 0})
    mean = np.broadcast_to(gene_means(task)[None, :], x.shape)
    r_t, r_u, r_m = _rmse(trained, x, held), _rmse(untrained, x, held), _rmse(mean, x, held)
    assert r_t < 0.95 * r_u, (r_t, r_u)
    assert r_t < r_m, (r_t, r_m)
    np.testing.assert_array_equal(trained[~held], x[~held])
    assert trained.dtype == np.float32 and np.isfinite(trained).all()


def test_bad_values_fail_before_training(mod, small_pre, small_mask, tmp_path, monkeypatch):
    """An enum outside param_schema fails in the registry; the one cross-parameter rule (channels / heads) fails
    at the top of run, before anything is trained."""
    from stbench.errors import ConfigError

    with pytest.raises(ConfigError, match="method 'csdi': parameter sampler='euler'"):
        METHOD.params("test", {"sampler": "euler"})
    held, train = small_mask
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    monkeypatch.setattr(mod, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("fit was called")))
    with pytest.raises(ValueError, match="divisible by heads"):
        mod.run(task, **METHOD.params("test", {"channels": 16, "heads": 3}))


def test_min_steps_is_a_floor_in_whole_epochs(mod, small_pre, small_mask, tmp_path):
    """`min_steps` (the quick preset's 400) lengthens training on a small section only."""
    held, train = small_mask
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    p = METHOD.params("test")
    n_train = int(task.train_spots.sum())
    per_epoch = -(-n_train // int(p["batch_size"]))
    short = mod.run(task, **{**p, "epochs": 1, "n_samples": 1})["history"]
    assert short["steps"] == per_epoch
    floored = mod.run(task, **{**p, "epochs": 1, "n_samples": 1, "min_steps": 3 * per_epoch - 1})["history"]
    assert floored["steps"] == 3 * per_epoch and len(floored["loss"]) == 3
    assert mod.run(task, **{**p, "epochs": 4, "n_samples": 1, "min_steps": 1})["history"]["steps"] == 4 * per_epoch


def test_the_estimate_counts_the_steps_this_loop_trains(mod, small_pre, small_mask, tmp_path):
    """`stbench estimate` asks CSDI's cost module (whole epochs up to min_steps), not stMCDI's formula."""
    from stbench.results import cost_estimate as ce

    held, train = small_mask
    task = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    n_train = int(task.train_spots.sum())
    p = {**METHOD.params("test"), "epochs": 1, "n_samples": 1}
    p["min_steps"] = 2 * (-(-n_train // int(p["batch_size"]))) - 1   # not a whole number of epochs
    trained = mod.run(task, **p)["history"]["steps"]
    steps, *_ = ce.diffusion_cost(p, n_train, 10, [], "cpu", terms=ce.cost_terms("csdi"))
    assert steps == trained and steps != p["min_steps"]
