"""stMCDI against the released code (github.com/wenwenmin/stMCDI), same process, same threads, at the
released configuration (config/st_config.yaml: 4 layers, 64 channels, 4 heads, T = 1000, batch 356).

Not a test, and the released code is not part of this project: pass a checkout of it with
``--released``; its ``src/`` is imported unchanged.

    git clone https://github.com/wenwenmin/stMCDI /tmp/stMCDI-released
    PYTHONPATH=. python benchmarks/compare_released_stmcdi.py --released /tmp/stMCDI-released

Training: seconds per step (forward, backward, Adam), the released step including its own graph build
and re-mask, on the same synthetic spots; the two codes' steps alternate (ours in one continuing
``fit``, a released step between two of ours), and each figure is a median, so that the machine's
speed drifting over minutes hits both codes alike. Sampling: seconds per denoiser evaluation, scaled to 1000
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


class Released:
    """The released model at its own configuration: one training step or one denoiser evaluation at a time."""

    def __init__(self, path: Path, x, m, xy, sample_spots: int):
        torch.manual_seed(0)
        self.model, config = released_model(path, x.shape[1])
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config["train"]["lr"], weight_decay=1e-6)
        self.bs, self.T = config["train"]["batch_size"], self.model.num_steps
        self.data, self.rng = (x, m, xy), np.random.default_rng(0)
        self.chunk = released_batch(x, m, xy, np.arange(sample_spots))

    def train_step(self) -> float:
        x, m, xy = self.data
        batch = released_batch(x, m, xy, self.rng.choice(len(x), self.bs, replace=False))
        self.model.train()
        t0 = time.perf_counter()
        self.opt.zero_grad()
        self.model(batch, is_train=1).backward()
        self.opt.step()
        return time.perf_counter() - t0

    def evals(self, k: int) -> float:
        """Seconds for ``k`` denoiser evaluations of one sample of the chunk (its chain cut to k steps)."""
        self.model.eval()
        self.model.num_steps = k
        with torch.no_grad():
            t0 = time.perf_counter()
            self.model.evaluate(self.chunk, n_samples=1)
            dt = time.perf_counter() - t0
        self.model.num_steps = self.T
        return dt


class Ours:
    """Our stMCDI at the ``official`` preset on the same data."""

    def __init__(self, x, m, xy, sample_spots: int, n_samples: int):
        self.mods = mods = load_stmcdi()
        self.p = p = METHOD.params("official", {"checkpoints": 0, "progress": False})
        n, g = x.shape
        mu = np.where(m, x, 0).sum(0) / m.sum(0)
        self.X = torch.as_tensor(np.where(m, x - mu, 0).astype(np.float32))
        self.O = torch.as_tensor(m)
        self.ei = mods["graph"].knn_edge_index(xy, p["k_neighbors"])
        torch.manual_seed(0)
        self.model = mods["model"].STMCDI(g, p)
        self.gen = torch.Generator().manual_seed(0)
        self.s, self.S = sample_spots, n_samples

    def train(self, steps: int, between) -> list[float]:
        """Seconds of each of ``steps`` optimiser steps of one continuing ``fit``; ``between()`` runs
        after each step, outside the timed span (the released code's step, interleaved)."""
        times, last = [], [None]

        def on_step(step, model, ema):
            if last[0] is not None:
                times.append(time.perf_counter() - last[0])
            between()
            last[0] = time.perf_counter()

        self.mods["train"].fit(self.model, self.X, self.O, self.ei, torch.arange(len(self.X)),
                               {**self.p, "max_steps": steps + 1}, self.gen, on_step=on_step)
        return times  # the first step (optimiser set-up) is not timed

    def evals(self, k: int) -> float:
        """Seconds for ``k`` denoiser evaluations of ``sample_spots`` spots x ``n_samples`` samples."""
        with torch.no_grad():
            Z = self.model.encode(self.X * self.O, self.ei)
            zb = None if Z is None else Z[:self.s]
            t0 = time.perf_counter()
            self.model.sample(self.X[:self.s], self.O[:self.s], zb, self.S, "ddim", k, 0.0, self.gen)
            return time.perf_counter() - t0


def measure(args, x, m, xy):
    """Both codes, interleaved step by step so that a drift in the machine's speed hits both alike."""
    rel = Released(Path(args.released), x, m, xy, args.sample_spots)
    ours = Ours(x, m, xy, args.sample_spots, args.n_samples)
    rel_train = []
    our_train = ours.train(args.warmup + args.steps, lambda: rel_train.append(rel.train_step()))
    rel_train, our_train = rel_train[args.warmup + 1:], our_train[args.warmup:]
    rel.evals(1)  # warm-up
    ours.evals(1)
    rel_eval, our_eval = [], []
    for _ in range(args.eval_reps):
        rel_eval.append(rel.evals(args.eval_steps) / args.eval_steps * 1000.0 / args.sample_spots)
        our_eval.append(ours.evals(args.eval_steps) / args.eval_steps * 1000.0 / (args.sample_spots * args.n_samples))
    return [{"code": "released", "train_s_per_step": float(np.median(rel_train)), "batch_size": rel.bs, "T": rel.T,
             "eval_s_per_1000_spot_samples": float(np.median(rel_eval))},
            {"code": "ours (official preset)", "train_s_per_step": float(np.median(our_train)),
             "batch_size": ours.p["batch_size"], "T": ours.p["num_steps"],
             "eval_s_per_1000_spot_samples": float(np.median(our_eval))}]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--released", required=True, help="a checkout of github.com/wenwenmin/stMCDI")
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--genes", type=int, default=200, help="1000 needs more than 23 GB of RAM in the released model")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps of each code (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--eval-steps", type=int, default=3)
    ap.add_argument("--eval-reps", type=int, default=3, help="repeats of the sampling timing (median)")
    ap.add_argument("--sample-spots", type=int, default=64)
    ap.add_argument("--n-samples", type=int, default=10, help="samples per batched evaluation (ours)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "released_vs_ours_stmcdi_cpu.csv"))
    args = ap.parse_args(argv)
    x, xy, m = synthetic(args.spots, args.genes)
    rows = measure(args, x, m, xy)
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
