"""stPlus (Shengquan et al. 2021), reimplemented from the PyPI package stPlus 0.0.6 (stPlus/model.py,
utils.py, loss.py), which cannot run here: it sets torch's default tensor type to CUDA at import, calls
``.cuda()`` unconditionally, imports torchvision, and writes checkpoints to the working folder.

The model: an auto-encoder (genes -> 1000 -> genes, ReLU) trained jointly on spatial spots
(reconstruct the shared genes) and reference cells whose non-shared genes are zeroed (predict them,
with a sparsity-weighted loss); the t_min lowest-loss models each embed spots and cells, and the
genes are predicted by SpaGE's cosine kNN weighting over the reference cells; the t_min predictions
are averaged. Runs under the harness's truth-free reference protocol (stbench.kit.reference_protocol).
"""

from __future__ import annotations

import numpy as np

from stbench.kit.early_stopping import EarlyStopping, snapshot
from stbench.kit.methodkit import seeded
from stbench.kit.reference_protocol import cosine_knn_transfer, normalise_cells, reference_counts, reference_impute


def _net(n_features: int, hidden: int):
    from torch import nn

    class VAE(nn.Module):  # upstream's name; it is a plain auto-encoder
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(n_features, hidden)
            self.fc2 = nn.Linear(hidden, n_features)

        def forward(self, x):
            z = nn.functional.relu(self.fc1(x))
            return nn.functional.relu(self.fc2(z)), z

    return VAE()


def stplus_predict(spatial: np.ndarray, scrna: np.ndarray, n_shared: int, n_predict: int, *, seed: int, device,
                   top_k: int, t_min: int, data_quality=None, n_neighbors: int, converge_ratio: float,
                   max_epoch_num: int, batch_size: int, learning_rate, weight_decay: float, hidden: int):
    """stPlus() on arrays. ``scrna``: cells x genes, columns ordered [shared, to predict, other];
    ``spatial``: spots x shared genes. Both normalised and log-transformed. Returns (spots x n_predict, epochs)."""
    import torch

    other = scrna[:, n_shared + n_predict:]
    if other.shape[1] > top_k:  # select_top_variable_genes: the top_k most variable other genes
        keep = np.argpartition(np.var(other, axis=0), -top_k)[-top_k:]
        other = other[:, keep]
    ref = np.hstack([scrna[:, : n_shared + n_predict], other]).astype(np.float32)
    sp = np.hstack([spatial, np.zeros((spatial.shape[0], ref.shape[1] - n_shared))]).astype(np.float32)
    n_sp, n_sc, n_all = sp.shape[0], ref.shape[0], ref.shape[1]
    if data_quality is None:
        data_quality = 1.0 - float((ref == 0).sum()) / ref.size
    if learning_rate is None:
        learning_rate = 4e-3 if n_sc < 1e4 else 8e-5
    gen = torch.Generator().manual_seed(int(seed))
    with seeded(int(seed), device):                  # the weights' initialisation; the caller's RNG restored
        net = _net(n_all, hidden).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    data = torch.from_numpy(np.vstack([sp, ref])).to(device)
    is_sp_all = torch.cat([torch.ones(n_sp, dtype=torch.bool), torch.zeros(n_sc, dtype=torch.bool)]).to(device)
    scale = n_shared / max(n_all - n_shared, 1) * n_sp / n_sc
    best = EarlyStopping(None, keep=int(t_min))   # the t_min lowest-loss epochs' weights (no patience)
    loss_last, epochs = 0.0, 0
    for e in range(int(max_epoch_num)):
        perm = torch.randperm(n_sp + n_sc, generator=gen).to(device)
        total, n_batches = 0.0, 0
        for start in range(0, n_sp + n_sc, int(batch_size)):
            b = perm[start:start + int(batch_size)]
            x, is_sp = data[b], is_sp_all[b]
            pre, _ = net(x)
            loss_t = ((pre[is_sp, :n_shared] - x[is_sp, :n_shared]) ** 2).sum()   # loss_recon_func
            xs = x[~is_sp]
            xz = xs.clone()
            xz[:, n_shared:] = 0
            dec, _ = net(xz)
            pred, gt = dec[:, n_shared:], xs[:, n_shared:]
            zero = gt == 0
            mse0 = ((pred[zero] - gt[zero]) ** 2).sum()
            mse1 = ((pred[~zero] - gt[~zero]) ** 2).sum()
            loss = loss_t + (data_quality * mse0 + mse1) * scale                # loss_recon_sparsity_func
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.item())
            n_batches += 1
        train_loss = total / max(n_batches, 1)
        epochs = e + 1
        ratio = abs(loss_last - train_loss) / loss_last if e > 0 and loss_last else np.inf
        loss_last = train_loss
        if e > 0 and ratio < converge_ratio:
            break
        best.step(train_loss, net)
    kept = best.snapshots or [(loss_last, snapshot(net))]
    target = ref[:, n_shared:n_shared + n_predict].astype(np.float64)
    out = np.zeros((n_sp, n_predict))
    with torch.no_grad():
        for _, state in kept:                          # pred_genes with each kept model, averaged
            net.load_state_dict(state)
            net.eval()
            _, z = net(data)
            z = z.cpu().numpy().astype(np.float64)
            out += cosine_knn_transfer(z[n_sp:], z[:n_sp], target, n_neighbors)
    return out / len(kept), epochs


def impute(task, *, top_k: int, t_min: int, n_neighbors: int, converge_ratio: float, max_epoch_num: int,
           batch_size: int, learning_rate, weight_decay: float, hidden: int, n_folds: int, fill: str, fill_k: int,
           calibrate: str):
    ref = task.reference
    if ref is None:
        raise ValueError("stPlus needs a paired scRNA-seq reference")
    device = task.torch_device()
    sc_log = normalise_cells(reference_counts(ref), log=True)
    names = [str(g) for g in ref.var_names]
    col = {g: i for i, g in enumerate(names)}
    epochs = []

    def mapper(inp):
        shared = [col[g] for g in inp.ref_genes]
        predict = [col[g] for g in inp.predict]
        used = set(shared) | set(predict)
        other = [i for i in range(len(names)) if i not in used]
        scrna = sc_log[:, shared + predict + other]
        spatial = normalise_cells(inp.counts, log=True)  # upstream: normalised and log-transformed spatial data
        pred, n_ep = stplus_predict(spatial, scrna, len(shared), len(predict), seed=inp.seed, device=device,
                                    top_k=int(top_k), t_min=int(t_min), n_neighbors=int(n_neighbors),
                                    converge_ratio=float(converge_ratio), max_epoch_num=int(max_epoch_num),
                                    batch_size=int(batch_size), learning_rate=learning_rate,
                                    weight_decay=float(weight_decay), hidden=int(hidden))
        epochs.append(n_ep)
        return np.expm1(pred)                            # log-normalised mean; the protocol takes log1p

    out = reference_impute(task, mapper, n_folds=n_folds, fill=fill, fill_k=fill_k, calibrate=calibrate)
    if isinstance(getattr(task, "info", None), dict):
        task.info["stplus"] = {"epochs_per_fold": epochs, "device": str(device)}
    return out
