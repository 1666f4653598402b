"""GraphCpG (methods/graphcpg): it learns, its loss ignores held-out entries, its parts are right."""

import importlib

import numpy as np
import pytest
import torch

from stbench.run.registry import discover
from stbench.data.task import build_task, truth_on_scale


@pytest.fixture(scope="module")
def method():
    m = discover()["graphcpg"]
    fn = m.load_impute()
    return m, fn, importlib.import_module(fn.__module__)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sibling(method, name):
    return importlib.import_module(f"{method[2].__package__}.{name}")


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
    # 12 x 1024 targets: on this 72 x 50 section the network needs ~8k targets to pass the gene mean
    # (task seeds 0, 1, 2 give held-out RMSE 0.79, 0.76, 0.77 against the gene mean's 0.92)
    params = m.params("test", {"epochs": 12, "targets_per_epoch": 1024, "latent_dim": [48, 48], "max_cells": 16,
                               "batch_size": 64, "lr": 0.003})
    trained = fn(task, **params)

    prep = mod.prepare(task, params["segment_size"], params["locus_order"], params["val_fraction"],
                       params["standardize"])
    with seeded(task.seed):
        model = mod.build_model(prep, params["segment_size"], params["latent_dim"], params["max_cells"])
        untrained = mod.impute_with(model, task, prep, params)
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)

    r_trained, r_untrained, r_mean = (_rmse(truth, p, held) for p in (trained, untrained, mean))
    assert r_trained < 0.9 * r_untrained, (r_trained, r_untrained)
    assert r_trained < 0.95 * r_mean, (r_trained, r_mean)


def test_loss_gradients_ignore_held_out_entries(method, small_pre, small_mask, tmp_path):
    from stbench.kit.methodkit import seeded

    m, _, mod = method
    task = _task(small_pre, small_mask, tmp_path)
    p = m.params("test", {"adj_dropout": 0.2})       # edge dropout and cell sampling on: same RNG draws
    preps = [mod.prepare(task, p["segment_size"], p["locus_order"], p["val_fraction"], p["standardize"], fill=f)
             for f in (0.0, 1.0e4, float("nan"))]
    assert not torch.equal(preps[0].targets_std, preps[1].targets_std)   # the fills differ ...
    with seeded(0):
        model = mod.build_model(preps[0], p["segment_size"], p["latent_dim"], p["max_cells"])
    model.train()
    # one training batch whose subgraphs contain held-out (unobserved) entries of their windows
    loci, cells = preps[0].train_loci[:64], preps[0].train_cells[:64]
    grads, losses = [], []
    for prep in preps:
        model.zero_grad(set_to_none=True)
        gen = torch.Generator()
        gen.manual_seed(5)
        with seeded(1):                               # the same head-dropout masks for every fill
            loss = mod.batch_loss(model, prep, loci, cells, p["segment_size"], p["adj_dropout"], gen,
                                  max_cells=p["max_cells"])
        loss.backward()
        losses.append(loss.detach())
        grads.append([q.grad.clone() for q in model.parameters()])
    assert torch.isfinite(losses[0])
    for other_loss, other in zip(losses[1:], grads[1:]):   # ... and neither loss nor gradient moves
        assert torch.equal(losses[0], other_loss)
        assert all(torch.equal(a, b) for a, b in zip(grads[0], other))
    # no held-out entry is a training, validation or prediction-input target of the wrong kind
    held = ~task.observed_mask[:, preps[0].order].T
    for loci_, cells_ in ((preps[0].train_loci, preps[0].train_cells), (preps[0].val_loci, preps[0].val_cells)):
        assert not held[loci_.numpy(), cells_.numpy()].any()
    assert held[preps[0].pred_loci.numpy(), preps[0].pred_cells.numpy()].all()
    assert int(held.sum()) == preps[0].pred_loci.shape[0]


def test_subgraphs_are_windows_with_the_target_hidden(method):
    sg = _sibling(method, "subgraph")
    rng = np.random.default_rng(0)
    g, s, w = 7, 9, 5
    mask = rng.random((g, s)) > 0.3
    vals = rng.normal(size=(g, s)).astype(np.float32)
    padded = sg.pad_loci(torch.as_tensor(mask), torch.as_tensor(np.where(mask, vals, np.nan)), 2)
    assert padded.shape == (g + 4, 2, s) and torch.isfinite(padded).all()
    obs_l, obs_c = np.nonzero(mask)
    loci, cells = torch.as_tensor(obs_l[[0, 5, -1]]), torch.as_tensor(obs_c[[0, 5, -1]])
    batch = sg.build_batch(padded, loci, cells, w)
    e = batch.edges_in_loc.view(3, w, 2, s)
    for b in range(3):
        r, c = int(loci[b]), int(cells[b])
        for k in range(w):
            q = r - 2 + k
            want_m = mask[q] if 0 <= q < g else np.zeros(s, bool)
            want_v = np.where(want_m, vals[q] if 0 <= q < g else 0, 0)
            if k == 2:                                   # the centre row: the target's own edge is gone
                want_m, want_v = want_m.copy(), want_v.copy()
                want_m[c], want_v[c] = False, 0.0
            np.testing.assert_array_equal(e[b, k, 0].numpy(), want_m.astype(np.float32))
            np.testing.assert_allclose(e[b, k, 1].numpy(), want_v, rtol=0, atol=0)
    assert batch.center == 2 and torch.equal(batch.target_cell, cells)
    deg = e[:, :, 0].sum(2, keepdim=True)
    torch.testing.assert_close(batch.inv_deg_loc, torch.where(deg > 0, 1 / deg.clamp_min(1), 0 * deg))

    # sampled cell subsets hold the target, sorted, without repeats; the target's position is right
    gen = torch.Generator()
    gen.manual_seed(0)
    sel, pos = sg.sample_cells(s, cells, 4, gen)
    assert sel.shape == (3, 4) and (sel[:, 1:] > sel[:, :-1]).all()
    assert torch.equal(sel[torch.arange(3), pos], cells)
    gen.manual_seed(0)
    sub = sg.build_batch(padded, loci, cells, w, 0.0, gen, 4)
    es = sub.edges_in_loc.view(3, w, 2, 4)
    torch.testing.assert_close(es, e[torch.arange(3)[:, None], :, :, sel].permute(0, 2, 3, 1))
    assert torch.equal(sub.target_cell, pos)


def test_dense_relational_layer_matches_a_message_passing_reference(method):
    """The dense (B, W, C) layer equals per-relation mean aggregation over upstream-style edge lists
    (locus nodes 0..W-1, cell nodes W.., every observed entry an edge in both directions)."""
    from torch_geometric.utils import scatter

    sg, model = _sibling(method, "subgraph"), _sibling(method, "model")
    rng = np.random.default_rng(1)
    g, s, w, d_in, d_out = 6, 8, 3, 5, 4
    mask = rng.random((g, s)) > 0.4
    vals = rng.normal(size=(g, s)).astype(np.float32)
    padded = sg.pad_loci(torch.as_tensor(mask), torch.as_tensor(vals), 1)
    loci, cells = torch.tensor([0, 3, 5]), torch.tensor([1, 4, 7])
    gen = torch.Generator()
    gen.manual_seed(3)
    batch = sg.build_batch(padded, loci, cells, w, 0.3, gen)        # with edge dropout
    torch.manual_seed(0)
    conv = model.BipartiteRelConv(d_in, d_out)
    h_loc, h_cell = torch.randn(3, w, d_in), torch.randn(3, s, d_in)
    out_loc, out_cell = conv(h_loc, h_cell, batch)

    n = w + s
    for b in range(3):
        x = torch.cat([h_loc[b], h_cell[b]])
        el = batch.edges_in_loc.view(3, w, 2, s)[b]
        ec = batch.edges_in_cell.view(3, w, 2, s)[b]
        src, dst, val = [], [], []
        for k, c in zip(*np.nonzero(el[:, 0].numpy())):              # cell -> locus edges
            src.append(w + c), dst.append(k), val.append(float(el[k, 1, c]))
        for k, c in zip(*np.nonzero(ec[:, 0].numpy())):              # locus -> cell edges
            src.append(k), dst.append(w + c), val.append(float(ec[k, 1, c]))
        src, dst, val = torch.tensor(src), torch.tensor(dst), torch.tensor(val)[:, None]
        msg = x[src] @ conv.w_obs + val * (x[src] @ conv.w_val)
        ref = x @ conv.root + conv.bias + scatter(msg, dst, 0, dim_size=n, reduce="mean")
        centre, tcell = w // 2, w + int(cells[b])                    # the query relation: one edge each way
        if batch.q_in_loc[b]:
            ref[centre] += x[tcell] @ conv.w_query
        if batch.q_in_cell[b]:
            ref[tcell] += x[centre] @ conv.w_query
        torch.testing.assert_close(torch.cat([out_loc[b], out_cell[b]]), ref, rtol=1e-5, atol=1e-5)


def test_locus_order_and_correlations_use_observed_entries_only(method):
    order = _sibling(method, "order")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6))
    x[:, 3] = x[:, 0] + 0.05 * rng.normal(size=60)     # gene 3 follows gene 0
    x[:, 5] = -x[:, 0] + 0.05 * rng.normal(size=60)    # gene 5 mirrors it
    mask = rng.random(x.shape) > 0.2
    other = np.where(mask, x, rng.normal(50.0, 9.0, size=x.shape))
    o = order.locus_order(x, mask)
    np.testing.assert_array_equal(order.locus_order(other, mask), o)
    assert sorted(o.tolist()) == list(range(6))
    pos = {g: i for i, g in enumerate(o)}
    assert abs(pos[0] - pos[3]) == 1                   # positively correlated genes are neighbours
    assert abs(pos[0] - pos[5]) > 1                    # an anti-correlated one is not put beside them
    np.testing.assert_array_equal(order.locus_order(x, mask, "task"), np.arange(6))


def test_deterministic_and_keeps_observed(method, small_pre, small_mask, tmp_path):
    m, fn, _ = method
    task = _task(small_pre, small_mask, tmp_path)
    a = fn(task, **m.params("test"))
    b = fn(task, **m.params("test"))
    np.testing.assert_array_equal(a, b)
    obs = task.observed_mask
    np.testing.assert_array_equal(a[obs], task.observed[obs])
    assert a.dtype == np.float32 and a.shape == task.observed.shape and np.isfinite(a).all()


def test_bad_parameters_are_rejected(method, small_pre, small_mask, tmp_path):
    m, fn, _ = method
    task = _task(small_pre, small_mask, tmp_path)
    with pytest.raises(ValueError):
        fn(task, **m.params("test", {"segment_size": 20}))          # the window needs a centre
    with pytest.raises(ValueError):
        fn(task, **m.params("test", {"latent_dim": [8, 8]}))        # too narrow for the CNN readout


def test_validation_entries_are_hidden_during_training(method, small_pre, small_mask, tmp_path):
    """Validation entries are no input of training (CpG Transformer hides them too). The check: permute the
    validation values within each gene (per-gene z-score and the task's gene order stay the same), train both
    tasks with the same seed: the training losses agree, the validation losses do not (the targets did change);
    and moving one *training* entry does change the training losses (the comparison can tell)."""
    import dataclasses

    from stbench.kit.methodkit import seeded

    m, _, mod = method
    task = _task(small_pre, small_mask, tmp_path)
    p = m.params("test", {"epochs": 2, "targets_per_epoch": 64, "val_fraction": 0.2, "standardize": "gene",
                          "locus_order": "task"})
    args = (p["segment_size"], p["locus_order"], p["val_fraction"], p["standardize"])
    prep = mod.prepare(task, *args)
    genes, spots = prep.order[prep.val_loci.numpy()], prep.val_cells.numpy()
    obs = np.array(task.observed, dtype=np.float64)
    permuted = obs.copy()
    for g in np.unique(genes):                                       # rotate each gene's validation values
        s = spots[genes == g]
        permuted[s, g] = obs[np.roll(s, 1), g]
    assert not np.array_equal(permuted, obs)
    moved = obs.copy()
    tg, ts = prep.order[int(prep.train_loci[0])], int(prep.train_cells[0])
    moved[ts, tg] += 3.0

    def history(observed):
        other = dataclasses.replace(task, observed=observed)
        pr = mod.prepare(other, *args)
        with seeded(0):
            model = mod.build_model(pr, p["segment_size"], p["latent_dim"], p["max_cells"])
            return mod.train(model, pr, p, 0)

    base, perm, move = history(obs), history(permuted), history(moved)
    np.testing.assert_allclose(perm["train_loss"], base["train_loss"], rtol=1e-5)
    assert not np.allclose(perm["val_loss"], base["val_loss"], rtol=1e-3)
    assert not np.allclose(move["train_loss"], base["train_loss"], rtol=1e-5)
