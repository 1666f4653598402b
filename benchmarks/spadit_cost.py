"""SpaDiT's FLOP model (methods/spadit/cost.py) against measured CPU steps: one training step (forward, backward,
AdamW) and one sampling forward of model.SpaDiTNet at a few small shapes, on 1 thread. The measured seconds over the
model's FLOPs give this CPU's rate; a FLOP model that misses a term shows as a rate that drifts with the shape.
`stbench estimate` prices SpaDiT's paper jobs from the FLOPs at the median rate (gpu_job_estimates.yaml: spadit).

    python benchmarks/spadit_cost.py [--out benchmarks/results/spadit_flops_check.csv] [--reps 3]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (tokens = genes per batch, spots, cells, hidden, depth, heads, latent layers, condition genes): small enough for a
# 2-core machine, spread over the terms the model counts (block width, depth, batch, spots, cells)
SHAPES = [(64, 600, 1000, 256, 2, 8, 1, 100), (64, 600, 1000, 512, 2, 8, 1, 100), (128, 600, 1000, 512, 4, 8, 2, 100),
          (256, 2000, 2000, 512, 2, 16, 1, 200), (64, 3000, 3000, 1024, 1, 32, 1, 200), (128, 600, 4000, 256, 2, 8, 1, 400)]


def measure(shape, reps: int) -> dict:
    import torch

    from methods.spadit.cost import condition_flops, forward_flops
    from methods.spadit.model import SpaDiTNet

    b, n, c, h, depth, heads, ll, q = shape
    hp = {"hidden_size": h, "depth": depth, "latent_layers": ll, "batch_size": b, "heads": heads}
    torch.manual_seed(0)
    net = SpaDiTNet(n, c, hidden=h, depth=depth, heads=heads, latent_layers=ll, num_steps=1000, backbone="transformer",
                    condition="flash_attention", concat=True, pca_dim=10)
    for blk in net.blocks:                       # adaLN-Zero starts at zero: give the backward real gradients
        torch.nn.init.normal_(blk.ada[-1].weight, std=0.01)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x, xs, sc = torch.randn(b, n), torch.randn(b, c), torch.randn(q, c)
    t = torch.randint(0, 1000, (b,))

    def step():
        loss = torch.mean((net(x, xs, t, net.condition(sc)) - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward():
        with torch.no_grad():
            net(x, xs, t, net.condition(sc))

    out = {}
    for name, fn in (("train", step), ("forward", forward)):
        fn()                                     # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = min(times)
    fwd = forward_flops(b, n, c, hp) + condition_flops(q, c, hp, "flash_attention")
    return {"tokens": b, "n_spots": n, "n_cells": c, "hidden": h, "depth": depth, "heads": heads, "latent_layers": ll,
            "cond_genes": q, "train_s": round(out["train"], 4), "forward_s": round(out["forward"], 4),
            "model_forward_gflop": round(fwd / 1e9, 3),
            "train_gflops_per_s": round(3 * fwd / out["train"] / 1e9, 1),
            "forward_gflops_per_s": round(fwd / out["forward"] / 1e9, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "spadit_flops_check.csv")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [measure(s, a.reps) for s in SHAPES]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(a.out)
    for r in rows:
        print(r)
    tr = [r["train_gflops_per_s"] for r in rows]
    print(f"train GFLOP/s: median {statistics.median(tr):.1f}, range {min(tr):.1f}-{max(tr):.1f}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
