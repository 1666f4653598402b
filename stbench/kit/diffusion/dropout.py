"""Inverted dropout whose CPU mask costs a quarter of ``torch.bernoulli_``'s.

Why by hand: on CPU, ``F.dropout`` draws its mask with ``bernoulli_``, about 12 ns per element on
the 2-core CI machine; at the released stMCDI configuration that was 17% of a training step
(``benchmarks/README.md``). Here the mask comes from 64-bit draws of torch's own generator cut into
four 16-bit lanes, one comparison each. Same seeding (``torch.manual_seed``), same expectation; the
keep probability is rounded to a multiple of 2^-16 (0.1 -> 0.100006) and the scale is its exact
inverse, so E[output] = input. On CUDA (fused Philox kernel) and elsewhere it is ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_LANES = 4  # int16 lanes per int64 draw
_SPAN = 1 << 16


def keep_threshold(p: float) -> int:
    """Number of the 2^16 lane values that keep an element (at least 1: p < 1)."""
    return max(1, min(_SPAN, round((1.0 - float(p)) * _SPAN)))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``; on CPU float tensors with 0 < p < 1, the mask above."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or p >= 1.0:
        return F.dropout(x, p, training)
    n = x.numel()
    draws = torch.empty(-(-n // _LANES), dtype=torch.int64).random_(-(1 << 63), None)  # all 64 bits uniform
    keep = torch.lt(draws.view(torch.int16)[:n], keep_threshold(p) - (1 << 15))
    scale = _SPAN / keep_threshold(p)
    return x * keep.view(x.shape).to(x.dtype).mul_(scale)
