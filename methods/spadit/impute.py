"""SpaDiT (Li, Zhu & Min 2024): a diffusion transformer that generates a gene's spatial expression vector from
noise, conditioned on the gene's single-cell vector (Phi, concatenated) and on the whole scRNA-seq reference
(psi, attention). Reimplemented from the supplementary (Algorithms 1-2, Eq. 31, Table 1) and the released code
(wenwenmin/SpaDiT at fc8a3f9); every difference between the two is a parameter (methods/spadit/README.md).

One gene is one sample: the model trains on the genes the spatial data and the reference share (the mapper's
input genes) and generates the spatial vectors of the genes it predicts. It runs under the harness's
truth-free reference protocol (stbench.kit.reference_protocol), like Tangram and stPlus.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from stbench.kit.reference_protocol import normalise_cells, reference_counts, reference_impute

from .cost import TABLE1, TABLE1_KEYS, n_parameters, table1_params, train_steps, training_bytes  # noqa: F401


def _condition_genes(sc_log: np.ndarray, common: list, how: str, min_detection: float, hvg_fraction: float) -> np.ndarray:
    """Reference gene indices that psi sees: ``common`` (the genes of the spatial panel) or ``all`` (the released
    preprocessing: genes detected in >= ``min_detection`` of the cells, the top ``hvg_fraction`` by variance of
    log-normalised expression, plus the common genes)."""
    common = np.asarray(sorted(set(common)), dtype=int)
    if how == "common":
        return common
    if how != "all":
        raise ValueError(f"condition_genes must be 'all' or 'common', got {how!r}")
    det = (sc_log > 0).mean(0) >= float(min_detection)
    cand = np.flatnonzero(det)
    n_top = max(1, int(round(float(hvg_fraction) * sc_log.shape[1])))
    top = cand[np.argsort(-sc_log[:, cand].var(0), kind="stable")[:n_top]]
    return np.union1d(top, common)


def spadit_fit_predict(st: np.ndarray, sc_in: np.ndarray, sc_out: np.ndarray, sc_cond: np.ndarray, *, seed: int,
                       device, label: str = "SpaDiT", hp: dict, backbone: str, condition: str, concat: bool,
                       schedule: str, beta_start: float, beta_end: float, training: str, sampling_predicts: str,
                       ema_decay, lr_step_epochs, grad_clip, weight_decay: float, pca_dim: int, n_samples: int,
                       progress: bool, progress_interval: float, info: dict | None = None, checkpoint=None,
                       checkpoints: int, checkpoint_interval: float,
                       _stop_after_epoch: int | None = None) -> np.ndarray:
    """Train on the input genes and generate the predicted genes' spatial vectors (Algorithms 1-2).

    ``st``: (n_in, n_spots) the input genes' spatial vectors (log-normalised); ``sc_in``/``sc_out``: (genes, cells)
    the input / predicted genes' reference vectors; ``sc_cond``: (q, cells) psi's matrix. Returns (n_spots, n_out)
    on ``st``'s scale."""
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from stbench.kit.diffusion import Schedule, ddpm_sample
    from stbench.kit.diffusion.common import CheckpointClock, restore_rng_states, rng_states
    from stbench.kit.progress import Progress

    from .model import SpaDiTNet

    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    torch.manual_seed(int(seed))
    zero_st = np.asarray(st) == 0                       # the released masks pick zero / non-zero entries of the data
    zero_sc = np.asarray(sc_in) == 0
    mu, sd = float(st.mean()), float(st.std()) or 1.0   # one global z-score per side (a harness choice, README)
    mu_c, sd_c = float(sc_in.mean()), float(sc_in.std()) or 1.0
    f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)  # noqa: E731
    X, XS, XO = f32((st - mu) / sd), f32((sc_in - mu_c) / sd_c), f32((sc_out - mu_c) / sd_c)
    P = f32((sc_cond - mu_c) / sd_c)
    Z, ZS = torch.as_tensor(zero_st, device=dev), torch.as_tensor(zero_sc, device=dev)
    pcs = None
    if condition == "pca":
        from sklearn.decomposition import PCA

        k = int(min(pca_dim, *sc_cond.shape))
        pcs = f32(PCA(n_components=k, random_state=int(seed)).fit_transform(np.asarray(sc_cond, dtype=np.float64)))
        pca_dim = k
    T = int(hp["diffusion_steps"])
    sched = Schedule(T, beta_start, beta_end, kind=schedule)
    ab = torch.as_tensor(sched.alpha_bar, dtype=torch.float32, device=dev)
    _check_memory(X.shape[1], XS.shape[1], hp, dev, backbone=backbone, condition=condition, concat=bool(concat),
                  pca_dim=int(pca_dim), ema=bool(ema_decay), label=label)
    net = SpaDiTNet(X.shape[1], XS.shape[1], hidden=int(hp["hidden_size"]), depth=int(hp["depth"]),
                    heads=int(hp["heads"]), latent_layers=int(hp["latent_layers"]), num_steps=T, backbone=backbone,
                    condition=condition, concat=bool(concat), pca_dim=int(pca_dim)).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=float(hp["learning_rate"]), weight_decay=float(weight_decay))
    step_lr = torch.optim.lr_scheduler.StepLR(opt, step_size=int(lr_step_epochs), gamma=0.1) if lr_step_epochs else None
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(float(ema_decay))) if ema_decay else None
    n, bs = X.shape[0], int(hp["batch_size"])
    total = train_steps(n, hp)
    prog = Progress(total, label=f"{label} train", every_s=progress_interval, enabled=progress)
    huber = torch.nn.HuberLoss(delta=1.0)
    step, last = 0, float("nan")
    epochs, start = int(hp["epochs"]), 0
    every = max(1, math.ceil(epochs / int(checkpoints))) if checkpoints else 0
    clock = CheckpointClock(checkpoint_interval)
    if checkpoint is not None and checkpoints and Path(checkpoint).exists():
        st = torch.load(checkpoint, map_location=dev, weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        if step_lr is not None:
            step_lr.load_state_dict(st["step_lr"])
        if ema is not None:
            ema.load_state_dict(st["ema"])
        restore_rng_states(st["rng"], gen, dev)
        start, step = int(st["epoch"]), int(st["step"])
        prog = Progress(total, label=f"{label} train", every_s=progress_interval, enabled=progress, start=step)
        prog.write(f"{label} train: resuming from checkpoint {Path(checkpoint).name} at step {step}/{total}")
    loss = torch.zeros(())
    net.train()
    for epoch in range(start, epochs):
        perm = torch.randperm(n, generator=gen, device=dev)
        for s0 in range(0, n, bs):
            b = perm[s0:s0 + bs]
            x0, xs = X[b], XS[b]
            t = torch.randint(0, T, (len(b),), generator=gen, device=dev)
            eps = torch.randn(x0.shape, generator=gen, device=dev)
            a = ab[t][:, None]
            if training == "algorithm1":            # Alg. 1: the whole spatial vector diffused, ||eps - eps_theta||^2
                xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
                loss = torch.mean((net(xt, xs, t, net.condition(P, pcs)) - eps) ** 2)
            else:                                   # released diff_train.py: masked entries only, MSE + Huber
                nz, zm = _entry_masks(Z[b], hp, gen)
                nzs, zms = _entry_masks(ZS[b], hp, gen)
                zero_x, zero_s = (0 - mu) / sd, (0 - mu_c) / sd_c
                x0m = torch.where((nz + zm) > 0, torch.full_like(x0, zero_x), x0)
                xsm = torch.where((nzs + zms) > 0, torch.full_like(xs, zero_s), xs)
                xt = (a.sqrt() * x0m + (1 - a).sqrt() * eps) * nz + x0m * (1 - nz)
                eps_s = torch.randn(xs.shape, generator=gen, device=dev)
                xst = (a.sqrt() * xsm + (1 - a).sqrt() * eps_s) * nzs + xsm * (1 - nzs)
                pred = net(xt, xst, t, net.condition(P, pcs))
                loss = torch.mean((eps * nz - pred * nz) ** 2) + huber(pred * zm, eps * zm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(grad_clip))
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
            step += 1
            if prog.due(step):
                last = float(loss.detach())
                prog.update(step, last)
        if step_lr is not None:
            step_lr.step()
        if checkpoint is not None and checkpoints and epoch + 1 < epochs and ((epoch + 1) % every == 0 or clock.due()):
            from stbench.atomic import atomic_path

            state = {"net": net.state_dict(), "opt": opt.state_dict(), "rng": rng_states(gen, dev),
                     "step_lr": step_lr.state_dict() if step_lr is not None else None,
                     "ema": ema.state_dict() if ema is not None else None, "epoch": epoch + 1, "step": step}
            with atomic_path(Path(checkpoint)) as tmp:
                torch.save(state, tmp)
            clock.saved()
        if _stop_after_epoch is not None and epoch + 1 == _stop_after_epoch:   # tests: a job killed here
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1}")
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(f"{label}: the training loss is not finite (lower the learning rate)")
    model = (ema.module if ema is not None else net).eval()
    out = torch.zeros(XO.shape[0], X.shape[1], device=dev)
    with torch.no_grad():
        cond = model.condition(P, pcs)
        for s0 in range(0, XO.shape[0], bs):
            xs = XO[s0:s0 + bs]
            acc = torch.zeros(len(xs), X.shape[1], device=dev)
            for _ in range(int(n_samples)):
                noise = torch.randn(acc.shape, generator=gen, device=dev)
                eps_fn = lambda x, ti: model(x, xs, torch.full((len(xs),), ti, device=dev, dtype=torch.long), cond)  # noqa: E731
                acc += ddpm_sample(eps_fn, noise, sched, gen=gen,
                                   predicts="noise" if sampling_predicts == "noise" else "x0")
            out[s0:s0 + bs] = acc / int(n_samples)
    if info is not None:
        info.update({"steps": step, "final_loss": float(loss.detach()),
                     "n_parameters": int(sum(p.numel() for p in net.parameters())),
                     "n_condition_genes": int(P.shape[0]), "n_cells": int(P.shape[1])})
    res = out.T.cpu().numpy().astype(np.float64) * sd + mu
    if not np.isfinite(res).all():
        raise FloatingPointError(f"{label}: the generated expression has non-finite values: the model diverged")
    return res


def _check_memory(n_spots: int, n_cells: int, hp: dict, dev, *, backbone: str, condition: str, concat: bool,
                  pca_dim: int, ema: bool, label: str) -> None:
    """Stop before building a network whose training state cannot fit the device (Table 1's widest rows give
    5-10 billion parameters), with the sizes that cause it, instead of an out-of-memory error mid-allocation."""
    import os

    import torch

    n = n_parameters(n_spots, n_cells, hp, backbone=backbone, condition=condition, concat=concat, pca_dim=pca_dim)
    need = training_bytes(n, ema=ema)
    if dev.type == "cuda":
        have, where = torch.cuda.get_device_properties(dev).total_memory, torch.cuda.get_device_name(dev)
    else:
        have, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"
    if need > have:
        raise MemoryError(
            f"{label}: hidden_size {hp['hidden_size']}, depth {hp['depth']} on {n_spots} spots and {n_cells} reference "
            f"cells make a {n / 1e9:.2f}-billion-parameter network; training it needs {need / 1e9:.0f} GB (weights, "
            f"gradients, AdamW{' and the EMA' if ema else ''}, fp32), more than {where} ({have / 1e9:.0f} GB). "
            "Use a smaller hidden_size/depth, max_cells, or the preset released_main (methods/spadit/README.md)")


def _entry_masks(zero, hp, gen):
    """The released ``mask_tensor_with_masks``: exactly round(ratio * count) of the non-zero and of the zero entries,
    drawn uniformly; returns the two 0/1 masks."""
    import torch

    keys = torch.rand(zero.shape, generator=gen, device=zero.device)
    out = []
    for sel, ratio in ((~zero, hp["mask_nonzero_ratio"]), (zero, hp["mask_zero_ratio"])):
        k = int(round(float(ratio) * int(sel.sum())))
        m = torch.zeros(zero.numel(), device=zero.device)
        if k:
            idx = torch.argsort(torch.where(sel, keys, torch.full_like(keys, 2.0)).flatten())[:k]
            m[idx] = 1.0
        out.append(m.reshape(zero.shape))
    return out


def impute(task, *, table1_row: str, batch_size, depth, diffusion_steps, epochs, heads, hidden_size, learning_rate,
           mask_zero_ratio, mask_nonzero_ratio, latent_layers, backbone: str, condition: str, condition_genes: str,
           concat: bool, schedule: str, beta_start: float, beta_end: float, training: str, sampling_predicts: str,
           ema_decay, lr_step_epochs, grad_clip, weight_decay: float, pca_dim: int, condition_min_detection: float,
           condition_hvg_fraction: float, max_cells, n_samples: int, progress: bool, progress_interval: float,
           checkpoints: int, checkpoint_interval: float, n_folds: int, fill: str, fill_k: int, calibrate: str):
    ref = task.reference
    if ref is None:
        raise ValueError("SpaDiT needs a paired scRNA-seq reference")
    given = dict(batch_size=batch_size, depth=depth, diffusion_steps=diffusion_steps, epochs=epochs, heads=heads,
                 hidden_size=hidden_size, learning_rate=learning_rate, mask_zero_ratio=mask_zero_ratio,
                 mask_nonzero_ratio=mask_nonzero_ratio, latent_layers=latent_layers)
    hp = table1_params(table1_row, getattr(task, "dataset", ""), given)
    device = task.torch_device()
    counts = reference_counts(ref)
    rng = np.random.default_rng(int(task.seed))
    if max_cells and counts.shape[0] > int(max_cells):           # psi's attention is cells x cells wide
        counts = counts[np.sort(rng.choice(counts.shape[0], int(max_cells), replace=False))]
    sc_log = normalise_cells(counts, log=True)                   # cells x genes
    col = {str(g): i for i, g in enumerate(ref.var_names)}
    folds = []
    from stbench.kit.diffusion.common import checkpoint_file

    keyed = {**given, **dict(table1_row=table1_row, backbone=backbone, condition=condition,
             condition_genes=condition_genes, concat=concat, schedule=schedule, beta_start=beta_start, beta_end=beta_end,
             training=training, ema_decay=ema_decay, lr_step_epochs=lr_step_epochs, grad_clip=grad_clip,
             weight_decay=weight_decay, pca_dim=pca_dim, condition_min_detection=condition_min_detection,
             condition_hvg_fraction=condition_hvg_fraction, max_cells=max_cells, checkpoints=checkpoints,
             fill=fill, fill_k=fill_k, n_folds=n_folds), "hp": hp}

    def mapper(inp):
        shared = [col[g] for g in inp.ref_genes]
        predict = [col[g] for g in inp.predict]
        cond_idx = _condition_genes(sc_log, shared + predict, condition_genes, condition_min_detection,
                                    condition_hvg_fraction)
        st = normalise_cells(inp.counts, log=True).T             # input genes x spots (released: log-normalised ST)
        rec: dict = {"fold": int(inp.fold)}
        # one checkpoint per training run: the fold and the spots it maps (an inductive pass maps two row sets)
        ckpt = checkpoint_file(task, {**keyed, "fold": int(inp.fold), "genes": list(inp.ref_genes),
                                      "n_spots": int(st.shape[1])}, f"spadit-fold{int(inp.fold) + 1}")
        pred = spadit_fit_predict(st, sc_log[:, shared].T, sc_log[:, predict].T, sc_log[:, cond_idx].T,
                                  seed=int(inp.seed) * 1000 + int(inp.fold) + 1, device=device,
                                  label=f"SpaDiT fold {inp.fold}", hp=hp, backbone=backbone, condition=condition,
                                  concat=concat, schedule=schedule, beta_start=beta_start, beta_end=beta_end,
                                  training=training, sampling_predicts=sampling_predicts, ema_decay=ema_decay,
                                  lr_step_epochs=lr_step_epochs, grad_clip=grad_clip, weight_decay=weight_decay,
                                  pca_dim=pca_dim, n_samples=n_samples, progress=progress,
                                  progress_interval=progress_interval, info=rec, checkpoint=ckpt,
                                  checkpoints=checkpoints, checkpoint_interval=checkpoint_interval)
        folds.append(rec)
        return pred

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate,
                           prediction_scale="log")
    if isinstance(getattr(task, "info", None), dict):
        task.info["spadit"] = {"hyperparameters": hp, "table1_row": table1_row, "device": str(device), "folds": folds}
    return out
