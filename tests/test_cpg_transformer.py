"""CpG Transformer (methods/cpg_transformer): attention, gene order, masking, truth-free loss, signal, determinism."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stbench.kit.methodkit import gene_means
from stbench.run.registry import Method, validate_manifest
from stbench.data.task import build_task, truth_on_scale

FOLDER = Path(__file__).resolve().parents[1] / "methods" / "cpg_transformer"
METHOD = Method("cpg_transformer", FOLDER,
                validate_manifest(yaml.safe_load((FOLDER / "method.yaml").read_text()), FOLDER))
cpgt = METHOD.load_module("impute")
model = METHOD.load_module("model")
train = METHOD.load_module("train")
TEST = METHOD.params("test")


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture()
def task(small_pre, small_mask, tmp_path):
    held, spots = small_mask
    return build_task(small_pre, held, spots, seed=0, device="cpu", scratch=tmp_path)


def _rmse(a, b, held):
    return float(np.sqrt(np.mean((a[held] - b[held]) ** 2)))


def test_defaults_are_upstream_and_schema_rejects_bad_values():
    p = METHOD.params()
    assert (p["window"], p["n_layers"], p["hidden_size"], p["n_heads"], p["head_dim"]) == (21, 4, 64, 8, 8)
    assert (p["cell_embed_size"], p["value_embed_size"], p["gene_embed_size"]) == (32, 32, 32)
    assert (p["mask_p"], p["mask_random_p"], p["segment_size"], p["resample_cells"]) == (0.25, 0.2, 1024, None)
    assert (p["lr"], p["lr_decay_factor"], p["warmup_steps"], p["patience"], p["dropout"]) == (5e-4, 0.9, 1000, 10, 0.2)
    assert p["mode"] == "axial" and p["layernorm"] is True and p["activation"] == "relu"
    METHOD.params("quick")
    from stbench.errors import ConfigError

    for bad in ({"window": 20}, {"mode": "2D"}, {"mask_random_p": 1.0}, {"gene_order": "alphabetical"},
                {"lr": 0}, {"resample_cells": 0}):
        with pytest.raises(ConfigError):
            METHOD.params(overrides=bad)


@pytest.mark.parametrize("length,block", [(9, 4), (13, 32), (16, 8)])
def test_window_attention_matches_dense_reference(length, block):
    """The block-wise sliding window equals a dense masked Transformer-XL attention; gradients are finite."""
    torch.manual_seed(0)
    att = model.WindowSiteAttention(16, 4, 2, 5, 0.0, block=block)
    pos = torch.tensor([[0.0, 1, 3, 4, 7, 8, 9, 12, 13, 15, 16, 18, 20, 21, 23, 24][:length]])
    x = torch.randn(1, length, 3, 16, requires_grad=True)
    r, outside = model.relative_sinusoids(pos, 2, 16)
    z = att(x, r, outside)
    z.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in att.parameters())
    with torch.no_grad():
        q, k, v = att.qkv(x).view(1, length, 3, 3, 2, 4).unbind(3)
        q = q * 0.5
        inv = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
        ref = torch.zeros(1, length, 3, 2, 4)
        for i in range(length):
            js = [j for j in range(length) if abs(j - i) <= 2]
            ang = (pos[0, js] - pos[0, i]).unsqueeze(1) * inv
            rel = att.rel(torch.cat([ang.sin(), ang.cos()], 1)).view(len(js), 2, 4)       # [J, nh, h]
            for c in range(3):
                s = ((q[0, i, c] + att.u) * k[0, js, c]).sum(-1) + ((q[0, i, c] + att.v) * rel).sum(-1)  # [J, nh]
                ref[0, i, c] = torch.einsum("jn,jnh->nh", torch.softmax(s, 0), v[0, js, c])
        ref = att.out(ref.view(1, length, 3, 8))
    torch.testing.assert_close(z.detach(), ref, atol=1e-5, rtol=1e-5)


def test_cell_attention_is_full_attention_over_spots():
    torch.manual_seed(1)
    att = model.CellAttention(8, 4, 2, 0.0).eval()
    x = torch.randn(1, 5, 7, 8)
    q, k, v = att.qkv(x).view(1, 5, 7, 3, 2, 4).unbind(3)
    a = torch.softmax(torch.einsum("blcnh,bldnh->blncd", q, k) / 2.0, -1)
    ref = att.out(torch.einsum("blncd,bldnh->blcnh", a, v).reshape(1, 5, 7, 8))
    torch.testing.assert_close(att(x), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(att(x, chunk=2), ref, atol=1e-5, rtol=1e-5)


def test_gene_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    x[:, 1] = x[:, 0] + 0.1 * rng.normal(size=40)
    m = rng.random(x.shape) > 0.3
    order = train.gene_order(x, m, "correlation")
    assert sorted(order) == list(range(6)) and abs(int(np.flatnonzero(order == 0)[0]) - int(np.flatnonzero(order == 1)[0])) == 1
    np.testing.assert_array_equal(train.gene_order(x, m, "task"), np.arange(6))


def test_segments_cover_the_gene_axis():
    assert train.segments(10, 1024) == [(0, 10)]
    assert train.segments(10, 4) == [(0, 4), (4, 8), (6, 10)]
    for n, size, rf2 in ((10, 1024, 40), (50, 20, 4), (57, 30, 8), (31, 30, 8)):
        covered = np.zeros(n, int)
        for s, e, lo, hi in train.predict_segments(n, size, rf2):
            assert s <= lo < hi <= e and e - s == min(size, n)
            assert (lo == 0 or lo - s >= rf2) and (hi == n or e - hi >= rf2)
            covered[lo:hi] = 1
        assert covered.all()


def test_masking_follows_upstream_percentages():
    gen = torch.Generator().manual_seed(0)
    cand = torch.rand(40, 30, generator=gen) > 0.3
    pool = torch.tensor([5.0, 6.0, 7.0])
    targets, masked, rand, vals = train.mask_block(cand, int(40 * 0.25), 0.2, pool, gen)
    assert targets.shape[0] == 10 and masked.shape[0] == 8 and rand.shape[0] == 2
    assert cand[targets[:, 0], targets[:, 1]].all() and len({tuple(t) for t in targets.tolist()}) == 10
    assert set(vals.tolist()) <= {5.0, 6.0, 7.0}
    targets, masked, rand, _ = train.mask_block(cand, 10_000, 0.2, pool, gen)
    assert targets.shape[0] == int(cand.sum())                     # at most every trainable entry


def test_prepared_data_is_truth_free_and_validation_is_hidden(task):
    d = train.prepare(task, "correlation", 0.1, task.seed)
    obs = np.asarray(task.observed_mask)[:, d["order"]]
    np.testing.assert_array_equal(d["obs"], obs)
    assert not (d["train"] & d["val"]).any() and (d["train"] | d["val"]).sum() == obs.sum()
    assert (d["z"][~obs] == 0).all()
    # the gene order, the scaling and the value pool do not change with the held-out values
    other = dataclasses.replace(task, observed=np.where(task.observed_mask, task.observed, 123.0).astype(np.float32))
    d2 = train.prepare(other, "correlation", 0.1, task.seed)
    for k in ("z", "order", "pool"):
        np.testing.assert_array_equal(d[k], d2[k])


def test_inductive_targets_come_from_training_spots_only(small_pre, small_mask, tmp_path):
    held, _ = small_mask
    spots = np.ones(held.shape[0], bool)
    spots[:20] = False
    t = build_task(small_pre, held, spots, seed=0, device="cpu", scratch=tmp_path)
    d = train.prepare(t, "task", 0.1, 0)
    assert not d["train"][:20].any() and not d["val"][:20].any() and d["obs"][:20].any()
    np.testing.assert_array_equal(d["fit_spots"], np.arange(20, held.shape[0]))
    stream = train.block_stream([(0, 50)], torch.as_tensor(d["fit_spots"]), 20, torch.Generator().manual_seed(0))
    seen = torch.cat([next(stream)[1] for _ in range(9)])
    assert (seen >= 20).all() and set(seen.tolist()) == set(range(20, held.shape[0]))   # training blocks: fit spots only
    out = cpgt.run(t, **{**TEST, "max_steps": 2})
    assert np.isfinite(out["imputed"]).all()


def test_loss_gradients_ignore_held_out_values(task):
    """Changing the held-out fill (any value, even NaN) leaves the first step's gradients bit-identical."""
    base = train.to_torch(train.prepare(task, "correlation", 0.1, task.seed))
    held = ~base["obs_t"]
    assert held.any()
    spots = torch.arange(task.n_spots)
    grads = []
    for fill in (0.0, 7.0, 1e4, float("nan")):
        d = dict(base)
        d["z_t"] = torch.where(held, torch.tensor(fill), base["z_t"])
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = train.build(task.n_spots, task.n_genes, {**TEST, "dropout": 0.2})
            torch.manual_seed(1)
            loss = train.training_loss(net, d, spots, (0, task.n_genes), TEST["mask_p"], 0.2,
                                       torch.Generator().manual_seed(3), "cpu")
            loss.backward()
        assert torch.isfinite(loss)
        grads.append([p.grad.clone() for p in net.parameters()])
    for g in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], g))


def test_training_beats_untrained_and_gene_mean(small_pre, small_mask, tmp_path):
    held, spots = small_mask
    task = build_task(small_pre, held, spots, seed=0, device="cpu", scratch=tmp_path)
    truth = truth_on_scale(small_pre, task)
    trained = cpgt.run(task, **TEST)
    untrained = cpgt.run(task, **{**TEST, "max_steps": 0})
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)
    r_trained, r_untrained, r_mean = (_rmse(x, truth, held) for x in (trained["imputed"], untrained["imputed"], mean))
    assert trained["history"]["steps"] == TEST["max_steps"] and untrained["history"]["steps"] == 0
    assert r_trained < r_untrained - 0.1, (r_trained, r_untrained)
    assert r_trained < r_mean - 0.04, (r_trained, r_mean)
    out = trained["imputed"]
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[~held], task.observed[~held])


def test_deterministic_and_seed_dependent(task):
    fast = {**TEST, "max_steps": 3}
    a, b = cpgt.impute(task, **fast), cpgt.impute(task, **fast)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cpgt.impute(dataclasses.replace(task, seed=1), **fast))


@pytest.mark.parametrize("variant", [
    {"mode": "intercell", "gene_embed_size": 0, "gene_order": "task"},
    {"mode": "intracell", "activation": "gelu", "layernorm": False},
    {"segment_size": 20, "window": 5, "resample_cells": 30, "predict_cells": 40, "dropout": 0.2, "val_fraction": 0.2,
     "steps_per_epoch": 2, "earlystop": True, "patience": 1},
])
def test_variants_run(task, variant):
    out = cpgt.run(task, **{**TEST, "max_steps": 4, **variant})
    assert np.isfinite(out["imputed"]).all()
    assert out["history"]["steps"] == 4 or out["history"]["stopped_early"]
