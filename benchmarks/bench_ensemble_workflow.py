"""The ensemble lever through the workflow's own path (not a test): the steps that `ensemble: true` runs.

One sandboxed ensemble job (``stbench.steps.ensemble_step``) trains K stMCDI variants into their checkpoint
folders; two members' impute jobs (``impute_step``) then find their checkpoints and only sample; the same two
variants run as separate impute jobs (training included). Reports each job's wall time as the parent measured
it (sandbox start-up, CUDA context and checkpoint writes included), the training seconds the children report,
and the largest |difference| between the two paths' imputations on this device. Writes one CSV
(``ensemble_workflow_<device>.csv``): a check of the workflow path, not the estimate's lever factor (that is the
steady-state rate of ``bench_stmcdi_levers.py``; a short run here is dominated by start-up).

    PYTHONPATH=. python benchmarks/bench_ensemble_workflow.py --device cuda --out $OUT/ensemble_workflow_cuda.csv
    PYTHONPATH=. python benchmarks/bench_ensemble_workflow.py --device cpu --preset test --spots 64 --genes 32 --steps 8 --members 3
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stmcdi import METHOD, Task, synthetic  # noqa: E402
from bench_stmcdi_levers import MEMBERS  # noqa: E402

from stbench.steps import ensemble_step, impute_step  # noqa: E402
from stbench.data.task import save_task  # noqa: E402

NAMES = ["default", "mask_spot", "mask_gene", "no_or_mask", "no_lr_mask", "no_mask", "ratio_0.1", "ratio_0.2",
         "ratio_0.4", "ratio_0.8", "ratio_0.9"]  # config.yaml's names of MEMBERS


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--genes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--members", type=int, default=11)
    ap.add_argument("--isolation", default="auto")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    over = {"max_steps": a.steps, "checkpoints": 1, "n_samples": 4, "sample_steps": 5, "progress_interval": 10}
    members = {NAMES[i]: METHOD.params(a.preset, {**MEMBERS[i], **over}) for i in range(a.members)}
    work = Path(tempfile.mkdtemp(prefix="ens-bench-"))
    x, xy, m = synthetic(a.spots, a.genes)
    task_file = work / "task.npz"
    save_task(task_file, Task(x, m, xy, "cpu", work))
    kw = {"device": a.device, "threads": 4, "isolation": a.isolation, "gpu_slots": 0}
    dirs = {v: work / "ckpt" / v for v in members}
    ens = ensemble_step(task_file, "stmcdi", members, dirs, work / "ensemble.json", log_file=work / "ensemble.log", **kw)
    print(f"ensemble job of {a.members}: {ens['status']} {ens.get('error') or ''} wall {ens['wall_time_s']:.1f} s, "
          f"training {ens.get('method_info', {}).get('train_seconds')} s, device {ens['device']}", flush=True)
    rows = []
    for v in list(members)[:2]:
        res = {}
        for path, ckpt in (("ensemble member", dirs[v]), ("separate", work / "sep" / v)):
            out = work / path.replace(" ", "_") / v
            out.mkdir(parents=True)
            rec = impute_step(task_file, "stmcdi", v, members[v], out, checkpoint_dir=ckpt, log_file=out / "log", **kw)
            tr = (rec.get("method_info") or {}).get("training") or {}
            with np.load(out / "imputed.npz") as z:
                res[path] = z["imputed"] if "imputed" in z.files else None
            rows.append([v, path, rec["status"], f"{rec['wall_time_s']:.2f}", tr.get("seconds"), tr.get("steps"),
                         tr.get("resumed_from")])
            print(f"{v} {path} job: {rec['status']} wall {rec['wall_time_s']:.1f} s, trained "
                  f"{tr.get('steps', 0) - tr.get('resumed_from', 0)} steps in {tr.get('seconds')} s", flush=True)
        ok = all(r is not None for r in res.values())
        diff = float(np.abs(res["ensemble member"] - res["separate"]).max()) if ok else float("nan")
        rows[-1].append(f"{diff:.3e}")
        rows[-2].append(f"{diff:.3e}")
        print(f"{v}: max |ensemble path - separate path| = {diff:.2e}", flush=True)
    out = Path(a.out or Path(__file__).resolve().parent / "results" / f"ensemble_workflow_{a.device}.csv")
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device", "preset", "n_spots", "n_genes", "steps", "members", "ensemble_status", "ensemble_wall_s",
                    "ensemble_train_s", "variant", "path", "status", "job_wall_s", "job_train_s", "steps_total",
                    "resumed_from", "max_abs_diff"])
        for r in rows:
            w.writerow([ens["device"], a.preset, a.spots, a.genes, a.steps, a.members, ens["status"],
                        f"{ens['wall_time_s']:.2f}", (ens.get("method_info") or {}).get("train_seconds"), *r])
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
