"""SCLD's own evaluation (paper Sec. 4.2) of the reimplementation, beside the simple generators.

Each seed splits a reference 70/30 per cell type; every generator is fitted on the 70% and asked for as many
cells of each type as the held-out 30% has. Measures against the held-out real cells (log-normalised at the
training cells' median total): the paper's real-vs-synthetic random-forest AUC (0.5 best) and MMD (Eq. 14, on
the first 50 principal components of the training cells), the 2-Wasserstein distance (POT) on the same
components, and a cell-type classifier trained on the synthetic cells and tested on the real ones (macro F1).
Rows ``real (positive)`` (held-out real cells against as many other real training cells: the paper's
"positive") and ``train on real`` bracket the scale.

    .venv/bin/python benchmarks/scld_quality.py demo [--preset quick] [--seeds 0 1 2]
    .venv/bin/python benchmarks/scld_quality.py osmfish --reference dataset2_seq_33.h5ad   # by: louvain
    python3 benchmarks/scld_quality.py demo --preset paper --device cuda --seeds 0          # benchmarks/gpu_scld.sh

The osmFISH reference (stDiff repository, datasets/sc/dataset2_seq_33.h5ad) has no cell-type labels: its cells
are clustered with Louvain first, as SCLD does. Neither dataset is one of the paper's (68k PBMC, Brain Small),
so the paper's numbers are not comparable and are not put beside these.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results"


def load(name: str, path: str | None):
    if name == "demo":
        from stbench.data.simulate import simulate_demo

        return simulate_demo(0)[1], "cell_type"
    import anndata as ad

    ref = ad.read_h5ad(path)
    from stbench.data.reference_generators.cells import louvain_labels
    from stbench.kit.reference_protocol import reference_counts

    ref.obs["louvain"] = louvain_labels(reference_counts(ref))
    return ref, "louvain"


def split(labels: np.ndarray, seed: int, test: float = 0.3):
    rng = np.random.default_rng(seed)
    te = np.zeros(len(labels), bool)
    for t in np.unique(labels):
        idx = np.flatnonzero(labels == t)
        te[rng.choice(idx, size=max(1, int(round(test * len(idx)))), replace=False)] = True
    return np.flatnonzero(~te), np.flatnonzero(te)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["demo", "osmfish"])
    ap.add_argument("--reference", help="osmFISH's scRNA-seq reference .h5ad")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (SCLD and the VAE)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch
    from sklearn.decomposition import PCA

    from stbench.data.reference_generators import generator_params, get_generator
    from stbench.data.reference_generators.quality import log_normalise, mmd, ot_distance, rf_auc, tstr
    from stbench.data.reference_generators.scld import SCLD
    from stbench.kit.reference_protocol import reference_counts

    torch.set_num_threads(a.threads)
    ref, by = load(a.dataset, a.reference)
    counts, labels = reference_counts(ref), ref.obs[by].astype(str).to_numpy()
    rows = []
    for seed in a.seeds:
        tr, te = split(labels, seed)
        train = ref[tr].copy()
        train.obs[by] = labels[tr]
        want = dict(zip(*np.unique(labels[te], return_counts=True)))
        want_labels = labels[te]
        tot = counts[tr].sum(1)
        med = float(np.median(tot[tot > 0]))
        real = log_normalise(counts[te], med)
        pca = PCA(n_components=int(min(50, counts.shape[1] - 1)), random_state=seed).fit(log_normalise(counts[tr], med))
        fits = {}
        rng = np.random.default_rng(seed + 100)
        pos = np.concatenate([rng.choice(tr[labels[tr] == t], size=n, replace=len(np.flatnonzero(labels[tr] == t)) < n)
                              for t, n in want.items()])
        fits["real (positive)"] = (counts[pos], labels[pos], 0.0)
        p = generator_params("scld", a.preset)
        t0 = time.time()
        model = SCLD(p, seed=seed, device=a.device).fit(counts[tr], labels[tr])
        fit_s = time.time() - t0
        order = np.concatenate([np.flatnonzero(want_labels == t) for t in sorted(want)])
        lab_sorted = want_labels[order]
        from stbench.data.reference_generators.cells import draw_libraries, to_counts

        libs = draw_libraries(counts[tr], labels[tr], lab_sorted, np.random.default_rng(seed + 2))
        t0 = time.time()
        fits["SCLD"] = (model.generate_counts(lab_sorted), lab_sorted, fit_s + time.time() - t0)
        t0 = time.time()
        fits["SCLD (no post-guidance)"] = (to_counts(model.sample(lab_sorted), libs, model.median, upper=model.x.max(0).values.cpu().numpy()), lab_sorted,
                                           fit_s + time.time() - t0)
        t0 = time.time()
        fits["SCLD (unguided, w=-1)"] = (model.generate_counts(lab_sorted, guidance=-1.0), lab_sorted, fit_s + time.time() - t0)
        for name in ("resample", "vae"):
            t0 = time.time()
            syn = get_generator(name).generate(train, want, by=by, seed=seed, params=generator_params(name, a.preset),
                                               device=a.device)
            fits[name] = (np.asarray(syn.layers["counts"].toarray()), syn.obs[by].astype(str).to_numpy(), time.time() - t0)
        real_pc = pca.transform(real)
        for name, (c, lab, secs) in fits.items():
            syn = log_normalise(c, med)
            syn_pc = pca.transform(syn)
            rows.append({"dataset": a.dataset, "seed": seed, "generator": name, "n_train": len(tr), "n_test": len(te),
                         "n_types": len(want), "rf_auc": rf_auc(real, syn, seed), "mmd": mmd(real_pc, syn_pc),
                         "w2": ot_distance(real_pc, syn_pc), "tstr_f1": tstr(syn, lab, real, labels[te], seed),
                         "seconds": round(secs, 1), "preset": a.preset if name.startswith(("SCLD", "vae")) else ""})
        rows.append({"dataset": a.dataset, "seed": seed, "generator": "train on real", "n_train": len(tr),
                     "n_test": len(te), "n_types": len(want),
                     "tstr_f1": tstr(log_normalise(counts[tr], med), labels[tr], real, labels[te], seed)})
        print(pd.DataFrame(rows[-len(fits) - 1:]).to_string(), flush=True)
    df = pd.DataFrame(rows)
    out = Path(a.out or OUT / f"scld_quality_{a.dataset}.csv")
    from stbench.atomic import write_csv

    write_csv(out, df, index=False)
    print(df.groupby("generator", sort=False)[["rf_auc", "mmd", "w2", "tstr_f1", "seconds"]].agg(["mean", "std"]).round(3).to_string())


if __name__ == "__main__":
    main()
