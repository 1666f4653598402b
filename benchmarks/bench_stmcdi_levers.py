"""The paper run's GPU levers, measured on one device (not a test): stMCDI training throughput of

* ``separate``: one training process alone (today's rate, the baseline);
* ``slots``: J training processes at once on the same device (GPU slots, stbench/run/gpu_slots.py);
* ``ensemble``: K variants trained as one batched ensemble (methods/stmcdi/ensemble.py);

each as optimiser steps per second *per fit*, so ``speedup`` is the lever's factor on the training time of
the grid. Also checks on the device that the ensemble equals separate runs (max |difference| of the
imputation of a short fit). Writes one CSV that ``stbench estimate`` reads (``stmcdi_levers_*.csv``).

    PYTHONPATH=. python benchmarks/bench_stmcdi_levers.py --device cuda --out $OUT/stmcdi_levers_cuda.csv
    PYTHONPATH=. python benchmarks/bench_stmcdi_levers.py --device cpu --steps 4 --spots 200 --genes 100 --jobs 2 --members 2
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stmcdi import METHOD, Task, synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the 11 variants of config.yaml that share parameter shapes (the default, Table 2's masks, Figure 3's ratios)
MEMBERS = [{}, {"train_mask_strategy": "spot"}, {"train_mask_strategy": "gene"}, {"or_mask": False},
           {"lr_mask": False}, {"or_mask": False, "lr_mask": False}, {"train_mask_ratio": 0.1},
           {"train_mask_ratio": 0.2}, {"train_mask_ratio": 0.4}, {"train_mask_ratio": 0.8}, {"train_mask_ratio": 0.9}]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def train_rate(dev, n, g, steps, members, preset) -> float:
    """Steps per second of one fit (members == 1) or of one ensemble of ``members`` fits."""
    imp, ens, train = (METHOD.load_module(m) for m in ("impute", "ensemble", "train"))
    x, xy, m = synthetic(n, g)
    task = Task(x, m, xy, str(dev), "/tmp")
    ps = [METHOD.params(preset, {**o, "max_steps": steps, "checkpoints": 0, "progress": False}) for o in MEMBERS[:members]]
    d = imp.Prepared(task, True)
    X = torch.as_tensor(d.xs, device=dev)
    O = torch.as_tensor(d.m, device=dev)
    ei = imp.knn_edge_index(xy, int(ps[0]["k_neighbors"])).to(dev)
    idx = torch.as_tensor(np.flatnonzero(d.train), device=dev)
    torch.manual_seed(0)
    models = [imp.STMCDI(g, p).to(dev) for p in ps]
    gens = [torch.Generator(device=dev).manual_seed(0) for _ in ps]
    sync(dev)
    t0 = time.perf_counter()
    if members == 1:
        train.fit(models[0], X, O, ei, idx, ps[0], gens[0], None)
    else:
        ens.fit_ensemble(models, X, O, ei, idx, ps, gens)
    sync(dev)
    return steps / (time.perf_counter() - t0)


def equality(dev, preset) -> float:
    """Max |ensemble - separate| of the imputation of a short 3-member fit on this device."""
    imp, ens = METHOD.load_module("impute"), METHOD.load_module("ensemble")
    x, xy, m = synthetic(400, 200)
    ps = {f"v{i}": METHOD.params(preset, {**o, "max_steps": 20, "checkpoints": 0, "progress": False, "n_samples": 4,
                                          "sample_steps": 5}) for i, o in enumerate(MEMBERS[:3])}
    got = ens.run_ensemble(Task(x, m, xy, str(dev), "/tmp"), ps)
    return max(float(np.abs(got[v]["imputed"] - imp.run(Task(x, m, xy, str(dev), "/tmp"), **p)["imputed"]).max())
               for v, p in ps.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--genes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--jobs", type=int, nargs="*", default=[2, 4, 6])
    ap.add_argument("--members", type=int, nargs="*", default=[6, 11])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--startup-s", type=float, default=45.0, help="slots: the processes start training together this long after launch")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.child:  # one process of the slots measurement: warm up, wait for the others, print its own rate
        train_rate(dev, a.spots, a.genes, 5, 1, a.preset)
        time.sleep(max(0.0, a.start_at - time.time()))
        print(train_rate(dev, a.spots, a.genes, a.steps, 1, a.preset))
        return
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    train_rate(dev, a.spots, a.genes, 5, 1, a.preset)  # warm-up (CUDA context, kernels)
    base = train_rate(dev, a.spots, a.genes, a.steps, 1, a.preset)
    rows = [("separate", 1, base)]  # (lever, k, fit-steps per second of all k fits together)
    for k in a.members:
        r = train_rate(dev, a.spots, a.genes, a.steps, k, a.preset) * k  # k fits advance per ensemble step
        rows.append(("ensemble", k, r))
        print(f"ensemble of {k}: {r / k:.2f} ensemble steps/s = {r:.1f} fit-steps/s ({r / base:.2f}x)", flush=True)
    for j in a.jobs:
        cmd = [sys.executable, __file__, "--child", "--device", a.device, "--preset", a.preset, "--spots", str(a.spots),
               "--genes", str(a.genes), "--steps", str(a.steps), "--start-at", str(time.time() + a.startup_s)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(j)]
        rates = [float(p.communicate()[0].split()[-1]) for p in procs]
        rows.append(("slots", j, sum(rates)))
        print(f"{j} processes: {sum(rates):.1f} fit-steps/s in all ({sum(rates) / base:.2f}x; wall "
              f"{time.perf_counter() - t0:.0f} s incl. start-up)", flush=True)
    diff = equality(dev, a.preset)
    print(f"separate: {base:.1f} steps/s; ensemble vs separate on {name}: max |diff| {diff:.2e}")
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"stmcdi_levers_{a.device}.csv")
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device", "preset", "n_spots", "n_genes", "lever", "k", "fit_steps_per_s_total", "speedup",
                    "equality_max_abs_diff", "torch"])
        for lever, k, r in rows:
            w.writerow([name, a.preset, a.spots, a.genes, lever, k, f"{r:.3f}", f"{r / base:.3f}", f"{diff:.3e}",
                        torch.__version__])


if __name__ == "__main__":
    main()
