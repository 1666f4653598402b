#!/usr/bin/env bash
# SCLD at the paper's settings on a GPU (issue 28), in one short device call: what one reference-transform job
# costs (benchmarks/scld_cost.py: per-step rates, both sampling chains, the job's extrapolated time), then SCLD's
# own evaluation at the paper preset on the demo reference (benchmarks/scld_quality.py, one split seed), beside
# resampling and the VAE. No data to carry: the demo reference is simulated. Outputs go to $OUT.
#   bash benchmarks/gpu_scld.sh            # on the GPU machine, from the repository root (~5-10 min, unmeasured)
# Then: put scld_cost.csv's job seconds into benchmarks/results/gpu_job_estimates.yaml (`scld`, gpu_factor 1,
# a measured row) and the quality table into stbench/data/reference_generators/README.md.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"

echo "== 1. one SCLD reference job at the paper preset: per-step rates and the job's time (demo reference, 10% kept)"
timeout 240 $PY benchmarks/scld_cost.py demo --preset paper --device cuda --train-steps 200 --out "$OUT/scld_cost.csv" 2>&1 | tail -22

echo "== 2. SCLD's synthesis quality at the paper preset (demo reference, split seed 0), beside resample and the VAE"
timeout 330 $PY benchmarks/scld_quality.py demo --preset paper --device cuda --seeds 0 --out "$OUT/scld_quality_demo_paper.csv" 2>&1 \
  | grep -v Warning | tail -12
ls -la "$OUT"
