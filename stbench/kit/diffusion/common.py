"""Run helpers shared by the diffusion imputers (stMCDI, CSDI): seeding with deterministic kernels,
the per-gene z-score of the observed entries, chunked sampling with median/mean/spread, the
non-finite check, and where a training checkpoint lives."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from stbench.kit.methodkit import observed_zscore, seeded, torch_threads
# Imported inside functions on purpose: scipy.sparse (only for a sparse reference).


@contextlib.contextmanager
def determinism(seed: int, device: torch.device, threads):
    """``methodkit.seeded`` and ``methodkit.torch_threads`` (the caller's RNG and thread count restored
    afterwards), with deterministic kernels asked for (CPU and CUDA)."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    with seeded(seed, device), torch_threads(threads):
        torch.use_deterministic_algorithms(True, warn_only=True)  # CUDA: with CUBLAS_WORKSPACE_CONFIG (sandbox env)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)


def standardise(x: np.ndarray, m: np.ndarray, rows: np.ndarray):
    """Per-gene z-score from the observed entries of ``rows`` (stMCDI's released code and CSDI
    normalise each feature by the mean and sd of its observed values; ``methodkit.observed_zscore``,
    an sd of at most 1e-8 taken as 1)."""
    mu, sd = observed_zscore(x[rows], m[rows], min_sd=1e-8)
    return mu.astype(np.float32), sd.astype(np.float32)


class Prepared:
    """A task's observed matrix as the diffusion imputers train on it: raw values ``x`` (NaN held out),
    mask ``m``, training spots ``train``, the z-score ``mu``/``sd`` and the standardised ``xs`` (0 held out)."""

    def __init__(self, task, standardise_genes: bool = True):
        self.x = np.array(task.observed, dtype=np.float32, copy=True)
        self.m = np.array(task.observed_mask, dtype=bool, copy=True)
        n, g = self.x.shape
        train = np.asarray(task.train_spots, dtype=bool)
        self.train = train if train.any() else np.ones(n, dtype=bool)
        if standardise_genes:
            self.mu, self.sd = standardise(self.x, self.m, self.train)
        else:
            self.mu, self.sd = np.zeros(g, np.float32), np.ones(g, np.float32)
        self.xs = np.where(self.m, (np.nan_to_num(self.x) - self.mu) / self.sd, 0.0).astype(np.float32)

    def back(self, a: np.ndarray) -> np.ndarray:
        """From the standardised scale back to the task's."""
        return a * self.sd + self.mu


def sample_rows(sample_fn, rows: np.ndarray, shape: tuple[int, int], n_samples: int, chunk: int, device):
    """Run ``sample_fn(idx) -> (n_samples, len(idx), G)`` over ``rows`` in chunks; return the samples'
    median, mean and standard deviation as (n, G) arrays (zeros on rows not sampled)."""
    n, g = shape
    med = np.zeros((n, g), np.float32); mean = np.zeros((n, g), np.float32); spread = np.zeros((n, g), np.float32)
    for s0 in range(0, len(rows), chunk):
        r = rows[s0:s0 + chunk]
        smp = sample_fn(torch.as_tensor(r, device=device)).float()
        med[r] = smp.median(0).values.cpu().numpy()
        mean[r] = smp.mean(0).cpu().numpy()
        spread[r] = smp.std(0, unbiased=False).cpu().numpy()
    return med, mean, spread


def default_chunk(device, n_samples: int, n_genes: int) -> int:
    """Spots per sampling chunk: 2^22 (CUDA) or 2^19 (CPU) spot-sample-gene tokens."""
    return max(1, (2 ** 22 if device.type == "cuda" else 2 ** 19) // max(1, n_samples * n_genes))


def check_finite(imputed: np.ndarray, method: str = "stMCDI") -> None:
    """A diverged model is a failed run, never a silent fill."""
    bad = int((~np.isfinite(imputed)).sum())
    if bad:
        raise FloatingPointError(
            f"{method}: the imputation has {bad} non-finite value(s) (NaN/inf) of {imputed.size}: the model diverged. "
            "Lower lr, keep grad_clip on (1.0), or use more sampling steps / a smaller x0 clip.")


def checkpoint_file(task, p: dict, name: str, ignore=()) -> Path | None:
    """The training checkpoint of this (task, parameters): ``<dir>/<name>-<key>.pt`` in
    ``task.checkpoint_dir`` (the job's folder outside the sandbox, which survives a killed job) or else
    ``task.scratch``; None when ``p["checkpoints"]`` is 0. The key hashes every parameter except
    ``ignore`` (those that do not change the trained model), the task's observed data and its reference (if
    any), so that a checkpoint of other settings or data is never resumed."""
    folder = getattr(task, "checkpoint_dir", None) or task.scratch
    if not p.get("checkpoints") or folder is None:
        return None
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in sorted(p.items()) if k not in set(ignore)}, default=str).encode())
    for a in (np.nan_to_num(np.asarray(task.observed, np.float32), nan=0.0), np.asarray(task.observed_mask),
              np.asarray(task.coords), np.asarray(task.train_spots)):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(str(task.seed).encode())
    ref = getattr(task, "reference", None)
    if ref is not None:  # a reference method's model depends on its reference too (cells, genes and counts)
        _hash_reference(h, ref)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"{name}-{h.hexdigest()[:16]}.pt"


def _hash_reference(h, ref) -> None:
    """Feed a reference AnnData's names and counts (dense or sparse) into the hash ``h``."""
    import scipy.sparse as sp

    for names in (ref.obs_names, ref.var_names):
        h.update("\0".join(map(str, names)).encode())
    x = ref.X
    if sp.issparse(x):
        x = x.tocsr()
        for a in (x.data, x.indices, x.indptr):
            h.update(np.ascontiguousarray(a).tobytes())
    else:
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())


def rng_states(gen: torch.Generator, device: torch.device) -> dict:
    """The RNG states a resumed training run needs: the method's generator, torch's CPU RNG (CPU dropout)
    and the device's CUDA RNG (CUDA dropout)."""
    return {"gen": gen.get_state(), "cpu_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng_states(st: dict, gen: torch.Generator, device: torch.device) -> None:
    gen.set_state(st["gen"])
    torch.set_rng_state(st["cpu_rng"])
    if device.type == "cuda" and st.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(st["cuda_rng"], device)


class CheckpointClock:
    """Wall-clock trigger for checkpoints: ``due()`` once ``interval_s`` seconds have passed since the start or
    the last ``saved()``, so that a job under a time limit shorter than a tenth of its training still
    progresses from one try to the next. ``interval_s`` None or 0: never due."""

    def __init__(self, interval_s, clock=None):
        self.interval = float(interval_s or 0)
        self.clock = clock or time.monotonic
        self.last = self.clock()

    def due(self) -> bool:
        return self.interval > 0 and self.clock() - self.last >= self.interval

    def saved(self) -> None:
        self.last = self.clock()
