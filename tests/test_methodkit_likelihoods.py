"""stbench.kit.likelihoods (DCA's and GraphSCI's NB / ZINB NLL) and stbench.kit.graph_autoencoder (scGNN's and
GraphSCI's (V)GAE loss): the one copy of each, tested once against independent references."""

import numpy as np
import torch

from stbench.kit.graph_autoencoder import balance, reconstruction_terms
from stbench.kit.likelihoods import nb_nll, zinb_nll


def _draws():
    rng = np.random.default_rng(0)
    mu = torch.as_tensor(rng.uniform(0.1, 20, 200))
    theta = torch.as_tensor(rng.uniform(0.2, 50, 200))
    y = torch.as_tensor(rng.integers(0, 30, 200).astype(float))
    y[:40] = 0
    pi = torch.as_tensor(rng.uniform(0.0, 0.8, 200))
    return y, mu, theta, pi


def test_nb_and_zinb_match_scipy_and_torch_distributions():
    from scipy import stats

    y, mu, theta, pi = _draws()
    nb = stats.nbinom.logpmf(y.numpy(), theta.numpy(), (theta / (theta + mu)).numpy())
    np.testing.assert_allclose(-nb_nll(y, mu, theta).numpy(), nb, rtol=1e-6, atol=1e-6)
    zinb = np.where(y.numpy() == 0, np.log(pi.numpy() + (1 - pi.numpy()) * np.exp(nb)), np.log(1 - pi.numpy()) + nb)
    np.testing.assert_allclose(-zinb_nll(y, mu, theta, pi).numpy(), zinb, rtol=1e-6, atol=1e-6)
    lp = torch.distributions.NegativeBinomial(total_count=theta, probs=mu / (mu + theta)).log_prob(y)
    ref = torch.where(y == 0, -torch.log(pi + (1 - pi) * lp.exp()), -(torch.log(1 - pi) + lp))
    torch.testing.assert_close(zinb_nll(y, mu, theta, pi), ref, rtol=1e-6, atol=1e-6)
    # DCA's ridge penalty on pi, and a precomputed lgamma(y + 1) gives the same value
    assert torch.allclose(zinb_nll(y, mu, theta, pi, ridge=2.0) - zinb_nll(y, mu, theta, pi), 2 * pi ** 2)
    assert torch.equal(zinb_nll(y, mu, theta, pi, lgamma_y1=torch.lgamma(y + 1)), zinb_nll(y, mu, theta, pi))


def test_zinb_gradients_are_finite_at_extreme_parameters():
    y = torch.tensor([0.0, 0.0, 5.0, 1e4])
    mu = torch.tensor([1e-5, 1e6, 1e-5, 1e6], requires_grad=True)
    theta = torch.tensor([1e-4, 1e4, 1e4, 1e-4], requires_grad=True)
    pi = torch.tensor([0.0, 1.0, 0.5, 0.999], requires_grad=True)
    zinb_nll(y, mu, theta, pi).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (mu, theta, pi))


def test_graph_autoencoder_terms_match_a_direct_computation():
    rng = np.random.default_rng(1)
    n = 12
    a = (rng.random((n, n)) < 0.2).astype(np.float32)
    a = np.triu(a, 1)
    a = a + a.T
    label = torch.as_tensor(a + np.eye(n, dtype=np.float32))
    pos_weight, norm = balance(n, float(a.sum()))
    e = float(a.sum())
    assert np.isclose(pos_weight, (n * n - e) / e) and np.isclose(norm, n * n / (2 * (n * n - e)))
    assert balance(n, 0.0) == balance(n, 1.0)                      # no edge counts as one
    mu, logstd = torch.randn(n, 4, dtype=torch.float64), 0.1 * torch.randn(n, 4, dtype=torch.float64)
    logits = mu @ mu.T
    recon, kl = reconstruction_terms(logits, label.double(), pos_weight, norm, mu, logstd)
    p = torch.sigmoid(logits)
    bce = -(pos_weight * label * torch.log(p) + (1 - label) * torch.log(1 - p)).mean()
    torch.testing.assert_close(recon, norm * bce)
    var = torch.exp(2 * logstd)
    kl_ref = -(0.5 / n) * (mu ** 2 + var - 1 - torch.log(var)).sum(1).mean()   # -KL(N(mu, var) || N(0, 1)) / n
    torch.testing.assert_close(kl, kl_ref)
    r0, k0 = reconstruction_terms(logits, label.double(), pos_weight, norm)   # the non-variational GAE
    assert torch.equal(r0, recon) and float(k0) == 0.0
