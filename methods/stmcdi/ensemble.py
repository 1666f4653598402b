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
equal the separate runs'. Not supported in an ensemble (method.yaml's ``ensemble`` rule): encoders other
than GCN, ``enc_dropout`` > 0, ``target: latent`` and generators other than diffusion.

Checkpoints: every member's state is written in ``train.fit``'s own format, under the name its separate run
looks for, in the member's own folder (``train_ensemble``: the workflow's ensemble job). They are written on
``train.fit``'s schedule (``checkpoints``, ``checkpoint_interval``) and at the end, so a killed ensemble job
resumes from them (when every member's file is there at the same step), and a variant's own impute job that
finds the finished one trains no step and only samples.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.func import functional_call, stack_module_state, vmap

from stbench.run import ensembles as rules
from stbench.kit.diffusion.common import (
    CheckpointClock,
    Prepared,
    checkpoint_file,
    restore_rng_states,
    rng_states,
)
from stbench.kit.diffusion.common import determinism as _determinism
from stbench.kit.diffusion.masks import train_targets
from stbench.kit.progress import Progress

from .graph import knn_edge_index, subgraph_for
from .impute import _SAMPLING_ONLY, impute_with
from .model import STMCDI, parameter_breakdown
from .cost import total_steps
from .train import EMA, lr_factor, use_full_graph

_RULE = yaml.safe_load((Path(__file__).with_name("method.yaml")).read_text())["ensemble"]  # one home: method.yaml
MEMBER_KEYS = tuple(_RULE["may_differ_in"])  # what members may differ in


def shared_key(p: dict) -> tuple:
    """Variants with the same key can share an ensemble: every parameter but ``MEMBER_KEYS`` equal."""
    return rules.shared_key(_RULE, p)


def supported(p: dict) -> str | None:
    """None if a variant can be an ensemble member, else why not (method.yaml's ``ensemble.requires``)."""
    return rules.why_not(_RULE, p, workflow=False)


def groups(variants: dict[str, dict]) -> list[list[str]]:
    """The variants (name -> resolved params) the workflow trains together, in groups of two or more."""
    return rules.groups(_RULE, variants)


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

    ``ckpts``: one path per member. Each member's state (model, its slice of the optimiser state, the shared
    schedule, its EMA, its generator, the RNG states; no data) is written there as ``train.fit``'s checkpoint
    on ``train.fit``'s schedule and when training ends; when every member's file exists at one step, training
    resumes from them (a killed ensemble job's rerun). A variant's own run that finds the finished file skips
    training and only samples (``train.fit`` resumes at the last step)."""
    k = len(models)
    p = ps[0]  # every schedule/optimiser parameter is shared (shared_key)
    dev = X.device
    n = X.shape[0]
    m0 = models[0]
    total, per_epoch = total_steps(int(train_idx.numel()), p)
    prog = Progress(total, label=f"stMCDI ensemble train ({k} members)", every_s=p.get("progress_interval"),
                    enabled=bool(p["progress"]))
    states = _load_members(ckpts, k, prog)
    if states is not None:  # each member's weights back in its module before stacking
        for mdl, st in zip(models, states):
            mdl.load_state_dict(st["model"])
    P, B = stack_module_state(models)  # leaf tensors (K, ...) that require grad
    params = [P[name] for name, _ in m0.named_parameters()]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[p["optimizer"]]
    opt = opt_cls(params, lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, p["lr_milestones"], p["lr_factors"]))
    ema = EMA(_Stacked(params), p["ema"]) if p["ema"] else None
    histories = [[] for _ in range(k)]
    ep_loss, ep_n = X.new_zeros(k), 0
    step = resumed = 0
    if states is not None:
        opt.load_state_dict(_stack_opt_state([st["opt"] for st in states]))
        sched.load_state_dict(states[0]["sched"])  # the same schedule for every member
        if ema is not None:
            ema.shadow = [torch.stack([st["ema"][j] for st in states]).to(dev) for j in range(len(params))]
        step = resumed = int(states[0]["step"])
        histories = [list(st["history"]) for st in states]
        ep_loss = X.new_tensor([float(st.get("epoch_loss", (0.0, 0))[0]) for st in states])
        ep_n = int(states[0].get("epoch_loss", (0.0, 0))[1])
        for st, gen in zip(states, gens):
            restore_rng_states(st, gen, dev)  # the global CPU/CUDA states are the same in every member's file
        prog.start = step
        prog.write(f"stMCDI ensemble train: resuming {k} members from their checkpoints at step {step}/{total}")
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
    every = max(1, total // max(1, int(p["checkpoints"]))) if p["checkpoints"] else 0
    saver = CheckpointClock(p.get("checkpoint_interval"))

    def save():
        for i, path in enumerate(ckpts or []):
            member_checkpoint(path, models[i], m0, params, opt, opt_cls, sched, ema, i, step, histories[i], gens[i],
                              (float(ep_loss[i]), ep_n))

    perm = None
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
        prog.update(step, lambda m=mse: float(m.detach().mean()))
        if j == per_epoch - 1 or step == total:
            for i, v in enumerate((ep_loss / ep_n).tolist()):
                histories[i].append(v)
            ep_loss, ep_n = X.new_zeros(k), 0
        if every and step < total and (step % every == 0 or saver.due()):
            save()
            saver.saved()
    seconds = time.perf_counter() - t0
    save()  # the finished training: what each variant's own job resumes from (it trains no step)
    with torch.no_grad():  # the EMA (or last) weights into each member's own module
        final = ema.shadow if ema is not None else [q.detach() for q in params]
        for (name, _), w in zip(m0.named_parameters(), final):
            for i, mdl in enumerate(models):
                mdl.get_parameter(name).copy_(w[i])
    for mdl in models:
        mdl.eval()
    return [{"loss": h, "steps": step, "seconds": seconds, "resumed_from": resumed, "ensemble_size": k}
            for h in histories]


def _load_members(ckpts, k: int, prog: Progress) -> list[dict] | None:
    """Every member's checkpoint, if all K exist at one step; else None (training starts at step 0, and the
    files are overwritten at the next checkpoint). A killed job leaves at most the K files of two steps."""
    if not ckpts or not all(Path(c).exists() for c in ckpts):
        return None
    states = [torch.load(c, map_location="cpu", weights_only=False) for c in ckpts]
    steps = {int(st["step"]) for st in states}
    if len(steps) != 1:
        prog.write(f"stMCDI ensemble train: member checkpoints at different steps {sorted(steps)}; starting at step 0")
        return None
    return states


def _stack_opt_state(sds: list[dict]) -> dict:
    """K single-model optimiser state dicts (``member_checkpoint``'s slices) as the stacked optimiser's."""
    state = {}
    for j, st0 in sds[0]["state"].items():
        state[j] = {key: (torch.stack([sd["state"][j][key] for sd in sds]) if torch.is_tensor(v) and v.dim() > 0 else v)
                    for key, v in st0.items()}
    return {"state": state, "param_groups": sds[0]["param_groups"]}


def member_checkpoint(path, model, m0, params, opt, opt_cls, sched, ema, i: int, step: int, history: list, gen,
                      epoch_loss=(0.0, 0)) -> None:
    """Member ``i``'s state in the format of ``train.fit``'s checkpoints, written atomically: its raw weights,
    its slice of the optimiser state, the shared schedule, its EMA, its generator, the global RNG, its running
    epoch loss."""
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
                "history": list(history), "epoch_loss": tuple(epoch_loss), **rng_states(gen, gen.device)}, tmp)
    tmp.replace(path)


def _check_members(members: dict[str, dict]) -> list[dict]:
    # rules across variants (which members can share one model), which param_schema cannot express; values are its
    names = list(members)
    ps = [dict(members[v]) for v in names]
    for v, q in zip(names, ps):
        why = supported(q)
        if why:
            raise ValueError(f"stMCDI ensemble: variant {v!r} cannot be batched: {why}")
    if len({shared_key(q) for q in ps}) != 1:
        raise ValueError(f"stMCDI ensemble: variants {names} differ in more than {', '.join(MEMBER_KEYS)}")
    return ps


def _fit_members(task, names: list[str], ps: list[dict], checkpoint_dirs: dict | None, device):
    """Build and train the members (inside the caller's determinism context); returns what sampling needs."""
    p = ps[0]
    d = Prepared(task, p["standardise"])
    n, g = d.xs.shape
    seed = int(task.seed)
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
    if checkpoint_dirs is not None:
        # in each member's folder, the name its own run looks for (stbench.kit.diffusion.common.checkpoint_file)
        ckpts = [checkpoint_file(dataclasses.replace(task, checkpoint_dir=Path(checkpoint_dirs[v])), q, "stmcdi",
                                 _SAMPLING_ONLY) for v, q in zip(names, ps)]
        if any(c is None for c in ckpts):
            raise ValueError("stMCDI ensemble: member checkpoints need checkpoints > 0 in every member's parameters")
    hists = fit_ensemble(models, X, O, edge_index, train_idx, ps, gens, seed=seed, ckpts=ckpts)
    return d, X, O, edge_index, models, gens, hists


def train_ensemble(task, members: dict[str, dict], checkpoint_dirs: dict[str, str]) -> dict:
    """The workflow's ensemble job (``stbench.run.child``, entry ``ensemble``): train the members (variant name ->
    resolved params, one group) as one batched model and leave each member's finished training in its own
    checkpoint folder (``checkpoint_dirs[variant]``), where its impute job finds it. Samples nothing; returns
    facts for the job's record."""
    names = list(members)
    ps = _check_members(members)
    missing = [v for v in names if v not in checkpoint_dirs]
    if missing:
        raise ValueError(f"stMCDI ensemble: no checkpoint folder for member(s) {', '.join(missing)}")
    device = task.torch_device()
    with _determinism(int(task.seed), device, ps[0]["threads"]):
        *_, hists = _fit_members(task, names, ps, checkpoint_dirs, device)
    h = hists[0]
    return {"members": len(names), "steps": h["steps"], "resumed_from": h["resumed_from"],
            "train_seconds": round(h["seconds"], 3), "final_loss": {v: hh["loss"][-1] if hh["loss"] else None
                                                                     for v, hh in zip(names, hists)}}


def run_ensemble(task, members: dict[str, dict], checkpoint_dir=None) -> dict[str, dict]:
    """Fit the variants ``members`` (name -> resolved params, one ensemble group) on one task as one
    batched ensemble; sample each; return name -> the dict ``impute.run`` returns for that variant (tests,
    benchmarks). ``checkpoint_dir``: one folder for every member, or a mapping variant -> folder; each member's
    training is written there under the name its separate run looks for (``checkpoint_file``)."""
    names = list(members)
    ps = _check_members(members)
    dirs = None
    if checkpoint_dir is not None:
        dirs = dict(checkpoint_dir) if isinstance(checkpoint_dir, dict) else {v: checkpoint_dir for v in names}
    device = task.torch_device()
    with _determinism(int(task.seed), device, ps[0]["threads"]):
        d, X, O, edge_index, models, gens, hists = _fit_members(task, names, ps, dirs, device)
        out = {}
        for v, q, mdl, gen, h in zip(names, ps, models, gens, hists):
            res = impute_with(mdl, d, X, O, edge_index, q, gen, device)
            out[v] = {**res, "history": h, "n_parameters": parameter_breakdown(mdl), "params": q}
    return out
