"""Evidence for the reference protocol's calibration (`calibrate: auto` = linear on entry masks): the
reference methods on a real paired section, each mapper run once and its output calibrated `moments` and
`linear`, beside the per-gene Mean and KNN.

Data: osmFISH (SpatialBenchmarking dataset 2, 3,405 cells x 33 genes) and its scRNA-seq reference (5,613
cells), from the public stDiff repository (fdu-wangfeilab/stDiff, commit 09fa3ee):
``datasets/sp/dataset2_spatial_33.h5ad`` (raw counts, ``obs`` x_coord / y_coord) and
``datasets/sc/dataset2_seq_33.h5ad``. Not downloaded here: pass the two files.

    .venv/bin/python benchmarks/reference_calibration.py SPATIAL.h5ad REFERENCE.h5ad \\
        [--methods spage,stplus,tangram,gimvi] [--strategy random|gene] [--crop x0,x1,y0,y1] \\
        [--out benchmarks/results/reference_calibration.csv]

``--crop x0,x1,y0,y1``: keep only the spots inside that bounding box (inclusive, in the section's own coordinates:
``obsm['spatial']`` or ``obs`` x_coord / y_coord) before preprocessing, for methods too large for the whole section
on a CPU (SpaDiT: methods/spadit/README.md).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINES = {"Mean (per gene)": ("mean", {"axis": "gene"}), "KNN": ("knn", {})}


def parse_crop(text: str | None):
    """``--crop x0,x1,y0,y1`` -> (x0, x1, y0, y1) floats with x0 < x1 and y0 < y1 (None: no crop)."""
    if text is None:
        return None
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not (box[0] < box[1] and box[2] < box[3]):
        raise SystemExit(f"--crop {text!r}: expected x0,x1,y0,y1 with x0 < x1 and y0 < y1")
    return box


def crop_section(sp, box, path):
    """The spots of ``sp`` inside the bounding box ``box`` = (x0, x1, y0, y1), edges included."""
    xy = np.asarray(sp.obsm["spatial"], dtype=float)
    keep = (xy[:, 0] >= box[0]) & (xy[:, 0] <= box[1]) & (xy[:, 1] >= box[2]) & (xy[:, 1] <= box[3])
    if keep.sum() < 2:
        raise SystemExit(f"{path}: --crop {box} keeps {int(keep.sum())} of {len(keep)} spots (coordinates span "
                         f"x {xy[:, 0].min():g}..{xy[:, 0].max():g}, y {xy[:, 1].min():g}..{xy[:, 1].max():g})")
    return sp[keep].copy()


def load(spatial: str, reference: str, box=None):
    import anndata as ad

    from stbench.data.preprocess import PreprocessConfig, preprocess

    sp, sc = ad.read_h5ad(spatial), ad.read_h5ad(reference)
    if "spatial" not in sp.obsm:
        if not {"x_coord", "y_coord"} <= set(sp.obs.columns):
            raise SystemExit(f"{spatial}: no obsm['spatial'] and no obs x_coord / y_coord")
        sp.obsm["spatial"] = sp.obs[["x_coord", "y_coord"]].to_numpy(float)
    if box is not None:
        sp = crop_section(sp, box, spatial)
    sc.layers["counts"] = sc.X.copy()
    pre, _ = preprocess(sp, PreprocessConfig(gene_selection="all", min_detection=0.0), spatial)
    return pre, sc


def calibrated_both_ways(method, task, calibrations):
    """Run ``method``'s impute once per mapper pass (memoised) and return {calibration: output}."""
    import stbench.kit.reference_protocol as rp

    fn = method.load_impute()
    mod = importlib.import_module(fn.__module__)
    real, got = rp.reference_impute, {}

    def both(task, mapper, **kw):
        cache = {}

        def memo(inp):
            key = (inp.fold, len(inp.values))
            if key not in cache:
                cache[key] = mapper(inp)
            return cache[key]

        for cal in calibrations:
            got[cal] = real(task, memo, **{**kw, "calibrate": cal})
        return got[calibrations[0]]

    mod.reference_impute = both
    try:
        fn(task, **method.params("quick"))
    finally:
        mod.reference_impute = real
    return got


def main(argv=None):
    import pandas as pd
    import torch

    from stbench.atomic import write_csv
    from stbench.data.masks import MaskSpec, make_mask
    from stbench.results.metrics import evaluate_imputation
    from stbench.run.registry import discover
    from stbench.data.task import build_task, truth_on_scale

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spatial")
    ap.add_argument("reference")
    ap.add_argument("--methods", default="spage,stplus,tangram,gimvi")
    ap.add_argument("--strategy", default="random", choices=["random", "gene"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crop", default=None, help="x0,x1,y0,y1: keep the spots in this box (section coordinates)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "reference_calibration.csv"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    pre, sc = load(a.spatial, a.reference, parse_crop(a.crop))
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(a.strategy, 0.1), seed=a.seed)
    task = build_task(pre, held, train, reference=sc, seed=a.seed, scratch=tempfile.mkdtemp())
    truth = truth_on_scale(pre, task)
    found = discover()
    rows = []

    def score(label, out, seconds):
        m = evaluate_imputation(truth, out, held)["metrics"]
        rows.append({"row": label, "mask": a.strategy, "seed": a.seed, "crop": a.crop or "", "n_spots": pre.n_obs,
                     "pcc": m["pcc"], "rmse": m["rmse"],
                     "pcc_gene": m["pcc_gene"], "rmse_gene": m["rmse_gene"], "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)

    for label, (name, over) in BASELINES.items():
        t0 = time.time()
        score(label, found[name].load_impute()(task, **found[name].params(None, over)), time.time() - t0)
    calibrations = ("moments", "linear") if a.strategy != "gene" else ("auto",)
    for name in a.methods.split(","):
        t0 = time.time()
        outs = calibrated_both_ways(found[name], task, calibrations)
        for cal, out in outs.items():
            score(f"{found[name].title} [{cal}]", out, time.time() - t0)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_csv(a.out, pd.DataFrame(rows), index=False)


if __name__ == "__main__":
    main()
