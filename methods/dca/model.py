"""DCA network and count likelihoods in PyTorch (Eraslan et al. 2019, Nat. Commun. 10:390).

Reimplemented from the paper and from reading the upstream Keras code (theislab/dca 0.3.3,
``dca/network.py``, ``dca/loss.py``, ``dca/layers.py``); no upstream code is copied.

Architecture (upstream ``Autoencoder.build`` + ``*Autoencoder.build_output``): dense layers of
``hidden_size`` widths, each followed by batch normalisation (shift only: Keras
``BatchNormalization(center=True, scale=False)``), the activation and optional dropout. The last
hidden layer feeds the output heads:

* ``mean``: exp, clipped to [1e-5, 1e6] (size-factor-normalised NB mean; times the size factor = counts)
* ``dispersion`` theta: softplus, clipped to [1e-4, 1e4] (``*-conddisp``: one head per entry), or
  a per-gene constant exp(w) clipped to [1e-3, 1e4] (``nb`` / ``zinb``)
* ``pi`` (ZINB only): sigmoid, the dropout probability of the zero component.

The NB / ZINB likelihoods are ``stbench.kit.likelihoods`` (DCA's form, shared with GraphSCI).
"""

from __future__ import annotations

import torch
from torch import nn

from stbench.kit.likelihoods import nb_nll, zinb_nll
from stbench.kit.methodkit import glorot_linear as _dense  # Keras Dense: glorot_uniform kernel, zero bias

AE_TYPES = ("zinb-conddisp", "zinb", "nb-conddisp", "nb")
ACTIVATIONS = ("relu", "elu", "selu", "tanh", "sigmoid", "leakyrelu", "prelu")


def _activation(name: str, width: int) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "elu":
        return nn.ELU()
    if name == "selu":
        return nn.SELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "leakyrelu":
        return nn.LeakyReLU(0.3)  # Keras LeakyReLU default alpha
    if name == "prelu":
        return nn.PReLU(width, init=0.0)  # Keras PReLU: one slope per unit, initialised to 0
    raise ValueError(f"dca: activation must be one of {ACTIVATIONS}, got {name!r}")


class ShiftBatchNorm(nn.Module):
    """Keras ``BatchNormalization(center=True, scale=False)``: normalise, then add a learned shift.

    Keras defaults: momentum 0.99 (torch momentum 0.01), epsilon 1e-3.
    """

    def __init__(self, width: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(width, eps=1e-3, momentum=0.01, affine=False)
        self.beta = nn.Parameter(torch.zeros(width))

    def forward(self, x):
        return self.bn(x) + self.beta


class DCA(nn.Module):
    """Count autoencoder: input (scaled log-normalised expression) -> (mean, theta, pi or None)."""

    def __init__(self, n_genes: int, hidden_size, ae_type: str,
                 batchnorm: bool, activation: str, hidden_dropout, input_dropout: float):
        super().__init__()
        if ae_type not in AE_TYPES:
            raise ValueError(f"dca: ae_type must be one of {AE_TYPES}, got {ae_type!r}")
        hidden_size = [int(h) for h in hidden_size]
        if not hidden_size or min(hidden_size) < 1:
            raise ValueError(f"dca: hidden_size must be a non-empty list of positive widths, got {hidden_size}")
        drops = list(hidden_dropout) if isinstance(hidden_dropout, (list, tuple)) else [float(hidden_dropout)] * len(hidden_size)
        if len(drops) != len(hidden_size):
            raise ValueError("dca: hidden_dropout must be one rate or one per hidden layer")
        self.ae_type = ae_type
        self.zero_inflated = ae_type.startswith("zinb")
        self.conddisp = ae_type.endswith("conddisp")
        layers, prev = [], n_genes
        if input_dropout > 0:  # upstream CLI --inputdropout (Keras Dropout on the input layer)
            layers.append(nn.Dropout(float(input_dropout)))
        for width, p in zip(hidden_size, drops):
            layers.append(_dense(prev, width))
            if batchnorm:
                layers.append(ShiftBatchNorm(width))
            layers.append(_activation(activation, width))
            if p > 0:
                layers.append(nn.Dropout(p))
            prev = width
        self.body = nn.Sequential(*layers)
        self.mean = _dense(prev, n_genes)
        if self.conddisp:
            self.disp = _dense(prev, n_genes)
        else:  # upstream ConstantDispersionLayer: one log-theta per gene, initialised to 0
            self.log_theta = nn.Parameter(torch.zeros(n_genes))
        self.pi = _dense(prev, n_genes) if self.zero_inflated else None

    def forward(self, x):
        h = self.body(x)
        mean = torch.clamp(torch.exp(self.mean(h)), 1e-5, 1e6)
        if self.conddisp:
            theta = torch.clamp(nn.functional.softplus(self.disp(h)), 1e-4, 1e4)
        else:
            theta = torch.clamp(torch.exp(self.log_theta), 1e-3, 1e4).expand_as(mean)
        pi = torch.sigmoid(self.pi(h)) if self.zero_inflated else None
        return mean, theta, pi


def masked_count_loss(y, mask, mean, theta, pi, size_factors, ridge: float):
    """Mean NLL over the observed entries (``mask`` True) of a batch.

    ``y`` may hold anything (NaN, any fill) at held-out entries: they are replaced by 0 before the
    likelihood is evaluated and excluded from the sum, so neither the loss nor its gradient depends
    on them. The NB mean is ``mean * size_factor`` (upstream ColwiseMultLayer).
    """
    m = mask.to(mean.dtype)
    y = torch.where(mask, y, torch.zeros_like(y))
    mu = mean * size_factors[:, None]
    nll = zinb_nll(y, mu, theta, pi, ridge=ridge) if pi is not None else nb_nll(y, mu, theta)
    nll = torch.where(mask, nll, torch.zeros_like(nll))
    return nll.sum() / m.sum().clamp_min(1.0)
