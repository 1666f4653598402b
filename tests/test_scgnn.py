"""scGNN (methods/scgnn): signal, masked losses, graph pieces, variants, determinism."""

import numpy as np
import pytest
import torch

from stbench.kit.methodkit import gene_means, observed_fill
from stbench.run.registry import get_method
from stbench.data.task import TaskSpec, build_task

METHOD = get_method("scgnn")
METHOD.load_impute()
from stbench_methods.scgnn import graph as G  # noqa: E402
from stbench_methods.scgnn import impute as sc  # noqa: E402
from stbench_methods.scgnn.model import AE, ae_loss  # noqa: E402

TEST = METHOD.params("test")


@pytest.fixture(scope="module")
def task(small_pre, small_mask, tmp_path_factory):
    held, train = small_mask
    return build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path_factory.mktemp("scgnn"))


@pytest.fixture(scope="module")
def truth(small_pre):
    return np.asarray(small_pre.X, dtype=np.float32)


def _rmse(a, b, held):
    return float(np.sqrt(np.mean((a[held] - b[held]) ** 2)))


def test_training_beats_untrained_and_gene_mean(task, truth, small_mask):
    """Held-out RMSE after training is below the untrained network's and the per-gene mean's."""
    torch.set_num_threads(1)
    held = small_mask[0]
    trained = sc.run(task, **TEST)
    untrained = sc.impute(task, **{**TEST, "impute_epochs": 0})
    mean = np.broadcast_to(gene_means(task)[None, :], truth.shape)
    r_t, r_u, r_m = _rmse(trained["imputed"], truth, held), _rmse(untrained, truth, held), _rmse(mean, truth, held)
    assert r_t < r_u and r_t < 0.9 * r_m, (r_t, r_u, r_m)
    out = trained["imputed"]
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out[~held], task.observed[~held])  # observed entries returned unchanged
    h = trained["history"]
    assert h["impute"][-1] < h["impute"][0] and len(h["n_clusters"]) == trained["iterations"] >= 1


def test_loss_gradients_ignore_held_out_targets(task):
    """Changing the held-out targets (any fill, even NaN) leaves the first step's gradients bit-identical."""
    x_in = torch.as_tensor(observed_fill(task, "gene_mean"))
    mask = torch.as_tensor(np.array(task.observed_mask))
    w = torch.rand(task.n_spots, generator=torch.Generator().manual_seed(0)) + 0.5
    grads = []
    for fill in (0.0, 1e3, float("nan")):
        target = torch.as_tensor(np.where(task.observed_mask, np.nan_to_num(task.observed), fill).astype(np.float32))
        torch.manual_seed(0)
        net = AE(task.n_genes, 32, 8)
        loss, _, _ = ae_loss(net, x_in, target, mask, w, l1=1.0, l2=0.1, reduction="sum")
        loss.backward()
        assert torch.isfinite(loss)
        grads.append([p.grad.clone() for p in net.parameters()])
    for g in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], g))


def test_pruned_knn_graph_is_symmetric_and_pruned():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (40, 5)), rng.normal(8, 1, (40, 5))])
    idx, dist = G.knn(z, 10)
    assert idx.shape == (80, 10) and not (idx == np.arange(80)[:, None]).any()
    assert (np.diff(dist, axis=1) >= -1e-12).all()
    keep = G.prune_stats(dist)
    assert keep.any(1).all() and not keep.all()  # the far tail of some rows is cut
    a = G.embedding_graph(z, 10, TEST["knn_distance"], TEST["prune"])
    assert (a != a.T).nnz == 0 and a.diagonal().sum() == 0
    assert a[:40, 40:].nnz == 0  # the two groups are not linked
    _, dc = G.knn(z, 5, "cosine")
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    i0 = G.knn(z, 5, "cosine")[0][0]
    np.testing.assert_allclose(dc[0], 1 - zn[i0] @ zn[0], atol=1e-10)


def test_clustering_and_ari():
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(c, 0.3, (30, 4)) for c in (0, 5, 10)])
    a = G.embedding_graph(z, 8, TEST["knn_distance"], TEST["prune"])
    lab = G.cluster_labels(a, z, "kmeans", resolution=None, n_clusters=3, max_clusters=30, min_cluster_size=5, seed=0)
    truth = np.repeat([0, 1, 2], 30)
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(lab, truth) == pytest.approx(1.0)
    np.testing.assert_array_equal(lab, KMeans(3, n_init=10, random_state=0).fit_predict(z))   # scikit-learn's
    lab = G.cluster_labels(a, z, "louvain_k", resolution=None, n_clusters=3, max_clusters=30, min_cluster_size=5, seed=0)
    assert 2 <= lab.max() + 1 <= 3
    assert G.trim_clusters(np.array([0] * 10 + [1] * 2 + [2] * 10), 5, 30).max() == 2


def test_imputation_weights_match_upstream_matrix_form():
    """sum(A_b @ SE) and sum(C_b @ SE) equal the per-cell weights we use."""
    rng = np.random.default_rng(2)
    n = 12
    a = G.adjacency(n, rng.integers(0, n, (n, 3)))
    labels = rng.integers(0, 3, n)
    p = {**TEST, "impute_regularizer": "celltype", "impute_gamma": 0.2, "impute_graph": 0.3, "impute_celltype": 0.1}
    se = rng.random((n, 5))
    for bs in (n, 5):
        w = sc.impute_weights(a, labels, p, bs)
        ref = 0.0
        for s in range(0, n, bs):
            sl = slice(s, min(s + bs, n))
            c = (labels[sl][:, None] == labels[sl][None, :]).astype(float)
            ref += 0.2 * se[sl].sum() + 0.3 * (a[sl][:, sl].toarray() @ se[sl]).sum() + 0.1 * (c @ se[sl]).sum()
        assert (w[:, None] * se).sum() == pytest.approx(ref)


@pytest.mark.parametrize("variant", [{"graph": "spatial"}, {"graph": "both", "use_gae": False, "cluster_ae": False},
                                     {"converge_type": "graph", "em_input": "original", "knn_distance": "cosine"},
                                     {"clustering": "louvain", "impute_regularizer": "graph", "reduction": "mean",
                                      "l1_scope": "imputation", "prune": "none", "gae_model": "gcn_ae"}])
def test_variants_run(task, variant):
    p = {**TEST, "regu_epochs": 5, "em_epochs": 3, "cluster_epochs": 2, "gae_epochs": 3, "impute_epochs": 5, **variant}
    out = sc.impute(task, **p)
    assert out.shape == (task.n_spots, task.n_genes) and np.isfinite(out).all()


def test_deterministic_zscore_and_inductive(small_pre, small_mask, tmp_path):
    held, train = small_mask
    p = {**TEST, "regu_epochs": 5, "em_epochs": 3, "cluster_epochs": 2, "gae_epochs": 3, "impute_epochs": 5}
    t = build_task(small_pre, held, train, seed=0, device="cpu", scratch=tmp_path)
    np.testing.assert_array_equal(sc.impute(t, **p), sc.impute(t, **p))
    z = small_pre.copy()
    x = np.asarray(z.X, dtype=np.float64)
    z.X = ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)
    tz = build_task(z, held, train, spec=TaskSpec(scale="zscore"), seed=0, device="cpu", scratch=tmp_path)
    out = sc.impute(tz, **p)
    assert np.isfinite(out).all() and (out[held] < 0).any()  # negative values are reachable on the z scale
    ind = train.copy()
    ind[: len(ind) // 3] = False
    ti = build_task(small_pre, held, ind, seed=0, device="cpu", scratch=tmp_path)
    assert np.isfinite(sc.impute(ti, **p)).all()


def test_schema_rejects_bad_values():
    from stbench.errors import ConfigError

    for bad in ({"graph": "grid"}, {"k": 0}, {"lr": 0}, {"spatial_k": -1}):
        with pytest.raises(ConfigError):
            METHOD.params(None, bad)
    assert METHOD.params(None, {"spatial_k": None, "graph": "both"})["graph"] == "both"


def test_libraries_not_copies_and_threads_restored(task, monkeypatch):
    """torch's Adam, scikit-learn's KMeans and ARI (no in-folder copies); ``threads`` holds inside the run only
    (the caller's torch thread count is restored)."""
    import stbench_methods.scgnn.graph as graph_mod
    import stbench_methods.scgnn.model as model_mod

    assert not hasattr(model_mod, "Adam") and not hasattr(graph_mod, "kmeans") and not hasattr(graph_mod, "ari")
    made, seen = [], []

    class Spy(torch.optim.Adam):
        def __init__(self, *a, **k):
            made.append(1)
            super().__init__(*a, **k)

    orig = sc.train_ae

    def spy_train(*a, **k):
        seen.append(torch.get_num_threads())
        return orig(*a, **k)

    monkeypatch.setattr(torch.optim, "Adam", Spy)
    monkeypatch.setattr(sc, "train_ae", spy_train)
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    sc.run(task, **{**TEST, "threads": want})
    assert made and seen and set(seen) == {want}
    assert torch.get_num_threads() == before
