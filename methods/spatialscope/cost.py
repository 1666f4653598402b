"""SpatialScope's cost terms, torch-free: the FLOPs and parameters of its score network (model.ScoreNet, a 1-D
U-Net over the gene axis) and of one job of impute.py's loop, which `stbench estimate` prices a paper job by. The
network is trained once per job on the reference's cells; every fit then samples each spot by annealed Langevin
dynamics (one forward per step)."""

from __future__ import annotations


def fit_factors(n: int, factors) -> list[int]:
    """model.fit_factors: a downsampling that would leave fewer than 2 positions becomes 1."""
    out = []
    for f in map(int, factors):
        f = f if (n - 1) // f + 1 >= 2 else 1
        out.append(f)
        n = (n - 1) // f + 1
    return out


def _layers(n_genes: int, p: dict):
    """Every convolution of model.ScoreNet as (c_in, c_out, kernel, positions it is evaluated at, has bias):
    a strided convolution at its output length, a transposed one at its input length (as torch counts them)."""
    ch = list(map(int, p["channels"]))
    fa = fit_factors(int(n_genes), p["factors"])
    outs = ch[1:] + [ch[-1]]
    lens = [int(n_genes)]
    for f in fa:
        lens.append((lens[-1] - 1) // f + 1)
    convs = [(1, ch[0], 5, lens[0]), (1, ch[0], 3, lens[0])]          # mu_in, x_in

    def dblock(ci, co, li, lo, resample_at):
        return [(ci, ci, 7, resample_at), (ci, co, 3, lo), (co, co, 3, lo), (co, co, 3, lo),
                (ci, co, 1, li), (co, co, 7, resample_at)]

    def film(c, length):
        return [(c, c, 3, length)] * 3

    def ublock(ci, co, li, lo, resample_at):
        return [(ci, ci, 7, resample_at), (ci, co, 3, lo), (co, co, 3, lo), (ci, co, 1, li), (co, co, 7, resample_at),
                (co, co, 3, lo), (co, co, 3, lo)]

    for i, (ci, co) in enumerate(zip(ch, outs)):
        li, lo = lens[i], lens[i + 1]
        convs += dblock(ci, co, li, lo, lo) + film(co, lo) + ublock(ci, co, li, lo, lo)
    for k in range(len(ch) - 1, 0, -1):                                # the right side, deepest first
        ci, co, li, lo = 2 * ch[k], ch[k - 1], lens[k], lens[k - 1]
        convs += dblock(ci, co, li, lo, li) + film(co, lo) + ublock(ci, co, li, lo, li)
    convs.append((ch[0], 1, 3, lens[0]))                               # out
    return convs


def forward_flops(tokens: int, n_genes: int, p: dict) -> float:
    """FLOPs (2 per multiply-add) of the convolutions of one forward pass of ``tokens`` cells."""
    return 2.0 * tokens * sum(ci * co * k * length for ci, co, k, length in _layers(n_genes, p))


def n_parameters(n_genes: int, p: dict) -> int:
    """model.ScoreNet's parameter count (kernels and biases), without building it."""
    return sum(ci * co * k + co for ci, co, k, _ in _layers(n_genes, p))


def job_flops(fits: int, n_train: int, n_predict: int, n_spots: int, n_cells: int, p: dict, dataset: str,
              assumed: dict) -> tuple[float, float]:
    """(training, sampling) FLOPs of one job: ``epochs x cells / batch_size`` steps of 3x a forward, once; then per
    fit, (n_sigmas x steps_per_sigma + 1) forwards of every spot's replicates."""
    g, bs = int(n_train) + int(n_predict), min(int(p["batch_size"]), int(n_cells))
    steps = max(1, int(float(p["epochs"]) * int(n_cells) / bs))
    train = steps * 3.0 * forward_flops(bs, g, p)
    chain = int(p["n_sigmas"]) * int(p["steps_per_sigma"]) + 1
    sample = int(fits) * chain * forward_flops(int(p["replicates"]) * int(n_spots), g, p)
    return train, sample


def job_state_bytes(n_spots: int, n_cells: int, n_genes: int, p: dict, dataset: str) -> int:
    """fp32 weights, gradients, Adam's two moments and the EMA copy."""
    return 20 * n_parameters(n_genes, p)
