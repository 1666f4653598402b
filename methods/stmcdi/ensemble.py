"""Batched ensembles: the stMCDI variants of one task that share every parameter shape, trained as one model.

The default, the five Table 2 mask rows and the five Figure 3 ratios differ only in how training
targets are drawn (``MEMBER_KEYS``). Their K models are stacked (``torch.func.stack_module_state``)
and trained in one loop: each step runs one batched encoder and one vmapped denoiser for all K, so a
host-bound GPU step (the H200 profile: kernels busy 21% of a step) launches its kernels once, not K
times. Each member is exactly the separate run of its variant:

* its own generator, seeded as the separate run seeds it, draws its training mask, steps and noise in
  the same order (the Python loop over members is only these draws);
* the model initialisation is the separate run's (re-seeded per member: same shapes, same draws);
* dropout draws one mask per call (``vmap(randomness="same")``), as each separate run does: the global
  RNG is seeded the same way in every run and nothing else draws from it during training;
* gradient clipping is per member (each member's own norm); AdamW and the EMA are elementwise, so
  one optimiser over the stacked tensors is K optimisers.

The GCN encoder is batched by hand, because ``vmap`` cannot pass PyG's in-place scatter: its linear
maps are batched matmuls over the stacked weights, and the aggregation (the same normalised graph for
every member) runs once through PyG's own ``propagate`` on the members' features side by side.
Sampling is not batched: it already fills the device (thousands of rows per call) and runs per member
with that member's generator. ``tests/test_stmcdi_ensemble.py`` checks that the ensemble's results
equal the separate runs'. Not supported in an ensemble: checkpoints (the job restarts from step 0),
encoders other than GCN, ``enc_dropout`` > 0, and generators other than diffusion.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from stbench.diffusion.common import Prepared, checkpoint_file, rng_states
from stbench.diffusion.common import determinism as _determinism
from stbench.diffusion.masks import train_targets

from .graph import knn_edge_index, subgraph_for
from .impute import _SAMPLING_ONLY, check_params, impute_with
from .model import STMCDI, parameter_breakdown
from .train import EMA, lr_factor, total_steps, use_full_graph

MEMBER_KEYS = ("train_mask_strategy", "train_mask_ratio", "or_mask", "lr_mask")  # what members may differ in


def shared_key(p: dict) -> tuple:
    """Variants with the same key can share an ensemble: every parameter but ``MEMBER_KEYS`` equal."""
    return tuple(sorted((k, repr(v)) for k, v in p.items() if k not in MEMBER_KEYS))


def supported(p: dict) -> str | None:
    """None if a variant can be an ensemble member, else why not."""
    if p["encoder"] != "gcn":
        return f"encoder {p['encoder']} (only gcn is batched)"
    if p.get("generator", "diffusion") != "diffusion":
        return f"generator {p['generator']}"
    if float(p["enc_dropout"]) > 0:
        return "enc_dropout > 0"
    if p["target"] != "values":
        return "target latent"
    return None


def groups(variants: dict[str, dict]) -> list[list[str]]:
    """The variants (name -> resolved params) that can be trained together, in groups of two or more."""
    by: dict[tuple, list[str]] = {}
    for name, p in variants.items():
        if supported(p) is None:
            by.setdefault(shared_key(p), []).append(name)
    return [names for names in by.values() if len(names) > 1]


class _Stacked:
    """The stacked parameters where train.EMA expects a module."""

    def __init__(self, params):
        self.params = params

    def parameters(self):
        return iter(self.params)


class _DenoiseWithSide(torch.nn.Module):
    """The denoiser with its side projection in one forward, so one ``functional_call`` covers both."""

    def __init__(self, denoiser):
        super().__init__()
        self.d = denoiser

    def forward(self, inp, t, side):
        return self.d(inp, t, self.d.project_side(side))


def _encode(model0, P: dict, x: torch.Tensor, edge_index, edge_weight) -> torch.Tensor:
    """The K members' GCN encoders on x (K, n, G): per-member weights, one shared aggregation."""
    convs = model0.encoder.convs
    k, n, _ = x.shape
    for i, conv in enumerate(convs):
        h = torch.matmul(x, P[f"encoder.convs.{i}.lin.weight"].transpose(1, 2))  # (K, n, out)
        out = h.shape[-1]
        agg = conv.propagate(edge_index, x=h.permute(1, 0, 2).reshape(n, k * out), edge_weight=edge_weight)
        x = agg.view(n, k, out).permute(1, 0, 2) + P[f"encoder.convs.{i}.bias"][:, None, :]
        if i < len(convs) - 1:
            x = torch.relu(x)
    return x


def _clip_per_member(grads: list[torch.Tensor], k: int, max_norm: float) -> None:
    """``clip_grad_norm_`` of each member separately (its own total norm over its own gradients)."""
    norms = torch.stack([g.reshape(k, -1).norm(dim=1) for g in grads], 1)  # (K, tensors)
    coef = (max_norm / (norms.norm(dim=1) + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(k, *([1] * (g.dim() - 1))).to(g.dtype))


def fit_ensemble(models: list[STMCDI], X, O, edge_index, train_idx, ps: list[dict], gens: list, *, seed: int = 0,
                 ckpts: list | None = None) -> list[dict]:
    """Train the K models as one batched ensemble (in place); per member the history of ``train.fit``.

    ``ckpts``: one path per member: its finished training written as ``train.fit``'s checkpoint (model,
    optimiser, schedule, EMA, generator and RNG states; no data), so that the member's own separate run,
    finding it, skips training and only samples (see ``member_checkpoint``)."""
    k = len(models)
    p = ps[0]  # every schedule/optimiser parameter is shared (shared_key)
    dev = X.device
    n = X.shape[0]
    m0 = models[0]
    P, B = stack_module_state(models)  # leaf tensors (K, ...) that require grad
    params = [P[name] for name, _ in m0.named_parameters()]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[p["optimizer"]]
    opt = opt_cls(params, lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    total, per_epoch = total_steps(int(train_idx.numel()), p)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, p["lr_milestones"], p["lr_factors"]))
    ema = EMA(_Stacked(params), p["ema"]) if p["ema"] else None
    amp = bool(p["amp"]) and dev.type == "cuda"
    full_ei, full_ew = m0.graph(edge_index, n)
    full = use_full_graph(dev, n, m0.hops)
    den = _DenoiseWithSide(m0.denoiser)
    dP = {"d." + name[len("denoiser."):]: v for name, v in P.items() if name.startswith("denoiser.")}
    dB = {"d." + name: b for name, b in m0.denoiser.named_buffers()}
    batched_den = vmap(lambda prm, inp, t, side: functional_call(den, (prm, dB), (inp, t, side)),
                       in_dims=(0, 0, 0, 0), randomness="same")
    gene_w = P["gene_emb.weight"] if m0.gene_emb is not None else None
    alpha_bar = m0.alpha_bar
    T = m0.sched.T
    m0.train()
    for mdl in models:
        mdl.train()
    histories = [[] for _ in range(k)]
    ep_loss, ep_n = X.new_zeros(k), 0
    step, perm = 0, None
    t0 = time.perf_counter()
    while step < total:
        j = step % per_epoch
        if j == 0 or perm is None:
            g_ep = torch.Generator().manual_seed(int(seed) * 100003 + step // per_epoch)
            perm = train_idx[torch.randperm(train_idx.numel(), generator=g_ep).to(train_idx.device)]
        batch = perm[j * int(p["batch_size"]):(j + 1) * int(p["batch_size"])]
        if full:
            x_sub, o_sub, sub_ei, pos, sub_ew = X, O, full_ei, batch, full_ew
        else:
            nodes, sub_ei, pos, sub_ew = subgraph_for(batch, full_ei, n, m0.hops, full_ew)
            x_sub, o_sub = X[nodes], O[nodes]
        xb, ob = x_sub[pos], o_sub[pos]
        # ---- each member's draws, in the order of model.training_loss (its own generator) ----
        enc_masks, conds, loss_masks, ts, noises = [], [], [], [], []
        for q, gen in zip(ps, gens):
            M = train_targets(ob, q["train_mask_strategy"], q["train_mask_ratio"], gen)
            em = o_sub.clone()
            if q["or_mask"]:
                em[pos] = ob & ~M
            enc_masks.append(em)
            if q["lr_mask"]:
                conds.append(ob & ~M); loss_masks.append(M)
            else:
                conds.append(torch.zeros_like(ob)); loss_masks.append(M if q["or_mask"] else ob)
            ts.append(torch.randint(0, T, (xb.shape[0],), generator=gen, device=dev))
            noises.append(torch.randn(xb.shape, generator=gen, device=dev))
        cond = torch.stack(conds).float()  # (K, b, G)
        loss_mask = torch.stack(loss_masks).float()
        t = torch.stack(ts)  # (K, b)
        noise = torch.stack(noises)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            z = _encode(m0, P, x_sub[None] * torch.stack(enc_masks), sub_ei, sub_ew)[:, pos]  # (K, b, G)
            ab = alpha_bar[t][..., None]
            xt = ab.sqrt() * xb[None] + (1 - ab).sqrt() * noise
            inp = torch.stack([xb[None] * cond, xt * (1 - cond)], -1)
            b, g = xb.shape
            parts = []
            if gene_w is not None:
                parts.append(gene_w[:, None].expand(k, b, -1, -1))
            if m0.pos_emb.shape[1]:
                parts.append(m0.pos_emb[None, None].expand(k, b, -1, -1))
            parts += [cond[..., None], z[..., None]]
            eps = batched_den(dP, inp, t, torch.cat(parts, -1))
        mse = (((eps.float() - noise) ** 2) * loss_mask).sum((1, 2)) / loss_mask.sum((1, 2)).clamp(min=1)  # (K,)
        loss = mse.sum()  # members are independent: d(sum)/d(theta_k) = d(mse_k)/d(theta_k)
        if m0.recon_weight > 0:  # the latent anchored to the values, as model.training_loss does
            loss = loss + m0.recon_weight * (((z.float() - xb[None]) ** 2 * ob).sum((1, 2)) / ob.sum().clamp(min=1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if p["grad_clip"]:
            _clip_per_member([q.grad for q in params if q.grad is not None], k, float(p["grad_clip"]))
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(_Stacked(params))
        step += 1
        ep_loss += mse.detach().float()
        ep_n += 1
        if j == per_epoch - 1 or step == total:
            for i, v in enumerate((ep_loss / ep_n).tolist()):
                histories[i].append(v)
            ep_loss, ep_n = X.new_zeros(k), 0
    seconds = time.perf_counter() - t0
    for i, path in enumerate(ckpts or []):
        member_checkpoint(path, models[i], m0, params, opt, opt_cls, sched, ema, i, step, histories[i], gens[i])
    with torch.no_grad():  # the EMA (or last) weights into each member's own module
        final = ema.shadow if ema is not None else [q.detach() for q in params]
        for (name, _), w in zip(m0.named_parameters(), final):
            for i, mdl in enumerate(models):
                mdl.get_parameter(name).copy_(w[i])
    for mdl in models:
        mdl.eval()
    return [{"loss": h, "steps": step, "seconds": seconds, "resumed_from": 0, "ensemble_size": k} for h in histories]


def member_checkpoint(path, model, m0, params, opt, opt_cls, sched, ema, i: int, step: int, history: list, gen) -> None:
    """Member ``i``'s state in the format of ``train.fit``'s checkpoints, written atomically: its raw weights,
    its slice of the optimiser state, the shared schedule, its EMA, its generator, the global RNG."""
    with torch.no_grad():
        for (name, _), w in zip(m0.named_parameters(), params):
            model.get_parameter(name).copy_(w[i])
    sd = opt.state_dict()
    own = {j: {key: (v[i] if torch.is_tensor(v) and v.dim() > 0 else v) for key, v in st.items()}
           for j, st in sd["state"].items()}
    single = opt_cls(model.parameters(), lr=1.0)  # only its structure: the state and groups are loaded
    single.load_state_dict({"state": own, "param_groups": sd["param_groups"]})
    tmp = Path(path).with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": single.state_dict(), "sched": sched.state_dict(),
                "ema": [sh[i].clone() for sh in ema.shadow] if ema is not None else None, "step": step,
                "history": history, "epoch_loss": (0.0, 0), **rng_states(gen, gen.device)}, tmp)
    tmp.replace(path)


def run_ensemble(task, members: dict[str, dict], checkpoint_dir=None) -> dict[str, dict]:
    """Fit the variants ``members`` (name -> resolved params, one ensemble group) on one task as one
    batched ensemble; sample each; return name -> the dict ``impute.run`` returns for that variant.
    ``checkpoint_dir``: also write each member's finished training there under the name its separate run
    looks for (``stbench.diffusion.common.checkpoint_file``), so a separate job of the variant only samples."""
    names = list(members)
    ps = [dict(members[v]) for v in names]
    for v, q in zip(names, ps):
        check_params(q)
        why = supported(q)
        if why:
            raise ValueError(f"stMCDI ensemble: variant {v!r} cannot be batched: {why}")
    if len({shared_key(q) for q in ps}) != 1:
        raise ValueError(f"stMCDI ensemble: variants {names} differ in more than {', '.join(MEMBER_KEYS)}")
    p = ps[0]
    device = task.torch_device()
    d = Prepared(task, p["standardise"])
    n, g = d.xs.shape
    seed = int(task.seed)
    with _determinism(seed, device, p["threads"]):
        gens = [torch.Generator(device=device).manual_seed(seed) for _ in ps]
        X = torch.as_tensor(d.xs, device=device)
        O = torch.as_tensor(d.m, device=device)
        edge_index = knn_edge_index(task.coords, int(p["k_neighbors"])).to(device)
        models = []
        for q in ps:  # each member starts from its separate run's initialisation
            torch.manual_seed(seed)
            models.append(STMCDI(g, q).to(device))
        train_idx = torch.as_tensor(np.flatnonzero(d.train), device=device)
        ckpts = None
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            # the name each variant's own job looks for (stbench.diffusion.common.checkpoint_file)
            at = dataclasses.replace(task, checkpoint_dir=Path(checkpoint_dir))
            ckpts = [checkpoint_file(at, q, "stmcdi", _SAMPLING_ONLY) for q in ps]
        hists = fit_ensemble(models, X, O, edge_index, train_idx, ps, gens, seed=seed, ckpts=ckpts)
        out = {}
        for v, q, mdl, gen, h in zip(names, ps, models, gens, hists):
            res = impute_with(mdl, d, X, O, edge_index, q, gen, device)
            out[v] = {**res, "history": h, "n_parameters": parameter_breakdown(mdl), "params": q}
    return out
