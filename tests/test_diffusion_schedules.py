"""The shared schedules SpaDiT uses: Eq. 31 of its supplementary (quadratic), the released code's cosine, and the
x0-parameterised ancestral step (the released sampler's model_pred_type='x_start')."""

import numpy as np
import pytest
import torch

from stbench.kit.diffusion import Schedule, ddpm_sample


def test_quad_is_spadit_eq31():
    T, b1, bT = 1000, 1e-4, 0.02
    t = np.arange(1, T + 1)
    eq31 = ((T - t) / (T - 1) * np.sqrt(b1) + (t - 1) / (T - 1) * np.sqrt(bT)) ** 2
    np.testing.assert_allclose(Schedule(T, b1, bT, "quad").beta, eq31, rtol=1e-12)


def test_cosine_matches_its_alpha_bar():
    T, s = 200, 0.008
    sch = Schedule(T, 1e-4, 0.02, "cosine")
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(sch.alpha_bar[:-1], f(np.arange(1, T)) / f(0), rtol=1e-6)  # the last beta is clipped
    assert sch.beta[-1] == 0.999
    assert np.all(np.diff(sch.beta) > 0)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="cosine"):
        Schedule(10, 1e-4, 0.02, "sigmoid")


@pytest.mark.parametrize("predicts", ["noise", "x0"])
def test_ancestral_sampler_with_an_oracle_recovers_x0(predicts):
    """A model that knows x0 (and so the noise of x_t) brings pure noise back to x0 in both parameterisations."""
    sch = Schedule(100, 1e-4, 0.2, "quad")
    x0 = torch.linspace(-2, 2, 12)[None, :].repeat(3, 1)
    ab = sch.alpha_bar

    def oracle(x, t):
        if predicts == "x0":
            return x0
        return (x - np.sqrt(ab[t]) * x0) / np.sqrt(1 - ab[t])

    gen = torch.Generator().manual_seed(0)
    out = ddpm_sample(oracle, torch.randn(3, 12, generator=gen), sch, gen=gen, predicts=predicts)
    np.testing.assert_allclose(out.numpy(), x0.numpy(), atol=0.05)
    with pytest.raises(ValueError):
        ddpm_sample(oracle, torch.zeros(1, 12), sch, predicts="v")
