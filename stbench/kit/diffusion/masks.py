"""Training re-mask strategies: stMCDI's (paper §3.2; Table 2 "w/ mask Spot", "w/ mask Gene";
Figure 3 ratio) and CSDI's "random" strategy (a per-sample ratio: pass ``ratio`` as a (B,) tensor).

Each returns a boolean (B, G) target mask that is a subset of the observed entries of the batch.
All are vectorised (no Python loop over spots or genes).
"""

from __future__ import annotations

import torch

STRATEGIES = ("random", "spot", "gene")


def train_targets(observed: torch.Tensor, strategy: str, ratio, gen=None) -> torch.Tensor:
    """``ratio``: a float, or for ``random`` a (B,) tensor of per-spot ratios (CSDI's get_randmask
    draws one uniform ratio per sample)."""
    b, g = observed.shape
    dev = observed.device
    if torch.is_tensor(ratio):
        if strategy != "random":
            raise ValueError("a per-spot ratio tensor is only defined for the 'random' strategy")
    elif ratio <= 0:
        return torch.zeros_like(observed)
    if strategy == "random":
        # exactly round(ratio * n_observed) targets per spot, uniformly among its observed entries
        # (the released code's get_randmask, without its loop over spots)
        score = torch.rand(b, g, generator=gen, device=dev).masked_fill(~observed, -1.0)
        k = torch.round(observed.sum(1).float() * ratio).long().clamp(max=g)
        srt = score.sort(dim=1, descending=True).values
        thr = srt.gather(1, (k - 1).clamp(min=0)[:, None])
        return observed & (score >= thr) & (k[:, None] > 0)
    if strategy == "spot":
        n = max(1, int(round(b * ratio)))
        pick = torch.randperm(b, generator=gen, device=dev)[:n]
        sel = torch.zeros(b, dtype=torch.bool, device=dev)
        sel[pick] = True
        return observed & sel[:, None]
    if strategy == "gene":
        n = max(1, int(round(g * ratio)))
        pick = torch.randperm(g, generator=gen, device=dev)[:n]
        sel = torch.zeros(g, dtype=torch.bool, device=dev)
        sel[pick] = True
        return observed & sel[None, :]
    raise ValueError(f"train_mask_strategy must be one of {STRATEGIES}, got {strategy!r}")
