"""Speed and memory of stMCDI (methods/stmcdi): training steps per second, sampling seconds per
1000 spots (DDPM and DDIM) and peak memory, on synthetic n_spots x n_genes problems.

Not a test. Imports only numpy, torch, torch_geometric, yaml and the stmcdi modules (no anndata,
scanpy or stbench), so it runs on a bare GPU machine:

    PYTHONPATH=. python benchmarks/bench_stmcdi.py --device cpu --sizes 500 2000 --steps 3
    PYTHONPATH=. python benchmarks/bench_stmcdi.py --device cuda --steps 50 --out $OUT/stmcdi_cuda.csv

Sampling cost does not depend on n_spots (spots are independent given the latent); it is measured
on a chunk of spots for a few denoiser evaluations and scaled to 1000 spots x the chain length.
"""

from __future__ import annotations

import argparse
import csv
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from stbench.run.registry import get_method
from stbench.data.task import ImputationTask

ROOT = Path(__file__).resolve().parents[1]


METHOD = get_method("stmcdi")


def load_stmcdi():
    """The stMCDI modules, imported through the registry (as the workflow's child process does)."""
    return {name: METHOD.load_module(name) for name in ("impute", "model", "train", "graph")}


def synthetic(n: int, g: int, seed: int = 0, held: float = 0.1):
    """Spatially smooth log-like expression on a square grid of ~n spots, 10% held out."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n].astype(float)
    f = np.stack([np.sin(xy[:, 0] / 6 + a) + np.cos(xy[:, 1] / 7 + b) for a, b in rng.uniform(0, 6, (8, 2))], 1)
    x = (f @ rng.normal(0, 0.5, (8, g)) + rng.normal(0, 0.3, (n, g)) + 1.5).astype(np.float32)
    return x, xy, rng.random(x.shape) >= held


def Task(x, m, xy, device, scratch):  # noqa: N802  (a task built from a matrix already on the evaluation scale)
    n, g = x.shape
    obs = np.where(m, x, np.nan).astype(np.float32)
    return ImputationTask(observed=obs, observed_mask=m, coords=xy, genes=tuple(map(str, range(g))),
                          spots=tuple(map(str, range(n))), observed_counts=obs, train_spots=np.ones(n, bool),
                          library_size=np.ones(n), median_library_size=1.0, gene_mean=np.zeros(g, np.float32),
                          gene_sd=np.ones(g, np.float32), seed=0, device=device, scratch=Path(scratch))


def peak_mb(dev) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (monotone)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_size(mods, n, g, args, dev):
    p = METHOD.params(args.preset, {"checkpoints": 0, "progress": False})
    x, xy, m = synthetic(n, g)
    mu = np.where(m, x, 0).sum(0) / m.sum(0)
    xs = np.where(m, x - mu, 0).astype(np.float32)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    ei = mods["graph"].knn_edge_index(xy, p["k_neighbors"]).to(dev)
    graph_s = time.perf_counter() - t0
    X = torch.as_tensor(xs, device=dev); O = torch.as_tensor(m, device=dev)
    model = mods["model"].STMCDI(g, p).to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    idx = torch.arange(n, device=dev)
    mods["train"].fit(model, X, O, ei, idx, {**p, "max_steps": args.warmup}, gen)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync(dev); t0 = time.perf_counter()
    mods["train"].fit(model, X, O, ei, idx, {**p, "max_steps": args.steps}, gen)
    sync(dev); train_s = time.perf_counter() - t0
    train_mem = peak_mb(dev)
    # sampling: a chunk of spots x n_samples, `eval_steps` denoiser evaluations, scaled up
    S = args.n_samples or int(p["n_samples"])
    chunk = min(n, args.sample_spots)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    amp = bool(p["amp"]) and dev.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        Z = model.encode(X * O, ei)
        zb = None if Z is None else Z[:chunk].float()
        model.sample(X[:chunk], O[:chunk], zb, S, "ddim", 1, 0.0, gen)  # warm-up
        sync(dev); t0 = time.perf_counter()
        model.sample(X[:chunk], O[:chunk], zb, S, "ddim", args.eval_steps, 0.0, gen)
        sync(dev)
    per_eval = (time.perf_counter() - t0) / args.eval_steps
    sample_mem = peak_mb(dev)
    per_1000 = per_eval * 1000.0 / chunk
    n_par = mods["model"].count_parameters(model)
    return {"device": dev.type if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "preset": args.preset, "n_spots": n, "n_genes": g, "parameters": n_par,
            "batch_size": p["batch_size"], "channels": p["channels"], "layers": p["layers"], "heads": p["heads"],
            "T": p["num_steps"], "graph_build_s": round(graph_s, 4), "train_steps": args.steps,
            "train_steps_per_s": round(args.steps / train_s, 4), "train_peak_mem_mb": round(train_mem, 1),
            "n_samples": S, "sample_chunk_spots": chunk, "denoiser_eval_s": round(per_eval, 5),
            "ddpm_s_per_1000_spots": round(per_1000 * p["num_steps"], 2),
            "ddim_steps": p["sample_steps"], "ddim_s_per_1000_spots": round(per_1000 * p["sample_steps"], 2),
            "sample_peak_mem_mb": round(sample_mem, 1), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "host": platform.node()[:20],
            "encoder_path": "subgraph" if args.subgraph or dev.type != "cuda" else "full graph"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 6000])
    ap.add_argument("--genes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per size")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--eval-steps", type=int, default=3, help="timed denoiser evaluations for sampling")
    ap.add_argument("--sample-spots", type=int, default=64, help="spots per sampling chunk")
    ap.add_argument("--n-samples", type=int, default=None, help="samples per spot (default: the preset's)")
    ap.add_argument("--e2e", action="store_true", help="also run a full impute (DDIM) on the largest size")
    ap.add_argument("--e2e-samples", type=int, default=5)
    ap.add_argument("--e2e-steps", type=int, default=None, help="training steps of the end-to-end run (default --steps)")
    ap.add_argument("--subgraph", action="store_true",
                    help="train on each batch's k-hop subgraph on CUDA too (the path before the full-graph encoder)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    mods = load_stmcdi()
    if args.subgraph:  # a before/after of train.use_full_graph on the same machine
        mods["train"].use_full_graph = lambda *a, **k: False
    rows = []
    for n in args.sizes:
        r = bench_size(mods, n, args.genes, args, dev)
        print(r, flush=True)
        rows.append(r)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"stmcdi_{dev.type}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    print(f"wrote {out}")
    if args.e2e:
        import tempfile
        n = max(args.sizes)
        x, xy, m = synthetic(n, args.genes)
        t0 = time.perf_counter()
        res = mods["impute"].run(Task(x, m, xy, args.device, tempfile.mkdtemp()), **{
            **METHOD.params(args.preset), "max_steps": args.e2e_steps or args.steps, "sampler": "ddim",
            "n_samples": args.e2e_samples, "checkpoints": 0, "progress": False})
        held = ~m
        rmse = float(np.sqrt(((res["imputed"][held] - x[held]) ** 2).mean()))
        gmean = np.broadcast_to(np.where(m, x, 0).sum(0) / m.sum(0), x.shape)
        rmse_mean = float(np.sqrt(((gmean[held] - x[held]) ** 2).mean()))
        print({"e2e_n_spots": n, "seconds": round(time.perf_counter() - t0, 1),
               "preset": args.preset, "rmse_heldout": round(rmse, 4),
               "rmse_gene_mean": round(rmse_mean, 4), "steps_done": res["history"]["steps"], "peak_mem_mb": round(peak_mb(dev), 1)}, flush=True)


if __name__ == "__main__":
    main()
