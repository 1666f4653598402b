"""stDiff (Li et al. 2024), reimplemented in PyTorch from fdu-wangfeilab/stDiff (test-stDiff.py's diffusion_impute,
model/, process/data.py): a conditional diffusion model of the reference cells over the spatial genes, trained to
denoise the genes to predict while the other genes are kept clean and also given as the condition; each spot's
unmeasured genes are then sampled by DDPM with its measured genes re-imposed at every step. Runs under the
harness's truth-free reference protocol (stbench.kit.reference_protocol). The PyPI package stDiff-sc 1.1.4 pins torch
1.9.0, numpy 1.19.5 and scanpy 1.7.2, so it cannot be installed beside this environment (README).
"""

from __future__ import annotations

import numpy as np

from stbench.kit.reference_protocol import reference_counts, reference_impute


def _prepare(counts: np.ndarray, target_sum: float = 1e4):
    """normalize_total(1e4), log1p, then each row divided by its max (MaxAbsScaler on rows), then x 2 - 1.
    Returns (values in [-1, 1], each row's max)."""
    tot = counts.sum(1, keepdims=True)
    x = np.log1p(np.where(tot > 0, counts / np.where(tot > 0, tot, 1.0) * target_sum, 0.0))
    mx = np.abs(x).max(1, keepdims=True)
    return np.where(mx > 0, x / np.where(mx > 0, mx, 1.0), 0.0) * 2 - 1, mx


def impute(task, *, hidden_size: int, depth: int, num_heads: int, mlp_ratio: float, epochs: int, diffusion_steps: int,
           batch_size: int, lr: float, noise_std: float, n_folds: int, fill: str, fill_k: int, calibrate: str):
    import torch

    from . import model as M

    ref = task.reference
    if ref is None:
        raise ValueError("stDiff needs a paired scRNA-seq reference")
    rc = reference_counts(ref)
    col = {g: i for i, g in enumerate(map(str, ref.var_names))}
    device = torch.device("cuda" if str(task.device).startswith("cuda") and torch.cuda.is_available() else "cpu")
    losses = []

    def mapper(inp):
        genes = list(inp.ref_genes) + list(inp.predict)
        n_in, n_g = len(inp.ref_genes), len(genes)
        sub = rc[:, [col[g] for g in genes]]
        sub = np.concatenate([sub, sub + float(noise_std)])        # data_augment(fixed=True): cells + noise_std
        seq, _ = _prepare(sub)
        mask = np.zeros(n_g, dtype=np.float32)
        mask[:n_in] = 1.0                                         # 1: given (input genes), 0: to predict
        cond_seq = (((seq + 1) / 2) * mask) * 2 - 1                # masked genes -> -1, as upstream
        sp, sp_max = _prepare(np.maximum(inp.counts, 0.0))         # spots over the input genes only
        sp_full = np.concatenate([sp, -np.ones((sp.shape[0], n_g - n_in))], axis=1).astype(np.float32)

        gen = torch.Generator(device="cpu").manual_seed(int(inp.seed))
        torch.manual_seed(int(inp.seed))
        net = M.StDiffNet(n_g, int(hidden_size), int(depth), int(num_heads), float(mlp_ratio)).to(device)
        sched = M.CosineSchedule(int(diffusion_steps), device)
        opt = torch.optim.AdamW(net.parameters(), lr=float(lr), weight_decay=0.0)
        m = torch.from_numpy(mask).to(device)
        x_all = torch.from_numpy(seq.astype(np.float32))
        c_all = torch.from_numpy(cond_seq.astype(np.float32))
        n = x_all.shape[0]
        net.train()
        for _ in range(int(epochs)):
            perm = torch.randperm(n, generator=gen)
            tot = 0.0
            for b in range(0, n, int(batch_size)):
                idx = perm[b:b + int(batch_size)]
                x, c = x_all[idx].to(device), c_all[idx].to(device)
                noise = torch.randn(x.shape, generator=gen).to(device)
                t = torch.randint(1, int(diffusion_steps), (x.shape[0],), generator=gen).to(device)
                x_noisy = sched.add_noise(x, noise, t) * (1 - m) + x * m
                loss = torch.nn.functional.mse_loss(net(x_noisy, t, c) * (1 - m), noise * (1 - m))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                tot += loss.item()
            losses.append(tot / max(1, -(-n // int(batch_size))))
        net.eval()
        gt = torch.from_numpy(sp_full).to(device)
        x_t = torch.randn(gt.shape, generator=gen).to(device) * (1 - m) + gt * m
        with torch.no_grad():
            for step in range(int(diffusion_steps) - 1, -1, -1):
                t = torch.full((gt.shape[0],), step, dtype=torch.long, device=device)
                eps = torch.cat([net(x_t[b:b + int(batch_size)], t[b:b + int(batch_size)], gt[b:b + int(batch_size)])
                                 for b in range(0, gt.shape[0], int(batch_size))])
                x_t = sched.step(eps, step, x_t, generator=None if device.type != "cpu" else gen)
                x_t = x_t * (1 - m) + gt * m
        pred = (x_t[:, n_in:].cpu().numpy().astype(np.float64) + 1) / 2     # upstream's output: (x + 1) / 2
        return pred * sp_max                                      # back to log1p(normalised): prediction_scale="log"

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate,
                           prediction_scale="log")
    if isinstance(getattr(task, "info", None), dict):
        task.info["stdiff"] = {"device": str(device), "final_loss": losses[-1] if losses else None,
                               "epochs": int(epochs), "diffusion_steps": int(diffusion_steps)}
    return out
