"""stMCDI against the released code (github.com/wenwenmin/stMCDI), same process, same threads, at the
released configuration (config/st_config.yaml: 4 layers, 64 channels, 4 heads, T = 1000, batch 356).

Not a test, and the released code is not part of this project: pass a checkout of it with
``--released``; its ``src/`` is imported unchanged.

    git clone https://github.com/wenwenmin/stMCDI /tmp/stMCDI-released
    PYTHONPATH=. python benchmarks/compare_released_stmcdi.py --released /tmp/stMCDI-released

Training: seconds per step (forward, backward, Adam), the released step including its own graph build
and re-mask, on the same synthetic spots. Sampling: seconds per denoiser evaluation, scaled to 1000
spots x samples x chain steps. The released sampler runs one sample at a time (a Python loop over
samples, the full chain each); ours evaluates a chunk of spots x all samples in one batch.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stmcdi import METHOD, load_stmcdi, synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def released_model(path: Path, g: int):
    """The released stMCDI model and its config, imported from a checkout at ``path``."""
    sys.path.insert(0, str(path))
    from src.main_model_st import stMCDI  # noqa: PLC0415  (the released package, imported unchanged)

    config = yaml.safe_load((path / "config" / "st_config.yaml").read_text())
    return stMCDI(config, "cpu", num_dim=g), config


def released_batch(x, m, xy, idx):
    """One batch in the released dataset's layout (spots x genes, gene index as the 'time' axis)."""
    b, g = len(idx), x.shape[1]
    obs = torch.as_tensor(np.where(m[idx], x[idx], 0), dtype=torch.float32)
    mask = torch.as_tensor(m[idx], dtype=torch.float32)
    return {"observed_data": obs, "observed_mask": mask, "gt_mask": mask,
            "timepoints": torch.arange(g, dtype=torch.float32).expand(b, g),
            "location": torch.as_tensor(xy[idx], dtype=torch.float32)}


def time_released(args, x, m, xy):
    torch.manual_seed(0)
    model, config = released_model(Path(args.released), x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=config["train"]["lr"], weight_decay=1e-6)
    bs = config["train"]["batch_size"]
    rng = np.random.default_rng(0)
    times = []
    for step in range(args.warmup + args.steps):
        batch = released_batch(x, m, xy, rng.choice(len(x), bs, replace=False))
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model(batch, is_train=1)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    model.eval()
    chunk = released_batch(x, m, xy, np.arange(args.sample_spots))
    T = model.num_steps
    model.num_steps = 1  # one denoiser evaluation per call: the chain is T of them
    with torch.no_grad():
        model.evaluate(chunk, n_samples=1)  # warm-up
        model.num_steps = args.eval_steps
        t0 = time.perf_counter()
        model.evaluate(chunk, n_samples=1)
    per_eval = (time.perf_counter() - t0) / args.eval_steps  # one sample of `sample_spots` spots
    model.num_steps = T
    return {"code": "released", "train_s_per_step": float(np.mean(times)), "batch_size": bs, "T": T,
            "eval_s_per_1000_spot_samples": per_eval * 1000.0 / args.sample_spots}


def time_ours(args, x, m, xy):
    mods = load_stmcdi()
    p = METHOD.params("official", {"checkpoints": 0, "progress": False})
    n, g = x.shape
    mu = np.where(m, x, 0).sum(0) / m.sum(0)
    X = torch.as_tensor(np.where(m, x - mu, 0).astype(np.float32))
    O = torch.as_tensor(m)
    ei = mods["graph"].knn_edge_index(xy, p["k_neighbors"])
    torch.manual_seed(0)
    model = mods["model"].STMCDI(g, p)
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(n)
    mods["train"].fit(model, X, O, ei, idx, {**p, "max_steps": args.warmup}, gen)
    t0 = time.perf_counter()
    mods["train"].fit(model, X, O, ei, idx, {**p, "max_steps": args.steps}, gen)
    train_s = (time.perf_counter() - t0) / args.steps
    S = args.n_samples
    with torch.no_grad():
        Z = model.encode(X * O, ei)
        zb = None if Z is None else Z[:args.sample_spots]
        model.sample(X[:args.sample_spots], O[:args.sample_spots], zb, S, "ddim", 1, 0.0, gen)
        t0 = time.perf_counter()
        model.sample(X[:args.sample_spots], O[:args.sample_spots], zb, S, "ddim", args.eval_steps, 0.0, gen)
    per_eval = (time.perf_counter() - t0) / args.eval_steps  # `sample_spots` spots x S samples
    return {"code": "ours (official preset)", "train_s_per_step": train_s, "batch_size": p["batch_size"],
            "T": p["num_steps"], "eval_s_per_1000_spot_samples": per_eval * 1000.0 / (args.sample_spots * S)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--released", required=True, help="a checkout of github.com/wenwenmin/stMCDI")
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--genes", type=int, default=200, help="1000 needs more than 23 GB of RAM in the released model")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--eval-steps", type=int, default=3)
    ap.add_argument("--sample-spots", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=10, help="samples per batched evaluation (ours)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "released_vs_ours_stmcdi_cpu.csv"))
    args = ap.parse_args(argv)
    x, xy, m = synthetic(args.spots, args.genes)
    rows = [time_released(args, x, m, xy), time_ours(args, x, m, xy)]
    for r in rows:
        # whole-run sampling costs per 1000 spots: each code's default, and the same chain for both
        r["ddpm_T1000_x100_s_per_1000_spots"] = r["eval_s_per_1000_spot_samples"] * 1000 * 100
        r.update(spots=args.spots, genes=args.genes, threads=torch.get_num_threads(), torch=torch.__version__,
                 host=platform.node()[:20])
    rows[0]["default_sampling_s_per_1000_spots"] = rows[0]["eval_s_per_1000_spot_samples"] * 1000 * 1000  # T 1000 x 1000 samples
    rows[1]["default_sampling_s_per_1000_spots"] = rows[1]["eval_s_per_1000_spot_samples"] * 50 * 100  # DDIM-50 x 100
    for r in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    print(f"training: ours {rows[0]['train_s_per_step'] / rows[1]['train_s_per_step']:.2f}x faster per step; "
          f"sampling, per spot-sample evaluation: {rows[0]['eval_s_per_1000_spot_samples'] / rows[1]['eval_s_per_1000_spot_samples']:.2f}x; "
          f"each code's default sampler per 1000 spots: {rows[0]['default_sampling_s_per_1000_spots'] / rows[1]['default_sampling_s_per_1000_spots']:.0f}x")
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
