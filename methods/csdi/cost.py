"""CSDI's cost terms, torch-free: its training loop (impute.fit) and `stbench estimate` count steps here, once."""

from __future__ import annotations


def epochs_and_steps(n_train: int, p: dict) -> tuple[int, int]:
    """(epochs, steps per epoch): ``epochs`` whole epochs, more if needed to reach ``min_steps`` optimiser steps."""
    per_epoch = max(1, -(-int(n_train) // int(p["batch_size"])))
    return max(int(p["epochs"]), -(-int(p.get("min_steps") or 0) // per_epoch)), per_epoch


def train_steps(n_train: int, p: dict) -> int:
    """Optimiser steps of one fit on ``n_train`` spots (what `stbench estimate` prices)."""
    epochs, per_epoch = epochs_and_steps(n_train, p)
    return epochs * per_epoch


def chain_steps(p: dict) -> int:
    """Denoiser calls per imputation sample: the whole chain (DDPM) or the DDIM steps."""
    return int(p["num_steps"]) if p["sampler"] == "ddpm" else min(int(p["sample_steps"]), int(p["num_steps"]))
