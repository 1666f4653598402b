"""GraphCpG (Deng et al., Bioinformatics 2023) on a spatial imputation task; see README.md.

Mapping: GraphCpG's cells -> spots, its CpG loci -> genes, the (locus x cell) methylation matrix
-> the task's (gene x spot) matrix. Steps:
1. order the genes (``locus_order``, order.py): the stand-in for the genomic order of CpG loci,
   computed from observed entries only;
2. standardise the observed values (one global z-score by default; undone at the end);
3. targets = observed entries of the ``train_spots``; a ``val_fraction`` of them is kept aside to
   pick the best epoch (upstream: validation chromosomes + ModelCheckpoint on val_loss). Training and
   validation inputs hold only the training entries: validation entries (as CpG Transformer hides
   them) and, under ``inductive``, every entry of a test-fold spot are unobserved there; the order and
   the standardisation come from the observed entries of the train spots (validation ones included: they are
   not held-out truth, only hidden as input);
4. each optimiser step takes ``batch_size`` targets, gathers their subgraphs at once (subgraph.py),
   predicts each target's value with the network (model.py) and minimises the MSE over them
   (upstream: BCE on binary states); Adam, linear warm-up, multiplicative decay per epoch;
5. every held-out entry is predicted from its own subgraph; observed entries are returned unchanged.
Held-out entries are never edges, never targets, never read (``prepare(fill=...)`` is tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stbench.kit.early_stopping import EarlyStopping
from stbench.kit.methodkit import validation_split

from .order import locus_order


@dataclass
class Prepared:
    order: np.ndarray          # (G,) task gene index at each locus position
    padded: object             # (G + 2h, 2, S) torch float: [observed indicator, indicator x standardised
                               #   value] of each locus (in locus order, h empty padding loci at both ends)
    padded_fit: object         # the same with only the training entries observed: the input of training and
                               #   validation (no validation entry, no test-fold spot)
    padded_train: object       # every observed entry of the train spots: the input of their predictions (inductive:
                               #   the train spots never read the test fold); None when every spot is a train spot
    targets_std: object        # (G, S) torch float: standardised values in locus order (the fill where unobserved)
    train_loci: object         # (N,) torch long: training targets (locus position, spot)
    train_cells: object
    val_loci: object           # validation targets (observed entries kept aside)
    val_cells: object
    pred_loci: object          # held-out entries, to predict
    pred_cells: object
    mu: np.ndarray             # (G,) mean and sd of the standardisation, task gene order
    sd: np.ndarray


def standardisation(vals: np.ndarray, mask: np.ndarray, how: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """(G,) means and sds of the observed entries: one global pair (``global``) or one per gene
    (``gene``; a gene without observed entries or spread falls back to the global pair)."""
    v = np.where(mask, vals, 0.0)
    n_obs = int(mask.sum())
    g_mu = float(v.sum() / n_obs) if n_obs else 0.0
    g_var = float((np.where(mask, v - g_mu, 0.0) ** 2).sum() / n_obs) if n_obs else 1.0
    g_sd = float(np.sqrt(g_var)) if g_var > 1e-12 else 1.0
    g = vals.shape[1]
    if how == "global":
        return np.full(g, g_mu), np.full(g, g_sd)
    n = mask.sum(0)
    mu = np.where(n > 0, v.sum(0) / np.maximum(n, 1), g_mu)
    var = np.where(n > 1, (np.where(mask, v - mu, 0.0) ** 2).sum(0) / np.maximum(n, 1), 0.0)
    sd = np.where(var > 1e-12, np.sqrt(np.maximum(var, 1e-12)), g_sd)
    return mu, sd


def prepare(task, segment_size: int, locus_order_how: str, val_fraction: float, standardize: str, device=None,
            fill: float = 0.0) -> Prepared:
    """Everything the network trains on, from observed entries only.

    ``fill`` is what held-out entries hold before they are masked out (tests set it to anything,
    NaN included, and check that nothing downstream changes)."""
    import torch

    from .subgraph import pad_loci

    mask = np.asarray(task.observed_mask, dtype=bool)
    obs = np.where(mask, np.nan_to_num(np.asarray(task.observed, dtype=np.float64)), 0.0)
    fit = mask & np.asarray(task.train_spots, dtype=bool)[:, None]        # (S, G): entries a fit may read
    spots, genes = np.nonzero(fit)                                        # row-major: deterministic
    rng = np.random.default_rng(np.random.SeedSequence([int(task.seed), 7211]))
    pick = validation_split(spots.size, float(val_fraction), rng)
    val = np.zeros_like(fit)
    val[spots[pick], genes[pick]] = True
    train_in = fit & ~val                                                 # the training entries
    mu, sd = standardisation(obs, fit, standardize)
    order = locus_order(obs, fit, locus_order_how)
    m_lc = np.ascontiguousarray(mask[:, order].T)                         # (G, S): loci in locus order x spots
    z_lc = np.where(m_lc, ((obs - mu) / sd)[:, order].T, fill).astype(np.float32)
    m_t = torch.as_tensor(m_lc, device=device)
    z_t = torch.as_tensor(np.ascontiguousarray(z_lc), device=device)
    half = (int(segment_size) - 1) // 2
    padded = pad_loci(m_t, z_t, half)
    padded_fit = pad_loci(torch.as_tensor(np.ascontiguousarray(train_in[:, order].T), device=device), z_t, half)
    padded_train = None
    if not np.asarray(task.train_spots, dtype=bool).all():
        padded_train = pad_loci(torch.as_tensor(np.ascontiguousarray(fit[:, order].T), device=device), z_t, half)

    loci, cells = np.nonzero(train_in[:, order].T)
    vl, vc = np.nonzero(val[:, order].T)
    pl, pc = np.nonzero(~m_lc)

    def t(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=device)

    return Prepared(order=order, padded=padded, padded_fit=padded_fit, padded_train=padded_train, targets_std=z_t,
                    train_loci=t(loci), train_cells=t(cells),
                    val_loci=t(vl), val_cells=t(vc), pred_loci=t(pl), pred_cells=t(pc),
                    mu=mu, sd=sd)


def n_cell_nodes(prep: Prepared, max_cells) -> int:
    s = int(prep.padded.shape[2])
    return s if max_cells is None else min(int(max_cells), s)


def build_model(prep: Prepared, segment_size: int, latent_dim, max_cells):
    from .model import GraphCpGNet

    return GraphCpGNet(segment_size, n_cell_nodes(prep, max_cells), latent_dim).to(prep.padded.device)


def batch_loss(model, prep: Prepared, loci, cells, segment_size: int, adj_dropout: float, generator=None,
               denominator: int | None = None, *, max_cells):
    """Sum of squared errors over a (micro-)batch of observed targets, divided by ``denominator``
    (the whole batch's size, so that micro-batch gradients add up to the batch-mean gradient)."""
    from .subgraph import build_batch

    g = build_batch(prep.padded_fit, loci, cells, segment_size, adj_dropout, generator, max_cells)
    y = prep.targets_std[loci, cells]
    return ((model(g) - y) ** 2).sum() / float(denominator or loci.shape[0])


def predict_std(model, prep: Prepared, loci, cells, segment_size: int, micro_batch_size: int, max_cells,
                seed: int = 0, padded=None):
    """Standardised predictions for targets (loci, cells): eval mode, no edge dropout, the input ``padded``
    (default: every observed entry). With ``max_cells``, the cell subsets come from a generator seeded with
    ``seed``."""
    import torch

    from .subgraph import build_batch

    was = model.training
    model.eval()
    gen = torch.Generator(device=prep.padded.device)
    gen.manual_seed(int(seed))
    out = []
    with torch.no_grad():
        for s in range(0, int(loci.shape[0]), int(micro_batch_size)):
            sl = slice(s, s + int(micro_batch_size))
            out.append(model(build_batch(prep.padded if padded is None else padded, loci[sl], cells[sl], segment_size,
                                         0.0, gen, max_cells)))
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, device=prep.padded.device)


def train(model, prep: Prepared, p: dict, seed: int) -> dict:
    """Upstream's loop: Adam; for the first ``warmup_steps`` steps lr = lr * (step + 1) / warmup_steps;
    after each epoch lr *= ``lr_decay_factor``; the weights of the best validation epoch are kept."""
    import torch

    w, mb, bs = int(p["segment_size"]), int(p["micro_batch_size"]), int(p["batch_size"])
    dev = prep.padded.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
    n = int(prep.train_loci.shape[0])
    per_epoch = n if p["targets_per_epoch"] is None else min(int(p["targets_per_epoch"]), n)
    hist = {"train_loss": [], "val_loss": [], "best_epoch": None}
    stop, step = EarlyStopping(None), 0        # no patience (upstream: ModelCheckpoint on val_loss): best weights
    for _ in range(int(p["epochs"]) if n else 0):
        model.train()
        perm = torch.randperm(n, generator=gen, device=dev)[:per_epoch]
        total = 0.0
        for s in range(0, per_epoch, bs):
            idx = perm[s:s + bs]
            if step < int(p["warmup_steps"]):
                for group in opt.param_groups:
                    group["lr"] = float(p["lr"]) * min(1.0, (step + 1) / int(p["warmup_steps"]))
            opt.zero_grad(set_to_none=True)
            for m in range(0, idx.shape[0], mb):
                j = idx[m:m + mb]
                loss = batch_loss(model, prep, prep.train_loci[j], prep.train_cells[j], w, float(p["adj_dropout"]),
                                  gen, denominator=int(idx.shape[0]), max_cells=p["max_cells"])
                loss.backward()
                total += float(loss.detach()) * idx.shape[0]
            opt.step()
            step += 1
        for group in opt.param_groups:
            group["lr"] *= float(p["lr_decay_factor"])
        hist["train_loss"].append(total / max(per_epoch, 1))
        if prep.val_loci.shape[0] > 0:
            pv = predict_std(model, prep, prep.val_loci, prep.val_cells, w, mb, p["max_cells"], seed + 1,
                             padded=prep.padded_fit)
            vl = float(((pv - prep.targets_std[prep.val_loci, prep.val_cells]) ** 2).mean())
            hist["val_loss"].append(vl)
            stop.step(vl, model)
            hist["best_epoch"] = stop.best_epoch if stop.best_epoch >= 0 else None
    stop.restore(model)
    return hist


def impute_with(model, task, prep: Prepared, p: dict) -> np.ndarray:
    """The output matrix: observed entries unchanged, held-out entries predicted by ``model``."""
    pred = predict_std(model, prep, prep.pred_loci, prep.pred_cells, int(p["segment_size"]),
                       int(p["micro_batch_size"]), p["max_cells"], int(task.seed) + 2)
    if prep.padded_train is not None:         # inductive: a train spot's entries are predicted from train spots only
        import torch

        on_train = torch.as_tensor(np.asarray(task.train_spots, dtype=bool), device=pred.device)[prep.pred_cells]
        if bool(on_train.any()):
            pt = predict_std(model, prep, prep.pred_loci[on_train], prep.pred_cells[on_train], int(p["segment_size"]),
                             int(p["micro_batch_size"]), p["max_cells"], int(task.seed) + 2, padded=prep.padded_train)
            pred = pred.clone()
            pred[on_train] = pt
    out = np.where(task.observed_mask, np.nan_to_num(np.asarray(task.observed, dtype=np.float32)), 0.0)
    out = out.astype(np.float32)
    genes = prep.order[prep.pred_loci.cpu().numpy()]
    spots = prep.pred_cells.cpu().numpy()
    out[spots, genes] = (pred.double().cpu().numpy() * prep.sd[genes] + prep.mu[genes]).astype(np.float32)
    return out


def run(task, **params) -> tuple[np.ndarray, dict]:
    """impute(), also returning the training history and the locus order."""
    from stbench.kit.methodkit import seeded

    dev = task.torch_device()
    w = int(params["segment_size"])
    prep = prepare(task, w, params["locus_order"], float(params["val_fraction"]), params["standardize"], dev)
    with seeded(task.seed, dev):
        model = build_model(prep, w, params["latent_dim"], params["max_cells"])
        hist = train(model, prep, params, task.seed)
        out = impute_with(model, task, prep, params)
    hist["order"] = prep.order
    return out, hist


def impute(task, **params) -> np.ndarray:
    return run(task, **params)[0]
