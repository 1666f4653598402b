"""Where an stMCDI training step spends its time: torch.profiler over a few steps on a synthetic
problem (the bench's), top operators by device time, and the share of time the GPU sits idle.

    PYTHONPATH=. python benchmarks/profile_stmcdi.py --device cuda --preset paper --spots 2000 --steps 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stmcdi import METHOD, load_stmcdi, synthetic  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--genes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    mods = load_stmcdi()
    p = METHOD.params(a.preset, {"checkpoints": 0, "progress": False})
    import numpy as np

    x, xy, m = synthetic(a.spots, a.genes)
    X = torch.as_tensor(np.where(m, x - x.mean(0), 0).astype(np.float32), device=dev)
    O = torch.as_tensor(m, device=dev)
    ei = mods["graph"].knn_edge_index(xy, p["k_neighbors"]).to(dev)
    model = mods["model"].STMCDI(a.genes, p).to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    idx = torch.arange(a.spots, device=dev)
    mods["train"].fit(model, X, O, ei, idx, {**p, "max_steps": 3}, gen)  # warm-up
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        mods["train"].fit(model, X, O, ei, idx, {**p, "max_steps": a.steps}, gen)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
    if dev.type == "cuda":
        busy = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6
        print(f"{a.steps} steps in {wall:.3f} s under the profiler ({a.steps / wall:.1f} steps/s); "
              f"GPU kernels busy {busy:.3f} s = {100 * busy / wall:.0f}% of the wall time")


if __name__ == "__main__":
    main()
