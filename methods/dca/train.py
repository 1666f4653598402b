"""DCA inputs (size factors, log1p, per-gene scaling, truth-free fill) and the training loop.

Upstream (theislab/dca 0.3.3, ``io.normalize`` and ``train.train``): size factors = total count /
median total; input = ``sc.pp.scale(log1p(counts / size_factor))``; Keras ``fit`` with
``validation_split=0.1``, ``shuffle=True``, ``ReduceLROnPlateau(patience=10)`` and
``EarlyStopping(patience=15)`` on the validation loss, RMSprop (Keras default lr 0.001) with
gradient values clipped at 5. Here everything is computed from observed entries only.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from stbench.kit.early_stopping import EarlyStopping, Plateau
from stbench.kit.methodkit import observed_zscore
from stbench.kit.methodkit import validation_split as draw_validation

from .model import masked_count_loss


def prepare_inputs(task, size_factors: bool, log1p: bool, scale_input: bool) -> dict:
    """Network input, targets, mask and size factors from the task's observed counts.

    * size factor of a spot = its observed total count (kept genes, held-out entries excluded)
      / the median over fitting spots with a positive observed total; 1 for a spot without any
      observed count (e.g. a fully held-out spot).
    * input = log1p(counts / size factor), z-scored per gene with the mean and the sd (ddof=1,
      as ``sc.pp.scale``) of the gene's observed entries in the fitting spots.
    * held-out entries of the input are filled with the gene's observed mean on that input scale,
      i.e. 0 after scaling (truth-free); the targets there are 0 and masked out of every loss.
    """
    m = np.array(task.observed_mask, dtype=bool)  # a writable copy
    counts = np.where(m, np.nan_to_num(np.asarray(task.observed_counts, dtype=np.float64)), 0.0)
    if np.any(counts < 0):
        raise ValueError("dca: observed counts must be non-negative")
    fit_rows = np.array(task.train_spots, dtype=bool)
    total = counts.sum(axis=1)
    if size_factors:
        ref = total[fit_rows & (total > 0)]
        med = float(np.median(ref)) if ref.size else 1.0
        sf = np.where(total > 0, total / med, 1.0)
    else:
        sf = np.ones(counts.shape[0])
    x = counts / sf[:, None]
    if log1p:
        x = np.log1p(x)
    mu, sd = observed_zscore(x, m & fit_rows[:, None])
    if scale_input:
        x = (x - mu) / sd
        fill = np.zeros_like(mu)
    else:
        fill = mu
    x = np.where(m, x, fill[None, :])
    return {"x": x.astype(np.float32), "y": counts.astype(np.float32), "mask": m,
            "size_factors": sf.astype(np.float32), "fit_rows": fit_rows}


def split_rows(fit_rows: np.ndarray, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation spots: a seeded random ``validation_split`` of the fitting spots
    (Keras takes the last fraction of the rows in their given order; we draw them at random)."""
    rows = np.flatnonzero(fit_rows)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]).generate_state(1)[0])
    val = draw_validation(len(rows), validation_split, rng, count="keras")
    return rows[~val], rows[val]


def _batches(perm: torch.Tensor, batch_size: int, batchnorm: bool) -> list[torch.Tensor]:
    chunks = list(torch.split(perm, batch_size))
    if batchnorm and len(chunks) > 1 and len(chunks[-1]) == 1:
        # torch BatchNorm cannot normalise one sample in training mode: append it to the previous batch
        chunks = chunks[:-2] + [torch.cat(chunks[-2:])]
    return chunks


def make_optimizer(params, name: str, lr: float):
    if name == "rmsprop":  # Keras defaults: rho 0.9, epsilon 1e-7
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    if name == "adam":  # Keras defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-7)
    raise ValueError(f"dca: optimizer must be 'rmsprop' or 'adam', got {name!r}")


def fit(net, data: dict, train_rows: np.ndarray, val_rows: np.ndarray, *, epochs: int, batch_size: int,
        optimizer: str, learning_rate: float, clip_grad: float | None, reduce_lr: int, early_stop: int,
        ridge: float, restore_best: bool, seed: int, device) -> dict:
    """Train ``net`` on the observed entries of ``train_rows``; early stopping on ``val_rows``.

    With no validation spots the training loss is monitored instead. Returns the loss history.
    """
    x = torch.as_tensor(data["x"], device=device)
    y = torch.as_tensor(data["y"], device=device)
    mask = torch.as_tensor(data["mask"], device=device)
    sf = torch.as_tensor(data["size_factors"], device=device)
    tr = torch.as_tensor(train_rows, dtype=torch.long)
    va = torch.as_tensor(val_rows, dtype=torch.long, device=device)
    opt = make_optimizer(net.parameters(), optimizer, learning_rate)
    gen = torch.Generator().manual_seed(int(seed))
    batchnorm = any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())
    # Keras ReduceLROnPlateau (min_delta 1e-4) and EarlyStopping (min_delta 0; the best weights kept only
    # with restore_best, as Keras' restore_best_weights)
    lr_wait, stop = Plateau(reduce_lr, 1e-4), EarlyStopping(early_stop, 0.0)
    hist = {"loss": [], "val_loss": [], "lr": [], "stopped_epoch": None, "best_epoch": None, "nonfinite": False}
    last_good = copy.deepcopy(net.state_dict())

    for epoch in range(int(epochs)):
        net.train()
        tot, n = 0.0, 0
        for idx in _batches(tr[torch.randperm(len(tr), generator=gen)].to(device), int(batch_size), batchnorm):
            mean, theta, pi = net(x[idx])
            loss = masked_count_loss(y[idx], mask[idx], mean, theta, pi, sf[idx], ridge)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_value_(net.parameters(), float(clip_grad))
            opt.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        train_loss = tot / max(n, 1)
        if len(va):
            net.eval()
            with torch.no_grad():
                mean, theta, pi = net(x[va])
                val_loss = float(masked_count_loss(y[va], mask[va], mean, theta, pi, sf[va], ridge))
        else:
            val_loss = train_loss
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            net.load_state_dict(last_good)  # keep the last weights with a finite loss
            hist["nonfinite"], hist["stopped_epoch"] = True, epoch
            break
        last_good = copy.deepcopy(net.state_dict())
        hist["loss"].append(train_loss)
        hist["val_loss"].append(val_loss if len(va) else None)
        hist["lr"].append(opt.param_groups[0]["lr"])
        stopping = stop.step(val_loss, net if restore_best else None, epoch)
        hist["best_epoch"] = stop.best_epoch if stop.best_epoch >= 0 else None
        if stopping:
            hist["stopped_epoch"] = epoch
            break
        if lr_wait.step(val_loss) and reduce_lr:
            for g in opt.param_groups:
                g["lr"] = g["lr"] * 0.1  # Keras ReduceLROnPlateau factor
    if restore_best:
        stop.restore(net)
    hist["epochs_run"] = len(hist["loss"])
    return hist
