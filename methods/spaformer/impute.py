"""SpaFormer for the stbench method contract: ``impute(task, **params) -> (n_spots, n_genes) float32``.

Cells (spots) are tokens: each one's expression (on the task's scale; held-out entries carry a
truth-free fill, upstream's 0) is embedded linearly, a spatial positional encoding is added, and a
2-layer transformer (Performer attention by default) runs over all cells of a spatial tile. A linear
head gives a 20-d latent, an MLP decoder the expression. Training is upstream's bi-level masked
reconstruction restricted to observed entries; the imputation is the decoder's output at the
held-out entries of the uncorrupted input. Observed entries are returned unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from stbench.kit.early_stopping import EarlyStopping
from stbench.kit.methodkit import gene_means, seeded

from .model import SpaFormer, corrupt, masked_loss
from .spatial import graph_radius, spatial_tiles, tile_inputs


def _check(p: dict) -> dict:
    """The cross-parameter rules, which param_schema (one schema per parameter) cannot express; the rest is there."""
    if p["pe"] == "sinu" and (int(p["num_hidden"]) // (2 if p["cat_pe"] else 1)) % 4:
        raise ValueError("spaformer: pe 'sinu' needs an embedding width divisible by 4")
    if p["cat_pe"] and int(p["num_hidden"]) % 2:
        raise ValueError("spaformer: cat_pe needs an even num_hidden")
    return dict(p)


def prepare(task, p: dict) -> dict:
    """The truth-free input, the observed mask, the fill, and the tiles with their positional inputs (built once)."""
    obs = np.array(task.observed_mask, dtype=bool)  # a writable copy
    fill = gene_means(task) if p["fill"] == "gene_mean" else np.zeros(task.n_genes, np.float32)
    x = np.where(obs, np.nan_to_num(task.observed), fill[None, :]).astype(np.float32)
    train = np.asarray(task.train_spots, dtype=bool)
    if not train.any():
        train = np.ones(task.n_spots, dtype=bool)
    coords = np.asarray(task.coords, dtype=np.float64)
    radius = graph_radius(coords, p["pe_radius"], p["pe_radius_nn"])
    num_emb = int(p["num_hidden"]) // (2 if p["cat_pe"] else 1)
    all_tiles = spatial_tiles(coords, np.arange(task.n_spots), int(p["tile_cells"]))
    if train.all():
        train_tiles = all_tiles
    else:  # inductive: sequences of training spots only; positions from the same coordinates
        train_tiles = spatial_tiles(coords, np.flatnonzero(train), int(p["tile_cells"]))

    def build(tiles):
        return [(t, tile_inputs(coords, t, p["pe"], int(p["lap_k"]), radius, num_emb)) for t in tiles]

    return {"x": x, "obs": obs, "fill": fill, "train": train, "radius": radius,
            "tiles": build(all_tiles), "train_tiles": build(train_tiles) if train_tiles is not all_tiles else None}


def _pos_tensors(pos: dict, device) -> dict:
    out = {}
    for k, v in pos.items():
        out[k] = torch.as_tensor(v, device=device, dtype=torch.long if k == "bin" else torch.float32)
    return out


def fit(model, batches, fill, p: dict, device) -> tuple[list, list, int]:
    """Upstream's loop: per epoch AdamW steps over the tiles (at least ``steps_per_epoch``; grad-norm
    clipping), then the masked validation RMSE in eval mode; stop after ``patience`` epochs without
    improvement and restore the best weights."""
    opt = torch.optim.AdamW(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    n_epoch = int(p["max_epoch"])
    sched = None
    if p["scheduler"] and n_epoch > 0:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: (1 + np.cos(e * np.pi / n_epoch)) * 0.5)
    hist, val = [], []
    # the validation corruption is drawn once (upstream draws a fresh one every epoch: see README)
    val_masks = [corrupt(x, obs, fill, p) for x, obs, _ in batches] if p["fixed_val_mask"] else [None] * len(batches)
    stop = EarlyStopping(p["patience"])       # patience None: run every epoch, still keep the best weights
    n_steps = max(len(batches), int(p["steps_per_epoch"]))
    for epoch in range(n_epoch):
        model.train()
        for step in range(n_steps):  # the tiles in turn, with a fresh corruption at every step
            x, obs, pos = batches[step % len(batches)]
            loss = masked_loss(model, x, x, obs, fill, pos, p, flip=True)
            opt.zero_grad()
            loss.backward()
            if p["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(p["grad_clip"]))
            opt.step()
        if sched is not None:
            sched.step()
        hist.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            v = float(np.mean([masked_loss(model, x, x, obs, fill, pos, p, flip=False, c=c).item()
                               for (x, obs, pos), c in zip(batches, val_masks)]))
        val.append(float(np.sqrt(v)))
        if stop.step(val[-1], model, epoch):
            break
    stop.restore(model)
    return hist, val, stop.best_epoch


def run(task, **params) -> dict:
    """Fit and reconstruct; returns imputed, reconstruction, latent and the training history."""
    p = _check(params)
    device = task.torch_device()
    d = prepare(task, p)
    g = task.n_genes
    relu_out = bool(p["decoder_relu"]) and task.scale == "log"
    with seeded(task.seed, device):
        x_all = torch.as_tensor(d["x"], device=device)
        obs_all = torch.as_tensor(d["obs"], device=device)
        fill = torch.as_tensor(d["fill"], device=device)

        def batches(tiles):
            out = []
            for t, pos in tiles:
                ti = torch.as_tensor(t, device=device)
                out.append((x_all[ti], obs_all[ti], _pos_tensors(pos, device) if p["pe"] != "none" else None))
            return out

        infer = batches(d["tiles"])
        train = batches(d["train_tiles"]) if d["train_tiles"] is not None else infer
        model = SpaFormer(g, p, relu_out).to(device)
        if p["init_gene_mean"]:  # start from the per-gene mean of the observed entries (not upstream: see README)
            with torch.no_grad():
                model.decoder[3].bias.copy_(torch.as_tensor(gene_means(task), device=device))
        hist, val, best_epoch = fit(model, train, fill, p, device)
        model.eval()
        rec = np.zeros((task.n_spots, g), np.float32)
        lat = np.zeros((task.n_spots, int(p["latent_dim"])), np.float32)
        with torch.no_grad():
            for (t, _), (x, _, pos) in zip(d["tiles"], infer):
                z = model.encoder(x, pos, False)
                rec[t] = model.decoder(z).float().cpu().numpy()
                lat[t] = z.float().cpu().numpy()
            if d["train_tiles"] is not None:     # inductive: the train spots are read in their own tiles only
                for (t, _), (x, _, pos) in zip(d["train_tiles"], train):
                    z = model.encoder(x, pos, False)
                    rec[t] = model.decoder(z).float().cpu().numpy()
                    lat[t] = z.float().cpu().numpy()
    bad = ~np.isfinite(rec)
    if bad.any():  # a diverged run fails its row: a fill in its place would pass for SpaFormer's prediction
        raise FloatingPointError(f"spaformer: the trained network returned {int(bad.sum())} non-finite values of "
                                 f"{rec.size} (diverged; try a lower lr)")
    imputed = np.where(d["obs"], d["x"], rec).astype(np.float32)
    return {"imputed": imputed, "reconstruction": rec, "latent": lat, "history": hist, "val_rmse": val,
            "best_epoch": best_epoch, "n_tiles": len(d["tiles"]), "radius": d["radius"]}


def impute(task, **params) -> np.ndarray:
    return run(task, **params)["imputed"]
