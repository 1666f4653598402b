"""CSDI for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

Trained on the observed entries only (held-out entries are NaN in the task, set to 0 after the
z-score and never a target); the held-out entries are sampled from pure noise with every observed
entry of the spot as the condition, and the median of the samples is the imputation.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from stbench.kit.diffusion.common import (CheckpointClock, Prepared, check_finite, checkpoint_file, default_chunk,
                                      determinism, restore_rng_states, rng_states, sample_rows)
from stbench.kit.progress import Progress

from .cost import epochs_and_steps
from .model import CSDI

# parameters that do not change the trained model (excluded from the checkpoint key)
SAMPLING_ONLY = {"sampler", "sample_steps", "eta", "n_samples", "aggregate", "sample_batch", "progress",
                 "progress_interval", "checkpoints", "checkpoint_interval", "threads"}


def check_params(p: dict) -> None:
    # a cross-parameter rule, which param_schema (one schema per parameter) cannot express; the rest is there
    if p["channels"] % p["heads"]:
        raise ValueError(f"CSDI: channels ({p['channels']}) must be divisible by heads ({p['heads']})")


def fit(model: CSDI, X, O, train_idx, p: dict, gen, ckpt=None) -> dict:
    """Adam with MultiStepLR (x lr_gamma at each milestone fraction of the epochs), as upstream's utils.train;
    at least ``min_steps`` optimiser steps (whole epochs), so that a small section trains as long as a large one.
    ``ckpt``: a checkpoint file, written at epoch ends ``checkpoints`` times (and at the first epoch end after
    every ``checkpoint_interval`` seconds) and resumed from when present
    (model state, optimiser, schedule, RNG states and counters only; an epoch boundary resumes exactly)."""
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    bs = int(p["batch_size"])
    epochs, per_epoch = epochs_and_steps(int(train_idx.numel()), p)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(m * epochs) for m in p["lr_milestones"]], gamma=float(p["lr_gamma"]))
    hist, steps, first, t0 = [], 0, 0, time.perf_counter()
    dev = X.device
    if ckpt is not None and ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)  # RNG states must stay CPU byte tensors
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        restore_rng_states(st, gen, dev)
        hist, steps, first = st["history"], st["steps"], st["epoch"]
    prog = Progress(epochs * per_epoch, label="CSDI train", every_s=p.get("progress_interval"), start=steps,
                    enabled=bool(p.get("progress", True)))
    if first:
        prog.write(f"CSDI train: resuming from checkpoint {ckpt.name} at step {steps}/{epochs * per_epoch} "
                   f"(epoch {first}/{epochs})")
    every = max(1, epochs // int(p["checkpoints"])) if ckpt is not None else 0
    saver = CheckpointClock(p.get("checkpoint_interval"))  # also at the first epoch end after N seconds
    model.train()
    for ep in range(first, epochs):
        perm = train_idx[torch.randperm(train_idx.numel(), generator=gen, device=train_idx.device)]
        tot, nb = 0.0, 0
        for s in range(0, perm.numel(), bs):
            idx = perm[s:s + bs]
            loss = model.training_loss(X[idx], O[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()); nb += 1; steps += 1
            prog.update(steps, tot / nb)
        sched.step()
        hist.append(tot / max(nb, 1))
        if every and ((ep + 1) % every == 0 or ep + 1 == epochs or saver.due()):
            saver.saved()
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "history": hist, "steps": steps, "epoch": ep + 1, **rng_states(gen, dev)}, tmp)
            tmp.replace(ckpt)
    model.eval()
    return {"loss": hist, "steps": steps, "seconds": time.perf_counter() - t0, "resumed_from": first}


def run(task, **p) -> dict:
    check_params(p)
    device = task.torch_device()
    d = Prepared(task, p["standardise"])
    x, m, train, mu, sd, xs = d.x, d.m, d.train, d.mu, d.sd, d.xs  # xs: 0 at held-out entries
    n, g = x.shape

    with determinism(int(task.seed), device, p["threads"]):
        gen = torch.Generator(device=device).manual_seed(int(task.seed))
        X = torch.as_tensor(xs, device=device)
        O = torch.as_tensor(m, device=device)
        model = CSDI(g, p).to(device)
        # only in the job's checkpoint folder (it survives a killed job; the sandbox's scratch would not)
        ckpt = checkpoint_file(task, p, "csdi", SAMPLING_ONLY) if getattr(task, "checkpoint_dir", None) else None
        hist = fit(model, X, O, torch.as_tensor(np.flatnonzero(train), device=device), p, gen, ckpt)
        S = int(p["n_samples"])
        clip = 1.5 * float(np.abs(xs[train]).max()) + 1.0  # DDIM x0 bound over the train spots (as stMCDI); DDPM: none
        chunk = p["sample_batch"] or default_chunk(device, S, g)
        rows = np.flatnonzero((~m).any(1))

        def draw(idx):
            return model.sample(X[idx], O[idx], S, p["sampler"], int(p["sample_steps"]), float(p["eta"]), gen, clip=clip)

        med, mean, spread = sample_rows(draw, rows, (n, g), S, chunk, device)
    est = med if p["aggregate"] == "median" else mean
    back = lambda a: a * sd + mu  # noqa: E731
    imputed = np.where(m, x, back(est)).astype(np.float32)
    check_finite(imputed, "CSDI")
    spread = np.where(m, 0.0, spread * sd).astype(np.float32)
    return {"imputed": imputed, "spread": spread, "history": hist,
            "n_parameters": int(sum(q.numel() for q in model.parameters())), "params": p}


def impute(task, **params) -> np.ndarray:
    return run(task, **params)["imputed"]
