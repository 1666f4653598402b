#!/usr/bin/env bash
# The paper run's GPU levers in one short device call (issue 21): stMCDI `paper` training throughput at
# 2000 spots x 1000 genes alone, as batched ensembles of 6 and 11 variants, and as 2/4/6 processes sharing
# the device (GPU slots); plus the ensemble's equality with separate runs on the device; then the workflow's own
# ensemble path (`ensemble: true`): one sandboxed ensemble job of 11 variants, two members' sampling-only impute
# jobs and the same two as separate jobs, their wall times and equality. About 7 minutes, capped at 580 s.
#   bash benchmarks/gpu_levers.sh [all|levers|workflow]   # on the GPU machine, from the repository root; results under $OUT
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PY=${PY:-python3}
PART=${1:-all}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
if [ "$PART" != workflow ]; then
  timeout 380 $PY benchmarks/bench_stmcdi_levers.py --device cuda --preset paper --spots 2000 --genes 1000 \
    --steps 150 --members 6 11 --jobs 2 4 6 --startup-s 40 --out "$OUT/stmcdi_levers_cuda.csv" 2>&1 | grep -v Warning
  cat "$OUT/stmcdi_levers_cuda.csv"
fi
if [ "$PART" != levers ]; then
  timeout 200 $PY benchmarks/bench_ensemble_workflow.py --device cuda --preset paper --spots 2000 --genes 1000 \
    --steps 150 --members 11 --isolation auto --out "$OUT/ensemble_workflow_cuda.csv" 2>&1 | grep -v Warning
  cat "$OUT/ensemble_workflow_cuda.csv"
fi
