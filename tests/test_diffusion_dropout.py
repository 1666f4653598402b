"""The denoiser's CPU dropout (stbench/kit/diffusion/dropout.py): F.dropout's distribution, cheaper mask."""

import pytest
import torch

from stbench.kit.diffusion.dropout import dropout, keep_threshold


def test_identity_when_not_training_or_p_zero():
    x = torch.randn(5, 7)
    assert dropout(x, 0.1, False) is x
    assert dropout(x, 0.0, True) is x


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_every_lane_keeps_at_rate_and_expectation_is_preserved(p):
    torch.manual_seed(0)
    n = 4 * 250_000
    out = dropout(torch.ones(n), p, True)
    keep = keep_threshold(p) / 65536
    assert abs(keep - (1 - p)) < 1e-4
    kept = out != 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / keep))
    sd = (keep * (1 - keep) / (n / 4)) ** 0.5
    for lane in range(4):  # each 16-bit lane of a 64-bit draw is uniform (the top one too)
        assert abs(kept[lane::4].float().mean().item() - keep) < 6 * sd, lane
    assert abs(out.mean().item() - 1.0) < 6 * sd / keep


def test_seeded_like_torch_and_odd_shapes():
    x = torch.randn(3, 5, 7)  # 105 elements: not a multiple of the four lanes
    torch.manual_seed(1)
    a = dropout(x, 0.3, True)
    torch.manual_seed(1)
    b = dropout(x, 0.3, True)
    c = dropout(x, 0.3, True)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


def test_gradient_is_the_scaled_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.2, True)
    out.backward(torch.ones_like(out))
    mask = (out != 0).float() / (keep_threshold(0.2) / 65536)
    assert torch.allclose(x.grad, mask)


def test_p_one_drops_everything():
    assert torch.count_nonzero(dropout(torch.ones(10), 1.0, True)) == 0


def test_other_devices_use_torch_dropout(monkeypatch):
    """CUDA (here: the meta device) keeps F.dropout's fused kernel."""
    import stbench.kit.diffusion.dropout as mod

    calls = []
    monkeypatch.setattr(mod.F, "dropout", lambda x, p, training: calls.append((x.device.type, p)) or x)
    x = torch.empty(8, 4, device="meta")
    assert mod.dropout(x, 0.1, True) is x and calls == [("meta", 0.1)]
