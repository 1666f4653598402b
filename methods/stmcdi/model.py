"""stMCDI: graph encoder + masked conditional diffusion (Li et al. 2024, §3).

Two readings of what is diffused (``target``):

* ``values`` (default, well-posed): the diffusion runs on the expression values of the spot.
  The graph encoder's latent of the masked input (OR mask) is extra side information per gene,
  so the spatial graph is used at training *and* at inference.
* ``latent`` (the paper's text and the released code): the diffusion runs on the encoder's latent
  X^ = GNN(X_masked, A); the latent is split (LR mask) into condition and targets. The latent is
  anchored to the expression scale by a masked reconstruction loss (``recon_weight``) so that the
  sampled latent is an imputation.

Masks (Table 2): for a batch, ``M`` = training targets drawn from the observed entries
(``train_mask_strategy``, ``train_mask_ratio``).
``or_mask``: the encoder's input hides M (off: the encoder sees the targets during training).
``lr_mask``: after the encoder, the representation is split into condition (observed and not in M)
and targets (M); off: no conditional part, every entry is diffused (unconditional on values).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from stbench.kit.diffusion import Denoiser, Schedule, ddim_sample, ddpm_sample, sinusoidal_table
from stbench.kit.diffusion.masks import train_targets
from .encoder import GraphEncoder
from .generators import GENERATORS, Generator


class STMCDI(nn.Module):
    def __init__(self, n_genes: int, p: dict):
        super().__init__()
        self.p = dict(p)
        self.n_genes = n_genes
        self.target = p["target"]
        if self.target not in ("values", "latent"):
            raise ValueError(f"target must be 'values' or 'latent', got {self.target!r}")
        self.encoder = None if p["encoder"] == "none" else GraphEncoder(
            p["encoder"], n_genes, p["enc_hidden"], p["enc_layers"], p["enc_dropout"])
        self.latent_channel = self.target == "values" and self.encoder is not None
        self.gene_emb = nn.Embedding(n_genes, p["gene_emb_dim"]) if p["gene_emb_dim"] > 0 else None
        self.register_buffer("pos_emb", sinusoidal_table(n_genes, p["pos_emb_dim"]), persistent=False)
        self.generator_kind = p.get("generator", "diffusion")
        if self.generator_kind not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator_kind!r}")
        if self.generator_kind != "diffusion" and self.target != "values":
            raise ValueError("generator gain/vae/mlp predicts the values: use target 'values'")
        side_dim = p["gene_emb_dim"] + p["pos_emb_dim"] + 1 + int(self.latent_channel)
        if self.generator_kind == "diffusion":
            self.generator = None
            self.denoiser = Denoiser(side_dim, p["num_steps"], p["channels"], p["layers"], p["heads"],
                                     p["diff_emb_dim"], p["ff_dim"], p["dropout"])
        else:  # App. F.1: another generator on the same encoder latent; no denoiser, no gene embeddings
            self.generator = Generator(self.generator_kind, n_genes, p, latent=self.encoder is not None)
            self.denoiser = None
            self.gene_emb = None
        self.sched = Schedule(p["num_steps"], p["beta_start"], p["beta_end"], p["schedule"])
        self.register_buffer("alpha_bar", torch.as_tensor(self.sched.alpha_bar, dtype=torch.float32), persistent=False)
        rw = p.get("recon_weight")
        self.recon_weight = float((1.0 if self.target == "latent" else 0.0) if rw is None else rw)

    # ---- pieces ---------------------------------------------------------------------------
    @property
    def hops(self) -> int:
        return 0 if self.encoder is None else self.encoder.hops

    def graph(self, edge_index, n_nodes: int):
        """The full graph as the encoder uses it (GCN: self loops and full-graph normalisation weights)."""
        return (edge_index, None) if self.encoder is None else self.encoder.graph(edge_index, n_nodes)

    def encode(self, x_in, edge_index, edge_weight=None):
        return None if self.encoder is None else self.encoder(x_in, edge_index, edge_weight)

    def side_info(self, cond: torch.Tensor, latent) -> torch.Tensor:
        b, g = cond.shape
        parts = []
        if self.gene_emb is not None:
            parts.append(self.gene_emb.weight[None].expand(b, -1, -1))
        if self.pos_emb.shape[1]:
            parts.append(self.pos_emb[None].expand(b, -1, -1))
        parts.append(cond[..., None])
        if self.latent_channel:
            parts.append(latent[..., None])
        return torch.cat(parts, -1)

    # ---- training (Eq. 12) -----------------------------------------------------------------
    def training_loss(self, x_sub, o_sub, edge_index, pos, gen=None, edge_weight=None):
        """x_sub/o_sub: (n_sub, G) standardised values (0 where unobserved) and observed mask of the
        batch's neighbourhood subgraph; ``pos`` indexes the batch spots inside it; ``edge_weight``:
        the subgraph edges' full-graph weights (GCN), so the batch's latent is the full-graph one."""
        p = self.p
        xb, ob = x_sub[pos], o_sub[pos]
        M = train_targets(ob, p["train_mask_strategy"], p["train_mask_ratio"], gen)
        z = None
        if self.encoder is not None:
            enc_mask = o_sub.clone()
            if p["or_mask"]:
                enc_mask[pos] = ob & ~M  # OR mask: the targets are invisible to the encoder
            z = self.encode(x_sub * enc_mask, edge_index, edge_weight)[pos]
        if p["lr_mask"]:
            cond, loss_mask = ob & ~M, M
        else:
            cond = torch.zeros_like(ob)
            loss_mask = M if p["or_mask"] else ob
        cond = cond.float()
        recon = x_sub.new_zeros(())
        if z is not None and self.recon_weight > 0:  # anchor the latent to the (standardised) values
            recon = ((z.float() - xb) ** 2 * ob).sum() / ob.sum().clamp(min=1)
        if self.generator is not None:  # App. F.1: GAIN / VAE / MLP on the same latent, masked losses
            gl = self.generator.loss(xb, ob, cond, loss_mask, None if z is None else z.float(), gen)
            return gl + self.recon_weight * recon, gl.detach(), recon.detach()
        loss_mask = loss_mask.float()
        if self.target == "latent" and z is not None:
            x0, cond_src = z.detach(), z  # diffuse the latent; its observed part is the condition
        else:
            x0, cond_src = xb, xb
        t = torch.randint(0, self.sched.T, (xb.shape[0],), generator=gen, device=xb.device)
        noise = torch.randn(xb.shape, generator=gen, device=xb.device)
        ab = self.alpha_bar[t][:, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        inp = torch.stack([cond_src * cond, xt * (1 - cond)], -1)
        side = self.side_info(cond, z if self.latent_channel else None)
        eps = self.denoiser(inp, t, self.denoiser.project_side(side))
        mse = (((eps.float() - noise) ** 2) * loss_mask).sum() / loss_mask.sum().clamp(min=1)
        return mse + self.recon_weight * recon, mse.detach(), recon.detach()

    # ---- imputation --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, xb, ob, zb, n_samples: int, sampler: str, steps: int, eta: float, gen=None, clip=None):
        """(n_samples, b, G) samples of the spots' entries; observed entries are the condition
        (when ``lr_mask``), the others start from pure noise. Never touches held-out truth:
        ``xb`` is 0 wherever ``ob`` is False."""
        b, g = xb.shape
        cond = ob.float() if self.p["lr_mask"] else torch.zeros_like(xb)
        if self.generator is not None:  # a point prediction; every "sample" is the same
            pred = self.generator.predict(xb, cond, None if zb is None else zb.float(), gen).float()
            return pred[None].expand(n_samples, b, g)
        src = zb if (self.target == "latent" and zb is not None) else xb
        side = self.side_info(cond, zb if self.latent_channel else None)
        cp = [c.repeat(n_samples, 1, 1) for c in self.denoiser.project_side(side)]
        cond_vals = (src * cond).repeat(n_samples, 1)
        free = (1 - cond).repeat(n_samples, 1)

        def eps_fn(x, t):
            inp = torch.stack([cond_vals, x * free], -1)
            return self.denoiser(inp, torch.tensor([t], device=x.device), cp).float()

        noise = torch.randn((n_samples * b, g), generator=gen, device=xb.device)
        if sampler == "ddpm":
            out = ddpm_sample(eps_fn, noise, self.sched, gen=gen)
        elif sampler == "ddim":
            out = ddim_sample(eps_fn, noise, self.sched, steps, eta, gen=gen, clip=clip)
        else:
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        return out.view(n_samples, b, g)


def count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def parameter_breakdown(model: STMCDI) -> dict:
    return {"encoder": count_parameters(model.encoder) if model.encoder is not None else 0,
            "denoiser": count_parameters(model.denoiser) if model.denoiser is not None else 0,
            "generator": count_parameters(model.generator) if model.generator is not None else 0,
            "gene_embedding": count_parameters(model.gene_emb) if model.gene_emb is not None else 0,
            "total": count_parameters(model)}
