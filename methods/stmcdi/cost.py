"""stMCDI's cost terms, torch-free: the training loop (train.py) and `stbench estimate` count steps here, once."""

from __future__ import annotations

import math


def total_steps(n_train: int, p: dict) -> tuple[int, int]:
    """(optimiser steps, steps per epoch): ``epochs`` over the training spots, at least ``min_steps``
    (so that a small section trains as long as a large one), at most ``max_steps``."""
    per_epoch = max(1, math.ceil(n_train / int(p["batch_size"])))
    total = max(int(p["epochs"]) * per_epoch, int(p.get("min_steps") or 0))
    if p.get("max_steps"):
        total = min(total, int(p["max_steps"]))
    return total, per_epoch


def train_steps(n_train: int, p: dict) -> int:
    """Optimiser steps of one fit on ``n_train`` spots (what `stbench estimate` prices)."""
    return total_steps(n_train, p)[0]


def chain_steps(p: dict) -> int:
    """Denoiser calls per imputation sample: the whole chain (DDPM) or the DDIM steps."""
    return int(p["num_steps"]) if p["sampler"] == "ddpm" else min(int(p["sample_steps"]), int(p["num_steps"]))
