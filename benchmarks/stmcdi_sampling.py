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

from stbench.metrics.imputation import flat_metrics  # noqa: E402
from stbench.registry import get_method  # noqa: E402
from stbench.task import load_task  # noqa: E402

STEPS = (10, 25, 50, 100, 200)
SAMPLES = (1, 5, 10, 25, 100)
FIELDS = ["task", "preset", "device", "n_spots_scored", "n_genes", "train_seconds", "sampler", "steps", "n_samples",
          "aggregate", "pcc", "rmse", "s_per_1000_spots", "mean_pcc", "knn_pcc", "torch", "host"]


def write_truth(dataset_dir: Path, mask: str, seed: int, out: Path) -> None:
    """Copy the workflow's task file and write the held-out truth beside it (evaluation side only)."""
    from stbench.loaders.h5ad import read_h5ad
    from stbench.masks import load_mask
    from stbench.task import truth_on_scale

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


def study(bundle: Path, preset: str, device: str, max_samples: int, spots: int | None, steps, seed: int,
          threads: int | None, overrides: dict) -> list[dict]:
    method = get_method("stmcdi")
    imp = method.load_module("impute")
    train_mod = method.load_module("train")
    model_mod = method.load_module("model")
    p = method.params(preset=preset, overrides=overrides)
    p.update(checkpoints=0, progress=False)
    task = load_task(bundle / "task.npz", device=device)
    with np.load(bundle / "truth.npz") as z:
        truth, held = z["truth"], z["held"]
    dev = task.torch_device()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x = np.array(task.observed, np.float32)
    m = np.array(task.observed_mask, bool)
    n, g = x.shape
    train = np.asarray(task.train_spots, bool)
    train = train if train.any() else np.ones(n, bool)
    mu, sd = imp.standardise(x, m, train) if p["standardise"] else (np.zeros(g, np.float32), np.ones(g, np.float32))
    xs = np.where(m, (np.nan_to_num(x) - mu) / sd, 0.0).astype(np.float32)
    gen = torch.Generator(device=dev).manual_seed(seed)
    X, O = torch.as_tensor(xs, device=dev), torch.as_tensor(m, device=dev)
    ei = imp.knn_edge_index(task.coords, int(p["k_neighbors"])).to(dev)
    model = model_mod.STMCDI(g, p).to(dev)
    t0 = time.perf_counter()
    hist = train_mod.fit(model, X, O, ei, torch.as_tensor(np.flatnonzero(train), device=dev), p, gen, None, seed=seed)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    amp = bool(p["amp"]) and dev.type == "cuda"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        Z = model.encode(X * O, ei)
        Z = None if Z is None else Z.float()
    rows = np.flatnonzero(held.any(1))
    if spots and spots < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, spots, replace=False))
    hr = held[rows]
    mean_b, knn_b = _baselines(task)
    base = {"mean_pcc": flat_metrics(truth[rows][hr], mean_b[rows][hr])[0]["pcc"],
            "knn_pcc": flat_metrics(truth[rows][hr], knn_b[rows][hr])[0]["pcc"]}
    clip = 1.5 * float(np.abs(xs).max()) + 1.0
    T = int(p["num_steps"])
    chains = [("ddim", s) for s in steps if s <= T] + [("ddpm", T)]
    chunk = max(1, (2 ** 22 if dev.type == "cuda" else 2 ** 19) // max(1, max_samples * g))
    out = []
    for sampler, k in chains:
        samples = np.empty((max_samples, rows.size, g), np.float32)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s0 in range(0, rows.size, chunk):
            idx = torch.as_tensor(rows[s0:s0 + chunk], device=dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                smp = model.sample(X[idx], O[idx], None if Z is None else Z[idx], max_samples, sampler, k,
                                   float(p["eta"]), gen, clip=clip)
            samples[:, s0:s0 + chunk] = smp.float().cpu().numpy()
        sec = time.perf_counter() - t0
        per_1000 = sec / rows.size * 1000
        for ns in [s for s in SAMPLES if s <= max_samples]:
            for agg in ("median", "mean"):
                est = np.median(samples[:ns], 0) if agg == "median" else samples[:ns].mean(0)
                pred = est * sd + mu
                met = flat_metrics(truth[rows][hr], pred[hr])[0]
                out.append({"task": bundle.name, "preset": preset, "device": _device_name(dev),
                            "n_spots_scored": rows.size, "n_genes": g, "train_seconds": round(train_s, 2),
                            "sampler": sampler, "steps": k, "n_samples": ns, "aggregate": agg,
                            "pcc": round(met["pcc"], 5), "rmse": round(met["rmse"], 5),
                            "s_per_1000_spots": round(per_1000 * ns / max_samples, 4),
                            **{k2: round(v, 5) for k2, v in base.items()},
                            "torch": torch.__version__, "host": platform.node()})
        print(f"{bundle.name} {sampler}-{k}: {sec:.1f}s for {rows.size} spots x {max_samples} samples; "
              f"PCC(median, all samples) {out[-2]['pcc']:.4f}", flush=True)
    print(f"{bundle.name}: trained {hist['steps']} steps in {train_s:.1f}s; Mean PCC {base['mean_pcc']:.4f}, "
          f"KNN PCC {base['knn_pcc']:.4f}", flush=True)
    return out


def _device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


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
    f = sub.add_parser("figure")
    f.add_argument("csv", type=Path)
    f.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stmcdi_sampling.png")
    f.add_argument("--tol", type=float, default=0.005)
    a = ap.parse_args(argv)
    if a.cmd == "truth":
        write_truth(a.dataset_dir, a.mask, a.seed, a.out)
    elif a.cmd == "run":
        import yaml

        overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
        rows = []
        for b in a.bundles:
            rows += study(b, a.preset, a.device, a.max_samples, a.spots, a.steps, a.seed, a.threads, overrides)
        new = not a.out.exists()
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with a.out.open("a", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS)
            if new:
                w.writeheader()
            w.writerows(rows)
        print(f"appended {len(rows)} rows to {a.out}")
    else:
        figure(a.csv, a.out, a.tol)


if __name__ == "__main__":
    main()
