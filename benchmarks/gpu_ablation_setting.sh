#!/usr/bin/env bash
# Which short training makes the demo's ablation setting learn (stMCDI quick, demo section): held-out
# PCC after 5-20 epochs at 2-4 samples of 8 DDIM steps, two learning rates. Inputs as gpu_checks.sh.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=.:/tmp/site
fi
for lr in 1.0e-3 3.0e-3; do
  for ep in 5 10 15 20; do
    timeout 60 python3 benchmarks/stmcdi_sampling.py run .bench/demo --preset quick --device cuda --max-samples 4 \
      --steps 8 --set epochs=$ep lr=$lr --out "$OUT/ablation_setting.csv" 2>&1 | grep -E "ddim-8|trained"
  done
done
