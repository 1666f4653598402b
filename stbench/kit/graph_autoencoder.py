"""The graph-autoencoder reconstruction loss of Kipf & Welling's (V)GAE (``gae/optimizer.py``), shared by
scGNN's cell-graph autoencoder and GraphSCI's gene-graph encoder: a class-balanced binary cross-entropy
of the edge logits against A + I, and the KL term of the variational encoder.

Written here (not taken from PyG's ``GAE.recon_loss``) because that one samples negative edges; both
upstreams score the dense logit matrix with the positive weight and the norm below.
"""

from __future__ import annotations
# Imported inside functions on purpose: torch (import cost; the core imports this file without training).


def balance(n_nodes: int, n_edges: float) -> tuple[float, float]:
    """(pos_weight, norm) of the loss for ``n_nodes`` nodes and ``n_edges`` nonzero adjacency entries:
    pos_weight = (n^2 - E) / E, norm = n^2 / (2 (n^2 - E)); a graph without edges counts as one edge."""
    n2 = float(n_nodes) * float(n_nodes)
    e = float(n_edges) if n_edges > 0 else 1.0
    return (n2 - e) / e, n2 / float((n2 - e) * 2)


def reconstruction_terms(logits, label, pos_weight: float, norm: float, mu=None, logstd=None):
    """(reconstruction, kl): norm * BCE-with-logits(logits, label, pos_weight) and, for a variational
    encoder (``mu``, ``logstd`` = log sigma, as both upstreams use it), the KL term
    (0.5 / n) * mean_i sum_d (1 + 2 logstd - mu^2 - exp(logstd)^2) (0 without one). The loss is
    ``reconstruction - kl``; both are returned so that a caller can add its other terms in its own order."""
    import torch
    import torch.nn.functional as F

    pw = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    recon = norm * F.binary_cross_entropy_with_logits(logits, label, pos_weight=pw)
    if mu is None or logstd is None:
        return recon, torch.zeros((), dtype=logits.dtype, device=logits.device)
    n = mu.shape[0]
    kl = (0.5 / n) * torch.mean(torch.sum(1 + 2 * logstd - mu ** 2 - torch.exp(logstd) ** 2, dim=1))
    return recon, kl
