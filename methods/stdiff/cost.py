"""stDiff's cost terms, torch-free: the FLOPs and parameters of its network (model.StDiffNet) and of one fit of
impute.py's loop, which `stbench estimate` prices a paper job by. Each reference cell (doubled by the noise
augmentation) is a training token; each spot is a sampling token; the features are the fit's genes."""

from __future__ import annotations

TIME_DIM = 256  # model.timestep_embedding's width


def _linear(a: int, b: int) -> int:
    return a * b + b


def token_weights(n_genes: int, p: dict) -> int:
    """Weight entries one token (a cell or a spot) passes through: each is one multiply-add per token."""
    h, depth, hid = int(p["hidden_size"]), int(p["depth"]), int(int(p["hidden_size"]) * float(p["mlp_ratio"]))
    block = 4 * h * h + 2 * h * hid + 6 * h * h
    return 2 * n_genes * h + TIME_DIM * h + h * h + depth * block + 2 * h * h + h * n_genes


def forward_flops(tokens: int, n_genes: int, p: dict) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of ``tokens`` cells: every weight once per token, plus
    attention across the batch's tokens (2 L h per block and token)."""
    h, depth = int(p["hidden_size"]), int(p["depth"])
    return 2.0 * tokens * (token_weights(n_genes, p) + depth * 2 * tokens * h)


def n_parameters(n_genes: int, p: dict) -> int:
    """model.StDiffNet's parameter count (weights and biases), without building it."""
    h, depth, hid = int(p["hidden_size"]), int(p["depth"]), int(int(p["hidden_size"]) * float(p["mlp_ratio"]))
    block = _linear(h, 3 * h) + _linear(h, h) + _linear(h, hid) + _linear(hid, h) + _linear(h, 6 * h)
    return (2 * _linear(n_genes, h) + _linear(TIME_DIM, h) + _linear(h, h) + depth * block + _linear(h, 2 * h)
            + _linear(h, n_genes))


def _batches(n: int, bs: int) -> list[int]:
    return [min(bs, n - i) for i in range(0, max(int(n), 1), bs)]


def job_flops(fits: int, n_train: int, n_predict: int, n_spots: int, n_cells: int, p: dict, dataset: str,
              assumed: dict) -> tuple[float, float]:
    """(training, sampling) FLOPs of one job of ``fits`` fits (impute.mapper, each training its own network):
    ``epochs`` over the doubled reference's cells, 3x a forward per step; then ``diffusion_steps`` reverse steps
    over every spot."""
    g, bs = int(n_train) + int(n_predict), int(p["batch_size"])
    train = int(p["epochs"]) * sum(3.0 * forward_flops(b, g, p) for b in _batches(2 * int(n_cells), bs))
    sample = int(p["diffusion_steps"]) * sum(forward_flops(b, g, p) for b in _batches(int(n_spots), bs))
    return fits * train, fits * sample


def job_state_bytes(n_spots: int, n_cells: int, n_genes: int, p: dict, dataset: str) -> int:
    """fp32 weights, gradients and AdamW's two moments of one fit's network (no EMA)."""
    return 16 * n_parameters(n_genes, p)
