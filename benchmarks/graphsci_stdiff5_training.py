"""Why GraphSCI's `quick` preset scores below the Shuffle control on stdiff_dataset5 (issue 23): the training
trajectory of its count scale.

Builds the stdiff5 task as `workflow/stdiff5.yaml` does (top 200 hvg genes, a random 10% of entries held out,
mask seed = SEED), trains GraphSCI exactly as `methods/graphsci/impute.py` does (the `quick` preset, EPOCHS
full-batch steps), and every EVERY steps prints the cost terms, the mean log-count bias of the predicted counts
over the observed entries (mean of log1p(predicted) - log1p(observed): 0 when the count level is right), their
correlation there, and the held-out PCC / RMSE on the task's scale.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/graphsci_stdiff5_training.py SEED EPOCHS [EVERY] > out.txt

Needs ../shared/data/stdiff_dataset5 (developers' machines only). Output of seed 0, 900 steps:
benchmarks/results/graphsci_stdiff5_training.txt.
"""

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from stbench import steps
from stbench.data.loaders.h5ad import read_h5ad
from stbench.data.masks import MaskSpec
from stbench.kit.methodkit import seeded
from stbench.data.preprocess import PreprocessConfig
from stbench.run.registry import discover
from stbench.data.task import load_task, truth_on_scale

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stdiff_dataset5" / "spatial.h5ad"


def main(seed: int, epochs: int, every: int) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    d = Path(tempfile.mkdtemp(prefix="graphsci-stdiff5-"))
    steps.prepare("stdiff5", {"format": "h5ad", "path": str(DATA)}, d / "prepared.h5ad", d / "prepare.json")
    steps.preprocess_step(d / "prepared.h5ad", PreprocessConfig(n_genes=200), d / "pre.h5ad", d / "qc.json")
    steps.mask_step(d / "pre.h5ad", MaskSpec(), seed, d / "mask.npz", "stdiff5")
    steps.task_step(d / "pre.h5ad", d / "mask.npz", d / "task.npz", dataset="stdiff5")
    pre, task = read_h5ad(d / "pre.h5ad"), load_task(d / "task.npz", scratch=d)
    truth, held = truth_on_scale(pre, task), ~np.asarray(task.observed_mask)
    m = discover()["graphsci"]
    imp = m.load_module("impute")
    p = m.params("quick", {"epochs": epochs})
    prep = imp.prepare(task, p["corr_threshold"], p["graph_on"], torch.device("cpu"))
    obs_c = np.where(task.observed_mask, np.nan_to_num(task.observed_counts), np.nan)
    gm = np.nanmean(np.where(task.observed_mask, task.observed, np.nan), 0)
    pg = np.broadcast_to(gm, truth.shape)[held]
    print(f"per-gene mean: held PCC {np.corrcoef(pg, truth[held])[0, 1]:.3f} "
          f"RMSE {np.sqrt(((pg - truth[held]) ** 2).mean()):.3f}", flush=True)
    with seeded(task.seed):                    # the loop of impute.impute, with a look every `every` steps
        model = imp.build_model(prep, p["hidden1"], p["hidden2"], p["dropout"])
        opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: float(p["lr_decay_rate"]) ** (s / float(p["lr_decay_steps"])))
        for ep in range(epochs):
            opt.zero_grad()
            cost, parts = imp.loss_on(model, prep, mse_weight=float(p["mse_weight"]))
            cost.backward()
            opt.step()
            sched.step()
            if ep % every == 0 or ep == epochs - 1:
                pc = imp.predict_counts(model, prep)
                a, b = np.log1p(pc[task.observed_mask]), np.log1p(obs_c[task.observed_mask])
                s = task.counts_to_scale(pc)
                print(ep, {k: round(x, 3) for k, x in parts.items()}, "log-count bias", round(float((a - b).mean()), 3),
                      "obs r", round(float(np.corrcoef(a, b)[0, 1]), 3),
                      "held PCC", round(float(np.corrcoef(s[held], truth[held])[0, 1]), 3),
                      "held RMSE", round(float(np.sqrt(((s[held] - truth[held]) ** 2).mean())), 3), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 150)
