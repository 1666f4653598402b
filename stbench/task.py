"""The task a method receives: everything it may see, and nothing of the held-out truth.

``observed`` holds NaN at held-out entries; ``observed_counts`` likewise. No attribute, layer
or file reachable from the task carries the held-out values: only ``stbench.evaluate`` reads them.
Arrays are read-only so that a method cannot corrupt what the next method receives; copy first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImputationTask:
    observed: np.ndarray          # (n_spots, n_genes) float32, evaluation scale, NaN where held out
    observed_mask: np.ndarray     # (n_spots, n_genes) bool, True where observed
    coords: np.ndarray            # (n_spots, 2) float64 spot coordinates
    genes: tuple                  # gene names (length n_genes)
    spots: tuple                  # spot names (length n_spots)
    observed_counts: np.ndarray   # (n_spots, n_genes) float32 raw counts of the kept genes, NaN where held out
    train_spots: np.ndarray       # (n_spots,) bool; spots a method may fit on (all True except under `inductive`)
    reference: object = None      # optional AnnData scRNA-seq reference (raw counts, cells x genes)
    seed: int = 0
    device: str = "cpu"
    scratch: Path = field(default_factory=lambda: Path("."))
    dataset: str = ""
    scale: str = "log"            # "log" or "zscore": what the values of `observed` are

    @property
    def n_spots(self) -> int:
        return self.observed.shape[0]

    @property
    def n_genes(self) -> int:
        return self.observed.shape[1]

    def torch_device(self):
        """The torch device to use: the requested one if available, else CPU."""
        import torch

        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(self.device)


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def build_task(pre, held_out: np.ndarray, train_spots: np.ndarray | None = None, *, reference=None,
               seed: int = 0, device: str = "cpu", scratch=".", dataset: str = "") -> ImputationTask:
    """Build the task from a preprocessed AnnData and a held-out mask, hiding the held-out entries."""
    x = np.asarray(pre.X, dtype=np.float32)
    held_out = np.asarray(held_out, dtype=bool)
    if held_out.shape != x.shape:
        raise ValueError(f"mask shape {held_out.shape} does not match the data {x.shape}")
    obs = x.copy()
    obs[held_out] = np.nan
    counts = np.asarray(pre.layers["counts"], dtype=np.float32).copy()
    counts[held_out] = np.nan
    train = np.ones(x.shape[0], dtype=bool) if train_spots is None else np.asarray(train_spots, dtype=bool)
    scale = (pre.uns.get("protocol", {}).get("preprocess", {}) or {}).get("scale", "log")
    return ImputationTask(
        observed=_ro(obs), observed_mask=_ro(~held_out), coords=_ro(np.asarray(pre.obsm["spatial"], dtype=np.float64)),
        genes=tuple(map(str, pre.var_names)), spots=tuple(map(str, pre.obs_names)), observed_counts=_ro(counts),
        train_spots=_ro(train), reference=reference, seed=int(seed), device=device, scratch=Path(scratch),
        dataset=dataset, scale=str(scale),
    )
