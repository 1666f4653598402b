"""SpaDiT's cost terms, torch-free: its Table 1, its training loop's step count and its network's FLOPs live here,
once; the impute loop (impute.py) and `stbench estimate` both read them."""

from __future__ import annotations

import math

# Supplementary Table 1, per dataset: batch size, depth, diffusion steps, epochs, heads, hidden size, learning rate,
# mask-zero ratio, mask-non-zero ratio, latent layers (transcribed 2026-12-06 from ../shared/papers/SpaDiT_supplementary.txt)
TABLE1_KEYS = ("batch_size", "depth", "diffusion_steps", "epochs", "heads", "hidden_size", "learning_rate",
               "mask_zero_ratio", "mask_nonzero_ratio", "latent_layers")
TABLE1 = {
    "MG": (512, 32, 1000, 3000, 32, 1024, 3e-4, 0.4, 0.3, 3),
    "MH": (512, 32, 1000, 4000, 16, 2048, 2e-6, 0.3, 0.1, 2),
    "MHPR": (1024, 16, 2000, 3000, 8, 1024, 1e-4, 0.1, 0.2, 3),
    "MVC": (1024, 64, 2000, 4000, 64, 1024, 3e-6, 0.3, 0.2, 4),
    "MHM": (1024, 64, 2000, 4000, 64, 1024, 3e-6, 0.3, 0.2, 4),
    "HBC": (1024, 64, 2000, 4000, 64, 1024, 3e-6, 0.3, 0.2, 4),
    "ME": (256, 8, 1000, 2000, 32, 2048, 2e-5, 0.2, 0.3, 5),
    "MPMC": (256, 8, 1000, 2000, 32, 2048, 2e-5, 0.2, 0.3, 5),
    "MC": (256, 8, 1000, 2000, 32, 2048, 2e-5, 0.2, 0.3, 5),
    "ML": (256, 8, 1000, 2000, 32, 2048, 2e-5, 0.2, 0.3, 5),
}
MLP_RATIO = 4  # model.Block's MLP width / token width


def table1_params(row: str, dataset: str, given: dict) -> dict:
    """The Table 1 hyperparameters: ``given`` (explicit values win), the rest from Table 1's row ``row``
    (``auto``: the row named like the task's dataset; ``none``: no row, every value must be given)."""
    missing = [k for k in TABLE1_KEYS if given.get(k) is None]
    name = str(dataset).split("__")[0].upper() if row == "auto" else str(row)
    if missing and row != "none":
        if name not in TABLE1:
            raise ValueError(f"SpaDiT: table1_row={row!r} and the dataset {dataset!r} is not a row of the supplementary's "
                             f"Table 1 ({', '.join(TABLE1)}): name a row (table1_row: MG, ...) or give "
                             f"{', '.join(missing)} (the quick and test presets do)")
        return {**dict(zip(TABLE1_KEYS, TABLE1[name])), **{k: v for k, v in given.items() if v is not None}}
    if missing:
        raise ValueError(f"SpaDiT: table1_row: none needs explicit {', '.join(missing)}")
    return dict(given)


def train_steps(n_train: int, hp: dict) -> int:
    """Optimiser steps of one fit on ``n_train`` genes (one gene is one sample): epochs x batches."""
    return int(hp["epochs"]) * max(1, math.ceil(int(n_train) / int(hp["batch_size"])))


def chain_steps(hp: dict) -> int:
    """Denoiser calls per generated batch (Algorithm 2 walks the whole chain)."""
    return int(hp["diffusion_steps"])


D_STATE, EXPAND, D_CONV = 16, 2, 4  # ssm.SelectiveSSM's defaults (the Mamba mixer)


def _linear(a: int, b: int) -> int:
    return a * b + b


def token_weights(n_spots: int, n_cells: int, hp: dict, *, backbone: str = "transformer", concat: bool = True) -> int:
    """Weight entries (matrices and convolution kernels, not biases) that one token (gene) passes through in
    model.SpaDiTNet outside psi and the step embedding: each costs one multiply-add per token."""
    h, depth, ll, heads = int(hp["hidden_size"]), int(hp["depth"]), int(hp["latent_layers"]), int(hp["heads"])
    d, w1 = 2 * h, (h if concat else 2 * h)
    phi = n_spots * w1 + (ll - 1) * w1 * w1 + ((n_cells * h + (ll - 1) * h * h) if concat else 0)
    if backbone == "unet":
        return phi + d * 512 + 512 * 256 + d * 256 + 256 * 128 + 128 * 128 + 128 * 256 + 256 * 512 + 512 * n_spots
    inner = EXPAND * d
    mixer = 4 * d * d if backbone == "transformer" else (
        d * 2 * inner + inner * D_CONV + inner * (heads + 2 * D_STATE) + inner * d)
    block = mixer + 2 * MLP_RATIO * d * d + 6 * d * d
    return phi + depth * block + 2 * d * d + d * n_spots


def forward_flops(tokens: int, n_spots: int, n_cells: int, hp: dict, *, backbone: str = "transformer",
                  concat: bool = True) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of ``tokens`` genes through model.SpaDiTNet, without psi:
    every weight once per token, plus attention over the batch's tokens (2 L D per block and token) or the Mamba
    mixer's scan (a few multiply-adds per state entry)."""
    d, depth = 2 * int(hp["hidden_size"]), int(hp["depth"])
    extra = {"transformer": 2 * tokens * d, "mamba": 3 * EXPAND * d * D_STATE, "unet": 0}[backbone] * depth
    return 2.0 * tokens * (token_weights(n_spots, n_cells, hp, backbone=backbone, concat=concat) + extra)


def n_parameters(n_spots: int, n_cells: int, hp: dict, *, backbone: str = "transformer",
                 condition: str = "flash_attention", concat: bool = True, pca_dim: int = 100) -> int:
    """model.SpaDiTNet's parameter count (weights and biases), without building it: what a training job holds four
    to five copies of (weights, gradients, AdamW's two moments, the EMA)."""
    h, depth, ll, heads = int(hp["hidden_size"]), int(hp["depth"]), int(hp["latent_layers"]), int(hp["heads"])
    d, w1 = 2 * h, (h if concat else 2 * h)
    n = _linear(n_spots, w1) + (ll - 1) * _linear(w1, w1)
    if concat:
        n += _linear(n_cells, h) + (ll - 1) * _linear(h, h)
    n += 2 * _linear(d, d)                                   # the step embedding's two projections
    n += {"mlp": _linear(n_cells, h) + _linear(h, h) + _linear(h, d), "pca": _linear(pca_dim, d), "none": 0,
          "attention": 3 * _linear(n_cells, n_cells) + _linear(n_cells, d)}.get(
        condition, 3 * _linear(n_cells, n_cells) + _linear(n_cells, d))
    if backbone == "unet":
        return n + (_linear(d, 512) + _linear(512, 256) + _linear(d, 256) + _linear(256, 128) + _linear(128, 128)
                    + _linear(128, 256) + _linear(256, 512) + _linear(512, n_spots))
    inner = EXPAND * d
    mixer = _linear(d, 3 * d) + _linear(d, d) if backbone == "transformer" else (
        _linear(d, 2 * inner) + inner * D_CONV + inner + _linear(inner, heads + 2 * D_STATE) + 3 * heads
        + _linear(inner, d))
    block = mixer + _linear(d, MLP_RATIO * d) + _linear(MLP_RATIO * d, d) + _linear(d, 6 * d)
    return n + depth * block + _linear(d, 2 * d) + _linear(d, n_spots)


def training_bytes(n_params: int, ema: bool = True) -> int:
    """fp32 bytes of a training job's parameter state: weights, gradients and AdamW's two moments (16 bytes per
    parameter), plus the EMA copy; activations (small: one batch of genes) are not counted."""
    return n_params * (16 + (4 if ema else 0))


def condition_flops(n_cond_genes: int, n_cells: int, hp: dict, condition: str) -> float:
    """FLOPs of psi over the reference (q genes x c cells), computed once per training step and once per chain."""
    q, c, h, d = int(n_cond_genes), int(n_cells), int(hp["hidden_size"]), 2 * int(hp["hidden_size"])
    if condition in ("attention", "flash_attention"):
        return 2.0 * (3 * q * c * c + 2 * q * q * c + c * d)
    if condition == "mlp":
        return 2.0 * (c * h + h * h + h * d)
    return 0.0


def fit_flops(n_train: int, n_predict: int, n_spots: int, n_cells: int, n_cond_genes: int, hp: dict, *,
              backbone: str = "transformer", condition: str = "flash_attention", concat: bool = True,
              n_samples: int = 1) -> tuple[float, float]:
    """(training FLOPs, sampling FLOPs) of one fit: every training step is a forward and a backward pass (3x the
    forward) of one batch of genes and psi; sampling walks the chain for every batch of predicted genes."""
    bs = int(hp["batch_size"])
    batches = [min(bs, n_train - i) for i in range(0, max(int(n_train), 1), bs)]
    psi = condition_flops(n_cond_genes, n_cells, hp, condition)
    per_epoch = sum(3.0 * (forward_flops(b, n_spots, n_cells, hp, backbone=backbone, concat=concat) + psi)
                    for b in batches)
    train = int(hp["epochs"]) * per_epoch
    out = [min(bs, n_predict - i) for i in range(0, max(int(n_predict), 1), bs)]
    sample = psi + int(n_samples) * chain_steps(hp) * sum(
        forward_flops(b, n_spots, n_cells, hp, backbone=backbone, concat=concat) for b in out)
    return train, sample


def job_hp(p: dict, dataset: str) -> dict:
    """The Table 1 hyperparameters one job of ``dataset`` trains with, from its resolved parameters."""
    return table1_params(p["table1_row"], dataset, {k: p.get(k) for k in TABLE1_KEYS})


def job_flops(fits: int, n_train: int, n_predict: int, n_spots: int, n_cells: int, p: dict, dataset: str,
              assumed: dict) -> tuple[float, float]:
    """`stbench estimate`'s entry point: (training, sampling) FLOPs of one job of ``fits`` fits (each trains its own
    network), from the job's resolved parameters (``assumed``: gpu_job_estimates.yaml's spadit entry, psi's genes)."""
    tr, sa = fit_flops(n_train, n_predict, n_spots, n_cells, int(assumed["condition_genes"]), job_hp(p, dataset),
                       backbone=p["backbone"], condition=p["condition"], concat=bool(p["concat"]),
                       n_samples=int(p["n_samples"]))
    return fits * tr, fits * sa


def job_state_bytes(n_spots: int, n_cells: int, n_genes: int, p: dict, dataset: str) -> int:
    """`stbench estimate`'s entry point: one job's training state in bytes (what must fit the device)."""
    n = n_parameters(n_spots, n_cells, job_hp(p, dataset), backbone=p["backbone"], condition=p["condition"],
                     concat=bool(p["concat"]), pca_dim=int(p["pca_dim"]))
    return training_bytes(n, ema=bool(p.get("ema_decay")))
