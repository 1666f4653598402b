"""Count likelihoods shared by the count autoencoders (DCA, GraphSCI): the negative-binomial and
zero-inflated negative-binomial negative log-likelihoods in the form of DCA's ``loss.py``
(Eraslan et al. 2019), which GraphSCI's ``loss.py`` reuses.

Written here because torch.distributions' NB is parameterised by total count and logits and has no
zero-inflated form; DCA's own form (with its epsilon and its clamp of theta at 1e6) is what both
upstreams train on. One change of form from upstream's ``pow(theta / (theta + mu + eps), theta)``:
the zero probability of the NB is ``exp(-theta * log1p(mu / (theta + eps)))``, which shares the
logarithm of the NB term (the same value up to float rounding and the place of eps).
"""

from __future__ import annotations
# Imported inside functions on purpose: torch (import cost).

EPS = 1e-10  # DCA loss.py's numerical stability constant (GraphSCI uses the same)


def _nb_terms(y, mu, theta, log1p_ratio, eps, lgamma_y1):
    import torch

    t1 = torch.lgamma(theta + eps) + lgamma_y1 - torch.lgamma(y + theta + eps)
    t2 = (theta + y) * log1p_ratio + y * (torch.log(theta + eps) - torch.log(mu + eps))
    return t1 + t2


def nb_nll(y, mu, theta, eps: float = EPS, lgamma_y1=None):
    """Elementwise NLL of NB(mean ``mu``, inverse dispersion ``theta``) at counts ``y`` (torch tensors).
    ``lgamma_y1`` = lgamma(y + 1) may be passed precomputed (it does not depend on the parameters)."""
    import torch

    theta = torch.clamp(theta, max=1e6)
    lg = torch.lgamma(y + 1.0) if lgamma_y1 is None else lgamma_y1
    return _nb_terms(y, mu, theta, torch.log1p(mu / (theta + eps)), eps, lg)


def zinb_nll(y, mu, theta, pi, eps: float = EPS, lgamma_y1=None, ridge: float = 0.0):
    """Elementwise zero-inflated NB NLL (dropout probability ``pi``), plus DCA's ridge penalty
    ``ridge * pi^2`` when ``ridge`` is nonzero (GraphSCI has none)."""
    import torch

    theta = torch.clamp(theta, max=1e6)
    lg = torch.lgamma(y + 1.0) if lgamma_y1 is None else lgamma_y1
    log1p_ratio = torch.log1p(mu / (theta + eps))
    nb_case = _nb_terms(y, mu, theta, log1p_ratio, eps, lg) - torch.log(1.0 - pi + eps)
    zero_nb = torch.exp(-theta * log1p_ratio)
    zero_case = -torch.log(pi + (1.0 - pi) * zero_nb + eps)
    out = torch.where(y < 1e-8, zero_case, nb_case)
    if ridge:
        out = out + ridge * pi * pi
    return out
