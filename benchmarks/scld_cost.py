"""What one SCLD reference-transform job costs at a preset (issue 28): the protocol's job (a reference thinned to
10% per type, filled back up by SCLD), with each training loop cut to ``--train-steps`` steps and timed per
step, the sampling timed whole (its cost does not depend on the training steps), or with ``--chain-steps k`` a
k-step chain scaled to the preset's (each step the same two guided denoiser calls). The job's time at the
preset is extrapolated: seconds per step x the preset's steps, for the autoencoder, the latent diffusion
model and the scorer, plus the two sampling chains (the scorer's pool and the candidates of the 80% cut).

    .venv/bin/python benchmarks/scld_cost.py demo --preset paper --device cuda
    .venv/bin/python benchmarks/scld_cost.py osmfish --reference dataset2_seq_33.h5ad --preset paper --device cpu

Appends one row per run to ``benchmarks/results/scld_cost.csv`` (device, preset, reference size, per-step
seconds, the sampling seconds, the extrapolated job seconds). `stbench estimate` prices a config's SCLD jobs
from ``gpu_job_estimates.yaml``'s ``scld`` entry: replace it with a GPU row of this file when one is measured.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results" / "scld_cost.csv"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["demo", "osmfish"])
    ap.add_argument("--reference", help="osmFISH's scRNA-seq reference .h5ad")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=50, help="steps timed in each training loop")
    ap.add_argument("--chain-steps", type=int, default=0,
                    help="time the sampling chains with this many steps (DDIM: the same denoiser calls per step) and "
                         "scale to the preset's chain; 0: the preset's own chain")
    ap.add_argument("--subsample", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    import torch

    import stbench.data.reference_generators.scld as S
    from stbench.data.reference_generators import generator_params
    from stbench.data.reference_generators.thinning import ReferenceTransform, thin
    from stbench.kit.reference_protocol import reference_counts
    from benchmarks.scld_quality import load

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    loops, samples = [], []
    orig_batches, orig_sample = S._batches, S.SCLD.sample

    def timed_batches(n, size, steps, gen):
        """Each training loop: its steps and seconds (the first step, with its allocations, not counted)."""
        it = orig_batches(n, size, steps, gen)
        yield next(it)
        sync()
        t0, k = time.perf_counter(), 0
        for idx in it:
            yield idx
            k += 1
        sync()
        loops.append((k, time.perf_counter() - t0))

    def timed_sample(self, labels, guidance=None):
        sync()
        t0 = time.perf_counter()
        out = orig_sample(self, labels, guidance)
        sync()
        samples.append((len(labels), time.perf_counter() - t0))
        return out

    S._batches, S.SCLD.sample = timed_batches, timed_sample
    ref, by = load(a.dataset, a.reference)
    thinned, per_type = thin(ref, ReferenceTransform(subsample=a.subsample, by=by, seed=0), 0)
    want = {t: int(b - k) for t, (b, k) in per_type.items() if b > k}   # filled back up, as `augment: scld`
    full = generator_params("scld", a.preset)
    p = dict(full, ae_steps=a.train_steps + 1, steps=a.train_steps + 1, scorer_steps=a.train_steps + 1)
    chain = int(full["num_steps"] if full["sampler"] == "ddpm" else full["ddim_steps"])
    if a.chain_steps:
        p.update(sampler="ddim", ddim_steps=a.chain_steps)
    model = S.SCLD(p, seed=0, device=a.device).fit(reference_counts(thinned), thinned.obs[by].astype(str).to_numpy())
    labels = np.concatenate([[t] * n for t, n in want.items()])
    t0 = time.perf_counter()
    model.generate_counts(labels)
    gen_s = time.perf_counter() - t0
    (ae_k, ae_s), (dm_k, dm_s), (sc_k, sc_s) = loops
    sample_s = sum(s for _, s in samples) * (chain / a.chain_steps if a.chain_steps else 1.0)
    per = {"ae": ae_s / ae_k, "dm": dm_s / dm_k, "scorer": sc_s / sc_k}
    job = per["ae"] * full["ae_steps"] + per["dm"] * full["steps"] + per["scorer"] * full["scorer_steps"] + sample_s
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({a.threads} thread{'s' * (a.threads > 1)})"
    row = {"device": name, "preset": a.preset, "dataset": a.dataset, "cells_kept": int(thinned.n_obs),
           "cells_made": int(len(labels)), "genes": int(ref.n_vars), "sampler": full["sampler"],
           "chain_steps": chain, "chain_steps_timed": a.chain_steps or chain,
           "ae_s_per_step": per["ae"], "dm_s_per_step": per["dm"], "scorer_s_per_step": per["scorer"],
           "sampling_s": sample_s, "generate_s_timed": gen_s, "ae_steps": full["ae_steps"], "dm_steps": full["steps"],
           "scorer_steps": full["scorer_steps"], "job_s_extrapolated": job, "train_steps_timed": a.train_steps,
           "load_avg_1min": os.getloadavg()[0], "logical_cores": os.cpu_count()}   # a shared machine's load inflates CPU rows
    out = Path(a.out)
    df = pd.DataFrame([row])
    if out.exists():
        df = pd.concat([pd.read_csv(out), df], ignore_index=True)
    from stbench.atomic import write_csv

    write_csv(out, df, index=False)
    print(pd.DataFrame([row]).T.to_string())


if __name__ == "__main__":
    main()
