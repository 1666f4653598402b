"""stMCDI (methods/stmcdi): training, both targets, samplers, determinism, ablations, inductive, leakage."""

import numpy as np
import pytest
import torch

from stbench.run.registry import get_method
from stbench.data.task import ImputationTask

METHOD = get_method("stmcdi")
METHOD.load_impute()
from stbench_methods.stmcdi import impute as stm  # noqa: E402
from stbench_methods.stmcdi.graph import knn_edge_index  # noqa: E402
from stbench.kit.diffusion.masks import train_targets  # noqa: E402
from stbench_methods.stmcdi.model import STMCDI, count_parameters  # noqa: E402

TEST = METHOD.params("test")


def smooth_data(n_side=8, n_genes=40, seed=0, held=0.1):
    """Spatially smooth log-scale expression on a grid: (truth, coords, held-out mask)."""
    rng = np.random.default_rng(seed)
    xy = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side)), -1).reshape(-1, 2).astype(float)
    fields = np.stack([np.sin(xy[:, 0] / 2.0 + a) + np.cos(xy[:, 1] / 2.5 + b)
                       for a, b in rng.uniform(0, 6, size=(4, 2))], 1)
    load = rng.normal(0, 1, size=(4, n_genes))
    x = fields @ load / 2 + rng.normal(0, 0.15, size=(xy.shape[0], n_genes)) + 2.0
    mask = rng.random(x.shape) < held
    return x.astype(np.float32), xy, mask


def make_task(x, xy, held, tmp_path, train=None, seed=0):
    obs = x.copy()
    obs[held] = np.nan
    n, g = x.shape
    return ImputationTask(observed=obs, observed_mask=~held, coords=xy, genes=tuple(f"g{i}" for i in range(g)),
                          spots=tuple(f"s{i}" for i in range(n)), observed_counts=obs.copy(),
                          train_spots=np.ones(n, bool) if train is None else train, library_size=np.ones(n),
                          median_library_size=1.0, gene_mean=np.zeros(g, np.float32), gene_sd=np.ones(g, np.float32),
                          seed=seed, device="cpu", scratch=tmp_path)


@pytest.fixture(scope="module")
def data():
    return smooth_data()


def _check(out, x):
    assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()


def test_graph_is_symmetric_knn():
    xy = np.random.default_rng(0).random((50, 2))
    ei = knn_edge_index(xy, 5).numpy()
    pairs = set(map(tuple, ei.T))
    assert all((j, i) in pairs for i, j in pairs)
    assert (np.bincount(ei[0], minlength=50) >= 5).all() and (ei[0] != ei[1]).all()


@pytest.mark.parametrize("strategy", ["random", "spot", "gene"])
def test_train_targets_are_observed_subsets(strategy):
    obs = torch.rand(32, 40) > 0.2
    m = train_targets(obs, strategy, 0.6, torch.Generator().manual_seed(0))
    assert not (m & ~obs).any()
    frac = m.sum().item() / obs.sum().item()
    assert 0.4 < frac < 0.8
    if strategy == "random":
        per = m.sum(1).float() / obs.sum(1).float()
        assert torch.allclose(per, torch.full_like(per, 0.6), atol=0.05)


def test_training_lowers_the_loss(data, tmp_path):
    x, xy, held = data
    r = stm.run(make_task(x, xy, held, tmp_path), **{**TEST, "epochs": 60, "lr": 3e-3})
    loss = r["history"]["loss"]
    assert np.mean(loss[-5:]) < 0.8 * np.mean(loss[:2])
    _check(r["imputed"], x)
    # held-out entries are sampled; a few may sit at DDIM's x0 bound in every sample (spread 0)
    assert (r["spread"][~held] == 0).all() and (r["spread"][held] > 0).mean() > 0.95


def test_latent_target_runs(data, tmp_path):
    x, xy, held = data
    out = stm.impute(make_task(x, xy, held, tmp_path), **{**TEST, "target": "latent"})
    _check(out, x)
    np.testing.assert_array_equal(out[~held], x[~held])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_run(sampler, data, tmp_path):
    x, xy, held = data
    out = stm.impute(make_task(x, xy, held, tmp_path), **{**TEST, "sampler": sampler, "aggregate": "mean"})
    _check(out, x)


def test_fixed_seed_is_deterministic_and_resume_skips_training(data, tmp_path):
    x, xy, held = data
    a = stm.run(make_task(x, xy, held, tmp_path / "a"), **TEST)
    b = stm.run(make_task(x, xy, held, tmp_path / "b"), **TEST)
    np.testing.assert_array_equal(a["imputed"], b["imputed"])
    c = stm.run(make_task(x, xy, held, tmp_path / "a"), **TEST)  # finished checkpoint in scratch
    assert c["history"]["resumed_from"] == c["history"]["steps"]
    np.testing.assert_array_equal(a["imputed"], c["imputed"])
    d = stm.run(make_task(x, xy, held, tmp_path / "d", seed=1), **TEST)
    assert not np.array_equal(a["imputed"], d["imputed"])


ABLATIONS = {  # Table 2 and Table 3 of the paper
    "mask_spot": {"train_mask_strategy": "spot"},
    "mask_gene": {"train_mask_strategy": "gene"},
    "no_or_mask": {"or_mask": False},
    "no_lr_mask": {"lr_mask": False},
    "no_mask": {"or_mask": False, "lr_mask": False},
    "gat": {"encoder": "gat"},
    "gin": {"encoder": "gin"},
    "mlp": {"encoder": "mlp"},
    "no_gnn": {"encoder": "none"},
    "ratio_0.9": {"train_mask_ratio": 0.9},
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_variants_run(name, data, tmp_path):
    x, xy, held = data
    p = METHOD.params("test", ABLATIONS[name])  # overrides must name existing params
    out = stm.impute(make_task(x, xy, held, tmp_path), **p)
    _check(out, x)
    np.testing.assert_array_equal(out[~held], x[~held])


def test_inductive_trains_on_train_spots_and_imputes_all(data, tmp_path):
    x, xy, held = data
    train = xy[:, 0] < 5  # test spots: the right-hand strip
    out = stm.impute(make_task(x, xy, held, tmp_path, train=train), **TEST)
    _check(out, x)
    assert np.isfinite(out[~train]).all()


@pytest.mark.parametrize("target", ["values", "latent"])
def test_held_out_truth_does_not_change_the_output(target, data, tmp_path):
    x, xy, held = data
    other = x.copy()
    other[held] = np.random.default_rng(5).normal(10, 5, size=held.sum())
    p = {**TEST, "target": target}
    a = stm.impute(make_task(x, xy, held, tmp_path / "a"), **p)
    b = stm.impute(make_task(other, xy, held, tmp_path / "b"), **p)
    np.testing.assert_array_equal(a, b)


def test_parameter_count_of_the_paper_configuration():
    p = METHOD.params("paper")
    model = STMCDI(1000, p)
    n = count_parameters(model)
    assert n == 424_585  # paper: "about 826,471"; see methods/stmcdi/README.md for the breakdown


def test_beats_the_gene_mean_on_smooth_data(tmp_path):
    x, xy, held = smooth_data(n_side=10, n_genes=30, seed=2, held=0.1)
    p = {**METHOD.params("test"), "epochs": 80, "lr": 3e-3, "recon_weight": 1.0, "n_samples": 5, "sample_steps": 10,
         "channels": 16, "layers": 2, "heads": 2, "train_mask_ratio": 0.2}
    out = stm.impute(make_task(x, xy, held, tmp_path), **p)
    obs = np.where(held, np.nan, x)
    gene_mean = np.broadcast_to(np.nanmean(obs, 0), x.shape)
    rmse = lambda a: float(np.sqrt(((a[held] - x[held]) ** 2).mean()))  # noqa: E731
    assert rmse(out) < rmse(gene_mean)


# ---- the review's fixes (issue 10, item 5) ------------------------------------------------------

def test_checkpoint_is_loaded_on_the_cpu(data, tmp_path, monkeypatch):
    """RNG states must reach set_rng_state / Generator.set_state as CPU uint8 tensors (CUDA-safe resume)."""
    x, xy, held = data
    stm.run(make_task(x, xy, held, tmp_path), **TEST)  # leaves a finished checkpoint in scratch
    seen = {}
    real_load, real_set = torch.load, torch.set_rng_state

    def load(*a, **k):
        seen["map_location"] = k.get("map_location")
        return real_load(*a, **k)

    def set_rng_state(state):
        seen["rng"] = (state.device.type, state.dtype)
        return real_set(state)

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(torch, "set_rng_state", set_rng_state)
    r = stm.run(make_task(x, xy, held, tmp_path), **TEST)
    assert r["history"]["resumed_from"] == r["history"]["steps"]
    assert seen == {"map_location": "cpu", "rng": ("cpu", torch.uint8)}


def _resume_equals_uninterrupted(x, xy, held, tmp_path, monkeypatch):
    from stbench_methods.stmcdi import train as trn

    p = {**TEST, "epochs": 4, "checkpoints": 4, "dropout": 0.1}
    full = stm.run(make_task(x, xy, held, tmp_path / "full"), **p)
    calls = {"n": 0}
    real = trn.EMA.update

    def crash(self, model):
        calls["n"] += 1
        if calls["n"] == full["history"]["steps"] - 2:  # after the third checkpoint, before the end
            raise KeyboardInterrupt
        return real(self, model)

    monkeypatch.setattr(trn.EMA, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        stm.run(make_task(x, xy, held, tmp_path / "cut"), **p)
    monkeypatch.setattr(trn.EMA, "update", real)
    again = stm.run(make_task(x, xy, held, tmp_path / "cut"), **p)
    assert 0 < again["history"]["resumed_from"] < again["history"]["steps"]
    np.testing.assert_array_equal(full["imputed"], again["imputed"])


def test_resume_mid_training_equals_an_uninterrupted_run(data, tmp_path, monkeypatch):
    x, xy, held = data
    _resume_equals_uninterrupted(x, xy, held, tmp_path, monkeypatch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda(data, tmp_path):
    x, xy, held = data
    import dataclasses

    t = dataclasses.replace(make_task(x, xy, held, tmp_path), device="cuda")
    assert t.torch_device().type == "cuda"
    a = stm.run(t, **TEST)
    b = stm.run(t, **TEST)  # resumes from the finished checkpoint: RNG states loaded on the CPU
    assert b["history"]["resumed_from"] == b["history"]["steps"]
    np.testing.assert_array_equal(a["imputed"], b["imputed"])


@pytest.mark.parametrize("kind", ["gcn", "gat", "gin"])
def test_minibatch_encoder_equals_full_graph(kind):
    from stbench_methods.stmcdi.encoder import GraphEncoder
    from stbench_methods.stmcdi.graph import subgraph_for

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xy = np.stack(np.meshgrid(np.arange(30), np.arange(20)), -1).reshape(-1, 2) + rng.normal(0, 0.1, (600, 2))
    n = len(xy)
    ei = knn_edge_index(xy, 5)
    enc = GraphEncoder(kind, 20, 16, 3).eval()
    x = torch.randn(n, 20)
    full_ei, full_ew = enc.graph(ei, n)
    ref = enc(x, ei)
    for batch in (torch.arange(0, 16), torch.as_tensor(rng.choice(n, 8, replace=False))):
        nodes, sub_ei, pos, sub_ew = subgraph_for(batch, full_ei, n, enc.hops, full_ew)
        assert len(nodes) < n  # a real subgraph, with an outer ring
        out = enc(x[nodes], sub_ei, sub_ew)[pos] if kind == "gcn" else enc(x[nodes], sub_ei)[pos]
        torch.testing.assert_close(out, ref[batch], atol=1e-5, rtol=0)


def test_diverged_model_fails_with_a_clear_error(data, tmp_path, monkeypatch):
    x, xy, held = data

    def nan_sample(self, xb, *a, **k):
        return torch.full((a[2], *xb.shape), float("nan"))  # (ob, zb, n_samples, ...)

    monkeypatch.setattr(STMCDI, "sample", nan_sample)
    with pytest.raises(FloatingPointError, match=r"stMCDI: the imputation has \d+ non-finite.*lr"):
        stm.impute(make_task(x, xy, held, tmp_path), **TEST)


@pytest.mark.parametrize("name,value", [("sampler", "euler"), ("aggregate", "mode"), ("optimizer", "sgd")])
def test_bad_enum_fails_in_the_registry(name, value):
    """param_schema is the only home of the limits (run does not repeat them)."""
    from stbench.errors import ConfigError

    with pytest.raises(ConfigError, match=f"method 'stmcdi': parameter {name}={value!r}"):
        METHOD.params("test", {name: value})


def test_deterministic_algorithms_are_on_inside_fit(data, tmp_path, monkeypatch):
    x, xy, held = data
    seen = []
    real = stm.fit

    def spy(*a, **k):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(*a, **k)

    monkeypatch.setattr(stm, "fit", spy)
    before = torch.are_deterministic_algorithms_enabled()
    stm.impute(make_task(x, xy, held, tmp_path), **TEST)
    assert seen == [True] and torch.are_deterministic_algorithms_enabled() == before


def test_config_variants_table1_label_and_figure3():
    """config.yaml: no stMCDI variant duplicates another's parameters (ratio_0.6 was the default's twin),
    the default variant is Figure 3's 0.6 point, and the Table 1 row names the reading."""
    import yaml

    from stbench import config as cfg
    from stbench.run.registry import default_methods_dir

    conf = yaml.safe_load((default_methods_dir().parent / "config.yaml").read_text())
    vs = [v for v in cfg.variants(conf) if v.method == "stmcdi"]
    keys = [json_key(v.params) for v in vs]
    assert len(set(keys)) == len(keys)
    fig3 = {v.x: v.name for v in vs if v.figure == "figure3"}
    assert fig3[0.6] == "default"
    default = next(v for v in vs if v.name == "default")
    assert default.label == f"stMCDI (target: {default.params['target']})"
    assert METHOD.label({**TEST, "target": "latent"}) == "stMCDI (target: latent)"


def json_key(p):
    import json

    return json.dumps(p, sort_keys=True, default=str)


@pytest.mark.parametrize("encoder", ["gcn", "gat"])
def test_full_graph_training_equals_subgraph_training(encoder, data, tmp_path, monkeypatch):
    """The GPU path (whole graph each step) trains the same model as the CPU path (k-hop subgraphs)."""
    from stbench_methods.stmcdi import train as train_mod

    x, xy, held = data
    p = {**TEST, "encoder": encoder, "checkpoints": 0, "dropout": 0.0}
    runs = []
    for full in (False, True):
        monkeypatch.setattr(train_mod, "use_full_graph", lambda dev, n, hops, full=full: full and hops > 0)
        runs.append(stm.run(make_task(x, xy, held, tmp_path), **p))
    np.testing.assert_allclose(runs[0]["history"]["loss"], runs[1]["history"]["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs[0]["imputed"], runs[1]["imputed"], rtol=1e-4, atol=1e-4)


# ---- App. F.1: the generator swapped for GAIN / VAE / MLP on the same encoder latent --------------

PAPER_OPTIMISER = {k: METHOD.params("paper")[k] for k in ("optimizer", "lr", "lr_milestones", "lr_factors",
                                                           "weight_decay", "ema", "grad_clip")}


@pytest.mark.parametrize("generator", ["gain", "vae", "mlp"])
def test_generators_learn_beyond_untrained_and_gene_mean(generator, tmp_path):
    """With the diffusion model's paper optimiser in the parameters (6e-6, decaying): the generators train with
    their own settings (gen_lr), so they still learn."""
    x, xy, held = smooth_data(n_side=10, n_genes=30, seed=2, held=0.1)
    p = METHOD.params("test", {"generator": generator, "epochs": 80, "gen_lr": 3e-3, "gen_hidden": 64,
                               "train_mask_ratio": 0.2, "checkpoints": 0, **PAPER_OPTIMISER})
    trained = stm.run(make_task(x, xy, held, tmp_path), **p)
    untrained = stm.impute(make_task(x, xy, held, tmp_path), **{**p, "max_steps": 1})
    obs = np.where(held, np.nan, x)
    gene_mean = np.broadcast_to(np.nanmean(obs, 0), x.shape)
    rmse = lambda a: float(np.sqrt(((a[held] - x[held]) ** 2).mean()))  # noqa: E731
    out = trained["imputed"]
    assert rmse(out) < 0.95 * rmse(untrained), (rmse(out), rmse(untrained))
    assert rmse(out) < rmse(gene_mean), (rmse(out), rmse(gene_mean))
    _check(out, x)
    np.testing.assert_array_equal(out[~held], x[~held])
    n = trained["n_parameters"]
    assert n["denoiser"] == 0 and n["generator"] > 0 and n["encoder"] > 0


def test_generators_get_their_own_optimiser():
    from stbench_methods.stmcdi.generators import optimiser_params

    paper = METHOD.params("paper")
    assert optimiser_params(paper) == paper                                   # diffusion: the paper's schedule
    for g in ("gain", "vae", "mlp"):
        q = optimiser_params({**paper, "generator": g})
        assert q["lr"] == paper["gen_lr"] != paper["lr"] and q["optimizer"] == "adam"
        assert not q["lr_milestones"] and not q["ema"] and not q["weight_decay"] and not q["grad_clip"]


def _generator_batch(kind, beta=1.0, seed=0):
    from stbench_methods.stmcdi.generators import Generator

    torch.manual_seed(seed)
    g = Generator(kind, 12, METHOD.params("test", {"generator": kind, "gen_hidden": 16, "gen_latent": 4,
                                                   "vae_beta": beta}), latent=True)
    gen = torch.Generator().manual_seed(seed)
    xb = torch.randn(9, 12, generator=gen)
    ob = torch.rand(9, 12, generator=gen) < 0.8
    targets = ob & (torch.rand(9, 12, generator=gen) < 0.4)
    cond = (ob & ~targets).float()
    z = torch.randn(9, 12, generator=gen)
    return g, xb, ob, cond, targets, z


def test_gain_hint_and_losses_are_the_papers():
    """Yoon et al. 2018: B hides exactly one entry per spot, H = B m + 0.5 (1 - B); the MSE is on the *given*
    entries, so the values of the training targets M (not given) enter no GAIN loss, the given ones do."""
    from stbench_methods.stmcdi.generators import paper_hint_vector

    b = paper_hint_vector((50, 7), torch.Generator().manual_seed(1), "cpu")
    assert torch.equal((b == 0).sum(1), torch.ones(50, dtype=torch.long)) and set(b.unique().tolist()) == {0.0, 1.0}
    g, xb, ob, cond, targets, z = _generator_batch("gain")
    loss = lambda x: float(g.loss(x, ob, cond, targets, z, torch.Generator().manual_seed(5)).detach())  # noqa: E731
    base = loss(xb)
    assert loss(torch.where(targets, xb + 10.0, xb)) == base                  # M's values: in no loss
    assert loss(torch.where(cond > 0, xb + 1.0, xb)) != base                  # the given ones: the MSE


def test_vae_kl_weight_is_stated():
    """The VAE loss = per-spot summed squared error over observed entries + vae_beta x KL (summed over latent
    dims), averaged over spots: the difference between beta = 1 and beta = 0 is the mean per-spot KL, with no
    division by the number of genes."""
    runs = {}
    for beta in (0.0, 1.0):
        g, xb, ob, cond, targets, z = _generator_batch("vae", beta)
        runs[beta] = float(g.loss(xb, ob, cond, targets, z, torch.Generator().manual_seed(5)))
    hid = g.enc(g._inputs(xb, cond, z))
    mu, logvar = g.mu(hid), g.logvar(hid).clamp(-10, 10)
    kl = float((-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean())
    assert kl > 0.01
    assert runs[1.0] - runs[0.0] == pytest.approx(kl, rel=1e-4)


def test_generator_needs_the_values_target():
    with pytest.raises(ValueError, match="target 'values'"):
        STMCDI(10, METHOD.params("test", {"generator": "mlp", "target": "latent"}))


def test_figure4_is_written(small_pre, small_mask, tmp_path):
    """Figure 4: clustered heatmaps of the generators' held-out predictions beside stMCDI's diffusion."""
    from stbench.results.figures import figure4_from_files
    from stbench.data.task import load_task
    from tests.workflow_path import write_inputs

    held, train = small_mask
    d = write_inputs(tmp_path, small_pre, held, train)
    task = load_task(d / "tasks" / "m" / "seed0.npz", scratch=tmp_path)
    files = {}
    for label, gen in [("stMCDI (target: values)", "diffusion"), ("GAIN", "gain"), ("VAE", "vae"), ("MLP", "mlp")]:
        out = stm.impute(task, **METHOD.params("test", {"generator": gen, "checkpoints": 0}))
        files[label] = tmp_path / f"{gen}.npz"
        np.savez(files[label], imputed=out)
    png = tmp_path / "figures" / "figure4_ds_m.png"
    figure4_from_files(d / "preprocessed.h5ad", d / "masks" / "m" / "seed0.npz", d / "tasks" / "m" / "seed0.npz",
                       {k: str(v) for k, v in files.items()}, png, title="ds / m")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_min_steps_floors_and_max_steps_caps_training():
    """`min_steps` (the quick preset's 400) lengthens training on a small section; `max_steps` caps it."""
    from stbench_methods.stmcdi.cost import total_steps

    p = {"epochs": 40, "batch_size": 64}
    assert total_steps(600, p) == (400, 10)  # the demo: unchanged by the quick preset's floor
    assert total_steps(131, p) == (120, 3)  # a 131-cell seqFISH field
    assert total_steps(131, {**p, "min_steps": 400}) == (400, 3)
    assert total_steps(600, {**p, "min_steps": 400}) == (400, 10)
    assert total_steps(131, {**p, "min_steps": 400, "max_steps": 200}) == (200, 3)
    assert METHOD.params("quick")["min_steps"] == 400
