"""stMCDI sampling study (issue 10): held-out accuracy and cost of DDIM with a grid of steps x
samples x aggregate, against the full ancestral (DDPM) chain, on one trained model per task.

Not a test. Two steps, so that the GPU side needs only numpy/torch/torch_geometric/yaml:

    # here (needs anndata): the truth of a workflow task, written next to nothing a method reads
    PYTHONPATH=. python benchmarks/stmcdi_sampling.py truth results/demo/demo random-0.1-all 0 .bench/demo
    # anywhere: train once with a preset, sample every chain, score, write CSV rows
    PYTHONPATH=. python benchmarks/stmcdi_sampling.py run .bench/demo --preset quick --device cuda \
        --out benchmarks/results/stmcdi_sampling.csv
    # the figure and the knee (cheapest setting within --tol PCC of the best) per task
    PYTHONPATH=. python benchmarks/stmcdi_sampling.py figure benchmarks/results/stmcdi_sampling.csv

For each chain (DDIM with S steps, S <= T; the DDPM chain of T steps) ``max_samples`` samples are
drawn once for the scored spots; the first n of them give the n-sample median and mean (samples are
i.i.d., so nested subsets are fair). Time per 1000 spots is measured for the whole chain at
``max_samples`` and scaled linearly to n samples (the chain's cost is linear in samples once a chunk
fills the device; on a GPU small n is cheaper per sample than the linear figure, never dearer).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stbench.results.metrics.imputation import flat_metrics  # noqa: E402
from stbench.run.registry import get_method  # noqa: E402
from stbench.data.task import load_task  # noqa: E402

STEPS = (10, 25, 50, 100, 200)
SAMPLES = (1, 5, 10, 25, 100)


def write_truth(dataset_dir: Path, mask: str, seed: int, out: Path) -> None:
    """Copy the workflow's task file and write the held-out truth beside it (evaluation side only)."""
    from stbench.data.loaders.h5ad import read_h5ad
    from stbench.data.masks import load_mask
    from stbench.data.task import truth_on_scale

    task_file = dataset_dir / "tasks" / mask / f"seed{seed}.npz"
    pre = read_h5ad(dataset_dir / "preprocessed.h5ad")
    held, _, _ = load_mask(dataset_dir / "masks" / mask / f"seed{seed}.npz")
    task = load_task(task_file)
    out.mkdir(parents=True, exist_ok=True)
    (out / "task.npz").write_bytes(task_file.read_bytes())
    np.savez_compressed(out / "truth.npz", truth=truth_on_scale(pre, task).astype(np.float32), held=held)
    print(f"wrote {out}/task.npz and {out}/truth.npz ({int(held.sum())} held-out entries)")


def _baselines(task):
    """The harness's per-gene Mean and KNN (methods/mean, methods/knn) on the same task."""
    mean = get_method("mean").load_impute()(task, axis="gene")
    knn = get_method("knn").load_impute()(task, **get_method("knn").params())
    return np.asarray(mean), np.asarray(knn)


class Setup:
    """One task, standardised as stMCDI's ``impute.run`` does, with an untrained model on the device."""

    def __init__(self, bundle: Path, preset: str, device: str, seed: int, threads: int | None, overrides: dict):
        method = get_method("stmcdi")
        imp = method.load_module("impute")
        self.train_mod = method.load_module("train")
        model_mod = method.load_module("model")
        p = method.params(preset=preset, overrides=overrides)
        p.update(checkpoints=0, progress=False)
        self.p, self.preset, self.bundle, self.seed = p, preset, bundle, seed
        self.task = task = load_task(bundle / "task.npz", device=device)
        with np.load(bundle / "truth.npz") as z:
            self.truth, self.held = z["truth"], z["held"]
        self.dev = dev = task.torch_device()
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        from stbench.kit.diffusion.common import Prepared

        d = Prepared(task, p["standardise"])  # as impute.run standardises
        self.g, self.train, self.mu, self.sd, m, xs = d.x.shape[1], d.train, d.mu, d.sd, d.m, d.xs
        self.clip = 1.5 * float(np.abs(xs).max()) + 1.0
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.X, self.O = torch.as_tensor(xs, device=dev), torch.as_tensor(m, device=dev)
        self.ei = imp.knn_edge_index(task.coords, int(p["k_neighbors"])).to(dev)
        self.model = model_mod.STMCDI(self.g, p).to(dev)
        self.amp = bool(p["amp"]) and dev.type == "cuda"

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def fit(self, on_step=None) -> float:
        t0 = time.perf_counter()
        idx = torch.as_tensor(np.flatnonzero(self.train), device=self.dev)
        self.train_mod.fit(self.model, self.X, self.O, self.ei, idx, self.p, self.gen, None, seed=self.seed,
                           on_step=on_step)
        self.sync()
        return time.perf_counter() - t0

    def rows(self, spots: int | None) -> np.ndarray:
        rows = np.flatnonzero(self.held.any(1))
        if spots and spots < rows.size:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, spots, replace=False))
        return rows

    @torch.no_grad()
    def draw(self, rows: np.ndarray, n_samples: int, sampler: str, steps: int, gen=None) -> np.ndarray:
        """(n_samples, len(rows), genes) samples on the standardised scale, in device-sized chunks."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            Z = self.model.encode(self.X * self.O, self.ei)
        Z = None if Z is None else Z.float()
        chunk = max(1, (2 ** 22 if self.dev.type == "cuda" else 2 ** 19) // max(1, n_samples * self.g))
        out = np.empty((n_samples, rows.size, self.g), np.float32)
        for s0 in range(0, rows.size, chunk):
            idx = torch.as_tensor(rows[s0:s0 + chunk], device=self.dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                smp = self.model.sample(self.X[idx], self.O[idx], None if Z is None else Z[idx], n_samples, sampler,
                                        steps, float(self.p["eta"]), gen if gen is not None else self.gen,
                                        clip=self.clip)
            out[:, s0:s0 + chunk] = smp.float().cpu().numpy()
        return out

    def score(self, rows: np.ndarray, est: np.ndarray) -> dict:
        """Flat metrics over the held-out entries of ``rows`` of an estimate on the standardised scale."""
        hr = self.held[rows]
        return flat_metrics(self.truth[rows][hr], (est * self.sd + self.mu)[hr])[0]

    def baselines(self, rows: np.ndarray) -> dict:
        mean_b, knn_b = _baselines(self.task)
        hr = self.held[rows]
        return {"mean_pcc": flat_metrics(self.truth[rows][hr], mean_b[rows][hr])[0]["pcc"],
                "knn_pcc": flat_metrics(self.truth[rows][hr], knn_b[rows][hr])[0]["pcc"]}


def study(bundle: Path, preset: str, device: str, max_samples: int, spots: int | None, steps, seed: int,
          threads: int | None, overrides: dict) -> list[dict]:
    S = Setup(bundle, preset, device, seed, threads, overrides)
    train_s = S.fit()
    rows = S.rows(spots)
    base = S.baselines(rows)
    T = int(S.p["num_steps"])
    out = []
    for sampler, k in [("ddim", s) for s in steps if s <= T] + [("ddpm", T)]:
        S.sync()
        t0 = time.perf_counter()
        samples = S.draw(rows, max_samples, sampler, k)
        sec = time.perf_counter() - t0
        per_1000 = sec / rows.size * 1000
        for ns in [s for s in SAMPLES if s <= max_samples]:
            for agg in ("median", "mean"):
                est = np.median(samples[:ns], 0) if agg == "median" else samples[:ns].mean(0)
                met = S.score(rows, est)
                out.append({"task": bundle.name, "preset": preset, "device": _device_name(S.dev),
                            "n_spots_scored": rows.size, "n_genes": S.g, "train_seconds": round(train_s, 2),
                            "sampler": sampler, "steps": k, "n_samples": ns, "aggregate": agg,
                            "pcc": round(met["pcc"], 5), "rmse": round(met["rmse"], 5),
                            "s_per_1000_spots": round(per_1000 * ns / max_samples, 4),
                            **{k2: round(v, 5) for k2, v in base.items()},
                            "torch": torch.__version__, "host": platform.node()})
        print(f"{bundle.name} {sampler}-{k}: {sec:.1f}s for {rows.size} spots x {max_samples} samples; "
              f"PCC(median, all samples) {out[-2]['pcc']:.4f}", flush=True)
    print(f"{bundle.name}: trained {S.p['epochs']} epochs in {train_s:.1f}s; Mean PCC {base['mean_pcc']:.4f}, "
          f"KNN PCC {base['knn_pcc']:.4f}", flush=True)
    return out


def _device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def learning_curve(bundle: Path, preset: str, device: str, at: list[int], spots: int, n_samples: int, steps: int,
                   seed: int, overrides: dict, label: str) -> list[dict]:
    """Held-out PCC of the EMA weights after ``at`` optimiser steps of one training run (DDIM, mean of
    ``n_samples``); training stops after max(at) steps, the schedule being that of ``overrides``."""
    S = Setup(bundle, preset, device, seed, None, {**overrides, "max_steps": max(at)})
    rows = S.rows(spots)
    out = []
    t0 = time.perf_counter()

    def on_step(step, model, ema):
        if step not in at:
            return
        backup = [q.detach().clone() for q in model.parameters()]
        if ema is not None:
            ema.copy_to(model)
        model.eval()
        est = S.draw(rows, n_samples, "ddim", steps, gen=torch.Generator(device=S.dev).manual_seed(seed)).mean(0)
        met = S.score(rows, est)
        with torch.no_grad():
            for q, b in zip(model.parameters(), backup):
                q.copy_(b)
        model.train()
        out.append({"task": bundle.name, "preset": preset, "schedule": label, "device": _device_name(S.dev),
                    "step": step, "epoch": round(step / max(1, -(-int(S.train.sum()) // int(S.p["batch_size"]))), 1),
                    "lr": S.p["lr"], "pcc": round(met["pcc"], 5), "rmse": round(met["rmse"], 5),
                    "seconds": round(time.perf_counter() - t0, 1), "n_spots_scored": rows.size})
        print(f"{bundle.name} {label} step {step}: PCC {met['pcc']:.4f} RMSE {met['rmse']:.4f} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)

    S.fit(on_step)
    return out


def knee(rows: list[dict], tol: float) -> dict:
    """The cheapest setting whose PCC is within ``tol`` of the best PCC."""
    best = max(float(r["pcc"]) for r in rows)
    ok = [r for r in rows if float(r["pcc"]) >= best - tol]
    return min(ok, key=lambda r: (float(r["s_per_1000_spots"]), -float(r["pcc"])))


def figure(csv_path: Path, out: Path, tol: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    groups = sorted({(r["task"], r["preset"], r["device"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    lines = []
    for ax, key in zip(axes[0], groups):
        sub = [r for r in rows if (r["task"], r["preset"], r["device"]) == key]
        for (sampler, steps) in sorted({(r["sampler"], int(r["steps"])) for r in sub}, key=lambda t: (t[0], t[1])):
            for agg, ls in (("median", "-"), ("mean", ":")):
                pts = sorted((float(r["s_per_1000_spots"]), float(r["pcc"])) for r in sub
                             if r["sampler"] == sampler and int(r["steps"]) == steps and r["aggregate"] == agg)
                ax.plot(*zip(*pts), ls, marker="o", ms=3,
                        label=f"{sampler.upper()}-{steps} {agg}" if ax is axes[0][0] or True else None)
        k = knee(sub, tol)
        ax.axhline(float(sub[0]["mean_pcc"]), color="grey", lw=0.8, ls="--")
        ax.axhline(float(sub[0]["knn_pcc"]), color="black", lw=0.8, ls="--")
        ax.plot(float(k["s_per_1000_spots"]), float(k["pcc"]), "r*", ms=14)
        ax.set_xscale("log")
        ax.set_xlabel("seconds per 1000 spots (linear in samples)")
        ax.set_ylabel("held-out PCC")
        ax.set_title(f"{key[0]}, preset {key[1]}\n{key[2]}", fontsize=9)
        lines.append(f"{key[0]} / {key[1]} / {key[2]}: knee {k['sampler']}-{k['steps']} x {k['n_samples']} "
                     f"samples, {k['aggregate']}: PCC {float(k['pcc']):.4f} (best "
                     f"{max(float(r['pcc']) for r in sub):.4f}), {float(k['s_per_1000_spots']):.2f} s/1000 spots; "
                     f"Mean {float(sub[0]['mean_pcc']):.4f}, KNN {float(sub[0]['knn_pcc']):.4f}")
    axes[0][-1].legend(fontsize=6, ncol=2, loc="lower right")
    fig.suptitle("stMCDI sampling study: grey dashed = per-gene Mean, black dashed = KNN, star = knee", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print("\n".join(lines))
    print(f"wrote {out}")


def _append(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)
    print(f"appended {len(rows)} rows to {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("truth")
    t.add_argument("dataset_dir", type=Path)
    t.add_argument("mask")
    t.add_argument("seed", type=int)
    t.add_argument("out", type=Path)
    r = sub.add_parser("run")
    r.add_argument("bundles", type=Path, nargs="+")
    r.add_argument("--preset", default="quick")
    r.add_argument("--device", default="auto")
    r.add_argument("--max-samples", type=int, default=100)
    r.add_argument("--spots", type=int, default=None, help="score a random subset of spots with held-out entries")
    r.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--set", nargs="*", default=[], help="parameter overrides key=value (YAML values)")
    r.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stmcdi_sampling.csv")
    c = sub.add_parser("curve", help="held-out PCC against training steps for one schedule")
    c.add_argument("bundle", type=Path)
    c.add_argument("--preset", default="paper")
    c.add_argument("--label", required=True, help="the schedule's name in the CSV")
    c.add_argument("--device", default="auto")
    c.add_argument("--at", type=int, nargs="+", required=True, help="optimiser steps at which to score")
    c.add_argument("--spots", type=int, default=300)
    c.add_argument("--samples", type=int, default=10)
    c.add_argument("--sample-steps", type=int, default=25)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--set", nargs="*", default=[], help="parameter overrides key=value (YAML values)")
    c.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stmcdi_learning_curve.csv")
    f = sub.add_parser("figure")
    f.add_argument("csv", type=Path)
    f.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stmcdi_sampling.png")
    f.add_argument("--tol", type=float, default=0.005)
    a = ap.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in getattr(a, "set", []))}
    if a.cmd == "truth":
        write_truth(a.dataset_dir, a.mask, a.seed, a.out)
    elif a.cmd == "curve":
        _append(a.out, learning_curve(a.bundle, a.preset, a.device, a.at, a.spots, a.samples, a.sample_steps, a.seed,
                                      overrides, a.label))
    elif a.cmd == "run":
        rows = []
        for b in a.bundles:
            rows += study(b, a.preset, a.device, a.max_samples, a.spots, a.steps, a.seed, a.threads, overrides)
        _append(a.out, rows)
    else:
        figure(a.csv, a.out, a.tol)


if __name__ == "__main__":
    main()
