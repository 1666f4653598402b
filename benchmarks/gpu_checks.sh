#!/usr/bin/env bash
# The GPU checks of stMCDI in one short session (issue 10): CUDA tests, throughput rates, sampling study.
# Inputs: .bench/<task>/{task,truth}.npz written here by `stmcdi_sampling.py truth`; optional .whl/ with
# wheels missing on the GPU machine (jsonschema and its deps). Outputs go to $OUT (default /tmp/gpu_out).
#   bash benchmarks/gpu_checks.sh            # on the GPU machine, from the repository root
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=.:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
$PY -c "import torch, torch_geometric; print('torch', torch.__version__, 'pyg', torch_geometric.__version__)" | tee -a "$OUT/device.txt"

echo "== 1. stMCDI tests on CUDA (resume from a checkpoint, determinism)"
timeout 150 $PY -m pytest -q -p no:cacheprovider -x tests/test_stmcdi.py -k "cuda or resume or deterministic" 2>&1 | tail -15

echo "== 2. throughput (training steps/s, sampling s per 1000 spots)"
for preset in paper quick; do
  timeout 120 $PY benchmarks/bench_stmcdi.py --device cuda --preset "$preset" --sizes 2000 --steps 50 \
    --n-samples 100 --out "$OUT/stmcdi_cuda_$preset.csv" 2>&1 | tail -2
done

echo "== 2b. where a paper-preset training step spends its time"
timeout 90 $PY benchmarks/profile_stmcdi.py --device cuda --preset paper --spots 2000 --steps 20 2>&1 | tail -32 > "$OUT/profile_paper.txt"
tail -3 "$OUT/profile_paper.txt"

echo "== 3. sampling study, quick preset, demo and seqFISH field 43 (all spots, 100 samples)"
timeout 330 $PY benchmarks/stmcdi_sampling.py run .bench/demo .bench/seqfish_field43 --preset quick --device cuda \
  --max-samples 100 --out "$OUT/stmcdi_sampling.csv" 2>&1 | grep -v Warning
echo "== 4. the quick preset's attention width on accuracy: two 8-wide heads instead of one 16-wide"
timeout 120 $PY benchmarks/stmcdi_sampling.py run .bench/demo --preset quick --device cuda --max-samples 100 --steps 25 \
  --set heads=2 --out "$OUT/stmcdi_sampling_heads2.csv" 2>&1 | grep -v Warning
ls -la "$OUT"
