#!/usr/bin/env bash
# Issue 10's unmeasured GPU figures in one short device call: the paper preset's training rate with the
# full-graph encoder (today's CUDA path) against the per-batch k-hop subgraph (the path before it), at
# two sizes, and the sampling rate; same machine, same call, so the ratio is a before/after.
#   bash benchmarks/gpu_throughput.sh        # on the GPU machine, from the repository root; $OUT for results
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
for path in full subgraph; do
  flag=""; [ "$path" = subgraph ] && flag="--subgraph"
  timeout 200 $PY benchmarks/bench_stmcdi.py --device cuda --preset paper --sizes 2000 6000 --steps 100 \
    --n-samples 100 $flag --out "$OUT/stmcdi_cuda_paper_$path.csv" 2>&1 | grep -v Warning | tail -3
done
$PY - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
rows = {p: list(csv.DictReader(open(f"{out}/stmcdi_cuda_paper_{p}.csv"))) for p in ("full", "subgraph")}
for f, s in zip(rows["full"], rows["subgraph"]):
    print(f"{f['n_spots']} spots: {float(f['train_steps_per_s']):.1f} steps/s full graph vs "
          f"{float(s['train_steps_per_s']):.1f} subgraph ({float(f['train_steps_per_s']) / float(s['train_steps_per_s']):.2f}x); "
          f"DDIM-50 x 100: {f['ddim_s_per_1000_spots']} s per 1000 spots")
PY
