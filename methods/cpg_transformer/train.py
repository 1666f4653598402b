"""Data preparation, masked-token training and segment-wise prediction for CpG Transformer.

Upstream (gdewael/cpg-transformer, ``datamodules.CpGTransformerDataModule`` /
``CpGTransformerDataset``, ``cpgtransformer.CpGTransformer``, ``train_cpg_transformer.py``,
``impute_genome.py``), mapped to a spot x gene matrix: cells -> spots, CpG sites -> genes.

* The site axis is cut into segments of ``segment_size`` consecutive genes (in the gene order):
  starts 0, S, 2S, ... and one last segment ending at the last gene; with fewer genes than S the
  segment is the whole gene axis.
* Each training step takes one segment and a group of spots (all spots, or ``resample_cells`` of
  them), masks ``int(mask_p * segment length)`` random trainable observed entries (at most all of
  them): a fraction ``1 - mask_random_p`` become the missing token, the rest get a random value
  drawn from the empirical distribution of observed values; the loss is the MSE on those entries.
* Held-out entries (NaN in the task) are the missing token everywhere and never targets. A
  ``val_fraction`` of the observed entries of the training spots is set aside (missing token in
  every training input) for the validation loss that drives early stopping and the choice of the
  best epoch; at prediction all observed entries are inputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stbench.kit.early_stopping import EarlyStopping
from stbench.kit.methodkit import COLUMN_ORDERS, column_order, validation_split

from .model import CpGTransformer

ORDERS = COLUMN_ORDERS


# ----------------------------------------------------------------------------- gene order
def gene_order(x: np.ndarray, m: np.ndarray, how: str) -> np.ndarray:
    """Permutation of the genes that becomes the site axis.

    ``task``: the task's order. ``correlation``: leaves of an average-linkage hierarchical
    clustering on 1 - r (r = pairwise-complete Pearson correlation of observed entries), in
    optimal leaf order, so that co-expressed genes are neighbours and fall in each other's window.
    """
    return column_order(x, m, how)


# ----------------------------------------------------------------------------- data
def prepare(task, gene_order_how: str, val_fraction: float, seed: int) -> dict:
    """Matrices on the site axis (genes permuted), standardised values, masks, validation entries."""
    obs = np.array(task.observed_mask, dtype=bool)
    x = np.nan_to_num(np.asarray(task.observed, dtype=np.float64))
    train_spots = np.array(task.train_spots, dtype=bool)
    if not train_spots.any():
        train_spots[:] = True
    fit = obs & train_spots[:, None]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1103]))
    val = np.zeros_like(obs)
    idx = np.flatnonzero(fit.ravel())
    val.ravel()[idx[validation_split(idx.size, float(val_fraction), rng)]] = True
    train = fit & ~val
    order = gene_order(x, train, gene_order_how)   # validation entries are not used for the order
    vals = x[train]
    mu = float(vals.mean()) if vals.size else 0.0
    sd = float(vals.std()) if vals.size > 1 else 1.0
    sd = sd if sd > 0 else 1.0
    z = np.where(obs, (x - mu) / sd, 0.0)
    # a sample of trainable values: the empirical distribution the randomised entries are drawn from
    pool = z[train]
    if pool.size > 2500:
        pool = rng.choice(pool, size=2500, replace=False)
    if pool.size == 0:
        pool = np.zeros(1)
    perm = lambda a: np.ascontiguousarray(a[:, order])  # noqa: E731
    return {"z": perm(z).astype(np.float32), "obs": perm(obs), "train": perm(train), "val": perm(val),
            "order": order, "mu": mu, "sd": sd, "pool": np.sort(pool).astype(np.float32),
            "fit_spots": np.flatnonzero(train_spots)}


def segments(n_sites: int, size: int) -> list[tuple[int, int]]:
    """Training segments of the site axis (upstream: non-overlapping cuts plus one ending at the end)."""
    size = min(int(size), n_sites)
    starts = list(range(0, n_sites - size + 1, size))
    if starts[-1] != n_sites - size:
        starts.append(n_sites - size)
    return [(s, s + size) for s in starts]


def predict_segments(n_sites: int, size: int, rf2: int) -> list[tuple[int, int, int, int]]:
    """Overlapping prediction segments (upstream ``impute_genome.py``): (start, stop, keep_from, keep_to)
    in site coordinates; each segment keeps its outputs at least ``rf2`` sites from an inner edge."""
    size = min(int(size), n_sites)
    if size >= n_sites:
        return [(0, n_sites, 0, n_sites)]
    step = size - 2 * rf2
    if step <= 0:
        raise ValueError("segment_size must exceed (window - 1) * n_layers for prediction")
    out = []
    start = 0
    while True:
        stop = min(start + size, n_sites)
        start = stop - size
        lo = 0 if start == 0 else start + rf2
        hi = n_sites if stop == n_sites else stop - rf2
        out.append((start, stop, lo, hi))
        if stop == n_sites:
            break
        start = hi - rf2
    return out


def spot_groups(n: int, size: int | None, gen: torch.Generator) -> list[torch.Tensor]:
    """All spots (None), or a random partition of the spots into round(n / size) groups of about ``size``."""
    if not size or size >= n:
        return [torch.arange(n)]
    perm = torch.randperm(n, generator=gen)
    k = max(1, round(n / int(size)))
    return list(torch.tensor_split(perm, k))


def mask_block(cand: torch.Tensor, n_mask_total: int, mask_random_p: float, pool: torch.Tensor,
               gen: torch.Generator):
    """Upstream masking of one block. ``cand``: [L, C] trainable observed entries. Returns
    (targets [n, 2], masked [n_m, 2], randomised [n_r, 2], random values [n_r])."""
    nz = cand.nonzero()
    n = min(int(n_mask_total), nz.shape[0])
    pick = nz[torch.randperm(nz.shape[0], generator=gen)[:n]]
    if mask_random_p:
        n_m = int(n * (1 - mask_random_p))
        n_r = n - n_m                            # = ceil(n * mask_random_p) up to rounding
    else:
        n_m, n_r = n, 0
    rand_vals = pool[torch.randint(pool.shape[0], (n_r,), generator=gen)]
    return pick, pick[:n_m], pick[n_m:], rand_vals


def _block_inputs(d: dict, spots: torch.Tensor, seg: tuple[int, int], device, train_inputs: bool):
    """[1, L, C] values and missing flags of one block (site axis first)."""
    s, e = seg
    z = d["z_t"][s:e][:, spots]
    missing = ~(d["train_t"] if train_inputs else d["obs_t"])[s:e][:, spots]
    return z.unsqueeze(0).to(device), missing.unsqueeze(0).to(device)


def _aux(spots: torch.Tensor, seg: tuple[int, int], device):
    s, e = seg
    sites = torch.arange(s, e)
    return spots.unsqueeze(0).to(device), sites.unsqueeze(0).to(device), sites.unsqueeze(0).to(device, torch.float32)


def training_loss(net, d: dict, spots: torch.Tensor, seg: tuple[int, int], mask_p: float, mask_random_p: float,
                  gen: torch.Generator, device) -> torch.Tensor | None:
    """Masked-token MSE of one block (None when it has no trainable entry)."""
    s, e = seg
    cand = d["train_t"][s:e][:, spots]
    targets, masked, rand, rand_vals = mask_block(cand, int((e - s) * mask_p), mask_random_p, d["pool_t"], gen)
    if targets.shape[0] == 0:
        return None
    values, missing = _block_inputs(d, spots, seg, "cpu", train_inputs=True)
    values, missing = values.clone(), missing.clone()
    missing[0, masked[:, 0], masked[:, 1]] = True
    values[0, rand[:, 0], rand[:, 1]] = rand_vals
    values[0, masked[:, 0], masked[:, 1]] = 0.0
    cells, sites, pos = _aux(spots, seg, device)
    pred = net(values.to(device), missing.to(device), cells, sites, pos)
    tgt = d["z_t"][s:e][:, spots][targets[:, 0], targets[:, 1]].to(device)
    return torch.mean((pred[0, targets[:, 0].to(device), targets[:, 1].to(device)] - tgt) ** 2)


@torch.no_grad()
def validation_loss(net, d: dict, segs, groups, device) -> float:
    """MSE on the validation entries, all of them missing in the input, in eval mode."""
    net.eval()
    se, n = 0.0, 0
    for seg in segs:
        for spots in groups:
            s, e = seg
            vm = d["val_t"][s:e][:, spots]
            if not vm.any():
                continue
            values, missing = _block_inputs(d, spots, seg, device, train_inputs=True)
            pred = net(values, missing, *_aux(spots, seg, device))[0].cpu()
            tgt = d["z_t"][s:e][:, spots]
            se += float(((pred - tgt) ** 2)[vm].sum())
            n += int(vm.sum())
    net.train()
    return se / max(n, 1)


def block_stream(segs, fit_spots: torch.Tensor, resample_cells, gen: torch.Generator):
    """Endless stream of training blocks (segment, spot indices): pass after pass over every segment x
    spot group of the training spots, each pass with a fresh random spot partition and in a random
    order (upstream shuffles)."""
    while True:
        blocks = [(seg, fit_spots[g]) for seg in segs for g in spot_groups(len(fit_spots), resample_cells, gen)]
        for i in torch.randperm(len(blocks), generator=gen).tolist():
            yield blocks[i]


def auto_steps_per_epoch(d: dict, segs, n_fit: int, p: dict) -> int:
    """Steps that mask, in expectation, as many entries as there are trainable observed entries."""
    size = n_fit / max(1, round(n_fit / int(p["resample_cells"]))) if p["resample_cells"] else n_fit
    size = min(size, n_fit)
    per_col = d["train_t"].sum(1).double() * size / n_fit           # trainable entries per gene per block
    per_step = np.mean([min(int((e - s) * float(p["mask_p"])), float(per_col[s:e].sum())) for s, e in segs])
    return max(1, math.ceil(int(d["train_t"].sum()) / max(per_step, 1.0)))


def fit(net, d: dict, p: dict, seed: int, device) -> dict:
    """The training loop (upstream Lightning defaults): Adam, linear warm-up over ``warmup_steps``,
    learning rate x ``lr_decay_factor`` after every epoch, early stopping on the validation loss
    with ``patience`` epochs, the weights of the best validation epoch restored at the end."""
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    n_sites = d["z_t"].shape[0]
    fit_spots = torch.as_tensor(d["fit_spots"], dtype=torch.long)   # training spots only (inductive masks)
    segs = segments(n_sites, p["segment_size"])
    val_groups = [fit_spots[g] for g in spot_groups(len(fit_spots), p["resample_cells"],
                                                    torch.Generator().manual_seed(int(seed) * 7919 + 23))]
    has_val = bool(d["val_t"].any())
    spe = int(p["steps_per_epoch"]) if p["steps_per_epoch"] else auto_steps_per_epoch(d, segs, len(fit_spots), p)
    stream = block_stream(segs, fit_spots, p["resample_cells"], gen)
    opt = torch.optim.Adam(net.parameters(), lr=p["lr"])
    lr = float(p["lr"])
    warm = int(p["warmup_steps"])
    max_epochs = int(p["max_epochs"])
    max_steps = math.inf if p["max_steps"] is None else int(p["max_steps"])
    hist = {"train_loss": [], "val_loss": [], "steps": 0, "epochs": 0, "steps_per_epoch": spe, "best_epoch": None,
            "stopped_early": False, "nonfinite": False}
    stop = EarlyStopping(int(p["patience"]) if p["earlystop"] else None)
    step = 0
    net.train()
    for epoch in range(max_epochs):
        losses = []
        for _ in range(spe):
            if step >= max_steps:
                break
            seg, spots = next(stream)
            loss = training_loss(net, d, spots, seg, p["mask_p"], p["mask_random_p"], gen, device)
            if loss is None:
                continue
            if not torch.isfinite(loss):
                hist["nonfinite"] = True
                break
            if step < warm:
                for g in opt.param_groups:
                    g["lr"] = lr * min(1.0, (step + 1) / warm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
        if not losses:
            break
        for g in opt.param_groups:   # MultiplicativeLR at the end of each epoch (overridden during warm-up)
            g["lr"] *= float(p["lr_decay_factor"])
        hist["train_loss"].append(float(np.mean(losses)))
        hist["epochs"] = epoch + 1
        monitor = validation_loss(net, d, segs, val_groups, device) if has_val else hist["train_loss"][-1]
        hist["val_loss"].append(monitor)
        if not math.isfinite(monitor):
            hist["nonfinite"] = True
            break
        stopping = stop.step(monitor, net if has_val else None, epoch + 1)   # without validation entries
        hist["best_epoch"] = stop.best_epoch if stop.best_epoch >= 0 else None    # the last weights are kept
        if stopping:
            hist["stopped_early"] = True
            break
        if step >= max_steps or hist["nonfinite"]:
            break
    hist["steps"] = step
    stop.restore(net)
    return hist


@torch.no_grad()
def predict(net, d: dict, p: dict, seed: int, device, chunk: int = 64, among=None) -> np.ndarray:
    """Model output for every entry (standardised scale, site order); all observed entries are inputs.
    ``among`` (spot indices): only these spots are predicted, with only these spots as the cell context (the
    other columns of the result are NaN).

    The gene axis is cut into overlapping segments as upstream's ``impute_genome.py`` (each keeps the
    outputs at least (window - 1) * n_layers / 2 genes from an inner edge). Spots: all at once
    (upstream), or, with ``predict_cells``, a seeded random partition into groups of that size.
    """
    net.eval()
    n_sites, n_spots = d["z_t"].shape
    rf2 = (int(p["window"]) - 1) * int(p["n_layers"]) // 2
    out = torch.empty(n_sites, n_spots)
    among = torch.arange(n_spots) if among is None else torch.as_tensor(among, dtype=torch.long)
    out[:] = float("nan")
    groups = [among[g] for g in spot_groups(len(among), p["predict_cells"],
                                            torch.Generator().manual_seed(int(seed) * 7919 + 29))]
    for s, e, lo, hi in predict_segments(n_sites, p["segment_size"], rf2):
        for spots in groups:
            values, missing = _block_inputs(d, spots, (s, e), device, train_inputs=False)
            pred = net(values, missing, *_aux(spots, (s, e), device), chunk=chunk)[0].cpu()
            out[lo:hi, spots] = pred[lo - s:hi - s]
    return out.numpy()


def build(n_spots: int, n_genes: int, p: dict) -> CpGTransformer:
    return CpGTransformer(n_spots, n_genes, cell_embed_size=int(p["cell_embed_size"]),
                          value_embed_size=int(p["value_embed_size"]), gene_embed_size=int(p["gene_embed_size"]),
                          hidden_size=int(p["hidden_size"]), n_layers=int(p["n_layers"]), n_heads=int(p["n_heads"]),
                          head_dim=int(p["head_dim"]), window=int(p["window"]), dropout=float(p["dropout"]),
                          activation=p["activation"], layernorm=bool(p["layernorm"]), mode=p["mode"])


def to_torch(d: dict) -> dict:
    """Site-first torch copies of the matrices (what the blocks are cut from)."""
    d = dict(d)
    d["z_t"] = torch.as_tensor(d["z"].T.copy())
    d["obs_t"] = torch.as_tensor(d["obs"].T.copy())
    d["train_t"] = torch.as_tensor(d["train"].T.copy())
    d["val_t"] = torch.as_tensor(d["val"].T.copy())
    d["pool_t"] = torch.as_tensor(d["pool"])
    return d
