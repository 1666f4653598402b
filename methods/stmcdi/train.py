"""Training loop: AdamW with the paper's step decay, EMA of the parameters, gradient clipping,
bf16 autocast on CUDA, neighbour-subgraph mini-batches of spots, resumable checkpoints (model state only; in the job's
checkpoint folder when the runner gives one), progress lines in the job log (stbench.kit.progress)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from stbench.kit.diffusion.common import CheckpointClock, restore_rng_states, rng_states
from stbench.kit.progress import Progress

from .cost import total_steps
from .graph import subgraph_for


def lr_factor(step: int, total: int, milestones, factors) -> float:
    """Piecewise-constant multiplier: ``factors[j]`` from ``milestones[j] * total`` steps on."""
    f = 1.0
    for m, v in zip(milestones or [], factors or []):
        if step >= int(m * total):
            f = float(v)
    return f


class EMA:
    """Exponential moving average of the parameters (rate = weight of the old average)."""

    def __init__(self, model: torch.nn.Module, rate: float):
        self.rate = float(rate)
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model):
        for s, p in zip(self.shadow, model.parameters()):
            s.lerp_(p.detach(), 1.0 - self.rate)

    @torch.no_grad()
    def copy_to(self, model):
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)


FULL_GRAPH_MAX_NODES = 50_000  # on CUDA, up to this many spots the encoder runs on the whole graph each step


def use_full_graph(device: torch.device, n_nodes: int, hops: int) -> bool:
    """On a GPU the whole graph is cheaper than building each batch's k-hop subgraph (index work and a
    host sync per step); both give the batch the same encoder output (full-graph normalisation)."""
    return device.type == "cuda" and hops > 0 and n_nodes <= FULL_GRAPH_MAX_NODES


def fit(model, X: torch.Tensor, O: torch.Tensor, edge_index: torch.Tensor, train_idx: torch.Tensor, p: dict,
        gen: torch.Generator, ckpt: Path | None = None, *, seed: int = 0, on_step=None) -> dict:
    """Train ``model`` in place; return {'loss': per-epoch mean loss, 'steps', 'seconds', 'resumed_from'}.

    ``on_step(step, model, ema)``, if given, is called after every optimiser step (learning curves)."""
    dev = X.device
    n = X.shape[0]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[p["optimizer"]]
    opt = opt_cls(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    total, per_epoch = total_steps(int(train_idx.numel()), p)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, p["lr_milestones"], p["lr_factors"]))
    ema = EMA(model, p["ema"]) if p["ema"] else None
    amp = bool(p["amp"]) and dev.type == "cuda"
    history, step, resumed = [], 0, 0
    full_ei, full_ew = model.graph(edge_index, n)  # GCN: normalised once on the full graph (exact mini-batches)
    if ckpt is not None and ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)  # RNG states must stay CPU byte tensors
        model.load_state_dict(st["model"])  # copies into the model's parameters, on its device
        opt.load_state_dict(st["opt"])  # torch casts the optimiser state to each parameter's device
        sched.load_state_dict(st["sched"])
        if ema is not None and st.get("ema") is not None:
            ema.shadow = [s.to(dev) for s in st["ema"]]
        step, history, resumed = st["step"], st["history"], st["step"]
        restore_rng_states(st, gen, dev)
        ep_sum, ep_n = st.get("epoch_loss", (0.0, 0))  # the running epoch's loss so far (history stays exact)
    else:
        ep_sum, ep_n = 0.0, 0
    every = max(1, total // max(1, int(p["checkpoints"]))) if p["checkpoints"] else 0
    saver = CheckpointClock(p.get("checkpoint_interval"))  # also every N seconds: a short time limit still progresses
    ep_loss = X.new_tensor(float(ep_sum))  # summed on the device: one host sync per epoch, not per step

    def save():
        """Model state only (model, optimiser, scheduler, EMA, RNG states, step counters): never data."""
        if ckpt is None or not p["checkpoints"]:
            return
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "ema": ema.shadow if ema is not None else None, "step": step, "history": history,
                    "epoch_loss": (float(ep_loss), ep_n), **rng_states(gen, dev)}, tmp)
        tmp.replace(ckpt)

    prog = Progress(total, label="stMCDI train", every_s=p.get("progress_interval"), start=step,
                    enabled=bool(p["progress"]))
    if resumed:
        prog.write(f"stMCDI train: resuming from checkpoint {ckpt.name} at step {resumed}/{total}")
    full = use_full_graph(dev, n, model.hops)
    t0 = time.perf_counter()
    model.train()
    perm = None
    while step < total:
        k = step % per_epoch
        if k == 0 or perm is None:
            # the epoch's order is a function of (seed, epoch) only, so resuming mid-epoch is exact
            g_ep = torch.Generator().manual_seed(int(seed) * 100003 + step // per_epoch)
            perm = train_idx[torch.randperm(train_idx.numel(), generator=g_ep).to(train_idx.device)]
        batch = perm[k * int(p["batch_size"]):(k + 1) * int(p["batch_size"])]
        if full:
            x_sub, o_sub, sub_ei, pos, sub_ew = X, O, full_ei, batch, full_ew
        else:
            nodes, sub_ei, pos, sub_ew = subgraph_for(batch, full_ei, n, model.hops, full_ew)
            x_sub, o_sub = X[nodes], O[nodes]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss, mse, rec = model.training_loss(x_sub, o_sub, sub_ei, pos, gen, sub_ew)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if p["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(p["grad_clip"]))
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model)
        step += 1
        ep_loss += mse.float(); ep_n += 1
        prog.update(step, lambda: float(mse))
        if k == per_epoch - 1 or step == total:
            history.append(float(ep_loss) / ep_n)
            ep_loss, ep_n = X.new_zeros(()), 0
        if every and (step % every == 0 or step == total or saver.due()):
            save()
            saver.saved()
        if on_step is not None:
            on_step(step, model, ema)
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return {"loss": history, "steps": step, "seconds": time.perf_counter() - t0, "resumed_from": resumed}
