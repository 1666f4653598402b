"""scGNN (Wang et al., Nat. Commun. 2021) reimplemented for spot-level imputation.

Pipeline (upstream ``scGNN.py``; the upstream defaults are the manifest's params):

1. Feature autoencoder on the expression matrix (held-out entries filled truth-free, loss masked to
   the observed entries), ``regu_epochs`` epochs. Its 128-d embedding gives
2. the cell graph: k-NN (k = 10, Euclidean) on the embedding, pruned (mean + 1 std rule);
   optionally unioned with / replaced by the spatial k-NN graph of the spots (``graph``).
3. Graph autoencoder (GCN-VAE 32/16) on the graph, node features = the binarised embedding; its
   embedding is clustered (LouvainK: Louvain gives the number of clusters, k-means assigns).
4. Iterate (at most ``em_iterations``): one cluster autoencoder per cluster reconstructs its
   cells, the feature autoencoder is trained on the reconstruction (``em_epochs``), a new graph,
   a new graph embedding, new clusters; stop when consecutive clusterings agree (ARI > 0.99,
   ``converge_type: celltype``) or the graph stops changing (``graph``).
5. Imputation autoencoder: the autoencoder restarted from its initial weights, trained on the
   observed data with the final graph and cell types as regularisers (``impute_graph`` = 0.3,
   ``impute_celltype`` = 0.1), plus the L1 penalty on the weights. Its reconstruction at the
   held-out entries is the imputation.

Under ``inductive`` steps 1-5 run on the ``train_spots`` only (their graph, clusters, fills, losses); the
trained imputation autoencoder then reconstructs every spot, the test fold included.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import scipy.sparse as sp
import torch

from sklearn.metrics import adjusted_rand_score

from stbench.kit.methodkit import observed_fill, seeded, torch_threads

from . import graph as G
from .model import AE, ae_forward, gae_embedding, train_ae


def build_graph(z: np.ndarray, coords: np.ndarray, p: dict, spatial: sp.csr_matrix | None) -> sp.csr_matrix:
    """The cell (spot) graph of one iteration: embedding k-NN, spatial k-NN, or their union."""
    if p["graph"] == "spatial":
        return spatial
    a = G.embedding_graph(z, int(p["k"]), p["knn_distance"], p["prune"])
    if p["graph"] == "both":
        a = sp.csr_matrix(((a + spatial) > 0).astype(np.float64))
    return a


def impute_weights(adj: sp.csr_matrix, labels: np.ndarray, p: dict, batch_size: int) -> np.ndarray:
    """Per-cell loss weights of the imputation autoencoder.

    Upstream's regularised loss is ``gamma * sum(SE) + g * sum(A_b @ SE) + c * sum(C_b @ SE)``
    with A_b, C_b the graph and the same-cell-type matrix restricted to the batch, SE the squared
    errors (cells x genes). ``sum(M @ SE) = sum_j (sum_i M_ij) * SE_j``, so each cell's error is
    weighted by gamma + g * (its degree in the batch) + c * (its cell type's size in the batch).
    """
    n = adj.shape[0]
    reg = p["impute_regularizer"]
    w = np.full(n, float(p["impute_gamma"]))
    b = max(1, int(batch_size))
    for s in range(0, n, b):
        sl = slice(s, min(s + b, n))
        if reg in ("graph", "celltype"):
            w[sl] += float(p["impute_graph"]) * np.asarray(adj[sl][:, sl].sum(0)).ravel()
        if reg == "celltype":
            lab = labels[sl]
            size = np.bincount(lab, minlength=lab.max() + 1)
            w[sl] += float(p["impute_celltype"]) * size[lab]
    return w


def run(task, **params) -> dict:
    """Full scGNN run. Returns ``imputed`` plus diagnostics (history, labels, graph, iterations)."""
    p = dict(params)
    dev = task.torch_device()
    t0 = time.time()
    obs_mask = np.asarray(task.observed_mask, dtype=bool)
    rows = np.flatnonzero(np.asarray(task.train_spots, dtype=bool))    # the fit reads the train spots only
    filled = observed_fill(task, p["fill"])
    # upstream works on log(x+1) >= 0 with a ReLU output; on a z-scored task shift each gene by its
    # observed minimum (over the train spots) so that the data are >= 0 (no shift on the log scale)
    x_obs = np.where(obs_mask, np.nan_to_num(np.asarray(task.observed, dtype=np.float64)), np.inf)[rows]
    offset = np.minimum(np.where(np.isfinite(x_obs.min(0)), x_obs.min(0), 0.0), 0.0).astype(np.float32)
    x_all_np = (filled - offset[None, :]).astype(np.float32)
    x_np = x_all_np[rows]
    n, g = x_np.shape
    coords = np.asarray(task.coords, dtype=np.float64)[rows]
    spatial = G.spatial_graph(coords, int(p["spatial_k"] or p["k"])) if p["graph"] != "embedding" else None
    train_mask = obs_mask[rows]

    f32 = dict(dtype=torch.float32, device=dev)
    x = torch.as_tensor(x_np, **f32)
    mask = torch.as_tensor(train_mask, device=dev)
    bs = int(p["batch_size"])
    gamma = torch.full((n,), float(p["gamma"]), **f32)
    l1_fe = float(p["l1"]) if p["l1_scope"] == "all" else 0.0
    l2_fe = float(p["l2"]) if p["l1_scope"] == "all" else 0.0
    kw = dict(batch_size=bs, l1=l1_fe, l2=l2_fe, reduction=p["reduction"])
    rng = np.random.default_rng(np.random.SeedSequence([int(task.seed), 7]))
    hist: dict = {"feature": [], "em": [], "cluster": [], "impute": [], "n_clusters": [], "ari": [],
                  "graph_change": [], "n_edges": []}

    def embed(z_np: np.ndarray, adj: sp.csr_matrix) -> np.ndarray:
        if not p["use_gae"]:
            return z_np
        zd = (z_np > z_np.mean(0)).astype(np.float32)  # upstream: binarised embedding as node features
        return gae_embedding(zd, adj, epochs=int(p["gae_epochs"]), hidden1=int(p["gae_hidden1"]),
                             hidden2=int(p["gae_hidden2"]), lr=float(p["gae_lr"]), dropout=float(p["gae_dropout"]),
                             model=p["gae_model"], edge_holdout=float(p["gae_edge_holdout"]), rng=rng, device=dev)

    with seeded(task.seed, dev), torch_threads(p.get("threads")):
        model = AE(g, int(p["hidden"]), int(p["latent"])).to(dev)
        start_state = copy.deepcopy(model.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))

        # 1. feature autoencoder
        hist["feature"] = train_ae(model, opt, x, x, mask, gamma, epochs=int(p["regu_epochs"]), **kw)
        recon, z = ae_forward(model, x, bs)
        z_np = z.cpu().numpy().astype(np.float64)

        # 2-3. cell graph, graph embedding
        adj = build_graph(z_np, coords, p, spatial)
        emb = embed(z_np, adj)
        hist["n_edges"].append(int(adj.nnz // 2))
        lap0 = G.normalized_laplacian(adj)
        adj_old = lap0
        alpha = float(p["alpha"])
        threshold = float(p["converge_graph_ratio"]) * float(abs(lap0).sum() / (n * n))
        labels_old = np.zeros(n, dtype=np.int64)
        labels = labels_old
        converged, iterations = False, 0

        # 4. iterations
        for it in range(int(p["em_iterations"])):
            iterations = it + 1
            labels = G.cluster_labels(adj, emb, p["clustering"], resolution=p["resolution"],
                                      n_clusters=int(p["n_clusters"]), max_clusters=int(p["max_clusters"]),
                                      min_cluster_size=int(p["min_cluster_size"]), seed=int(task.seed))
            hist["n_clusters"].append(int(labels.max() + 1))
            if p["cluster_ae"] and int(p["cluster_epochs"]) > 0:
                fe_state = copy.deepcopy(model.state_dict())
                new = torch.empty_like(recon)
                losses = []
                for c in range(int(labels.max()) + 1):
                    idx = torch.as_tensor(np.flatnonzero(labels == c), device=dev)
                    cae = AE(g, int(p["hidden"]), int(p["latent"])).to(dev)
                    cae.load_state_dict(fe_state)  # each cluster AE starts from the feature AE
                    copt = torch.optim.Adam(cae.parameters(), lr=float(p["lr"]))
                    rc = recon[idx]
                    losses.append(train_ae(cae, copt, rc, rc, mask[idx], gamma[idx],
                                           epochs=int(p["cluster_epochs"]), **kw)[-1:])
                    new[idx] = ae_forward(cae, rc, bs)[0]
                recon = new
                hist["cluster"].append([v for l in losses for v in l])
            em_in = recon if p["em_input"] == "recon" else x
            hist["em"].append(train_ae(model, opt, em_in, em_in, mask, gamma, epochs=int(p["em_epochs"]), **kw))
            recon, z = ae_forward(model, em_in, bs)
            z_np = z.cpu().numpy().astype(np.float64)
            adj = build_graph(z_np, coords, p, spatial)
            emb = embed(z_np, adj)
            hist["n_edges"].append(int(adj.nnz // 2))

            adj_new = sp.csr_matrix(alpha * lap0 + (1 - alpha) * G.column_normalised(adj))
            change = G.graph_change(adj_new, adj_old)
            adj_old = adj_new
            a = float(adjusted_rand_score(labels_old, labels))
            hist["graph_change"].append(change)
            hist["ari"].append(a)
            g_ok, c_ok = change < threshold, a > float(p["converge_celltype_ratio"])
            done = {"celltype": c_ok, "graph": g_ok, "both": g_ok and c_ok, "either": g_ok or c_ok}[p["converge_type"]]
            labels_old = labels
            if done:
                converged = True
                break

        if int(p["em_iterations"]) == 0:
            labels = G.cluster_labels(adj, emb, p["clustering"], resolution=p["resolution"],
                                      n_clusters=int(p["n_clusters"]), max_clusters=int(p["max_clusters"]),
                                      min_cluster_size=int(p["min_cluster_size"]), seed=int(task.seed))

        # 5. imputation autoencoder: restart from the initial weights, regularised by graph and cell types
        model.load_state_dict(start_state)
        opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
        w = torch.as_tensor(impute_weights(adj, labels, p, bs), **f32)
        hist["impute"] = train_ae(model, opt, x, x, mask, w, epochs=int(p["impute_epochs"]), batch_size=bs,
                                  l1=float(p["l1"]), l2=float(p["l2"]), reduction=p["reduction"])
        out, _ = ae_forward(model, torch.as_tensor(x_all_np, **f32), bs)   # every spot, the test fold included
        out = out.cpu().numpy()
    if p["post_threshold"] is not None:
        out = np.where(out < float(p["post_threshold"]), 0.0, out)
    out = out + offset[None, :]
    imputed = np.where(obs_mask, np.nan_to_num(np.asarray(task.observed)), out)
    imputed = np.nan_to_num(imputed, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return {"imputed": imputed, "reconstruction": out.astype(np.float32), "labels": labels, "adjacency": adj,
            "fit_rows": rows,
            "iterations": iterations, "converged": converged, "history": hist, "seconds": time.time() - t0}


def impute(task, **params) -> np.ndarray:
    return run(task, **params)["imputed"]
