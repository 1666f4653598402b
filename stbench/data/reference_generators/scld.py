"""SCLD (Wang et al. 2023, "Single-Cell RNA-seq Synthesis with Latent Diffusion Model"), reimplemented from
the paper (no upstream code was read or copied):

- **Autoencoder** (Sec. 3.2.1, Eq. 3-6): a symmetric two-layer linear encoder (``Round``) and decoder
  (``Map``), an activation behind each layer, trained with MSE on the log-normalised cells.
- **Latent diffusion** (Alg. 1, App. C): DDPM in the (standardised) latent, T = 1000, linear beta 1e-4..0.02,
  epsilon prediction, a residual MLP U-Net (the latent is a vector: the paper's Wide-ResNet U-Net with its
  convolutions replaced by linear layers), dropout 0.1, batch 128, 20,000 steps, AdamW at its defaults.
- **Pre-guidance** (Sec. 3.2.2, Eq. 8): the condition of type k is the mean expression of its cells, the
  (K+1)-th the mean of all cells (global); an MLP encoder embeds it and the embedding is concatenated with the
  noisy latent. A share of each batch is trained with the global condition (Alg. 1 line 4).
- **Classifier-free guidance** (Eq. 13, Alg. 2): eps = (1 + w) eps(z, c_k) - w eps(z, c_global); w = -1 is
  the unguided (holistic) model. Ancestral sampling with the shared ``stbench.kit.diffusion`` schedule and sampler.
- **Post-guidance** (Sec. 3.2.3): a scorer of three linear layers with a 2-d output (real, fake), trained with
  binary cross-entropy on the reference's cells against a pool of synthetic ones; of the candidates generated,
  the best-scoring 80% are kept.

Every choice the paper leaves open is listed in README.md beside this file (the latent size, the labels, the
share trained as global, the scorer's training pool, how expression returns to counts, ...).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from stbench.kit.diffusion.denoiser import DiffusionEmbedding
from stbench.kit.diffusion.schedule import Schedule, ddim_sample, ddpm_sample
from stbench.data.reference_generators.cells import (cell_labels, draw_libraries, log_expression, requested_labels,
                                                synthetic_anndata, to_counts)
from stbench.kit.reference_protocol import reference_counts

PRESETS = {
    # the paper's settings where it gives them (App. C), our choices where it does not (README.md)
    "default": {"ae_hidden": 1024, "latent_dim": 128, "ae_steps": 5000, "ae_lr": 1e-3, "width": 512,
                "cond_dim": 128, "time_dim": 128, "num_steps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
                "dropout": 0.1, "batch_size": 128, "steps": 20000, "global_fraction": 0.1, "guidance": 1.0,
                "sampler": "ddpm", "ddim_steps": 100, "keep": 0.8, "scorer_hidden": 256, "scorer_steps": 1000,
                "scorer_pool": 2000, "threads": 0},
    "paper": {},
    "quick": {"ae_hidden": 256, "latent_dim": 32, "ae_steps": 1000, "width": 128, "cond_dim": 64, "time_dim": 64,
              "steps": 2000, "scorer_hidden": 128, "scorer_steps": 200, "scorer_pool": 1000,
              "sampler": "ddim", "ddim_steps": 100},
    "test": {"ae_hidden": 64, "latent_dim": 8, "ae_steps": 100, "width": 64, "cond_dim": 16, "time_dim": 16,
             "num_steps": 50, "steps": 100, "scorer_hidden": 32, "scorer_steps": 30, "scorer_pool": 200},
}


class Autoencoder(nn.Module):
    """Round (encoder) and Map (decoder): two linear layers each, an activation (LeakyReLU) behind every layer."""

    def __init__(self, n_genes: int, hidden: int, latent: int):
        super().__init__()
        # LeakyReLU behind every layer: with ReLU (or Tanh) behind the latent and output layers, units died and the
        # reconstruction was worse than each gene's mean on a toy reference (README: open choices)
        self.enc = nn.Sequential(nn.Linear(n_genes, hidden), nn.LeakyReLU(), nn.Linear(hidden, latent), nn.LeakyReLU())
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.LeakyReLU(), nn.Linear(hidden, n_genes), nn.LeakyReLU())

    def forward(self, x):
        return self.dec(self.enc(x))


class ResBlock(nn.Module):
    """Wide-ResNet block on vectors: norm, SiLU, linear, + step embedding, norm, SiLU, dropout, linear; skip."""

    def __init__(self, d_in: int, d_out: int, t_dim: int, dropout: float):
        super().__init__()
        self.n1, self.l1 = nn.LayerNorm(d_in), nn.Linear(d_in, d_out)
        self.t = nn.Linear(t_dim, d_out)
        self.n2, self.l2 = nn.LayerNorm(d_out), nn.Linear(d_out, d_out)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()

    def forward(self, h, temb):
        x = self.l1(F.silu(self.n1(h))) + self.t(temb)
        return self.skip(h) + self.l2(self.drop(F.silu(self.n2(x))))


class LatentUNet(nn.Module):
    """epsilon_theta(z_t, c, t): [z_t, E(c)] through a U-Net of residual blocks (widths w, w/2, w/4 and back,
    skips concatenated); E is the MLP encoder of the condition (a mean-expression vector)."""

    def __init__(self, latent: int, n_genes: int, width: int, cond_dim: int, time_dim: int, num_steps: int,
                 dropout: float):
        super().__init__()
        w1, w2, w3 = width, max(width // 2, 4), max(width // 4, 4)
        self.cond = nn.Sequential(nn.Linear(n_genes, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.temb = DiffusionEmbedding(num_steps, time_dim)
        self.inp = nn.Linear(latent + cond_dim, w1)
        self.d1, self.d2, self.mid = (ResBlock(w1, w2, time_dim, dropout), ResBlock(w2, w3, time_dim, dropout),
                                      ResBlock(w3, w3, time_dim, dropout))
        self.u2, self.u1 = ResBlock(w3 + w3, w2, time_dim, dropout), ResBlock(w2 + w2, w1, time_dim, dropout)
        self.out = nn.Sequential(nn.LayerNorm(w1 + w1), nn.SiLU(), nn.Linear(w1 + w1, latent))

    def forward(self, z, cond_vec, t):
        te = self.temb(t)
        h0 = self.inp(torch.cat([z, self.cond(cond_vec)], 1))
        h1 = self.d1(h0, te)
        h2 = self.d2(h1, te)
        m = self.mid(h2, te)
        u = self.u2(torch.cat([m, h2], 1), te)
        u = self.u1(torch.cat([u, h1], 1), te)
        return self.out(torch.cat([u, h0], 1))


class Scorer(nn.Module):
    """Post-guidance scorer: three linear layers, output (real, fake) logits."""

    def __init__(self, n_genes: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_genes, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, 2))

    def forward(self, x):
        return self.net(x)


def _batches(n: int, size: int, steps: int, gen: torch.Generator):
    """``steps`` random mini-batches of row indices (epochs of a fresh permutation each)."""
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, size):
            if done >= steps:
                return
            yield perm[i:i + size]
            done += 1


class SCLD:
    """The fitted model: ``fit(counts, labels)`` then ``sample(labels, guidance)`` (log-normalised cells) or
    ``generate_counts``. Types are the distinct labels; condition K (the last) is the global one."""

    def __init__(self, params: dict, seed: int = 0, device: str = "cpu"):
        self.p = dict(params)
        self.seed = int(seed)
        self.device = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            self.device = torch.device("cpu")
        self.gen = torch.Generator(device="cpu").manual_seed(self.seed)
        if self.p["sampler"] not in ("ddpm", "ddim"):
            raise ValueError(f"scld: sampler must be ddpm or ddim, got {self.p['sampler']!r}")
        if not 0 < float(self.p["keep"]) <= 1:
            raise ValueError(f"scld: keep must be in (0, 1], got {self.p['keep']}")

    # --- training ---------------------------------------------------------------------------------
    def fit(self, counts: np.ndarray, labels: np.ndarray) -> "SCLD":
        p, dev = self.p, self.device
        if int(p.get("threads") or 0) > 0:
            torch.set_num_threads(int(p["threads"]))
        torch.manual_seed(self.seed)
        x, self.median = log_expression(np.asarray(counts, np.float64))
        self.counts, self.labels = np.asarray(counts, np.float64), np.asarray(labels).astype(str)
        self.types = sorted(set(self.labels.tolist()))
        y = np.array([self.types.index(t) for t in self.labels])
        cond = np.vstack([x[y == k].mean(0) for k in range(len(self.types))] + [x.mean(0)])  # Eq. 8
        self.cond = torch.as_tensor(cond, dtype=torch.float32, device=dev)
        self.x = torch.as_tensor(x, dtype=torch.float32, device=dev)
        self.y = torch.as_tensor(y, dtype=torch.long, device=dev)
        n, g = x.shape
        bs = int(min(p["batch_size"], n))
        self.ae = Autoencoder(g, int(p["ae_hidden"]), int(p["latent_dim"])).to(dev)
        opt = torch.optim.AdamW(self.ae.parameters(), lr=float(p["ae_lr"]))
        self.ae_loss = []
        for idx in _batches(n, bs, int(p["ae_steps"]), self.gen):
            xb = self.x[idx.to(dev)]
            loss = F.mse_loss(self.ae(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.ae_loss.append(float(loss.detach()))
        self.ae.eval()
        with torch.no_grad():
            z = self.ae.enc(self.x)
        self.z_mean, self.z_sd = z.mean(0), z.std(0).clamp_min(1e-4)
        z0 = (z - self.z_mean) / self.z_sd
        # the paper's linear betas are for T = 1000; a shorter chain (test preset) scales them by 1000 / T so that
        # the forward process still ends near pure noise (alpha_bar_T ~ 4e-5 at any T)
        scale = 1000.0 / int(p["num_steps"])
        self.sched = Schedule(int(p["num_steps"]), float(p["beta_start"]) * scale, min(float(p["beta_end"]) * scale, 0.999),
                              kind="linear")
        ab = torch.as_tensor(self.sched.alpha_bar, dtype=torch.float32, device=dev)
        self.net = LatentUNet(int(p["latent_dim"]), g, int(p["width"]), int(p["cond_dim"]), int(p["time_dim"]),
                              self.sched.T, float(p["dropout"])).to(dev)
        opt = torch.optim.AdamW(self.net.parameters())  # "AdamW with its default parameters" (App. C)
        k_glob = len(self.types)
        self.dm_loss = []
        self.net.train()
        for idx in _batches(n, bs, int(p["steps"]), self.gen):
            idx = idx.to(dev)
            zb, lb = z0[idx], self.y[idx].clone()
            n_glob = int(round(float(p["global_fraction"]) * len(idx)))
            lb[:n_glob] = k_glob                                        # Alg. 1 line 4: l[:k] = global
            t = torch.randint(0, self.sched.T, (len(idx),), generator=self.gen).to(dev)
            eps = torch.randn(zb.shape, generator=self.gen).to(dev)
            a = ab[t][:, None]
            loss = F.mse_loss(self.net(a.sqrt() * zb + (1 - a).sqrt() * eps, self.cond[lb], t), eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.dm_loss.append(float(loss.detach()))
        self.net.eval()
        self._fit_scorer()
        return self

    def _fit_scorer(self):
        """The post-guidance scorer: the reference's cells (real) against a pool of synthetic cells of the
        same type proportions (fake), binary cross-entropy on the two outputs."""
        p, dev = self.p, self.device
        n_pool = int(min(p["scorer_pool"], max(len(self.labels), 2)))
        rng = np.random.default_rng(self.seed + 1)
        fake = self.sample(rng.choice(self.labels, size=n_pool, replace=True))
        xr, xf = self.x, torch.as_tensor(fake, dtype=torch.float32, device=dev)
        xs = torch.cat([xr, xf])
        ys = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(len(xr), 1), torch.tensor([[0.0, 1.0]]).repeat(len(xf), 1)]).to(dev)
        self.scorer = Scorer(xs.shape[1], int(p["scorer_hidden"])).to(dev)
        opt = torch.optim.AdamW(self.scorer.parameters())
        w = torch.cat([torch.full((len(xr),), 0.5 / len(xr)), torch.full((len(xf),), 0.5 / len(xf))]).to(dev)
        self.scorer_loss = []
        for idx in _batches(len(xs), 256, int(p["scorer_steps"]), self.gen):
            idx = idx.to(dev)
            per = F.binary_cross_entropy_with_logits(self.scorer(xs[idx]), ys[idx], reduction="none").mean(1)
            loss = (per * w[idx]).sum() / w[idx].sum()   # the two classes weighted equally
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.scorer_loss.append(float(loss.detach()))
        self.scorer.eval()

    # --- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, labels, guidance: float | None = None) -> np.ndarray:
        """Log-normalised synthetic cells, one per label (Alg. 2, no post-guidance): latent chain with
        classifier-free guidance ``guidance`` (w of Eq. 13; default the preset's), then ``Map``."""
        p, dev = self.p, self.device
        w = float(p["guidance"] if guidance is None else guidance)
        labels = np.asarray(labels).astype(str)
        if len(labels) == 0:
            return np.zeros((0, self.x.shape[1]), np.float32)
        k = torch.as_tensor([self.types.index(t) for t in labels], dtype=torch.long, device=dev)
        c_k, c_g = self.cond[k], self.cond[len(self.types)].expand(len(labels), -1)

        def eps_fn(z, t):
            tt = torch.full((z.shape[0],), int(t), dtype=torch.long, device=dev)
            e_c = self.net(z, c_k[:z.shape[0]], tt)
            if w == 0.0:
                return e_c
            return (1 + w) * e_c - w * self.net(z, c_g[:z.shape[0]], tt)

        noise = torch.randn((len(labels), int(p["latent_dim"])), generator=self.gen).to(dev)
        if p["sampler"] == "ddpm":
            z = ddpm_sample(eps_fn, noise, self.sched, gen=self.gen if dev.type == "cpu" else None)
        else:
            z = ddim_sample(eps_fn, noise, self.sched, int(p["ddim_steps"]), gen=self.gen if dev.type == "cpu" else None)
        return self.ae.dec(z * self.z_sd + self.z_mean).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def score(self, logx: np.ndarray) -> np.ndarray:
        """The scorer's probability that each cell is real."""
        x = torch.as_tensor(logx, dtype=torch.float32, device=self.device)
        return torch.softmax(self.scorer(x), 1)[:, 0].cpu().numpy()

    def sample_guided(self, labels, guidance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Post-guidance: per type, ceil(n / keep) candidates, the best-scoring n kept. Returns the kept
        log-normalised cells (in the order of ``labels``) and the scores of every candidate."""
        labels = np.asarray(labels).astype(str)
        keep = float(self.p["keep"])
        out = np.zeros((len(labels), self.x.shape[1]), np.float32)
        types, counts = np.unique(labels, return_counts=True)
        cand_labels = np.concatenate([[t] * int(math.ceil(n / keep)) for t, n in zip(types, counts)]) if len(types) else labels
        cand = self.sample(cand_labels, guidance)
        scores = self.score(cand)
        for t, n in zip(types, counts):
            rows = np.flatnonzero(cand_labels == t)
            best = rows[np.argsort(-scores[rows], kind="stable")[:n]]
            out[labels == t] = cand[best]
        return out, scores

    def generate_counts(self, labels, guidance: float | None = None) -> np.ndarray:
        """Synthetic raw counts: post-guided cells at library sizes drawn from real cells of their type."""
        labels = np.asarray(labels).astype(str)
        logx, _ = self.sample_guided(labels, guidance)
        libs = draw_libraries(self.counts, self.labels, labels, np.random.default_rng(self.seed + 2))
        return to_counts(logx, libs, self.median, upper=self.x.max(0).values.cpu().numpy())


def generate(reference, n_per_type: dict, *, by: str, seed: int = 0, params: dict, device: str = "cpu"):
    """Fit SCLD on ``reference`` (its cells and labels only) and return ``n_per_type`` synthetic cells."""
    counts, labels = reference_counts(reference), cell_labels(reference, by)
    want = requested_labels(n_per_type, labels)
    model = SCLD(params, seed=seed, device=device).fit(counts, labels)
    out = synthetic_anndata(model.generate_counts(want), want, reference, by, "scld")
    out.uns["generator_info"] = {"ae_loss_last": model.ae_loss[-1] if model.ae_loss else None,
                                 "dm_loss_last": float(np.mean(model.dm_loss[-50:])) if model.dm_loss else None,
                                 "scorer_loss_last": model.scorer_loss[-1] if model.scorer_loss else None}
    return out
