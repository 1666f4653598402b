"""Noise schedule and samplers: the full ancestral DDPM chain (paper Alg. 2, Eq. 7/11) and DDIM.

Only the imputation targets are diffused: the reverse chain starts from pure Gaussian noise at
the target entries; the observed entries enter only through the condition channel.
"""

from __future__ import annotations

import numpy as np
import torch


SCHEDULES = ("quad", "linear", "cosine")


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal (2021) cosine schedule: beta_t = 1 - abar(t+1)/abar(t), abar(u) = cos((u/T + s)/(1 + s) * pi/2)^2,
    clipped at ``max_beta`` (SpaDiT's released code trains and samples with it)."""
    u = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    abar = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


class Schedule:
    def __init__(self, num_steps: int, beta_start: float, beta_end: float, kind: str = "quad"):
        if kind == "quad":  # Eq. 36 of the paper's Appendix C (= the released code's "quad"); SpaDiT's Eq. 31
            beta = np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_steps) ** 2
        elif kind == "linear":
            beta = np.linspace(beta_start, beta_end, num_steps)
        elif kind == "cosine":  # beta_start/beta_end unused: the cosine schedule has none
            beta = cosine_betas(int(num_steps))
        else:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
        self.T = int(num_steps)
        self.beta = beta
        self.alpha = 1.0 - beta
        self.alpha_bar = np.cumprod(self.alpha)

    def tensors(self, device):
        return torch.as_tensor(self.alpha_bar, dtype=torch.float32, device=device)


@torch.no_grad()
def ddpm_sample(eps_fn, noise: torch.Tensor, sched: Schedule, gen=None, predicts: str = "noise") -> torch.Tensor:
    """Ancestral sampling over all T steps. ``eps_fn(x_t, t_int)`` predicts the noise (``predicts="noise"``), or
    x0 (``predicts="x0"``: the step is the posterior mean of q(x_{t-1} | x_t, x0), Ho et al. Eq. 7)."""
    if predicts not in ("noise", "x0"):
        raise ValueError(f"predicts must be 'noise' or 'x0', got {predicts!r}")
    x = noise
    a, ab, b = sched.alpha, sched.alpha_bar, sched.beta
    for t in range(sched.T - 1, -1, -1):
        out = eps_fn(x, t)
        if predicts == "noise":
            x = (x - (1 - a[t]) / np.sqrt(1 - ab[t]) * out) / np.sqrt(a[t])
        else:
            ab_prev = ab[t - 1] if t > 0 else 1.0
            x = (np.sqrt(ab_prev) * b[t] * out + np.sqrt(a[t]) * (1 - ab_prev) * x) / (1 - ab[t])
        if t > 0:
            sigma = np.sqrt((1 - ab[t - 1]) / (1 - ab[t]) * b[t])
            x = x + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x


def ddim_timesteps(T: int, steps: int) -> list[int]:
    steps = max(1, min(int(steps), T))
    ts = np.unique(np.round(np.linspace(0, T - 1, steps)).astype(int))
    return ts[::-1].tolist()


@torch.no_grad()
def ddim_sample(eps_fn, noise: torch.Tensor, sched: Schedule, steps: int, eta: float = 0.0, gen=None,
                clip: float | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021) on a uniform sub-sequence of ``steps`` of the T training steps.

    ``clip`` bounds the predicted x0 (and the noise estimate is made consistent with it): with few
    steps the first x0 estimate at large t divides by sqrt(alpha_bar_t) ~ 0 and can explode."""
    x = noise
    ab = sched.alpha_bar
    ts = ddim_timesteps(sched.T, steps)
    for i, t in enumerate(ts):
        ab_t = ab[t]
        ab_prev = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
        eps = eps_fn(x, t)
        x0 = (x - np.sqrt(1 - ab_t) * eps) / np.sqrt(ab_t)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - np.sqrt(ab_t) * x0) / np.sqrt(1 - ab_t)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)) if ab_prev < 1.0 else 0.0
        x = np.sqrt(ab_prev) * x0 + np.sqrt(max(1 - ab_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return x
