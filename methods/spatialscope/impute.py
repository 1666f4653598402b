"""SpatialScope (Wan et al. 2023), its gene-imputation path reimplemented in PyTorch from YangLabHKUST/SpatialScope
(``src/Train_scRef.py``, ``src/Decomposition.py``, ``src/SCGrad``): a score-based model of the reference cells
(log-normalised, centred on their cell type's mean, denoising score matching over a geometric ladder of noise
levels), then, for each spot, its unmeasured genes sampled by annealed Langevin dynamics conditioned on the measured
ones (the prior's score plus the gradient of the misfit to the spot's measured expression), the replicates averaged.
Runs under the harness's truth-free reference protocol (stbench.kit.reference_protocol); the model of the reference is
trained once per task, over every gene shared with the section, and serves every gene fold.
"""

from __future__ import annotations

import numpy as np

from stbench.kit.reference_protocol import match_genes, normalise_cells, reference_counts, reference_impute


def _cell_types(ref, x_log: np.ndarray, key: str, n_types: int, seed: int) -> np.ndarray:
    """Integer cell-type codes of the reference cells: ``ref.obs[key]`` when present, else KMeans clusters of the
    log-normalised cells (upstream requires an annotated reference)."""
    if key in ref.obs.columns:
        return np.unique(ref.obs[key].astype(str).to_numpy(), return_inverse=True)[1]
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    k = int(min(n_types, x_log.shape[0]))
    emb = PCA(n_components=int(min(30, x_log.shape[1] - 1, x_log.shape[0] - 1)) or 1,
              random_state=seed).fit_transform(x_log) if x_log.shape[1] > 2 else x_log
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(emb)


def _assign_types(y: np.ndarray, mu_in: np.ndarray, fallback: int) -> np.ndarray:
    """Each spot's cell type: the type whose mean (log scale, input genes) correlates best with log1p(spot); a spot
    with constant expression gets the most abundant type (upstream: its cell-type identification step)."""
    a = np.log1p(y)
    a = a - a.mean(1, keepdims=True)
    b = mu_in - mu_in.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    corr = (a / np.where(na > 0, na, 1.0)) @ (b / np.where(nb > 0, nb, 1.0)).T
    return np.where(na[:, 0] > 0, corr.argmax(1), fallback)


def impute(task, *, channels, factors, epochs, batch_size, lr, ema_decay, sigma_begin, sigma_end, n_sigmas,
           steps_per_sigma, step_lr, power, replicates, spot_batch, cell_type_key, n_cell_types, n_folds, fill,
           fill_k, calibrate):
    import torch

    from .model import ScoreNet

    ref = task.reference
    if ref is None:
        raise ValueError("SpatialScope needs a paired scRNA-seq reference")
    match = match_genes(task.genes, ref.var_names)
    genes = list(dict.fromkeys(match[g] for g in map(str, task.genes) if g in match))   # the model's genes
    if len(genes) < 2:
        raise ValueError(f"SpatialScope: the reference shares {len(genes)} gene(s) with the section; at least 2 needed")
    col = {g: i for i, g in enumerate(map(str, ref.var_names))}
    pos = {g: i for i, g in enumerate(genes)}
    rc = reference_counts(ref)
    keep = rc.sum(1) > 0
    data = normalise_cells(rc[keep], log=True)[:, [col[g] for g in genes]]        # log1p(median-normalised)
    types = _cell_types(ref[keep], data, str(cell_type_key), int(n_cell_types), int(task.seed))
    n_types = int(types.max()) + 1
    mu = np.stack([data[types == k].mean(0) for k in range(n_types)])
    fallback = int(np.bincount(types).argmax())
    ref_total = np.expm1(data)                                                     # per-cell expression (ref units)
    device = torch.device("cuda" if str(task.device).startswith("cuda") and torch.cuda.is_available() else "cpu")
    sigmas = np.exp(np.linspace(np.log(float(sigma_begin)), np.log(float(sigma_end)), int(n_sigmas)))
    state: dict = {}

    def train():
        """Train_scRef: denoising score matching (L1 on the sigma-scaled score) of the type-centred cells, Adam,
        grad-norm clip 1, EMA weights for sampling."""
        gen = torch.Generator(device="cpu").manual_seed(int(task.seed))
        torch.manual_seed(int(task.seed))
        net = ScoreNet(len(genes), channels, factors).to(device)
        ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
        opt = torch.optim.Adam(net.parameters(), lr=float(lr))
        x_all = torch.from_numpy((data - mu[types]).astype(np.float32))
        m_all = torch.from_numpy(mu[types].astype(np.float32))
        sig = torch.from_numpy(sigmas.astype(np.float32))
        n, bs = x_all.shape[0], int(min(int(batch_size), x_all.shape[0]))
        n_iter = max(1, int(float(epochs) * n / bs))
        losses, perm, at = [], torch.randperm(n, generator=gen), 0
        net.train()
        for _ in range(n_iter):
            if at + bs > n:
                perm, at = torch.randperm(n, generator=gen), 0
            idx = perm[at:at + bs]
            at += bs
            x, m = x_all[idx].to(device), m_all[idx].to(device)
            s = sig[torch.randint(0, len(sig), (bs,), generator=gen)].to(device)[:, None]
            z = torch.randn(x.shape, generator=gen).to(device)
            loss = torch.nn.functional.l1_loss(net(x + z * s, m), -z)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(float(ema_decay)).add_(v.detach(), alpha=1 - float(ema_decay))
                    else:
                        ema[k].copy_(v)
            losses.append(float(loss.item()))
        net.load_state_dict(ema)
        net.eval()
        state.update(net=net, losses=losses, n_iter=n_iter)

    def langevin(y, mu_s, gmask, gen):
        """Decomposition.Langevin_Decom with one cell per spot: annealed Langevin dynamics on x (the cell minus its
        type mean), the prior's score plus lambda = 1 / sigma^power times the clipped gradient of the misfit of
        exp(x + mu) - 1 to the spot's measured expression y; a final denoising step at the last sigma."""
        net = state["net"]
        x = torch.randn(mu_s.shape, generator=gen).to(device)
        gm = torch.from_numpy(gmask).to(device)
        y_full = torch.zeros(mu_s.shape, device=device)
        y_full[:, gm] = y

        def misfit(x):
            e = torch.exp(x + mu_s)
            r = torch.clamp(e - 1 - y_full, -1.0, 1.0)
            return torch.where(gm[None, :], torch.clamp(e * r, -2.0, 2.0), torch.zeros_like(e))

        with torch.no_grad():
            for sigma in sigmas:
                eta = float(step_lr) * (sigma / sigmas[-1]) ** 2
                lam = 1.0 / sigma ** float(power)
                for _ in range(int(steps_per_sigma)):
                    noise = torch.randn(x.shape, generator=gen).to(device) * np.sqrt(eta * 2)
                    x = x + eta * (net(x, mu_s) / sigma - lam * misfit(x)) + noise
            sigma = sigmas[-1]
            x = x + sigma ** 2 * (net(x, mu_s) / sigma - 1.0 / sigma ** float(power) * misfit(x))
        return x + mu_s

    def mapper(inp):
        if "net" not in state:
            train()
        gen = torch.Generator(device="cpu").manual_seed(int(inp.seed) + 1000 * (int(inp.fold) + 1))
        gmask = np.zeros(len(genes), dtype=bool)
        gi = [pos[g] for g in inp.ref_genes]
        gmask[gi] = True
        order = np.flatnonzero(gmask)                                  # model order of the input genes
        sp = np.zeros((inp.counts.shape[0], len(genes)))
        sp[:, gi] = np.maximum(inp.counts, 0.0)
        sp = sp[:, order]
        tot = sp.sum(1, keepdims=True)
        target = float(ref_total[:, order].sum(1).mean())              # spots scaled to the reference's mean total
        y = np.where(tot > 0, sp / np.where(tot > 0, tot, 1.0) * target, 0.0)
        t_spot = _assign_types(y, mu[:, order], fallback)

        def sample(rows):
            """One posterior sample per row of ``rows`` (spot indices, repeated once per replicate), in batches."""
            parts = []
            for b in range(0, len(rows), int(spot_batch)):
                r = rows[b:b + int(spot_batch)]
                mu_s = torch.from_numpy(mu[t_spot[r]].astype(np.float32)).to(device)
                parts.append(langevin(torch.from_numpy(y[r].astype(np.float32)).to(device), mu_s, gmask, gen)
                             .cpu().numpy().astype(np.float64))
            return np.concatenate(parts)

        rows = np.tile(np.arange(y.shape[0]), int(replicates))      # the replicates sampled side by side
        x = sample(rows)
        for _ in range(4):                           # upstream: spots with a non-finite sample are resampled (5 tries)
            bad = np.flatnonzero(~np.isfinite(x).all(1))
            if not len(bad):
                break
            x[bad] = sample(rows[bad])
        # a spot still non-finite fails the row (reference protocol); posterior mean in expression space, >= 0
        out = np.expm1(x).reshape(int(replicates), y.shape[0], len(genes)).mean(0)
        state.setdefault("types", []).append(np.bincount(t_spot, minlength=n_types).tolist())
        return np.maximum(out, 0.0)[:, [pos[g] for g in inp.predict]]

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate)
    if isinstance(getattr(task, "info", None), dict):
        task.info["spatialscope"] = {"device": str(device), "n_genes_model": len(genes), "n_cell_types": n_types,
                                     "cell_types_from": cell_type_key if cell_type_key in ref.obs.columns
                                     else f"KMeans({n_types})", "iterations": state.get("n_iter"),
                                     "final_loss": state["losses"][-1] if state.get("losses") else None,
                                     "spots_per_type": state.get("types")}
    return out
