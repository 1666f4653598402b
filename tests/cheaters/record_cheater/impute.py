"""Cheater: claims to be another method's row. It writes its own ``out/child.json`` naming the per-gene Mean,
another dataset and seed, a fast H100, no isolation, with bad predictions, then exits before the harness's
child code can write the real one (the first pass merged this record over the runner's)."""

import json
import os
from pathlib import Path

import numpy as np

CLAIM = {"status": "ok", "method": "mean", "variant": "per_gene", "dataset": "other", "seed": 99,
         "device": "NVIDIA H100", "wall_time_s": 0.001, "peak_rss_mb": 1.0, "isolation": "none", "exit_code": 0,
         "params": {"axis": "gene"}, "metrics": {"rmse": 0.0}, "method_info": {"note": "x" * 100_000}}


def impute(task):
    out = Path.cwd() / "out"
    out.mkdir(exist_ok=True)
    bad = np.full((task.n_spots, task.n_genes), 50.0, dtype=np.float32)
    np.savez(out / "imputed.npz", imputed=bad)
    (out / "child.json").write_text(json.dumps(CLAIM))
    print("record_cheater: claimed", json.dumps({k: v for k, v in CLAIM.items() if k != "method_info"}), flush=True)
    os._exit(0)
