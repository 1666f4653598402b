"""GraphSCI (Rao et al., iScience 2021) on a spatial imputation task; see README.md.

Spots play upstream's cells. Steps, following upstream's train.py / input_data.py:
1. size factors s_i = L_i / N with the task's truth-free library sizes L (``task.library_size``)
   and N = their median (``task.median_library_size``);
2. input = log1p(N * C / L) (upstream's normalize_per_cell + log1p), per-gene z-score over observed
   entries, held-out entries set to 0 (= the gene's observed mean after scaling: truth-free);
3. gene graph: |pairwise-complete Pearson r| > corr_threshold over observed entries;
4. full-batch training (one Adam step per epoch, exponentially decayed learning rate) of the
   graph VAE + ZINB autoencoder, losses on observed entries only;
   under ``inductive`` the fit reads the ``train_spots`` only: the z-score statistics, the gene graph, the
   gene-graph encoder's node features (genes x train spots) and the expression autoencoder's rows; the
   test fold is then predicted with the trained network (its own batch for the batch norm, the gene
   embedding Z of the train spots);
5. predicted counts s_i * mu_ij are mapped to the task's scale with ``task.counts_to_scale``
   (on the log scale this is log1p(mu_ij));
   observed entries are returned unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# torch's notices about its (beta) sparse CSR tensors, raised inside PyG's GCNConv; nothing to act on
_SPARSE_NOTICES = ".*([Ss]parse CSR tensor support is in beta|[Ss]parse invariant checks are implicitly disabled).*"


@dataclass
class Prepared:
    x: object             # (S_fit, G) torch float: normalised, log1p, z-scored input of the train spots
                          #   (0 where held out)
    counts: object        # (S_fit, G) torch float: observed counts, 0 where held out (never read there)
    mask: object          # (S_fit, G) torch bool: observed entries
    size_factors: object  # (S_fit,) torch float
    graph: object         # gene graph as a sparse CSR adjacency (adj_t) for PyG's GCNConv
    adj_label: object     # (G, G) torch float: A + I, label of the graph decoder
    pos_weight: float
    norm: float
    lgamma_y1: object     # lgamma(counts + 1), constant part of the ZINB NLL, computed once
    x_other: object = None         # (S - S_fit, G) the other spots' input (the inductive test fold), or None
    size_factors_other: object = None
    fit_rows: object = None        # (S_fit,) numpy index of the train spots; other_rows: the rest
    other_rows: object = None


def prepare(task, corr_threshold: float, graph_on: str, device=None) -> Prepared:
    """Everything the network trains on, computed from observed entries only."""
    import torch

    from stbench.kit.graph_autoencoder import balance
    from stbench.kit.methodkit import observed_zscore

    from .graph import gene_graph

    mask = np.asarray(task.observed_mask, dtype=bool)
    train = np.asarray(task.train_spots, dtype=bool)
    c = np.where(mask, np.nan_to_num(np.asarray(task.observed_counts, dtype=np.float64)), 0.0)
    # size factors and normalisation from the task's (truth-free) library sizes L and N = median(L):
    # upstream's sc.pp.normalize_per_cell + log1p is log1p(N * C / L), s_i = L_i / N
    lib = np.asarray(task.library_size, dtype=np.float64)
    med = float(task.median_library_size)
    sf = lib / med
    logn = np.log1p(c / lib[:, None] * med)
    fit = mask & train[:, None]                                          # what the fit may read
    mean, sd = observed_zscore(logn, fit)
    z = np.where(mask, (logn - mean) / sd, 0.0)                         # sc.pp.scale; held out -> 0

    rows, other = np.flatnonzero(train), np.flatnonzero(~train)
    edge_index, adj = gene_graph((c if graph_on == "counts" else logn)[rows], fit[rows], corr_threshold)
    g = adj.shape[0]
    pos_weight, norm = balance(g, float(adj.sum()))
    label = adj + np.eye(g, dtype=np.float32)

    from torch_geometric.utils import to_torch_csr_tensor

    dev = device if device is not None else task.torch_device()
    f = lambda a: torch.tensor(np.asarray(a, dtype=np.float32), device=dev)
    # a sparse adj_t makes GCNConv use one sparse-dense matmul (~10x faster than edge-wise messages)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SPARSE_NOTICES)
        graph = to_torch_csr_tensor(edge_index.flip(0).to(dev), size=(g, g))
    return Prepared(x=f(z[rows]), counts=f(c[rows]), mask=torch.tensor(fit[rows], device=dev),
                    size_factors=f(sf[rows]), graph=graph, adj_label=f(label), pos_weight=pos_weight, norm=norm,
                    lgamma_y1=torch.lgamma(f(c[rows]) + 1.0),
                    x_other=f(z[other]) if other.size else None,
                    size_factors_other=f(sf[other]) if other.size else None,
                    fit_rows=rows, other_rows=other)


def build_model(prep: Prepared, hidden1: int, hidden2: int, dropout: float):
    from .model import GraphSCINet

    s, g = prep.x.shape
    return GraphSCINet(s, g, int(hidden1), int(hidden2), float(dropout)).to(prep.x.device)


def loss_on(model, prep: Prepared, counts=None, *, mse_weight: float):
    """Forward pass in training mode and upstream's cost; ``counts`` overrides the target matrix."""
    from .model import graphsci_loss

    out = model(prep.x.T, prep.x, prep.graph, prep.size_factors, sample=True)
    target, lg = (prep.counts, prep.lgamma_y1) if counts is None else (counts, None)
    return graphsci_loss(out, target, prep.mask, prep.adj_label, prep.pos_weight, prep.norm, mse_weight, lg)


def predict_counts(model, prep: Prepared) -> np.ndarray:
    """Predicted counts s_i * mu_ij (upstream's z_express) of every spot, with Z at its mean and no dropout.
    The gene embedding Z comes from the train spots; the train spots and the other spots (the inductive test
    fold) go through the expression autoencoder as separate batches (its batch norm uses batch statistics)."""
    import torch

    model.eval()
    with torch.no_grad():
        fit = model(prep.x.T, prep.x, prep.graph, prep.size_factors, sample=False)["counts"]
        if prep.x_other is None:
            return fit.double().cpu().numpy()
        oth = model(prep.x.T, prep.x_other, prep.graph, prep.size_factors_other, sample=False)["counts"]
    out = np.empty((len(prep.fit_rows) + len(prep.other_rows), fit.shape[1]))
    out[prep.fit_rows] = fit.double().cpu().numpy()
    out[prep.other_rows] = oth.double().cpu().numpy()
    return out


def impute(task, *, hidden1: int, hidden2: int, lr: float, epochs: int, dropout: float, mse_weight: float,
           lr_decay_rate: float, lr_decay_steps: int, corr_threshold: float, graph_on: str):
    import torch

    from stbench.kit.methodkit import seeded

    dev = task.torch_device()
    prep = prepare(task, float(corr_threshold), graph_on, dev)
    with seeded(task.seed, dev), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SPARSE_NOTICES)
        model = build_model(prep, hidden1, hidden2, dropout)
        opt = torch.optim.Adam(model.parameters(), lr=float(lr))
        # tf.train.exponential_decay(lr, step, decay_steps, decay_rate, staircase=False)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: float(lr_decay_rate) ** (step / float(lr_decay_steps)))
        model.train()
        for _ in range(int(epochs)):  # full batch: one update per epoch, as upstream
            opt.zero_grad(set_to_none=True)
            cost, _ = loss_on(model, prep, mse_weight=float(mse_weight))
            cost.backward()
            opt.step()
            sched.step()
        pred = predict_counts(model, prep)
    scaled = np.asarray(task.counts_to_scale(pred), dtype=np.float64)
    obs = np.asarray(task.observed, dtype=np.float64)
    out = np.where(task.observed_mask, obs, scaled)
    if not np.isfinite(out).all():
        raise FloatingPointError("graphsci: non-finite predictions (training diverged)")
    return out.astype(np.float32)
