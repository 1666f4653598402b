"""The FLOP and parameter counts `stbench estimate` prices stDiff and SpatialScope by (methods/<name>/cost.py,
torch-free) against the built networks: torch's own FLOP counter and parameter count. A layer added to a model
without its cost.py fails here. (SpaDiT's: tests/test_spadit.py.)"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stbench.run.registry import discover


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as f:
        fn()
    return f.get_total_flops()


@pytest.mark.parametrize("genes,channels,factors", [(352, [8, 16, 24, 32], [3, 4, 5, 1]),
                                                     (33, [8, 16, 24, 32], [3, 4, 5, 1]),
                                                     (7, [8, 16, 32], [3, 4, 1])])
def test_spatialscope_cost_counts_its_score_network(genes, channels, factors):
    m = discover()["spatialscope"]
    cost, model = m.load_module("cost"), m.load_module("model")
    p = {"channels": channels, "factors": factors}
    net = model.ScoreNet(genes, channels, factors)
    assert cost.n_parameters(genes, p) == sum(x.numel() for x in net.parameters())
    x = torch.randn(3, genes)
    assert cost.forward_flops(3, genes, p) == _flops(lambda: net(x, x))
    p.update(batch_size=4, epochs=2, n_sigmas=3, steps_per_sigma=2, replicates=2)
    train, sample = cost.job_flops(2, genes - 2, 2, 10, 8, p, "d", {})
    assert train == 4 * 3 * cost.forward_flops(4, genes, p)           # 2 epochs x 8 cells / batch 4 = 4 steps
    assert sample == 2 * (3 * 2 + 1) * cost.forward_flops(2 * 10, genes, p)


@pytest.mark.parametrize("mlp_ratio", [4.0, 2.5])
def test_stdiff_cost_counts_its_network(mlp_ratio):
    m = discover()["stdiff"]
    cost, model = m.load_module("cost"), m.load_module("model")
    p = {"hidden_size": 24, "depth": 3, "num_heads": 4, "mlp_ratio": mlp_ratio}
    net = model.StDiffNet(37, 24, 3, 4, mlp_ratio)
    assert cost.n_parameters(37, p) == sum(x.numel() for x in net.parameters())
    weights = sum(x.numel() for x in net.parameters() if x.dim() >= 2)
    assert cost.token_weights(37, p) == weights
    x, t = torch.randn(5, 37), torch.randint(0, 10, (5,))
    counted = _flops(lambda: net(x, t, x))
    # torch counts the matmuls (weights and attention); the count here adds nothing else
    assert cost.forward_flops(5, 37, p) == counted
